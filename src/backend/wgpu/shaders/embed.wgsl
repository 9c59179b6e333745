// Token embedding gather (+ learned positions for GPT-2) into the residual stream h [M, D].
// The token table may be split into row chunks to respect the adapter's storage-binding limit:
// one dispatch per chunk, each writing the rows whose token id lies in [v0, v1).
// Row m = b * S + t sits at absolute position past + t (past from the per-forward Step uniform).

struct Params {
    D: u32,
    S: u32,
    v0: u32,
    v1: u32,
    has_pos: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<S>;
@group(0) @binding(3) var<storage, read> pos_table: array<S>;
@group(0) @binding(4) var<storage, read_write> h: array<S>;
@group(0) @binding(5) var<uniform> fwd: Step;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let d = gid.x;
    let m = gid.y;
    if (d >= p.D) {
        return;
    }
    let id = ids[m];
    if (id < p.v0 || id >= p.v1) {
        return;
    }
    var v = f32(table[(id - p.v0) * p.D + d]);
    if (p.has_pos != 0u) {
        let pos = fwd.past + m % p.S;
        v += f32(pos_table[pos * p.D + d]);
    }
    h[m * p.D + d] = S(v);
}
