//! Quantize / dequantize primitives for post-training quantization (issue 14): int8 scale and
//! zero point, int8 weights per tensor or per output channel, int4 block weights in the layout
//! of ONNX Runtime's contrib `MatMulNBits`, fp16 storage, and the SQNR used to judge them.
//!
//! Every formula follows a named ONNX Runtime source (paths relative to the onnxruntime repo):
//! - int8: `onnxruntime/python/tools/quantization/quant_utils.py` (`compute_scale_zp`,
//!   `quantize_nparray`, `get_qmin_qmax_for_qType` and its `ONNX_INT_TYPE_*RANGE` tables) and
//!   `base_quantizer.py` (`is_weight_symmetric`: signed weight types are symmetric by default).
//! - int4: `onnxruntime/core/mlas/lib/q4_dq.cpp` (`range2scale`, `range2scalezp`,
//!   `BlockwiseQuantizer::quantizeAndTranspose` / `::dequantize`), called by
//!   `matmul_nbits_quantizer.py` (`DefaultWeightOnlyQuantizer.int4_block_quant`), and the
//!   `com.microsoft.MatMulNBits` entry of `docs/ContribOperators.md`.
//!
//! Matrices are row-major `[K, N]` f32, the layout of ONNX `MatMul`'s B input: K input features
//! (rows), N output features (columns). "Per channel" means one scale per column.

use anyhow::{bail, ensure, Result};
use half::f16;

/// Inclusive integer range `[qmin, qmax]` a quantized value may take: ORT's tables in
/// `quant_utils.py`, `ONNX_INT_TYPE_RANGE` (full) and `ONNX_INT_TYPE_SYMMETRIC_RANGE`
/// (symmetric: int8 drops -128 so that +-amax map to +-127). `reduce_range` is not offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QRange {
    /// Smallest quantized value.
    pub qmin: i32,
    /// Largest quantized value.
    pub qmax: i32,
}

impl QRange {
    /// int8, full range: asymmetric int8 weights and activations.
    pub const I8: QRange = QRange::new(-128, 127);
    /// int8, symmetric range: symmetric weights (ORT's default for int8) and activations.
    pub const I8_SYMMETRIC: QRange = QRange::new(-127, 127);
    /// uint8, full range: asymmetric activations (`DynamicQuantizeLinear`'s range too).
    pub const U8: QRange = QRange::new(0, 255);
    /// uint8, symmetric range (zero point 127).
    pub const U8_SYMMETRIC: QRange = QRange::new(0, 254);

    /// The range `[qmin, qmax]`.
    pub const fn new(qmin: i32, qmax: i32) -> Self {
        QRange { qmin, qmax }
    }
}

/// Scale and zero point of linear quantization `r = scale * (q - zero_point)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QParams {
    /// Real-valued step between consecutive quantized values (> 0).
    pub scale: f32,
    /// Quantized value that represents real 0.
    pub zero_point: i32,
}

impl QParams {
    /// Scale 1, zero point 0: what ORT gives an all-zero tensor.
    pub const UNIT: QParams = QParams {
        scale: 1.0,
        zero_point: 0,
    };
}

/// Scale and zero point for the real range `[rmin, rmax]` on `range`, exactly as ORT's
/// `quant_utils.py::compute_scale_zp`: the range is widened to include 0; `symmetric` makes it
/// `[-amax, amax]` with zero point `round((qmin + qmax) / 2)`; otherwise
/// `zp = round(qmin - rmin / scale)`; `scale = (rmax - rmin) / (qmax - qmin)` in f64 (bounds
/// widened before subtracting, as ORT 1.31 does), stored as f32; rounding is half to even
/// (numpy); a range narrower than the smallest normal f32 (all zeros) gets scale 1, zp 0.
pub fn compute_scale_zp(rmin: f32, rmax: f32, range: QRange, symmetric: bool) -> Result<QParams> {
    ensure!(
        rmin.is_finite() && rmax.is_finite(),
        "quantization range [{rmin}, {rmax}] is not finite: the fp32 model produced inf/NaN \
         values; check the weights and inputs before quantizing"
    );
    ensure!(
        rmin <= rmax,
        "quantization range [{rmin}, {rmax}] is inverted (min > max); pass the range as (min, max)"
    );
    let QRange { qmin, qmax } = range;
    ensure!(
        qmin <= 0 && 0 <= qmax && qmin < qmax,
        "quantized range [{qmin}, {qmax}] must satisfy qmin <= 0 <= qmax and qmin < qmax \
         (as ORT's compute_scale_zp requires); use QRange::I8, I8_SYMMETRIC, U8 or U8_SYMMETRIC"
    );
    let (mut lo, mut hi) = (rmin.min(0.0), rmax.max(0.0));
    if symmetric {
        let amax = lo.abs().max(hi.abs());
        (lo, hi) = (-amax, amax);
    }
    // ORT 1.31 widens to f64 before subtracting ("a finite input range can overflow its
    // original dtype"); older releases subtracted in f32 first (1-ulp different scales).
    let dr = f64::from(hi) - f64::from(lo);
    let scale = dr / f64::from(qmax - qmin);
    if scale < f64::from(f32::MIN_POSITIVE) {
        return Ok(QParams::UNIT);
    }
    let zp = if symmetric {
        (f64::from(qmin + qmax) / 2.0).round_ties_even()
    } else {
        (f64::from(qmin) - f64::from(lo) / scale).round_ties_even()
    };
    Ok(QParams {
        scale: scale as f32,
        zero_point: (zp as i32).clamp(qmin, qmax),
    })
}

/// Symmetric int8 parameters for values in `[-amax, amax]`: range [-127, 127], zero point 0,
/// scale `amax / 127` (ORT `compute_scale_zp(-amax, amax, -127, 127, symmetric=True)`, the
/// default for int8 weights in `quantize_dynamic` / `quantize_static`).
pub fn qparams_symmetric(amax: f32) -> Result<QParams> {
    let amax = amax.abs();
    compute_scale_zp(-amax, amax, QRange::I8_SYMMETRIC, true)
}

/// Asymmetric parameters for `[min, max]` on `[qmin, qmax]` (ORT `compute_scale_zp(...,
/// symmetric=False)`): e.g. `(0, 255)` for uint8 activations, `(-128, 127)` for int8.
pub fn qparams_asymmetric(min: f32, max: f32, qmin: i32, qmax: i32) -> Result<QParams> {
    compute_scale_zp(min, max, QRange { qmin, qmax }, false)
}

/// `x` rounded to the nearest integer, ties to even (numpy `round`, `f32::round_ties_even`),
/// exact for |x| <= 2^22 and saturating beyond (callers clamp to at most 16 bits). Adding and
/// subtracting 1.5 * 2^23 rounds in the FPU's default mode; `f32::round_ties_even` is a libm
/// call on baseline x86-64 and made int8 weight quantization 4x slower.
fn round_half_even(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: [2^23, 2^24) has a unit ulp
    let x = x.clamp(-4_194_304.0, 4_194_304.0); // 2^22; NaN stays NaN
    (x + MAGIC) - MAGIC
}

/// `x` rounded to the nearest integer, ties away from zero (C `roundf`, `f32::round`), exact for
/// |x| <= 2^22 and saturating beyond; see [`round_half_even`].
fn round_half_away(x: f32) -> f32 {
    let r = round_half_even(x);
    let x = x.clamp(-4_194_304.0, 4_194_304.0);
    if (x - r).abs() == 0.5 {
        x + 0.5f32.copysign(x)
    } else {
        r
    }
}

/// Quantize one value: `clamp(round_half_even(x / scale) + zero_point, qmin, qmax)`, the
/// arithmetic of ORT's `quant_utils.py::quantize_nparray` and of ONNX `QuantizeLinear`
/// (division in f32). NaN maps to 0.
pub fn quantize(x: f32, qp: &QParams, range: QRange) -> i32 {
    let q = round_half_even(x / qp.scale) + qp.zero_point as f32;
    // `as i32` saturates and maps NaN to 0.
    (q.clamp(range.qmin as f32, range.qmax as f32)) as i32
}

/// [`quantize`] to int8, clipped to the full type range [-128, 127] as `quantize_nparray` does.
pub fn quantize_i8(x: f32, qp: &QParams) -> i8 {
    quantize(x, qp, QRange::I8) as i8
}

/// [`quantize`] to uint8, clipped to [0, 255] as `quantize_nparray` does.
pub fn quantize_u8(x: f32, qp: &QParams) -> u8 {
    quantize(x, qp, QRange::U8) as u8
}

/// Dequantize one value: `(q - zero_point) * scale`, ONNX `DequantizeLinear`.
pub fn dequantize(q: i32, qp: &QParams) -> f32 {
    (q - qp.zero_point) as f32 * qp.scale
}

/// Check that `data` is a finite row-major `[k, n]` matrix; `what` names it in errors.
fn check_matrix(data: &[f32], k: usize, n: usize, what: &str) -> Result<()> {
    ensure!(
        k > 0 && n > 0,
        "{what}: shape [{k}, {n}] is empty; only non-empty [K, N] MatMul weights can be quantized"
    );
    let len = k.checked_mul(n);
    ensure!(
        len == Some(data.len()),
        "{what}: {} values do not fill the shape [K={k}, N={n}]; pass the MatMul B matrix \
         row-major with K rows (input features) and N columns (output features)",
        data.len()
    );
    if let Some(i) = data.iter().position(|x| !x.is_finite()) {
        bail!(
            "{what}: weight [{}, {}] is {} (not finite); the checkpoint is corrupt or the \
             weights overflowed, re-export the fp32 weights",
            i / n,
            i % n,
            data[i]
        );
    }
    Ok(())
}

/// Min and max of each column of a row-major `[k, n]` matrix (one row-major pass).
fn column_min_max(data: &[f32], n: usize) -> (Vec<f32>, Vec<f32>) {
    let mut mins = vec![f32::INFINITY; n];
    let mut maxs = vec![f32::NEG_INFINITY; n];
    for row in data.chunks_exact(n) {
        for ((x, lo), hi) in row.iter().zip(&mut mins).zip(&mut maxs) {
            *lo = lo.min(*x);
            *hi = hi.max(*x);
        }
    }
    (mins, maxs)
}

/// An int8-quantized `[K, N]` MatMul weight with its scales and zero points, ready for
/// `MatMulInteger` / `DynamicQuantizeMatMul` / `DequantizeLinear` (axis 1 when per channel).
#[derive(Clone, Debug, PartialEq)]
pub struct Int8Weight {
    /// Rows (input features).
    pub k: usize,
    /// Columns (output features).
    pub n: usize,
    /// Quantized values, row-major `[K, N]` like the fp32 input.
    pub data: Vec<i8>,
    /// One scale per column (`N`) when per channel, else one.
    pub scales: Vec<f32>,
    /// Zero points, same length as `scales` (all 0 when symmetric).
    pub zero_points: Vec<i8>,
}

impl Int8Weight {
    /// Whether the weight has one scale per output column.
    pub fn per_channel(&self) -> bool {
        self.scales.len() == self.n && self.n > 1
    }

    /// Scale and zero point of column `col`.
    pub fn qparams(&self, col: usize) -> QParams {
        let j = if self.scales.len() == 1 { 0 } else { col };
        QParams {
            scale: self.scales[j],
            zero_point: i32::from(self.zero_points[j]),
        }
    }
}

/// Quantize a row-major `[k, n]` MatMul weight to int8, per tensor or per output column
/// (`per_channel`). Symmetric uses [-127, 127] with zero point 0 (ORT's default for int8
/// weights, `base_quantizer.py::is_weight_symmetric`); asymmetric uses [-128, 127] with a rounded
/// zero point. Per channel follows ORT `quantize_dynamic(per_channel=True)` for MatMul: the
/// channel axis is the last one (N), each column gets `quant_utils.py::quantize_data`.
pub fn quantize_weight_int8(
    data: &[f32],
    k: usize,
    n: usize,
    per_channel: bool,
    symmetric: bool,
) -> Result<Int8Weight> {
    check_matrix(data, k, n, "int8 weight quantization")?;
    let range = if symmetric {
        QRange::I8_SYMMETRIC
    } else {
        QRange::I8
    };
    let (mins, maxs) = column_min_max(data, n);
    let params: Vec<QParams> = if per_channel {
        mins.iter()
            .zip(&maxs)
            .map(|(&lo, &hi)| compute_scale_zp(lo, hi, range, symmetric))
            .collect::<Result<_>>()?
    } else {
        let lo = mins.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = maxs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        vec![compute_scale_zp(lo, hi, range, symmetric)?]
    };
    let mut q = Vec::with_capacity(data.len());
    for row in data.chunks_exact(n) {
        for (c, &x) in row.iter().enumerate() {
            let p = if per_channel { &params[c] } else { &params[0] };
            q.push(quantize_i8(x, p));
        }
    }
    Ok(Int8Weight {
        k,
        n,
        data: q,
        scales: params.iter().map(|p| p.scale).collect(),
        zero_points: params.iter().map(|p| p.zero_point as i8).collect(),
    })
}

/// Dequantize an [`Int8Weight`] back to a row-major `[K, N]` f32 matrix (for fidelity checks).
pub fn dequantize_int8_weight(w: &Int8Weight) -> Result<Vec<f32>> {
    ensure!(
        w.data.len() == w.k * w.n
            && (w.scales.len() == 1 || w.scales.len() == w.n)
            && w.zero_points.len() == w.scales.len(),
        "inconsistent int8 weight: {} values, {} scales, {} zero points for [K={}, N={}]; \
         build it with quantize_weight_int8",
        w.data.len(),
        w.scales.len(),
        w.zero_points.len(),
        w.k,
        w.n
    );
    let params: Vec<QParams> = (0..w.n).map(|c| w.qparams(c)).collect();
    Ok(w.data
        .chunks_exact(w.n)
        .flat_map(|row| {
            row.iter()
                .zip(&params)
                .map(|(&q, p)| dequantize(i32::from(q), p))
        })
        .collect())
}

/// Block sizes ORT's blockwise 4-bit quantizer implements (`q4_dq.cpp::MlasQuantizeBlockwise`
/// switches on exactly these; any other size silently quantizes nothing there). All are powers of
/// two >= 16, as `MatMulNBits` requires.
pub const INT4_BLOCK_SIZES: [usize; 5] = [16, 32, 64, 128, 256];

/// Zero point `MatMulNBits` assumes when its `zero_points` input is absent: `2^(bits - 1)`
/// (ContribOperators.md), the `kMid` of `q4_dq.cpp::BitsTraits<4, false>`.
pub const INT4_DEFAULT_ZERO_POINT: u8 = 8;

/// Check an int4 block size: a power of two >= 16 (`MatMulNBits`' rule) that ORT's quantizer
/// implements (16, 32, 64, 128 or 256, see [`INT4_BLOCK_SIZES`]).
pub fn validate_int4_block_size(block_size: usize) -> Result<()> {
    ensure!(
        INT4_BLOCK_SIZES.contains(&block_size),
        "int4 block size {block_size} is not supported: MatMulNBits needs a power of two >= 16 \
         and ORT's blockwise quantizer implements 16, 32, 64, 128 and 256; use one of those \
         (e.g. --scheme int4:b32)"
    );
    Ok(())
}

/// A `[K, N]` MatMul weight quantized to 4 bits in blocks of `block_size` along K, in the input
/// layout of `com.microsoft.MatMulNBits` (bits = 4). K need not be a multiple of the block size:
/// the last block of each column is padded (its quantized nibbles past K are 0, as in ORT's
/// zero-initialised buffer) and its scale / zero point come from the real rows only.
#[derive(Clone, Debug, PartialEq)]
pub struct Int4Weight {
    /// Rows of the fp32 weight (MatMulNBits attribute `K`).
    pub k: usize,
    /// Columns of the fp32 weight (attribute `N`).
    pub n: usize,
    /// Attribute `block_size`.
    pub block_size: usize,
    /// Input `B`, uint8 `[N][n_blocks][block_size / 2]`: element `k` of a column is nibble
    /// `k % 2` (low nibble first) of byte `k / 2` of that column's blob.
    pub packed: Vec<u8>,
    /// Input `scales`, `[N * n_blocks]` (column-major blocks). Symmetric scales are negative when
    /// the block's largest-magnitude value is positive (ORT's sign trick, see
    /// [`quantize_weight_int4`]).
    pub scales: Vec<f32>,
    /// Input `zero_points` when asymmetric: uint8 `[N * ceil(n_blocks / 2)]`, two 4-bit zero
    /// points per byte (low nibble = even block), the spare nibble of an odd block count is 8.
    /// `None` means the operator's default zero point 8.
    pub zero_points: Option<Vec<u8>>,
}

impl Int4Weight {
    /// Blocks per column: `ceil(K / block_size)`.
    pub fn n_blocks(&self) -> usize {
        self.k.div_ceil(self.block_size)
    }

    /// Bytes per block (`blob_size` = `block_size * 4 / 8`).
    pub fn blob_size(&self) -> usize {
        self.block_size / 2
    }

    /// Bytes of packed zero points per column: `ceil(n_blocks * 4 / 8)`.
    pub fn zero_point_bytes_per_column(&self) -> usize {
        self.n_blocks().div_ceil(2)
    }

    /// The unsigned 4-bit value of weight `[row, col]` (0..=15).
    pub fn nibble(&self, row: usize, col: usize) -> u8 {
        let byte = self.packed[col * self.n_blocks() * self.blob_size() + row / 2];
        (byte >> ((row % 2) * 4)) & 0x0f
    }

    /// The zero point of block `block` of column `col` (8 when there are none).
    pub fn zero_point(&self, col: usize, block: usize) -> u8 {
        match &self.zero_points {
            None => INT4_DEFAULT_ZERO_POINT,
            Some(z) => {
                let byte = z[col * self.zero_point_bytes_per_column() + block / 2];
                (byte >> ((block % 2) * 4)) & 0x0f
            }
        }
    }
}

/// Scale and zero point of one 4-bit block from its min and max.
///
/// Symmetric: `q4_dq.cpp::range2scale<float, 4, false>`: take the extreme with the larger
/// magnitude *with its sign* and set `scale = -extreme / 8`, so that the extreme lands exactly on
/// q = 0 (i.e. -8 after the implicit zero point 8) and the 16th level is used. Asymmetric:
/// `range2scalezp`: widen to include 0, `scale = (max - min) / 15`,
/// `zp = roundf(-min / scale)` clamped to [0, 15] (round half away from zero, C `roundf`).
fn int4_block_params(min: f32, max: f32, with_zero_point: bool) -> (f32, u8) {
    if !with_zero_point {
        let extreme = if max.abs() > min.abs() { max } else { min };
        return (-extreme / 8.0, INT4_DEFAULT_ZERO_POINT);
    }
    let (min, max) = (min.min(0.0), max.max(0.0));
    let scale = (max - min) / 15.0;
    let zp_fp = if scale != 0.0 { 0.0 - min / scale } else { min };
    let zp = if zp_fp < 0.0 {
        0
    } else if zp_fp > 15.0 {
        15
    } else {
        zp_fp.round() as u8
    };
    (scale, zp)
}

/// Quantize a row-major `[k, n]` MatMul weight to 4-bit blocks for `MatMulNBits` (bits = 4),
/// blocks of `block_size` rows along K in each column, as ORT's `matmul_nbits_quantizer.py`
/// (`DefaultWeightOnlyQuantizer.int4_block_quant`, QOperator format) does through
/// `q4_dq.cpp::BlockwiseQuantizer<float, block_size, 4, columnwise=true>::quantizeAndTranspose`:
/// each value becomes `clamp(roundf(x * (1 / scale) + zp), 0, 15)` (reciprocal multiply, round
/// half away from zero; a zero scale gives q = zp). `with_zero_point` selects asymmetric blocks
/// with stored zero points (ORT's default, `is_symmetric=False`); without, blocks are symmetric
/// around the operator's default zero point 8.
pub fn quantize_weight_int4(
    data: &[f32],
    k: usize,
    n: usize,
    block_size: usize,
    with_zero_point: bool,
) -> Result<Int4Weight> {
    validate_int4_block_size(block_size)?;
    check_matrix(data, k, n, "int4 weight quantization")?;
    let n_blocks = k.div_ceil(block_size);
    let col_bytes = n_blocks * block_size / 2;
    let zp_col_bytes = n_blocks.div_ceil(2);
    let mut packed = vec![0u8; n * col_bytes];
    let mut scales = vec![0f32; n * n_blocks];
    // Zero-point bytes start as 0x88: the spare nibble of an odd block count stays 8, as the
    // `zp_bytes` that quantizeAndTranspose fills with kMid before packing.
    let mut zps = vec![0x88u8; n * zp_col_bytes];
    let mut recip = vec![0f32; n];
    let mut zp = vec![0f32; n];
    for b in 0..n_blocks {
        let rows = &data[b * block_size * n..((b + 1) * block_size).min(k) * n];
        let (mins, maxs) = column_min_max(rows, n);
        for c in 0..n {
            let (scale, z) = int4_block_params(mins[c], maxs[c], with_zero_point);
            scales[c * n_blocks + b] = scale;
            recip[c] = if scale != 0.0 { 1.0 / scale } else { 0.0 };
            zp[c] = f32::from(z);
            let byte = &mut zps[c * zp_col_bytes + b / 2];
            let shift = (b % 2) * 4;
            *byte = (*byte & !(0x0f << shift)) | (z << shift);
        }
        for (i, row) in rows.chunks_exact(n).enumerate() {
            let r = b * block_size + i;
            let shift = (r % 2) * 4;
            for (c, &x) in row.iter().enumerate() {
                let q = round_half_away(x * recip[c] + zp[c]).clamp(0.0, 15.0) as u8;
                packed[c * col_bytes + r / 2] |= q << shift;
            }
        }
    }
    Ok(Int4Weight {
        k,
        n,
        block_size,
        packed,
        scales,
        zero_points: with_zero_point.then_some(zps),
    })
}

/// Dequantize an [`Int4Weight`] to a row-major `[K, N]` f32 matrix:
/// `(q - zero_point) * scale` per block, as `MatMulNBits` (and
/// `q4_dq.cpp::BlockwiseQuantizer::dequantize`) does before its MatMul.
pub fn dequantize_int4(w: &Int4Weight) -> Result<Vec<f32>> {
    validate_int4_block_size(w.block_size)?;
    let n_blocks = w.n_blocks();
    ensure!(
        w.packed.len() == w.n * n_blocks * w.blob_size()
            && w.scales.len() == w.n * n_blocks
            && w.zero_points
                .as_ref()
                .is_none_or(|z| z.len() == w.n * w.zero_point_bytes_per_column()),
        "inconsistent int4 weight: {} packed bytes, {} scales for [K={}, N={}] in blocks of {}; \
         build it with quantize_weight_int4",
        w.packed.len(),
        w.scales.len(),
        w.k,
        w.n,
        w.block_size
    );
    let mut out = vec![0f32; w.k * w.n];
    for c in 0..w.n {
        for r in 0..w.k {
            let b = r / w.block_size;
            let q = i32::from(w.nibble(r, c)) - i32::from(w.zero_point(c, b));
            out[r * w.n + c] = q as f32 * w.scales[c * n_blocks + b];
        }
    }
    Ok(out)
}

/// fp16 bit patterns of `values`, rounded to nearest even (`half::f16::from_f32`, the IEEE
/// conversion numpy's `astype(float16)` also performs). Errors instead of silently turning a
/// finite value beyond fp16's range (|x| > 65504) into infinity.
pub fn to_f16_bits(values: &[f32]) -> Result<Vec<u16>> {
    let mut out = Vec::with_capacity(values.len());
    for (i, &x) in values.iter().enumerate() {
        let h = f16::from_f32(x);
        if x.is_finite() && !h.is_finite() {
            bail!(
                "value {x} at index {i} overflows fp16 (largest finite 65504); keep this \
                 tensor in fp32 or use an int8/int4 scheme"
            );
        }
        out.push(h.to_bits());
    }
    Ok(out)
}

/// f32 values of fp16 bit patterns (exact).
pub fn from_f16_bits(bits: &[u16]) -> Vec<f32> {
    bits.iter().map(|&b| f16::from_bits(b).to_f32()).collect()
}

/// Signal-to-quantization-noise ratio in dB:
/// `10 log10(sum ref^2 / sum (ref - approx)^2)`, accumulated in f64; `+inf` when the two are
/// equal. The usual definition (e.g. the SQNR of the TinyML PTQ study the issue cites).
pub fn sqnr_db(reference: &[f32], approx: &[f32]) -> Result<f64> {
    ensure!(
        reference.len() == approx.len(),
        "SQNR needs outputs of the same length, got {} reference and {} quantized values; \
         compare the same graph outputs on the same inputs",
        reference.len(),
        approx.len()
    );
    ensure!(
        !reference.is_empty(),
        "SQNR of empty outputs; run at least one evaluation sequence"
    );
    let (mut signal, mut noise) = (0f64, 0f64);
    for (i, (&r, &a)) in reference.iter().zip(approx).enumerate() {
        ensure!(
            r.is_finite() && a.is_finite(),
            "SQNR: value {i} is not finite (reference {r}, quantized {a}); the model produced \
             inf/NaN, check the quantized graph"
        );
        let (r, a) = (f64::from(r), f64::from(a));
        signal += r * r;
        noise += (r - a) * (r - a);
    }
    if noise == 0.0 {
        return Ok(f64::INFINITY);
    }
    Ok(10.0 * (signal / noise).log10())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32, tol: f32) -> bool {
        (a - b).abs() <= tol
    }

    /// Asymmetric parameters as (scale, zero point).
    fn asym(min: f32, max: f32, qmin: i32, qmax: i32) -> (f32, i32) {
        let p = qparams_asymmetric(min, max, qmin, qmax).unwrap();
        (p.scale, p.zero_point)
    }

    #[test]
    fn scale_zp_by_hand() {
        // int8 symmetric, amax 2.54: scale = 2 * 2.54 / (127 - -127) = 0.02, zp = round(0/2) = 0.
        let p = qparams_symmetric(2.54).unwrap();
        assert!(close(p.scale, 0.02, 1e-9) && p.zero_point == 0, "{p:?}");
        // uint8 [-1, 3]: scale = 4 / 255, zp = round(0 - -1 / scale) = round(63.75) = 64.
        let (s, z) = asym(-1.0, 3.0, 0, 255);
        assert!(close(s, 4.0 / 255.0, 1e-9) && z == 64);
        // int8 [-1, 3]: zp = round(-128 + 63.75) = round(-64.25) = -64.
        assert_eq!(asym(-1.0, 3.0, -128, 127).1, -64);
        // Positive only [0.5, 2]: widened to [0, 2], scale 2 / 255, zp 0.
        let (s, z) = asym(0.5, 2.0, 0, 255);
        assert!(close(s, 2.0 / 255.0, 1e-9) && z == 0);
        // Negative only [-2, -0.5]: widened to [-2, 0], zp = round(2 / (2 / 255)) = 255.
        assert_eq!(asym(-2.0, -0.5, 0, 255).1, 255);
        // Ties round half to even (numpy): [-62.5, 192.5] has scale 255 / 255 = 1 and
        // zp = round(62.5) = 62 (half away from zero would give 63).
        assert_eq!(asym(-62.5, 192.5, 0, 255), (1.0, 62));
        // uint8 symmetric [0, 254]: zp = round((0 + 254) / 2) = 127, scale = 2 * 1 / 254.
        let p = compute_scale_zp(-1.0, 0.5, QRange::U8_SYMMETRIC, true).unwrap();
        assert!(close(p.scale, 2.0 / 254.0, 1e-9) && p.zero_point == 127);
        // All zeros: scale below the smallest normal f32 -> scale 1, zp 0 (ORT).
        assert_eq!(qparams_symmetric(0.0).unwrap(), QParams::UNIT);
        assert_eq!(asym(0.0, 0.0, 0, 255), (1.0, 0));
    }

    #[test]
    fn scale_zp_rejects_bad_input() {
        assert!(qparams_symmetric(f32::NAN).is_err());
        assert!(qparams_asymmetric(f32::NEG_INFINITY, 1.0, 0, 255).is_err());
        let e = qparams_asymmetric(2.0, 1.0, 0, 255).unwrap_err();
        assert!(e.to_string().contains("inverted"), "{e}");
        assert!(qparams_asymmetric(-1.0, 1.0, 1, 255).is_err());
        assert!(qparams_asymmetric(-1.0, 1.0, 0, 0).is_err());
        // f64 arithmetic: the widest finite f32 range still has a finite scale; zp =
        // round(127.5) = 128 (half to even).
        let (s, z) = asym(-3e38, 3e38, 0, 255);
        assert!(s.is_finite() && z == 128);
    }

    #[test]
    fn fast_rounding_matches_std() {
        let mut xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 0.25).collect();
        xs.extend(values(100_000, 3).iter().map(|v| v * 300.0));
        let below_half = 0.5 - f32::EPSILON / 4.0; // 0.49999997
        xs.extend([
            below_half,
            -below_half,
            8_388_607.5,
            4_194_303.5,
            -0.0,
            1e-30,
        ]);
        for x in xs.iter().copied().filter(|x| x.abs() <= 4_194_304.0) {
            assert_eq!(round_half_even(x), x.round_ties_even(), "{x}");
            assert_eq!(round_half_away(x), x.round(), "{x}");
        }
        assert_eq!(round_half_even(1e30), 4_194_304.0);
        assert!(round_half_even(f32::NAN).is_nan() && round_half_away(f32::NAN).is_nan());
    }

    #[test]
    fn quantize_rounds_half_even_and_saturates() {
        let one = QParams::UNIT;
        let q = [2.5f32, 3.5, -2.5, -0.5, 300.0, -300.0, f32::NAN].map(|x| quantize_i8(x, &one));
        assert_eq!(q, [2, 4, -2, 0, 127, -128, 0]);
        // uint8 [-1, 3] (scale 4/255, zp 64): -1 / scale = -63.75 -> -64 + 64 = 0;
        // 3 / scale = 191.25 -> 191 + 64 = 255; 0 -> 64 exactly; 9 saturates.
        let p = qparams_asymmetric(-1.0, 3.0, 0, 255).unwrap();
        let q = [-1.0f32, 3.0, 0.0, 9.0].map(|x| quantize_u8(x, &p));
        assert_eq!(q, [0, 255, 64, 255]);
        assert_eq!(dequantize(64, &p), 0.0);
        assert!(close(dequantize(0, &p), -64.0 * 4.0 / 255.0, 1e-7));
    }

    // [K = 2, N = 3], row-major: column 0 = [1, -2.54], column 1 = [-0.5, 0.3], column 2 zeros.
    const W: [f32; 6] = [1.0, -0.5, 0.0, -2.54, 0.3, 0.0];

    #[test]
    fn int8_per_tensor_symmetric() {
        let w = quantize_weight_int8(&W, 2, 3, false, true).unwrap();
        // amax 2.54 -> scale 0.02: 1 / 0.02 = 50, -0.5 / 0.02 = -25, 0.3 / 0.02 = 15, -127.
        assert_eq!(w.scales.len(), 1);
        assert!(close(w.scales[0], 0.02, 1e-9));
        assert_eq!((w.zero_points.clone(), w.per_channel()), (vec![0], false));
        assert_eq!(w.data, vec![50, -25, 0, -127, 15, 0]);
    }

    #[test]
    fn int8_per_channel_symmetric_and_asymmetric() {
        let w = quantize_weight_int8(&W, 2, 3, true, true).unwrap();
        // Column 0: scale 2.54 / 127 = 0.02 -> [50, -127]. Column 1: scale 0.5 / 127 =
        // 0.003937008 -> -0.5 -> -127, 0.3 / 0.003937008 = 76.2 -> 76. Column 2 (all zero):
        // scale 1, zero point 0, values 0.
        assert!(close(w.scales[0], 0.02, 1e-9) && close(w.scales[1], 0.5 / 127.0, 1e-9));
        assert_eq!((w.scales[2], w.zero_points.clone()), (1.0, vec![0, 0, 0]));
        assert_eq!(w.data, vec![50, -127, 0, -127, 76, 0]);
        assert!(w.per_channel());
        let a = quantize_weight_int8(&W, 2, 3, true, false).unwrap();
        // Column 0 asymmetric on [-128, 127]: scale = 3.54 / 255 = 0.013882353,
        // zp = round(-128 + 2.54 / 0.013882353) = round(54.97) = 55; -2.54 -> -183 + 55 = -128,
        // 1 -> 72.03 -> 72 + 55 = 127.
        assert!(close(a.scales[0], 3.54 / 255.0, 1e-8));
        assert_eq!((a.zero_points[0], a.data[0], a.data[3]), (55, 127, -128));
        // Column 1: [-0.5, 0.3]: scale 0.8 / 255, zp = round(-128 + 159.375) = 31.
        assert_eq!(a.zero_points[1], 31);
        assert_eq!((a.scales[2], a.zero_points[2], a.data[2]), (1.0, 0, 0));
        for q in [&w, &a] {
            let back = dequantize_int8_weight(q).unwrap();
            for (i, (&x, &y)) in W.iter().zip(&back).enumerate() {
                let s = q.qparams(i % 3).scale;
                assert!(
                    (x - y).abs() <= s / 2.0 + 1e-6,
                    "{i}: {x} vs {y} (scale {s})"
                );
            }
        }
    }

    #[test]
    fn int8_rejects_bad_shapes_and_values() {
        let e = quantize_weight_int8(&W, 2, 2, true, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("do not fill"), "{e}");
        assert!(quantize_weight_int8(&[], 0, 3, true, true).is_err());
        let mut bad = W;
        bad[4] = f32::NAN;
        let e = quantize_weight_int8(&bad, 2, 3, true, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("[1, 1]"), "{e}");
    }

    #[test]
    fn int4_symmetric_packing_byte_by_byte() {
        // K = 20, N = 2, block 16: two blocks per column, the second padded (4 real rows).
        let mut data = vec![0f32; 20 * 2];
        for r in 0..16 {
            data[r * 2] = r as f32 - 8.0; // column 0, block 0: -8 ..= 7
        }
        for (r, (a, b)) in [(4.0, 1.0), (-2.0, 2.0), (1.0, -3.0), (0.0, 0.5)]
            .iter()
            .enumerate()
        {
            data[(16 + r) * 2] = *a;
            data[(16 + r) * 2 + 1] = *b;
        }
        let w = quantize_weight_int4(&data, 20, 2, 16, false).unwrap();
        assert_eq!(
            (w.n_blocks(), w.blob_size(), w.zero_points.clone()),
            (2, 8, None)
        );
        // Column 0, block 0: extreme -8 -> scale = 8 / 8 = 1, q = x + 8 = r: low nibble first,
        // so byte j = (2j) | (2j + 1) << 4.
        // Block 1: extreme +4 -> scale = -4 / 8 = -0.5 (sign trick), q = roundf(-2x + 8):
        // 4 -> 0, -2 -> 12, 1 -> 6, 0 -> 8; rows 20..32 are padding (0).
        // Column 1, block 0 all zero: scale -0, q = 8 everywhere. Block 1: extreme -3 ->
        // scale 0.375, q = roundf(x / 0.375 + 8): 1 -> 10.67 -> 11, 2 -> 13.33 -> 13,
        // -3 -> 0, 0.5 -> 9.33 -> 9.
        #[rustfmt::skip]
        let expect: [u8; 32] = [
            0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE,
            0xC0, 0x86, 0, 0, 0, 0, 0, 0,
            0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88,
            0xDB, 0x90, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(w.packed, expect);
        assert_eq!(w.scales[0], 1.0);
        assert_eq!(w.scales[1], -0.5);
        assert_eq!((w.scales[2], w.scales[3]), (0.0, 0.375));
        assert_eq!(
            (w.nibble(17, 0), w.nibble(18, 1), w.zero_point(1, 1)),
            (12, 0, 8)
        );
        // Symmetric values on the extreme's side come back exactly here.
        let back = dequantize_int4(&w).unwrap();
        assert_eq!(&back[..2], &[-8.0, 0.0]);
        assert_eq!([back[32], back[34], back[37]], [4.0, -2.0, -3.0]);
    }

    #[test]
    fn int4_zero_points_packed_with_spare_nibble_8() {
        // K = 40, N = 1, block 16 -> 3 blocks, the last with 8 real rows.
        let mut data: Vec<f32> = (0..16).map(|r| r as f32).collect(); // [0, 15]: scale 1, zp 0
        data.extend((0..16).map(|r| -(r as f32))); // [-15, 0]: scale 1, zp roundf(15) = 15
        data.extend([-1.0, 2.0, 0.0, 1.0, -0.4, 0.2, 2.0, -1.0]); // scale 3/15, zp roundf(5) = 5
        let w = quantize_weight_int4(&data, 40, 1, 16, true).unwrap();
        // Byte 0 = zp0 | zp1 << 4 = 0xF0; byte 1 = zp2 | 8 << 4 (spare nibble) = 0x85.
        assert_eq!(w.zero_points.as_deref(), Some(&[0xF0u8, 0x85][..]));
        assert_eq!(w.zero_point_bytes_per_column(), 2);
        assert!(close(w.scales[2], 0.2, 1e-7));
        // Block 0: q = x -> byte j = 2j | (2j + 1) << 4. Block 1: q = x + 15 = 15 - r.
        assert_eq!(&w.packed[..2], &[0x10, 0x32]);
        assert_eq!(&w.packed[8..10], &[0xEF, 0xCD]);
        // Block 2: -1 -> 0, 2 -> 15: byte 16 = 0 | 15 << 4.
        assert_eq!(w.packed[16], 0xF0);
        assert_eq!(w.packed.len(), 24);
        let back = dequantize_int4(&w).unwrap();
        for (x, y) in data.iter().zip(&back) {
            assert!((x - y).abs() <= 0.1 + 1e-6, "{x} vs {y}");
        }
    }

    /// Deterministic pseudo-random values in [-1, 1) (xorshift64*).
    fn values(len: usize, mut s: u64) -> Vec<f32> {
        (0..len)
            .map(|_| {
                s ^= s >> 12;
                s ^= s << 25;
                s ^= s >> 27;
                let u = (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32;
                2.0 * u - 1.0
            })
            .collect()
    }

    #[test]
    fn int4_round_trip_error_bounded_with_k_not_multiple_of_block() {
        let (k, n, bs) = (100, 7, 32); // 4 blocks, the last with 4 rows
        let data = values(k * n, 0x9E37_79B9_7F4A_7C15);
        for zp in [true, false] {
            let w = quantize_weight_int4(&data, k, n, bs, zp).unwrap();
            assert_eq!(w.packed.len(), n * 4 * 16);
            assert_eq!(w.scales.len(), n * 4);
            let back = dequantize_int4(&w).unwrap();
            assert_eq!(back.len(), k * n);
            for (i, (&x, &y)) in data.iter().zip(&back).enumerate() {
                let s = w.scales[(i % n) * 4 + (i / n) / bs].abs();
                // Asymmetric: within half a step. Symmetric: the 16 levels are -8..7 steps on the
                // extreme's side, so the opposite extreme may lose up to one step.
                let bound = if zp { s / 2.0 } else { s };
                assert!(
                    (x - y).abs() <= bound + 1e-6,
                    "zp={zp} {i}: {x} vs {y} (scale {s})"
                );
            }
        }
    }

    #[test]
    fn int4_block_size_and_shape_errors() {
        let data = values(64 * 2, 7);
        for bad in [8, 48, 100, 512] {
            let e = quantize_weight_int4(&data, 64, 2, bad, true)
                .unwrap_err()
                .to_string();
            assert!(e.contains("16, 32, 64, 128 and 256"), "{e}");
        }
        for ok in INT4_BLOCK_SIZES {
            assert!(quantize_weight_int4(&data, 64, 2, ok, false).is_ok());
        }
        assert!(quantize_weight_int4(&data, 63, 2, 32, true).is_err());
        let mut w = quantize_weight_int4(&data, 64, 2, 32, true).unwrap();
        w.scales.pop();
        assert!(dequantize_int4(&w)
            .unwrap_err()
            .to_string()
            .contains("inconsistent"));
    }

    #[test]
    fn fp16_rounds_to_nearest_even_and_rejects_overflow() {
        let one_ulp = 2f32.powi(-10);
        let bits =
            to_f16_bits(&[1.0, 1.0 + one_ulp / 2.0, 1.0 + 1.5 * one_ulp, 65504.0, -2.0]).unwrap();
        // 1 + half an ulp ties to even (1.0); 1 + 1.5 ulp ties to 1 + 2 ulp (mantissa 2).
        assert_eq!(bits, vec![0x3C00, 0x3C00, 0x3C02, 0x7BFF, 0xC000]);
        assert_eq!(from_f16_bits(&bits)[3], 65504.0);
        let e = to_f16_bits(&[0.0, 1e6]).unwrap_err().to_string();
        assert!(e.contains("index 1") && e.contains("65504"), "{e}");
        assert!(to_f16_bits(&[65520.0]).is_err());
        assert_eq!(to_f16_bits(&[f32::INFINITY]).unwrap(), vec![0x7C00]);
    }

    #[test]
    fn sqnr_by_hand() {
        assert_eq!(sqnr_db(&[1.0, -2.0], &[1.0, -2.0]).unwrap(), f64::INFINITY);
        // signal 4 * 1 = 4, noise 4 * 0.1^2 = 0.04: 10 log10(100) = 20 dB.
        let s = sqnr_db(&[1.0; 4], &[1.1, 0.9, 1.1, 0.9]).unwrap();
        assert!((s - 20.0).abs() < 1e-4, "{s}");
        assert!(sqnr_db(&[1.0], &[1.0, 2.0]).is_err());
        assert!(sqnr_db(&[], &[]).is_err());
        assert!(sqnr_db(&[1.0], &[f32::NAN]).is_err());
    }
}
