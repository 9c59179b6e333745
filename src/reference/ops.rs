//! The primitives of the reference forward pass, each as written in `transformers`: attention
//! over a cache with a causal mask, softmax, LayerNorm, RMSNorm, RoPE ("rotate_half"), GELU
//! (tanh, `gelu_new`) and SiLU, with f64 accumulation for sums; and the views of the parameters
//! both families read (`vec1`, `mat`, `embed`, `split_heads`).

use ndarray::{s, Array1, Array2, Array3, ArrayView1, ArrayView2};

use crate::weights::Weights;

/// Causal scaled dot-product attention for one batch row.
///
/// `q`: `[n_head, seq, hd]`; `k`, `v`: `[n_kv_head, past_len + seq, hd]`. Query head `h` uses
/// key/value head `h / (n_head / n_kv_head)` (HF `repeat_kv`). Query `t` sits at absolute
/// position `past_len + t` and sees keys `0..=past_len + t`. Returns the heads merged back to
/// `[seq, n_head * hd]` (head `h` in columns `h*hd..(h+1)*hd`).
pub(super) fn attention(
    q: &Array3<f32>,
    k: &Array3<f32>,
    v: &Array3<f32>,
    past_len: usize,
) -> Array2<f32> {
    let (nh, seq, hd) = q.dim();
    let (nkv, total, _) = k.dim();
    assert_eq!(total, past_len + seq);
    assert_eq!(nh % nkv, 0);
    let group = nh / nkv;
    let scale = 1.0 / (hd as f64).sqrt();
    // Contiguous copies so rows are plain slices (fast enough in debug builds).
    let (q, k, v) = (
        q.as_standard_layout(),
        k.as_standard_layout(),
        v.as_standard_layout(),
    );
    let row = |a: &ndarray::CowArray<'_, f32, ndarray::Ix3>, h: usize, t: usize| -> Vec<f32> {
        a.slice(s![h, t, ..]).to_vec()
    };
    let mut out = Array2::<f32>::zeros((seq, nh * hd));
    for h in 0..nh {
        let kvh = h / group;
        let keys: Vec<Vec<f32>> = (0..total).map(|j| row(&k, kvh, j)).collect();
        let values: Vec<Vec<f32>> = (0..total).map(|j| row(&v, kvh, j)).collect();
        for t in 0..seq {
            let query = row(&q, h, t);
            let pos = past_len + t;
            let scores: Vec<f64> = keys[..=pos]
                .iter()
                .map(|key| {
                    let dot: f64 = query
                        .iter()
                        .zip(key)
                        .map(|(&a, &b)| a as f64 * b as f64)
                        .sum();
                    dot * scale
                })
                .collect();
            let probs = softmax(&scores);
            let mut acc = vec![0f64; hd];
            for (pr, value) in probs.iter().zip(&values) {
                for (a, &x) in acc.iter_mut().zip(value) {
                    *a += pr * x as f64;
                }
            }
            for (c, a) in acc.into_iter().enumerate() {
                out[[t, h * hd + c]] = a as f32;
            }
        }
    }
    out
}

/// Numerically stable softmax (the maximum is subtracted first).
pub(super) fn softmax(x: &[f64]) -> Vec<f64> {
    let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = x.iter().map(|&v| (v - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

/// LayerNorm over the last axis with biased variance: `(x - mean) / sqrt(var + eps) * w + b`.
pub(super) fn layer_norm(
    x: &Array2<f32>,
    w: ArrayView1<f32>,
    b: ArrayView1<f32>,
    eps: f64,
) -> Array2<f32> {
    let mut out = Array2::<f32>::zeros(x.dim());
    for (row, mut o) in x.rows().into_iter().zip(out.rows_mut()) {
        let n = row.len() as f64;
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let inv = 1.0 / (var + eps).sqrt();
        for j in 0..row.len() {
            o[j] = ((row[j] as f64 - mean) * inv * w[j] as f64 + b[j] as f64) as f32;
        }
    }
    out
}

/// RMSNorm over the last axis: `x / sqrt(mean(x^2) + eps) * w`.
pub(super) fn rms_norm(x: &Array2<f32>, w: ArrayView1<f32>, eps: f64) -> Array2<f32> {
    let mut out = Array2::<f32>::zeros(x.dim());
    for (row, mut o) in x.rows().into_iter().zip(out.rows_mut()) {
        let ms = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / row.len() as f64;
        let inv = 1.0 / (ms + eps).sqrt();
        for j in 0..row.len() {
            o[j] = (row[j] as f64 * inv * w[j] as f64) as f32;
        }
    }
    out
}

/// Rotary position embedding, HF "rotate half" convention, in place on `x`: `[n, seq, hd]`,
/// where row `t` is at absolute position `past_len + t`.
///
/// `inv_freq[j] = rope_theta^(-2j/hd)` for `j < hd/2`; element `c` uses frequency `c mod hd/2`;
/// `x'[c] = x[c] cos + rot[c] sin` with `rot = concat(-x[hd/2..], x[..hd/2])`. Angles, cos and
/// sin are computed in f64 and cast to f32.
pub(super) fn rope(x: &mut Array3<f32>, past_len: usize, rope_theta: f64) {
    let (n, seq, hd) = x.dim();
    let half = hd / 2;
    let inv_freq: Vec<f64> = (0..half)
        .map(|j| 1.0 / rope_theta.powf((2 * j) as f64 / hd as f64))
        .collect();
    for t in 0..seq {
        let pos = (past_len + t) as f64;
        let cos: Vec<f32> = (0..hd)
            .map(|c| (pos * inv_freq[c % half]).cos() as f32)
            .collect();
        let sin: Vec<f32> = (0..hd)
            .map(|c| (pos * inv_freq[c % half]).sin() as f32)
            .collect();
        for h in 0..n {
            let orig: Array1<f32> = x.slice(s![h, t, ..]).to_owned();
            for c in 0..hd {
                let rot = if c < half {
                    -orig[c + half]
                } else {
                    orig[c - half]
                };
                x[[h, t, c]] = orig[c] * cos[c] + rot * sin[c];
            }
        }
    }
}

/// GPT-2's `gelu_new`: `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
pub(super) fn gelu_new(x: f32) -> f32 {
    let x = x as f64;
    let c = (2.0 / std::f64::consts::PI).sqrt();
    (0.5 * x * (1.0 + (c * (x + 0.044715 * x.powi(3))).tanh())) as f32
}

/// SiLU: `x / (1 + exp(-x))`.
pub(super) fn silu(x: f32) -> f32 {
    let x = x as f64;
    (x / (1.0 + (-x).exp())) as f32
}

/// A 1-D parameter.
pub(super) fn vec1<'a>(w: &'a Weights, name: &str) -> ArrayView1<'a, f32> {
    ArrayView1::from(&w.get(name).data[..])
}

/// A 2-D parameter in its stored (HF) layout.
pub(super) fn mat<'a>(w: &'a Weights, name: &str) -> ArrayView2<'a, f32> {
    let t = w.get(name);
    ArrayView2::from_shape((t.shape[0], t.shape[1]), &t.data)
        .expect("shape checked by Weights::check")
}

/// Rows of an embedding table, one per id.
pub(super) fn embed(table: ArrayView2<f32>, ids: &[usize]) -> Array2<f32> {
    Array2::from_shape_fn((ids.len(), table.ncols()), |(t, j)| table[[ids[t], j]])
}

/// One layer's keys/values for one batch row: `[n_kv_head, T, head_dim]` each.
pub(super) type RowKv = (Array3<f32>, Array3<f32>);
/// `[seq, n * hd]` -> `[n, seq, hd]`: head `j` is columns `j*hd..(j+1)*hd`.
pub(super) fn split_heads(x: ArrayView2<f32>, n: usize, hd: usize) -> Array3<f32> {
    assert_eq!(x.ncols(), n * hd);
    Array3::from_shape_fn((n, x.nrows(), hd), |(j, t, c)| x[[t, j * hd + c]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn rope_is_identity_at_zero_and_rotates_by_position() {
        let hd = 8;
        let x = Array3::from_shape_fn((2, 1, hd), |(h, _, c)| (h * hd + c) as f32 * 0.1 - 0.3);
        let mut y = x.clone();
        rope(&mut y, 0, 10_000.0);
        assert_eq!(x, y, "position 0 must be the identity");

        // Position 1, frequency index 0 (inv_freq 1): a rotation by 1 radian of (x[0], x[4]).
        let mut y = x.clone();
        rope(&mut y, 1, 10_000.0);
        let (c, s) = (1f32.cos(), 1f32.sin());
        assert!((y[[0, 0, 0]] - (x[[0, 0, 0]] * c - x[[0, 0, 4]] * s)).abs() < 1e-6);
        assert!((y[[0, 0, 4]] - (x[[0, 0, 4]] * c + x[[0, 0, 0]] * s)).abs() < 1e-6);
        // Frequency index 1: inv_freq = 10000^(-2/8) = 0.1.
        let (c, s) = (0.1f32.cos(), 0.1f32.sin());
        assert!((y[[1, 0, 1]] - (x[[1, 0, 1]] * c - x[[1, 0, 5]] * s)).abs() < 1e-6);
        assert!((y[[1, 0, 5]] - (x[[1, 0, 5]] * c + x[[1, 0, 1]] * s)).abs() < 1e-6);

        // Relative property: <rope(q, p), rope(k, p')> depends only on p - p'.
        let q = Array3::from_shape_fn((1, 1, hd), |(_, _, c)| (c as f32 * 0.7).sin());
        let k = Array3::from_shape_fn((1, 1, hd), |(_, _, c)| (c as f32 * 1.3).cos());
        let dot_at = |pq: usize, pk: usize| {
            let (mut a, mut b) = (q.clone(), k.clone());
            rope(&mut a, pq, 10_000.0);
            rope(&mut b, pk, 10_000.0);
            a.iter()
                .zip(b.iter())
                .map(|(x, y)| (x * y) as f64)
                .sum::<f64>()
        };
        assert!((dot_at(5, 2) - dot_at(13, 10)).abs() < 1e-5);
        assert!(
            (dot_at(5, 2) - dot_at(2, 5)).abs() > 1e-3,
            "rope must not be symmetric in p - p'"
        );
        // Row t of a multi-row call is at position past_len + t.
        let xs = Array3::from_shape_fn((1, 3, hd), |(_, t, c)| (t * hd + c) as f32 * 0.05);
        let mut all = xs.clone();
        rope(&mut all, 4, 10_000.0);
        let mut last = xs.slice(s![.., 2..3, ..]).to_owned();
        rope(&mut last, 6, 10_000.0);
        assert_eq!(all.slice(s![.., 2..3, ..]), last);
    }

    #[test]
    fn norms_activations_and_softmax_hand_values() {
        for c in [3.0f32, -0.5, 0.01] {
            let x = Array2::from_elem((1, 16), c);
            let y = rms_norm(&x, Array1::ones(16).view(), 1e-5);
            let want = c.signum() * (c * c / (c * c + 1e-5)).sqrt();
            for v in y.iter() {
                assert!((v - want).abs() < 1e-6, "rmsnorm({c}) = {v}, want {want}");
            }
            if c.abs() > 0.1 {
                assert!((y[[0, 0]].abs() - 1.0).abs() < 1e-4);
            }
        }
        let x = array![[1.0f32, 2.0, 3.0, 4.0]];
        let y = layer_norm(
            &x,
            array![1.0f32, 1.0, 2.0, 1.0].view(),
            array![0.0f32, 0.0, 0.0, 0.5].view(),
            1e-5,
        );
        let s = (1.25f64 + 1e-5).sqrt();
        let want = [-1.5 / s, -0.5 / s, 2.0 * 0.5 / s, 1.5 / s + 0.5];
        for (g, w) in y.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-6, "{g} vs {w}");
        }

        assert_eq!(gelu_new(0.0), 0.0);
        assert!((gelu_new(1.0) - 0.841_192).abs() < 1e-5);
        assert!((gelu_new(-1.0) + 0.158_808).abs() < 1e-5);
        assert_eq!(silu(0.0), 0.0);
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
        assert!((silu(-2.0) + 0.238_405_8).abs() < 1e-6);

        for row in [
            vec![0.0, 1.0, 2.0],
            vec![1000.0, 1001.0, -5.0, 999.0],
            vec![-3.0],
        ] {
            let p = softmax(&row);
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{p:?}");
            assert!(p.iter().all(|v| v.is_finite() && *v >= 0.0));
        }
        let p = softmax(&[0.0, 2f64.ln()]);
        assert!((p[0] - 1.0 / 3.0).abs() < 1e-12 && (p[1] - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn attention_with_zero_queries_averages_visible_values() {
        // Zero queries give equal scores, so each query averages the values it may see. Two
        // query heads share one kv head.
        let past_len = 2;
        let q = Array3::<f32>::zeros((2, 3, 2));
        let k = Array3::from_shape_fn((1, 5, 2), |(_, j, c)| (j + c) as f32);
        let v = Array3::from_shape_fn((1, 5, 2), |(_, j, c)| (10 * j + c) as f32);
        let out = attention(&q, &k, &v, past_len);
        assert_eq!(out.dim(), (3, 4));
        for t in 0..3 {
            let n = past_len + t + 1;
            let mean0 = (0..n).map(|j| 10.0 * j as f32).sum::<f32>() / n as f32;
            for h in 0..2 {
                assert!((out[[t, h * 2]] - mean0).abs() < 1e-5);
                assert!((out[[t, h * 2 + 1]] - (mean0 + 1.0)).abs() < 1e-5);
            }
        }
        // Scores are scaled by 1/sqrt(head_dim): with hd 2, q = (1, 0) and key 1 = (sqrt(2) ln 2, 0),
        // the scores are (0, ln 2), so the weights are (1/3, 2/3).
        let q = array![[[1.0f32, 0.0]]];
        let k = array![[[0.0f32, 0.0], [(2f32.sqrt() * 2f32.ln()), 0.0]]];
        let v = array![[[0.0f32, 0.0], [3.0, -6.0]]];
        let out = attention(&q, &k, &v, 1);
        assert!(
            (out[[0, 0]] - 2.0).abs() < 1e-5 && (out[[0, 1]] + 4.0).abs() < 1e-5,
            "{out}"
        );
        // A strong query on key 1 picks value 1 (score scale 1/sqrt(2)).
        let q = Array3::from_shape_fn((1, 1, 2), |_| 100.0f32);
        let k = array![[[0.0f32, 0.0], [1.0, 1.0], [0.0, 0.0]]];
        let v = array![[[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0]]];
        let out = attention(&q, &k, &v, 2);
        assert!((out[[0, 0]] - 3.0).abs() < 1e-5 && (out[[0, 1]] - 4.0).abs() < 1e-5);
    }
}
