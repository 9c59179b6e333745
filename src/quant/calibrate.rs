//! Activation-range calibration for static (QDQ) int8 quantization (issue 14): a histogram of
//! one activation tensor collected over calibration batches, and the clipping range each
//! calibration method the TinyML PTQ study compares derives from it: `minmax`, `percentile`,
//! `mse` and `entropy` (ONNX Runtime's KL-divergence threshold search).
//!
//! References (onnxruntime 1.31.1, `onnxruntime/python/tools/quantization/`):
//! - `calibrate.py`: `HistogramCollector.collect_value` / `merge_histogram` (the histogram and
//!   how it grows), `get_entropy_threshold` (the KL search), `compute_percentile`,
//!   `MinMaxCalibrater.compute_data`; `quant_utils.py`: `smooth_distribution`, and
//!   `compute_scale_zp` (how a range is made symmetric). The histogram and the entropy search
//!   port ORT's numpy code with its float32 arithmetic (numpy 2: `np.histogram` edges and
//!   indices, pairwise `np.sum`), so `entropy` picks ORT's threshold: `xcheck/xcheck_entropy.py`
//!   checks it. ORT's search comes from MXNet's `_get_optimal_threshold` but spreads q over empty
//!   bins too and truncates it to integers; that is what is reproduced, not MXNet or TensorRT.
//! - MSE: ORT has no MSE calibrator (its `Distribution` method fits avg/std for float8). The
//!   method here is the one of NVIDIA's pytorch-quantization
//!   (`pytorch_quantization/calib/histogram.py::_compute_amax_mse`, cited by ORT's
//!   `HistogramCollector`): try clipping ranges on the histogram, keep the one with the least
//!   expected squared quantization error.

use anyhow::{bail, ensure, Result};

/// Bins of a new histogram: ORT's default for the percentile and distribution calibrators
/// (`calibrate.py::create_calibrator`) and TensorRT's histogram size.
pub const DEFAULT_NUM_BINS: usize = 2048;
/// Quantized bins of the entropy search (ORT `num_quantized_bins`, TensorRT's 128).
pub const DEFAULT_NUM_QUANTIZED_BINS: usize = 128;
/// Default `--percentile` (the issue's; ORT's own default is 99.999).
pub const DEFAULT_PERCENTILE: f64 = 99.99;
/// A histogram grows to at most this many times its initial bin count (ORT: without bound).
pub const MAX_GROWTH: usize = 8;
/// Levels-minus-one of the 8-bit activation grid the MSE search assumes: asymmetric int8/uint8
/// spans 255 steps, symmetric int8 [-127, 127] spans 254 (`quant_utils.py` ranges).
const ASYMMETRIC_STEPS: f64 = 255.0;
const SYMMETRIC_HALF_STEPS: f64 = 127.0;

/// `x` rounded to float32 (kept past float32's range): applied to one `+ - * /` of float32
/// values computed in f64, numpy's float32 result.
fn f32r(x: f64) -> f64 {
    Some(f64::from(x as f32))
        .filter(|y| y.is_finite())
        .unwrap_or(x)
}

/// numpy's float32 `a // b` for `a >= 0, b > 0` (`npy_divmodf`).
fn floor_div(a: f64, b: f64) -> f64 {
    let d = f32r(f32r(a - a % b) / b);
    d.floor() + if d - d.floor() > 0.5 { 1.0 } else { 0.0 }
}

/// Histogram of one activation tensor's values over the calibration batches: bin for bin the
/// one ORT's `HistogramCollector.collect_value` builds for its entropy calibrator.
///
/// The first batch with a non-zero value sets `T` = its largest |x| and `num_bins` bins over
/// `[-T, T]`, in float32 as `np.histogram(x, num_bins, range=(-T, T))` (`linspace` edges, the
/// last bin closed). A batch past `T` grows the grid as `merge_histogram` does:
/// `h = (T_new - T) // w + 1` more bins of width `w` on each side, the batch binned on the new
/// grid and the old counts added positionally. Zeros seen before the first non-zero value stay in bin `[0, w)`.
/// The exact min, max and count are kept too.
///
/// Where ORT breaks down it departs: at most [`MAX_GROWTH`] x `num_bins` bins (ORT grows without
/// bound, ~2M bins for a batch 1000x wider than the first, too many for its entropy search);
/// past that, old bins merge pairwise outward from 0 until the growth fits (exact, but coarser
/// than ORT's). A value that float32 rounding puts just past a grown grid stays in the end bin
/// (numpy drops it); past float32's range the grid stays in f64.
///
/// ORT's `HistogramCalibrater.collect_data` passes all the batches of its data reader to one
/// `collect`: that histogram is [`Histogram::with_threshold`] given their largest |x|.
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    /// ORT's `threshold`: the grid spans `[-t, t]`; 0 while only zeros were seen.
    t: f64,
    /// The float32 `linspace` step `2t / n`.
    step: f64,
    max_bins: usize,
    min: f32,
    max: f32,
    total: u64,
}

impl Default for Histogram {
    /// A histogram with [`DEFAULT_NUM_BINS`] bins.
    fn default() -> Self {
        Self::new(DEFAULT_NUM_BINS).expect("the default bin count is valid")
    }
}

impl Histogram {
    /// An empty histogram that starts with `num_bins` bins (even, >= 128 so that the entropy
    /// search has at least one window of 128 quantized bins).
    pub fn new(num_bins: usize) -> Result<Self> {
        ensure!(
            num_bins >= DEFAULT_NUM_QUANTIZED_BINS && num_bins.is_multiple_of(2),
            "histogram of {num_bins} bins: use an even number >= {DEFAULT_NUM_QUANTIZED_BINS} \
             (default {DEFAULT_NUM_BINS})"
        );
        Ok(Histogram {
            counts: vec![0; num_bins],
            t: 0.0,
            step: 0.0,
            max_bins: MAX_GROWTH * num_bins,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            total: 0,
        })
    }

    /// An empty histogram of `num_bins` bins over `[-threshold, threshold]` from the start.
    /// Given the largest |x| of all the batches (a min/max pass first), it never grows and is
    /// ORT's histogram of all the batches collected at once.
    pub fn with_threshold(num_bins: usize, threshold: f32) -> Result<Self> {
        ensure!(
            threshold.is_finite() && threshold >= 0.0,
            "histogram threshold {threshold}: use the largest |x| of the batches"
        );
        let mut h = Self::new(num_bins)?;
        h.set_t(threshold.into());
        Ok(h)
    }

    /// Add one batch of values of the tensor (any shape, flattened). Errors on inf/NaN, which
    /// mean the fp32 model itself overflowed.
    pub fn add(&mut self, values: &[f32]) -> Result<()> {
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for (i, &x) in values.iter().enumerate() {
            if !x.is_finite() {
                bail!(
                    "calibration batch value {i} is {x}: the fp32 model produced non-finite \
                     activations; check the weights and the calibration inputs"
                );
            }
            lo = lo.min(x);
            hi = hi.max(x);
        }
        if values.is_empty() {
            return Ok(());
        }
        self.cover(f64::from(lo.abs().max(hi.abs())));
        // np.histogram in float32: index (x + T) / 2T * n, corrected against the edges (the
        // last bin closed); ORT's zeros-only histogram puts 0 in bin n / 2.
        let (t, step, n) = (self.t as f32, self.step as f32, self.counts.len());
        let edge = |i: usize| if i >= n { t } else { i as f32 * step - t };
        for &x in values {
            let mut i = n / 2;
            if t != 0.0 {
                i = (((x + t) / (2.0 * t) * n as f32) as usize).min(n - 1);
                i -= usize::from(i > 0 && x < edge(i));
                i += usize::from(i + 1 < n && x >= edge(i + 1));
            }
            self.counts[i] += 1;
        }
        self.min = self.min.min(lo);
        self.max = self.max.max(hi);
        self.total += values.len() as u64;
        Ok(())
    }

    /// Set `t` and numpy's float32 `linspace` step for it and the bin count.
    fn set_t(&mut self, t: f64) {
        self.t = t;
        self.step = f32r(f32r(2.0 * t) / self.counts.len() as f64);
    }

    /// Grow (and if needed coarsen) the grid so that it covers `[-amax, amax]`.
    fn cover(&mut self, amax: f64) {
        if amax <= self.t {
            return;
        }
        // Empty or zeros only so far (ORT's `old_threshold == 0`): a new grid, the zeros stay
        // in bin n / 2 = [0, w). Else merge_histogram's h = (T_new - T) // stride + 1 more bins
        // on each side; past the cap, coarsen first (h in f64: a huge jump cannot overflow).
        if self.step == 0.0 {
            return self.set_t(amax);
        }
        loop {
            let h = floor_div(f32r(amax - self.t), self.step) + 1.0;
            let n = self.counts.len();
            if n as f64 + 2.0 * h <= self.max_bins as f64 {
                let h = h as usize;
                let mut counts = vec![0u64; n + 2 * h];
                counts[h..h + n].copy_from_slice(&self.counts);
                self.counts = counts;
                return self.set_t(f32r(f32r(h as f64 * self.step) + self.t));
            }
            self.coarsen();
        }
    }

    /// Merge bins pairwise outward from 0 (doubling the width).
    fn coarsen(&mut self) {
        let h = self.counts.len() / 2;
        let new_half = h.div_ceil(2);
        let mut counts = vec![0u64; 2 * new_half];
        for j in 0..h {
            counts[new_half + j / 2] += self.counts[h + j];
            counts[new_half - 1 - j / 2] += self.counts[h - 1 - j];
        }
        self.counts = counts;
        self.set_t(f32r(2.0 * new_half as f64 * self.step));
    }

    /// Number of values collected.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Smallest value collected, `None` before any.
    pub fn min(&self) -> Option<f32> {
        (self.total > 0).then_some(self.min)
    }

    /// Largest value collected, `None` before any.
    pub fn max(&self) -> Option<f32> {
        (self.total > 0).then_some(self.max)
    }

    /// Bin counts, from `-threshold()` to `threshold()`.
    pub fn bins(&self) -> &[u64] {
        &self.counts
    }

    /// Width of the bins, float32 `2 T / n` (0 while only zeros were seen).
    pub fn bin_width(&self) -> f64 {
        self.step
    }

    /// Half-width `T` of the binned range `[-T, T]` (a float32 value, as ORT's).
    pub fn threshold(&self) -> f64 {
        self.t
    }

    /// Edge `i` of the bins (`0..=bins().len()`), numpy's float32 `linspace(-T, T, n + 1)[i]`:
    /// bin `i` is `[edge(i), edge(i + 1))`, the last one closed.
    pub fn edge(&self, i: usize) -> f64 {
        if i >= self.counts.len() {
            self.t
        } else {
            f32r(f32r(i as f64 * self.step) - self.t)
        }
    }
}

/// A calibration method: how a clipping range is read off a [`Histogram`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CalibMethod {
    /// The exact min and max seen (ORT `MinMaxCalibrater`).
    MinMax,
    /// Clip the given percent of mass, in (0, 100] (ORT `compute_percentile`).
    Percentile(f64),
    /// The range with the least expected squared quantization error.
    Mse,
    /// The range whose 128-bin quantization loses least KL divergence (ORT
    /// `get_entropy_threshold`).
    Entropy,
}

impl CalibMethod {
    /// Lower-case name as the CLI spells it.
    pub fn name(&self) -> &'static str {
        match self {
            CalibMethod::MinMax => "minmax",
            CalibMethod::Percentile(_) => "percentile",
            CalibMethod::Mse => "mse",
            CalibMethod::Entropy => "entropy",
        }
    }

    /// Check the method's parameter (the percentile's bounds).
    pub fn validate(&self) -> Result<()> {
        match self {
            CalibMethod::Percentile(p) => validate_percentile(*p),
            _ => Ok(()),
        }
    }
}

/// Check a `--percentile`: in (0, 100] (ORT `compute_percentile` accepts [0, 100], but 0 keeps
/// no values at all).
pub fn validate_percentile(p: f64) -> Result<()> {
    ensure!(
        p.is_finite() && p > 0.0 && p <= 100.0,
        "--percentile {p} is out of range: give the percent of values to keep, in (0, 100] \
         (default {DEFAULT_PERCENTILE})"
    );
    Ok(())
}

/// The `(min, max)` range to quantize this tensor's values with, by `method`. Each method's
/// bounds are clamped to the values actually seen (as ORT clips its thresholds to the observed
/// min / max); then, with `symmetric`, the range is `(-t, t)` with `t = max(|min|, |max|)`, as
/// ORT's `compute_scale_zp` symmetrizes the range it is given.
///
/// - `MinMax`: the exact min and max (symmetric: +-max |x|), ORT `MinMaxCalibrater`.
/// - `Percentile(p)`: ORT `compute_percentile` on the cumulative histogram: symmetric keeps p %
///   of |x| (ORT's absolute-value histogram, here folded from the signed one), asymmetric cuts
///   (100 - p) / 2 % on each side. Each bound is the outer edge of the bin where the cumulative
///   share crosses its target (ORT takes the crossing bin's lower edge on the upper side, up to
///   one bin narrower), so `Percentile(100)` equals `MinMax`.
/// - `Entropy`: ORT `get_entropy_threshold` (128 quantized bins), operation for operation. For
///   each window `[z - i, z + i + 1)` around the zero bin `z = bins / 2` (i = 64 ..= z, the last
///   clipped to the histogram): p = its counts, plus the counts outside it on its end bins; its
///   own counts are summed in 128 chunks of `len / 128` bins (the remainder joins the last), and
///   q gives every bin of a chunk, empty or not, the chunk's sum integer-divided by the chunk's
///   non-zero p bins (0 if none, and past the 128 chunks); both are smoothed
///   (`smooth_distribution`) and KL(p || q) is computed in float32 as numpy does. The first
///   window of least divergence gives `(edge(z - i), edge(z + i + 1))`; `symmetric` plays no
///   part in the search. Windows ORT cannot score (p or q all zero, or ORT's `eps1 < 1`
///   assertion failing) lose. numpy's SIMD float32 log differs from the correctly rounded one
///   used here by an ulp on a few % of arguments, which could only swap windows tied to float32
///   precision. (ORT's `EntropyCalibrater` defaults to `num_bins` = 128: a single window, the
///   min/max range.)
/// - `Mse`: every clipping bound on the bin grid (coordinate descent over min and max when
///   asymmetric, coarse-to-fine), scored by the exact expected squared error of 8-bit
///   quantization with the resulting scale (255 steps, or [-127, 127] symmetric) under the
///   histogram's piecewise-uniform density: rounding inside the range, clamping outside. (The
///   pytorch-quantization original quantizes bin centres instead of integrating over bins.)
pub fn range(hist: &Histogram, method: CalibMethod, symmetric: bool) -> Result<(f32, f32)> {
    method.validate()?;
    let (Some(min), Some(max)) = (hist.min(), hist.max()) else {
        bail!(
            "no activation values were collected for this tensor: run calibration on at least \
             one sequence (--calib N with N >= 1)"
        );
    };
    if hist.bin_width() == 0.0 {
        return Ok((0.0, 0.0));
    }
    let (lo, hi) = match method {
        CalibMethod::MinMax => (f64::from(min), f64::from(max)),
        CalibMethod::Percentile(p) => percentile_range(hist, p, symmetric),
        CalibMethod::Entropy => entropy_range(hist),
        CalibMethod::Mse => mse_range(hist, symmetric),
    };
    let (lo, hi) = (lo.max(f64::from(min)), hi.min(f64::from(max)));
    let (lo, hi) = if symmetric {
        let t = lo.abs().max(hi.abs());
        (-t, t)
    } else {
        (lo, hi)
    };
    Ok((lo as f32, hi.max(lo) as f32))
}

/// First index where the running sum of `counts` reaches `target`.
fn crossing(counts: impl Iterator<Item = u64>, target: f64) -> usize {
    let mut cum = 0u64;
    for (i, c) in counts.enumerate() {
        cum += c;
        if cum as f64 >= target {
            return i;
        }
    }
    usize::MAX
}

fn percentile_range(hist: &Histogram, p: f64, symmetric: bool) -> (f64, f64) {
    let total = hist.count() as f64;
    let c = hist.bins();
    let h = c.len() / 2;
    if symmetric {
        // |x| histogram: bin k = [k w, (k + 1) w) folds bins h + k and h - 1 - k.
        let folded = (0..h).map(|k| c[h + k] + c[h - 1 - k]);
        let k = crossing(folded, p / 100.0 * total).min(h - 1);
        let t = (k + 1) as f64 * hist.bin_width();
        return (-t, t);
    }
    let cut = (100.0 - p) / 200.0;
    let left = crossing(c.iter().copied(), cut * total).min(c.len() - 1);
    let right = crossing(c.iter().copied(), (1.0 - cut) * total).min(c.len() - 1);
    (hist.edge(left), hist.edge(right + 1))
}

/// numpy's float32 `np.sum(a)`: pairwise, blocks of up to 128 added in eight interleaved partial
/// sums (`pairwise_sum` in numpy's `loops_utils.h`).
fn np_sum(a: &[f32]) -> f32 {
    let n = a.len();
    if n < 8 {
        return a.iter().fold(0.0, |s, &x| s + x);
    } else if n > 128 {
        let half = n / 2 - n / 2 % 8;
        return np_sum(&a[..half]) + np_sum(&a[half..]);
    }
    let mut r: [f32; 8] = a[..8].try_into().expect("8 values");
    for block in a[8..n - n % 8].chunks_exact(8) {
        r.iter_mut().zip(block).for_each(|(r, &x)| *r += x);
    }
    let s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    a[n - n % 8..].iter().fold(s, |s, &x| s + x)
}

/// ORT `smooth_distribution` in float32, in place: zeros become eps = 1e-4 and
/// `eps1 = eps * zeros / non-zeros` is taken off the others. `false` where ORT returns None
/// (all zeros) or fails its assertion `eps1 < 1`.
fn smooth(v: &mut [f32]) -> bool {
    let zeros = v.iter().filter(|&&x| x == 0.0).count();
    let eps1 = 1e-4 * zeros as f64 / (v.len() - zeros) as f64;
    if zeros == v.len() || eps1 >= 1.0 {
        return false;
    }
    for x in v {
        *x = if *x == 0.0 { 1e-4 } else { *x - eps1 as f32 };
    }
    true
}

/// KL divergence (float32) of one entropy window `sliced`, with `left` / `right` counts outside
/// it: the loop body of ORT `get_entropy_threshold`, then `calibrate.py::entropy`. `p`, `q`:
/// scratch space.
fn window_divergence(
    sliced: &[u64],
    (left, right): (u64, u64),
    p: &mut Vec<f32>,
    q: &mut Vec<f32>,
) -> f32 {
    let (len, nq) = (sliced.len(), DEFAULT_NUM_QUANTIZED_BINS.min(sliced.len()));
    let merged = len / nq;
    // `p.astype(np.float32)`: zero exactly where the count is.
    p.clear();
    p.extend(sliced.iter().map(|&c| c as f32));
    (p[0], p[len - 1]) = ((sliced[0] + left) as f32, (sliced[len - 1] + right) as f32);
    q.clear();
    q.resize(len, 0.0);
    for j in 0..nq {
        let (lo, hi) = (j * merged, (j + 1) * merged);
        let tail = if j == nq - 1 { len } else { hi };
        let sum: u64 = sliced[lo..tail].iter().sum();
        let norm = p[lo..hi].iter().filter(|&&v| v != 0.0).count() as u64;
        // `q[start:end] = quantized_bins[index] / norm`, stored in int64: truncated.
        if let Some(v) = sum.checked_div(norm) {
            q[lo..hi].fill(v as f32);
        }
    }
    if !smooth(p) || !smooth(q) {
        return f32::INFINITY;
    }
    let (sp, sq) = (np_sum(p), np_sum(q));
    for (a, &b) in p.iter_mut().zip(q.iter()) {
        let (x, y) = (*a / sp, b / sq);
        *a = x * (f64::from(x / y).ln() as f32);
    }
    np_sum(p)
}

fn entropy_range(hist: &Histogram) -> (f64, f64) {
    let c = hist.bins();
    let (n, zero) = (c.len(), c.len() / 2);
    let first = (DEFAULT_NUM_QUANTIZED_BINS / 2).min(zero);
    let (mut start, mut end) = (zero - first, (zero + first + 1).min(n));
    let mut left: u64 = c[..start].iter().sum();
    let mut right: u64 = c[end..].iter().sum();
    let (mut p, mut q) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut best = (f32::INFINITY, start, end);
    loop {
        let kl = window_divergence(&c[start..end], (left, right), &mut p, &mut q);
        // np.argmin: the first of equal minima.
        if kl < best.0 {
            best = (kl, start, end);
        }
        if start == 0 {
            break;
        }
        start -= 1;
        left -= c[start];
        if end < n {
            right -= c[end];
            end += 1;
        }
    }
    (hist.edge(best.1), hist.edge(best.2))
}

/// `∫_l^u (x - g)^2 dx`.
fn cube_integral(l: f64, u: f64, g: f64) -> f64 {
    ((u - g).powi(3) - (l - g).powi(3)) / 3.0
}

/// `∫_a^b (x - Q(x))^2 dx` for `Q(x) = clamp(round(x / s), kmin, kmax) * s`.
fn interval_sq_error(a: f64, b: f64, s: f64, kmin: f64, kmax: f64) -> f64 {
    let cell = |x: f64| (x / s + 0.5).floor().clamp(kmin, kmax);
    let (ka, kb) = (cell(a), cell(b));
    if ka == kb {
        return cube_integral(a, b, ka * s);
    }
    let first = cube_integral(a, (ka + 0.5) * s, ka * s);
    let last = cube_integral((kb - 0.5) * s, b, kb * s);
    first + last + (kb - ka - 1.0) * s.powi(3) / 12.0
}

/// Non-empty bins clipped to the observed [min, max], as (a, b, density = count / width).
fn occupied_bins(hist: &Histogram) -> Vec<(f64, f64, f64)> {
    let (min, max) = (
        f64::from(hist.min().unwrap_or(0.0)),
        f64::from(hist.max().unwrap_or(0.0)),
    );
    let mut out = Vec::new();
    for (i, &c) in hist.bins().iter().enumerate() {
        if c == 0 {
            continue;
        }
        let (a, b) = (hist.edge(i).max(min), hist.edge(i + 1).min(max));
        if b > a {
            out.push((a, b, c as f64 / (b - a)));
        } else {
            // A bin squeezed to a point (all its values equal the min or max): a tiny interval.
            let w = hist.bin_width() * 1e-6;
            out.push((a - w / 2.0, a + w / 2.0, c as f64 / w));
        }
    }
    out
}

/// Expected squared error (up to the constant 1 / count) of quantizing with range [lo, hi].
fn mse_of(bins: &[(f64, f64, f64)], lo: f64, hi: f64, symmetric: bool) -> f64 {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let (s, kmin, kmax) = if symmetric {
        let t = lo.abs().max(hi);
        (
            t / SYMMETRIC_HALF_STEPS,
            -SYMMETRIC_HALF_STEPS,
            SYMMETRIC_HALF_STEPS,
        )
    } else {
        let s = (hi - lo) / ASYMMETRIC_STEPS;
        let zp = (-lo / s).round_ties_even().clamp(0.0, ASYMMETRIC_STEPS);
        (s, -zp, ASYMMETRIC_STEPS - zp)
    };
    if s <= 0.0 {
        return bins
            .iter()
            .map(|&(a, b, d)| d * cube_integral(a, b, 0.0))
            .sum();
    }
    bins.iter()
        .map(|&(a, b, d)| d * interval_sq_error(a, b, s, kmin, kmax))
        .sum()
}

/// The candidate in `cands` (ascending) minimising `f`: a coarse pass over at most ~256
/// candidates, then every candidate around the coarse best.
fn argmin_coarse_fine(cands: &[f64], f: impl Fn(f64) -> f64) -> f64 {
    let stride = cands.len().div_ceil(256).max(1);
    let best_of = |idx: &mut dyn Iterator<Item = usize>, mut best: (f64, usize)| {
        for i in idx {
            let e = f(cands[i]);
            if e < best.0 {
                best = (e, i);
            }
        }
        best
    };
    let last = cands.len() - 1;
    let coarse = best_of(
        &mut (0..cands.len()).step_by(stride).chain([last]),
        (f64::INFINITY, last),
    );
    let around = coarse.1.saturating_sub(stride)..=(coarse.1 + stride).min(last);
    cands[best_of(&mut around.into_iter(), coarse).1]
}

fn mse_range(hist: &Histogram, symmetric: bool) -> (f64, f64) {
    let bins = occupied_bins(hist);
    let (min, max) = (
        f64::from(hist.min().unwrap_or(0.0)),
        f64::from(hist.max().unwrap_or(0.0)),
    );
    let w = hist.bin_width();
    let h = hist.bins().len() / 2;
    // Candidate bounds: bin edges strictly inside the data, then the data's own bound.
    let uppers = |limit: f64| -> Vec<f64> {
        let mut v: Vec<f64> = (1..=h)
            .map(|k| k as f64 * w)
            .take_while(|&t| t < limit)
            .collect();
        v.push(limit.max(0.0));
        v
    };
    if symmetric {
        let cands = uppers(min.abs().max(max.abs()));
        let t = argmin_coarse_fine(&cands, |t| mse_of(&bins, -t, t, true));
        return (-t, t);
    }
    let his = uppers(max);
    let los: Vec<f64> = uppers(-min).iter().map(|&v| -v).collect();
    let (mut lo, mut hi) = (min.min(0.0), max.max(0.0));
    for _ in 0..4 {
        let new_hi = argmin_coarse_fine(&his, |t| mse_of(&bins, lo, t, false));
        let new_lo = argmin_coarse_fine(&los, |t| mse_of(&bins, t, new_hi, false));
        let done = new_hi == hi && new_lo == lo;
        (lo, hi) = (new_lo, new_hi);
        if done {
            break;
        }
    }
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64* with Box-Muller normals: a seeded sample source without the rand crate.
    struct Rng(u64);

    impl Rng {
        fn uniform(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
        }
        fn normal(&mut self) -> f64 {
            let (u1, u2) = (1.0 - self.uniform(), self.uniform());
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        }
        fn laplace(&mut self) -> f64 {
            let u = self.uniform() - 0.5;
            -u.signum() * (1.0 - 2.0 * u.abs()).ln()
        }
        /// Student-t with 3 degrees of freedom: Z / sqrt(chi2_3 / 3).
        fn student_t3(&mut self) -> f64 {
            let chi2: f64 = (0..3).map(|_| self.normal().powi(2)).sum();
            self.normal() / (chi2 / 3.0).sqrt()
        }
        fn sample(&mut self, n: usize, f: fn(&mut Rng) -> f64) -> Vec<f32> {
            self.map(n, f, |x| x)
        }
        fn map(&mut self, n: usize, f: fn(&mut Rng) -> f64, g: impl Fn(f32) -> f32) -> Vec<f32> {
            (0..n).map(|_| g(f(self) as f32)).collect()
        }
    }

    fn hist_of(batches: &[&[f32]]) -> Histogram {
        let mut h = Histogram::default();
        for b in batches {
            h.add(b).unwrap();
        }
        h
    }

    fn exact_min_max(v: &[f32]) -> (f32, f32) {
        let lo = v.iter().copied().fold(f32::INFINITY, f32::min);
        (lo, v.iter().copied().fold(f32::NEG_INFINITY, f32::max))
    }

    const ALL: [CalibMethod; 4] = [
        CalibMethod::MinMax,
        CalibMethod::Percentile(DEFAULT_PERCENTILE),
        CalibMethod::Mse,
        CalibMethod::Entropy,
    ];

    #[test]
    fn minmax_is_the_exact_min_and_max_over_batches() {
        let mut rng = Rng(1);
        let a = rng.sample(5000, Rng::normal);
        let b = rng.map(5000, Rng::normal, |x| 3.0 * x + 1.0);
        let h = hist_of(&[&a, &b, &[-0.25]]);
        let all: Vec<f32> = a.iter().chain(&b).copied().chain([-0.25]).collect();
        let (lo, hi) = exact_min_max(&all);
        assert_eq!(range(&h, CalibMethod::MinMax, false).unwrap(), (lo, hi));
        let amax = lo.abs().max(hi.abs());
        assert_eq!(range(&h, CalibMethod::MinMax, true).unwrap(), (-amax, amax));
        assert_eq!(
            range(&h, CalibMethod::Percentile(100.0), false).unwrap(),
            (lo, hi)
        );
        assert_eq!((h.count(), h.bins().iter().sum::<u64>()), (10_001, 10_001));
    }

    #[test]
    fn percentile_clips_a_planted_outlier() {
        let mut v = Rng(2).sample(100_000, Rng::normal);
        v[123] = 1000.0;
        let h = hist_of(&[&v]);
        assert_eq!(range(&h, CalibMethod::MinMax, false).unwrap().1, 1000.0);
        let p = CalibMethod::Percentile(99.99);
        let (lo, hi) = range(&h, p, false).unwrap();
        // The 0.005 % tails of N(0, 1) are near +-3.9; one bin is 2000 / 2048 wide.
        assert!(
            (-6.0..-3.0).contains(&lo) && (3.0..6.0).contains(&hi),
            "{lo} {hi}"
        );
        let (slo, shi) = range(&h, p, true).unwrap();
        assert!(slo == -shi && (3.0..6.0).contains(&shi), "{slo} {shi}");
    }

    #[test]
    fn percentile_must_be_in_0_100() {
        let h = hist_of(&[&[1.0, 2.0]]);
        for bad in [0.0, -1.0, 100.5, f64::NAN] {
            let e = range(&h, CalibMethod::Percentile(bad), false)
                .unwrap_err()
                .to_string();
            assert!(e.contains("--percentile"), "{e}");
            assert!(CalibMethod::Percentile(bad).validate().is_err());
        }
        assert!(validate_percentile(1e-9).is_ok() && validate_percentile(100.0).is_ok());
    }

    /// mse and entropy clip heavy tails strictly inside minmax, symmetric or not.
    fn assert_inside_minmax(v: &[f32], what: &str) {
        let h = hist_of(&[v]);
        let (min, max) = exact_min_max(v);
        for m in [CalibMethod::Mse, CalibMethod::Entropy] {
            let (lo, hi) = range(&h, m, false).unwrap();
            assert!(
                min < lo && hi < max && lo < -0.5 && hi > 0.5,
                "{what} {m:?}: {lo} {hi}"
            );
            let (slo, shi) = range(&h, m, true).unwrap();
            assert!(
                shi < min.abs().max(max) && shi > 0.5 && slo == -shi,
                "{what} {m:?}: {shi}"
            );
        }
    }

    #[test]
    fn mse_and_entropy_clip_heavy_tails() {
        assert_inside_minmax(&Rng(3).sample(200_000, Rng::student_t3), "student-t(3)");
        assert_inside_minmax(&Rng(4).sample(200_000, Rng::laplace), "laplace");
    }

    #[test]
    fn all_methods_agree_on_a_uniform_sample() {
        let mut rng = Rng(5);
        let sym = rng.map(200_000, Rng::uniform, |u| 2.0 * u - 1.0);
        let skew: Vec<f32> = sym.iter().map(|u| 1.25 * u + 0.75).collect(); // U(-0.5, 2)
        for (v, symmetric) in [(&sym, true), (&sym, false), (&skew, false)] {
            let h = hist_of(&[v]);
            let (min, max) = exact_min_max(v);
            for m in ALL {
                let (lo, hi) = range(&h, m, symmetric).unwrap();
                let (elo, ehi) = if symmetric {
                    (-max.max(-min), max.max(-min))
                } else {
                    (min, max)
                };
                let tol = 0.01 * (ehi - elo);
                assert!(
                    (lo - elo).abs() <= tol && (hi - ehi).abs() <= tol,
                    "{m:?} symmetric={symmetric}: ({lo}, {hi}) vs ({elo}, {ehi})"
                );
            }
        }
    }

    #[test]
    fn entropy_equals_ort_thresholds() {
        // Expected: onnxruntime 1.31.1 (numpy 2.4), HistogramCollector(method="entropy",
        // symmetric=False, num_bins=2048, num_quantized_bins=128, percentile=99.99,
        // scenario="same"), collect() once per batch, compute_collection_result(), on these exact
        // samples written out as float32 files (xcheck/xcheck_entropy.py checks many more).
        let mut rng = Rng(11);
        let laplace = vec![rng.sample(50_000, Rng::laplace)];
        // Grows 2048 -> 2694 bins.
        let t3 = [1.0, 1.5, 2.5].map(|s| rng.map(20_000, Rng::student_t3, |x| x * s));
        // Values on a 1/4 grid: windows tie exactly in float32 and the first one wins.
        let grid = vec![rng.map(50_000, Rng::normal, |x| (4.0 * x).round() / 4.0)];
        let mut massive = rng.sample(50_000, Rng::normal);
        (massive[7], massive[99]) = (1500.0, -2500.0);
        let relu = vec![rng.map(50_000, Rng::normal, |x| (x + 0.2).max(0.0))];
        let cases = [
            (laplace, (-7.948_590_8, 7.958_820_3)),
            (t3.to_vec(), (-34.716_62, 34.785_24)),
            (grid, (-2.261_718_8, 2.265_625)),
            (vec![massive], (-307.617_2, 310.058_6)),
            (relu, (0.0, 2.831_195_4)),
        ];
        for (batches, (lo, hi)) in cases {
            let h = hist_of(&batches.iter().map(Vec::as_slice).collect::<Vec<_>>());
            assert_eq!(range(&h, CalibMethod::Entropy, false).unwrap(), (lo, hi));
            let t = hi.max(-lo);
            assert_eq!(range(&h, CalibMethod::Entropy, true).unwrap(), (-t, t));
        }
    }

    #[test]
    fn with_threshold_equals_one_batch_of_everything() {
        // ORT's calibrater collects all batches at once: one grid over the largest |x|.
        let mut rng = Rng(12);
        let batches = [1.0, 3.0, 0.5].map(|s| rng.map(10_000, Rng::laplace, |x| x * s));
        let all: Vec<f32> = batches.concat();
        let amax = all.iter().fold(0f32, |m, x| m.max(x.abs()));
        let mut h = Histogram::with_threshold(DEFAULT_NUM_BINS, amax).unwrap();
        for b in &batches {
            h.add(b).unwrap();
        }
        let one = hist_of(&[&all]);
        assert_eq!((h.bins(), h.threshold()), (one.bins(), one.threshold()));
        assert_eq!(h.bins().len(), DEFAULT_NUM_BINS);
        assert!(Histogram::with_threshold(DEFAULT_NUM_BINS, f32::NAN).is_err());
    }

    #[test]
    fn ort_default_128_bins_make_entropy_minmax() {
        // ORT's EntropyCalibrater defaults to num_bins = num_quantized_bins = 128: one window,
        // so its "entropy" range is the min/max range.
        let v = Rng(6).sample(50_000, Rng::student_t3);
        let mut h = Histogram::new(128).unwrap();
        h.add(&v).unwrap();
        assert_eq!(
            range(&h, CalibMethod::Entropy, false).unwrap(),
            range(&h, CalibMethod::MinMax, false).unwrap()
        );
    }

    #[test]
    fn histogram_grows_like_ort_and_keeps_counts() {
        let mut h = Histogram::new(128).unwrap();
        h.add(&[-1.0, 1.0, 0.5]).unwrap();
        // First batch: T = 1, width = 2 / 128.
        assert_eq!(
            (h.bins().len(), h.bin_width(), h.threshold()),
            (128, 1.0 / 64.0, 1.0)
        );
        h.add(&[1.5]).unwrap();
        // ORT merge_histogram: floor((1.5 - 1) / (1/64)) + 1 = 33 bins more on each side.
        assert_eq!((h.bins().len(), h.bin_width()), (128 + 66, 1.0 / 64.0));
        assert_eq!(h.threshold(), 97.0 / 64.0);
        h.add(&[100.0]).unwrap();
        // Past MAX_GROWTH x 128 bins, bins merge pairwise: width doubles until it fits.
        assert!(h.bins().len() <= MAX_GROWTH * 128 && h.threshold() >= 100.0);
        assert_eq!(h.bins().iter().sum::<u64>(), 5);
        // 1.0 was the first grid's right edge: numpy's closed last bin holds it, one bin lower.
        for (x, below) in [(-1.0f64, 0), (0.5, 0), (1.0, 1), (1.5, 0), (100.0, 0)] {
            let i = (0..h.bins().len())
                .find(|&i| h.edge(i) <= x && x < h.edge(i + 1))
                .unwrap();
            assert!(h.bins()[i - below] >= 1, "{x} not in its bin");
        }
        assert_eq!((h.min(), h.max()), (Some(-1.0), Some(100.0)));
    }

    #[test]
    fn huge_range_jump_stays_bounded() {
        let mut h = Histogram::default();
        h.add(&[1e-30, -2e-30]).unwrap();
        h.add(&[3e38, -1.0]).unwrap();
        assert!(h.bins().len() <= MAX_GROWTH * DEFAULT_NUM_BINS && h.threshold() >= 3e38);
        assert_eq!(h.bins().iter().sum::<u64>(), 4);
        assert_eq!(range(&h, CalibMethod::MinMax, false).unwrap(), (-1.0, 3e38));
        for m in ALL {
            let (lo, hi) = range(&h, m, false).unwrap();
            assert!(lo <= hi && lo >= -1.0 && hi <= 3e38, "{m:?}");
        }
    }

    #[test]
    fn growing_histogram_matches_binning_on_the_final_grid() {
        let mut rng = Rng(7);
        let mut h = Histogram::default();
        let mut all = Vec::new();
        for scale in [0.1f32, 1.0, 0.5, 40.0, 3.0] {
            let b = rng.map(20_000, Rng::normal, |x| x * scale);
            h.add(&b).unwrap();
            all.extend(b);
        }
        assert!(h.bins().len() <= MAX_GROWTH * DEFAULT_NUM_BINS);
        let len = h.bins().len();
        let mut expect = vec![0u64; len];
        for &x in &all {
            let i = (f64::from(x) / h.bin_width()).floor() + (len / 2) as f64;
            expect[(i as usize).min(len - 1)] += 1;
        }
        // Equal up to each batch's maximum, which the closed last bin keeps one bin lower.
        let (mut a, mut b) = (0i64, 0i64);
        for (x, y) in h.bins().iter().zip(&expect) {
            (a, b) = (a + *x as i64, b + *y as i64);
            assert!((a - b).abs() <= 5, "cumulative counts differ by {}", a - b);
        }
    }

    #[test]
    fn zeros_first_then_values() {
        let mut h = Histogram::default();
        h.add(&[0.0; 10]).unwrap();
        assert_eq!(h.bin_width(), 0.0);
        for m in ALL {
            assert_eq!(range(&h, m, false).unwrap(), (0.0, 0.0));
        }
        h.add(&[1.0, -0.5]).unwrap();
        // The ten zeros sit in the bin [0, width).
        assert_eq!(h.bins()[h.bins().len() / 2], 10);
        assert_eq!(range(&h, CalibMethod::MinMax, false).unwrap(), (-0.5, 1.0));
    }

    #[test]
    fn constant_tensor_keeps_its_value() {
        let h = hist_of(&[&[3.0; 1000], &[3.0; 10]]);
        for m in ALL {
            assert_eq!(range(&h, m, false).unwrap(), (3.0, 3.0), "{m:?}");
            assert_eq!(range(&h, m, true).unwrap(), (-3.0, 3.0), "{m:?}");
        }
    }

    #[test]
    fn bad_input_errors() {
        let mut h = Histogram::default();
        h.add(&[]).unwrap();
        let e = range(&h, CalibMethod::MinMax, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--calib"), "{e}");
        let e = h.add(&[1.0, f32::NAN]).unwrap_err().to_string();
        assert!(e.contains("value 1"), "{e}");
        assert!(h.add(&[f32::INFINITY]).is_err() && h.count() == 0);
        assert!(Histogram::new(100).is_err() && Histogram::new(129).is_err());
        assert_eq!(CalibMethod::Percentile(1.0).name(), "percentile");
    }

    #[test]
    fn interval_error_matches_numeric_integration() {
        let mut rng = Rng(8);
        for _ in 0..200 {
            let s = 0.05 + rng.uniform();
            let (kmin, kmax) = (
                -(rng.uniform() * 10.0).floor(),
                (rng.uniform() * 10.0).floor(),
            );
            let a = (rng.uniform() - 0.5) * 30.0;
            let b = a + rng.uniform() * 5.0;
            let q = |x: f64| (x / s).round().clamp(kmin, kmax) * s;
            let steps = 20_000;
            let dx = (b - a) / steps as f64;
            let numeric: f64 = (0..steps)
                .map(|i| {
                    let x = a + (i as f64 + 0.5) * dx;
                    (x - q(x)).powi(2) * dx
                })
                .sum();
            let exact = interval_sq_error(a, b, s, kmin, kmax);
            assert!(
                (exact - numeric).abs() <= 1e-4 * (1.0 + numeric),
                "{exact} vs {numeric}"
            );
        }
    }
}
