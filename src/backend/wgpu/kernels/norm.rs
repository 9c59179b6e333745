//! LayerNorm / RMSNorm launches (`norm.wgsl`): row-wise, or gathering each sequence's last
//! position before a last-position LM head.

use super::dispatch::Dispatch;
use super::pipelines::Kernels;
use crate::backend::wgpu::params::NormParams;
use crate::backend::wgpu::Gpu;

impl Kernels {
    /// LayerNorm (`rms == false`, with bias `b`) or RMSNorm over rows of `d` elements.
    #[allow(clippy::too_many_arguments)]
    pub fn norm(
        &self,
        gpu: &Gpu,
        label: &str,
        rows: usize,
        d: usize,
        rms: bool,
        eps: f64,
        x: &wgpu::Buffer,
        w: &wgpu::Buffer,
        b: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Dispatch {
        self.norm_gather(gpu, label, rows, (1, 0), d, rms, eps, x, w, b, y)
    }

    /// [`Kernels::norm`] of `rows` rows gathered from `x`: output row `r` is the norm of input
    /// row `r * in_rows.0 + in_rows.1`, written compactly to row `r` of `y`. With
    /// `in_rows = (seq, seq - 1)` it normalizes the last position of each of `rows` sequences
    /// (the final norm before a last-position LM head); `(1, 0)` is the plain row-wise norm.
    #[allow(clippy::too_many_arguments)]
    pub fn norm_gather(
        &self,
        gpu: &Gpu,
        label: &str,
        rows: usize,
        in_rows: (usize, usize),
        d: usize,
        rms: bool,
        eps: f64,
        x: &wgpu::Buffer,
        w: &wgpu::Buffer,
        b: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Dispatch {
        let params = NormParams {
            D: d as u32,
            rms: rms as u32,
            eps: eps as f32,
            in_stride: in_rows.0 as u32,
            in_off: in_rows.1 as u32,
            ..Default::default()
        };
        self.dispatch(
            gpu,
            label.into(),
            &self.norm,
            &params,
            &[x, w, b, y],
            (rows as u32, 1, 1),
        )
    }
}
