//! Llama reference forward for one batch row, from `transformers`' `LlamaForCausalLM`:
//! RMSNorm, RoPE on queries and keys, grouped-query attention, SwiGLU MLP, no biases.

use ndarray::{concatenate, Array2, ArrayView3, Axis};

use super::ops::{attention, embed, mat, rms_norm, rope, silu, split_heads, vec1, RowKv};
use crate::arch::Arch;
use crate::weights::Weights;

/// Llama forward for one batch row: logits `[seq, vocab]` and each layer's present key/value.
pub(super) fn llama_row(
    arch: &Arch,
    w: &Weights,
    ids: &[usize],
    past_len: usize,
    past: &[(ArrayView3<f32>, ArrayView3<f32>)],
) -> (Array2<f32>, Vec<RowKv>) {
    let eps = arch.norm_eps;
    let emb = mat(w, "model.embed_tokens.weight");
    let mut h = embed(emb, ids);
    let mut kv_out = Vec::with_capacity(arch.n_layer);
    for (i, (past_k, past_v)) in past.iter().enumerate() {
        let l = format!("model.layers.{i}");
        let p = |n: &str| format!("{l}.{n}");
        let (nh, nkv) = (arch.n_head[i], arch.n_kv_head[i]);
        let hd = arch.head_dim(i);

        let a = rms_norm(&h, vec1(w, &p("input_layernorm.weight")), eps);
        // Linear: weight [out, in], y = x W^T.
        let mut q = split_heads(
            a.dot(&mat(w, &p("self_attn.q_proj.weight")).t()).view(),
            nh,
            hd,
        );
        let mut k_new = split_heads(
            a.dot(&mat(w, &p("self_attn.k_proj.weight")).t()).view(),
            nkv,
            hd,
        );
        let v_new = split_heads(
            a.dot(&mat(w, &p("self_attn.v_proj.weight")).t()).view(),
            nkv,
            hd,
        );
        rope(&mut q, past_len, arch.rope_theta);
        rope(&mut k_new, past_len, arch.rope_theta);
        let k =
            concatenate(Axis(1), &[past_k.view(), k_new.view()]).expect("same heads and head_dim");
        let v =
            concatenate(Axis(1), &[past_v.view(), v_new.view()]).expect("same heads and head_dim");
        let att = attention(&q, &k, &v, past_len);
        h = h + att.dot(&mat(w, &p("self_attn.o_proj.weight")).t());

        let b = rms_norm(&h, vec1(w, &p("post_attention_layernorm.weight")), eps);
        let gate = b.dot(&mat(w, &p("mlp.gate_proj.weight")).t()).mapv(silu);
        let up = b.dot(&mat(w, &p("mlp.up_proj.weight")).t());
        h = h + (gate * up).dot(&mat(w, &p("mlp.down_proj.weight")).t());
        kv_out.push((k, v));
    }
    let hf = rms_norm(&h, vec1(w, "model.norm.weight"), eps);
    let head = if arch.tie_embeddings {
        emb
    } else {
        mat(w, "lm_head.weight")
    };
    (hf.dot(&head.t()), kv_out)
}
