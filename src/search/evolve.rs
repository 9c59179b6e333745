//! The evolutionary loop of the search: proposals (random, then mutants and crossovers of the
//! front's members, drawn by how rarely each was a parent), deduplication and pruning before
//! measurement, and two-stage measurement (see the module doc of [`crate::search`]).

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use anyhow::Result;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::config::{Algo, EvaluatorSpec, SearchConfig};
use super::objectives::{Evaluator, Stage};
use super::outcome::{Outcome, Reporter, RunOptions};
use super::pareto;
use super::quantized;
use super::space::Genome;
use super::store::{self, Origin, Record, RunDir, RunInfo};
use crate::arch::Arch;

/// A proposed, not yet measured candidate.
pub(super) struct Proposal {
    pub(super) arch: Arch,
    pub(super) id: String,
    pub(super) genome: Genome,
    pub(super) origin: Origin,
    pub(super) parents: Vec<String>,
    pub(super) iteration: usize,
}

/// A measured candidate: its screening record and, if taken, its full record.
pub(super) struct Candidate {
    pub(super) short: Record,
    pub(super) full: Option<Record>,
}

impl Candidate {
    pub(super) fn best(&self) -> &Record {
        self.full.as_ref().unwrap_or(&self.short)
    }
}

/// The running search.
pub(super) struct Search {
    pub(super) cfg: SearchConfig,
    pub(super) eval: Box<dyn Evaluator>,
    pub(super) dir: RunDir,
    pub(super) info: RunInfo,
    pub(super) recorded: HashMap<(String, Stage), Record>,
    pub(super) cands: Vec<Candidate>,
    pub(super) index: HashMap<String, usize>,
    pub(super) seen: HashSet<String>,
    pub(super) usage: HashMap<String, usize>,
    pub(super) pruned: usize,
    pub(super) reused: usize,
    pub(super) measured_now: usize,
    pub(super) started: Instant,
    pub(super) timed_ms: f64,
    pub(super) progress: ProgressBar,
    pub(super) quiet: bool,
    pub(super) front: Vec<usize>,
    /// Quantized variants by arch id (`--quantize`): the folder's quant journal, then this
    /// session's records.
    pub(super) quant: HashMap<String, quantized::QuantRecord>,
    /// Candidates the folder's `candidates.csv` held when a resume opened it: reports are not
    /// rewritten with fewer while the replay catches up.
    pub(super) rows_on_disk: usize,
    /// Renders the plots and `summary.md` ([`RunOptions::reporter`]).
    pub(super) reporter: Option<std::sync::Arc<dyn Reporter>>,
}

fn iteration_rng(seed: u64, iteration: usize) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(
        seed ^ (iteration as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    )
}

/// The search's bar (candidates measured of the budget), in `opts`'s display or a new one on
/// stderr (hidden when quiet or not a terminal), with the display it is in.
fn progress_bar(total: usize, opts: &RunOptions) -> (ProgressBar, MultiProgress) {
    let display = opts.display.clone().unwrap_or_else(|| {
        MultiProgress::with_draw_target(if opts.quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        })
    });
    let pb = ProgressBar::new(total as u64);
    if opts.quiet {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    } else {
        display.add(pb.clone());
    }
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} {prefix}[{elapsed_precise}] {bar:30} {pos}/{len} candidates, ETA {eta}  {msg}",
        )
        .expect("valid template"),
    );
    if let Some(l) = &opts.label {
        pb.set_prefix(format!("{l} "));
    }
    (pb, display)
}

impl Search {
    pub(super) fn new(
        cfg: SearchConfig,
        mut eval: Box<dyn Evaluator>,
        dir: RunDir,
        info: RunInfo,
        journal: Vec<Record>,
        opts: &RunOptions,
    ) -> Search {
        let recorded = journal
            .into_iter()
            .map(|r| ((r.arch_id.clone(), r.stage), r))
            .collect();
        let (progress, display) = progress_bar(cfg.budget(), opts);
        if !progress.is_hidden() {
            eval.show_progress(&display);
        }
        Search {
            eval,
            dir,
            info,
            recorded,
            cands: Vec::new(),
            index: HashMap::new(),
            seen: HashSet::new(),
            usage: HashMap::new(),
            pruned: 0,
            reused: 0,
            measured_now: 0,
            started: Instant::now(),
            timed_ms: 0.0,
            progress,
            quiet: opts.quiet,
            front: Vec::new(),
            quant: HashMap::new(),
            rows_on_disk: 0,
            reporter: opts.reporter.clone(),
            cfg,
        }
    }

    /// Runs the search to the end. When it stops early (a signal, a failed measurement), the
    /// reports are written for what was measured, with status `interrupted` or `failed`,
    /// unless a resume has not yet caught up with its journal (then the folder's reports hold
    /// more than this session has, and stay as they are).
    pub(super) fn run(&mut self) -> Result<Outcome> {
        match self.run_iterations().and_then(|()| self.quantize_front()) {
            Ok(()) => {}
            Err(e) => {
                self.progress.finish_and_clear();
                let interrupted = e
                    .chain()
                    .any(|c| c.downcast_ref::<crate::signals::Interrupted>().is_some());
                if !self.catching_up() {
                    self.info.status = if interrupted { "interrupted" } else { "failed" }.into();
                    self.info.stop_reason = Some(format!("{e:#}"));
                    if let Err(w) = self.write_reports() {
                        eprintln!("warning: could not write the reports: {w:#}");
                    }
                }
                let d = self.dir.path.display();
                let when = if interrupted {
                    ""
                } else {
                    " once the cause below is fixed"
                };
                return Err(e.context(format!(
                    "the search stopped; every measurement taken is kept in {d}: continue with `lts search --resume {d}`{when}"
                )));
            }
        }
        self.progress.finish_and_clear();
        self.info.status = "complete".into();
        self.info.finished_at = Some(crate::util::now_rfc3339());
        if !self.recorded.is_empty() {
            eprintln!(
                "note: {} journal record(s) were not part of this replay (written by another lts version?); they stay in {} but not in the reports",
                self.recorded.len(),
                store::JOURNAL
            );
        }
        self.rows_on_disk = 0;
        self.write_reports()?;
        let (hv, _) = self.hypervolumes();
        let (_, front) = self.rows();
        Ok(Outcome {
            dir: self.dir.path.clone(),
            candidates: self.cands.len(),
            measured_now: self.measured_now,
            reused: self.reused,
            frontier: front.iter().map(|r| r.arch_id.clone()).collect(),
            frontier_rows: front,
            hypervolume: hv,
            wall_s: self.started.elapsed().as_secs_f64(),
            timed_inference_s: self.timed_ms / 1e3,
            already_complete: false,
            quantized: self.quant_rows(),
        })
    }

    /// A resume replaying measurements its journal already holds, with fewer candidates in
    /// memory than the folder's reports show: rewriting them now would make them hold less.
    /// (Journal records the replay never proposes, say from another lts version, do not hold
    /// the reports back once memory has caught up with them.)
    pub(super) fn catching_up(&self) -> bool {
        !self.recorded.is_empty() && self.cands.len() < self.rows_on_disk
    }

    pub(super) fn run_iterations(&mut self) -> Result<()> {
        for iteration in 0..=self.cfg.iterations {
            let mut rng = iteration_rng(self.cfg.seed, iteration);
            let proposals = if iteration == 0 {
                self.propose_random(self.cfg.population, iteration, &mut rng)
            } else {
                match self.cfg.algo {
                    Algo::Random => self.propose_random(
                        self.cfg.mutations + self.cfg.crossovers,
                        iteration,
                        &mut rng,
                    ),
                    Algo::Lts => self.propose_lts(iteration, &mut rng),
                }
            };
            let (recs, done) = self.evaluate_all(&proposals, Stage::Short);
            for rec in recs.into_iter().flatten() {
                self.index.insert(rec.arch_id.clone(), self.cands.len());
                self.cands.push(Candidate {
                    short: rec,
                    full: None,
                });
                self.progress.inc(1);
            }
            done?;
            self.finalize()?;
            if iteration == 0 {
                self.set_hv_reference();
            }
            self.log_iteration(iteration)?;
        }
        Ok(())
    }

    /// Turns a genome into a proposal unless it is invalid, a duplicate, or statically pruned.
    pub(super) fn admit(
        &mut self,
        g: Genome,
        origin: Origin,
        parents: Vec<String>,
        iteration: usize,
    ) -> Option<Proposal> {
        let arch = self.cfg.space.to_arch(&g).ok()?;
        let id = arch.id();
        if !self.seen.insert(id.clone()) {
            return None;
        }
        if self.cfg.space.check_static(&arch).is_err()
            || arch.check_size(self.cfg.max_params).is_err()
        {
            self.pruned += 1;
            return None;
        }
        Some(Proposal {
            arch,
            id,
            genome: g,
            origin,
            parents,
            iteration,
        })
    }

    /// Calls `make` until `count` candidates are admitted or `max_tries` genomes were tried.
    pub(super) fn fill(
        &mut self,
        count: usize,
        max_tries: usize,
        iteration: usize,
        rng: &mut Xoshiro256PlusPlus,
        mut make: impl FnMut(&Search, &mut Xoshiro256PlusPlus) -> (Genome, Origin, Vec<String>),
    ) -> Vec<Proposal> {
        let mut out = Vec::with_capacity(count);
        let mut tries = 0;
        while out.len() < count && tries < max_tries {
            tries += 1;
            let (g, origin, parents) = make(self, rng);
            if let Some(p) = self.admit(g, origin, parents, iteration) {
                out.push(p);
            }
        }
        out
    }

    pub(super) fn propose_random(
        &mut self,
        count: usize,
        iteration: usize,
        rng: &mut Xoshiro256PlusPlus,
    ) -> Vec<Proposal> {
        self.fill(count, count * 200 + 1000, iteration, rng, |s, rng| {
            (s.cfg.space.sample(rng), Origin::Random, Vec::new())
        })
    }

    pub(super) fn propose_lts(
        &mut self,
        iteration: usize,
        rng: &mut Xoshiro256PlusPlus,
    ) -> Vec<Proposal> {
        if self.front.is_empty() {
            // No feasible candidate yet: keep exploring at random.
            return self.propose_random(self.cfg.mutations + self.cfg.crossovers, iteration, rng);
        }
        let front_ids: Vec<String> = self
            .front
            .iter()
            .map(|&i| self.cands[i].short.arch_id.clone())
            .collect();
        let counts: Vec<usize> = front_ids
            .iter()
            .map(|id| self.usage.get(id).copied().unwrap_or(0))
            .collect();
        let slots: Vec<usize> = (0..front_ids.len()).collect();
        let picked = pareto::select_parents(&slots, &counts, self.cfg.parents, rng);
        for &k in &picked {
            *self.usage.entry(front_ids[k].clone()).or_insert(0) += 1;
        }
        let parents: Vec<usize> = picked.iter().map(|&k| self.front[k]).collect();
        let max_tries = |n: usize| n * 50 + 100;
        let (mutations, crossovers) = (self.cfg.mutations, self.cfg.crossovers);
        let mut out = self.fill(mutations, max_tries(mutations), iteration, rng, |s, rng| {
            let parent = &s.cands[parents[rng.random_range(0..parents.len())]].short;
            let g = s.cfg.space.mutate(&parent.genome, s.cfg.mutation_prob, rng);
            (g, Origin::Mutation, vec![parent.arch_id.clone()])
        });
        out.extend(self.fill(
            crossovers,
            max_tries(crossovers),
            iteration,
            rng,
            |s, rng| {
                let a = &s.cands[parents[rng.random_range(0..parents.len())]].short;
                let b = &s.cands[parents[rng.random_range(0..parents.len())]].short;
                let g = s
                    .cfg
                    .space
                    .crossover(&a.genome, &b.genome, s.cfg.crossover_prob, rng);
                (
                    g,
                    Origin::Crossover,
                    vec![a.arch_id.clone(), b.arch_id.clone()],
                )
            },
        ));
        out
    }

    /// Measures proposals (taking the journal's records where it has them), all at once when
    /// the evaluator can (a fleet of board agents), journaling each record as soon as it
    /// exists; the records come back in the proposals' order. When the batch stops early (a
    /// signal, a failed measurement), the records it has are returned with the error, so the
    /// reports written on the way out hold every candidate the journal holds.
    pub(super) fn evaluate_all(
        &mut self,
        ps: &[Proposal],
        stage: Stage,
    ) -> (Vec<Option<Record>>, Result<()>) {
        let mut out: Vec<Option<Record>> = ps
            .iter()
            .map(|p| self.recorded.remove(&(p.id.clone(), stage)))
            .collect();
        self.reused += out.iter().flatten().count();
        let todo: Vec<usize> = (0..ps.len()).filter(|&i| out[i].is_none()).collect();
        if todo.is_empty() {
            return (out, Ok(()));
        }
        if let Err(e) = crate::signals::check() {
            return (out, Err(e.into()));
        }
        let archs: Vec<Arch> = todo.iter().map(|&i| ps[i].arch.clone()).collect();
        let measured = matches!(self.cfg.evaluator, EvaluatorSpec::Measure { .. });
        let Search {
            eval,
            dir,
            cfg,
            timed_ms,
            measured_now,
            ..
        } = self;
        let r = eval.evaluate_batch(&archs, stage, &mut |k, ev, started_at| {
            let p = &ps[todo[k]];
            if measured {
                // The cost model's "samples" are predictions, not time spent.
                *timed_ms += ev.samples_ms.iter().sum::<f64>();
            }
            let rec = Record {
                arch_id: p.id.clone(),
                params: p.arch.params(),
                flops_per_run: cfg.workload.flops(&p.arch),
                arch: p.arch.clone(),
                genome: p.genome.clone(),
                iteration: p.iteration,
                origin: p.origin,
                parents: p.parents.clone(),
                stage,
                eval: ev,
                started_at,
                finished_at: crate::util::now_rfc3339(),
            };
            dir.append(&rec)?;
            *measured_now += 1;
            out[todo[k]] = Some(rec);
            Ok(())
        });
        if self.info.runtime.is_empty() && out.iter().any(Option::is_some) {
            self.info.runtime = self.eval.describe();
            if let Some(d) = self.eval.device() {
                self.info.device = d;
            }
        }
        let r = r.and_then(|()| {
            anyhow::ensure!(
                out.iter().all(Option::is_some),
                "the evaluator skipped a candidate"
            );
            Ok(())
        });
        (out, r)
    }
}
