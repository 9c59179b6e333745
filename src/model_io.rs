//! What a decoder forward takes and gives beyond token ids, shared by every runtime (ONNX
//! Runtime, wgpu) and by the reference forward pass they are checked against: the key/value
//! cache and the output of one call.

use ndarray::{Array3, Array4};

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
