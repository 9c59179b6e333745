//! Quantiles of samples: the one definition every statistic of this crate uses (the summary in
//! [`super::stats`], the outlier scores in [`super::outliers`], tokens/s of a generation).
//!
//! # Percentile definition
//!
//! Percentiles use linear interpolation between the closest ranks, numpy's default
//! (`numpy.percentile(x, q)`, `method="linear"`, Hyndman and Fan 1996 definition 7): with the
//! samples sorted ascending as `x[0] <= ... <= x[n-1]`, let `h = (n - 1) * q / 100`; the
//! percentile is `x[floor(h)] + (h - floor(h)) * (x[floor(h) + 1] - x[floor(h)])`. Thus P0 is the
//! minimum, P100 the maximum and P50 the usual median (the mean of the two middle samples when
//! `n` is even).

/// A copy of `xs` sorted ascending (IEEE total order).
pub fn sorted_copy(xs: &[f64]) -> Vec<f64> {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// The `q`-th percentile (`q` in [0, 100]) of samples already sorted ascending, by linear
/// interpolation between the closest ranks (numpy's default, see the module documentation).
///
/// # Panics
///
/// Panics when `sorted` is empty or `q` is outside [0, 100].
pub fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    assert!(!sorted.is_empty(), "percentile of an empty sample");
    assert!(
        (0.0..=100.0).contains(&q),
        "percentile {q} outside [0, 100]"
    );
    let h = (sorted.len() - 1) as f64 * q / 100.0;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let t = h - lo as f64;
    sorted[lo] + t * (sorted[hi] - sorted[lo])
}

/// The `q`-th percentile (`q` in [0, 100]) of unsorted samples (numpy linear interpolation).
pub fn percentile(samples: &[f64], q: f64) -> f64 {
    percentile_sorted(&sorted_copy(samples), q)
}

/// Median of unsorted samples (numpy's `median`: mean of the two middle samples for even `n`).
pub fn median_of(samples: &[f64]) -> f64 {
    percentile(samples, 50.0)
}
