//! The arithmetic of scoring, in f64: negative log-likelihood of a target under a logits row,
//! perplexity with a per-window standard error, and the KL divergence and top-1 agreement of
//! two models' next-token distributions (llama.cpp `perplexity --kl-divergence`).

use serde::{Deserialize, Serialize};

use crate::measure::quantiles;

/// `log(sum(exp(row)))` in f64, shifted by the row's maximum so it cannot overflow.
pub fn logsumexp(row: &[f32]) -> f64 {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    if !max.is_finite() {
        return max;
    }
    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    max + sum.ln()
}

/// Negative log-likelihood of `target` under the softmax of `row`: `logsumexp(row) - row[target]`.
pub fn nll(row: &[f32], target: usize) -> f64 {
    logsumexp(row) - row[target] as f64
}

/// Sum and count of one window's scored NLLs (all positions, or the second half).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NllSum {
    /// Sum of the NLLs, in nats.
    pub sum: f64,
    /// Tokens scored.
    pub count: usize,
}

impl NllSum {
    /// Adds one token's NLL.
    pub fn add(&mut self, nll: f64) {
        self.sum += nll;
        self.count += 1;
    }
}

/// Perplexity of a set of windows, with its uncertainty.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Perplexity {
    /// `exp(mean NLL)`.
    pub ppl: f64,
    /// Mean NLL per scored token, in nats.
    pub nll: f64,
    /// Tokens scored.
    pub tokens: usize,
    /// Standard error of the mean NLL with windows as the units (tokens of one window are not
    /// independent): the cluster (ratio-estimator) standard error
    /// `sqrt(W / (W - 1) * sum_w n_w^2 (m_w - m)^2) / N`, which for windows of equal size is the
    /// standard deviation of the window means over `sqrt(W)`. `None` with fewer than 2 windows.
    pub nll_se: Option<f64>,
    /// The same in perplexity units (`ppl * nll_se`, as llama.cpp prints `PPL +/- x`).
    pub ppl_se: Option<f64>,
}

impl Perplexity {
    /// Perplexity of the windows' NLL sums (windows that scored nothing are left out). `None`
    /// when no token was scored.
    pub fn of(windows: &[NllSum]) -> Option<Perplexity> {
        let used: Vec<&NllSum> = windows.iter().filter(|w| w.count > 0).collect();
        let n: usize = used.iter().map(|w| w.count).sum();
        if n == 0 {
            return None;
        }
        let mean = used.iter().map(|w| w.sum).sum::<f64>() / n as f64;
        let nll_se = (used.len() >= 2).then(|| {
            let w = used.len() as f64;
            let ss: f64 = used
                .iter()
                .map(|u| {
                    let d = u.sum - u.count as f64 * mean;
                    d * d
                })
                .sum();
            (w / (w - 1.0) * ss).sqrt() / n as f64
        });
        let ppl = mean.exp();
        Some(Perplexity {
            ppl,
            nll: mean,
            tokens: n,
            nll_se,
            ppl_se: nll_se.map(|se| ppl * se),
        })
    }

    /// The 95 % interval of the perplexity, `exp(nll -+ 1.96 se)`.
    pub fn interval95(&self) -> Option<(f64, f64)> {
        self.nll_se
            .map(|se| ((self.nll - 1.96 * se).exp(), (self.nll + 1.96 * se).exp()))
    }
}

/// KL divergence `KL(P || Q) = sum p (log p - log q)` of the softmaxes of two logits rows, `p`
/// the reference, in nats (llama.cpp's `--kl-divergence` takes the base model as `P`).
pub fn kl_divergence(p_row: &[f32], q_row: &[f32]) -> f64 {
    let (lp, lq) = (logsumexp(p_row), logsumexp(q_row));
    let kl: f64 = p_row
        .iter()
        .zip(q_row)
        .map(|(&a, &b)| {
            let log_p = a as f64 - lp;
            let p = log_p.exp();
            if p == 0.0 {
                0.0
            } else {
                p * (log_p - (b as f64 - lq))
            }
        })
        .sum();
    // Rounding can make a divergence of identical rows a hair below 0.
    kl.max(0.0)
}

/// KL divergences and top-1 agreement of a model against a reference, position by position.
#[derive(Clone, Debug, Default)]
pub struct Divergence {
    /// One KL divergence per compared position.
    pub kld: Vec<f64>,
    /// Positions where both models' most likely next token is the same.
    pub top1_same: usize,
}

impl Divergence {
    /// Adds one position: `reference` and `other` logits rows of the same token.
    pub fn add(&mut self, reference: &[f32], other: &[f32]) {
        self.kld.push(kl_divergence(reference, other));
        if crate::backend::argmax(reference) == crate::backend::argmax(other) {
            self.top1_same += 1;
        }
    }

    /// Mean, p99 and max KL divergence and top-1 agreement; `None` before any position.
    pub fn summary(&self) -> Option<DivergenceSummary> {
        if self.kld.is_empty() {
            return None;
        }
        let sorted = quantiles::sorted_copy(&self.kld);
        let n = sorted.len();
        Some(DivergenceSummary {
            positions: n,
            kld_mean: sorted.iter().sum::<f64>() / n as f64,
            kld_median: quantiles::percentile_sorted(&sorted, 50.0),
            kld_p99: quantiles::percentile_sorted(&sorted, 99.0),
            kld_max: sorted[n - 1],
            top1_agreement: self.top1_same as f64 / n as f64,
        })
    }
}

/// What [`Divergence::summary`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DivergenceSummary {
    /// Positions compared.
    pub positions: usize,
    /// Mean KL divergence, nats.
    pub kld_mean: f64,
    /// Median KL divergence, nats.
    pub kld_median: f64,
    /// 99th percentile KL divergence, nats.
    pub kld_p99: f64,
    /// Largest KL divergence, nats.
    pub kld_max: f64,
    /// Share of positions (0..1) with the same most likely next token.
    pub top1_agreement: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nll_is_the_negative_log_softmax() {
        // softmax([0, ln 3]) = [1/4, 3/4]
        let row = [0.0f32, 3f32.ln()];
        assert!((nll(&row, 0) - 4f64.ln()).abs() < 1e-6);
        assert!((nll(&row, 1) - (4.0f64 / 3.0).ln()).abs() < 1e-6);
        // Large logits do not overflow.
        let big = [1000.0f32, 1000.0];
        assert!((nll(&big, 0) - 2f64.ln()).abs() < 1e-9);
        // A uniform distribution over V tokens has perplexity V.
        let flat = vec![0.5f32; 50];
        let w = NllSum {
            sum: 10.0 * nll(&flat, 3),
            count: 10,
        };
        assert!((Perplexity::of(&[w]).unwrap().ppl - 50.0).abs() < 1e-9);
    }

    #[test]
    fn standard_error_treats_windows_as_units() {
        // Windows of equal size: the SE is sd(window means) / sqrt(W).
        let means = [1.0, 2.0, 3.0, 4.0];
        let w: Vec<NllSum> = means
            .iter()
            .map(|&m| NllSum {
                sum: 10.0 * m,
                count: 10,
            })
            .collect();
        let p = Perplexity::of(&w).unwrap();
        assert_eq!(p.tokens, 40);
        assert!((p.nll - 2.5).abs() < 1e-12);
        let sd = (means.iter().map(|m| (m - 2.5f64).powi(2)).sum::<f64>() / 3.0).sqrt();
        assert!((p.nll_se.unwrap() - sd / 2.0).abs() < 1e-12);
        assert!((p.ppl_se.unwrap() - p.ppl * sd / 2.0).abs() < 1e-9);
        let (lo, hi) = p.interval95().unwrap();
        assert!(lo < p.ppl && p.ppl < hi);
        // One window: no SE; no token: no perplexity.
        assert!(Perplexity::of(&w[..1]).unwrap().nll_se.is_none());
        assert!(Perplexity::of(&[NllSum::default()]).is_none());
    }

    #[test]
    fn divergence_of_identical_rows_is_zero_and_grows_with_difference() {
        let p = [0.1f32, 2.0, -1.0, 0.5];
        assert_eq!(kl_divergence(&p, &p), 0.0);
        // KL([1/2,1/2] || [1/4,3/4]) = 0.5 ln 2 + 0.5 ln(2/3)
        let a = [0.0f32, 0.0];
        let b = [0.0f32, 3f32.ln()];
        let want = 0.5 * 2f64.ln() + 0.5 * (2.0f64 / 3.0).ln();
        assert!((kl_divergence(&a, &b) - want).abs() < 1e-7);
        let mut d = Divergence::default();
        d.add(&p, &p);
        d.add(&[0.0, 1.0, 0.0, 0.0], &[1.0, 0.0, 0.0, 0.0]);
        let s = d.summary().unwrap();
        assert_eq!(s.positions, 2);
        assert!((s.top1_agreement - 0.5).abs() < 1e-12);
        assert!(s.kld_max > 0.0 && s.kld_mean == s.kld_max / 2.0);
        assert!(Divergence::default().summary().is_none());
    }
}
