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

/// A search space whose knobs make `n_layer` 1 and `d_model` 64 or 384, so decoder parameters
/// are about 50 K or 1.2 M and never in `[lo, hi]`; vocab `vocab`.
fn space(dir: &Path, name: &str, vocab: u64, lo: u64, hi: u64) -> String {
    space_of_widths(dir, name, vocab, lo, hi, "64, 384")
}

/// [`space`] with the given `d_model` values.
fn space_of_widths(dir: &Path, name: &str, vocab: u64, lo: u64, hi: u64, widths: &str) -> String {
    let text = format!(
        "name = \"{name}\"\nfamily = \"gpt2\"\n\n[fixed]\nvocab_size = {vocab}\nn_positions = 64\n\n\
         [knobs]\nn_layer = {{ values = [1] }}\nd_model = {{ values = [{widths}] }}\n\
         d_inner = {{ values = [64, 128] }}\nn_head = {{ values = [2] }}\n\n\
         [constraints]\ndecoder_params_min = {lo}\ndecoder_params_max = {hi}\n\n\
         [search]\nseq_len = 16\npopulation = 4\niterations = 1\nparents = 2\nmutations = 2\ncrossovers = 2\n"
    );
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, text).unwrap();
    s(&p).to_string()
}

#[test]
fn space_without_an_admissible_arch_is_refused_before_the_run_folder_exists() {
    let tmp = tempfile::tempdir().unwrap();
    let search = |space: &str| {
        run(&[
            "search",
            "--space",
            space,
            "--backend",
            "cost-model",
            "--out",
            s(tmp.path()),
            "--run-id",
            "x",
            "-q",
        ])
    };
    // Every arch between two admissible sizes: none in the decoder_params window.
    let gap = space(tmp.path(), "gap", 1000, 100_000, 200_000);
    let err = assert_refused(
        &search(&gap),
        &["no admissible", "decoder_params_min", "decoder_params_max"],
    );
    assert!(!tmp.path().join("x").exists(), "run folder created: {err}");
    // Every arch over the total-parameter limit (500 M; a 2 M-token table of width 384 alone
    // is 768 M), with every size inside the arch bounds.
    let big = space_of_widths(tmp.path(), "big", 2_000_000, 1, 10_000_000, "384, 768");
    let err = assert_refused(&search(&big), &["parameters"]);
    assert!(!tmp.path().join("x").exists(), "run folder created: {err}");
    // The window widened: the search runs.
    let ok = space(tmp.path(), "ok", 1000, 1, 10_000_000);
    let o = search(&ok);
    assert!(o.status.success(), "{}", text(&o).1);
}

/// Names and contents of the files in `dir`.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn export_does_not_overwrite_another_seed_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let out = s(tmp.path());
    let export = |seed: &str, extra: &[&str]| {
        let mut args = vec![
            "export",
            "--preset",
            "gpt2-tiny",
            "--kind",
            "prefill",
            "--save-weights",
            "--seed",
            seed,
            "--out",
            out,
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let o = export("0", &[]);
    assert!(o.status.success(), "{}", text(&o).1);
    let seed0 = files(tmp.path());
    assert_eq!(
        seed0.len(),
        3,
        "{:?}",
        seed0.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    let o = export("1", &[]);
    assert_refused(&o, &["--force", ".prefill.onnx", ".safetensors"]);
    assert_eq!(
        files(tmp.path()),
        seed0,
        "files changed by a refused export"
    );
    let o = export("1", &["--force"]);
    assert!(o.status.success(), "{}", text(&o).1);
    let seed1 = files(tmp.path());
    assert_eq!(seed1.len(), 3);
    let onnx = |v: &[(String, Vec<u8>)]| {
        v.iter()
            .find(|f| f.0.ends_with(".prefill.onnx"))
            .unwrap()
            .1
            .clone()
    };
    assert_ne!(
        onnx(&seed1),
        onnx(&seed0),
        "--force did not replace the graph"
    );
    assert!(
        !seed1.iter().any(|f| f.0.contains(".tmp")),
        "temporary file left behind"
    );
}

#[test]
fn measure_onnx_refuses_a_tampered_arch() {
    use prost::Message;
    let tmp = tempfile::tempdir().unwrap();
    let o = run(&[
        "export",
        "--preset",
        "gpt2-tiny",
        "--kind",
        "prefill",
        "--out",
        s(tmp.path()),
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    let file = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".prefill.onnx"))
        .unwrap();
    let mut model =
        lts::graph::onnx::ModelProto::decode(&std::fs::read(&file).unwrap()[..]).unwrap();
    let honest = lts::arch::Arch::preset("gpt2-tiny").unwrap();
    // Another valid arch: d_model 32 -> 64 (its heads still divide it).
    let mut v = serde_json::to_value(&honest).unwrap();
    v["d_model"] = 64.into();
    let forged = lts::arch::Arch::from_json(&v.to_string()).unwrap();
    let mut replaced = 0;
    for p in &mut model.metadata_props {
        if p.key.as_deref() == Some("arch") {
            p.value = Some(forged.canonical_json());
            replaced += 1;
        }
    }
    assert_eq!(replaced, 1, "no arch metadata to tamper with");
    let tampered = tmp.path().join("tampered.onnx");
    std::fs::write(&tampered, model.encode_to_vec()).unwrap();
    let o = run(&[
        "measure",
        "--onnx",
        s(&tampered),
        "--seq-len",
        "8",
        "--min-runs",
        "2",
        "--min-duration-s",
        "0",
        "--warmup-s",
        "0",
    ]);
    let th = lts::report::thousands;
    assert_refused(
        &o,
        &[
            &th(honest.params().total),
            &th(forged.params().total),
            "tampered.onnx",
        ],
    );
}

#[test]
fn params_reports_the_context_the_tool_uses() {
    // gpt2-tiny has 64 positions: the default sequence length is 64, not 192.
    let o = run(&["params", "--preset", "gpt2-tiny"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("context 64"), "{out}");
    assert!(!out.contains("context 192"), "{out}");
    let o = run(&["params", "--preset", "gpt2-tiny", "--json"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let arch = lts::arch::Arch::preset("gpt2-tiny").unwrap();
    assert_eq!(v["context"], 64);
    assert_eq!(v["flops_per_token"], arch.flops_per_token(64));
    // The old key keeps its meaning (FLOPs per token at context 192).
    assert_eq!(v["flops_per_token_ctx192"], arch.flops_per_token(192));
    // gpt2-small has 1024 positions: 192 as before.
    let o = run(&["params", "--preset", "gpt2-small"]);
    assert!(text(&o).0.contains("context 192"), "{}", text(&o).0);
}

#[test]
fn no_display_noise_on_stderr_without_xdg_runtime_dir() {
    let o = lts(&["device"])
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .expect("lts runs");
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("XDG_RUNTIME_DIR"), "{err}");
    assert!(!err.lines().any(|l| l.starts_with("error:")), "{err}");
}

#[test]
fn fifos_and_devices_given_as_input_files_are_refused_at_once() {
    // A FIFO used to block forever in open() and /dev/zero to be read until memory ran out,
    // for every file flag below.
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("fifo");
    let c = std::ffi::CString::new(s(&fifo)).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let out = tmp.path().join("out");
    for path in [s(&fifo), "/dev/zero"] {
        let kind = if path == "/dev/zero" {
            "is a character device, not a regular file"
        } else {
            "is a named pipe (FIFO), not a regular file"
        };
        for (args, what) in [
            (vec!["params", "--arch", path], "arch file"),
            (
                vec![
                    "search",
                    "--space",
                    path,
                    "--backend",
                    "cost-model",
                    "-q",
                    "--out",
                    s(&out),
                ],
                "search space file",
            ),
            (
                vec![
                    "export",
                    "--preset",
                    "llama-tiny",
                    "--weights",
                    path,
                    "--out",
                    s(&out),
                ],
                "weights file",
            ),
            (vec!["measure", "--onnx", path], "ONNX file"),
            (
                vec!["search", "--agents", path, "-q", "--out", s(&out)],
                "fleet file",
            ),
            (
                vec!["measure", "--preset", "gpt2-tiny", "--device-profile", path],
                "device profile",
            ),
        ] {
            let o =
                run_for(&args, 60).unwrap_or_else(|| panic!("{args:?}: still running after 60 s"));
            assert_refused(&o, &[what, path, kind]);
        }
    }
}
