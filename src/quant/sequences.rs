//! The token sequences a quantization is calibrated on and judged with: seeded random tokens
//! or consecutive windows of a tokenized text, calibration and evaluation never overlapping.

use anyhow::{bail, Result};
use ndarray::Array2;

use crate::arch::Arch;
use crate::workload::{Logits, Mode, Workload};

/// Calibration and evaluation sequences.
#[derive(Clone, Debug)]
pub struct Sequences {
    /// Calibration inputs `[calib, seq_len]`.
    pub calib: Array2<i64>,
    /// Evaluation inputs `[eval, seq_len]`, disjoint from `calib`.
    pub eval: Array2<i64>,
    /// `seeded tokens (seed N)` or `text FILE`.
    pub source: String,
}

impl Sequences {
    /// Seeded random tokens: calibration from `seed`, evaluation from another stream.
    pub fn seeded(arch: &Arch, calib: usize, eval: usize, seq_len: usize, seed: u64) -> Sequences {
        let w = |batch, seed| Workload {
            mode: Mode::Prefill,
            batch,
            seq_len,
            new_tokens: 0,
            logits: Logits::All,
            seed,
        };
        Sequences {
            calib: crate::workload::inputs(arch, &w(calib, seed)).0,
            eval: crate::workload::inputs(arch, &w(eval, seed ^ 0x9e37_79b9_7f4a_7c15)).0,
            source: format!("seeded tokens (seed {seed})"),
        }
    }

    /// Consecutive windows of `ids` (a tokenized text): the first `calib` for calibration, the
    /// next `eval` for evaluation.
    pub fn from_tokens(
        ids: &[u32],
        calib: usize,
        eval: usize,
        seq_len: usize,
        what: &str,
    ) -> Result<Sequences> {
        let need = (calib + eval) * seq_len;
        if ids.len() < need {
            bail!(
                "{what} has {} tokens; --calib {calib} + --eval {eval} windows of --seq-len {seq_len} need {need}: lower them or give a longer text",
                ids.len()
            );
        }
        let rows = |from: usize, n: usize| {
            Array2::from_shape_fn((n, seq_len), |(r, c)| {
                i64::from(ids[(from + r) * seq_len + c])
            })
        };
        Ok(Sequences {
            calib: rows(0, calib),
            eval: rows(calib, eval),
            source: format!("text {what}"),
        })
    }
}
