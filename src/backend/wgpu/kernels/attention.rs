//! The attention launches: QKV split with RoPE and KV-cache append (`qkv.wgsl`), and causal
//! grouped-query attention over the cache (`attention.wgsl`).

use super::dispatch::{Dispatch, StepUniform};
use super::pipelines::{groups, Kernels};
use crate::backend::wgpu::params::{AttentionParams, QkvParams};
use crate::backend::wgpu::Gpu;

/// Largest head size the attention kernel holds in workgroup memory.
pub const MAX_HEAD_DIM: usize = 512;

/// Attention geometry of one layer for one forward.
#[derive(Clone, Copy, Debug)]
pub struct AttnDims {
    /// New tokens per sequence.
    pub seq: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Head size.
    pub head_dim: usize,
    /// Cache capacity (positions) per sequence and head.
    pub cap: usize,
}

impl Kernels {
    /// QKV split into heads, RoPE (when `rope`), KV-cache append at the cache length in `step`.
    #[allow(clippy::too_many_arguments)]
    pub fn qkv(
        &self,
        gpu: &Gpu,
        label: &str,
        rows: usize,
        dims: AttnDims,
        rope: bool,
        qkv: &wgpu::Buffer,
        rope_tab: &wgpu::Buffer,
        q: &wgpu::Buffer,
        kc: &wgpu::Buffer,
        vc: &wgpu::Buffer,
        step: &StepUniform,
    ) -> Dispatch {
        let cols = (dims.heads + 2 * dims.kv_heads) * dims.head_dim;
        let params = QkvParams {
            S: dims.seq as u32,
            H: dims.heads as u32,
            KV: dims.kv_heads as u32,
            hd: dims.head_dim as u32,
            cap: dims.cap as u32,
            rope: rope as u32,
            ..Default::default()
        };
        self.dispatch(
            gpu,
            label.into(),
            &self.qkv,
            &params,
            &[qkv, rope_tab, q, kc, vc, &step.buf],
            (groups(cols, 64), rows as u32, 1),
        )
    }

    /// Causal GQA attention for `batch` sequences after the cache length in `step`.
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &self,
        gpu: &Gpu,
        label: &str,
        batch: usize,
        dims: AttnDims,
        q: &wgpu::Buffer,
        kc: &wgpu::Buffer,
        vc: &wgpu::Buffer,
        out: &wgpu::Buffer,
        step: &StepUniform,
    ) -> Dispatch {
        let params = AttentionParams {
            S: dims.seq as u32,
            H: dims.heads as u32,
            KV: dims.kv_heads as u32,
            hd: dims.head_dim as u32,
            cap: dims.cap as u32,
            scale: (1.0 / (dims.head_dim as f64).sqrt()) as f32,
            ..Default::default()
        };
        self.dispatch(
            gpu,
            label.into(),
            &self.attention,
            &params,
            &[q, kc, vc, out, &step.buf],
            (dims.seq as u32, dims.heads as u32, batch as u32),
        )
    }
}
