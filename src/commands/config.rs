//! Flags to settings, in one place (after ripgrep's `HiArgs::from_low_args`): the flag groups
//! several commands share (ONNX Runtime settings, the measurement protocol, the device profile)
//! are translated here, each by one function, so that a flag means the same in every command
//! and a default changes in one line.

use anyhow::Result;

use crate::backend::ort::{OptLevel, OrtOptions};
use crate::cli::{OrtThreadArgs, ProfileArgs};
use crate::measure::Protocol;
use crate::profile::DeviceProfile;

/// Loads `--device-profile` and prints, on stderr, what it sets and where this machine does not
/// match it.
pub fn load_profile(args: &ProfileArgs) -> Result<Option<DeviceProfile>> {
    let Some(path) = &args.device_profile else {
        return Ok(None);
    };
    let p = DeviceProfile::load(path)?;
    eprintln!("{}", crate::report::terminal::profile_summary(&p));
    for w in p.mismatches(p.thermal.root()) {
        eprintln!("warning: {w}");
    }
    Ok(Some(p))
}

/// The ONNX Runtime flags of a command (`--opt-level`, `--threads`, `--inter-threads`,
/// `--no-spin`; a command without one of them leaves it at its default): the base settings,
/// then the device profile's, then each flag given on the command line.
#[derive(Clone, Debug)]
pub struct OrtFlags {
    /// `--opt-level` (the default where a command has none).
    pub opt_level: OptLevel,
    /// `--threads`.
    pub threads: Option<usize>,
    /// `--inter-threads`.
    pub inter_threads: Option<usize>,
    /// `--no-spin`.
    pub no_spin: bool,
}

impl Default for OrtFlags {
    /// No flag given: ONNX Runtime's settings as [`OrtOptions::default`] has them.
    fn default() -> OrtFlags {
        OrtFlags {
            opt_level: OrtOptions::default().opt_level,
            threads: None,
            inter_threads: None,
            no_spin: false,
        }
    }
}

impl OrtFlags {
    /// The thread flags of a timing command, with `--opt-level` where it has one.
    pub fn from_args(args: &OrtThreadArgs, opt_level: OptLevel) -> OrtFlags {
        OrtFlags {
            opt_level,
            threads: args.threads,
            inter_threads: args.inter_threads,
            no_spin: args.no_spin,
        }
    }

    /// Only `--threads` (`lts quantize`, `lts eval` without `--opt-level`).
    pub fn threads(threads: usize) -> OrtFlags {
        OrtFlags {
            threads: Some(threads),
            ..OrtFlags::default()
        }
    }

    /// The ONNX Runtime settings these flags give over `profile`'s; a command checks them
    /// ([`OrtOptions::validate`]: errors name the flag) where its backend is ONNX Runtime.
    pub fn to_ort(&self, profile: Option<&DeviceProfile>) -> OrtOptions {
        let mut ort = OrtOptions {
            opt_level: self.opt_level,
            ..OrtOptions::default()
        };
        if let Some(p) = profile {
            ort = p.apply_ort(ort);
        }
        if let Some(n) = self.threads {
            ort.intra_threads = n;
        }
        if let Some(n) = self.inter_threads {
            ort.inter_threads = n;
        }
        if self.no_spin {
            ort.allow_spinning = false;
        }
        ort
    }
}

/// The protocol flags of a command (`--warmup-s`, `--min-runs`, `--min-duration-s`,
/// `--max-runs`, `--max-duration-s`, `--cv-threshold`, `--target-ci`), each over a base
/// protocol where given.
#[derive(Clone, Debug, Default)]
pub struct ProtocolFlags {
    /// `--warmup-s`.
    pub warmup_s: Option<f64>,
    /// `--min-runs`.
    pub min_runs: Option<usize>,
    /// `--min-duration-s`.
    pub min_duration_s: Option<f64>,
    /// `--max-runs`.
    pub max_runs: Option<usize>,
    /// `--max-duration-s`.
    pub max_duration_s: Option<f64>,
    /// `--cv-threshold`.
    pub cv_threshold: Option<f64>,
    /// `--target-ci` (0 turns the precision target off).
    pub target_ci_rel: Option<f64>,
}

impl ProtocolFlags {
    /// `base` with every given flag applied.
    pub fn over(&self, base: Protocol) -> Protocol {
        let mut p = base;
        if let Some(v) = self.warmup_s {
            p.warmup_s = v;
        }
        if let Some(v) = self.min_runs {
            p.min_runs = v;
        }
        if let Some(v) = self.min_duration_s {
            p.min_duration_s = v;
        }
        if let Some(v) = self.max_runs {
            p.max_runs = v;
        }
        if let Some(v) = self.max_duration_s {
            p.max_duration_s = v;
        }
        if let Some(v) = self.cv_threshold {
            p.cv_threshold = v;
        }
        if let Some(v) = self.target_ci_rel {
            p.target_ci_rel = v;
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_profile_and_the_base() {
        let ort = OrtFlags {
            threads: Some(3),
            no_spin: true,
            ..OrtFlags::default()
        }
        .to_ort(None);
        assert_eq!(ort.intra_threads, 3);
        assert!(!ort.allow_spinning);
        assert_eq!(ort.inter_threads, OrtOptions::default().inter_threads);
        assert!(OrtFlags::threads(0).to_ort(None).validate().is_err());

        let p = ProtocolFlags {
            min_runs: Some(7),
            target_ci_rel: Some(0.0),
            ..ProtocolFlags::default()
        }
        .over(Protocol::default());
        assert_eq!(p.min_runs, 7);
        assert_eq!(p.target_ci_rel, 0.0);
        assert_eq!(p.warmup_s, Protocol::default().warmup_s);
    }
}
