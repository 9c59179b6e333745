//! Thermal and frequency state around each measurement: sampled before and after every
//! candidate, stored with its result, and turned into flags when the numbers were taken on a
//! throttling or down-clocked machine.
//!
//! A latency measured on a hot board is a wrong number: the Raspberry Pi firmware caps the ARM
//! clock from 80 C (soft limit) and throttles hard at 85 C, Linux's cpufreq cooling devices lower
//! `scaling_max_freq` when a thermal zone passes a passive trip point, and Jetsons change clocks
//! with their power mode. The MLPerf inference rules and NVIDIA's jetson_benchmarks record these
//! states with results; TFLite's `benchmark_model` guidance asks for a fixed governor. Sources:
//! - temperatures: `/sys/class/thermal/thermal_zone*/{type,temp,trip_point_*}` (millidegrees C)
//!   plus sysinfo components (Linux hwmon) on the live system;
//! - CPU clocks: `/sys/devices/system/cpu/cpu*/cpufreq/{scaling_cur_freq,scaling_max_freq,
//!   cpuinfo_max_freq,scaling_governor}` (kHz);
//! - Raspberry Pi throttle bits: `vcgencmd get_throttled` (`throttled=0x50005`, bit meanings
//!   from the Raspberry Pi documentation, see [`ThrottleBits`]);
//! - Jetson power mode: `nvpmodel -q` (`NV Power Mode: MAXN`).
//!
//! Every reader takes a root folder (`/` on a real machine), so tests feed recorded sysfs trees
//! from `tests/fixtures/sysfs/`. What a machine does not expose is listed in
//! [`ThermalSample::missing`] and never invented.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::sysfs::{hwmon_sensors, numbered, read_num, read_trimmed, Temperature};

/// What to watch and how to react, from a device profile's `[thermal]` table; part of a
/// [`crate::job::Job`], so a host can send it to a board. Missing fields take the defaults.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ThermalSettings {
    /// Thermal zone types (the `type` file, e.g. `cpu-thermal`) whose temperature decides
    /// throttling and cool-down; empty = every zone.
    pub zones: Vec<String>,
    /// Temperature at or above which a sample is flagged as throttling (the Pi 4/5 firmware's
    /// soft limit is 80 C). `None`: each zone's lowest passive trip point, when it has one.
    pub throttle_temp_c: Option<f32>,
    /// Before each candidate, wait until the watched zones are at or below this temperature.
    /// `None`: no waiting.
    pub cooldown_temp_c: Option<f32>,
    /// Longest cool-down wait in seconds; a candidate measured after the wait ran out is flagged.
    pub cooldown_timeout_s: f64,
    /// Seconds between temperature reads while cooling down.
    pub cooldown_poll_s: f64,
    /// Relative drop of the fastest core's clock from before to after a candidate that is
    /// flagged (0.10 = a drop of more than 10%).
    pub freq_drop_tolerance: f64,
    /// Command printing the Raspberry Pi throttle word (`throttled=0x...`); empty = none.
    pub throttle_command: Vec<String>,
    /// Command printing the Jetson power mode (`NV Power Mode: ...`); empty = none.
    pub power_mode_command: Vec<String>,
    /// Root under which `sys/class/thermal` and `sys/devices/system/cpu` are read (`/` when
    /// unset): for tests with recorded trees, or a board's sysfs mounted elsewhere. sysinfo's
    /// hwmon sensors are read only when this is unset or `/`.
    pub sysfs_root: Option<PathBuf>,
}

impl Default for ThermalSettings {
    fn default() -> Self {
        ThermalSettings {
            zones: Vec::new(),
            throttle_temp_c: None,
            cooldown_temp_c: None,
            cooldown_timeout_s: 300.0,
            cooldown_poll_s: 1.0,
            freq_drop_tolerance: 0.10,
            throttle_command: vec!["vcgencmd".into(), "get_throttled".into()],
            power_mode_command: vec!["nvpmodel".into(), "-q".into()],
            sysfs_root: None,
        }
    }
}

impl ThermalSettings {
    /// Checks the values; the error names the field and the fix.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, v: f64| {
            anyhow::anyhow!(
                "thermal setting {what} = {v} is invalid: it must be a finite number >= 0"
            )
        };
        for (what, v) in [
            ("cooldown_timeout_s", self.cooldown_timeout_s),
            ("cooldown_poll_s", self.cooldown_poll_s),
            ("freq_drop_tolerance", self.freq_drop_tolerance),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(bad(what, v));
            }
        }
        if self.freq_drop_tolerance >= 1.0 {
            anyhow::bail!(
                "thermal setting freq_drop_tolerance = {} must be below 1 (0.10 flags a drop of more than 10%)",
                self.freq_drop_tolerance
            );
        }
        for (what, t) in [
            ("throttle_temp_c", self.throttle_temp_c),
            ("cooldown_temp_c", self.cooldown_temp_c),
        ] {
            if let Some(t) = t {
                if !t.is_finite() || !(-50.0..=150.0).contains(&t) {
                    anyhow::bail!("thermal setting {what} = {t} C is outside -50..150 C");
                }
            }
        }
        Ok(())
    }

    /// The folder sysfs is read under: `sysfs_root`, else `/`.
    pub fn root(&self) -> &Path {
        self.sysfs_root.as_deref().unwrap_or(Path::new("/"))
    }

    fn live(&self) -> bool {
        self.root() == Path::new("/")
    }

    /// True when `zone_type` is one of the watched zones.
    fn watches(&self, zone_type: &str) -> bool {
        self.zones.is_empty() || self.zones.iter().any(|z| z == zone_type)
    }
}

/// One thermal zone's reading (`/sys/class/thermal/thermal_zoneN`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ZoneReading {
    /// Zone folder name, e.g. `thermal_zone0`.
    pub zone: String,
    /// Zone type, e.g. `cpu-thermal` (Pi), `CPU-therm` (Jetson), `x86_pkg_temp`.
    pub kind: String,
    /// Temperature in degrees Celsius.
    pub celsius: f32,
    /// Lowest passive trip point in degrees Celsius (where cpufreq cooling starts), if any.
    pub passive_trip_c: Option<f32>,
}

/// One CPU's clock state (`/sys/devices/system/cpu/cpuN/cpufreq`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CpuClock {
    /// Logical CPU number.
    pub cpu: usize,
    /// Current frequency in kHz (`scaling_cur_freq`).
    pub cur_khz: Option<u64>,
    /// Upper limit of the policy in kHz (`scaling_max_freq`), lowered by cpufreq cooling.
    pub policy_max_khz: Option<u64>,
    /// Hardware maximum in kHz (`cpuinfo_max_freq`).
    pub hw_max_khz: Option<u64>,
    /// Governor (`scaling_governor`), e.g. `performance`, `ondemand`, `schedutil`.
    pub governor: Option<String>,
}

/// The Raspberry Pi firmware's throttle word (`vcgencmd get_throttled`). Bits 0-3 describe the
/// current state, bits 16-19 whether the same condition occurred since boot (Raspberry Pi
/// documentation, "vcgencmd get_throttled").
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleBits(pub u32);

const THROTTLE_NAMES: [&str; 4] = [
    "under-voltage",
    "arm frequency capped",
    "throttled",
    "soft temperature limit",
];

impl ThrottleBits {
    /// Parses `throttled=0x50005` (or a bare `0x50005`).
    pub fn parse(text: &str) -> Option<ThrottleBits> {
        let s = text.trim();
        let s = s.strip_prefix("throttled=").unwrap_or(s);
        let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
        u32::from_str_radix(hex.trim(), 16).ok().map(ThrottleBits)
    }

    /// Names of the conditions active now (bits 0-3).
    pub fn now(self) -> Vec<&'static str> {
        (0..4)
            .filter(|b| self.0 & (1 << b) != 0)
            .map(|b| THROTTLE_NAMES[b])
            .collect()
    }

    /// Names of the conditions that occurred since boot (bits 16-19).
    pub fn occurred(self) -> Vec<&'static str> {
        (0..4)
            .filter(|b| self.0 & (1 << (16 + b)) != 0)
            .map(|b| THROTTLE_NAMES[b])
            .collect()
    }
}

/// Parses `nvpmodel -q` output (`NV Power Mode: MAXN` then the mode number) into `MAXN (0)`.
pub fn parse_power_mode(text: &str) -> Option<String> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let name = lines
        .by_ref()
        .find_map(|l| l.strip_prefix("NV Power Mode:"))
        .map(str::trim)?;
    Some(match lines.next().filter(|l| l.parse::<u32>().is_ok()) {
        Some(id) => format!("{name} ({id})"),
        None => name.to_string(),
    })
}

/// Thermal and clock state at one instant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ThermalSample {
    /// UTC time of the sample (RFC 3339).
    pub at: String,
    /// Thermal zones with a readable temperature.
    pub zones: Vec<ZoneReading>,
    /// hwmon sensors through sysinfo (live system only).
    pub sensors: Vec<Temperature>,
    /// Per-CPU clocks, for CPUs with cpufreq.
    pub cpus: Vec<CpuClock>,
    /// Raspberry Pi throttle word, when the throttle command answered.
    pub throttle: Option<ThrottleBits>,
    /// Jetson power mode, when the power-mode command answered.
    pub power_mode: Option<String>,
    /// What could not be read and why, e.g. `thermal zones: none under /sys/class/thermal`.
    pub missing: Vec<String>,
}

impl ThermalSample {
    /// Hottest watched zone (name, C), else the hottest hwmon sensor when no zone is readable.
    pub fn hottest(&self, settings: &ThermalSettings) -> Option<(String, f32)> {
        hottest_of(&self.zones, &self.sensors, settings)
    }

    /// Highest current CPU clock in kHz (the core that ran the work).
    pub fn fastest_khz(&self) -> Option<u64> {
        self.cpus.iter().filter_map(|c| c.cur_khz).max()
    }

    /// Governors in use, deduplicated, e.g. `["schedutil"]`.
    pub fn governors(&self) -> Vec<String> {
        let mut g: Vec<String> = self
            .cpus
            .iter()
            .filter_map(|c| c.governor.clone())
            .collect();
        g.sort();
        g.dedup();
        g
    }
}

/// Hottest of the watched `zones` (type, C); the hottest of `sensors` when there is no zone.
fn hottest_of(
    zones: &[ZoneReading],
    sensors: &[Temperature],
    settings: &ThermalSettings,
) -> Option<(String, f32)> {
    let hottest = |a: &(String, f32), b: &(String, f32)| a.1.total_cmp(&b.1);
    if zones.is_empty() {
        sensors
            .iter()
            .map(|s| (s.label.clone(), s.celsius))
            .max_by(hottest)
    } else {
        zones
            .iter()
            .filter(|z| settings.watches(&z.kind))
            .map(|z| (z.kind.clone(), z.celsius))
            .max_by(hottest)
    }
}

/// Reads `sys/class/thermal/thermal_zone*` under `root`.
pub fn read_zones(root: &Path) -> Vec<ZoneReading> {
    numbered(&root.join("sys/class/thermal"), "thermal_zone")
        .into_iter()
        .filter_map(|(n, dir)| {
            let milli: i64 = read_num(&dir.join("temp"))?;
            // Trip points are numbered from 0 without gaps (kernel thermal sysfs ABI).
            let passive_trip_c = (0..)
                .map(|k| {
                    let kind = read_trimmed(&dir.join(format!("trip_point_{k}_type")));
                    (kind, dir.join(format!("trip_point_{k}_temp")))
                })
                .take_while(|(kind, _)| kind.is_some())
                .filter(|(kind, _)| kind.as_deref() == Some("passive"))
                .filter_map(|(_, temp)| read_num::<i64>(&temp))
                .map(|m| m as f32 / 1000.0)
                .reduce(f32::min);
            Some(ZoneReading {
                zone: format!("thermal_zone{n}"),
                kind: read_trimmed(&dir.join("type")).unwrap_or_else(|| "unknown".into()),
                celsius: milli as f32 / 1000.0,
                passive_trip_c,
            })
        })
        .collect()
}

/// Reads `sys/devices/system/cpu/cpu*/cpufreq` under `root`; CPUs without cpufreq are left out.
pub fn read_clocks(root: &Path) -> Vec<CpuClock> {
    numbered(&root.join("sys/devices/system/cpu"), "cpu")
        .into_iter()
        .filter_map(|(cpu, dir)| {
            let f = dir.join("cpufreq");
            if !f.is_dir() {
                return None;
            }
            Some(CpuClock {
                cpu,
                cur_khz: read_num(&f.join("scaling_cur_freq")),
                policy_max_khz: read_num(&f.join("scaling_max_freq")),
                hw_max_khz: read_num(&f.join("cpuinfo_max_freq")),
                governor: read_trimmed(&f.join("scaling_governor")),
            })
        })
        .collect()
}

/// Board model from the device tree (`proc/device-tree/model` under `root`), e.g.
/// `Raspberry Pi 4 Model B Rev 1.4`; `None` on machines without a device tree (x86).
pub fn board_model(root: &Path) -> Option<String> {
    read_trimmed(&root.join("proc/device-tree/model"))
}

/// Runs `cmd` with a 5 s limit and returns its stdout, or why it could not.
fn run_command(cmd: &[String]) -> std::result::Result<String, String> {
    let (prog, args) = cmd.split_first().ok_or("no command")?;
    let mut child = Command::new(prog)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("`{prog}` not found"),
            _ => format!("`{prog}` could not start: {e}"),
        })?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("`{}` did not answer within 5 s", cmd.join(" ")));
            }
        }
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.code() == Some(127) {
        // What a wrapper (a shell, qemu-user's exec) reports for a missing program.
        return Err(format!("`{prog}` not found"));
    }
    if !out.status.success() {
        return Err(format!("`{}` failed ({})", cmd.join(" "), out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Takes one sample with `settings` (its root, commands and zones).
pub fn sample(settings: &ThermalSettings) -> ThermalSample {
    let root = settings.root();
    let mut missing = Vec::new();
    let zones = read_zones(root);
    if zones.is_empty() {
        missing.push(format!(
            "thermal zones: none readable under {}",
            root.join("sys/class/thermal").display()
        ));
    } else if !settings.zones.is_empty() && !zones.iter().any(|z| settings.watches(&z.kind)) {
        missing.push(format!(
            "thermal zones {:?}: not on this machine (it has {})",
            settings.zones,
            zones
                .iter()
                .map(|z| z.kind.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let sensors = if settings.live() {
        hwmon_sensors()
    } else {
        Vec::new()
    };
    let cpus = read_clocks(root);
    if cpus.is_empty() {
        missing.push(format!(
            "cpu clocks: no cpufreq under {}",
            root.join("sys/devices/system/cpu").display()
        ));
    } else if cpus.iter().all(|c| c.cur_khz.is_none()) {
        missing.push("cpu clocks: cpufreq has no scaling_cur_freq".into());
    }
    let throttle = if settings.throttle_command.is_empty() {
        None
    } else {
        match run_command(&settings.throttle_command) {
            Ok(out) => {
                let bits = ThrottleBits::parse(&out);
                if bits.is_none() {
                    missing.push(format!(
                        "throttle bits: `{}` printed {:?}, not throttled=0x...",
                        settings.throttle_command.join(" "),
                        out.trim()
                    ));
                }
                bits
            }
            Err(e) => {
                missing.push(format!("throttle bits: {e}"));
                None
            }
        }
    };
    let power_mode = if settings.power_mode_command.is_empty() {
        None
    } else {
        match run_command(&settings.power_mode_command) {
            Ok(out) => {
                let mode = parse_power_mode(&out);
                if mode.is_none() {
                    missing.push(format!(
                        "power mode: `{}` printed no `NV Power Mode:` line",
                        settings.power_mode_command.join(" ")
                    ));
                }
                mode
            }
            Err(e) => {
                missing.push(format!("power mode: {e}"));
                None
            }
        }
    };
    ThermalSample {
        at: crate::util::now_rfc3339(),
        zones,
        sensors,
        cpus,
        throttle,
        power_mode,
        missing,
    }
}

/// What the cool-down wait before a candidate did.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Cooldown {
    /// Target temperature (C).
    pub target_c: f32,
    /// Hottest watched temperature when the wait began (C).
    pub start_c: f32,
    /// Hottest watched temperature when it ended (C).
    pub end_c: f32,
    /// Seconds waited.
    pub waited_s: f64,
    /// False when the timeout ran out above the target.
    pub reached: bool,
}

/// Waits until the hottest watched zone is at or below `cooldown_temp_c`, polling every
/// `cooldown_poll_s` up to `cooldown_timeout_s`. `None` when no cool-down is asked for or no
/// temperature can be read (the sample's `missing` says so).
pub fn cool_down(settings: &ThermalSettings) -> Option<Cooldown> {
    let target = settings.cooldown_temp_c?;
    let read = || {
        let zones = read_zones(settings.root());
        let sensors = if zones.is_empty() && settings.live() {
            hwmon_sensors()
        } else {
            Vec::new()
        };
        hottest_of(&zones, &sensors, settings).map(|(_, t)| t)
    };
    let start_c = read()?;
    if start_c > target {
        eprintln!(
            "cooling down: {start_c:.1} C, waiting for {target:.1} C (at most {:.0} s)",
            settings.cooldown_timeout_s
        );
    }
    let t0 = Instant::now();
    let mut now_c = start_c;
    while now_c > target
        && t0.elapsed().as_secs_f64() < settings.cooldown_timeout_s
        && crate::signals::pending().is_none()
    {
        std::thread::sleep(Duration::from_secs_f64(settings.cooldown_poll_s.max(0.01)));
        match read() {
            Some(t) => now_c = t,
            None => break,
        }
    }
    Some(Cooldown {
        target_c: target,
        start_c,
        end_c: now_c,
        waited_s: t0.elapsed().as_secs_f64(),
        reached: now_c <= target,
    })
}

/// The thermal side of one measurement: state before and after, the cool-down, and the flags.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ThermalRecord {
    /// Sample taken right before session creation.
    pub before: ThermalSample,
    /// Sample taken right after the last timed run.
    pub after: ThermalSample,
    /// The cool-down wait before `before`, when the settings ask for one.
    pub cooldown: Option<Cooldown>,
    /// Hottest watched temperature before (C), see [`ThermalSample::hottest`].
    pub temp_before_c: Option<f32>,
    /// Hottest watched temperature after (C).
    pub temp_after_c: Option<f32>,
    /// Why the numbers may come from a throttled or down-clocked machine; empty when nothing
    /// was seen (which, with sensors missing, means "not known", see the samples' `missing`).
    pub flags: Vec<String>,
}

impl ThermalRecord {
    /// Assembles the record and computes its flags.
    pub fn new(
        before: ThermalSample,
        after: ThermalSample,
        cooldown: Option<Cooldown>,
        settings: &ThermalSettings,
    ) -> ThermalRecord {
        let flags = assess(&before, &after, cooldown.as_ref(), settings);
        ThermalRecord {
            temp_before_c: before.hottest(settings).map(|(_, t)| t),
            temp_after_c: after.hottest(settings).map(|(_, t)| t),
            before,
            after,
            cooldown,
            flags,
        }
    }

    /// True when any flag was raised.
    pub fn throttled(&self) -> bool {
        !self.flags.is_empty()
    }
}

fn mhz(khz: u64) -> String {
    format!("{} MHz", khz / 1000)
}

/// The flags of a before/after pair: throttle bits set now or newly set during the candidate,
/// a watched zone at or above its throttle point, a cpufreq policy capped below the hardware
/// maximum, the fastest core's clock dropping by more than the tolerance, a changed power mode,
/// and a cool-down that timed out.
pub fn assess(
    before: &ThermalSample,
    after: &ThermalSample,
    cooldown: Option<&Cooldown>,
    settings: &ThermalSettings,
) -> Vec<String> {
    let mut flags = Vec::new();
    for (when, s) in [("before", before), ("after", after)] {
        if let Some(bits) = s.throttle {
            let now = bits.now();
            if !now.is_empty() {
                flags.push(format!(
                    "{when}: {} (get_throttled=0x{:x})",
                    now.join(", "),
                    bits.0
                ));
            }
        }
    }
    if let (Some(b), Some(a)) = (before.throttle, after.throttle) {
        let new = ThrottleBits(a.0 & !b.0 & 0xF_0000);
        if new.0 != 0 {
            flags.push(format!(
                "during the candidate: {} occurred (get_throttled 0x{:x} -> 0x{:x})",
                new.occurred().join(", "),
                b.0,
                a.0
            ));
        }
    }
    for (when, s) in [("before", before), ("after", after)] {
        for z in s.zones.iter().filter(|z| settings.watches(&z.kind)) {
            let limit = settings.throttle_temp_c.or(z.passive_trip_c);
            if let Some(limit) = limit {
                if z.celsius >= limit {
                    flags.push(format!(
                        "{when}: {} ({}) at {:.1} C, at or above the throttle point {:.1} C",
                        z.kind, z.zone, z.celsius, limit
                    ));
                }
            }
        }
    }
    let capped: Vec<String> = after
        .cpus
        .iter()
        .filter_map(|c| match (c.policy_max_khz, c.hw_max_khz) {
            (Some(p), Some(h)) if p < h => Some(format!("cpu{} {} of {}", c.cpu, mhz(p), mhz(h))),
            _ => None,
        })
        .collect();
    if !capped.is_empty() {
        flags.push(format!(
            "after: cpufreq limit below the hardware maximum (thermal cooling or a user limit): {}",
            capped.join(", ")
        ));
    }
    if let (Some(b), Some(a)) = (before.fastest_khz(), after.fastest_khz()) {
        if (a as f64) < b as f64 * (1.0 - settings.freq_drop_tolerance) {
            flags.push(format!(
                "fastest core dropped from {} to {} during the candidate",
                mhz(b),
                mhz(a)
            ));
        }
    }
    if let (Some(b), Some(a)) = (&before.power_mode, &after.power_mode) {
        if a != b {
            flags.push(format!("power mode changed from {b} to {a}"));
        }
    }
    if let Some(c) = cooldown.filter(|c| !c.reached) {
        flags.push(format!(
            "cool-down to {:.1} C timed out after {:.0} s at {:.1} C",
            c.target_c, c.waited_s, c.end_c
        ));
    }
    flags
}

/// Runs `measure` between a cool-down (when asked for) and a before/after sample pair, and
/// returns its result with the thermal record. `settings` must be validated
/// ([`ThermalSettings::validate`]) by the caller, as [`crate::job::execute`] does before it
/// builds the model.
pub fn around<T>(
    settings: &ThermalSettings,
    measure: impl FnOnce() -> Result<T>,
) -> Result<(T, ThermalRecord)> {
    let cooldown = cool_down(settings);
    let before = sample(settings);
    let out = measure()?;
    let after = sample(settings);
    Ok((out, ThermalRecord::new(before, after, cooldown, settings)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/sysfs")
            .join(name)
    }

    /// Settings reading a fixture tree, with the throttle word from a file in it.
    fn settings(name: &str) -> ThermalSettings {
        let root = fixture(name);
        let vc = root.join("vcgencmd_get_throttled.txt");
        ThermalSettings {
            sysfs_root: Some(root),
            throttle_command: if vc.exists() {
                vec!["cat".into(), vc.display().to_string()]
            } else {
                vec![]
            },
            power_mode_command: vec![],
            ..ThermalSettings::default()
        }
    }

    #[test]
    fn reads_a_recorded_pi4_tree() {
        let s = sample(&settings("raspberry-pi-4-cool"));
        assert_eq!(s.zones.len(), 1, "{s:?}");
        assert_eq!(s.zones[0].kind, "cpu-thermal");
        assert!((s.zones[0].celsius - 48.686).abs() < 1e-3);
        assert_eq!(s.zones[0].passive_trip_c, Some(80.0));
        assert_eq!(s.cpus.len(), 4);
        assert_eq!(s.fastest_khz(), Some(1_800_000));
        assert_eq!(s.governors(), vec!["performance".to_string()]);
        assert_eq!(s.throttle, Some(ThrottleBits(0)));
        assert!(s.missing.is_empty(), "{:?}", s.missing);
        assert!(s.sensors.is_empty(), "no hwmon on a fixture root");
        assert_eq!(
            board_model(&fixture("raspberry-pi-4-cool")).as_deref(),
            Some("Raspberry Pi 4 Model B Rev 1.4")
        );
    }

    #[test]
    fn cool_pair_raises_no_flag() {
        let st = settings("raspberry-pi-4-cool");
        let r = ThermalRecord::new(sample(&st), sample(&st), None, &st);
        assert!(r.flags.is_empty(), "{:?}", r.flags);
        assert!(!r.throttled());
    }

    #[test]
    fn throttled_pi4_sample_is_flagged() {
        let cool = settings("raspberry-pi-4-cool");
        let hot = settings("raspberry-pi-4-throttled");
        let before = sample(&cool);
        let after = sample(&hot);
        assert_eq!(after.throttle, Some(ThrottleBits(0x6_0006)));
        let r = ThermalRecord::new(before, after, None, &hot);
        assert!(r.throttled());
        let all = r.flags.join("\n");
        // Throttle bits now, newly occurred, zone past its trip point, policy cap, clock drop.
        assert!(
            all.contains("after: arm frequency capped, throttled (get_throttled=0x60006)"),
            "{all}"
        );
        assert!(all.contains("during the candidate: arm frequency capped, throttled occurred"));
        assert!(all.contains(
            "cpu-thermal (thermal_zone0) at 82.3 C, at or above the throttle point 80.0 C"
        ));
        assert!(all.contains("cpu0 1200 MHz of 1800 MHz"), "{all}");
        assert!(
            all.contains("fastest core dropped from 1800 MHz to 1200 MHz"),
            "{all}"
        );
    }

    #[test]
    fn profile_threshold_overrides_trip_points() {
        let mut st = settings("raspberry-pi-4-cool");
        st.throttle_temp_c = Some(45.0);
        let s = sample(&st);
        let flags = assess(&s, &s, None, &st);
        assert_eq!(flags.len(), 2, "{flags:?}");
        assert!(flags[0].contains("at 48.7 C, at or above the throttle point 45.0 C"));
        // A zone the profile does not watch raises nothing.
        st.zones = vec!["gpu-thermal".into()];
        let s = sample(&st);
        assert!(assess(&s, &s, None, &st).is_empty());
        assert!(
            s.missing[0].contains("not on this machine (it has cpu-thermal)"),
            "{:?}",
            s.missing
        );
    }

    #[test]
    fn missing_sensors_are_reported_not_invented() {
        let mut st = settings("no-sensors");
        st.throttle_command = vec!["lts-no-such-vcgencmd".into(), "get_throttled".into()];
        st.power_mode_command = vec!["lts-no-such-nvpmodel".into(), "-q".into()];
        let s = sample(&st);
        assert!(s.zones.is_empty() && s.cpus.is_empty());
        assert_eq!(s.throttle, None);
        assert_eq!(s.power_mode, None);
        let m = s.missing.join("\n");
        assert!(m.contains("thermal zones: none readable"), "{m}");
        assert!(m.contains("cpu clocks: no cpufreq"), "{m}");
        assert!(m.contains("`lts-no-such-vcgencmd` not found"), "{m}");
        assert!(m.contains("`lts-no-such-nvpmodel` not found"), "{m}");
        assert_eq!(s.hottest(&st), None);
        assert!(assess(&s, &s, None, &st).is_empty());
        assert_eq!(
            cool_down(&ThermalSettings {
                cooldown_temp_c: Some(50.0),
                ..st
            }),
            None
        );
    }

    #[test]
    fn jetson_tree_and_power_mode() {
        let root = fixture("jetson-orin-nano");
        let mut st = settings("jetson-orin-nano");
        st.power_mode_command = vec![
            "cat".into(),
            root.join("nvpmodel_q.txt").display().to_string(),
        ];
        st.zones = vec!["cpu-thermal".into(), "gpu-thermal".into()];
        let s = sample(&st);
        assert_eq!(s.power_mode.as_deref(), Some("15W (0)"));
        assert_eq!(s.zones.len(), 3);
        assert_eq!(s.hottest(&st), Some(("gpu-thermal".to_string(), 51.5)));
        assert_eq!(s.cpus.len(), 6);
        assert!(s.missing.is_empty(), "{:?}", s.missing);
        let mut after = s.clone();
        after.power_mode = Some("7W (1)".into());
        let flags = assess(&s, &after, None, &st);
        assert_eq!(
            flags,
            vec!["power mode changed from 15W (0) to 7W (1)".to_string()]
        );
    }

    #[test]
    fn parsers() {
        assert_eq!(
            ThrottleBits::parse("throttled=0x0\n"),
            Some(ThrottleBits(0))
        );
        assert_eq!(ThrottleBits::parse("0x50005"), Some(ThrottleBits(0x50005)));
        assert_eq!(ThrottleBits::parse("error"), None);
        let b = ThrottleBits(0x50005);
        assert_eq!(b.now(), vec!["under-voltage", "throttled"]);
        assert_eq!(b.occurred(), vec!["under-voltage", "throttled"]);
        assert_eq!(
            parse_power_mode("NV Power Mode: MAXN\n0\n").as_deref(),
            Some("MAXN (0)")
        );
        assert_eq!(parse_power_mode("NV Power Mode: 5W").as_deref(), Some("5W"));
        assert_eq!(parse_power_mode("nvpmodel: not supported"), None);
    }

    #[test]
    fn cool_down_waits_for_the_zone_and_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let zone = dir.path().join("sys/class/thermal/thermal_zone0");
        std::fs::create_dir_all(&zone).unwrap();
        std::fs::write(zone.join("type"), "cpu-thermal\n").unwrap();
        std::fs::write(zone.join("temp"), "70000\n").unwrap();
        let st = ThermalSettings {
            sysfs_root: Some(dir.path().to_path_buf()),
            cooldown_temp_c: Some(60.0),
            cooldown_timeout_s: 0.3,
            cooldown_poll_s: 0.02,
            throttle_command: vec![],
            power_mode_command: vec![],
            ..ThermalSettings::default()
        };
        let c = cool_down(&st).unwrap();
        assert!(!c.reached && c.waited_s >= 0.3 && c.end_c == 70.0, "{c:?}");
        let s = sample(&st);
        let flags = assess(&s, &s, Some(&c), &st);
        assert!(
            flags[0].starts_with("cool-down to 60.0 C timed out"),
            "{flags:?}"
        );

        // The board cools while we wait: the wait ends as soon as the zone reads 55 C.
        let st = ThermalSettings {
            cooldown_timeout_s: 30.0,
            ..st
        };
        let temp = zone.join("temp");
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            std::fs::write(temp, "55000\n").unwrap();
        });
        let c = cool_down(&st).unwrap();
        writer.join().unwrap();
        assert!(c.reached && c.end_c == 55.0 && c.start_c == 70.0, "{c:?}");
        assert!(c.waited_s < 5.0, "{c:?}");
        assert!(assess(&s, &s, Some(&c), &st).is_empty() || c.reached);
    }

    #[test]
    fn settings_validation() {
        assert!(ThermalSettings::default().validate().is_ok());
        let e = ThermalSettings {
            freq_drop_tolerance: 1.5,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("freq_drop_tolerance"), "{e}");
        let e = ThermalSettings {
            cooldown_temp_c: Some(f32::NAN),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("cooldown_temp_c"), "{e}");
    }

    #[test]
    fn live_sample_never_invents_values() {
        let s = sample(&ThermalSettings::default());
        assert!(s.zones.iter().all(|z| z.celsius.is_finite()));
        assert!(s.cpus.iter().all(|c| c.cur_khz.is_none_or(|f| f > 0)));
        // Either a reading or an entry in `missing` for each source.
        assert!(!s.zones.is_empty() || s.missing.iter().any(|m| m.starts_with("thermal zones")));
        assert!(!s.cpus.is_empty() || s.missing.iter().any(|m| m.starts_with("cpu clocks")));
        assert!(s.throttle.is_some() || s.missing.iter().any(|m| m.starts_with("throttle bits")));
    }
}
