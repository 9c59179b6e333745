//! Every WGSL kernel compiled for one device and one storage precision ([`Kernels`]), the
//! shader assembly (`header + common.wgsl + kernel.wgsl`), storage encoding, and the uniform
//! and bind group every launch is made of.

use anyhow::{bail, Result};
use wgpu::util::DeviceExt;

use super::dispatch::Dispatch;
use crate::backend::wgpu::{Gpu, Precision};

const COMMON: &str = include_str!("../shaders/common.wgsl");
const REDUCE: &str = include_str!("../shaders/reduce.wgsl");
const MATMUL_COMMON: &str = include_str!("../shaders/matmul_common.wgsl");
const MATMUL_TILED: &str = include_str!("../shaders/matmul_tiled.wgsl");
const MATMUL_NAIVE: &str = include_str!("../shaders/matmul_naive.wgsl");
const NORM: &str = include_str!("../shaders/norm.wgsl");
const EMBED: &str = include_str!("../shaders/embed.wgsl");
const QKV: &str = include_str!("../shaders/qkv.wgsl");
const ATTENTION: &str = include_str!("../shaders/attention.wgsl");
const SWIGLU: &str = include_str!("../shaders/swiglu.wgsl");

/// All pipelines of the backend for one device and precision.
pub struct Kernels {
    /// Storage precision the kernels were compiled for (`F32` or `F16`).
    pub precision: Precision,
    /// `[normal B, transposed B]`.
    pub(super) tiled: [wgpu::ComputePipeline; 2],
    pub(super) naive: [wgpu::ComputePipeline; 2],
    pub(super) norm: wgpu::ComputePipeline,
    pub(super) embed: wgpu::ComputePipeline,
    pub(super) qkv: wgpu::ComputePipeline,
    pub(super) attention: wgpu::ComputePipeline,
    pub(super) swiglu: wgpu::ComputePipeline,
}

fn header(precision: Precision, trans_b: Option<bool>) -> String {
    let mut h = match precision {
        Precision::F16 => "enable f16;\nalias S = f16;\nalias S4 = vec4<f16>;\n".to_string(),
        _ => "alias S = f32;\nalias S4 = vec4<f32>;\n".to_string(),
    };
    if let Some(t) = trans_b {
        h.push_str(&format!("const TRANS_B: bool = {t};\n"));
    }
    h
}

impl Kernels {
    /// Compiles every kernel for `precision` (`F32` or `F16`, already resolved). Shader
    /// compilation or validation errors are returned, not panicked.
    pub fn new(gpu: &Gpu, precision: Precision) -> Result<Kernels> {
        assert!(precision != Precision::Auto, "resolve the precision first");
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let make = |name: &str, parts: &[&str], trans_b: Option<bool>| {
            let src = format!("{}{}{}", header(precision, trans_b), COMMON, parts.concat());
            let module = gpu
                .device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(name),
                    source: wgpu::ShaderSource::Wgsl(src.into()),
                });
            gpu.device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(name),
                    layout: None,
                    module: &module,
                    entry_point: Some("main"),
                    compilation_options: Default::default(),
                    cache: None,
                })
        };
        let k = Kernels {
            precision,
            tiled: [
                make("matmul_tiled", &[MATMUL_COMMON, MATMUL_TILED], Some(false)),
                make(
                    "matmul_tiled_tb",
                    &[MATMUL_COMMON, MATMUL_TILED],
                    Some(true),
                ),
            ],
            naive: [
                make("matmul_naive", &[MATMUL_COMMON, MATMUL_NAIVE], Some(false)),
                make(
                    "matmul_naive_tb",
                    &[MATMUL_COMMON, MATMUL_NAIVE],
                    Some(true),
                ),
            ],
            norm: make("norm", &[NORM, REDUCE], None),
            embed: make("embed", &[EMBED], None),
            qkv: make("qkv", &[QKV], None),
            attention: make("attention", &[ATTENTION, REDUCE], None),
            swiglu: make("swiglu", &[SWIGLU], None),
        };
        if let Some(e) = pollster::block_on(scope.pop()) {
            bail!(
                "the WGSL kernels do not compile on adapter {} ({precision}): {e}",
                gpu.report.summary()
            );
        }
        Ok(k)
    }

    /// Bytes per stored element.
    pub fn elem_bytes(&self) -> usize {
        match self.precision {
            Precision::F16 => 2,
            _ => 4,
        }
    }

    /// Converts f32 values to the storage type's bytes.
    pub fn encode(&self, data: &[f32]) -> Vec<u8> {
        match self.precision {
            Precision::F16 => data
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
            _ => bytemuck::cast_slice(data).to_vec(),
        }
    }

    /// Converts storage-type bytes back to f32.
    pub fn decode(&self, bytes: &[u8]) -> Vec<f32> {
        match self.precision {
            Precision::F16 => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            _ => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        }
    }
}

/// Workgroups to cover `n` items, `per` per workgroup.
pub(super) fn groups(n: usize, per: usize) -> u32 {
    n.div_ceil(per) as u32
}

impl Kernels {
    /// A uniform buffer holding `params`, a kernel's `struct Params` ([`crate::backend::wgpu::params`]).
    pub(super) fn uniform(&self, gpu: &Gpu, params: &impl bytemuck::Pod) -> wgpu::Buffer {
        gpu.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: bytemuck::bytes_of(params),
                usage: wgpu::BufferUsages::UNIFORM,
            })
    }

    pub(super) fn dispatch(
        &self,
        gpu: &Gpu,
        label: String,
        pipeline: &wgpu::ComputePipeline,
        params: &impl bytemuck::Pod,
        buffers: &[&wgpu::Buffer],
        groups: (u32, u32, u32),
    ) -> Dispatch {
        let uniform = self.uniform(gpu, params);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: uniform.as_entire_binding(),
        }];
        for (i, b) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: b.as_entire_binding(),
            });
        }
        let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&label),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        Dispatch {
            label,
            pipeline: pipeline.clone(),
            bind_group,
            groups,
        }
    }
}
