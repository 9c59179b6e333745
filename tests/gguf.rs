//! GGUF import (issue 13): a tiny Llama GGUF written here (Q8_0, Q4_1, F16 and F32 tensors,
//! Q/K rows permuted as `convert_hf_to_gguf.py` does) read back to the expected dequantised
//! weights, run in ONNX Runtime against the reference forward pass; bad files refused with clear
//! errors; and, when `LTS_SMOLLM2_GGUF` names the SmolLM2-135M-Instruct Q4_1 file, the real
//! model.

mod common;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use common::gguf::{llama_metadata, tiny_arch, write_tiny, Writer};
use common::{assert_close, session, sharpened};
use lts::arch::Arch;
use lts::backend::ort::{infer, OptLevel};
use lts::gguf::llama::{permute_rows, unpermute_rows};
use lts::gguf::{Gguf, MetaArray, MetaValue};
use lts::graph::GraphKind;
use lts::job::WeightsSpec;
use lts::reference;
use lts::weights::Weights;
use ndarray::Array2;

/// What `lts params --json --gguf path` prints, from a run that must succeed.
fn params_json(path: &std::path::Path) -> serde_json::Value {
    let out = Command::cargo_bin("lts")
        .unwrap()
        .args(["params", "--json", "--gguf"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn permutation_round_trips() {
    // One head of 4 rows: GGUF row 2j + s is HF row 2s + j, so rows [0, 1, 2, 3] -> [0, 2, 1, 3].
    let hf: Vec<f32> = vec![0.0, 1.0, 2.0, 3.0];
    assert_eq!(permute_rows(&hf, 1, 1), [0.0, 2.0, 1.0, 3.0]);
    // Several heads and columns: permute then unpermute is the identity, and is not a no-op.
    let x: Vec<f32> = (0..3 * 8 * 5).map(|i| i as f32).collect();
    let p = permute_rows(&x, 5, 3);
    assert_ne!(p, x);
    assert_eq!(unpermute_rows(&p, 5, 3), x);
    // Head 1, j = 1, s = 1: GGUF row 8 + 3 holds HF row 8 + 4 + 1.
    assert_eq!(p[11 * 5..12 * 5], x[13 * 5..14 * 5]);
}

#[test]
fn tiny_gguf_reads_back_and_runs_in_ort_like_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let arch = tiny_arch(true);
    let w = sharpened(&arch, 4);
    for version in [2, 3] {
        let (path, expected) = write_tiny(dir.path(), &arch, &w, version);
        let g = Gguf::open(&path).unwrap();
        assert_eq!(g.version, version);
        assert_eq!(g.get_str("general.name"), Some("tiny"));
        assert_eq!(g.get_u64("llama.block_count"), Some(2));
        assert_eq!(g.get_f64("llama.rope.freq_base"), Some(100000.0));
        let tokens = g.get_str_array("tokenizer.ggml.tokens").unwrap();
        assert_eq!((tokens.len(), tokens[5].as_str()), (128, "t5"));
        assert_eq!(g.get_i64_array("tokenizer.ggml.tokens"), None);
        // Tokens without a tokenizer model: the spec names the missing key.
        let e = g.tokenizer_spec().unwrap_err().to_string();
        assert!(e.contains("tokenizer.ggml.model"), "{e}");
        let types: Vec<String> = g.tensors.iter().map(|t| t.type_name()).collect();
        for t in ["Q8_0", "Q4_1", "F16", "F32"] {
            assert!(types.iter().any(|x| x == t), "{t} in {types:?}");
        }
        assert_eq!(lts::gguf::llama::arch(&g).unwrap(), arch);
        let read = WeightsSpec::Gguf { path: path.clone() }
            .load(&arch)
            .unwrap();
        assert_eq!(read.tensors, expected.tensors, "v{version}");
    }
    // The dequantised model through ORT equals the reference forward pass on the same weights.
    let (path, _) = write_tiny(dir.path(), &arch, &w, 3);
    let (arch, read) = lts::gguf::llama::load(&path).unwrap();
    let ids = Array2::from_shape_fn((2, 7), |(b, t)| ((b * 31 + t * 7) % 128) as i64);
    let mut s = session(&arch, &read, GraphKind::Prefill, OptLevel::All);
    let ort = infer(&mut s, &arch, &ids, None).unwrap();
    let reference = reference::forward(&arch, &read, &ids, None).unwrap();
    assert_close(
        "tiny gguf prefill logits",
        &ort.logits.into_dyn(),
        &reference.logits.into_dyn(),
        1e-5,
        1e-4,
    );
}

#[test]
fn untied_head_and_cli() {
    let dir = tempfile::tempdir().unwrap();
    let arch = tiny_arch(false);
    let w = Weights::random(&arch, 9);
    let (path, expected) = write_tiny(dir.path(), &arch, &w, 3);
    let g = Gguf::open(&path).unwrap();
    assert!(g.tensor("output.weight").is_some());
    let (got_arch, got) = lts::gguf::llama::load(&path).unwrap();
    assert_eq!(got_arch, arch);
    assert_eq!(got.tensors, expected.tensors);

    assert_eq!(params_json(&path)["arch_id"], arch.id());
    let out_dir = dir.path().join("export");
    Command::cargo_bin("lts")
        .unwrap()
        .args(["export", "--kind", "prefill", "--save-weights", "--gguf"])
        .arg(&path)
        .arg("--out")
        .arg(&out_dir)
        .assert()
        .success();
    let saved =
        Weights::from_safetensors(&arch, &out_dir.join(format!("{}.safetensors", arch.id())))
            .unwrap();
    assert_eq!(saved.tensors, expected.tensors);
    // --gguf gives the arch, so it cannot be combined with another arch or weights.
    Command::cargo_bin("lts")
        .unwrap()
        .args(["measure", "--preset", "llama-tiny", "--gguf"])
        .arg(&path)
        .assert()
        .failure();
}

/// `lts` error text of opening/loading `bytes` as a GGUF file.
fn load_error(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let e = match Gguf::open(&path) {
        Err(e) => e,
        Ok(g) => match lts::gguf::llama::arch(&g).and_then(|a| lts::gguf::llama::weights(&g, &a)) {
            Err(e) => e,
            Ok(_) => panic!("{name}: accepted"),
        },
    };
    let e = format!("{e:#}");
    assert!(e.contains(name), "{name}: the error names the file: {e}");
    e
}

#[test]
fn bad_files_are_refused_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let arch = tiny_arch(true);
    let (path, _) = write_tiny(d, &arch, &Weights::random(&arch, 1), 3);
    let good = std::fs::read(&path).unwrap();
    let g = Gguf::open(&path).unwrap();
    let data_offset = g.data_offset as usize;

    // Truncated: inside the header, the metadata, the tensor table and the data.
    let last = g.tensors.iter().max_by_key(|t| t.offset).unwrap();
    let last_end = (last.offset + last.n_bytes) as usize;
    for cut in [3, 20, 200, data_offset - 10, last_end - 1] {
        let e = load_error(d, "cut.gguf", &good[..cut]);
        assert!(
            e.contains("truncated") || e.contains("out of bounds") || e.contains("cannot fit"),
            "cut at {cut}: {e}"
        );
    }
    let mut b = good.clone();
    b[..4].copy_from_slice(b"GGML");
    assert!(load_error(d, "magic.gguf", &b).contains("not a GGUF file"));
    for (v, needle) in [
        (1u32, "version 1 is not supported"),
        (4, "unknown GGUF version 4"),
        (0x0300_0000, "big-endian"),
    ] {
        let mut b = good.clone();
        b[4..8].copy_from_slice(&v.to_le_bytes());
        let e = load_error(d, "version.gguf", &b);
        assert!(e.contains(needle), "{e}");
    }

    // A file with one metadata pair: header (24 bytes), key "k" (9), type at 33.
    let mut one = Writer::new();
    one.kv("k", MetaValue::U8(1));
    let mut b = one.bytes();
    b[33..37].copy_from_slice(&13i32.to_le_bytes());
    let e = load_error(d, "vtype.gguf", &b);
    assert!(
        e.contains("unknown value type 13") && e.contains("offset 37"),
        "{e}"
    );
    // Counts and lengths far beyond the file fail before any allocation.
    let mut b = one.bytes();
    b[16..24].copy_from_slice(&(1i64 << 60).to_le_bytes());
    assert!(load_error(d, "count.gguf", &b).contains("cannot fit"));
    let mut b = one.bytes();
    b[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(load_error(d, "strlen.gguf", &b).contains("claims"));
    let mut arr = Writer::new();
    arr.kv("a", MetaValue::Array(MetaArray::U64(vec![1])));
    let mut b = arr.bytes();
    // Array: type 9 at 33, element type at 37, count at 41.
    b[41..49].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    assert!(load_error(d, "arrlen.gguf", &b).contains("claims"));

    // Tensor table problems: one-tensor files.
    let tensor_file = |ty: u32, dims: Vec<u64>, n_bytes: usize| {
        let mut w = Writer::new();
        w.tensors
            .push(("t.weight".into(), dims, ty, vec![0u8; n_bytes]));
        w.bytes()
    };
    let e = load_error(d, "qtype.gguf", &tensor_file(99, vec![32], 34));
    assert!(e.contains("unknown ggml type 99"), "{e}");
    // Out of bounds: the header says 64 Q8_0 values (68 bytes), the file holds 34.
    let e = load_error(d, "oob.gguf", &tensor_file(8, vec![64], 34));
    assert!(e.contains("out of bounds") && e.contains("t.weight"), "{e}");
    let e = load_error(d, "blocks.gguf", &tensor_file(8, vec![33], 34));
    assert!(e.contains("whole number of 32-value blocks"), "{e}");

    // Supported container, unsupported quant type: named when the weights are read.
    let mut file = Writer::new();
    llama_metadata(&mut file, &arch);
    for t in &g.tensors {
        let (ty, bytes) = if t.name == "blk.1.ffn_up.weight" {
            // Q2_K: 84 bytes per 256 values (block_q2_K).
            (10, vec![0u8; (t.len() / 256 * 84) as usize])
        } else {
            (t.type_id, g.tensor_bytes(t).unwrap())
        };
        file.tensors
            .push((t.name.clone(), t.dims.clone(), ty, bytes));
    }
    let e = load_error(d, "q2k.gguf", &file.bytes());
    assert!(
        e.contains("blk.1.ffn_up.weight") && e.contains("Q2_K"),
        "{e}"
    );

    // Metadata that does not match the tensors, and another architecture.
    let mut wide = Writer::new();
    wide.tensors = file.tensors.clone();
    wide.kvs = file.kvs.clone();
    wide.kv("llama.feed_forward_length", MetaValue::U32(128));
    let e = load_error(d, "shape.gguf", &wide.bytes());
    assert!(
        e.contains("blk.0.ffn_gate.weight") && e.contains("[96, 64]") && e.contains("[128, 64]"),
        "{e}"
    );
    wide.kv("general.architecture", MetaValue::String("gpt2".into()));
    let e = load_error(d, "arch.gguf", &wide.bytes());
    assert!(e.contains("only `llama`"), "{e}");
}

/// The real SmolLM2-135M-Instruct Q4_1 file (issue 13), when `LTS_SMOLLM2_GGUF` names it:
/// its arch is the `smollm2-135m` preset, its weights load, and the model completes "The
/// capital of France is" with " Paris".
#[test]
fn smollm2_gguf_when_available() {
    let Some(path) = std::env::var_os("LTS_SMOLLM2_GGUF") else {
        eprintln!("skipping: set LTS_SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf");
        return;
    };
    let path = PathBuf::from(path);
    let t0 = std::time::Instant::now();
    let g = Gguf::open(&path).unwrap();
    let t_open = t0.elapsed();
    let arch = lts::gguf::llama::arch(&g).unwrap();
    assert_eq!(arch, Arch::preset("smollm2-135m").unwrap());
    let mut types = std::collections::BTreeMap::<String, usize>::new();
    for t in &g.tensors {
        *types.entry(t.type_name()).or_default() += 1;
    }
    let w = lts::gguf::llama::weights(&g, &arch).unwrap();
    eprintln!(
        "SmolLM2 GGUF v{}: {} tensors {types:?}, {} metadata keys; open {:.3} s, open + dequantise {:.2} s; {} parameters",
        g.version,
        g.tensors.len(),
        g.metadata.len(),
        t_open.as_secs_f64(),
        t0.elapsed().as_secs_f64(),
        w.count()
    );
    assert_eq!(w.count(), arch.params().total);
    let tokens = g.get_str_array("tokenizer.ggml.tokens").unwrap();
    let id = |s: &str| tokens.iter().position(|t| t == s).unwrap() as i64;
    // Whole-word tokens of a short text (each one token of the vocabulary).
    let text = "The Ġcapital Ġof ĠFrance Ġis ĠParis . ĠThe Ġcapital Ġof ĠGermany Ġis ĠBerlin . \
                ĠThe Ġcapital Ġof ĠItaly Ġis ĠRome .";
    let ids: Vec<i64> = text.split_whitespace().map(id).collect();
    // The file's own tokenizer gives the same ids for the plain text.
    let tok = lts::tokenizer::Tokenizer::new(g.tokenizer_spec().unwrap()).unwrap();
    let plain = "The capital of France is Paris. The capital of Germany is Berlin. \
                 The capital of Italy is Rome.";
    let encoded: Vec<i64> = tok.encode(plain).into_iter().map(i64::from).collect();
    assert_eq!(encoded, ids, "tokenizer from the GGUF metadata");
    assert_eq!(tok.decode(&tok.encode(plain)), plain);
    let ids = Array2::from_shape_vec((1, ids.len()), ids).unwrap();
    let (logits, nll) = score(&arch, &w, &ids);
    let last = logits.slice(ndarray::s![0, 4, ..]).to_vec();
    let best = (0..last.len())
        .max_by(|&a, &b| last[a].total_cmp(&last[b]))
        .unwrap();
    // The same weights with the Q/K rows left in llama.cpp's order: attention scores of
    // whole heads are unchanged, but RoPE pairs the wrong rows, so positions are scrambled.
    let mut wrong = w.clone();
    for (name, t) in wrong.tensors.iter_mut() {
        if name.ends_with("q_proj.weight") {
            t.data = permute_rows(&t.data, arch.d_model, arch.n_head[0]);
        } else if name.ends_with("k_proj.weight") {
            t.data = permute_rows(&t.data, arch.d_model, arch.n_kv_head[0]);
        }
    }
    let (_, nll_wrong) = score(&arch, &wrong, &ids);
    eprintln!(
        "next token after \"The capital of France is\": {:?}; mean NLL of the text {nll:.3} (Q/K rows not unpermuted: {nll_wrong:.3})",
        tokens[best]
    );
    assert_eq!(tokens[best], "ĠParis");
    assert!(nll < 0.8 * nll_wrong, "{nll} vs {nll_wrong}");
    let out = Command::cargo_bin("lts")
        .unwrap()
        .args(["params", "--gguf"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
}

/// ORT prefill logits of `ids` and the mean negative log-likelihood of each next token.
fn score(arch: &Arch, w: &Weights, ids: &Array2<i64>) -> (ndarray::Array3<f32>, f64) {
    let mut s = session(arch, w, GraphKind::Prefill, OptLevel::All);
    let logits = infer(&mut s, arch, ids, None).unwrap().logits;
    let n = ids.ncols();
    let mut nll = 0.0f64;
    for t in 0..n - 1 {
        let row = logits.slice(ndarray::s![0, t, ..]);
        let max = row.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
        let lse = max
            + row
                .iter()
                .map(|&x| (x as f64 - max).exp())
                .sum::<f64>()
                .ln();
        nll += lse - row[ids[[0, t + 1]] as usize] as f64;
    }
    (logits, nll / (n - 1) as f64)
}

/// A GGUF file of `arch`'s Llama metadata (no tensors: `lts params` needs only the metadata)
/// whose last pair `big` is a u8 array of `n` zero bytes, written sparsely (`File::set_len`).
fn gguf_with_big_u8_array(path: &Path, arch: &Arch, n: u64) {
    use common::gguf::{put_str, put_value, type_id};
    let mut meta = Writer::new();
    llama_metadata(&mut meta, arch);
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend(0i64.to_le_bytes());
    out.extend((meta.kvs.len() as i64 + 1).to_le_bytes());
    for (k, v) in &meta.kvs {
        put_str(&mut out, k);
        out.extend(type_id(v).to_le_bytes());
        put_value(&mut out, v);
    }
    put_str(&mut out, "big");
    out.extend(9i32.to_le_bytes());
    out.extend(0i32.to_le_bytes());
    out.extend(n.to_le_bytes());
    let len = out.len() as u64 + n;
    std::fs::write(path, out).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Runs `lts args` and returns its output and peak resident memory in bytes (`wait4`'s
/// `ru_maxrss` of that child alone).
fn run_with_peak_rss(args: &[&std::ffi::OsStr]) -> (std::process::ExitStatus, String, u64) {
    use std::os::unix::process::ExitStatusExt;
    // Reaped by wait4 below, which also gives the child's own peak RSS (Child::wait cannot).
    #[allow(clippy::zombie_processes)]
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lts"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid; the pid is our unwaited child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    (
        std::process::ExitStatus::from_raw(status),
        err,
        usage.ru_maxrss as u64 * 1024,
    )
}

#[test]
fn a_40_mb_metadata_array_costs_about_its_size_in_memory() {
    // Used to cost a 32-byte MetaValue per element: 1.26 GB for 40 MB.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big-array.gguf");
    let n = 40_000_000u64;
    gguf_with_big_u8_array(&path, &tiny_arch(true), n);
    let (status, err, rss) =
        run_with_peak_rss(&["params".as_ref(), "--gguf".as_ref(), path.as_os_str()]);
    eprintln!("lts params --gguf with a {n}-byte u8 array: peak RSS {rss} bytes");
    assert!(status.success(), "{err}");
    assert!(rss < 3 * n, "peak RSS {rss} bytes for a {n}-byte array");
}

#[test]
fn u64_i64_and_f64_metadata_read_as_scalars_and_arrays() {
    // Scalars of types 10, 11, 12 used to be refused: "unknown value type 10".
    let dir = tempfile::tempdir().unwrap();
    let arch = tiny_arch(true);
    let mut w = Writer::new();
    llama_metadata(&mut w, &arch);
    w.kv("general.parameter_count", MetaValue::U64(134_515_008))
        .kv("test.i64", MetaValue::I64(-5_000_000_000))
        .kv("llama.rope.freq_base", MetaValue::F64(100000.0))
        .kv("llama.block_count", MetaValue::U64(2))
        .kv(
            "test.u64s",
            MetaValue::Array(MetaArray::U64(vec![u64::MAX, 0])),
        )
        .kv(
            "test.i64s",
            MetaValue::Array(MetaArray::I64(vec![i64::MIN, 7])),
        )
        .kv(
            "test.f64s",
            MetaValue::Array(MetaArray::F64(vec![0.5, -1e300])),
        );
    let path = dir.path().join("wide-types.gguf");
    std::fs::write(&path, w.bytes()).unwrap();
    let g = Gguf::open(&path).unwrap();
    assert_eq!(
        g.get("general.parameter_count"),
        Some(&MetaValue::U64(134_515_008))
    );
    assert_eq!(g.get_u64("general.parameter_count"), Some(134_515_008));
    assert_eq!(g.get("test.i64"), Some(&MetaValue::I64(-5_000_000_000)));
    assert_eq!(g.get_f64("llama.rope.freq_base"), Some(100000.0));
    assert_eq!(g.get_i64_array("test.i64s"), Some(vec![i64::MIN, 7]));
    assert_eq!(
        g.get_i64_array("test.u64s"),
        None,
        "u64::MAX does not fit an i64"
    );
    let array = |k: &str| match g.get(k) {
        Some(MetaValue::Array(a)) => a.iter().collect::<Vec<_>>(),
        v => panic!("{k}: {v:?}"),
    };
    assert_eq!(
        array("test.u64s"),
        [MetaValue::U64(u64::MAX), MetaValue::U64(0)]
    );
    assert_eq!(
        array("test.f64s"),
        [MetaValue::F64(0.5), MetaValue::F64(-1e300)]
    );
    // Each type in every other type's array: written and read back the same.
    let mut all = Writer::new();
    let arrays = [
        MetaArray::U8(vec![0, 255]),
        MetaArray::I8(vec![-128, 127]),
        MetaArray::U16(vec![65535]),
        MetaArray::I16(vec![-32768]),
        MetaArray::U32(vec![u32::MAX]),
        MetaArray::I32(vec![i32::MIN]),
        MetaArray::F32(vec![1.5]),
        MetaArray::Bool(vec![true, false]),
        MetaArray::String(["a", "", "héllo"].into_iter().collect()),
        MetaArray::U64(vec![u64::MAX]),
        MetaArray::I64(vec![i64::MIN]),
        MetaArray::F64(vec![f64::MIN_POSITIVE]),
    ];
    for (i, a) in arrays.iter().enumerate() {
        all.kv(&format!("a{i}"), MetaValue::Array(a.clone()));
        all.kv(&format!("s{i}"), a.get(0).unwrap());
    }
    let all_path = dir.path().join("all-types.gguf");
    std::fs::write(&all_path, all.bytes()).unwrap();
    let read = Gguf::open(&all_path).unwrap();
    for (i, a) in arrays.iter().enumerate() {
        assert_eq!(
            read.get(&format!("a{i}")),
            Some(&MetaValue::Array(a.clone()))
        );
        assert_eq!(read.get(&format!("s{i}")), a.get(0).as_ref());
    }
    assert_eq!(lts::gguf::llama::arch(&g).unwrap(), arch);
    assert_eq!(params_json(&path)["arch_id"], arch.id());
}

#[test]
fn a_fifo_or_a_directory_as_gguf_is_refused_without_blocking() {
    // `--gguf FIFO` used to block forever in `open()`.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("model.gguf");
    common::mkfifo(&fifo);
    for (path, kind) in [
        (fifo.as_path(), "is a named pipe (FIFO)"),
        (dir.path(), "is a directory"),
        (Path::new("/dev/zero"), "is a character device"),
    ] {
        let (status, err) = common::run_bounded(
            &["params".as_ref(), "--gguf".as_ref(), path.as_os_str()],
            &[],
            2 << 30,
            std::time::Duration::from_secs(30),
        );
        let status =
            status.unwrap_or_else(|| panic!("{}: still running after 30 s", path.display()));
        assert_eq!(status.code(), Some(1), "{err}");
        assert!(err.contains(kind) && err.contains("GGUF file"), "{err}");
        assert!(err.contains("not a regular file"), "{err}");
    }
}

#[test]
fn metadata_over_the_cap_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge-array.gguf");
    gguf_with_big_u8_array(&path, &tiny_arch(true), 70 << 20);
    let e = format!("{:#}", Gguf::open(&path).unwrap_err());
    assert!(
        e.contains("array `big` (73400320 elements) takes 73400320 bytes, past the 64.0 MiB lts reads as GGUF metadata"),
        "{e}"
    );
    // Far more pairs than any model has: refused by their count.
    let mut b = Writer::new().bytes();
    b[16..24].copy_from_slice(&(1i64 << 20).to_le_bytes());
    b.resize(24 + (14 << 20), 0);
    let e = load_error(dir.path(), "pairs.gguf", &b);
    assert!(
        e.contains("1048576 metadata pairs, more than the 65536"),
        "{e}"
    );
    // Likewise tensors: a sparse file of zeros would parse as a billion empty entries.
    let mut b = Writer::new().bytes();
    b[8..16].copy_from_slice(&(1i64 << 30).to_le_bytes());
    let path = dir.path().join("tensors.gguf");
    std::fs::write(&path, &b).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(32 << 30).unwrap();
    let e = format!("{:#}", Gguf::open(&path).unwrap_err());
    assert!(e.contains("1073741824 tensors, more than the 65536"), "{e}");
}
