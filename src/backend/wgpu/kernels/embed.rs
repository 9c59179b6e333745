//! The embedding gather launch (`embed.wgsl`): token (+ position) embeddings of a table chunk.

use super::dispatch::{Dispatch, StepUniform};
use super::pipelines::{groups, Kernels};
use crate::backend::wgpu::params::EmbedParams;
use crate::backend::wgpu::Gpu;

impl Kernels {
    /// Embedding gather for token ids in `[v0, v1)` from a table chunk (+ positions, offset by
    /// the cache length in `step`, the model's [`StepUniform`]).
    #[allow(clippy::too_many_arguments)]
    pub fn embed(
        &self,
        gpu: &Gpu,
        rows: usize,
        seq: usize,
        d: usize,
        vocab_range: (usize, usize),
        with_positions: bool,
        ids: &wgpu::Buffer,
        table: &wgpu::Buffer,
        pos_table: &wgpu::Buffer,
        h: &wgpu::Buffer,
        step: &StepUniform,
    ) -> Dispatch {
        let params = EmbedParams {
            D: d as u32,
            S: seq as u32,
            v0: vocab_range.0 as u32,
            v1: vocab_range.1 as u32,
            has_pos: with_positions as u32,
            ..Default::default()
        };
        self.dispatch(
            gpu,
            format!("embed rows {}..{}", vocab_range.0, vocab_range.1),
            &self.embed,
            &params,
            &[ids, table, pos_table, h, &step.buf],
            (groups(d, 64), rows as u32, 1),
        )
    }
}
