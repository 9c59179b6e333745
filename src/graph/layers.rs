//! Pieces both families share: positions, the causal mask, attention with its KV cache, the
//! LM head.

use super::builder::{attr_int, attr_ints, Builder};
use super::io::{past_name, present_name, GraphKind};
use crate::arch::Arch;

/// Tensors every layer uses.
pub(super) struct Common {
    /// `Shape(input_ids)`: `[batch, seq]` as a 1-D int64 tensor.
    pub(super) ids_shape: String,
    /// Absolute positions of the new tokens, int64 `[seq]`.
    pub(super) pos: String,
    /// Additive causal mask, f32 `[seq, total_seq]` (0 where allowed, -inf elsewhere).
    pub(super) mask: String,
    /// Logits of the last position only ([`Logits::Last`] graphs).
    pub(super) last_only: bool,
}

/// Positions (`Range(past_seq, past_seq + seq)`, with `past_seq` from the `Shape` of layer 0's
/// past key, or 0 for prefill) and the additive causal mask, built once per graph.
pub(super) fn common(b: &mut Builder, kind: GraphKind, last_only: bool) -> Common {
    let zero = b.scalar_i64(0);
    let one = b.scalar_i64(1);
    let ids_shape = b.op("Shape", "pos.ids_shape", &["input_ids"], vec![]);
    let seq = b.op(
        "Gather",
        "pos.seq",
        &[&ids_shape, &one],
        vec![attr_int("axis", 0)],
    );
    let (pos, key_pos) = match kind {
        GraphKind::Prefill => {
            let pos = b.op("Range", "pos.ids", &[&zero, &seq, &one], vec![]);
            (pos.clone(), pos)
        }
        GraphKind::Decode => {
            let two = b.scalar_i64(2);
            let past_shape = b.op("Shape", "pos.past_shape", &[&past_name(0, "key")], vec![]);
            let past = b.op(
                "Gather",
                "pos.past_seq",
                &[&past_shape, &two],
                vec![attr_int("axis", 0)],
            );
            let total = b.op("Add", "pos.total_seq", &[&past, &seq], vec![]);
            let pos = b.op("Range", "pos.ids", &[&past, &total, &one], vec![]);
            let key_pos = b.op("Range", "pos.key_ids", &[&zero, &total, &one], vec![]);
            (pos, key_pos)
        }
    };
    let ax0 = b.ints("axes", &[0]);
    let ax1 = b.ints("axes", &[1]);
    let q_col = b.op("Unsqueeze", "mask.query_pos", &[&pos, &ax1], vec![]);
    let k_row = b.op("Unsqueeze", "mask.key_pos", &[&key_pos, &ax0], vec![]);
    let allowed = b.op("LessOrEqual", "mask.allowed", &[&k_row, &q_col], vec![]);
    let fzero = b.scalar_f32("f32.0", 0.0);
    let ninf = b.scalar_f32("f32.neg_inf", f32::NEG_INFINITY);
    let mask = b.op("Where", "mask.additive", &[&allowed, &fzero, &ninf], vec![]);
    Common {
        ids_shape,
        pos,
        mask,
        last_only,
    }
}

/// The hidden states the final norm and the LM head see: all of `h` `[B, S, D]`, or for
/// last-position logits only its last position, `Slice(h, -1:, axis 1)` `[B, 1, D]`.
pub(super) fn head_input(b: &mut Builder, h: &str, c: &Common) -> String {
    if !c.last_only {
        return h.to_string();
    }
    let starts = b.ints("starts", &[-1]);
    let ends = b.ints("ends", &[i64::MAX]);
    let axes = b.ints("axes", &[1]);
    b.op(
        "Slice",
        "final.last_position",
        &[h, &starts, &ends, &axes],
        vec![],
    )
}

/// `[B, S, heads*hd]` -> `[B, heads, S, hd]` (Reshape + Transpose); the output is named `out`.
pub(super) fn split_heads(
    b: &mut Builder,
    p: &str,
    x: &str,
    heads: usize,
    hd: usize,
    out: &str,
) -> String {
    let shape = b.ints("shape", &[0, 0, heads as i64, hd as i64]);
    let r = b.op("Reshape", &format!("{p}.reshape"), &[x, &shape], vec![]);
    b.op_to(
        "Transpose",
        &format!("{p}.transpose"),
        &[&r],
        out,
        vec![attr_ints("perm", &[0, 2, 1, 3])],
    )
}

/// Name under which layer `i`'s new `[B, Hkv, S, hd]` keys/values (`which`) are produced: for
/// prefill they are the cache output `present.{i}.{which}` itself (no Identity node needed).
pub(super) fn cache_name(kind: GraphKind, p: &str, i: usize, which: &str) -> String {
    match kind {
        GraphKind::Prefill => present_name(i, which),
        GraphKind::Decode => format!("{p}.attn.{which}_new"),
    }
}

/// The full cache `[B, Hkv, T, hd]` of layer `i`: for prefill the new tensor `new` (already named
/// `present.{i}.{which}`), for decode `Concat(past, new)` on the sequence axis, output under the
/// present name.
pub(super) fn append_cache(
    b: &mut Builder,
    kind: GraphKind,
    p: &str,
    i: usize,
    which: &str,
    new: &str,
) -> String {
    match kind {
        GraphKind::Prefill => new.to_string(),
        GraphKind::Decode => b.op_to(
            "Concat",
            &format!("{p}.attn.{which}_cache"),
            &[&past_name(i, which), new],
            &present_name(i, which),
            vec![attr_int("axis", 2)],
        ),
    }
}

/// Scaled dot-product attention with the shared causal mask.
///
/// `q` is `[B, H, S, hd]` when `group == 1`, else `[B, Hkv, group, S, hd]`; `k`, `v` are the
/// full caches `[B, Hkv, T, hd]`. Returns the merged heads `[B, S, d_model]`.
#[allow(clippy::too_many_arguments)]
pub(super) fn attention(
    b: &mut Builder,
    p: &str,
    q: &str,
    k: &str,
    v: &str,
    group: usize,
    hd: usize,
    d_model: usize,
    mask: &str,
) -> String {
    let mut kt = b.op(
        "Transpose",
        &format!("{p}.attn.k_t"),
        &[k],
        vec![attr_ints("perm", &[0, 1, 3, 2])],
    );
    let mut v = v.to_string();
    if group > 1 {
        let ax2 = b.ints("axes", &[2]);
        kt = b.op(
            "Unsqueeze",
            &format!("{p}.attn.k_t_group"),
            &[&kt, &ax2],
            vec![],
        );
        v = b.op(
            "Unsqueeze",
            &format!("{p}.attn.v_group"),
            &[&v, &ax2],
            vec![],
        );
    }
    let scale = b.scalar_f32(
        &format!("attn.scale.hd{hd}"),
        (1.0 / (hd as f64).sqrt()) as f32,
    );
    let qk = b.op("MatMul", &format!("{p}.attn.qk"), &[q, &kt], vec![]);
    let scaled = b.op("Mul", &format!("{p}.attn.scale"), &[&qk, &scale], vec![]);
    let masked = b.op("Add", &format!("{p}.attn.mask"), &[&scaled, mask], vec![]);
    let probs = b.op(
        "Softmax",
        &format!("{p}.attn.softmax"),
        &[&masked],
        vec![attr_int("axis", -1)],
    );
    let ctx = b.op("MatMul", &format!("{p}.attn.pv"), &[&probs, &v], vec![]);
    let perm: &[i64] = if group > 1 {
        &[0, 3, 1, 2, 4]
    } else {
        &[0, 2, 1, 3]
    };
    let merged = b.op(
        "Transpose",
        &format!("{p}.attn.merge_heads"),
        &[&ctx],
        vec![attr_ints("perm", perm)],
    );
    let shape = b.ints("shape", &[0, 0, d_model as i64]);
    b.op(
        "Reshape",
        &format!("{p}.attn.merged"),
        &[&merged, &shape],
        vec![],
    )
}

/// `logits = h @ weightᵀ` with `weight` `[V, D]`: Reshape to `[B*S, D]`, `Gemm(transB=1)`,
/// Reshape to `[B, S, V]` (`[B, 1, V]` for last-position logits), output named `logits`.
pub(super) fn lm_head(b: &mut Builder, arch: &Arch, h: &str, weight: &str, c: &Common) {
    let flat_shape = b.ints("shape", &[-1, arch.d_model as i64]);
    let flat = b.op("Reshape", "lm_head.flatten", &[h, &flat_shape], vec![]);
    let gemm = b.op(
        "Gemm",
        "lm_head.gemm",
        &[&flat, weight],
        vec![attr_int("transB", 1)],
    );
    let out_shape = if c.last_only {
        b.ints("shape", &[-1, 1, arch.vocab_size as i64])
    } else {
        let vocab = b.ints("shape", &[arch.vocab_size as i64]);
        b.op(
            "Concat",
            "lm_head.out_shape",
            &[&c.ids_shape, &vocab],
            vec![attr_int("axis", 0)],
        )
    };
    b.op_to(
        "Reshape",
        "lm_head.reshape",
        &[&gemm, &out_shape],
        "logits",
        vec![],
    );
}

/// `x @ weight + bias` (Conv1D / transposed Linear layout `[in, out]`).
pub(super) fn linear(
    b: &mut Builder,
    p: &str,
    x: &str,
    weight: &str,
    bias: Option<&str>,
) -> String {
    let y = b.op("MatMul", p, &[x, weight], vec![]);
    match bias {
        Some(bias) => b.op("Add", &format!("{p}.bias"), &[&y, bias], vec![]),
        None => y,
    }
}
