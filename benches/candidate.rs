//! Benchmark: what one candidate costs when the search measures it with its FULL protocol.
//!
//! For each config, measures one candidate exactly as `lts search` does for a frontier point:
//! `lts::job::execute` on a [`Job`] with seeded random weights, the ONNX Runtime backend with
//! default options, prefill, batch 1, seq 192 and `SearchConfig::default_full_protocol()`. Prints
//! per config the phases of that one call, in seconds: graph emission (random weights and their
//! conversion to the graph layout; before issue 10 also ONNX serialisation), session creation, first run, warm-up, timed (the sum of the timed samples),
//! the wall time of the whole `execute` call, and the share of timed inference in it
//! (timed / wall). Also the timed run count, the median, the relative half-width of the
//! median's 95% confidence interval (`max(median - low, high - median) / median`,
//! `stats.median_ci_rel`) and whether the protocol's precision target was reached.
//!
//! Memory: the process's peak RSS during that candidate vs an estimate of what the model must
//! hold, `fp32 weights + activations + KV cache`, and their ratio. The estimate is
//! - weights: total parameters x 4 bytes;
//! - KV cache: the prefill graph's `present` outputs, 2 x n_layer x batch x seq x n_kv_head x
//!   head_dim x 4 bytes;
//! - activations: the logits (batch x vocab x 4 bytes: the last position's) plus the largest per-layer working
//!   set, batch x (5 x seq x d_model + n_head x seq x seq + seq x d_inner) x 4 bytes (block input
//!   and output, q/k/v, attention scores, MLP hidden).
//!
//! Peak RSS method: each config runs in its own child process (this bench re-executes
//! `std::env::current_exe()` with `--lts-bench-child NAME`), which loads ONNX Runtime first (a
//! search loads it once for all candidates), then reads `VmRSS` (baseline), runs `execute`, and
//! reads `VmHWM`, the kernel's high-water mark since the process started. A child per config is
//! used instead of `src/measure/memory.rs`'s in-process reset because that tracker starts at
//! session creation, after graph emission, whose weights and ONNX bytes are part of a
//! candidate's peak; and because allocator free lists and ONNX Runtime's arenas carry over
//! between configs in one process. The protocol's own figure (`measurement.memory`, session
//! creation to last timed run) is printed next to it.
//!
//! Run: `cargo bench --bench candidate` (a few minutes on 2 cores, most of it gpt2-small and
//! smollm2-135m). `LTS_BENCH_CONFIGS=gpt2-small,flex-10m` selects configs; names: gpt2-small,
//! smollm2-135m, flex-10m, flex-40m, flex-100m (the last three are fixed GPT-2 candidates from
//! the `gpt2-flex` search space with about 10M, 40M and 100M decoder parameters).

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use lts::arch::{Arch, DEFAULT_MAX_PARAMS};
use lts::backend::ort::{Ort, OrtOptions};
use lts::job::{self, BackendSpec, Job, Mode, WeightsSpec, Workload};
use lts::measure::memory;
use lts::search::space::{Genome, SearchSpace};
use lts::search::SearchConfig;
use lts::workload::Logits;

const CHILD_ARG: &str = "--lts-bench-child";
const SEQ_LEN: usize = 192;
const BATCH: usize = 1;
const ALL: &[&str] = &[
    "gpt2-small",
    "smollm2-135m",
    "flex-10m",
    "flex-40m",
    "flex-100m",
];

/// A fixed candidate of the `gpt2-flex` space, checked against the space (genes in range,
/// `d_inner > 1.7 x d_model`, decoder params in 6M-100M).
fn flex(d_model: usize, d_inner: &[usize], n_head: &[usize]) -> anyhow::Result<Arch> {
    let space = SearchSpace::resolve("gpt2-flex")?;
    let slots = space.max_layers();
    let pad = |v: &[usize]| {
        let mut v = v.to_vec();
        v.resize(slots, *v.last().expect("at least one layer"));
        v
    };
    let g = Genome {
        n_layer: d_inner.len(),
        d_model,
        d_inner: pad(d_inner),
        n_head: pad(n_head),
        n_kv_head: Vec::new(),
    };
    if !space.contains(&g) {
        bail!("genome {g:?} is outside the gpt2-flex space");
    }
    let arch = space.to_arch(&g)?;
    space
        .check_static(&arch)
        .map_err(|e| anyhow::anyhow!("gpt2-flex constraint: {e}"))?;
    Ok(arch)
}

fn config(name: &str) -> anyhow::Result<Arch> {
    match name {
        "gpt2-small" | "smollm2-135m" => Arch::preset(name),
        // 6 layers, d_model 384: 10,253,824 decoder parameters.
        "flex-10m" => flex(
            384,
            &[1536, 1024, 1536, 2048, 1024, 1536],
            &[8, 4, 8, 8, 2, 4],
        ),
        // 10 layers, d_model 640: 41,529,984 decoder parameters.
        "flex-40m" => flex(
            640,
            &[2048, 1536, 2560, 2048, 1152, 2048, 2560, 1536, 2048, 2048],
            &[8, 8, 4, 8, 2, 8, 4, 8, 8, 4],
        ),
        // 11 layers, d_model 896: 98,757,504 decoder parameters.
        "flex-100m" => flex(
            896,
            &[
                3072, 3072, 3584, 3072, 3584, 3072, 3584, 3072, 3072, 3072, 3072,
            ],
            &[8, 8, 8, 4, 8, 8, 2, 8, 8, 4, 8],
        ),
        _ => bail!("unknown config {name:?}; known: {}", ALL.join(", ")),
    }
}

/// What the child reports for one config.
#[derive(Serialize, Deserialize, Debug)]
struct Row {
    name: String,
    decoder_params: u64,
    total_params: u64,
    emission_s: f64,
    session_s: f64,
    first_s: f64,
    warmup_s: f64,
    timed_s: f64,
    /// Wall time of the timed loop (samples + harness).
    timed_loop_s: f64,
    wall_s: f64,
    runs: usize,
    median_ms: f64,
    ci_rel: f64,
    /// Whether the precision target was met (`None`: the protocol has none).
    target_reached: Option<bool>,
    valid: bool,
    baseline_rss: Option<u64>,
    peak_rss: Option<u64>,
    /// The protocol's own peak delta (session creation to last timed run).
    protocol_peak_delta: Option<u64>,
    estimate_bytes: u64,
    weights_bytes: u64,
    activation_bytes: u64,
    kv_bytes: u64,
}

/// fp32 weights, activations and KV cache of one prefill run (see the module docs).
fn estimate(arch: &Arch) -> (u64, u64, u64) {
    let (b, s) = (BATCH as u64, SEQ_LEN as u64);
    let weights = arch.params().total * 4;
    let kv: u64 = (0..arch.n_layer)
        .map(|i| 2 * b * s * (arch.n_kv_head[i] * arch.head_dim(i)) as u64 * 4)
        .sum();
    let layer_peak = (0..arch.n_layer)
        .map(|i| {
            let d = arch.d_model as u64;
            b * (5 * s * d + arch.n_head[i] as u64 * s * s + s * arch.d_inner[i] as u64) * 4
        })
        .max()
        .unwrap_or(0);
    // The timed prefill computes logits of the last position only (`Logits::Last`, the default
    // workload); results before issue 10 computed them for all `s` positions.
    let logit_rows = match Workload::default().logits {
        Logits::Last => b,
        Logits::All => b * s,
    };
    let logits = logit_rows * arch.vocab_size as u64 * 4;
    (weights, logits + layer_peak, kv)
}

fn child(name: &str) -> anyhow::Result<()> {
    let arch = config(name)?;
    // A search process loads the runtime once; do it before the timed call.
    Ort::load()?;
    let (weights_bytes, activation_bytes, kv_bytes) = estimate(&arch);
    let p = arch.params();
    let job = Job {
        quant: None,
        weights: WeightsSpec::Random { seed: 0 },
        workload: Workload {
            mode: Mode::Prefill,
            batch: BATCH,
            seq_len: SEQ_LEN,
            ..Default::default()
        },
        protocol: SearchConfig::default_full_protocol(),
        backend: BackendSpec::Ort(OrtOptions::default()),
        max_params: DEFAULT_MAX_PARAMS,
        max_memory: None,
        thermal: Default::default(),
        device_profile: None,
        arch,
    };
    let baseline_rss = memory::current_rss_bytes();
    let t0 = Instant::now();
    let r = job::execute(&job)?;
    let wall_s = t0.elapsed().as_secs_f64();
    let peak_rss = memory::peak_rss_bytes();
    let m = &r.measurement;
    let st = &m.stats;
    let ci_rel = st.median_ci_rel.unwrap_or(f64::NAN);
    let row = Row {
        name: name.to_string(),
        decoder_params: p.decoder,
        total_params: p.total,
        emission_s: r.graph_emission_ms / 1e3,
        session_s: m.session_creation_ms / 1e3,
        first_s: m.first_run_ms / 1e3,
        warmup_s: m.warmup_ms / 1e3,
        timed_s: m.timed_sum_ms / 1e3,
        timed_loop_s: m.timed_loop_ms / 1e3,
        wall_s,
        runs: m.timed_runs,
        median_ms: st.median_ms,
        ci_rel,
        target_reached: m.target_ci_reached,
        valid: m.valid,
        baseline_rss,
        peak_rss,
        protocol_peak_delta: m.memory.peak_delta_bytes,
        estimate_bytes: weights_bytes + activation_bytes + kv_bytes,
        weights_bytes,
        activation_bytes,
        kv_bytes,
    };
    println!("RESULT {}", serde_json::to_string(&row)?);
    Ok(())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into())
}

fn mib(b: Option<u64>) -> String {
    lts::report::mib_number(b)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == CHILD_ARG) {
        let name = args.get(i + 1).context("child needs a config name")?;
        return child(name);
    }
    let names: Vec<String> = match std::env::var("LTS_BENCH_CONFIGS") {
        Ok(s) if !s.trim().is_empty() => s.split(',').map(|n| n.trim().to_string()).collect(),
        _ => ALL.iter().map(|s| s.to_string()).collect(),
    };
    for n in &names {
        config(n)?; // fail before measuring anything
    }
    let protocol = SearchConfig::default_full_protocol();
    println!("full protocol: {}", serde_json::to_string(&protocol)?);
    println!(
        "workload: prefill, batch {BATCH}, seq {SEQ_LEN}; ORT default options; one child \
         process per config (peak RSS = child's VmHWM)"
    );
    let exe = std::env::current_exe()?;
    let mut rows = Vec::new();
    for name in &names {
        let before = loadavg();
        let out = Command::new(&exe)
            .args([CHILD_ARG, name])
            .output()
            .with_context(|| format!("spawn child for {name}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "child for {name} failed ({}):\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .with_context(|| format!("child for {name} printed no result:\n{stdout}"))?;
        let row: Row = serde_json::from_str(line)?;
        println!(
            "{name}: done in {:.1} s wall ({} runs); load average before {before}, after {}",
            row.wall_s,
            row.runs,
            loadavg()
        );
        rows.push(row);
    }

    println!();
    println!(
        "{:<13} {:>11} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>5} {:>9} {:>6} {:>7}",
        "config",
        "decoder",
        "emit s",
        "sess s",
        "first s",
        "warm s",
        "timed s",
        "wall s",
        "timed%",
        "runs",
        "median ms",
        "CI ±%",
        "target"
    );
    for r in &rows {
        println!(
            "{:<13} {:>11} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>6.1}% {:>5} {:>9.2} {:>5.1}% {:>7}{}",
            r.name,
            lts::report::thousands(r.decoder_params),
            r.emission_s,
            r.session_s,
            r.first_s,
            r.warmup_s,
            r.timed_s,
            r.wall_s,
            100.0 * r.timed_s / r.wall_s,
            r.runs,
            r.median_ms,
            100.0 * r.ci_rel,
            match r.target_reached {
                Some(true) => "reached",
                Some(false) => "missed",
                None => "-",
            },
            if r.valid { "" } else { "  INVALID" }
        );
    }
    println!();
    println!(
        "{:<13} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>12}",
        "config", "base MiB", "peak MiB", "est MiB", "weights", "activ.", "KV", "peak/est"
    );
    for r in &rows {
        println!(
            "{:<13} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>12}   (protocol's own peak delta {} MiB)",
            r.name,
            mib(r.baseline_rss),
            mib(r.peak_rss),
            mib(Some(r.estimate_bytes)),
            mib(Some(r.weights_bytes)),
            mib(Some(r.activation_bytes)),
            mib(Some(r.kv_bytes)),
            r.peak_rss
                .map(|p| format!("{:.2}x", p as f64 / r.estimate_bytes as f64))
                .unwrap_or_else(|| "n/a".into()),
            mib(r.protocol_peak_delta)
        );
    }
    let sum = |f: fn(&Row) -> f64| rows.iter().map(f).sum::<f64>();
    let (wall, timed) = (sum(|r| r.wall_s), sum(|r| r.timed_s));
    println!();
    println!(
        "all configs: wall {wall:.2} s = emission {:.2} + session {:.2} + first run {:.2} + \
         warm-up {:.2} + timed {timed:.2} + loop harness {:.3} + other {:.2}; timed share {:.1}% \
         (shares of wall: emission {:.1}%, session {:.1}%, first {:.1}%, warm-up {:.1}%, timed \
         {:.1}%, rest {:.1}%)",
        sum(|r| r.emission_s),
        sum(|r| r.session_s),
        sum(|r| r.first_s),
        sum(|r| r.warmup_s),
        sum(|r| r.timed_loop_s - r.timed_s),
        wall - sum(|r| r.emission_s + r.session_s + r.first_s + r.warmup_s + r.timed_loop_s),
        100.0 * timed / wall,
        100.0 * sum(|r| r.emission_s) / wall,
        100.0 * sum(|r| r.session_s) / wall,
        100.0 * sum(|r| r.first_s) / wall,
        100.0 * sum(|r| r.warmup_s) / wall,
        100.0 * timed / wall,
        100.0 * (wall - sum(|r| r.emission_s + r.session_s + r.first_s + r.warmup_s + r.timed_s))
            / wall,
    );
    Ok(())
}
