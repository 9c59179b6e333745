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
use lts::gguf::{Gguf, MetaValue};
use lts::graph::GraphKind;
use lts::job::WeightsSpec;
use lts::reference;
use lts::weights::Weights;
use ndarray::Array2;

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

    let out = Command::cargo_bin("lts")
        .unwrap()
        .args(["params", "--json", "--gguf"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["arch_id"], arch.id());
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
    arr.kv("a", MetaValue::Array(vec![MetaValue::U64(1)]));
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
