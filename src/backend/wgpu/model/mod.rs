//! A decoder uploaded to the GPU and run as one compute pass per forward.
//!
//! Weights are the same tensors as the ONNX graph's ([`crate::weights::Weights`], HF names and
//! layouts). GPT-2's Conv1D weights (`[in, out]`) are multiplied as stored; Llama's Linear
//! weights (`[out, in]`) through the transposed-B kernels, with q/k/v and gate/up concatenated
//! row-wise into one fused projection each. The token table is split into row chunks when it is
//! larger than the adapter's storage-binding limit (GPT-2 small's 147 MiB table on llvmpipe's
//! 128 MiB); the tied LM head multiplies the same chunks.
//!
//! One forward, per layer: norm -> fused QKV matmul (+bias) -> split/RoPE/cache append ->
//! attention -> output matmul with the residual add fused -> norm -> MLP (GPT-2: matmul + bias +
//! GELU fused, matmul + bias + residual fused; Llama: gate|up matmul, SwiGLU, down matmul +
//! residual fused); then the final norm and the LM head, as the ONNX prefill graph of the same
//! [`Logits`] choice, so both backends time the same work: with [`Logits::Last`] the final norm
//! gathers the last position of each sequence into a compact `[batch, d_model]` block (one
//! norm dispatch, rows read at stride `seq`) and the LM head multiplies only those `batch` rows
//! (logits `[batch, 1, vocab]`); with [`Logits::All`] both run over every position (logits
//! `[batch, seq, vocab]`). A one-token forward (decode) is the same either way.
//!
//! A forward is recorded once per `(batch, seq)` as a list of dispatches (a plan); the number of
//! positions already in the KV cache is not baked into it but read by the embedding, QKV and
//! attention kernels from a 16-byte uniform written before each submission
//! ([`kernels::StepUniform`]), so every decode step of a generation reuses one plan.
//!
//! [`WgpuRunner`] times a prefill, one decode step, or a whole greedy generation
//! ([`Mode::Generate`]: prefill, then decode steps fed the host-side argmax of the previous
//! step's logits, with the KV cache kept on the GPU).
//!
//! The files of this module: `buffers.rs` ([`Capacity`] and the GPU-resident tensors with their
//! upload), `plan.rs` (recording a forward as dispatches, stage by stage), `gpu_model.rs`
//! ([`GpuModel`]: construction, upload, submission, readback) and `runner.rs` ([`WgpuRunner`],
//! [`runtime_info`]).
//!
//! [`Logits`]: crate::workload::Logits
//! [`Logits::Last`]: crate::workload::Logits::Last
//! [`Logits::All`]: crate::workload::Logits::All
//! [`kernels::StepUniform`]: super::kernels::StepUniform
//! [`Mode::Generate`]: crate::workload::Mode::Generate

mod buffers;
mod gpu_model;
mod plan;
mod runner;

pub use buffers::Capacity;
pub use gpu_model::GpuModel;
pub use runner::{argmax_rows, runtime_info, WgpuRunner, WGPU_VERSION};
