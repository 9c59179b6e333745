//! A decoder family described by its parts: which norm, which position scheme, which MLP,
//! whether layers carry biases, whether key/value heads may be shared, how the Hugging Face
//! checkpoint names and lays out its tensors. Code outside the family's own files asks
//! [`Arch::parts`] (or [`Family::parts`] where only the family is known, as in a search space)
//! for the part it depends on instead of testing the family, so that a new family (next:
//! Transformer-XL's relative positions) is one more row here.

use super::{Arch, Family};

/// The normalization of every block and of the final norm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Norm {
    /// LayerNorm with weight and bias (Ba et al. 2016; GPT-2).
    LayerNorm,
    /// RMSNorm with a weight only (Zhang & Sennrich 2019; Llama).
    RmsNorm,
}

/// How a token learns its position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Positions {
    /// A learned table of `n_positions` rows added to the token embedding (GPT-2): a sequence
    /// cannot be longer than the table.
    Learned,
    /// Rotary position embedding on queries and keys (Su et al. 2021, RoFormer; Llama): needs an
    /// even head size, has no table and no hard length limit.
    Rope,
}

/// The feed-forward block of every layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mlp {
    /// `c_proj(gelu(c_fc(x)))`, tanh-approximated GELU (GPT-2): two matrices.
    Gelu,
    /// `down(silu(gate(x)) * up(x))` (Shazeer 2020, "GLU Variants"; Llama): three matrices.
    SwiGlu,
}

/// How the Hugging Face checkpoint of the family names and lays out its tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    /// `transformer.h.{i}.attn.c_attn.weight`...: `Conv1D` weights stored `[in, out]`, fused
    /// q/k/v, `transformer.wte` / `transformer.wpe` / `transformer.ln_f` (transformers
    /// `GPT2LMHeadModel`).
    Gpt2,
    /// `model.layers.{i}.self_attn.q_proj.weight`...: `nn.Linear` weights stored `[out, in]`,
    /// separate projections, `model.embed_tokens` / `model.norm`, optional `lm_head`
    /// (transformers `LlamaForCausalLM`).
    Llama,
}

impl Naming {
    /// Name of the token embedding.
    pub fn embedding(self) -> &'static str {
        match self {
            Naming::Gpt2 => "transformer.wte.weight",
            Naming::Llama => "model.embed_tokens.weight",
        }
    }
}

/// What a family is made of (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parts {
    /// Block and final normalization.
    pub norm: Norm,
    /// Position scheme.
    pub positions: Positions,
    /// Feed-forward block.
    pub mlp: Mlp,
    /// Whether attention and MLP linears carry biases (GPT-2 yes, Llama no).
    pub biases: bool,
    /// Whether key/value heads may be shared by several query heads (grouped-query attention,
    /// Ainslie et al. 2023): `n_kv_head` may differ from `n_head`.
    pub shared_kv_heads: bool,
    /// Whether the LM head is always the token embedding (GPT-2) rather than optionally tied.
    pub head_always_tied: bool,
    /// Checkpoint naming and layout.
    pub naming: Naming,
}

impl Family {
    /// The parts of this family.
    pub const fn parts(self) -> Parts {
        match self {
            Family::Gpt2 => Parts {
                norm: Norm::LayerNorm,
                positions: Positions::Learned,
                mlp: Mlp::Gelu,
                biases: true,
                shared_kv_heads: false,
                head_always_tied: true,
                naming: Naming::Gpt2,
            },
            Family::Llama => Parts {
                norm: Norm::RmsNorm,
                positions: Positions::Rope,
                mlp: Mlp::SwiGlu,
                biases: false,
                shared_kv_heads: true,
                head_always_tied: false,
                naming: Naming::Llama,
            },
        }
    }
}

impl Arch {
    /// The parts of this arch's family (see [`Family::parts`]).
    pub fn parts(&self) -> Parts {
        self.family.parts()
    }

    /// The most positions one sequence (past + new tokens) may hold: `n_positions` for a
    /// learned position table, `None` for RoPE (whose `n_positions` is advisory, Hugging Face's
    /// `max_position_embeddings`).
    pub fn position_limit(&self) -> Option<usize> {
        match self.parts().positions {
            Positions::Learned => Some(self.n_positions),
            Positions::Rope => None,
        }
    }

    /// The parameter the LM head reads: the token embedding when tied, else `lm_head.weight`.
    pub fn head_weight(&self) -> &'static str {
        if self.tie_embeddings {
            self.parts().naming.embedding()
        } else {
            "lm_head.weight"
        }
    }
}
