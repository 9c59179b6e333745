//! Several runners measured in one loop, round-robin, so that what drifts during a measurement
//! (clock boost, thermal state, other load) falls on all of them alike: how `lts measure
//! --quant fp32,int8-dynamic,...` compares variants (the same idea as hyperfine's interleaved
//! `--setup`-free runs and as `scripts/compare_ort_python.py`'s alternation).
//!
//! Each runner is created, run once and warmed up on its own (its peak memory is tracked from
//! before its creation to the end of its warm-up, while the others already exist but are idle).
//! Then every round runs each runner once, the order rotated by one each round. The loop stops
//! when every runner has `min_runs` samples, the loop has lasted `min_duration_s` for each runner
//! (`count x min_duration_s` in all) and, with a precision target, every median's confidence
//! interval is narrow enough; or at a cap (`max_runs` per runner, `count x max_duration_s`).

use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::{memory, ms, stats, summarize, time_one, Measurement, Phases, Protocol};
use crate::backend::Runner;

/// What creates one runner (a session over its graphs).
pub type Create<'a> = Box<dyn FnOnce() -> Result<Box<dyn Runner>> + 'a>;

/// Measures the runners `creates` builds, interleaved; one [`Measurement`] each, in order, with
/// [`Measurement::interleaved_with`] set to their number.
pub fn run_interleaved(protocol: &Protocol, creates: Vec<Create<'_>>) -> Result<Vec<Measurement>> {
    protocol.validate()?;
    let k = creates.len();
    if k == 0 {
        bail!("nothing to measure");
    }
    let _one_at_a_time = super::MEASURE_LOCK
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    struct Slot {
        runner: Box<dyn Runner>,
        phases: Phases,
        memory: super::PeakMemory,
        samples: Vec<f64>,
    }
    let mut slots = Vec::with_capacity(k);
    for (i, create) in creates.into_iter().enumerate() {
        let which = format!("variant {}", i + 1);
        let tracker = memory::PeakTracker::start();
        let start = Instant::now();
        let mut runner = create().with_context(|| format!("{which}: session creation failed"))?;
        let session_creation = start.elapsed();
        let (first_run, device) =
            time_one(runner.as_mut()).with_context(|| format!("{which}: first run failed"))?;
        if device {
            bail!("{which}: interleaved measurement needs wall-clock runners (ONNX Runtime)");
        }
        let warmup_start = Instant::now();
        let mut warmup_runs = 0;
        loop {
            crate::signals::check()?;
            time_one(runner.as_mut()).with_context(|| format!("{which}: warm-up failed"))?;
            warmup_runs += 1;
            if warmup_start.elapsed().as_secs_f64() >= protocol.warmup_s {
                break;
            }
        }
        let warmup = warmup_start.elapsed();
        let memory = tracker.finish();
        slots.push(Slot {
            runner,
            phases: Phases {
                session_creation,
                first_run,
                device,
                warmup_runs,
                warmup,
                timed_loop: Default::default(),
            },
            memory,
            samples: Vec::new(),
        });
    }
    let min_wall = protocol.min_duration_s * k as f64;
    let max_wall = protocol.max_duration_s * k as f64;
    let mut next_check = protocol.min_runs;
    let loop_start = Instant::now();
    for round in 0.. {
        for j in 0..k {
            crate::signals::check()?;
            let slot = &mut slots[(round + j) % k];
            let (d, _) = time_one(slot.runner.as_mut())
                .with_context(|| format!("variant {}: timed run failed", (round + j) % k + 1))?;
            slot.samples.push(ms(d));
        }
        let n = round + 1;
        let elapsed = loop_start.elapsed().as_secs_f64();
        if n >= protocol.min_runs && elapsed >= min_wall {
            if protocol.target_ci_rel <= 0.0 {
                break;
            }
            if n >= next_check {
                let all_met = slots.iter().all(|s| {
                    let mut sorted = s.samples.clone();
                    sorted.sort_by(f64::total_cmp);
                    let (_, ci, rel) = stats::median_precision_sorted(&sorted, protocol.confidence);
                    protocol.precision_met(rel, ci.confidence)
                });
                if all_met {
                    break;
                }
                next_check = super::next_ci_check(n);
            }
        }
        if n >= protocol.max_runs || elapsed >= max_wall {
            break;
        }
    }
    let timed_loop = loop_start.elapsed();
    Ok(slots
        .into_iter()
        .map(|mut s| {
            s.memory.gpu_buffer_bytes = s.runner.gpu_buffer_bytes();
            drop(s.runner);
            // Each runner's share of the loop, for the minimum-duration check.
            s.phases.timed_loop = timed_loop / k as u32;
            let mut m = summarize(protocol, s.phases, s.samples, s.memory);
            m.interleaved_with = k;
            m
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    struct Sleeper(Duration);
    impl Runner for Sleeper {
        fn run(&mut self) -> Result<Option<Duration>> {
            std::thread::sleep(self.0);
            Ok(None)
        }
    }

    #[test]
    fn runners_alternate_and_each_gets_the_minimums() {
        let p = Protocol {
            min_runs: 10,
            min_duration_s: 0.02,
            warmup_s: 0.0,
            target_ci_rel: 0.0,
            ..Protocol::quick()
        };
        let creates: Vec<Create<'_>> = vec![
            Box::new(|| Ok(Box::new(Sleeper(Duration::from_micros(300))) as Box<dyn Runner>)),
            Box::new(|| Ok(Box::new(Sleeper(Duration::from_micros(900))) as Box<dyn Runner>)),
        ];
        let m = run_interleaved(&p, creates).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].timed_runs, m[1].timed_runs);
        assert!(m[0].timed_runs >= 10);
        assert!(m.iter().all(|m| m.valid && m.interleaved_with == 2));
        // The slower runner is measured slower: samples belong to their runner.
        assert!(m[1].stats.median_ms > 2.0 * m[0].stats.median_ms);
    }

    #[test]
    fn a_failing_runner_names_its_variant() {
        let creates: Vec<Create<'_>> = vec![
            Box::new(|| Ok(Box::new(Sleeper(Duration::ZERO)) as Box<dyn Runner>)),
            Box::new(|| bail!("no such model")),
        ];
        let e = run_interleaved(&Protocol::quick(), creates).unwrap_err();
        assert!(format!("{e:#}").contains("variant 2"), "{e:#}");
    }
}
