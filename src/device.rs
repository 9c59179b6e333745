//! What machine the numbers come from, recorded next to every measurement.
//!
//! Follows the reference's rule to record the configuration and the throttling state with
//! results (MLPerf submissions' system description, NVIDIA jetson_benchmarks, TFLite
//! `benchmark_model`): CPU model and core counts, current per-core frequency, maximum frequency
//! and governor (cpufreq sysfs), memory, and temperatures (sysinfo components: Linux hwmon). A
//! value the machine does not expose is `None` or empty and printed as "not available"; nothing is
//! ever invented.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

use crate::sysfs::read_trimmed;
pub use crate::sysfs::Temperature;

/// Description of the machine a measurement ran on (MLPerf-style system description plus the
/// frequency, governor and temperature state that throttling depends on).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DeviceInfo {
    /// Host name (sysinfo `System::host_name`).
    pub hostname: Option<String>,
    /// Operating system name, e.g. `Ubuntu` (sysinfo `System::name`).
    pub os: Option<String>,
    /// Operating system version, e.g. `24.04` (sysinfo `System::os_version`).
    pub os_version: Option<String>,
    /// Kernel version (sysinfo `System::kernel_version`).
    pub kernel: Option<String>,
    /// Target architecture of this binary (`std::env::consts::ARCH`).
    pub arch: String,
    /// CPU model string of the first logical core (sysinfo `Cpu::brand`).
    pub cpu_brand: Option<String>,
    /// Physical core count (sysinfo).
    pub physical_cores: Option<usize>,
    /// Logical core count (sysinfo CPU list; `std::thread::available_parallelism` if empty).
    pub logical_cores: usize,
    /// Current frequency of each logical core in MHz (sysinfo); empty when unknown, and entries
    /// of 0 mean the OS did not report that core's frequency.
    pub cpu_freq_mhz: Vec<u64>,
    /// Maximum frequency of cpu0 in kHz (`/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq`).
    pub cpu_max_freq_khz: Option<u64>,
    /// cpufreq governor of cpu0 (`.../cpu0/cpufreq/scaling_governor`), e.g. `performance`.
    pub governor: Option<String>,
    /// Total RAM in bytes (sysinfo; the host's, not a container limit).
    pub total_memory_bytes: u64,
    /// Available RAM in bytes at collection time (sysinfo, `MemAvailable` on Linux).
    pub available_memory_bytes: u64,
    /// Temperature sensors that report a reading; empty when the machine exposes none.
    pub temperatures: Vec<Temperature>,
    /// Collection time, RFC 3339 UTC, e.g. `2025-01-31T12:34:56Z`.
    pub collected_at: String,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

impl DeviceInfo {
    /// Collects the description of this machine now. Never fails: what cannot be read is left
    /// `None` or empty. The runtime and GPU adapters are not the machine's: `lts device` reports them
    /// beside it.
    pub fn collect() -> DeviceInfo {
        let sys = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_frequency())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        );
        let cpus = sys.cpus();
        let logical_cores = if cpus.is_empty() {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            cpus.len()
        };
        let cpu_brand = non_empty(cpus.first().map(|c| c.brand().to_string()));
        let cpu_freq_mhz: Vec<u64> = cpus.iter().map(|c| c.frequency()).collect();
        let temperatures = crate::sysfs::hwmon_sensors();
        DeviceInfo {
            hostname: non_empty(System::host_name()),
            os: non_empty(System::name()),
            os_version: non_empty(System::os_version()),
            kernel: non_empty(System::kernel_version()),
            arch: std::env::consts::ARCH.to_string(),
            cpu_brand,
            physical_cores: System::physical_core_count(),
            logical_cores,
            cpu_freq_mhz,
            cpu_max_freq_khz: read_trimmed(Path::new(
                "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq",
            ))
            .and_then(|s| s.parse().ok()),
            governor: read_trimmed(Path::new(
                "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor",
            )),
            total_memory_bytes: sys.total_memory(),
            available_memory_bytes: sys.available_memory(),
            temperatures,
            collected_at: crate::util::now_rfc3339(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collect_works_here() {
        let d = DeviceInfo::collect();
        assert!(d.logical_cores >= 1);
        assert!(d.total_memory_bytes > 0);
        assert!(d.available_memory_bytes <= d.total_memory_bytes);
        assert_eq!(d.arch, std::env::consts::ARCH);
        assert_eq!(d.collected_at.len(), 20, "{}", d.collected_at);
        assert!(d.collected_at.ends_with('Z'));
        assert!(d.temperatures.iter().all(|t| t.celsius.is_finite()));
    }

    #[test]
    fn json_round_trip() {
        let mut d = DeviceInfo::collect();
        d.temperatures.push(Temperature {
            label: "test sensor".into(),
            celsius: 42.5,
        });
        let json = serde_json::to_string_pretty(&d).unwrap();
        let back: DeviceInfo = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
    }
}
