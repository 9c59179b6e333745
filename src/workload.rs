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

use ndarray::{Array2, Array4};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::arch::Arch;
use crate::model_io::KvCache;

/// Default prompt / context length of prefill and decode workloads (LTS: sequence length 192).
pub const DEFAULT_SEQ_LEN: usize = 192;
/// Default prompt length of a generate workload.
pub const DEFAULT_PROMPT_LEN: usize = 128;
/// Default number of decode steps of a generate workload.
pub const DEFAULT_NEW_TOKENS: usize = 64;

/// Hard upper bound on `--batch`. LTS times batch 1 and serving engines batch a few hundred
/// sequences; 1 048 576 (2^20) only keeps every size derived from a workload (batch x
/// [`crate::arch::MAX_POSITIONS`] x [`crate::arch::MAX_VOCAB`] x 4 bytes < 2^64) inside 64 bits.
/// What a batch may really use is decided by the memory estimate ([`estimate_memory`],
/// `--max-memory`).
pub const MAX_BATCH: usize = 1 << 20;

/// Share of the usable memory ([`MemoryLimit::default_for_machine`]) a workload may need by
/// default: 80%, leaving room for the runtime, its thread pools and the rest of the machine.
pub const DEFAULT_MEMORY_SHARE: f64 = 0.8;

/// Memory of the runtime itself, whatever the model: the ONNX Runtime library, its thread
/// pools and allocator arenas (`lts measure --preset gpt2-tiny`, a 24 k-parameter model, peaks
/// at about 40 MB resident on x86-64 Linux, the binary included).
pub const RUNTIME_OVERHEAD: u64 = 32 << 20;

/// Multiplier on the widest activation of a step in [`estimate_memory`]: a block keeps its
/// input, the residual, a normalised copy and the widest intermediate alive at once, the GELU
/// (tanh) and SwiGLU MLPs several elementwise temporaries of the intermediate, and ONNX
/// Runtime's arena rounds buffers up.
pub const ACTIVATION_FACTOR: u64 = 8;

/// Copies of the attention scores of a layer alive at once in [`estimate_memory`]: the scaled
/// scores, the masked scores, the softmax and its temporaries. With this and
/// [`ACTIVATION_FACTOR`], `lts measure --preset gpt2-tiny --batch 1000` (peak 433 MB resident
/// with ONNX Runtime 1.31 on x86-64) is estimated at about 500 MB.
pub const SCORE_COPIES: u64 = 4;

/// Which computation is timed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
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

impl crate::choice::Choice for Mode {
    const ALL: &'static [(Self, &'static str, &'static str)] = &[
        (
            Mode::Prefill,
            "prefill",
            "a prompt of --seq-len tokens at once: the time before the first token",
        ),
        (
            Mode::Decode,
            "decode",
            "one token after a KV cache of --seq-len positions",
        ),
        (
            Mode::Generate,
            "generate",
            "a prompt of --prompt-len tokens, then --new-tokens greedy decode steps, end to end",
        ),
    ];
}

impl crate::choice::Choice for Logits {
    const ALL: &'static [(Self, &'static str, &'static str)] = &[
        (
            Logits::Last,
            "last",
            "the last position only, [batch, 1, vocab]: what a first token needs",
        ),
        (
            Logits::All,
            "all",
            "every position, [batch, seq, vocab]: what scoring text (perplexity) needs",
        ),
    ];
}

impl Mode {
    /// Lower-case name, as in results.
    pub fn as_str(self) -> &'static str {
        crate::choice::Choice::name(self)
    }
}

/// Which positions of a prefill get logits (the LM head).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
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
        crate::choice::Choice::name(self)
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
        if self.batch > MAX_BATCH {
            bail!(
                "--batch {} is above the bound of {MAX_BATCH} sequences per run",
                self.batch
            );
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
    /// position that gets logits), saturating at `u64::MAX` (see [`Arch::flops_span`]).
    pub fn flops(&self, arch: &Arch) -> u64 {
        let head = arch.lm_head_flops();
        let prefill = |seq: usize, logits: Logits| {
            let all = arch.prefill_flops(seq);
            match logits {
                Logits::All => all,
                Logits::Last => all.saturating_sub((seq as u64).saturating_sub(1) * head),
            }
        };
        let per_seq = match self.mode {
            Mode::Prefill => prefill(self.seq_len, self.logits),
            Mode::Decode => arch.flops_per_token(self.seq_len + 1),
            Mode::Generate => prefill(self.seq_len, Logits::Last)
                .saturating_add(arch.flops_span(self.seq_len + 1, self.new_tokens)),
        };
        per_seq.saturating_mul(self.batch as u64)
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

/// The keys of a recorded workload in a file's metadata (defined beside the arch, whose JSON
/// reader skips them in `<arch-id>.arch.json`).
pub use crate::arch::{WORKLOAD_KEY, WORKLOAD_SOURCE_KEY};

/// The workload an exported file (`lts export`, `lts quantize`) was made for: the one its
/// candidate was timed on in a search, or the workload flags (or defaults) of a plain export.
/// `lts measure --onnx` times it unless a flag says otherwise.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RecordedWorkload {
    /// The workload.
    pub workload: Workload,
    /// Where it came from: `the search's workload, run r1`, `lts export's defaults`, ...
    pub source: String,
}

impl RecordedWorkload {
    /// The `(key, value)` pairs that record it in a file's metadata ([`WORKLOAD_KEY`],
    /// [`WORKLOAD_SOURCE_KEY`]).
    pub fn metadata(&self) -> [(&'static str, String); 2] {
        [
            (
                WORKLOAD_KEY,
                serde_json::to_string(&self.workload).expect("a workload serializes"),
            ),
            (WORKLOAD_SOURCE_KEY, self.source.clone()),
        ]
    }

    /// Reads it back from a file's metadata values: `None` when the file records no workload
    /// (written before lts recorded one), an error when the recorded one is not a workload.
    pub fn from_metadata(
        workload: Option<&str>,
        source: Option<&str>,
    ) -> Result<Option<RecordedWorkload>> {
        let Some(json) = workload else {
            return Ok(None);
        };
        let workload: Workload = serde_json::from_str(json).map_err(|e| {
            anyhow::anyhow!(
                "its `{WORKLOAD_KEY}` metadata is not a workload ({e}): export the file again"
            )
        })?;
        Ok(Some(RecordedWorkload {
            workload,
            source: source.unwrap_or("its metadata").to_string(),
        }))
    }
}

/// What a workload needs in memory, in bytes, by part (see [`estimate_memory`]).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// fp32 weights, counted three times: the generated (or loaded) weights, their conversion
    /// to the graph layout (both alive for a while) and the runtime's copy (ONNX Runtime
    /// prepacks its own; wgpu uploads one).
    pub weights: u64,
    /// Activations of the largest step: hidden states and MLP intermediates, attention scores,
    /// logits.
    pub activations: u64,
    /// Keys and values of every layer for every position (twice when a step reads a past
    /// cache and writes the present one).
    pub kv_cache: u64,
    /// Input tensors (token ids).
    pub inputs: u64,
    /// The runtime itself ([`RUNTIME_OVERHEAD`]).
    pub runtime: u64,
}

impl MemoryEstimate {
    /// Sum of the parts (saturating; each part is below 2^64 / 4).
    pub fn total(&self) -> u64 {
        self.weights
            .saturating_add(self.activations)
            .saturating_add(self.kv_cache)
            .saturating_add(self.inputs)
            .saturating_add(self.runtime)
    }

    /// The larger of each part of `self` and `other` (a bound of both).
    pub fn max(self, other: MemoryEstimate) -> MemoryEstimate {
        MemoryEstimate {
            weights: self.weights.max(other.weights),
            activations: self.activations.max(other.activations),
            kv_cache: self.kv_cache.max(other.kv_cache),
            inputs: self.inputs.max(other.inputs),
            runtime: self.runtime.max(other.runtime),
        }
    }

    /// `15.2 GiB (weights 0.3 GiB, activations 14.1 GiB, KV cache 0.8 GiB, runtime 32.0 MiB)`,
    /// with the inputs when they reach 1 MiB.
    pub fn describe(&self) -> String {
        use crate::util::format_bytes as b;
        format!(
            "{} (weights {}, activations {}, KV cache {}{}, runtime {})",
            b(self.total()),
            b(self.weights),
            b(self.activations),
            b(self.kv_cache),
            if self.inputs >= 1 << 20 {
                format!(", inputs {}", b(self.inputs))
            } else {
                String::new()
            },
            b(self.runtime)
        )
    }
}

/// Product of `factors`, `None` when it overflows `u64`.
fn product(factors: &[u64]) -> Option<u64> {
    factors.iter().try_fold(1u64, |acc, &f| acc.checked_mul(f))
}

/// Estimates the bytes running `workload` on `arch` needs, before anything is allocated
/// (`None` when a part overflows `u64`: far more than any machine has). fp32 (4 bytes) values
/// throughout, with `tokens` = batch x the tokens of the first forward (the prompt; 1 for
/// decode) and `positions` = [`Workload::positions`]:
/// - weights: total parameters x 4, counted three times (generated, converted to the graph
///   layout, prepacked by the runtime: `lts measure --preset gpt2-small --batch 2`, 124 M
///   parameters, peaks at 1.34 GB resident, estimated 1.4 GiB);
/// - activations of the largest step: tokens x max(3 d_model, max d_inner, vocab when every
///   position gets logits) x 4 x [`ACTIVATION_FACTOR`], plus attention scores batch x
///   max n_head x first tokens x positions x 4 x [`SCORE_COPIES`], plus last-position logits batch x vocab x 4;
/// - KV cache: 2 (keys, values) x batch x positions x sum over layers of n_kv_head x head_dim
///   (= n_kv_head x d_model / n_head) x 4, twice for decode and generate (a step reads the past cache and writes the present);
/// - inputs: tokens x 8 (int64 token ids);
/// - the runtime itself: [`RUNTIME_OVERHEAD`].
///
/// Every part grows with every size of the arch and of the workload, so the estimate of an
/// arch whose every size is the largest of a search space bounds every candidate of it.
pub fn estimate_memory(arch: &Arch, workload: &Workload) -> Option<MemoryEstimate> {
    const F: u64 = 4;
    let batch = workload.batch as u64;
    let first = workload.first_tokens() as u64;
    let positions = workload.positions()? as u64;
    let tokens = batch.checked_mul(first)?;
    let d = arch.d_model as u64;
    let vocab = arch.vocab_size as u64;
    let inner = arch.d_inner.iter().copied().max().unwrap_or(0) as u64;
    let heads = arch.n_head.iter().copied().max().unwrap_or(0) as u64;
    let mut width = d.checked_mul(3)?.max(inner);
    if workload.mode == Mode::Prefill && workload.logits == Logits::All {
        width = width.max(vocab);
    }
    let weights = product(&[arch.params().total, F, 3])?;
    let hidden = product(&[tokens, width, F, ACTIVATION_FACTOR])?;
    let scores = product(&[batch, heads, first, positions, F, SCORE_COPIES])?;
    let logits = product(&[batch, vocab, F])?;
    let activations = hidden.checked_add(scores)?.checked_add(logits)?;
    let kv_width = (0..arch.n_layer.min(arch.n_kv_head.len()))
        .map(|i| {
            // kv x (d / h), multiplied first: exact when h divides d, and d when kv = h.
            (arch.n_kv_head[i] as u64)
                .checked_mul(d)
                .map(|p| p / (arch.n_head[i] as u64).max(1))
        })
        .try_fold(0u64, |acc, w| acc.checked_add(w?))?;
    let copies = match workload.mode {
        Mode::Prefill => 1,
        Mode::Decode | Mode::Generate => 2,
    };
    let kv_cache = product(&[2, batch, positions, kv_width, F, copies])?;
    let inputs = tokens.checked_mul(8)?;
    Some(MemoryEstimate {
        weights,
        activations,
        kv_cache,
        inputs,
        runtime: RUNTIME_OVERHEAD,
    })
}

/// The most memory a workload may need (`--max-memory`), with where the number came from.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryLimit {
    /// Bytes.
    pub bytes: u64,
    /// Where it came from, for messages: `set by --max-memory`, `80% of this machine's memory`.
    pub source: String,
}

impl MemoryLimit {
    /// `--max-memory` when given (`Some`), else [`MemoryLimit::default_for_machine`].
    pub fn resolve(max_memory: Option<u64>) -> MemoryLimit {
        match max_memory {
            Some(bytes) => MemoryLimit {
                bytes,
                source: "set by --max-memory".into(),
            },
            None => MemoryLimit::default_for_machine(),
        }
    }

    /// [`DEFAULT_MEMORY_SHARE`] (80%) of what this process can use: the machine's physical
    /// memory (sysinfo), or less when a cgroup memory limit (a container) or an address-space
    /// limit (`ulimit -v`, `RLIMIT_AS`) is lower.
    pub fn default_for_machine() -> MemoryLimit {
        use sysinfo::{MemoryRefreshKind, RefreshKind, System};
        let sys = System::new_with_specifics(
            RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram()),
        );
        let mut usable = (sys.total_memory(), "this machine's memory");
        if let Some(c) = sys.cgroup_limits() {
            if c.total_memory > 0 && c.total_memory < usable.0 {
                usable = (c.total_memory, "the container's memory limit");
            }
        }
        if let Some(v) = address_space_limit() {
            if v < usable.0 {
                usable = (v, "the address-space limit (ulimit -v)");
            }
        }
        MemoryLimit {
            bytes: (usable.0 as f64 * DEFAULT_MEMORY_SHARE) as u64,
            source: format!("{:.0}% of {}", DEFAULT_MEMORY_SHARE * 100.0, usable.1),
        }
    }

    /// Refuses an estimate above the limit (or one that overflowed: `None`). `what` names the
    /// workload in the message: `this workload`, `the largest candidate of the space`.
    pub fn check(&self, estimate: Option<MemoryEstimate>, what: &str) -> Result<MemoryEstimate> {
        let fix = "lower --batch/--seq-len (--prompt-len, --new-tokens) or raise --max-memory";
        let Some(e) = estimate else {
            bail!("{what} needs more memory than a 64-bit size can count: {fix}");
        };
        if e.total() > self.bytes {
            bail!(
                "{what} needs about {}, above the limit of {} ({}): {fix}",
                e.describe(),
                crate::util::format_bytes(self.bytes),
                self.source
            );
        }
        Ok(e)
    }
}

/// The soft address-space limit of this process (`RLIMIT_AS`), when there is one.
#[allow(clippy::unnecessary_cast)] // rlim_t is 32 bits on some targets
fn address_space_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut lim) } == 0;
    (ok && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur as u64)
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

/// Seeded inputs of a workload, the same for every backend: `input_ids` `[batch, new tokens]`
/// (the prompt for prefill and generate, one token for decode) uniform over the vocabulary and, in decode mode, a past cache of `seq_len` positions drawn
/// from N(0, 1) (per layer: key, then value). Same seed, same inputs.
pub fn inputs(arch: &Arch, workload: &Workload) -> (Array2<i64>, Option<KvCache>) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(workload.seed);
    let new_tokens = workload.first_tokens();
    let ids = Array2::from_shape_simple_fn((workload.batch, new_tokens), || {
        rng.random_range(0..arch.vocab_size as i64)
    });
    let past = (workload.mode == Mode::Decode).then(|| {
        let layers = (0..arch.n_layer)
            .map(|i| {
                let shape = (
                    workload.batch,
                    arch.n_kv_head[i],
                    workload.seq_len,
                    arch.head_dim(i),
                );
                let mut part =
                    || Array4::from_shape_simple_fn(shape, || StandardNormal.sample(&mut rng));
                let k = part();
                let v = part();
                (k, v)
            })
            .collect();
        KvCache { layers }
    });
    (ids, past)
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

    #[test]
    fn memory_estimate_of_gpt2_tiny_by_hand() {
        let arch = Arch::preset("gpt2-tiny").unwrap();
        let w = Workload {
            seq_len: 64,
            ..Workload::default()
        };
        let e = estimate_memory(&arch, &w).unwrap();
        // Blocks: 4d + 3d^2 + 3d + d^2 + d + 2 d inner + inner + d = 4384 + 65 inner with
        // d = 32, inner 96 and 64; final norm 2d; embeddings 97 x 32 + 64 x 32.
        let total_params = (4384 + 65 * 96) + (4384 + 65 * 64) + 64 + 97 * 32 + 64 * 32;
        assert_eq!(total_params, arch.params().total);
        assert_eq!(e.weights, total_params * 4 * 3);
        // 64 tokens x max(3 x 32, 96) x 4 B x 8; scores 4 heads x 64 x 64 x 4 B x 4 copies;
        // logits 97 x 4 B.
        assert_eq!(
            e.activations,
            64 * 96 * 4 * 8 + 4 * 64 * 64 * 4 * 4 + 97 * 4
        );
        // K and V of 2 layers of 32 values per position, 64 positions, once (prefill).
        assert_eq!(e.kv_cache, 2 * 64 * (32 + 32) * 4);
        assert_eq!(e.inputs, 64 * 8);
        assert_eq!(e.runtime, RUNTIME_OVERHEAD);
        assert_eq!(
            e.total(),
            292_608 + 459_140 + 32_768 + 512 + RUNTIME_OVERHEAD
        );
        // Decode keeps the past and present caches of 65 positions; one token of activations.
        let d = estimate_memory(
            &arch,
            &Workload {
                mode: Mode::Decode,
                seq_len: 63,
                ..w.clone()
            },
        )
        .unwrap();
        assert_eq!(d.kv_cache, 2 * 64 * 64 * 4 * 2);
        assert_eq!(d.activations, 96 * 4 * 8 + 4 * 64 * 4 * 4 + 97 * 4);
    }

    #[test]
    fn memory_estimate_grows_with_every_size() {
        let arch = Arch::preset("llama-tiny").unwrap();
        let base = Workload {
            seq_len: 16,
            ..Workload::default()
        };
        let total = |a: &Arch, w: &Workload| estimate_memory(a, w).unwrap().total();
        let t0 = total(&arch, &base);
        for w in [
            Workload {
                batch: 2,
                ..base.clone()
            },
            Workload {
                seq_len: 17,
                ..base.clone()
            },
            Workload {
                logits: Logits::All,
                ..base.clone()
            },
            Workload {
                mode: Mode::Generate,
                new_tokens: 4,
                ..base.clone()
            },
        ] {
            assert!(total(&arch, &w) > t0, "{w:?}");
        }
        let bigger = |f: &dyn Fn(&mut Arch)| {
            let mut a = arch.clone();
            f(&mut a);
            total(&a, &base)
        };
        assert!(bigger(&|a| a.vocab_size *= 2) > t0);
        assert!(bigger(&|a| a.d_inner[0] *= 4) > t0);
        assert!(bigger(&|a| a.n_kv_head[1] = 2) > t0);
        assert!(bigger(&|a| a.d_model *= 2) > t0);
        // Sizes past 64 bits are None (refused), not wrapped.
        let huge = Workload {
            batch: usize::MAX,
            ..base.clone()
        };
        assert_eq!(estimate_memory(&arch, &huge), None);
        let limit = MemoryLimit::resolve(Some(1 << 20));
        let e = limit
            .check(estimate_memory(&arch, &base), "this workload")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("above the limit of 1.0 MiB (set by --max-memory)") && e.contains("weights"),
            "{e}"
        );
        assert!(limit
            .check(None, "this workload")
            .unwrap_err()
            .to_string()
            .contains("--max-memory"));
        assert!(MemoryLimit::resolve(None).bytes > 0);
        assert!(MemoryLimit::resolve(Some(u64::MAX))
            .check(estimate_memory(&arch, &base), "w")
            .is_ok());
    }

    #[test]
    fn batch_is_bounded() {
        let arch = Arch::preset("gpt2-tiny").unwrap();
        let w = Workload {
            batch: MAX_BATCH + 1,
            seq_len: 8,
            ..Workload::default()
        };
        let e = w.check(&arch).unwrap_err().to_string();
        assert!(e.contains("--batch") && e.contains("1048576"), "{e}");
    }
}
