//! What a parameter of an arch is (name, shape, initialisation), the callback the per-family
//! tables (`gpt2.rs`, `llama.rs`) push their parameters to, and the init scales they share.

use crate::arch::Arch;

/// How a parameter is initialised by [`Weights::random`](crate::weights::Weights::random).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Normal with mean 0 and this standard deviation.
    Normal(f32),
    /// All zeros (biases).
    Zeros,
    /// All ones (norm scales).
    Ones,
}

/// One expected parameter of an arch: HF name, HF shape, and its random initialisation.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    /// Hugging Face name.
    pub name: String,
    /// Hugging Face layout.
    pub shape: Vec<usize>,
    /// Initialisation used by [`Weights::random`](crate::weights::Weights::random).
    pub init: Init,
    /// True for token/position embeddings and an untied LM head (not counted by the proxy).
    pub embedding: bool,
}

/// Receives one parameter of [`param_specs`](crate::weights::param_specs): name, shape, init, whether it is an embedding.
pub(super) type Push<'a> = dyn FnMut(String, Vec<usize>, Init, bool) + 'a;

/// Standard deviations of the random init: weights, and residual output projections
/// (`0.02 / sqrt(2 n_layer)`).
pub(super) fn init_stds(arch: &Arch) -> (f32, f32) {
    let std = 0.02f32;
    (std, std / (2.0 * arch.n_layer as f32).sqrt())
}
