//! The backend seam: [`BackendSpec`], the serde description of which runtime runs a job (it
//! crosses the agent link and is written in journals), and [`Backend`], what a caller may ask
//! of a runtime without matching on its kind (capabilities, validation, how it describes
//! itself). [`BackendSpec::backend`] is the one place that maps a spec to its implementation,
//! after hyperfine's `Executor` (one match on the kind) and candle's backends.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::ort::OrtOptions;
use super::simulated::CostModelOptions;
use super::wgpu::WgpuOptions;
use super::RuntimeInfo;

/// Which backend runs the job, with its settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum BackendSpec {
    /// ONNX Runtime.
    Ort(OrtOptions),
    /// Our WGSL kernels through wgpu.
    Wgpu(WgpuOptions),
    /// The analytic cost model: each run sleeps its modelled time; measures nothing
    /// ([`crate::backend::simulated`]).
    #[serde(rename = "cost-model")]
    CostModel(CostModelOptions),
}

/// What a caller needs from a backend, asked through [`BackendSpec::backend`] instead of a
/// `match` on the spec's variants. One impl per backend, on its options type, in its own file.
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
    fn validate(&self) -> Result<()> {
        Ok(())
    }

    /// The backend part of the terminal report's workload line, from the runtime that ran.
    fn describe(&self, runtime: &RuntimeInfo) -> String {
        format!("{} {}", runtime.name, runtime.version)
    }
}

impl BackendSpec {
    /// The implementation behind this spec: the one `match` on the backend kinds.
    pub fn backend(&self) -> &dyn Backend {
        match self {
            BackendSpec::Ort(o) => o,
            BackendSpec::Wgpu(o) => o,
            BackendSpec::CostModel(o) => o,
        }
    }

    /// Short name for tables and CSV columns: `ort`, `wgpu` or `cost-model`.
    pub fn name(&self) -> &'static str {
        self.backend().name()
    }
}
