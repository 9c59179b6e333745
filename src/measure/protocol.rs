//! The measurement protocol's settings: how long and how often one candidate runs, with the
//! tools each default comes from.

use anyhow::bail;
use serde::{Deserialize, Serialize};

/// How long and how often to run one candidate. Serde fills missing fields with the defaults and
/// rejects unknown ones, so a job file cannot silently misspell a setting.
///
/// Defaults and their sources:
/// - `warmup_s = 0.2`: warm-up by time, as TFLite `benchmark_model` (`warmup_min_secs`, 0.5 s)
///   and criterion (3 s) do; 0.2 s suffices to fill caches and let allocators settle for the
///   small models searched here. At least one warm-up run always follows the first run.
/// - `min_runs = 10`, `min_duration_s = 1.0`: MLPerf LoadGen runs until both a minimum query
///   count and a minimum duration are met (library defaults 100 queries and 10 s); smaller
///   values keep a search over hundreds of candidates affordable, and the `p90_enough_samples` /
///   `p99_enough_samples` flags say when a tail percentile lacks LoadGen's sample minimum.
/// - `max_runs = 100_000`, `max_duration_s = 120`: hard caps so no candidate can stall a search;
///   hitting one before both minimums are met marks the measurement invalid.
/// - `cv_threshold = 0.05`: trtexec warns when the coefficient of variation exceeds 1%, but the
///   shared 2-core VMs this runs on show 5-30% run-to-run spread, so 1% would flag everything;
///   above 5% the measurement is flagged `noisy` (never discarded).
/// - `outlier_threshold = 14.826`: hyperfine's modified z-score limit, `1.4826 x 10` (about ten
///   standard deviations for normal data); outliers are flagged, never dropped.
/// - `confidence = 0.95`: the customary level for the median's distribution-free interval.
/// - `target_ci_rel = 0.02`: keep timing past the minimums until the median's 95% interval lies
///   within +-2% of the median. The reference tools' strictest noise band is criterion's +-1%;
///   the shared 2-core VMs here drift 0.92x-1.28x between runs, so a within-run precision much
///   finer than 2% buys nothing, while +-2% is reached by a quiet candidate at `min_runs` (with
///   n = 10 the interval spans order statistics 2..9, about +-1.25 x 1.96 x CV / sqrt(n): CV up
///   to ~2.5%), by a CV-5% candidate in ~40 runs and a CV-10% one in ~150. `0` disables the rule
///   (stop as soon as both minimums are met, the rule before this field existed); in a file
///   that lacks the field it reads as 0, so older jobs and results keep their meaning.
///
/// The search uses its own two protocols (`SearchConfig::default_short_protocol` and
/// `SearchConfig::default_full_protocol` in `crate::search`, with their reasons).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Protocol {
    /// Warm-up duration in seconds (TFLite `warmup_min_secs`); runs continue until this much time
    /// has passed, at least one run after the first run. `>= 0`.
    pub warmup_s: f64,
    /// Minimum number of timed runs (LoadGen `min_query_count`). `>= 1`.
    pub min_runs: usize,
    /// Minimum wall time of the timed loop in seconds (LoadGen `min_duration`). `>= 0`.
    pub min_duration_s: f64,
    /// Hard cap on timed runs. `>= min_runs`.
    pub max_runs: usize,
    /// Hard cap on the timed loop's wall time in seconds; hitting it before `min_runs` marks the
    /// measurement invalid. `> 0` and `>= min_duration_s`.
    pub max_duration_s: f64,
    /// Coefficient of variation above which the measurement is flagged `noisy` (trtexec: 1%).
    pub cv_threshold: f64,
    /// Absolute modified z-score above which a sample is flagged as an outlier (hyperfine).
    pub outlier_threshold: f64,
    /// Requested confidence of the median's distribution-free interval, in (0, 1).
    pub confidence: f64,
    /// Precision stopping rule: once `min_runs` and `min_duration_s` are met, keep timing until
    /// the median's distribution-free interval at `confidence` lies within +-`target_ci_rel` x
    /// median ([`super::stats::ci_rel_half_width`]; the interval must also reach `confidence`, which
    /// needs n >= 6 at 95%), or until `max_runs` / `max_duration_s` is hit. `0` disables it. In
    /// `[0, 1)`. Missing in a file: 0 (files written before the field had no such rule).
    #[serde(default)]
    pub target_ci_rel: f64,
}

impl Default for Protocol {
    /// The defaults documented on [`Protocol`].
    fn default() -> Self {
        Protocol {
            warmup_s: 0.2,
            min_runs: 10,
            min_duration_s: 1.0,
            max_runs: 100_000,
            max_duration_s: 120.0,
            cv_threshold: 0.05,
            outlier_threshold: super::outliers::HYPERFINE_OUTLIER_THRESHOLD,
            confidence: 0.95,
            target_ci_rel: 0.02,
        }
    }
}

impl Protocol {
    /// A short protocol for tests and smoke runs: no timed warm-up (still one warm-up run),
    /// exactly 3 timed runs (no minimum duration, no precision target); other fields as
    /// [`Protocol::default`].
    pub fn quick() -> Protocol {
        Protocol {
            warmup_s: 0.0,
            min_runs: 3,
            min_duration_s: 0.0,
            target_ci_rel: 0.0,
            ..Protocol::default()
        }
    }

    /// Whether summary statistics meet the precision target: the median's interval reaches the
    /// requested confidence and its relative half-width is at most `target_ci_rel`. False when
    /// the rule is off (`target_ci_rel == 0`).
    pub fn precision_met(&self, ci_rel: Option<f64>, ci_confidence: f64) -> bool {
        self.target_ci_rel > 0.0
            && ci_confidence >= self.confidence
            && ci_rel.is_some_and(|r| r <= self.target_ci_rel)
    }

    /// Checks every field; the error names the offending field and its value.
    pub fn validate(&self) -> anyhow::Result<()> {
        fn non_negative(name: &str, v: f64) -> anyhow::Result<()> {
            if !(v.is_finite() && v >= 0.0) {
                bail!("protocol.{name} must be a finite number >= 0 (got {v})");
            }
            Ok(())
        }
        fn positive(name: &str, v: f64) -> anyhow::Result<()> {
            if !(v.is_finite() && v > 0.0) {
                bail!("protocol.{name} must be a finite number > 0 (got {v})");
            }
            Ok(())
        }
        non_negative("warmup_s", self.warmup_s)?;
        non_negative("min_duration_s", self.min_duration_s)?;
        positive("max_duration_s", self.max_duration_s)?;
        positive("cv_threshold", self.cv_threshold)?;
        positive("outlier_threshold", self.outlier_threshold)?;
        if self.min_runs == 0 {
            bail!("protocol.min_runs must be >= 1 (got 0)");
        }
        if self.max_runs < self.min_runs {
            bail!(
                "protocol.max_runs ({}) must be >= protocol.min_runs ({})",
                self.max_runs,
                self.min_runs
            );
        }
        if self.max_duration_s < self.min_duration_s {
            bail!(
                "protocol.max_duration_s ({}) must be >= protocol.min_duration_s ({})",
                self.max_duration_s,
                self.min_duration_s
            );
        }
        if !(self.confidence > 0.0 && self.confidence < 1.0) {
            bail!(
                "protocol.confidence must be strictly between 0 and 1 (got {})",
                self.confidence
            );
        }
        check_target_ci_rel(self.target_ci_rel)
            .map_err(|e| anyhow::anyhow!("protocol.target_ci_rel {e}"))?;
        Ok(())
    }
}

/// Checks a precision target (`target_ci_rel`, `--target-ci`): a finite number in `[0, 1)`. The
/// error completes a sentence that starts with the setting's name.
pub fn check_target_ci_rel(v: f64) -> Result<(), String> {
    if v.is_finite() && (0.0..1.0).contains(&v) {
        Ok(())
    } else {
        Err(format!(
            "must be a finite number in [0, 1), the relative half-width of the median's \
             confidence interval (0.02 = +-2%; 0 disables the precision rule), got {v}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_serde_defaults_and_unknown_fields() {
        // A missing target_ci_rel reads as 0 (the rule files without it were measured with);
        // every other missing field takes Protocol::default().
        let p: Protocol = serde_json::from_str("{}").unwrap();
        assert_eq!(
            p,
            Protocol {
                target_ci_rel: 0.0,
                ..Protocol::default()
            }
        );
        let p: Protocol = serde_json::from_str(r#"{"min_runs": 3, "warmup_s": 0}"#).unwrap();
        assert_eq!(p.min_runs, 3);
        assert_eq!(p.warmup_s, 0.0);
        assert_eq!(p.max_runs, 100_000);
        let err = serde_json::from_str::<Protocol>(r#"{"min_run": 3}"#).unwrap_err();
        assert!(err.to_string().contains("min_run"), "{err}");
        let json = serde_json::to_string(&Protocol::default()).unwrap();
        assert!(json.contains(r#""target_ci_rel":0.02"#), "{json}");
        assert_eq!(
            serde_json::from_str::<Protocol>(&json).unwrap(),
            Protocol::default()
        );
    }
}
