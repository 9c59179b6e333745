//! Tables and lines for the terminal: `lts params`, `lts measure`, `lts device`, the outcome of
//! `lts search`, the device profile summary (JSON output is the serde form of the same structs).

use std::fmt::Write;

use crate::arch::Arch;
use crate::backend::wgpu::AdapterReport;
use crate::backend::RuntimeInfo;
use crate::device::DeviceInfo;
use crate::eval::EvalResult;
use crate::fidelity::QuantResult;
use crate::job::JobResult;
use crate::profile::DeviceProfile;
use crate::search::Outcome;
use crate::thermal::{ThermalRecord, ThermalSample};
use crate::util::format::{mib, mib_number, thousands};

/// The `lts params` table.
pub fn params_table(arch: &Arch, seq_len: usize) -> String {
    let p = arch.params();
    let mut s = String::new();
    let _ = writeln!(s, "arch            {}", arch.id());
    let _ = writeln!(
        s,
        "family          {}  (n_layer {}, d_model {}, vocab {}, positions {})",
        arch.family, arch.n_layer, arch.d_model, arch.vocab_size, arch.n_positions
    );
    let _ = writeln!(s, "d_inner         {:?}", arch.d_inner);
    let _ = writeln!(s, "n_head          {:?}", arch.n_head);
    if arch.n_kv_head != arch.n_head {
        let _ = writeln!(s, "n_kv_head       {:?}", arch.n_kv_head);
    }
    let _ = writeln!(
        s,
        "decoder params  {:>15}   (LTS proxy: non-embedding)",
        thousands(p.decoder)
    );
    let _ = writeln!(s, "embedding       {:>15}", thousands(p.embedding));
    let _ = writeln!(
        s,
        "total params    {:>15}   ({} as fp32)",
        thousands(p.total),
        mib(p.total * 4)
    );
    let _ = writeln!(
        s,
        "FLOPs/token     {:>15}   (forward, context {seq_len})",
        thousands(arch.flops_per_token(seq_len))
    );
    s
}

/// Side-by-side latency and memory of the same job on several backends (`--backend ort,wgpu`).
pub fn backend_comparison(results: &[JobResult]) -> String {
    let label = |r: &JobResult| match &r.quant {
        Some(q) => format!("{} {q}", r.backend.name()),
        None => r.backend.name().to_string(),
    };
    let width = results
        .iter()
        .map(|r| label(r).len())
        .max()
        .unwrap_or(7)
        .max(7);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<width$} {:>11} {:>11} {:>11} {:>7} {:>6} {:>12} {:>12} {:>9}  runtime",
        "backend",
        "median ms",
        "p90 ms",
        "min ms",
        "CV %",
        "valid",
        "peak RSS",
        "GPU buffers",
        "speedup"
    );
    let base = results.first().map(|r| r.measurement.stats.median_ms);
    for r in results {
        let m = &r.measurement;
        let _ = writeln!(
            s,
            "{:<width$} {:>11.3} {:>11.3} {:>11.3} {:>7.2} {:>6} {:>12} {:>12} {:>8.2}x  {} {} {}",
            label(r),
            m.stats.median_ms,
            m.stats.p90_ms,
            m.stats.min_ms,
            m.stats.cv * 100.0,
            if m.valid { "yes" } else { "NO" },
            m.memory
                .peak_delta_bytes
                .map(mib)
                .unwrap_or_else(|| "n/a".into()),
            m.memory
                .gpu_buffer_bytes
                .map(mib)
                .unwrap_or_else(|| "-".into()),
            base.map_or(f64::NAN, |b| b / m.stats.median_ms),
            r.runtime.name,
            r.runtime.version,
            r.runtime.providers.join("; ")
        );
    }
    if results.iter().any(|r| r.measurement.interleaved_with > 1) {
        let _ = writeln!(
            s,
            "measured interleaved: one timed loop, each round runs every variant once (order rotated)"
        );
    }
    if let (Some(b), Some(last)) = (base, results.last()) {
        if results.len() == 2 {
            let _ = writeln!(
                s,
                "median ratio {}/{}: {:.3} (timers: {} / {})",
                label(last),
                label(&results[0]),
                last.measurement.stats.median_ms / b,
                last.measurement.timer,
                results[0].measurement.timer
            );
        }
    }
    s
}

/// The `lts measure` table.
pub fn measurement_table(r: &JobResult) -> String {
    let mut s = String::new();
    let w = &r.workload;
    let _ = writeln!(
        s,
        "arch {}  decoder params {}  total {}",
        r.arch_id,
        thousands(r.params.decoder),
        thousands(r.params.total)
    );
    let backend = r.backend.backend().describe(&r.runtime);
    let _ = writeln!(s, "{}, batch {}  |  {backend}", w.describe(), w.batch);
    let _ = writeln!(
        s,
        "weights {}  model {}",
        r.weights_source,
        mib(r.model_bytes)
    );
    timing_lines(&mut s, r);
    result_lines(&mut s, r);
    if let Some(t) = &r.thermal {
        s.push_str(&thermal_record(t));
    }
    for f in flags(r) {
        let _ = writeln!(s, "{f}");
    }
    s
}

/// The phases of a measurement: emission, session, first run, warm-up, timed loop; then the
/// latency statistics.
fn timing_lines(s: &mut String, r: &JobResult) {
    let m = &r.measurement;
    let st = &m.stats;
    let _ = writeln!(s);
    let _ = writeln!(s, "graph emission      {:>10.1} ms", r.graph_emission_ms);
    let _ = writeln!(s, "session creation    {:>10.1} ms", m.session_creation_ms);
    let _ = writeln!(s, "first run           {:>10.2} ms", m.first_run_ms);
    let _ = writeln!(
        s,
        "warm-up             {:>10.1} ms ({} runs)",
        m.warmup_ms, m.warmup_runs
    );
    let _ = writeln!(
        s,
        "timed               {:>10.1} ms ({} runs, loop wall {:.1} ms, timer: {})",
        m.timed_sum_ms, m.timed_runs, m.timed_loop_ms, m.timer
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "latency (ms)   mean {:.3}  median {:.3}  [{:.0}% CI {:.3} .. {:.3}]",
        st.mean_ms,
        st.median_ms,
        st.median_ci_confidence * 100.0,
        st.median_ci_low_ms,
        st.median_ci_high_ms
    );
    let _ = writeln!(
        s,
        "               p90 {:.3}{}  p95 {:.3}  p99 {:.3}{}",
        st.p90_ms,
        if st.p90_enough_samples { "" } else { "*" },
        st.p95_ms,
        st.p99_ms,
        if st.p99_enough_samples { "" } else { "*" }
    );
    let _ = writeln!(
        s,
        "               min {:.3}  max {:.3}  std {:.3}  CV {:.2}%",
        st.min_ms,
        st.max_ms,
        st.std_ms,
        st.cv * 100.0
    );
}

/// Precision, throughput (or the generation's first token and tokens/s), memory.
fn result_lines(s: &mut String, r: &JobResult) {
    let m = &r.measurement;
    let st = &m.stats;
    let w = &r.workload;
    let _ = writeln!(s, "precision      {}", m.precision_summary());
    match &r.generation {
        Some(g) => {
            let _ = writeln!(
                s,
                "generation     time to first token {:.3} ms (median; p90 {:.3})  then {:.3} ms/token = {:.1} tokens/s",
                g.first_token.median_ms, g.first_token.p90_ms, g.ms_per_token, g.tokens_per_s
            );
            let _ = writeln!(
                s,
                "               end to end {} prompt + {} new tokens: {:.3} ms  {:.2} GFLOP/s",
                g.prompt_tokens,
                g.new_tokens,
                st.median_ms,
                r.flops_per_run as f64 / (st.median_ms / 1e3) / 1e9
            );
        }
        None => {
            let tokens = w.batch * w.first_tokens();
            let _ = writeln!(
                s,
                "throughput     {:.1} tokens/s   {:.2} GFLOP/s",
                tokens as f64 / (st.median_ms / 1e3),
                r.flops_per_run as f64 / (st.median_ms / 1e3) / 1e9
            );
        }
    }
    let mem = &m.memory;
    let _ = writeln!(
        s,
        "peak memory    {}  (process peak {}; {})",
        mem.peak_delta_bytes
            .map(mib)
            .unwrap_or_else(|| "not available".into()),
        mem.peak_rss_bytes.map(mib).unwrap_or_else(|| "n/a".into()),
        mem.method
    );
    if let Some(b) = mem.gpu_buffer_bytes {
        let _ = writeln!(
            s,
            "GPU buffers    {}  (weights, activations and KV cache, allocated up front)",
            mib(b)
        );
    }
}

/// The warnings under a measurement: invalid, noisy, imprecise, outliers, too few samples.
fn flags(r: &JobResult) -> Vec<String> {
    let m = &r.measurement;
    let st = &m.stats;
    let mut flags = Vec::new();
    if !m.valid {
        flags.push(format!(
            "INVALID: {}",
            m.invalid_reason.as_deref().unwrap_or("protocol not met")
        ));
    }
    if st.noisy {
        flags.push(format!(
            "NOISY: CV {:.1}% above the {:.1}% threshold",
            st.cv * 100.0,
            m.protocol.cv_threshold * 100.0
        ));
    }
    if m.target_ci_reached == Some(false) {
        flags.push(format!("IMPRECISE: {}", m.precision_summary()));
    }
    if st.outliers > 0 {
        flags.push(format!(
            "{} outlier(s) flagged (kept; MAD z-score)",
            st.outliers
        ));
    }
    if !st.p90_enough_samples {
        flags.push(format!(
            "* fewer samples ({}) than LoadGen needs for a p90 (64) / p99 (662) estimate",
            st.n
        ));
    }
    flags
}

/// One sample as `48.7 C (cpu-thermal), 1800 MHz (performance)`, with "n/a" for what is missing.
fn sample_brief(t: Option<f32>, sample: &ThermalSample) -> String {
    let temp = t.map_or("temperature n/a".to_string(), |t| format!("{t:.1} C"));
    let clock = sample
        .fastest_khz()
        .map_or("clock n/a".to_string(), |k| format!("{} MHz", k / 1000));
    let gov = sample.governors();
    let mut out = format!("{temp}, {clock}");
    if !gov.is_empty() {
        out.push_str(&format!(" ({})", gov.join("/")));
    }
    if let Some(b) = sample.throttle {
        out.push_str(&format!(", throttled=0x{:x}", b.0));
    }
    if let Some(m) = &sample.power_mode {
        out.push_str(&format!(", power mode {m}"));
    }
    out
}

/// The thermal lines of a measurement: before/after state, cool-down, flags, missing sensors.
pub fn thermal_record(t: &ThermalRecord) -> String {
    let mut s = String::new();
    if let Some(c) = &t.cooldown {
        let _ = writeln!(
            s,
            "cool-down      {:.1} -> {:.1} C in {:.1} s (target {:.1} C{})",
            c.start_c,
            c.end_c,
            c.waited_s,
            c.target_c,
            if c.reached { "" } else { ", NOT reached" }
        );
    }
    let _ = writeln!(
        s,
        "thermal        before {}",
        sample_brief(t.temp_before_c, &t.before)
    );
    let _ = writeln!(
        s,
        "               after  {}",
        sample_brief(t.temp_after_c, &t.after)
    );
    for f in &t.flags {
        let _ = writeln!(s, "THROTTLED: {f}");
    }
    if !t.after.missing.is_empty() {
        let _ = writeln!(s, "not measured   {}", t.after.missing.join("; "));
    }
    s
}

/// `lts device`'s thermal section: board model, every zone, per-core clocks, throttle bits,
/// power mode, and what is missing.
pub fn thermal_sample(sample: &ThermalSample, board_model: Option<&str>) -> String {
    const NA: &str = "not available";
    let mut s = String::new();
    let _ = writeln!(s, "board model:       {}", board_model.unwrap_or(NA));
    if sample.zones.is_empty() {
        let _ = writeln!(s, "thermal zones:     {NA}");
    } else {
        let _ = writeln!(s, "thermal zones:     {}", sample.zones.len());
        for z in &sample.zones {
            let trip = z
                .passive_trip_c
                .map_or(String::new(), |t| format!(" (passive trip {t:.1} C)"));
            let _ = writeln!(s, "  {} {}: {:.1} C{trip}", z.zone, z.kind, z.celsius);
        }
    }
    if sample.cpus.is_empty() {
        let _ = writeln!(s, "cpu clocks:        {NA}");
    } else {
        let _ = writeln!(s, "cpu clocks:");
        for c in &sample.cpus {
            let k = |v: Option<u64>| v.map_or("n/a".to_string(), |v| format!("{}", v / 1000));
            let _ = writeln!(
                s,
                "  cpu{}: {} MHz (limit {}, max {}), {}",
                c.cpu,
                k(c.cur_khz),
                k(c.policy_max_khz),
                k(c.hw_max_khz),
                c.governor.as_deref().unwrap_or("no governor")
            );
        }
    }
    let throttle = match sample.throttle {
        None => NA.to_string(),
        Some(b) => {
            let now = b.now();
            let past = b.occurred();
            format!(
                "0x{:x} (now: {}; since boot: {})",
                b.0,
                if now.is_empty() {
                    "none".to_string()
                } else {
                    now.join(", ")
                },
                if past.is_empty() {
                    "none".to_string()
                } else {
                    past.join(", ")
                }
            )
        }
    };
    let _ = writeln!(s, "throttle bits:     {throttle}");
    let _ = writeln!(
        s,
        "power mode:        {}",
        sample.power_mode.as_deref().unwrap_or(NA)
    );
    for m in &sample.missing {
        let _ = writeln!(s, "missing:           {m}");
    }
    s
}

/// The `lts device` table: `key: value` lines with aligned values (missing values read "not
/// available"), the runtime `lts device` loaded (or `None`), then the wgpu adapters as `--adapter
/// N` numbers them.
pub fn device_table(
    info: &DeviceInfo,
    runtime: Option<&RuntimeInfo>,
    gpu_adapters: &[AdapterReport],
) -> String {
    const NA: &str = "not available";
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| NA.to_string());
    let gib = |b: u64| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64);
    let freq = if info.cpu_freq_mhz.iter().all(|&f| f == 0) {
        NA.to_string()
    } else {
        let known: Vec<u64> = info
            .cpu_freq_mhz
            .iter()
            .copied()
            .filter(|&f| f > 0)
            .collect();
        let (lo, hi) = (
            known.iter().min().copied().unwrap_or(0),
            known.iter().max().copied().unwrap_or(0),
        );
        let range = if lo == hi {
            format!("{lo} MHz")
        } else {
            format!("{lo}-{hi} MHz")
        };
        format!(
            "{range} ({} of {} cores reported)",
            known.len(),
            info.cpu_freq_mhz.len()
        )
    };
    let temps = if info.temperatures.is_empty() {
        NA.to_string()
    } else {
        info.temperatures
            .iter()
            .map(|t| format!("{} {:.1} C", t.label, t.celsius))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let runtime = match runtime {
        None => NA.to_string(),
        Some(r) => {
            let mut s = format!("{} {}", r.name, r.version);
            if let Some(lib) = &r.library {
                s.push_str(&format!(" ({lib})"));
            }
            if !r.providers.is_empty() {
                s.push_str(&format!(", providers: {}", r.providers.join(", ")));
            }
            s
        }
    };
    let rows: Vec<(&str, String)> = vec![
        ("hostname", opt(&info.hostname)),
        ("os", opt(&info.os)),
        ("os version", opt(&info.os_version)),
        ("kernel", opt(&info.kernel)),
        ("arch", info.arch.clone()),
        ("cpu", opt(&info.cpu_brand)),
        (
            "physical cores",
            info.physical_cores
                .map(|n| n.to_string())
                .unwrap_or_else(|| NA.to_string()),
        ),
        ("logical cores", info.logical_cores.to_string()),
        ("cpu frequency", freq),
        (
            "cpu max frequency",
            info.cpu_max_freq_khz
                .map(|k| format!("{} MHz", k / 1000))
                .unwrap_or_else(|| NA.to_string()),
        ),
        ("governor", opt(&info.governor)),
        ("memory total", gib(info.total_memory_bytes)),
        ("memory available", gib(info.available_memory_bytes)),
        ("temperatures", temps),
        ("runtime", runtime),
        (
            "wgpu adapters",
            if gpu_adapters.is_empty() {
                "none found".to_string()
            } else {
                gpu_adapters.len().to_string()
            },
        ),
        ("collected at", info.collected_at.clone()),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows {
        out.push_str(&format!("{:<w$} {v}\n", format!("{k}:"), w = width + 1));
    }
    for a in gpu_adapters {
        out.push_str(&format!("  {}\n", a.summary()));
        out.push_str(&format!(
            "     max buffer {} MiB, {} invocations/workgroup, {} workgroups/dimension, id {}\n",
            a.max_buffer_size >> 20,
            a.max_invocations,
            a.max_workgroups_per_dim,
            a.vendor_device
        ));
    }
    out
}

/// The line printed (on stderr) when a device profile is applied.
pub fn profile_summary(p: &DeviceProfile) -> String {
    let t = &p.thermal;
    let throttle = t
        .throttle_temp_c
        .map_or("the zones' passive trip points".to_string(), |v| {
            format!("{v:.0} C")
        });
    let cooldown = t.cooldown_temp_c.map_or("no cool-down".to_string(), |v| {
        format!("cool-down to {v:.0} C")
    });
    format!(
        "device profile {}: {} intra threads, zones {}, throttle point {throttle}, {cooldown}",
        p.name,
        p.ort
            .intra_threads
            .map_or("default".to_string(), |n| n.to_string()),
        if t.zones.is_empty() {
            "all".to_string()
        } else {
            t.zones.join(",")
        },
    )
}

/// What `lts search` prints at the end: counts, time, and the params-latency frontier table.
pub fn search_outcome(outcome: &Outcome) -> String {
    let front = &outcome.frontier_rows;
    let mut s = String::new();
    let timed = if outcome.already_complete {
        "already complete: nothing measured, nothing changed".to_string()
    } else if outcome.timed_inference_s > 0.0 {
        format!(
            "{:.0} s ({:.0}% in timed inference)",
            outcome.wall_s,
            100.0 * outcome.timed_inference_s / outcome.wall_s.max(1e-9)
        )
    } else {
        format!("{:.0} s, nothing timed", outcome.wall_s)
    };
    let _ = writeln!(
        s,
        "{} candidates ({} measured now, {} reused), frontier {} points, hypervolume {:.4}, {timed}",
        outcome.candidates,
        outcome.measured_now,
        outcome.reused,
        front.len(),
        outcome.hypervolume,
    );
    let _ = writeln!(
        s,
        "params-latency frontier ({} points; all {} frontier points with memory in frontier.csv):",
        front.iter().filter(|r| r.on_latency_frontier).count(),
        front.len()
    );
    let _ = writeln!(
        s,
        "{:<20} {:>7} {:>8} {:>15} {:>11} {:>10}",
        "arch id", "layers", "d_model", "decoder params", "median ms", "peak MiB"
    );
    for r in front.iter().filter(|r| r.on_latency_frontier) {
        let _ = writeln!(
            s,
            "{:<20} {:>7} {:>8} {:>15} {:>11.3} {:>10}",
            r.arch_id,
            r.n_layer,
            r.d_model,
            thousands(r.decoder_params),
            r.latency_median_ms,
            mib_number(r.peak_memory_bytes)
        );
    }
    if !outcome.quantized.is_empty() {
        let _ = writeln!(
            s,
            "quantized variants (timed interleaved with their fp32 graph; quant.csv):\n{:<20} {:<22} {:>11} {:>8} {:>9} {:>8} {:>7}",
            "arch id", "scheme", "median ms", "speedup", "SQNR dB", "top-1 %", "MiB"
        );
        for r in &outcome.quantized {
            let _ = writeln!(
                s,
                "{:<20} {:<22} {:>11.3} {:>7.2}x {:>9.1} {:>8.1} {:>7}",
                r.arch_id,
                r.scheme,
                r.latency_median_ms,
                r.speedup,
                r.sqnr_db,
                r.top1_pct,
                mib_number(Some(r.model_bytes))
            );
        }
    }
    let _ = writeln!(
        s,
        "report: {}",
        outcome.dir.join(crate::search::store::SUMMARY_MD).display()
    );
    s
}

/// One line of a quantization result (printed as each scheme finishes).
pub fn quant_line(r: &QuantResult) -> String {
    let f = &r.fidelity;
    format!(
        "{:.2} MB ({:.2}x smaller), SQNR {:.1} dB, KLD mean {:.2e} p99 {:.2e}, top-1 {:.1}%, quantized in {:.2} s",
        r.model_bytes as f64 / 1e6,
        r.fp32_bytes as f64 / r.model_bytes.max(1) as f64,
        f.sqnr_db,
        f.kld_mean,
        f.kld_p99,
        100.0 * f.top1_agreement,
        r.quantize_seconds
    )
}

/// The `lts quantize` table: size and fidelity of every scheme.
pub fn quant_table(results: &[QuantResult]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<28} {:>9} {:>8} {:>9} {:>10} {:>10} {:>7} {:>9} {:>8} {:>8}",
        "scheme",
        "MB",
        "smaller",
        "SQNR dB",
        "KLD mean",
        "KLD p99",
        "top-1%",
        "max err",
        "quant s",
        "calib s"
    );
    for r in results {
        let f = &r.fidelity;
        let _ = writeln!(
            s,
            "{:<28} {:>9.2} {:>7.2}x {:>9.1} {:>10.2e} {:>10.2e} {:>7.2} {:>9.4} {:>8.2} {:>8.2}",
            r.name,
            r.model_bytes as f64 / 1e6,
            r.fp32_bytes as f64 / r.model_bytes.max(1) as f64,
            f.sqnr_db,
            f.kld_mean,
            f.kld_p99,
            100.0 * f.top1_agreement,
            f.max_abs_error,
            r.quantize_seconds,
            r.calibrate_seconds
        );
    }
    let _ = writeln!(
        s,
        "ONNX Runtime runs (after its graph optimizations, prefill):"
    );
    for r in results {
        let ops: Vec<String> = r.ort_ops.iter().map(|(k, v)| format!("{k} x{v}")).collect();
        let _ = writeln!(s, "  {:<26} {}", r.name, ops.join(", "));
    }
    for r in results {
        for f in &r.files {
            let _ = writeln!(s, "wrote {}", f.display());
        }
    }
    s
}

/// The `lts eval` report: model, runtime, text, windows, both perplexities with their standard
/// errors, speed, and the `--kld-against` comparison.
pub fn eval_table(r: &EvalResult) -> String {
    let mut s = String::new();
    let name = |p: &str| {
        std::path::Path::new(p)
            .file_name()
            .map_or(p.to_string(), |f| f.to_string_lossy().into_owned())
    };
    let _ = writeln!(
        s,
        "model       {} ({}, {} params)",
        name(&r.model),
        r.arch_id,
        thousands(r.params)
    );
    let _ = writeln!(
        s,
        "runtime     {} {} ({})",
        r.runtime.name,
        r.runtime.version,
        r.runtime.providers.join(", ")
    );
    let _ = writeln!(
        s,
        "text        {}: {} bytes, {} tokens{}",
        name(&r.text),
        thousands(r.text_bytes),
        thousands(r.text_tokens_total as u64),
        if r.text_tokens < r.text_tokens_total {
            format!(" (first {} used)", thousands(r.text_tokens as u64))
        } else {
            String::new()
        }
    );
    let unscored = r
        .text_tokens
        .saturating_sub(r.windows_planned.saturating_sub(1) * r.stride + r.ctx.min(r.text_tokens));
    let _ = writeln!(
        s,
        "windows     {} x {} tokens, stride {}{}{}",
        r.windows,
        r.ctx,
        r.stride,
        if unscored > 0 {
            format!(", last {unscored} tokens shorter than a window not scored")
        } else {
            String::new()
        },
        if r.windows < r.windows_planned {
            format!(
                " (INTERRUPTED: {} of {} windows)",
                r.windows, r.windows_planned
            )
        } else {
            String::new()
        }
    );
    let ppl = |p: &crate::eval::Perplexity| match (p.ppl_se, p.interval95()) {
        (Some(se), Some((lo, hi))) => format!(
            "{:.4} +- {:.4} (95%: {:.3}..{:.3}) over {} tokens",
            p.ppl,
            se,
            lo,
            hi,
            thousands(p.tokens as u64)
        ),
        _ => format!("{:.4} over {} tokens", p.ppl, thousands(p.tokens as u64)),
    };
    let _ = writeln!(s, "PPL all     {}", ppl(&r.all));
    let _ = writeln!(
        s,
        "PPL half    {}  (second half of each window, as llama.cpp)",
        ppl(&r.half)
    );
    let _ = writeln!(
        s,
        "speed       {:.1} tokens/s ({} window tokens in {:.1} s of forwards; {:.1} s in all, load {:.1} s)",
        r.tokens_per_s,
        thousands((r.windows * r.ctx) as u64),
        r.forward_seconds,
        r.seconds,
        r.load_seconds
    );
    if let Some(k) = &r.kld {
        let _ = writeln!(
            s,
            "vs {}: reference PPL all {:.4}, half {:.4}",
            name(&k.against),
            k.ref_ppl_all,
            k.ref_ppl_half
        );
        let d = &k.divergence;
        let _ = writeln!(
            s,
            "KLD         mean {:.6}, median {:.6}, p99 {:.6}, max {:.6} nats over {} positions; top-1 agreement {:.2}%",
            d.kld_mean,
            d.kld_median,
            d.kld_p99,
            d.kld_max,
            thousands(d.positions as u64),
            100.0 * d.top1_agreement
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(85_056_000), "85,056,000");
        assert_eq!(thousands(124_439_808), "124,439,808");
    }

    #[test]
    fn params_table_shows_proxy() {
        let t = params_table(&Arch::preset("gpt2-small").unwrap(), 192);
        assert!(t.contains("85,056,000") && t.contains("124,439,808"), "{t}");
    }

    #[test]
    fn table_prints_missing_values_as_not_available() {
        let d = DeviceInfo {
            hostname: None,
            os: None,
            os_version: None,
            kernel: None,
            arch: "x86_64".into(),
            cpu_brand: None,
            physical_cores: None,
            logical_cores: 2,
            cpu_freq_mhz: vec![],
            cpu_max_freq_khz: None,
            governor: None,
            total_memory_bytes: 8 << 30,
            available_memory_bytes: 4 << 30,
            temperatures: vec![],
            collected_at: "2025-01-01T00:00:00Z".into(),
        };
        let t = device_table(&d, None, &[]);
        assert!(t.contains("cpu:               not available"), "{t}");
        assert!(t.contains("governor:          not available"), "{t}");
        assert!(t.contains("memory total:      8.0 GiB"), "{t}");
        // All values start in the same column.
        let cols: Vec<usize> = t
            .lines()
            .map(|l| {
                l.find(':').unwrap() + 1 + l[l.find(':').unwrap() + 1..].find(|c| c != ' ').unwrap()
            })
            .collect();
        assert!(cols.windows(2).all(|w| w[0] == w[1]), "{t}");
    }

    #[test]
    fn device_table_names_runtime_and_machine() {
        let mut d = DeviceInfo::collect();
        d.temperatures.push(crate::device::Temperature {
            label: "test sensor".into(),
            celsius: 42.5,
        });
        let rt = RuntimeInfo {
            name: "onnxruntime".into(),
            version: "1.31.1".into(),
            library: Some("/x/libonnxruntime.so".into()),
            providers: vec!["CPUExecutionProvider".into()],
        };
        let t = device_table(&d, Some(&rt), &[]);
        assert!(t.lines().any(|l| l.starts_with("cpu:")), "{t}");
        assert!(t.contains("logical cores:"));
        assert!(t.contains("onnxruntime 1.31.1"), "{t}");
        assert!(t.contains("test sensor 42.5 C"), "{t}");
        assert!(t.contains("wgpu adapters:     none found"), "{t}");
    }
}
