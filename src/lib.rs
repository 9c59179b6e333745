//! `lts`: find fast small decoder-only language models for a device without training them.
//!
//! Follows LiteTransformerSearch (Javaheripour et al., "LiteTransformerSearch: Training-free
//! Neural Architecture Search for Efficient Language Models", NeurIPS 2022): candidates are
//! ranked by decoder (non-embedding) parameter count, a training-free perplexity proxy, against
//! latency and peak memory measured on the target device.
//!
//! Modules, one per concern, in the order data flows through them (no file imports one that
//! imports it back: `tests/layering.rs`):
//! - [`choice`]: named value sets (modes, precisions...) described without clap.
//! - [`arch`]: the model description, its bounds and exact parameter counts (the proxy).
//! - [`weights`]: parameters in Hugging Face naming (seeded random or safetensors import).
//! - [`gguf`]: llama.cpp's GGUF files: metadata, tensors dequantised to f32, Llama arch and
//!   weights in Hugging Face layout.
//! - [`workload`]: what one timed run computes, its seeded inputs and memory estimate.
//! - [`model_io`]: the KV cache and forward output every runtime and the reference share.
//! - [`graph`]: ONNX emission (prefill and decode graphs) with real initializers, and reading
//!   exported files back.
//! - [`quant`]: quantization schemes, int8/int4/fp16 arithmetic, calibration, quantized graphs.
//! - [`reference`](mod@reference): a plain-Rust forward pass that graphs are checked against.
//! - [`backend`]: runtimes that execute a candidate behind one trait (ONNX Runtime, wgpu).
//! - [`measure`]: the measurement protocol and its statistics.
//! - [`sysfs`]: the sysfs/procfs and hwmon readers `device` and `thermal` share.
//! - [`device`]: what machine the numbers come from.
//! - [`thermal`]: temperatures, clocks and throttle state sampled around each measurement.
//! - [`profile`]: device profiles (`devices/*.toml`): threads, thermal zones, cool-down, clocks.
//! - [`job`]: the serde job description (arch + protocol + backend) a host can send to a board.
//! - [`search`]: the LTS search, its settings, spaces and results folder.
//! - [`tokenizer`]: byte-level BPE from a GGUF file's vocabulary and merges.
//! - [`corpus`]: the Brown corpus turned from tagged tokens into plain train/eval text.
//! - [`fetch`]: `lts fetch`: the pinned SmolLM2-135M GGUF and the Brown text into the cache.
//! - [`eval`]: `lts eval`: perplexity of a trained model on a text, KL divergence between two.
//! - [`quantize`]: `lts quantize`: calibration passes and fidelity of quantized graphs vs fp32.
//! - [`report`]: presentation: terminal tables, `summary.md`, the frontier plot.
//! - [`signals`]: Ctrl-C / SIGTERM as a request to stop cleanly.
//! - [`util`]: atomic writes, timestamps, sizes, a thread pool.
//! - [`cli`], [`commands`]: the command line.

pub mod arch;
pub mod backend;
pub mod choice;
pub mod cli;
pub mod commands;
pub mod corpus;
pub mod device;
pub mod eval;
pub mod fetch;
pub mod gguf;
pub mod graph;
pub mod job;
pub mod measure;
pub mod model_io;
pub mod profile;
pub mod quant;
pub mod quantize;
pub mod reference;
pub mod remote;
pub mod report;
pub mod search;
pub mod signals;
pub mod sysfs;
pub mod thermal;
pub mod tokenizer;
pub mod util;
pub mod weights;
pub mod workload;
