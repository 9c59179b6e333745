//! What a forward pass is encoded from and read back with: a kernel launch ([`Dispatch`]),
//! buffers with byte accounting ([`Alloc`]), the per-forward [`StepUniform`], one compute pass
//! per forward with optional GPU timestamps, and buffer readback.

use std::cell::Cell;

use anyhow::{bail, Result};
use wgpu::util::DeviceExt;

use crate::backend::wgpu::params::StepParams;
use crate::backend::wgpu::Gpu;

/// One kernel launch: pipeline, bindings and grid. A forward pass is a list of these, encoded
/// into one compute pass.
pub struct Dispatch {
    /// What it computes (for error messages and profiles).
    pub label: String,
    pub(super) pipeline: wgpu::ComputePipeline,
    pub(super) bind_group: wgpu::BindGroup,
    pub(super) groups: (u32, u32, u32),
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

/// The per-forward values every dispatch of a plan reads (`struct Step` in `common.wgsl`,
/// mirrored by [`StepParams`]): the number of positions already in the KV cache. One 16-byte
/// uniform buffer per model, written with [`StepUniform::set`] before each submission, so one
/// recorded plan of `batch` x `seq` new tokens serves every cache length (a generation's decode
/// steps share one plan).
pub struct StepUniform {
    pub(super) buf: wgpu::Buffer,
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
