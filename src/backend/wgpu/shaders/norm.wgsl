// LayerNorm (GPT-2) or RMSNorm (Llama) over the last axis, one 256-invocation workgroup per row.
//   LayerNorm: (x - mean) / sqrt(var + eps) * w + b   (biased variance, two passes)
//   RMSNorm:   x / sqrt(mean(x^2) + eps) * w
// Sums are f32 tree reductions in workgroup memory (reduce.wgsl).
// Workgroup r reads input row r * in_stride + in_off and writes output row r, so the final norm
// can gather the last position of each sequence (in_stride = seq, in_off = seq - 1) into a
// compact [batch, D] block for the LM head; every other norm uses in_stride 1, in_off 0.

struct Params {
    D: u32,
    rms: u32,
    eps: f32,
    in_stride: u32,
    in_off: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<S>;
@group(0) @binding(2) var<storage, read> w: array<S>;
@group(0) @binding(3) var<storage, read> bb: array<S>;
@group(0) @binding(4) var<storage, read_write> y: array<S>;

const WG: u32 = 256u;
var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let base = (wid.x * p.in_stride + p.in_off) * p.D;
    let obase = wid.x * p.D;
    let n = f32(p.D);
    var mean = 0.0;
    if (p.rms == 0u) {
        var s = 0.0;
        for (var i = t; i < p.D; i += WG) {
            s += f32(x[base + i]);
        }
        mean = reduce_sum(s, t) / n;
    }
    var s2 = 0.0;
    for (var i = t; i < p.D; i += WG) {
        let v = f32(x[base + i]) - mean;
        s2 += v * v;
    }
    let inv = inverseSqrt(reduce_sum(s2, t) / n + p.eps);
    for (var i = t; i < p.D; i += WG) {
        var v = (f32(x[base + i]) - mean) * inv * f32(w[i]);
        if (p.rms == 0u) {
            v += f32(bb[i]);
        }
        y[obase + i] = S(v);
    }
}
