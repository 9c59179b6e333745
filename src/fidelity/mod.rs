//! Fidelity of quantized graphs (`lts quantize`): post-training quantization of one model with
//! several schemes, each judged against fp32 on the same weights and inputs.
//!
//! For every scheme: a calibration pass where the scheme needs one (the fp32 prefill graph with
//! each quantized activation added as an output, run on `calib` sequences, histograms per
//! activation, ranges by the scheme's method: [`crate::calibration`]), the quantized
//! prefill and decode graphs ([`crate::quant::emit`]), and fidelity on `eval` other sequences:
//! SQNR of the logits (dB), mean and p99 KL divergence of the next-token distributions (fp32 the
//! reference, as llama.cpp's `--kl-divergence`), top-1 agreement, largest absolute logit error.
//! Sequences are seeded random tokens, or consecutive windows of a text (calibration first,
//! evaluation after, never overlapping).

pub mod bench;

pub use crate::calibration::calibrate;
pub use crate::quant::sequences::Sequences;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::backend::ort::{Ort, OrtOptions};
use crate::eval::metrics::Divergence;
use crate::graph::onnx::ModelProto;
use crate::graph::{self, GraphKind};
use crate::quant::emit;
use crate::quant::scheme::Scheme;
use crate::weights::Weights;
use crate::workload::Logits;

/// How a quantized model's outputs differ from fp32 on the same inputs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fidelity {
    /// Signal-to-quantization-noise ratio of the logits, `10 log10(sum ref^2 / sum err^2)` (dB).
    pub sqnr_db: f64,
    /// Mean KL divergence (fp32 || quantized) of next-token distributions, nats.
    pub kld_mean: f64,
    /// Its 99th percentile.
    pub kld_p99: f64,
    /// Share of positions (0..1) where both pick the same most likely token.
    pub top1_agreement: f64,
    /// Largest absolute difference of one logit.
    pub max_abs_error: f64,
    /// Positions compared.
    pub positions: usize,
}

/// Accumulates [`Fidelity`] over logits rows.
#[derive(Default)]
pub struct FidelityAcc {
    signal: f64,
    noise: f64,
    max_abs: f64,
    div: Divergence,
}

impl FidelityAcc {
    /// Adds `[rows, vocab]` logits of fp32 (`reference`) and of the quantized model.
    pub fn add(&mut self, reference: &[f32], quantized: &[f32], vocab: usize) {
        for (r, q) in reference.iter().zip(quantized) {
            let (r, q) = (*r as f64, *q as f64);
            self.signal += r * r;
            self.noise += (r - q) * (r - q);
            self.max_abs = self.max_abs.max((r - q).abs());
        }
        for (r, q) in reference.chunks(vocab).zip(quantized.chunks(vocab)) {
            self.div.add(r, q);
        }
    }

    /// The figures; `None` before any row.
    pub fn finish(&self) -> Option<Fidelity> {
        let d = self.div.summary()?;
        Some(Fidelity {
            sqnr_db: if self.noise == 0.0 {
                f64::INFINITY
            } else {
                10.0 * (self.signal / self.noise).log10()
            },
            kld_mean: d.kld_mean,
            kld_p99: d.kld_p99,
            top1_agreement: d.top1_agreement,
            max_abs_error: self.max_abs,
            positions: d.positions,
        })
    }
}

/// Fidelity of `quantized` against `fp32` (both all-logits prefill graphs) on `eval`.
pub fn fidelity(
    fp32: &[u8],
    quantized: &[u8],
    eval: &Array2<i64>,
    vocab: usize,
    ort: &OrtOptions,
) -> Result<Fidelity> {
    let o = Ort::load()?;
    let mut a = o.session(fp32, ort)?;
    let mut b = o
        .session(quantized, ort)
        .context("ONNX Runtime refused the quantized graph")?;
    let mut acc = FidelityAcc::default();
    for row in eval.rows() {
        let ids = row.to_owned().insert_axis(ndarray::Axis(0));
        let ra =
            a.run(ort::inputs!["input_ids" => ort::value::Tensor::from_array(ids.clone())?])?;
        let rb = b.run(ort::inputs!["input_ids" => ort::value::Tensor::from_array(ids)?])?;
        let (_, la) = ra["logits"].try_extract_tensor::<f32>()?;
        let (_, lb) = rb["logits"].try_extract_tensor::<f32>()?;
        acc.add(la, lb, vocab);
    }
    acc.finish().context("no evaluation sequence")
}

/// One scheme's outcome.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QuantResult {
    /// The scheme as written (`int8-static:entropy`).
    pub name: String,
    /// The scheme and its options.
    pub scheme: Scheme,
    /// Bytes of the quantized prefill graph (weights included).
    pub model_bytes: u64,
    /// Bytes of the fp32 prefill graph.
    pub fp32_bytes: u64,
    /// Seconds of the calibration pass (0 without one).
    pub calibrate_seconds: f64,
    /// Seconds to quantize the weights and emit the graphs (calibration excluded).
    pub quantize_seconds: f64,
    /// Outputs against fp32.
    pub fidelity: Fidelity,
    /// The quantized and matrix-multiply ops ONNX Runtime runs for the prefill graph after its
    /// optimizations (what the emitted graph fused into), with counts.
    pub ort_ops: BTreeMap<String, usize>,
    /// Files written.
    pub files: Vec<PathBuf>,
    /// The workload the written graphs record (`lts quantize --from` / `--onnx` of a file that
    /// records one): what `lts measure --onnx` times by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<crate::workload::RecordedWorkload>,
}

/// The fp32 graphs a quantization starts from.
pub struct Fp32Graphs {
    /// Prefill with the logits `lts quantize --logits` asked for (written and timed).
    pub prefill: ModelProto,
    /// Prefill with every position's logits (fidelity).
    pub prefill_all: ModelProto,
    /// Decode, unless only prefill graphs are wanted.
    pub decode: Option<ModelProto>,
    /// Serialized size of `prefill`, the baseline of every scheme's size ratio.
    pub prefill_len: u64,
    /// `prefill_all` serialized once: every scheme's fidelity runs it.
    pub prefill_all_bytes: Vec<u8>,
}

impl Fp32Graphs {
    /// Builds the fp32 graphs of `arch` with `weights` embedded (the decode graph when
    /// `decode`).
    pub fn build(
        arch: &Arch,
        weights: &Weights,
        logits: Logits,
        decode: bool,
    ) -> Result<Fp32Graphs> {
        let prefill = graph::build_model(arch, weights, GraphKind::Prefill, logits)?;
        let prefill_all = graph::build_model(arch, weights, GraphKind::Prefill, Logits::All)?;
        Ok(Fp32Graphs {
            prefill_len: prost::Message::encoded_len(&prefill) as u64,
            prefill_all_bytes: graph::to_bytes(&prefill_all),
            prefill,
            prefill_all,
            decode: decode
                .then(|| graph::build_model(arch, weights, GraphKind::Decode, Logits::Last))
                .transpose()?,
        })
    }
}

/// A scheme's slug in file names: `int8-static:entropy` -> `int8-static-entropy`.
pub fn slug(scheme: &Scheme) -> String {
    scheme
        .to_string()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Quantizes with one scheme, writes `<out>/<arch-id>.<slug>.prefill.onnx` (and `.decode.onnx`
/// when `fp32` has a decode graph) when `out` is given, and measures fidelity.
pub fn quantize_one(
    arch: &Arch,
    fp32: &Fp32Graphs,
    scheme: &Scheme,
    seqs: &Sequences,
    ort: &OrtOptions,
    out: Option<&std::path::Path>,
) -> Result<QuantResult> {
    let t0 = Instant::now();
    let ranges = if scheme.needs_calibration() {
        Some(calibrate(&fp32.prefill, scheme, &seqs.calib, ort)?)
    } else {
        None
    };
    let calibrate_seconds = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let prefill = emit::quantize(fp32.prefill.clone(), scheme, ranges.as_ref())?;
    let decode = fp32
        .decode
        .clone()
        .map(|d| emit::quantize(d, scheme, ranges.as_ref()))
        .transpose()?;
    let quantize_seconds = t1.elapsed().as_secs_f64();
    let all = emit::quantize(fp32.prefill_all.clone(), scheme, ranges.as_ref())?;
    let fidelity = fidelity(
        &fp32.prefill_all_bytes,
        &graph::to_bytes(&all),
        &seqs.eval,
        arch.vocab_size,
        ort,
    )
    .with_context(|| format!("scheme {scheme}"))?;
    let prefill_bytes = graph::to_bytes(&prefill);
    let ort_ops = Ort::load()?
        .optimized_ops(&prefill_bytes, ort)?
        .into_iter()
        .filter(|(op, _)| is_matmul_or_quant(op))
        .collect();
    let mut files = Vec::new();
    if let Some(dir) = out {
        let stem = format!("{}.{}", arch.id(), slug(scheme));
        let graphs =
            std::iter::once(("prefill", &prefill)).chain(decode.as_ref().map(|d| ("decode", d)));
        for (kind, m) in graphs {
            let p = dir.join(format!("{stem}.{kind}.onnx"));
            graph::save(m, &p)?;
            files.push(p);
        }
    }
    Ok(QuantResult {
        name: scheme.to_string(),
        scheme: scheme.clone(),
        model_bytes: prefill_bytes.len() as u64,
        fp32_bytes: fp32.prefill_len,
        calibrate_seconds,
        quantize_seconds,
        fidelity,
        ort_ops,
        files,
        workload: None,
    })
}

/// Whether an op type is a matrix multiply or a (de)quantization, the ops a scheme changes.
fn is_matmul_or_quant(op: &str) -> bool {
    let op = op.rsplit(':').next().unwrap_or(op);
    op.contains("MatMul")
        || op.contains("Quantize")
        || op == "Gemm"
        || op == "MatMulInteger"
        || op == "Cast"
}
