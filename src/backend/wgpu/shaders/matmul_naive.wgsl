// Naive matrix multiply, one invocation per output element, scalar loads: the baseline the
// tiled kernel is benchmarked against, and the kernel for skinny products (decode, M < 16) and
// shapes the vec4 kernel cannot take. Same bindings, layouts and epilogue as matmul_tiled.wgsl.

struct Params {
    M: u32,
    N: u32,
    K: u32,
    flags: u32,
    ldc: u32,
    c_off: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<S>;
@group(0) @binding(2) var<storage, read> b: array<S>;
@group(0) @binding(3) var<storage, read> bias: array<S>;
@group(0) @binding(4) var<storage, read_write> c: array<S>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = gid.x;
    let m = gid.y;
    if (n >= p.N || m >= p.M) {
        return;
    }
    var acc = 0.0;
    let arow = m * p.K;
    if (TRANS_B) {
        let brow = n * p.K;
        for (var k = 0u; k < p.K; k++) {
            acc = fma(f32(a[arow + k]), f32(b[brow + k]), acc);
        }
    } else {
        for (var k = 0u; k < p.K; k++) {
            acc = fma(f32(a[arow + k]), f32(b[k * p.N + n]), acc);
        }
    }
    var v = acc;
    if ((p.flags & FLAG_BIAS) != 0u) {
        v += f32(bias[n]);
    }
    if ((p.flags & FLAG_GELU) != 0u) {
        v = gelu_new(v);
    }
    let idx = m * p.ldc + p.c_off + n;
    if ((p.flags & FLAG_RESIDUAL) != 0u) {
        v += f32(c[idx]);
    }
    c[idx] = S(v);
}
