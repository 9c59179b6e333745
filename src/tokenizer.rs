//! Byte-level BPE tokenizer built from the vocabulary and merges a GGUF file carries.
//!
//! A GGUF model whose `tokenizer.ggml.model` is `"gpt2"` stores its tokenizer as metadata
//! (see the GGUF specification, <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>,
//! section "Tokenizer"): `tokenizer.ggml.tokens` (strings, the id is the index),
//! `tokenizer.ggml.merges` (strings `"left right"`, highest priority first),
//! `tokenizer.ggml.token_type` (i32: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused,
//! 6 byte), `tokenizer.ggml.bos_token_id`, `tokenizer.ggml.eos_token_id` and
//! `tokenizer.ggml.pre`, the name of the pre-tokenizer (how text is split before BPE).
//! [`TokenizerSpec`] holds exactly these values; the GGUF reader fills it.
//!
//! The tokenizer itself is Hugging Face's `tokenizers` crate (a `BPE` model from the vocabulary
//! and merges, no unknown token, no dropout), with the pre-tokenizer llama.cpp uses for the
//! `pre` name (`llama-vocab.cpp`, `LLAMA_VOCAB_PRE_TYPE_*`):
//! - `gpt2`, `mpt`, `olmo`, `jais` (and a missing name): the GPT-2 split
//!   `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`, i.e. `ByteLevel`
//!   with `use_regex`;
//! - `smollm`, `starcoder`, `refact`, `command-r`, `codeshell`: every digit (`\p{N}`) split off
//!   on its own first, then the GPT-2 split. This is also SmolLM2's Hugging Face
//!   `tokenizer.json` (`Sequence[Digits(individual_digits=true), ByteLevel(add_prefix_space=false)]`).
//!
//! No prefix space is added and no BOS/EOS is inserted: [`Tokenizer::encode`] maps text to
//! exactly the tokens of that text. Control tokens (type 3, e.g. `<|im_start|>`) are special
//! added tokens and user-defined ones (type 4) plain added tokens: both are matched whole in the
//! input, as Hugging Face does. Decoding maps the byte-level characters back to bytes
//! (`ByteLevel` decoder) and keeps special tokens, so `decode(encode(s)) == s` for every string.

use std::collections::HashMap;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::AddedToken;

/// GGUF `tokenizer.ggml.token_type` of a control token (`<|endoftext|>`, `<|im_start|>`...).
pub const TOKEN_TYPE_CONTROL: i32 = 3;
/// GGUF `tokenizer.ggml.token_type` of a user-defined token (matched whole in the text).
pub const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// The tokenizer metadata of a GGUF file, as plain values (field by field the `tokenizer.ggml.*`
/// keys named in the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenizerSpec {
    /// `tokenizer.ggml.model`: must be `"gpt2"` (byte-level BPE).
    pub model: String,
    /// `tokenizer.ggml.tokens`: token strings in byte-level form; the id is the index.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.merges`: `"left right"` pairs, highest priority first.
    pub merges: Vec<String>,
    /// `tokenizer.ggml.token_type`, one per token (empty: all normal).
    #[serde(default)]
    pub token_types: Vec<i32>,
    /// `tokenizer.ggml.bos_token_id`.
    #[serde(default)]
    pub bos: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    #[serde(default)]
    pub eos: Option<u32>,
    /// `tokenizer.ggml.pre`: the pre-tokenizer name (`"smollm"`, `"gpt2"`...).
    #[serde(default)]
    pub pre: Option<String>,
    /// `tokenizer.ggml.add_bos_token`: whether the model expects the BOS token at the start of
    /// a sequence (llama.cpp's `perplexity` then puts it at the start of every window).
    #[serde(default)]
    pub add_bos: bool,
}

/// How text is split before BPE, by `tokenizer.ggml.pre` (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreSplit {
    /// The GPT-2 regular expression.
    Gpt2,
    /// Each digit on its own, then the GPT-2 regular expression.
    DigitsThenGpt2,
}

impl PreSplit {
    /// The split llama.cpp uses for the pre-tokenizer `name` (`None` when lts does not know it).
    pub fn from_name(name: Option<&str>) -> Option<PreSplit> {
        match name.unwrap_or("gpt2") {
            "gpt2" | "mpt" | "olmo" | "jais" => Some(PreSplit::Gpt2),
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" => {
                Some(PreSplit::DigitsThenGpt2)
            }
            _ => None,
        }
    }
}

/// The character GPT-2's byte-level encoding writes for byte `b` (`bytes_to_unicode`): the
/// printable bytes `!`..=`~`, `¡`..=`¬`, `®`..=`ÿ` stand for themselves, the other 68 bytes map
/// in order to U+0100 and up (so a space is `Ġ`, U+0120).
pub fn byte_char(b: u8) -> char {
    let printable = |x: u8| matches!(x, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        return char::from(b);
    }
    let n = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + n).expect("U+0100..U+0144 are chars")
}

/// A byte-level BPE tokenizer (see the module documentation).
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    vocab_size: usize,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    split: PreSplit,
    missing_bytes: Vec<u8>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size)
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("split", &self.split)
            .finish()
    }
}

impl Tokenizer {
    /// Builds the tokenizer. Refuses, with the reason: another model than `gpt2`, an unknown
    /// pre-tokenizer name, a token type list of the wrong length, duplicate tokens, a merge that
    /// is not two tokens of the vocabulary whose concatenation is one too, and BOS/EOS ids outside
    /// the vocabulary. A vocabulary may lack some of the 256 byte tokens (SmolLM2's lacks 21:
    /// bytes UTF-8 never uses and six control characters); see [`Tokenizer::missing_bytes`].
    pub fn new(spec: TokenizerSpec) -> Result<Tokenizer> {
        if spec.model != "gpt2" {
            bail!(
                "tokenizer model {:?} is not supported: lts reads byte-level BPE tokenizers \
                 (tokenizer.ggml.model = \"gpt2\")",
                spec.model
            );
        }
        let Some(split) = PreSplit::from_name(spec.pre.as_deref()) else {
            bail!(
                "pre-tokenizer {:?} (tokenizer.ggml.pre) is not supported; lts knows gpt2, mpt, \
                 olmo, jais, smollm, starcoder, refact, command-r and codeshell",
                spec.pre.as_deref().unwrap_or("")
            );
        };
        let n = spec.tokens.len();
        if !spec.token_types.is_empty() && spec.token_types.len() != n {
            bail!(
                "tokenizer.ggml.token_type has {} entries for {n} tokens",
                spec.token_types.len()
            );
        }
        for (what, id) in [("bos", spec.bos), ("eos", spec.eos)] {
            if let Some(id) = id.filter(|&id| id as usize >= n) {
                bail!("{what} token id {id} is outside the vocabulary of {n} tokens");
            }
        }
        let mut vocab: HashMap<String, u32> = HashMap::with_capacity(n);
        for (id, t) in spec.tokens.iter().enumerate() {
            if let Some(first) = vocab.insert(t.clone(), id as u32) {
                bail!("token {t:?} appears twice in the vocabulary (ids {first} and {id})");
            }
        }
        let missing_bytes: Vec<u8> = (0..=255u8)
            .filter(|&b| !vocab.contains_key(&byte_char(b).to_string()))
            .collect();
        let merges = spec
            .merges
            .iter()
            .enumerate()
            .map(|(i, m)| match m.split_once(' ') {
                Some((a, b)) if !a.is_empty() && !b.is_empty() && !b.contains(' ') => {
                    Ok((a.to_owned(), b.to_owned()))
                }
                _ => bail!("merge {i} ({m:?}) is not two tokens separated by one space"),
            })
            .collect::<Result<Vec<_>>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(
                vocab
                    .into_iter()
                    .collect::<tokenizers::models::bpe::Vocab>(),
                merges,
            )
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the BPE model: {e}"))?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        let byte_level = ByteLevel::new(false, true, true);
        let pre: PreTokenizerWrapper = match split {
            PreSplit::Gpt2 => byte_level.into(),
            PreSplit::DigitsThenGpt2 => {
                Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()
            }
        };
        inner.with_pre_tokenizer(Some(pre));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let added = |kind: i32| {
            spec.token_types
                .iter()
                .zip(&spec.tokens)
                .filter(move |(t, _)| **t == kind)
                .map(|(_, s)| s)
        };
        inner
            .add_special_tokens(
                added(TOKEN_TYPE_CONTROL).map(|s| AddedToken::from(s.clone(), true)),
            )
            .map_err(|e| anyhow::anyhow!("cannot add control tokens: {e}"))?;
        inner
            .add_tokens(added(TOKEN_TYPE_USER_DEFINED).map(|s| AddedToken::from(s.clone(), false)))
            .map_err(|e| anyhow::anyhow!("cannot add user-defined tokens: {e}"))?;
        Ok(Tokenizer {
            inner,
            vocab_size: n,
            bos: spec.bos,
            eos: spec.eos,
            add_bos: spec.add_bos,
            split,
            missing_bytes,
        })
    }

    /// The token ids of `text`: no BOS/EOS added, control tokens written in the text matched.
    /// A byte without a token ([`Tokenizer::missing_bytes`]) is dropped, as Hugging Face's BPE
    /// without an unknown token does.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        // Cannot fail: without an unknown token BPE drops what it cannot map, and the
        // pre-tokenizers' regexes are fixed.
        self.inner
            .encode_fast(text, false)
            .map(|e| e.get_ids().to_vec())
            .unwrap_or_else(|e| panic!("byte-level BPE encoding: {e}"))
    }

    /// The text of `ids`, special tokens included. Ids outside the vocabulary are skipped; byte
    /// sequences that are not UTF-8 (a multi-byte character cut between two id lists) become
    /// U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        let ids: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|&i| (i as usize) < self.vocab_size)
            .collect();
        self.inner
            .decode(&ids, false)
            .unwrap_or_else(|e| panic!("byte-level BPE decoding: {e}"))
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The beginning-of-sequence token id, if the model has one.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// The BOS token to put at the start of a sequence: [`Tokenizer::bos`] when the model asks
    /// for it (`tokenizer.ggml.add_bos_token`), else `None`.
    pub fn leading_bos(&self) -> Option<u32> {
        self.bos.filter(|_| self.add_bos)
    }

    /// The end-of-sequence token id, if the model has one.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// The pre-tokenizer split in use.
    pub fn split(&self) -> PreSplit {
        self.split
    }

    /// The bytes that have no token in the vocabulary, ascending: [`Tokenizer::encode`] drops
    /// them, so text holding them does not round-trip.
    pub fn missing_bytes(&self) -> &[u8] {
        &self.missing_bytes
    }

    /// The vocabulary string of token `id` (byte-level form, e.g. `Ġthe`).
    pub fn token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spec whose vocabulary is the 256 byte tokens (ids 0..=255 in byte order), then
    /// `extra` tokens (ids 256..), with `merges`.
    fn toy(extra: &[&str], merges: &[&str], pre: &str) -> TokenizerSpec {
        let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_char(b).to_string()).collect();
        tokens.extend(extra.iter().map(|s| s.to_string()));
        TokenizerSpec {
            model: "gpt2".into(),
            token_types: vec![1; tokens.len()],
            tokens,
            merges: merges.iter().map(|s| s.to_string()).collect(),
            bos: None,
            eos: None,
            pre: Some(pre.into()),
            add_bos: false,
        }
    }

    fn ids(s: &str) -> Vec<u32> {
        s.bytes().map(u32::from).collect()
    }

    #[test]
    fn byte_chars_follow_gpt2() {
        assert_eq!(byte_char(b' '), 'Ġ');
        assert_eq!(byte_char(b'\n'), 'Ċ');
        assert_eq!(byte_char(b'\t'), 'ĉ');
        assert_eq!(byte_char(0), '\u{100}');
        assert_eq!(byte_char(b'a'), 'a');
        assert_eq!(byte_char(0x7f), '\u{121}');
        assert_eq!(byte_char(0xad), '\u{143}');
        let all: std::collections::HashSet<char> = (0..=255u8).map(byte_char).collect();
        assert_eq!(all.len(), 256);
    }

    #[test]
    fn merges_apply_by_rank_not_by_position() {
        // "abc": with "b c" ranked first, b+c merge before a+b can, and "a bc" is no merge.
        let t = Tokenizer::new(toy(&["ab", "bc", "abc"], &["b c", "a b", "ab c"], "gpt2")).unwrap();
        assert_eq!(t.encode("abc"), vec![u32::from(b'a'), 257]);
        // With "a b" first: a+b, then ab+c.
        let t = Tokenizer::new(toy(&["ab", "bc", "abc"], &["a b", "b c", "ab c"], "gpt2")).unwrap();
        assert_eq!(t.encode("abc"), vec![258]);
        assert_eq!(t.encode("bcab"), vec![257, 256]);
        // Merges never cross pre-tokenizer pieces: " abc" is "Ġabc" (no Ġ merge) -> Ġ, abc.
        assert_eq!(t.encode(" abc"), vec![u32::from(b' '), 258]);
        assert_eq!(t.decode(&[u32::from(b' '), 258]), " abc");
        assert_eq!(t.encode("abc abc"), vec![258, u32::from(b' '), 258]);
    }

    #[test]
    fn smollm_splits_every_digit() {
        let spec = |pre| toy(&["12", "Ġ1"], &["1 2", "Ġ 1"], pre);
        let gpt2 = Tokenizer::new(spec("gpt2")).unwrap();
        let smollm = Tokenizer::new(spec("smollm")).unwrap();
        assert_eq!(gpt2.split(), PreSplit::Gpt2);
        assert_eq!(smollm.split(), PreSplit::DigitsThenGpt2);
        assert_eq!(gpt2.encode("12"), vec![256]);
        assert_eq!(smollm.encode("12"), ids("12"));
        // GPT-2 keeps " 12" one piece (Ġ, then 1+2 ranks first); smollm isolates each digit,
        // so the space is a piece of its own and nothing merges.
        assert_eq!(gpt2.encode(" 12"), vec![u32::from(b' '), 256]);
        assert_eq!(smollm.encode(" 12"), ids(" 12"));
    }

    #[test]
    fn control_tokens_are_matched_whole_and_decoded_back() {
        let mut spec = toy(&["<|im_start|>", "<x>"], &[], "smollm");
        spec.token_types[256] = TOKEN_TYPE_CONTROL;
        spec.token_types[257] = TOKEN_TYPE_USER_DEFINED;
        spec.bos = Some(256);
        let t = Tokenizer::new(spec).unwrap();
        let got = t.encode("a<|im_start|>b<x>");
        assert_eq!(got, vec![97, 256, 98, 257]);
        assert_eq!(t.decode(&got), "a<|im_start|>b<x>");
        assert_eq!(t.bos(), Some(256));
        assert_eq!(t.eos(), None);
        assert_eq!(t.vocab_size(), 258);
        assert_eq!(t.token(256).as_deref(), Some("<|im_start|>"));
        // Ids outside the vocabulary are skipped.
        assert_eq!(t.decode(&[97, 9999, 98]), "ab");
    }

    #[test]
    fn odd_unicode_round_trips_through_byte_tokens() {
        let t = Tokenizer::new(toy(&[], &[], "smollm")).unwrap();
        for s in [
            "",
            "plain text, with punctuation!",
            "emoji 🚀👩‍👩‍👧 flags 🇫🇷",
            "CJK 東京都 한국어 日本語",
            "combining e\u{301} a\u{308}\u{323} and zero-width\u{200d}joiner",
            "controls \u{1}\u{7}\u{1b}[0m\u{7f} and bidi \u{202e}abc",
            "runs of   \t\t  whitespace\n\n\n   \r\n end   ",
            "\u{feff}BOM and \u{10ffff} and \u{fffd}",
        ] {
            let got = t.encode(s);
            assert_eq!(got.len(), s.len(), "{s:?}: one token per byte");
            assert_eq!(t.decode(&got), s);
        }
    }

    #[test]
    fn bad_specs_are_refused_with_the_reason() {
        let err = |spec: TokenizerSpec| format!("{:#}", Tokenizer::new(spec).unwrap_err());
        let mut s = toy(&[], &[], "gpt2");
        s.model = "llama".into();
        assert!(err(s).contains("\"llama\" is not supported"));
        assert!(err(toy(&[], &[], "qwen2")).contains("pre-tokenizer \"qwen2\""));
        assert!(err(toy(&["a"], &[], "gpt2")).contains("appears twice"));
        assert!(err(toy(&[], &["ab"], "gpt2")).contains("not two tokens"));
        assert!(err(toy(&[], &["a b"], "gpt2")).contains("BPE model"));
        let mut s = toy(&[], &[], "gpt2");
        s.tokens.swap_remove(4); // byte 0x04's token replaced by 0xff's
        s.token_types.pop();
        let t = Tokenizer::new(s).unwrap();
        assert_eq!(t.missing_bytes(), [0x04]);
        assert_eq!(t.encode("a\u{4}b"), vec![97, 98]);
        let mut s = toy(&[], &[], "gpt2");
        s.token_types.pop();
        assert!(err(s).contains("255 entries for 256 tokens"));
        let mut s = toy(&[], &[], "gpt2");
        s.eos = Some(256);
        assert!(err(s).contains("eos token id 256 is outside"));
        assert!(Tokenizer::new(toy(&[], &[], "gpt2")).is_ok());
        let mut s = toy(&[], &[], "gpt2");
        s.pre = None;
        assert_eq!(Tokenizer::new(s).unwrap().split(), PreSplit::Gpt2);
    }

    /// The real SmolLM2-135M tokenizer, from a JSON [`TokenizerSpec`] fixture named by
    /// `LTS_SMOLLM2_TOKENIZER` (made from the GGUF file by `scripts/gguf_tokenizer_spec.py`);
    /// skipped without it. Expected ids: Python `tokenizers` 0.23.3 built from the same
    /// vocabulary and merges with `Sequence[Digits(individual_digits=True),
    /// ByteLevel(add_prefix_space=False)]`, cross-checked with a from-scratch Python BPE
    /// (`regex` module, GPT-2 pattern, merges by rank); both agree on every sentence.
    #[test]
    fn smollm2_ids_match_hugging_face() {
        let Some(path) = std::env::var_os("LTS_SMOLLM2_TOKENIZER") else {
            eprintln!("skipped: set LTS_SMOLLM2_TOKENIZER to a SmolLM2 tokenizer spec JSON");
            return;
        };
        let spec: TokenizerSpec = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let t = Tokenizer::new(spec).unwrap();
        assert_eq!(
            (t.vocab_size(), t.bos(), t.eos()),
            (49152, Some(1), Some(2))
        );
        let cases: &[(&str, &[u32])] = &[
            (
                "The quick brown fox jumps over the lazy dog.",
                &[504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30],
            ),
            (
                "In 1961, the jury said it found 3,145 irregularities -- \"none\" of them serious.",
                &[
                    788, 216, 33, 41, 38, 33, 28, 260, 19328, 1137, 357, 983, 216, 35, 28, 33, 36,
                    37, 37676, 3009, 476, 19444, 18, 282, 601, 3199, 30,
                ],
            ),
            (
                "Hello world!  It's   spaced\ttabs\nnew line",
                &[
                    19556, 905, 17, 216, 657, 506, 256, 23861, 197, 100, 7366, 198, 2241, 1761,
                ],
            ),
            (
                "Ünïcödé: 東京 🚀 e\u{301}",
                &[
                    142, 246, 94, 25972, 83, 7466, 84, 2756, 42, 17097, 247, 126, 16736, 122,
                    15107, 244, 218, 297, 151, 219,
                ],
            ),
            ("<|im_start|>user\nHi<|im_end|>", &[1, 4093, 198, 26843, 2]),
        ];
        for (text, want) in cases {
            assert_eq!(t.encode(text), *want, "{text:?}");
            assert_eq!(t.decode(want), *text);
        }
        // Bytes 0xc0, 0xc1, 0xf5..=0xff never occur in UTF-8; the rest are rare.
        assert_eq!(
            t.missing_bytes(),
            [
                0x04, 0x06, 0x13, 0x14, 0x16, 0x1d, 0xc0, 0xc1, 0xf1, 0xf2, 0xf5, 0xf6, 0xf7, 0xf8,
                0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff
            ]
        );
        // Dropped, not merged across (Python `tokenizers` gives the same ids).
        assert_eq!(t.encode("a\u{4}b"), [81, 82]);
        for s in [
            "emoji 🚀👩‍👩‍👧 flags 🇫🇷 CJK 東京都 한국어 日本語",
            "combining e\u{301} a\u{308}\u{323}, zero-width\u{200d}joiner, bidi \u{202e}abc",
            "controls \u{1}\u{7}\u{1b}[0m\u{7f}\u{8}\u{c}",
            "runs of      \t\t\t   whitespace\n\n\n\n   \r\n end        ",
            "\u{feff}BOM, \u{10ffff}, \u{fffd}, 12345678901234567890",
        ] {
            assert_eq!(t.decode(&t.encode(s)), s, "{s:?}");
        }
        // The whole Brown evaluation text, when `lts fetch brown` has run.
        if let Some(dir) = crate::backend::ortlib::cache_dir() {
            let eval = dir.join("corpus/brown/eval.txt");
            if let Ok(text) = std::fs::read_to_string(&eval) {
                let ids = t.encode(&text);
                eprintln!(
                    "{}: {} bytes, {} tokens",
                    eval.display(),
                    text.len(),
                    ids.len()
                );
                assert_eq!(t.decode(&ids), text);
            }
        }
    }
}
