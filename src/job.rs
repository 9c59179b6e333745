//! The job description, plain serde data a host can send to a board: which arch, which weights,
//! which workload, which protocol, which backend; and [`execute`], which turns one job into one
//! [`JobResult`].

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::arch::{Arch, ParamCounts, DEFAULT_MAX_PARAMS};
use crate::backend::ort::{Ort, OrtOptions, OrtRunner};
use crate::backend::wgpu::model::{runtime_info, WgpuRunner};
use crate::backend::wgpu::{Gpu, WgpuOptions};
use crate::backend::{Runner, RuntimeInfo};
use crate::graph::{self, GraphKind};
use crate::measure::{self, Measurement, Protocol};
use crate::thermal::{self, ThermalRecord, ThermalSettings};
use crate::weights::Weights;

/// Which graph is timed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Process a prompt of `seq_len` tokens at once (LTS's latency: batch 1, seq 192).
    Prefill,
    /// Generate one token with a KV cache already holding `seq_len` positions.
    Decode,
}

impl Mode {
    /// The ONNX graph this mode runs.
    pub fn graph_kind(self) -> GraphKind {
        match self {
            Mode::Prefill => GraphKind::Prefill,
            Mode::Decode => GraphKind::Decode,
        }
    }
}

/// The inputs of one timed inference.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Prefill or decode.
    pub mode: Mode,
    /// Sequences per run.
    pub batch: usize,
    /// Prefill: prompt tokens. Decode: positions already in the KV cache (one new token).
    pub seq_len: usize,
    /// Seed of the generated inputs (token ids, cache contents).
    pub seed: u64,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            mode: Mode::Prefill,
            batch: 1,
            seq_len: 192,
            seed: 0,
        }
    }
}

impl Workload {
    /// Checks the workload fits the arch (positions) and is non-empty.
    pub fn check(&self, arch: &Arch) -> Result<()> {
        if self.batch == 0 || self.seq_len == 0 {
            bail!("--batch and --seq-len must be >= 1");
        }
        let positions = match self.mode {
            Mode::Prefill => self.seq_len,
            Mode::Decode => self.seq_len + 1,
        };
        if positions > arch.n_positions {
            bail!(
                "the workload needs {positions} positions but the arch has n_positions = {}; lower --seq-len or raise n_positions",
                arch.n_positions
            );
        }
        Ok(())
    }

    /// Forward FLOPs of one run.
    pub fn flops(&self, arch: &Arch) -> u64 {
        let per_seq = match self.mode {
            Mode::Prefill => arch.prefill_flops(self.seq_len),
            Mode::Decode => arch.flops_per_token(self.seq_len + 1),
        };
        per_seq * self.batch as u64
    }
}

/// Where the weights of the timed model come from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum WeightsSpec {
    /// Seeded random initialisation (GPT-2 scheme, see [`crate::weights::param_specs`]).
    Random {
        /// RNG seed.
        seed: u64,
    },
    /// A Hugging Face safetensors checkpoint.
    Safetensors {
        /// Path of `model.safetensors`.
        path: PathBuf,
    },
    /// An ONNX file written by `lts export` (its embedded arch must equal the job's arch).
    Onnx {
        /// Path of the `.onnx` file.
        path: PathBuf,
    },
}

/// Which backend runs the job, with its settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum BackendSpec {
    /// ONNX Runtime.
    Ort(OrtOptions),
    /// Our WGSL kernels through wgpu.
    Wgpu(WgpuOptions),
}

impl BackendSpec {
    /// Short name for tables and CSV columns: `ort` or `wgpu`.
    pub fn name(&self) -> &'static str {
        match self {
            BackendSpec::Ort(_) => "ort",
            BackendSpec::Wgpu(_) => "wgpu",
        }
    }
}

/// One measurement job.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Job {
    /// The candidate.
    pub arch: Arch,
    /// Its weights.
    pub weights: WeightsSpec,
    /// What one timed run computes.
    pub workload: Workload,
    /// When to stop timing and how to summarise.
    pub protocol: Protocol,
    /// Which runtime, with which settings.
    pub backend: BackendSpec,
    /// Upper bound on total parameters (see [`DEFAULT_MAX_PARAMS`]).
    #[serde(default = "default_max_params")]
    pub max_params: u64,
    /// Thermal sampling, throttle detection and cool-down around the measurement (from the
    /// device profile; defaults watch every zone and wait for nothing).
    #[serde(default)]
    pub thermal: ThermalSettings,
    /// Name of the device profile that set this job's defaults, if any.
    #[serde(default)]
    pub device_profile: Option<String>,
}

fn default_max_params() -> u64 {
    DEFAULT_MAX_PARAMS
}

/// Everything measured for one job: what was run, on what, and the numbers.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct JobResult {
    /// `lts` version that produced it.
    pub tool_version: String,
    /// Stable arch id ([`Arch::id`]).
    pub arch_id: String,
    /// The candidate.
    pub arch: Arch,
    /// Its exact parameter counts (the proxy is `params.decoder`).
    pub params: ParamCounts,
    /// Forward FLOPs of one timed run.
    pub flops_per_run: u64,
    /// What one run computes.
    pub workload: Workload,
    /// Where the weights came from.
    pub weights_source: String,
    /// Backend and settings.
    pub backend: BackendSpec,
    /// The runtime actually loaded.
    pub runtime: RuntimeInfo,
    /// Time to build the model: ONNX graph emission (ort) or weight generation/loading (wgpu);
    /// 0 for ort when the graph was read from a file.
    pub graph_emission_ms: f64,
    /// Size of the model: the serialized ONNX graph (ort) or the weight buffers on the GPU
    /// (wgpu, in its storage precision).
    pub model_bytes: u64,
    /// Latency and memory.
    pub measurement: Measurement,
    /// Temperatures, clocks and throttle state before and after the measurement, with flags
    /// when it ran throttled or down-clocked (absent in results of older versions).
    #[serde(default)]
    pub thermal: Option<ThermalRecord>,
    /// Device profile the job ran under.
    #[serde(default)]
    pub device_profile: Option<String>,
    /// When the job started (UTC, RFC 3339).
    pub started_at: String,
}

/// Builds the model a job describes and returns the serialized ONNX bytes and the weights
/// source, plus the time spent building (graph emission, including weight generation).
pub fn build_model_bytes(job: &Job) -> Result<(Vec<u8>, String, f64)> {
    let kind = job.workload.mode.graph_kind();
    let t0 = Instant::now();
    let (bytes, source) = match &job.weights {
        WeightsSpec::Random { seed } => {
            let w = Weights::random(&job.arch, *seed);
            let source = w.source.clone();
            let model = graph::build_model(&job.arch, &w, kind)?;
            drop(w);
            (graph::to_bytes(&model), source)
        }
        WeightsSpec::Safetensors { path } => {
            let w = Weights::from_safetensors(&job.arch, path)?;
            let source = w.source.clone();
            let model = graph::build_model(&job.arch, &w, kind)?;
            drop(w);
            (graph::to_bytes(&model), source)
        }
        WeightsSpec::Onnx { path } => {
            let (bytes, info) = read_exported(path, &job.arch)?;
            if info.kind != kind {
                bail!(
                    "{} is a {:?} graph but --mode {:?} needs a {:?} graph",
                    path.display(),
                    info.kind,
                    job.workload.mode,
                    kind
                );
            }
            return Ok((bytes, format!("onnx file {}", path.display()), 0.0));
        }
    };
    Ok((bytes, source, t0.elapsed().as_secs_f64() * 1e3))
}

/// What an ONNX file written by `lts export` says about itself.
#[derive(Clone, Debug, PartialEq)]
pub struct OnnxInfo {
    /// The arch embedded in the model's metadata.
    pub arch: Arch,
    /// Prefill or decode, from the graph's inputs.
    pub kind: GraphKind,
}

/// Reads the arch (from `metadata_props`) and graph kind (decode graphs take
/// `past_key_values.*`) of a serialized model written by `lts export`.
pub fn read_onnx_info(bytes: &[u8]) -> Result<OnnxInfo> {
    use prost::Message;
    let model = graph::onnx::ModelProto::decode(bytes).context("not a valid ONNX protobuf")?;
    let arch = model
        .metadata_props
        .iter()
        .find_map(|p| p.value.as_deref().and_then(|v| Arch::from_json(v).ok()))
        .context("the model carries no lts arch in its metadata")?;
    let graph = model.graph.as_ref().context("the model has no graph")?;
    let decode = graph.input.iter().any(|i| {
        i.name
            .as_deref()
            .is_some_and(|n| n.starts_with("past_key_values."))
    });
    let kind = if decode {
        GraphKind::Decode
    } else {
        GraphKind::Prefill
    };
    Ok(OnnxInfo { arch, kind })
}

/// Reads an ONNX file written by `lts export` and checks it holds `arch`.
fn read_exported(path: &std::path::Path, arch: &Arch) -> Result<(Vec<u8>, OnnxInfo)> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read ONNX file {}", path.display()))?;
    let info = read_onnx_info(&bytes).with_context(|| {
        format!(
            "{} is not an ONNX file written by `lts export`",
            path.display()
        )
    })?;
    if info.arch != *arch {
        bail!(
            "{} holds arch {} but the job asks for {}",
            path.display(),
            info.arch.id(),
            arch.id()
        );
    }
    Ok((bytes, info))
}

/// Loads the weights a job describes in HF layout (for backends that do not run ONNX bytes),
/// with the time it took and the weights source.
pub fn build_weights(job: &Job) -> Result<(Weights, String, f64)> {
    let t0 = Instant::now();
    let w = match &job.weights {
        WeightsSpec::Random { seed } => Weights::random(&job.arch, *seed),
        WeightsSpec::Safetensors { path } => Weights::from_safetensors(&job.arch, path)?,
        WeightsSpec::Onnx { path } => {
            use prost::Message;
            let (bytes, _) = read_exported(path, &job.arch)?;
            let model = graph::onnx::ModelProto::decode(&bytes[..])?;
            let mut w = graph::weights_from_model(&job.arch, &model)
                .with_context(|| format!("cannot read the weights of {}", path.display()))?;
            w.source = format!("onnx file {}", path.display());
            w
        }
    };
    let source = w.source.clone();
    Ok((w, source, t0.elapsed().as_secs_f64() * 1e3))
}

/// Runs one job on this machine: builds the model, creates the session (ort) or uploads it to
/// the GPU (wgpu) and applies the measurement protocol (creation and first run reported
/// separately).
pub fn execute(job: &Job) -> Result<JobResult> {
    job.arch.validate()?;
    job.arch.check_size(job.max_params)?;
    job.workload.check(&job.arch)?;
    job.protocol.validate()?;
    job.thermal.validate()?;
    let started_at = crate::util::now_rfc3339();
    let (runtime, weights_source, emission_ms, model_bytes, (measurement, thermal)) =
        match &job.backend {
            BackendSpec::Ort(opts) => {
                let ort = Ort::load()?;
                let (bytes, source, emission_ms) = build_model_bytes(job)?;
                let m = thermal::around(&job.thermal, || {
                    measure::run_protocol(&job.protocol, || {
                        let session = ort.session(&bytes, opts)?;
                        Ok(Box::new(OrtRunner::new(session, &job.arch, &job.workload)?)
                            as Box<dyn Runner>)
                    })
                })?;
                (
                    ort.info().clone(),
                    source,
                    emission_ms,
                    bytes.len() as u64,
                    m,
                )
            }
            BackendSpec::Wgpu(opts) => {
                let gpu = Gpu::shared(opts.adapter)?;
                let precision = gpu.resolve_precision(opts.precision)?;
                let timer = gpu.resolve_timer(opts.timer)?;
                let (weights, source, emission_ms) = build_weights(job)?;
                let mut gpu_weight_bytes = 0;
                let m = thermal::around(&job.thermal, || {
                    measure::run_protocol(&job.protocol, || {
                        let runner =
                            WgpuRunner::new(gpu.clone(), &job.arch, &weights, &job.workload, opts)?;
                        gpu_weight_bytes = runner.model().weight_bytes();
                        Ok(Box::new(runner) as Box<dyn Runner>)
                    })
                })?;
                (
                    runtime_info(&gpu, precision, timer),
                    source,
                    emission_ms,
                    gpu_weight_bytes,
                    m,
                )
            }
        };
    Ok(JobResult {
        tool_version: env!("CARGO_PKG_VERSION").into(),
        arch_id: job.arch.id(),
        arch: job.arch.clone(),
        params: job.arch.params(),
        flops_per_run: job.workload.flops(&job.arch),
        workload: job.workload.clone(),
        weights_source,
        backend: job.backend.clone(),
        runtime,
        graph_emission_ms: emission_ms,
        model_bytes,
        measurement,
        thermal: Some(thermal),
        device_profile: job.device_profile.clone(),
        started_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_round_trips_as_json() {
        let job = Job {
            arch: Arch::preset("llama-tiny").unwrap(),
            weights: WeightsSpec::Random { seed: 3 },
            workload: Workload::default(),
            protocol: Protocol::default(),
            backend: BackendSpec::Ort(OrtOptions::default()),
            max_params: DEFAULT_MAX_PARAMS,
            thermal: ThermalSettings::default(),
            device_profile: None,
        };
        let text = serde_json::to_string(&job).unwrap();
        let back: Job = serde_json::from_str(&text).unwrap();
        assert_eq!(back, job);
        assert!(text.contains(r#""name":"ort""#), "{text}");
        // The wgpu variant too (a search's run.json is read back on --resume).
        let gpu = Job {
            backend: BackendSpec::Wgpu(WgpuOptions {
                adapter: Some(1),
                precision: crate::backend::wgpu::Precision::F16,
                timer: crate::backend::wgpu::GpuTimer::Wall,
            }),
            ..job
        };
        let text = serde_json::to_string(&gpu).unwrap();
        assert!(text.contains(r#""name":"wgpu""#), "{text}");
        let back: Job = serde_json::from_str(&text).unwrap();
        assert_eq!(back, gpu);
    }

    #[test]
    fn workload_must_fit_positions() {
        let arch = Arch::preset("gpt2-tiny").unwrap(); // 64 positions
        let mut w = Workload {
            seq_len: 64,
            ..Workload::default()
        };
        assert!(w.check(&arch).is_ok());
        w.mode = Mode::Decode;
        let e = w.check(&arch).unwrap_err().to_string();
        assert!(
            e.contains("65 positions") && e.contains("n_positions = 64"),
            "{e}"
        );
    }
}
