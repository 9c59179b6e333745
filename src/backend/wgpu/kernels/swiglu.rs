//! The SwiGLU launch (`swiglu.wgsl`) over the fused gate|up projection.

use super::dispatch::Dispatch;
use super::pipelines::{groups, Kernels};
use crate::backend::wgpu::params::SwigluParams;
use crate::backend::wgpu::Gpu;

impl Kernels {
    /// SwiGLU over the fused gate|up projection.
    pub fn swiglu(
        &self,
        gpu: &Gpu,
        label: &str,
        rows: usize,
        inner: usize,
        gu: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> Dispatch {
        self.dispatch(
            gpu,
            label.into(),
            &self.swiglu,
            &SwigluParams {
                I: inner as u32,
                ..Default::default()
            },
            &[gu, out],
            (groups(inner, 64), rows as u32, 1),
        )
    }
}
