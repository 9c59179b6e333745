//! The GPU-resident tensors of one model and their upload: [`Capacity`] (what the activation
//! and cache buffers are sized for), the token table in row chunks, per-layer weights and KV
//! caches, RoPE tables and activations, all allocated once through [`Alloc`] in the order the
//! errors for oversized buffers report them.

use std::collections::BTreeMap;

use anyhow::{bail, Result};

use crate::arch::parts::{Mlp, Naming, Positions};
use crate::arch::Arch;
use crate::backend::wgpu::kernels::{self, Alloc, Kernels};
use crate::weights::Weights;
use crate::workload::Logits;

/// How much one [`GpuModel`](super::GpuModel) can process: activation and cache buffers are
/// sized from this once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// Sequences per forward.
    pub batch: usize,
    /// New tokens per sequence per forward.
    pub tokens: usize,
    /// Cache positions per sequence (past + new).
    pub positions: usize,
    /// Which positions of a forward get the final norm and the LM head: [`Logits::Last`] (the
    /// logits buffer holds `batch` rows, [`GpuModel::forward`](super::GpuModel::forward)
    /// returns `[batch, 1, vocab]`) or [`Logits::All`] (`batch * tokens` rows,
    /// `[batch, seq, vocab]`).
    pub logits: Logits,
}

impl Capacity {
    /// Checks `arch` and `weights` (as the ONNX graph would) and this capacity against them and
    /// against the kernels' limits, before anything is uploaded.
    pub(super) fn check(&self, arch: &Arch, weights: &Weights) -> Result<()> {
        arch.validate()?;
        weights.check(arch)?;
        if self.batch == 0 || self.tokens == 0 || self.positions < self.tokens {
            bail!("invalid GPU model capacity {self:?}");
        }
        if arch
            .position_limit()
            .is_some_and(|limit| self.positions > limit)
        {
            bail!(
                "{} positions requested but GPT-2's position table has n_positions = {}",
                self.positions,
                arch.n_positions
            );
        }
        Ok(())
    }
}

/// Checks every layer's head size against the attention kernel's workgroup memory.
pub(super) fn check_head_dims(arch: &Arch) -> Result<()> {
    if let Some(i) = (0..arch.n_layer).find(|&i| arch.head_dim(i) > kernels::MAX_HEAD_DIM) {
        bail!(
            "layer {i} has head_dim {} but the wgpu attention kernel supports at most {}; use more heads or --backend ort",
            arch.head_dim(i),
            kernels::MAX_HEAD_DIM
        );
    }
    Ok(())
}

/// A row chunk `[v0, v1)` of a `[V, D]` table.
pub(super) struct Chunk {
    pub(super) buf: wgpu::Buffer,
    pub(super) v0: usize,
    pub(super) v1: usize,
}

/// One decoder layer's geometry, weights (GPT-2's biases `Some`, Llama's `None`) and KV cache.
pub(super) struct Layer {
    pub(super) heads: usize,
    pub(super) kv_heads: usize,
    pub(super) head_dim: usize,
    pub(super) inner: usize,
    pub(super) ln1_w: wgpu::Buffer,
    pub(super) ln1_b: Option<wgpu::Buffer>,
    pub(super) qkv_w: wgpu::Buffer,
    pub(super) qkv_b: Option<wgpu::Buffer>,
    pub(super) o_w: wgpu::Buffer,
    pub(super) o_b: Option<wgpu::Buffer>,
    pub(super) ln2_w: wgpu::Buffer,
    pub(super) ln2_b: Option<wgpu::Buffer>,
    /// GPT-2 `c_fc` `[D, I]`; Llama gate|up `[2I, D]`.
    pub(super) up_w: wgpu::Buffer,
    pub(super) up_b: Option<wgpu::Buffer>,
    /// GPT-2 `c_proj` `[I, D]`; Llama `down_proj` `[D, I]`.
    pub(super) down_w: wgpu::Buffer,
    pub(super) down_b: Option<wgpu::Buffer>,
    pub(super) k_cache: wgpu::Buffer,
    pub(super) v_cache: wgpu::Buffer,
}

/// The activation buffers of one forward, sized for the model's [`Capacity`].
pub(super) struct Activations {
    pub(super) ids: wgpu::Buffer,
    pub(super) h: wgpu::Buffer,
    pub(super) x: wgpu::Buffer,
    pub(super) qkv: wgpu::Buffer,
    pub(super) q: wgpu::Buffer,
    pub(super) attn: wgpu::Buffer,
    pub(super) mid: wgpu::Buffer,
    pub(super) act: wgpu::Buffer,
    pub(super) logits: wgpu::Buffer,
}

/// Every GPU buffer of a model (the plans bind these).
pub(super) struct Buffers {
    pub(super) layers: Vec<Layer>,
    pub(super) tok: Vec<Chunk>,
    /// Untied LM head chunks; `None` when the head is the token table.
    pub(super) head: Option<Vec<Chunk>>,
    pub(super) pos: Option<wgpu::Buffer>,
    pub(super) lnf_w: wgpu::Buffer,
    pub(super) lnf_b: Option<wgpu::Buffer>,
    /// Llama's `[positions, head_dim / 2, (cos, sin)]` tables, per head size.
    pub(super) rope: BTreeMap<usize, wgpu::Buffer>,
    pub(super) acts: Activations,
    /// Bound where a kernel's optional input is absent (never read).
    pub(super) dummy: wgpu::Buffer,
    /// Bytes of the weight buffers alone.
    pub(super) weight_bytes: u64,
}

impl Buffers {
    /// The buffer of an optional input, or the dummy binding.
    pub(super) fn opt<'a>(&'a self, b: &'a Option<wgpu::Buffer>) -> &'a wgpu::Buffer {
        b.as_ref().unwrap_or(&self.dummy)
    }
}

/// The embeddings and the final norm: what precedes and follows the layers.
struct Ends {
    tok: Vec<Chunk>,
    pos: Option<wgpu::Buffer>,
    head: Option<Vec<Chunk>>,
    lnf_w: wgpu::Buffer,
    lnf_b: Option<wgpu::Buffer>,
}

/// Uploads one model's tensors in the kernels' storage precision through one [`Alloc`].
pub(super) struct Upload<'a> {
    pub(super) arch: &'a Arch,
    pub(super) weights: &'a Weights,
    pub(super) kernels: &'a Kernels,
    pub(super) alloc: &'a Alloc<'a>,
    pub(super) cap: Capacity,
}

fn rows_of<'a>(w: &'a Weights, name: &str) -> &'a [f32] {
    &w.get(name).data
}

impl Upload<'_> {
    /// Every buffer, in this order: the token table chunks, the untied LM head's chunks or the
    /// position table, the final norm, per layer the KV cache then the weights, the RoPE tables,
    /// the activations, the dummy binding.
    pub(super) fn all(&self) -> Result<Buffers> {
        let ends = self.ends()?;
        let (layers, cache_bytes) = self.layers()?;
        let weight_bytes = self.alloc.bytes() - cache_bytes;
        let rope = self.rope_tables()?;
        let acts = self.activations()?;
        let dummy = self.alloc.zeroed("dummy binding", 16)?;
        Ok(Buffers {
            layers,
            tok: ends.tok,
            head: ends.head,
            pos: ends.pos,
            lnf_w: ends.lnf_w,
            lnf_b: ends.lnf_b,
            rope,
            acts,
            dummy,
            weight_bytes,
        })
    }

    fn up(&self, name: &str, data: &[f32]) -> Result<wgpu::Buffer> {
        self.alloc.init(name, &self.kernels.encode(data))
    }

    /// The weight tensor `name`, as stored.
    fn tensor(&self, name: &str) -> Result<wgpu::Buffer> {
        self.up(name, rows_of(self.weights, name))
    }

    /// The `[V, D]` table `name` in row chunks that each fit one storage binding.
    fn chunks(&self, name: &str) -> Result<Vec<Chunk>> {
        let d = self.arch.d_model;
        let eb = self.kernels.elem_bytes() as u64;
        let vocab = self.arch.vocab_size;
        let data = rows_of(self.weights, name);
        let rows_per = ((self.alloc.max_binding() / (d as u64 * eb)) as usize).max(1);
        let mut out = Vec::new();
        let mut v0 = 0;
        while v0 < vocab {
            let v1 = (v0 + rows_per).min(vocab);
            let what = format!("{name} rows {v0}..{v1}");
            out.push(Chunk {
                buf: self.up(&what, &data[v0 * d..v1 * d])?,
                v0,
                v1,
            });
            v0 = v1;
        }
        Ok(out)
    }

    fn ends(&self) -> Result<Ends> {
        if self.arch.parts().naming == Naming::Llama {
            let tok = self.chunks("model.embed_tokens.weight")?;
            let head = if self.arch.tie_embeddings {
                None
            } else {
                Some(self.chunks("lm_head.weight")?)
            };
            Ok(Ends {
                tok,
                pos: None,
                head,
                lnf_w: self.tensor("model.norm.weight")?,
                lnf_b: None,
            })
        } else {
            Ok(Ends {
                tok: self.chunks("transformer.wte.weight")?,
                pos: Some(self.tensor("transformer.wpe.weight")?),
                head: None,
                lnf_w: self.tensor("transformer.ln_f.weight")?,
                lnf_b: Some(self.tensor("transformer.ln_f.bias")?),
            })
        }
    }

    /// Every layer, and the bytes of their KV caches.
    fn layers(&self) -> Result<(Vec<Layer>, u64)> {
        let arch = self.arch;
        let eb = self.kernels.elem_bytes() as u64;
        let mut layers = Vec::with_capacity(arch.n_layer);
        let mut cache_bytes = 0u64;
        for i in 0..arch.n_layer {
            let (kv_heads, head_dim) = (arch.n_kv_head[i], arch.head_dim(i));
            let cap = self.cap;
            let cache_len = (cap.batch * kv_heads * cap.positions * head_dim) as u64 * eb;
            let before = self.alloc.bytes();
            let k_cache = self
                .alloc
                .zeroed(&format!("layer {i} key cache"), cache_len)?;
            let v_cache = self
                .alloc
                .zeroed(&format!("layer {i} value cache"), cache_len)?;
            cache_bytes += self.alloc.bytes() - before;
            let layer = if arch.parts().naming == Naming::Llama {
                self.llama_layer(i, k_cache, v_cache)?
            } else {
                self.gpt2_layer(i, k_cache, v_cache)?
            };
            layers.push(layer);
        }
        Ok((layers, cache_bytes))
    }

    /// Llama layer `i`: q/k/v and gate/up concatenated row-wise into one fused weight each.
    fn llama_layer(&self, i: usize, k_cache: wgpu::Buffer, v_cache: wgpu::Buffer) -> Result<Layer> {
        let arch = self.arch;
        let l = format!("model.layers.{i}");
        let cat = |names: &[&str]| -> Vec<f32> {
            names
                .iter()
                .flat_map(|n| rows_of(self.weights, &format!("{l}.{n}")).iter().copied())
                .collect()
        };
        let w = |n: &str| self.tensor(&format!("{l}.{n}"));
        Ok(Layer {
            heads: arch.n_head[i],
            kv_heads: arch.n_kv_head[i],
            head_dim: arch.head_dim(i),
            inner: arch.d_inner[i],
            ln1_w: w("input_layernorm.weight")?,
            ln1_b: None,
            qkv_w: self.up(
                &format!("{l}.self_attn.qkv (fused)"),
                &cat(&[
                    "self_attn.q_proj.weight",
                    "self_attn.k_proj.weight",
                    "self_attn.v_proj.weight",
                ]),
            )?,
            qkv_b: None,
            o_w: w("self_attn.o_proj.weight")?,
            o_b: None,
            ln2_w: w("post_attention_layernorm.weight")?,
            ln2_b: None,
            up_w: self.up(
                &format!("{l}.mlp.gate_up (fused)"),
                &cat(&["mlp.gate_proj.weight", "mlp.up_proj.weight"]),
            )?,
            up_b: None,
            down_w: w("mlp.down_proj.weight")?,
            down_b: None,
            k_cache,
            v_cache,
        })
    }

    /// GPT-2 layer `i`, Conv1D weights as stored.
    fn gpt2_layer(&self, i: usize, k_cache: wgpu::Buffer, v_cache: wgpu::Buffer) -> Result<Layer> {
        let arch = self.arch;
        let l = format!("transformer.h.{i}");
        let w = |n: &str| self.tensor(&format!("{l}.{n}"));
        Ok(Layer {
            heads: arch.n_head[i],
            kv_heads: arch.n_kv_head[i],
            head_dim: arch.head_dim(i),
            inner: arch.d_inner[i],
            ln1_w: w("ln_1.weight")?,
            ln1_b: Some(w("ln_1.bias")?),
            qkv_w: w("attn.c_attn.weight")?,
            qkv_b: Some(w("attn.c_attn.bias")?),
            o_w: w("attn.c_proj.weight")?,
            o_b: Some(w("attn.c_proj.bias")?),
            ln2_w: w("ln_2.weight")?,
            ln2_b: Some(w("ln_2.bias")?),
            up_w: w("mlp.c_fc.weight")?,
            up_b: Some(w("mlp.c_fc.bias")?),
            down_w: w("mlp.c_proj.weight")?,
            down_b: Some(w("mlp.c_proj.bias")?),
            k_cache,
            v_cache,
        })
    }

    /// Llama's RoPE `(cos, sin)` tables (f32, angles in f64), one per distinct head size; none
    /// for GPT-2.
    fn rope_tables(&self) -> Result<BTreeMap<usize, wgpu::Buffer>> {
        let arch = self.arch;
        let mut rope = BTreeMap::new();
        if arch.parts().positions != Positions::Rope {
            return Ok(rope);
        }
        for i in 0..arch.n_layer {
            let hd = arch.head_dim(i);
            if rope.contains_key(&hd) {
                continue;
            }
            let half = hd / 2;
            let inv_freq: Vec<f64> = (0..half)
                .map(|j| 1.0 / arch.rope_theta.powf((2 * j) as f64 / hd as f64))
                .collect();
            let mut tab = Vec::with_capacity(self.cap.positions * half * 2);
            for p in 0..self.cap.positions {
                for &inv in &inv_freq {
                    let a = p as f64 * inv;
                    tab.push(a.cos() as f32);
                    tab.push(a.sin() as f32);
                }
            }
            let what = format!("RoPE table (head_dim {hd})");
            rope.insert(hd, self.alloc.init(&what, bytemuck::cast_slice(&tab))?);
        }
        Ok(rope)
    }

    /// The activation buffers, sized for the largest layer.
    fn activations(&self) -> Result<Activations> {
        let (arch, cap, alloc) = (self.arch, self.cap, self.alloc);
        let eb = self.kernels.elem_bytes() as u64;
        let rows = (cap.batch * cap.tokens) as u64;
        let (logit_rows, logits_what) = match cap.logits {
            Logits::All => (rows, "logits [batch * seq, vocab_size]"),
            Logits::Last => (
                cap.batch as u64,
                "logits [batch, vocab_size] (last position)",
            ),
        };
        let max_qkv = (0..arch.n_layer)
            .map(|i| (arch.n_head[i] + 2 * arch.n_kv_head[i]) * arch.head_dim(i))
            .max()
            .unwrap_or(0) as u64;
        let max_inner = arch.d_inner.iter().copied().max().unwrap_or(0) as u64;
        let mid_cols = if arch.parts().mlp == Mlp::SwiGlu {
            2 * max_inner
        } else {
            max_inner
        };
        let dd = arch.d_model as u64;
        Ok(Activations {
            ids: alloc.zeroed("input ids", rows * 4)?,
            h: alloc.zeroed("residual stream [rows, d_model]", rows * dd * eb)?,
            x: alloc.zeroed("normed activations [rows, d_model]", rows * dd * eb)?,
            qkv: alloc.zeroed(
                "QKV projection [rows, (H + 2 KV) head_dim]",
                rows * max_qkv * eb,
            )?,
            q: alloc.zeroed("queries [batch, heads, seq, head_dim]", rows * dd * eb)?,
            attn: alloc.zeroed("attention output [rows, d_model]", rows * dd * eb)?,
            mid: alloc.zeroed("MLP hidden [rows, d_inner]", rows * mid_cols * eb)?,
            act: alloc.zeroed("SwiGLU output [rows, d_inner]", rows * max_inner * eb)?,
            logits: alloc.zeroed(logits_what, logit_rows * arch.vocab_size as u64 * eb)?,
        })
    }
}
