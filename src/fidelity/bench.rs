//! `lts quant-bench`: the table of "An Empirical Study of Low Precision Quantization for TinyML"
//! for one model: every post-training method x bit width x granularity of a scheme grid, each
//! with its size, fidelity against fp32 ([`super::quantize_one`]) and latency, all variants and
//! fp32 timed in one interleaved loop ([`crate::job::execute_interleaved`]) on the graphs that
//! were judged (the files written), so the speedups come from one run.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{quantize_one, Fidelity, Fp32Graphs, Sequences};
use crate::arch::{Arch, DEFAULT_MAX_PARAMS};
use crate::backend::ort::OrtOptions;
use crate::graph;
use crate::job::{BackendSpec, Job, WeightsSpec};
use crate::measure::Protocol;
use crate::quant::scheme::{Calibration, Scheme};
use crate::util::write_atomic;
use crate::workload::{Logits, Mode, Workload};

/// The default grid: fp16; int8 dynamic per channel and per tensor; int8 static with each
/// calibration method per channel and per tensor; int4 in blocks of 32 and 128, symmetric and
/// with zero points.
pub const DEFAULT_GRID: &str = "fp16,int8-dynamic,int8-dynamic:per-tensor,\
int8-static:minmax,int8-static:minmax:per-tensor,int8-static:percentile,\
int8-static:percentile:per-tensor,int8-static:mse,int8-static:mse:per-tensor,\
int8-static:entropy,int8-static:entropy:per-tensor,int4:b32,int4:b32:zp,int4:b128,int4:b128:zp";

/// One row of the table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchRow {
    /// The scheme as written.
    pub scheme: String,
    /// fp32, fp16, dynamic, minmax, percentile, mse, entropy or blockwise.
    pub method: String,
    /// Weight bits.
    pub bits: u32,
    /// per-channel, per-tensor, block-N or -.
    pub granularity: String,
    /// Bytes of the prefill graph file.
    pub model_bytes: u64,
    /// fp32 bytes / these bytes.
    pub size_ratio: f64,
    /// SQNR of the logits vs fp32, dB.
    pub sqnr_db: f64,
    /// Mean KL(fp32 || quantized), nats.
    pub kld_mean: f64,
    /// p99 KL divergence, nats.
    pub kld_p99: f64,
    /// Top-1 agreement with fp32, %.
    pub top1_pct: f64,
    /// Median latency of the timed prefill, ms.
    pub median_ms: f64,
    /// p90 latency, ms.
    pub p90_ms: f64,
    /// fp32 median / this median (measured in the same interleaved loop).
    pub speedup: f64,
    /// Whether the measurement met the protocol's minimums.
    pub valid: bool,
    /// Seconds to quantize and emit (calibration excluded).
    pub quantize_s: f64,
    /// Seconds of calibration.
    pub calibrate_s: f64,
}

/// What the bench runs on.
pub struct BenchConfig {
    /// The model.
    pub arch: Arch,
    /// Its weights.
    pub weights: WeightsSpec,
    /// The grid (fp32 is always the first row).
    pub schemes: Vec<Scheme>,
    /// Calibration and evaluation sequences.
    pub seqs: Sequences,
    /// The timed prefill's tokens.
    pub seq_len: usize,
    /// ONNX Runtime settings of calibration and fidelity.
    pub work_ort: OrtOptions,
    /// ONNX Runtime settings of the timed runs.
    pub timed_ort: OrtOptions,
    /// The measurement protocol.
    pub protocol: Protocol,
    /// Output folder (graphs, CSV, Markdown, JSON).
    pub out: PathBuf,
}

fn describe(s: &Scheme) -> (String, u32, String) {
    let gran = |per_channel: bool| {
        if per_channel {
            "per-channel"
        } else {
            "per-tensor"
        }
    };
    match s {
        Scheme::Fp32 => ("fp32".into(), 32, "-".into()),
        Scheme::Fp16 => ("fp16".into(), 16, "-".into()),
        Scheme::Int8Dynamic { per_channel, .. } => ("dynamic".into(), 8, gran(*per_channel).into()),
        Scheme::Int8Static {
            calibration,
            per_channel,
            ..
        } => (
            match calibration {
                Calibration::Minmax => "minmax",
                Calibration::Percentile => "percentile",
                Calibration::Mse => "mse",
                Calibration::Entropy => "entropy",
            }
            .into(),
            8,
            gran(*per_channel).into(),
        ),
        Scheme::Int4 { block_size, .. } => ("blockwise".into(), 4, format!("block-{block_size}")),
    }
}

/// Runs the bench: quantizes with every scheme, judges fidelity, times all variants and fp32
/// interleaved, writes `quant-bench.{csv,md,json}` and the graphs into `out`.
pub fn run(cfg: &BenchConfig, progress: &mut dyn FnMut(&str)) -> Result<Vec<BenchRow>> {
    let weights = cfg.weights.load(&cfg.arch)?;
    let fp32 = Fp32Graphs::build(&cfg.arch, &weights, Logits::Last, false)?;
    drop(weights);
    std::fs::create_dir_all(&cfg.out)
        .with_context(|| format!("cannot create {}", cfg.out.display()))?;
    let fp32_path = cfg.out.join(format!("{}.fp32.prefill.onnx", cfg.arch.id()));
    graph::save(&fp32.prefill, &fp32_path)?;
    let fp32_bytes = std::fs::metadata(&fp32_path)?.len();
    let mut judged = Vec::new();
    for s in cfg.schemes.iter().filter(|s| !s.is_fp32()) {
        progress(&format!("quantizing and judging {s}"));
        let r = quantize_one(
            &cfg.arch,
            &fp32,
            s,
            &cfg.seqs,
            &cfg.work_ort,
            Some(&cfg.out),
        )?;
        judged.push(r);
    }
    let job = |path: &Path, quant: Option<Scheme>| Job {
        arch: cfg.arch.clone(),
        weights: WeightsSpec::Onnx {
            path: path.to_path_buf(),
        },
        workload: Workload {
            mode: Mode::Prefill,
            batch: 1,
            seq_len: cfg.seq_len,
            new_tokens: 0,
            logits: Logits::Last,
            seed: 0,
        },
        protocol: cfg.protocol.clone(),
        backend: BackendSpec::ort(cfg.timed_ort.clone()),
        max_params: DEFAULT_MAX_PARAMS,
        max_memory: None,
        thermal: Default::default(),
        device_profile: None,
        quant,
    };
    let mut jobs = vec![job(&fp32_path, None)];
    for r in &judged {
        let prefill = r
            .files
            .iter()
            .find(|f| f.to_string_lossy().ends_with(".prefill.onnx"))
            .context("no prefill file written")?;
        jobs.push(job(prefill, Some(r.scheme.clone())));
    }
    progress(&format!("timing {} variants interleaved", jobs.len()));
    let timed = crate::job::execute_interleaved(&jobs)?;
    let base = timed[0].measurement.stats.median_ms;
    let perfect = Fidelity {
        sqnr_db: f64::INFINITY,
        kld_mean: 0.0,
        kld_p99: 0.0,
        top1_agreement: 1.0,
        max_abs_error: 0.0,
        positions: 0,
    };
    let mut rows = Vec::new();
    for (i, t) in timed.iter().enumerate() {
        let r = i.checked_sub(1).map(|j| &judged[j]);
        let scheme = r.map_or(Scheme::Fp32, |r| r.scheme.clone());
        let (method, bits, granularity) = describe(&scheme);
        let f = r.map_or(perfect, |r| r.fidelity);
        let path = match &jobs[i].weights {
            WeightsSpec::Onnx { path } => path,
            _ => unreachable!("every bench job times a file"),
        };
        let bytes = std::fs::metadata(path)?.len();
        let m = &t.measurement;
        rows.push(BenchRow {
            scheme: scheme.to_string(),
            method,
            bits,
            granularity,
            model_bytes: bytes,
            size_ratio: fp32_bytes as f64 / bytes as f64,
            sqnr_db: f.sqnr_db,
            kld_mean: f.kld_mean,
            kld_p99: f.kld_p99,
            top1_pct: 100.0 * f.top1_agreement,
            median_ms: m.stats.median_ms,
            p90_ms: m.stats.p90_ms,
            speedup: base / m.stats.median_ms,
            valid: m.valid,
            quantize_s: r.map_or(0.0, |r| r.quantize_seconds),
            calibrate_s: r.map_or(0.0, |r| r.calibrate_seconds),
        });
    }
    write(&cfg.out, &cfg.arch, &rows)?;
    Ok(rows)
}

/// The table as Markdown.
pub fn markdown(arch: &Arch, rows: &[BenchRow]) -> String {
    let mut s = format!(
        "# Post-training quantization of {}\n\n| scheme | method | bits | granularity | MB | smaller | SQNR dB | KLD mean | KLD p99 | top-1 % | median ms | speedup | quantize s |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        arch.id()
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {:.2} | {:.2}x | {:.1} | {:.2e} | {:.2e} | {:.1} | {:.3} | {:.2}x{} | {:.2} |\n",
            r.scheme,
            r.method,
            r.bits,
            r.granularity,
            r.model_bytes as f64 / 1e6,
            r.size_ratio,
            r.sqnr_db,
            r.kld_mean,
            r.kld_p99,
            r.top1_pct,
            r.median_ms,
            r.speedup,
            if r.valid { "" } else { " (invalid)" },
            r.quantize_s
        ));
    }
    s.push_str(
        "\nAll variants and fp32 were timed in one interleaved loop (each round runs every variant once); fidelity is against fp32 on the evaluation sequences, which are not the calibration ones.\n",
    );
    s
}

fn write(out: &Path, arch: &Arch, rows: &[BenchRow]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r)?;
    }
    write_atomic(&out.join("quant-bench.csv"), &w.into_inner()?)?;
    write_atomic(&out.join("quant-bench.md"), markdown(arch, rows).as_bytes())?;
    write_atomic(
        &out.join("quant-bench.json"),
        serde_json::to_string_pretty(rows)?.as_bytes(),
    )?;
    Ok(())
}
