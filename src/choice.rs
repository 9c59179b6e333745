//! Closed sets of named values a user picks from (`--mode prefill`, `precision = "f16"`),
//! described without a command-line library: every domain enum lists its values with their
//! names and one-line help ([`Choice::ALL`]); `cli.rs` turns that into clap's possible values,
//! so the job description a host sends a board (`Job`) and the types inside it do not depend on
//! clap.

/// An enum whose values have stable lower-case names (the same as its serde names).
pub trait Choice: Copy + PartialEq + Send + Sync + 'static {
    /// Every value, with its name and a one-line description, in the order `--help` lists them.
    const ALL: &'static [(Self, &'static str, &'static str)];

    /// The value's name.
    fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(v, _, _)| *v == self)
            .map(|(_, n, _)| *n)
            .expect("every value is listed in ALL")
    }

    /// The value named `name`, if any.
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(_, n, _)| *n == name)
            .map(|(v, _, _)| *v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every choice of the crate: names unique, round-trip, equal to the serde names.
    fn check<T: Choice + serde::Serialize + std::fmt::Debug>() {
        let names: Vec<&str> = T::ALL.iter().map(|(_, n, _)| *n).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        for &(v, n, help) in T::ALL {
            assert_eq!(v.name(), n);
            assert_eq!(T::from_name(n), Some(v));
            assert!(!help.is_empty());
            if let Ok(serde_json::Value::String(s)) = serde_json::to_value(v) {
                assert_eq!(s, n, "{v:?}: serde name differs");
            }
        }
        assert_eq!(T::from_name("no-such-value"), None);
    }

    #[test]
    fn every_choice_is_consistent() {
        check::<crate::workload::Mode>();
        check::<crate::workload::Logits>();
        check::<crate::backend::ort::OptLevel>();
        check::<crate::backend::wgpu::Precision>();
        check::<crate::backend::wgpu::GpuTimer>();
        check::<crate::search::Algo>();
    }
}
