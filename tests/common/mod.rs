//! Helpers shared by the integration tests that compare backends: tolerance checks, token
//! patterns, sharpened weights, ONNX Runtime sessions and a wgpu adapter.
#![allow(dead_code)]

pub mod gguf;

use lts::arch::Arch;
use lts::backend::ort::{OptLevel, Ort, OrtOptions};
use lts::graph::{self, GraphKind};
use lts::model_io::KvCache;
use lts::weights::Weights;
use lts::workload::Logits;
use ndarray::{Array2, ArrayD};
use ort::session::Session;

/// Largest absolute difference and largest |a - b| / |b| (over |b| > 1e-3) between two arrays.
pub fn errors(a: &ArrayD<f32>, b: &ArrayD<f32>) -> (f32, f32) {
    let mut max_abs = 0.0f32;
    let mut max_rel = 0.0f32;
    for (x, y) in a.iter().zip(b.iter()) {
        let d = (x - y).abs();
        max_abs = max_abs.max(d);
        if y.abs() > 1e-3 {
            max_rel = max_rel.max(d / y.abs());
        }
    }
    (max_abs, max_rel)
}

/// Max |a - b| / (atol + rtol * |b|) over all elements must stay below 1.
pub fn assert_close(what: &str, a: &ArrayD<f32>, b: &ArrayD<f32>, atol: f32, rtol: f32) {
    assert_eq!(a.shape(), b.shape(), "{what}: shapes differ");
    let mut worst = 0.0f32;
    let mut max_abs = 0.0f32;
    for (x, y) in a.iter().zip(b.iter()) {
        assert!(x.is_finite(), "{what}: non-finite value {x}");
        let d = (x - y).abs();
        max_abs = max_abs.max(d);
        worst = worst.max(d / (atol + rtol * y.abs()));
    }
    assert!(
        worst <= 1.0,
        "{what}: max abs diff {max_abs} exceeds atol {atol} + rtol {rtol}"
    );
}

/// An ONNX Runtime session of `arch`'s graph `kind` (logits of every position) at optimisation
/// level `opt`.
pub fn session(arch: &Arch, w: &Weights, kind: GraphKind, opt: OptLevel) -> Session {
    session_with(arch, w, kind, opt, Logits::All)
}

/// [`session`] with a choice of logits (last position or all).
pub fn session_with(
    arch: &Arch,
    w: &Weights,
    kind: GraphKind,
    opt: OptLevel,
    logits: Logits,
) -> Session {
    let ort = Ort::load().expect("ONNX Runtime available (run `lts setup`)");
    let bytes = graph::to_bytes(&graph::build_model(arch, w, kind, logits).unwrap());
    let opts = OrtOptions {
        opt_level: opt,
        ..OrtOptions::default()
    };
    ort.session(&bytes, &opts).unwrap()
}

/// Deterministic token ids `[batch, seq]` that differ across rows and positions.
pub fn tokens(arch: &Arch, batch: usize, seq: usize, salt: i64) -> Array2<i64> {
    Array2::from_shape_fn((batch, seq), |(b, t)| {
        (b as i64 * 31 + t as i64 * 7 + salt * 13) % arch.vocab_size as i64
    })
}

/// Every layer's key and value agree to atol 1e-5 + rtol 1e-4.
pub fn cache_close(what: &str, a: &KvCache, b: &KvCache) {
    cache_close_tol(what, a, b, 1e-5, 1e-4);
}

/// [`cache_close`] with a given tolerance.
pub fn cache_close_tol(what: &str, a: &KvCache, b: &KvCache, atol: f32, rtol: f32) {
    assert_eq!(a.layers.len(), b.layers.len());
    for (i, ((ka, va), (kb, vb))) in a.layers.iter().zip(&b.layers).enumerate() {
        assert_close(
            &format!("{what} layer {i} key"),
            &ka.clone().into_dyn(),
            &kb.clone().into_dyn(),
            atol,
            rtol,
        );
        assert_close(
            &format!("{what} layer {i} value"),
            &va.clone().into_dyn(),
            &vb.clone().into_dyn(),
            atol,
            rtol,
        );
    }
}

/// Random weights scaled up 8x (norm scales and biases perturbed too) so attention is peaked
/// and a wrong mask, position or head mapping changes the logits visibly; with GPT-2's
/// N(0, 0.02) init the softmax is nearly uniform and such bugs would hide.
pub fn sharpened(arch: &Arch, seed: u64) -> Weights {
    let mut w = Weights::random(arch, seed);
    for (name, t) in w.tensors.iter_mut() {
        let is_norm = name.contains("ln_") || name.contains("norm");
        for (j, x) in t.data.iter_mut().enumerate() {
            if t.shape.len() == 1 {
                // Biases and norm scales: deterministic non-trivial values.
                let wiggle = ((j * 37 + name.len()) % 17) as f32 / 17.0 - 0.5;
                *x = if is_norm {
                    *x + 0.3 * wiggle
                } else {
                    0.2 * wiggle
                };
            } else {
                *x *= 8.0;
            }
        }
    }
    w
}

/// Opens an adapter for a test: `None` (test skipped, with a note on stderr) when the machine has
/// none, except under CI (`CI=true`), where a missing adapter is a failure: CI installs Mesa's
/// llvmpipe so the wgpu tests always run there.
pub fn gpu_for_tests() -> Option<lts::backend::wgpu::Gpu> {
    match lts::backend::wgpu::Gpu::open(None) {
        Ok(g) => Some(g),
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!("CI=true but no usable wgpu adapter: {e:#}");
            }
            eprintln!("skipping wgpu test: {e:#}");
            None
        }
    }
}

/// Runs the `lts` binary with `args` and the environment variables `envs` under an address-space limit of `address_space` bytes,
/// killed after `timeout` (so a read of `/dev/zero` or an `open` of a FIFO that used to run
/// away fails the test instead of hogging the machine or hanging). Returns the exit status
/// (`None` when it was killed for the timeout) and stderr.
pub fn run_bounded(
    args: &[&std::ffi::OsStr],
    envs: &[(&str, &std::ffi::OsStr)],
    address_space: u64,
    timeout: std::time::Duration,
) -> (Option<std::process::ExitStatus>, String) {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_lts"));
    cmd.args(args)
        .envs(envs.iter().copied())
        .env_remove("LTS_DEVICE_PROFILE")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: address_space as libc::rlim_t,
                rlim_max: address_space as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("lts runs");
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if t0.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    (status, err)
}

/// Makes a FIFO (named pipe) at `path`.
pub fn mkfifo(path: &std::path::Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}
