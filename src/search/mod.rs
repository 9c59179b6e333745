//! LiteTransformerSearch: evolutionary Pareto search over a search space (Javaheripour et al.,
//! NeurIPS 2022, and the reference implementation in microsoft/archai).
//!
//! Objectives: maximise decoder (non-embedding) parameters, the training-free perplexity proxy;
//! minimise latency (median of the prefill, or of one decode step with a KV cache); minimise peak
//! memory. Dominance is weak Pareto dominance ([`pareto::dominates`]).
//!
//! The algorithm ([`Algo::Lts`]): an initial population of random valid candidates; then each
//! iteration draws parents from the current Pareto front, weighted by how rarely each was used
//! ([`pareto::parent_weights`]), and produces mutants (each gene resampled with probability 0.3)
//! and uniform crossovers. Candidates are deduplicated by arch id, and constraints that need no
//! measurement (decoder-parameter range) are checked **before** measuring, unlike the reference
//! implementation, which measured first. [`Algo::Random`] samples the same number of candidates
//! uniformly, as a baseline.
//!
//! Measurement is two-stage: every candidate is measured with a short protocol; a candidate that
//! could be on the frontier given the confidence intervals (optimistic bounds for it,
//! pessimistic for the others) is measured again with the full protocol, until every frontier
//! point carries full-protocol statistics.
//!
//! Determinism and resume: the candidates of iteration `k` depend only on the seed, `k` and the
//! measurements recorded before; the journal keeps every measurement, so `--resume` replays the
//! run, reuses what was recorded and measures only the rest.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::Serialize;

use crate::arch::Arch;
use crate::device::DeviceInfo;
use crate::job::BackendSpec;

pub mod classes;
pub mod config;
pub mod evaluate;
pub mod pareto;
mod quant_phase;
pub mod quantized;
pub mod space;
pub mod store;

pub use config::{Algo, EvaluatorSpec, SearchConfig, MAX_BUDGET, MAX_COUNT};
pub use store::{HvReference, IterationLog, RunInfo};

use evaluate::{CostModel, Evaluator, Measured, Stage};
use space::Genome;
use store::{CandidateRow, Origin, Record, RunDir};

/// Output options of a run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// No progress bar and no per-iteration lines.
    pub quiet: bool,
    /// The progress display this run's bars join (a fleet's classes share one, each with its
    /// own lines); `None`: a display of its own on stderr.
    pub display: Option<MultiProgress>,
    /// Names this run's bar (its board class) when several runs share a display.
    pub label: Option<String>,
}

/// A proposed, not yet measured candidate.
struct Proposal {
    arch: Arch,
    id: String,
    genome: Genome,
    origin: Origin,
    parents: Vec<String>,
    iteration: usize,
}

/// A measured candidate: its screening record and, if taken, its full record.
struct Candidate {
    short: Record,
    full: Option<Record>,
}

impl Candidate {
    fn best(&self) -> &Record {
        self.full.as_ref().unwrap_or(&self.short)
    }
}

/// The running search.
struct Search {
    cfg: SearchConfig,
    eval: Box<dyn Evaluator>,
    dir: RunDir,
    info: RunInfo,
    recorded: HashMap<(String, Stage), Record>,
    cands: Vec<Candidate>,
    index: HashMap<String, usize>,
    seen: HashSet<String>,
    usage: HashMap<String, usize>,
    pruned: usize,
    reused: usize,
    measured_now: usize,
    started: Instant,
    timed_ms: f64,
    progress: ProgressBar,
    quiet: bool,
    front: Vec<usize>,
    /// Quantized variants by arch id (`--quantize`): the folder's quant journal, then this
    /// session's records.
    quant: HashMap<String, quantized::QuantRecord>,
    /// Candidates the folder's `candidates.csv` held when a resume opened it: reports are not
    /// rewritten with fewer while the replay catches up.
    rows_on_disk: usize,
}

/// Summary returned to the CLI.
#[derive(Serialize, Debug, Clone)]
pub struct Outcome {
    /// The results folder.
    pub dir: PathBuf,
    /// Distinct candidates measured.
    pub candidates: usize,
    /// Measurements taken in this session (the rest were reused from the journal).
    pub measured_now: usize,
    /// Measurements reused from the journal (resume).
    pub reused: usize,
    /// Arch ids on the final frontier, by decoder params.
    pub frontier: Vec<String>,
    /// Final normalised hypervolume (2-D).
    pub hypervolume: f64,
    /// Wall seconds of this session.
    pub wall_s: f64,
    /// Seconds of timed inference in this session (0 for the cost model, which times nothing).
    pub timed_inference_s: f64,
    /// The run was already complete: `--resume` changed nothing and measured nothing.
    pub already_complete: bool,
    /// The frontier's rows (as in `frontier.csv`), by decoder params; for the terminal table.
    #[serde(skip)]
    pub frontier_rows: Vec<CandidateRow>,
    /// The quantized variants of the frontier (as in `quant.csv`; `--quantize` only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub quantized: Vec<quantized::QuantRow>,
}

fn iteration_rng(seed: u64, iteration: usize) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(
        seed ^ (iteration as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    )
}

fn make_evaluator(cfg: &SearchConfig, run_id: &str) -> Result<Box<dyn Evaluator>> {
    if !cfg.agents.is_empty() {
        // A fleet dry run: the boards sleep each job's modelled time.
        let backend = match &cfg.evaluator {
            EvaluatorSpec::Measure { backend } => backend.clone(),
            EvaluatorSpec::CostModel { gflops } => BackendSpec::cost_model(*gflops),
        };
        let mut boards = Vec::new();
        for a in &cfg.agents {
            let key = crate::remote::keyfile::load_key(&a.key_file).map_err(|e| {
                // How to create it only when it is missing: other errors name their own fix.
                let missing = matches!(e, crate::remote::keyfile::KeyFileError::NotFound(_));
                let hint = ": create it on the board with `lts agent --init` and copy it here";
                let (file, hint) = (a.key_file.display(), if missing { hint } else { "" });
                anyhow::Error::new(e).context(format!("the key {file} of agent {}{hint}", a.addr))
            })?;
            boards.push(crate::remote::fleet::Board::new(
                crate::remote::host::AgentAddr::parse(&a.addr)?,
                key,
            ));
        }
        return Ok(Box::new(evaluate::Fleet {
            measured: Measured::new(cfg, backend),
            boards,
            run_id: run_id.to_string(),
        }));
    }
    Ok(match &cfg.evaluator {
        EvaluatorSpec::Measure { backend } => Box::new(Measured::new(cfg, backend.clone())),
        EvaluatorSpec::CostModel { gflops } => Box::new(CostModel {
            workload: cfg.workload.clone(),
            gflops: *gflops,
        }),
    })
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

/// Starts a new run in `dir` and runs it to the end.
pub fn run_new(cfg: SearchConfig, dir: &Path, opts: &RunOptions) -> Result<Outcome> {
    cfg.validate()?;
    let run_id = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let eval = make_evaluator(&cfg, &run_id)?;
    let run_dir = RunDir::create(dir)?;
    let info = RunInfo {
        tool_version: env!("CARGO_PKG_VERSION").into(),
        run_id,
        config: cfg.clone(),
        device: DeviceInfo::collect(),
        runtime: String::new(),
        started_at: crate::util::now_rfc3339(),
        finished_at: None,
        status: "running".into(),
        stop_reason: None,
        resumed_at: Vec::new(),
        hv_reference: None,
        iterations: Vec::new(),
    };
    let mut s = Search::new(cfg, eval, run_dir, info, Vec::new(), opts);
    s.save_run_json()?;
    s.run()
}

/// The run folder `--resume` names: the folder itself, or its `run.json`.
pub fn run_folder(given: &Path) -> Result<PathBuf> {
    if given.is_file() {
        if given.file_name() == Some(std::ffi::OsStr::new(store::RUN_JSON)) {
            let parent = given.parent().filter(|p| !p.as_os_str().is_empty());
            return Ok(parent.unwrap_or(Path::new(".")).to_path_buf());
        }
        anyhow::bail!(
            "{} is a file: give the run's folder (the one holding {})",
            given.display(),
            store::RUN_JSON
        );
    }
    if !given.exists() {
        anyhow::bail!(
            "{} does not exist: give the folder `lts search` printed (results/<run-id>)",
            given.display()
        );
    }
    Ok(given.to_path_buf())
}

/// Reads the `run.json` of run folder `dir` (an error naming the folder when it is not one).
pub fn read_run_info(dir: &Path) -> Result<RunInfo> {
    let path = dir.join(store::RUN_JSON);
    if !path.is_file() {
        anyhow::bail!(
            "{} is not a search run folder (no {}); give the folder `lts search` printed",
            dir.display(),
            store::RUN_JSON
        );
    }
    let text = crate::util::read_regular_text(
        &path,
        crate::util::MAX_CONFIG_BYTES,
        "run description",
        crate::util::CONFIG_HINT,
    )
    .with_context(|| {
        format!(
            "cannot read {} (is {} a search results folder?)",
            path.display(),
            dir.display()
        )
    })?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid run description", path.display()))
}

/// Continues an interrupted run: replays it from its journal, measuring only what is missing.
///
/// A complete run is left exactly as it is (nothing read for writing, nothing rewritten). While
/// the replay has not yet caught up with the journal, nothing in the folder is rewritten either,
/// so a resume stopped early (Ctrl-C, a closed pipe, a crash) never replaces the folder's
/// reports with versions holding less than they did.
pub fn resume(dir: &Path, opts: &RunOptions) -> Result<Outcome> {
    let dir = &run_folder(dir)?;
    let info = read_run_info(dir)?;
    if info.status == "complete" {
        return complete_outcome(dir, &info);
    }
    let (mut run_dir, records) = RunDir::open(dir)?;
    let quant = run_dir.open_quant()?;
    // Read again under the lock: the file may have changed while another process held it.
    let mut info = read_run_info(dir)?;
    if info.status == "complete" {
        return complete_outcome(dir, &info);
    }
    info.resumed_at.push(crate::util::now_rfc3339());
    info.status = "running".into();
    info.stop_reason = None;
    info.finished_at = None;
    let cfg = info.config.clone();
    cfg.validate()?;
    let eval = make_evaluator(&cfg, &info.run_id)?;
    let mut s = Search::new(cfg, eval, run_dir, info, records, opts);
    s.quant = quant.into_iter().map(|r| (r.arch_id.clone(), r)).collect();
    s.rows_on_disk = std::fs::read_to_string(dir.join(store::CANDIDATES_CSV))
        .map_or(0, |t| t.lines().count().saturating_sub(1));
    s.run()
}

/// The outcome of a run that is already complete, read from its files.
fn complete_outcome(dir: &Path, info: &RunInfo) -> Result<Outcome> {
    let all = store::read_csv(&dir.join(store::CANDIDATES_CSV))?;
    let mut front = store::read_csv(&dir.join(store::FRONTIER_CSV))?;
    front.sort_by_key(|r| r.decoder_params);
    Ok(Outcome {
        dir: dir.to_path_buf(),
        candidates: all.len(),
        measured_now: 0,
        reused: 0,
        frontier: front.iter().map(|r| r.arch_id.clone()).collect(),
        frontier_rows: front,
        hypervolume: info.iterations.last().map_or(0.0, |l| l.hypervolume),
        wall_s: 0.0,
        timed_inference_s: 0.0,
        already_complete: true,
        quantized: quantized::read_csv(&dir.join(store::QUANT_CSV))?,
    })
}

impl Search {
    fn new(
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
            cfg,
        }
    }

    /// Runs the search to the end. When it stops early (a signal, a failed measurement), the
    /// reports are written for what was measured, with status `interrupted` or `failed`,
    /// unless a resume has not yet caught up with its journal (then the folder's reports hold
    /// more than this session has, and stay as they are).
    fn run(&mut self) -> Result<Outcome> {
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
    fn catching_up(&self) -> bool {
        !self.recorded.is_empty() && self.cands.len() < self.rows_on_disk
    }

    fn run_iterations(&mut self) -> Result<()> {
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
    fn admit(
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
    fn fill(
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

    fn propose_random(
        &mut self,
        count: usize,
        iteration: usize,
        rng: &mut Xoshiro256PlusPlus,
    ) -> Vec<Proposal> {
        self.fill(count, count * 200 + 1000, iteration, rng, |s, rng| {
            (s.cfg.space.sample(rng), Origin::Random, Vec::new())
        })
    }

    fn propose_lts(&mut self, iteration: usize, rng: &mut Xoshiro256PlusPlus) -> Vec<Proposal> {
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
    fn evaluate_all(&mut self, ps: &[Proposal], stage: Stage) -> (Vec<Option<Record>>, Result<()>) {
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

    fn feasible(&self, r: &Record) -> bool {
        let c = &self.cfg.space.constraints;
        let lat_ok = c.max_latency_ms.is_none_or(|m| r.eval.stats.median_ms <= m);
        let mem_ok = c.max_memory_mb.is_none_or(|m| {
            r.eval
                .peak_memory_bytes
                .is_none_or(|b| b as f64 <= m * 1024.0 * 1024.0)
        });
        lat_ok && mem_ok
    }

    /// Minimisation vector of a record: (-decoder params, latency, memory); `lat` picks the
    /// latency bound used (median, optimistic or pessimistic) and `mem_scale` scales memory.
    fn objectives(r: &Record, lat: f64, mem_scale: f64) -> Vec<f64> {
        vec![
            -(r.params.decoder as f64),
            lat,
            r.eval.peak_memory_bytes.unwrap_or(0) as f64 * mem_scale,
        ]
    }

    /// Indices of candidates meeting the space's latency/memory constraints (best record).
    fn feasible_indices(&self) -> Vec<usize> {
        (0..self.cands.len())
            .filter(|&i| self.feasible(self.cands[i].best()))
            .collect()
    }

    fn compute_front(&self) -> Vec<usize> {
        let feasible = self.feasible_indices();
        let pts: Vec<Vec<f64>> = feasible
            .iter()
            .map(|&i| {
                let r = self.cands[i].best();
                Search::objectives(r, r.eval.stats.median_ms, 1.0)
            })
            .collect();
        pareto::pareto_front(&pts)
            .into_iter()
            .map(|k| feasible[k])
            .collect()
    }

    /// Candidates without a full measurement that are not dominated when they are given their
    /// optimistic bounds (lower end of the median's CI, memory -2%) and every other candidate
    /// its pessimistic ones (upper end, +2%).
    fn near_front(&self) -> Vec<usize> {
        let feasible = self.feasible_indices();
        let pess: Vec<Vec<f64>> = feasible
            .iter()
            .map(|&i| {
                let r = self.cands[i].best();
                Search::objectives(r, r.eval.stats.median_ci_high_ms, 1.02)
            })
            .collect();
        feasible
            .iter()
            .enumerate()
            .filter(|(_, &i)| self.cands[i].full.is_none())
            .filter(|&(k, &i)| {
                let r = self.cands[i].best();
                let opt = Search::objectives(r, r.eval.stats.median_ci_low_ms, 0.98);
                !pess
                    .iter()
                    .enumerate()
                    .any(|(j, o)| j != k && pareto::dominates(o, &opt))
            })
            .map(|(_, &i)| i)
            .collect()
    }

    /// Full-protocol measurements until every frontier point has one.
    fn finalize(&mut self) -> Result<()> {
        loop {
            let need = self.near_front();
            if need.is_empty() {
                break;
            }
            let ps: Vec<Proposal> = need
                .iter()
                .map(|&i| {
                    let r = &self.cands[i].short;
                    Proposal {
                        arch: r.arch.clone(),
                        id: r.arch_id.clone(),
                        genome: r.genome.clone(),
                        origin: r.origin,
                        parents: r.parents.clone(),
                        iteration: r.iteration,
                    }
                })
                .collect();
            let (fulls, done) = self.evaluate_all(&ps, Stage::Full);
            for (i, full) in need.into_iter().zip(fulls) {
                if full.is_some() {
                    self.cands[i].full = full;
                }
            }
            done?;
        }
        self.front = self.compute_front();
        debug_assert!(self.front.iter().all(|&i| self.cands[i].full.is_some()));
        Ok(())
    }

    fn set_hv_reference(&mut self) {
        let max_lat = self
            .cands
            .iter()
            .map(|c| c.best().eval.stats.median_ms)
            .fold(0.0, f64::max);
        let max_mem = self
            .cands
            .iter()
            .map(|c| c.best().eval.peak_memory_bytes.unwrap_or(0) as f64)
            .fold(0.0, f64::max);
        self.info.hv_reference = Some(HvReference {
            max_decoder_params: self
                .cfg
                .space
                .constraints
                .decoder_params_max
                .map_or(self.cfg.space.max_decoder_params(), |m| {
                    m.min(self.cfg.space.max_decoder_params())
                }) as f64,
            latency_ms: 1.1 * max_lat.max(1e-9),
            memory_bytes: 1.1 * max_mem.max(1.0),
        });
    }

    /// Normalised 2-D and 3-D hypervolume of the current front.
    fn hypervolumes(&self) -> (f64, f64) {
        let Some(h) = &self.info.hv_reference else {
            return (0.0, 0.0);
        };
        let pts3: Vec<Vec<f64>> = self
            .front
            .iter()
            .map(|&i| {
                let r = self.cands[i].best();
                vec![
                    1.0 - r.params.decoder as f64 / h.max_decoder_params,
                    r.eval.stats.median_ms / h.latency_ms,
                    r.eval.peak_memory_bytes.unwrap_or(0) as f64 / h.memory_bytes,
                ]
            })
            .collect();
        let pts2: Vec<Vec<f64>> = pts3.iter().map(|p| p[..2].to_vec()).collect();
        (
            pareto::hypervolume(&pts2, &[1.0, 1.0]),
            pareto::hypervolume(&pts3, &[1.0, 1.0, 1.0]),
        )
    }

    fn log_iteration(&mut self, iteration: usize) -> Result<()> {
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
    fn say(&self, line: String) {
        if self.progress.is_hidden() {
            eprintln!("{line}");
        } else {
            self.progress.println(line);
        }
    }

    /// Members of the frontier that are also on the two-objective (params vs latency) one.
    fn latency_front(&self) -> Vec<usize> {
        let pts: Vec<Vec<f64>> = self
            .front
            .iter()
            .map(|&i| {
                let r = self.cands[i].best();
                vec![-(r.params.decoder as f64), r.eval.stats.median_ms]
            })
            .collect();
        pareto::pareto_front(&pts)
            .into_iter()
            .map(|k| self.front[k])
            .collect()
    }

    fn rows(&self) -> (Vec<CandidateRow>, Vec<CandidateRow>) {
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

    fn save_run_json(&self) -> Result<()> {
        self.dir.write(
            store::RUN_JSON,
            serde_json::to_string_pretty(&self.info)?.as_bytes(),
        )
    }

    /// Rewrites the CSVs, `run.json`, the plots and `summary.md` from the candidates in
    /// memory; does nothing while a resume is catching up with its journal (the files on disk
    /// hold more than memory does until then).
    fn write_reports(&self) -> Result<()> {
        if self.catching_up() {
            return Ok(());
        }
        let (all, front) = self.rows();
        store::write_csv(&self.dir.path.join(store::CANDIDATES_CSV), &all)?;
        store::write_csv(&self.dir.path.join(store::FRONTIER_CSV), &front)?;
        let quant = self.write_quant_csv()?;
        self.save_run_json()?;
        let points: Vec<crate::report::plot::PlotPoint> = all
            .iter()
            .map(|r| crate::report::plot::PlotPoint {
                label: r.arch_id.clone(),
                decoder_params: r.decoder_params as f64,
                latency_ms: r.latency_median_ms,
                on_front: r.on_latency_frontier,
                feasible: r.feasible,
            })
            .collect();
        let w = &self.cfg.workload;
        let title = format!(
            "LTS frontier: {} space, {} ({})",
            self.cfg.space.name,
            self.info
                .device
                .cpu_brand
                .as_deref()
                .unwrap_or("this machine"),
            if self.info.runtime.is_empty() {
                "?"
            } else {
                &self.info.runtime
            }
        );
        let subtitle = format!(
            "{}, batch {} | {} candidates; line: params-latency frontier ({}); {} on the 3-objective frontier with memory | run {}",
            w.describe(),
            w.batch,
            all.len(),
            front.iter().filter(|r| r.on_latency_frontier).count(),
            front.len(),
            self.info.run_id
        );
        let png = self.dir.path.join(store::FRONTIER_PNG);
        let plotted = crate::report::plot::frontier_plot(
            &points,
            &quant_series(&quant),
            &title,
            &subtitle,
            &self.dir.path.join(store::FRONTIER_SVG),
            Some(&png),
        );
        if let Err(e) = &plotted {
            self.say(format!("warning: could not draw the frontier plot: {e:#}"));
        }
        self.dir.write(
            store::SUMMARY_MD,
            crate::report::markdown::summary(&self.info, &front, &all, &quant).as_bytes(),
        )
    }
}

/// The plot's quantized series: one per scheme, each variant linked to its fp32 point.
fn quant_series(rows: &[quantized::QuantRow]) -> Vec<crate::report::plot::QuantSeries> {
    use crate::report::plot::{QuantPoint, QuantSeries};
    let mut out: Vec<QuantSeries> = Vec::new();
    for r in rows {
        let p = QuantPoint {
            label: r.arch_id.clone(),
            decoder_params: r.decoder_params as f64,
            fp32_latency_ms: r.fp32_median_ms,
            latency_ms: r.latency_median_ms,
        };
        match out.iter_mut().find(|s| s.scheme == r.scheme) {
            Some(s) => s.points.push(p),
            None => out.push(QuantSeries {
                scheme: r.scheme.clone(),
                points: vec![p],
            }),
        }
    }
    out
}
