//! Search spaces: which architectures a search may propose, and how candidates are sampled,
//! mutated and crossed over.
//!
//! The space follows LiteTransformerSearch (LTS, Javaheripour et al., NeurIPS 2022) and its
//! reference implementation (microsoft/archai, branch `neurips-lts`, `hf_gpt2_flex`): a shared
//! `d_model`, a number of layers, and **per-layer** `d_inner` and `n_head` knobs. As in archai's
//! `Converter`, per-layer knobs are stored in `max_n_layer` gene slots of which only the first
//! `n_layer` are used, so a mutation of `n_layer` keeps the other genes meaningful.
//! The operators are archai's: uniform sampling of every gene, mutation that resamples each gene
//! with probability `prob` (LTS: 0.3), and uniform crossover taking each gene from the second
//! parent with probability `prob` (LTS: 0.5).
//!
//! Unlike the reference, every genome the operators return is *valid* (its [`Arch`] passes
//! [`Arch::validate`]): where a combination breaks a divisibility rule, the offending gene is
//! **repaired** deterministically (see [`SearchSpace::sample`]):
//! 1. each `n_head` gene that does not divide `d_model` (or, for Llama, gives an odd head size,
//!    which RoPE cannot rotate) becomes the nearest `n_head` value that does, ties to the smaller;
//! 2. (Llama) each `n_kv_head` gene that does not divide its layer's `n_head` becomes the nearest
//!    `n_kv_head` value that does, ties to the smaller (e.g. `n_kv_head` 4 with `n_head` 2 becomes
//!    2). A shared `n_kv_head` must divide the `n_head` of every slot.
//!
//! Loading rejects every value that can never be part of a valid architecture, so a repair always
//! has a value to pick.
//!
//! # File format
//!
//! A search space is a TOML file. Every key is checked: unknown keys, impossible values and
//! contradictions are errors of the form `FILE:LINE: message`.
//!
//! ```toml
//! name = "quick"                 # required: shown in reports
//! family = "gpt2"                # required: "gpt2" or "llama"
//! description = "small GPT-2 space for quick runs"   # optional
//!
//! [fixed]                        # Arch fields that do not vary
//! vocab_size = 10000             # required
//! n_positions = 256              # required (must cover the sequence length)
//! # tie_embeddings = true        # default true; must be true for gpt2
//! # norm_eps = 1e-5              # default 1e-5
//! # rope_theta = 10000.0         # llama only; default 10000
//!
//! [knobs]                        # each knob: `values = [...]` or `min`, `max`, `step` (default 1)
//! n_layer = { min = 1, max = 6, step = 1 }                     # shared only
//! d_model = { min = 64, max = 384, step = 64 }                 # shared only
//! d_inner = { min = 64, max = 1536, step = 64, per_layer = true }
//! n_head  = { values = [2, 4, 8], per_layer = true }
//! # n_kv_head = { values = [1, 2, 4], per_layer = true }       # llama only; default = n_head
//!
//! [constraints]                  # optional; checked BEFORE measuring:
//! decoder_params_min = 50_000    #   decoder (non-embedding) parameter range
//! decoder_params_max = 10_000_000
//! # d_inner_min_ratio = 1.7      #   every used d_inner[i] > ratio x d_model (LTS paper code)
//! # checked after measuring (stored here, applied by the search driver):
//! # max_latency_ms = 50.0
//! # max_memory_mb = 200.0
//!
//! [search]                       # optional defaults the command line can override
//! seq_len = 64
//! population = 24
//! iterations = 6
//! parents = 6
//! mutations = 10
//! crossovers = 10
//! ```
//!
//! A range `{ min, max, step }` means `min, min + step, ..., max`; `max` must be reached exactly
//! (a typo guard), and `step` defaults to 1. `per_layer = true` gives the knob one gene per layer
//! slot; `n_layer` and `d_model` cannot be per layer (an [`Arch`] has one `d_model`). Values must
//! be positive and distinct.
//!
//! Rules checked on load besides syntax and types: no unknown keys; no empty `values`;
//! `min <= max`; `step > 0`; `n_kv_head` and `rope_theta` only for `llama`; every `d_model` value
//! admits some `n_head` value and every `n_head` value some `d_model` value; (Llama) every
//! `n_head` value admits some `n_kv_head` value and vice versa, and a shared `n_kv_head` with
//! per-layer `n_head` can divide every head count usable with each `d_model`; constraint
//! `min <= max`; constraints that no architecture of the space can meet; `[search]` values > 0
//! and `seq_len <= n_positions`.
//!
//! Built-in spaces ([`BUILTIN`]) are the files in `models/`: `quick` (small GPT-2, the default),
//! `gpt2-flex` (the LTS GPT-2 space) and `llama-flex` (the same search for SmolLM2-style Llama).

use std::fmt::Write as _;
use std::ops::Range;
use std::path::Path;

use anyhow::{anyhow, Context};
use rand::Rng;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::arch::{Arch, ArchError, Family};

/// Names of the built-in search spaces (`models/<name>.toml`, compiled in).
pub const BUILTIN: &[&str] = &["quick", "gpt2-flex", "llama-flex"];

/// Genomes [`SearchSpace::check_admissible`] samples before it calls a space empty: as many as
/// a search tries for an initial population of about 15.
pub const ADMISSIBLE_SAMPLES: usize = 4096;

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

    fn draw(&self, rng: &mut impl Rng) -> usize {
        self.values[rng.random_range(0..self.values.len())]
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

/// A validated search space (see the module documentation for the file format).
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

/// A candidate's genes. Per-layer genes have [`SearchSpace::max_layers`] slots (as LTS/archai
/// store `max_n_layer` slots); only the first `n_layer` are used. Shared knobs
/// (`per_layer = false`) have one slot, slot 0, used for every layer. `n_kv_head` is empty when
/// the space has no `n_kv_head` knob (GPT-2, or Llama with multi-head attention).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Genome {
    /// Number of layers.
    pub n_layer: usize,
    /// Hidden size.
    pub d_model: usize,
    /// MLP inner size per slot.
    pub d_inner: Vec<usize>,
    /// Query heads per slot.
    pub n_head: Vec<usize>,
    /// Key/value heads per slot (empty when the space has no `n_kv_head` knob).
    pub n_kv_head: Vec<usize>,
}

/// The value in `candidates` closest to `target`, ties to the smaller.
fn nearest(candidates: impl Iterator<Item = usize>, target: usize) -> Option<usize> {
    candidates.min_by_key(|&c| (c.abs_diff(target), c))
}

impl SearchSpace {
    /// A built-in space by name (see [`BUILTIN`]), parsed from `models/<name>.toml` compiled
    /// into the binary.
    pub fn builtin(name: &str) -> Option<SearchSpace> {
        let text = match name {
            "quick" => include_str!("../../models/quick.toml"),
            "gpt2-flex" => include_str!("../../models/gpt2-flex.toml"),
            "llama-flex" => include_str!("../../models/llama-flex.toml"),
            _ => return None,
        };
        let origin = format!("models/{name}.toml");
        match SearchSpace::parse(text, &origin) {
            Ok(s) => Some(s),
            Err(e) => panic!("built-in search space {name} is invalid: {e:#}"),
        }
    }

    /// Reads and validates a search-space file; errors read `FILE:LINE: message`.
    pub fn load(path: &Path) -> anyhow::Result<SearchSpace> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read search space file {}", path.display()))?;
        SearchSpace::parse(&text, &path.display().to_string())
    }

    /// Parses and validates a search space given as TOML text; `origin` (the file name) starts
    /// every error message: `origin:LINE: message`.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<SearchSpace> {
        let src = Source { text, origin };
        // Syntax first, so a syntax error keeps toml's own line/column report.
        if let Err(e) = toml::from_str::<toml::Table>(text) {
            let line = e.span().map(|s| src.line(&s)).unwrap_or(1);
            return Err(anyhow!(
                "{origin}:{line}: invalid TOML: {}",
                e.to_string().trim_end()
            ));
        }
        let raw: RawSpace = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| src.line(&s)).unwrap_or(1);
            anyhow!("{origin}:{line}: {}", e.message().trim_end())
        })?;
        build(raw, &src)
    }

    /// A built-in space if `name_or_path` is one of [`BUILTIN`], else the file at that path.
    pub fn resolve(name_or_path: &str) -> anyhow::Result<SearchSpace> {
        if let Some(s) = SearchSpace::builtin(name_or_path) {
            return Ok(s);
        }
        let path = Path::new(name_or_path);
        if !path.is_file() {
            anyhow::bail!(
                "unknown search space `{name_or_path}`: not a built-in space ({}) and no file at that path",
                BUILTIN.join(", ")
            );
        }
        SearchSpace::load(path)
    }

    /// Number of layer slots of a per-layer gene: the largest `n_layer` value.
    pub fn max_layers(&self) -> usize {
        self.n_layer.max()
    }

    /// Slots of a knob in a [`Genome`]: `max_layers()` per layer, else 1.
    fn slots(&self, c: &Choice) -> usize {
        if c.per_layer {
            self.max_layers()
        } else {
            1
        }
    }

    /// The knobs stored per slot, in gene order: `d_inner`, `n_head`, then `n_kv_head` if any.
    fn per_slot_knobs(&self) -> Vec<&Choice> {
        let mut v = vec![&self.d_inner, &self.n_head];
        if let Some(kv) = &self.n_kv_head {
            v.push(kv);
        }
        v
    }

    /// Whether `h` query heads work with hidden size `d`: `d % h == 0`, and for Llama an even
    /// head size (RoPE rotates pairs).
    fn heads_fit(&self, d: usize, h: usize) -> bool {
        h > 0 && d.is_multiple_of(h) && (self.family != Family::Llama || (d / h).is_multiple_of(2))
    }

    /// A uniformly random genome: every gene drawn uniformly from its knob's values (archai's
    /// `sample_random_population`), in the order `n_layer`, `d_model`, `d_inner` slots, `n_head`
    /// slots, `n_kv_head` slots, then repaired (module documentation) so that its arch passes
    /// [`Arch::validate`]. The repair is deterministic, so one seed gives one sequence.
    /// Constraints ([`SearchSpace::check_static`]) are not applied here.
    pub fn sample(&self, rng: &mut impl Rng) -> Genome {
        let n_layer = self.n_layer.draw(rng);
        let d_model = self.d_model.draw(rng);
        let mut slots = self
            .per_slot_knobs()
            .into_iter()
            .map(|c| (0..self.slots(c)).map(|_| c.draw(rng)).collect::<Vec<_>>());
        let d_inner = slots.next().unwrap_or_default();
        let n_head = slots.next().unwrap_or_default();
        let n_kv_head = slots.next().unwrap_or_default();
        let mut g = Genome {
            n_layer,
            d_model,
            d_inner,
            n_head,
            n_kv_head,
        };
        self.repair(&mut g);
        g
    }

    /// LTS mutation: each gene (every slot counts as one gene) is resampled uniformly from its
    /// knob's values with probability `prob` (LTS: 0.3), as archai's `_mutation`; the result is
    /// repaired to be valid. With `prob == 0` a valid parent is returned unchanged.
    pub fn mutate(&self, g: &Genome, prob: f64, rng: &mut impl Rng) -> Genome {
        let mut out = self.fit(g);
        let gene = |c: &Choice, v: &mut usize, rng: &mut _| {
            if rng_unit(rng) < prob {
                *v = c.draw(rng);
            }
        };
        gene(&self.n_layer, &mut out.n_layer, rng);
        gene(&self.d_model, &mut out.d_model, rng);
        for v in out.d_inner.iter_mut() {
            gene(&self.d_inner, v, rng);
        }
        for v in out.n_head.iter_mut() {
            gene(&self.n_head, v, rng);
        }
        if let Some(kv) = &self.n_kv_head {
            for v in out.n_kv_head.iter_mut() {
                gene(kv, v, rng);
            }
        }
        self.repair(&mut out);
        out
    }

    /// LTS uniform crossover: each gene (every slot counts as one gene) comes from `b` with
    /// probability `prob` (LTS: 0.5), else from `a`, as archai's `_crossover`; the result is
    /// repaired to be valid. `prob == 0` returns `a`, `prob == 1` returns `b` (when valid).
    pub fn crossover(&self, a: &Genome, b: &Genome, prob: f64, rng: &mut impl Rng) -> Genome {
        let (a, b) = (self.fit(a), self.fit(b));
        let mut pick = |x: usize, y: usize| if rng_unit(rng) < prob { y } else { x };
        let n_layer = pick(a.n_layer, b.n_layer);
        let d_model = pick(a.d_model, b.d_model);
        let mut zip = |x: &[usize], y: &[usize]| -> Vec<usize> {
            x.iter().zip(y).map(|(&p, &q)| pick(p, q)).collect()
        };
        let d_inner = zip(&a.d_inner, &b.d_inner);
        let n_head = zip(&a.n_head, &b.n_head);
        let n_kv_head = zip(&a.n_kv_head, &b.n_kv_head);
        let mut out = Genome {
            n_layer,
            d_model,
            d_inner,
            n_head,
            n_kv_head,
        };
        self.repair(&mut out);
        out
    }

    /// Brings a genome to this space's shape: slot counts as [`SearchSpace::max_layers`] says
    /// (missing slots copy slot 0), every value mapped to the nearest allowed one. A genome
    /// made by this space is returned unchanged.
    fn fit(&self, g: &Genome) -> Genome {
        let near = |c: &Choice, v: usize| nearest(c.values.iter().copied(), v).unwrap_or(v);
        let shape = |c: &Choice, v: &[usize]| -> Vec<usize> {
            let first = v.first().copied().unwrap_or_else(|| c.min());
            (0..self.slots(c))
                .map(|i| near(c, v.get(i).copied().unwrap_or(first)))
                .collect()
        };
        Genome {
            n_layer: near(&self.n_layer, g.n_layer),
            d_model: near(&self.d_model, g.d_model),
            d_inner: shape(&self.d_inner, &g.d_inner),
            n_head: shape(&self.n_head, &g.n_head),
            n_kv_head: match &self.n_kv_head {
                Some(kv) => shape(kv, &g.n_kv_head),
                None => Vec::new(),
            },
        }
    }

    /// The deterministic repair (module documentation). Loading guarantees a candidate exists.
    fn repair(&self, g: &mut Genome) {
        let d = g.d_model;
        for h in g.n_head.iter_mut() {
            if !self.heads_fit(d, *h) {
                let fits = self.n_head.values.iter().copied();
                if let Some(v) = nearest(fits.filter(|&c| self.heads_fit(d, c)), *h) {
                    *h = v;
                }
            }
        }
        let Some(kv) = &self.n_kv_head else { return };
        let heads = &g.n_head;
        if kv.per_layer {
            for (i, v) in g.n_kv_head.iter_mut().enumerate() {
                let h = heads[if self.n_head.per_layer { i } else { 0 }];
                if !h.is_multiple_of(*v) {
                    let ok = kv.values.iter().copied().filter(|&c| h.is_multiple_of(c));
                    if let Some(n) = nearest(ok, *v) {
                        *v = n;
                    }
                }
            }
        } else if let Some(v) = g.n_kv_head.first_mut() {
            let divides_all = |c: usize| heads.iter().all(|&h| h % c == 0);
            if !divides_all(*v) {
                let ok = kv.values.iter().copied().filter(|&c| divides_all(c));
                if let Some(n) = nearest(ok, *v) {
                    *v = n;
                }
            }
        }
    }

    /// Whether every gene of `g` is one of its knob's values and every gene vector has the
    /// slot count this space uses.
    pub fn contains(&self, g: &Genome) -> bool {
        let genes_ok =
            |c: &Choice, v: &[usize]| v.len() == self.slots(c) && v.iter().all(|&x| c.contains(x));
        self.n_layer.contains(g.n_layer)
            && self.d_model.contains(g.d_model)
            && genes_ok(&self.d_inner, &g.d_inner)
            && genes_ok(&self.n_head, &g.n_head)
            && match &self.n_kv_head {
                Some(kv) => genes_ok(kv, &g.n_kv_head),
                None => g.n_kv_head.is_empty(),
            }
    }

    /// The architecture of a genome: the fixed fields plus the genes of the first `n_layer`
    /// slots (slot 0 for shared knobs); unused slots have no effect. Fails when the arch breaks
    /// a rule of [`Arch::validate`] (never for a genome made by this space's operators).
    pub fn to_arch(&self, g: &Genome) -> Result<Arch, ArchError> {
        let n = g.n_layer;
        let layers = |c: &Choice, v: &[usize]| -> Vec<usize> {
            (0..n)
                .filter_map(|i| v.get(if c.per_layer { i } else { 0 }).copied())
                .collect()
        };
        let n_head = layers(&self.n_head, &g.n_head);
        let n_kv_head = match (&self.n_kv_head, self.family) {
            (Some(kv), Family::Llama) => layers(kv, &g.n_kv_head),
            _ => n_head.clone(),
        };
        let arch = Arch {
            family: self.family,
            n_layer: n,
            d_model: g.d_model,
            d_inner: layers(&self.d_inner, &g.d_inner),
            n_head,
            n_kv_head,
            vocab_size: self.vocab_size,
            n_positions: self.n_positions,
            tie_embeddings: self.tie_embeddings,
            norm_eps: self.norm_eps,
            rope_theta: self.rope_theta,
        };
        arch.validate()?;
        Ok(arch)
    }

    /// Checks the constraints that need no measurement: the decoder-parameter range
    /// (`decoder_params_min`/`decoder_params_max`) and `d_inner_min_ratio` (every layer's
    /// `d_inner > ratio x d_model`, strict as in the LTS paper code). The message names the
    /// constraint and the values.
    pub fn check_static(&self, arch: &Arch) -> Result<(), String> {
        let c = &self.constraints;
        let p = arch.params().decoder;
        let th = crate::report::format::thousands;
        if let Some(min) = c.decoder_params_min {
            if p < min {
                return Err(format!(
                    "decoder_params_min: {} decoder parameters < decoder_params_min {}",
                    th(p),
                    th(min)
                ));
            }
        }
        if let Some(max) = c.decoder_params_max {
            if p > max {
                return Err(format!(
                    "decoder_params_max: {} decoder parameters > decoder_params_max {}",
                    th(p),
                    th(max)
                ));
            }
        }
        if let Some(r) = c.d_inner_min_ratio {
            let bound = r * arch.d_model as f64;
            if let Some(i) = arch.d_inner.iter().position(|&x| x as f64 <= bound) {
                return Err(format!(
                    "d_inner_min_ratio: layer {i} has d_inner {} <= {r} x d_model {} = {bound}",
                    arch.d_inner[i], arch.d_model
                ));
            }
        }
        Ok(())
    }

    /// Checks that a search of this space can propose anything: draws [`ADMISSIBLE_SAMPLES`]
    /// genomes with [`SearchSpace::sample`] and a fixed seed, and succeeds at the first whose
    /// arch the search would admit ([`SearchSpace::check_static`] and
    /// [`Arch::check_size`]`(max_params)`, as the search filters its candidates). When none is
    /// admissible the error says why: how many were over `max_params` (and the smallest total
    /// seen), how many broke each constraint (and the decoder-parameter range seen).
    ///
    /// A space whose admissible share is far below `1 / ADMISSIBLE_SAMPLES` can be refused
    /// although it holds an admissible arch; its search, which samples its initial population
    /// the same way, would find next to nothing either.
    pub fn check_admissible(&self, max_params: u64) -> anyhow::Result<()> {
        use rand::SeedableRng;
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(0);
        let (mut invalid, mut too_large) = (0usize, 0usize);
        let (mut below, mut above, mut ratio) = (0usize, 0usize, 0usize);
        let mut smallest_total = u64::MAX;
        let (mut least_decoder, mut most_decoder) = (u64::MAX, 0u64);
        for _ in 0..ADMISSIBLE_SAMPLES {
            let Ok(arch) = self.to_arch(&self.sample(&mut rng)) else {
                invalid += 1;
                continue;
            };
            let statically = self.check_static(&arch);
            let sized = arch.check_size(max_params);
            if statically.is_ok() && sized.is_ok() {
                return Ok(());
            }
            let p = arch.params();
            smallest_total = smallest_total.min(p.total);
            least_decoder = least_decoder.min(p.decoder);
            most_decoder = most_decoder.max(p.decoder);
            too_large += usize::from(sized.is_err());
            match statically {
                Err(e) if e.starts_with("decoder_params_min") => below += 1,
                Err(e) if e.starts_with("decoder_params_max") => above += 1,
                Err(_) => ratio += 1,
                Ok(()) => {}
            }
        }
        let th = crate::report::format::thousands;
        let c = &self.constraints;
        let mut why = Vec::new();
        if too_large > 0 {
            why.push(format!(
                "{} over the limit of {} total parameters{} (smallest seen: {})",
                th(too_large as u64),
                th(max_params),
                if max_params == crate::arch::DEFAULT_MAX_PARAMS {
                    ", which keeps an fp32 ONNX file below protobuf's 2 GiB"
                } else {
                    ""
                },
                th(smallest_total)
            ));
        }
        if let (true, Some(min)) = (below > 0, c.decoder_params_min) {
            why.push(format!(
                "{} below decoder_params_min {}",
                th(below as u64),
                th(min)
            ));
        }
        if let (true, Some(max)) = (above > 0, c.decoder_params_max) {
            why.push(format!(
                "{} above decoder_params_max {}",
                th(above as u64),
                th(max)
            ));
        }
        if let (true, Some(r)) = (ratio > 0, c.d_inner_min_ratio) {
            why.push(format!(
                "{} with a d_inner not above d_inner_min_ratio {r} x d_model",
                th(ratio as u64)
            ));
        }
        if invalid > 0 {
            why.push(format!("{} invalid", th(invalid as u64)));
        }
        let range = if least_decoder <= most_decoder {
            format!(
                "; decoder parameters seen: {} to {}",
                th(least_decoder),
                th(most_decoder)
            )
        } else {
            String::new()
        };
        anyhow::bail!(
            "search space `{}` has no admissible architecture: of {} genomes sampled, none passes: {}{range}; widen the knobs or the constraints",
            self.name,
            th(ADMISSIBLE_SAMPLES as u64),
            why.join(", ")
        )
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
    fn min_decoder_params(&self) -> u64 {
        let (n, d, inner) = (self.n_layer.min(), self.d_model.min(), self.d_inner.min());
        let fitting = self.n_head.values.iter().copied();
        let h = fitting.filter(|&h| self.heads_fit(d, h)).min().unwrap_or(1);
        match (self.family, &self.n_kv_head) {
            (Family::Llama, Some(kv)) => {
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
    fn bare_arch(&self, n: usize, d: usize, inner: usize, h: usize, kv: usize) -> Arch {
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

    /// Multi-line human description of the space (family, fixed fields, knobs, constraints).
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{} ({}): {}", self.name, self.family, self.description);
        let _ = writeln!(
            s,
            "  fixed: vocab_size {}, n_positions {}, tie_embeddings {}, norm_eps {}{}",
            self.vocab_size,
            self.n_positions,
            self.tie_embeddings,
            self.norm_eps,
            if self.family == Family::Llama {
                format!(", rope_theta {}", self.rope_theta)
            } else {
                String::new()
            }
        );
        let mut knobs = vec![
            ("n_layer", &self.n_layer),
            ("d_model", &self.d_model),
            ("d_inner", &self.d_inner),
            ("n_head", &self.n_head),
        ];
        if let Some(kv) = &self.n_kv_head {
            knobs.push(("n_kv_head", kv));
        }
        for (name, c) in knobs {
            let _ = writeln!(s, "  {name}: {}", c.describe());
        }
        let c = &self.constraints;
        let th = crate::report::format::thousands;
        let mut cons = Vec::new();
        match (c.decoder_params_min, c.decoder_params_max) {
            (None, None) => {}
            (lo, hi) => cons.push(format!(
                "decoder params {}..{}",
                lo.map(th).unwrap_or_default(),
                hi.map(th).unwrap_or_default()
            )),
        }
        if let Some(r) = c.d_inner_min_ratio {
            cons.push(format!("d_inner > {r} x d_model"));
        }
        if let Some(m) = c.max_latency_ms {
            cons.push(format!("latency <= {m} ms"));
        }
        if let Some(m) = c.max_memory_mb {
            cons.push(format!("memory <= {m} MiB"));
        }
        if !cons.is_empty() {
            let _ = writeln!(s, "  constraints: {}", cons.join(", "));
        }
        let _ = writeln!(
            s,
            "  decoder params up to {} (largest of every knob)",
            th(self.max_decoder_params())
        );
        s
    }
}

/// A uniform draw in `[0, 1)`, the `np.random.uniform()` of archai's operators.
fn rng_unit(rng: &mut impl Rng) -> f64 {
    rng.random::<f64>()
}

// ---------------------------------------------------------------------------------------------
// Parsing: the raw file with spans, then validation.

/// Text and name of the file being parsed.
struct Source<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Source<'_> {
    /// 1-based line of a byte offset range's start.
    fn line(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn err(&self, span: &Range<usize>, msg: impl std::fmt::Display) -> anyhow::Error {
        anyhow!("{}:{}: {msg}", self.origin, self.line(span))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpace {
    name: Spanned<String>,
    family: Spanned<Family>,
    #[serde(default)]
    description: Option<String>,
    fixed: Spanned<RawFixed>,
    knobs: Spanned<RawKnobs>,
    #[serde(default)]
    constraints: Option<RawConstraints>,
    #[serde(default)]
    search: Option<RawSearch>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFixed {
    vocab_size: Spanned<usize>,
    n_positions: Spanned<usize>,
    #[serde(default)]
    tie_embeddings: Option<Spanned<bool>>,
    #[serde(default)]
    norm_eps: Option<Spanned<f64>>,
    #[serde(default)]
    rope_theta: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKnobs {
    n_layer: Spanned<RawKnob>,
    d_model: Spanned<RawKnob>,
    d_inner: Spanned<RawKnob>,
    n_head: Spanned<RawKnob>,
    #[serde(default)]
    n_kv_head: Option<Spanned<RawKnob>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKnob {
    #[serde(default)]
    values: Option<Spanned<Vec<usize>>>,
    #[serde(default)]
    min: Option<Spanned<usize>>,
    #[serde(default)]
    max: Option<Spanned<usize>>,
    #[serde(default)]
    step: Option<Spanned<usize>>,
    #[serde(default)]
    per_layer: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConstraints {
    #[serde(default)]
    decoder_params_min: Option<Spanned<u64>>,
    #[serde(default)]
    decoder_params_max: Option<Spanned<u64>>,
    #[serde(default)]
    d_inner_min_ratio: Option<Spanned<f64>>,
    #[serde(default)]
    max_latency_ms: Option<Spanned<f64>>,
    #[serde(default)]
    max_memory_mb: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSearch {
    #[serde(default)]
    seq_len: Option<Spanned<usize>>,
    #[serde(default)]
    population: Option<Spanned<usize>>,
    #[serde(default)]
    iterations: Option<Spanned<usize>>,
    #[serde(default)]
    parents: Option<Spanned<usize>>,
    #[serde(default)]
    mutations: Option<Spanned<usize>>,
    #[serde(default)]
    crossovers: Option<Spanned<usize>>,
}

/// Most values a range may expand to (a guard against `max = 1e9, step = 1`).
const MAX_RANGE_VALUES: usize = 100_000;

/// Expands and checks one knob.
fn knob(
    name: &str,
    k: &Spanned<RawKnob>,
    may_be_per_layer: bool,
    src: &Source,
) -> anyhow::Result<Choice> {
    let span = k.span();
    let r = k.get_ref();
    let per_layer = match &r.per_layer {
        Some(p) if *p.get_ref() && !may_be_per_layer => {
            return Err(src.err(
                &p.span(),
                format!("`{name}` cannot be per layer (an arch has one {name})"),
            ));
        }
        Some(p) => *p.get_ref(),
        None => false,
    };
    let values = match (&r.values, &r.min, &r.max) {
        (Some(v), None, None) => {
            if let Some(s) = &r.step {
                return Err(src.err(
                    &s.span(),
                    format!("`{name}`: `step` goes with `min` and `max`, not with `values`"),
                ));
            }
            let mut vals = v.get_ref().clone();
            if vals.is_empty() {
                return Err(src.err(
                    &v.span(),
                    format!("`{name}`: `values` is empty; give at least one value"),
                ));
            }
            vals.sort_unstable();
            if let Some(w) = vals.windows(2).find(|w| w[0] == w[1]) {
                return Err(src.err(
                    &v.span(),
                    format!(
                        "`{name}`: value {} appears more than once in `values`",
                        w[0]
                    ),
                ));
            }
            if vals[0] == 0 {
                return Err(src.err(&v.span(), format!("`{name}`: values must be > 0 (got 0)")));
            }
            vals
        }
        (Some(v), _, _) => {
            return Err(src.err(
                &v.span(),
                format!("`{name}`: give either `values` or `min`/`max`/`step`, not both"),
            ));
        }
        (None, Some(lo), Some(hi)) => {
            let (min, max) = (*lo.get_ref(), *hi.get_ref());
            let step = r.step.as_ref().map(|s| *s.get_ref()).unwrap_or(1);
            if step == 0 {
                let s = r.step.as_ref().map(|s| s.span()).unwrap_or(span.clone());
                return Err(src.err(&s, format!("`{name}`: step must be > 0 (got 0)")));
            }
            if min == 0 {
                return Err(src.err(&lo.span(), format!("`{name}`: min must be > 0 (got 0)")));
            }
            if min > max {
                return Err(src.err(&lo.span(), format!("`{name}`: min {min} > max {max}")));
            }
            if (max - min) / step >= MAX_RANGE_VALUES {
                return Err(src.err(&hi.span(), format!("`{name}`: the range has more than {MAX_RANGE_VALUES} values; use a larger step")));
            }
            if (max - min) % step != 0 {
                let last = min + (max - min) / step * step;
                return Err(src.err(
                    &hi.span(),
                    format!("`{name}`: max {max} is not min {min} plus a multiple of step {step}; the last value would be {last}, so set max = {last}"),
                ));
            }
            (min..=max).step_by(step).collect()
        }
        (None, Some(_), None) | (None, None, Some(_)) => {
            return Err(src.err(
                &span,
                format!("`{name}`: a range needs both `min` and `max`"),
            ));
        }
        (None, None, None) => {
            return Err(src.err(
                &span,
                format!("`{name}`: give `values = [...]` or `min`, `max` (and `step`)"),
            ));
        }
    };
    if let Some((limit, why)) = crate::arch::size_bound(name) {
        if let Some(&v) = values.iter().find(|&&v| v > limit) {
            return Err(src.err(
                &span,
                format!("`{name}`: value {v} is above the bound of {limit} ({why})"),
            ));
        }
    }
    Ok(Choice { values, per_layer })
}

/// Validates the raw file into a [`SearchSpace`]; every error names a line.
fn build(raw: RawSpace, src: &Source) -> anyhow::Result<SearchSpace> {
    let family = *raw.family.get_ref();
    if raw.name.get_ref().trim().is_empty() {
        return Err(src.err(&raw.name.span(), "`name` is empty"));
    }

    // [fixed]
    let fixed = raw.fixed.get_ref();
    for (key, v) in [
        ("vocab_size", &fixed.vocab_size),
        ("n_positions", &fixed.n_positions),
    ] {
        if *v.get_ref() == 0 {
            return Err(src.err(&v.span(), format!("`{key}` must be > 0 (got 0)")));
        }
    }
    let tie_embeddings = match &fixed.tie_embeddings {
        Some(t) if !*t.get_ref() && family == Family::Gpt2 => {
            return Err(src.err(
                &t.span(),
                "gpt2 ties the LM head to the token embedding: tie_embeddings must be true",
            ));
        }
        Some(t) => *t.get_ref(),
        None => true,
    };
    let norm_eps = match &fixed.norm_eps {
        Some(e) => {
            let v = *e.get_ref();
            if !(v.is_finite() && v > 0.0 && v < 1.0) {
                return Err(src.err(&e.span(), format!("`norm_eps` must be in (0, 1) (got {v})")));
            }
            v
        }
        None => 1e-5,
    };
    let rope_theta = match &fixed.rope_theta {
        Some(t) if family != Family::Llama => {
            return Err(src.err(
                &t.span(),
                format!("`rope_theta` is for the llama family only (this space is {family})"),
            ));
        }
        Some(t) => {
            let v = *t.get_ref();
            if !(v.is_finite() && v > 1.0) {
                return Err(src.err(
                    &t.span(),
                    format!("`rope_theta` must be a finite number > 1 (got {v})"),
                ));
            }
            v
        }
        None => 10_000.0,
    };

    for (key, v) in [
        ("vocab_size", &fixed.vocab_size),
        ("n_positions", &fixed.n_positions),
    ] {
        if let Some((limit, why)) = crate::arch::size_bound(key) {
            if *v.get_ref() > limit {
                return Err(src.err(
                    &v.span(),
                    format!(
                        "`{key}` = {} is above the bound of {limit} ({why})",
                        v.get_ref()
                    ),
                ));
            }
        }
    }

    // [knobs]
    let k = raw.knobs.get_ref();
    let n_layer = knob("n_layer", &k.n_layer, false, src)?;
    let d_model = knob("d_model", &k.d_model, false, src)?;
    let d_inner = knob("d_inner", &k.d_inner, true, src)?;
    let n_head = knob("n_head", &k.n_head, true, src)?;
    let n_kv_head = match &k.n_kv_head {
        Some(kv) if family != Family::Llama => {
            return Err(src.err(
                &kv.span(),
                format!("`n_kv_head` is for the llama family only ({family} uses multi-head attention: n_kv_head = n_head)"),
            ));
        }
        Some(kv) => Some(knob("n_kv_head", kv, true, src)?),
        None => None,
    };

    let mut space = SearchSpace {
        name: raw.name.get_ref().clone(),
        description: raw.description.unwrap_or_default(),
        family,
        vocab_size: *fixed.vocab_size.get_ref(),
        n_positions: *fixed.n_positions.get_ref(),
        tie_embeddings,
        norm_eps,
        rope_theta,
        n_layer,
        d_model,
        d_inner,
        n_head,
        n_kv_head,
        constraints: Constraints::default(),
        search: SearchDefaults::default(),
    };

    // Values that can never make a valid arch.
    let rule = if family == Family::Llama {
        "d_model must be divisible by n_head with an even head size for RoPE"
    } else {
        "d_model must be divisible by n_head"
    };
    let fits_any = |h: usize| space.d_model.values.iter().any(|&d| space.heads_fit(d, h));
    if !space.n_head.values.iter().any(|&h| fits_any(h)) {
        return Err(src.err(
            &k.n_head.span(),
            format!(
                "no n_head value {:?} fits any d_model value ({rule})",
                space.n_head.values
            ),
        ));
    }
    for &h in &space.n_head.values {
        if !fits_any(h) {
            return Err(src.err(
                &k.n_head.span(),
                format!("n_head value {h} works with no d_model value ({rule})"),
            ));
        }
    }
    for &d in &space.d_model.values {
        if !space.n_head.values.iter().any(|&h| space.heads_fit(d, h)) {
            return Err(src.err(
                &k.d_model.span(),
                format!(
                    "d_model value {d} works with no n_head value {:?} ({rule})",
                    space.n_head.values
                ),
            ));
        }
    }
    if let (Some(kv), Some(kv_raw)) = (&space.n_kv_head, &k.n_kv_head) {
        for &h in &space.n_head.values {
            if !kv.values.iter().any(|&v| h % v == 0) {
                return Err(src.err(
                    &kv_raw.span(),
                    format!("no n_kv_head value {:?} divides n_head value {h} (n_head must be divisible by n_kv_head)", kv.values),
                ));
            }
        }
        for &v in &kv.values {
            if !space.n_head.values.iter().any(|&h| h % v == 0) {
                return Err(src.err(
                    &kv_raw.span(),
                    format!("n_kv_head value {v} divides no n_head value {:?} (n_head must be divisible by n_kv_head)", space.n_head.values),
                ));
            }
        }
        if !kv.per_layer && space.n_head.per_layer {
            for &d in &space.d_model.values {
                let usable: Vec<usize> = space
                    .n_head
                    .values
                    .iter()
                    .copied()
                    .filter(|&h| space.heads_fit(d, h))
                    .collect();
                if !kv
                    .values
                    .iter()
                    .any(|&v| usable.iter().all(|&h| h % v == 0))
                {
                    return Err(src.err(
                        &kv_raw.span(),
                        format!(
                            "n_kv_head is shared by all layers but no value {:?} divides every per-layer n_head {usable:?} usable with d_model {d}; set per_layer = true or add such a value",
                            kv.values
                        ),
                    ));
                }
            }
        }
    }

    // [constraints]
    if let Some(c) = &raw.constraints {
        let (lo, hi) = (&c.decoder_params_min, &c.decoder_params_max);
        if let (Some(lo), Some(hi)) = (lo, hi) {
            if lo.get_ref() > hi.get_ref() {
                return Err(src.err(
                    &lo.span(),
                    format!(
                        "decoder_params_min {} > decoder_params_max {}",
                        lo.get_ref(),
                        hi.get_ref()
                    ),
                ));
            }
        }
        let th = crate::report::format::thousands;
        if let Some(lo) = lo {
            let most = space.max_decoder_params();
            if *lo.get_ref() > most {
                return Err(src.err(
                    &lo.span(),
                    format!("decoder_params_min {} is above the largest architecture of the space ({} decoder parameters): no candidate can meet it", th(*lo.get_ref()), th(most)),
                ));
            }
        }
        if let Some(hi) = hi {
            let least = space.min_decoder_params();
            if *hi.get_ref() < least {
                return Err(src.err(
                    &hi.span(),
                    format!("decoder_params_max {} is below the smallest architecture of the space ({} decoder parameters): no candidate can meet it", th(*hi.get_ref()), th(least)),
                ));
            }
        }
        if let Some(r) = &c.d_inner_min_ratio {
            let v = *r.get_ref();
            if !(v.is_finite() && v >= 0.0) {
                return Err(src.err(
                    &r.span(),
                    format!("d_inner_min_ratio must be a finite number >= 0 (got {v})"),
                ));
            }
            if space.d_inner.max() as f64 <= v * space.d_model.min() as f64 {
                return Err(src.err(
                    &r.span(),
                    format!(
                        "d_inner_min_ratio {v}: no d_inner value exceeds {v} x the smallest d_model {}; no candidate can meet it",
                        space.d_model.min()
                    ),
                ));
            }
        }
        for (key, v) in [
            ("max_latency_ms", &c.max_latency_ms),
            ("max_memory_mb", &c.max_memory_mb),
        ] {
            if let Some(v) = v {
                let x = *v.get_ref();
                if !(x.is_finite() && x > 0.0) {
                    return Err(src.err(
                        &v.span(),
                        format!("{key} must be a finite number > 0 (got {x})"),
                    ));
                }
            }
        }
        space.constraints = Constraints {
            decoder_params_min: lo.as_ref().map(|v| *v.get_ref()),
            decoder_params_max: hi.as_ref().map(|v| *v.get_ref()),
            d_inner_min_ratio: c.d_inner_min_ratio.as_ref().map(|v| *v.get_ref()),
            max_latency_ms: c.max_latency_ms.as_ref().map(|v| *v.get_ref()),
            max_memory_mb: c.max_memory_mb.as_ref().map(|v| *v.get_ref()),
        };
    }

    // [search]
    if let Some(s) = &raw.search {
        let fields = [
            ("seq_len", &s.seq_len),
            ("population", &s.population),
            ("iterations", &s.iterations),
            ("parents", &s.parents),
            ("mutations", &s.mutations),
            ("crossovers", &s.crossovers),
        ];
        for (key, v) in fields {
            if let Some(v) = v {
                if *v.get_ref() == 0 {
                    return Err(src.err(&v.span(), format!("[search] {key} must be > 0 (got 0)")));
                }
            }
        }
        if let Some(v) = &s.seq_len {
            if *v.get_ref() > space.n_positions {
                return Err(src.err(
                    &v.span(),
                    format!(
                        "[search] seq_len {} exceeds n_positions {}",
                        v.get_ref(),
                        space.n_positions
                    ),
                ));
            }
        }
        let get = |v: &Option<Spanned<usize>>| v.as_ref().map(|v| *v.get_ref());
        space.search = SearchDefaults {
            seq_len: get(&s.seq_len),
            population: get(&s.population),
            iterations: get(&s.iterations),
            parents: get(&s.parents),
            mutations: get(&s.mutations),
            crossovers: get(&s.crossovers),
        };
    }
    Ok(space)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    fn rng(seed: u64) -> Xoshiro256PlusPlus {
        Xoshiro256PlusPlus::seed_from_u64(seed)
    }

    fn all_builtin() -> Vec<SearchSpace> {
        BUILTIN
            .iter()
            .map(|n| SearchSpace::builtin(n).expect("built-in exists"))
            .collect()
    }

    /// The arch uses only values of the knobs, and the genome is inside the space.
    fn assert_valid(s: &SearchSpace, g: &Genome) {
        assert!(
            s.contains(g),
            "{}: genome outside the knob choices: {g:?}",
            s.name
        );
        let a = s
            .to_arch(g)
            .unwrap_or_else(|e| panic!("{}: invalid arch from {g:?}: {e}", s.name));
        a.validate().unwrap();
        assert!(a.d_inner.iter().all(|&x| s.d_inner.contains(x)));
        assert!(a.n_head.iter().all(|&x| s.n_head.contains(x)));
        if let Some(kv) = &s.n_kv_head {
            assert!(a.n_kv_head.iter().all(|&x| kv.contains(x)));
        } else {
            assert_eq!(a.n_kv_head, a.n_head);
        }
        assert!(a.params().decoder <= s.max_decoder_params());
        assert!(a.params().decoder >= s.min_decoder_params());
    }

    #[test]
    fn builtins_parse_with_the_documented_settings() {
        let q = SearchSpace::builtin("quick").unwrap();
        assert_eq!(q.family, Family::Gpt2);
        assert_eq!((q.vocab_size, q.n_positions), (10000, 256));
        assert_eq!(q.n_layer.values, (1..=6).collect::<Vec<_>>());
        assert_eq!(q.d_model.values, vec![64, 128, 192, 256, 320, 384]);
        assert!(q.d_inner.per_layer && q.n_head.per_layer && !q.d_model.per_layer);
        assert_eq!(q.search.population, Some(24));
        assert_eq!(q.search.seq_len, Some(64));
        assert_eq!(q.constraints.decoder_params_max, Some(10_000_000));

        let g = SearchSpace::builtin("gpt2-flex").unwrap();
        assert_eq!((g.vocab_size, g.n_positions), (50257, 1024));
        assert_eq!((g.n_layer.min(), g.n_layer.max()), (2, 16));
        assert_eq!((g.d_model.min(), g.d_model.max()), (128, 960));
        assert_eq!(
            (g.d_inner.min(), g.d_inner.max(), g.d_inner.values.len()),
            (128, 4032, 62)
        );
        assert_eq!(g.n_head.values, vec![2, 4, 8]);
        assert_eq!(g.constraints.d_inner_min_ratio, Some(1.7));
        assert_eq!(
            (
                g.constraints.decoder_params_min,
                g.constraints.decoder_params_max
            ),
            (Some(6_000_000), Some(100_000_000))
        );
        let lts = SearchDefaults {
            seq_len: Some(192),
            population: Some(100),
            iterations: Some(30),
            parents: Some(20),
            mutations: Some(40),
            crossovers: Some(40),
        };
        assert_eq!(g.search, lts);

        let l = SearchSpace::builtin("llama-flex").unwrap();
        assert_eq!(l.family, Family::Llama);
        assert_eq!((l.vocab_size, l.n_positions), (49152, 2048));
        assert!(l.tie_embeddings);
        assert_eq!(l.rope_theta, 100_000.0);
        assert_eq!(l.n_kv_head.as_ref().unwrap().values, vec![1, 2, 4]);
        assert_eq!(l.search, lts);

        assert!(SearchSpace::builtin("nope").is_none());
        for s in all_builtin() {
            assert!(!s.summary().is_empty());
        }
    }

    #[test]
    fn resolve_takes_names_then_paths() {
        assert_eq!(SearchSpace::resolve("quick").unwrap().name, "quick");
        let e = SearchSpace::resolve("no-such-space")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("quick") && e.contains("gpt2-flex") && e.contains("llama-flex"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("mine.toml");
        std::fs::write(
            &p,
            include_str!("../../models/quick.toml").replace("\"quick\"", "\"mine\""),
        )
        .unwrap();
        assert_eq!(
            SearchSpace::resolve(p.to_str().unwrap()).unwrap().name,
            "mine"
        );
        // A load error names the file.
        std::fs::write(&p, "name = \"x\"\nfamily = \"gpt3\"\n").unwrap();
        let e = SearchSpace::load(&p).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:2:", p.display())), "{e}");
    }

    #[test]
    fn operators_always_give_valid_genomes_inside_the_choices() {
        for s in all_builtin() {
            let mut r = rng(7);
            let mut pool: Vec<Genome> = (0..2000).map(|_| s.sample(&mut r)).collect();
            for g in &pool {
                assert_valid(&s, g);
            }
            for i in 0..2000 {
                let a = &pool[i];
                let b = &pool[(i * 7 + 3) % pool.len()];
                let m = s.mutate(a, 0.3, &mut r);
                assert_valid(&s, &m);
                let c = s.crossover(a, b, 0.5, &mut r);
                assert_valid(&s, &c);
                let m1 = s.mutate(&c, 1.0, &mut r);
                assert_valid(&s, &m1);
                pool.push(m1);
            }
        }
    }

    #[test]
    fn llama_repair_keeps_kv_heads_dividing_heads() {
        let s = SearchSpace::builtin("llama-flex").unwrap();
        let mut g = s.sample(&mut rng(1));
        g.n_head = vec![2; s.max_layers()];
        g.n_kv_head = vec![4; s.max_layers()];
        // to_arch rejects the raw genome ...
        assert!(s.to_arch(&g).is_err());
        // ... and every operator repairs it: 4 -> nearest divisor of 2 among {1, 2, 4} = 2.
        let m = s.mutate(&g, 0.0, &mut rng(2));
        assert_eq!(m.n_kv_head, vec![2; s.max_layers()]);
        assert_valid(&s, &m);
        // A d_model / n_head pair with an odd head size is repaired too (custom space).
        let text = r#"
name = "odd"
family = "llama"
[fixed]
vocab_size = 100
n_positions = 64
[knobs]
n_layer = { values = [2] }
d_model = { values = [48, 64] }
d_inner = { values = [64] }
n_head = { values = [4, 8], per_layer = true }
n_kv_head = { values = [1, 2] }
"#;
        let s = SearchSpace::parse(text, "odd.toml").unwrap();
        let mut r = rng(3);
        for _ in 0..500 {
            let g = s.sample(&mut r);
            assert_valid(&s, &g);
            if g.d_model == 48 {
                // 48 / 8 = 6 is even, 48 / 4 = 12 is even: both allowed.
                assert!(g.n_head.iter().all(|&h| h == 4 || h == 8));
            }
        }
    }

    #[test]
    fn odd_head_sizes_are_repaired_to_the_nearest_fitting_value() {
        let text = r#"
name = "fit"
family = "gpt2"
[fixed]
vocab_size = 100
n_positions = 64
[knobs]
n_layer = { values = [3] }
d_model = { values = [96, 128] }
d_inner = { values = [64] }
n_head = { values = [3, 4, 8], per_layer = true }
"#;
        let s = SearchSpace::parse(text, "fit.toml").unwrap();
        let g = Genome {
            n_layer: 3,
            d_model: 128,
            d_inner: vec![64; 3],
            n_head: vec![3, 4, 8],
            n_kv_head: vec![],
        };
        let m = s.mutate(&g, 0.0, &mut rng(0));
        assert_eq!(
            m.n_head,
            vec![4, 4, 8],
            "3 does not divide 128: nearest fitting value is 4"
        );
        let mut r = rng(5);
        for _ in 0..500 {
            assert_valid(&s, &s.sample(&mut r));
        }
    }

    #[test]
    fn mutation_probability_zero_and_one() {
        let s = SearchSpace::builtin("gpt2-flex").unwrap();
        let mut r = rng(11);
        let genes = 2 + 2 * s.max_layers();
        let mut changed = 0usize;
        let trials = 300;
        for _ in 0..trials {
            let g = s.sample(&mut r);
            assert_eq!(s.mutate(&g, 0.0, &mut r), g);
            let m = s.mutate(&g, 1.0, &mut r);
            changed += usize::from(m.n_layer != g.n_layer) + usize::from(m.d_model != g.d_model);
            changed += m
                .d_inner
                .iter()
                .zip(&g.d_inner)
                .filter(|(a, b)| a != b)
                .count();
            changed += m
                .n_head
                .iter()
                .zip(&g.n_head)
                .filter(|(a, b)| a != b)
                .count();
        }
        let frac = changed as f64 / (trials * genes) as f64;
        // Resampling keeps a gene with probability 1/|values|: d_inner 61/62, n_head 2/3 ...
        assert!(frac > 0.7, "prob 1 changed only {frac:.2} of the genes");
        // prob 0.3 changes about 0.3 x that.
        let mut changed3 = 0usize;
        for _ in 0..trials {
            let g = s.sample(&mut r);
            let m = s.mutate(&g, 0.3, &mut r);
            changed3 += m
                .d_inner
                .iter()
                .zip(&g.d_inner)
                .filter(|(a, b)| a != b)
                .count();
        }
        let f3 = changed3 as f64 / (trials * s.max_layers()) as f64;
        assert!(
            (0.22..0.37).contains(&f3),
            "prob 0.3 changed {f3:.2} of d_inner genes"
        );
    }

    #[test]
    fn crossover_probability_zero_and_one() {
        for s in all_builtin() {
            let mut r = rng(13);
            for _ in 0..200 {
                let a = s.sample(&mut r);
                let b = s.sample(&mut r);
                assert_eq!(s.crossover(&a, &b, 0.0, &mut r), a);
                assert_eq!(s.crossover(&a, &b, 1.0, &mut r), b);
                let c = s.crossover(&a, &b, 0.5, &mut r);
                for (i, x) in c.d_inner.iter().enumerate() {
                    assert!(*x == a.d_inner[i] || *x == b.d_inner[i]);
                }
                assert!(c.d_model == a.d_model || c.d_model == b.d_model);
            }
        }
    }

    #[test]
    fn same_seed_same_sequence() {
        let s = SearchSpace::builtin("llama-flex").unwrap();
        let run = |seed| {
            let mut r = rng(seed);
            let mut out = Vec::new();
            for _ in 0..50 {
                let a = s.sample(&mut r);
                let b = s.sample(&mut r);
                out.push(s.mutate(&a, 0.3, &mut r));
                out.push(s.crossover(&a, &b, 0.5, &mut r));
            }
            out
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn unused_slots_do_not_change_the_arch() {
        for s in all_builtin() {
            let mut r = rng(17);
            for _ in 0..100 {
                let g = s.sample(&mut r);
                let a = s.to_arch(&g).unwrap();
                assert_eq!(a.n_layer, g.n_layer);
                let mut h = g.clone();
                for i in g.n_layer..s.max_layers() {
                    h.d_inner[i] = s.d_inner.values[(i * 5) % s.d_inner.values.len()];
                    h.n_head[i] = 2;
                    if !h.n_kv_head.is_empty() {
                        h.n_kv_head[i] = 1;
                    }
                }
                assert_eq!(s.to_arch(&h).unwrap(), a);
                assert_eq!(s.to_arch(&h).unwrap().id(), a.id());
            }
        }
    }

    #[test]
    fn shared_knobs_use_slot_zero() {
        let text = include_str!("../../models/quick.toml").replace(", per_layer = true }", " }");
        let s = SearchSpace::parse(&text, "shared.toml").unwrap();
        let g = s.sample(&mut rng(3));
        assert_eq!((g.d_inner.len(), g.n_head.len()), (1, 1));
        let a = s.to_arch(&g).unwrap();
        assert!(a.d_inner.iter().all(|&x| x == g.d_inner[0]));
        assert!(a.n_head.iter().all(|&x| x == g.n_head[0]));
    }

    #[test]
    fn check_static_names_the_constraint() {
        let s = SearchSpace::builtin("gpt2-flex").unwrap();
        let big = s.bare_arch(16, 960, 4032, 8, 8);
        big.validate().unwrap();
        let e = s.check_static(&big).unwrap_err();
        assert!(
            e.contains("decoder_params_max") && e.contains("100,000,000"),
            "{e}"
        );
        let small = s.bare_arch(2, 128, 256, 2, 2);
        let e = s.check_static(&small).unwrap_err();
        assert!(e.contains("decoder_params_min"), "{e}");
        let thin = s.bare_arch(8, 512, 512, 8, 8);
        let e = s.check_static(&thin).unwrap_err();
        assert!(e.contains("d_inner_min_ratio") && e.contains("512"), "{e}");
        // 1.7 x 640 = 1088 exactly: the paper code's rule is strict.
        assert!(s.check_static(&s.bare_arch(8, 640, 1088, 8, 8)).is_err());
        assert!(s.check_static(&s.bare_arch(8, 640, 1152, 8, 8)).is_ok());
    }

    #[test]
    fn max_decoder_params_bounds_the_space() {
        for s in all_builtin() {
            let mut r = rng(19);
            let max = s.max_decoder_params();
            for _ in 0..2000 {
                let a = s.to_arch(&s.sample(&mut r)).unwrap();
                assert!(a.params().decoder <= max);
            }
        }
        // The largest gpt2-flex arch is above the 100M constraint, so the constraint matters.
        let g = SearchSpace::builtin("gpt2-flex").unwrap();
        let largest = g.bare_arch(16, 960, 4032, 8, 8);
        assert_eq!(g.max_decoder_params(), largest.params().decoder);
        assert!(largest.params().decoder > 100_000_000);
        // Llama: n_kv_head = n_head gives the most parameters.
        let l = SearchSpace::builtin("llama-flex").unwrap();
        assert!(l.max_decoder_params() > l.bare_arch(16, 960, 2816, 8, 4).params().decoder);
        assert!(l.max_decoder_params() > 100_000_000);
    }

    #[test]
    fn constraints_leave_room_for_candidates() {
        // Rejection sampling against check_static, as the driver does, finds candidates.
        for s in all_builtin() {
            let mut r = rng(23);
            let ok = (0..4000)
                .filter(|_| {
                    s.check_static(&s.to_arch(&s.sample(&mut r)).unwrap())
                        .is_ok()
                })
                .count();
            assert!(
                ok > 100,
                "{}: only {ok} of 4000 random genomes meet the constraints",
                s.name
            );
        }
    }

    #[test]
    fn check_admissible_explains_an_empty_space() {
        for s in all_builtin() {
            s.check_admissible(crate::arch::DEFAULT_MAX_PARAMS)
                .unwrap_or_else(|e| panic!("{}: {e:#}", s.name));
        }
        // One layer of d_model 64 (25 K to 82 K decoder parameters) or 256 (297 K to 527 K).
        let gap = SearchSpace::parse(
            &BASE
                .replace(
                    "n_layer = { min = 1, max = 4 }",
                    "n_layer = { values = [1] }",
                )
                .replace(
                    "d_model = { min = 64, max = 256, step = 64 }",
                    "d_model = { values = [64, 256] }",
                )
                .replace(
                    "decoder_params_max = 10_000_000",
                    "decoder_params_min = 100_000\ndecoder_params_max = 200_000",
                ),
            "gap.toml",
        )
        .unwrap();
        let e = gap.check_admissible(u64::MAX).unwrap_err().to_string();
        for needle in [
            "`t` has no admissible architecture",
            "4,096 genomes",
            "below decoder_params_min 100,000",
            "above decoder_params_max 200,000",
        ] {
            assert!(e.contains(needle), "{needle}: {e}");
        }
        assert!(!e.contains("over the limit"), "{e}");
        // The same space under a total-parameter limit below its smallest arch.
        let base = SearchSpace::parse(BASE, "t.toml").unwrap();
        base.check_admissible(u64::MAX).unwrap();
        let e = base.check_admissible(1000).unwrap_err().to_string();
        assert!(
            e.contains("4,096 over the limit of 1,000 total parameters (smallest seen: "),
            "{e}"
        );
    }

    const BASE: &str = r#"name = "t"
family = "gpt2"
[fixed]
vocab_size = 100
n_positions = 64
[knobs]
n_layer = { min = 1, max = 4 }
d_model = { min = 64, max = 256, step = 64 }
d_inner = { min = 64, max = 512, step = 64, per_layer = true }
n_head = { values = [2, 4], per_layer = true }
[constraints]
decoder_params_max = 10_000_000
[search]
seq_len = 32
"#;

    /// Parses `BASE` with one line replaced (or appended) and returns the error.
    fn parse_err(find: &str, replace: &str) -> String {
        assert!(BASE.contains(find), "bad test: {find}");
        let text = BASE.replacen(find, replace, 1);
        match SearchSpace::parse(&text, "bad.toml") {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => format!("{e:#}"),
        }
    }

    fn line_of(needle: &str, text: &str) -> usize {
        text.lines().position(|l| l.contains(needle)).unwrap() + 1
    }

    #[test]
    fn base_is_valid() {
        let s = SearchSpace::parse(BASE, "t.toml").unwrap();
        assert_eq!(s.n_layer.values, vec![1, 2, 3, 4]);
        assert!(s.n_kv_head.is_none());
    }

    #[test]
    fn invalid_files_name_file_and_line() {
        // (replace this, with this, expect this line (1-based) and this text in the message)
        let cases: &[(&str, &str, usize, &str)] = &[
            (
                "vocab_size = 100",
                "vocab_size = 100\nvocab_sise = 5",
                5,
                "unknown field `vocab_sise`",
            ),
            (
                "step = 64, per_layer",
                "step = 0, per_layer",
                9,
                "step must be > 0",
            ),
            (
                "n_layer = { min = 1, max = 4 }",
                "n_layer = { min = 5, max = 4 }",
                7,
                "min 5 > max 4",
            ),
            (
                "n_head = { values = [2, 4], per_layer = true }",
                "n_head = { values = [], per_layer = true }",
                10,
                "`values` is empty",
            ),
            (
                "n_head = { values = [2, 4], per_layer = true }",
                "n_head = { values = [2, 4], per_layer = true }\nn_kv_head = { values = [1, 2] }",
                11,
                "llama family only",
            ),
            (
                "n_layer = { min = 1, max = 4 }",
                "n_layer = { min = 0, max = 4 }",
                7,
                "min must be > 0",
            ),
            (
                "n_head = { values = [2, 4]",
                "n_head = { values = [5, 7]",
                10,
                "no n_head value [5, 7] fits any d_model value",
            ),
            (
                "n_head = { values = [2, 4]",
                "n_head = { values = [3, 5]",
                10,
                "n_head value 5 works with no d_model",
            ),
            (
                "d_model = { min = 64, max = 256, step = 64 }",
                "d_model = { values = [64, 99] }",
                8,
                "d_model value 99 works with no n_head value",
            ),
            (
                "n_head = { values = [2, 4]",
                "n_head = { values = [2, 7]",
                10,
                "n_head value 7 works with no d_model",
            ),
            (
                "d_model = { min = 64, max = 256, step = 64 }",
                "d_model = { min = 64, max = 250, step = 64 }",
                8,
                "set max = 192",
            ),
            (
                "d_model = { min = 64, max = 256, step = 64 }",
                "d_model = { min = 64, max = 256, step = 64, per_layer = true }",
                8,
                "cannot be per layer",
            ),
            (
                "d_model = { min = 64, max = 256, step = 64 }",
                "d_model = { values = [64], min = 64, max = 256 }",
                8,
                "not both",
            ),
            (
                "d_model = { min = 64, max = 256, step = 64 }",
                "d_model = { max = 256 }",
                8,
                "needs both",
            ),
            (
                "d_model = { min = 64, max = 256, step = 64 }",
                "d_model = { min = -64, max = 256 }",
                8,
                "invalid value",
            ),
            (
                "n_head = { values = [2, 4]",
                "n_head = { values = [2, 2]",
                10,
                "more than once",
            ),
            (
                "n_head = { values = [2, 4], per_layer = true }",
                "n_head = { values = [2, 4], per_layr = true }",
                10,
                "unknown field `per_layr`",
            ),
            (
                "decoder_params_max = 10_000_000",
                "decoder_params_min = 20\ndecoder_params_max = 10",
                12,
                "decoder_params_min 20 > decoder_params_max 10",
            ),
            (
                "decoder_params_max = 10_000_000",
                "decoder_params_max = 10",
                12,
                "below the smallest architecture",
            ),
            (
                "decoder_params_max = 10_000_000",
                "decoder_params_min = 1_000_000_000",
                12,
                "above the largest architecture",
            ),
            (
                "decoder_params_max = 10_000_000",
                "max_latency_ms = -1.0",
                12,
                "max_latency_ms must be",
            ),
            (
                "decoder_params_max = 10_000_000",
                "d_inner_min_ratio = 9.0",
                12,
                "no candidate can meet it",
            ),
            (
                "seq_len = 32",
                "population = 0",
                14,
                "population must be > 0",
            ),
            (
                "seq_len = 32",
                "seq_len = 100",
                14,
                "exceeds n_positions 64",
            ),
            (
                "seq_len = 32",
                "seq_len = 32\ntemperature = 3",
                15,
                "unknown field `temperature`",
            ),
            (
                "n_positions = 64",
                "n_positions = 64\nrope_theta = 10000.0",
                6,
                "llama family only",
            ),
            (
                "n_positions = 64",
                "n_positions = 64\ntie_embeddings = false",
                6,
                "tie_embeddings must be true",
            ),
            (
                "n_positions = 64",
                "n_positions = 0",
                5,
                "`n_positions` must be > 0",
            ),
            (
                "family = \"gpt2\"",
                "family = \"bert\"",
                2,
                "unknown variant",
            ),
            ("[search]", "[serach]", 13, "unknown field `serach`"),
            ("name = \"t\"\n", "", 1, "missing field `name`"),
        ];
        for (find, replace, line, text) in cases {
            let e = parse_err(find, replace);
            let prefix = format!("bad.toml:{line}: ");
            assert!(
                e.starts_with(&prefix),
                "expected `{prefix}...{text}`, got: {e}"
            );
            assert!(e.contains(text), "expected `{text}` in: {e}");
        }
    }

    #[test]
    fn syntax_errors_keep_tomls_line_and_column() {
        let text = BASE.replace("vocab_size = 100", "vocab_size = = 100");
        let e = SearchSpace::parse(&text, "bad.toml")
            .unwrap_err()
            .to_string();
        let line = line_of("vocab_size", &text);
        assert!(
            e.starts_with(&format!("bad.toml:{line}: invalid TOML")),
            "{e}"
        );
        assert!(e.contains(&format!("line {line}, column")), "{e}");
    }

    #[test]
    fn llama_specific_rules() {
        let llama = BASE
            .replace("family = \"gpt2\"", "family = \"llama\"")
            .replace(
                "n_head = { values = [2, 4], per_layer = true }",
                "n_head = { values = [2, 4], per_layer = true }\nn_kv_head = { values = [1, 2], per_layer = true }",
            );
        let s = SearchSpace::parse(&llama, "l.toml").unwrap();
        assert_eq!(s.n_kv_head.as_ref().unwrap().values, vec![1, 2]);
        let mut r = rng(29);
        for _ in 0..500 {
            assert_valid(&s, &s.sample(&mut r));
        }
        // A kv value dividing no head count can never be valid.
        let bad = llama.replace("values = [1, 2], per_layer", "values = [1, 3], per_layer");
        let e = SearchSpace::parse(&bad, "l.toml").unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("l.toml:{}:", line_of("n_kv_head", &bad))),
            "{e}"
        );
        assert!(
            e.contains("n_kv_head value 3 divides no n_head value"),
            "{e}"
        );
        // A shared kv that cannot divide every per-layer head count.
        let bad = llama
            .replace(
                "values = [2, 4], per_layer = true }",
                "values = [3, 4], per_layer = true }",
            )
            .replace("min = 64, max = 256, step = 64", "values = [192]")
            .replace("values = [1, 2], per_layer = true", "values = [3, 4]");
        let e = SearchSpace::parse(&bad, "l.toml").unwrap_err().to_string();
        assert!(e.contains("shared by all layers"), "{e}");
        // Odd head sizes are rejected for llama: 96 / 4 = 24 fine, but 96 with only 32 heads -> 3.
        let bad = llama
            .replace("min = 64, max = 256, step = 64", "values = [96]")
            .replace(
                "values = [2, 4], per_layer = true }",
                "values = [32], per_layer = true }",
            )
            .replace("values = [1, 2], per_layer = true", "values = [1]");
        let e = SearchSpace::parse(&bad, "l.toml").unwrap_err().to_string();
        assert!(e.contains("even head size"), "{e}");
    }

    #[test]
    fn roundtrips_through_json() {
        for s in all_builtin() {
            let j = serde_json::to_string(&s).unwrap();
            let back: SearchSpace = serde_json::from_str(&j).unwrap();
            assert_eq!(back, s);
            let g = s.sample(&mut rng(1));
            let gj = serde_json::to_string(&g).unwrap();
            assert_eq!(serde_json::from_str::<Genome>(&gj).unwrap(), g);
        }
    }
}
