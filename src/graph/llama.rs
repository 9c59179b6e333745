//! Llama blocks (`LlamaForCausalLM`): RMSNorm from primitives, RoPE ("rotate_half") from the
//! positions in-graph, grouped-query attention, SwiGLU MLP.

use std::collections::HashMap;

use super::builder::{attr_int, attr_ints, Builder};
use super::io::GraphKind;
use super::layers::*;
use crate::arch::Arch;
use crate::onnx::tensor_proto::DataType;

/// HF `LlamaRMSNorm`: `weight · x / sqrt(mean(x², last axis) + eps)`, written as
/// Pow/ReduceMean/Add/Sqrt/Div/Mul (the pattern runtimes fuse into one normalization).
pub(super) fn rms_norm(b: &mut Builder, p: &str, x: &str, weight: &str, eps: f64) -> String {
    let two = b.scalar_f32("f32.2", 2.0);
    let eps = b.scalar_f32("norm_eps", eps as f32);
    let sq = b.op("Pow", &format!("{p}.square"), &[x, &two], vec![]);
    let mean = b.op(
        "ReduceMean",
        &format!("{p}.mean"),
        &[&sq],
        vec![attr_ints("axes", &[-1]), attr_int("keepdims", 1)],
    );
    let var = b.op("Add", &format!("{p}.add_eps"), &[&mean, &eps], vec![]);
    let rms = b.op("Sqrt", &format!("{p}.sqrt"), &[&var], vec![]);
    let norm = b.op("Div", &format!("{p}.div"), &[x, &rms], vec![]);
    b.op("Mul", &format!("{p}.scale"), &[&norm, weight], vec![])
}

/// RoPE tables `cos`, `sin` `[seq, head_dim]` for one head size, computed once per graph:
/// HF `LlamaRotaryEmbedding` (`inv_freq[j] = 1/theta^(2j/hd)`, `emb = cat(freqs, freqs)`).
pub(super) fn rope_tables(
    b: &mut Builder,
    arch: &Arch,
    pos_col: &str,
    hd: usize,
) -> (String, String) {
    let half = hd / 2;
    let theta = arch.rope_theta as f32;
    let inv: Vec<f32> = (0..half)
        .map(|j| 1.0 / theta.powf((2 * j) as f32 / hd as f32))
        .collect();
    let inv = b.const_f32(&format!("rope.inv_freq.hd{hd}"), &[half as i64], &inv);
    let p = format!("rope.hd{hd}");
    let freqs = b.op("Mul", &format!("{p}.freqs"), &[pos_col, &inv], vec![]);
    let emb = b.op(
        "Concat",
        &format!("{p}.emb"),
        &[&freqs, &freqs],
        vec![attr_int("axis", -1)],
    );
    let cos = b.op("Cos", &format!("{p}.cos"), &[&emb], vec![]);
    let sin = b.op("Sin", &format!("{p}.sin"), &[&emb], vec![]);
    (cos, sin)
}

/// `x·cos + rotate_half(x)·sin` on the last axis (`rotate_half([x1, x2]) = [-x2, x1]`);
/// the output is named `out`.
pub(super) fn apply_rope(
    b: &mut Builder,
    p: &str,
    x: &str,
    cos: &str,
    sin: &str,
    hd: usize,
    out: &str,
) -> String {
    let split = b.ints("split", &[(hd / 2) as i64; 2]);
    let (x1, x2) = (format!("{p}.x1"), format!("{p}.x2"));
    b.node_multi(
        "Split",
        &format!("{p}.split"),
        &[x, &split],
        &[&x1, &x2],
        vec![attr_int("axis", -1)],
    );
    let neg = b.op("Neg", &format!("{p}.neg"), &[&x2], vec![]);
    let rot = b.op(
        "Concat",
        &format!("{p}.rotate_half"),
        &[&neg, &x1],
        vec![attr_int("axis", -1)],
    );
    let xc = b.op("Mul", &format!("{p}.cos"), &[x, cos], vec![]);
    let rs = b.op("Mul", &format!("{p}.sin"), &[&rot, sin], vec![]);
    b.op_to("Add", &format!("{p}.add"), &[&xc, &rs], out, vec![])
}

pub(super) fn llama(b: &mut Builder, arch: &Arch, kind: GraphKind, c: &Common) {
    let d = arch.d_model;
    let mut h = b.op(
        "Gather",
        "embed.tokens",
        &["model.embed_tokens.weight", "input_ids"],
        vec![attr_int("axis", 0)],
    );
    let pos_f = b.op(
        "Cast",
        "rope.pos",
        &[&c.pos],
        vec![attr_int("to", DataType::Float as i64)],
    );
    let ax1 = b.ints("axes", &[1]);
    let pos_col = b.op("Unsqueeze", "rope.pos_col", &[&pos_f, &ax1], vec![]);
    let mut tables: HashMap<usize, (String, String)> = HashMap::new();
    for i in 0..arch.n_layer {
        let p = format!("layers.{i}");
        let w = format!("model.layers.{i}");
        let (nh, nkv, hd) = (arch.n_head[i], arch.n_kv_head[i], arch.head_dim(i));
        let group = nh / nkv;
        let (cos, sin) = tables
            .entry(hd)
            .or_insert_with(|| rope_tables(b, arch, &pos_col, hd))
            .clone();
        let a = rms_norm(
            b,
            &format!("{p}.input_layernorm"),
            &h,
            &format!("{w}.input_layernorm.weight"),
            arch.norm_eps,
        );
        let q = linear(
            b,
            &format!("{p}.attn.q_proj"),
            &a,
            &format!("{w}.self_attn.q_proj.weight"),
            None,
        );
        let k = linear(
            b,
            &format!("{p}.attn.k_proj"),
            &a,
            &format!("{w}.self_attn.k_proj.weight"),
            None,
        );
        let v = linear(
            b,
            &format!("{p}.attn.v_proj"),
            &a,
            &format!("{w}.self_attn.v_proj.weight"),
            None,
        );
        // Queries: [B, S, H*hd] -> [B, H, S, hd], or [B, Hkv, g, S, hd] for grouped attention
        // (query head h = kv * g + j, matching HF repeat_kv).
        let q = if group > 1 {
            let shape = b.ints("shape", &[0, 0, nkv as i64, group as i64, hd as i64]);
            let r = b.op(
                "Reshape",
                &format!("{p}.attn.q_heads.reshape"),
                &[&q, &shape],
                vec![],
            );
            b.op(
                "Transpose",
                &format!("{p}.attn.q_heads.transpose"),
                &[&r],
                vec![attr_ints("perm", &[0, 2, 3, 1, 4])],
            )
        } else {
            let name = format!("{p}.attn.q_heads");
            split_heads(b, &name, &q, nh, hd, &name)
        };
        let q = apply_rope(
            b,
            &format!("{p}.attn.q_rope"),
            &q,
            &cos,
            &sin,
            hd,
            &format!("{p}.attn.q_rope"),
        );
        let k = split_heads(
            b,
            &format!("{p}.attn.k_heads"),
            &k,
            nkv,
            hd,
            &format!("{p}.attn.k_heads"),
        );
        let k_out = cache_name(kind, &p, i, "key");
        let k = apply_rope(b, &format!("{p}.attn.k_rope"), &k, &cos, &sin, hd, &k_out);
        let v_out = cache_name(kind, &p, i, "value");
        let v = split_heads(b, &format!("{p}.attn.v_heads"), &v, nkv, hd, &v_out);
        let k = append_cache(b, kind, &p, i, "key", &k);
        let v = append_cache(b, kind, &p, i, "value", &v);
        let ctx = attention(b, &p, &q, &k, &v, group, hd, d, &c.mask);
        let o = linear(
            b,
            &format!("{p}.attn.o_proj"),
            &ctx,
            &format!("{w}.self_attn.o_proj.weight"),
            None,
        );
        h = b.op("Add", &format!("{p}.attn.residual"), &[&h, &o], vec![]);
        let m = rms_norm(
            b,
            &format!("{p}.post_attention_layernorm"),
            &h,
            &format!("{w}.post_attention_layernorm.weight"),
            arch.norm_eps,
        );
        let gate = linear(
            b,
            &format!("{p}.mlp.gate_proj"),
            &m,
            &format!("{w}.mlp.gate_proj.weight"),
            None,
        );
        let sig = b.op("Sigmoid", &format!("{p}.mlp.sigmoid"), &[&gate], vec![]);
        let act = b.op("Mul", &format!("{p}.mlp.silu"), &[&gate, &sig], vec![]);
        let up = linear(
            b,
            &format!("{p}.mlp.up_proj"),
            &m,
            &format!("{w}.mlp.up_proj.weight"),
            None,
        );
        let prod = b.op("Mul", &format!("{p}.mlp.gate_up"), &[&act, &up], vec![]);
        let down = linear(
            b,
            &format!("{p}.mlp.down_proj"),
            &prod,
            &format!("{w}.mlp.down_proj.weight"),
            None,
        );
        h = b.op("Add", &format!("{p}.mlp.residual"), &[&h, &down], vec![]);
    }
    let h = head_input(b, &h, c);
    let hf = rms_norm(b, "final.norm", &h, "model.norm.weight", arch.norm_eps);
    lm_head(b, arch, &hf, super::tensors::head_weight(arch), c);
}
