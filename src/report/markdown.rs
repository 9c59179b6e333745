//! `summary.md` of a search run: what was timed, the frontier table, the thermal paragraph,
//! the generation table, the hypervolume. From the run's in-memory description and rows.

use crate::search::config::EvaluatorSpec;
use crate::search::quantized::QuantRow;
use crate::search::store::{CandidateRow, RunInfo};
use crate::workload::{Mode, Workload};

/// The thermal paragraph of `summary.md`: how many candidates were measured throttled, the
/// temperature range seen, or that this machine exposes nothing to check.
fn thermal_summary(all: &[CandidateRow], profile: Option<&str>) -> String {
    let profile = profile.map_or(String::new(), |p| format!(" (device profile `{p}`)"));
    let hot: Vec<&str> = all
        .iter()
        .filter(|r| r.throttled)
        .map(|r| r.arch_id.as_str())
        .collect();
    let temps: Vec<f32> = all
        .iter()
        .flat_map(|r| [r.temp_before_c, r.temp_after_c])
        .flatten()
        .collect();
    let clocks = all
        .iter()
        .any(|r| r.cpu_mhz_before.is_some() || r.cpu_mhz_after.is_some());
    if !hot.is_empty() {
        return format!(
            "**Thermal{profile}: {} of {} candidates were measured throttled or down-clocked**; their latencies are pessimistic. See the `throttled` and `thermal_flags` columns of `candidates.csv` (first: `{}`).",
            hot.len(),
            all.len(),
            hot[0]
        );
    }
    if temps.is_empty() && !clocks {
        return format!(
            "Thermal{profile}: this machine exposes no thermal zone or CPU clock, so throttling could not be checked (see `missing` in `measurements.jsonl`)."
        );
    }
    let range = match (
        temps.iter().copied().reduce(f32::min),
        temps.iter().copied().reduce(f32::max),
    ) {
        (Some(lo), Some(hi)) => format!(", temperatures {lo:.1}-{hi:.1} C"),
        _ => String::new(),
    };
    format!("Thermal{profile}: no throttling or clock drop seen{range}.")
}

/// One sentence on what a latency in this run is, for readers comparing it with other tools.
fn timed_what(w: &Workload) -> &'static str {
    match (w.mode, w.logits) {
        (Mode::Prefill, crate::workload::Logits::Last) => {
            "the prompt's forward with logits of its last position only: the time before the first token, as a serving engine computes it"
        }
        (Mode::Prefill, crate::workload::Logits::All) => {
            "the prompt's forward with logits of every position: the work of scoring text (perplexity), more than a first token needs"
        }
        (Mode::Decode, _) => "one generated token with a KV cache already holding the context",
        (Mode::Generate, _) => {
            "a whole generation, end to end: prefill of the prompt, then greedy decode steps with the growing KV cache"
        }
    }
}

/// `summary.md`: the frontier table, the plot and, with `--quantize`, the quantized variants.
pub fn summary(
    info: &RunInfo,
    front: &[CandidateRow],
    all: &[CandidateRow],
    quant: &[QuantRow],
) -> String {
    use std::fmt::Write;
    let n = all.len();
    let c = &info.config;
    let mut s = String::new();
    let _ = writeln!(s, "# LTS search `{}`\n", info.run_id);
    let _ = writeln!(
        s,
        "Space `{}` ({}), algorithm `{:?}`, seed {}, timed: {} (`{}`), batch {}, runtime {}, status **{}**.\n",
        c.space.name,
        c.space.family,
        c.algo,
        c.seed,
        c.workload.describe(),
        timed_what(&c.workload),
        c.workload.batch,
        if info.runtime.is_empty() {
            "none yet (nothing measured)"
        } else {
            &info.runtime
        },
        info.status
    );
    let measured = match c.evaluator {
        EvaluatorSpec::Measure { .. } => "measured",
        EvaluatorSpec::CostModel { .. } if !c.agents.is_empty() => {
            "evaluated by the cost model on the boards, a fleet dry run (NO measurement: each run slept FLOPs / assumed throughput)"
        }
        EvaluatorSpec::CostModel { .. } => {
            "evaluated by the cost model (NO measurement: latencies are FLOPs / assumed throughput)"
        }
    };
    let _ = writeln!(
        s,
        "{} candidates {measured}; {} on the Pareto frontier of decoder parameters (the LTS perplexity proxy: more is better) vs median latency and peak memory, of which {} are also on the two-objective params-latency frontier drawn in the plot.{}\n",
        n,
        front.len(),
        front.iter().filter(|r| r.on_latency_frontier).count(),
        if measured == "measured" {
            " Frontier statistics come from the full protocol."
        } else {
            ""
        }
    );
    if let Some(reason) = &info.stop_reason {
        let _ = writeln!(
            s,
            "**The run stopped before its end** ({reason}); continue it with `lts search --resume <this folder>`.\n"
        );
    }
    if matches!(c.evaluator, EvaluatorSpec::Measure { .. }) {
        let _ = writeln!(s, "{}\n", thermal_summary(all, c.device_profile.as_deref()));
    }
    let _ = writeln!(s, "![frontier](frontier.svg)\n");
    let _ = writeln!(
        s,
        "| arch id | params-latency front | layers | d_model | d_inner | heads | decoder params | median ms | 95% CI ms | p90 ms | peak MiB |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
    for r in front {
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} | {} | {} | {:.3} | {:.3}–{:.3} | {:.3} | {} |",
            r.arch_id,
            if r.on_latency_frontier { "yes" } else { "" },
            r.n_layer,
            r.d_model,
            r.d_inner.replace(';', " "),
            r.n_head.replace(';', " "),
            crate::util::format::thousands(r.decoder_params),
            r.latency_median_ms,
            r.latency_ci_low_ms,
            r.latency_ci_high_ms,
            r.latency_p90_ms,
            crate::util::format::mib_number(r.peak_memory_bytes)
        );
    }
    if c.workload.mode == Mode::Generate {
        let _ = writeln!(
            s,
            "\nGeneration of {} prompt + {} new tokens (median ms above is end to end):\n\n| arch id | time to first token ms | tokens/s after it |\n|---|---|---|",
            c.workload.seq_len, c.workload.new_tokens
        );
        for r in front {
            let _ = writeln!(
                s,
                "| `{}` | {} | {} |",
                r.arch_id,
                r.ttft_ms.map_or("-".into(), |v| format!("{v:.3}")),
                r.tokens_per_s.map_or("-".into(), |v| format!("{v:.1}"))
            );
        }
    }
    if !c.quantize.is_empty() {
        s.push_str(&quant_section(&c.quantize, quant));
    }
    if let Some(last) = info.iterations.last() {
        let _ = writeln!(
            s,
            "\nHypervolume (normalised, params x latency): {:.4} after iteration {}. Files: `candidates.csv` (every candidate), `frontier.csv`, `measurements.jsonl` (every measurement with raw samples), `run.json` (settings, device, per-iteration log).",
            last.hypervolume, last.iteration
        );
    }
    let _ = writeln!(
        s,
        "\nExport a frontier model: `lts export --from <this folder> --arch-id <id>`."
    );
    s
}

/// The quantized variants of the frontier (`lts search --quantize`): one row per member and
/// scheme, as in `quant.csv`.
fn quant_section(schemes: &[crate::quant::Scheme], rows: &[QuantRow]) -> String {
    use std::fmt::Write;
    let list: Vec<String> = schemes.iter().map(|q| format!("`{q}`")).collect();
    let mut s = format!(
        "\n## Quantized variants ({})\n\nEach frontier member timed interleaved with its own fp32 graph (same inputs, one loop, full protocol); fidelity against fp32 on seeded sequences disjoint from the calibration ones (random weights: no perplexity). On the plot, each variant is linked to its fp32 point. Files: `quant.csv`, `quant.jsonl` (raw samples).\n\n",
        list.join(", ")
    );
    if rows.is_empty() {
        s.push_str("No frontier member has been quantized yet.\n");
        return s;
    }
    let _ = writeln!(
        s,
        "| arch id | scheme | decoder params | median ms | fp32 median ms | speedup | MiB | fp32 MiB | peak MiB | SQNR dB | KLD mean | KLD p99 | top-1 % | scheme front |"
    );
    let _ = writeln!(
        s,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| `{}` | `{}` | {} | {:.3} | {:.3} | {:.2}x | {} | {} | {} | {:.1} | {:.2e} | {:.2e} | {:.1} | {} |",
            r.arch_id,
            r.scheme,
            crate::util::format::thousands(r.decoder_params),
            r.latency_median_ms,
            r.fp32_median_ms,
            r.speedup,
            crate::util::format::mib_number(Some(r.model_bytes)),
            crate::util::format::mib_number(Some(r.fp32_model_bytes)),
            crate::util::format::mib_number(r.peak_memory_bytes),
            r.sqnr_db,
            r.kld_mean,
            r.kld_p99,
            r.top1_pct,
            if r.on_scheme_frontier { "yes" } else { "" }
        );
    }
    s
}
