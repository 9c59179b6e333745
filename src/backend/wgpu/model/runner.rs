//! [`WgpuRunner`], the [`Runner`] the measurement protocol times on a [`GpuModel`] (a prefill,
//! one decode step, or a whole greedy generation with host-side argmaxes), and what the results
//! record about the runtime ([`runtime_info`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ndarray::Array2;

use super::buffers::Capacity;
use super::gpu_model::GpuModel;
use crate::arch::Arch;
use crate::backend::wgpu::kernels::Timestamps;
use crate::backend::wgpu::{Gpu, GpuTimer, Precision, WgpuOptions};
use crate::backend::{FirstTokenLog, Runner, RuntimeInfo};
use crate::weights::Weights;
use crate::workload::{Logits, Mode, Workload};

/// What [`WgpuRunner`] reports about the runtime, for [`crate::job::JobResult::runtime`].
pub fn runtime_info(gpu: &Gpu, precision: Precision, timer: GpuTimer) -> RuntimeInfo {
    RuntimeInfo {
        name: "wgpu".into(),
        version: WGPU_VERSION.into(),
        library: None,
        providers: vec![format!(
            "{} [{}, {}] precision {precision}, timer {}",
            gpu.report.name,
            gpu.report.backend,
            gpu.report.device_type,
            match timer {
                GpuTimer::Device => "gpu timestamps",
                _ => "wall clock",
            }
        )],
    }
}

/// The wgpu release this backend is built against.
pub const WGPU_VERSION: &str = "30";

/// Greedy next token of each row of `logits` (`[rows, vocab]`, row-major): the index of the
/// first largest value, the same rule as [`crate::backend::ort::argmax_last`].
pub fn argmax_rows(logits: &[f32], vocab: usize) -> Vec<u32> {
    logits
        .chunks_exact(vocab)
        .map(|row| crate::backend::argmax(row) as u32)
        .collect()
}

/// What one [`Runner::run`] of a [`WgpuRunner`] does.
enum Work {
    /// One forward of `batch` x `seq` new tokens after `past` cached positions (a prefill or one
    /// decode step), on inputs uploaded once.
    Forward {
        batch: usize,
        seq: usize,
        past: usize,
    },
    /// A whole greedy generation.
    Generate(Generation),
}

/// State of a generate runner: the prompt, the step count, the time-to-first-token log and the
/// tokens of the last run.
struct Generation {
    batch: usize,
    /// Prompt ids `[batch, prompt_len]`, row-major.
    prompt: Vec<u32>,
    prompt_len: usize,
    new_tokens: usize,
    first_token: FirstTokenLog,
    /// `[batch, 1 + new_tokens]` greedy tokens of the last run (`None` before the first).
    tokens: Option<Array2<i64>>,
}

/// A [`GpuModel`] with the seeded inputs of a workload uploaded. One [`Runner::run`] is one
/// forward (prefill of `seq_len` tokens with the workload's [`Logits`], or one decode step after
/// `seq_len` cached positions), or, for [`Mode::Generate`], a whole greedy generation:
///
/// 1. write the seeded prompt ids and submit the prefill plan (last-position logits), copying
///    the `batch x vocab` logits back in the same submission;
/// 2. take the argmax on the host (the sampling step an application does), and log the time
///    from the start of the run to here in the [`FirstTokenLog`] (time to first token);
/// 3. `new_tokens` times: write the `batch` new ids, submit the one decode plan (the cache
///    length comes from the step uniform: `seq_len + i`), read back its logits, argmax.
///
/// The KV cache stays on the GPU across steps (no host round trip); each run overwrites the
/// positions it reads, so runs are independent. Prefill and decode runs are timed by GPU
/// timestamps where the timer resolves to `device`; a generation always returns `Ok(None)`,
/// so the protocol times it by the wall clock around the whole run, because device timestamps
/// of the compute passes could not cover the host-side readbacks and argmaxes between them.
pub struct WgpuRunner {
    model: GpuModel,
    work: Work,
    timestamps: Option<Timestamps>,
}

impl WgpuRunner {
    /// Opens the adapter, uploads the weights and the workload's inputs (the same seeded ids
    /// and cache as the ONNX Runtime backend: [`crate::workload::inputs`]) and records
    /// the plans the runs submit. Generate runs push their time to first token to
    /// `first_token`; other modes leave it empty.
    pub fn new(
        gpu: Arc<Gpu>,
        arch: &Arch,
        weights: &Weights,
        workload: &Workload,
        opts: &WgpuOptions,
        first_token: FirstTokenLog,
    ) -> Result<WgpuRunner> {
        let timer = gpu.resolve_timer(opts.timer)?;
        let (ids, past) = crate::workload::inputs(arch, workload);
        let batch = workload.batch;
        let Some(positions) = workload.positions() else {
            bail!("the workload's length overflows: lower --seq-len / --new-tokens");
        };
        let (seq, past_len, logits) = match workload.mode {
            Mode::Prefill => (workload.seq_len, 0, workload.logits),
            Mode::Decode => (1, workload.seq_len, Logits::Last),
            Mode::Generate => (workload.seq_len, 0, Logits::Last),
        };
        if workload.mode == Mode::Generate && workload.new_tokens == 0 {
            bail!("--new-tokens must be >= 1 for --mode generate");
        }
        let cap = Capacity {
            batch,
            tokens: seq,
            positions,
            logits,
        };
        let mut model = GpuModel::new(gpu.clone(), arch, weights, opts.precision, cap)?;
        model.upload(&ids, past.as_ref())?;
        model.plan(batch, seq, past_len)?;
        let (work, timestamps) = if workload.mode == Mode::Generate {
            // The one decode plan, checked against the last step's cache length.
            model.plan(batch, 1, positions - 1)?;
            let rows = model.logit_rows(batch, 1);
            model.readback(rows);
            let gen = Generation {
                batch,
                prompt: ids.iter().map(|&t| t as u32).collect(),
                prompt_len: workload.seq_len,
                new_tokens: workload.new_tokens,
                first_token,
                tokens: None,
            };
            (Work::Generate(gen), None)
        } else {
            let work = Work::Forward {
                batch,
                seq,
                past: past_len,
            };
            (
                work,
                (timer == GpuTimer::Device).then(|| Timestamps::new(&gpu)),
            )
        };
        Ok(WgpuRunner {
            model,
            work,
            timestamps,
        })
    }

    /// The model being run.
    pub fn model(&self) -> &GpuModel {
        &self.model
    }

    /// The greedy tokens of the last completed generate run, `[batch, 1 + new_tokens]`: the
    /// prefill's argmax, then each decode step's. `None` before the first run and for prefill
    /// and decode runners.
    pub fn last_tokens(&self) -> Option<&Array2<i64>> {
        match &self.work {
            Work::Generate(g) => g.tokens.as_ref(),
            Work::Forward { .. } => None,
        }
    }
}

/// One greedy generation on `model` (see [`WgpuRunner`]).
fn generate(model: &mut GpuModel, g: &mut Generation) -> Result<()> {
    let start = Instant::now();
    let vocab = model.arch.vocab_size;
    let mut tokens = g
        .tokens
        .take()
        .unwrap_or_else(|| Array2::zeros((g.batch, 1 + g.new_tokens)));
    model.write_ids(&g.prompt);
    let logits = model.submit_read_logits(g.batch, g.prompt_len, 0)?;
    let mut next = argmax_rows(&logits, vocab);
    g.first_token
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(start.elapsed());
    for (b, &t) in next.iter().enumerate() {
        tokens[[b, 0]] = t as i64;
    }
    for i in 0..g.new_tokens {
        model.write_ids(&next);
        let logits = model
            .submit_read_logits(g.batch, 1, g.prompt_len + i)
            .with_context(|| format!("decode step {} failed", i + 1))?;
        next = argmax_rows(&logits, vocab);
        for (b, &t) in next.iter().enumerate() {
            tokens[[b, i + 1]] = t as i64;
        }
    }
    g.tokens = Some(tokens);
    Ok(())
}

impl Runner for WgpuRunner {
    fn run(&mut self) -> Result<Option<Duration>> {
        match &mut self.work {
            Work::Forward { batch, seq, past } => {
                self.model
                    .submit(*batch, *seq, *past, self.timestamps.as_ref())
            }
            Work::Generate(g) => {
                generate(&mut self.model, g)?;
                Ok(None)
            }
        }
    }

    fn gpu_buffer_bytes(&self) -> Option<u64> {
        Some(self.model.gpu_bytes())
    }
}
