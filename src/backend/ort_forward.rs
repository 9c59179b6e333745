//! ONNX Runtime as a [`Forward`] implementation: the exported prefill and decode graphs of one
//! model (all-position logits), each in its own session, run as the timed runners run them
//! ([`infer`]). A call without a past cache (or with an empty one) goes to the prefill graph,
//! a call on a cache to the decode graph.

use anyhow::{Context, Result};
use ndarray::Array2;
use ort::session::Session;

use crate::arch::Arch;
use crate::backend::ort::{infer, Ort, OrtOptions};
use crate::graph::{self, GraphKind};
use crate::model_io::{Forward, KvCache, Output};
use crate::weights::Weights;
use crate::workload::Logits;

/// The prefill/decode session pair of one model under ONNX Runtime.
pub struct OrtForward {
    arch: Arch,
    prefill: Session,
    decode: Session,
    name: String,
}

impl OrtForward {
    /// Builds the prefill and decode graphs of `arch` with `weights` (all-position logits) and
    /// opens a session on each with `opts`.
    pub fn new(ort: &Ort, arch: &Arch, weights: &Weights, opts: &OrtOptions) -> Result<OrtForward> {
        let open = |kind: GraphKind| -> Result<Session> {
            let model = graph::build_model(arch, weights, kind, Logits::All)?;
            ort.session(&graph::to_bytes(&model), opts)
                .with_context(|| {
                    format!("cannot open an ONNX Runtime session on the {kind:?} graph")
                })
        };
        Ok(OrtForward {
            arch: arch.clone(),
            prefill: open(GraphKind::Prefill)?,
            decode: open(GraphKind::Decode)?,
            name: format!("ort ({:?})", opts.opt_level),
        })
    }
}

impl Forward for OrtForward {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&mut self, input_ids: &Array2<i64>, past: Option<&KvCache>) -> Result<Output> {
        match past {
            Some(cache) if !cache.is_empty() => {
                infer(&mut self.decode, &self.arch, input_ids, Some(cache))
            }
            _ => infer(&mut self.prefill, &self.arch, input_ids, None),
        }
    }
}
