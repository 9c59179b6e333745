//! Post-training quantization of the graphs `lts` emits (issue 14): the schemes ([`scheme`]),
//! the arithmetic of int8 / int4 / fp16 weights ([`ops`]), activation-range calibration
//! ([`calibrate`]), the rewrite of an fp32 graph into a quantized one ([`emit`]) and where
//! that stores each parameter ([`layout`]), and the token sequences calibration and fidelity
//! run on ([`sequences`]). Running calibration passes and judging fidelity
//! against fp32 is [`crate::fidelity`]'s job.

pub mod calibrate;
pub mod emit;
pub mod layout;
pub mod ops;
pub mod scheme;
pub mod sequences;

pub use scheme::{Calibration, Scheme};

/// Whether ONNX Runtime's int8 kernels on this CPU may saturate: on x86-64 without VNNI, its
/// u8 x s8 matrix products use `VPMADDUBSW`, whose 16-bit sums of pairs saturate (ONNX
/// Runtime's quantization guide, "data type selection", recommends `reduce_range` or u8 x u8
/// there), so int8 fidelity measured on such a CPU is lower than on a VNNI x86 or an ARM CPU.
/// False on every other architecture.
pub fn int8_may_saturate() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        !(std::arch::is_x86_feature_detected!("avx512vnni")
            || std::arch::is_x86_feature_detected!("avxvnni"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
