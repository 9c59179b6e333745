//! Bad input other than sizes: closed pipes, flags that can never work, impossible search
//! spaces, files in the way, tampered files. See `tests/hostile.rs`.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Output, Stdio};

use super::common::*;

/// Runs `lts args` with stdout a pipe whose read end is closed before the child starts, as
/// `lts ... | true` does when `true` exits first (deterministically: no race with the reader).
fn run_into_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    lts(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("lts runs")
}

/// Asserts a quiet end on a closed stdout: success or death by SIGPIPE, no panic.
fn assert_quiet_broken_pipe(o: &Output, what: &str) {
    let (_, err) = text(o);
    assert!(!err.contains("panicked"), "{what}: {err}");
    assert_ne!(o.status.code(), Some(101), "{what}: {err}");
    assert!(
        o.status.success() || o.status.signal() == Some(libc::SIGPIPE),
        "{what}: status {:?}: {err}",
        o.status
    );
}

#[test]
fn closed_stdout_ends_quietly() {
    let o = run_into_closed_pipe(&["params", "--preset", "gpt2-small"]);
    assert_quiet_broken_pipe(&o, "params");
    let o = run_into_closed_pipe(&["params", "--preset", "gpt2-small", "--json"]);
    assert_quiet_broken_pipe(&o, "params --json");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().to_str().unwrap();
    let o = run_into_closed_pipe(&[
        "search",
        "--backend",
        "cost-model",
        "--population",
        "4",
        "--iterations",
        "1",
        "--out",
        out,
        "--run-id",
        "pipe",
        "-q",
    ]);
    assert_quiet_broken_pipe(&o, "search");
    // The run itself completed before the summary went to the closed pipe.
    assert!(Path::new(out).join("pipe").join("summary.md").is_file());
}

/// A folder path as text.
fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[test]
fn zero_threads_are_refused_before_the_run_folder_exists() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(&[
        "search",
        "--threads",
        "0",
        "--out",
        s(tmp.path()),
        "--run-id",
        "x",
        "-q",
    ]);
    assert_refused(&o, &["--threads 0"]);
    assert!(!tmp.path().join("x").exists(), "run folder created");
}

#[test]
fn zero_threads_are_refused_by_measure_before_building() {
    for flag in ["--threads", "--inter-threads"] {
        let o = run(&["measure", "--preset", "gpt2-tiny", flag, "0"]);
        let err = assert_refused(&o, &[&format!("{flag} 0")]);
        // Refused from the flags, not from a failed ONNX Runtime session.
        assert!(!err.contains("session"), "{err}");
    }
}
