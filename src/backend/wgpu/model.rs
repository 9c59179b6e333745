//! A decoder uploaded to the GPU and run as one compute pass per forward.
//!
//! Weights are the same tensors as the ONNX graph's ([`crate::weights::Weights`], HF names and
//! layouts). GPT-2's Conv1D weights (`[in, out]`) are multiplied as stored; Llama's Linear
//! weights (`[out, in]`) through the transposed-B kernels, with q/k/v and gate/up concatenated
//! row-wise into one fused projection each. The token table is split into row chunks when it is
//! larger than the adapter's storage-binding limit (GPT-2 small's 147 MiB table on llvmpipe's
//! 128 MiB); the tied LM head multiplies the same chunks.
//!
//! One forward, per layer: norm -> fused QKV matmul (+bias) -> split/RoPE/cache append ->
//! attention -> output matmul with the residual add fused -> norm -> MLP (GPT-2: matmul + bias +
//! GELU fused, matmul + bias + residual fused; Llama: gate|up matmul, SwiGLU, down matmul +
//! residual fused); then the final norm and the LM head, as the ONNX prefill graph of the same
//! [`Logits`] choice, so both backends time the same work: with [`Logits::Last`] the final norm
//! gathers the last position of each sequence into a compact `[batch, d_model]` block (one
//! norm dispatch, rows read at stride `seq`) and the LM head multiplies only those `batch` rows
//! (logits `[batch, 1, vocab]`); with [`Logits::All`] both run over every position (logits
//! `[batch, seq, vocab]`). A one-token forward (decode) is the same either way.
//!
//! A forward is recorded once per `(batch, seq)` as a list of dispatches (a plan); the number of
//! positions already in the KV cache is not baked into it but read by the embedding, QKV and
//! attention kernels from a 16-byte uniform written before each submission
//! ([`kernels::StepUniform`]), so every decode step of a generation reuses one plan.
//!
//! [`WgpuRunner`] times a prefill, one decode step, or a whole greedy generation
//! ([`Mode::Generate`]: prefill, then decode steps fed the host-side argmax of the previous
//! step's logits, with the KV cache kept on the GPU).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ndarray::{Array2, Array3, Array4};

use super::kernels::{
    self, Alloc, AttnDims, Dispatch, Epilogue, Kernels, MatmulKernel, MatmulShape, StepUniform,
    Timestamps,
};
use super::{Gpu, GpuTimer, Precision, WgpuOptions};
use crate::arch::{Arch, Family};
use crate::backend::{FirstTokenLog, Runner, RuntimeInfo};
use crate::reference::{KvCache, Output};
use crate::weights::Weights;
use crate::workload::{Logits, Mode, Workload};

/// How much one [`GpuModel`] can process: activation and cache buffers are sized from this once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// Sequences per forward.
    pub batch: usize,
    /// New tokens per sequence per forward.
    pub tokens: usize,
    /// Cache positions per sequence (past + new).
    pub positions: usize,
    /// Which positions of a forward get the final norm and the LM head: [`Logits::Last`] (the
    /// logits buffer holds `batch` rows, [`GpuModel::forward`] returns `[batch, 1, vocab]`) or
    /// [`Logits::All`] (`batch * tokens` rows, `[batch, seq, vocab]`).
    pub logits: Logits,
}

/// A row chunk `[v0, v1)` of a `[V, D]` table.
struct Chunk {
    buf: wgpu::Buffer,
    v0: usize,
    v1: usize,
}

struct Layer {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    inner: usize,
    ln1_w: wgpu::Buffer,
    ln1_b: Option<wgpu::Buffer>,
    qkv_w: wgpu::Buffer,
    qkv_b: Option<wgpu::Buffer>,
    o_w: wgpu::Buffer,
    o_b: Option<wgpu::Buffer>,
    ln2_w: wgpu::Buffer,
    ln2_b: Option<wgpu::Buffer>,
    /// GPT-2 `c_fc` `[D, I]`; Llama gate|up `[2I, D]`.
    up_w: wgpu::Buffer,
    up_b: Option<wgpu::Buffer>,
    /// GPT-2 `c_proj` `[I, D]`; Llama `down_proj` `[D, I]`.
    down_w: wgpu::Buffer,
    down_b: Option<wgpu::Buffer>,
    k_cache: wgpu::Buffer,
    v_cache: wgpu::Buffer,
}

struct Activations {
    ids: wgpu::Buffer,
    h: wgpu::Buffer,
    x: wgpu::Buffer,
    qkv: wgpu::Buffer,
    q: wgpu::Buffer,
    attn: wgpu::Buffer,
    mid: wgpu::Buffer,
    act: wgpu::Buffer,
    logits: wgpu::Buffer,
}

/// A decoder resident on one GPU: weights, activations, KV cache and compiled kernels.
pub struct GpuModel {
    gpu: Arc<Gpu>,
    kernels: Kernels,
    arch: Arch,
    cap: Capacity,
    layers: Vec<Layer>,
    tok: Vec<Chunk>,
    /// Untied LM head chunks; `None` when the head is the token table.
    head: Option<Vec<Chunk>>,
    pos: Option<wgpu::Buffer>,
    lnf_w: wgpu::Buffer,
    lnf_b: Option<wgpu::Buffer>,
    rope: BTreeMap<usize, wgpu::Buffer>,
    acts: Activations,
    dummy: wgpu::Buffer,
    weight_bytes: u64,
    total_bytes: u64,
    /// The cache length every plan reads (written before each submission).
    step: StepUniform,
    /// Recorded forwards, per `(batch, new tokens)`.
    plans: HashMap<(usize, usize), Vec<Dispatch>>,
    /// Host-readable copy target of the logits, created on first use.
    readback: Option<wgpu::Buffer>,
}

fn rows_of<'a>(w: &'a Weights, name: &str) -> &'a [f32] {
    &w.get(name).data
}

impl GpuModel {
    /// Uploads `weights` of `arch` (checked against the arch first) in `precision` (resolved
    /// against the adapter) and allocates buffers for `cap`. Errors name the tensor and the fix
    /// when a buffer exceeds the adapter's limits.
    pub fn new(
        gpu: Arc<Gpu>,
        arch: &Arch,
        weights: &Weights,
        precision: Precision,
        cap: Capacity,
    ) -> Result<GpuModel> {
        arch.validate()?;
        crate::reference::check_weights(arch, weights)?;
        if cap.batch == 0 || cap.tokens == 0 || cap.positions < cap.tokens {
            bail!("invalid GPU model capacity {cap:?}");
        }
        if arch.family == Family::Gpt2 && cap.positions > arch.n_positions {
            bail!(
                "{} positions requested but GPT-2's position table has n_positions = {}",
                cap.positions,
                arch.n_positions
            );
        }
        let precision = gpu.resolve_precision(precision)?;
        if let Some(i) = (0..arch.n_layer).find(|&i| arch.head_dim(i) > kernels::MAX_HEAD_DIM) {
            bail!(
                "layer {i} has head_dim {} but the wgpu attention kernel supports at most {}; use more heads or --backend ort",
                arch.head_dim(i),
                kernels::MAX_HEAD_DIM
            );
        }
        let kernels = Kernels::new(&gpu, precision)?;
        let eb = kernels.elem_bytes() as u64;
        let alloc = Alloc::new(&gpu);
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let up = |name: &str, data: &[f32]| alloc.init(name, &kernels.encode(data));
        let d = arch.d_model;
        let llama = arch.family == Family::Llama;

        let chunks = |name: &str| -> Result<Vec<Chunk>> {
            let data = rows_of(weights, name);
            let rows_per = ((alloc.max_binding() / (d as u64 * eb)) as usize).max(1);
            let mut out = Vec::new();
            let mut v0 = 0;
            while v0 < arch.vocab_size {
                let v1 = (v0 + rows_per).min(arch.vocab_size);
                let what = format!("{name} rows {v0}..{v1}");
                out.push(Chunk {
                    buf: up(&what, &data[v0 * d..v1 * d])?,
                    v0,
                    v1,
                });
                v0 = v1;
            }
            Ok(out)
        };

        let (tok, pos, head, lnf_w, lnf_b) = if llama {
            let tok = chunks("model.embed_tokens.weight")?;
            let head = if arch.tie_embeddings {
                None
            } else {
                Some(chunks("lm_head.weight")?)
            };
            let lnf = up("model.norm.weight", rows_of(weights, "model.norm.weight"))?;
            (tok, None, head, lnf, None)
        } else {
            let tok = chunks("transformer.wte.weight")?;
            let pos = up(
                "transformer.wpe.weight",
                rows_of(weights, "transformer.wpe.weight"),
            )?;
            let lnf_w = up(
                "transformer.ln_f.weight",
                rows_of(weights, "transformer.ln_f.weight"),
            )?;
            let lnf_b = up(
                "transformer.ln_f.bias",
                rows_of(weights, "transformer.ln_f.bias"),
            )?;
            (tok, Some(pos), None, lnf_w, Some(lnf_b))
        };

        let mut layers = Vec::with_capacity(arch.n_layer);
        let mut cache_bytes = 0u64;
        for i in 0..arch.n_layer {
            let (heads, kv_heads, head_dim, inner) = (
                arch.n_head[i],
                arch.n_kv_head[i],
                arch.head_dim(i),
                arch.d_inner[i],
            );
            let cache_len = (cap.batch * kv_heads * cap.positions * head_dim) as u64 * eb;
            let before = alloc.bytes();
            let k_cache = alloc.zeroed(&format!("layer {i} key cache"), cache_len)?;
            let v_cache = alloc.zeroed(&format!("layer {i} value cache"), cache_len)?;
            cache_bytes += alloc.bytes() - before;
            let layer = if llama {
                let l = format!("model.layers.{i}");
                let cat = |names: &[&str]| -> Vec<f32> {
                    names
                        .iter()
                        .flat_map(|n| rows_of(weights, &format!("{l}.{n}")).iter().copied())
                        .collect()
                };
                let w = |n: &str| up(&format!("{l}.{n}"), rows_of(weights, &format!("{l}.{n}")));
                Layer {
                    heads,
                    kv_heads,
                    head_dim,
                    inner,
                    ln1_w: w("input_layernorm.weight")?,
                    ln1_b: None,
                    qkv_w: up(
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
                    up_w: up(
                        &format!("{l}.mlp.gate_up (fused)"),
                        &cat(&["mlp.gate_proj.weight", "mlp.up_proj.weight"]),
                    )?,
                    up_b: None,
                    down_w: w("mlp.down_proj.weight")?,
                    down_b: None,
                    k_cache,
                    v_cache,
                }
            } else {
                let l = format!("transformer.h.{i}");
                let w = |n: &str| up(&format!("{l}.{n}"), rows_of(weights, &format!("{l}.{n}")));
                Layer {
                    heads,
                    kv_heads,
                    head_dim,
                    inner,
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
                }
            };
            layers.push(layer);
        }
        let weight_bytes = alloc.bytes() - cache_bytes;

        let mut rope = BTreeMap::new();
        if llama {
            for i in 0..arch.n_layer {
                let hd = arch.head_dim(i);
                if rope.contains_key(&hd) {
                    continue;
                }
                let half = hd / 2;
                let inv_freq: Vec<f64> = (0..half)
                    .map(|j| 1.0 / arch.rope_theta.powf((2 * j) as f64 / hd as f64))
                    .collect();
                let mut tab = Vec::with_capacity(cap.positions * half * 2);
                for p in 0..cap.positions {
                    for &inv in &inv_freq {
                        let a = p as f64 * inv;
                        tab.push(a.cos() as f32);
                        tab.push(a.sin() as f32);
                    }
                }
                rope.insert(
                    hd,
                    alloc.init(
                        &format!("RoPE table (head_dim {hd})"),
                        bytemuck::cast_slice(&tab),
                    )?,
                );
            }
        }

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
        let mid_cols = if llama { 2 * max_inner } else { max_inner };
        let dd = d as u64;
        let acts = Activations {
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
        };
        let dummy = alloc.zeroed("dummy binding", 16)?;
        if let Some(e) = pollster::block_on(scope.pop()) {
            bail!(
                "the GPU ran out of memory uploading the model ({:.1} MiB): {e}",
                alloc.bytes() as f64 / 1048576.0
            );
        }
        let total_bytes = alloc.bytes();
        Ok(GpuModel {
            kernels,
            arch: arch.clone(),
            cap,
            layers,
            tok,
            head,
            pos,
            lnf_w,
            lnf_b,
            rope,
            acts,
            dummy,
            weight_bytes,
            total_bytes,
            step: StepUniform::new(&gpu),
            plans: HashMap::new(),
            readback: None,
            gpu,
        })
    }

    /// The storage precision the model runs in.
    pub fn precision(&self) -> Precision {
        self.kernels.precision
    }

    /// Bytes of all GPU buffers (weights, activations, KV cache): the backend's peak GPU buffer
    /// memory, since everything is allocated up front and nothing during a forward.
    pub fn gpu_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Bytes of the weight buffers alone.
    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }

    /// The adapter the model lives on.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// The capacity the model was built for.
    pub fn capacity(&self) -> Capacity {
        self.cap
    }

    /// Number of kernel launches in one forward of `batch` x `seq` tokens after `past` cached
    /// positions (records the plan if needed).
    pub fn dispatch_count(&mut self, batch: usize, seq: usize, past: usize) -> Result<usize> {
        Ok(self.plan(batch, seq, past)?.len())
    }

    /// What each kernel launch of one forward of `batch` x `seq` tokens after `past` cached
    /// positions computes, in order (matrix multiplies with their `M x N x K`), recording the
    /// plan if needed.
    pub fn dispatch_labels(
        &mut self,
        batch: usize,
        seq: usize,
        past: usize,
    ) -> Result<Vec<String>> {
        Ok(self
            .plan(batch, seq, past)?
            .iter()
            .map(|d| d.label.clone())
            .collect())
    }

    /// Rows of logits a forward of `batch` x `seq` tokens produces: `batch` with
    /// [`Logits::Last`], `batch * seq` with [`Logits::All`].
    pub fn logit_rows(&self, batch: usize, seq: usize) -> usize {
        match self.cap.logits {
            Logits::Last => batch,
            Logits::All => batch * seq,
        }
    }

    fn opt<'a>(&'a self, b: &'a Option<wgpu::Buffer>) -> &'a wgpu::Buffer {
        b.as_ref().unwrap_or(&self.dummy)
    }

    fn build_plan(&self, batch: usize, seq: usize) -> Vec<Dispatch> {
        let gpu = &*self.gpu;
        let k = &self.kernels;
        let a = &self.acts;
        let arch = &self.arch;
        let rows = batch * seq;
        let d = arch.d_model;
        let llama = arch.family == Family::Llama;
        let mut plan = Vec::new();
        let mm = |plan: &mut Vec<Dispatch>,
                  label: String,
                  s: MatmulShape,
                  epi: Epilogue,
                  x: &wgpu::Buffer,
                  w: &wgpu::Buffer,
                  bias: &wgpu::Buffer,
                  c: &wgpu::Buffer| {
            let kernel = MatmulKernel::choose(s.m, s.n, s.k, s.trans_b);
            plan.push(k.matmul(gpu, &label, kernel, s, epi, x, w, bias, c));
        };

        let pos = self.pos.as_ref().unwrap_or(&self.dummy);
        for c in &self.tok {
            plan.push(k.embed(
                gpu,
                rows,
                seq,
                d,
                (c.v0, c.v1),
                !llama,
                &a.ids,
                &c.buf,
                pos,
                &a.h,
                &self.step,
            ));
        }
        for (i, l) in self.layers.iter().enumerate() {
            let qkv_cols = (l.heads + 2 * l.kv_heads) * l.head_dim;
            plan.push(k.norm(
                gpu,
                &format!("layer {i} attention norm"),
                rows,
                d,
                llama,
                arch.norm_eps,
                &a.h,
                &l.ln1_w,
                self.opt(&l.ln1_b),
                &a.x,
            ));
            mm(
                &mut plan,
                format!("layer {i} qkv"),
                MatmulShape::dense(rows, qkv_cols, d, llama),
                Epilogue {
                    bias: !llama,
                    ..Default::default()
                },
                &a.x,
                &l.qkv_w,
                self.opt(&l.qkv_b),
                &a.qkv,
            );
            let dims = AttnDims {
                seq,
                heads: l.heads,
                kv_heads: l.kv_heads,
                head_dim: l.head_dim,
                cap: self.cap.positions,
            };
            plan.push(k.qkv(
                gpu,
                &format!("layer {i} split heads"),
                rows,
                dims,
                llama,
                &a.qkv,
                self.rope.get(&l.head_dim).unwrap_or(&self.dummy),
                &a.q,
                &l.k_cache,
                &l.v_cache,
                &self.step,
            ));
            plan.push(k.attention(
                gpu,
                &format!("layer {i} attention"),
                batch,
                dims,
                &a.q,
                &l.k_cache,
                &l.v_cache,
                &a.attn,
                &self.step,
            ));
            mm(
                &mut plan,
                format!("layer {i} attention output"),
                MatmulShape::dense(rows, d, l.heads * l.head_dim, llama),
                Epilogue {
                    bias: !llama,
                    residual: true,
                    ..Default::default()
                },
                &a.attn,
                &l.o_w,
                self.opt(&l.o_b),
                &a.h,
            );
            plan.push(k.norm(
                gpu,
                &format!("layer {i} MLP norm"),
                rows,
                d,
                llama,
                arch.norm_eps,
                &a.h,
                &l.ln2_w,
                self.opt(&l.ln2_b),
                &a.x,
            ));
            if llama {
                mm(
                    &mut plan,
                    format!("layer {i} gate|up"),
                    MatmulShape::dense(rows, 2 * l.inner, d, true),
                    Epilogue::default(),
                    &a.x,
                    &l.up_w,
                    &self.dummy,
                    &a.mid,
                );
                plan.push(k.swiglu(
                    gpu,
                    &format!("layer {i} swiglu"),
                    rows,
                    l.inner,
                    &a.mid,
                    &a.act,
                ));
                mm(
                    &mut plan,
                    format!("layer {i} down"),
                    MatmulShape::dense(rows, d, l.inner, true),
                    Epilogue {
                        residual: true,
                        ..Default::default()
                    },
                    &a.act,
                    &l.down_w,
                    &self.dummy,
                    &a.h,
                );
            } else {
                mm(
                    &mut plan,
                    format!("layer {i} fc + gelu"),
                    MatmulShape::dense(rows, l.inner, d, false),
                    Epilogue {
                        bias: true,
                        gelu: true,
                        residual: false,
                    },
                    &a.x,
                    &l.up_w,
                    self.opt(&l.up_b),
                    &a.mid,
                );
                mm(
                    &mut plan,
                    format!("layer {i} proj"),
                    MatmulShape::dense(rows, d, l.inner, false),
                    Epilogue {
                        bias: true,
                        residual: true,
                        ..Default::default()
                    },
                    &a.mid,
                    &l.down_w,
                    self.opt(&l.down_b),
                    &a.h,
                );
            }
        }
        // Last-position logits: the final norm reads row b * seq + seq - 1 of the residual stream
        // and writes row b of `x`, and the LM head multiplies those `batch` rows only.
        let (head_rows, in_rows, norm_label) = match self.cap.logits {
            Logits::All => (rows, (1, 0), "final norm"),
            Logits::Last => (batch, (seq, seq - 1), "final norm (last position)"),
        };
        plan.push(k.norm_gather(
            gpu,
            norm_label,
            head_rows,
            in_rows,
            d,
            llama,
            arch.norm_eps,
            &a.h,
            &self.lnf_w,
            self.opt(&self.lnf_b),
            &a.x,
        ));
        for c in self.head.as_ref().unwrap_or(&self.tok) {
            mm(
                &mut plan,
                format!("LM head rows {}..{}", c.v0, c.v1),
                MatmulShape {
                    m: head_rows,
                    n: c.v1 - c.v0,
                    k: d,
                    trans_b: true,
                    ldc: arch.vocab_size,
                    c_off: c.v0,
                },
                Epilogue::default(),
                &a.x,
                &c.buf,
                &self.dummy,
                &a.logits,
            );
        }
        plan
    }

    fn check_shape(&self, batch: usize, seq: usize, past: usize) -> Result<()> {
        if batch == 0 || seq == 0 {
            bail!("empty input: batch and sequence length must be >= 1");
        }
        if batch > self.cap.batch || seq > self.cap.tokens || past + seq > self.cap.positions {
            bail!(
                "a forward of batch {batch}, {seq} new tokens after {past} cached positions exceeds \
                 the GPU model's capacity {:?}",
                self.cap
            );
        }
        Ok(())
    }

    /// The recorded forward of `batch` x `seq` new tokens (built on first use; the cache length
    /// `past` is only checked against the capacity, since plans read it from the step uniform).
    fn plan(&mut self, batch: usize, seq: usize, past: usize) -> Result<&[Dispatch]> {
        self.check_shape(batch, seq, past)?;
        if !self.plans.contains_key(&(batch, seq)) {
            let scope = self
                .gpu
                .device
                .push_error_scope(wgpu::ErrorFilter::Validation);
            let plan = self.build_plan(batch, seq);
            if let Some(e) = pollster::block_on(scope.pop()) {
                bail!("cannot bind the wgpu kernels for this forward: {e}");
            }
            self.plans.insert((batch, seq), plan);
        }
        Ok(&self.plans[&(batch, seq)])
    }

    /// Writes token ids (`[batch, seq]`, checked against the vocabulary) and, when given, the
    /// past cache into the GPU buffers.
    pub fn upload(&self, input_ids: &Array2<i64>, past: Option<&KvCache>) -> Result<()> {
        let (batch, seq) = input_ids.dim();
        let past_len = past.map_or(0, |p| p.len());
        self.check_shape(batch, seq, past_len)?;
        let mut ids = Vec::with_capacity(batch * seq);
        for &t in input_ids.iter() {
            if t < 0 || t as usize >= self.arch.vocab_size {
                bail!(
                    "token id {t} is outside the vocabulary 0..{}",
                    self.arch.vocab_size
                );
            }
            ids.push(t as u32);
        }
        self.gpu
            .queue
            .write_buffer(&self.acts.ids, 0, bytemuck::cast_slice(&ids));
        if let Some(cache) = past.filter(|c| !c.is_empty()) {
            if cache.layers.len() != self.layers.len() {
                bail!(
                    "the past cache has {} layers but the model {}",
                    cache.layers.len(),
                    self.layers.len()
                );
            }
            for (i, ((k, v), l)) in cache.layers.iter().zip(&self.layers).enumerate() {
                let want = (batch, l.kv_heads, past_len, l.head_dim);
                for (part, src, dst) in [("key", k, &l.k_cache), ("value", v, &l.v_cache)] {
                    if src.dim() != want {
                        bail!(
                            "past {part} of layer {i} has shape {:?}, expected {want:?}",
                            src.dim()
                        );
                    }
                    let mut full = vec![0f32; batch * l.kv_heads * self.cap.positions * l.head_dim];
                    for b in 0..batch {
                        for h in 0..l.kv_heads {
                            for t in 0..past_len {
                                let o =
                                    ((b * l.kv_heads + h) * self.cap.positions + t) * l.head_dim;
                                for c in 0..l.head_dim {
                                    full[o + c] = src[[b, h, t, c]];
                                }
                            }
                        }
                    }
                    let mut bytes = self.kernels.encode(&full);
                    bytes.resize(bytes.len().next_multiple_of(4), 0);
                    self.gpu.queue.write_buffer(dst, 0, &bytes);
                }
            }
        }
        Ok(())
    }

    /// Submits one forward (already uploaded with [`GpuModel::upload`]) as one command buffer
    /// and waits for it; returns the compute pass's device time when `timestamps` is given.
    pub fn submit(
        &mut self,
        batch: usize,
        seq: usize,
        past: usize,
        timestamps: Option<&Timestamps>,
    ) -> Result<Option<Duration>> {
        self.plan(batch, seq, past)?;
        self.step.set(&self.gpu, past);
        let plan = &self.plans[&(batch, seq)];
        let cmd = kernels::encode_pass(&self.gpu, plan, timestamps);
        self.gpu.queue.submit([cmd]);
        self.gpu.wait()?;
        match timestamps {
            Some(t) => Ok(Some(t.read(&self.gpu)?)),
            None => Ok(None),
        }
    }

    /// Writes `batch` x `seq` token ids that are known to be in the vocabulary (e.g. argmax
    /// results) without [`GpuModel::upload`]'s checks.
    fn write_ids(&self, ids: &[u32]) {
        self.gpu
            .queue
            .write_buffer(&self.acts.ids, 0, bytemuck::cast_slice(ids));
    }

    /// Creates the host-readable logits buffer for `rows` rows unless one at least that large
    /// exists.
    fn readback(&mut self, rows: usize) {
        let len = (rows * self.arch.vocab_size * self.kernels.elem_bytes()) as u64;
        let padded = len.next_multiple_of(4).max(4);
        if self.readback.as_ref().is_none_or(|b| b.size() < padded) {
            self.readback = Some(self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("logits readback"),
                size: padded,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
        }
    }

    /// Submits one forward (inputs already written) and, in the same submission, copies its
    /// logits to a host-readable buffer; waits and returns them as f32, row-major
    /// `[logit_rows(batch, seq), vocab]`.
    pub fn submit_read_logits(
        &mut self,
        batch: usize,
        seq: usize,
        past: usize,
    ) -> Result<Vec<f32>> {
        self.plan(batch, seq, past)?;
        let len =
            (self.logit_rows(batch, seq) * self.arch.vocab_size * self.kernels.elem_bytes()) as u64;
        // Copies must be multiples of 4 bytes; the logits buffer is padded to 16.
        let padded = len.next_multiple_of(4);
        self.readback(self.logit_rows(batch, seq));
        let readback = self.readback.as_ref().expect("created above");
        self.step.set(&self.gpu, past);
        let plan = &self.plans[&(batch, seq)];
        let pass = kernels::encode_pass(&self.gpu, plan, None);
        let mut enc = self
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("logits readback"),
            });
        enc.copy_buffer_to_buffer(&self.acts.logits, 0, readback, 0, padded);
        self.gpu.queue.submit([pass, enc.finish()]);
        let mut bytes = kernels::read_buffer(&self.gpu, readback, padded)?;
        bytes.truncate(len as usize);
        Ok(self.kernels.decode(&bytes))
    }

    /// Runs the decoder on `input_ids` (`[batch, seq]`) after the positions in `past` and reads
    /// back the logits and the present cache, the same contract as [`crate::reference::forward`]
    /// and [`crate::backend::ort::infer`]: logits `[batch, seq, vocab]` when the model was built
    /// with [`Logits::All`], `[batch, 1, vocab]` (the last position) with [`Logits::Last`] (as
    /// ONNX Runtime's last-position prefill graph); the present cache holds every position.
    pub fn forward(&mut self, input_ids: &Array2<i64>, past: Option<&KvCache>) -> Result<Output> {
        let (batch, seq) = input_ids.dim();
        let past_len = past.map_or(0, |p| p.len());
        self.upload(input_ids, past)?;
        let logits = self.submit_read_logits(batch, seq, past_len)?;
        let eb = self.kernels.elem_bytes() as u64;
        let v = self.arch.vocab_size;
        let positions = self.logit_rows(batch, seq) / batch;
        let logits =
            Array3::from_shape_vec((batch, positions, v), logits).context("logits shape")?;
        let total = past_len + seq;
        let mut layers = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            let len = (batch * l.kv_heads * self.cap.positions * l.head_dim) as u64 * eb;
            let mut pair = Vec::with_capacity(2);
            for buf in [&l.k_cache, &l.v_cache] {
                let all = self
                    .kernels
                    .decode(&kernels::download(&self.gpu, buf, len)?);
                let cap = self.cap.positions;
                let hd = l.head_dim;
                pair.push(Array4::from_shape_fn(
                    (batch, l.kv_heads, total, hd),
                    |(b, h, t, c)| all[((b * l.kv_heads + h) * cap + t) * hd + c],
                ));
            }
            let v = pair.pop().expect("two");
            let k = pair.pop().expect("two");
            layers.push((k, v));
        }
        Ok(Output {
            logits,
            present: KvCache { layers },
        })
    }
}

/// What [`WgpuRunner`] reports about the runtime, for [`crate::job::JobResult::runtime`].
pub fn runtime_info(gpu: &Gpu, precision: Precision, timer: GpuTimer) -> RuntimeInfo {
    RuntimeInfo {
        name: "wgpu".into(),
        version: WGPU_VERSION.into(),
        library: None,
        providers: vec![format!(
            "{} [{}, {}] precision {precision}, timer {}",
            gpu.report.name,
            gpu.report.backend,
            gpu.report.device_type,
            match timer {
                GpuTimer::Device => "gpu timestamps",
                _ => "wall clock",
            }
        )],
    }
}

/// The wgpu release this backend is built against.
pub const WGPU_VERSION: &str = "30";

/// Greedy next token of each row of `logits` (`[rows, vocab]`, row-major): the index of the
/// first largest value, the same rule as [`crate::backend::ort::argmax_last`].
pub fn argmax_rows(logits: &[f32], vocab: usize) -> Vec<u32> {
    logits
        .chunks_exact(vocab)
        .map(|row| crate::backend::argmax(row) as u32)
        .collect()
}

/// What one [`Runner::run`] of a [`WgpuRunner`] does.
enum Work {
    /// One forward of `batch` x `seq` new tokens after `past` cached positions (a prefill or one
    /// decode step), on inputs uploaded once.
    Forward {
        batch: usize,
        seq: usize,
        past: usize,
    },
    /// A whole greedy generation.
    Generate(Generation),
}

/// State of a generate runner: the prompt, the step count, the time-to-first-token log and the
/// tokens of the last run.
struct Generation {
    batch: usize,
    /// Prompt ids `[batch, prompt_len]`, row-major.
    prompt: Vec<u32>,
    prompt_len: usize,
    new_tokens: usize,
    first_token: FirstTokenLog,
    /// `[batch, 1 + new_tokens]` greedy tokens of the last run (`None` before the first).
    tokens: Option<Array2<i64>>,
}

/// A [`GpuModel`] with the seeded inputs of a workload uploaded. One [`Runner::run`] is one
/// forward (prefill of `seq_len` tokens with the workload's [`Logits`], or one decode step after
/// `seq_len` cached positions), or, for [`Mode::Generate`], a whole greedy generation:
///
/// 1. write the seeded prompt ids and submit the prefill plan (last-position logits), copying
///    the `batch x vocab` logits back in the same submission;
/// 2. take the argmax on the host (the sampling step an application does), and log the time
///    from the start of the run to here in the [`FirstTokenLog`] (time to first token);
/// 3. `new_tokens` times: write the `batch` new ids, submit the one decode plan (the cache
///    length comes from the step uniform: `seq_len + i`), read back its logits, argmax.
///
/// The KV cache stays on the GPU across steps (no host round trip); each run overwrites the
/// positions it reads, so runs are independent. Prefill and decode runs are timed by GPU
/// timestamps where the timer resolves to `device`; a generation always returns `Ok(None)`,
/// so the protocol times it by the wall clock around the whole run, because device timestamps
/// of the compute passes could not cover the host-side readbacks and argmaxes between them.
pub struct WgpuRunner {
    model: GpuModel,
    work: Work,
    timestamps: Option<Timestamps>,
}

impl WgpuRunner {
    /// Opens the adapter, uploads the weights and the workload's inputs (the same seeded ids
    /// and cache as the ONNX Runtime backend: [`crate::backend::workload_inputs`]) and records
    /// the plans the runs submit. Generate runs push their time to first token to
    /// `first_token`; other modes leave it empty.
    pub fn new(
        gpu: Arc<Gpu>,
        arch: &Arch,
        weights: &Weights,
        workload: &Workload,
        opts: &WgpuOptions,
        first_token: FirstTokenLog,
    ) -> Result<WgpuRunner> {
        let timer = gpu.resolve_timer(opts.timer)?;
        let (ids, past) = crate::backend::workload_inputs(arch, workload);
        let batch = workload.batch;
        let Some(positions) = workload.positions() else {
            bail!("the workload's length overflows: lower --seq-len / --new-tokens");
        };
        let (seq, past_len, logits) = match workload.mode {
            Mode::Prefill => (workload.seq_len, 0, workload.logits),
            Mode::Decode => (1, workload.seq_len, Logits::Last),
            Mode::Generate => (workload.seq_len, 0, Logits::Last),
        };
        if workload.mode == Mode::Generate && workload.new_tokens == 0 {
            bail!("--new-tokens must be >= 1 for --mode generate");
        }
        let cap = Capacity {
            batch,
            tokens: seq,
            positions,
            logits,
        };
        let mut model = GpuModel::new(gpu.clone(), arch, weights, opts.precision, cap)?;
        model.upload(&ids, past.as_ref())?;
        model.plan(batch, seq, past_len)?;
        let (work, timestamps) = if workload.mode == Mode::Generate {
            // The one decode plan, checked against the last step's cache length.
            model.plan(batch, 1, positions - 1)?;
            let rows = model.logit_rows(batch, 1);
            model.readback(rows);
            let gen = Generation {
                batch,
                prompt: ids.iter().map(|&t| t as u32).collect(),
                prompt_len: workload.seq_len,
                new_tokens: workload.new_tokens,
                first_token,
                tokens: None,
            };
            (Work::Generate(gen), None)
        } else {
            let work = Work::Forward {
                batch,
                seq,
                past: past_len,
            };
            (
                work,
                (timer == GpuTimer::Device).then(|| Timestamps::new(&gpu)),
            )
        };
        Ok(WgpuRunner {
            model,
            work,
            timestamps,
        })
    }

    /// The model being run.
    pub fn model(&self) -> &GpuModel {
        &self.model
    }

    /// The greedy tokens of the last completed generate run, `[batch, 1 + new_tokens]`: the
    /// prefill's argmax, then each decode step's. `None` before the first run and for prefill
    /// and decode runners.
    pub fn last_tokens(&self) -> Option<&Array2<i64>> {
        match &self.work {
            Work::Generate(g) => g.tokens.as_ref(),
            Work::Forward { .. } => None,
        }
    }
}

/// One greedy generation on `model` (see [`WgpuRunner`]).
fn generate(model: &mut GpuModel, g: &mut Generation) -> Result<()> {
    let start = Instant::now();
    let vocab = model.arch.vocab_size;
    let mut tokens = g
        .tokens
        .take()
        .unwrap_or_else(|| Array2::zeros((g.batch, 1 + g.new_tokens)));
    model.write_ids(&g.prompt);
    let logits = model.submit_read_logits(g.batch, g.prompt_len, 0)?;
    let mut next = argmax_rows(&logits, vocab);
    g.first_token
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(start.elapsed());
    for (b, &t) in next.iter().enumerate() {
        tokens[[b, 0]] = t as i64;
    }
    for i in 0..g.new_tokens {
        model.write_ids(&next);
        let logits = model
            .submit_read_logits(g.batch, 1, g.prompt_len + i)
            .with_context(|| format!("decode step {} failed", i + 1))?;
        next = argmax_rows(&logits, vocab);
        for (b, &t) in next.iter().enumerate() {
            tokens[[b, i + 1]] = t as i64;
        }
    }
    g.tokens = Some(tokens);
    Ok(())
}

impl Runner for WgpuRunner {
    fn run(&mut self) -> Result<Option<Duration>> {
        match &mut self.work {
            Work::Forward { batch, seq, past } => {
                self.model
                    .submit(*batch, *seq, *past, self.timestamps.as_ref())
            }
            Work::Generate(g) => {
                generate(&mut self.model, g)?;
                Ok(None)
            }
        }
    }

    fn gpu_buffer_bytes(&self) -> Option<u64> {
        Some(self.model.gpu_bytes())
    }
}
