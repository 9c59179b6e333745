//! Benchmark: `--algo lts` against `--algo random` at equal budget on the quick space, measured
//! for real with ONNX Runtime on this machine.
//!
//! For each seed, runs both algorithms back to back (order alternating between seeds, so drift
//! of the shared machine does not favour one) and prints: candidates measured, wall time, the
//! share of wall time spent in timed inference vs everything else (graph emission, session
//! creation, warm-up, search bookkeeping), the final hypervolume, and hypervolume per wall-clock
//! second. Both runs of a seed are scored against one common reference point (the larger of the
//! two runs' references), so their hypervolumes compare.
//!
//! Run: `cargo bench --bench search` (about 4 minutes per seed on 2 cores);
//! `LTS_BENCH_SEEDS=3` for more seeds.

use std::path::Path;

use lts::search::pareto;
use lts::search::space::SearchSpace;
use lts::search::store::read_csv;
use lts::search::{self, Algo, RunInfo, RunOptions, SearchConfig};

struct Run {
    algo: Algo,
    info: RunInfo,
    outcome: search::Outcome,
}

fn common_hv(dir: &Path, ref_lat: f64, max_params: f64) -> f64 {
    let front = read_csv(&dir.join("frontier.csv")).expect("frontier.csv");
    let pts: Vec<Vec<f64>> = front
        .iter()
        .map(|r| {
            vec![
                1.0 - r.decoder_params as f64 / max_params,
                r.latency_median_ms / ref_lat,
            ]
        })
        .collect();
    pareto::hypervolume(&pts, &[1.0, 1.0])
}

fn main() -> anyhow::Result<()> {
    let seeds: u64 = std::env::var("LTS_BENCH_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let root = tempfile::tempdir()?;
    println!(
        "{:<6} {:>4} {:>6} {:>8} {:>10} {:>9} {:>9} {:>10}",
        "algo", "seed", "cands", "wall s", "timed s", "timed %", "HV", "HV/min"
    );
    let mut ratios = Vec::new();
    for seed in 0..seeds {
        let order = if seed % 2 == 0 {
            [Algo::Lts, Algo::Random]
        } else {
            [Algo::Random, Algo::Lts]
        };
        let mut runs = Vec::new();
        for algo in order {
            let space = SearchSpace::resolve("quick")?;
            let mut cfg = SearchConfig::for_space(space);
            cfg.algo = algo;
            cfg.seed = seed;
            let dir = root.path().join(format!("{algo:?}-{seed}"));
            let outcome = search::run_new(
                cfg,
                &dir,
                &RunOptions {
                    quiet: true,
                    ..RunOptions::default()
                },
            )?;
            let info: RunInfo = serde_json::from_slice(&std::fs::read(dir.join("run.json"))?)?;
            runs.push(Run {
                algo,
                info,
                outcome,
            });
        }
        let ref_lat = runs
            .iter()
            .map(|r| r.info.hv_reference.as_ref().map_or(0.0, |h| h.latency_ms))
            .fold(0.0, f64::max);
        let max_params = runs[0]
            .info
            .hv_reference
            .as_ref()
            .map_or(1.0, |h| h.max_decoder_params);
        let mut per_min = [0.0; 2];
        for r in &runs {
            let o = &r.outcome;
            let hv = common_hv(&o.dir, ref_lat, max_params);
            let rate = hv / (o.wall_s / 60.0);
            per_min[usize::from(r.algo == Algo::Random)] = rate;
            println!(
                "{:<6} {:>4} {:>6} {:>8.1} {:>10.1} {:>8.1}% {:>9.4} {:>10.4}",
                format!("{:?}", r.algo).to_lowercase(),
                seed,
                o.candidates,
                o.wall_s,
                o.timed_inference_s,
                100.0 * o.timed_inference_s / o.wall_s,
                hv,
                rate
            );
            let curve: Vec<String> = r
                .info
                .iterations
                .iter()
                .map(|l| format!("{:.3}", l.hypervolume))
                .collect();
            println!(
                "       hypervolume by iteration (own reference): {}",
                curve.join(" ")
            );
        }
        ratios.push(per_min[0] / per_min[1]);
    }
    println!(
        "HV per wall-clock minute, lts / random: {}",
        ratios
            .iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
