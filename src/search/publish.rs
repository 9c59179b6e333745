//! What a run writes while it goes: a line per iteration, `candidates.csv`, `frontier.csv`,
//! `quant.csv`, `run.json`, and the [`Reporter`](super::outcome::Reporter)'s files (plots,
//! `summary.md`).

use std::collections::HashSet;

use anyhow::Result;

use super::evolve::Search;
use super::outcome::RunReport;
use super::store::{self, CandidateRow, IterationLog};

impl Search {
    pub(super) fn log_iteration(&mut self, iteration: usize) -> Result<()> {
        let (hv, hv3) = self.hypervolumes();
        let log = IterationLog {
            iteration,
            candidates: self.cands.len(),
            full_measured: self.cands.iter().filter(|c| c.full.is_some()).count(),
            pruned: self.pruned,
            frontier_size: self.front.len(),
            hypervolume: hv,
            hypervolume_3d: hv3,
            wall_s: self.started.elapsed().as_secs_f64(),
            timed_inference_s: self.timed_ms / 1e3,
            session: self.info.resumed_at.len(),
        };
        self.progress
            .set_message(format!("front {}  HV {:.4}", log.frontier_size, hv));
        if !self.quiet {
            self.say(format!(
                "iteration {:>3}: {:>4} candidates ({} full), {} pruned, frontier {}, hypervolume {:.4}",
                iteration, log.candidates, log.full_measured, log.pruned, log.frontier_size, hv
            ));
        }
        // A resume keeps what earlier sessions logged (their timings are not replayed).
        if !self
            .info
            .iterations
            .iter()
            .any(|l| l.iteration == iteration)
        {
            self.info.iterations.push(log);
        }
        self.write_reports()
    }

    /// Prints a line above the progress bar, or plainly when the bar is hidden (not a terminal).
    pub(super) fn say(&self, line: String) {
        if self.progress.is_hidden() {
            eprintln!("{line}");
        } else {
            self.progress.println(line);
        }
    }

    pub(super) fn rows(&self) -> (Vec<CandidateRow>, Vec<CandidateRow>) {
        let on: HashSet<usize> = self.front.iter().copied().collect();
        let on2: HashSet<usize> = self.latency_front().into_iter().collect();
        let all: Vec<CandidateRow> = self
            .cands
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let r = c.best();
                CandidateRow::from_record(
                    r,
                    &self.cfg.workload,
                    self.feasible(r),
                    on.contains(&i),
                    on2.contains(&i),
                )
            })
            .collect();
        let mut front: Vec<CandidateRow> = all.iter().filter(|r| r.on_frontier).cloned().collect();
        front.sort_by_key(|r| r.decoder_params);
        (all, front)
    }

    pub(super) fn save_run_json(&self) -> Result<()> {
        self.dir.write(
            store::RUN_JSON,
            serde_json::to_string_pretty(&self.info)?.as_bytes(),
        )
    }

    /// Rewrites the CSVs, `run.json`, the plots and `summary.md` from the candidates in
    /// memory; does nothing while a resume is catching up with its journal (the files on disk
    /// hold more than memory does until then).
    pub(super) fn write_reports(&self) -> Result<()> {
        if self.catching_up() {
            return Ok(());
        }
        let (all, front) = self.rows();
        store::write_csv(&self.dir.path.join(store::CANDIDATES_CSV), &all)?;
        store::write_csv(&self.dir.path.join(store::FRONTIER_CSV), &front)?;
        let quant = self.write_quant_csv()?;
        self.save_run_json()?;
        let Some(reporter) = &self.reporter else {
            return Ok(());
        };
        let run = RunReport {
            dir: &self.dir.path,
            info: &self.info,
            all: &all,
            front: &front,
            quant: &quant,
        };
        reporter.write(&run, &|line| self.say(line))
    }
}
