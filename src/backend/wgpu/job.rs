//! wgpu behind the backend seam: its [`Backend`] impl and a job's weights prepared for upload
//! ([`WgpuPrepared`]).

use std::sync::Arc;

use anyhow::{bail, Result};
use ndarray::Array2;

use super::model::{runtime_info, Capacity, GpuModel, WgpuRunner};
use super::{Gpu, GpuTimer, WgpuOptions};
use crate::arch::Arch;
use crate::backend::{
    Backend, Built, FirstTokenLog, ModelSource, Prepared, Runner, RuntimeInfo, Scorer,
};
use crate::weights::Weights;
use crate::workload::{Logits, Mode, Workload};

impl Backend for WgpuOptions {
    fn name(&self) -> &'static str {
        "wgpu"
    }

    fn preflight(&self) -> Result<()> {
        let gpu = Gpu::shared(self.adapter)?;
        gpu.resolve_precision(self.precision)?;
        gpu.resolve_timer(self.timer)?;
        Ok(())
    }

    fn describe(&self, runtime: &RuntimeInfo) -> String {
        format!(
            "{} {}: {}",
            runtime.name,
            runtime.version,
            runtime.providers.join("; ")
        )
    }

    fn prepare(&self, source: &dyn ModelSource) -> Result<Box<dyn Prepared>> {
        if let Some(q) = source.quant() {
            bail!("--quant {q}: quantized graphs run on ONNX Runtime only (--backend ort)");
        }
        let gpu = Gpu::shared(self.adapter)?;
        let precision = gpu.resolve_precision(self.precision)?;
        // A generation is timed by the wall clock: device timestamps cannot cover the
        // host-side argmax between steps.
        let timer = match source.workload().mode {
            Mode::Generate => GpuTimer::Wall,
            _ => gpu.resolve_timer(self.timer)?,
        };
        let weights = source.weights()?;
        Ok(Box::new(WgpuPrepared {
            runtime: runtime_info(&gpu, precision, timer),
            gpu,
            opts: self.clone(),
            weights,
            arch: source.arch().clone(),
            workload: source.workload().clone(),
            weight_bytes: 0,
        }))
    }

    fn scorer(&self, source: &dyn ModelSource) -> Result<Box<dyn Scorer>> {
        let gpu = Gpu::shared(self.adapter)?;
        let weights = source.weights()?.model;
        let ctx = source.workload().seq_len;
        let cap = Capacity {
            batch: 1,
            tokens: ctx,
            positions: ctx,
            logits: Logits::All,
        };
        let model = GpuModel::new(gpu, source.arch(), &weights, self.precision, cap)?;
        let runtime = runtime_info(model.gpu(), model.precision(), GpuTimer::Wall);
        Ok(Box::new(WgpuScorer { model, runtime }))
    }
}

/// Our WGSL kernels running a model on a wgpu adapter, every position's logits read back
/// (`lts eval`).
struct WgpuScorer {
    model: GpuModel,
    runtime: RuntimeInfo,
}

impl Scorer for WgpuScorer {
    fn logits(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        let input = Array2::from_shape_fn((1, ids.len()), |(_, j)| i64::from(ids[j]));
        self.model.upload(&input, None)?;
        self.model.submit_read_logits(1, ids.len(), 0)
    }

    fn runtime(&self) -> RuntimeInfo {
        self.runtime.clone()
    }
}

/// A job's fp32 weights on the host, uploaded to the GPU when the protocol creates the runner.
struct WgpuPrepared {
    gpu: Arc<Gpu>,
    opts: WgpuOptions,
    runtime: RuntimeInfo,
    weights: Built<Weights>,
    arch: Arch,
    workload: Workload,
    weight_bytes: u64,
}

impl Prepared for WgpuPrepared {
    fn runner(&mut self, first_token: FirstTokenLog) -> Result<Box<dyn Runner>> {
        let runner = WgpuRunner::new(
            self.gpu.clone(),
            &self.arch,
            &self.weights.model,
            &self.workload,
            &self.opts,
            first_token,
        )?;
        self.weight_bytes = runner.model().weight_bytes();
        Ok(Box::new(runner))
    }

    fn runtime(&self) -> RuntimeInfo {
        self.runtime.clone()
    }

    fn weights_source(&self) -> String {
        self.weights.source.clone()
    }

    fn emission_ms(&self) -> f64 {
        self.weights.emission_ms
    }

    fn model_bytes(&self) -> u64 {
        self.weight_bytes
    }
}
