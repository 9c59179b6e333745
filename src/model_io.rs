//! What a decoder forward takes and gives beyond token ids, shared by every runtime (ONNX
//! Runtime, wgpu) and by the reference forward pass they are checked against: the key/value
//! cache and the output of one call, and the [`Forward`] seam every one of them implements.

use anyhow::Result;
use ndarray::{Array2, Array3, Array4};

use crate::arch::Arch;

/// Key/value cache: per layer (key, value), each `[batch, n_kv_head[i], T, head_dim(i)]`.
///
/// Keys are stored after RoPE (as Hugging Face does); every layer has the same length `T`.
#[derive(Clone, Debug)]
pub struct KvCache {
    /// One `(key, value)` pair per layer.
    pub layers: Vec<(Array4<f32>, Array4<f32>)>,
}

impl KvCache {
    /// A cache holding no position (`T = 0`) for `batch` rows, shaped for `arch`.
    pub fn empty(arch: &Arch, batch: usize) -> KvCache {
        let layers = (0..arch.n_layer)
            .map(|i| {
                let shape = (batch, arch.n_kv_head[i], 0, arch.head_dim(i));
                (Array4::zeros(shape), Array4::zeros(shape))
            })
            .collect();
        KvCache { layers }
    }

    /// Number of cached positions `T` (0 for a cache without layers).
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, |(k, _)| k.dim().2)
    }

    /// True when no position is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Output of one forward call: logits and the grown cache.
#[derive(Clone, Debug)]
pub struct Output {
    /// Next-token logits, `[batch, seq, vocab_size]`.
    pub logits: Array3<f32>,
    /// The past cache with this call's keys/values appended (`T = past_len + seq`).
    pub present: KvCache,
}

/// One decoder forward call, `(input_ids, past) -> Output`: the seam shared by the plain-Rust
/// reference (`reference::Reference`), ONNX Runtime over the exported prefill/decode graphs
/// (`backend::ort_forward::OrtForward`) and wgpu (`backend::wgpu::model::GpuModel`), so that
/// one numerical check (`tests/forward.rs`, after candle's `test_device!`) runs over all of
/// them against the reference.
///
/// Contract: `input_ids` is `[batch, seq]` (ids in `0..vocab_size`); `past` is the cache of
/// the positions before them (`None` or an empty cache: a prefill); the new token `t` sits at
/// absolute position `past.len() + t`, attention is causal over absolute positions, and
/// [`Output::present`] is `past` with this call's keys (after RoPE) and values appended. Bad
/// input is an error, never a panic.
///
/// A new implementation (the trainer of issue 23, burn's forward over its own parameters,
/// next) plugs in by implementing this trait over an [`Arch`] and
/// [`Weights`](crate::weights::Weights) (exporting its trained parameters as `Weights`, or
/// loading them, so the reference can run the same model), then adding one line to the
/// implementation table of `tests/forward.rs` with its constructor and tolerance: it is then
/// checked like the others (prefill logits and cache, decode steps on its own cache, both
/// families, tiny, heterogeneous and grouped-query configs).
pub trait Forward {
    /// Short name of the implementation for messages (`reference`, `ort`, `wgpu`).
    fn name(&self) -> &str;

    /// Runs the decoder on `input_ids` after the positions held in `past` (see the trait doc).
    fn forward(&mut self, input_ids: &Array2<i64>, past: Option<&KvCache>) -> Result<Output>;
}
