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

use crate::backend::RuntimeInfo;
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
    /// Runtime that produced the numbers; filled by the caller.
    pub runtime: Option<RuntimeInfo>,
    /// wgpu adapters (GPUs, or Mesa's llvmpipe), as `--adapter N` numbers them; filled by the
    /// caller (`lts device`).
    #[serde(default)]
    pub gpu_adapters: Vec<crate::backend::wgpu::AdapterReport>,
    /// Collection time, RFC 3339 UTC, e.g. `2025-01-31T12:34:56Z`.
    pub collected_at: String,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

impl DeviceInfo {
    /// Collects the description of this machine now. Never fails: what cannot be read is left
    /// `None` or empty. `runtime` is left `None` for the caller to fill.
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
            runtime: None,
            gpu_adapters: Vec::new(),
            collected_at: crate::util::now_rfc3339(),
        }
    }

    /// Human-readable `key: value` lines with aligned values; missing values read
    /// "not available".
    pub fn table(&self) -> String {
        const NA: &str = "not available";
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| NA.to_string());
        let gib = |b: u64| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64);
        let freq = if self.cpu_freq_mhz.iter().all(|&f| f == 0) {
            NA.to_string()
        } else {
            let known: Vec<u64> = self
                .cpu_freq_mhz
                .iter()
                .copied()
                .filter(|&f| f > 0)
                .collect();
            let (lo, hi) = (
                known.iter().min().copied().unwrap_or(0),
                known.iter().max().copied().unwrap_or(0),
            );
            let range = if lo == hi {
                format!("{lo} MHz")
            } else {
                format!("{lo}-{hi} MHz")
            };
            format!(
                "{range} ({} of {} cores reported)",
                known.len(),
                self.cpu_freq_mhz.len()
            )
        };
        let temps = if self.temperatures.is_empty() {
            NA.to_string()
        } else {
            self.temperatures
                .iter()
                .map(|t| format!("{} {:.1} C", t.label, t.celsius))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let runtime = match &self.runtime {
            None => NA.to_string(),
            Some(r) => {
                let mut s = format!("{} {}", r.name, r.version);
                if let Some(lib) = &r.library {
                    s.push_str(&format!(" ({lib})"));
                }
                if !r.providers.is_empty() {
                    s.push_str(&format!(", providers: {}", r.providers.join(", ")));
                }
                s
            }
        };
        let rows: Vec<(&str, String)> = vec![
            ("hostname", opt(&self.hostname)),
            ("os", opt(&self.os)),
            ("os version", opt(&self.os_version)),
            ("kernel", opt(&self.kernel)),
            ("arch", self.arch.clone()),
            ("cpu", opt(&self.cpu_brand)),
            (
                "physical cores",
                self.physical_cores
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| NA.to_string()),
            ),
            ("logical cores", self.logical_cores.to_string()),
            ("cpu frequency", freq),
            (
                "cpu max frequency",
                self.cpu_max_freq_khz
                    .map(|k| format!("{} MHz", k / 1000))
                    .unwrap_or_else(|| NA.to_string()),
            ),
            ("governor", opt(&self.governor)),
            ("memory total", gib(self.total_memory_bytes)),
            ("memory available", gib(self.available_memory_bytes)),
            ("temperatures", temps),
            ("runtime", runtime),
            (
                "wgpu adapters",
                if self.gpu_adapters.is_empty() {
                    "none found".to_string()
                } else {
                    self.gpu_adapters.len().to_string()
                },
            ),
            ("collected at", self.collected_at.clone()),
        ];
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (k, v) in rows {
            out.push_str(&format!("{:<w$} {v}\n", format!("{k}:"), w = width + 1));
        }
        for a in &self.gpu_adapters {
            out.push_str(&format!("  {}\n", a.summary()));
            out.push_str(&format!(
                "     max buffer {} MiB, {} invocations/workgroup, {} workgroups/dimension, id {}\n",
                a.max_buffer_size >> 20,
                a.max_invocations,
                a.max_workgroups_per_dim,
                a.vendor_device
            ));
        }
        out
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
        let table = d.table();
        println!("{table}");
        assert!(table.lines().any(|l| l.starts_with("cpu:")), "{table}");
        assert!(table.contains("logical cores:"));
    }

    #[test]
    fn table_prints_missing_values_as_not_available() {
        let d = DeviceInfo {
            hostname: None,
            os: None,
            os_version: None,
            kernel: None,
            arch: "x86_64".into(),
            cpu_brand: None,
            physical_cores: None,
            logical_cores: 2,
            cpu_freq_mhz: vec![],
            cpu_max_freq_khz: None,
            governor: None,
            total_memory_bytes: 8 << 30,
            available_memory_bytes: 4 << 30,
            temperatures: vec![],
            runtime: None,
            gpu_adapters: Vec::new(),
            collected_at: "2025-01-01T00:00:00Z".into(),
        };
        let t = d.table();
        assert!(t.contains("cpu:               not available"), "{t}");
        assert!(t.contains("governor:          not available"), "{t}");
        assert!(t.contains("memory total:      8.0 GiB"), "{t}");
        // All values start in the same column.
        let cols: Vec<usize> = t
            .lines()
            .map(|l| {
                l.find(':').unwrap() + 1 + l[l.find(':').unwrap() + 1..].find(|c| c != ' ').unwrap()
            })
            .collect();
        assert!(cols.windows(2).all(|w| w[0] == w[1]), "{t}");
    }

    #[test]
    fn json_round_trip() {
        let mut d = DeviceInfo::collect();
        d.runtime = Some(RuntimeInfo {
            name: "onnxruntime".into(),
            version: "1.31.1".into(),
            library: Some("/x/libonnxruntime.so".into()),
            providers: vec!["CPUExecutionProvider".into()],
        });
        d.temperatures.push(Temperature {
            label: "test sensor".into(),
            celsius: 42.5,
        });
        let json = serde_json::to_string_pretty(&d).unwrap();
        let back: DeviceInfo = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
        assert!(d.table().contains("onnxruntime 1.31.1"));
        assert!(d.table().contains("test sensor 42.5 C"));
    }
}
