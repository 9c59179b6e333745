//! Candidates and the genetic operators of LTS: the [`Genome`] of a candidate, and uniform
//! sampling, mutation and uniform crossover over a [`SearchSpace`]'s knobs, each followed by
//! the deterministic repair that keeps every genome valid (see the parent module's
//! documentation), plus [`SearchSpace::contains`].

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::model::{Choice, SearchSpace};

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

/// A uniform draw in `[0, 1)`, the `np.random.uniform()` of archai's operators.
fn rng_unit(rng: &mut impl Rng) -> f64 {
    rng.random::<f64>()
}

impl Choice {
    /// A value drawn uniformly from the allowed ones.
    fn draw(&self, rng: &mut impl Rng) -> usize {
        self.values[rng.random_range(0..self.values.len())]
    }
}

impl SearchSpace {
    /// A uniformly random genome: every gene drawn uniformly from its knob's values (archai's
    /// `sample_random_population`), in the order `n_layer`, `d_model`, `d_inner` slots, `n_head`
    /// slots, `n_kv_head` slots, then repaired ([`crate::search::space`] documentation) so that
    /// its arch passes [`Arch::validate`](crate::arch::Arch::validate). The repair is
    /// deterministic, so one seed gives one sequence.
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

    /// The deterministic repair ([`crate::search::space`] documentation). Loading guarantees a
    /// candidate exists.
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::space::tests::{all_builtin, assert_valid, rng};

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
    fn shared_knobs_use_slot_zero() {
        let text = include_str!("../../../models/quick.toml").replace(", per_layer = true }", " }");
        let s = SearchSpace::parse(&text, "shared.toml").unwrap();
        let g = s.sample(&mut rng(3));
        assert_eq!((g.d_inner.len(), g.n_head.len()), (1, 1));
        let a = s.to_arch(&g).unwrap();
        assert!(a.d_inner.iter().all(|&x| x == g.d_inner[0]));
        assert!(a.n_head.iter().all(|&x| x == g.n_head[0]));
    }
}
