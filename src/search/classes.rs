//! A fleet's search over several board classes (`lts search --agents` with classes): one
//! search per class, side by side, in `<run>/<class>/`, and a summary linking them.

use std::path::Path;

use anyhow::{Context, Result};
use indicatif::{MultiProgress, ProgressDrawTarget};

use super::{resume, run_new, store, Outcome, RunOptions, SearchConfig};

/// A fleet run's folder (`lts search --agents` with several board classes): no `run.json` of
/// its own, one class run per subfolder. Returns the class names, or `None` for a plain run.
pub fn fleet_classes(dir: &Path) -> Result<Option<Vec<String>>> {
    if dir.join(store::RUN_JSON).exists() {
        return Ok(None);
    }
    let mut classes = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let e = e?;
        if e.path().join(store::RUN_JSON).is_file() {
            classes.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    classes.sort();
    Ok((!classes.is_empty()).then_some(classes))
}

/// Runs (a new config) or resumes (`None`) one search per board class side by side, into
/// `dir/<class>/`, then writes `dir/summary.md` linking the classes' summaries. A class that
/// fails does not stop the others; the first failure is returned after all have ended.
///
/// Unless `quiet`, the classes share one progress display on stderr: a bar per class and a
/// line per board.
pub fn run_classes(
    classes: Vec<(String, Option<SearchConfig>)>,
    dir: &Path,
    opts: &RunOptions,
) -> Result<Vec<(String, Outcome)>> {
    let quiet = opts.quiet;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let display = MultiProgress::with_draw_target(if quiet {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    });
    let results: Vec<(String, Result<Outcome>)> = std::thread::scope(|sc| {
        let handles: Vec<_> = classes
            .into_iter()
            .map(|(class, cfg)| {
                let sub = dir.join(&class);
                let opts = RunOptions {
                    quiet,
                    display: Some(display.clone()),
                    label: Some(class.clone()),
                    reporter: opts.reporter.clone(),
                };
                let h = sc.spawn(move || match cfg {
                    Some(cfg) => run_new(cfg, &sub, &opts),
                    None => resume(&sub, &opts),
                });
                (class, h)
            })
            .collect();
        handles
            .into_iter()
            .map(|(c, h)| {
                let r = h
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("the search of class {c} panicked")));
                (c, r)
            })
            .collect()
    });
    let mut md = format!(
        "# Fleet search `{}`\n\nOne search per board class, each on its own boards.\n\n| class | candidates | frontier | hypervolume | report |\n|---|---|---|---|---|\n",
        dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    );
    let mut ok = Vec::new();
    let mut first_err = None;
    for (class, r) in results {
        match r {
            Ok(o) => {
                md.push_str(&format!(
                    "| {class} | {} | {} | {:.4} | [{class}/summary.md]({class}/summary.md) |\n",
                    o.candidates,
                    o.frontier.len(),
                    o.hypervolume
                ));
                ok.push((class, o));
            }
            Err(e) => {
                md.push_str(&format!(
                    "| {class} | stopped: {e:#} | | | [{class}/summary.md]({class}/summary.md) |\n"
                ));
                first_err.get_or_insert(e.context(format!("class {class}")));
            }
        }
    }
    crate::util::write_atomic(&dir.join(store::SUMMARY_MD), md.as_bytes())?;
    match first_err {
        Some(e) => Err(e),
        None => Ok(ok),
    }
}
