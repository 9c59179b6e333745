//! A Llama-family GGUF file as an [`Arch`] (from its metadata) and [`Weights`] in Hugging Face
//! names and layout (from its tensors, dequantised to f32).
//!
//! Source of truth (llama.cpp, `ggml-org/llama.cpp`):
//! - metadata keys: `gguf-py/gguf/constants.py` (`Keys.LLM.BLOCK_COUNT = "{arch}.block_count"`,
//!   `EMBEDDING_LENGTH`, `FEED_FORWARD_LENGTH`, `CONTEXT_LENGTH`, `VOCAB_SIZE`,
//!   `Keys.Attention.HEAD_COUNT`, `HEAD_COUNT_KV`, `LAYERNORM_RMS_EPS =
//!   "{arch}.attention.layer_norm_rms_epsilon"`, `KEY_LENGTH`, `Keys.Rope.FREQ_BASE =
//!   "{arch}.rope.freq_base"`, `DIMENSION_COUNT`, `SCALING_TYPE`; `general.architecture`);
//!   `llama.vocab_size` is optional (then the `tokenizer.ggml.tokens` list gives it), and a
//!   missing `rope.freq_base` means 10000 and a missing `head_count_kv` means `head_count`, as in
//!   llama.cpp's `llama_model::load_hparams`;
//! - tensor names: `constants.py` `TENSOR_NAMES` (`token_embd`, `blk.{bid}.attn_norm`,
//!   `attn_q`, `attn_k`, `attn_v`, `attn_output`, `ffn_norm`, `ffn_gate`, `ffn_up`, `ffn_down`,
//!   `output_norm`, `output`), each with `.weight`; no `output.weight` means tied embeddings;
//! - the Q/K row permutation: `convert_hf_to_gguf.py`, `LlamaModel.permute`, applied to
//!   `q_proj` with `n_head` and to `k_proj` with `n_head_kv`:
//!   `w.reshape(n_head, 2, rows // n_head // 2, *rest).swapaxes(1, 2).reshape(w.shape)`, i.e.
//!   within each head GGUF row `2 j + s` is HF row `s * head_dim / 2 + j` (llama.cpp's RoPE
//!   rotates adjacent pairs, Hugging Face's "rotate half" rotates `j` with `j + head_dim / 2`).
//!   [`unpermute_rows`] undoes it so the weights match the HF layout our graphs use.
//!
//! GGUF sizes are innermost first: a linear layer `[out, in]` in HF is `ne = [in, out]` in the
//! file, so the row-major data is already in HF layout once the sizes are reversed.

use anyhow::{bail, Context, Result};

use super::{Gguf, MetaValue};
use crate::arch::{Arch, ArchSpec, Family, PerLayer};
use crate::weights::{param_specs, Tensor, Weights};

/// The only `general.architecture` this module maps.
pub const ARCHITECTURE: &str = "llama";

/// The GGUF name of a Hugging Face Llama parameter, or `None` for a name outside the family.
pub fn gguf_name(hf: &str) -> Option<String> {
    Some(match hf {
        "model.embed_tokens.weight" => "token_embd.weight".into(),
        "model.norm.weight" => "output_norm.weight".into(),
        "lm_head.weight" => "output.weight".into(),
        _ => {
            let rest = hf.strip_prefix("model.layers.")?;
            let (i, what) = rest.split_once('.')?;
            let i: usize = i.parse().ok()?;
            let g = match what {
                "input_layernorm.weight" => "attn_norm",
                "self_attn.q_proj.weight" => "attn_q",
                "self_attn.k_proj.weight" => "attn_k",
                "self_attn.v_proj.weight" => "attn_v",
                "self_attn.o_proj.weight" => "attn_output",
                "post_attention_layernorm.weight" => "ffn_norm",
                "mlp.gate_proj.weight" => "ffn_gate",
                "mlp.up_proj.weight" => "ffn_up",
                "mlp.down_proj.weight" => "ffn_down",
                _ => return None,
            };
            format!("blk.{i}.{g}.weight")
        }
    })
}

/// `convert_hf_to_gguf.py`'s `LlamaModel.permute` on a row-major `[rows, cols]` matrix: within
/// each of `n_head` heads, HF row `s * half + j` moves to row `2 j + s` (`half` is half the head
/// size). What a GGUF export did to `q_proj` (with the query heads) and `k_proj` (with the
/// key/value heads).
pub fn permute_rows(data: &[f32], cols: usize, n_head: usize) -> Vec<f32> {
    remap_rows(data, cols, n_head, true)
}

/// The inverse of [`permute_rows`]: GGUF row `2 j + s` of each head back to HF row
/// `s * half + j`.
pub fn unpermute_rows(data: &[f32], cols: usize, n_head: usize) -> Vec<f32> {
    remap_rows(data, cols, n_head, false)
}

fn remap_rows(data: &[f32], cols: usize, n_head: usize, to_gguf: bool) -> Vec<f32> {
    let rows = data.len() / cols;
    let hd = rows / n_head;
    let half = hd / 2;
    assert!(
        rows * cols == data.len() && hd * n_head == rows && half * 2 == hd,
        "permutation needs whole heads of even size"
    );
    let mut out = vec![0f32; data.len()];
    for h in 0..n_head {
        for j in 0..half {
            for s in 0..2 {
                let hf = h * hd + s * half + j;
                let gg = h * hd + 2 * j + s;
                let (from, to) = if to_gguf { (hf, gg) } else { (gg, hf) };
                out[to * cols..(to + 1) * cols]
                    .copy_from_slice(&data[from * cols..(from + 1) * cols]);
            }
        }
    }
    out
}

/// A required integer metadata value as `usize`.
fn req_usize(g: &Gguf, key: &str) -> Result<usize> {
    let v = g.get(key).with_context(|| {
        format!(
            "{}: missing metadata `{key}` (needed for the arch)",
            g.path.display()
        )
    })?;
    as_usize(g, key, v)
}

fn as_usize(g: &Gguf, key: &str, v: &MetaValue) -> Result<usize> {
    v.as_i128()
        .and_then(|x| usize::try_from(x).ok())
        .with_context(|| {
            format!(
                "{}: metadata `{key}` must be a non-negative integer, got {v:?}",
                g.path.display()
            )
        })
}

/// A per-layer value: one integer, or an array with one per layer.
fn per_layer(g: &Gguf, key: &str) -> Result<Option<PerLayer>> {
    Ok(match g.get(key) {
        None => None,
        Some(MetaValue::Array(v)) if v.len() > crate::arch::MAX_LAYERS => bail!(
            "{}: metadata `{key}` has {} per-layer values, more than the {} layers lts allows",
            g.path.display(),
            v.len(),
            crate::arch::MAX_LAYERS
        ),
        Some(MetaValue::Array(v)) => Some(PerLayer::Each(
            v.iter()
                .map(|x| as_usize(g, key, &x))
                .collect::<Result<_>>()?,
        )),
        Some(v) => Some(PerLayer::All(as_usize(g, key, v)?)),
    })
}

/// A float metadata value; an f32 is read as the shortest decimal that rounds to it (the value
/// the converter wrote: `1e-5` from a Hugging Face config is stored as the f32 nearest to it,
/// 9.99999974e-6, and read back as `1e-5`, so the arch equals the one the config describes).
fn float(g: &Gguf, key: &str) -> Option<f64> {
    match g.get(key)? {
        MetaValue::F32(v) => v.to_string().parse().ok(),
        MetaValue::F64(v) => Some(*v),
        _ => None,
    }
}

/// The arch a Llama GGUF file describes (validated, with `tie_embeddings` true when the file
/// has no `output.weight`).
pub fn arch(g: &Gguf) -> Result<Arch> {
    let p = g.path.display();
    match g.get_str("general.architecture") {
        Some(ARCHITECTURE) => {}
        Some(other) => bail!(
            "{p}: general.architecture is `{other}`; only `{ARCHITECTURE}` GGUF files are supported"
        ),
        None => bail!(
            "{p}: no `general.architecture` string; only `{ARCHITECTURE}` GGUF files are supported"
        ),
    }
    let k = |s: &str| format!("{ARCHITECTURE}.{s}");
    let n_head = per_layer(g, &k("attention.head_count"))?
        .with_context(|| format!("{p}: missing metadata `{}`", k("attention.head_count")))?;
    let d_inner = per_layer(g, &k("feed_forward_length"))?
        .with_context(|| format!("{p}: missing metadata `{}`", k("feed_forward_length")))?;
    let vocab_size = match g.get(&k("vocab_size")) {
        Some(v) => as_usize(g, &k("vocab_size"), v)?,
        None => match (g.get("tokenizer.ggml.tokens"), g.tensor("token_embd.weight")) {
            (Some(MetaValue::Array(t)), _) => t.len(),
            (_, Some(t)) if t.dims.len() == 2 => t.dims[1] as usize,
            _ => bail!(
                "{p}: no vocabulary size: neither `{}`, `tokenizer.ggml.tokens` nor a 2-D `token_embd.weight`",
                k("vocab_size")
            ),
        },
    };
    let norm_eps = float(g, &k("attention.layer_norm_rms_epsilon")).with_context(|| {
        format!(
            "{p}: missing float metadata `{}`",
            k("attention.layer_norm_rms_epsilon")
        )
    })?;
    if let Some(t) = g.get_str(&k("rope.scaling.type")) {
        if t != "none" {
            bail!("{p}: RoPE scaling `{t}` is not supported (lts implements plain RoPE)");
        }
    }
    let spec = ArchSpec {
        family: Family::Llama,
        n_layer: req_usize(g, &k("block_count"))?,
        d_model: req_usize(g, &k("embedding_length"))?,
        d_inner,
        n_head,
        n_kv_head: per_layer(g, &k("attention.head_count_kv"))?,
        vocab_size,
        n_positions: req_usize(g, &k("context_length"))?,
        tie_embeddings: Some(g.tensor("output.weight").is_none()),
        norm_eps: Some(norm_eps),
        rope_theta: Some(float(g, &k("rope.freq_base")).unwrap_or(10_000.0)),
    };
    let arch = Arch::try_from(spec)
        .with_context(|| format!("{p}: the metadata does not describe a valid Llama arch"))?;
    for key in [
        "rope.dimension_count",
        "attention.key_length",
        "attention.value_length",
    ] {
        if let Some(v) = g.get(&k(key)) {
            let v = as_usize(g, &k(key), v)?;
            if let Some(i) = (0..arch.n_layer).find(|&i| arch.head_dim(i) != v) {
                bail!(
                    "{p}: `{}` is {v} but layer {i} has head size {} (d_model / n_head): lts needs head_dim = d_model / n_head and RoPE over the whole head",
                    k(key),
                    arch.head_dim(i)
                );
            }
        }
    }
    Ok(arch)
}

/// The weights of `arch` from a Llama GGUF file, in HF names and layout: every tensor's shape
/// checked (all problems listed) before any is dequantised, then each dequantised in turn, with
/// the Q/K permutation undone. A tensor the arch does not use is an error.
pub fn weights(g: &Gguf, arch: &Arch) -> Result<Weights> {
    let p = g.path.display();
    let specs = param_specs(arch);
    let mut problems = Vec::new();
    let mut plan = Vec::with_capacity(specs.len());
    let mut used = std::collections::BTreeSet::new();
    for spec in &specs {
        let name = gguf_name(&spec.name).expect("param_specs names are Llama names");
        match g.tensor(&name) {
            None => problems.push(format!("missing tensor `{name}` (for `{}`)", spec.name)),
            Some(t) if t.shape() != spec.shape => problems.push(format!(
                "tensor `{name}` has shape {:?} (GGUF sizes {:?}) but the arch from the metadata needs {:?}",
                t.shape(),
                t.dims,
                spec.shape
            )),
            Some(t) => plan.push((spec, t)),
        }
        used.insert(name);
    }
    let extra: Vec<&str> = g
        .tensors
        .iter()
        .map(|t| t.name.as_str())
        .filter(|n| !used.contains(*n))
        .collect();
    if !extra.is_empty() {
        problems.push(format!(
            "{} tensor(s) the arch does not use: {}",
            extra.len(),
            extra
                .iter()
                .take(5)
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !problems.is_empty() {
        bail!(
            "{p} does not fit arch {} ({} problem(s)):\n  - {}",
            arch.id(),
            problems.len(),
            problems.join("\n  - ")
        );
    }
    let mut tensors = std::collections::BTreeMap::new();
    for (spec, t) in plan {
        let mut w = g.dequantize(t)?;
        let layer = || -> usize {
            spec.name
                .split('.')
                .nth(2)
                .and_then(|i| i.parse().ok())
                .expect("layer index")
        };
        if spec.name.ends_with("self_attn.q_proj.weight") {
            w.data = unpermute_rows(&w.data, arch.d_model, arch.n_head[layer()]);
        } else if spec.name.ends_with("self_attn.k_proj.weight") {
            w.data = unpermute_rows(&w.data, arch.d_model, arch.n_kv_head[layer()]);
        }
        tensors.insert(
            spec.name.clone(),
            Tensor {
                shape: spec.shape.clone(),
                data: w.data,
            },
        );
    }
    Ok(Weights {
        tensors,
        source: g.path.display().to_string(),
    })
}

/// Opens a Llama GGUF file and returns its arch and dequantised weights.
pub fn load(path: &std::path::Path) -> Result<(Arch, Weights)> {
    let g = Gguf::open(path)?;
    let arch = arch(&g)?;
    let w = weights(&g, &arch)?;
    Ok((arch, w))
}
