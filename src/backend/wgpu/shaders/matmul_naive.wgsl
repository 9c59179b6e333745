// Naive matrix multiply, one invocation per output element, scalar loads: the baseline the
// tiled kernel is benchmarked against, and the kernel for skinny products (decode, M < 16) and
// shapes the vec4 kernel cannot take. Same bindings, layouts and epilogue as matmul_tiled.wgsl
// (matmul_common.wgsl).

@group(0) @binding(1) var<storage, read> a: array<S>;
@group(0) @binding(2) var<storage, read> b: array<S>;

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
    epilogue(m, n, acc);
}
