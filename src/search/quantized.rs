//! `lts search --quantize int8-dynamic,int4:b32`: once the search has its final frontier, every
//! frontier member is quantized with each scheme of [`SearchConfig::quantize`], timed
//! **interleaved with its own fp32 graph** (one loop, round-robin: [`job::execute_interleaved`],
//! the full protocol) and judged against it ([`crate::fidelity::quantize_one`]: SQNR of the
//! logits, KL divergence, top-1 agreement on seeded sequences disjoint from the calibration
//! ones).
//!
//! What is judged is what is timed: a timed int8-static job calibrates on
//! [`job::calibration_sequences`], and fidelity is computed on graphs calibrated on those very
//! sequences. The latency objective is the search's own (prefill, decode step or generation), so
//! a variant's speedup is the one a user of that workload sees.
//!
//! Nothing measured is lost: each member's record (fp32 and every variant, raw samples included)
//! is appended to [`super::store::QUANT_JOURNAL`] and flushed before the reports are rewritten;
//! `--resume` reuses the records it finds and quantizes only frontier members without one (a
//! member that joined the frontier in the resumed session, or one an interruption skipped).
//!
//! The phase itself is `Search::quantize_front` (in `quant_phase.rs`); this file holds what
//! the journal, the CSV and the reports share.
//!
//! The search's weights are seeded random, so there is no perplexity here: the `ppl` column of
//! `quant.csv` stays empty (`lts quantize --gguf ... --text` and `lts eval` measure it on a
//! trained checkpoint).
//!
//! [`SearchConfig::quantize`]: super::SearchConfig::quantize

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::objectives::Evaluation;
use super::pareto;
use crate::fidelity::Fidelity;
use crate::quant::Scheme;
use crate::util::write_atomic;

/// Seeded evaluation sequences each variant's fidelity is measured on (disjoint from the
/// calibration ones).
pub const EVAL_SEQUENCES: usize = 8;

/// One frontier member's quantized variants: one line of [`super::store::QUANT_JOURNAL`].
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct QuantRecord {
    /// Arch id of the frontier member.
    pub arch_id: String,
    /// Its decoder parameters (the proxy; quantization does not change it).
    pub decoder_params: u64,
    /// The fp32 graph, timed in the same interleaved loop as the variants.
    pub fp32: Evaluation,
    /// Bytes of the fp32 model (graphs and weights).
    pub fp32_model_bytes: u64,
    /// One per scheme, in [`super::SearchConfig::quantize`] order.
    pub variants: Vec<QuantVariant>,
    /// Where the calibration and evaluation sequences came from.
    pub sequences: String,
    /// UTC start (RFC 3339).
    pub started_at: String,
    /// UTC end.
    pub finished_at: String,
}

/// One scheme applied to one frontier member.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct QuantVariant {
    /// The scheme and its options.
    pub scheme: Scheme,
    /// Timed interleaved with [`QuantRecord::fp32`].
    pub eval: Evaluation,
    /// Bytes of the quantized model (graphs and weights).
    pub model_bytes: u64,
    /// Outputs against fp32 on the same weights and inputs.
    pub fidelity: Fidelity,
    /// Seconds of the calibration pass (0 without one).
    pub calibrate_seconds: f64,
    /// Seconds to quantize the weights and emit the graphs (calibration excluded).
    pub quantize_seconds: f64,
    /// The matrix-multiply and (de)quantization ops ONNX Runtime runs after its optimizations.
    pub ort_ops: BTreeMap<String, usize>,
}

impl QuantRecord {
    /// Whether it holds a variant of every scheme in `schemes`.
    pub fn covers(&self, schemes: &[Scheme]) -> bool {
        schemes
            .iter()
            .all(|s| self.variants.iter().any(|v| &v.scheme == s))
    }
}

/// One row of `quant.csv`: one frontier member quantized with one scheme.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct QuantRow {
    /// Arch id of the fp32 frontier member.
    pub arch_id: String,
    /// The scheme as written (`int8-static:entropy`).
    pub scheme: String,
    /// Decoder parameters (the proxy, unchanged by quantization).
    pub decoder_params: u64,
    /// Timed runs of the variant.
    pub runs: usize,
    /// Median latency of the variant (ms).
    pub latency_median_ms: f64,
    /// Its p90 (ms).
    pub latency_p90_ms: f64,
    /// Relative half-width of the median's confidence interval; empty when unavailable.
    pub latency_ci_rel: Option<f64>,
    /// Median latency of the fp32 graph in the same interleaved loop (ms).
    pub fp32_median_ms: f64,
    /// Its p90 (ms).
    pub fp32_p90_ms: f64,
    /// fp32 median / variant median: above 1 the variant is faster.
    pub speedup: f64,
    /// Bytes of the quantized model.
    pub model_bytes: u64,
    /// Bytes of the fp32 model.
    pub fp32_model_bytes: u64,
    /// fp32 bytes / quantized bytes.
    pub compression: f64,
    /// Peak memory of the variant (bytes: peak RSS delta over its session creation and
    /// warm-up); empty when unavailable.
    pub peak_memory_bytes: Option<u64>,
    /// The same for the fp32 graph.
    pub fp32_peak_memory_bytes: Option<u64>,
    /// SQNR of the logits against fp32 (dB).
    pub sqnr_db: f64,
    /// Mean KL divergence (fp32 || variant) of next-token distributions (nats).
    pub kld_mean: f64,
    /// Its 99th percentile.
    pub kld_p99: f64,
    /// Positions where both pick the same most likely token (%).
    pub top1_pct: f64,
    /// Largest absolute logit difference.
    pub max_abs_error: f64,
    /// Perplexity of the variant; empty in a search (seeded random weights, no text).
    pub ppl: Option<f64>,
    /// On the front of this scheme's own points (decoder params vs the variant's latency).
    pub on_scheme_frontier: bool,
    /// The variant's and the fp32 graph's protocol minimums were met.
    pub valid: bool,
    /// Calibration seconds (int8-static).
    pub calibrate_s: f64,
    /// Seconds to quantize and emit the graphs.
    pub quantize_s: f64,
    /// Ops ONNX Runtime runs after optimization, `Op=count` `;`-separated.
    pub ort_ops: String,
    /// UTC start of the member's quantization.
    pub started_at: String,
}

/// Columns of `quant.csv`, for a file without rows (a test checks they match [`QuantRow`]).
pub const QUANT_COLUMNS: &[&str] = &[
    "arch_id",
    "scheme",
    "decoder_params",
    "runs",
    "latency_median_ms",
    "latency_p90_ms",
    "latency_ci_rel",
    "fp32_median_ms",
    "fp32_p90_ms",
    "speedup",
    "model_bytes",
    "fp32_model_bytes",
    "compression",
    "peak_memory_bytes",
    "fp32_peak_memory_bytes",
    "sqnr_db",
    "kld_mean",
    "kld_p99",
    "top1_pct",
    "max_abs_error",
    "ppl",
    "on_scheme_frontier",
    "valid",
    "calibrate_s",
    "quantize_s",
    "ort_ops",
    "started_at",
];

/// The rows of `records` (frontier members in the order given), each scheme's own front marked.
pub fn rows(records: &[&QuantRecord]) -> Vec<QuantRow> {
    let mut out: Vec<QuantRow> = records
        .iter()
        .flat_map(|r| r.variants.iter().map(move |v| row(r, v)))
        .collect();
    let mut schemes: Vec<String> = out.iter().map(|r| r.scheme.clone()).collect();
    schemes.sort();
    schemes.dedup();
    for s in schemes {
        let idx: Vec<usize> = (0..out.len()).filter(|&i| out[i].scheme == s).collect();
        let pts: Vec<Vec<f64>> = idx
            .iter()
            .map(|&i| vec![-(out[i].decoder_params as f64), out[i].latency_median_ms])
            .collect();
        for k in pareto::pareto_front(&pts) {
            out[idx[k]].on_scheme_frontier = true;
        }
    }
    out
}

fn row(r: &QuantRecord, v: &QuantVariant) -> QuantRow {
    let (q, f) = (&v.eval.stats, &r.fp32.stats);
    QuantRow {
        arch_id: r.arch_id.clone(),
        scheme: v.scheme.to_string(),
        decoder_params: r.decoder_params,
        runs: q.n,
        latency_median_ms: q.median_ms,
        latency_p90_ms: q.p90_ms,
        latency_ci_rel: q.median_ci_rel,
        fp32_median_ms: f.median_ms,
        fp32_p90_ms: f.p90_ms,
        speedup: f.median_ms / q.median_ms,
        model_bytes: v.model_bytes,
        fp32_model_bytes: r.fp32_model_bytes,
        compression: r.fp32_model_bytes as f64 / v.model_bytes.max(1) as f64,
        peak_memory_bytes: v.eval.peak_memory_bytes,
        fp32_peak_memory_bytes: r.fp32.peak_memory_bytes,
        sqnr_db: v.fidelity.sqnr_db,
        kld_mean: v.fidelity.kld_mean,
        kld_p99: v.fidelity.kld_p99,
        top1_pct: 100.0 * v.fidelity.top1_agreement,
        max_abs_error: v.fidelity.max_abs_error,
        ppl: None,
        on_scheme_frontier: false,
        valid: v.eval.valid && r.fp32.valid,
        calibrate_s: v.calibrate_seconds,
        quantize_s: v.quantize_seconds,
        ort_ops: v
            .ort_ops
            .iter()
            .map(|(op, n)| format!("{op}={n}"))
            .collect::<Vec<_>>()
            .join(";"),
        started_at: r.started_at.clone(),
    }
}

/// Writes `quant.csv` atomically (header only without rows).
pub fn write_csv(path: &Path, rows: &[QuantRow]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    if rows.is_empty() {
        w.write_record(QUANT_COLUMNS)?;
    }
    for r in rows {
        w.serialize(r)?;
    }
    write_atomic(path, &w.into_inner()?)
}

/// Reads a `quant.csv` written by [`write_csv`]; no file, no rows.
pub fn read_csv(path: &Path) -> Result<Vec<QuantRow>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    r.deserialize()
        .map(|row| row.with_context(|| format!("{}: bad row", path.display())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_match_the_row_type() {
        let r = QuantRow {
            arch_id: "a".into(),
            scheme: "int8-dynamic".into(),
            decoder_params: 1,
            runs: 1,
            latency_median_ms: 1.0,
            latency_p90_ms: 1.0,
            latency_ci_rel: None,
            fp32_median_ms: 2.0,
            fp32_p90_ms: 2.0,
            speedup: 2.0,
            model_bytes: 1,
            fp32_model_bytes: 4,
            compression: 4.0,
            peak_memory_bytes: None,
            fp32_peak_memory_bytes: Some(3),
            sqnr_db: 30.0,
            kld_mean: 1e-4,
            kld_p99: 1e-3,
            top1_pct: 90.0,
            max_abs_error: 0.1,
            ppl: None,
            on_scheme_frontier: true,
            valid: true,
            calibrate_s: 0.0,
            quantize_s: 0.1,
            ort_ops: "MatMulNBits=4".into(),
            started_at: "t".into(),
        };
        let mut w = csv::Writer::from_writer(Vec::new());
        w.serialize(&r).unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert_eq!(text.lines().next().unwrap(), QUANT_COLUMNS.join(","));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("quant.csv");
        write_csv(&p, std::slice::from_ref(&r)).unwrap();
        assert_eq!(read_csv(&p).unwrap(), vec![r]);
        write_csv(&p, &[]).unwrap();
        assert!(read_csv(&p).unwrap().is_empty());
        assert!(read_csv(&dir.path().join("none.csv")).unwrap().is_empty());
    }
}
