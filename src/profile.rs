//! Device profiles (`devices/*.toml`): what `lts` should use on a given board: ONNX Runtime
//! threads and provider, the thermal zones and throttle sources to watch, the cool-down
//! temperature between candidates, and the clock settings to apply before timing.
//!
//! A profile supplies defaults; flags given on the command line win. `lts device --save FILE`
//! writes one from the machine it runs on; `lts measure/search --device-profile FILE` applies
//! one. The clock commands are advice printed for the user (they need root and change the
//! machine); `lts` never runs them.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::backend::ort::OrtOptions;
use crate::device::DeviceInfo;
use crate::thermal::{self, ThermalSettings};

/// ONNX Runtime settings of a profile; unset fields keep `lts`'s defaults.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileOrt {
    /// Intra-op threads (usually the number of big cores).
    pub intra_threads: Option<usize>,
    /// Inter-op threads.
    pub inter_threads: Option<usize>,
    /// Execution providers in order of preference; `lts` uses the first (only `cpu` is
    /// supported today).
    pub providers: Vec<String>,
    /// Whether idle intra-op threads spin (off saves power and heat on boards).
    pub allow_spinning: Option<bool>,
}

/// Clock settings recommended before timing (advice; `lts` never runs these commands).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileClock {
    /// Governor to time under, e.g. `performance`; a different governor is warned about.
    pub governor: Option<String>,
    /// Commands that pin the clocks (run by the user, as root, before `lts`).
    pub setup: Vec<String>,
    /// Commands that undo `setup`.
    pub restore: Vec<String>,
}

/// One device profile.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeviceProfile {
    /// Short name, e.g. `raspberry-pi-4`.
    pub name: String,
    /// What the profile is for.
    #[serde(default)]
    pub description: String,
    /// Text the device-tree model (`/proc/device-tree/model`) contains on this board, e.g.
    /// `Raspberry Pi 4`; a machine that does not match gets a warning.
    #[serde(default)]
    pub board_model: Option<String>,
    /// CPU architecture of the board (`aarch64`, `arm`, `x86_64`); a mismatch is warned about.
    #[serde(default)]
    pub arch: Option<String>,
    /// ONNX Runtime settings.
    #[serde(default)]
    pub ort: ProfileOrt,
    /// Thermal zones, throttle sources, cool-down ([`ThermalSettings`]).
    #[serde(default)]
    pub thermal: ThermalSettings,
    /// Recommended clock settings.
    #[serde(default)]
    pub clock: ProfileClock,
    /// Free-form advice printed by `lts device` and kept in the file.
    #[serde(default)]
    pub notes: Vec<String>,
}

impl DeviceProfile {
    /// Reads and checks a profile file; errors name the file and the field.
    pub fn load(path: &Path) -> Result<DeviceProfile> {
        let text = crate::util::read_regular_text(
            path,
            crate::util::MAX_CONFIG_BYTES,
            "device profile",
            crate::util::CONFIG_HINT,
        )
        .with_context(|| {
            format!(
                "cannot read device profile {} (see devices/ for the shipped ones, or write one with `lts device --save FILE`)",
                path.display()
            )
        })?;
        let p: DeviceProfile = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid device profile", path.display()))?;
        p.validate()
            .with_context(|| format!("device profile {}", path.display()))?;
        Ok(p)
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        if self.name.trim().is_empty() {
            bail!("`name` is empty");
        }
        for (what, v) in [
            ("ort.intra_threads", self.ort.intra_threads),
            ("ort.inter_threads", self.ort.inter_threads),
        ] {
            if v == Some(0) {
                bail!("{what} must be >= 1");
            }
        }
        if let Some(p) = self.ort.providers.first() {
            if p != "cpu" {
                bail!(
                    "ort.providers starts with `{p}`, but lts supports only `cpu` today: put \"cpu\" first"
                );
            }
        }
        self.thermal.validate()
    }

    /// ONNX Runtime options: the profile's values over `base`.
    pub fn apply_ort(&self, base: OrtOptions) -> OrtOptions {
        OrtOptions {
            intra_threads: self.ort.intra_threads.unwrap_or(base.intra_threads),
            inter_threads: self.ort.inter_threads.unwrap_or(base.inter_threads),
            provider: self.ort.providers.first().cloned().unwrap_or(base.provider),
            allow_spinning: self.ort.allow_spinning.unwrap_or(base.allow_spinning),
            ..base
        }
    }

    /// Warnings about this machine not matching the profile (board model, CPU architecture,
    /// governor); empty when it fits.
    pub fn mismatches(&self, root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(want) = &self.board_model {
            match thermal::board_model(root) {
                Some(have) if have.contains(want.as_str()) => {}
                Some(have) => out.push(format!(
                    "profile `{}` is for a `{want}` but this machine is a `{have}`",
                    self.name
                )),
                None => out.push(format!(
                    "profile `{}` is for a `{want}` but this machine has no device-tree model",
                    self.name
                )),
            }
        }
        if let Some(arch) = &self.arch {
            if arch != std::env::consts::ARCH {
                out.push(format!(
                    "profile `{}` is for {arch} but this lts runs on {}",
                    self.name,
                    std::env::consts::ARCH
                ));
            }
        }
        if let Some(want) = &self.clock.governor {
            let have = thermal::read_clocks(root)
                .into_iter()
                .filter_map(|c| c.governor)
                .filter(|g| g != want)
                .collect::<std::collections::BTreeSet<_>>();
            if !have.is_empty() {
                let mut msg = format!(
                    "governor is {} but profile `{}` times under `{want}`",
                    have.into_iter().collect::<Vec<_>>().join(", "),
                    self.name
                );
                if let Some(cmd) = self.clock.setup.first() {
                    msg.push_str(&format!("; run: {cmd}"));
                }
                out.push(msg);
            }
        }
        out
    }

    /// A profile describing the machine `info` was collected on (`lts device --save`): threads =
    /// physical cores, the CPU thermal zones (all zones when none is named like a CPU), the
    /// lowest passive trip point as throttle point, the throttle and power-mode commands that
    /// exist here, and the performance governor.
    pub fn from_machine(name: &str, info: &DeviceInfo, root: &Path) -> DeviceProfile {
        let zones = thermal::read_zones(root);
        let cpu_zones: Vec<String> = zones
            .iter()
            .filter(|z| z.kind.to_ascii_lowercase().contains("cpu"))
            .map(|z| z.kind.clone())
            .collect();
        let watched: Vec<&thermal::ZoneReading> = zones
            .iter()
            .filter(|z| cpu_zones.is_empty() || cpu_zones.contains(&z.kind))
            .collect();
        let throttle_temp_c = watched
            .iter()
            .filter_map(|z| z.passive_trip_c)
            .reduce(f32::min);
        let on_path = |prog: &str| {
            std::env::var_os("PATH")
                .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
        };
        let model = thermal::board_model(root);
        let has_cpufreq = !thermal::read_clocks(root).is_empty();
        let mut notes = vec![format!(
            "Written by `lts device --save` on {} ({}) at {}.",
            info.hostname.as_deref().unwrap_or("an unnamed host"),
            model
                .as_deref()
                .or(info.cpu_brand.as_deref())
                .unwrap_or("unknown CPU"),
            info.collected_at
        )];
        if zones.is_empty() {
            notes.push("No thermal zone was readable here: throttling cannot be detected from temperatures.".into());
        }
        if !has_cpufreq {
            notes.push("No cpufreq here (typical of VMs): clock drops cannot be detected.".into());
        }
        let mut thermal = ThermalSettings {
            zones: cpu_zones,
            throttle_temp_c,
            cooldown_temp_c: throttle_temp_c.map(|t| (t - 25.0).max(40.0)),
            throttle_command: Vec::new(),
            power_mode_command: Vec::new(),
            ..ThermalSettings::default()
        };
        if on_path("vcgencmd") {
            thermal.throttle_command = vec!["vcgencmd".into(), "get_throttled".into()];
        }
        if on_path("nvpmodel") {
            thermal.power_mode_command = vec!["nvpmodel".into(), "-q".into()];
        }
        let clock = if has_cpufreq {
            ProfileClock {
                governor: Some("performance".into()),
                setup: vec!["echo performance | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor".into()],
                restore: info
                    .governor
                    .as_ref()
                    .filter(|g| g.as_str() != "performance")
                    .map(|g| {
                        vec![format!(
                            "echo {g} | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor"
                        )]
                    })
                    .unwrap_or_default(),
            }
        } else {
            ProfileClock::default()
        };
        DeviceProfile {
            name: name.to_string(),
            description: format!(
                "{} ({} logical cores)",
                model
                    .clone()
                    .or_else(|| info.cpu_brand.clone())
                    .unwrap_or_else(|| "this machine".into()),
                info.logical_cores
            ),
            board_model: model,
            arch: Some(info.arch.clone()),
            ort: ProfileOrt {
                intra_threads: Some(info.physical_cores.unwrap_or(info.logical_cores).max(1)),
                inter_threads: Some(1),
                providers: vec!["cpu".into()],
                allow_spinning: None,
            },
            thermal,
            clock,
            notes,
        }
    }

    /// The profile as TOML with a header comment (for `lts device --save`).
    pub fn to_toml(&self) -> Result<String> {
        let body = toml::to_string_pretty(self).context("cannot write the profile as TOML")?;
        Ok(format!(
            "# lts device profile: `lts measure --device-profile FILE` / `lts search --device-profile FILE`.\n\
             # Command-line flags override these values. Fields: see devices/README.md.\n\n{body}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Vec<(String, DeviceProfile)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("devices");
        let mut out: Vec<(String, DeviceProfile)> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            // The fleet file of `lts search --agents` lives beside the profiles.
            .filter(|p| p.file_name().is_some_and(|n| n != "fleet.toml"))
            .map(|p| {
                let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
                (stem, DeviceProfile::load(&p).unwrap())
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    #[test]
    fn shipped_profiles_load_and_are_named_after_their_file() {
        let all = shipped();
        let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        for want in [
            "jetson-nano",
            "jetson-orin-nano",
            "raspberry-pi-4",
            "raspberry-pi-5",
            "x86-host",
        ] {
            assert!(
                names.contains(&want),
                "devices/{want}.toml missing: {names:?}"
            );
        }
        for (stem, p) in &all {
            assert_eq!(&p.name, stem);
            assert!(!p.description.is_empty(), "{stem}");
            assert!(p.ort.intra_threads.is_some(), "{stem}");
            // A round trip through TOML keeps every field.
            let back: DeviceProfile = toml::from_str(&p.to_toml().unwrap()).unwrap();
            assert_eq!(&back, p);
        }
    }

    #[test]
    fn pi4_profile_on_the_pi4_fixture() {
        let p = DeviceProfile::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("devices/raspberry-pi-4.toml"),
        )
        .unwrap();
        let root =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sysfs/raspberry-pi-4-cool");
        let m = p.mismatches(&root);
        // The fixture is a Pi 4 under the performance governor; only the CPU arch can differ.
        assert!(m.iter().all(|w| w.contains("this lts runs on")), "{m:?}");
        let jetson =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sysfs/jetson-orin-nano");
        let m = p.mismatches(&jetson).join("\n");
        assert!(
            m.contains("is for a `Raspberry Pi 4` but this machine is a `NVIDIA Jetson Orin Nano"),
            "{m}"
        );
        assert!(m.contains("governor is schedutil"), "{m}");
        let o = p.apply_ort(OrtOptions::default());
        assert_eq!(o.intra_threads, 4);
        assert_eq!(o.provider, "cpu");
    }

    #[test]
    fn from_machine_reads_the_fixture() {
        let root =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sysfs/raspberry-pi-4-cool");
        let mut info = DeviceInfo::collect();
        info.physical_cores = Some(4);
        let p = DeviceProfile::from_machine("my-pi", &info, &root);
        assert_eq!(p.name, "my-pi");
        assert_eq!(
            p.board_model.as_deref(),
            Some("Raspberry Pi 4 Model B Rev 1.4")
        );
        assert_eq!(p.thermal.zones, vec!["cpu-thermal".to_string()]);
        assert_eq!(p.thermal.throttle_temp_c, Some(80.0));
        assert_eq!(p.thermal.cooldown_temp_c, Some(55.0));
        assert_eq!(p.ort.intra_threads, Some(4));
        assert_eq!(p.clock.governor.as_deref(), Some("performance"));
        p.validate().unwrap();
        let back: DeviceProfile = toml::from_str(&p.to_toml().unwrap()).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn bad_profiles_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.toml");
        std::fs::write(&f, "name = \"x\"\n[ort]\nintra_thread = 4\n").unwrap();
        let e = format!("{:#}", DeviceProfile::load(&f).unwrap_err());
        assert!(
            e.contains("not a valid device profile") && e.contains("intra_thread"),
            "{e}"
        );
        std::fs::write(&f, "name = \"x\"\n[ort]\nproviders = [\"cuda\", \"cpu\"]\n").unwrap();
        let e = format!("{:#}", DeviceProfile::load(&f).unwrap_err());
        assert!(e.contains("put \"cpu\" first"), "{e}");
        std::fs::write(&f, "name = \"x\"\n[thermal]\ncooldown_temp_c = 500.0\n").unwrap();
        let e = format!("{:#}", DeviceProfile::load(&f).unwrap_err());
        assert!(e.contains("cooldown_temp_c"), "{e}");
        let e = format!(
            "{:#}",
            DeviceProfile::load(&dir.path().join("none.toml")).unwrap_err()
        );
        assert!(e.contains("lts device --save"), "{e}");
    }
}
