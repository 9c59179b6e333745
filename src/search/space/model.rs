//! The data of a search space: its knobs ([`Choice`]), [`Constraints`], [`SearchDefaults`] and
//! the [`SearchSpace`] itself, with what follows from the data alone: the gene slot layout, the
//! head-size rule and the decoder-parameter bounds of the space. The genetic operators
//! (`genome.rs`), the file parser (`parse.rs`) and the checks in `mod.rs` build on it; it uses
//! none of them.

use serde::{Deserialize, Serialize};

use crate::arch::parts::Positions;
use crate::arch::{Arch, Family};

/// The choices of one knob.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// Allowed values, ascending and distinct (never empty).
    pub values: Vec<usize>,
    /// Whether each layer slot has its own gene (LTS/archai `per_layer`); otherwise slot 0 is
    /// used for every layer.
    pub per_layer: bool,
}

impl Choice {
    /// Smallest allowed value.
    pub fn min(&self) -> usize {
        self.values.iter().copied().min().unwrap_or(0)
    }

    /// Largest allowed value.
    pub fn max(&self) -> usize {
        self.values.iter().copied().max().unwrap_or(0)
    }

    /// Whether `v` is one of the allowed values.
    pub fn contains(&self, v: usize) -> bool {
        self.values.contains(&v)
    }

    /// Short text: `128..960 step 64`, `{2, 4, 8}` or `256`, with ` per layer` when it applies.
    pub fn describe(&self) -> String {
        let v = &self.values;
        let mut s = if v.len() == 1 {
            v[0].to_string()
        } else if v.len() > 3 && v.windows(2).all(|w| w[1] - w[0] == v[1] - v[0]) {
            if v[1] - v[0] == 1 {
                format!("{}..{}", v[0], v[v.len() - 1])
            } else {
                format!("{}..{} step {}", v[0], v[v.len() - 1], v[1] - v[0])
            }
        } else {
            let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
            format!("{{{}}}", items.join(", "))
        };
        if self.per_layer {
            s.push_str(" per layer");
        }
        s
    }
}

/// Constraints of a space. The decoder-parameter range and the `d_inner` ratio need no
/// measurement and are checked before a candidate is measured ([`SearchSpace::check_static`]);
/// latency and memory bounds are applied by the search driver after measuring.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Constraints {
    /// Fewest decoder (non-embedding) parameters allowed (LTS `param_constraint_lower`).
    pub decoder_params_min: Option<u64>,
    /// Most decoder parameters allowed (LTS `param_constraint_upper`).
    pub decoder_params_max: Option<u64>,
    /// Every used `d_inner[i]` must exceed this multiple of `d_model` (LTS paper code: 1.7).
    pub d_inner_min_ratio: Option<f64>,
    /// Largest median latency (ms) a feasible candidate may have (checked after measuring).
    pub max_latency_ms: Option<f64>,
    /// Largest peak memory (MiB) a feasible candidate may have (checked after measuring).
    pub max_memory_mb: Option<f64>,
}

/// Default search settings of a space (`[search]`); the command line can override each.
/// Unset values fall back to LTS's (population 100, 30 iterations, 20 parents, 40 mutations,
/// 40 crossovers, sequence length 192).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct SearchDefaults {
    /// Sequence length of the timed workload.
    pub seq_len: Option<usize>,
    /// Size of the initial random population.
    pub population: Option<usize>,
    /// Number of evolutionary iterations.
    pub iterations: Option<usize>,
    /// Parents drawn from the Pareto front per iteration.
    pub parents: Option<usize>,
    /// Mutants produced per iteration.
    pub mutations: Option<usize>,
    /// Crossovers produced per iteration.
    pub crossovers: Option<usize>,
}

/// A validated search space (see [`crate::search::space`] for the file format).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchSpace {
    /// Name shown in reports.
    pub name: String,
    /// One-line description (may be empty).
    pub description: String,
    /// Decoder family of every candidate.
    pub family: Family,
    /// Vocabulary size (fixed).
    pub vocab_size: usize,
    /// Maximum sequence length (fixed).
    pub n_positions: usize,
    /// Whether the LM head is tied to the token embedding (fixed; always true for GPT-2).
    pub tie_embeddings: bool,
    /// LayerNorm / RMSNorm epsilon (fixed).
    pub norm_eps: f64,
    /// RoPE base (fixed; Llama only).
    pub rope_theta: f64,
    /// Number of layers (never per layer).
    pub n_layer: Choice,
    /// Hidden size (never per layer).
    pub d_model: Choice,
    /// MLP inner size.
    pub d_inner: Choice,
    /// Query heads.
    pub n_head: Choice,
    /// Key/value heads (Llama only; `None` means `n_kv_head = n_head`, plain multi-head).
    pub n_kv_head: Option<Choice>,
    /// Constraints.
    pub constraints: Constraints,
    /// Default search settings.
    pub search: SearchDefaults,
}

impl SearchSpace {
    /// Number of layer slots of a per-layer gene: the largest `n_layer` value.
    pub fn max_layers(&self) -> usize {
        self.n_layer.max()
    }

    /// Slots of a knob in a [`Genome`](super::Genome): `max_layers()` per layer, else 1.
    pub(super) fn slots(&self, c: &Choice) -> usize {
        if c.per_layer {
            self.max_layers()
        } else {
            1
        }
    }

    /// The knobs stored per slot, in gene order: `d_inner`, `n_head`, then `n_kv_head` if any.
    pub(super) fn per_slot_knobs(&self) -> Vec<&Choice> {
        let mut v = vec![&self.d_inner, &self.n_head];
        if let Some(kv) = &self.n_kv_head {
            v.push(kv);
        }
        v
    }

    /// Whether `h` query heads work with hidden size `d`: `d % h == 0`, and for Llama an even
    /// head size (RoPE rotates pairs).
    pub(super) fn heads_fit(&self, d: usize, h: usize) -> bool {
        h > 0
            && d.is_multiple_of(h)
            && (self.family.parts().positions != Positions::Rope || (d / h).is_multiple_of(2))
    }

    /// Upper bound of decoder parameters over the space: the largest value of every knob (for
    /// Llama with `n_kv_head = n_head`, which has the most key/value weights), as archai's
    /// `_profile` takes the largest gene. Used to normalise the hypervolume.
    pub fn max_decoder_params(&self) -> u64 {
        let n = self.max_layers();
        let d = self.d_model.max();
        let h = self
            .n_head
            .values
            .iter()
            .copied()
            .filter(|&h| self.heads_fit(d, h))
            .max()
            .unwrap_or(1);
        self.bare_arch(n, d, self.d_inner.max(), h, h)
            .params()
            .decoder
    }

    /// A lower bound of decoder parameters over the space (smallest knobs; for Llama the
    /// smallest `n_kv_head / n_head` ratio the values allow).
    pub(super) fn min_decoder_params(&self) -> u64 {
        let (n, d, inner) = (self.n_layer.min(), self.d_model.min(), self.d_inner.min());
        let fitting = self.n_head.values.iter().copied();
        let h = fitting.filter(|&h| self.heads_fit(d, h)).min().unwrap_or(1);
        match (self.family.parts().shared_kv_heads, &self.n_kv_head) {
            (true, Some(kv)) => {
                let ratio = self
                    .n_head
                    .values
                    .iter()
                    .flat_map(|&h| {
                        kv.values
                            .iter()
                            .filter(move |&&v| h % v == 0)
                            .map(move |&v| v as f64 / h as f64)
                    })
                    .fold(1.0, f64::min);
                // Per layer: 2 norms + q and o (d x d each) + k and v (d x d x kv / h each)
                // + gate, up, down (d x inner each); plus the final norm.
                let (df, inner_f) = (d as f64, inner as f64);
                let layer = 2.0 * df + 2.0 * df * df + 2.0 * df * df * ratio + 3.0 * df * inner_f;
                (n as f64 * layer + df).floor() as u64
            }
            _ => self.bare_arch(n, d, inner, h, h).params().decoder,
        }
    }

    /// Two unvalidated archs with the largest value of every knob that together bound what any
    /// candidate of the space needs ([`crate::workload::estimate_memory`], part by part): the
    /// first with the largest head count that fits the largest `d_model` and `n_kv_head =
    /// n_head` (the most parameters, as [`SearchSpace::max_decoder_params`]), the second with
    /// the largest `n_head` value (the most attention scores).
    pub fn largest_archs(&self) -> [Arch; 2] {
        let (n, d, inner) = (self.max_layers(), self.d_model.max(), self.d_inner.max());
        let fit = self
            .n_head
            .values
            .iter()
            .copied()
            .filter(|&h| self.heads_fit(d, h))
            .max()
            .unwrap_or(1);
        let h = self.n_head.max();
        [
            self.bare_arch(n, d, inner, fit, fit),
            self.bare_arch(n, d, inner, h, h),
        ]
    }

    /// An arch with uniform layers, not validated (only used for parameter counts).
    pub(super) fn bare_arch(&self, n: usize, d: usize, inner: usize, h: usize, kv: usize) -> Arch {
        Arch {
            family: self.family,
            n_layer: n,
            d_model: d,
            d_inner: vec![inner; n],
            n_head: vec![h; n],
            n_kv_head: vec![kv; n],
            vocab_size: self.vocab_size,
            n_positions: self.n_positions,
            tie_embeddings: self.tie_embeddings,
            norm_eps: self.norm_eps,
            rope_theta: self.rope_theta,
        }
    }
}
