//! The analytic cost model as a backend a job can name (`lts search --backend cost-model
//! --agents FLEET`): each run *sleeps* for the time the model predicts (forward FLOPs /
//! throughput) instead of computing, under the real measurement protocol.
//!
//! It measures nothing about a candidate. It exists so a fleet's wiring and its scheduler can
//! be tried and timed without the boards' compute: agents on one machine then do not compete
//! for its cores, and a search's wall time is the jobs' modelled time plus what the link and
//! the scheduler add. Results are labelled `cost-model` wherever they appear.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};

use super::{FirstTokenLog, ModelSource, Prepared, Runner, RuntimeInfo};
use crate::arch::Arch;
use crate::workload::{Logits, Mode, Workload};

/// Settings of the cost-model backend.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CostModelOptions {
    /// Assumed throughput in GFLOP/s (`--cost-gflops`).
    pub gflops: f64,
}

impl super::Backend for CostModelOptions {
    fn name(&self) -> &'static str {
        "cost-model"
    }

    fn computes(&self) -> bool {
        false
    }

    fn validate(&self) -> Result<()> {
        CostModelOptions::validate(self)
    }

    fn describe(&self, _runtime: &RuntimeInfo) -> String {
        format!(
            "cost model at {} GFLOP/s: runs slept their modelled time, NOT measured",
            self.gflops
        )
    }

    fn prepare(&self, source: &dyn ModelSource) -> Result<Box<dyn Prepared>> {
        if let Some(q) = source.quant() {
            anyhow::bail!("--quant {q}: the cost model cannot tell a quantized graph from fp32");
        }
        Ok(Box::new(CostModelPrepared {
            opts: self.clone(),
            arch: source.arch().clone(),
            workload: source.workload().clone(),
        }))
    }
}

/// A job for the cost model: nothing is built; each run sleeps its modelled time.
struct CostModelPrepared {
    opts: CostModelOptions,
    arch: Arch,
    workload: Workload,
}

impl Prepared for CostModelPrepared {
    fn runner(&mut self, first_token: FirstTokenLog) -> Result<Box<dyn Runner>> {
        let r = SleepRunner::new(&self.opts, &self.arch, &self.workload, first_token)?;
        Ok(Box::new(r))
    }

    fn runtime(&self) -> RuntimeInfo {
        self.opts.runtime_info()
    }

    fn weights_source(&self) -> String {
        "none (cost model)".into()
    }

    fn emission_ms(&self) -> f64 {
        0.0
    }

    /// What fp32 weights would take (nothing is held).
    fn model_bytes(&self) -> u64 {
        self.arch.params().total.saturating_mul(4)
    }
}

impl CostModelOptions {
    /// The throughput must be a positive finite number.
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.gflops > 0.0 && self.gflops.is_finite(),
            "--cost-gflops must be a positive number of GFLOP/s, not {}",
            self.gflops
        );
        Ok(())
    }

    /// Modelled milliseconds of one run of `workload` on `arch`: forward FLOPs / throughput.
    pub fn run_ms(&self, arch: &Arch, workload: &Workload) -> f64 {
        workload.flops(arch) as f64 / (self.gflops * 1e9) * 1e3
    }

    /// What the runtime entry of a result says.
    pub fn runtime_info(&self) -> RuntimeInfo {
        RuntimeInfo {
            name: "cost-model".into(),
            version: format!("{} GFLOP/s", self.gflops),
            library: None,
            providers: vec!["no measurement: each run sleeps FLOPs / throughput".into()],
        }
    }
}

/// Modelled memory of `workload` on `arch`: fp32 weights plus the logits of one run.
pub fn modelled_memory(arch: &Arch, workload: &Workload) -> u64 {
    // Positions that get logits.
    let tokens = match (workload.mode, workload.logits) {
        (Mode::Prefill, Logits::All) => workload.seq_len,
        _ => 1,
    };
    let logits = (workload.batch as u64)
        .saturating_mul(tokens as u64)
        .saturating_mul(arch.vocab_size as u64)
        .saturating_mul(4);
    arch.params().total.saturating_mul(4).saturating_add(logits)
}

/// A runner whose every run sleeps for the modelled time; a generation logs its modelled
/// first-token time (the prefill's share) like a real generate runner.
pub struct SleepRunner {
    run: Duration,
    first_token: Option<(Duration, FirstTokenLog)>,
}

/// Longest modelled run this backend sleeps: an hour (a mistyped `--cost-gflops` must not
/// hang an agent for days).
pub const MAX_RUN: Duration = Duration::from_secs(3600);

impl SleepRunner {
    /// The runner of `workload` on `arch`; runs longer than [`MAX_RUN`] are refused.
    pub fn new(
        opts: &CostModelOptions,
        arch: &Arch,
        workload: &Workload,
        first_token: FirstTokenLog,
    ) -> Result<SleepRunner> {
        opts.validate()?;
        let ms = opts.run_ms(arch, workload);
        ensure!(
            ms <= MAX_RUN.as_secs_f64() * 1e3,
            "the cost model puts one run at {:.0} s, above the {} s this backend sleeps: raise --cost-gflops",
            ms / 1e3,
            MAX_RUN.as_secs()
        );
        let first_token = (workload.mode == Mode::Generate).then(|| {
            let prefill = Workload {
                mode: Mode::Prefill,
                logits: Logits::Last,
                ..workload.clone()
            };
            let share = Duration::from_secs_f64(opts.run_ms(arch, &prefill) / 1e3);
            (share, first_token)
        });
        Ok(SleepRunner {
            run: Duration::from_secs_f64(ms / 1e3),
            first_token,
        })
    }
}

impl Runner for SleepRunner {
    fn run(&mut self) -> Result<Option<Duration>> {
        let t0 = Instant::now();
        if let Some((share, log)) = &self.first_token {
            std::thread::sleep(*share);
            log.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(t0.elapsed());
        }
        let left = self.run.saturating_sub(t0.elapsed());
        std::thread::sleep(left);
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_sleeps_the_modelled_time() {
        let arch = Arch::preset("gpt2-tiny").unwrap();
        let w = Workload {
            seq_len: 16,
            ..Workload::default()
        };
        // Pick the throughput that makes one run 20 ms.
        let flops = w.flops(&arch) as f64;
        let opts = CostModelOptions {
            gflops: flops / 0.020 / 1e9,
        };
        assert!((opts.run_ms(&arch, &w) - 20.0).abs() < 1e-9);
        let mut r = SleepRunner::new(&opts, &arch, &w, FirstTokenLog::default()).unwrap();
        let t = Instant::now();
        assert!(r.run().unwrap().is_none(), "timed by the caller's clock");
        let ms = t.elapsed().as_secs_f64() * 1e3;
        assert!((20.0..200.0).contains(&ms), "{ms} ms");
    }

    #[test]
    fn a_generation_logs_its_first_token() {
        let arch = Arch::preset("gpt2-tiny").unwrap();
        let w = Workload {
            mode: Mode::Generate,
            seq_len: 8,
            new_tokens: 4,
            ..Workload::default()
        };
        let log = FirstTokenLog::default();
        let opts = CostModelOptions { gflops: 1000.0 };
        let mut r = SleepRunner::new(&opts, &arch, &w, log.clone()).unwrap();
        r.run().unwrap();
        r.run().unwrap();
        assert_eq!(log.lock().unwrap().len(), 2);
    }

    #[test]
    fn bad_throughputs_and_endless_runs_are_refused() {
        let arch = Arch::preset("gpt2-tiny").unwrap();
        let w = Workload::default();
        for g in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e = CostModelOptions { gflops: g }.validate().unwrap_err();
            assert!(e.to_string().contains("--cost-gflops"), "{e}");
        }
        let e = SleepRunner::new(
            &CostModelOptions { gflops: 1e-12 },
            &arch,
            &w,
            FirstTokenLog::default(),
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("raise --cost-gflops"), "{e}");
    }
}
