//! The backend seam: [`BackendSpec`], the serde description of which runtime runs a job (it
//! crosses the agent link and is written in journals), and [`Backend`] (in [`crate::backend`]), what a caller may ask
//! of a runtime without matching on its kind (capabilities, validation, how it describes
//! itself). [`BackendSpec::backend`] is the one place that maps a spec to its implementation,
//! after hyperfine's `Executor` (one match on the kind) and candle's backends.

use serde::{Deserialize, Serialize};

use super::ort::OrtOptions;
use super::simulated::CostModelOptions;
use super::wgpu::WgpuOptions;
use super::Backend;

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

impl BackendSpec {
    /// The implementation behind this spec: the one `match` on the backend kinds.
    pub fn backend(&self) -> &dyn Backend {
        match self {
            BackendSpec::Ort(o) => o,
            BackendSpec::Wgpu(o) => o,
            BackendSpec::CostModel(o) => o,
        }
    }

    /// ONNX Runtime with `opts` (the backend quantized graphs and interleaved runs need).
    pub fn ort(opts: super::ort::OrtOptions) -> BackendSpec {
        BackendSpec::Ort(opts)
    }

    /// The ONNX Runtime settings of an `ort` spec, for work only ONNX Runtime does (the
    /// calibration passes of quantized variants); `None` for other backends.
    pub fn ort_options(&self) -> Option<&super::ort::OrtOptions> {
        match self {
            BackendSpec::Ort(o) => Some(o),
            _ => None,
        }
    }

    /// Our wgpu kernels with `opts`.
    pub fn wgpu(opts: super::wgpu::WgpuOptions) -> BackendSpec {
        BackendSpec::Wgpu(opts)
    }

    /// The cost model at `gflops` GFLOP/s, the backend a fleet dry run sends its boards.
    pub fn cost_model(gflops: f64) -> BackendSpec {
        BackendSpec::CostModel(super::simulated::CostModelOptions { gflops })
    }

    /// Short name for tables and CSV columns: `ort`, `wgpu` or `cost-model`.
    pub fn name(&self) -> &'static str {
        self.backend().name()
    }
}
