//! The results folder of `lts search`: one owner at a time, a resume that never makes it hold
//! less, Ctrl-C that leaves it complete for what was measured, run ids that stay inside `--out`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::common::*;

/// A cost-model search: no measurement, ~250 journal records, a second or two.
fn cost(out: &Path, run_id: &str) -> Vec<String> {
    [
        "search",
        "--backend",
        "cost-model",
        "--space",
        "quick",
        "--population",
        "40",
        "--iterations",
        "5",
        "--parents",
        "5",
        "--mutations",
        "10",
        "--crossovers",
        "10",
        "--out",
        out.to_str().unwrap(),
        "--run-id",
        run_id,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Every file of a folder but the lock, by name.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != ".lock")
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn csv_rows(path: &Path) -> usize {
    std::fs::read_to_string(path).unwrap().lines().count() - 1
}

fn run_json(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap()
}

/// A run killed (SIGKILL) after `records` journal records: an incomplete folder.
fn killed_run(out: &Path, id: &str, records: usize) -> std::path::PathBuf {
    let o = lts(&strs(&cost(out, id)))
        .arg("-q")
        .env("LTS_TEST_KILL_AFTER", records.to_string())
        .output()
        .unwrap();
    assert_eq!(
        o.status.signal(),
        Some(9),
        "expected SIGKILL: {:?}",
        text(&o)
    );
    out.join(id)
}

/// Runs `lts args` reading only `lines` lines of its stderr, then closing the pipe, as
/// `lts ... 2>&1 | head -2` does; stdout is closed from the start.
fn run_reading_stderr_lines(args: &[&str], lines: usize) {
    let mut child = lts(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        for _ in 0..lines {
            line.clear();
            if err.read_line(&mut line).unwrap() == 0 {
                break;
            }
        }
    }
    let _ = child.wait().unwrap();
}

#[test]
fn two_runs_started_together_on_one_folder_never_both_run() {
    let root = tempfile::tempdir().unwrap();
    for trial in 0..3 {
        let id = format!("r{trial}");
        let args = cost(root.path(), &id);
        let a = lts(&strs(&args))
            .arg("-q")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let b = lts(&strs(&args))
            .arg("-q")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        let ok = [&a, &b].iter().filter(|o| o.status.success()).count();
        assert_eq!(ok, 1, "trial {trial}: {:?} / {:?}", text(&a), text(&b));
        let loser = if a.status.success() { &b } else { &a };
        let (_, err) = text(loser);
        assert_eq!(loser.status.code(), Some(1), "{err}");
        assert!(
            err.contains("in use by another lts process (pid ")
                || err.contains("already holds a run"),
            "{err}"
        );
        // One writer: no measurement journaled twice.
        let journal =
            std::fs::read_to_string(root.path().join(&id).join("measurements.jsonl")).unwrap();
        let mut keys: Vec<(String, String)> = journal
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (v["arch_id"].to_string(), v["stage"].to_string())
            })
            .collect();
        let n = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(
            keys.len(),
            n,
            "trial {trial}: a measurement was journaled twice"
        );
    }
}

#[test]
fn a_resume_is_refused_while_the_run_is_running() {
    let root = tempfile::tempdir().unwrap();
    let mut args = cost(root.path(), "busy");
    // A bigger cost-model run: several seconds of writing reports.
    args[6] = "400".into();
    args[8] = "20".into();
    let first = lts(&strs(&args))
        .arg("-q")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let dir = root.path().join("busy");
    let t0 = Instant::now();
    while std::fs::read_to_string(dir.join("measurements.jsonl")).map_or(0, |t| t.lines().count())
        < 1
    {
        assert!(t0.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(5));
    }
    let o = run(&["search", "--resume", dir.to_str().unwrap(), "-q"]);
    let first_pid = first.id();
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success());
    assert_refused(
        &o,
        &[
            "in use by another lts process",
            &format!("(pid {first_pid})"),
        ],
    );
}

#[test]
fn a_resume_is_refused_while_another_process_holds_the_run() {
    let root = tempfile::tempdir().unwrap();
    let dir = killed_run(root.path(), "held", 30);
    let journal = std::fs::read(dir.join("measurements.jsonl")).unwrap();
    // This test process holds the lock, as a running `lts search` would.
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join(".lock"))
        .unwrap();
    lock.try_lock().unwrap();
    std::fs::write(dir.join(".lock"), format!("{}\n", std::process::id())).unwrap();
    let o = run(&["search", "--resume", dir.to_str().unwrap(), "-q"]);
    assert_refused(
        &o,
        &[
            "in use by another lts process",
            &format!("pid {}", std::process::id()),
        ],
    );
    assert_eq!(
        std::fs::read(dir.join("measurements.jsonl")).unwrap(),
        journal
    );
    drop(lock);
    // Released: the resume runs, and the lock left behind by a killed process blocks nothing.
    let o = run(&["search", "--resume", dir.to_str().unwrap(), "-q"]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(run_json(&dir)["status"], "complete");
}

#[test]
fn resuming_a_complete_run_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let o = run(&strs(&cost(root.path(), "done")));
    assert!(o.status.success(), "{:?}", text(&o));
    let dir = root.path().join("done");
    let before = snapshot(&dir);
    // `lts search --resume DONE 2>&1 | head -2`: the reader goes away early.
    run_reading_stderr_lines(&["search", "--resume", dir.to_str().unwrap()], 1);
    assert_eq!(snapshot(&dir), before);
    // Ctrl-C right after starting.
    let child = lts(&["search", "--resume", dir.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let _ = child.wait_with_output().unwrap();
    assert_eq!(snapshot(&dir), before);
    // Said plainly, and the run.json path works as well as the folder.
    let o = run(&["search", "--resume", dir.join("run.json").to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains("already complete: nothing measured, nothing changed"),
        "{out}"
    );
    assert_eq!(snapshot(&dir), before);
}

#[test]
fn a_resume_stopped_while_replaying_keeps_what_the_folder_held() {
    let root = tempfile::tempdir().unwrap();
    let straight = root.path().join("straight");
    let o = run(&strs(&cost(root.path(), "straight")));
    assert!(o.status.success(), "{:?}", text(&o));
    let total = std::fs::read_to_string(straight.join("measurements.jsonl"))
        .unwrap()
        .lines()
        .count();
    let dir = killed_run(root.path(), "cut", total - 20);
    let rows = csv_rows(&dir.join("candidates.csv"));
    let front = std::fs::read(dir.join("frontier.csv")).unwrap();
    let info = run_json(&dir);
    assert!(
        rows > 40,
        "the killed run got past its first iterations: {rows} rows"
    );
    // The reader of stderr goes away after two lines, while the resume is replaying.
    run_reading_stderr_lines(&["search", "--resume", dir.to_str().unwrap()], 2);
    assert!(csv_rows(&dir.join("candidates.csv")) >= rows);
    assert_eq!(std::fs::read(dir.join("frontier.csv")).unwrap(), front);
    assert_eq!(run_json(&dir), info);
    // A full resume then completes it as if it had never stopped, and keeps the timings the
    // first session logged.
    let o = run(&["search", "--resume", dir.to_str().unwrap(), "-q"]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(
        std::fs::read_to_string(dir.join("candidates.csv"))
            .unwrap()
            .lines()
            .count(),
        std::fs::read_to_string(straight.join("candidates.csv"))
            .unwrap()
            .lines()
            .count()
    );
    let after = run_json(&dir);
    let logged = info["iterations"].as_array().unwrap();
    assert!(!logged.is_empty());
    let now = after["iterations"].as_array().unwrap();
    assert_eq!(
        &now[..logged.len()],
        &logged[..],
        "earlier sessions' log kept as it was"
    );
    assert!(
        now[logged.len()..].iter().all(|l| l["session"] == 1),
        "{now:?}"
    );
    assert_eq!(after["status"], "complete");
}

/// A small space measured for real (ONNX Runtime), slow enough to be interrupted.
fn real_search(out: &Path, id: &str) -> std::process::Command {
    let space = out.join("tiny.toml");
    std::fs::write(
        &space,
        r#"name = "tiny"
family = "gpt2"
[fixed]
vocab_size = 512
n_positions = 32
[knobs]
n_layer = { min = 1, max = 3, step = 1 }
d_model = { min = 32, max = 96, step = 32 }
d_inner = { min = 64, max = 256, step = 64, per_layer = true }
n_head = { values = [2, 4], per_layer = true }
[search]
seq_len = 16
"#,
    )
    .unwrap();
    let mut c = lts(&[
        "search",
        "--space",
        space.to_str().unwrap(),
        "--population",
        "60",
        "--iterations",
        "2",
        "--parents",
        "4",
        "--mutations",
        "8",
        "--crossovers",
        "8",
        "--threads",
        "1",
        "--out",
        out.to_str().unwrap(),
        "--run-id",
        id,
    ]);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

#[test]
fn ctrl_c_and_sigterm_leave_a_folder_complete_for_what_was_measured() {
    let root = tempfile::tempdir().unwrap();
    for (signal, code, id) in [(libc::SIGINT, 130, "int"), (libc::SIGTERM, 143, "term")] {
        let child = real_search(root.path(), id).spawn().unwrap();
        let journal = root.path().join(id).join("measurements.jsonl");
        let t0 = Instant::now();
        while std::fs::read_to_string(&journal).map_or(0, |t| t.lines().count()) < 4 {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "no measurement in 60 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        unsafe { libc::kill(child.id() as i32, signal) };
        let o = child.wait_with_output().unwrap();
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(code), "{err}");
        assert!(
            err.contains("--resume") && !err.contains("panicked"),
            "{err}"
        );
        let dir = root.path().join(id);
        let text = std::fs::read_to_string(&journal).unwrap();
        assert!(text.ends_with('\n'), "torn journal record");
        let mut ids: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["arch_id"].to_string())
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(
            csv_rows(&dir.join("candidates.csv")),
            ids.len(),
            "every measured candidate in the CSV"
        );
        let info = run_json(&dir);
        assert_eq!(info["status"], "interrupted");
        assert!(info["stop_reason"]
            .as_str()
            .unwrap()
            .contains("interrupted"));
    }
}

#[test]
fn run_ids_are_plain_names_inside_out() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("results");
    let abs = root.path().join("abs");
    for bad in ["../escape", "..", ".", "", "a/b", abs.to_str().unwrap()] {
        let o = run(&[
            "search",
            "--backend",
            "cost-model",
            "--out",
            out.to_str().unwrap(),
            "--run-id",
            bad,
        ]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {err}");
        assert!(err.contains("not a plain folder name"), "{err}");
    }
    let left: Vec<_> = std::fs::read_dir(root.path()).unwrap().collect();
    assert!(left.is_empty(), "nothing written anywhere: {left:?}");
}

#[test]
fn resume_refuses_the_flags_its_run_json_sets() {
    let root = tempfile::tempdir().unwrap();
    let dir = killed_run(root.path(), "k", 10);
    for flag in [
        &["--seed", "3"][..],
        &["--space", "gpt2-flex"],
        &["--backend", "ort"],
        &["--population", "5"],
    ] {
        let mut args = vec!["search", "--resume", dir.to_str().unwrap()];
        args.extend_from_slice(flag);
        let o = run(&args);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains("cannot be used with") && err.contains(flag[0]),
            "{err}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("measurements.jsonl"))
            .unwrap()
            .lines()
            .count(),
        10
    );
}

#[test]
fn the_cost_model_is_not_reported_as_timed_inference() {
    let root = tempfile::tempdir().unwrap();
    let o = run(&strs(&cost(root.path(), "c")));
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(!out.contains("in timed inference"), "{out}");
    assert!(out.contains("nothing timed"), "{out}");
    let summary = std::fs::read_to_string(root.path().join("c/summary.md")).unwrap();
    assert!(!summary.contains("runtime ,"), "{summary}");
    assert!(summary.contains("NO measurement"), "{summary}");
}

#[test]
fn journal_records_the_replay_never_proposes_do_not_freeze_the_reports() {
    // A journal record no replay proposes (as from another lts version) must not stop a resume
    // from writing its reports.
    let root = tempfile::tempdir().unwrap();
    let dir = killed_run(root.path(), "orphan", 60);
    let journal = dir.join("measurements.jsonl");
    let lines = std::fs::read_to_string(&journal).unwrap();
    let mut rec: serde_json::Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
    rec["arch_id"] = "gpt2-000000000000".into();
    std::fs::write(&journal, format!("{lines}{rec}\n")).unwrap();
    let o = run(&["search", "--resume", dir.to_str().unwrap(), "-q"]);
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("1 journal record(s) were not part of this replay"),
        "{err}"
    );
    assert_eq!(run_json(&dir)["status"], "complete");
    let rows = csv_rows(&dir.join("candidates.csv"));
    assert!(rows > 60, "reports written for the whole run: {rows} rows");
}
