//! Recording one forward of `batch` x `seq` new tokens as a list of dispatches (a plan), stage
//! by stage: the embedding gather, per layer the attention block (norm, fused QKV projection,
//! head split + RoPE + cache append, attention, output projection + residual) and the MLP block
//! (norm, then GPT-2's fc + GELU and proj + residual or Llama's gate|up, SwiGLU and down +
//! residual), then the final norm and the LM head over the positions [`Capacity::logits`]
//! selects.

use super::buffers::{Buffers, Capacity, Layer};
use crate::arch::parts::{Mlp, Naming, Norm, Parts, Positions};
use crate::arch::Arch;
use crate::backend::wgpu::kernels::{
    AttnDims, Dispatch, Epilogue, Kernels, MatmulKernel, MatmulShape, StepUniform,
};
use crate::backend::wgpu::Gpu;
use crate::workload::Logits;

/// What a plan binds: the model's kernels, buffers and step uniform.
pub(super) struct Recorder<'a> {
    pub(super) gpu: &'a Gpu,
    pub(super) kernels: &'a Kernels,
    pub(super) arch: &'a Arch,
    pub(super) cap: Capacity,
    pub(super) bufs: &'a Buffers,
    pub(super) step: &'a StepUniform,
}

/// A plan being recorded for one `(batch, seq)`.
struct Plan<'r, 'a> {
    r: &'r Recorder<'a>,
    batch: usize,
    seq: usize,
    /// `batch * seq`.
    rows: usize,
    /// The parts of the family the plan records (norm, positions, MLP, biases, weight layout).
    parts: Parts,
    out: Vec<Dispatch>,
}

impl<'a> Recorder<'a> {
    /// The dispatches of one forward of `batch` x `seq` new tokens, in launch order.
    pub(super) fn record(&self, batch: usize, seq: usize) -> Vec<Dispatch> {
        let mut p = Plan {
            r: self,
            batch,
            seq,
            rows: batch * seq,
            parts: self.arch.parts(),
            out: Vec::new(),
        };
        p.embedding();
        for (i, l) in self.bufs.layers.iter().enumerate() {
            p.attention_block(i, l);
            p.mlp_block(i, l);
        }
        p.head();
        p.out
    }
}

impl<'a> Plan<'_, 'a> {
    /// A matrix multiply with the kernel [`MatmulKernel::choose`] picks for its shape.
    #[allow(clippy::too_many_arguments)]
    fn matmul(
        &mut self,
        label: String,
        s: MatmulShape,
        epi: Epilogue,
        x: &wgpu::Buffer,
        w: &wgpu::Buffer,
        bias: &wgpu::Buffer,
        c: &wgpu::Buffer,
    ) {
        let kernel = MatmulKernel::choose(s.m, s.n, s.k, s.trans_b);
        let r = self.r;
        let d = r
            .kernels
            .matmul(r.gpu, &label, kernel, s, epi, x, w, bias, c);
        self.out.push(d);
    }

    /// Norm of every row of the residual stream `h` into `x`.
    fn norm(&mut self, label: &str, w: &wgpu::Buffer, b: &Option<wgpu::Buffer>) {
        let (r, bufs) = (self.r, self.r.bufs);
        let a = &bufs.acts;
        let (d, eps) = (r.arch.d_model, r.arch.norm_eps);
        let rms = self.parts.norm == Norm::RmsNorm;
        let b = bufs.opt(b);
        let n = r
            .kernels
            .norm(r.gpu, label, self.rows, d, rms, eps, &a.h, w, b, &a.x);
        self.out.push(n);
    }

    /// Token (+ position) embeddings into the residual stream, one gather per table chunk.
    fn embedding(&mut self) {
        let (r, bufs) = (self.r, self.r.bufs);
        let pos = bufs.pos.as_ref().unwrap_or(&bufs.dummy);
        for c in &bufs.tok {
            self.out.push(r.kernels.embed(
                r.gpu,
                self.rows,
                self.seq,
                r.arch.d_model,
                (c.v0, c.v1),
                self.parts.positions == Positions::Learned,
                &bufs.acts.ids,
                &c.buf,
                pos,
                &bufs.acts.h,
                r.step,
            ));
        }
    }

    /// Layer `i`'s attention: norm, fused QKV projection, head split (+ RoPE) and cache
    /// append, attention, output projection added to the residual stream.
    fn attention_block(&mut self, i: usize, l: &'a Layer) {
        let (r, bufs) = (self.r, self.r.bufs);
        let a = &bufs.acts;
        let (d, rows) = (r.arch.d_model, self.rows);
        // `nn.Linear` weights are stored `[out, in]` (B transposed); `Conv1D` ones `[in, out]`.
        let trans_b = self.parts.naming == Naming::Llama;
        let bias = self.parts.biases;
        self.norm(&format!("layer {i} attention norm"), &l.ln1_w, &l.ln1_b);
        let qkv_cols = (l.heads + 2 * l.kv_heads) * l.head_dim;
        self.matmul(
            format!("layer {i} qkv"),
            MatmulShape::dense(rows, qkv_cols, d, trans_b),
            Epilogue {
                bias,
                ..Default::default()
            },
            &a.x,
            &l.qkv_w,
            bufs.opt(&l.qkv_b),
            &a.qkv,
        );
        let dims = AttnDims {
            seq: self.seq,
            heads: l.heads,
            kv_heads: l.kv_heads,
            head_dim: l.head_dim,
            cap: r.cap.positions,
        };
        self.out.push(r.kernels.qkv(
            r.gpu,
            &format!("layer {i} split heads"),
            rows,
            dims,
            self.parts.positions == Positions::Rope,
            &a.qkv,
            bufs.rope.get(&l.head_dim).unwrap_or(&bufs.dummy),
            &a.q,
            &l.k_cache,
            &l.v_cache,
            r.step,
        ));
        self.out.push(r.kernels.attention(
            r.gpu,
            &format!("layer {i} attention"),
            self.batch,
            dims,
            &a.q,
            &l.k_cache,
            &l.v_cache,
            &a.attn,
            r.step,
        ));
        self.matmul(
            format!("layer {i} attention output"),
            MatmulShape::dense(rows, d, l.heads * l.head_dim, trans_b),
            Epilogue {
                bias,
                residual: true,
                ..Default::default()
            },
            &a.attn,
            &l.o_w,
            bufs.opt(&l.o_b),
            &a.h,
        );
    }

    /// Layer `i`'s MLP: norm, then the family's projections, the last one added to the
    /// residual stream.
    fn mlp_block(&mut self, i: usize, l: &'a Layer) {
        self.norm(&format!("layer {i} MLP norm"), &l.ln2_w, &l.ln2_b);
        if self.parts.mlp == Mlp::SwiGlu {
            self.swiglu_mlp(i, l);
        } else {
            self.gelu_mlp(i, l);
        }
    }

    /// Llama: fused gate|up projection, SwiGLU, down projection + residual.
    fn swiglu_mlp(&mut self, i: usize, l: &'a Layer) {
        let (r, bufs) = (self.r, self.r.bufs);
        let a = &bufs.acts;
        let (d, rows) = (r.arch.d_model, self.rows);
        self.matmul(
            format!("layer {i} gate|up"),
            MatmulShape::dense(rows, 2 * l.inner, d, true),
            Epilogue::default(),
            &a.x,
            &l.up_w,
            &bufs.dummy,
            &a.mid,
        );
        self.out.push(r.kernels.swiglu(
            r.gpu,
            &format!("layer {i} swiglu"),
            rows,
            l.inner,
            &a.mid,
            &a.act,
        ));
        self.matmul(
            format!("layer {i} down"),
            MatmulShape::dense(rows, d, l.inner, true),
            Epilogue {
                residual: true,
                ..Default::default()
            },
            &a.act,
            &l.down_w,
            &bufs.dummy,
            &a.h,
        );
    }

    /// GPT-2: fc + bias + GELU fused, proj + bias + residual fused.
    fn gelu_mlp(&mut self, i: usize, l: &'a Layer) {
        let bufs = self.r.bufs;
        let a = &bufs.acts;
        let (d, rows) = (self.r.arch.d_model, self.rows);
        self.matmul(
            format!("layer {i} fc + gelu"),
            MatmulShape::dense(rows, l.inner, d, false),
            Epilogue {
                bias: true,
                gelu: true,
                residual: false,
            },
            &a.x,
            &l.up_w,
            bufs.opt(&l.up_b),
            &a.mid,
        );
        self.matmul(
            format!("layer {i} proj"),
            MatmulShape::dense(rows, d, l.inner, false),
            Epilogue {
                bias: true,
                residual: true,
                ..Default::default()
            },
            &a.mid,
            &l.down_w,
            bufs.opt(&l.down_b),
            &a.h,
        );
    }

    /// The final norm and the LM head (one product per table chunk). Last-position logits: the
    /// final norm reads row `b * seq + seq - 1` of the residual stream and writes row `b` of
    /// `x`, and the LM head multiplies those `batch` rows only.
    fn head(&mut self) {
        let (r, bufs) = (self.r, self.r.bufs);
        let a = &bufs.acts;
        let (arch, seq) = (r.arch, self.seq);
        let (head_rows, in_rows, norm_label) = match r.cap.logits {
            Logits::All => (self.rows, (1, 0), "final norm"),
            Logits::Last => (self.batch, (seq, seq - 1), "final norm (last position)"),
        };
        self.out.push(r.kernels.norm_gather(
            r.gpu,
            norm_label,
            head_rows,
            in_rows,
            arch.d_model,
            self.parts.norm == Norm::RmsNorm,
            arch.norm_eps,
            &a.h,
            &bufs.lnf_w,
            bufs.opt(&bufs.lnf_b),
            &a.x,
        ));
        for c in bufs.head.as_ref().unwrap_or(&bufs.tok) {
            self.matmul(
                format!("LM head rows {}..{}", c.v0, c.v1),
                MatmulShape {
                    m: head_rows,
                    n: c.v1 - c.v0,
                    k: arch.d_model,
                    trans_b: true,
                    ldc: arch.vocab_size,
                    c_off: c.v0,
                },
                Epilogue::default(),
                &a.x,
                &c.buf,
                &bufs.dummy,
                &a.logits,
            );
        }
    }
}
