//! ggml tensor types and their dequantisation to f32, block for block as llama.cpp defines them.
//!
//! Source of truth (llama.cpp, `ggml-org/llama.cpp`):
//! - type ids: `ggml/include/ggml.h`, `enum ggml_type` (`GGML_TYPE_F32 = 0` ... `GGML_TYPE_BF16 =
//!   30`, `TQ1_0 = 34`, `TQ2_0 = 35`, `MXFP4 = 39`);
//! - block layouts: `ggml/src/ggml-common.h` (`block_q4_0`: f16 `d` + 16 bytes of nibbles;
//!   `block_q4_1`: f16 `d`, f16 `m` + 16 bytes; `block_q5_0`: f16 `d`, `qh[4]`, `qs[16]`;
//!   `block_q5_1`: f16 `d`, f16 `m`, `qh[4]`, `qs[16]`; `block_q8_0`: f16 `d` + 32 `int8`;
//!   `block_q4_K`: f16 `d`, f16 `dmin`, `scales[K_SCALE_SIZE = 12]`, `qs[QK_K/2]`; `block_q6_K`:
//!   `ql[QK_K/2]`, `qh[QK_K/4]`, `int8 scales[QK_K/16]`, f16 `d`; `QK_K = 256`);
//! - formulas: `ggml/src/ggml-quants.c`, `dequantize_row_q4_0`, `_q4_1`, `_q5_0`, `_q5_1`,
//!   `_q8_0`, `_q4_K` (with `get_scale_min_k4`), `_q6_K`. Each function below follows the C
//!   loop it is named after, operation for operation (same products in the same order), so the
//!   values are the ones llama.cpp's reference CPU path produces.
//!
//! All multi-byte fields are little-endian (GGUF's default byte order).

use anyhow::{bail, Result};
use half::{bf16, f16};

/// Super-block size of the k-quants (`QK_K` in `ggml-common.h`).
pub const QK_K: usize = 256;

/// Size of the packed 6-bit scales and mins of a `block_q4_K` (`K_SCALE_SIZE`).
pub const K_SCALE_SIZE: usize = 12;

/// A ggml tensor type that `lts` can dequantise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    Bf16,
    /// 4-bit, 32 per block, scale only.
    Q4_0,
    /// 4-bit, 32 per block, scale and minimum.
    Q4_1,
    /// 5-bit, 32 per block, scale only.
    Q5_0,
    /// 5-bit, 32 per block, scale and minimum.
    Q5_1,
    /// 8-bit, 32 per block, scale only.
    Q8_0,
    /// 4-bit k-quant: super-blocks of 256 in 8 sub-blocks with 6-bit scales and mins.
    Q4K,
    /// 6-bit k-quant: super-blocks of 256 in 16 sub-blocks with 8-bit scales.
    Q6K,
}

/// Every type [`GgmlType`] covers, for messages.
pub const SUPPORTED: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Bf16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q4K,
    GgmlType::Q6K,
];

/// Name of a ggml type id as `ggml.h` spells it (without `GGML_TYPE_`), for every id llama.cpp
/// has defined; `None` for ids it never defined (4 and 5 were removed Q4_2/Q4_3, 31 to 33 are
/// repacked Q4_0 variants "removed from gguf files", 36 to 38 IQ4_NL repacks).
pub fn type_name(id: u32) -> Option<&'static str> {
    Some(match id {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        30 => "BF16",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => return None,
    })
}

impl GgmlType {
    /// The type of ggml id `id`, or `None` when `lts` cannot dequantise it (see [`type_name`]).
    pub fn from_id(id: u32) -> Option<GgmlType> {
        Some(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            12 => GgmlType::Q4K,
            14 => GgmlType::Q6K,
            30 => GgmlType::Bf16,
            _ => return None,
        })
    }

    /// The ggml id (`enum ggml_type`).
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q4K => 12,
            GgmlType::Q6K => 14,
            GgmlType::Bf16 => 30,
        }
    }

    /// Name as in `ggml.h` (`Q4_K`, `BF16`...).
    pub fn name(self) -> &'static str {
        type_name(self.id()).expect("every supported type has a name")
    }

    /// Values per block (`ggml_blck_size`): 1 for floats, 32 for `Q*_0`/`Q*_1`, [`QK_K`] for
    /// k-quants.
    pub fn block_len(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::Bf16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0 => {
                32
            }
            GgmlType::Q4K | GgmlType::Q6K => QK_K,
        }
    }

    /// Bytes per block (`ggml_type_size`, `sizeof(block_*)` in `ggml-common.h`).
    pub fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::Bf16 => 2,
            GgmlType::Q4_0 => 2 + 16,
            GgmlType::Q4_1 => 2 + 2 + 16,
            GgmlType::Q5_0 => 2 + 4 + 16,
            GgmlType::Q5_1 => 2 + 2 + 4 + 16,
            GgmlType::Q8_0 => 2 + 32,
            GgmlType::Q4K => 2 + 2 + K_SCALE_SIZE + QK_K / 2,
            GgmlType::Q6K => QK_K / 2 + QK_K / 4 + QK_K / 16 + 2,
        }
    }

    /// Bytes that `n` values take, or `None` when `n` is not a whole number of blocks or the
    /// size overflows.
    pub fn bytes_for(self, n: u64) -> Option<u64> {
        let bl = self.block_len() as u64;
        if !n.is_multiple_of(bl) {
            return None;
        }
        (n / bl).checked_mul(self.block_bytes() as u64)
    }
}

/// Little-endian f16 at `b[i..i + 2]`.
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Dequantises `n` values of type `ty` from `bytes` (exactly `ty.bytes_for(n)` bytes).
pub fn dequantize(ty: GgmlType, bytes: &[u8], n: usize) -> Result<Vec<f32>> {
    match ty.bytes_for(n as u64) {
        Some(b) if b == bytes.len() as u64 => {}
        _ => bail!(
            "{} values of type {} need {:?} bytes, got {}",
            n,
            ty.name(),
            ty.bytes_for(n as u64),
            bytes.len()
        ),
    }
    let mut out = Vec::with_capacity(n);
    let bb = ty.block_bytes();
    match ty {
        GgmlType::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        GgmlType::F16 => out.extend(bytes.chunks_exact(2).map(|c| f16_at(c, 0))),
        GgmlType::Bf16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()),
        ),
        GgmlType::Q4_0 => bytes.chunks_exact(bb).for_each(|b| q4_0(b, &mut out)),
        GgmlType::Q4_1 => bytes.chunks_exact(bb).for_each(|b| q4_1(b, &mut out)),
        GgmlType::Q5_0 => bytes.chunks_exact(bb).for_each(|b| q5_0(b, &mut out)),
        GgmlType::Q5_1 => bytes.chunks_exact(bb).for_each(|b| q5_1(b, &mut out)),
        GgmlType::Q8_0 => bytes.chunks_exact(bb).for_each(|b| q8_0(b, &mut out)),
        GgmlType::Q4K => bytes.chunks_exact(bb).for_each(|b| q4_k(b, &mut out)),
        GgmlType::Q6K => bytes.chunks_exact(bb).for_each(|b| q6_k(b, &mut out)),
    }
    debug_assert_eq!(out.len(), n);
    Ok(out)
}

/// One `block_q4_0` (`dequantize_row_q4_0`): `y[j] = ((qs[j] & 0xF) - 8) * d`,
/// `y[j + 16] = ((qs[j] >> 4) - 8) * d`.
fn q4_0(b: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(b, 0);
    let qs = &b[2..18];
    let mut y = [0f32; 32];
    for j in 0..16 {
        y[j] = ((qs[j] & 0x0F) as i32 - 8) as f32 * d;
        y[j + 16] = ((qs[j] >> 4) as i32 - 8) as f32 * d;
    }
    out.extend_from_slice(&y);
}

/// One `block_q4_1` (`dequantize_row_q4_1`): `y[j] = (qs[j] & 0xF) * d + m`,
/// `y[j + 16] = (qs[j] >> 4) * d + m`.
fn q4_1(b: &[u8], out: &mut Vec<f32>) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qs = &b[4..20];
    let mut y = [0f32; 32];
    for j in 0..16 {
        y[j] = (qs[j] & 0x0F) as f32 * d + m;
        y[j + 16] = (qs[j] >> 4) as f32 * d + m;
    }
    out.extend_from_slice(&y);
}

/// The fifth bits of value `j` and `j + 16` of a Q5 block (`xh_0`, `xh_1` in
/// `dequantize_row_q5_0`), each as 0 or 0x10.
fn q5_high(qh: u32, j: usize) -> (u8, u8) {
    (
        (((qh >> j) << 4) & 0x10) as u8,
        ((qh >> (j + 12)) & 0x10) as u8,
    )
}

/// One `block_q5_0` (`dequantize_row_q5_0`): 4 low bits from `qs`, the fifth from `qh`, minus
/// 16, times `d`.
fn q5_0(b: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    let mut y = [0f32; 32];
    for j in 0..16 {
        let (h0, h1) = q5_high(qh, j);
        y[j] = (((qs[j] & 0x0F) | h0) as i32 - 16) as f32 * d;
        y[j + 16] = (((qs[j] >> 4) | h1) as i32 - 16) as f32 * d;
    }
    out.extend_from_slice(&y);
}

/// One `block_q5_1` (`dequantize_row_q5_1`): the 5-bit value times `d` plus `m`.
fn q5_1(b: &[u8], out: &mut Vec<f32>) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    let mut y = [0f32; 32];
    for j in 0..16 {
        let (h0, h1) = q5_high(qh, j);
        y[j] = ((qs[j] & 0x0F) | h0) as f32 * d + m;
        y[j + 16] = ((qs[j] >> 4) | h1) as f32 * d + m;
    }
    out.extend_from_slice(&y);
}

/// One `block_q8_0` (`dequantize_row_q8_0`): `y[j] = qs[j] * d`.
fn q8_0(b: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(b, 0);
    out.extend(b[2..34].iter().map(|&q| (q as i8) as f32 * d));
}

/// Scale and minimum of sub-block `j` (0..8) of a `block_q4_K` from its 12 packed bytes
/// (`get_scale_min_k4`): sub-blocks 0..4 use the low 6 bits of `q[j]` and `q[j + 4]`; 4..8 take
/// 4 bits from `q[j + 4]` and their top 2 bits from the top of `q[j - 4]` and `q[j]`.
pub fn get_scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// One `block_q4_K` (`dequantize_row_q4_K`): for each 64 values, 32 low nibbles with
/// sub-block scale/min `is`, then the 32 high nibbles of the same bytes with `is + 1`;
/// `y = d * sc * q - dmin * m`.
fn q4_k(b: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(b, 0);
    let min = f16_at(b, 2);
    let scales = &b[4..4 + K_SCALE_SIZE];
    let qs = &b[4 + K_SCALE_SIZE..];
    for (chunk, q) in qs.chunks_exact(32).enumerate() {
        let is = 2 * chunk;
        let (sc, m) = get_scale_min_k4(is, scales);
        let (d1, m1) = (d * sc as f32, min * m as f32);
        let (sc, m) = get_scale_min_k4(is + 1, scales);
        let (d2, m2) = (d * sc as f32, min * m as f32);
        out.extend(q.iter().map(|&x| d1 * (x & 0xF) as f32 - m1));
        out.extend(q.iter().map(|&x| d2 * (x >> 4) as f32 - m2));
    }
}

/// One `block_q6_K` (`dequantize_row_q6_K`): two halves of 128 values; in each, value `l`
/// (0..32) of the four quarters takes 4 bits from `ql` (low or high nibble of `ql[l]` /
/// `ql[l + 32]`) and 2 bits from `qh[l]`, minus 32, times `d * scales[is + 2k]` with
/// `is = l / 16`.
fn q6_k(b: &[u8], out: &mut Vec<f32>) {
    let (ql_all, rest) = b.split_at(QK_K / 2);
    let (qh_all, rest) = rest.split_at(QK_K / 4);
    let (sc_all, d_bytes) = rest.split_at(QK_K / 16);
    let d = f16_at(d_bytes, 0);
    let mut y = [0f32; QK_K];
    for half in 0..2 {
        let ql = &ql_all[64 * half..];
        let qh = &qh_all[32 * half..];
        let sc = &sc_all[8 * half..];
        let y = &mut y[128 * half..];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
            let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
            let s = |k: usize| d * (sc[is + k] as i8) as f32;
            y[l] = s(0) * q1 as f32;
            y[l + 32] = s(2) * q2 as f32;
            y[l + 64] = s(4) * q3 as f32;
            y[l + 96] = s(6) * q4 as f32;
        }
    }
    out.extend_from_slice(&y);
}

#[cfg(test)]
mod tests {
    //! Hand-built blocks, expected values worked out from the llama.cpp formulas quoted on each
    //! function (a few written out as literals).
    use super::*;

    fn h(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    /// Low nibble `j`, high nibble `15 - j`, for byte `j` of 16.
    fn nibbles() -> Vec<u8> {
        (0..16u8).map(|j| j | ((15 - j) << 4)).collect()
    }

    #[test]
    fn sizes_follow_ggml_common() {
        // static_asserts of ggml-common.h
        assert_eq!(GgmlType::Q4_0.block_bytes(), 18);
        assert_eq!(GgmlType::Q4_1.block_bytes(), 20);
        assert_eq!(GgmlType::Q5_0.block_bytes(), 22);
        assert_eq!(GgmlType::Q5_1.block_bytes(), 24);
        assert_eq!(GgmlType::Q8_0.block_bytes(), 34);
        assert_eq!(GgmlType::Q4K.block_bytes(), 144);
        assert_eq!(GgmlType::Q6K.block_bytes(), 210);
        assert_eq!(GgmlType::Q4_1.bytes_for(64), Some(40));
        assert_eq!(GgmlType::Q4_1.bytes_for(33), None);
        for t in SUPPORTED {
            assert_eq!(GgmlType::from_id(t.id()), Some(*t));
        }
        assert_eq!(type_name(10), Some("Q2_K"));
        assert_eq!(GgmlType::from_id(10), None);
        assert_eq!(type_name(4), None);
    }

    #[test]
    fn floats() {
        let mut b = Vec::new();
        b.extend(1.5f32.to_le_bytes());
        b.extend((-2.25f32).to_le_bytes());
        assert_eq!(dequantize(GgmlType::F32, &b, 2).unwrap(), [1.5, -2.25]);
        // 0x3E00 is 1.5 in IEEE half, 0xC000 is -2; 0x3FC0 is 1.5 in bfloat16.
        let b = [0x00, 0x3E, 0x00, 0xC0];
        assert_eq!(dequantize(GgmlType::F16, &b, 2).unwrap(), [1.5, -2.0]);
        let b = [0xC0, 0x3F];
        assert_eq!(dequantize(GgmlType::Bf16, &b, 1).unwrap(), [1.5]);
        assert!(dequantize(GgmlType::F32, &b, 1).is_err());
    }

    #[test]
    fn q8_0_block() {
        let mut b = h(0.5).to_vec();
        b.extend((0..32).map(|j| (j as i8 - 16) as u8));
        let y = dequantize(GgmlType::Q8_0, &b, 32).unwrap();
        for (j, v) in y.iter().enumerate() {
            assert_eq!(*v, (j as f32 - 16.0) * 0.5);
        }
        assert_eq!((y[0], y[31]), (-8.0, 7.5));
    }

    #[test]
    fn q4_0_and_q4_1_blocks() {
        let mut b = h(2.0).to_vec();
        b.extend(nibbles());
        let y = dequantize(GgmlType::Q4_0, &b, 32).unwrap();
        for j in 0..16 {
            assert_eq!(y[j], (j as f32 - 8.0) * 2.0);
            assert_eq!(y[j + 16], (7.0 - j as f32) * 2.0);
        }
        assert_eq!((y[0], y[16]), (-16.0, 14.0));

        let mut b = h(0.25).to_vec();
        b.extend(h(-1.0));
        b.extend(nibbles());
        let y = dequantize(GgmlType::Q4_1, &b, 32).unwrap();
        for j in 0..16 {
            assert_eq!(y[j], j as f32 * 0.25 - 1.0);
            assert_eq!(y[j + 16], (15 - j) as f32 * 0.25 - 1.0);
        }
        assert_eq!((y[0], y[15], y[16]), (-1.0, 2.75, 2.75));
    }

    #[test]
    fn q5_blocks() {
        // Fifth bit: value j (< 16) has it when j is even (qh bit j), value j + 16 when j is
        // odd (qh bit j + 16).
        let mut qh = 0u32;
        for j in 0..16 {
            if j % 2 == 0 {
                qh |= 1 << j;
            } else {
                qh |= 1 << (j + 16);
            }
        }
        let qs: Vec<u8> = (0..16u8).map(|j| j | (j << 4)).collect();
        let q = |i: usize| -> f32 {
            let j = i % 16;
            let high = if (i < 16) == j.is_multiple_of(2) {
                16
            } else {
                0
            };
            (j + high) as f32
        };
        let mut b = h(1.0).to_vec();
        b.extend(qh.to_le_bytes());
        b.extend(&qs);
        let y = dequantize(GgmlType::Q5_0, &b, 32).unwrap();
        for (i, v) in y.iter().enumerate() {
            assert_eq!(*v, q(i) - 16.0, "q5_0 value {i}");
        }
        assert_eq!((y[0], y[1], y[16], y[17]), (0.0, -15.0, -16.0, 1.0));

        let mut b = h(0.5).to_vec();
        b.extend(h(1.0));
        b.extend(qh.to_le_bytes());
        b.extend(&qs);
        let y = dequantize(GgmlType::Q5_1, &b, 32).unwrap();
        for (i, v) in y.iter().enumerate() {
            assert_eq!(*v, q(i) * 0.5 + 1.0, "q5_1 value {i}");
        }
        assert_eq!((y[0], y[31]), (9.0, 16.5));
    }

    #[test]
    fn q4_k_block() {
        // Scales and mins above 15 in sub-blocks 4..8 exercise the split 6-bit packing.
        let sc = [1u8, 2, 3, 4, 17, 40, 63, 5];
        let mn = [0u8, 1, 2, 3, 33, 10, 63, 20];
        // Packing as quantize_row_q4_K_ref writes it.
        let mut scales = [0u8; K_SCALE_SIZE];
        for j in 0..8 {
            if j < 4 {
                scales[j] = sc[j];
                scales[j + 4] = mn[j];
            } else {
                scales[j + 4] = (sc[j] & 0xF) | ((mn[j] & 0xF) << 4);
                scales[j - 4] |= (sc[j] >> 4) << 6;
                scales[j] |= (mn[j] >> 4) << 6;
            }
        }
        for j in 0..8 {
            assert_eq!(
                get_scale_min_k4(j, &scales),
                (sc[j], mn[j]),
                "sub-block {j}"
            );
        }
        let (d, dmin) = (1.0f32, 0.5f32);
        let mut b = h(d).to_vec();
        b.extend(h(dmin));
        b.extend(scales);
        for _ in 0..4 {
            b.extend(nibbles());
            b.extend(nibbles());
        }
        let y = dequantize(GgmlType::Q4K, &b, QK_K).unwrap();
        for c in 0..4 {
            for l in 0..32 {
                let (lo, hi) = ((l % 16) as f32, (15 - l % 16) as f32);
                let (s0, m0) = (sc[2 * c] as f32, mn[2 * c] as f32);
                let (s1, m1) = (sc[2 * c + 1] as f32, mn[2 * c + 1] as f32);
                assert_eq!(y[64 * c + l], d * s0 * lo - dmin * m0);
                assert_eq!(y[64 * c + 32 + l], d * s1 * hi - dmin * m1);
            }
        }
        // Sub-block 4 (scale 17, min 33), q = 5: 17 * 5 - 16.5; last value: q = 0, min 20.
        assert_eq!((y[133], y[255]), (68.5, -10.0));
    }

    #[test]
    fn q6_k_block() {
        // 6-bit values L[i] = i % 64, scales alternating in sign, packed as
        // quantize_row_q6_K_ref does.
        let l_val: Vec<u8> = (0..QK_K).map(|i| (i % 64) as u8).collect();
        let scales: Vec<i8> = (0..16)
            .map(|k| (k as i8 + 1) * if k % 2 == 1 { -1 } else { 1 })
            .collect();
        let (mut ql, mut qh) = (vec![0u8; QK_K / 2], vec![0u8; QK_K / 4]);
        for (half, j) in [0usize, 128].into_iter().enumerate() {
            let (ql, qh) = (&mut ql[64 * half..], &mut qh[32 * half..]);
            for l in 0..32 {
                let q = |k: usize| l_val[j + l + 32 * k];
                ql[l] = (q(0) & 0xF) | ((q(2) & 0xF) << 4);
                ql[l + 32] = (q(1) & 0xF) | ((q(3) & 0xF) << 4);
                qh[l] = (q(0) >> 4) | ((q(1) >> 4) << 2) | ((q(2) >> 4) << 4) | ((q(3) >> 4) << 6);
            }
        }
        let d = 0.5f32;
        let mut b = ql;
        b.extend(qh);
        b.extend(scales.iter().map(|&s| s as u8));
        b.extend(h(d));
        let y = dequantize(GgmlType::Q6K, &b, QK_K).unwrap();
        for (i, v) in y.iter().enumerate() {
            let want = d * scales[i / 16] as f32 * (l_val[i] as f32 - 32.0);
            assert_eq!(*v, want, "value {i}");
        }
        assert_eq!((y[0], y[255]), (-16.0, -248.0));
    }
}
