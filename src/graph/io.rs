//! What a graph is named and exchanges: its kind, input and output names (HF optimum's decoder
//! I/O), the opset and IR version, the prefix of graph constants.

use std::fmt;

use crate::arch::Arch;

/// ONNX operator set of the default domain the graphs use (the first with `LayerNormalization`).
pub const OPSET: i64 = 17;

/// ONNX IR version written into models: 8 is the IR that goes with opset 17 (ONNX 1.12).
pub const IR_VERSION: i64 = 8;

/// Name prefix of initializers that are constants of the graph, not model parameters.
pub use crate::onnx::CONST_PREFIX;

/// Which of a candidate's two graphs to build (HF optimum's decoder pair).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GraphKind {
    /// Whole prompt at once, no cache input; returns the cache it fills (optimum's
    /// `decoder_model.onnx`).
    Prefill,
    /// New token(s) on top of a key/value cache (optimum's `decoder_with_past_model.onnx`).
    Decode,
}

impl GraphKind {
    /// Lowercase name, as in serde (`prefill` / `decode`).
    pub fn as_str(self) -> &'static str {
        match self {
            GraphKind::Prefill => "prefill",
            GraphKind::Decode => "decode",
        }
    }
}

impl fmt::Display for GraphKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Graph input names in order: `input_ids`, then for decode `past_key_values.{i}.key` and
/// `past_key_values.{i}.value` for each layer (optimum's naming and order).
pub fn input_names(arch: &Arch, kind: GraphKind) -> Vec<String> {
    let mut names = vec!["input_ids".to_string()];
    if kind == GraphKind::Decode {
        for i in 0..arch.n_layer {
            names.push(past_name(i, "key"));
            names.push(past_name(i, "value"));
        }
    }
    names
}

/// Graph output names in order: `logits`, then `present.{i}.key` and `present.{i}.value` for
/// each layer (optimum's naming and order; both kinds return the cache).
pub fn output_names(arch: &Arch, _kind: GraphKind) -> Vec<String> {
    let mut names = vec!["logits".to_string()];
    for i in 0..arch.n_layer {
        names.push(present_name(i, "key"));
        names.push(present_name(i, "value"));
    }
    names
}

/// Name of layer `layer`'s past cache input (`which` = `key` / `value`).
pub(crate) fn past_name(layer: usize, which: &str) -> String {
    format!("past_key_values.{layer}.{which}")
}

/// Name of layer `layer`'s present cache output.
pub(crate) fn present_name(layer: usize, which: &str) -> String {
    format!("present.{layer}.{which}")
}
