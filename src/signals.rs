//! Ctrl-C (SIGINT) and SIGTERM as a request to stop cleanly, for the commands that write a
//! results folder over minutes (`lts search`).
//!
//! After [`install`], the first signal only sets a flag: long loops poll [`pending`] between
//! steps (between measurements, between timed runs, while cooling down), stop with
//! [`Interrupted`], and the caller writes what was measured before exiting with the shell's
//! convention, 128 + the signal number (130 for SIGINT, 143 for SIGTERM). A second signal of
//! the same kind exits at once with that status, for a user who does not want to wait (the
//! journal is appended record by record, so even then nothing already measured is lost).
//! Built on `signal-hook` (its `flag` module: handlers that only store to atomics).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

use signal_hook::consts::{SIGINT, SIGTERM};

static REQUESTED: AtomicBool = AtomicBool::new(false);
static SIGNAL: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
/// Set by a host's `Cancel` to stop the job an agent runs (one at a time); cleared before each.
static CANCEL: AtomicBool = AtomicBool::new(false);

/// Asks the running measurement to stop at its next check, as a signal would, without ending
/// the process (`lts agent`: a host cancelled the job). [`check`] then reports signal 0.
pub fn request_cancel() {
    CANCEL.store(true, Ordering::SeqCst);
}

/// Forgets a [`request_cancel`] (before the next job starts).
pub fn clear_cancel() {
    CANCEL.store(false, Ordering::SeqCst);
}

/// Registers the handlers (once per process; later calls return the first outcome).
pub fn install() -> anyhow::Result<()> {
    INSTALLED
        .get_or_init(|| {
            let register = |sig: i32| -> std::io::Result<()> {
                // Order matters: the shutdown check runs before the flag is set, so it fires
                // on the second signal only.
                signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, &REQUESTED)?;
                signal_hook::flag::register_usize(sig, &SIGNAL, sig as usize)?;
                signal_hook::flag::register(sig, &REQUESTED)?;
                Ok(())
            };
            register(SIGINT)
                .and_then(|()| register(SIGTERM))
                .map_err(|e| format!("cannot install the Ctrl-C handler: {e}"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// The signal received since [`install`], if any.
pub fn pending() -> Option<i32> {
    REQUESTED
        .load(Ordering::SeqCst)
        .then(|| SIGNAL.load(Ordering::SeqCst) as i32)
        .filter(|&s| s != 0)
}

/// Returns [`Interrupted`] as an error when a signal is pending.
pub fn check() -> Result<(), Interrupted> {
    match pending() {
        Some(signal) => Err(Interrupted { signal }),
        None if CANCEL.load(Ordering::SeqCst) => Err(Interrupted { signal: 0 }),
        None => Ok(()),
    }
}

/// The error a loop returns when it stopped because of a signal. `main` exits with
/// [`Interrupted::exit_code`] when the error chain holds one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by {}", signal_name(*signal))]
pub struct Interrupted {
    /// The signal number (SIGINT 2, SIGTERM 15).
    pub signal: i32,
}

impl Interrupted {
    /// The shell's convention for a process stopped by a signal: 128 + its number.
    pub fn exit_code(&self) -> i32 {
        128 + self.signal
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "Ctrl-C (SIGINT)",
        SIGTERM => "SIGTERM",
        0 => "a cancel request from the host",
        _ => "a signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(Interrupted { signal: SIGINT }.exit_code(), 130);
        assert_eq!(Interrupted { signal: SIGTERM }.exit_code(), 143);
        assert!(Interrupted { signal: SIGINT }
            .to_string()
            .contains("Ctrl-C"));
    }
}
