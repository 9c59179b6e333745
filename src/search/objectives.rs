//! How the search gets a candidate's objectives: by measuring it for real on this machine
//! ([`Measured`], ONNX Runtime through [`crate::job`]) or, for previews and tests of the search
//! itself, from an analytic cost model ([`CostModel`]) that measures nothing.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::config::SearchConfig;
use crate::arch::Arch;
use crate::backend::simulated::{modelled_memory, CostModelOptions};
use crate::job::{self, BackendSpec, Job, WeightsSpec, Workload};
use crate::measure::{Measurement, Protocol, Stats};
use crate::quant::Scheme;
use crate::thermal::{ThermalRecord, ThermalSettings};

/// Which protocol produced a record: the short screening protocol or the full one. Every
/// frontier point carries a `Full` record.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Screening measurement (few runs).
    Short,
    /// Full-protocol measurement.
    Full,
}

/// The numbers one evaluation produced.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Evaluation {
    /// Latency statistics (milliseconds).
    pub stats: Stats,
    /// Raw latency samples in run order.
    pub samples_ms: Vec<f64>,
    /// Peak memory attributable to the candidate (bytes), when the platform can tell: the GPU
    /// buffers (weights, activations, KV cache) for GPU backends, the process's peak RSS delta
    /// for host backends.
    pub peak_memory_bytes: Option<u64>,
    /// Whether the protocol's minimums were met.
    pub valid: bool,
    /// Session creation time (ms).
    pub session_creation_ms: f64,
    /// Graph emission time (ms).
    pub graph_emission_ms: f64,
    /// Full measurement (protocol, timings, memory method), absent for the cost model.
    pub measurement: Option<Measurement>,
    /// Thermal state before and after, with throttle flags; absent for the cost model.
    #[serde(default)]
    pub thermal: Option<ThermalRecord>,
    /// Generate objective: time to first token and tokens/s of the timed runs.
    #[serde(default)]
    pub generation: Option<job::Generation>,
}

/// Produces objectives for candidates.
pub trait Evaluator {
    /// Evaluates `arch` with the protocol of `stage`.
    fn evaluate(&mut self, arch: &Arch, stage: Stage) -> Result<Evaluation>;
    /// Runtime description for run.json (e.g. `onnxruntime 1.31.1`).
    fn describe(&self) -> String;
    /// Evaluates several candidates with the protocol of `stage`, handing each evaluation to
    /// `done` (with its index in `archs` and its start time, RFC 3339) as soon as it exists,
    /// in any order. The default measures them one by one; a fleet of boards measures them
    /// in parallel.
    fn evaluate_batch(
        &mut self,
        archs: &[Arch],
        stage: Stage,
        done: &mut dyn FnMut(usize, Evaluation, String) -> Result<()>,
    ) -> Result<()> {
        for (i, a) in archs.iter().enumerate() {
            crate::signals::check()?;
            let started_at = crate::util::now_rfc3339();
            let e = self
                .evaluate(a, stage)
                .with_context(|| format!("measuring candidate {} failed", a.id()))?;
            done(i, e, started_at)?;
        }
        Ok(())
    }
    /// The machine that measures, when it is not this one (a board agent).
    fn device(&self) -> Option<crate::device::DeviceInfo> {
        None
    }
    /// Adds lines of its own to the search's progress display (a fleet: one per board).
    fn show_progress(&mut self, _display: &indicatif::MultiProgress) {}
    /// Times `jobs`, variants of one model that differ only in their graphs (fp32 and its
    /// quantized schemes), together in one interleaved loop, as job `name`: on this machine
    /// ([`job::execute_interleaved`]) or on a board.
    fn measure_variants(&mut self, _name: &str, jobs: Vec<Job>) -> Result<Vec<job::JobResult>> {
        job::execute_interleaved(&jobs)
    }
}

/// Real measurement through a backend ([`job::execute`]).
pub struct Measured {
    /// Backend and settings.
    pub backend: BackendSpec,
    /// What one timed run computes.
    pub workload: Workload,
    /// Screening protocol.
    pub short: Protocol,
    /// Full protocol.
    pub full: Protocol,
    /// Seed of the random weights.
    pub weights_seed: u64,
    /// Upper bound on total parameters.
    pub max_params: u64,
    /// Thermal sampling and cool-down around each candidate (from the device profile).
    pub thermal: ThermalSettings,
    /// Device profile name, recorded with each result.
    pub device_profile: Option<String>,
    /// Memory limit of a job ([`Job::max_memory`]): `Some(u64::MAX)` for the search's own
    /// candidates (the run refused a space whose largest candidate exceeds `--max-memory`
    /// before it started, and no candidate needs more than that one); the run's limit for
    /// interleaved quantized variants, which hold several models at once.
    pub max_memory: Option<u64>,
    /// Runtime description, filled after the first evaluation.
    pub runtime: Option<String>,
}

impl Measured {
    /// The evaluator of a search measuring with `backend`.
    pub fn new(cfg: &SearchConfig, backend: BackendSpec) -> Measured {
        Measured {
            backend,
            workload: cfg.workload.clone(),
            short: cfg.short_protocol.clone(),
            full: cfg.full_protocol.clone(),
            weights_seed: cfg.weights_seed,
            max_params: cfg.max_params,
            thermal: cfg.thermal.clone(),
            device_profile: cfg.device_profile.clone(),
            max_memory: Some(u64::MAX),
            runtime: None,
        }
    }

    /// The job that measures `arch` with the protocol of `stage`, its graphs quantized with
    /// `quant` (`None`: fp32).
    pub fn job(&self, arch: &Arch, stage: Stage, quant: Option<Scheme>) -> Job {
        Job {
            quant,
            arch: arch.clone(),
            weights: WeightsSpec::Random {
                seed: self.weights_seed,
            },
            workload: self.workload.clone(),
            protocol: match stage {
                Stage::Short => self.short.clone(),
                Stage::Full => self.full.clone(),
            },
            backend: self.backend.clone(),
            max_params: self.max_params,
            max_memory: self.max_memory,
            thermal: self.thermal.clone(),
            device_profile: self.device_profile.clone(),
        }
    }

    /// The evaluation a job's result gives (and the runtime it names, remembered for
    /// [`Evaluator::describe`]).
    pub fn evaluation_of(&mut self, r: job::JobResult) -> Evaluation {
        self.runtime = Some(match r.runtime.providers.first() {
            Some(p) if r.runtime.name == "wgpu" => {
                format!("{} {} ({p})", r.runtime.name, r.runtime.version)
            }
            _ => format!("{} {}", r.runtime.name, r.runtime.version),
        });
        let m = r.measurement;
        // A board that slept its modelled time used no memory for the model: report the
        // model's, as the cost model does on this machine.
        let peak_memory_bytes = if r.backend.backend().computes() {
            m.memory.gpu_buffer_bytes.or(m.memory.peak_delta_bytes)
        } else {
            Some(modelled_memory(&r.arch, &r.workload))
        };
        Evaluation {
            stats: m.stats.clone(),
            samples_ms: m.samples_ms.clone(),
            peak_memory_bytes,
            valid: m.valid,
            session_creation_ms: m.session_creation_ms,
            graph_emission_ms: r.graph_emission_ms,
            measurement: Some(m),
            thermal: r.thermal,
            generation: r.generation,
        }
    }
}

impl Evaluator for Measured {
    fn evaluate(&mut self, arch: &Arch, stage: Stage) -> Result<Evaluation> {
        let r = job::execute(&self.job(arch, stage, None))?;
        Ok(self.evaluation_of(r))
    }

    fn describe(&self) -> String {
        self.runtime.clone().unwrap_or_else(|| "onnxruntime".into())
    }
}

/// Analytic cost model, no measurement: latency = forward FLOPs / `gflops` (GFLOP/s), memory =
/// fp32 weights + the logits of one run. For previewing a search space in seconds and for
/// testing the search; results are labelled `cost-model` and must never be read as latencies.
#[derive(Clone, Debug)]
pub struct CostModel {
    /// What one run computes.
    pub workload: Workload,
    /// Assumed throughput in GFLOP/s.
    pub gflops: f64,
}

impl Evaluator for CostModel {
    fn evaluate(&mut self, arch: &Arch, _stage: Stage) -> Result<Evaluation> {
        let ms = CostModelOptions {
            gflops: self.gflops,
        }
        .run_ms(arch, &self.workload);
        let samples = vec![ms; 3];
        Ok(Evaluation {
            stats: Stats::from_samples(&samples, 0.05, 14.826, 0.95),
            samples_ms: samples,
            peak_memory_bytes: Some(modelled_memory(arch, &self.workload)),
            valid: true,
            session_creation_ms: 0.0,
            graph_emission_ms: 0.0,
            measurement: None,
            thermal: None,
            generation: None,
        })
    }

    fn describe(&self) -> String {
        format!("cost-model ({} GFLOP/s, no measurement)", self.gflops)
    }
}

/// Real measurement on board agents ([`crate::remote::fleet`]): the same jobs as
/// [`Measured`], sent over the link, a batch shared among the boards; a lost link gives the job
/// to another board and nothing measured is lost.
pub struct Fleet {
    /// Builds the jobs and reads their results.
    pub measured: Measured,
    /// The boards.
    pub boards: Vec<crate::remote::fleet::Board>,
    /// Prefix of job ids (the run id), so ids are unique across runs.
    pub run_id: String,
}

impl Evaluator for Fleet {
    fn evaluate(&mut self, arch: &Arch, stage: Stage) -> Result<Evaluation> {
        let mut out = None;
        self.evaluate_batch(std::slice::from_ref(arch), stage, &mut |_, e, _| {
            out = Some(e);
            Ok(())
        })?;
        out.context("no result")
    }

    fn evaluate_batch(
        &mut self,
        archs: &[Arch],
        stage: Stage,
        done: &mut dyn FnMut(usize, Evaluation, String) -> Result<()>,
    ) -> Result<()> {
        let name = match stage {
            Stage::Short => "short",
            Stage::Full => "full",
        };
        let jobs: Vec<(String, Job)> = archs
            .iter()
            .map(|a| {
                (
                    format!("{}:{}:{name}", self.run_id, a.id()),
                    self.measured.job(a, stage, None),
                )
            })
            .collect();
        let Fleet {
            measured, boards, ..
        } = self;
        crate::remote::fleet::run_batch(boards, &jobs, &mut |i, r, started| {
            done(i, measured.evaluation_of(r), started)
        })
    }

    fn describe(&self) -> String {
        let addrs: Vec<String> = self.boards.iter().map(|b| b.addr.to_string()).collect();
        format!(
            "{} on the agent{} at {}",
            self.measured.describe(),
            if addrs.len() > 1 { "s" } else { "" },
            addrs.join(", ")
        )
    }

    fn device(&self) -> Option<crate::device::DeviceInfo> {
        self.boards.iter().find_map(|b| b.device().cloned())
    }

    fn show_progress(&mut self, display: &indicatif::MultiProgress) {
        for b in &mut self.boards {
            b.show_in(display);
        }
    }

    fn measure_variants(&mut self, name: &str, jobs: Vec<Job>) -> Result<Vec<job::JobResult>> {
        let id = format!("{}:{name}", self.run_id);
        crate::remote::fleet::run_variants(&mut self.boards, &id, jobs)
    }
}
