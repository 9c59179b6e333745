//! Sizes from input are bounded before anything is sized from them (issue 11, item 3): absurd
//! archs, batches, memory limits and search counts are refused with exit status 1 and a message
//! naming the flag or field, never by an allocation failure or the OOM killer. See
//! `tests/hostile.rs`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::common::*;

/// Writes `text` to `dir/name` and returns the path as a string.
fn write(dir: &Path, name: &str, text: &str) -> String {
    let p: PathBuf = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

/// The same arch as JSON and as TOML: a GPT-2 with the given sizes.
fn arch_files(dir: &Path, n_layer: u64, d_model: u64, vocab: u64, positions: u64) -> [String; 2] {
    let json = format!(
        r#"{{"family":"gpt2","n_layer":{n_layer},"d_model":{d_model},"d_inner":64,"n_head":1,
            "vocab_size":{vocab},"n_positions":{positions}}}"#
    );
    let toml = format!(
        "family = \"gpt2\"\nn_layer = {n_layer}\nd_model = {d_model}\nd_inner = 64\nn_head = 1\n\
         vocab_size = {vocab}\nn_positions = {positions}\n"
    );
    [
        write(dir, "arch.json", &json),
        write(dir, "arch.toml", &toml),
    ]
}

#[test]
fn params_with_sizes_of_2_pow_32_are_refused_naming_the_field_and_bound() {
    // Used to wrap the parameter count to 0 ("total params 0").
    let dir = tempfile::tempdir().unwrap();
    let big = 1u64 << 32;
    for file in arch_files(dir.path(), 2, big, big, big) {
        let o = run(&["params", "--arch", &file]);
        assert_refused(&o, &["`d_model` = 4294967296", "bound of 65536"]);
    }
    // One at a time, each field is named with its own bound.
    for (sizes, needles) in [
        (
            (2, 64, big, 64),
            ["`vocab_size` = 4294967296", "bound of 2097152"],
        ),
        (
            (2, 64, 100, big),
            ["`n_positions` = 4294967296", "bound of 1048576"],
        ),
    ] {
        let (n, d, v, p) = sizes;
        let [json, _] = arch_files(dir.path(), n, d, v, p);
        assert_refused(&run(&["params", "--json", "--arch", &json]), &needles);
    }
}

#[test]
fn a_billion_layers_are_refused_at_once_as_json_and_toml() {
    // Used to expand per-layer values to n_layer entries first: killed at 23 GB.
    let dir = tempfile::tempdir().unwrap();
    for n_layer in [1_000_000_000u64, 100_000_000, 1025] {
        for file in arch_files(dir.path(), n_layer, 64, 100, 64) {
            let t0 = Instant::now();
            let o = run(&["params", "--arch", &file]);
            assert_refused(
                &o,
                &[&format!("`n_layer` = {n_layer}"), "bound of 1024", &file],
            );
            assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        }
    }
    // The bound itself is accepted.
    let [json, _] = arch_files(dir.path(), 1024, 64, 100, 64);
    let o = run(&["params", "--arch", &json]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
}

#[test]
fn export_of_a_huge_arch_is_refused_before_allocating() {
    // Used to pass --max-params with a wrapped count of 0, then abort with "memory allocation
    // of 51539607552 bytes failed".
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let big = 1u64 << 32;
    let [json, _] = arch_files(dir.path(), 2, big, big, big);
    let o = run(&["export", "--arch", &json, "--out", out]);
    assert_refused(&o, &["`d_model`", "bound of 65536"]);
    // Inside the bounds, the true count meets --max-params.
    let [json, _] = arch_files(dir.path(), 2, 65_536, 2_097_152, 1024);
    let o = run(&["export", "--arch", &json, "--out", out]);
    assert_refused(&o, &["171883888768 parameters", "--max-params"]);
    assert!(!Path::new(out).exists());
}

#[test]
fn measure_with_a_huge_batch_is_refused_with_the_estimate() {
    // Used to reach 14.4 GB and keep going. The default limit is 80% of the memory this
    // process may use: here the test's 6 GiB address-space limit.
    let o = run(&["measure", "--preset", "gpt2-tiny", "--batch", "100000"]);
    assert_refused(
        &o,
        &[
            "this workload needs about",
            "weights",
            "activations",
            "KV cache",
            "above the limit of 4.8 GiB",
            "address-space limit",
            "--batch",
            "--max-memory",
        ],
    );
    // Above the hard bound of --batch, whatever the memory.
    let o = run(&[
        "measure",
        "--preset",
        "gpt2-tiny",
        "--batch",
        "2000000",
        "--max-memory",
        "1000TiB",
    ]);
    assert_refused(&o, &["--batch 2000000", "bound of 1048576"]);
}

#[test]
fn max_memory_limits_even_a_tiny_measure() {
    let o = run(&["measure", "--preset", "gpt2-tiny", "--max-memory", "1MiB"]);
    assert_refused(
        &o,
        &[
            "this workload needs about",
            "above the limit of 1.0 MiB (set by --max-memory)",
        ],
    );
}

#[test]
fn max_memory_that_is_not_a_size_is_a_usage_error() {
    for cmd in ["measure", "search"] {
        let o = run(&[cmd, "--max-memory", "nonsense"]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains("--max-memory") && err.contains("512MiB") && err.contains("8GiB"),
            "{err}"
        );
    }
}

#[test]
fn search_that_cannot_fit_is_refused_before_its_folder_exists() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let o = run(&[
        "search",
        "--backend",
        "cost-model",
        "--batch",
        "100000",
        "--out",
        out,
        "--quiet",
    ]);
    assert_refused(
        &o,
        &[
            "largest candidate of space `quick`",
            "needs about",
            "--max-memory",
        ],
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let o = run(&[
        "search",
        "--backend",
        "cost-model",
        "--max-memory",
        "1MiB",
        "--out",
        out,
        "--quiet",
    ]);
    assert_refused(&o, &["above the limit of 1.0 MiB (set by --max-memory)"]);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn search_counts_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let common = ["search", "--backend", "cost-model", "--quiet", "--out", out];
    for (flag, needles) in [
        (
            "--population=1000000000000",
            ["--population 1000000000000", "bound of 1000000"],
        ),
        (
            "--mutations=1000000000000",
            ["--mutations 1000000000000", "bound of 1000000"],
        ),
        (
            "--iterations=18446744073709551615",
            ["--iterations 18446744073709551615", "bound of 1000000"],
        ),
    ] {
        let mut args = common.to_vec();
        args.push(flag);
        assert_refused(&run(&args), &needles);
    }
    // Each count in bounds, their product not.
    let mut args = common.to_vec();
    args.extend(["--iterations", "1000000", "--mutations", "1000000"]);
    assert_refused(&run(&args), &["would propose up to", "--iterations"]);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
