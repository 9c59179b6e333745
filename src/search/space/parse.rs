//! The search-space file parser: the TOML file read with spans ([`Source`], the `Raw*`
//! tables), then checked section by section (`[fixed]`, `[knobs]` and the head rules between
//! knobs, `[constraints]`, `[search]`) into a [`SearchSpace`]. Every error names the file and
//! line (`FILE:LINE: message`); the file format is documented on the parent module.

use std::ops::Range;

use anyhow::anyhow;
use serde::Deserialize;
use toml::Spanned;

use super::model::{Choice, Constraints, SearchDefaults, SearchSpace};
use crate::arch::parts::Positions;
use crate::arch::Family;

/// Parses and validates a search space given as TOML text; `origin` (the file name) starts
/// every error message: `origin:LINE: message`.
pub(super) fn from_toml(text: &str, origin: &str) -> anyhow::Result<SearchSpace> {
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

/// Validates the raw file into a [`SearchSpace`], one section after the other; every error
/// names a line.
fn build(raw: RawSpace, src: &Source) -> anyhow::Result<SearchSpace> {
    let family = *raw.family.get_ref();
    if raw.name.get_ref().trim().is_empty() {
        return Err(src.err(&raw.name.span(), "`name` is empty"));
    }
    let fixed = fixed(raw.fixed.get_ref(), family, src)?;
    let k = raw.knobs.get_ref();
    let mut space = SearchSpace {
        name: raw.name.get_ref().clone(),
        description: raw.description.unwrap_or_default(),
        family,
        vocab_size: fixed.vocab_size,
        n_positions: fixed.n_positions,
        tie_embeddings: fixed.tie_embeddings,
        norm_eps: fixed.norm_eps,
        rope_theta: fixed.rope_theta,
        n_layer: knob("n_layer", &k.n_layer, false, src)?,
        d_model: knob("d_model", &k.d_model, false, src)?,
        d_inner: knob("d_inner", &k.d_inner, true, src)?,
        n_head: knob("n_head", &k.n_head, true, src)?,
        n_kv_head: kv_knob(k, family, src)?,
        constraints: Constraints::default(),
        search: SearchDefaults::default(),
    };
    head_rules(&space, k, src)?;
    kv_head_rules(&space, k, src)?;
    if let Some(c) = &raw.constraints {
        space.constraints = constraints(&space, c, src)?;
    }
    if let Some(s) = &raw.search {
        space.search = search(&space, s, src)?;
    }
    Ok(space)
}

/// The checked `[fixed]` table.
struct Fixed {
    vocab_size: usize,
    n_positions: usize,
    tie_embeddings: bool,
    norm_eps: f64,
    rope_theta: f64,
}

/// Checks `[fixed]`: sizes > 0 and within the arch bounds, `tie_embeddings` (true for GPT-2),
/// `norm_eps` in (0, 1), `rope_theta` (Llama only) > 1; fills in the defaults.
fn fixed(fixed: &RawFixed, family: Family, src: &Source) -> anyhow::Result<Fixed> {
    for (key, v) in [
        ("vocab_size", &fixed.vocab_size),
        ("n_positions", &fixed.n_positions),
    ] {
        if *v.get_ref() == 0 {
            return Err(src.err(&v.span(), format!("`{key}` must be > 0 (got 0)")));
        }
    }
    let tie_embeddings = match &fixed.tie_embeddings {
        Some(t) if !*t.get_ref() && family.parts().head_always_tied => {
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
        Some(t) if family.parts().positions != Positions::Rope => {
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
    Ok(Fixed {
        vocab_size: *fixed.vocab_size.get_ref(),
        n_positions: *fixed.n_positions.get_ref(),
        tie_embeddings,
        norm_eps,
        rope_theta,
    })
}

/// The `n_kv_head` knob of `[knobs]`, which only Llama may have.
fn kv_knob(k: &RawKnobs, family: Family, src: &Source) -> anyhow::Result<Option<Choice>> {
    Ok(match &k.n_kv_head {
        Some(kv) if !family.parts().shared_kv_heads => {
            return Err(src.err(
                &kv.span(),
                format!("`n_kv_head` is for the llama family only ({family} uses multi-head attention: n_kv_head = n_head)"),
            ));
        }
        Some(kv) => Some(knob("n_kv_head", kv, true, src)?),
        None => None,
    })
}

/// Rejects `n_head` and `d_model` values that can never make a valid arch: each must fit some
/// value of the other (divisibility, and for Llama an even head size).
fn head_rules(space: &SearchSpace, k: &RawKnobs, src: &Source) -> anyhow::Result<()> {
    let rule = if space.family.parts().positions == Positions::Rope {
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
    Ok(())
}

/// (Llama) Rejects `n_kv_head` values that can never make a valid arch: each must divide some
/// `n_head` value and each `n_head` value must have a divisor among them; a shared `n_kv_head`
/// with per-layer `n_head` must divide every head count usable with each `d_model`.
fn kv_head_rules(space: &SearchSpace, k: &RawKnobs, src: &Source) -> anyhow::Result<()> {
    let (Some(kv), Some(kv_raw)) = (&space.n_kv_head, &k.n_kv_head) else {
        return Ok(());
    };
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
    Ok(())
}

/// Checks `[constraints]` against each other and against the space: a range no architecture
/// of the space can meet is an error.
fn constraints(
    space: &SearchSpace,
    c: &RawConstraints,
    src: &Source,
) -> anyhow::Result<Constraints> {
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
    let th = crate::util::format::thousands;
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
    Ok(Constraints {
        decoder_params_min: lo.as_ref().map(|v| *v.get_ref()),
        decoder_params_max: hi.as_ref().map(|v| *v.get_ref()),
        d_inner_min_ratio: c.d_inner_min_ratio.as_ref().map(|v| *v.get_ref()),
        max_latency_ms: c.max_latency_ms.as_ref().map(|v| *v.get_ref()),
        max_memory_mb: c.max_memory_mb.as_ref().map(|v| *v.get_ref()),
    })
}

/// Checks `[search]`: every value > 0 and `seq_len <= n_positions`.
fn search(space: &SearchSpace, s: &RawSearch, src: &Source) -> anyhow::Result<SearchDefaults> {
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
    Ok(SearchDefaults {
        seq_len: get(&s.seq_len),
        population: get(&s.population),
        iterations: get(&s.iterations),
        parents: get(&s.parents),
        mutations: get(&s.mutations),
        crossovers: get(&s.crossovers),
    })
}

#[cfg(test)]
mod tests {
    use crate::search::space::tests::{assert_valid, rng, BASE};
    use crate::search::space::SearchSpace;

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

    /// Parses `BASE` with each `(replace this, with this)` and checks that the error starts with
    /// `bad.toml:LINE: ` (1-based) and contains the text.
    fn assert_errors(cases: &[(&str, &str, usize, &str)]) {
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
    fn invalid_knobs_name_file_and_line() {
        // (replace this, with this, expect this line (1-based) and this text in the message)
        assert_errors(&[
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
        ]);
    }

    #[test]
    fn invalid_files_name_file_and_line() {
        // (replace this, with this, expect this line (1-based) and this text in the message)
        assert_errors(&[
            (
                "vocab_size = 100",
                "vocab_size = 100\nvocab_sise = 5",
                5,
                "unknown field `vocab_sise`",
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
        ]);
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
}
