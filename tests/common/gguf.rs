//! A minimal GGUF writer (gguf.h's layout) and the tiny Llama GGUF files the integration tests
//! write with it: blocks quantised as ggml-quants.c's reference functions do, Q/K rows permuted
//! as `convert_hf_to_gguf.py` does.

use std::path::{Path, PathBuf};

use half::f16;
use lts::arch::Arch;
use lts::gguf::llama::{gguf_name, permute_rows};
use lts::gguf::{MetaArray, MetaValue};
use lts::weights::Weights;

/// A minimal GGUF writer (gguf.h's layout), for the tests.
pub struct Writer {
    pub version: u32,
    pub alignment: u64,
    pub kvs: Vec<(String, MetaValue)>,
    /// Name, sizes innermost first, ggml type id, data.
    pub tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
}

pub fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

pub fn type_id(v: &MetaValue) -> i32 {
    v.type_id()
}

pub fn put_value(out: &mut Vec<u8>, v: &MetaValue) {
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
            out.extend(a.elem_type_id().to_le_bytes());
            out.extend((a.len() as u64).to_le_bytes());
            a.iter().for_each(|x| put_value(out, &x));
        }
        MetaValue::U64(x) => out.extend(x.to_le_bytes()),
        MetaValue::I64(x) => out.extend(x.to_le_bytes()),
        MetaValue::F64(x) => out.extend(x.to_le_bytes()),
    }
}

impl Writer {
    pub fn new() -> Writer {
        Writer {
            version: 3,
            alignment: 32,
            kvs: Vec::new(),
            tensors: Vec::new(),
        }
    }

    pub fn kv(&mut self, k: &str, v: MetaValue) -> &mut Writer {
        self.kvs.retain(|(key, _)| key != k);
        self.kvs.push((k.into(), v));
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
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
pub fn quant_q8_0(x: &[f32]) -> (Vec<u8>, Vec<f32>) {
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
pub fn quant_q4_1(x: &[f32]) -> (Vec<u8>, Vec<f32>) {
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
pub fn tiny_arch(tied: bool) -> Arch {
    let t = format!(
        r#"{{"family":"llama","n_layer":2,"d_model":64,"d_inner":96,"n_head":4,"n_kv_head":2,
            "vocab_size":128,"n_positions":64,"tie_embeddings":{tied},"norm_eps":1e-5,
            "rope_theta":100000.0}}"#
    );
    Arch::from_json(&t).unwrap()
}

pub fn llama_metadata(w: &mut Writer, arch: &Arch) {
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
            MetaValue::Array(MetaArray::String(
                (0..arch.vocab_size).map(|i| format!("t{i}")).collect(),
            )),
        );
}

/// Writes `w` (HF layout) as a GGUF of `arch`: embeddings and `ffn_down` Q8_0, `attn_q`,
/// `ffn_gate`/`ffn_up` Q4_1, `attn_k` Q8_0, `attn_v` F16, the rest F32; Q/K permuted. Returns
/// the file and the weights it should read back as.
pub fn write_tiny(dir: &Path, arch: &Arch, w: &Weights, version: u32) -> (PathBuf, Weights) {
    write_tiny_with(dir, arch, w, version, Vec::new())
}

/// [`write_tiny`] with `extra` metadata written after (and replacing) the Llama keys, e.g. a
/// tokenizer.
pub fn write_tiny_with(
    dir: &Path,
    arch: &Arch,
    w: &Weights,
    version: u32,
    extra: Vec<(&str, MetaValue)>,
) -> (PathBuf, Weights) {
    let mut file = Writer::new();
    file.version = version;
    llama_metadata(&mut file, arch);
    for (k, v) in extra {
        file.kv(k, v);
    }
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
