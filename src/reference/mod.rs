//! Plain-Rust reference forward pass: the ground truth the ONNX graphs are checked against.
//!
//! Written directly from the Hugging Face `transformers` math (`GPT2LMHeadModel`,
//! `LlamaForCausalLM`), independently of the graph builder, for clarity rather than speed: it
//! processes one batch row at a time, uses `ndarray` `dot` (f32) for the weight matmuls and f64
//! accumulation for norms, attention dot products and softmax sums. It is meant for tiny configs
//! (a few layers, `d_model` in the hundreds, short sequences).
//!
//! Semantics shared by both families:
//! - the new token `t` of a call sits at absolute position `past_len + t`;
//! - attention is causal over absolute positions: a query at position `p` sees keys `0..=p`,
//!   the cached ones included;
//! - the cache holds keys after RoPE (Llama) and values, `[batch, n_kv_head[i], T, head_dim(i)]`
//!   per layer, and [`Output::present`] is the past cache with this call's keys/values appended.

use anyhow::{bail, Result};
use ndarray::{s, Array2, Array3, Array4, ArrayView3};

mod gpt2;
mod llama;
mod ops;

use gpt2::gpt2_row;
use llama::llama_row;

use crate::arch::{Arch, Family};
use crate::model_io::{Forward, KvCache, Output};
use crate::weights::Weights;

/// The reference forward pass of one model as a [`Forward`] implementation: the ground truth
/// the other implementations are checked against.
#[derive(Clone, Copy, Debug)]
pub struct Reference<'a> {
    /// The architecture.
    pub arch: &'a Arch,
    /// Its parameters.
    pub weights: &'a Weights,
}

impl Forward for Reference<'_> {
    fn name(&self) -> &str {
        "reference"
    }

    fn forward(&mut self, input_ids: &Array2<i64>, past: Option<&KvCache>) -> Result<Output> {
        forward(self.arch, self.weights, input_ids, past)
    }
}

/// Runs the decoder on `input_ids` (`[batch, seq]`) after the positions held in `past`.
///
/// Errors (never panics) when the input is empty, a token id is outside `0..vocab_size`, the
/// cache does not fit the arch or the batch, GPT-2's learned position table is too short for
/// `past_len + seq`, the arch breaks one of its rules, or the weights are missing a tensor or
/// have a wrong shape. (Llama has no such position limit: RoPE is computed for any position.)
pub fn forward(
    arch: &Arch,
    weights: &Weights,
    input_ids: &Array2<i64>,
    past: Option<&KvCache>,
) -> Result<Output> {
    arch.validate()?;
    weights.check(arch)?;
    let (batch, seq) = input_ids.dim();
    if batch == 0 || seq == 0 {
        bail!("empty input: input_ids has shape [{batch}, {seq}]; need at least one row and one token");
    }
    for (&id, (b, t)) in input_ids.iter().zip(ndarray::indices((batch, seq))) {
        if id < 0 || id as u64 >= arch.vocab_size as u64 {
            bail!(
                "token id {id} (row {b}, position {t}) is out of range for vocab_size {}",
                arch.vocab_size
            );
        }
    }
    let empty;
    let past = match past {
        Some(p) => {
            check_cache(arch, p, batch)?;
            p
        }
        None => {
            empty = KvCache::empty(arch, batch);
            &empty
        }
    };
    let past_len = past.len();
    if arch
        .position_limit()
        .is_some_and(|limit| past_len + seq > limit)
    {
        bail!(
            "past_len {past_len} + seq {seq} = {} positions exceeds n_positions {} (gpt2 has a learned position table of that many rows)",
            past_len + seq,
            arch.n_positions
        );
    }

    let mut logits = Array3::<f32>::zeros((batch, seq, arch.vocab_size));
    let mut present = KvCache {
        layers: (0..arch.n_layer)
            .map(|i| {
                let shape = (batch, arch.n_kv_head[i], past_len + seq, arch.head_dim(i));
                (Array4::zeros(shape), Array4::zeros(shape))
            })
            .collect(),
    };
    for b in 0..batch {
        let ids: Vec<usize> = input_ids.row(b).iter().map(|&id| id as usize).collect();
        let row_past: Vec<(ArrayView3<f32>, ArrayView3<f32>)> = past
            .layers
            .iter()
            .map(|(k, v)| (k.slice(s![b, .., .., ..]), v.slice(s![b, .., .., ..])))
            .collect();
        let (row_logits, row_kv) = match arch.family {
            Family::Gpt2 => gpt2_row(arch, weights, &ids, past_len, &row_past),
            Family::Llama => llama_row(arch, weights, &ids, past_len, &row_past),
        };
        logits.slice_mut(s![b, .., ..]).assign(&row_logits);
        for ((pk, pv), (k, v)) in present.layers.iter_mut().zip(row_kv) {
            pk.slice_mut(s![b, .., .., ..]).assign(&k);
            pv.slice_mut(s![b, .., .., ..]).assign(&v);
        }
    }
    Ok(Output { logits, present })
}

/// The cache has one layer per block, and every key/value is `[batch, n_kv_head[i], T,
/// head_dim(i)]` with one common `T`.
fn check_cache(arch: &Arch, cache: &KvCache, batch: usize) -> Result<()> {
    if cache.layers.len() != arch.n_layer {
        bail!(
            "past cache has {} layers but the arch has n_layer {}",
            cache.layers.len(),
            arch.n_layer
        );
    }
    let t = cache.len();
    for (i, (k, v)) in cache.layers.iter().enumerate() {
        let want = [batch, arch.n_kv_head[i], t, arch.head_dim(i)];
        for (what, a) in [("key", k), ("value", v)] {
            if a.shape() != want {
                bail!(
                    "past cache layer {i} {what} has shape {:?} but [batch {batch}, n_kv_head {}, T {t}, head_dim {}] = {:?} is needed",
                    a.shape(),
                    arch.n_kv_head[i],
                    arch.head_dim(i),
                    want
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;
    use ndarray::{concatenate, Axis};

    /// Deterministic token ids in `0..vocab`.
    fn ids(batch: usize, seq: usize, vocab: usize, salt: usize) -> Array2<i64> {
        Array2::from_shape_fn((batch, seq), |(b, t)| {
            ((b * 31 + t * 17 + salt * 7 + 3) % vocab) as i64
        })
    }

    fn max_diff<D: ndarray::Dimension>(
        a: &ndarray::Array<f32, D>,
        b: &ndarray::Array<f32, D>,
    ) -> f32 {
        assert_eq!(a.shape(), b.shape());
        a.iter()
            .zip(b.iter())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    fn assert_cache_close(a: &KvCache, b: &KvCache, tol: f32, what: &str) {
        assert_eq!(a.layers.len(), b.layers.len(), "{what}");
        for (i, ((ka, va), (kb, vb))) in a.layers.iter().zip(&b.layers).enumerate() {
            assert!(
                max_diff(ka, kb) <= tol,
                "{what}: layer {i} key differs by {}",
                max_diff(ka, kb)
            );
            assert!(
                max_diff(va, vb) <= tol,
                "{what}: layer {i} value differs by {}",
                max_diff(va, vb)
            );
        }
    }

    fn presets() -> Vec<(Arch, Weights)> {
        ["gpt2-tiny", "llama-tiny"]
            .iter()
            .map(|n| {
                let arch = Arch::preset(n).unwrap();
                let w = Weights::random(&arch, 11);
                (arch, w)
            })
            .collect()
    }

    fn set(w: &mut Weights, name: &str, f: impl Fn(usize) -> f32) {
        let t = w
            .tensors
            .get_mut(name)
            .unwrap_or_else(|| panic!("no {name}"));
        for (i, v) in t.data.iter_mut().enumerate() {
            *v = f(i);
        }
    }

    /// Random weights with every bias and norm weight moved off 0 / 1, so they matter. (The
    /// single-stream generator: the HF numbers below were computed from its values.)
    fn hf_fixture(arch: &Arch) -> Weights {
        let mut w = Weights::random_single_stream(arch, 11);
        for (n, t) in w.tensors.iter_mut() {
            if n.ends_with("bias") || n.contains("norm") || n.contains("ln_") {
                for (i, v) in t.data.iter_mut().enumerate() {
                    *v += 0.05 * (((i * 7 + n.len()) % 13) as f32 - 6.0) / 6.0;
                }
            }
        }
        w
    }

    /// Logits `[b][t][cols]` computed by Hugging Face transformers 5.24.0 (torch 2.15.0, eager
    /// attention, f32) from `hf_fixture` weights saved with `Weights::save_safetensors`. The
    /// presets have per-layer head counts, which one HF config cannot express, so the HF model
    /// was `GPT2LMHeadModel` / `LlamaForCausalLM` with block `i` replaced by a `GPT2Block` /
    /// `LlamaDecoderLayer` built from a config copy holding layer `i`'s n_head, n_kv_head,
    /// d_inner and head_dim (and, for Llama, a `LlamaRotaryEmbedding` of that head_dim).
    /// Full logits and caches agreed within 1.2e-7 at the time.
    fn check_against_hf(preset: &str, cols: [usize; 4], want: [[[f64; 4]; 5]; 2]) {
        let arch = Arch::preset(preset).unwrap();
        let w = hf_fixture(&arch);
        let x = Array2::from_shape_fn((2, 5), |(b, t)| {
            ((b * 131 + t * 37 + 5) % arch.vocab_size) as i64
        });
        let out = forward(&arch, &w, &x, None).unwrap();
        for (b, rows) in want.iter().enumerate() {
            for (t, row) in rows.iter().enumerate() {
                for (&col, &hf) in cols.iter().zip(row) {
                    let got = out.logits[[b, t, col]] as f64;
                    assert!(
                        (got - hf).abs() < 1e-5,
                        "{preset} [{b}, {t}, {col}]: {got} vs HF {hf}"
                    );
                }
            }
        }
    }

    #[test]
    fn gpt2_matches_hugging_face_numbers() {
        check_against_hf(
            "gpt2-tiny",
            [0, 1, 50, 96],
            [
                [
                    [9.7468592e-02, -2.5400642e-01, 6.7778520e-02, 9.3351193e-02],
                    [7.7170804e-02, -2.2337991e-01, -2.4263443e-02, 7.8450263e-02],
                    [3.3940498e-02, -2.0950137e-01, 1.3466519e-02, 7.3602855e-02],
                    [7.4475609e-02, -2.4210970e-01, 7.3940583e-02, 1.2535039e-01],
                    [1.3818036e-01, -2.6317626e-01, 8.2524873e-02, 7.8149199e-02],
                ],
                [
                    [8.6015016e-02, -2.6657158e-01, 4.6510123e-02, 7.5714134e-02],
                    [1.0219453e-01, -2.1337268e-01, 3.4235504e-02, 7.2129205e-02],
                    [8.9606568e-02, -2.4895740e-01, 1.7161105e-02, 3.4074228e-02],
                    [6.4794861e-02, -2.2994083e-01, 5.6077708e-02, 7.8615487e-02],
                    [1.1008272e-01, -2.4461418e-01, 7.6967850e-02, 1.0978966e-01],
                ],
            ],
        );
    }

    #[test]
    fn llama_matches_hugging_face_numbers() {
        check_against_hf(
            "llama-tiny",
            [0, 1, 50, 100],
            [
                [
                    [1.0268611e-01, -3.9280027e-02, -6.2967469e-03, 1.9416170e-01],
                    [-1.0066560e-01, 1.2993699e-01, 2.0683552e-01, 1.2806824e-01],
                    [1.4474310e-02, -7.9178408e-02, -1.2091660e-01, 4.4472497e-02],
                    [-1.5115233e-01, 1.2449718e-01, 1.1417110e-02, 5.8208335e-02],
                    [-7.7527612e-02, 9.1556832e-02, 7.5428203e-02, -7.4812010e-02],
                ],
                [
                    [3.0868771e-02, -1.1916070e-01, -4.1772768e-02, 1.2105784e-02],
                    [1.8607458e-02, 1.7340890e-01, -1.9027233e-01, -1.1725754e-02],
                    [
                        -5.5998012e-02,
                        -7.4561447e-02,
                        5.5928096e-02,
                        -5.8350693e-02,
                    ],
                    [3.1262945e-02, 6.4459041e-02, -2.0131981e-02, -4.0877491e-02],
                    [
                        -4.9148038e-02,
                        8.6426437e-03,
                        -2.6697624e-02,
                        -1.5960178e-01,
                    ],
                ],
            ],
        );
    }

    #[test]
    fn decode_with_cache_matches_full_sequence() {
        for (arch, w) in presets() {
            let x = ids(2, 7, arch.vocab_size, 1);
            let full = forward(&arch, &w, &x, None).unwrap();
            assert_eq!(full.logits.dim(), (2, 7, arch.vocab_size));
            assert_eq!(full.present.len(), 7);
            for (i, (k, v)) in full.present.layers.iter().enumerate() {
                assert_eq!(k.dim(), (2, arch.n_kv_head[i], 7, arch.head_dim(i)));
                assert_eq!(v.dim(), k.dim());
            }
            // Logits must not be trivially small or constant, or the comparisons prove nothing.
            let spread = full.logits.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(
                spread > 1e-2,
                "{}: logits too small ({spread})",
                arch.family
            );

            // 4 + 3 with the cache.
            let first = forward(&arch, &w, &x.slice(s![.., 0..4]).to_owned(), None).unwrap();
            assert_eq!(first.present.len(), 4);
            let second = forward(
                &arch,
                &w,
                &x.slice(s![.., 4..7]).to_owned(),
                Some(&first.present),
            )
            .unwrap();
            let joined =
                concatenate(Axis(1), &[first.logits.view(), second.logits.view()]).unwrap();
            let d = max_diff(&joined, &full.logits);
            assert!(d <= 1e-5, "{}: 4+3 logits differ by {d}", arch.family);
            assert_cache_close(&second.present, &full.present, 1e-5, "4+3 present");

            // Token by token.
            let mut cache: Option<KvCache> = None;
            let mut steps = Vec::new();
            for t in 0..7 {
                let out = forward(
                    &arch,
                    &w,
                    &x.slice(s![.., t..t + 1]).to_owned(),
                    cache.as_ref(),
                )
                .unwrap();
                steps.push(out.logits);
                cache = Some(out.present);
            }
            let views: Vec<_> = steps.iter().map(|a| a.view()).collect();
            let joined = concatenate(Axis(1), &views).unwrap();
            let d = max_diff(&joined, &full.logits);
            assert!(
                d <= 1e-5,
                "{}: token-by-token logits differ by {d}",
                arch.family
            );
            assert_cache_close(cache.as_ref().unwrap(), &full.present, 1e-5, "step present");
        }
    }

    #[test]
    fn batch_rows_are_independent() {
        for (arch, w) in presets() {
            let x = ids(2, 5, arch.vocab_size, 2);
            let both = forward(&arch, &w, &x, None).unwrap();
            let y = ids(2, 2, arch.vocab_size, 3);
            let both_next = forward(&arch, &w, &y, Some(&both.present)).unwrap();
            for b in 0..2 {
                let alone =
                    forward(&arch, &w, &x.slice(s![b..b + 1, ..]).to_owned(), None).unwrap();
                let d = max_diff(
                    &alone.logits.index_axis(Axis(0), 0).to_owned(),
                    &both.logits.index_axis(Axis(0), b).to_owned(),
                );
                assert!(d <= 1e-6, "{} row {b}: logits differ by {d}", arch.family);
                for ((ka, va), (kb, vb)) in alone.present.layers.iter().zip(&both.present.layers) {
                    let row = |a: &Array4<f32>| a.slice(s![b..b + 1, .., .., ..]).to_owned();
                    assert!(max_diff(ka, &row(kb)) <= 1e-6 && max_diff(va, &row(vb)) <= 1e-6);
                }
                let alone_next = forward(
                    &arch,
                    &w,
                    &y.slice(s![b..b + 1, ..]).to_owned(),
                    Some(&alone.present),
                )
                .unwrap();
                let d = max_diff(
                    &alone_next.logits.index_axis(Axis(0), 0).to_owned(),
                    &both_next.logits.index_axis(Axis(0), b).to_owned(),
                );
                assert!(
                    d <= 1e-6,
                    "{} row {b} with cache: logits differ by {d}",
                    arch.family
                );
            }
            // The two rows really are different inputs.
            assert!(
                max_diff(
                    &both.logits.index_axis(Axis(0), 0).to_owned(),
                    &both.logits.index_axis(Axis(0), 1).to_owned()
                ) > 1e-4
            );
        }
    }

    #[test]
    fn changing_a_later_token_leaves_earlier_logits_alone() {
        for (arch, w) in presets() {
            let x = ids(2, 7, arch.vocab_size, 4);
            let mut x2 = x.clone();
            x2[[0, 5]] = (x[[0, 5]] + 1) % arch.vocab_size as i64;
            x2[[1, 5]] = (x[[1, 5]] + 2) % arch.vocab_size as i64;
            let a = forward(&arch, &w, &x, None).unwrap().logits;
            let b = forward(&arch, &w, &x2, None).unwrap().logits;
            assert_eq!(
                a.slice(s![.., 0..5, ..]),
                b.slice(s![.., 0..5, ..]),
                "{}",
                arch.family
            );
            for t in 5..7 {
                let d = max_diff(
                    &a.slice(s![.., t, ..]).to_owned(),
                    &b.slice(s![.., t, ..]).to_owned(),
                );
                assert!(
                    d > 1e-6,
                    "{}: position {t} did not react to token 5",
                    arch.family
                );
            }
        }
    }

    #[test]
    fn gpt2_with_zero_blocks_gives_layernormed_embedding_dot_products() {
        let arch = Arch::preset("gpt2-tiny").unwrap();
        let mut w = Weights::random(&arch, 5);
        let names: Vec<String> = w.tensors.keys().cloned().collect();
        for n in &names {
            if n.ends_with("wte.weight") || n.ends_with("wpe.weight") {
                continue;
            }
            let one = n.ends_with("ln_1.weight")
                || n.ends_with("ln_2.weight")
                || n.ends_with("ln_f.weight");
            set(&mut w, n, |_| if one { 1.0 } else { 0.0 });
        }
        let (v, d) = (arch.vocab_size, arch.d_model);
        let wte = &w.get("transformer.wte.weight").data;
        let wpe = &w.get("transformer.wpe.weight").data;
        let x = array![[5i64, 0, 96, 42]];
        let past_len = 3; // exercise the position offset too
        let warm = forward(&arch, &w, &array![[1i64, 2, 3]], None).unwrap();
        let out = forward(&arch, &w, &x, Some(&warm.present)).unwrap();
        for t in 0..4 {
            let id = x[[0, t]] as usize;
            let h: Vec<f64> = (0..d)
                .map(|j| wte[id * d + j] as f64 + wpe[(past_len + t) * d + j] as f64)
                .collect();
            let mean = h.iter().sum::<f64>() / d as f64;
            let var = h.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / d as f64;
            let ln: Vec<f64> = h.iter().map(|x| (x - mean) / (var + 1e-5).sqrt()).collect();
            for tok in 0..v {
                let want: f64 = (0..d).map(|j| ln[j] * wte[tok * d + j] as f64).sum();
                let got = out.logits[[0, t, tok]] as f64;
                assert!(
                    (got - want).abs() < 1e-5,
                    "t {t} tok {tok}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn llama_with_zero_blocks_gives_rmsnormed_embedding_times_head() {
        let arch = Arch::preset("llama-tiny").unwrap();
        let mut w = Weights::random(&arch, 6);
        let names: Vec<String> = w.tensors.keys().cloned().collect();
        for n in &names {
            if n == "model.embed_tokens.weight" || n == "lm_head.weight" {
                continue;
            }
            let one = n.ends_with("norm.weight");
            set(&mut w, n, |_| if one { 1.0 } else { 0.0 });
        }
        let (v, d) = (arch.vocab_size, arch.d_model);
        let emb = &w.get("model.embed_tokens.weight").data;
        let head = &w.get("lm_head.weight").data;
        let x = array![[7i64, 100, 0]];
        let out = forward(&arch, &w, &x, None).unwrap();
        for t in 0..3 {
            let id = x[[0, t]] as usize;
            let e: Vec<f64> = (0..d).map(|j| emb[id * d + j] as f64).collect();
            let rms = (e.iter().map(|x| x * x).sum::<f64>() / d as f64 + 1e-5).sqrt();
            for tok in 0..v {
                let want: f64 = (0..d).map(|j| e[j] / rms * head[tok * d + j] as f64).sum();
                let got = out.logits[[0, t, tok]] as f64;
                assert!(
                    (got - want).abs() < 1e-5,
                    "t {t} tok {tok}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn grouped_query_attention_equals_mha_with_repeated_kv_heads() {
        // llama-tiny has n_head [4, 2], n_kv_head [2, 1]. The same model written as MHA, with
        // each kv head's k/v rows copied to the query heads that share it (HF repeat_kv), must
        // give the same logits.
        let gqa = Arch::preset("llama-tiny").unwrap();
        let w = Weights::random(&gqa, 9);
        let mut mha = gqa.clone();
        mha.n_kv_head = mha.n_head.clone();
        mha.validate().unwrap();
        let mut w2 = w.clone();
        for i in 0..gqa.n_layer {
            let (hd, d) = (gqa.head_dim(i), gqa.d_model);
            let group = gqa.n_head[i] / gqa.n_kv_head[i];
            for proj in ["k_proj", "v_proj"] {
                let name = format!("model.layers.{i}.self_attn.{proj}.weight");
                let src = &w.get(&name).data;
                let mut data = Vec::new();
                for h in 0..mha.n_head[i] {
                    let kv = h / group;
                    data.extend_from_slice(&src[kv * hd * d..(kv + 1) * hd * d]);
                }
                w2.tensors.insert(
                    name,
                    crate::weights::Tensor {
                        shape: vec![mha.n_head[i] * hd, d],
                        data,
                    },
                );
            }
        }
        let x = ids(2, 6, gqa.vocab_size, 5);
        let a = forward(&gqa, &w, &x, None).unwrap();
        let b = forward(&mha, &w2, &x, None).unwrap();
        let d = max_diff(&a.logits, &b.logits);
        assert!(d <= 1e-5, "GQA vs repeated-kv MHA logits differ by {d}");
        // And the GQA cache really is the smaller one.
        assert_eq!(a.present.layers[0].0.dim().1, 2);
        assert_eq!(b.present.layers[0].0.dim().1, 4);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let arch = Arch::preset("gpt2-tiny").unwrap();
        let w = Weights::random(&arch, 1);
        let e = forward(&arch, &w, &array![[1i64, 97, 2]], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("97") && e.contains("vocab_size 97"), "{e}");
        let e = forward(&arch, &w, &array![[-4i64]], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("-4"), "{e}");
        let e = forward(&arch, &w, &Array2::<i64>::zeros((1, 0)), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty"), "{e}");
        let e = forward(&arch, &w, &Array2::<i64>::zeros((0, 3)), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty"), "{e}");

        // Cache built for another batch, layer count, or head layout.
        let out = forward(&arch, &w, &ids(1, 3, 97, 0), None).unwrap();
        let e = forward(&arch, &w, &ids(2, 1, 97, 0), Some(&out.present))
            .unwrap_err()
            .to_string();
        assert!(e.contains("layer 0") && e.contains("batch 2"), "{e}");
        let mut short = out.present.clone();
        short.layers.pop();
        let e = forward(&arch, &w, &ids(1, 1, 97, 0), Some(&short))
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 layers") && e.contains("n_layer 2"), "{e}");
        let mut bad = out.present.clone();
        bad.layers[1].1 = Array4::zeros((1, 2, 3, 8));
        let e = forward(&arch, &w, &ids(1, 1, 97, 0), Some(&bad))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("layer 1 value") && e.contains("[1, 2, 3, 8]"),
            "{e}"
        );
        let mut ragged = out.present.clone();
        ragged.layers[1].0 = Array4::zeros((1, 2, 2, 16));
        assert!(forward(&arch, &w, &ids(1, 1, 97, 0), Some(&ragged)).is_err());
        let llama = Arch::preset("llama-tiny").unwrap();
        let e = forward(
            &llama,
            &Weights::random(&llama, 1),
            &ids(1, 1, 97, 0),
            Some(&out.present),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("layer 0 key"), "{e}");

        // Learned position table of 64 rows.
        let long = forward(&arch, &w, &ids(1, 62, 97, 0), None).unwrap();
        assert!(forward(&arch, &w, &ids(1, 2, 97, 0), Some(&long.present)).is_ok());
        let e = forward(&arch, &w, &ids(1, 3, 97, 0), Some(&long.present))
            .unwrap_err()
            .to_string();
        assert!(e.contains("n_positions 64"), "{e}");
        assert!(forward(&arch, &w, &ids(1, 65, 97, 0), None).is_err());

        // Weights of another arch.
        let e = forward(&arch, &Weights::random(&llama, 1), &ids(1, 1, 97, 0), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("transformer.wte.weight"), "{e}");
    }

    #[test]
    fn empty_cache_has_the_arch_shape() {
        let arch = Arch::preset("llama-tiny").unwrap();
        let c = KvCache::empty(&arch, 3);
        assert_eq!(c.len(), 0);
        assert!(c.is_empty());
        assert_eq!(c.layers.len(), 2);
        assert_eq!(c.layers[1].0.dim(), (3, 1, 0, 16));
        // An explicit empty cache behaves like no cache.
        let w = Weights::random(&arch, 2);
        let x = ids(3, 4, arch.vocab_size, 0);
        let a = forward(&arch, &w, &x, None).unwrap();
        let b = forward(&arch, &w, &x, Some(&c)).unwrap();
        assert_eq!(a.logits, b.logits);
    }
}
