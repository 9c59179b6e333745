//! Runtimes that execute a candidate, behind one trait so the measurement protocol, the search
//! and the remote agent never depend on a particular runtime.
//!
//! Today: [`ort`] (ONNX Runtime through the `ort` crate, library loaded at run time).

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod ort;
pub mod ortlib;

/// A model prepared for repeated inference on fixed, seeded inputs: one call of [`Runner::run`]
/// is one inference, the unit the measurement protocol times.
pub trait Runner {
    /// Runs one inference and waits until it is complete. Returns the device-side duration when
    /// the backend measures it itself (GPU timestamp queries); `None` means the caller's
    /// monotonic wall clock around the call is the measurement.
    fn run(&mut self) -> anyhow::Result<Option<Duration>>;
}

/// Which runtime produced a number, recorded with every result.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RuntimeInfo {
    /// Runtime name, e.g. `onnxruntime`.
    pub name: String,
    /// Runtime version, e.g. `1.31.1`.
    pub version: String,
    /// Library file loaded, where the runtime is a shared library.
    pub library: Option<String>,
    /// Execution providers / adapters the loaded runtime offers.
    pub providers: Vec<String>,
}
