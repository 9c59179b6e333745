//! `Search::quantize_front`, the `--quantize` phase at the end of a search: see
//! [`super::quantized`] for what it measures and writes.

use anyhow::{Context, Result};

use super::objectives::{Measured, Stage};
use super::quantized::{rows, write_csv, QuantRecord, QuantRow, QuantVariant, EVAL_SEQUENCES};
use super::{store, EvaluatorSpec, Search};
use crate::fidelity::Fp32Graphs;
use crate::job;
use crate::weights::Weights;
use crate::workload::Logits;

impl Search {
    /// The quantization phase: every frontier member without a record gets one (see the module
    /// documentation). Nothing to do without `--quantize`.
    pub(super) fn quantize_front(&mut self) -> Result<()> {
        let schemes = self.cfg.quantize.clone();
        if schemes.is_empty() {
            return Ok(());
        }
        // SearchConfig::validate refuses --quantize without ONNX Runtime measurements.
        let EvaluatorSpec::Measure { backend } = &self.cfg.evaluator else {
            return Ok(());
        };
        let Some(ort) = backend.ort_options().cloned() else {
            return Ok(());
        };
        let mut measured = Measured::new(&self.cfg, backend.clone());
        measured.max_memory = self.cfg.max_memory;
        let mut members = self.front.clone();
        members.sort_by_key(|&i| self.cands[i].best().params.decoder);
        let todo: Vec<usize> = members
            .into_iter()
            .filter(|&i| {
                self.quant
                    .get(&self.cands[i].best().arch_id)
                    .is_none_or(|r| !r.covers(&schemes))
            })
            .collect();
        for (k, &i) in todo.iter().enumerate() {
            crate::signals::check()?;
            let best = self.cands[i].best();
            let (arch, id) = (best.arch.clone(), best.arch_id.clone());
            let started_at = crate::util::now_rfc3339();
            let jobs: Vec<job::Job> = std::iter::once(None)
                .chain(schemes.iter().cloned().map(Some))
                .map(|q| measured.job(&arch, Stage::Full, q))
                .collect();
            // On this machine, or on a board of the fleet (fidelity is judged here either
            // way: it depends on the weights and the graphs, not on the board).
            let mut results = self
                .eval
                .measure_variants(&format!("{id}:quant"), jobs)
                .with_context(|| format!("timing the quantized variants of {id}"))?
                .into_iter();
            let fp32_result = results.next().context("no fp32 result")?;
            let fp32_model_bytes = fp32_result.model_bytes;
            let fp32 = measured.evaluation_of(fp32_result);
            let weights = Weights::random(&arch, self.cfg.weights_seed);
            let graphs = Fp32Graphs::build(&arch, &weights, Logits::Last, false)?;
            let seqs = job::calibration_sequences(&arch, &self.cfg.workload, EVAL_SEQUENCES);
            let mut variants = Vec::with_capacity(schemes.len());
            for (scheme, r) in schemes.iter().zip(results) {
                let q = crate::fidelity::quantize_one(&arch, &graphs, scheme, &seqs, &ort, None)
                    .with_context(|| format!("judging {scheme} of {id} against fp32"))?;
                variants.push(QuantVariant {
                    scheme: scheme.clone(),
                    model_bytes: r.model_bytes,
                    eval: measured.evaluation_of(r),
                    fidelity: q.fidelity,
                    calibrate_seconds: q.calibrate_seconds,
                    quantize_seconds: q.quantize_seconds,
                    ort_ops: q.ort_ops,
                });
            }
            let rec = QuantRecord {
                arch_id: id.clone(),
                decoder_params: best.params.decoder,
                fp32,
                fp32_model_bytes,
                variants,
                sequences: seqs.source.clone(),
                started_at,
                finished_at: crate::util::now_rfc3339(),
            };
            self.dir.append_quant(&rec)?;
            if !self.quiet {
                let parts: Vec<String> = rows(&[&rec])
                    .iter()
                    .map(|r| format!("{} {:.2}x, {:.1} dB", r.scheme, r.speedup, r.sqnr_db))
                    .collect();
                self.say(format!(
                    "quantized {}/{} {id}: {}",
                    k + 1,
                    todo.len(),
                    parts.join("; ")
                ));
            }
            self.quant.insert(id, rec);
            self.write_reports()?;
        }
        Ok(())
    }

    /// The rows of `quant.csv`: the current frontier's members with a record, by decoder
    /// params.
    pub(super) fn quant_rows(&self) -> Vec<QuantRow> {
        let mut members = self.front.clone();
        members.sort_by_key(|&i| self.cands[i].best().params.decoder);
        let recs: Vec<&QuantRecord> = members
            .iter()
            .filter_map(|&i| self.quant.get(&self.cands[i].best().arch_id))
            .collect();
        rows(&recs)
    }

    /// Writes `quant.csv` (with `--quantize` only) and returns its rows.
    pub(super) fn write_quant_csv(&self) -> Result<Vec<QuantRow>> {
        if self.cfg.quantize.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.quant_rows();
        write_csv(&self.dir.path.join(store::QUANT_CSV), &rows)?;
        Ok(rows)
    }
}
