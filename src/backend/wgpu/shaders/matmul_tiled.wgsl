// Tiled matrix multiply with workgroup shared memory and vec4 loads:
//   C[m, c_off + n] (+)= act(sum_k A[m, k] B[k, n] + bias[n])
// A is [M, K] row-major; B is [K, N] (TRANS_B false, GPT-2 Conv1D weights) or [N, K]
// (TRANS_B true: Llama Linear weights and the tied LM head). `const TRANS_B: bool` is
// prepended by the driver. Requires K % 4 == 0 and, without TRANS_B, N % 4 == 0.
//
// Each 16x16 workgroup computes a 64x64 tile of C; each invocation a 4x4 block strided by 16
// (rows ty + 16 i, columns tx + 16 j) so shared-memory reads are conflict-free and stores
// coalesced. K advances 16 at a time through two 16x64 f32 tiles in workgroup memory.

@group(0) @binding(1) var<storage, read> a: array<S4>;
@group(0) @binding(2) var<storage, read> b: array<S4>;

const TILE: u32 = 64u;
const TK: u32 = 16u;

var<workgroup> As: array<array<f32, 64>, 16>; // [k][m]
var<workgroup> Bs: array<array<f32, 64>, 16>; // [k][n]

@compute @workgroup_size(16, 16)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let m0 = wid.y * TILE;
    let n0 = wid.x * TILE;
    let k4 = p.K / 4u;
    var acc: array<array<f32, 4>, 4>;
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            acc[i][j] = 0.0;
        }
    }

    for (var k0 = 0u; k0 < p.K; k0 += TK) {
        // A tile: 64 rows x 4 vec4 along K, one vec4 per invocation.
        {
            let r = tid / 4u;
            let q = tid % 4u;
            let m = m0 + r;
            let kk = k0 / 4u + q;
            var v = vec4<f32>(0.0);
            if (m < p.M && kk < k4) {
                v = vec4<f32>(a[m * k4 + kk]);
            }
            As[q * 4u + 0u][r] = v.x;
            As[q * 4u + 1u][r] = v.y;
            As[q * 4u + 2u][r] = v.z;
            As[q * 4u + 3u][r] = v.w;
        }
        if (TRANS_B) {
            // B is [N, K]: 64 rows of n x 4 vec4 along K.
            let r = tid / 4u;
            let q = tid % 4u;
            let n = n0 + r;
            let kk = k0 / 4u + q;
            var v = vec4<f32>(0.0);
            if (n < p.N && kk < k4) {
                v = vec4<f32>(b[n * k4 + kk]);
            }
            Bs[q * 4u + 0u][r] = v.x;
            Bs[q * 4u + 1u][r] = v.y;
            Bs[q * 4u + 2u][r] = v.z;
            Bs[q * 4u + 3u][r] = v.w;
        } else {
            // B is [K, N]: 16 rows of k x 16 vec4 along N.
            let n4 = p.N / 4u;
            let kr = tid / 16u;
            let q = tid % 16u;
            let k = k0 + kr;
            let nn = n0 / 4u + q;
            var v = vec4<f32>(0.0);
            if (k < p.K && nn < n4) {
                v = vec4<f32>(b[k * n4 + nn]);
            }
            Bs[kr][q * 4u + 0u] = v.x;
            Bs[kr][q * 4u + 1u] = v.y;
            Bs[kr][q * 4u + 2u] = v.z;
            Bs[kr][q * 4u + 3u] = v.w;
        }
        workgroupBarrier();
        for (var k = 0u; k < TK; k++) {
            var av: array<f32, 4>;
            var bv: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                av[i] = As[k][lid.y + 16u * i];
                bv[i] = Bs[k][lid.x + 16u * i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i][j] = fma(av[i], bv[j], acc[i][j]);
                }
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i++) {
        let m = m0 + lid.y + 16u * i;
        if (m >= p.M) {
            continue;
        }
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + lid.x + 16u * j;
            if (n >= p.N) {
                continue;
            }
            epilogue(m, n, acc[i][j]);
        }
    }
}
