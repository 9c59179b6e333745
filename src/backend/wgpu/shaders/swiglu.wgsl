// SwiGLU (Llama MLP): out[m, i] = silu(gu[m, i]) * gu[m, I + i], where gu is the fused
// gate|up projection [M, 2 I].

struct Params {
    I: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gu: array<S>;
@group(0) @binding(2) var<storage, read_write> out: array<S>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let m = gid.y;
    if (i >= p.I) {
        return;
    }
    let g = f32(gu[m * 2u * p.I + i]);
    let u = f32(gu[m * 2u * p.I + p.I + i]);
    out[m * p.I + i] = S(silu(g) * u);
}
