// Splits the fused QKV projection [M, (H + 2 KV) hd] into heads, applies rotary position
// embedding to Q and K (Llama, HF "rotate half": x' = x cos + rot(x) sin with
// rot = concat(-x[hd/2..], x[..hd/2])), writes Q as [B, H, S, hd] and appends K and V to the
// KV cache [B, KV, cap, hd] at positions past .. past + S (past from the per-forward Step uniform).
// cos/sin come from a host-computed f64 table (rope_tab[(pos * hd/2 + j) * 2 + {0: cos, 1: sin}]).

struct Params {
    S: u32,
    H: u32,
    KV: u32,
    hd: u32,
    cap: u32,
    rope: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<S>;
@group(0) @binding(2) var<storage, read> rope_tab: array<f32>;
@group(0) @binding(3) var<storage, read_write> q: array<S>;
@group(0) @binding(4) var<storage, read_write> kc: array<S>;
@group(0) @binding(5) var<storage, read_write> vc: array<S>;
@group(0) @binding(6) var<uniform> fwd: Step;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col = gid.x;
    let m = gid.y;
    let cols = (p.H + 2u * p.KV) * p.hd;
    if (col >= cols) {
        return;
    }
    let b = m / p.S;
    let t = m % p.S;
    let pos = fwd.past + t;
    let head = col / p.hd;
    let c = col % p.hd;
    var v = f32(qkv[m * cols + col]);
    if (p.rope != 0u && head < p.H + p.KV) {
        let half = p.hd / 2u;
        let j = c % half;
        let cs = rope_tab[(pos * half + j) * 2u];
        let sn = rope_tab[(pos * half + j) * 2u + 1u];
        var rot: f32;
        if (c < half) {
            rot = -f32(qkv[m * cols + col + half]);
        } else {
            rot = f32(qkv[m * cols + col - half]);
        }
        v = v * cs + rot * sn;
    }
    if (head < p.H) {
        q[((b * p.H + head) * p.S + t) * p.hd + c] = S(v);
    } else if (head < p.H + p.KV) {
        kc[((b * p.KV + head - p.H) * p.cap + pos) * p.hd + c] = S(v);
    } else {
        vc[((b * p.KV + head - p.H - p.KV) * p.cap + pos) * p.hd + c] = S(v);
    }
}
