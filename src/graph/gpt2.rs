//! GPT-2 blocks (`GPT2LMHeadModel`): pre-LN `LayerNormalization`, learned positions, Conv1D
//! weights used as stored, `gelu_new` from primitives.

use super::builder::{attr_float, attr_int, Builder};
use super::io::GraphKind;
use super::layers::*;
use crate::arch::Arch;

/// HF `gelu_new`: `0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³)))`, in the order torch exports it.
pub(super) fn gelu_new(b: &mut Builder, p: &str, x: &str) -> String {
    let three = b.scalar_f32("f32.3", 3.0);
    let c = b.scalar_f32("gelu.coeff", 0.044715);
    let s = b.scalar_f32(
        "gelu.sqrt_2_over_pi",
        (2.0 / std::f64::consts::PI).sqrt() as f32,
    );
    let one = b.scalar_f32("f32.1", 1.0);
    let half = b.scalar_f32("f32.0_5", 0.5);
    let cube = b.op("Pow", &format!("{p}.cube"), &[x, &three], vec![]);
    let scaled = b.op("Mul", &format!("{p}.cube_coeff"), &[&cube, &c], vec![]);
    let inner = b.op("Add", &format!("{p}.inner"), &[x, &scaled], vec![]);
    let arg = b.op("Mul", &format!("{p}.inner_scale"), &[&inner, &s], vec![]);
    let t = b.op("Tanh", &format!("{p}.tanh"), &[&arg], vec![]);
    let t1 = b.op("Add", &format!("{p}.tanh_plus_1"), &[&t, &one], vec![]);
    let hx = b.op("Mul", &format!("{p}.half_x"), &[&half, x], vec![]);
    b.op("Mul", &format!("{p}.out"), &[&hx, &t1], vec![])
}

pub(super) fn layer_norm(b: &mut Builder, name: &str, x: &str, param: &str, eps: f64) -> String {
    b.op(
        "LayerNormalization",
        name,
        &[x, &format!("{param}.weight"), &format!("{param}.bias")],
        vec![attr_int("axis", -1), attr_float("epsilon", eps as f32)],
    )
}

pub(super) fn gpt2(b: &mut Builder, arch: &Arch, kind: GraphKind, c: &Common) {
    let d = arch.d_model;
    let tok = b.op(
        "Gather",
        "embed.tokens",
        &["transformer.wte.weight", "input_ids"],
        vec![attr_int("axis", 0)],
    );
    let pe = b.op(
        "Gather",
        "embed.positions",
        &["transformer.wpe.weight", &c.pos],
        vec![attr_int("axis", 0)],
    );
    let mut h = b.op("Add", "embed.sum", &[&tok, &pe], vec![]);
    for i in 0..arch.n_layer {
        let p = format!("layers.{i}");
        let w = format!("transformer.h.{i}");
        let (nh, hd) = (arch.n_head[i], arch.head_dim(i));
        let a = layer_norm(
            b,
            &format!("{p}.ln_1"),
            &h,
            &format!("{w}.ln_1"),
            arch.norm_eps,
        );
        let qkv = linear(
            b,
            &format!("{p}.attn.qkv"),
            &a,
            &format!("{w}.attn.c_attn.weight"),
            Some(&format!("{w}.attn.c_attn.bias")),
        );
        let split = b.ints("split", &[d as i64; 3]);
        let (q, k, v) = (
            format!("{p}.attn.q"),
            format!("{p}.attn.k"),
            format!("{p}.attn.v"),
        );
        b.node_multi(
            "Split",
            &format!("{p}.attn.split"),
            &[&qkv, &split],
            &[&q, &k, &v],
            vec![attr_int("axis", -1)],
        );
        let q = split_heads(
            b,
            &format!("{p}.attn.q_heads"),
            &q,
            nh,
            hd,
            &format!("{p}.attn.q_heads"),
        );
        let k_out = cache_name(kind, &p, i, "key");
        let k = split_heads(b, &format!("{p}.attn.k_heads"), &k, nh, hd, &k_out);
        let v_out = cache_name(kind, &p, i, "value");
        let v = split_heads(b, &format!("{p}.attn.v_heads"), &v, nh, hd, &v_out);
        let k = append_cache(b, kind, &p, i, "key", &k);
        let v = append_cache(b, kind, &p, i, "value", &v);
        let ctx = attention(b, &p, &q, &k, &v, 1, hd, d, &c.mask);
        let o = linear(
            b,
            &format!("{p}.attn.c_proj"),
            &ctx,
            &format!("{w}.attn.c_proj.weight"),
            Some(&format!("{w}.attn.c_proj.bias")),
        );
        h = b.op("Add", &format!("{p}.attn.residual"), &[&h, &o], vec![]);
        let m = layer_norm(
            b,
            &format!("{p}.ln_2"),
            &h,
            &format!("{w}.ln_2"),
            arch.norm_eps,
        );
        let fc = linear(
            b,
            &format!("{p}.mlp.c_fc"),
            &m,
            &format!("{w}.mlp.c_fc.weight"),
            Some(&format!("{w}.mlp.c_fc.bias")),
        );
        let act = gelu_new(b, &format!("{p}.mlp.gelu"), &fc);
        let proj = linear(
            b,
            &format!("{p}.mlp.c_proj"),
            &act,
            &format!("{w}.mlp.c_proj.weight"),
            Some(&format!("{w}.mlp.c_proj.bias")),
        );
        h = b.op("Add", &format!("{p}.mlp.residual"), &[&h, &proj], vec![]);
    }
    let h = head_input(b, &h, c);
    let hf = layer_norm(b, "final.ln_f", &h, "transformer.ln_f", arch.norm_eps);
    lm_head(b, arch, &hf, super::tensors::head_weight(arch), c);
}
