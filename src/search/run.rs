//! Starting a search run ([`run_new`]), continuing an interrupted one ([`resume`]) and the
//! evaluator a config asks for.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::config::{EvaluatorSpec, SearchConfig};
use super::evolve::Search;
use super::objectives::{self, CostModel, Evaluator, Measured};
use super::outcome::{Outcome, RunOptions};
use super::quantized;
use super::store::{self, RunDir, RunInfo};
use crate::device::DeviceInfo;
use crate::job::BackendSpec;

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
        return Ok(Box::new(objectives::Fleet {
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
