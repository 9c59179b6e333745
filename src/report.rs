//! Human-readable tables for the terminal (JSON output is the serde form of the same structs).

use std::fmt::Write;

use crate::arch::Arch;
use crate::job::JobResult;
use crate::thermal::{ThermalRecord, ThermalSample};

/// Formats an integer with thousands separators: `85056000` -> `85,056,000`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Formats bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Optional bytes as a bare MiB number with one decimal (`12.5`), or `n/a`: table cells.
pub fn mib_number(bytes: Option<u64>) -> String {
    bytes
        .map(|b| format!("{:.1}", b as f64 / (1024.0 * 1024.0)))
        .unwrap_or_else(|| "n/a".into())
}

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
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<8} {:>11} {:>11} {:>11} {:>7} {:>6} {:>12} {:>12}  runtime",
        "backend", "median ms", "p90 ms", "min ms", "CV %", "valid", "peak RSS", "GPU buffers"
    );
    let base = results.first().map(|r| r.measurement.stats.median_ms);
    for r in results {
        let m = &r.measurement;
        let _ = writeln!(
            s,
            "{:<8} {:>11.3} {:>11.3} {:>11.3} {:>7.2} {:>6} {:>12} {:>12}  {} {} {}",
            r.backend.name(),
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
            r.runtime.name,
            r.runtime.version,
            r.runtime.providers.join("; ")
        );
    }
    if let (Some(b), Some(last)) = (base, results.last()) {
        if results.len() == 2 {
            let _ = writeln!(
                s,
                "median ratio {}/{}: {:.3} (timers: {} / {})",
                last.backend.name(),
                results[0].backend.name(),
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
    let m = &r.measurement;
    let st = &m.stats;
    let mut s = String::new();
    let w = &r.workload;
    let _ = writeln!(
        s,
        "arch {}  decoder params {}  total {}",
        r.arch_id,
        thousands(r.params.decoder),
        thousands(r.params.total)
    );
    let backend = match &r.backend {
        crate::job::BackendSpec::Ort(o) => format!(
            "{} {} ({}), {} intra / {} inter threads, opt {:?}",
            r.runtime.name,
            r.runtime.version,
            o.provider,
            o.intra_threads,
            o.inter_threads,
            o.opt_level
        ),
        crate::job::BackendSpec::Wgpu(_) => format!(
            "{} {}: {}",
            r.runtime.name,
            r.runtime.version,
            r.runtime.providers.join("; ")
        ),
    };
    let _ = writeln!(s, "{}, batch {}  |  {backend}", w.describe(), w.batch);
    let _ = writeln!(
        s,
        "weights {}  model {}",
        r.weights_source,
        mib(r.model_bytes)
    );
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
    if let Some(t) = &r.thermal {
        s.push_str(&thermal_record(t));
    }
    for f in flags {
        let _ = writeln!(s, "{f}");
    }
    s
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
}
