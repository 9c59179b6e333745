//! [`GpuModel`]: a decoder resident on one GPU, built from its weights (checks, kernels, the
//! uploads of [`super::buffers`] under one out-of-memory error scope), with its recorded plans
//! (one per `(batch, seq)`, built by [`super::plan`]) and what runs them: input and cache
//! upload, submission with optional GPU timestamps, logits readback, and the whole forward with
//! the present cache read back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ndarray::{Array2, Array3, Array4};

use super::buffers::{self, Buffers, Capacity, Upload};
use super::plan::Recorder;
use crate::arch::Arch;
use crate::backend::wgpu::kernels::{self, Alloc, Dispatch, Kernels, StepUniform, Timestamps};
use crate::backend::wgpu::{Gpu, Precision};
use crate::model_io::{Forward, KvCache, Output};
use crate::weights::Weights;
use crate::workload::Logits;

/// A decoder resident on one GPU: weights, activations, KV cache and compiled kernels.
pub struct GpuModel {
    gpu: Arc<Gpu>,
    kernels: Kernels,
    pub(super) arch: Arch,
    cap: Capacity,
    bufs: Buffers,
    total_bytes: u64,
    /// The cache length every plan reads (written before each submission).
    step: StepUniform,
    /// Recorded forwards, per `(batch, new tokens)`.
    plans: HashMap<(usize, usize), Vec<Dispatch>>,
    /// Host-readable copy target of the logits, created on first use.
    readback: Option<wgpu::Buffer>,
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
        cap.check(arch, weights)?;
        let precision = gpu.resolve_precision(precision)?;
        buffers::check_head_dims(arch)?;
        let kernels = Kernels::new(&gpu, precision)?;
        let alloc = Alloc::new(&gpu);
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let bufs = Upload {
            arch,
            weights,
            kernels: &kernels,
            alloc: &alloc,
            cap,
        }
        .all()?;
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
            bufs,
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
        self.bufs.weight_bytes
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

    /// Checks one forward's shape against the capacity.
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
    pub(super) fn plan(&mut self, batch: usize, seq: usize, past: usize) -> Result<&[Dispatch]> {
        self.check_shape(batch, seq, past)?;
        if !self.plans.contains_key(&(batch, seq)) {
            let scope = self
                .gpu
                .device
                .push_error_scope(wgpu::ErrorFilter::Validation);
            let plan = Recorder {
                gpu: &self.gpu,
                kernels: &self.kernels,
                arch: &self.arch,
                cap: self.cap,
                bufs: &self.bufs,
                step: &self.step,
            }
            .record(batch, seq);
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
            .write_buffer(&self.bufs.acts.ids, 0, bytemuck::cast_slice(&ids));
        if let Some(cache) = past.filter(|c| !c.is_empty()) {
            if cache.layers.len() != self.bufs.layers.len() {
                bail!(
                    "the past cache has {} layers but the model {}",
                    cache.layers.len(),
                    self.bufs.layers.len()
                );
            }
            for (i, ((k, v), l)) in cache.layers.iter().zip(&self.bufs.layers).enumerate() {
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
    pub(super) fn write_ids(&self, ids: &[u32]) {
        self.gpu
            .queue
            .write_buffer(&self.bufs.acts.ids, 0, bytemuck::cast_slice(ids));
    }

    /// Creates the host-readable logits buffer for `rows` rows unless one at least that large
    /// exists.
    pub(super) fn readback(&mut self, rows: usize) {
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
        enc.copy_buffer_to_buffer(&self.bufs.acts.logits, 0, readback, 0, padded);
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
        let mut layers = Vec::with_capacity(self.bufs.layers.len());
        for l in &self.bufs.layers {
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

impl Forward for GpuModel {
    fn name(&self) -> &str {
        "wgpu"
    }

    fn forward(&mut self, input_ids: &Array2<i64>, past: Option<&KvCache>) -> Result<Output> {
        GpuModel::forward(self, input_ids, past)
    }
}
