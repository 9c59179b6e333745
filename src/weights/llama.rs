//! The Llama parameter table (transformers `LlamaForCausalLM` names and `nn.Linear` layouts).

use super::spec::{init_stds, Init, Push};
use crate::arch::Arch;

/// The Llama part of [`param_specs`](crate::weights::param_specs), in canonical order.
pub(super) fn llama_specs(arch: &Arch, p: &mut Push) {
    let d = arch.d_model;
    let (std, resid) = init_stds(arch);
    p(
        "model.embed_tokens.weight".into(),
        vec![arch.vocab_size, d],
        Init::Normal(std),
        true,
    );
    for i in 0..arch.n_layer {
        let inner = arch.d_inner[i];
        let hd = arch.head_dim(i);
        let (h, kv) = (arch.n_head[i], arch.n_kv_head[i]);
        let l = format!("model.layers.{i}");
        p(
            format!("{l}.input_layernorm.weight"),
            vec![d],
            Init::Ones,
            false,
        );
        p(
            format!("{l}.self_attn.q_proj.weight"),
            vec![h * hd, d],
            Init::Normal(std),
            false,
        );
        p(
            format!("{l}.self_attn.k_proj.weight"),
            vec![kv * hd, d],
            Init::Normal(std),
            false,
        );
        p(
            format!("{l}.self_attn.v_proj.weight"),
            vec![kv * hd, d],
            Init::Normal(std),
            false,
        );
        p(
            format!("{l}.self_attn.o_proj.weight"),
            vec![d, h * hd],
            Init::Normal(resid),
            false,
        );
        p(
            format!("{l}.post_attention_layernorm.weight"),
            vec![d],
            Init::Ones,
            false,
        );
        p(
            format!("{l}.mlp.gate_proj.weight"),
            vec![inner, d],
            Init::Normal(std),
            false,
        );
        p(
            format!("{l}.mlp.up_proj.weight"),
            vec![inner, d],
            Init::Normal(std),
            false,
        );
        p(
            format!("{l}.mlp.down_proj.weight"),
            vec![d, inner],
            Init::Normal(resid),
            false,
        );
    }
    p("model.norm.weight".into(), vec![d], Init::Ones, false);
    if !arch.tie_embeddings {
        p(
            "lm_head.weight".into(),
            vec![arch.vocab_size, d],
            Init::Normal(std),
            true,
        );
    }
}
