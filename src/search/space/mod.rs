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
//!
//! # Layout
//!
//! - `model.rs`: the data ([`SearchSpace`], [`Choice`], [`Constraints`], [`SearchDefaults`]),
//!   the gene slot layout, the head-size rule and the decoder-parameter bounds;
//! - `genome.rs`: [`Genome`] and the operators (sample, mutate, crossover, repair, contains);
//! - `parse.rs`: the file parser with spans;
//! - this file: loading (built-in names, files), [`SearchSpace::to_arch`], the constraint
//!   checks and the summary.

mod genome;
mod model;
mod parse;

use std::fmt::Write as _;
use std::path::Path;

use crate::arch::parts::Positions;
use crate::arch::{Arch, ArchError};

pub use genome::Genome;
pub use model::{Choice, Constraints, SearchDefaults, SearchSpace};

/// Names of the built-in search spaces (`models/<name>.toml`, compiled in).
pub const BUILTIN: &[&str] = &["quick", "gpt2-flex", "llama-flex"];

/// Genomes [`SearchSpace::check_admissible`] samples before it calls a space empty: as many as
/// a search tries for an initial population of about 15.
pub const ADMISSIBLE_SAMPLES: usize = 4096;

impl SearchSpace {
    /// A built-in space by name (see [`BUILTIN`]), parsed from `models/<name>.toml` compiled
    /// into the binary.
    pub fn builtin(name: &str) -> Option<SearchSpace> {
        let text = match name {
            "quick" => include_str!("../../../models/quick.toml"),
            "gpt2-flex" => include_str!("../../../models/gpt2-flex.toml"),
            "llama-flex" => include_str!("../../../models/llama-flex.toml"),
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
        let text = crate::util::read_regular_text(
            path,
            crate::util::MAX_CONFIG_BYTES,
            "search space file",
            crate::util::CONFIG_HINT,
        )?;
        SearchSpace::parse(&text, &path.display().to_string())
    }

    /// Parses and validates a search space given as TOML text; `origin` (the file name) starts
    /// every error message: `origin:LINE: message`.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<SearchSpace> {
        parse::from_toml(text, origin)
    }

    /// A built-in space if `name_or_path` is one of [`BUILTIN`], else the file at that path.
    pub fn resolve(name_or_path: &str) -> anyhow::Result<SearchSpace> {
        if let Some(s) = SearchSpace::builtin(name_or_path) {
            return Ok(s);
        }
        let path = Path::new(name_or_path);
        // Something else at that path (a directory, a FIFO) is named by `load`.
        if !path.exists() {
            anyhow::bail!(
                "unknown search space `{name_or_path}`: not a built-in space ({}) and no file at that path",
                BUILTIN.join(", ")
            );
        }
        SearchSpace::load(path)
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
        let n_kv_head = match (&self.n_kv_head, self.family.parts().shared_kv_heads) {
            (Some(kv), true) => layers(kv, &g.n_kv_head),
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
        let th = crate::util::format::thousands;
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
        let th = crate::util::format::thousands;
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
            if self.family.parts().positions == Positions::Rope {
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
        let th = crate::util::format::thousands;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Family;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    pub(super) fn rng(seed: u64) -> Xoshiro256PlusPlus {
        Xoshiro256PlusPlus::seed_from_u64(seed)
    }

    pub(super) fn all_builtin() -> Vec<SearchSpace> {
        BUILTIN
            .iter()
            .map(|n| SearchSpace::builtin(n).expect("built-in exists"))
            .collect()
    }

    /// The arch uses only values of the knobs, and the genome is inside the space.
    pub(super) fn assert_valid(s: &SearchSpace, g: &Genome) {
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
            include_str!("../../../models/quick.toml").replace("\"quick\"", "\"mine\""),
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

    pub(super) const BASE: &str = r#"name = "t"
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
