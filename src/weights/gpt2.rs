//! The GPT-2 parameter table (transformers `GPT2LMHeadModel` names and `Conv1D` layouts).

use super::spec::{init_stds, Init, Push};
use crate::arch::Arch;

/// The GPT-2 part of [`param_specs`](crate::weights::param_specs), in canonical order.
pub(super) fn gpt2_specs(arch: &Arch, p: &mut Push) {
    let d = arch.d_model;
    let (std, resid) = init_stds(arch);
    p(
        "transformer.wte.weight".into(),
        vec![arch.vocab_size, d],
        Init::Normal(std),
        true,
    );
    p(
        "transformer.wpe.weight".into(),
        vec![arch.n_positions, d],
        Init::Normal(0.01),
        true,
    );
    for i in 0..arch.n_layer {
        let inner = arch.d_inner[i];
        let l = format!("transformer.h.{i}");
        p(format!("{l}.ln_1.weight"), vec![d], Init::Ones, false);
        p(format!("{l}.ln_1.bias"), vec![d], Init::Zeros, false);
        p(
            format!("{l}.attn.c_attn.weight"),
            vec![d, 3 * d],
            Init::Normal(std),
            false,
        );
        p(
            format!("{l}.attn.c_attn.bias"),
            vec![3 * d],
            Init::Zeros,
            false,
        );
        p(
            format!("{l}.attn.c_proj.weight"),
            vec![d, d],
            Init::Normal(resid),
            false,
        );
        p(format!("{l}.attn.c_proj.bias"), vec![d], Init::Zeros, false);
        p(format!("{l}.ln_2.weight"), vec![d], Init::Ones, false);
        p(format!("{l}.ln_2.bias"), vec![d], Init::Zeros, false);
        p(
            format!("{l}.mlp.c_fc.weight"),
            vec![d, inner],
            Init::Normal(std),
            false,
        );
        p(
            format!("{l}.mlp.c_fc.bias"),
            vec![inner],
            Init::Zeros,
            false,
        );
        p(
            format!("{l}.mlp.c_proj.weight"),
            vec![inner, d],
            Init::Normal(resid),
            false,
        );
        p(format!("{l}.mlp.c_proj.bias"), vec![d], Init::Zeros, false);
    }
    p("transformer.ln_f.weight".into(), vec![d], Init::Ones, false);
    p("transformer.ln_f.bias".into(), vec![d], Init::Zeros, false);
}
