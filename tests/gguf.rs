//! GGUF import (issue 13): a tiny Llama GGUF written here (Q8_0, Q4_1, F16 and F32 tensors,
//! Q/K rows permuted as `convert_hf_to_gguf.py` does) read back to the expected dequantised
//! weights, run in ONNX Runtime against the reference forward pass; bad files refused with clear
//! errors; and, when `LTS_SMOLLM2_GGUF` names the SmolLM2-135M-Instruct Q4_1 file, the real
//! model.

mod common;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use common::{assert_close, session, sharpened};
use half::f16;
use lts::arch::Arch;
use lts::backend::ort::{infer, OptLevel};
use lts::gguf::llama::{gguf_name, permute_rows, unpermute_rows};
use lts::gguf::{Gguf, MetaValue};
use lts::graph::GraphKind;
use lts::job::WeightsSpec;
use lts::reference;
use lts::weights::Weights;
use ndarray::Array2;

/// A minimal GGUF writer (gguf.h's layout), for the tests.
struct Writer {
    version: u32,
    alignment: u64,
    kvs: Vec<(String, MetaValue)>,
    /// Name, sizes innermost first, ggml type id, data.
    tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn type_id(v: &MetaValue) -> i32 {
    match v {
        MetaValue::U8(_) => 0,
        MetaValue::I8(_) => 1,
        MetaValue::U16(_) => 2,
        MetaValue::I16(_) => 3,
        MetaValue::U32(_) => 4,
        MetaValue::I32(_) => 5,
        MetaValue::F32(_) => 6,
        MetaValue::Bool(_) => 7,
        MetaValue::String(_) => 8,
        MetaValue::Array(_) => 9,
        MetaValue::U64(_) => 10,
        MetaValue::I64(_) => 11,
        MetaValue::F64(_) => 12,
    }
}

fn put_value(out: &mut Vec<u8>, v: &MetaValue) {
    match v {
        MetaValue::U8(x) => out.push(*x),
        MetaValue::I8(x) => out.push(*x as u8),
        MetaValue::U16(x) => out.extend(x.to_le_bytes()),
        MetaValue::I16(x) => out.extend(x.to_le_bytes()),
        MetaValue::U32(x) => out.extend(x.to_le_bytes()),
        MetaValue::I32(x) => out.extend(x.to_le_bytes()),
        MetaValue::F32(x) => out.extend(x.to_le_bytes()),
        MetaValue::Bool(x) => out.push(*x as u8),
        MetaValue::String(s) => put_str(out, s),
        MetaValue::Array(a) => {
            out.extend(a.first().map_or(0, type_id).to_le_bytes());
            out.extend((a.len() as u64).to_le_bytes());
            a.iter().for_each(|x| put_value(out, x));
        }
        MetaValue::U64(x) => out.extend(x.to_le_bytes()),
        MetaValue::I64(x) => out.extend(x.to_le_bytes()),
        MetaValue::F64(x) => out.extend(x.to_le_bytes()),
    }
}

impl Writer {
    fn new() -> Writer {
        Writer {
            version: 3,
            alignment: 32,
            kvs: Vec::new(),
            tensors: Vec::new(),
        }
    }

    fn kv(&mut self, k: &str, v: MetaValue) -> &mut Writer {
        self.kvs.retain(|(key, _)| key != k);
        self.kvs.push((k.into(), v));
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend((self.tensors.len() as i64).to_le_bytes());
        out.extend((self.kvs.len() as i64).to_le_bytes());
        for (k, v) in &self.kvs {
            put_str(&mut out, k);
            out.extend(type_id(v).to_le_bytes());
            put_value(&mut out, v);
        }
        let pad = |n: u64| n.div_ceil(self.alignment) * self.alignment;
        let mut offset = 0u64;
        for (name, dims, ty, data) in &self.tensors {
            put_str(&mut out, name);
            out.extend((dims.len() as u32).to_le_bytes());
            dims.iter()
                .for_each(|d| out.extend((*d as i64).to_le_bytes()));
            out.extend(ty.to_le_bytes());
            out.extend(offset.to_le_bytes());
            offset = pad(offset + data.len() as u64);
        }
        out.resize(pad(out.len() as u64) as usize, 0);
        for (_, _, _, data) in &self.tensors {
            out.extend(data);
            out.resize(pad(out.len() as u64) as usize, 0);
        }
        out
    }
}

/// `quantize_row_q8_0_ref` (ggml-quants.c): `d = amax / 127`, `q = round(x / d)`; returns the
/// blocks and the values they dequantise to (`q * f16(d)`).
fn quant_q8_0(x: &[f32]) -> (Vec<u8>, Vec<f32>) {
    let (mut out, mut deq) = (Vec::new(), Vec::new());
    for b in x.chunks(32) {
        let amax = b.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let dh = f16::from_f32(d);
        out.extend(dh.to_le_bytes());
        for v in b {
            let q = (v * id).round() as i8;
            out.push(q as u8);
            deq.push(q as f32 * dh.to_f32());
        }
    }
    (out, deq)
}

/// `quantize_row_q4_1_ref`: `d = (max - min) / 15`, `m = min`, `q = min(15, (x - min) / d +
/// 0.5)`, value `j` in the low nibble of byte `j`, value `j + 16` in its high nibble; returns
/// the blocks and their values (`q * f16(d) + f16(m)`).
fn quant_q4_1(x: &[f32]) -> (Vec<u8>, Vec<f32>) {
    let (mut out, mut deq) = (Vec::new(), Vec::new());
    for b in x.chunks(32) {
        let min = b.iter().fold(f32::MAX, |a, &v| a.min(v));
        let max = b.iter().fold(-f32::MAX, |a, &v| a.max(v));
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let (dh, mh) = (f16::from_f32(d), f16::from_f32(min));
        out.extend(dh.to_le_bytes());
        out.extend(mh.to_le_bytes());
        let q: Vec<u8> = b
            .iter()
            .map(|v| 15.min(((v - min) * id + 0.5) as i8) as u8)
            .collect();
        for j in 0..16 {
            out.push(q[j] | (q[j + 16] << 4));
        }
        deq.extend(q.iter().map(|&q| q as f32 * dh.to_f32() + mh.to_f32()));
    }
    (out, deq)
}

/// The tiny arch of the written file: 2 layers, d_model 64, 4 query / 2 key-value heads.
fn tiny_arch(tied: bool) -> Arch {
    let t = format!(
        r#"{{"family":"llama","n_layer":2,"d_model":64,"d_inner":96,"n_head":4,"n_kv_head":2,
            "vocab_size":128,"n_positions":64,"tie_embeddings":{tied},"norm_eps":1e-5,
            "rope_theta":100000.0}}"#
    );
    Arch::from_json(&t).unwrap()
}

fn llama_metadata(w: &mut Writer, arch: &Arch) {
    let u = |x: usize| MetaValue::U32(x as u32);
    w.kv("general.architecture", MetaValue::String("llama".into()))
        .kv("general.name", MetaValue::String("tiny".into()))
        .kv("llama.block_count", u(arch.n_layer))
        .kv("llama.context_length", u(arch.n_positions))
        .kv("llama.embedding_length", u(arch.d_model))
        .kv("llama.feed_forward_length", u(arch.d_inner[0]))
        .kv("llama.attention.head_count", u(arch.n_head[0]))
        .kv("llama.attention.head_count_kv", u(arch.n_kv_head[0]))
        .kv(
            "llama.rope.freq_base",
            MetaValue::F32(arch.rope_theta as f32),
        )
        .kv(
            "llama.attention.layer_norm_rms_epsilon",
            MetaValue::F32(arch.norm_eps as f32),
        )
        .kv("llama.rope.dimension_count", u(arch.head_dim(0)))
        .kv(
            "tokenizer.ggml.tokens",
            MetaValue::Array(
                (0..arch.vocab_size)
                    .map(|i| MetaValue::String(format!("t{i}")))
                    .collect(),
            ),
        );
}

/// Writes `w` (HF layout) as a GGUF of `arch`: embeddings and `ffn_down` Q8_0, `attn_q`,
/// `ffn_gate`/`ffn_up` Q4_1, `attn_k` Q8_0, `attn_v` F16, the rest F32; Q/K permuted. Returns
/// the file and the weights it should read back as.
fn write_tiny(dir: &Path, arch: &Arch, w: &Weights, version: u32) -> (PathBuf, Weights) {
    let mut file = Writer::new();
    file.version = version;
    llama_metadata(&mut file, arch);
    let mut expected = w.clone();
    for (name, t) in &w.tensors {
        let g = gguf_name(name).unwrap();
        let cols = *t.shape.last().unwrap();
        let layer = || name.split('.').nth(2).unwrap().parse::<usize>().unwrap();
        let data = if name.ends_with("q_proj.weight") {
            permute_rows(&t.data, cols, arch.n_head[layer()])
        } else if name.ends_with("k_proj.weight") {
            permute_rows(&t.data, cols, arch.n_kv_head[layer()])
        } else {
            t.data.clone()
        };
        // Quantisation is per block within a row, so the values of the HF rows are the
        // dequantised HF rows in any row order.
        let (ty, bytes, deq) = if t.shape.len() == 1 || name.ends_with("o_proj.weight") {
            (
                0,
                data.iter().flat_map(|x| x.to_le_bytes()).collect(),
                t.data.clone(),
            )
        } else if name.ends_with("v_proj.weight") {
            let b = data
                .iter()
                .flat_map(|x| f16::from_f32(*x).to_le_bytes())
                .collect();
            (
                1,
                b,
                t.data.iter().map(|x| f16::from_f32(*x).to_f32()).collect(),
            )
        } else if name.contains("q_proj") || name.contains("gate") || name.contains("up_proj") {
            (3, quant_q4_1(&data).0, quant_q4_1(&t.data).1)
        } else {
            (8, quant_q8_0(&data).0, quant_q8_0(&t.data).1)
        };
        let dims = t.shape.iter().rev().map(|&d| d as u64).collect();
        file.tensors.push((g, dims, ty, bytes));
        expected.tensors.get_mut(name).unwrap().data = deq;
    }
    let path = dir.join(format!("tiny-v{version}.gguf"));
    std::fs::write(&path, file.bytes()).unwrap();
    (path, expected)
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
