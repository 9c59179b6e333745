//! The results folder of a search run, `results/<run-id>/`, written so that a crash or Ctrl-C
//! loses nothing already measured:
//!
//! - `measurements.jsonl`: the journal, one JSON line per measurement (arch, genome, lineage,
//!   stage, statistics and **raw samples**), appended and flushed to disk before anything else
//!   is updated. It is the source of truth `lts search --resume` reads; a torn last line (the
//!   process killed mid-write) is dropped.
//! - `candidates.csv` / `frontier.csv`: one row per measured candidate (best stage available) /
//!   per frontier point, rewritten atomically (temp file + rename) after every measurement.
//! - `run.json`: configuration, device, runtime, per-iteration log (frontier size,
//!   hypervolume), status.
//! - `frontier.svg`, `frontier.png`, `summary.md`: written after every iteration.
//! - With `--quantize`: `quant.jsonl`, a second journal (one JSON line per quantized frontier
//!   member: fp32 and every variant, raw samples and fidelity; same append-and-flush rule, a
//!   torn last line cut on resume) and `quant.csv`, its rows ([`super::quantized`]).
//! - `.lock`: one owner per folder. The process writing the run holds an exclusive advisory
//!   lock on it (`flock`, through `std::fs::File::try_lock`) from before its first write to its
//!   exit, resume included, and writes its pid into it; a second `lts search` on the folder is
//!   refused with that pid. The lock goes with the process, even when it is killed, so a stale
//!   `.lock` file never blocks anyone.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::config::SearchConfig;
use super::objectives::{Evaluation, Stage};
use super::quantized::QuantRecord;
use super::space::Genome;
use crate::arch::{Arch, ParamCounts};
use crate::device::DeviceInfo;
use crate::util::write_atomic;
use crate::workload::Workload;

/// How a candidate was produced.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Sampled uniformly from the space (initial population, random search).
    Random,
    /// Mutation of one parent.
    Mutation,
    /// Uniform crossover of two parents.
    Crossover,
}

/// One line of the journal: one measurement of one candidate.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Record {
    /// Arch id.
    pub arch_id: String,
    /// The candidate.
    pub arch: Arch,
    /// Its genes.
    pub genome: Genome,
    /// Iteration that produced the candidate (0 = initial population).
    pub iteration: usize,
    /// How it was produced.
    pub origin: Origin,
    /// Parent arch ids.
    pub parents: Vec<String>,
    /// Protocol used.
    pub stage: Stage,
    /// Exact parameter counts.
    pub params: ParamCounts,
    /// Forward FLOPs of one run.
    pub flops_per_run: u64,
    /// The numbers.
    pub eval: Evaluation,
    /// UTC start of the measurement.
    pub started_at: String,
    /// UTC end of the measurement.
    pub finished_at: String,
}

/// One line of the per-iteration log in `run.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct IterationLog {
    /// Iteration (0 = initial population).
    pub iteration: usize,
    /// Distinct candidates measured so far.
    pub candidates: usize,
    /// Of which re-measured with the full protocol.
    pub full_measured: usize,
    /// Candidates rejected before measurement (static constraints) so far.
    pub pruned: usize,
    /// Frontier size after this iteration.
    pub frontier_size: usize,
    /// Normalised 2-D hypervolume (decoder params x latency), see [`HvReference`].
    pub hypervolume: f64,
    /// Normalised 3-D hypervolume (decoder params x latency x memory).
    pub hypervolume_3d: f64,
    /// Wall seconds since the session that logged this iteration started (the run, or its
    /// `session`-th resume).
    pub wall_s: f64,
    /// Seconds spent in timed inference (sum of samples) so far, in that session; 0 for the
    /// cost model, which times nothing.
    pub timed_inference_s: f64,
    /// Which session logged it: 0 for the run itself, k for its k-th resume. A resume keeps
    /// the entries logged before it and adds only the iterations it completes.
    #[serde(default)]
    pub session: usize,
}

/// Reference point of the hypervolume, fixed after the initial population: decoder params 0,
/// 1.1 x the largest latency and 1.1 x the largest peak memory measured in iteration 0. Volumes
/// are normalised by the box from the space's largest decoder-parameter count (capped by its
/// `decoder_params_max` constraint) to that point, so
/// they lie in [0, 1] and compare across runs with the same seed and space (the initial
/// population is the same for `lts` and `random`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct HvReference {
    /// Normalising decoder-parameter range (the space's maximum).
    pub max_decoder_params: f64,
    /// Latency bound (ms).
    pub latency_ms: f64,
    /// Memory bound (bytes).
    pub memory_bytes: f64,
}

/// `run.json`.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct RunInfo {
    /// lts version.
    pub tool_version: String,
    /// Folder name.
    pub run_id: String,
    /// Settings.
    pub config: SearchConfig,
    /// Machine description.
    pub device: DeviceInfo,
    /// Runtime used (e.g. `onnxruntime 1.31.1`) or `cost-model`.
    pub runtime: String,
    /// UTC start.
    pub started_at: String,
    /// UTC end, when complete.
    pub finished_at: Option<String>,
    /// `running`, `complete`, `interrupted` (Ctrl-C / SIGTERM; resumable) or `failed` (see
    /// `stop_reason`; resumable once the cause is fixed).
    pub status: String,
    /// Why the last session stopped before the end (`interrupted` / `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    /// Times the run was resumed.
    pub resumed_at: Vec<String>,
    /// Hypervolume reference.
    pub hv_reference: Option<HvReference>,
    /// Per-iteration log.
    pub iterations: Vec<IterationLog>,
}

/// One row of `candidates.csv` / `frontier.csv`. Lists are `;`-separated.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CandidateRow {
    /// Arch id.
    pub arch_id: String,
    /// gpt2 / llama.
    pub family: String,
    /// Blocks.
    pub n_layer: usize,
    /// Hidden size.
    pub d_model: usize,
    /// Per-layer MLP sizes, `;`-separated.
    pub d_inner: String,
    /// Per-layer heads.
    pub n_head: String,
    /// Per-layer KV heads.
    pub n_kv_head: String,
    /// Decoder (non-embedding) parameters: the LTS proxy.
    pub decoder_params: u64,
    /// Total parameters.
    pub total_params: u64,
    /// Forward FLOPs of one run.
    pub flops_per_run: u64,
    /// What one timed run computed: `prefill`, `decode` or `generate` (the run's objective).
    #[serde(default)]
    pub workload: String,
    /// Prefill: prompt tokens; decode: cached positions; generate: prompt tokens.
    #[serde(default)]
    pub seq_len: usize,
    /// Generate: decode steps after the first token (0 otherwise).
    #[serde(default)]
    pub new_tokens: usize,
    /// Positions of the prefill that got logits: `last` (the first token's work) or `all`.
    #[serde(default)]
    pub logits: String,
    /// Generate: median time to first token (ms); empty otherwise.
    #[serde(default)]
    pub ttft_ms: Option<f64>,
    /// Generate: tokens/s after the first token; empty otherwise.
    #[serde(default)]
    pub tokens_per_s: Option<f64>,
    /// `short` or `full`: the protocol of the statistics in this row.
    pub stage: String,
    /// Timed runs.
    pub runs: usize,
    /// Mean latency (ms).
    pub latency_mean_ms: f64,
    /// Median latency (ms): the latency objective.
    pub latency_median_ms: f64,
    /// Lower end of the median's confidence interval.
    pub latency_ci_low_ms: f64,
    /// Upper end of the median's confidence interval.
    pub latency_ci_high_ms: f64,
    /// Relative half-width of the median's confidence interval, `max(median - low, high -
    /// median) / median` (the precision the full protocol's `--target-ci` asks for); empty when
    /// unavailable (and in files written before the column existed).
    #[serde(default)]
    pub latency_ci_rel: Option<f64>,
    /// p90 (ms).
    pub latency_p90_ms: f64,
    /// p99 (ms).
    pub latency_p99_ms: f64,
    /// Standard deviation (ms).
    pub latency_std_ms: f64,
    /// Coefficient of variation.
    pub latency_cv: f64,
    /// Peak memory (bytes): GPU buffers for the wgpu backend, peak RSS delta for ort; empty when
    /// unavailable.
    pub peak_memory_bytes: Option<u64>,
    /// CV above the protocol's threshold.
    pub noisy: bool,
    /// Protocol minimums met.
    pub valid: bool,
    /// Meets the latency/memory constraints of the space.
    pub feasible: bool,
    /// On the final (or current) Pareto frontier of all three objectives (decoder params,
    /// latency, peak memory).
    pub on_frontier: bool,
    /// On the two-objective frontier (decoder params vs latency, memory ignored): the line in
    /// frontier.svg. A subset of `on_frontier`.
    pub on_latency_frontier: bool,
    /// Iteration that produced it.
    pub iteration: usize,
    /// random / mutation / crossover.
    pub origin: String,
    /// Parent ids, `;`-separated.
    pub parents: String,
    /// Session creation (ms).
    pub session_creation_ms: f64,
    /// Graph emission (ms).
    pub graph_emission_ms: f64,
    /// Hottest watched temperature before the measurement (C); empty when no sensor is readable.
    #[serde(default)]
    pub temp_before_c: Option<f32>,
    /// Hottest watched temperature after the last timed run (C).
    #[serde(default)]
    pub temp_after_c: Option<f32>,
    /// Fastest core's clock before the measurement (MHz); empty without cpufreq.
    #[serde(default)]
    pub cpu_mhz_before: Option<u64>,
    /// Fastest core's clock after the last timed run (MHz).
    #[serde(default)]
    pub cpu_mhz_after: Option<u64>,
    /// Seconds waited for the cool-down temperature before this measurement.
    #[serde(default)]
    pub cooldown_s: Option<f64>,
    /// True when the measurement ran throttled or down-clocked (see `thermal_flags`).
    #[serde(default)]
    pub throttled: bool,
    /// Why it is flagged, `;`-separated (throttle bits, trip points, clock caps and drops).
    #[serde(default)]
    pub thermal_flags: String,
    /// UTC start of the measurement in this row.
    pub started_at: String,
    /// UTC end of the measurement in this row.
    pub finished_at: String,
}

fn join<T: ToString>(v: &[T]) -> String {
    v.iter().map(T::to_string).collect::<Vec<_>>().join(";")
}

impl CandidateRow {
    /// The row for a record; `feasible` and `on_frontier` are decided by the search.
    pub fn from_record(
        r: &Record,
        workload: &Workload,
        feasible: bool,
        on_frontier: bool,
        on_latency_frontier: bool,
    ) -> CandidateRow {
        let s = &r.eval.stats;
        let th = r.eval.thermal.as_ref();
        CandidateRow {
            arch_id: r.arch_id.clone(),
            family: r.arch.family.to_string(),
            n_layer: r.arch.n_layer,
            d_model: r.arch.d_model,
            d_inner: join(&r.arch.d_inner),
            n_head: join(&r.arch.n_head),
            n_kv_head: join(&r.arch.n_kv_head),
            decoder_params: r.params.decoder,
            total_params: r.params.total,
            flops_per_run: r.flops_per_run,
            workload: workload.mode.as_str().into(),
            seq_len: workload.seq_len,
            new_tokens: workload.new_tokens,
            logits: workload.logits.as_str().into(),
            ttft_ms: r.eval.generation.as_ref().map(|g| g.first_token.median_ms),
            tokens_per_s: r.eval.generation.as_ref().map(|g| g.tokens_per_s),
            stage: match r.stage {
                Stage::Short => "short".into(),
                Stage::Full => "full".into(),
            },
            runs: s.n,
            latency_mean_ms: s.mean_ms,
            latency_median_ms: s.median_ms,
            latency_ci_low_ms: s.median_ci_low_ms,
            latency_ci_high_ms: s.median_ci_high_ms,
            latency_ci_rel: s.median_ci_rel,
            latency_p90_ms: s.p90_ms,
            latency_p99_ms: s.p99_ms,
            latency_std_ms: s.std_ms,
            latency_cv: s.cv,
            peak_memory_bytes: r.eval.peak_memory_bytes,
            noisy: s.noisy,
            valid: r.eval.valid,
            feasible,
            on_frontier,
            on_latency_frontier,
            iteration: r.iteration,
            origin: match r.origin {
                Origin::Random => "random".into(),
                Origin::Mutation => "mutation".into(),
                Origin::Crossover => "crossover".into(),
            },
            parents: r.parents.join(";"),
            session_creation_ms: r.eval.session_creation_ms,
            graph_emission_ms: r.eval.graph_emission_ms,
            temp_before_c: th.and_then(|t| t.temp_before_c),
            temp_after_c: th.and_then(|t| t.temp_after_c),
            cpu_mhz_before: th.and_then(|t| t.before.fastest_khz()).map(|k| k / 1000),
            cpu_mhz_after: th.and_then(|t| t.after.fastest_khz()).map(|k| k / 1000),
            cooldown_s: th.and_then(|t| t.cooldown.as_ref()).map(|c| c.waited_s),
            throttled: th.is_some_and(|t| t.throttled()),
            thermal_flags: th.map(|t| t.flags.join("; ")).unwrap_or_default(),
            started_at: r.started_at.clone(),
            finished_at: r.finished_at.clone(),
        }
    }
}

/// Writes rows as CSV (header + rows) atomically.
pub fn write_csv(path: &Path, rows: &[CandidateRow]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r)?;
    }
    if rows.is_empty() {
        // Header only, so an empty result still opens in a spreadsheet with its columns.
        let mut h = csv::Writer::from_writer(Vec::new());
        h.write_record(CSV_COLUMNS)?;
        return write_atomic(path, &h.into_inner()?);
    }
    write_atomic(path, &w.into_inner()?)
}

/// Reads a CSV written by [`write_csv`].
pub fn read_csv(path: &Path) -> Result<Vec<CandidateRow>> {
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    r.deserialize()
        .collect::<std::result::Result<Vec<CandidateRow>, _>>()
        .with_context(|| format!("malformed CSV {}", path.display()))
}

/// Column names of the CSV files, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "arch_id",
    "family",
    "n_layer",
    "d_model",
    "d_inner",
    "n_head",
    "n_kv_head",
    "decoder_params",
    "total_params",
    "flops_per_run",
    "workload",
    "seq_len",
    "new_tokens",
    "logits",
    "ttft_ms",
    "tokens_per_s",
    "stage",
    "runs",
    "latency_mean_ms",
    "latency_median_ms",
    "latency_ci_low_ms",
    "latency_ci_high_ms",
    "latency_ci_rel",
    "latency_p90_ms",
    "latency_p99_ms",
    "latency_std_ms",
    "latency_cv",
    "peak_memory_bytes",
    "noisy",
    "valid",
    "feasible",
    "on_frontier",
    "on_latency_frontier",
    "iteration",
    "origin",
    "parents",
    "session_creation_ms",
    "graph_emission_ms",
    "temp_before_c",
    "temp_after_c",
    "cpu_mhz_before",
    "cpu_mhz_after",
    "cooldown_s",
    "throttled",
    "thermal_flags",
    "started_at",
    "finished_at",
];

/// File names inside a run folder.
pub const JOURNAL: &str = "measurements.jsonl";
/// Run description and log.
pub const RUN_JSON: &str = "run.json";
/// All candidates.
pub const CANDIDATES_CSV: &str = "candidates.csv";
/// Frontier only.
pub const FRONTIER_CSV: &str = "frontier.csv";
/// The owner's lock (see the module documentation).
pub const LOCK: &str = ".lock";
/// The human-readable report.
pub const SUMMARY_MD: &str = "summary.md";
/// The frontier plot, vector.
pub const FRONTIER_SVG: &str = "frontier.svg";
/// The frontier plot, raster.
pub const FRONTIER_PNG: &str = "frontier.png";
/// The journal of quantized variants (`lts search --quantize`): one JSON line per frontier
/// member, its fp32 and quantized timings measured interleaved, with raw samples and fidelity.
pub const QUANT_JOURNAL: &str = "quant.jsonl";
/// One row per frontier member and scheme (`lts search --quantize`).
pub const QUANT_CSV: &str = "quant.csv";

/// Takes the folder's lock without waiting, and writes this process's pid into it; an error
/// names the holder's pid when another process has it.
fn lock(path: &Path) -> Result<File> {
    let lpath = path.join(LOCK);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lpath)
        .with_context(|| format!("cannot open the run lock {}", lpath.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "pid unknown".to_string(),
                pid => format!("pid {pid}"),
            };
            bail!(
                "{} is in use by another lts process ({holder}): two processes on one run would measure candidates twice and overwrite each other's results; wait for it to finish or stop it, then `lts search --resume {}`",
                path.display(),
                path.display()
            );
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| {
                format!(
                    "cannot lock {} (the results folder must be on a file system with file locks)",
                    lpath.display()
                )
            })
        }
    }
    file.set_len(0)
        .and_then(|()| file.write_all(format!("{}\n", std::process::id()).as_bytes()))
        .with_context(|| format!("cannot write {}", lpath.display()))?;
    Ok(file)
}

/// Reads the complete JSON lines of `file`: the records and the length of the part that
/// holds them (a torn last line, from a process killed mid-write, is left out with a note).
fn read_jsonl<T: DeserializeOwned>(file: File, path: &Path) -> Result<(Vec<T>, u64)> {
    let mut records = Vec::new();
    let mut good_len = 0u64;
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    let mut line_no = 0;
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if !line.ends_with('\n') {
            eprintln!(
                "lts: dropping an incomplete last line of {} (the run was interrupted while writing it)",
                path.display()
            );
            break;
        }
        records.push(
            serde_json::from_str(line.trim_end())
                .with_context(|| format!("{}:{line_no}: corrupt journal line", path.display()))?,
        );
        good_len += n as u64;
    }
    Ok((records, good_len))
}

/// Opens a journal for appending after reading its complete records, a torn last line cut off
/// the file. A missing file is an error, or with `may_be_missing` no records and no file.
fn open_jsonl<T: DeserializeOwned>(
    path: &Path,
    may_be_missing: bool,
) -> Result<(Vec<T>, Option<File>)> {
    let file = match File::open(path) {
        Err(e) if may_be_missing && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((Vec::new(), None))
        }
        r => r.with_context(|| format!("cannot open {}", path.display()))?,
    };
    let (records, good_len) = read_jsonl(file, path)?;
    let journal = OpenOptions::new().write(true).open(path)?;
    journal.set_len(good_len)?;
    drop(journal);
    let journal = OpenOptions::new().append(true).open(path)?;
    Ok((records, Some(journal)))
}

/// Test hook (`LTS_TEST_KILL_AFTER*`, debug builds only): a real SIGKILL of this process.
#[cfg(debug_assertions)]
fn kill_self() {
    // SAFETY: plain libc call on our own pid.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
}

/// Appends `rec` as one JSON line to `file` and forces it to disk.
fn append_line<T: Serialize>(file: &mut File, rec: &T, path: &Path) -> Result<()> {
    let mut line = serde_json::to_string(rec)?;
    line.push('\n');
    file.write_all(line.as_bytes())
        .and_then(|()| file.sync_data())
        .with_context(|| format!("cannot append to {}", path.display()))
}

/// An open run folder with its journal.
pub struct RunDir {
    /// The folder.
    pub path: PathBuf,
    journal: File,
    /// [`QUANT_JOURNAL`], once opened or created.
    quant_journal: Option<File>,
    /// Held for as long as the folder is open (the lock is released when the file closes).
    _lock: File,
    /// Set by tests to simulate a crash: SIGKILL this process after this many appends (debug
    /// builds only).
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    kill_after: Option<usize>,
    appended: usize,
    /// The same for appends to the quant journal (`LTS_TEST_KILL_AFTER_QUANT`).
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    kill_after_quant: Option<usize>,
    appended_quant: usize,
}

impl RunDir {
    /// Creates a new run folder and takes its lock (an error if another process holds it, or if
    /// the folder already holds a run: checked under the lock, so two processes started together
    /// cannot both start a run there).
    pub fn create(path: &Path) -> Result<RunDir> {
        std::fs::create_dir_all(path)
            .with_context(|| format!("cannot create results folder {}", path.display()))?;
        let lock = lock(path)?;
        if path.join(RUN_JSON).exists() || path.join(JOURNAL).exists() {
            bail!(
                "{} already holds a run: continue it with `lts search --resume {}` or choose another --run-id",
                path.display(),
                path.display()
            );
        }
        let journal = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(path.join(JOURNAL))
            .with_context(|| format!("cannot create {}", path.join(JOURNAL).display()))?;
        Ok(RunDir::with_journal(path, journal, lock))
    }

    fn with_journal(path: &Path, journal: File, lock: File) -> RunDir {
        // Test hook, compiled into debug builds only (the ones `cargo test` runs): SIGKILL
        // this process right after the N-th append, to test crash safety at a known point.
        let hook = |name: &str| {
            if cfg!(debug_assertions) {
                std::env::var(name).ok().and_then(|v| v.parse().ok())
            } else {
                None
            }
        };
        RunDir {
            path: path.to_path_buf(),
            journal,
            quant_journal: None,
            _lock: lock,
            kill_after: hook("LTS_TEST_KILL_AFTER"),
            appended: 0,
            kill_after_quant: hook("LTS_TEST_KILL_AFTER_QUANT"),
            appended_quant: 0,
        }
    }

    /// Reads the complete records of a run folder's journal without changing anything (a torn
    /// last line is skipped).
    pub fn read_records(path: &Path) -> Result<Vec<Record>> {
        let jpath = path.join(JOURNAL);
        let file = File::open(&jpath).with_context(|| {
            format!(
                "cannot read {} (is {} a search results folder?)",
                jpath.display(),
                path.display()
            )
        })?;
        Ok(read_jsonl(file, &jpath)?.0)
    }

    /// Opens an existing run folder for resuming: takes its lock, returns it and the journal's
    /// complete records. A torn last line is cut off the file so appends continue cleanly.
    pub fn open(path: &Path) -> Result<(RunDir, Vec<Record>)> {
        if !path.join(RUN_JSON).is_file() {
            bail!(
                "{} is not a search run folder (no {RUN_JSON}); give the folder `lts search` printed",
                path.display()
            );
        }
        let lock = lock(path)?;
        let (records, journal) = open_jsonl(&path.join(JOURNAL), false)?;
        let journal = journal.context("the journal exists")?;
        Ok((RunDir::with_journal(path, journal, lock), records))
    }

    /// The quantized-variant records of the folder's [`QUANT_JOURNAL`] (none when it does not
    /// exist), a torn last line cut off; later appends go to that file.
    pub fn open_quant(&mut self) -> Result<Vec<QuantRecord>> {
        let (records, file) = open_jsonl(&self.path.join(QUANT_JOURNAL), true)?;
        self.quant_journal = file;
        Ok(records)
    }

    /// Appends one record and forces it to disk before returning.
    pub fn append(&mut self, rec: &Record) -> Result<()> {
        append_line(&mut self.journal, rec, &self.path.join(JOURNAL))?;
        self.appended += 1;
        #[cfg(debug_assertions)]
        if self.kill_after == Some(self.appended) {
            kill_self();
        }
        Ok(())
    }

    /// Appends one quantized-variant record to [`QUANT_JOURNAL`] (created on first use) and
    /// forces it to disk before returning.
    pub fn append_quant(&mut self, rec: &QuantRecord) -> Result<()> {
        let path = self.path.join(QUANT_JOURNAL);
        if self.quant_journal.is_none() {
            self.quant_journal = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .with_context(|| format!("cannot create {}", path.display()))?,
            );
        }
        let file = self.quant_journal.as_mut().expect("opened above");
        append_line(file, rec, &path)?;
        self.appended_quant += 1;
        #[cfg(debug_assertions)]
        if self.kill_after_quant == Some(self.appended_quant) {
            kill_self();
        }
        Ok(())
    }

    /// Writes a file in the run folder atomically.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.path.join(name), bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str) -> CandidateRow {
        CandidateRow {
            arch_id: id.into(),
            family: "gpt2".into(),
            n_layer: 2,
            d_model: 64,
            d_inner: "128;256".into(),
            n_head: "2;4".into(),
            n_kv_head: "2;4".into(),
            decoder_params: 1234,
            total_params: 5678,
            flops_per_run: 99,
            workload: "prefill".into(),
            seq_len: 192,
            new_tokens: 0,
            logits: "last".into(),
            ttft_ms: None,
            tokens_per_s: None,
            stage: "full".into(),
            runs: 10,
            latency_mean_ms: 1.25,
            latency_median_ms: 1.2,
            latency_ci_low_ms: 1.1,
            latency_ci_high_ms: 1.3,
            latency_ci_rel: Some(0.1),
            latency_p90_ms: 1.4,
            latency_p99_ms: 1.5,
            latency_std_ms: 0.1,
            latency_cv: 0.08,
            peak_memory_bytes: None,
            noisy: true,
            valid: true,
            feasible: true,
            on_frontier: false,
            on_latency_frontier: false,
            iteration: 3,
            origin: "crossover".into(),
            parents: "a;b".into(),
            session_creation_ms: 12.5,
            graph_emission_ms: 1.0,
            temp_before_c: None,
            temp_after_c: None,
            cpu_mhz_before: None,
            cpu_mhz_after: None,
            cooldown_s: None,
            throttled: false,
            thermal_flags: String::new(),
            started_at: "2026-11-27T17:00:00Z".into(),
            finished_at: "2026-11-27T17:00:01Z".into(),
        }
    }

    #[test]
    fn csv_round_trip_and_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.csv");
        let rows = vec![
            row("gpt2-a"),
            CandidateRow {
                peak_memory_bytes: Some(42),
                temp_before_c: Some(48.5),
                temp_after_c: Some(82.25),
                cpu_mhz_before: Some(1800),
                cpu_mhz_after: Some(1200),
                cooldown_s: Some(3.5),
                throttled: true,
                thermal_flags: "after: throttled (get_throttled=0x60006); fastest core dropped"
                    .into(),
                ..row("gpt2-b")
            },
        ];
        write_csv(&p, &rows).unwrap();
        assert_eq!(read_csv(&p).unwrap(), rows);
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().next().unwrap(), CSV_COLUMNS.join(","));
        write_csv(&p, &[]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap().trim(),
            CSV_COLUMNS.join(",")
        );
        assert!(read_csv(&p).unwrap().is_empty());
    }

    #[test]
    fn csv_without_ci_rel_column_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.csv");
        write_csv(&p, &[row("gpt2-a")]).unwrap();
        // Drop the column, as in a file written before it existed.
        let col = CSV_COLUMNS
            .iter()
            .position(|c| *c == "latency_ci_rel")
            .unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let old: Vec<String> = text
            .lines()
            .map(|l| {
                let mut cells: Vec<&str> = l.split(',').collect();
                cells.remove(col);
                cells.join(",")
            })
            .collect();
        std::fs::write(&p, old.join("\n") + "\n").unwrap();
        let back = read_csv(&p).unwrap();
        assert_eq!(back[0].latency_ci_rel, None);
        assert_eq!(
            back[0],
            CandidateRow {
                latency_ci_rel: None,
                ..row("gpt2-a")
            }
        );
    }
}
