//! wgpu backend: the candidates' forward pass in our own WGSL compute shaders, for GPUs ONNX
//! Runtime cannot use (VideoCore and Mali through Vulkan, Jetson through Vulkan, Apple, AMD and
//! Intel GPUs on hosts, and Mesa's llvmpipe as a software device in CI).
//!
//! - [`Gpu`]: one adapter, its device and queue, with the features this backend uses
//!   (`SHADER_F16`, `TIMESTAMP_QUERY`) enabled where offered and the adapter's own limits.
//! - [`kernels`]: the WGSL kernels (`shaders/*.wgsl`, beside this file) and their pipelines:
//!   tiled and naive matrix multiply, LayerNorm/RMSNorm, embedding, QKV split + RoPE + cache
//!   append, causal GQA attention with an online softmax, SwiGLU.
//! - [`params`]: the kernels' uniform parameter blocks, one `#[repr(C)]` struct per shader
//!   `struct Params`.
//! - [`model`]: a decoder ([`crate::arch::Arch`]) uploaded with the same weights as its ONNX
//!   graph, encoded as one compute pass per forward (one submission), prefill (last-position or
//!   all-position logits) and decode with a KV cache, and [`model::WgpuRunner`], the
//!   [`super::Runner`] the measurement protocol times (a prefill, a decode step, or a whole
//!   greedy generation).
//!
//! Timing follows the same protocol as ONNX Runtime ([`crate::measure`]); each prefill or decode
//! run is timed by GPU timestamp queries at the start and end of the compute pass where the
//! adapter supports them (`timer = "device"`), otherwise by the wall clock around submit +
//! `poll(Wait)`. A generate run is always timed by the wall clock (it includes host-side
//! argmaxes between the passes).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

pub mod job;
pub mod kernels;
pub mod model;
pub mod params;

/// Storage precision of weights, activations and KV cache on the GPU. Arithmetic is always f32
/// (accumulators, norms, softmax); f16 halves memory traffic.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f16 when the adapter offers `SHADER_F16`, else f32.
    #[default]
    Auto,
    /// f32 storage (the reference precision: matches ONNX Runtime's fp32 graphs to ~1e-4).
    F32,
    /// f16 storage; an error when the adapter lacks `SHADER_F16`.
    F16,
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Auto => "auto",
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        })
    }
}

/// How a wgpu run is timed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum GpuTimer {
    /// GPU timestamps where the adapter supports `TIMESTAMP_QUERY`, else the wall clock.
    #[default]
    Auto,
    /// GPU timestamps at the start and end of the forward's compute pass; an error without
    /// `TIMESTAMP_QUERY`.
    Device,
    /// Wall clock around submit + `poll(Wait)` (includes driver submission overhead).
    Wall,
}

impl crate::choice::Choice for Precision {
    const ALL: &'static [(Self, &'static str, &'static str)] = &[
        (
            Precision::Auto,
            "auto",
            "f16 when the adapter offers SHADER_F16, else f32",
        ),
        (
            Precision::F32,
            "f32",
            "f32 storage (matches ONNX Runtime's fp32 graphs to ~1e-4)",
        ),
        (
            Precision::F16,
            "f16",
            "f16 storage; an error when the adapter lacks SHADER_F16",
        ),
    ];
}

impl crate::choice::Choice for GpuTimer {
    const ALL: &'static [(Self, &'static str, &'static str)] = &[
        (
            GpuTimer::Auto,
            "auto",
            "GPU timestamps where the adapter supports TIMESTAMP_QUERY, else the wall clock",
        ),
        (
            GpuTimer::Device,
            "device",
            "GPU timestamps around the forward's compute pass; an error without TIMESTAMP_QUERY",
        ),
        (
            GpuTimer::Wall,
            "wall",
            "wall clock around submit + poll(Wait), driver submission included",
        ),
    ];
}

/// wgpu backend settings, recorded with every measurement.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct WgpuOptions {
    /// Index into [`list_adapters`] (as printed by `lts device`); `None` picks the best adapter
    /// (discrete GPU, then integrated, virtual, CPU; native APIs before GL).
    pub adapter: Option<usize>,
    /// Storage precision.
    pub precision: Precision,
    /// Timer.
    pub timer: GpuTimer,
}

/// What `lts device` prints about one wgpu adapter, and what results record about the adapter
/// that produced them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AdapterReport {
    /// Index to pass as `--adapter`.
    pub index: usize,
    /// Adapter name, e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`.
    pub name: String,
    /// Graphics API: `vulkan`, `metal`, `dx12`, `gl`.
    pub backend: String,
    /// `DiscreteGpu`, `IntegratedGpu`, `VirtualGpu`, `Cpu` or `Other`.
    pub device_type: String,
    /// Driver name and version.
    pub driver: String,
    /// PCI vendor / device ids.
    pub vendor_device: String,
    /// Features this backend cares about that the adapter offers.
    pub features: Vec<String>,
    /// `max_buffer_size` (bytes).
    pub max_buffer_size: u64,
    /// `max_storage_buffer_binding_size` (bytes): the largest tensor one kernel can bind.
    pub max_storage_binding: u64,
    /// `max_compute_workgroup_storage_size` (bytes).
    pub max_workgroup_storage: u32,
    /// `max_compute_invocations_per_workgroup`.
    pub max_invocations: u32,
    /// `max_compute_workgroups_per_dimension`.
    pub max_workgroups_per_dim: u32,
}

impl AdapterReport {
    fn new(index: usize, adapter: &wgpu::Adapter) -> AdapterReport {
        let info = adapter.get_info();
        let f = adapter.features();
        let l = adapter.limits();
        let mut features = Vec::new();
        for (flag, name) in [
            (wgpu::Features::SHADER_F16, "shader-f16"),
            (wgpu::Features::TIMESTAMP_QUERY, "timestamp-query"),
            (
                wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES,
                "timestamp-query-inside-passes",
            ),
            (wgpu::Features::SUBGROUP, "subgroup"),
        ] {
            if f.contains(flag) {
                features.push(name.to_string());
            }
        }
        let driver = [info.driver.as_str(), info.driver_info.as_str()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        AdapterReport {
            index,
            name: info.name.clone(),
            backend: info.backend.to_str().to_string(),
            device_type: format!("{:?}", info.device_type),
            driver,
            vendor_device: format!("{:04x}:{:04x}", info.vendor, info.device),
            features,
            max_buffer_size: l.max_buffer_size,
            max_storage_binding: l.max_storage_buffer_binding_size,
            max_workgroup_storage: l.max_compute_workgroup_storage_size,
            max_invocations: l.max_compute_invocations_per_workgroup,
            max_workgroups_per_dim: l.max_compute_workgroups_per_dimension,
        }
    }

    /// One line: `#0 llvmpipe (...) [vulkan, Cpu] driver ... features ...`.
    pub fn summary(&self) -> String {
        format!(
            "#{} {} [{}, {}] driver: {}; features: {}; max binding {} MiB, workgroup storage {} KiB",
            self.index,
            self.name,
            self.backend,
            self.device_type,
            if self.driver.is_empty() {
                "-"
            } else {
                &self.driver
            },
            if self.features.is_empty() {
                "-".to_string()
            } else {
                self.features.join(", ")
            },
            self.max_storage_binding >> 20,
            self.max_workgroup_storage >> 10,
        )
    }
}

/// Adapters of the native APIs (Vulkan, Metal, DX12); GL only when none exists, since GL
/// compute is the slowest path and probing EGL prints warnings on headless machines.
/// `WGPU_BACKEND` (e.g. `vulkan`, `gl`) overrides the choice.
fn enumerate() -> (wgpu::Instance, Vec<wgpu::Adapter>) {
    let from_env = std::env::var_os("WGPU_BACKEND").is_some();
    let tries: &[wgpu::Backends] = if from_env {
        &[wgpu::Backends::all()]
    } else {
        &[wgpu::Backends::PRIMARY, wgpu::Backends::GL]
    };
    let mut last = None;
    for &backends in tries {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        if !from_env {
            desc.backends = backends;
        }
        let inst = wgpu::Instance::new(desc);
        let adapters = pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()));
        if !adapters.is_empty() {
            return (inst, adapters);
        }
        last = Some(inst);
    }
    (last.expect("at least one try"), Vec::new())
}

/// Every adapter wgpu finds on this machine, in the order `--adapter` indexes them.
pub fn list_adapters() -> Vec<AdapterReport> {
    let (_inst, adapters) = enumerate();
    adapters
        .iter()
        .enumerate()
        .map(|(i, a)| AdapterReport::new(i, a))
        .collect()
}

/// Rank for the default choice: lower is better.
fn preference(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    };
    let api = match info.backend {
        wgpu::Backend::Gl => 1,
        _ => 0,
    };
    (kind, api)
}

/// The hint printed with every "no adapter" error.
pub const NO_ADAPTER_HINT: &str = "install a Vulkan driver (on Debian/Ubuntu without a GPU: \
     `apt-get install mesa-vulkan-drivers libvulkan1` gives the llvmpipe software adapter), or \
     run with `--backend ort`";

/// Keeps the display probe of the Vulkan driver stack quiet on a headless machine: with the
/// Wayland surface extension that wgpu enables on every Vulkan instance, Mesa's device-select
/// layer calls `wl_display_connect`, and libwayland prints "error: XDG_RUNTIME_DIR is invalid
/// or not set in the environment." to stderr when `XDG_RUNTIME_DIR` is unset (CI, `sudo`,
/// ssh without a login session). wgpu has no flag to leave that extension out.
///
/// Without `XDG_RUNTIME_DIR` and without an absolute `WAYLAND_DISPLAY` no compositor is
/// reachable anyway, so this points `XDG_RUNTIME_DIR` at a private, empty directory,
/// `$TMPDIR/lts-runtime-<uid>` (mode 0700, created if missing, used only when it is a real
/// directory owned by this user with no group or other access): the probe then finds no
/// socket and says nothing. A usable setting is never changed.
///
/// # Safety
///
/// Changes the process environment: call it before any other thread exists (at the top of
/// `main`), as every setter of the environment must.
pub unsafe fn quiet_display_probe() {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let absolute =
        |key: &str| std::env::var_os(key).is_some_and(|v| std::path::Path::new(&v).is_absolute());
    if absolute("XDG_RUNTIME_DIR") || absolute("WAYLAND_DISPLAY") {
        return;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let dir = std::env::temp_dir().join(format!("lts-runtime-{uid}"));
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    let private = std::fs::symlink_metadata(&dir)
        .is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o077 == 0);
    if private {
        std::env::set_var("XDG_RUNTIME_DIR", &dir);
    }
}

/// One adapter opened for compute: device, queue, and what it can do.
pub struct Gpu {
    /// The device kernels and buffers are created on.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// The adapter, as `lts device` describes it.
    pub report: AdapterReport,
    /// Limits the device was created with (the adapter's own).
    pub limits: wgpu::Limits,
    /// Whether `SHADER_F16` is enabled.
    pub has_f16: bool,
    /// Whether `TIMESTAMP_QUERY` is enabled.
    pub has_timestamps: bool,
}

impl Gpu {
    /// Opens the adapter `opts.adapter` (or the preferred one) with its full limits and the
    /// optional features it offers.
    pub fn open(adapter: Option<usize>) -> Result<Gpu> {
        let (_inst, adapters) = enumerate();
        if adapters.is_empty() {
            bail!("no wgpu adapter found: {NO_ADAPTER_HINT}");
        }
        let index = match adapter {
            Some(i) if i < adapters.len() => i,
            Some(i) => bail!(
                "--adapter {i} does not exist: this machine has {} adapter(s), numbered 0..{}; `lts device` lists them",
                adapters.len(),
                adapters.len() - 1
            ),
            None => (0..adapters.len())
                .min_by_key(|&i| preference(&adapters[i].get_info()))
                .expect("non-empty"),
        };
        let chosen = &adapters[index];
        let report = AdapterReport::new(index, chosen);
        let offered = chosen.features();
        let wanted = wgpu::Features::SHADER_F16 | wgpu::Features::TIMESTAMP_QUERY;
        let features = offered & wanted;
        let limits = chosen.limits();
        let (device, queue) = pollster::block_on(chosen.request_device(&wgpu::DeviceDescriptor {
            label: Some("lts"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .with_context(|| format!("cannot open wgpu adapter {}", report.summary()))?;
        Ok(Gpu {
            device,
            queue,
            has_f16: features.contains(wgpu::Features::SHADER_F16),
            has_timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            report,
            limits,
        })
    }

    /// The process-wide handle of adapter `adapter` (opened once, then shared), so a search
    /// does not reopen the device for every candidate.
    pub fn shared(adapter: Option<usize>) -> Result<Arc<Gpu>> {
        static OPEN: Mutex<Option<HashMap<Option<usize>, Arc<Gpu>>>> = Mutex::new(None);
        let mut guard = OPEN.lock().unwrap_or_else(|e| e.into_inner());
        let map = guard.get_or_insert_with(HashMap::new);
        if let Some(g) = map.get(&adapter) {
            return Ok(g.clone());
        }
        let g = Arc::new(Gpu::open(adapter)?);
        map.insert(adapter, g.clone());
        Ok(g)
    }

    /// The storage precision `requested` resolves to on this adapter.
    pub fn resolve_precision(&self, requested: Precision) -> Result<Precision> {
        Ok(match requested {
            Precision::Auto if self.has_f16 => Precision::F16,
            Precision::Auto => Precision::F32,
            Precision::F16 if !self.has_f16 => bail!(
                "--precision f16 needs the SHADER_F16 feature, which adapter {} lacks; use --precision f32 or auto",
                self.report.summary()
            ),
            p => p,
        })
    }

    /// The timer `requested` resolves to on this adapter (`Device` or `Wall`).
    pub fn resolve_timer(&self, requested: GpuTimer) -> Result<GpuTimer> {
        Ok(match requested {
            GpuTimer::Auto if self.has_timestamps => GpuTimer::Device,
            GpuTimer::Auto => GpuTimer::Wall,
            GpuTimer::Device if !self.has_timestamps => bail!(
                "--gpu-timer device needs the TIMESTAMP_QUERY feature, which adapter {} lacks; use --gpu-timer wall or auto",
                self.report.summary()
            ),
            t => t,
        })
    }

    /// Waits until all submitted work is done.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .context("waiting for the GPU failed")?;
        Ok(())
    }
}

/// Opens an adapter for a unit test: `None` (test skipped, with a note on stderr) when the machine
/// has none, except under CI (`CI=true`), where a missing adapter is a failure: CI installs Mesa's
/// llvmpipe so the wgpu tests always run there. (`tests/common` has the integration tests'
/// copy: they cannot see a `cfg(test)` item of the library.)
#[cfg(test)]
pub(crate) fn gpu_for_tests() -> Option<Gpu> {
    match Gpu::open(None) {
        Ok(g) => Some(g),
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!("CI=true but no usable wgpu adapter: {e:#}");
            }
            eprintln!("skipping wgpu test: {e:#}");
            None
        }
    }
}
