//! What one timed run computes ([`Workload`]): a prefill, one decode step, or a whole generation
//! (prefill + decode steps), with which batch, lengths and logits. Plain serde data, shared by the
//! graph emitter, the backends, the job and the search.
//!
//! The figures a user compares (see `shared/reference/measurement.md`):
//! - [`Mode::Prefill`] with [`Logits::Last`]: the prompt-processing time before the first token
//!   (what a serving engine computes: logits of the last position only; so does the LTS reference
//!   implementation's latency graph, a softmax over the last position);
//! - [`Mode::Decode`]: one generated token with a KV cache (llama-bench `tg`, one step);
//! - [`Mode::Generate`]: a prompt of `seq_len` tokens, then `new_tokens` greedy decode steps with
//!   the growing KV cache, timed end to end: what a Raspberry Pi or Jetson user waits for, also
//!   reported as time to first token and tokens/s;
//! - [`Logits::All`]: logits of every position, for scoring text (perplexity).

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::arch::Arch;

/// Default prompt / context length of prefill and decode workloads (LTS: sequence length 192).
pub const DEFAULT_SEQ_LEN: usize = 192;
/// Default prompt length of a generate workload.
pub const DEFAULT_PROMPT_LEN: usize = 128;
/// Default number of decode steps of a generate workload.
pub const DEFAULT_NEW_TOKENS: usize = 64;

/// Which computation is timed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Process a prompt of `seq_len` tokens at once (LTS's latency: batch 1, seq 192).
    Prefill,
    /// Generate one token with a KV cache already holding `seq_len` positions.
    Decode,
    /// A prefill of `seq_len` prompt tokens, then `new_tokens` greedy decode steps, each feeding
    /// the previous step's argmax token and the grown KV cache (end-to-end generation latency).
    Generate,
}

impl Mode {
    /// Lower-case name, as in results.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Prefill => "prefill",
            Mode::Decode => "decode",
            Mode::Generate => "generate",
        }
    }
}

/// Which positions of a prefill get logits (the LM head).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Logits {
    /// The last position only, `[batch, 1, vocab]`: what producing the first token needs (a
    /// serving engine's prefill; the LTS reference latency graph). The default for latency.
    Last,
    /// Every position, `[batch, seq, vocab]`: what scoring text (perplexity) needs.
    All,
}

impl Logits {
    /// Lower-case name, as in results.
    pub fn as_str(self) -> &'static str {
        match self {
            Logits::Last => "last",
            Logits::All => "all",
        }
    }

    /// What results written before this field existed timed: every position.
    pub fn legacy() -> Logits {
        Logits::All
    }
}

/// The inputs of one timed run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Prefill, decode or generate.
    pub mode: Mode,
    /// Sequences per run.
    pub batch: usize,
    /// Prefill and generate: prompt tokens. Decode: positions already in the KV cache (one new
    /// token).
    pub seq_len: usize,
    /// Generate: decode steps after the prefill (tokens generated after the first one); 0 for the
    /// other modes.
    #[serde(default)]
    pub new_tokens: usize,
    /// Prefill: logits of the last position or of all. Decode and generate steps compute one
    /// position, recorded as `last`. Results written before this field existed timed `all`.
    #[serde(default = "Logits::legacy")]
    pub logits: Logits,
    /// Seed of the generated inputs (token ids, cache contents).
    pub seed: u64,
}

impl Default for Workload {
    /// A prefill of 192 tokens, batch 1, last-position logits, seed 0.
    fn default() -> Self {
        Workload {
            mode: Mode::Prefill,
            batch: 1,
            seq_len: DEFAULT_SEQ_LEN,
            new_tokens: 0,
            logits: Logits::Last,
            seed: 0,
        }
    }
}

impl Workload {
    /// Positions of the KV cache the workload fills: prefill `seq_len`, decode `seq_len + 1`,
    /// generate `seq_len + new_tokens`; `None` on overflow.
    pub fn positions(&self) -> Option<usize> {
        match self.mode {
            Mode::Prefill => Some(self.seq_len),
            Mode::Decode => self.seq_len.checked_add(1),
            Mode::Generate => self.seq_len.checked_add(self.new_tokens),
        }
    }

    /// Tokens fed in the first forward: the prompt (prefill, generate) or one token (decode).
    pub fn first_tokens(&self) -> usize {
        match self.mode {
            Mode::Prefill | Mode::Generate => self.seq_len,
            Mode::Decode => 1,
        }
    }

    /// Checks the workload is non-empty, consistent, and fits the arch's positions.
    pub fn check(&self, arch: &Arch) -> Result<()> {
        self.check_positions(arch.n_positions, "the arch")
    }

    /// [`Workload::check`] against `n_positions` positions of `owner` (`the arch`, `the space`).
    pub fn check_positions(&self, n_positions: usize, owner: &str) -> Result<()> {
        if self.batch == 0 || self.seq_len == 0 {
            bail!("--batch and --seq-len (--prompt-len) must be >= 1");
        }
        match self.mode {
            Mode::Generate if self.new_tokens == 0 => {
                bail!("--new-tokens must be >= 1 for --mode generate")
            }
            Mode::Prefill | Mode::Decode if self.new_tokens != 0 => bail!(
                "--new-tokens applies to --mode generate only (got {} with --mode {})",
                self.new_tokens,
                self.mode.as_str()
            ),
            Mode::Decode | Mode::Generate if self.logits == Logits::All => bail!(
                "--logits all applies to --mode prefill only: a {} step computes logits for its one new token",
                self.mode.as_str()
            ),
            _ => {}
        }
        let Some(positions) = self.positions() else {
            bail!("the workload's length overflows: lower --seq-len / --new-tokens");
        };
        if positions > n_positions {
            let fix = match self.mode {
                Mode::Generate => "lower --prompt-len or --new-tokens",
                _ => "lower --seq-len",
            };
            bail!(
                "the workload needs {positions} positions but {owner} has n_positions = {n_positions}; {fix} or raise n_positions"
            );
        }
        Ok(())
    }

    /// Forward FLOPs of one run ([`Arch::flops_per_token`]; the LM head counted once per
    /// position that gets logits).
    pub fn flops(&self, arch: &Arch) -> u64 {
        let head = arch.lm_head_flops();
        let prefill = |seq: usize, logits: Logits| {
            let all = arch.prefill_flops(seq);
            match logits {
                Logits::All => all,
                Logits::Last => all - (seq as u64 - 1) * head,
            }
        };
        let per_seq = match self.mode {
            Mode::Prefill => prefill(self.seq_len, self.logits),
            Mode::Decode => arch.flops_per_token(self.seq_len + 1),
            Mode::Generate => {
                prefill(self.seq_len, Logits::Last)
                    + (0..self.new_tokens)
                        .map(|i| arch.flops_per_token(self.seq_len + i + 1))
                        .sum::<u64>()
            }
        };
        per_seq * self.batch as u64
    }

    /// Short description for tables: `prefill 192 (last-position logits)`,
    /// `decode after 192`, `generate 128 + 64`.
    pub fn describe(&self) -> String {
        match self.mode {
            Mode::Prefill => format!(
                "prefill {} ({}-position logits)",
                self.seq_len,
                self.logits.as_str()
            ),
            Mode::Decode => format!("decode after {}", self.seq_len),
            Mode::Generate => format!("generate {} + {}", self.seq_len, self.new_tokens),
        }
    }
}

/// The lengths of a workload from what the user gave (`seq_len`: `--seq-len`, or `--prompt-len`
/// for generate; `new_tokens`: `--new-tokens`) and defaults that fit `n_positions`:
/// - prefill: `--seq-len` min(192, n_positions); decode: min(192, n_positions - 1);
/// - generate: a prompt of min(128, n_positions / 2) (or n_positions - new tokens when those
///   were given) and min(64, n_positions - prompt) new tokens.
///
/// Returns (seq_len, new_tokens) and, when a default had to shrink to fit, a note saying so.
/// Values the user gave are kept as they are ([`Workload::check`] refuses those that do not fit).
pub fn resolve_lengths(
    mode: Mode,
    n_positions: usize,
    seq_len: Option<usize>,
    new_tokens: Option<usize>,
) -> (usize, usize, Option<String>) {
    let mut notes = Vec::new();
    let mut pick = |given: Option<usize>, what: &str, default: usize, room: usize| {
        given.unwrap_or_else(|| {
            let v = default.min(room).max(1);
            if v < default {
                notes.push(format!(
                    "{what} defaults to {v} (not {default}): the arch has n_positions = {n_positions}"
                ));
            }
            v
        })
    };
    let (s, n) = match mode {
        Mode::Prefill => (pick(seq_len, "--seq-len", DEFAULT_SEQ_LEN, n_positions), 0),
        Mode::Decode => (
            pick(
                seq_len,
                "--seq-len",
                DEFAULT_SEQ_LEN,
                n_positions.saturating_sub(1),
            ),
            0,
        ),
        Mode::Generate => {
            let room = match new_tokens {
                Some(n) => n_positions.saturating_sub(n),
                None => n_positions / 2,
            };
            let p = pick(seq_len, "--prompt-len", DEFAULT_PROMPT_LEN, room);
            let n = pick(
                new_tokens,
                "--new-tokens",
                DEFAULT_NEW_TOKENS,
                n_positions.saturating_sub(p),
            );
            (p, n)
        }
    };
    let note = (!notes.is_empty()).then(|| notes.join("; "));
    (s, n, note)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_must_fit_positions() {
        let arch = Arch::preset("gpt2-tiny").unwrap(); // 64 positions
        let mut w = Workload {
            seq_len: 64,
            ..Workload::default()
        };
        assert!(w.check(&arch).is_ok());
        w.mode = Mode::Decode;
        let e = w.check(&arch).unwrap_err().to_string();
        assert!(
            e.contains("65 positions") && e.contains("n_positions = 64"),
            "{e}"
        );
        let g = Workload {
            mode: Mode::Generate,
            seq_len: 40,
            new_tokens: 25,
            ..Workload::default()
        };
        let e = g.check(&arch).unwrap_err().to_string();
        assert!(
            e.contains("65 positions") && e.contains("--new-tokens"),
            "{e}"
        );
        assert!(Workload {
            new_tokens: 24,
            ..g
        }
        .check(&arch)
        .is_ok());
    }

    #[test]
    fn inconsistent_workloads_are_errors() {
        let arch = Arch::preset("gpt2-tiny").unwrap();
        let base = Workload {
            seq_len: 16,
            ..Workload::default()
        };
        let gen0 = Workload {
            mode: Mode::Generate,
            ..base.clone()
        };
        assert!(gen0
            .check(&arch)
            .unwrap_err()
            .to_string()
            .contains("--new-tokens must be >= 1"));
        let dec_all = Workload {
            mode: Mode::Decode,
            logits: Logits::All,
            ..base.clone()
        };
        assert!(dec_all
            .check(&arch)
            .unwrap_err()
            .to_string()
            .contains("--logits all"));
        let pre_new = Workload {
            new_tokens: 3,
            ..base.clone()
        };
        assert!(pre_new
            .check(&arch)
            .unwrap_err()
            .to_string()
            .contains("--mode generate only"));
        let overflow = Workload {
            mode: Mode::Generate,
            seq_len: usize::MAX,
            new_tokens: 2,
            ..base
        };
        assert!(overflow
            .check(&arch)
            .unwrap_err()
            .to_string()
            .contains("overflows"));
    }

    #[test]
    fn old_results_without_logits_read_as_all() {
        let w: Workload =
            serde_json::from_str(r#"{"mode":"prefill","batch":1,"seq_len":192,"seed":0}"#).unwrap();
        assert_eq!(w.logits, Logits::All);
        assert_eq!(w.new_tokens, 0);
        assert_eq!(Workload::default().logits, Logits::Last);
        let text = serde_json::to_string(&Workload::default()).unwrap();
        assert!(text.contains(r#""logits":"last""#), "{text}");
    }

    #[test]
    fn last_logits_flops_drop_the_head_of_all_but_one_position() {
        let arch = Arch::preset("gpt2-tiny").unwrap();
        let all = Workload {
            seq_len: 32,
            logits: Logits::All,
            ..Workload::default()
        };
        let last = Workload {
            logits: Logits::Last,
            ..all.clone()
        };
        assert_eq!(
            all.flops(&arch) - last.flops(&arch),
            31 * arch.lm_head_flops()
        );
        let gen = Workload {
            mode: Mode::Generate,
            seq_len: 32,
            new_tokens: 4,
            logits: Logits::Last,
            ..Workload::default()
        };
        let steps: u64 = (33..=36).map(|c| arch.flops_per_token(c)).sum();
        assert_eq!(gen.flops(&arch), last.flops(&arch) + steps);
    }

    #[test]
    fn defaults_fit_every_preset() {
        for name in crate::arch::PRESETS {
            let arch = Arch::preset(name).unwrap();
            for mode in [Mode::Prefill, Mode::Decode, Mode::Generate] {
                let (seq_len, new_tokens, note) =
                    resolve_lengths(mode, arch.n_positions, None, None);
                let w = Workload {
                    mode,
                    seq_len,
                    new_tokens,
                    ..Workload::default()
                };
                w.check(&arch)
                    .unwrap_or_else(|e| panic!("{name} {mode:?}: {e}"));
                if arch.n_positions >= 256 {
                    assert!(note.is_none(), "{name} {mode:?}: {note:?}");
                }
            }
        }
        assert_eq!(
            resolve_lengths(Mode::Prefill, 1024, None, None),
            (192, 0, None)
        );
        assert_eq!(
            resolve_lengths(Mode::Generate, 1024, None, None),
            (128, 64, None)
        );
        let (s, _, note) = resolve_lengths(Mode::Prefill, 64, None, None);
        assert_eq!(s, 64);
        assert!(note.unwrap().contains("n_positions = 64"));
        // Given values are kept; the other default makes room for them.
        assert_eq!(
            resolve_lengths(Mode::Prefill, 64, Some(100), None),
            (100, 0, None)
        );
        let (p, n, note) = resolve_lengths(Mode::Generate, 64, Some(60), None);
        assert_eq!((p, n), (60, 4));
        assert!(note.unwrap().contains("--new-tokens defaults to 4"));
        let (p, n, _) = resolve_lengths(Mode::Generate, 64, None, Some(10));
        assert_eq!((p, n), (54, 10));
    }
}
