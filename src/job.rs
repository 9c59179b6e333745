//! The job description, plain serde data a host can send to a board: which arch, which weights,
//! which workload, which protocol, which backend; and [`execute`], which turns one job into one
//! [`JobResult`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::arch::{Arch, ParamCounts, DEFAULT_MAX_PARAMS};
use crate::backend::onnx_model::{GraphBytes, OrtModel};
use crate::backend::ort::OrtOptions;
use crate::backend::{self, FirstTokenLog, ModelSource, Prepared, RuntimeInfo};
use crate::graph::{self, GraphKind, OnnxFile};
use crate::measure::{self, Measurement, Protocol, Stats};
use crate::quant::scheme::Scheme;
use crate::thermal::{self, ThermalRecord, ThermalSettings};
use crate::weights::Weights;
use crate::workload::{estimate_memory, Logits, MemoryLimit};

pub use crate::backend::spec::BackendSpec;
pub use crate::workload::{Mode, Workload};

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
    /// A llama.cpp GGUF file of the Llama family, dequantised to f32 (its metadata must
    /// describe the job's arch).
    Gguf {
        /// Path of the `.gguf` file.
        path: PathBuf,
    },
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
    /// Upper bound on the memory the workload may need, in bytes (`--max-memory`), checked
    /// against [`crate::workload::estimate_memory`] before anything is built; `None`: 80% of
    /// this machine's memory ([`MemoryLimit::default_for_machine`]).
    #[serde(default)]
    pub max_memory: Option<u64>,
    /// Thermal sampling, throttle detection and cool-down around the measurement (from the
    /// device profile; defaults watch every zone and wait for nothing).
    #[serde(default)]
    pub thermal: ThermalSettings,
    /// Name of the device profile that set this job's defaults, if any.
    #[serde(default)]
    pub device_profile: Option<String>,
    /// Post-training quantization applied to the graphs (ONNX Runtime only); `None` and
    /// [`Scheme::Fp32`] time the fp32 graphs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quant: Option<Scheme>,
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
    /// Size of the model: the serialized ONNX graph(s) plus their parameter data (ort) or the
    /// weight buffers on the GPU (wgpu, in its storage precision).
    pub model_bytes: u64,
    /// Latency and memory (for generate: of the whole generation, end to end).
    pub measurement: Measurement,
    /// Generate mode: time to first token and decode throughput of the timed runs.
    #[serde(default)]
    pub generation: Option<Generation>,
    /// Temperatures, clocks and throttle state before and after the measurement, with flags
    /// when it ran throttled or down-clocked (absent in results of older versions).
    #[serde(default)]
    pub thermal: Option<ThermalRecord>,
    /// Device profile the job ran under.
    #[serde(default)]
    pub device_profile: Option<String>,
    /// The quantization scheme of the timed graphs (absent: fp32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quant: Option<Scheme>,
    /// When the job started (UTC, RFC 3339).
    pub started_at: String,
}

/// The ONNX graphs a workload runs, with the logits each computes: prefill or decode alone, or
/// for generate one last-position decode graph that runs the prompt on an empty past and then
/// each step ([`crate::backend::ort::OrtGenerator`]): one session, so the weights (and ONNX
/// Runtime's pre-packed copies of them) are held once, as a deployment holds them.
pub fn graphs_for(workload: &Workload) -> Vec<(GraphKind, Logits)> {
    match workload.mode {
        Mode::Prefill => vec![(GraphKind::Prefill, workload.logits)],
        Mode::Decode | Mode::Generate => vec![(GraphKind::Decode, Logits::Last)],
    }
}

/// Builds the graphs a job runs ([`graphs_for`]) with the weights source and the time spent
/// building (weight generation or loading, and graph emission). Weights go to ONNX Runtime as
/// in-memory external data, converted once to their graph layout and shared by the graphs (no
/// protobuf serialization of the parameters). An exported file holding exactly the needed
/// graph is used as it is (0 ms); otherwise (generate from one file) its weights are read and
/// both graphs emitted from them.
pub fn build_ort_model(job: &Job) -> Result<(OrtModel, String, f64)> {
    let wanted = graphs_for(&job.workload);
    let quant = job.quant.as_ref().filter(|q| !q.is_fp32());
    if let (WeightsSpec::Onnx { path }, [(kind, logits)]) = (&job.weights, &wanted[..]) {
        let file = exported(path, &job.arch)?;
        let info = &file.info;
        // Generation needs a last-position decode graph: any other exported graph of the model
        // (a prefill file, or a decode file with every position's logits, as files written
        // before generation ran on one graph are) gives its weights, and the graph is emitted.
        let usable = info.kind == *kind && info.logits == *logits;
        if job.workload.mode == Mode::Generate && !usable {
            return build_from_weights(job, quant, &wanted);
        }
        if info.quant.as_ref() != quant {
            bail!(
                "{} holds {} graphs but the job asks for {}: give the fp32 file to quantize it, or drop --quant",
                path.display(),
                info.quant.as_ref().map_or("fp32".into(), |q| q.to_string()),
                quant.map_or("fp32".into(), |q| q.to_string()),
            );
        }
        if info.kind != *kind {
            bail!(
                "{} is a {} graph but --mode {} needs a {kind} graph",
                path.display(),
                info.kind,
                job.workload.mode.as_str(),
            );
        }
        if *kind == GraphKind::Prefill && info.logits != *logits {
            bail!(
                "{} computes logits for {} position(s) but the job asks for --logits {}: pass --logits {} or export again",
                path.display(),
                info.logits.as_str(),
                logits.as_str(),
                info.logits.as_str()
            );
        }
        let model = OrtModel {
            graphs: vec![GraphBytes::File(file)],
            files: Vec::new(),
        };
        return Ok((model, format!("onnx file {}", path.display()), 0.0));
    }
    build_from_weights(job, quant, &wanted)
}

/// The graphs `wanted` emitted from the job's weights ([`build_weights`]), quantized with
/// `quant` when given.
fn build_from_weights(
    job: &Job,
    quant: Option<&Scheme>,
    wanted: &[(GraphKind, Logits)],
) -> Result<(OrtModel, String, f64)> {
    if let Some(scheme) = quant {
        return build_quantized(job, scheme, wanted);
    }
    let (w, source, load_ms) = build_weights(job)?;
    let t0 = Instant::now();
    let (models, files) = graph::build_models_external(&job.arch, w, wanted)?;
    let graphs = models
        .iter()
        .map(|m| GraphBytes::Emitted(graph::to_bytes(m)))
        .collect();
    let ms = load_ms + t0.elapsed().as_secs_f64() * 1e3;
    Ok((OrtModel { graphs, files }, source, ms))
}

/// Calibration sequences of a quantized job's int8-static ranges (seeded tokens; `lts
/// quantize --calib` chooses its own).
pub const JOB_CALIB_SEQUENCES: usize = 16;

/// Tokens per calibration sequence of a quantized job (at most the arch's positions).
pub const JOB_CALIB_SEQ_LEN: usize = 128;

/// The seeded sequences a quantized job of `arch` calibrates on ([`JOB_CALIB_SEQUENCES`] of
/// [`JOB_CALIB_SEQ_LEN`] tokens, from the workload's input seed + 1), with `eval` evaluation
/// sequences from another stream: `lts search --quantize` judges fidelity on these so that
/// the graphs it judges are the graphs the job times.
pub fn calibration_sequences(
    arch: &Arch,
    workload: &Workload,
    eval: usize,
) -> crate::quant::sequences::Sequences {
    crate::quant::sequences::Sequences::seeded(
        arch,
        JOB_CALIB_SEQUENCES,
        eval,
        JOB_CALIB_SEQ_LEN.min(arch.n_positions),
        workload.seed.wrapping_add(1),
    )
}

/// The graphs of a job quantized with `scheme` ([`crate::quant::emit`]), weights embedded;
/// int8-static calibrates on [`JOB_CALIB_SEQUENCES`] seeded sequences first (its time counts
/// as graph emission).
fn build_quantized(
    job: &Job,
    scheme: &Scheme,
    wanted: &[(GraphKind, Logits)],
) -> Result<(OrtModel, String, f64)> {
    let (w, source, load_ms) = build_weights(job)?;
    let t0 = Instant::now();
    let ranges = if scheme.needs_calibration() {
        let prefill = graph::build_model(&job.arch, &w, GraphKind::Prefill, Logits::Last)?;
        let seqs = calibration_sequences(&job.arch, &job.workload, 1);
        let opts = OrtOptions {
            intra_threads: crate::util::default_threads(),
            ..OrtOptions::default()
        };
        Some(crate::calibration::calibrate(
            &prefill,
            scheme,
            &seqs.calib,
            &opts,
        )?)
    } else {
        None
    };
    let graphs = wanted
        .iter()
        .map(|&(kind, logits)| {
            let m = graph::build_model(&job.arch, &w, kind, logits)?;
            Ok(GraphBytes::Emitted(graph::to_bytes(
                &crate::quant::emit::quantize(m, scheme, ranges.as_ref())?,
            )))
        })
        .collect::<Result<Vec<_>>>()?;
    let ms = load_ms + t0.elapsed().as_secs_f64() * 1e3;
    Ok((
        OrtModel {
            graphs,
            files: Vec::new(),
        },
        format!("{source}, quantized {scheme}"),
        ms,
    ))
}

/// An exported ONNX file ([`OnnxFile::open`], decoded once per process), checked to hold `arch`.
fn exported(path: &std::path::Path, arch: &Arch) -> Result<Arc<OnnxFile>> {
    let file = OnnxFile::open(path)?;
    if file.info.arch != *arch {
        bail!(
            "{} holds arch {} but the job asks for {}",
            path.display(),
            file.info.arch.id(),
            arch.id()
        );
    }
    Ok(file)
}

impl WeightsSpec {
    /// The weights this spec names, for `arch`, in HF layout: the one way every backend gets
    /// them (seeded generation, a safetensors checkpoint, an exported ONNX file's initializers,
    /// or a GGUF file's tensors dequantised).
    pub fn load(&self, arch: &Arch) -> Result<Weights> {
        Ok(match self {
            WeightsSpec::Random { seed } => Weights::random(arch, *seed),
            WeightsSpec::Safetensors { path } => Weights::from_safetensors(arch, path)?,
            WeightsSpec::Onnx { path } => exported(path, arch)?.weights()?,
            WeightsSpec::Gguf { path } => {
                let g = crate::gguf::Gguf::open(path)?;
                let own = crate::gguf::llama::arch(&g)?;
                if &own != arch {
                    bail!(
                        "{} describes arch {}, not the job's arch {}",
                        path.display(),
                        own.id(),
                        arch.id()
                    );
                }
                crate::gguf::llama::weights(&g, arch)?
            }
        })
    }
}

/// Loads the weights a job describes ([`WeightsSpec::load`]) with the time it took and the
/// weights source.
pub fn build_weights(job: &Job) -> Result<(Weights, String, f64)> {
    let t0 = Instant::now();
    let w = job.weights.load(&job.arch)?;
    let source = w.source.clone();
    Ok((w, source, t0.elapsed().as_secs_f64() * 1e3))
}

/// What a generate run is read as: the time to the first token and the decode speed after it.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Generation {
    /// Prompt tokens per sequence (the prefill).
    pub prompt_tokens: usize,
    /// Decode steps after the first token.
    pub new_tokens: usize,
    /// Time to first token (prefill + argmax of its last-position logits) of each timed run.
    pub first_token: Stats,
    /// Raw time-to-first-token samples, in run order (the same runs as the measurement's).
    pub first_token_samples_ms: Vec<f64>,
    /// Median over timed runs of (end-to-end - time to first token) / new_tokens.
    pub ms_per_token: f64,
    /// Generated tokens per second after the first one, all sequences of the batch together:
    /// `batch x 1000 / ms_per_token` (llama-bench's `tg` figure).
    pub tokens_per_s: f64,
}

impl Generation {
    /// Reads the timed runs' share of `log` (its last `timed_runs` entries).
    pub fn new(
        workload: &Workload,
        m: &Measurement,
        log: &[std::time::Duration],
    ) -> Result<Generation> {
        let n = m.samples_ms.len();
        if log.len() < n || n == 0 {
            bail!(
                "the runner logged {} first-token times for {n} timed runs",
                log.len()
            );
        }
        let ttft: Vec<f64> = log[log.len() - n..]
            .iter()
            .map(|d| d.as_secs_f64() * 1e3)
            .collect();
        let mut per_token: Vec<f64> = m
            .samples_ms
            .iter()
            .zip(&ttft)
            .map(|(total, first)| (total - first).max(0.0) / workload.new_tokens as f64)
            .collect();
        per_token.sort_by(f64::total_cmp);
        let ms_per_token = crate::measure::stats::percentile_sorted(&per_token, 50.0);
        let p = &m.protocol;
        Ok(Generation {
            prompt_tokens: workload.seq_len,
            new_tokens: workload.new_tokens,
            first_token: Stats::from_samples(
                &ttft,
                p.cv_threshold,
                p.outlier_threshold,
                p.confidence,
            ),
            first_token_samples_ms: ttft,
            ms_per_token,
            tokens_per_s: if ms_per_token > 0.0 {
                workload.batch as f64 * 1e3 / ms_per_token
            } else {
                0.0
            },
        })
    }
}

/// Runs one job on this machine: builds the model, creates the session (ort) or uploads it to
/// the GPU (wgpu) and applies the measurement protocol (creation and first run reported
/// separately).
pub fn execute(job: &Job) -> Result<JobResult> {
    check_job(job)?;
    let started_at = crate::util::now_rfc3339();
    let first_token = FirstTokenLog::default();
    let mut prepared = job.backend.backend().prepare(job)?;
    let (measurement, thermal) = thermal::around(&job.thermal, || {
        measure::run_protocol(&job.protocol, || prepared.runner(first_token.clone()))
    })?;
    result_of(
        job,
        ModelFacts::of(prepared.as_ref()),
        measurement,
        thermal,
        &first_token,
        started_at,
    )
}

/// What building a job's model produced, beside the measurement.
struct ModelFacts {
    runtime: RuntimeInfo,
    weights_source: String,
    emission_ms: f64,
    model_bytes: u64,
}

impl ModelFacts {
    /// What `prepared` reports about the model it built (after its runner was created).
    fn of(prepared: &dyn Prepared) -> ModelFacts {
        ModelFacts {
            runtime: prepared.runtime(),
            weights_source: prepared.weights_source(),
            emission_ms: prepared.emission_ms(),
            model_bytes: prepared.model_bytes(),
        }
    }
}

/// A job is the source of its own model: ONNX graphs ([`build_ort_model`]) or weights
/// ([`build_weights`]), whichever its backend runs.
impl ModelSource for Job {
    fn arch(&self) -> &Arch {
        &self.arch
    }

    fn workload(&self) -> &Workload {
        &self.workload
    }

    fn quant(&self) -> Option<&Scheme> {
        self.quant.as_ref().filter(|q| !q.is_fp32())
    }

    fn onnx(&self) -> Result<backend::Built<OrtModel>> {
        let (model, source, emission_ms) = build_ort_model(self)?;
        Ok(backend::Built {
            model,
            source,
            emission_ms,
        })
    }

    fn weights(&self) -> Result<backend::Built<Weights>> {
        let (model, source, emission_ms) = build_weights(self)?;
        Ok(backend::Built {
            model,
            source,
            emission_ms,
        })
    }
}

/// Checks a job can run here before anything is built: arch, size, positions, memory,
/// protocol, thermal and backend settings.
fn check_job(job: &Job) -> Result<()> {
    job.arch.validate()?;
    job.arch.check_size(job.max_params)?;
    job.workload.check(&job.arch)?;
    MemoryLimit::resolve(job.max_memory)
        .check(estimate_memory(&job.arch, &job.workload), "this workload")?;
    job.protocol.validate()?;
    job.thermal.validate()?;
    job.backend.backend().validate()?;
    Ok(())
}

/// Measures ONNX Runtime jobs that differ only in their graphs (`lts measure --quant
/// fp32,int8-dynamic,...`: same arch, weights, workload and protocol) in one interleaved loop
/// ([`measure::interleave`]), so that drift during the measurement falls on all alike; one
/// result per job, in order.
pub fn execute_interleaved(jobs: &[Job]) -> Result<Vec<JobResult>> {
    let Some(first) = jobs.first() else {
        bail!("nothing to measure");
    };
    for job in jobs {
        check_job(job)?;
        if !job.backend.backend().supports_quantized() {
            bail!("interleaved measurement runs ONNX Runtime jobs only");
        }
        if job.protocol != first.protocol || job.workload != first.workload {
            bail!("interleaved jobs must share the workload and the protocol");
        }
    }
    let started_at = crate::util::now_rfc3339();
    let mut prepared = Vec::with_capacity(jobs.len());
    for job in jobs {
        prepared.push(job.backend.backend().prepare(job)?);
    }
    // Every variant's session lives through the loop: their models (ONNX Runtime keeps about
    // one more copy of the weights) and the largest workload's activations must fit together.
    let limit = MemoryLimit::resolve(first.max_memory);
    let models_bytes: u64 = prepared
        .iter()
        .map(|p| p.model_bytes().saturating_mul(2))
        .sum();
    let one = estimate_memory(&first.arch, &first.workload)
        .map_or(0, |e| e.activations + e.kv_cache + e.inputs + e.runtime);
    if models_bytes.saturating_add(one) > limit.bytes {
        bail!(
            "{} variants timed together need about {} (their models twice, plus one workload), above the limit of {} ({}): time fewer variants at once or raise --max-memory",
            jobs.len(),
            crate::util::format_bytes(models_bytes.saturating_add(one)),
            crate::util::format_bytes(limit.bytes),
            limit.source
        );
    }
    let logs: Vec<FirstTokenLog> = jobs.iter().map(|_| FirstTokenLog::default()).collect();
    let (measurements, thermal) = thermal::around(&first.thermal, || {
        let creates: Vec<measure::interleave::Create<'_>> = prepared
            .iter_mut()
            .zip(&logs)
            .map(|(p, log)| {
                Box::new(move || p.runner(log.clone())) as measure::interleave::Create<'_>
            })
            .collect();
        measure::interleave::run_interleaved(&first.protocol, creates)
    })?;
    jobs.iter()
        .zip(prepared.iter().map(|p| ModelFacts::of(p.as_ref())))
        .zip(measurements)
        .zip(&logs)
        .map(|(((job, b), m), log)| result_of(job, b, m, thermal.clone(), log, started_at.clone()))
        .collect()
}

/// The result of a job from its build, measurement and thermal record.
fn result_of(
    job: &Job,
    built: ModelFacts,
    measurement: Measurement,
    thermal: ThermalRecord,
    first_token: &FirstTokenLog,
    started_at: String,
) -> Result<JobResult> {
    let ModelFacts {
        runtime,
        weights_source,
        emission_ms,
        model_bytes,
    } = built;
    let generation = (job.workload.mode == Mode::Generate)
        .then(|| Generation::new(&job.workload, &measurement, &first_token.lock().unwrap()))
        .transpose()?;
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
        generation,
        thermal: Some(thermal),
        device_profile: job.device_profile.clone(),
        quant: job.quant.clone().filter(|q| !q.is_fp32()),
        started_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::wgpu::WgpuOptions;

    #[test]
    fn job_round_trips_as_json() {
        let job = Job {
            quant: None,
            arch: Arch::preset("llama-tiny").unwrap(),
            weights: WeightsSpec::Random { seed: 3 },
            workload: Workload::default(),
            protocol: Protocol::default(),
            backend: BackendSpec::Ort(OrtOptions::default()),
            max_params: DEFAULT_MAX_PARAMS,
            max_memory: None,
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
}
