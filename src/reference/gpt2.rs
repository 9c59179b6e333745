//! GPT-2 reference forward for one batch row, from `transformers`' `GPT2LMHeadModel`:
//! learned positions, LayerNorm, fused `Conv1D` q/k/v, tanh-GELU MLP, biases, tied LM head.

use ndarray::{concatenate, s, Array2, ArrayView3, Axis};

use super::ops::{attention, embed, gelu_new, layer_norm, mat, split_heads, vec1, RowKv};
use crate::arch::Arch;
use crate::weights::Weights;

/// GPT-2 forward for one batch row: logits `[seq, vocab]` and each layer's present key/value.
pub(super) fn gpt2_row(
    arch: &Arch,
    w: &Weights,
    ids: &[usize],
    past_len: usize,
    past: &[(ArrayView3<f32>, ArrayView3<f32>)],
) -> (Array2<f32>, Vec<RowKv>) {
    let seq = ids.len();
    let d = arch.d_model;
    let eps = arch.norm_eps;
    let wte = mat(w, "transformer.wte.weight");
    let wpe = mat(w, "transformer.wpe.weight");
    let positions: Vec<usize> = (past_len..past_len + seq).collect();
    let mut h = embed(wte, ids) + embed(wpe, &positions);
    let mut kv_out = Vec::with_capacity(arch.n_layer);
    for (i, (past_k, past_v)) in past.iter().enumerate() {
        let l = format!("transformer.h.{i}");
        let p = |n: &str| format!("{l}.{n}");
        let nh = arch.n_head[i];
        let hd = arch.head_dim(i);

        let a = layer_norm(
            &h,
            vec1(w, &p("ln_1.weight")),
            vec1(w, &p("ln_1.bias")),
            eps,
        );
        // Conv1D: weight [in, out].
        let qkv = a.dot(&mat(w, &p("attn.c_attn.weight"))) + vec1(w, &p("attn.c_attn.bias"));
        let q = split_heads(qkv.slice(s![.., 0..d]), nh, hd);
        let k_new = split_heads(qkv.slice(s![.., d..2 * d]), nh, hd);
        let v_new = split_heads(qkv.slice(s![.., 2 * d..3 * d]), nh, hd);
        let k =
            concatenate(Axis(1), &[past_k.view(), k_new.view()]).expect("same heads and head_dim");
        let v =
            concatenate(Axis(1), &[past_v.view(), v_new.view()]).expect("same heads and head_dim");
        let att = attention(&q, &k, &v, past_len);
        h = h + att.dot(&mat(w, &p("attn.c_proj.weight"))) + vec1(w, &p("attn.c_proj.bias"));

        let m = layer_norm(
            &h,
            vec1(w, &p("ln_2.weight")),
            vec1(w, &p("ln_2.bias")),
            eps,
        );
        let inner =
            (m.dot(&mat(w, &p("mlp.c_fc.weight"))) + vec1(w, &p("mlp.c_fc.bias"))).mapv(gelu_new);
        h = h + inner.dot(&mat(w, &p("mlp.c_proj.weight"))) + vec1(w, &p("mlp.c_proj.bias"));
        kv_out.push((k, v));
    }
    let hf = layer_norm(
        &h,
        vec1(w, "transformer.ln_f.weight"),
        vec1(w, "transformer.ln_f.bias"),
        eps,
    );
    (hf.dot(&wte.t()), kv_out)
}
