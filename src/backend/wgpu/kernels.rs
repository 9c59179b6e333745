//! The WGSL kernels (`shaders/*.wgsl`) compiled for one device and one storage precision, and
//! the small helpers that bind them: uniform parameter blocks (the [`super::params`] structs),
//! GPU buffers with byte accounting, the [`Dispatch`] list a forward pass is encoded from, and
//! the per-forward [`StepUniform`] (the KV-cache length) that lets one recorded list serve every
//! cache length.
//!
//! Every shader is assembled as `header + common.wgsl + kernel.wgsl` (+ `matmul_common.wgsl`
//! for the matrix multiplies, `reduce.wgsl` for kernels with workgroup reductions), where the
//! header selects the storage type (`alias S = f32` or `enable f16; alias S = f16`) and, for the
//! matrix multiplies, `const TRANS_B`.

use std::cell::Cell;

use anyhow::{bail, Result};
use wgpu::util::DeviceExt;

use super::params::{
    AttentionParams, EmbedParams, MatmulParams, NormParams, QkvParams, StepParams, SwigluParams,
};
use super::{Gpu, Precision};

const COMMON: &str = include_str!("shaders/common.wgsl");
const REDUCE: &str = include_str!("shaders/reduce.wgsl");
const MATMUL_COMMON: &str = include_str!("shaders/matmul_common.wgsl");
const MATMUL_TILED: &str = include_str!("shaders/matmul_tiled.wgsl");
const MATMUL_NAIVE: &str = include_str!("shaders/matmul_naive.wgsl");
const NORM: &str = include_str!("shaders/norm.wgsl");
const EMBED: &str = include_str!("shaders/embed.wgsl");
const QKV: &str = include_str!("shaders/qkv.wgsl");
const ATTENTION: &str = include_str!("shaders/attention.wgsl");
const SWIGLU: &str = include_str!("shaders/swiglu.wgsl");

/// Output tile edge of the tiled matmul (`matmul_tiled.wgsl`): one workgroup per 64x64 tile.
pub const TILE: u32 = 64;
/// Largest head size the attention kernel holds in workgroup memory.
pub const MAX_HEAD_DIM: usize = 512;

/// Epilogue of a matrix multiply (bit flags shared with `common.wgsl`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Epilogue {
    /// Add `bias[n]`.
    pub bias: bool,
    /// Apply GPT-2's `gelu_new` after the bias.
    pub gelu: bool,
    /// Accumulate into C (the residual stream) instead of overwriting it.
    pub residual: bool,
}

impl Epilogue {
    fn flags(self) -> u32 {
        (self.bias as u32) | (self.gelu as u32) << 1 | (self.residual as u32) << 2
    }
}

/// Which matrix-multiply kernel runs a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulKernel {
    /// 64x64 tiles in workgroup memory, vec4 loads (`matmul_tiled.wgsl`).
    Tiled,
    /// One invocation per output, scalar loads (`matmul_naive.wgsl`).
    Naive,
}

impl MatmulKernel {
    /// The kernel the forward pass uses for an `[m, k] x [k, n]` product: tiled unless the
    /// product is skinny (m < 16, decode) or the vec4 loads do not divide the shape.
    pub fn choose(m: usize, n: usize, k: usize, trans_b: bool) -> MatmulKernel {
        if Self::tiled_fits(n, k, trans_b) && m >= 16 {
            MatmulKernel::Tiled
        } else {
            MatmulKernel::Naive
        }
    }

    /// Whether the tiled kernel's vec4 loads can take this shape.
    pub fn tiled_fits(n: usize, k: usize, trans_b: bool) -> bool {
        k.is_multiple_of(4) && (trans_b || n.is_multiple_of(4))
    }
}

/// All pipelines of the backend for one device and precision.
pub struct Kernels {
    /// Storage precision the kernels were compiled for (`F32` or `F16`).
    pub precision: Precision,
    /// `[normal B, transposed B]`.
    tiled: [wgpu::ComputePipeline; 2],
    naive: [wgpu::ComputePipeline; 2],
    norm: wgpu::ComputePipeline,
    embed: wgpu::ComputePipeline,
    qkv: wgpu::ComputePipeline,
    attention: wgpu::ComputePipeline,
    swiglu: wgpu::ComputePipeline,
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

/// One kernel launch: pipeline, bindings and grid. A forward pass is a list of these, encoded
/// into one compute pass.
pub struct Dispatch {
    /// What it computes (for error messages and profiles).
    pub label: String,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    groups: (u32, u32, u32),
}

impl Dispatch {
    /// Records the launch into a compute pass.
    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.groups.0, self.groups.1, self.groups.2);
    }
}

/// Creates buffers on one device, checks them against the adapter's limits with errors that
/// name the tensor and the fix, and counts the bytes allocated (the backend's GPU memory).
pub struct Alloc<'g> {
    gpu: &'g Gpu,
    bytes: Cell<u64>,
}

/// Usage of every storage buffer: bindable, writable from the host, readable back.
const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_DST)
    .union(wgpu::BufferUsages::COPY_SRC);

impl<'g> Alloc<'g> {
    /// An allocator on `gpu` with nothing counted yet.
    pub fn new(gpu: &'g Gpu) -> Alloc<'g> {
        Alloc {
            gpu,
            bytes: Cell::new(0),
        }
    }

    /// Bytes allocated so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.get()
    }

    /// The largest storage binding the adapter allows (bytes, a multiple of 16).
    pub fn max_binding(&self) -> u64 {
        self.gpu
            .limits
            .max_storage_buffer_binding_size
            .min(self.gpu.limits.max_buffer_size)
            & !15
    }

    fn check(&self, what: &str, size: u64) -> Result<()> {
        let max = self.max_binding();
        if size > max {
            bail!(
                "{what} needs {:.1} MiB in one GPU buffer but adapter {} binds at most {:.1} MiB \
                 (max_storage_buffer_binding_size); lower --batch or --seq-len, use \
                 --precision f16 where offered, or pick a smaller model or another adapter",
                size as f64 / 1048576.0,
                self.gpu.report.summary(),
                max as f64 / 1048576.0
            );
        }
        Ok(())
    }

    /// A zeroed storage buffer of at least `size` bytes (rounded up to 16).
    pub fn zeroed(&self, what: &str, size: u64) -> Result<wgpu::Buffer> {
        let size = size.max(16).next_multiple_of(16);
        self.check(what, size)?;
        self.bytes.set(self.bytes.get() + size);
        Ok(self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(what),
            size,
            usage: STORAGE,
            mapped_at_creation: false,
        }))
    }

    /// A storage buffer holding `bytes` (padded to 16).
    pub fn init(&self, what: &str, bytes: &[u8]) -> Result<wgpu::Buffer> {
        let size = (bytes.len() as u64).max(16).next_multiple_of(16);
        self.check(what, size)?;
        self.bytes.set(self.bytes.get() + size);
        let mut padded;
        let contents = if size as usize == bytes.len() {
            bytes
        } else {
            padded = bytes.to_vec();
            padded.resize(size as usize, 0);
            &padded[..]
        };
        Ok(self
            .gpu
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(what),
                contents,
                usage: STORAGE,
            }))
    }
}

/// Parameters of one matrix multiply `C[m, c_off + n] (+)= epi(A[m, k] B)`.
#[derive(Clone, Copy, Debug)]
pub struct MatmulShape {
    /// Rows of A and C.
    pub m: usize,
    /// Columns of the product (rows of B when `trans_b`).
    pub n: usize,
    /// Inner dimension.
    pub k: usize,
    /// B is `[n, k]` (Linear weights, LM head) rather than `[k, n]` (Conv1D weights).
    pub trans_b: bool,
    /// Row stride of C in elements (>= `c_off + n`).
    pub ldc: usize,
    /// First column of C written.
    pub c_off: usize,
}

impl MatmulShape {
    /// A plain `[m, k] x [k, n]` (or `x [n, k]^T`) product into a dense `[m, n]` C.
    pub fn dense(m: usize, n: usize, k: usize, trans_b: bool) -> MatmulShape {
        MatmulShape {
            m,
            n,
            k,
            trans_b,
            ldc: n,
            c_off: 0,
        }
    }
}

fn groups(n: usize, per: usize) -> u32 {
    n.div_ceil(per) as u32
}

impl Kernels {
    /// A uniform buffer holding `params`, a kernel's `struct Params` ([`super::params`]).
    fn uniform(&self, gpu: &Gpu, params: &impl bytemuck::Pod) -> wgpu::Buffer {
        gpu.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: bytemuck::bytes_of(params),
                usage: wgpu::BufferUsages::UNIFORM,
            })
    }

    fn dispatch(
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

    /// A matrix multiply with `kernel` (the caller checked [`MatmulKernel::tiled_fits`] for
    /// `Tiled`). `bias` is bound always; it is read only when `epi.bias`.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(
        &self,
        gpu: &Gpu,
        label: &str,
        kernel: MatmulKernel,
        s: MatmulShape,
        epi: Epilogue,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        bias: &wgpu::Buffer,
        c: &wgpu::Buffer,
    ) -> Dispatch {
        let params = MatmulParams {
            M: s.m as u32,
            N: s.n as u32,
            K: s.k as u32,
            flags: epi.flags(),
            ldc: s.ldc as u32,
            c_off: s.c_off as u32,
            ..Default::default()
        };
        let tb = s.trans_b as usize;
        let (pipeline, grid) = match kernel {
            MatmulKernel::Tiled => (
                &self.tiled[tb],
                (groups(s.n, TILE as usize), groups(s.m, TILE as usize), 1),
            ),
            MatmulKernel::Naive => (&self.naive[tb], (groups(s.n, 64), s.m as u32, 1)),
        };
        self.dispatch(
            gpu,
            format!("{label} ({kernel:?} matmul {}x{}x{})", s.m, s.n, s.k),
            pipeline,
            &params,
            &[a, b, bias, c],
            grid,
        )
    }

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

/// The per-forward values every dispatch of a plan reads (`struct Step` in `common.wgsl`,
/// mirrored by [`StepParams`]): the number of positions already in the KV cache. One 16-byte
/// uniform buffer per model, written with [`StepUniform::set`] before each submission, so one
/// recorded plan of `batch` x `seq` new tokens serves every cache length (a generation's decode
/// steps share one plan).
pub struct StepUniform {
    buf: wgpu::Buffer,
    past: Cell<Option<usize>>,
}

impl StepUniform {
    /// A zeroed step uniform on `gpu`.
    pub fn new(gpu: &Gpu) -> StepUniform {
        StepUniform {
            buf: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("forward step (past length)"),
                size: std::mem::size_of::<StepParams>() as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            past: Cell::new(None),
        }
    }

    /// Queues a write of `past` (ordered before the next submission); skipped when the buffer
    /// already holds it.
    pub fn set(&self, gpu: &Gpu, past: usize) {
        if self.past.get() != Some(past) {
            let step = StepParams {
                past: past as u32,
                ..Default::default()
            };
            gpu.queue
                .write_buffer(&self.buf, 0, bytemuck::bytes_of(&step));
            self.past.set(Some(past));
        }
    }
}

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

/// Encodes `dispatches` as one compute pass in one command buffer, with GPU timestamps at the
/// start and end of the pass when `timestamps` is given (query set of 2, resolve buffer,
/// readback buffer).
pub fn encode_pass(
    gpu: &Gpu,
    dispatches: &[Dispatch],
    timestamps: Option<&Timestamps>,
) -> wgpu::CommandBuffer {
    let mut enc = gpu
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("forward"),
        });
    {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("forward"),
            timestamp_writes: timestamps.map(|t| wgpu::ComputePassTimestampWrites {
                query_set: &t.set,
                beginning_of_pass_write_index: Some(0),
                end_of_pass_write_index: Some(1),
            }),
        });
        for d in dispatches {
            d.encode(&mut pass);
        }
    }
    if let Some(t) = timestamps {
        enc.resolve_query_set(&t.set, 0..2, &t.resolve, 0);
        enc.copy_buffer_to_buffer(&t.resolve, 0, &t.readback, 0, 16);
    }
    enc.finish()
}

/// A 2-entry timestamp query set with its resolve and readback buffers.
pub struct Timestamps {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    period_ns: f64,
}

impl Timestamps {
    /// Creates the query set (the device must have `TIMESTAMP_QUERY`).
    pub fn new(gpu: &Gpu) -> Timestamps {
        Timestamps {
            set: gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("forward timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            }),
            resolve: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamp resolve"),
                size: 16,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            readback: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamp readback"),
                size: 16,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            period_ns: gpu.queue.get_timestamp_period() as f64,
        }
    }

    /// Reads the two timestamps of the last completed pass (after the caller waited for it)
    /// and returns the pass's device duration.
    pub fn read(&self, gpu: &Gpu) -> Result<std::time::Duration> {
        let bytes = read_buffer(gpu, &self.readback, 16)?;
        let t0 = u64::from_le_bytes(bytes[0..8].try_into().expect("8 bytes"));
        let t1 = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
        if t1 < t0 {
            bail!("GPU timestamps went backwards ({t0} then {t1}); use --gpu-timer wall");
        }
        let ns = (t1 - t0) as f64 * self.period_ns;
        Ok(std::time::Duration::from_nanos(ns.round() as u64))
    }
}

/// Maps a `MAP_READ` buffer, copies its first `len` bytes out and unmaps it.
pub fn read_buffer(gpu: &Gpu, buffer: &wgpu::Buffer, len: u64) -> Result<Vec<u8>> {
    let slice = buffer.slice(0..len);
    let (tx, rx) = std::sync::mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    gpu.wait()?;
    rx.recv()
        .map_err(|_| anyhow::anyhow!("GPU buffer mapping was dropped"))?
        .map_err(|e| anyhow::anyhow!("cannot map a GPU buffer for reading: {e}"))?;
    let out = slice
        .get_mapped_range()
        .map_err(|e| anyhow::anyhow!("cannot read a mapped GPU buffer: {e}"))?
        .to_vec();
    buffer.unmap();
    Ok(out)
}

/// Copies `len` bytes of a storage buffer to a fresh staging buffer and reads them back.
pub fn download(gpu: &Gpu, buffer: &wgpu::Buffer, len: u64) -> Result<Vec<u8>> {
    let padded = len.next_multiple_of(4);
    let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size: padded.max(4),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = gpu
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("readback"),
        });
    enc.copy_buffer_to_buffer(buffer, 0, &staging, 0, padded);
    gpu.queue.submit([enc.finish()]);
    let mut bytes = read_buffer(gpu, &staging, padded)?;
    bytes.truncate(len as usize);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::wgpu::gpu_for_tests;

    fn lcg(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    }

    fn gelu(x: f64) -> f64 {
        0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
    }

    /// Runs one product on the GPU and returns C.
    #[allow(clippy::too_many_arguments)]
    fn run(
        gpu: &Gpu,
        k: &Kernels,
        kernel: MatmulKernel,
        s: MatmulShape,
        epi: Epilogue,
        a: &[f32],
        b: &[f32],
        bias: &[f32],
        c0: &[f32],
    ) -> Vec<f32> {
        let alloc = Alloc::new(gpu);
        let ab = alloc.init("a", &k.encode(a)).unwrap();
        let bb = alloc.init("b", &k.encode(b)).unwrap();
        let biasb = alloc.init("bias", &k.encode(bias)).unwrap();
        let cb = alloc.init("c", &k.encode(c0)).unwrap();
        let d = k.matmul(gpu, "test", kernel, s, epi, &ab, &bb, &biasb, &cb);
        gpu.queue.submit([encode_pass(gpu, &[d], None)]);
        gpu.wait().unwrap();
        let eb = k.elem_bytes() as u64;
        k.decode(&download(gpu, &cb, c0.len() as u64 * eb).unwrap())
    }

    /// Tiled and naive kernels against an f64 CPU product, both B layouts, partial tiles, a
    /// column offset into a wider C, and every epilogue.
    #[test]
    fn matmul_kernels_match_a_cpu_product() {
        let Some(gpu) = gpu_for_tests() else { return };
        let k = Kernels::new(&gpu, Precision::F32).unwrap();
        let (m, n, kk) = (70, 52, 44);
        let (ldc, c_off) = (60, 5);
        let a = lcg(m * kk, 1);
        let b = lcg(kk * n, 2);
        let bias = lcg(n, 3);
        let c0 = lcg(m * ldc, 4);
        for trans_b in [false, true] {
            for epi in [
                Epilogue::default(),
                Epilogue {
                    bias: true,
                    gelu: true,
                    residual: false,
                },
                Epilogue {
                    bias: true,
                    gelu: false,
                    residual: true,
                },
            ] {
                let mut want = c0.clone();
                for i in 0..m {
                    for j in 0..n {
                        let mut v: f64 = (0..kk)
                            .map(|t| {
                                let bv = if trans_b { b[j * kk + t] } else { b[t * n + j] };
                                a[i * kk + t] as f64 * bv as f64
                            })
                            .sum();
                        if epi.bias {
                            v += bias[j] as f64;
                        }
                        if epi.gelu {
                            v = gelu(v);
                        }
                        let idx = i * ldc + c_off + j;
                        if epi.residual {
                            v += c0[idx] as f64;
                        }
                        want[idx] = v as f32;
                    }
                }
                let s = MatmulShape {
                    m,
                    n,
                    k: kk,
                    trans_b,
                    ldc,
                    c_off,
                };
                for kernel in [MatmulKernel::Tiled, MatmulKernel::Naive] {
                    let got = run(&gpu, &k, kernel, s, epi, &a, &b, &bias, &c0);
                    for (idx, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (g - w).abs() <= 1e-5 + 1e-5 * w.abs(),
                            "{kernel:?} trans_b {trans_b} {epi:?}: C[{idx}] = {g}, want {w}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn kernel_choice_follows_shape() {
        assert_eq!(
            MatmulKernel::choose(192, 768, 768, false),
            MatmulKernel::Tiled
        );
        assert_eq!(
            MatmulKernel::choose(1, 768, 768, false),
            MatmulKernel::Naive
        );
        // Odd N only works for the transposed layout (vec4 loads run along K).
        assert_eq!(
            MatmulKernel::choose(64, 50257, 768, true),
            MatmulKernel::Tiled
        );
        assert_eq!(
            MatmulKernel::choose(64, 50257, 768, false),
            MatmulKernel::Naive
        );
        assert_eq!(MatmulKernel::choose(64, 64, 30, true), MatmulKernel::Naive);
    }

    #[test]
    fn f16_round_trips_through_encode_and_decode() {
        let Some(gpu) = gpu_for_tests() else { return };
        if !gpu.has_f16 {
            return;
        }
        let k = Kernels::new(&gpu, Precision::F16).unwrap();
        let v = [1.0f32, -0.5, 0.1, 65504.0];
        let back = k.decode(&k.encode(&v));
        assert_eq!(back[..2], [1.0, -0.5]);
        assert!((back[2] - 0.1).abs() < 1e-4 && back[3] == 65504.0);
    }
}
