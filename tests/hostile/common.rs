//! Running the binary under resource limits, and reading what it said.

use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

use assert_cmd::assert::OutputAssertExt;
use predicates::prelude::*;
use predicates::str::contains;

/// Address-space limit of every child (bytes). Big enough for ONNX Runtime, its thread pools
/// and a tiny model; far below what any of the absurd sizes in these tests would need.
pub const ADDRESS_SPACE: u64 = 6 << 30;

/// A `Command` for the `lts` binary, limited to [`ADDRESS_SPACE`] of virtual memory and 2
/// minutes of CPU, with the test's cache and no device profile from the environment.
pub fn lts(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lts"));
    c.args(args).env_remove("LTS_DEVICE_PROFILE");
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        c.pre_exec(|| {
            let lim = |v: u64| libc::rlimit {
                rlim_cur: v as libc::rlim_t,
                rlim_max: v as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim(ADDRESS_SPACE)) != 0
                || libc::setrlimit(libc::RLIMIT_CPU, &lim(120)) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c
}

/// Runs `lts args` to completion under the limits. A `std::process::Command` (wrapping it in
/// `assert_cmd::Command::from_std` keeps the `pre_exec` limits, but every caller reads the
/// `Output` itself); [`assert_refused`] checks it with `assert_cmd` + `predicates`.
pub fn run(args: &[&str]) -> Output {
    lts(args).output().expect("lts runs")
}

/// stdout and stderr as text.
pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Asserts a clean refusal: exit status 1 (not a panic's 101, not a signal), stderr holding
/// every needle, no panic or allocation failure message.
pub fn assert_refused(o: &Output, needles: &[&str]) -> String {
    let clean = contains("panicked")
        .not()
        .and(contains("memory allocation").not())
        .boxed();
    let stderr = needles
        .iter()
        .fold(clean, |p, n| p.and(contains(*n)).boxed());
    o.clone().assert().failure().code(1).stderr(stderr);
    text(o).1
}

/// Runs `lts args` under the limits of [`lts`] and at most 1 GiB of address space, killed
/// after `secs` seconds: its output, or `None` when it had to be killed (it blocked or ran
/// away).
pub fn run_for(args: &[&str], secs: u64) -> Option<Output> {
    use std::process::Stdio;
    let mut c = lts(args);
    // SAFETY: as in `lts`; lowering a limit is always allowed.
    unsafe {
        c.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 1 << 30,
                rlim_max: 1 << 30,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lts runs");
    let t0 = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if t0.elapsed().as_secs() >= secs {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Some(child.wait_with_output().expect("output"))
}
