//! Model description: the decoder-only architecture a candidate is built from.
//!
//! Two families are supported:
//! - [`Family::Gpt2`]: GPT-2 (Radford et al. 2019) as in LiteTransformerSearch's "gpt2-flex" space
//!   (Javaheripour et al., NeurIPS 2022): learned positions, pre-LN LayerNorm, GELU (tanh) MLP,
//!   multi-head attention with biases, **per-layer `d_inner[i]` and `n_head[i]`**, shared `d_model`,
//!   tied input/output embedding.
//! - [`Family::Llama`]: Llama (Touvron et al. 2023) as used by SmolLM2: RMSNorm, SwiGLU MLP, rotary
//!   positions (RoPE, HF "rotate half" convention), grouped-query attention (per-layer `n_head[i]`
//!   and `n_kv_head[i]`), no biases, optionally tied embeddings.
//!
//! An [`Arch`] is plain serde data (JSON or TOML) so a host can send it to a board. It is validated
//! whenever it is built or loaded: a violation names the field and the rule.
//! Per-layer fields may be written as one number (the same for every layer) or as a list.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub mod parts;

/// Default upper bound on total parameters: an fp32 ONNX file must stay below protobuf's 2 GiB
/// limit (we do not emit external-data files), so 500 M parameters (2.0 GB) is the ceiling.
pub const DEFAULT_MAX_PARAMS: u64 = 500_000_000;

/// Hard upper bound on `n_layer`, checked before anything is sized from it (per-layer lists are
/// expanded only below it). The deepest published decoders are far below: GPT-3 175B has 96
/// blocks, Llama-3.1-405B 126; 1024 leaves an 8x margin. Unlike `--max-params` it cannot be
/// raised: it is what keeps every size derived from an arch inside `u64` (see [`Arch::params`]).
pub const MAX_LAYERS: usize = 1024;

/// Hard upper bound on `d_model`: GPT-3 175B uses 12 288, Llama-3.1-405B 16 384; 65 536 is 4x
/// the widest published decoder.
pub const MAX_D_MODEL: usize = 65_536;

/// Hard upper bound on each `d_inner[i]`: Llama-3.1-405B's MLP is 53 248 wide, GPT-3's 49 152
/// (4 x 12 288); 262 144 is about 5x the widest.
pub const MAX_D_INNER: usize = 262_144;

/// Hard upper bound on `vocab_size`: Gemma's 256 000 tokens (262 144 in Gemma 3) is the largest
/// common vocabulary, Llama 3 has 128 256; 2 097 152 (2^21) is 8x Gemma's.
pub const MAX_VOCAB: usize = 1 << 21;

/// Hard upper bound on `n_positions`: Llama 3.1 reads 131 072 positions, the longest-context
/// models about 10^6; 1 048 576 (2^20) covers them.
pub const MAX_POSITIONS: usize = 1 << 20;

/// Which decoder family an [`Arch`] belongs to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// GPT-2: LayerNorm, GELU MLP, learned positions, MHA with biases, tied embeddings.
    Gpt2,
    /// Llama: RMSNorm, SwiGLU MLP, RoPE, grouped-query attention, no biases.
    Llama,
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::Gpt2 => "gpt2",
            Family::Llama => "llama",
        })
    }
}

/// A validated decoder-only architecture. Per-layer vectors have exactly `n_layer` entries.
///
/// Build one with [`Arch::from_json`], [`Arch::from_toml`], [`Arch::load`] or [`Arch::preset`];
/// deserializing always validates (see [`ArchSpec`] for the accepted file format).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(try_from = "ArchSpec")]
pub struct Arch {
    /// Decoder family.
    pub family: Family,
    /// Number of transformer blocks.
    pub n_layer: usize,
    /// Hidden size shared by every block.
    pub d_model: usize,
    /// Per-layer MLP inner size (GPT-2 `n_inner`, Llama `intermediate_size`).
    pub d_inner: Vec<usize>,
    /// Per-layer number of query heads; `d_model % n_head[i] == 0`.
    pub n_head: Vec<usize>,
    /// Per-layer number of key/value heads (grouped-query attention); equals `n_head` for GPT-2.
    pub n_kv_head: Vec<usize>,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Maximum sequence length (GPT-2: rows of the learned position table; Llama:
    /// `max_position_embeddings`).
    pub n_positions: usize,
    /// Whether the LM head reuses the token embedding (always true for GPT-2).
    pub tie_embeddings: bool,
    /// Epsilon of LayerNorm / RMSNorm.
    pub norm_eps: f64,
    /// RoPE base (Llama only; ignored for GPT-2).
    pub rope_theta: f64,
}

/// A per-layer value in a file: one number for all layers, or one per layer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum PerLayer {
    /// The same value for every layer.
    All(usize),
    /// One value per layer (length must be `n_layer`).
    Each(Vec<usize>),
}

/// The on-disk form of an [`Arch`]: the same fields, with per-layer fields as [`PerLayer`] and
/// defaults for the optional ones. Unknown fields are rejected so typos do not pass silently.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct ArchSpec {
    /// Decoder family (`gpt2` or `llama`).
    pub family: Family,
    /// Number of transformer blocks.
    pub n_layer: usize,
    /// Hidden size.
    pub d_model: usize,
    /// MLP inner size, one value or one per layer.
    pub d_inner: PerLayer,
    /// Query heads, one value or one per layer.
    pub n_head: PerLayer,
    /// Key/value heads (Llama), one value or one per layer; defaults to `n_head`.
    #[serde(default)]
    pub n_kv_head: Option<PerLayer>,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Maximum sequence length.
    pub n_positions: usize,
    /// Tie LM head to the token embedding (default true; must be true for GPT-2).
    #[serde(default)]
    pub tie_embeddings: Option<bool>,
    /// Norm epsilon (default 1e-5, as GPT-2 and SmolLM2).
    #[serde(default)]
    pub norm_eps: Option<f64>,
    /// RoPE base (default 10000).
    #[serde(default)]
    pub rope_theta: Option<f64>,
}

/// Why an architecture is invalid. Every variant names the field, the rule and a fix.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ArchError {
    /// A size that must be positive is zero.
    #[error("`{field}` must be > 0 (got 0)")]
    Zero {
        /// Offending field (with layer index where relevant).
        field: String,
    },
    /// A per-layer list has the wrong length.
    #[error("`{field}` has {got} entries but n_layer is {n_layer}: give one value per layer, or a single number for all layers")]
    Length {
        /// Offending field.
        field: String,
        /// Entries given.
        got: usize,
        /// Expected entries.
        n_layer: usize,
    },
    /// A divisibility rule is broken.
    #[error("{rule} (layer {layer}: {detail})")]
    Divides {
        /// The rule, e.g. "d_model must be divisible by n_head[i]".
        rule: &'static str,
        /// Layer index.
        layer: usize,
        /// The numbers involved.
        detail: String,
    },
    /// A size is above its hard bound ([`MAX_LAYERS`], [`MAX_D_MODEL`], [`MAX_D_INNER`],
    /// [`MAX_VOCAB`], [`MAX_POSITIONS`]).
    #[error("`{field}` = {value} is above the bound of {limit} ({why}); lts refuses larger sizes before allocating anything")]
    AboveBound {
        /// Offending field (with layer index where relevant).
        field: String,
        /// The value given.
        value: usize,
        /// The bound.
        limit: usize,
        /// What the bound is measured against.
        why: &'static str,
    },
    /// A family-specific rule is broken.
    #[error("{0}")]
    Family(String),
    /// The model is larger than the configured bound.
    #[error("the model has {total} parameters, above the limit of {limit} ({reason}); choose a smaller arch or raise the limit with --max-params")]
    TooLarge {
        /// Total parameters of the arch.
        total: u64,
        /// The bound in force.
        limit: u64,
        /// Why the bound exists.
        reason: &'static str,
    },
}

/// The hard bound of a size field (`n_layer`, `d_model`, `d_inner`, `vocab_size`,
/// `n_positions`), with the real models it is measured against; `None` for fields without one
/// (`n_head` and `n_kv_head` are bounded by `d_model`, which they divide).
pub fn size_bound(field: &str) -> Option<(usize, &'static str)> {
    Some(match field {
        "n_layer" => (MAX_LAYERS, "GPT-3 has 96 layers, Llama-3.1-405B 126"),
        "d_model" => (MAX_D_MODEL, "GPT-3 uses 12288, Llama-3.1-405B 16384"),
        "d_inner" => (MAX_D_INNER, "Llama-3.1-405B uses 53248"),
        "vocab_size" => (MAX_VOCAB, "Gemma has 256000 tokens, Llama 3 128256"),
        "n_positions" => (MAX_POSITIONS, "Llama 3.1 reads 131072 positions"),
        _ => return None,
    })
}

/// Fails when `value` of `field` (`d_inner[3]` names layer 3 of `d_inner`) is above its bound.
fn check_bound(field: &str, value: usize) -> Result<(), ArchError> {
    let base = field.split('[').next().unwrap_or(field);
    match size_bound(base) {
        Some((limit, why)) if value > limit => Err(ArchError::AboveBound {
            field: field.to_string(),
            value,
            limit,
            why,
        }),
        _ => Ok(()),
    }
}

impl PerLayer {
    fn expand(&self, field: &str, n_layer: usize) -> Result<Vec<usize>, ArchError> {
        match self {
            PerLayer::All(v) => Ok(vec![*v; n_layer]),
            PerLayer::Each(v) if v.len() == n_layer => Ok(v.clone()),
            PerLayer::Each(v) => Err(ArchError::Length {
                field: field.to_string(),
                got: v.len(),
                n_layer,
            }),
        }
    }
}

impl TryFrom<ArchSpec> for Arch {
    type Error = ArchError;

    fn try_from(s: ArchSpec) -> Result<Self, ArchError> {
        if s.n_layer == 0 {
            return Err(ArchError::Zero {
                field: "n_layer".into(),
            });
        }
        // Bounds first: per-layer values are expanded to n_layer entries below.
        for (name, v) in [
            ("n_layer", s.n_layer),
            ("d_model", s.d_model),
            ("vocab_size", s.vocab_size),
            ("n_positions", s.n_positions),
        ] {
            check_bound(name, v)?;
        }
        let n_head = s.n_head.expand("n_head", s.n_layer)?;
        let n_kv_head = match (&s.n_kv_head, s.family) {
            (Some(kv), _) => kv.expand("n_kv_head", s.n_layer)?,
            (None, _) => n_head.clone(),
        };
        let arch = Arch {
            family: s.family,
            n_layer: s.n_layer,
            d_model: s.d_model,
            d_inner: s.d_inner.expand("d_inner", s.n_layer)?,
            n_head,
            n_kv_head,
            vocab_size: s.vocab_size,
            n_positions: s.n_positions,
            tie_embeddings: s.tie_embeddings.unwrap_or(true),
            norm_eps: s.norm_eps.unwrap_or(1e-5),
            rope_theta: s.rope_theta.unwrap_or(10_000.0),
        };
        arch.validate()?;
        Ok(arch)
    }
}

impl From<Arch> for ArchSpec {
    fn from(a: Arch) -> Self {
        ArchSpec {
            family: a.family,
            n_layer: a.n_layer,
            d_model: a.d_model,
            d_inner: PerLayer::Each(a.d_inner),
            n_head: PerLayer::Each(a.n_head),
            n_kv_head: Some(PerLayer::Each(a.n_kv_head)),
            vocab_size: a.vocab_size,
            n_positions: a.n_positions,
            tie_embeddings: Some(a.tie_embeddings),
            norm_eps: Some(a.norm_eps),
            rope_theta: Some(a.rope_theta),
        }
    }
}

/// Exact parameter counts and compute of an [`Arch`] (the LTS proxy is `decoder`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamCounts {
    /// Decoder (non-embedding) parameters: every trainable weight except token/position
    /// embeddings and an untied LM head. LTS's training-free perplexity proxy.
    pub decoder: u64,
    /// Token embedding + learned positions (GPT-2) + untied LM head (Llama).
    pub embedding: u64,
    /// `decoder + embedding`: the number of weights stored in the ONNX graph.
    pub total: u64,
}

/// Names of the built-in presets accepted by [`Arch::preset`].
pub const PRESETS: &[&str] = &["gpt2-small", "smollm2-135m", "gpt2-tiny", "llama-tiny"];

/// Key of the workload an exported file was made for, in its ONNX `metadata_props` and in its
/// `<arch-id>.arch.json` (the JSON of a `Workload`, see `crate::workload::RecordedWorkload`).
pub const WORKLOAD_KEY: &str = "workload";
/// Key saying where that workload came from (`RecordedWorkload::source`).
pub const WORKLOAD_SOURCE_KEY: &str = "workload_source";

impl Arch {
    /// Checks every rule, the hard size bounds ([`MAX_LAYERS`] ...) included; called by every
    /// constructor.
    pub fn validate(&self) -> Result<(), ArchError> {
        let zero = |field: &str| ArchError::Zero {
            field: field.to_string(),
        };
        for (name, v) in [
            ("n_layer", self.n_layer),
            ("d_model", self.d_model),
            ("vocab_size", self.vocab_size),
            ("n_positions", self.n_positions),
        ] {
            if v == 0 {
                return Err(zero(name));
            }
            check_bound(name, v)?;
        }
        for (name, list) in [
            ("d_inner", &self.d_inner),
            ("n_head", &self.n_head),
            ("n_kv_head", &self.n_kv_head),
        ] {
            if list.len() != self.n_layer {
                return Err(ArchError::Length {
                    field: name.into(),
                    got: list.len(),
                    n_layer: self.n_layer,
                });
            }
            if let Some(i) = list.iter().position(|&v| v == 0) {
                return Err(zero(&format!("{name}[{i}]")));
            }
            for (i, &v) in list.iter().enumerate() {
                check_bound(&format!("{name}[{i}]"), v)?;
            }
        }
        for i in 0..self.n_layer {
            let (h, kv) = (self.n_head[i], self.n_kv_head[i]);
            if !self.d_model.is_multiple_of(h) {
                return Err(ArchError::Divides {
                    rule: "d_model must be divisible by n_head[i]",
                    layer: i,
                    detail: format!(
                        "d_model {} % n_head {} = {}",
                        self.d_model,
                        h,
                        self.d_model % h
                    ),
                });
            }
            if h % kv != 0 {
                return Err(ArchError::Divides {
                    rule: "n_head[i] must be divisible by n_kv_head[i] (grouped-query attention)",
                    layer: i,
                    detail: format!("n_head {h} % n_kv_head {kv} = {}", h % kv),
                });
            }
            if self.family == Family::Llama && !(self.d_model / h).is_multiple_of(2) {
                return Err(ArchError::Divides {
                    rule: "RoPE needs an even head size d_model / n_head[i]",
                    layer: i,
                    detail: format!("head size {}", self.d_model / h),
                });
            }
        }
        match self.family {
            Family::Gpt2 => {
                if self.n_kv_head != self.n_head {
                    return Err(ArchError::Family(
                        "gpt2 uses multi-head attention: n_kv_head must equal n_head (leave it out)"
                            .into(),
                    ));
                }
                if !self.tie_embeddings {
                    return Err(ArchError::Family(
                        "gpt2 ties the LM head to the token embedding: tie_embeddings must be true"
                            .into(),
                    ));
                }
            }
            Family::Llama => {
                if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
                    return Err(ArchError::Family(format!(
                        "rope_theta must be a finite number > 1 (got {})",
                        self.rope_theta
                    )));
                }
            }
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0 && self.norm_eps < 1.0) {
            return Err(ArchError::Family(format!(
                "norm_eps must be in (0, 1) (got {})",
                self.norm_eps
            )));
        }
        Ok(())
    }

    /// Fails when the total parameter count exceeds `max_params` (see [`DEFAULT_MAX_PARAMS`]).
    pub fn check_size(&self, max_params: u64) -> Result<(), ArchError> {
        let total = self.params().total;
        if total > max_params {
            return Err(ArchError::TooLarge {
                total,
                limit: max_params,
                reason: if max_params == DEFAULT_MAX_PARAMS {
                    "an fp32 ONNX file must stay below protobuf's 2 GiB limit"
                } else {
                    "set by --max-params"
                },
            });
        }
        Ok(())
    }

    /// Head size of layer `i` (`d_model / n_head[i]`).
    pub fn head_dim(&self, i: usize) -> usize {
        self.d_model / self.n_head[i]
    }

    /// Parses and validates JSON. The `workload` and `workload_source` keys `lts export` writes
    /// beside the arch in `<arch-id>.arch.json` (see [`crate::workload::RecordedWorkload`]) are
    /// not part of the arch and are skipped.
    pub fn from_json(text: &str) -> anyhow::Result<Arch> {
        if let Ok(serde_json::Value::Object(mut v)) = serde_json::from_str(text) {
            // Both removed (`|`, not `||`).
            if v.remove(WORKLOAD_KEY).is_some() | v.remove(WORKLOAD_SOURCE_KEY).is_some() {
                return Ok(serde_json::from_value(v.into())?);
            }
        }
        Ok(serde_json::from_str(text)?)
    }

    /// Parses and validates TOML.
    pub fn from_toml(text: &str) -> anyhow::Result<Arch> {
        Ok(toml::from_str(text)?)
    }

    /// Loads an arch file (`.json` or `.toml`, by extension; otherwise JSON is tried first).
    pub fn load(path: &Path) -> anyhow::Result<Arch> {
        use anyhow::Context;
        let text = crate::util::read_regular_text(
            path,
            crate::util::MAX_CONFIG_BYTES,
            "arch file",
            crate::util::CONFIG_HINT,
        )?;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let parsed = match ext {
            "toml" => Arch::from_toml(&text),
            "json" => Arch::from_json(&text),
            _ => Arch::from_json(&text).or_else(|_| Arch::from_toml(&text)),
        };
        parsed.with_context(|| {
            format!(
                "invalid arch file {} (see `lts params --help` for the format)",
                path.display()
            )
        })
    }

    /// Canonical JSON (every field explicit, per-layer lists expanded): what the arch id hashes.
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(&ArchSpec::from(self.clone())).expect("arch serializes")
    }

    /// Pretty JSON, suitable for an arch file that [`Arch::load`] reads back.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(&ArchSpec::from(self.clone())).expect("arch serializes")
    }

    /// Stable id: family plus the first 12 hex digits of SHA-256 of [`Arch::canonical_json`].
    /// Used as the key of a candidate everywhere in results.
    pub fn id(&self) -> String {
        let digest = Sha256::digest(self.canonical_json().as_bytes());
        let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        format!("{}-{hex}", self.family)
    }

    /// Parameters of transformer block `i` (attention + MLP + its norms).
    pub fn layer_params(&self, i: usize) -> u64 {
        let d = self.d_model as u64;
        let inner = self.d_inner[i] as u64;
        let hd = self.head_dim(i) as u64;
        let (h, kv) = (self.n_head[i] as u64, self.n_kv_head[i] as u64);
        match self.family {
            // ln_1, ln_2 (weight + bias); c_attn [d, 3d] + bias; c_proj [d, d] + bias;
            // c_fc [d, inner] + bias; mlp c_proj [inner, d] + bias.
            Family::Gpt2 => 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (2 * d * inner + inner + d),
            // input/post-attention RMSNorm weights; q, k, v, o without bias; gate, up, down.
            Family::Llama => 2 * d + d * h * hd + 2 * d * kv * hd + h * hd * d + 3 * d * inner,
        }
    }

    /// Exact parameter counts (see [`ParamCounts`]).
    ///
    /// Cannot overflow for a validated arch: with d = [`MAX_D_MODEL`] = 2^16 and
    /// inner = [`MAX_D_INNER`] = 2^18, a block has at most 12 d^2 + 2 d inner + 9 d + inner
    /// < 2^37 parameters (GPT-2; a Llama block, 4 d^2 + 3 d inner, is smaller), so 1024
    /// ([`MAX_LAYERS`]) blocks stay below 2^47; the embeddings are at most
    /// 2 x [`MAX_VOCAB`] x d + [`MAX_POSITIONS`] x d < 2^39. The total is below 2^48, far from
    /// `u64::MAX` (unit test `largest_arch_counts_do_not_overflow`).
    pub fn params(&self) -> ParamCounts {
        let d = self.d_model as u64;
        let v = self.vocab_size as u64;
        let layers: u64 = (0..self.n_layer).map(|i| self.layer_params(i)).sum();
        let (final_norm, embedding) = match self.family {
            Family::Gpt2 => (2 * d, v * d + self.n_positions as u64 * d),
            Family::Llama => (
                d,
                if self.tie_embeddings {
                    v * d
                } else {
                    2 * v * d
                },
            ),
        };
        let decoder = layers + final_norm;
        ParamCounts {
            decoder,
            embedding,
            total: decoder + embedding,
        }
    }

    /// Forward FLOPs for one token attending to `context` positions: 2 x (matmul weights of the
    /// blocks + LM head) + 2 x n_layer x context x d_model for attention scores and mixing
    /// (Kaplan et al. 2020, "Scaling Laws for Neural Language Models", Table 1, with the LM head
    /// added because it is real work at inference). Norms, activations and softmax are excluded.
    pub fn flops_per_token(&self, context: usize) -> u64 {
        let d = self.d_model as u64;
        let matmul: u64 = (0..self.n_layer)
            .map(|i| {
                let hd = self.head_dim(i) as u64;
                let (h, kv) = (self.n_head[i] as u64, self.n_kv_head[i] as u64);
                let inner = self.d_inner[i] as u64;
                let mlp = match self.family {
                    Family::Gpt2 => 2 * d * inner,
                    Family::Llama => 3 * d * inner,
                };
                d * h * hd + 2 * d * kv * hd + h * hd * d + mlp
            })
            .sum();
        let lm_head = self.vocab_size as u64 * d;
        2 * (matmul + lm_head) + 2 * self.n_layer as u64 * context as u64 * d
    }

    /// Forward FLOPs of the LM head for one position: `2 x vocab_size x d_model`.
    pub fn lm_head_flops(&self) -> u64 {
        2 * self.vocab_size as u64 * self.d_model as u64
    }

    /// Forward FLOPs of a prefill of `seq` tokens (token t attends to t + 1 positions).
    pub fn prefill_flops(&self, seq: usize) -> u64 {
        self.flops_span(1, seq)
    }

    /// Sum of [`Arch::flops_per_token`] over the `count` contexts `first, first + 1, ...`, in
    /// closed form (O(n_layer), not O(count)), saturating at `u64::MAX`: one token of a validated
    /// arch costs below 2^50 FLOPs, but 2^20 positions of them can exceed `u64`.
    pub fn flops_span(&self, first: usize, count: usize) -> u64 {
        let per_token = u128::from(self.flops_per_token(0));
        let (first, count) = (first as u128, count as u128);
        // Sum of the contexts first .. first + count - 1.
        let contexts = count * first + count * count.saturating_sub(1) / 2;
        let attention = 2 * self.n_layer as u128 * self.d_model as u128;
        let total = per_token
            .saturating_mul(count)
            .saturating_add(attention.saturating_mul(contexts));
        u64::try_from(total).unwrap_or(u64::MAX)
    }

    /// A Hugging Face `config.json` (transformers `GPT2Config` / `LlamaConfig`) a team can
    /// train from, or `None` when the arch is heterogeneous (per-layer sizes differ), which a
    /// single HF config cannot express.
    pub fn hf_config(&self) -> Option<serde_json::Value> {
        let same = |v: &[usize]| v.iter().all(|&x| x == v[0]);
        if !(same(&self.d_inner) && same(&self.n_head) && same(&self.n_kv_head)) {
            return None;
        }
        Some(match self.family {
            Family::Gpt2 => serde_json::json!({
                "architectures": ["GPT2LMHeadModel"],
                "model_type": "gpt2",
                "vocab_size": self.vocab_size,
                "n_positions": self.n_positions,
                "n_embd": self.d_model,
                "n_layer": self.n_layer,
                "n_head": self.n_head[0],
                "n_inner": self.d_inner[0],
                "activation_function": "gelu_new",
                "layer_norm_epsilon": self.norm_eps,
                "tie_word_embeddings": true,
                "torch_dtype": "float32",
            }),
            Family::Llama => serde_json::json!({
                "architectures": ["LlamaForCausalLM"],
                "model_type": "llama",
                "vocab_size": self.vocab_size,
                "hidden_size": self.d_model,
                "intermediate_size": self.d_inner[0],
                "num_hidden_layers": self.n_layer,
                "num_attention_heads": self.n_head[0],
                "num_key_value_heads": self.n_kv_head[0],
                "head_dim": self.head_dim(0),
                "max_position_embeddings": self.n_positions,
                "rms_norm_eps": self.norm_eps,
                "rope_theta": self.rope_theta,
                "hidden_act": "silu",
                "attention_bias": false,
                "mlp_bias": false,
                "tie_word_embeddings": self.tie_embeddings,
                "torch_dtype": "float32",
            }),
        })
    }

    /// A built-in architecture by name (see [`PRESETS`]).
    pub fn preset(name: &str) -> anyhow::Result<Arch> {
        let gpt2 = |n_layer, d_model, n_head, d_inner, vocab_size, n_positions| ArchSpec {
            family: Family::Gpt2,
            n_layer,
            d_model,
            d_inner: PerLayer::All(d_inner),
            n_head: PerLayer::All(n_head),
            n_kv_head: None,
            vocab_size,
            n_positions,
            tie_embeddings: None,
            norm_eps: None,
            rope_theta: None,
        };
        let spec = match name {
            "gpt2-small" => gpt2(12, 768, 12, 3072, 50257, 1024),
            "gpt2-tiny" => ArchSpec {
                d_inner: PerLayer::Each(vec![96, 64]),
                n_head: PerLayer::Each(vec![4, 2]),
                ..gpt2(2, 32, 4, 64, 97, 64)
            },
            "smollm2-135m" => ArchSpec {
                family: Family::Llama,
                n_layer: 30,
                d_model: 576,
                d_inner: PerLayer::All(1536),
                n_head: PerLayer::All(9),
                n_kv_head: Some(PerLayer::All(3)),
                vocab_size: 49152,
                n_positions: 8192,
                tie_embeddings: Some(true),
                norm_eps: Some(1e-5),
                rope_theta: Some(100_000.0),
            },
            "llama-tiny" => ArchSpec {
                family: Family::Llama,
                n_layer: 2,
                d_model: 32,
                d_inner: PerLayer::Each(vec![80, 48]),
                n_head: PerLayer::Each(vec![4, 2]),
                n_kv_head: Some(PerLayer::Each(vec![2, 1])),
                vocab_size: 101,
                n_positions: 128,
                tie_embeddings: Some(false),
                norm_eps: Some(1e-5),
                rope_theta: Some(10_000.0),
            },
            other => anyhow::bail!(
                "unknown preset `{other}`; built-in presets are: {}",
                PRESETS.join(", ")
            ),
        };
        Ok(Arch::try_from(spec)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_small_matches_published_counts() {
        let p = Arch::preset("gpt2-small").unwrap().params();
        assert_eq!(p.decoder, 85_056_000);
        assert_eq!(p.total, 124_439_808);
    }

    #[test]
    fn smollm2_matches_published_counts() {
        let p = Arch::preset("smollm2-135m").unwrap().params();
        assert_eq!(p.decoder, 106_203_456);
        assert_eq!(p.total, 134_515_008);
    }

    #[test]
    fn heterogeneous_gpt2_counts_by_hand() {
        // d=64, layer 0: inner 128, 2 heads; layer 1: inner 256, 8 heads; vocab 100, 32 positions.
        let a = Arch::from_json(
            r#"{"family":"gpt2","n_layer":2,"d_model":64,"d_inner":[128,256],"n_head":[2,8],
                "vocab_size":100,"n_positions":32}"#,
        )
        .unwrap();
        let d = 64u64;
        let block =
            |inner: u64| 4 * d + 3 * d * d + 3 * d + d * d + d + d * inner + inner + inner * d + d;
        let p = a.params();
        assert_eq!(p.decoder, block(128) + block(256) + 2 * d);
        assert_eq!(p.embedding, 100 * d + 32 * d);
        // Heads do not change the count for GPT-2 (qkv is always d x 3d).
        assert_eq!(
            block(128),
            4 * 64 + 12288 + 192 + 4096 + 64 + 8192 + 128 + 8192 + 64
        );
    }

    #[test]
    fn untied_llama_counts_lm_head_as_embedding() {
        let a = Arch::preset("llama-tiny").unwrap();
        let p = a.params();
        assert_eq!(p.embedding, 2 * 101 * 32);
        // layer 0: d=32, 4 heads (hd 8), 2 kv heads, inner 80
        let l0 = 2 * 32 + 32 * 32 + 2 * 32 * 16 + 32 * 32 + 3 * 32 * 80;
        // layer 1: 2 heads (hd 16), 1 kv head, inner 48
        let l1 = 2 * 32 + 32 * 32 + 2 * 32 * 16 + 32 * 32 + 3 * 32 * 48;
        assert_eq!(p.decoder, l0 + l1 + 32);
    }

    #[test]
    fn invalid_archs_name_the_field_and_rule() {
        let bad_heads = r#"{"family":"gpt2","n_layer":2,"d_model":64,"d_inner":128,"n_head":[2,6],
            "vocab_size":100,"n_positions":32}"#;
        let e = Arch::from_json(bad_heads).unwrap_err().to_string();
        assert!(
            e.contains("divisible by n_head") && e.contains("layer 1"),
            "{e}"
        );

        let bad_len = r#"{"family":"gpt2","n_layer":3,"d_model":64,"d_inner":[128,128],"n_head":2,
            "vocab_size":100,"n_positions":32}"#;
        let e = Arch::from_json(bad_len).unwrap_err().to_string();
        assert!(
            e.contains("`d_inner` has 2 entries but n_layer is 3"),
            "{e}"
        );

        let bad_kv = r#"{"family":"llama","n_layer":1,"d_model":64,"d_inner":128,"n_head":4,
            "n_kv_head":3,"vocab_size":100,"n_positions":32}"#;
        let e = Arch::from_json(bad_kv).unwrap_err().to_string();
        assert!(e.contains("divisible by n_kv_head"), "{e}");

        let zero = r#"{"family":"llama","n_layer":1,"d_model":64,"d_inner":0,"n_head":4,
            "vocab_size":100,"n_positions":32}"#;
        let e = Arch::from_json(zero).unwrap_err().to_string();
        assert!(e.contains("`d_inner[0]` must be > 0"), "{e}");

        let typo = r#"{"family":"gpt2","n_layers":2,"d_model":64,"d_inner":128,"n_head":2,
            "vocab_size":100,"n_positions":32}"#;
        let e = Arch::from_json(typo).unwrap_err().to_string();
        assert!(e.contains("n_layers"), "{e}");
    }

    #[test]
    fn size_limit_is_enforced() {
        let a = Arch::preset("gpt2-small").unwrap();
        assert!(a.check_size(DEFAULT_MAX_PARAMS).is_ok());
        let e = a.check_size(1_000_000).unwrap_err().to_string();
        assert!(e.contains("--max-params"), "{e}");
    }

    #[test]
    fn id_is_stable_and_json_round_trips() {
        let a = Arch::preset("llama-tiny").unwrap();
        let b = Arch::from_json(&a.to_json_pretty()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.id(), b.id());
        assert!(a.id().starts_with("llama-"));
        assert_ne!(a.id(), Arch::preset("gpt2-tiny").unwrap().id());
        let t = toml::to_string(&ArchSpec::from(a.clone())).unwrap();
        assert_eq!(Arch::from_toml(&t).unwrap(), a);
    }

    #[test]
    fn hf_config_only_for_homogeneous_archs() {
        let c = Arch::preset("smollm2-135m").unwrap().hf_config().unwrap();
        assert_eq!(c["num_key_value_heads"], 3);
        assert_eq!(c["intermediate_size"], 1536);
        assert_eq!(c["model_type"], "llama");
        let c = Arch::preset("gpt2-small").unwrap().hf_config().unwrap();
        assert_eq!(c["n_inner"], 3072);
        assert!(Arch::preset("gpt2-tiny").unwrap().hf_config().is_none());
    }

    #[test]
    fn flops_count_matmuls_and_attention() {
        let a = Arch::preset("gpt2-small").unwrap();
        // 2 * (12 * (4 d^2 + 2 d * 4d) + V d) + 2 * 12 * 1 * d at context 1.
        let d = 768u64;
        let expect = 2 * (12 * (12 * d * d) + 50257 * d) + 2 * 12 * d;
        assert_eq!(a.flops_per_token(1), expect);
        assert!(a.prefill_flops(4) > 4 * a.flops_per_token(1));
    }

    /// The largest arch the bounds allow, GPT-2 and untied Llama.
    fn largest(family: Family) -> Arch {
        Arch {
            family,
            n_layer: MAX_LAYERS,
            d_model: MAX_D_MODEL,
            d_inner: vec![MAX_D_INNER; MAX_LAYERS],
            n_head: vec![1; MAX_LAYERS],
            n_kv_head: vec![1; MAX_LAYERS],
            vocab_size: MAX_VOCAB,
            n_positions: MAX_POSITIONS,
            tie_embeddings: family == Family::Gpt2,
            norm_eps: 1e-5,
            rope_theta: 10_000.0,
        }
    }

    #[test]
    fn largest_arch_counts_do_not_overflow() {
        // Debug builds panic on overflow, so computing is the test; the bounds leave room.
        for family in [Family::Gpt2, Family::Llama] {
            let a = largest(family);
            a.validate().unwrap();
            let p = a.params();
            assert!(p.total < 1 << 48, "{family}: {p:?}");
            assert!((0..a.n_layer).all(|i| a.layer_params(i) < 1 << 37));
            let per_token = a.flops_per_token(MAX_POSITIONS);
            assert!(per_token < 1 << 50, "{per_token}");
            // A full-length prefill saturates instead of wrapping, in O(n_layer).
            assert!(a.prefill_flops(MAX_POSITIONS) > per_token);
            assert_eq!(a.flops_span(1, usize::MAX), u64::MAX);
        }
        let g = Arch::preset("gpt2-small").unwrap();
        let summed: u64 = (0..192).map(|t| g.flops_per_token(t + 1)).sum();
        assert_eq!(g.prefill_flops(192), summed);
        let summed: u64 = (10..20).map(|t| g.flops_per_token(t)).sum();
        assert_eq!(g.flops_span(10, 10), summed);
        assert_eq!(g.flops_span(10, 0), 0);
    }

    #[test]
    fn sizes_above_the_bounds_are_refused_naming_field_and_bound() {
        let huge = 1usize << 32;
        let spec = |n_layer: usize, d: usize, inner: usize, vocab: usize, pos: usize| {
            format!(
                r#"{{"family":"gpt2","n_layer":{n_layer},"d_model":{d},"d_inner":{inner},"n_head":1,
                    "vocab_size":{vocab},"n_positions":{pos}}}"#
            )
        };
        for (text, field, bound) in [
            (
                spec(1_000_000_000, 64, 64, 100, 64),
                "`n_layer`",
                MAX_LAYERS,
            ),
            (spec(2, huge, 64, 100, 64), "`d_model`", MAX_D_MODEL),
            (spec(2, 64, huge, 100, 64), "`d_inner[0]`", MAX_D_INNER),
            (spec(2, 64, 64, huge, 64), "`vocab_size`", MAX_VOCAB),
            (spec(2, 64, 64, 100, huge), "`n_positions`", MAX_POSITIONS),
        ] {
            let e = Arch::from_json(&text).unwrap_err().to_string();
            assert!(
                e.contains(field) && e.contains(&format!("bound of {bound}")),
                "{e}"
            );
        }
        // The bound is checked before the per-layer expansion: this returns at once.
        let t0 = std::time::Instant::now();
        let e = Arch::from_json(&spec(usize::MAX, 64, 64, 100, 64)).unwrap_err();
        assert!(e.to_string().contains("`n_layer`"), "{e}");
        assert!(t0.elapsed().as_secs() < 1);
        // validate() refuses them too (struct literals skip the parser).
        let mut a = Arch::preset("gpt2-tiny").unwrap();
        a.vocab_size = MAX_VOCAB + 1;
        assert!(matches!(
            a.validate(),
            Err(ArchError::AboveBound {
                limit: MAX_VOCAB,
                ..
            })
        ));
        // Exactly at the bounds is fine.
        assert!(largest(Family::Llama).validate().is_ok());
    }
}
