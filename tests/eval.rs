//! `lts eval` (issue 13): perplexity of a tiny Llama GGUF with its own byte-level BPE tokenizer,
//! written by the test, checked against an independent computation: the plain-Rust reference
//! forward pass on the dequantised weights, windows and scored positions enumerated here
//! directly (a set of scored token indices, not `eval::windows`), NLL from `f64` softmax sums.
//! Then the same through wgpu, through an exported ONNX file, `--kld-against`, and the errors
//! of bad input.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use common::gguf::write_tiny_with;
use common::{gpu_for_tests, sharpened};
use lts::arch::Arch;
use lts::backend::ort::OrtOptions;
use lts::eval::{self, EvalConfig, EvalResult, ModelSource};
use lts::gguf::{MetaArray, MetaValue};
use lts::job::BackendSpec;
use lts::tokenizer::{byte_char, Tokenizer, TokenizerSpec};
use lts::weights::Weights;
use ndarray::Array2;

/// Tokens beyond the 256 byte tokens, and the merges that make them.
const EXTRA: [&str; 6] = ["th", "the", "Ġthe", "in", "ing", "Ġa"];
const MERGES: [&str; 6] = ["t h", "th e", "Ġ the", "i n", "in g", "Ġ a"];

fn arch() -> Arch {
    Arch::from_json(
        r#"{"family":"llama","n_layer":2,"d_model":64,"d_inner":96,"n_head":4,"n_kv_head":2,
            "vocab_size":262,"n_positions":64,"tie_embeddings":true,"norm_eps":1e-5,
            "rope_theta":10000.0}"#,
    )
    .unwrap()
}

fn tokenizer_metadata() -> Vec<(&'static str, MetaValue)> {
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_char(b).to_string()).collect();
    tokens.extend(EXTRA.iter().map(|s| s.to_string()));
    let strings = |v: Vec<String>| MetaValue::Array(MetaArray::String(v.into_iter().collect()));
    vec![
        ("tokenizer.ggml.model", MetaValue::String("gpt2".into())),
        ("tokenizer.ggml.pre", MetaValue::String("gpt2".into())),
        ("tokenizer.ggml.tokens", strings(tokens)),
        (
            "tokenizer.ggml.merges",
            strings(MERGES.iter().map(|s| s.to_string()).collect()),
        ),
    ]
}

/// A tiny GGUF with a tokenizer in `dir` (weights from `seed`), and the weights it reads back as.
fn tiny_model(dir: &Path, seed: u64) -> (PathBuf, Weights) {
    std::fs::create_dir_all(dir).unwrap();
    write_tiny_with(
        dir,
        &arch(),
        &sharpened(&arch(), seed),
        3,
        tokenizer_metadata(),
    )
}

const TEXT: &str = "The cat sat on the mat, thinking of the rain. In the morning a bird sang \
    something about the thing in the tree. Nothing in the garden was moving; the thin light \
    was all there was, and the old man in the house was reading a long letter again. ";

fn text_file(dir: &Path, repeat: usize) -> PathBuf {
    let p = dir.join("text.txt");
    std::fs::write(&p, TEXT.repeat(repeat)).unwrap();
    p
}

fn config(
    model: &Path,
    text: &Path,
    ctx: usize,
    stride: usize,
    backend: BackendSpec,
) -> EvalConfig {
    EvalConfig {
        model: ModelSource::Gguf(model.to_path_buf()),
        tokenizer: model.to_path_buf(),
        text: text.to_path_buf(),
        ctx,
        stride,
        max_tokens: None,
        backend,
        kld_against: None,
        max_memory: None,
    }
}

fn ort() -> BackendSpec {
    BackendSpec::Ort(OrtOptions::default())
}

fn run(cfg: &EvalConfig) -> EvalResult {
    eval::run(cfg, &mut |_| {}, &|| false).unwrap()
}

/// Perplexity over all scored tokens and over second halves, computed from scratch: window
/// starts 0, stride, ...; a token is scored in the first window that has it after position 0;
/// "half" when its predicting row is at least ctx / 2.
fn reference_ppl(w: &Weights, ids: &[u32], ctx: usize, stride: usize) -> (f64, f64, usize, usize) {
    let arch = arch();
    let mut scored = BTreeSet::new();
    let (mut all, mut n_all, mut half, mut n_half) = (0f64, 0, 0f64, 0);
    let mut start = 0;
    while start + ctx <= ids.len() {
        let input = Array2::from_shape_fn((1, ctx), |(_, j)| i64::from(ids[start + j]));
        let logits = lts::reference::forward(&arch, w, &input, None)
            .unwrap()
            .logits;
        for j in 0..ctx - 1 {
            let target = start + j + 1;
            if !scored.insert(target) {
                continue;
            }
            let row: Vec<f64> = logits
                .slice(ndarray::s![0, j, ..])
                .iter()
                .map(|&x| x as f64)
                .collect();
            let z: f64 = row.iter().map(|x| x.exp()).sum();
            let nll = z.ln() - row[ids[target] as usize];
            all += nll;
            n_all += 1;
            if j >= ctx / 2 {
                half += nll;
                n_half += 1;
            }
        }
        start += stride;
    }
    (
        (all / n_all as f64).exp(),
        (half / n_half as f64).exp(),
        n_all,
        n_half,
    )
}

fn rel(a: f64, b: f64) -> f64 {
    (a / b - 1.0).abs()
}

#[test]
fn ort_perplexity_matches_the_reference_forward() {
    let dir = tempfile::tempdir().unwrap();
    let (model, expected) = tiny_model(dir.path(), 3);
    let text = text_file(dir.path(), 3);
    let spec: TokenizerSpec = lts::gguf::Gguf::open(&model)
        .unwrap()
        .tokenizer_spec()
        .unwrap();
    let ids = Tokenizer::new(spec).unwrap().encode(&TEXT.repeat(3));
    assert!(ids.len() > 400, "{} tokens", ids.len());
    for (ctx, stride) in [(32, 32), (32, 12), (48, 48)] {
        let r = run(&config(&model, &text, ctx, stride, ort()));
        let (all, half, n_all, n_half) = reference_ppl(&expected, &ids, ctx, stride);
        eprintln!(
            "ctx {ctx} stride {stride}: PPL all {:.5} (reference {all:.5}), half {:.5} (reference {half:.5}), {} windows",
            r.ppl_all, r.ppl_half, r.windows
        );
        assert_eq!((r.tokens_scored_all, r.tokens_scored_half), (n_all, n_half));
        assert_eq!(r.text_tokens, ids.len());
        assert_eq!(r.tokens_sha256, eval::tokens_sha256(&ids));
        assert!(rel(r.ppl_all, all) < 1e-4, "{} vs {all}", r.ppl_all);
        assert!(rel(r.ppl_half, half) < 1e-4, "{} vs {half}", r.ppl_half);
        // The sharpened random model is far from uniform over 262 tokens either way.
        assert!(r.ppl_all > 1.0 && r.all.nll_se.unwrap() > 0.0);
        assert_eq!(r.windows, r.windows_planned);
    }
    // --max-tokens cuts the text before the windows are planned.
    let mut cfg = config(&model, &text, 32, 32, ort());
    cfg.max_tokens = Some(100);
    let r = run(&cfg);
    assert_eq!(
        (r.text_tokens, r.windows, r.tokens_scored_all),
        (100, 3, 93)
    );
    assert_eq!(r.text_tokens_total, ids.len());
}

#[test]
fn wgpu_perplexity_matches_ort() {
    if gpu_for_tests().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = tiny_model(dir.path(), 5);
    let text = text_file(dir.path(), 2);
    let o = run(&config(&model, &text, 32, 32, ort()));
    let gpu = BackendSpec::Wgpu(lts::backend::wgpu::WgpuOptions {
        adapter: None,
        precision: lts::backend::wgpu::Precision::F32,
        timer: lts::backend::wgpu::GpuTimer::Wall,
    });
    let w = run(&config(&model, &text, 32, 32, gpu));
    eprintln!(
        "PPL all ORT {:.6} wgpu {:.6}; half ORT {:.6} wgpu {:.6}",
        o.ppl_all, w.ppl_all, o.ppl_half, w.ppl_half
    );
    assert_eq!(w.runtime.name, "wgpu");
    assert_eq!(w.tokens_scored_all, o.tokens_scored_all);
    assert!(rel(w.ppl_all, o.ppl_all) < 1e-4);
    assert!(rel(w.ppl_half, o.ppl_half) < 1e-4);
}

fn lts() -> Command {
    Command::cargo_bin("lts").unwrap()
}

/// `lts export --kind prefill ARGS --out DIR`, returning the prefill file written.
fn export_prefill(args: &[&str], dir: &Path) -> PathBuf {
    lts()
        .args(["export", "--kind", "prefill"])
        .args(args)
        .arg("--out")
        .arg(dir)
        .assert()
        .success();
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".prefill.onnx"))
        .unwrap()
}

fn eval_json(args: &[OsString]) -> EvalResult {
    let out = lts().arg("eval").args(args).arg("--json").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn onnx_export_and_kld_against() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = tiny_model(&dir.path().join("a"), 3);
    let (other, _) = tiny_model(&dir.path().join("b"), 4);
    let text = text_file(dir.path(), 2);
    let os = |p: &Path| p.as_os_str().to_owned();
    let base = [
        "--gguf".into(),
        os(&model),
        "--text".into(),
        os(&text),
        "--ctx".into(),
        "32".into(),
    ];
    let g = eval_json(&base);
    assert_eq!(g.model_kind, "gguf");
    // The same model exported as an all-logits ONNX graph scores the same.
    let onnx = export_prefill(
        &["--logits", "all", "--gguf", model.to_str().unwrap()],
        &dir.path().join("export"),
    );
    let mut with_onnx = base.to_vec();
    with_onnx.extend([
        "--onnx".into(),
        os(&onnx),
        "--kld-against".into(),
        os(&model),
    ]);
    let o = eval_json(&with_onnx);
    assert_eq!(o.model_kind, "onnx");
    assert!(
        rel(o.ppl_all, g.ppl_all) < 1e-5,
        "{} vs {}",
        o.ppl_all,
        g.ppl_all
    );
    let k = o.kld.unwrap();
    assert!(k.divergence.kld_mean < 1e-8, "{k:?}");
    assert_eq!(k.divergence.top1_agreement, 1.0);
    assert_eq!(k.divergence.positions, g.tokens_scored_all);
    assert!(rel(k.ref_ppl_all, g.ppl_all) < 1e-5);
    // Another model: a real divergence, and its own perplexity as the reference's.
    let mut vs_other = base.to_vec();
    vs_other.extend(["--kld-against".into(), os(&other)]);
    let d = eval_json(&vs_other);
    let k = d.kld.unwrap();
    assert!(k.divergence.kld_mean > 0.01, "{k:?}");
    assert!(k.divergence.kld_p99 >= k.divergence.kld_median);
    assert!(k.divergence.top1_agreement < 1.0);
    let mut own = base.to_vec();
    own[1] = os(&other);
    let b = eval_json(&own);
    assert!(rel(k.ref_ppl_all, b.ppl_all) < 1e-6);
    assert!(rel(k.ref_ppl_half, b.ppl_half) < 1e-6);
    assert!(rel(d.ppl_all, g.ppl_all) < 1e-9);
    // The table names both perplexities and the divergence.
    let out = lts().arg("eval").args(&vs_other).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    for want in ["PPL all", "PPL half", "tokens/s", "KLD", "top-1 agreement"] {
        assert!(table.contains(want), "{want}: {table}");
    }
}

/// Runs `lts eval ARGS` and returns its stderr, checking it failed with exit code 1 (or 2 for
/// usage errors) and wrote nothing to stdout.
fn fails(args: &[OsString], env: Option<(&str, &Path)>) -> String {
    let mut cmd = lts();
    cmd.arg("eval").args(args);
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_input_gets_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = tiny_model(&dir.path().join("m"), 3);
    let text = text_file(dir.path(), 1);
    let os = |p: &Path| p.as_os_str().to_owned();
    let (m, t) = (os(&model), os(&text));
    let with = |extra: &[&str]| {
        let mut v = vec!["--gguf".into(), m.clone(), "--text".into(), t.clone()];
        if !extra.contains(&"--ctx") {
            v.extend(["--ctx".into(), "32".into()]);
        }
        v.extend(extra.iter().map(OsString::from));
        v
    };
    let check = |extra: &[&str], want: &[&str]| {
        let e = fails(&with(extra), None);
        for w in want {
            assert!(e.contains(w), "{extra:?}: want {w:?} in {e}");
        }
    };
    check(&["--ctx", "2"], &["--ctx 2 is too short"]);
    check(&["--ctx", "64", "--stride", "0"], &["--stride 0"]);
    check(&["--ctx", "16", "--stride", "17"], &["--stride 17"]);
    check(&["--ctx", "512"], &["fewer than one window", "--ctx"]);
    check(&["--max-tokens", "0"], &["--max-tokens 0"]);
    check(&["--threads", "0"], &["--threads 0"]);
    // A window longer than the model's context (64 positions): refused before loading.
    let long = dir.path().join("long.txt");
    std::fs::write(&long, TEXT.repeat(4)).unwrap();
    let v = [
        "--gguf".into(),
        m.clone(),
        "--text".into(),
        os(&long),
        "--ctx".into(),
        "128".into(),
    ];
    let e = fails(&v, None);
    assert!(e.contains("128") && e.contains("64"), "{e}");
    // Text that is not UTF-8.
    let latin1 = dir.path().join("latin1.txt");
    std::fs::write(&latin1, b"caf\xe9 au lait").unwrap();
    let v = ["--gguf".into(), m.clone(), "--text".into(), os(&latin1)];
    let e = fails(&v, None);
    assert!(e.contains("not UTF-8") && e.contains("offset 3"), "{e}");
    // A reference model that is neither GGUF nor ONNX, and one with another vocabulary.
    let junk = dir.path().join("ref.bin");
    std::fs::write(&junk, b"not a model").unwrap();
    check(
        &["--kld-against", junk.to_str().unwrap()],
        &["neither a GGUF file nor a .onnx file"],
    );
    let last = export_prefill(&["--preset", "llama-tiny"], &dir.path().join("export"));
    // Exported with the default last-position logits: cannot score text.
    check(&["--onnx", last.to_str().unwrap()], &["--logits all"]);
    let all = export_prefill(
        &["--preset", "llama-tiny", "--logits", "all"],
        &dir.path().join("export-all"),
    );
    // Another vocabulary: the fix names the flags that exist (issue 21: not `--tokenizer`).
    for (flag, fix) in [
        (
            "--kld-against",
            "--kld-against needs a model with the same tokenizer",
        ),
        (
            "--onnx",
            "pass the GGUF file this model was made from as --gguf",
        ),
    ] {
        let e = fails(&with(&[flag, all.to_str().unwrap()]), None);
        for want in ["vocabulary of 101 tokens", "has 262", fix] {
            assert!(e.contains(want), "{flag}: want {want:?} in {e}");
        }
        assert!(!e.contains("--tokenizer"), "{flag}: {e}");
    }
    // Nothing given and nothing fetched: the error names the fetch command.
    let empty = tempfile::tempdir().unwrap();
    let e = fails(&[], Some(("LTS_CACHE_DIR", empty.path())));
    assert!(
        e.contains("lts fetch smollm2-135m") && e.contains("--gguf"),
        "{e}"
    );
    let v = ["--gguf".into(), m.clone()];
    let e = fails(&v, Some(("LTS_CACHE_DIR", empty.path())));
    assert!(e.contains("lts fetch brown") && e.contains("--text"), "{e}");
}

#[test]
fn text_from_a_device_or_a_fifo_is_refused_at_once() {
    // `--text /dev/zero` used to grow to 4.2 GB before "out of memory" (the size cap read
    // `metadata().len()`, 0 for a device); a FIFO blocked in `open()`.
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = tiny_model(dir.path(), 1);
    let fifo = dir.path().join("fifo");
    common::mkfifo(&fifo);
    for (text, kind) in [
        (Path::new("/dev/zero"), "is a character device"),
        (fifo.as_path(), "is a named pipe (FIFO)"),
        (dir.path(), "is a directory"),
    ] {
        let t0 = std::time::Instant::now();
        let (status, err) = common::run_bounded(
            &[
                "eval".as_ref(),
                "--gguf".as_ref(),
                model.as_os_str(),
                "--text".as_ref(),
                text.as_os_str(),
            ],
            &[],
            2 << 30,
            std::time::Duration::from_secs(60),
        );
        let status =
            status.unwrap_or_else(|| panic!("{}: still running after 60 s", text.display()));
        assert_eq!(status.code(), Some(1), "{}: {err}", text.display());
        assert!(
            err.contains(kind) && err.contains("not a regular file"),
            "{err}"
        );
        assert!(err.contains(&text.display().to_string()), "{err}");
        assert!(t0.elapsed().as_secs() < 30, "{:?}", t0.elapsed());
    }
}

/// `path` (an exported ONNX file) with the first value of initializer `name` set to NaN.
fn with_nan_initializer(path: &Path, name: &str, out: &Path) {
    use prost::Message;
    let mut m = lts::graph::onnx::ModelProto::decode(&std::fs::read(path).unwrap()[..]).unwrap();
    let init = m
        .graph
        .as_mut()
        .unwrap()
        .initializer
        .iter_mut()
        .find(|t| t.name.as_deref() == Some(name))
        .unwrap();
    init.raw_data.as_mut().unwrap()[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(out, m.encode_to_vec()).unwrap();
}

#[test]
fn non_finite_weights_or_logits_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let text = text_file(dir.path(), 2);
    let os = |p: &Path| p.as_os_str().to_owned();
    // A GGUF with one NaN weight (an F32 tensor): refused at load, the tensor named.
    let name = "model.layers.1.input_layernorm.weight";
    let mut w = sharpened(&arch(), 3);
    w.tensors.get_mut(name).unwrap().data[5] = f32::NAN;
    let nan_dir = dir.path().join("nan");
    std::fs::create_dir_all(&nan_dir).unwrap();
    let (nan, _) = write_tiny_with(&nan_dir, &arch(), &w, 3, tokenizer_metadata());
    let args = |model: &Path| -> Vec<OsString> {
        vec![
            "--gguf".into(),
            os(model),
            "--text".into(),
            os(&text),
            "--ctx".into(),
            "32".into(),
        ]
    };
    let e = fails(&args(&nan), None);
    assert!(
        e.contains(&format!("tensor `{name}` holds NaN at index 5")),
        "{e}"
    );
    // An ONNX graph holding a NaN computes NaN logits: refused, the window named.
    let (good, _) = tiny_model(&dir.path().join("good"), 3);
    let onnx = export_prefill(
        &["--logits", "all", "--gguf", good.to_str().unwrap()],
        &dir.path().join("export"),
    );
    let edited = dir.path().join("nan.onnx");
    with_nan_initializer(&onnx, "model.norm.weight", &edited);
    let mut a = args(&good);
    a.extend(["--onnx".into(), os(&edited)]);
    let e = fails(&a, None);
    for want in [
        "nan.onnx computes non-finite logits (NaN",
        "window 0 (text tokens 0..32)",
    ] {
        assert!(e.contains(want), "want {want:?} in {e}");
    }
    // The same file as the --kld-against reference.
    let mut a = args(&good);
    a.extend(["--kld-against".into(), os(&edited)]);
    let e = fails(&a, None);
    assert!(e.contains("nan.onnx computes non-finite logits"), "{e}");
}

#[test]
fn the_result_says_whether_the_run_was_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = tiny_model(dir.path(), 3);
    let text = text_file(dir.path(), 2);
    let cfg = config(&model, &text, 32, 32, ort());
    let full = run(&cfg);
    let done = std::cell::Cell::new(0);
    let part = eval::run(&cfg, &mut |p| done.set(p.done), &|| done.get() >= 1).unwrap();
    assert!(full.windows_planned > 1 && full.windows == full.windows_planned);
    assert_eq!(
        (part.windows, part.windows_planned),
        (1, full.windows_planned)
    );
    for (r, want) in [(&full, false), (&part, true)] {
        assert_eq!(r.interrupted, want);
        // Always written, `false` included (what `--out` holds).
        let v = serde_json::to_value(r).unwrap();
        assert_eq!(v["interrupted"], serde_json::Value::Bool(want));
    }
}
