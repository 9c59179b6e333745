//! Readers of the Linux sysfs / procfs trees (and of sysinfo's hwmon sensors) that
//! [`crate::device`] and [`crate::thermal`] share. Every reader takes the path, so tests point
//! it at fixture trees (`tests/fixtures/sysfs/`); every reader returns `None` or an empty list
//! for what this machine does not expose, never an error.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One temperature sensor reading (sysinfo `Component`: Linux hwmon / thermal zones).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Temperature {
    /// Sensor label as the OS names it, e.g. `coretemp Package id 0`.
    pub label: String,
    /// Temperature in degrees Celsius.
    pub celsius: f32,
}

/// Reads a sysfs or procfs file, trimmed of whitespace and NULs; `None` when absent, unreadable
/// or empty.
pub fn read_trimmed(path: &Path) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let s = s.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!s.is_empty()).then(|| s.to_string())
}

/// A sysfs or procfs file parsed as a number (`None` when absent or not a number).
pub fn read_num<T: std::str::FromStr>(path: &Path) -> Option<T> {
    read_trimmed(path)?.parse().ok()
}

/// Sorted `(number, path)` of the entries of `dir` named `<prefix><number>`.
pub fn numbered(dir: &Path, prefix: &str) -> Vec<(usize, PathBuf)> {
    let mut v: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.strip_prefix(prefix)?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    v.sort();
    v
}

/// Temperature sensors with a finite reading, through sysinfo components (Linux hwmon).
pub fn hwmon_sensors() -> Vec<Temperature> {
    sysinfo::Components::new_with_refreshed_list()
        .list()
        .iter()
        .filter_map(|c| {
            let t = c.temperature()?;
            t.is_finite().then(|| Temperature {
                label: c.label().to_string(),
                celsius: t,
            })
        })
        .collect()
}
