//! Post-training quantization of the graphs `lts` emits (issue 14): the schemes ([`scheme`]),
//! the arithmetic of int8 / int4 / fp16 weights ([`ops`]), activation-range calibration
//! ([`calibrate`]), the rewrite of an fp32 graph into a quantized one ([`emit`]) and where
//! that stores each parameter ([`layout`]). Running calibration passes and judging fidelity
//! against fp32 is [`crate::quantize`]'s job.

pub mod calibrate;
pub mod emit;
pub mod layout;
pub mod ops;
pub mod scheme;

pub use scheme::{Calibration, Scheme};
