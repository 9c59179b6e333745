//! The uniform parameter blocks of the WGSL kernels: one `#[repr(C)]` [`bytemuck::Pod`] struct
//! per shader `struct Params` (and `struct Step` of `common.wgsl`), with the WGSL field names,
//! in the WGSL order, padded with the shader's own `_pad` fields to the 16-byte size multiple
//! WGSL requires of a uniform struct. [`super::kernels`] uploads them with
//! [`bytemuck::bytes_of`]; the tests check every struct against its shader's declaration.

#![allow(non_snake_case)] // field names as in the WGSL structs (`M`, `N`, `D`, `KV`, ...)

use bytemuck::{Pod, Zeroable};

/// Declares the Rust mirrors of WGSL uniform structs; under `cfg(test)` each gets
/// `FIELDS` (its field names, in order), which the tests compare with the shader's struct.
macro_rules! uniforms {
    ($(
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)*
        }
    )*) => {$(
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        #[cfg(test)]
        impl $name {
            const FIELDS: &'static [&'static str] = &[$(stringify!($field)),*];
        }
    )*};
}

uniforms! {
    /// `struct Params` of `matmul_common.wgsl` (the tiled and naive matrix multiplies):
    /// `C[M, c_off + N] (+)= epilogue(A[M, K] B)`.
    pub struct MatmulParams {
        /// Rows of A and C.
        pub M: u32,
        /// Columns of the product.
        pub N: u32,
        /// Inner dimension.
        pub K: u32,
        /// Epilogue bit flags (`FLAG_BIAS`, `FLAG_GELU`, `FLAG_RESIDUAL` of `common.wgsl`).
        pub flags: u32,
        /// Row stride of C in elements.
        pub ldc: u32,
        /// First column of C written.
        pub c_off: u32,
        /// Padding to 16 bytes.
        pub _pad0: u32,
        /// Padding to 16 bytes.
        pub _pad1: u32,
    }

    /// `struct Params` of `norm.wgsl` (LayerNorm / RMSNorm, optionally gathering rows).
    pub struct NormParams {
        /// Row length.
        pub D: u32,
        /// 1 for RMSNorm, 0 for LayerNorm.
        pub rms: u32,
        /// Epsilon added to the variance.
        pub eps: f32,
        /// Input row of output row `r` is `r * in_stride + in_off`.
        pub in_stride: u32,
        /// See `in_stride`.
        pub in_off: u32,
        /// Padding to 16 bytes.
        pub _pad0: u32,
        /// Padding to 16 bytes.
        pub _pad1: u32,
        /// Padding to 16 bytes.
        pub _pad2: u32,
    }

    /// `struct Params` of `embed.wgsl` (token (+ position) embedding gather from one table chunk).
    pub struct EmbedParams {
        /// Model width.
        pub D: u32,
        /// New tokens per sequence.
        pub S: u32,
        /// First token id of the table chunk.
        pub v0: u32,
        /// One past the last token id of the chunk.
        pub v1: u32,
        /// 1 when the position table is added (GPT-2).
        pub has_pos: u32,
        /// Padding to 16 bytes.
        pub _pad0: u32,
        /// Padding to 16 bytes.
        pub _pad1: u32,
        /// Padding to 16 bytes.
        pub _pad2: u32,
    }

    /// `struct Params` of `qkv.wgsl` (split of the fused QKV projection into heads, RoPE,
    /// KV-cache append).
    pub struct QkvParams {
        /// New tokens per sequence.
        pub S: u32,
        /// Query heads.
        pub H: u32,
        /// Key/value heads.
        pub KV: u32,
        /// Head size.
        pub hd: u32,
        /// Cache capacity (positions) per sequence and head.
        pub cap: u32,
        /// 1 to rotate queries and keys (Llama).
        pub rope: u32,
        /// Padding to 16 bytes.
        pub _pad0: u32,
        /// Padding to 16 bytes.
        pub _pad1: u32,
    }

    /// `struct Params` of `attention.wgsl` (causal GQA attention over the KV cache).
    pub struct AttentionParams {
        /// New tokens per sequence.
        pub S: u32,
        /// Query heads.
        pub H: u32,
        /// Key/value heads.
        pub KV: u32,
        /// Head size.
        pub hd: u32,
        /// Cache capacity (positions) per sequence and head.
        pub cap: u32,
        /// Score scale, `1 / sqrt(hd)`.
        pub scale: f32,
        /// Padding to 16 bytes.
        pub _pad0: u32,
        /// Padding to 16 bytes.
        pub _pad1: u32,
    }

    /// `struct Params` of `swiglu.wgsl` (SwiGLU over the fused gate|up projection).
    pub struct SwigluParams {
        /// MLP inner width.
        pub I: u32,
        /// Padding to 16 bytes.
        pub _pad0: u32,
        /// Padding to 16 bytes.
        pub _pad1: u32,
        /// Padding to 16 bytes.
        pub _pad2: u32,
    }

    /// `struct Step` of `common.wgsl`: the per-forward values every plan reads (bound by the
    /// embedding, QKV and attention kernels), written by [`super::kernels::StepUniform`].
    pub struct StepParams {
        /// Positions already in the KV cache before this forward's tokens.
        pub past: u32,
        /// Padding to 16 bytes.
        pub _pad0: u32,
        /// Padding to 16 bytes.
        pub _pad1: u32,
        /// Padding to 16 bytes.
        pub _pad2: u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;

    /// Field names of `struct NAME { ... }` in `src`, checking that every field is a 4-byte
    /// scalar (`u32`, `i32` or `f32`), the only kind these uniform structs hold.
    fn wgsl_fields(src: &str, name: &str) -> Vec<String> {
        let start = src
            .find(&format!("struct {name} {{"))
            .unwrap_or_else(|| panic!("no struct {name}"));
        let body = &src[start..];
        let body = &body[body.find('{').unwrap() + 1..body.find('}').unwrap()];
        body.lines()
            .map(|l| l.split("//").next().unwrap().trim())
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (field, ty) = l.trim_end_matches(',').split_once(':').unwrap();
                let ty = ty.trim();
                assert!(["u32", "i32", "f32"].contains(&ty), "{name}.{field}: {ty}");
                field.trim().to_string()
            })
            .collect()
    }

    /// Checks `T` against the WGSL struct `name` of `src`: the same fields in the same order,
    /// and `size_of::<T>()` the struct's WGSL size (4 bytes a field), a multiple of 16 as a
    /// uniform buffer binding needs, and `size`.
    fn check<T: Pod>(fields: &[&str], src: &str, name: &str, size: usize) {
        let wgsl = wgsl_fields(src, name);
        assert_eq!(fields, wgsl, "fields of {name}");
        assert_eq!(size_of::<T>(), 4 * wgsl.len(), "size of {name}");
        assert_eq!(
            size_of::<T>() % 16,
            0,
            "{name} is not a multiple of 16 bytes"
        );
        assert_eq!(size_of::<T>(), size);
    }

    #[test]
    fn matmul_params_mirror_matmul_common_wgsl() {
        let src = include_str!("shaders/matmul_common.wgsl");
        check::<MatmulParams>(MatmulParams::FIELDS, src, "Params", 32);
    }

    #[test]
    fn norm_params_mirror_norm_wgsl() {
        let src = include_str!("shaders/norm.wgsl");
        check::<NormParams>(NormParams::FIELDS, src, "Params", 32);
    }

    #[test]
    fn embed_params_mirror_embed_wgsl() {
        let src = include_str!("shaders/embed.wgsl");
        check::<EmbedParams>(EmbedParams::FIELDS, src, "Params", 32);
    }

    #[test]
    fn qkv_params_mirror_qkv_wgsl() {
        let src = include_str!("shaders/qkv.wgsl");
        check::<QkvParams>(QkvParams::FIELDS, src, "Params", 32);
    }

    #[test]
    fn attention_params_mirror_attention_wgsl() {
        let src = include_str!("shaders/attention.wgsl");
        check::<AttentionParams>(AttentionParams::FIELDS, src, "Params", 32);
    }

    #[test]
    fn swiglu_params_mirror_swiglu_wgsl() {
        let src = include_str!("shaders/swiglu.wgsl");
        check::<SwigluParams>(SwigluParams::FIELDS, src, "Params", 16);
    }

    #[test]
    fn step_params_mirror_common_wgsl() {
        let src = include_str!("shaders/common.wgsl");
        check::<StepParams>(StepParams::FIELDS, src, "Step", 16);
    }

    #[test]
    fn the_wgsl_reader_sees_the_fields_in_order() {
        let src = "struct Params {\n    a: u32, // first\n    b: f32,\n}\n";
        assert_eq!(wgsl_fields(src, "Params"), ["a", "b"]);
    }
}
