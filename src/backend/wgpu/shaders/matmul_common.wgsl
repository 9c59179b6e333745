// Parameters, shared bindings and epilogue of both matrix-multiply kernels:
//   C[m, c_off + n] (+)= act(acc + bias[n])   (flags: FLAG_BIAS, FLAG_GELU, FLAG_RESIDUAL)
// The kernels declare A (binding 1) and B (binding 2) themselves (vec4 or scalar).

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
@group(0) @binding(3) var<storage, read> bias: array<S>;
@group(0) @binding(4) var<storage, read_write> c: array<S>;

fn epilogue(m: u32, n: u32, acc: f32) {
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
