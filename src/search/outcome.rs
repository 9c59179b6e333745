//! What a search run takes besides its config ([`RunOptions`]: output, the reporter) and what
//! it gives back ([`Outcome`]); the [`Reporter`] renders its human-readable files from the
//! in-memory rows ([`RunReport`]), so the search knows nothing of tables or plots.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use indicatif::MultiProgress;
use serde::Serialize;

use super::quantized::QuantRow;
use super::store::{CandidateRow, RunInfo};

/// What a run writes for people after every iteration (the plots and `summary.md`), from its
/// rows: implemented by `crate::report` (ripgrep's searcher and its printer: the search hands
/// over data, the reporter renders it).
pub trait Reporter: Send + Sync + std::fmt::Debug {
    /// Writes the human-readable files of the run in `run.dir`; `warn` prints a warning line
    /// (above the progress bar) for what could not be drawn but does not stop the run.
    fn write(&self, run: &RunReport<'_>, warn: &dyn Fn(String)) -> Result<()>;
}

/// One snapshot of a run for its [`Reporter`]: the rows of `candidates.csv`, `frontier.csv`
/// and `quant.csv` as they are being written, and the run's description.
pub struct RunReport<'a> {
    /// The run folder.
    pub dir: &'a Path,
    /// `run.json` as written with these rows.
    pub info: &'a RunInfo,
    /// Every candidate (`candidates.csv`).
    pub all: &'a [CandidateRow],
    /// The frontier by decoder params (`frontier.csv`).
    pub front: &'a [CandidateRow],
    /// The quantized variants (`quant.csv`; empty without `--quantize`).
    pub quant: &'a [QuantRow],
}

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
    /// Renders the plots and `summary.md` after every iteration; `None`: only the CSV and
    /// JSON files are written.
    pub reporter: Option<Arc<dyn Reporter>>,
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
    pub quantized: Vec<QuantRow>,
}
