//! Outlier flagging with the modified z-score, as hyperfine's `src/outlier_detection.rs` does.
//!
//! The modified z-score of a sample is `(x - median) / MAD`, where MAD is the median absolute
//! deviation from the median (Iglewicz and Hoaglin, "How to Detect and Handle Outliers", 1993).
//! hyperfine uses the unscaled MAD with the threshold `1.4826 x 10 = 14.826`: since
//! `1.4826 x MAD` estimates the standard deviation of normal data, the threshold flags samples more
//! than about ten standard deviations from the median. Outliers are only counted and reported;
//! the measurement protocol never drops them.

use super::quantiles::median_of;

/// hyperfine's default threshold on the absolute modified z-score: `1.4826 x 10`.
pub const HYPERFINE_OUTLIER_THRESHOLD: f64 = 14.826;

/// Modified z-scores `(x - median) / MAD` of `samples`, in input order (hyperfine's
/// `modified_zscores`). Returns `None` when the MAD is zero (more than half of the samples are
/// equal to the median), where the score is undefined; hyperfine would divide by zero there.
/// Returns an empty vector for empty input.
pub fn modified_zscores(samples: &[f64]) -> Option<Vec<f64>> {
    if samples.is_empty() {
        return Some(Vec::new());
    }
    let median = median_of(samples);
    let deviations: Vec<f64> = samples.iter().map(|x| (x - median).abs()).collect();
    let mad = median_of(&deviations);
    if mad <= 0.0 || !mad.is_finite() {
        return None;
    }
    Some(samples.iter().map(|x| (x - median) / mad).collect())
}

/// Indices (in input order) of the samples whose absolute modified z-score exceeds `threshold`,
/// as hyperfine counts outliers. No outliers when the MAD is zero.
pub fn outlier_indices(samples: &[f64], threshold: f64) -> Vec<usize> {
    match modified_zscores(samples) {
        None => Vec::new(),
        Some(z) => z
            .iter()
            .enumerate()
            .filter(|(_, z)| z.abs() > threshold)
            .map(|(i, _)| i)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zscores_match_hand_computation() {
        // median 3, |dev| = [2,1,0,1,2] -> MAD 1.
        let z = modified_zscores(&[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        assert_eq!(z, vec![-2.0, -1.0, 0.0, 1.0, 2.0]);
    }

    #[test]
    fn flags_far_sample_only() {
        // median 10.0, deviations [0,0.1,0.1,0.2,0.2,...] -> MAD 0.1; 100.0 is 900 MADs away.
        let xs = [10.0, 10.1, 9.9, 10.2, 9.8, 100.0, 10.0, 10.1, 9.9];
        let idx = outlier_indices(&xs, HYPERFINE_OUTLIER_THRESHOLD);
        assert_eq!(idx, vec![5]);
        // A sample 1.4 (= 14 MADs) away is not flagged, 1.5 (= 15 MADs) is.
        let mut ys = xs;
        ys[5] = 11.4;
        assert!(outlier_indices(&ys, HYPERFINE_OUTLIER_THRESHOLD).is_empty());
        ys[5] = 8.5;
        assert_eq!(outlier_indices(&ys, HYPERFINE_OUTLIER_THRESHOLD), vec![5]);
    }

    #[test]
    fn zero_mad_means_no_outliers() {
        let xs = [5.0, 5.0, 5.0, 5.0, 50.0];
        assert!(modified_zscores(&xs).is_none());
        assert!(outlier_indices(&xs, HYPERFINE_OUTLIER_THRESHOLD).is_empty());
        assert!(outlier_indices(&[], HYPERFINE_OUTLIER_THRESHOLD).is_empty());
        assert!(outlier_indices(&[1.0], HYPERFINE_OUTLIER_THRESHOLD).is_empty());
    }
}
