//! Peak resident memory of a measurement, from the Linux kernel's own high-water mark.
//!
//! Method (Linux >= 4.0, `proc(5)`): before session creation, write `5` to
//! `/proc/self/clear_refs`, which resets the process's peak resident set size (`VmHWM`) to its
//! current RSS, and read `VmRSS` from `/proc/self/status` as the baseline. After the timed runs,
//! read `VmHWM`: the largest RSS the process reached since the reset, sampled by the kernel on
//! every page-table change, so short spikes between polls are not missed (unlike polling RSS as
//! `/usr/bin/time`-style tools on other systems do). The delta `VmHWM - baseline` is the extra
//! resident memory session creation and inference needed at their peak.
//!
//! The figures are process-wide: memory other threads of the same process allocate meanwhile is
//! included, which is why [`super::run_protocol`] runs one measurement at a time. When the reset
//! fails (old kernel, `/proc` mounted read-only, seccomp) the peak since process start is still
//! reported but no delta is computed, and [`PeakMemory::method`] says so. On other operating
//! systems every figure is `None`: no number is ever invented.

use serde::{Deserialize, Serialize};

/// Peak memory of one measurement, with the exact method that produced it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PeakMemory {
    /// `VmHWM` of the process after the timed runs (bytes), when readable.
    pub peak_rss_bytes: Option<u64>,
    /// `VmRSS` of the process before session creation (bytes), when readable.
    pub baseline_rss_bytes: Option<u64>,
    /// `peak_rss_bytes - baseline_rss_bytes` (saturating), only when the high-water mark was
    /// reset before session creation; `None` otherwise.
    pub peak_delta_bytes: Option<u64>,
    /// What was done to obtain the figures, in words.
    pub method: String,
    /// GPU buffers held by a GPU backend (weights, activations, KV cache; all allocated before
    /// the first run, so this is also their peak); `None` for host-memory backends.
    #[serde(default)]
    pub gpu_buffer_bytes: Option<u64>,
}

/// Tracks the peak resident memory of the process from [`PeakTracker::start`] to
/// [`PeakTracker::finish`] (Linux `/proc/self/clear_refs` + `VmHWM`, see the module docs).
#[derive(Debug)]
pub struct PeakTracker {
    baseline: Option<u64>,
    reset_error: Option<String>,
}

impl PeakTracker {
    /// Resets the kernel's high-water mark to the current RSS and reads the baseline RSS.
    pub fn start() -> PeakTracker {
        // Memory freed by earlier work (a previous candidate's session) stays resident in the
        // allocator's free lists; new allocations would reuse it without raising RSS and the
        // delta would read ~0. Hand free memory back to the OS first so the baseline is honest.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: glibc's malloc_trim only releases free memory; it is thread-safe.
        unsafe {
            libc::malloc_trim(0);
        }
        let reset_error = reset_peak().err();
        let baseline = read_status_bytes("VmRSS");
        PeakTracker {
            baseline,
            reset_error,
        }
    }

    /// Reads the high-water mark and reports it against the baseline.
    pub fn finish(&self) -> PeakMemory {
        if !cfg!(target_os = "linux") {
            return PeakMemory {
                peak_rss_bytes: None,
                baseline_rss_bytes: None,
                peak_delta_bytes: None,
                method: "unavailable on this OS".to_string(),
                gpu_buffer_bytes: None,
            };
        }
        let peak = read_status_bytes("VmHWM");
        let (delta, method) = match (&self.reset_error, peak, self.baseline) {
            (None, Some(peak), Some(base)) => (
                Some(peak.saturating_sub(base)),
                "VmHWM after malloc_trim + clear_refs reset, minus VmRSS before session creation \
                 (Linux /proc/self; process-wide)"
                    .to_string(),
            ),
            (Some(err), _, _) => (
                None,
                format!(
                    "VmHWM not reset (clear_refs failed: {err}): peak since process start; \
                     no delta computed (Linux /proc/self)"
                ),
            ),
            (None, None, _) => (None, "VmHWM unreadable in /proc/self/status".to_string()),
            (None, Some(_), None) => (
                None,
                "VmHWM after clear_refs reset; VmRSS baseline unreadable, no delta computed \
                 (Linux /proc/self)"
                    .to_string(),
            ),
        };
        PeakMemory {
            peak_rss_bytes: peak,
            baseline_rss_bytes: self.baseline,
            peak_delta_bytes: delta,
            method,
            gpu_buffer_bytes: None,
        }
    }
}

/// Current resident set size of this process (`VmRSS`, bytes); `None` off Linux or when
/// unreadable.
pub fn current_rss_bytes() -> Option<u64> {
    read_status_bytes("VmRSS")
}

/// Peak resident set size of this process since start or the last reset (`VmHWM`, bytes);
/// `None` off Linux or when unreadable.
pub fn peak_rss_bytes() -> Option<u64> {
    read_status_bytes("VmHWM")
}

/// Parses a `Name:   1234 kB` field of `/proc/self/status` into bytes.
fn parse_status_field(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let mut parts = rest.split_whitespace();
        let value: u64 = parts.next()?.parse().ok()?;
        match parts.next() {
            Some("kB") => Some(value * 1024),
            None => Some(value),
            Some(_) => None,
        }
    })
}

#[cfg(target_os = "linux")]
fn read_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_field(&status, field)
}

#[cfg(not(target_os = "linux"))]
fn read_status_bytes(_field: &str) -> Option<u64> {
    None
}

/// Resets `VmHWM` to the current RSS (`echo 5 > /proc/self/clear_refs`, Linux >= 4.0) and checks
/// that the kernel honoured it.
#[cfg(target_os = "linux")]
fn reset_peak() -> Result<(), String> {
    std::fs::write("/proc/self/clear_refs", "5").map_err(|e| e.to_string())?;
    // Kernels before 4.0 reject "5" (EINVAL) above; still check the effect, allowing for other
    // threads growing RSS between the two reads.
    const SLACK: u64 = 4 << 20;
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    match (
        parse_status_field(&status, "VmHWM"),
        parse_status_field(&status, "VmRSS"),
    ) {
        (Some(hwm), Some(rss)) if hwm > rss + SLACK => Err(format!(
            "write accepted but VmHWM {hwm} B stayed above VmRSS {rss} B"
        )),
        _ => Ok(()),
    }
}

#[cfg(not(target_os = "linux"))]
fn reset_peak() -> Result<(), String> {
    Err("unavailable on this OS".to_string())
}

/// Test support: runs one test of this binary in a fresh child process, so that process-wide
/// memory figures are not disturbed by tests running in parallel threads.
#[cfg(test)]
pub(crate) mod isolated {
    /// Environment variable that marks the child process.
    pub const CHILD_ENV: &str = "LTS_MEASURE_ISOLATED_CHILD";

    /// True inside the child process started by [`run_in_child`].
    pub fn in_child() -> bool {
        std::env::var_os(CHILD_ENV).is_some()
    }

    /// Re-runs the test binary with only `test_path` (exact name) and panics with the child's
    /// output unless that test passed.
    pub fn run_in_child(test_path: &str) {
        let exe = std::env::current_exe().expect("test binary path");
        let out = std::process::Command::new(exe)
            .args([test_path, "--exact", "--test-threads=1", "--nocapture"])
            .env(CHILD_ENV, "1")
            .output()
            .expect("spawn test child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "child test {test_path} failed ({}):\n{stdout}\n{stderr}",
            out.status
        );
        // Show what the child measured.
        println!("{stdout}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_fields() {
        let status = "Name:\tx\nVmHWM:\t  1592 kB\nVmRSS:\t    1500 kB\nThreads:\t1\n";
        assert_eq!(parse_status_field(status, "VmHWM"), Some(1592 * 1024));
        assert_eq!(parse_status_field(status, "VmRSS"), Some(1500 * 1024));
        assert_eq!(parse_status_field(status, "VmSwap"), None);
        assert_eq!(parse_status_field(status, "Threads"), Some(1));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn tracker_sees_allocation_and_reset_works() {
        isolated::run_in_child("measure::memory::tests::tracker_child");
    }

    /// Runs its checks only in the isolated child process.
    #[cfg(target_os = "linux")]
    #[test]
    fn tracker_child() {
        if !isolated::in_child() {
            return;
        }
        const MIB: u64 = 1 << 20;
        let tracker = PeakTracker::start();
        let buf = vec![1u8; 64 << 20]; // written, so every page is resident
        std::hint::black_box(&buf);
        drop(buf);
        let with_alloc = tracker.finish();
        println!("with 64 MiB: {with_alloc:?}");
        assert!(
            with_alloc
                .method
                .starts_with("VmHWM after malloc_trim + clear_refs reset"),
            "{}",
            with_alloc.method
        );
        let delta = with_alloc.peak_delta_bytes.expect("delta");
        assert!(delta >= 60 * MIB, "delta {delta} B");

        // Without the allocation the reset brings the peak back down.
        let tracker = PeakTracker::start();
        let small = tracker.finish();
        println!("without: {small:?}");
        let delta = small.peak_delta_bytes.expect("delta");
        assert!(delta < 8 * MIB, "delta after reset {delta} B");
        assert!(small.peak_rss_bytes.unwrap() < with_alloc.peak_rss_bytes.unwrap());
    }
}
