//! `lts setup --wheel FILE` end to end: the built binary unpacks a copied wheel with no Python
//! on `PATH` (an empty directory) and no network.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

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
fn lts_setup_without_python(args: &[&str]) -> Output {
    let empty = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_lts"))
        .arg("setup")
        .args(args)
        .env("PATH", empty.path())
        .env_remove("ORT_DYLIB_PATH")
        .output()
        .expect("lts runs")
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
    let o = lts_setup_without_python(&[
        "--wheel",
        wheel.to_str().unwrap(),
        "--target",
        "x86_64",
        "--dest",
        dest.to_str().unwrap(),
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "stdout: {out}\nstderr: {err}");
    let installed = dest
        .join("onnxruntime-1.31.1-x86_64")
        .join("libonnxruntime.so.1.31.1");
    assert_eq!(std::fs::read(&installed).unwrap(), lib);
    assert!(out.contains(installed.to_str().unwrap()), "{out}");
}

#[test]
fn setup_wheel_for_the_wrong_arch_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let wheel = tmp.path().join("board.whl");
    fake_wheel(&wheel, &fake_library(EM_AARCH64));
    let dest = tmp.path().join("cache");
    let o = lts_setup_without_python(&[
        "--wheel",
        wheel.to_str().unwrap(),
        "--target",
        "x86_64",
        "--dest",
        dest.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("library for aarch64") && err.contains("target is x86_64"),
        "{err}"
    );
    assert!(err.contains("--target aarch64"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
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
    let o = lts_setup_without_python(&[
        "--wheel",
        wheel.to_str().unwrap(),
        "--dest",
        tmp.path().to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("download.whl is not a zip file"), "{err}");
    assert!(err.contains("lts setup --wheel"), "{err}");
}

#[test]
fn setup_without_python_names_the_wheel_to_download() {
    // No --wheel and no python3 on PATH: the error says which file to fetch elsewhere.
    let tmp = tempfile::tempdir().unwrap();
    let o = lts_setup_without_python(&[
        "--target",
        "aarch64",
        "--dest",
        tmp.path().to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("python3 is not available"), "{err}");
    assert!(
        err.contains("onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_aarch64.whl"),
        "{err}"
    );
    assert!(err.contains("lts setup --wheel"), "{err}");
    if cfg!(target_arch = "x86_64") {
        assert!(err.contains("--target aarch64"), "{err}");
    }
}

#[test]
fn setup_help_explains_wheel() {
    let o = Command::new(env!("CARGO_BIN_EXE_lts"))
        .args(["setup", "--help"])
        .output()
        .expect("lts runs");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    assert!(out.contains("--wheel <FILE>"), "{out}");
    assert!(out.contains("no Python"), "{out}");
    // The help names the same wheels the code downloads and suggests.
    for target in [Target::X86_64, Target::Aarch64] {
        assert!(out.contains(&wheel_file_name(target)), "{out}");
    }
}
