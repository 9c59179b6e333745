//! End-to-end tests of `lts search`: files written, resume after SIGKILL, export from a run.
//!
//! Runs are `assert_cmd` commands checked with `predicates`, as in hyperfine's
//! `tests/integration_tests.rs`; the two tests that kill the child keep `std::process` for that
//! one run (see there).

use std::collections::HashSet;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin_cmd;
use assert_cmd::Command;
use predicates::prelude::*;
use predicates::str::contains;

use lts::search::store::{read_csv, RunDir};

fn lts() -> Command {
    cargo_bin_cmd!("lts")
}

/// The binary as a `std::process::Command`, for runs `assert_cmd` cannot express: it only runs
/// a child to completion, so it cannot kill one from outside mid-run, and its `Assert` checks
/// exit codes, not the signal that ended the child.
fn lts_std() -> std::process::Command {
    std::process::Command::new(assert_cmd::cargo::cargo_bin!("lts"))
}

/// A refusal's message: exit status 1 (not a panic's 101 or a signal), `want` on stderr.
fn refused(cmd: &mut Command, want: &str) {
    cmd.assert()
        .failure()
        .code(1)
        .stderr(contains(want).and(contains("panicked").not()));
}

/// A small real search: quick space, tiny budget, short protocols.
const SMALL: &[&str] = &[
    "search",
    "--space",
    "quick",
    "--population",
    "6",
    "--iterations",
    "2",
    "--parents",
    "3",
    "--mutations",
    "3",
    "--crossovers",
    "3",
    "--seq-len",
    "16",
    "--short-min-runs",
    "3",
    "--full-min-runs",
    "3",
    "--full-min-duration-s",
    "0.05",
    // The precision rule stays on (default --target-ci 0.02) but may not stretch a tiny
    // model's full measurement past 0.5 s on a busy machine.
    "--full-max-duration-s",
    "0.5",
    "--quiet",
];

/// A deterministic search: cost model instead of measurement, so two runs can be compared.
const COST: &[&str] = &[
    "search",
    "--space",
    "quick",
    "--backend",
    "cost-model",
    "--population",
    "12",
    "--iterations",
    "4",
    "--parents",
    "4",
    "--mutations",
    "6",
    "--crossovers",
    "6",
    "--quiet",
];

fn ids(dir: &Path, file: &str) -> Vec<String> {
    read_csv(&dir.join(file))
        .unwrap()
        .into_iter()
        .map(|r| r.arch_id)
        .collect()
}

#[test]
fn real_search_writes_every_file_and_frontier_is_fully_measured() {
    let root = tempfile::tempdir().unwrap();
    lts()
        .args(SMALL)
        .args(["--out", root.path().to_str().unwrap(), "--run-id", "r1"])
        .assert()
        .success();
    let dir = root.path().join("r1");
    for f in [
        "candidates.csv",
        "frontier.csv",
        "run.json",
        "measurements.jsonl",
        "frontier.svg",
        "frontier.png",
        "summary.md",
    ] {
        let p = dir.join(f);
        assert!(
            p.is_file() && p.metadata().unwrap().len() > 0,
            "missing {f}"
        );
    }
    let cands = read_csv(&dir.join("candidates.csv")).unwrap();
    let front = read_csv(&dir.join("frontier.csv")).unwrap();
    assert!(cands.len() >= 6, "{}", cands.len());
    assert!(!front.is_empty());
    // One row per candidate.
    let unique: HashSet<&String> = cands.iter().map(|r| &r.arch_id).collect();
    assert_eq!(unique.len(), cands.len());
    for r in &front {
        assert_eq!(
            r.stage, "full",
            "frontier point {} lacks full statistics",
            r.arch_id
        );
        assert!(r.on_frontier && r.latency_median_ms > 0.0);
        // The full protocol's precision rule: at least --full-min-runs, achieved CI recorded.
        assert!(r.runs >= 3, "{}", r.runs);
        assert!(r.latency_ci_rel.is_some_and(|c| c >= 0.0), "{r:?}");
        assert!(
            r.decoder_params >= 50_000,
            "pruned range violated: {}",
            r.decoder_params
        );
    }
    // No frontier point is dominated by another candidate (params up, latency and memory down).
    for f in &front {
        for c in cands.iter().filter(|c| c.feasible) {
            let dominated = c.decoder_params >= f.decoder_params
                && c.latency_median_ms <= f.latency_median_ms
                && c.peak_memory_bytes <= f.peak_memory_bytes
                && (c.decoder_params > f.decoder_params
                    || c.latency_median_ms < f.latency_median_ms
                    || c.peak_memory_bytes < f.peak_memory_bytes);
            assert!(!dominated, "{} dominated by {}", f.arch_id, c.arch_id);
        }
    }
    // What was timed is recorded: CSV columns, run.json, summary.md.
    for r in &cands {
        assert_eq!(
            (r.workload.as_str(), r.logits.as_str()),
            ("prefill", "last")
        );
        assert_eq!((r.seq_len, r.new_tokens, r.ttft_ms), (16, 0, None));
    }
    let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(
        summary.contains("prefill 16 (last-position logits)"),
        "{summary}"
    );
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["config"]["workload"]["logits"], "last");
    assert_eq!(run["status"], "complete");
    assert_eq!(run["iterations"].as_array().unwrap().len(), 3);
    assert!(run["runtime"].as_str().unwrap().starts_with("onnxruntime"));
    assert!(run["device"]["logical_cores"].as_u64().unwrap() >= 1);
    // Raw samples are in the journal.
    let recs = RunDir::read_records(&dir).unwrap();
    assert!(recs.iter().all(|r| !r.eval.samples_ms.is_empty()));
    let svg = std::fs::read_to_string(dir.join("frontier.svg")).unwrap();
    assert!(svg.contains("<svg"));
    let png = std::fs::read(dir.join("frontier.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    // Export a frontier candidate from the run.
    let out = root.path().join("export");
    lts()
        .args([
            "export",
            "--from",
            dir.to_str().unwrap(),
            "--arch-id",
            &front[0].arch_id,
        ])
        .args(["--kind", "prefill", "--out", out.to_str().unwrap()])
        .assert()
        .success();
    assert!(out
        .join(format!("{}.prefill.onnx", front[0].arch_id))
        .is_file());
    assert!(out
        .join(format!("{}.arch.json", front[0].arch_id))
        .is_file());
    refused(
        lts().args([
            "export",
            "--from",
            dir.to_str().unwrap(),
            "--arch-id",
            "gpt2-000000000000",
        ]),
        "no candidate `gpt2-000000000000`",
    );
}

#[test]
fn resume_after_sigkill_matches_a_straight_run() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().to_str().unwrap();
    lts()
        .args(COST)
        .args(["--out", out, "--run-id", "straight"])
        .assert()
        .success();
    let total = RunDir::read_records(&root.path().join("straight"))
        .unwrap()
        .len();
    assert!(total > 20, "{total}");

    for kill_after in [1, total / 3, total - 1] {
        let id = format!("killed-{kill_after}");
        let dir = root.path().join(&id);
        // std::process here: `Assert` checks exit codes, and the run must end by SIGKILL.
        let o = lts_std()
            .args(COST)
            .args(["--out", out, "--run-id", &id])
            .env("LTS_TEST_KILL_AFTER", kill_after.to_string())
            .output()
            .unwrap();
        assert_eq!(
            o.status.signal(),
            Some(9),
            "expected SIGKILL: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let before = std::fs::read_to_string(dir.join("measurements.jsonl")).unwrap();
        assert_eq!(before.lines().count(), kill_after);
        let stdout = lts()
            .args(["search", "--resume", dir.to_str().unwrap(), "--json"])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let outcome: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
        assert_eq!(outcome["reused"].as_u64().unwrap() as usize, kill_after);
        assert_eq!(
            outcome["measured_now"].as_u64().unwrap() as usize,
            total - kill_after
        );
        // Nothing measured before the kill was lost or redone.
        let after = std::fs::read_to_string(dir.join("measurements.jsonl")).unwrap();
        assert!(after.starts_with(&before));
        // Same candidates in the same order, same frontier.
        assert_eq!(
            ids(&dir, "candidates.csv"),
            ids(&root.path().join("straight"), "candidates.csv")
        );
        assert_eq!(
            ids(&dir, "frontier.csv"),
            ids(&root.path().join("straight"), "frontier.csv")
        );
    }
}

#[test]
fn real_run_killed_from_outside_loses_no_measurement() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("k");
    // std::process here: assert_cmd runs a child to completion; this one is killed mid-run.
    let mut child = lts_std()
        .args(SMALL)
        .args(["--out", root.path().to_str().unwrap(), "--run-id", "k"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let journal = dir.join("measurements.jsonl");
    let t0 = Instant::now();
    loop {
        let lines = std::fs::read_to_string(&journal)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if lines >= 4 || t0.elapsed() > Duration::from_secs(120) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = RunDir::read_records(&dir).unwrap();
    assert!(before.len() >= 4);
    lts()
        .args(["search", "--resume", dir.to_str().unwrap(), "--json"])
        .assert()
        .success();
    let after = RunDir::read_records(&dir).unwrap();
    // Every record from before the kill is still there, first, unchanged, and not re-measured.
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(
            (&a.arch_id, a.stage, &a.eval.samples_ms),
            (&b.arch_id, b.stage, &b.eval.samples_ms)
        );
    }
    let mut keys = HashSet::new();
    for r in &after {
        assert!(
            keys.insert((r.arch_id.clone(), r.stage)),
            "{} measured twice",
            r.arch_id
        );
    }
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["status"], "complete");
    assert_eq!(run["resumed_at"].as_array().unwrap().len(), 1);
}

#[test]
fn random_baseline_and_same_seed_same_candidates() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().to_str().unwrap();
    for id in ["a", "b"] {
        lts()
            .args(COST)
            .args([
                "--algo", "random", "--seed", "7", "--out", out, "--run-id", id,
            ])
            .assert()
            .success();
    }
    let a = ids(&root.path().join("a"), "candidates.csv");
    assert_eq!(a, ids(&root.path().join("b"), "candidates.csv"));
    assert_eq!(a.len(), 12 + 4 * 12);
    lts()
        .args(COST)
        .args(["--seed", "8", "--out", out, "--run-id", "c"])
        .assert()
        .success();
    assert_ne!(a, ids(&root.path().join("c"), "candidates.csv"));
}

#[test]
fn bad_input_gets_clear_errors() {
    let root = tempfile::tempdir().unwrap();
    let space = root.path().join("bad.toml");
    std::fs::write(
        &space,
        "name = \"bad\"\nfamily = \"gpt2\"\n[fixed]\nvocab_size = 100\nn_positions = 64\n[knobs]\nn_layer = { min = 1, max = 2, step = 0 }\nd_model = { values = [64] }\nd_inner = { values = [64] }\nn_head = { values = [2] }\n",
    )
    .unwrap();
    refused(
        lts().args(["search", "--space", space.to_str().unwrap()]),
        "bad.toml:7",
    );

    lts()
        .args(["search", "--space", "nope"])
        .assert()
        .failure()
        .code(1)
        .stderr(contains("quick").and(contains("gpt2-flex")));

    lts()
        .args(["search", "--resume", root.path().to_str().unwrap()])
        .assert()
        .failure()
        .code(1)
        .stderr(contains("not a search run folder"))
        .stdout(contains("panicked").not())
        .stderr(contains("panicked").not());

    // An existing run folder is never overwritten.
    let out = root.path().to_str().unwrap();
    lts()
        .args(COST)
        .args(["--out", out, "--run-id", "x"])
        .assert()
        .success();
    refused(
        lts().args(COST).args(["--out", out, "--run-id", "x"]),
        "--resume",
    );
}

#[test]
fn static_constraints_are_checked_before_measuring() {
    // gpt2-flex rejects ~80% of random samples (decoder params 6M-100M, d_inner > 1.7 d_model):
    // none of them may reach the evaluator, and the pruned count says how many were skipped.
    let root = tempfile::tempdir().unwrap();
    lts()
        .args([
            "search",
            "--space",
            "gpt2-flex",
            "--backend",
            "cost-model",
            "--population",
            "20",
        ])
        .args([
            "--iterations",
            "2",
            "--parents",
            "5",
            "--mutations",
            "10",
            "--crossovers",
            "10",
        ])
        .args([
            "--quiet",
            "--out",
            root.path().to_str().unwrap(),
            "--run-id",
            "f",
        ])
        .assert()
        .success();
    let dir = root.path().join("f");
    let recs = RunDir::read_records(&dir).unwrap();
    assert!(recs.len() >= 20);
    for r in &recs {
        assert!(
            (6_000_000..=100_000_000).contains(&r.params.decoder),
            "{}",
            r.params.decoder
        );
        for &inner in &r.arch.d_inner {
            assert!(inner as f64 > 1.7 * r.arch.d_model as f64, "{:?}", r.arch);
        }
        assert!(r.arch.n_layer >= 2 && r.arch.n_layer <= 16);
    }
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap();
    let pruned = run["iterations"].as_array().unwrap().last().unwrap()["pruned"]
        .as_u64()
        .unwrap();
    assert!(pruned > 0, "nothing was pruned");
}

/// `--objective generate`: end-to-end generation latency is the objective, with time to first
/// token and tokens/s in the CSV and the summary.
#[test]
fn generate_objective_records_first_token_and_tokens_per_s() {
    let root = tempfile::tempdir().unwrap();
    lts()
        .args([
            "search",
            "--space",
            "quick",
            "--population",
            "3",
            "--iterations",
            "0",
            "--objective",
            "generate",
            "--prompt-len",
            "12",
            "--new-tokens",
            "4",
            "--short-min-runs",
            "3",
            "--full-min-runs",
            "3",
            "--full-min-duration-s",
            "0.02",
            "--quiet",
            "--out",
            root.path().to_str().unwrap(),
            "--run-id",
            "g",
        ])
        .assert()
        .success();
    let dir = root.path().join("g");
    let cands = read_csv(&dir.join("candidates.csv")).unwrap();
    assert_eq!(cands.len(), 3);
    for r in &cands {
        assert_eq!(r.workload, "generate");
        assert_eq!((r.seq_len, r.new_tokens), (12, 4));
        let ttft = r.ttft_ms.expect("time to first token");
        assert!(
            ttft > 0.0 && ttft < r.latency_median_ms,
            "{ttft} vs {}",
            r.latency_median_ms
        );
        assert!(r.tokens_per_s.unwrap() > 0.0);
    }
    let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(summary.contains("time to first token"), "{summary}");
    // A generation that does not fit the space's positions is refused before anything exists.
    lts()
        .args([
            "search",
            "--objective",
            "generate",
            "--prompt-len",
            "1000",
            "--out",
        ])
        .arg(root.path())
        .args(["--run-id", "bad"])
        .assert()
        .failure()
        .code(1)
        .stderr(contains("positions but the space has n_positions"));
    assert!(!root.path().join("bad").exists());
}

#[test]
fn quantize_times_and_judges_every_frontier_member_once_across_a_kill() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().to_str().unwrap();
    let dir = root.path().join("q");
    let q = ["--quantize", "int8-dynamic,int4:b32"];
    // Killed right after the first member's variants are journaled.
    let o = lts_std()
        .args(SMALL)
        .args(q)
        .args(["--out", out, "--run-id", "q"])
        .env("LTS_TEST_KILL_AFTER_QUANT", "1")
        .output()
        .unwrap();
    assert_eq!(
        o.status.signal(),
        Some(9),
        "expected SIGKILL: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let before = std::fs::read_to_string(dir.join("quant.jsonl")).unwrap();
    assert_eq!(before.lines().count(), 1);
    let stdout = lts()
        .args(["search", "--resume", dir.to_str().unwrap(), "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let outcome: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    // The resume measured no fp32 candidate again, and quantized only the other members.
    assert_eq!(outcome["measured_now"].as_u64(), Some(0));
    let after = std::fs::read_to_string(dir.join("quant.jsonl")).unwrap();
    assert!(after.starts_with(&before));
    let front = ids(&dir, "frontier.csv");
    assert_eq!(after.lines().count(), front.len());
    let rows = lts::search::quantized::read_csv(&dir.join("quant.csv")).unwrap();
    assert_eq!(rows.len(), 2 * front.len());
    assert_eq!(outcome["quantized"].as_array().unwrap().len(), rows.len());
    for (k, id) in front.iter().enumerate() {
        for (j, scheme) in ["int8-dynamic", "int4:b32"].iter().enumerate() {
            let r = &rows[2 * k + j];
            assert_eq!((&r.arch_id, r.scheme.as_str()), (id, *scheme));
            assert!(r.speedup > 0.0 && r.speedup.is_finite(), "{r:?}");
            assert!(r.latency_median_ms > 0.0 && r.fp32_median_ms > 0.0);
            assert!(r.runs >= 3, "{r:?}");
            assert!(r.model_bytes < r.fp32_model_bytes, "{r:?}");
            // Random GPT-2 weights: int8 well above 25 dB (20 on an x86-64 CPU without VNNI,
            // whose int8 kernels saturate: 24.5 dB measured), int4 above 12 (d_model 64-128).
            let int8 = if lts::quant::int8_may_saturate() {
                20.0
            } else {
                25.0
            };
            let floor = if j == 0 { int8 } else { 12.0 };
            assert!(r.sqnr_db > floor && r.top1_pct > 50.0, "{r:?}");
            assert!(r.ppl.is_none());
        }
    }
    for scheme in ["int8-dynamic", "int4:b32"] {
        assert!(rows
            .iter()
            .any(|r| r.scheme == scheme && r.on_scheme_frontier));
    }
    let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(summary.contains("## Quantized variants"));
    assert!(summary.contains("`int4:b32`"));
    let svg = std::fs::read_to_string(dir.join("frontier.svg")).unwrap();
    assert!(svg.contains("int8-dynamic (") && svg.contains("int4:b32 ("));
    // A complete run is left as it is, its quantized rows reported from quant.csv.
    let again: serde_json::Value = serde_json::from_slice(
        &lts()
            .args(["search", "--resume", dir.to_str().unwrap(), "--json"])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone(),
    )
    .unwrap();
    assert_eq!(again["quantized"].as_array().unwrap().len(), rows.len());
}

#[test]
fn quantize_refuses_what_cannot_work() {
    refused(
        lts().args(COST).args(["--quantize", "int8-dynamic"]),
        "--quantize needs measured latencies",
    );
    refused(
        lts().args(SMALL).args(["--quantize", "fp32,int4:b32"]),
        "fp32 is the baseline",
    );
    refused(lts().args(SMALL).args(["--quantize", "int3"]), "int4");
    refused(
        lts().args(SMALL).args(["--quantize", "int4:b32,int4:b32"]),
        "twice",
    );
    refused(
        lts()
            .args(SMALL)
            .args(["--quantize", "int4:b32", "--backend", "wgpu"]),
        "ONNX Runtime only",
    );
    lts()
        .args(["search", "--resume", "x", "--quantize", "int4:b32"])
        .assert()
        .failure()
        .code(2)
        .stderr(contains("--quantize"));
}

/// An exported winner keeps the workload it was chosen on (issue 21, item 6): `lts export
/// --from RUN` records the search's workload (ONNX metadata, arch.json), `lts measure --onnx`
/// times it by default (the quick space's seq 64, not measure's own 192) with a note when a
/// flag overrides it, and `lts quantize --from RUN` calibrates and records it too.
#[test]
fn exported_winner_keeps_the_workload_it_was_chosen_on() {
    let root = tempfile::tempdir().unwrap();
    lts()
        .args(COST)
        .args(["--out", root.path().to_str().unwrap(), "--run-id", "w1"])
        .assert()
        .success();
    let dir = root.path().join("w1");
    let json = |p: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let searched = json(&dir.join("run.json"))["config"]["workload"].clone();
    assert_eq!(
        (&searched["mode"], &searched["seq_len"]),
        (&"prefill".into(), &64.into())
    );
    let id = ids(&dir, "frontier.csv")[0].clone();
    let out = root.path().join("export");
    let from = ["--from", dir.to_str().unwrap(), "--arch-id", &id];
    lts()
        .arg("export")
        .args(from)
        .args(["--out", out.to_str().unwrap()])
        .assert()
        .success()
        .stdout(contains(
            "workload: prefill 64 (last-position logits) (the search's workload, run w1)",
        ));
    let arch_json = out.join(format!("{id}.arch.json"));
    assert_eq!(json(&arch_json)["workload"], searched);
    // arch.json stays an arch file.
    lts()
        .args(["params", "--arch", arch_json.to_str().unwrap()])
        .assert()
        .success();

    let quick = [
        "--min-runs",
        "2",
        "--min-duration-s",
        "0",
        "--warmup-s",
        "0",
    ];
    let measure = |file: &Path, extra: &[&str]| {
        let mut c = lts();
        c.args(["measure", "--onnx", file.to_str().unwrap()])
            .args(quick)
            .args(extra);
        c
    };
    let measured = |file: &Path, extra: &[&str]| -> serde_json::Value {
        let mut c = measure(file, extra);
        let out = c
            .arg("--json")
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        serde_json::from_slice(&out).unwrap()
    };
    let prefill = out.join(format!("{id}.prefill.onnx"));
    assert_eq!(measured(&prefill, &[])["workload"], searched);
    // A flag overrides the recorded workload, with a note naming both.
    measure(&prefill, &["--seq-len", "32"])
        .assert()
        .success()
        .stderr(contains(format!(
            "note: {} was exported for seq-len 64 (the search's workload, run w1); timing seq-len 32 as --seq-len asks",
            prefill.display()
        )));
    // A mode the graph cannot time: an error naming the fix.
    refused(
        &mut measure(&prefill, &["--mode", "decode"]),
        "cannot time --mode decode: pass --mode prefill",
    );
    // The decode graph beside it times one token after the search's 64 positions.
    let decode = measured(&out.join(format!("{id}.decode.onnx")), &[]);
    assert_eq!(
        (&decode["workload"]["mode"], &decode["workload"]["seq_len"]),
        (&"decode".into(), &64.into())
    );

    // `lts quantize --from RUN`: windows of the search's length, the workload recorded.
    let q = root.path().join("q");
    let out = lts()
        .arg("quantize")
        .args(from)
        .args(["--scheme", "int8-dynamic", "--calib", "1", "--eval", "1"])
        .args(["--prefill-only", "--json", "--out", q.to_str().unwrap()])
        .assert()
        .success()
        .stderr(contains("windows of 64 tokens"))
        .get_output()
        .stdout
        .clone();
    let results: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(results[0]["workload"]["workload"], searched);
    let file = std::path::PathBuf::from(results[0]["files"][0].as_str().unwrap());
    assert_eq!(measured(&file, &[])["workload"], searched);
}
