// Causal scaled dot-product attention with grouped-query heads, one 64-invocation workgroup per
// (query t, head h, batch b). Keys are visited in blocks of 256 with an online softmax
// (running maximum and sum, rescaled per block, as in FlashAttention): numerically stable and
// with no score matrix in memory. Query head h reads KV head h / (H / KV) (HF repeat_kv).
// Query t sits at absolute position past + t and sees cache positions 0 ..= past + t (past from
// the per-forward Step uniform).
// Output is [M, H hd] with head h in columns h hd .. (h + 1) hd. Requires hd <= 512.

struct Params {
    S: u32,
    H: u32,
    KV: u32,
    hd: u32,
    cap: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<S>;
@group(0) @binding(2) var<storage, read> kc: array<S>;
@group(0) @binding(3) var<storage, read> vc: array<S>;
@group(0) @binding(4) var<storage, read_write> o: array<S>;
@group(0) @binding(5) var<uniform> fwd: Step;

const WG: u32 = 64u;
const BLK: u32 = 256u;
const NEG: f32 = -3.0e38;

var<workgroup> qs: array<f32, 512>;
var<workgroup> acc: array<f32, 512>;
var<workgroup> sc: array<f32, 256>;
var<workgroup> red: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let tq = wid.x;
    let h = wid.y;
    let b = wid.z;
    let kvh = h / (p.H / p.KV);
    let qbase = ((b * p.H + h) * p.S + tq) * p.hd;
    for (var d = t; d < p.hd; d += WG) {
        qs[d] = f32(q[qbase + d]) * p.scale;
        acc[d] = 0.0;
    }
    workgroupBarrier();

    let n_keys = fwd.past + tq + 1u;
    let kbase = (b * p.KV + kvh) * p.cap * p.hd;
    var m_run = NEG;
    var l_run = 0.0;
    for (var j0 = 0u; j0 < n_keys; j0 += BLK) {
        var lmax = NEG;
        for (var i = 0u; i < BLK / WG; i++) {
            let idx = t + WG * i;
            let j = j0 + idx;
            var s = NEG;
            if (j < n_keys) {
                var dot = 0.0;
                let kb = kbase + j * p.hd;
                for (var d = 0u; d < p.hd; d++) {
                    dot = fma(qs[d], f32(kc[kb + d]), dot);
                }
                s = dot;
            }
            sc[idx] = s;
            lmax = max(lmax, s);
        }
        let m_new = max(m_run, reduce_max(lmax, t));
        let corr = exp(m_run - m_new);
        var lsum = 0.0;
        for (var i = 0u; i < BLK / WG; i++) {
            let idx = t + WG * i;
            var pr = 0.0;
            if (j0 + idx < n_keys) {
                pr = exp(sc[idx] - m_new);
            }
            sc[idx] = pr;
            lsum += pr;
        }
        // reduce_sum's barriers also publish every invocation's sc writes.
        l_run = l_run * corr + reduce_sum(lsum, t);
        m_run = m_new;
        let nb = min(BLK, n_keys - j0);
        for (var d = t; d < p.hd; d += WG) {
            var a = acc[d] * corr;
            for (var jj = 0u; jj < nb; jj++) {
                a = fma(sc[jj], f32(vc[kbase + (j0 + jj) * p.hd + d]), a);
            }
            acc[d] = a;
        }
        workgroupBarrier();
    }
    let obase = (b * p.S + tq) * (p.H * p.hd) + h * p.hd;
    for (var d = t; d < p.hd; d += WG) {
        o[obase + d] = S(acc[d] / l_run);
    }
}
