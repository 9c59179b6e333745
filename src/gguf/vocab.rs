//! The tokenizer a GGUF file carries: its `tokenizer.ggml.*` metadata as a
//! [`TokenizerSpec`] (llama.cpp `src/llama-vocab.cpp`, `llama_vocab::impl::load`, reads the
//! same keys).

use anyhow::{bail, Context, Result};

use super::{Gguf, MetaValue};
use crate::tokenizer::TokenizerSpec;

impl Gguf {
    /// The tokenizer metadata: `tokenizer.ggml.model`, `tokens`, `merges`, `token_type`,
    /// `bos_token_id`, `eos_token_id`, `pre` and `add_bos_token`. Errors name the missing key.
    pub fn tokenizer_spec(&self) -> Result<TokenizerSpec> {
        let key = |k: &str| format!("tokenizer.ggml.{k}");
        let model = self
            .get_str(&key("model"))
            .with_context(|| format!("{} carries no {}", self.path.display(), key("model")))?
            .to_string();
        let tokens = self
            .get_str_array(&key("tokens"))
            .with_context(|| format!("{} carries no {}", self.path.display(), key("tokens")))?;
        let merges = self.get_str_array(&key("merges")).unwrap_or_default();
        let token_types = match self.get_i64_array(&key("token_type")) {
            None => Vec::new(),
            Some(v) => v
                .into_iter()
                .map(|t| i32::try_from(t).context("token type out of range"))
                .collect::<Result<_>>()?,
        };
        if !token_types.is_empty() && token_types.len() != tokens.len() {
            bail!(
                "{}: {} token types for {} tokens",
                self.path.display(),
                token_types.len(),
                tokens.len()
            );
        }
        let id = |k: &str| -> Result<Option<u32>> {
            self.get_u64(&key(k))
                .map(|v| {
                    u32::try_from(v).with_context(|| format!("{} = {v} is not a token id", key(k)))
                })
                .transpose()
        };
        Ok(TokenizerSpec {
            model,
            tokens,
            merges,
            token_types,
            bos: id("bos_token_id")?,
            eos: id("eos_token_id")?,
            pre: self.get_str(&key("pre")).map(str::to_string),
            add_bos: matches!(self.get(&key("add_bos_token")), Some(MetaValue::Bool(true))),
        })
    }
}
