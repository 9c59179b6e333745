//! End-to-end tests of device profiles and thermal awareness: real ONNX Runtime measurements
//! whose thermal state is read from recorded sysfs trees (`tests/fixtures/sysfs/`), so a
//! throttled board can be simulated on any machine. Runs are `assert_cmd` commands checked
//! with `predicates`, as in hyperfine's `tests/integration_tests.rs`.

use std::path::{Path, PathBuf};

use assert_cmd::cargo::cargo_bin_cmd;
use assert_cmd::Command;
use predicates::prelude::*;
use predicates::str::contains;

use lts::search::store::read_csv;

/// `lts args` with no device profile from the environment.
fn lts(args: &[&str]) -> Command {
    let mut cmd = cargo_bin_cmd!("lts");
    cmd.args(args).env_remove("LTS_DEVICE_PROFILE");
    cmd
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sysfs")
        .join(name)
}

/// Writes a profile that reads its sensors from fixture `tree` (the Pi throttle word through
/// `cat`), with extra `[thermal]` lines.
fn profile(dir: &Path, tree: &str, extra_thermal: &str) -> PathBuf {
    let root = fixture(tree);
    let vc = root.join("vcgencmd_get_throttled.txt");
    let p = dir.join(format!("{tree}.toml"));
    std::fs::write(
        &p,
        format!(
            r#"name = "fixture-{tree}"
description = "a Raspberry Pi 4 simulated by a recorded sysfs tree"
board_model = "Raspberry Pi 4"

[ort]
intra_threads = 2
providers = ["cpu"]

[thermal]
zones = ["cpu-thermal"]
throttle_temp_c = 80.0
throttle_command = ["cat", "{}"]
power_mode_command = []
sysfs_root = "{}"
{extra_thermal}
"#,
            vc.display(),
            root.display()
        ),
    )
    .unwrap();
    p
}

const MEASURE: &[&str] = &[
    "measure",
    "--preset",
    "gpt2-tiny",
    "--seq-len",
    "8",
    "--min-runs",
    "3",
    "--min-duration-s",
    "0",
    "--warmup-s",
    "0",
];

#[test]
fn throttled_board_measurement_is_flagged_and_stored() {
    let dir = tempfile::tempdir().unwrap();
    let p = profile(
        dir.path(),
        "raspberry-pi-4-throttled",
        "cooldown_temp_c = 60.0\ncooldown_timeout_s = 0.2\ncooldown_poll_s = 0.05",
    );
    let o = lts(&[
        MEASURE,
        &["--json", "--device-profile", p.to_str().unwrap()],
    ]
    .concat())
    .assert()
    .success()
    .stderr(contains(
        "device profile fixture-raspberry-pi-4-throttled: 2 intra threads",
    ))
    .get_output()
    .clone();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // A real measurement ran, under the profile's threads.
    assert!(v["measurement"]["stats"]["median_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(v["backend"]["intra_threads"], 2);
    assert_eq!(v["device_profile"], "fixture-raspberry-pi-4-throttled");
    let t = &v["thermal"];
    assert!(
        (t["temp_before_c"].as_f64().unwrap() - 82.3).abs() < 1e-6,
        "{t}"
    );
    assert_eq!(t["after"]["throttle"], 0x60006);
    assert_eq!(t["after"]["cpus"].as_array().unwrap().len(), 4);
    assert_eq!(t["cooldown"]["reached"], false);
    let flags: Vec<&str> = t["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    let all = flags.join("\n");
    assert!(
        all.contains("arm frequency capped, throttled (get_throttled=0x60006)"),
        "{all}"
    );
    assert!(
        all.contains("at 82.3 C, at or above the throttle point 80.0 C"),
        "{all}"
    );
    assert!(all.contains("cpu3 1200 MHz of 1800 MHz"), "{all}");
    assert!(all.contains("cool-down to 60.0 C timed out"), "{all}");

    // The table says it too, and a flag beats the profile: --threads 1 wins.
    lts(&[
        MEASURE,
        &["--threads", "1", "--device-profile", p.to_str().unwrap()],
    ]
    .concat())
    .assert()
    .success()
    .stdout(
        contains("1 intra / 1 inter threads")
            .and(contains(
                "thermal        before 82.3 C, 1200 MHz (performance), throttled=0x60006",
            ))
            .and(contains(
                "THROTTLED: after: arm frequency capped, throttled",
            ))
            .and(contains("cool-down      82.3 -> 82.3 C")),
    );
}

#[test]
fn cool_board_measurement_has_thermal_fields_and_no_flag() {
    let dir = tempfile::tempdir().unwrap();
    let p = profile(dir.path(), "raspberry-pi-4-cool", "cooldown_temp_c = 60.0");
    let out = lts(&[
        MEASURE,
        &["--json", "--device-profile", p.to_str().unwrap()],
    ]
    .concat())
    .assert()
    .success()
    .get_output()
    .stdout
    .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let t = &v["thermal"];
    assert_eq!(t["flags"].as_array().unwrap().len(), 0, "{t}");
    assert_eq!(t["before"]["zones"][0]["kind"], "cpu-thermal");
    assert_eq!(t["after"]["cpus"][0]["cur_khz"], 1_800_000);
    assert_eq!(t["after"]["cpus"][0]["governor"], "performance");
    assert_eq!(t["cooldown"]["reached"], true);
    assert_eq!(t["after"]["missing"].as_array().unwrap().len(), 0);
}

#[test]
fn search_csv_carries_thermal_columns() {
    let dir = tempfile::tempdir().unwrap();
    let p = profile(dir.path(), "raspberry-pi-4-throttled", "");
    let out = dir.path().join("results");
    lts(&[
        "search",
        "--population",
        "2",
        "--iterations",
        "0",
        "--seq-len",
        "8",
        "--short-min-runs",
        "2",
        "--full-min-runs",
        "2",
        "--full-min-duration-s",
        "0.01",
        "--quiet",
        "--device-profile",
        p.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--run-id",
        "hot",
    ])
    .assert()
    .success();
    let rows = read_csv(&out.join("hot/candidates.csv")).unwrap();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert!(r.throttled, "{r:?}");
        assert_eq!(r.temp_before_c, Some(82.3));
        assert_eq!(r.cpu_mhz_after, Some(1200));
        assert!(
            r.thermal_flags.contains("throttle point 80.0 C"),
            "{}",
            r.thermal_flags
        );
    }
    let summary = std::fs::read_to_string(out.join("hot/summary.md")).unwrap();
    assert!(
        summary.contains("**Thermal (device profile `fixture-raspberry-pi-4-throttled`): 2 of 2 candidates were measured throttled"),
        "{summary}"
    );
    let run = std::fs::read_to_string(out.join("hot/run.json")).unwrap();
    assert!(run.contains("fixture-raspberry-pi-4-throttled"), "{run}");
}

#[test]
fn device_reads_a_profile_and_saves_one() {
    let dir = tempfile::tempdir().unwrap();
    let root = fixture("jetson-orin-nano");
    let p = dir.path().join("orin.toml");
    std::fs::write(
        &p,
        format!(
            "name = \"orin\"\nboard_model = \"Raspberry Pi 5\"\n[thermal]\nsysfs_root = \"{}\"\nthrottle_command = []\npower_mode_command = [\"cat\", \"{}\"]\n",
            root.display(),
            root.join("nvpmodel_q.txt").display()
        ),
    )
    .unwrap();
    lts(&["device", "--device-profile", p.to_str().unwrap()])
        .assert()
        .success()
        .stdout(
            contains("board model:       NVIDIA Jetson Orin Nano Developer Kit")
                .and(contains(
                    "thermal_zone1 gpu-thermal: 51.5 C (passive trip 99.0 C)",
                ))
                .and(contains("cpu5: 1510 MHz (limit 1510, max 1510), schedutil"))
                .and(contains("power mode:        15W (0)")),
        )
        .stderr(contains(
            "warning: profile `orin` is for a `Raspberry Pi 5` but this machine is a `NVIDIA Jetson Orin Nano",
        ));

    // --save writes a profile that loads back, and never replaces a file unasked.
    let saved = dir.path().join("my-board.toml");
    lts(&["device", "--save", saved.to_str().unwrap()])
        .assert()
        .success();
    let out = lts(&[
        MEASURE,
        &["--json", "--device-profile", saved.to_str().unwrap()],
    ]
    .concat())
    .assert()
    .success()
    .get_output()
    .stdout
    .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["device_profile"], "my-board");
    lts(&["device", "--save", saved.to_str().unwrap()])
        .assert()
        .failure()
        .code(1)
        .stderr(contains("pass --force"));

    lts(&[
        "measure",
        "--preset",
        "gpt2-tiny",
        "--device-profile",
        "nope.toml",
    ])
    .assert()
    .failure()
    .code(1)
    .stderr(contains("cannot read device profile nope.toml"))
    .stdout(contains("panicked").not())
    .stderr(contains("panicked").not());
}
