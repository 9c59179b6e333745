//! Benchmark: cost of the default measurement protocol around the timed work.
//!
//! For configs from tiny to GPT-2 small (prefill, batch 1, seq 192, 1 thread: the LTS setting),
//! prints graph emission time, session creation time, first run + warm-up, timed work, and two
//! ratios measured in the same run:
//! - harness overhead = (wall time of the timed loop - sum of timed samples) / timed work:
//!   what the protocol itself adds inside the timed phase;
//! - setup overhead = (emission + session creation + first run + warm-up) / timed work:
//!   everything spent per candidate that is not a timed sample.
//!
//! Then, when Python `onnxruntime` is installed, runs `scripts/compare_ort_python.py` on
//! gpt2-small: `lts measure` vs a plain Python `InferenceSession` loop on the same file,
//! interleaved, reporting the median ratio (target: within +-5%).
//!
//! Run: `cargo bench --bench protocol` (about 2 minutes on 2 cores). `LTS_BENCH_QUICK=1` skips
//! gpt2-small and the Python comparison.

use std::process::Command;
use std::time::Instant;

use lts::arch::{Arch, DEFAULT_MAX_PARAMS};
use lts::backend::ort::OrtOptions;
use lts::job::{self, BackendSpec, Job, Mode, WeightsSpec, Workload};
use lts::measure::Protocol;

fn mid_gpt2() -> Arch {
    Arch::from_json(
        r#"{"family":"gpt2","n_layer":4,"d_model":512,"d_inner":[1024,2048,1536,2048],
            "n_head":[8,8,4,2],"vocab_size":50257,"n_positions":1024}"#,
    )
    .expect("valid arch")
}

fn main() -> anyhow::Result<()> {
    let quick = std::env::var_os("LTS_BENCH_QUICK").is_some();
    let mut configs: Vec<(&str, Arch)> = vec![
        ("gpt2-tiny", Arch::preset("gpt2-tiny")?),
        ("llama-tiny", Arch::preset("llama-tiny")?),
        ("gpt2-4L-512", mid_gpt2()),
    ];
    if !quick {
        configs.push(("smollm2-135m", Arch::preset("smollm2-135m")?));
        configs.push(("gpt2-small", Arch::preset("gpt2-small")?));
    }
    println!("default protocol: {:?}", Protocol::default());
    println!(
        "{:<14} {:>12} {:>9} {:>9} {:>9} {:>9} {:>10} {:>6} {:>9} {:>9} {:>9}",
        "config",
        "params",
        "emit ms",
        "sess ms",
        "first ms",
        "warm ms",
        "timed ms",
        "runs",
        "median",
        "harness%",
        "setup%"
    );
    for (name, arch) in configs {
        let seq_len = 192.min(arch.n_positions);
        let job = Job {
            quant: None,
            weights: WeightsSpec::Random { seed: 0 },
            workload: Workload {
                mode: Mode::Prefill,
                seq_len,
                ..Workload::default()
            },
            protocol: Protocol::default(),
            backend: BackendSpec::Ort(OrtOptions::default()),
            max_params: DEFAULT_MAX_PARAMS,
            max_memory: None,
            thermal: Default::default(),
            device_profile: None,
            arch,
        };
        let t0 = Instant::now();
        let r = job::execute(&job)?;
        let wall_ms = t0.elapsed().as_secs_f64() * 1e3;
        let m = &r.measurement;
        let harness = (m.timed_loop_ms - m.timed_sum_ms) / m.timed_sum_ms;
        let setup = (r.graph_emission_ms + m.session_creation_ms + m.first_run_ms + m.warmup_ms)
            / m.timed_sum_ms;
        println!(
            "{:<14} {:>12} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10.1} {:>6} {:>9.3} {:>8.3}% {:>8.1}%   (wall {:.0} ms)",
            name,
            lts::report::thousands(r.params.total),
            r.graph_emission_ms,
            m.session_creation_ms,
            m.first_run_ms,
            m.warmup_ms,
            m.timed_sum_ms,
            m.timed_runs,
            m.stats.median_ms,
            harness * 100.0,
            setup * 100.0,
            wall_ms
        );
    }
    if quick {
        return Ok(());
    }
    let has_python_ort = Command::new("python3")
        .args(["-c", "import onnxruntime, numpy"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !has_python_ort {
        println!("skipping the Python comparison: pip install onnxruntime==1.31.1 numpy");
        return Ok(());
    }
    println!("\nlts measure vs Python onnxruntime on the same file (interleaved pairs):");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/compare_ort_python.py");
    let status = Command::new("python3")
        .args([
            script,
            "--lts",
            env!("CARGO_BIN_EXE_lts"),
            "--preset",
            "gpt2-small",
        ])
        .args(["--seq-len", "192", "--pairs", "8", "--runs", "8"])
        .status()?;
    if !status.success() {
        println!("comparison outside tolerance (see above)");
    }
    Ok(())
}
