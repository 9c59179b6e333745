//! Summary statistics of latency samples: the figures onnxruntime_perf_test prints (min, max,
//! P50/P90/P95/P99 from sorted samples), the coefficient of variation trtexec checks, hyperfine's
//! outlier count, MLPerf LoadGen's sample-count minimums for tail percentiles, and a
//! distribution-free confidence interval of the median.
//!
//! Percentiles and the median: [`super::quantiles`] (numpy's linear interpolation).
//!
//! # Median confidence interval
//!
//! The standard distribution-free interval from order statistics (Conover, "Practical
//! Nonparametric Statistics", 3rd ed., section 3.2; also Hollander and Wolfe): for continuous
//! i.i.d. samples the number `B` of samples below the true median is Binomial(n, 1/2), so the
//! interval `[x_(j), x_(k)]` between the j-th and k-th smallest samples (1-based ranks) covers the
//! median with probability `P(j <= B < k)`. The symmetric ranks `k = n + 1 - j` are used, with
//! the largest `j` whose coverage still reaches the requested confidence; the coverage actually
//! achieved (never below the request when `n` allows) is reported. Example (Conover's table):
//! `n = 10`, 95% -> ranks 2 and 9, achieved confidence 0.9785. When even `[min, max]` cannot
//! reach the request (`n <= 5` at 95%), `[min, max]` is returned with its lower achieved
//! confidence `1 - 2^(1-n)`.

use serde::{Deserialize, Serialize};
use statrs::distribution::{Binomial, DiscreteCDF};

use super::outliers::outlier_indices;
pub use super::quantiles::{median_of, percentile, percentile_sorted, sorted_copy};

/// Minimum sample count for a P90 estimate under MLPerf LoadGen's early-stopping criterion
/// (binomial test at confidence 0.99; LoadGen documentation: "64 queries for p90").
pub const LOADGEN_MIN_SAMPLES_P90: usize = 64;
/// Minimum sample count for a P99 estimate under MLPerf LoadGen's early-stopping criterion
/// (binomial test at confidence 0.99; LoadGen documentation: "662 queries for p99").
pub const LOADGEN_MIN_SAMPLES_P99: usize = 662;

/// Summary of one set of latency samples, in milliseconds. Follows onnxruntime_perf_test's
/// sorted-sample percentiles, trtexec's coefficient-of-variation check, hyperfine's outlier
/// flagging and MLPerf LoadGen's early-stopping sample minimums; see the module documentation
/// for the percentile and confidence-interval definitions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Stats {
    /// Number of samples summarised.
    pub n: usize,
    /// Arithmetic mean.
    pub mean_ms: f64,
    /// Median (P50, numpy linear interpolation).
    pub median_ms: f64,
    /// 90th percentile (numpy linear interpolation).
    pub p90_ms: f64,
    /// 95th percentile (numpy linear interpolation).
    pub p95_ms: f64,
    /// 99th percentile (numpy linear interpolation).
    pub p99_ms: f64,
    /// Smallest sample.
    pub min_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
    /// Sample standard deviation (denominator `n - 1`); 0 when `n == 1`.
    pub std_ms: f64,
    /// Coefficient of variation `std_ms / mean_ms` (trtexec's stability check); 0 when `n == 1`
    /// or the mean is 0.
    pub cv: f64,
    /// Lower end of the distribution-free confidence interval of the median (an order
    /// statistic, Conover).
    pub median_ci_low_ms: f64,
    /// Upper end of the distribution-free confidence interval of the median.
    pub median_ci_high_ms: f64,
    /// Confidence the interval actually achieves, `P(j <= B < k)` for B ~ Binomial(n, 1/2): at
    /// least the requested level when `n` allows, else the coverage of `[min, max]`.
    pub median_ci_confidence: f64,
    /// Relative half-width of the median's interval, `max(median - low, high - median) /
    /// median` ([`ci_rel_half_width`]): the precision the protocol's `target_ci_rel` is checked
    /// against. `None` when the median is not positive, and in results written before this
    /// field existed.
    #[serde(default)]
    pub median_ci_rel: Option<f64>,
    /// Number of samples whose modified z-score exceeds the threshold (hyperfine). Flagged only,
    /// never removed.
    pub outliers: usize,
    /// Run-order indices of the outlying samples.
    pub outlier_indices: Vec<usize>,
    /// True when `cv` exceeds the protocol's `cv_threshold` (trtexec warns above 1%).
    pub noisy: bool,
    /// True when `n >= 64`, the minimum MLPerf LoadGen's early stopping needs to state a P90 at
    /// confidence 0.99. With fewer samples `p90_ms` is only a point estimate.
    pub p90_enough_samples: bool,
    /// True when `n >= 662`, LoadGen's early-stopping minimum for a P99 at confidence 0.99.
    pub p99_enough_samples: bool,
}

impl Stats {
    /// Summarises `samples_ms` (any order; run order is kept for `outlier_indices`).
    /// `cv_threshold` sets `noisy`, `outlier_threshold` is the modified z-score limit (hyperfine:
    /// 14.826), `confidence` the requested level of the median interval (in (0, 1)).
    ///
    /// # Panics
    ///
    /// Panics when `samples_ms` is empty: there is nothing to summarise, and
    /// [`super::run_protocol`] returns an error before that can happen. One sample is fine:
    /// every percentile is that sample, `std_ms` and `cv` are 0, the median interval is
    /// `[x, x]` with achieved confidence 0.
    pub fn from_samples(
        samples_ms: &[f64],
        cv_threshold: f64,
        outlier_threshold: f64,
        confidence: f64,
    ) -> Stats {
        assert!(
            !samples_ms.is_empty(),
            "Stats::from_samples needs at least one sample (got none)"
        );
        let n = samples_ms.len();
        let sorted = sorted_copy(samples_ms);
        let mean = samples_ms.iter().sum::<f64>() / n as f64;
        let std = if n > 1 {
            let ss: f64 = samples_ms.iter().map(|x| (x - mean) * (x - mean)).sum();
            (ss / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        let cv = if mean != 0.0 { std / mean.abs() } else { 0.0 };
        let (median, ci, ci_rel) = median_precision_sorted(&sorted, confidence);
        let outlier_indices = outlier_indices(samples_ms, outlier_threshold);
        Stats {
            n,
            mean_ms: mean,
            median_ms: median,
            p90_ms: percentile_sorted(&sorted, 90.0),
            p95_ms: percentile_sorted(&sorted, 95.0),
            p99_ms: percentile_sorted(&sorted, 99.0),
            min_ms: sorted[0],
            max_ms: sorted[n - 1],
            std_ms: std,
            cv,
            median_ci_low_ms: ci.low,
            median_ci_high_ms: ci.high,
            median_ci_confidence: ci.confidence,
            median_ci_rel: ci_rel,
            outliers: outlier_indices.len(),
            outlier_indices,
            noisy: cv > cv_threshold,
            p90_enough_samples: n >= LOADGEN_MIN_SAMPLES_P90,
            p99_enough_samples: n >= LOADGEN_MIN_SAMPLES_P99,
        }
    }
}

/// A distribution-free confidence interval of the median (Conover), with the 1-based ranks of
/// the order statistics that bound it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct MedianCi {
    /// Lower bound: the `rank_low`-th smallest sample.
    pub low: f64,
    /// Upper bound: the `rank_high`-th smallest sample.
    pub high: f64,
    /// 1-based rank `j` of the lower bound.
    pub rank_low: usize,
    /// 1-based rank `k = n + 1 - j` of the upper bound.
    pub rank_high: usize,
    /// Achieved coverage `P(j <= B < k)`, B ~ Binomial(n, 1/2).
    pub confidence: f64,
}

/// Coverage `P(j <= B <= n - j)` of the symmetric order-statistic interval with lower rank `j`
/// (1-based), B ~ Binomial(n, 1/2).
fn symmetric_coverage(binom: &Binomial, j: u64) -> f64 {
    // P(j <= B <= n-j) = 1 - P(B <= j-1) - P(B >= n-j+1) = 1 - 2 P(B <= j-1) by symmetry.
    if j == 1 {
        // [min, max]: exactly 1 - 2^(1-n) (0 for n = 1), without the incomplete-beta rounding.
        let n = binom.n().min(i32::MAX as u64) as i32;
        return 1.0 - 0.5f64.powi(n - 1);
    }
    (1.0 - 2.0 * binom.cdf(j - 1)).clamp(0.0, 1.0)
}

/// Ranks and achieved confidence of the symmetric distribution-free median interval for `n`
/// samples at the requested `confidence` (Conover): the largest lower rank `j` whose coverage
/// still reaches `confidence`, or `j = 1` (`[min, max]`) with its lower coverage when none does.
///
/// # Panics
///
/// Panics when `n == 0` or `confidence` is not in (0, 1).
pub fn median_ci_ranks(n: usize, confidence: f64) -> (usize, usize, f64) {
    assert!(n > 0, "median interval of an empty sample");
    assert!(
        confidence > 0.0 && confidence < 1.0,
        "confidence {confidence} outside (0, 1)"
    );
    let binom = Binomial::new(0.5, n as u64).expect("Binomial(n, 0.5) is valid for n >= 1");
    // Coverage decreases as j grows; binary search the largest j in [1, ceil(n/2)] that reaches
    // the requested level.
    let max_j = n.div_ceil(2) as u64;
    let mut lo = 1u64;
    if symmetric_coverage(&binom, lo) < confidence {
        return (1, n, symmetric_coverage(&binom, 1));
    }
    let mut hi = max_j; // invariant: coverage(lo) >= confidence
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if symmetric_coverage(&binom, mid) >= confidence {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let j = lo as usize;
    (j, n + 1 - j, symmetric_coverage(&binom, lo))
}

/// Distribution-free confidence interval of the median of samples sorted ascending (Conover).
pub fn median_ci_sorted(sorted: &[f64], confidence: f64) -> MedianCi {
    let (j, k, achieved) = median_ci_ranks(sorted.len(), confidence);
    MedianCi {
        low: sorted[j - 1],
        high: sorted[k - 1],
        rank_low: j,
        rank_high: k,
        confidence: achieved,
    }
}

/// Relative half-width of a median interval: `max(median - low, high - median) / median`, the
/// larger side, since order-statistic intervals are not symmetric around the median. `None`
/// when the median is not a positive finite number (no relative precision can be stated).
pub fn ci_rel_half_width(median: f64, ci: &MedianCi) -> Option<f64> {
    if !(median.is_finite() && median > 0.0) {
        return None;
    }
    Some((median - ci.low).max(ci.high - median) / median)
}

/// The median of samples sorted ascending, its distribution-free interval at `confidence` and
/// the interval's relative half-width ([`ci_rel_half_width`]), by the same routines
/// [`Stats::from_samples`] uses, so a stopping rule and the recorded statistics agree.
///
/// # Panics
///
/// Panics when `sorted` is empty or `confidence` is not in (0, 1).
pub fn median_precision_sorted(sorted: &[f64], confidence: f64) -> (f64, MedianCi, Option<f64>) {
    let median = percentile_sorted(sorted, 50.0);
    let ci = median_ci_sorted(sorted, confidence);
    (median, ci, ci_rel_half_width(median, &ci))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * (1.0 + b.abs())
    }

    // Expected values from numpy 1.x/2.x:
    // x = [12.5, 3.0, 7.25, 9.0, 1.5, 4.75, 30.0, 8.0, 6.5, 2.25, 11.0]
    // [np.percentile(x, q) for q in (0, 10, 25, 50, 90, 95, 99, 100)]
    //   -> 1.5, 2.25, 3.875, 7.25, 12.5, 21.25, 28.25, 30.0
    // x.mean() -> 8.704545454545455, x.std(ddof=1) -> 7.8897228894763645
    const X: [f64; 11] = [12.5, 3.0, 7.25, 9.0, 1.5, 4.75, 30.0, 8.0, 6.5, 2.25, 11.0];

    #[test]
    fn percentiles_match_numpy() {
        let expected = [
            (0.0, 1.5),
            (10.0, 2.25),
            (25.0, 3.875),
            (50.0, 7.25),
            (90.0, 12.5),
            (95.0, 21.25),
            (99.0, 28.25),
            (100.0, 30.0),
        ];
        for (q, want) in expected {
            let got = percentile(&X, q);
            assert!(close(got, want), "P{q}: got {got}, numpy {want}");
        }
        // Even n: y = [4, 1, 3, 2] -> np.percentile(y, [50, 90, 95, 99]) = 2.5, 3.7, 3.85, 3.97
        let y = [4.0, 1.0, 3.0, 2.0];
        for (q, want) in [(50.0, 2.5), (90.0, 3.7), (95.0, 3.85), (99.0, 3.97)] {
            let got = percentile(&y, q);
            assert!(close(got, want), "P{q}: got {got}, numpy {want}");
        }
    }

    #[test]
    fn summary_matches_numpy() {
        let s = Stats::from_samples(&X, 0.05, 14.826, 0.95);
        assert_eq!(s.n, 11);
        assert!(close(s.mean_ms, 8.704545454545455));
        assert!(close(s.std_ms, 7.8897228894763645));
        assert!(close(s.cv, 0.9063911413497651));
        assert!(s.noisy);
        assert!(close(s.median_ms, 7.25));
        assert!(close(s.p90_ms, 12.5));
        assert!(close(s.p95_ms, 21.25));
        assert!(close(s.p99_ms, 28.25));
        assert_eq!((s.min_ms, s.max_ms), (1.5, 30.0));
        // median 7.25, MAD = 3.75 (|11.0 - 7.25|); 30.0 is 22.75 / 3.75 = 6.1 MADs away: below
        // hyperfine's 14.826, so no outlier.
        assert_eq!(s.outliers, 0);
        assert!(!s.p90_enough_samples && !s.p99_enough_samples);
    }

    #[test]
    fn median_ci_matches_conover_table() {
        // n = 10, 95%: ranks 2 and 9, achieved 1 - 2 * 11/1024 = 0.978515625.
        let (j, k, c) = median_ci_ranks(10, 0.95);
        assert_eq!((j, k), (2, 9));
        assert!(close(c, 0.978515625), "achieved {c}");
        // n = 20, 95%: ranks 6 and 15, achieved 0.9586105346679688.
        let (j, k, c) = median_ci_ranks(20, 0.95);
        assert_eq!((j, k), (6, 15));
        assert!(close(c, 0.9586105346679688), "achieved {c}");
        // n = 100, 95%: ranks 40 and 61, achieved 0.9647997997822951.
        let (j, k, c) = median_ci_ranks(100, 0.95);
        assert_eq!((j, k), (40, 61));
        assert!(close(c, 0.9647997997822951), "achieved {c}");
        // n = 6: only [min, max] reaches 95% (0.96875).
        let (j, k, c) = median_ci_ranks(6, 0.95);
        assert_eq!((j, k), (1, 6));
        assert!(close(c, 0.96875));
        // Large n stays fast and sensible.
        let (j, k, c) = median_ci_ranks(100_000, 0.95);
        assert!(
            j < 50_000 && k > 50_001 && (0.95..0.96).contains(&c),
            "{j} {k} {c}"
        );
    }

    #[test]
    fn median_ci_on_samples() {
        let xs: Vec<f64> = (1..=10).map(|i| i as f64 * 10.0).rev().collect();
        let s = Stats::from_samples(&xs, 0.05, 14.826, 0.95);
        assert_eq!((s.median_ci_low_ms, s.median_ci_high_ms), (20.0, 90.0));
        assert!(close(s.median_ci_confidence, 0.978515625));
    }

    #[test]
    fn ci_relative_half_width_takes_the_wider_side() {
        // Sorted 10..100 step 10: median 55, 95% interval ranks 2..9 = [20, 90].
        let xs: Vec<f64> = (1..=10).map(|i| i as f64 * 10.0).collect();
        let (median, ci, rel) = median_precision_sorted(&xs, 0.95);
        assert_eq!((median, ci.low, ci.high), (55.0, 20.0, 90.0));
        assert!(close(rel.unwrap(), 35.0 / 55.0));
        let asym = MedianCi {
            low: 9.0,
            high: 10.5,
            ..ci
        };
        assert!(close(ci_rel_half_width(10.0, &asym).unwrap(), 0.1));
        assert_eq!(ci_rel_half_width(0.0, &asym), None);
        assert_eq!(ci_rel_half_width(f64::NAN, &asym), None);
        let s = Stats::from_samples(&xs, 0.05, 14.826, 0.95);
        assert_eq!(s.median_ci_rel, rel);
    }

    #[test]
    fn tiny_n_returns_min_max_with_lower_confidence() {
        // n = 5 cannot reach 95%: [min, max] covers 1 - 2/32 = 0.9375.
        let s = Stats::from_samples(&[3.0, 1.0, 2.0, 5.0, 4.0], 0.05, 14.826, 0.95);
        assert_eq!((s.median_ci_low_ms, s.median_ci_high_ms), (1.0, 5.0));
        assert!(close(s.median_ci_confidence, 0.9375));
    }

    #[test]
    fn single_sample_is_error_free() {
        let s = Stats::from_samples(&[2.5], 0.05, 14.826, 0.95);
        assert_eq!(s.n, 1);
        assert_eq!(s.std_ms, 0.0);
        assert_eq!(s.cv, 0.0);
        assert!(!s.noisy);
        assert_eq!(
            (s.median_ms, s.p99_ms, s.min_ms, s.max_ms),
            (2.5, 2.5, 2.5, 2.5)
        );
        assert_eq!((s.median_ci_low_ms, s.median_ci_high_ms), (2.5, 2.5));
        assert_eq!(s.median_ci_confidence, 0.0);
        assert_eq!(s.outliers, 0);
    }

    #[test]
    #[should_panic(expected = "at least one sample")]
    fn empty_samples_panic_with_message() {
        let _ = Stats::from_samples(&[], 0.05, 14.826, 0.95);
    }

    #[test]
    fn outliers_and_loadgen_minimums() {
        let mut xs: Vec<f64> = (0..700).map(|i| 10.0 + (i % 7) as f64 * 0.01).collect();
        xs[123] = 50.0;
        let s = Stats::from_samples(&xs, 0.05, 14.826, 0.95);
        assert_eq!(s.outlier_indices, vec![123]);
        assert_eq!(s.outliers, 1);
        assert!(s.p90_enough_samples && s.p99_enough_samples);
        let s = Stats::from_samples(&xs[..64], 0.05, 14.826, 0.95);
        assert!(s.p90_enough_samples && !s.p99_enough_samples);
        let s = Stats::from_samples(&xs[..63], 0.05, 14.826, 0.95);
        assert!(!s.p90_enough_samples);
    }
}
