//! Benchmark of the wgpu backend on whatever adapter this machine offers (Mesa's llvmpipe on a
//! CPU-only host, the real GPU elsewhere). Prints, measured in one run:
//!
//! 1. the matmul kernels' GFLOP/s: tiled (64x64 workgroup tiles in shared memory, vec4 loads)
//!    against the naive one-invocation-per-output kernel on the same adapter and shapes, both
//!    B layouts, with their ratio; plus the cost of an empty-ish dispatch (1x4x4), the fixed
//!    per-kernel overhead of the driver;
//! 2. the cost of recording one forward's plan (bind groups and uniform blocks of every
//!    dispatch) for prefill and decode, once per `(batch, seq)`: every decode step of a
//!    generation reuses one plan, the cache length coming from a uniform written per submission;
//! 3. wgpu vs ONNX Runtime latency (median of the measurement protocol, same weights and
//!    inputs) for a few configs, prefill (last-position logits), decode and generate, with the
//!    ratio.
//!
//! Matmul times are GPU timestamps around one compute pass holding one dispatch (wall clock
//! around submit + wait when the adapter has no timestamp queries), median of 7 after 2 warm-up
//! runs. Run: `cargo bench --bench wgpu` (about 3 minutes on llvmpipe with 2 cores);
//! `LTS_BENCH_QUICK=1` runs the small shapes and configs only; arguments pick sections
//! (`cargo bench --bench wgpu -- plans`: any of `matmul`, `plans`, `backends`; all by default).

use std::sync::Arc;
use std::time::Instant;

use lts::arch::{Arch, DEFAULT_MAX_PARAMS};
use lts::backend::ort::OrtOptions;
use lts::backend::wgpu::kernels::{
    download, encode_pass, Alloc, Epilogue, Kernels, MatmulKernel, MatmulShape, Timestamps,
};
use lts::backend::wgpu::model::{Capacity, GpuModel};
use lts::backend::wgpu::{Gpu, GpuTimer, Precision, WgpuOptions};
use lts::job::{self, BackendSpec, Job, Mode, WeightsSpec, Workload};
use lts::measure::Protocol;
use lts::weights::Weights;
use lts::workload::Logits;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Median seconds of one product `[m, k] x B` with `kernel`.
fn time_matmul(
    gpu: &Gpu,
    k: &Kernels,
    kernel: MatmulKernel,
    s: MatmulShape,
    ts: Option<&Timestamps>,
) -> anyhow::Result<f64> {
    let alloc = Alloc::new(gpu);
    let eb = k.elem_bytes() as u64;
    let a = alloc.init("a", &k.encode(&vec![0.01; s.m * s.k]))?;
    let b = alloc.init("b", &k.encode(&vec![0.02; s.k * s.n]))?;
    let c = alloc.zeroed("c", (s.m * s.n) as u64 * eb)?;
    let d = k.matmul(gpu, "bench", kernel, s, Epilogue::default(), &a, &b, &b, &c);
    let mut times = Vec::new();
    for i in 0..9 {
        let t0 = Instant::now();
        gpu.queue
            .submit([encode_pass(gpu, std::slice::from_ref(&d), ts)]);
        gpu.wait()?;
        let secs = match ts {
            Some(t) => t.read(gpu)?.as_secs_f64(),
            None => t0.elapsed().as_secs_f64(),
        };
        if i >= 2 {
            times.push(secs);
        }
    }
    // Sanity: every output is K * 0.01 * 0.02.
    let out = k.decode(&download(gpu, &c, eb * 4)?);
    let want = s.k as f32 * 0.0002;
    anyhow::ensure!(
        (out[0] - want).abs() <= 1e-2 * want,
        "{kernel:?} computed {} instead of {want}",
        out[0]
    );
    Ok(median(times))
}

fn matmuls(gpu: &Gpu, quick: bool) -> anyhow::Result<()> {
    let ts = gpu.has_timestamps.then(|| Timestamps::new(gpu));
    let mut precisions = vec![Precision::F32];
    if gpu.has_f16 {
        precisions.push(Precision::F16);
    }
    let mut shapes = vec![(192, 768, 768), (192, 3072, 768), (256, 256, 256)];
    if !quick {
        shapes.push((512, 512, 512));
        shapes.push((192, 768, 3072));
    }
    println!(
        "\nmatmul on {} (timer: {})",
        gpu.report.summary(),
        if ts.is_some() {
            "GPU timestamps"
        } else {
            "wall clock"
        }
    );
    println!(
        "{:<5} {:>18} {:>8} {:>12} {:>12} {:>12} {:>12} {:>8}",
        "prec", "M x N x K", "B", "naive ms", "tiled ms", "naive GF/s", "tiled GF/s", "speedup"
    );
    for p in precisions {
        let k = Kernels::new(gpu, p)?;
        let overhead = time_matmul(
            gpu,
            &k,
            MatmulKernel::Naive,
            MatmulShape::dense(1, 4, 4, false),
            ts.as_ref(),
        )?;
        for &(m, n, kk) in &shapes {
            for trans_b in [false, true] {
                let s = MatmulShape::dense(m, n, kk, trans_b);
                let naive = time_matmul(gpu, &k, MatmulKernel::Naive, s, ts.as_ref())?;
                let tiled = time_matmul(gpu, &k, MatmulKernel::Tiled, s, ts.as_ref())?;
                let flop = 2.0 * (m * n * kk) as f64;
                println!(
                    "{:<5} {:>18} {:>8} {:>12.3} {:>12.3} {:>12.2} {:>12.2} {:>7.2}x",
                    p.to_string(),
                    format!("{m} x {n} x {kk}"),
                    if trans_b { "[N,K]" } else { "[K,N]" },
                    naive * 1e3,
                    tiled * 1e3,
                    flop / naive / 1e9,
                    flop / tiled / 1e9,
                    naive / tiled
                );
            }
        }
        println!(
            "{:<5} per-dispatch floor (1 x 4 x 4 naive): {:.3} ms",
            p.to_string(),
            overhead * 1e3
        );
    }
    Ok(())
}

/// Milliseconds to record the prefill plan (`seq` tokens, last-position logits; 128 or half
/// the positions) and the decode plan of a few configs, and the dispatch counts.
fn plan_costs(gpu: &Arc<Gpu>, quick: bool) -> anyhow::Result<()> {
    let mut configs = vec![("gpt2-tiny", Arch::preset("gpt2-tiny")?)];
    configs.push((
        "llama-4L-256",
        Arch::from_json(
            r#"{"family":"llama","n_layer":4,"d_model":256,"d_inner":688,"n_head":8,
            "n_kv_head":2,"vocab_size":8192,"n_positions":512}"#,
        )?,
    ));
    if !quick {
        configs.push(("gpt2-small", Arch::preset("gpt2-small")?));
        configs.push(("smollm2-135m", Arch::preset("smollm2-135m")?));
    }
    println!("\nplan recording (one plan per (batch, seq); decode steps share one)");
    println!(
        "{:<14} {:>5} {:>16} {:>10} {:>16} {:>10}",
        "config", "seq", "prefill plan ms", "dispatches", "decode plan ms", "dispatches"
    );
    for (name, arch) in configs {
        let w = Weights::random(&arch, 0);
        let seq = 128.min(arch.n_positions / 2);
        let cap = Capacity {
            batch: 1,
            tokens: seq,
            positions: seq + 1,
            logits: Logits::Last,
        };
        let mut m = GpuModel::new(gpu.clone(), &arch, &w, Precision::F32, cap)?;
        let t = Instant::now();
        let np = m.dispatch_count(1, seq, 0)?;
        let prefill = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let nd = m.dispatch_count(1, 1, seq)?;
        let decode = t.elapsed().as_secs_f64();
        println!(
            "{:<14} {:>5} {:>16.3} {:>10} {:>16.3} {:>10}",
            name,
            seq,
            prefill * 1e3,
            np,
            decode * 1e3,
            nd
        );
    }
    Ok(())
}

fn backends(quick: bool) -> anyhow::Result<()> {
    let mid_llama = Arch::from_json(
        r#"{"family":"llama","n_layer":4,"d_model":256,"d_inner":688,"n_head":8,
            "n_kv_head":2,"vocab_size":8192,"n_positions":512}"#,
    )?;
    let mid_gpt2 = Arch::from_json(
        r#"{"family":"gpt2","n_layer":4,"d_model":256,"d_inner":[512,1024,768,1024],
            "n_head":[4,8,4,2],"vocab_size":8192,"n_positions":512}"#,
    )?;
    let mut configs = vec![
        ("gpt2-tiny", Arch::preset("gpt2-tiny")?, Mode::Prefill, 64),
        ("llama-tiny", Arch::preset("llama-tiny")?, Mode::Prefill, 64),
        ("gpt2-4L-256", mid_gpt2.clone(), Mode::Prefill, 128),
        ("llama-4L-256", mid_llama.clone(), Mode::Prefill, 128),
        (
            "llama-tiny",
            Arch::preset("llama-tiny")?,
            Mode::Generate,
            32,
        ),
    ];
    if !quick {
        configs.push(("gpt2-4L-256", mid_gpt2.clone(), Mode::Decode, 128));
        configs.push(("llama-4L-256", mid_llama.clone(), Mode::Decode, 128));
        configs.push(("gpt2-4L-256", mid_gpt2, Mode::Generate, 128));
        configs.push(("llama-4L-256", mid_llama, Mode::Generate, 128));
    }
    // Decode steps of a generate config.
    const NEW_TOKENS: usize = 16;
    let protocol = Protocol {
        warmup_s: 0.2,
        min_runs: 5,
        min_duration_s: 0.5,
        ..Protocol::default()
    };
    println!("\nwgpu vs ONNX Runtime (1 intra-op thread), median of the protocol {protocol:?}");
    println!(
        "{:<14} {:>8} {:>5} {:>11} {:>13} {:>11} {:>13} {:>10}",
        "config", "mode", "seq", "ort ms", "wgpu f32 ms", "ratio", "wgpu auto ms", "precision"
    );
    for (name, arch, mode, seq) in configs {
        let base = Job {
            quant: None,
            arch,
            weights: WeightsSpec::Random { seed: 0 },
            workload: Workload {
                mode,
                seq_len: seq,
                new_tokens: if mode == Mode::Generate {
                    NEW_TOKENS
                } else {
                    0
                },
                logits: Logits::Last,
                ..Workload::default()
            },
            protocol: protocol.clone(),
            backend: BackendSpec::Ort(OrtOptions::default()),
            max_params: DEFAULT_MAX_PARAMS,
            max_memory: None,
            thermal: Default::default(),
            device_profile: None,
        };
        let ort = job::execute(&base)?;
        let gpu_job = |precision| Job {
            backend: BackendSpec::Wgpu(WgpuOptions {
                adapter: None,
                precision,
                timer: GpuTimer::Auto,
            }),
            ..base.clone()
        };
        let f32r = job::execute(&gpu_job(Precision::F32))?;
        let auto = job::execute(&gpu_job(Precision::Auto))?;
        let o = ort.measurement.stats.median_ms;
        let g = f32r.measurement.stats.median_ms;
        println!(
            "{:<14} {:>8} {:>5} {:>11.3} {:>13.3} {:>10.2}x {:>13.3} {:>10}",
            name,
            format!("{mode:?}").to_lowercase(),
            seq,
            o,
            g,
            g / o,
            auto.measurement.stats.median_ms,
            auto.runtime
                .providers
                .join(" ")
                .split("precision ")
                .nth(1)
                .unwrap_or("?")
                .split(',')
                .next()
                .unwrap_or("?")
        );
    }
    println!(
        "ratio = wgpu f32 median / ort median (> 1: wgpu slower on this adapter); generate: \
         prompt of `seq` tokens + {NEW_TOKENS} greedy decode steps, wall clock"
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let quick = std::env::var_os("LTS_BENCH_QUICK").is_some();
    let picked: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let run = |section: &str| picked.is_empty() || picked.iter().any(|p| p == section);
    let gpu = Arc::new(Gpu::open(None)?);
    if run("matmul") {
        matmuls(&gpu, quick)?;
    }
    if run("plans") {
        plan_costs(&gpu, quick)?;
    }
    if run("backends") {
        backends(quick)?;
    }
    Ok(())
}
