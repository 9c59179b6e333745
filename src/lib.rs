//! `lts`: find fast small decoder-only language models for a device without training them.
//!
//! Follows LiteTransformerSearch (Javaheripour et al., "LiteTransformerSearch: Training-free
//! Neural Architecture Search for Efficient Language Models", NeurIPS 2022): candidates are
//! ranked by decoder (non-embedding) parameter count, a training-free perplexity proxy, against
//! latency and peak memory measured on the target device.
//!
//! Modules, one per concern, lowest layer first: a module imports only itself and the modules
//! listed before it, and no file imports one that imports it back (`tests/layering.rs`
//! checks both; the target shape is `architecture.md` of issue 22).
//! - [`choice`]: named value sets (modes, precisions...) described without clap.
//! - [`signals`]: Ctrl-C / SIGTERM as a request to stop cleanly.
//! - [`sysfs`]: the sysfs/procfs and hwmon readers `device` and `thermal` share.
//! - [`util`]: atomic writes, timestamps, sizes, number formatting, a thread pool.
//! - [`arch`]: the model description, its bounds and exact parameter counts (the proxy).
//! - [`model_io`]: the KV cache and forward output every runtime and the reference share.
//! - [`workload`]: what one timed run computes, its seeded inputs and memory estimate.
//! - [`corpus`]: the Brown corpus turned from tagged tokens into plain train/eval text.
//! - [`tokenizer`]: byte-level BPE from a GGUF file's vocabulary and merges.
//! - [`weights`]: parameters in Hugging Face naming (seeded random or safetensors import).
//! - [`device`]: what machine the numbers come from.
//! - [`gguf`]: llama.cpp's GGUF files: metadata, tensors dequantised to f32, Llama arch and
//!   weights in Hugging Face layout.
//! - [`thermal`]: temperatures, clocks and throttle state sampled around each measurement.
//! - [`onnx`]: the ONNX protobuf types (generated) and the naming of graph constants.
//! - [`quant`]: quantization schemes, int8/int4/fp16 arithmetic, calibration, quantized graphs.
//! - [`graph`]: ONNX emission (prefill and decode graphs) with real initializers, and reading
//!   exported files back.
//! - [`reference`](mod@reference): a plain-Rust forward pass that graphs are checked against.
//! - [`backend`]: runtimes that execute a candidate behind one trait (ONNX Runtime, wgpu).
//! - [`calibration`]: the ONNX Runtime pass that finds activation ranges for static int8.
//! - [`measure`]: the measurement protocol and its statistics.
//! - [`profile`]: device profiles (`devices/*.toml`): threads, thermal zones, cool-down, clocks.
//! - [`job`]: the serde job description (arch + protocol + backend) a host can send to a board.
//! - [`eval`]: `lts eval`: perplexity of a trained model on a text, KL divergence between two.
//! - [`fetch`]: `lts fetch`: the pinned SmolLM2-135M GGUF and the Brown text into the cache.
//! - [`fidelity`]: `lts quantize`: quantized graphs of a model judged against fp32 (SQNR, KLD,
//!   top-1), and the bench over schemes.
//! - [`remote`]: running jobs on boards: frames, authentication, the agent and the host fleet.
//! - [`search`]: the LTS search, its settings, spaces and results folder.
//! - [`report`]: presentation: terminal tables, `summary.md`, the frontier plot.
//! - [`cli`], [`commands`]: the command line.

// The `pub mod` order below is the layer order `tests/layering.rs` checks; rustfmt sorts
// modules inside a blank-line group, so each group is sorted and independent within itself.

// Layer: helpers every layer may use.
pub mod choice;
pub mod signals;
pub mod sysfs;
pub mod util;

// Layer: the model, its inputs and outputs.
pub mod arch;
pub mod model_io;
pub mod workload;

// Layer: parameters, text and the machine.
pub mod corpus;
pub mod tokenizer;
pub mod weights;

pub mod device;
pub mod gguf;
pub mod thermal;

// Layer: the ONNX format, and quantized rewrites of ONNX graphs.
pub mod onnx;
pub mod quant;

// Layer: graphs from an arch (and read back), and the oracle they are checked against.
pub mod graph;
pub mod reference;

// Layer: runtimes.
pub mod backend;

// Layer: passes over a runtime.
pub mod calibration;

// Layer: measuring on a device.
pub mod measure;
pub mod profile;

// Layer: what one timed run is.
pub mod job;

// Layer: passes built on jobs and runtimes, boards.
pub mod eval;
pub mod fetch;
pub mod fidelity;
pub mod remote;

// Layer: the search.
pub mod search;

// Layer: presentation.
pub mod report;

// Layer: highest: the command line.
pub mod cli;
pub mod commands;
