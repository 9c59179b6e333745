//! Benchmark: post-training quantization (issue 14), the figures of its closing note.
//!
//! 1. **Shapes** (`LTS_BENCH_QUANT_PRESETS`, default `gpt2-small,smollm2-135m`, seeded random
//!    weights): each scheme of `LTS_BENCH_QUANT_SCHEMES` quantized and judged against fp32 on 8
//!    seeded sequences (16 calibration sequences, 128 tokens), and every variant timed with fp32
//!    in **one interleaved loop** (a 128-token prefill, last-position logits, the default
//!    protocol) by [`lts::fidelity::bench::run`], the code of `lts quant-bench`. Printed: size,
//!    speedup vs fp32, SQNR, KLD, top-1, and the time to quantize (calibration excluded) with
//!    the target: under 3 s per 125M-parameter candidate on 2 cores.
//! 2. **The real checkpoint** (SmolLM2-135M-Instruct from `lts fetch smollm2-135m`, weights
//!    dequantised to f32): each scheme calibrated on windows of the Brown training slice, then
//!    `lts eval`'s perplexity of the quantized all-logits prefill graph on the Brown evaluation
//!    slice (ctx 256, no overlap; `LTS_BENCH_PPL_TOKENS` limits the tokens, default: the whole
//!    slice), next to fp32, plus the mixed-precision variants of `LTS_BENCH_QUANT_REAL_EXTRA`
//!    (`:keep=down_proj`). Skipped with a note when the model or the text is not cached.
//!
//! Run: `cargo bench --bench quant` (about 10 min for part 1 and 15 min for part 2 on 2
//! cores). `LTS_BENCH_QUANT_PART=1` or `=2` runs one part. Results are written under
//! `target/bench-quant/` (`<preset>/quant-bench.{csv,md,json}`, `ppl.json`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

use lts::arch::Arch;
use lts::backend::ort::OrtOptions;
use lts::eval::{self, EvalConfig, ModelSource};
use lts::fidelity::bench::{self, BenchConfig};
use lts::fidelity::{quantize_one, slug, Fp32Graphs, Sequences};
use lts::job::{BackendSpec, WeightsSpec};
use lts::measure::Protocol;
use lts::quant::Scheme;
use lts::workload::Logits;

/// The schemes of both parts unless `LTS_BENCH_QUANT_SCHEMES` says otherwise.
const SCHEMES: &str = "fp16,int8-dynamic,int8-dynamic:head,int8-static:minmax,\
int8-static:percentile,int8-static:mse,int8-static:entropy,int4:b32,int4:b32:zp,int4:b128";

/// Part 2 adds mixed-precision variants: SmolLM2's `down_proj` inputs carry massive activations
/// (one value in the thousands where the 99.9th percentile is about 1), which a per-tensor int8
/// activation scale cannot hold; `:keep=down_proj` leaves those multiplies in fp32.
const REAL_EXTRA: &str = "int8-dynamic:keep=down_proj,int8-static:minmax:keep=down_proj,\
int8-static:entropy:keep=down_proj";

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}

fn threads() -> OrtOptions {
    OrtOptions {
        intra_threads: lts::util::default_threads(),
        ..OrtOptions::default()
    }
}

/// Part 1: one preset's table.
fn shapes(preset: &str, schemes: &[Scheme], out: &Path) -> Result<()> {
    let arch = Arch::preset(preset).with_context(|| format!("preset {preset}"))?;
    let seq_len = 128.min(arch.n_positions);
    let cfg = BenchConfig {
        seqs: Sequences::seeded(&arch, 16, 8, seq_len, 0),
        weights: WeightsSpec::Random { seed: 0 },
        schemes: schemes.to_vec(),
        seq_len,
        work_ort: threads(),
        timed_ort: threads(),
        // Fixed counts (no precision target): with 11 variants interleaved, a noisy machine
        // would otherwise time up to 11 x max_duration_s.
        protocol: Protocol {
            min_runs: 10,
            min_duration_s: 1.0,
            max_duration_s: 30.0,
            target_ci_rel: 0.0,
            ..Protocol::default()
        },
        out: out.join(preset),
        arch,
    };
    let started = Instant::now();
    let rows = bench::run(&cfg, &mut |m| eprintln!("  {preset}: {m}"))?;
    println!("{}", bench::markdown(&cfg.arch, &rows));
    let total = cfg.arch.params().total as f64;
    println!(
        "Time to quantize (calibration excluded), scaled to a 125M-parameter candidate ({:.1}M here); target < 3 s on 2 cores:",
        total / 1e6
    );
    for r in rows.iter().skip(1) {
        let scaled = r.quantize_s * 125e6 / total;
        println!(
            "  {:<24} {:>6.2} s ({:>5.2} s per 125M) {}",
            r.scheme,
            r.quantize_s,
            scaled,
            if scaled < 3.0 { "ok" } else { "ABOVE TARGET" }
        );
    }
    println!(
        "({preset}: {:.0} s in all)\n",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Part 2: the real checkpoint's perplexity per scheme.
fn real_ppl(schemes: &[Scheme], out: &Path) -> Result<()> {
    let cache = lts::backend::ortlib::cache_dir();
    let gguf = cache.as_deref().map(lts::fetch::model_path);
    let brown = cache.as_deref().map(lts::fetch::brown_dir);
    let (Some(gguf), Some(brown)) = (gguf, brown) else {
        println!("part 2 skipped: no cache directory");
        return Ok(());
    };
    let (train, eval_txt) = (brown.join("train.txt"), brown.join("eval.txt"));
    if !gguf.is_file() || !train.is_file() || !eval_txt.is_file() {
        println!(
            "part 2 skipped: run `lts fetch smollm2-135m` and `lts fetch brown` first ({} or {} missing)",
            gguf.display(),
            brown.display()
        );
        return Ok(());
    }
    let max_tokens = match std::env::var("LTS_BENCH_PPL_TOKENS") {
        Ok(v) => Some(v.parse().context("LTS_BENCH_PPL_TOKENS")?),
        Err(_) => None,
    };
    let (arch, weights) = lts::gguf::llama::load(&gguf)?;
    let g = lts::gguf::Gguf::open(&gguf)?;
    let tok = lts::tokenizer::Tokenizer::new(g.tokenizer_spec()?)?;
    let ids = eval::read_text(&train, &tok, None)?.ids;
    let seqs = Sequences::from_tokens(&ids, 16, 8, 128, "Brown train.txt")?;
    let fp32 = Fp32Graphs::build(&arch, &weights, Logits::All, false)?;
    drop(weights);
    let dir = out.join("smollm2-real");
    std::fs::create_dir_all(&dir)?;
    let fp32_path = dir.join(format!("{}.fp32.prefill.onnx", arch.id()));
    lts::graph::save(&fp32.prefill, &fp32_path)?;
    let score = |model: &Path| -> Result<eval::EvalResult> {
        eval::run(
            &EvalConfig {
                model: ModelSource::Onnx(model.to_path_buf()),
                tokenizer: gguf.clone(),
                text: eval_txt.clone(),
                ctx: eval::DEFAULT_CTX,
                stride: eval::DEFAULT_CTX,
                max_tokens,
                backend: BackendSpec::Ort(threads()),
                kld_against: None,
                max_memory: None,
            },
            &mut |_| {},
            &|| false,
        )
    };
    eprintln!("  fp32: scoring the Brown evaluation slice ...");
    let base = score(&fp32_path)?;
    let mut rows = vec![(
        "fp32".to_string(),
        base.ppl_all,
        base.ppl_half,
        base.tokens_per_s,
        f64::INFINITY,
    )];
    for s in schemes {
        eprintln!("  {s}: calibrating, quantizing, scoring ...");
        let q = quantize_one(&arch, &fp32, s, &seqs, &threads(), Some(&dir))?;
        let path = dir.join(format!("{}.{}.prefill.onnx", arch.id(), slug(s)));
        let r = score(&path)?;
        rows.push((
            s.to_string(),
            r.ppl_all,
            r.ppl_half,
            r.tokens_per_s,
            q.fidelity.sqnr_db,
        ));
        std::fs::remove_file(&path).ok();
    }
    println!(
        "SmolLM2-135M-Instruct on the Brown evaluation slice ({} tokens scored, ctx {}; calibration: 16 windows of 128 tokens of train.txt):\n",
        base.tokens_scored_all,
        eval::DEFAULT_CTX
    );
    println!("| scheme | PPL all | PPL half | vs fp32 | SQNR dB (train windows) | tokens/s |\n|---|---|---|---|---|---|");
    for (name, all, half, tps, sqnr) in &rows {
        println!(
            "| {name} | {all:.4} | {half:.4} | {:+.2} % | {sqnr:.1} | {tps:.0} |",
            100.0 * (all / base.ppl_all - 1.0)
        );
    }
    let json: Vec<serde_json::Value> = rows
        .iter()
        .map(|(n, a, h, t, s)| {
            serde_json::json!({"scheme": n, "ppl_all": a, "ppl_half": h, "tokens_per_s": t, "sqnr_db": if s.is_finite() { Some(*s) } else { None }})
        })
        .collect();
    std::fs::write(out.join("ppl.json"), serde_json::to_vec_pretty(&json)?)?;
    Ok(())
}

fn main() -> Result<()> {
    let schemes = Scheme::parse_list(
        &env_or("LTS_BENCH_QUANT_SCHEMES", SCHEMES),
        lts::quant::scheme::DEFAULT_PERCENTILE,
    )?;
    let schemes: Vec<Scheme> = schemes.into_iter().filter(|s| !s.is_fp32()).collect();
    let out: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-quant");
    std::fs::create_dir_all(&out)?;
    let part = env_or("LTS_BENCH_QUANT_PART", "all");
    if part != "2" {
        for preset in env_or("LTS_BENCH_QUANT_PRESETS", "gpt2-small,smollm2-135m").split(',') {
            shapes(preset.trim(), &schemes, &out)?;
        }
    }
    if part != "1" {
        let mut real = schemes.clone();
        let extra = Scheme::parse_list(
            &env_or("LTS_BENCH_QUANT_REAL_EXTRA", REAL_EXTRA),
            lts::quant::scheme::DEFAULT_PERCENTILE,
        )?;
        for s in extra {
            if !real.contains(&s) {
                real.push(s);
            }
        }
        real_ppl(&real, &out)?;
    }
    Ok(())
}
