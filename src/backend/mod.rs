//! Runtimes that execute a candidate, behind one trait so the measurement protocol, the search
//! and the remote agent never depend on a particular runtime.
//!
//! - [`ort`]: ONNX Runtime through the `ort` crate, library loaded at run time ([`ortlib`]).
//! - [`wgpu`]: our own WGSL compute shaders through wgpu (Vulkan, Metal, DX12, GL).
//! - [`simulated`]: the analytic cost model, each run sleeping its modelled time (fleet dry
//!   runs; measures nothing).
//!
//! Both time the same seeded inputs ([`crate::workload::inputs`]) under the same protocol.
//!
//! The seam: [`spec::BackendSpec`] says which backend runs a job (serde data, sent to agents
//! and written in journals); [`Backend`] is everything a caller asks of it, through
//! [`spec::BackendSpec::backend`], the one `match` on the kinds (hyperfine's `Executor`,
//! candle's backends): its name, whether it computes real numbers or runs quantized graphs,
//! validation and preflight, its terminal description, [`Backend::prepare`] (a job's model,
//! asked of the job as a [`ModelSource`], turned into the [`Runner`] the protocol times) and
//! [`Backend::scorer`] (`lts eval`'s [`Scorer`]). `tests/layering.rs` fails when a file
//! outside `backend/` and `cli/mod.rs` names a variant.
//!
//! A new backend touches:
//! 1. its own file or folder here (`backend/NAME.rs`): an options type (serde, `Default`), its
//!    [`Runner`], a [`Prepared`] that creates it, a [`Scorer`] if it can score text, and
//!    `impl Backend for` the options type;
//! 2. `pub mod NAME;` above;
//! 3. one variant in [`spec::BackendSpec`], one arm in [`spec::BackendSpec::backend`] and a
//!    constructor beside [`spec::BackendSpec::ort`];
//! 4. the `--backend` value that selects it: `MeasureBackend` / `SearchBackend` in `cli/mod.rs`
//!    and their one mapping (`MeasureBackend::spec`, `SearchBackend::evaluator`).
//!
//! The cost model ([`simulated`]) is such a backend: its file, the variant and the clap value.

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod onnx_model;
pub mod ort;
pub mod ort_forward;
pub mod ort_job;
pub mod ortlib;
pub mod simulated;
pub mod spec;
pub mod wgpu;

/// Greedy sampling: the index of the largest logit of `row` (the first one on ties), the token
/// a generate run feeds to its next step on every backend.
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (j, x) in row.iter().enumerate() {
        if *x > row[best] {
            best = j;
        }
    }
    best
}

/// Time to first token of every run of a generate runner (first run, warm-up and timed runs, in
/// order), shared with whoever built the runner; the timed runs are the last `timed_runs`
/// entries. Runners of single forwards leave it empty.
pub type FirstTokenLog = std::sync::Arc<std::sync::Mutex<Vec<Duration>>>;

/// A model prepared for repeated inference on fixed, seeded inputs: one call of [`Runner::run`]
/// is one inference, the unit the measurement protocol times.
pub trait Runner {
    /// Runs one inference and waits until it is complete. Returns the device-side duration when
    /// the backend measures it itself (GPU timestamp queries); `None` means the caller's
    /// monotonic wall clock around the call is the measurement.
    fn run(&mut self) -> anyhow::Result<Option<Duration>>;

    /// Bytes of GPU buffers the runner holds (weights, activations, caches), for backends that
    /// allocate device memory; `None` for host-memory runtimes (their peak is the process RSS).
    fn gpu_buffer_bytes(&self) -> Option<u64> {
        None
    }
}

/// What a caller needs from a backend, asked through [`BackendSpec::backend`] instead of a
/// `match` on the spec's variants. One impl per backend ([`spec::BackendSpec::backend`] maps a spec to it), on its options type, in its own file.
pub trait Backend {
    /// Short name for tables and CSV columns: `ort`, `wgpu` or `cost-model`.
    fn name(&self) -> &'static str;

    /// Whether runs compute real numbers (a timing and logits); `false` for the cost model,
    /// whose runs sleep their modelled time and measure nothing.
    fn computes(&self) -> bool {
        true
    }

    /// Whether the backend runs quantized ONNX graphs (`--quant` variants, interleaved
    /// measurement).
    fn supports_quantized(&self) -> bool {
        false
    }

    /// Checks the settings before anything runs (thread counts, rates, ...).
    fn validate(&self) -> anyhow::Result<()> {
        Ok(())
    }

    /// Checks, before a run folder is created, that the backend can run on this machine
    /// (the runtime library loads, the GPU adapter, precision and timer exist).
    fn preflight(&self) -> anyhow::Result<()> {
        Ok(())
    }

    /// The backend part of the terminal report's workload line, from the runtime that ran.
    fn describe(&self, runtime: &RuntimeInfo) -> String {
        format!("{} {}", runtime.name, runtime.version)
    }

    /// Builds what a job's runner needs from `source` (ONNX graphs, weights, or nothing) and
    /// refuses what this backend cannot run (a quantized job on a backend without
    /// [`Backend::supports_quantized`]); the runner itself is created by
    /// [`Prepared::runner`] inside the measurement protocol, which times its creation.
    fn prepare(&self, source: &dyn ModelSource) -> anyhow::Result<Box<dyn Prepared>>;

    /// A scorer for `lts eval`: every position's logits of windows of up to the workload's
    /// `seq_len` tokens from `source`'s model ([`ModelSource::onnx`] gives an all-logits
    /// prefill graph, [`ModelSource::weights`] the weights). Backends that compute nothing
    /// refuse.
    fn scorer(&self, source: &dyn ModelSource) -> anyhow::Result<Box<dyn Scorer>> {
        let _ = source;
        anyhow::bail!("perplexity needs a model that computes: use --backend ort or wgpu")
    }
}

/// Runs a model on one window of token ids from an empty cache (`lts eval`).
pub trait Scorer {
    /// Logits of every position for `ids` (one sequence), row-major `[ids.len(), vocab]`.
    fn logits(&mut self, ids: &[u32]) -> anyhow::Result<Vec<f32>>;

    /// The runtime that scores, recorded with the result.
    fn runtime(&self) -> RuntimeInfo;
}

/// What a backend may ask of a job to build its model, implemented by the job layer (which
/// knows the weights spec, exported files and quantization); each backend asks only for the
/// form it runs.
pub trait ModelSource {
    /// The candidate.
    fn arch(&self) -> &crate::arch::Arch;

    /// What one timed run computes.
    fn workload(&self) -> &crate::workload::Workload;

    /// The quantization scheme of the graphs to time; `None` for fp32.
    fn quant(&self) -> Option<&crate::quant::scheme::Scheme>;

    /// The ONNX graphs of the workload ([`onnx_model::OrtModel`]), their weights' source and
    /// the milliseconds spent building them.
    fn onnx(&self) -> anyhow::Result<Built<onnx_model::OrtModel>>;

    /// The fp32 weights, their source and the milliseconds spent loading them.
    fn weights(&self) -> anyhow::Result<Built<crate::weights::Weights>>;
}

/// A model built for a backend, with where its weights came from and how long it took.
pub struct Built<T> {
    /// The model (graphs or weights).
    pub model: T,
    /// Where the weights came from, in words (recorded with the result).
    pub source: String,
    /// Milliseconds spent generating or loading the weights and emitting graphs.
    pub emission_ms: f64,
}

/// A job's model on a backend, ready to create the runner the protocol times.
pub trait Prepared {
    /// Creates the runner (session creation, GPU upload) once; the protocol times this call.
    /// `first_token` receives a generate runner's time to first token of every run.
    fn runner(&mut self, first_token: FirstTokenLog) -> anyhow::Result<Box<dyn Runner>>;

    /// The runtime that runs it, recorded with the result.
    fn runtime(&self) -> RuntimeInfo;

    /// Where the weights came from, in words.
    fn weights_source(&self) -> String;

    /// Milliseconds spent building the model.
    fn emission_ms(&self) -> f64;

    /// Bytes of the model the runtime holds (graphs and parameter data, or GPU weight
    /// buffers: those are known once [`Prepared::runner`] has run).
    fn model_bytes(&self) -> u64;
}

/// Which runtime produced a number, recorded with every result.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RuntimeInfo {
    /// Runtime name, e.g. `onnxruntime`.
    pub name: String,
    /// Runtime version, e.g. `1.31.1`.
    pub version: String,
    /// Library file loaded, where the runtime is a shared library.
    pub library: Option<String>,
    /// Execution providers / adapters the loaded runtime offers.
    pub providers: Vec<String>,
}
