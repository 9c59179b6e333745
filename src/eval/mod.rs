//! `lts eval`: perplexity of a trained model on a text, and optionally how far a second model's
//! next-token distributions are from it (KL divergence, top-1 agreement).
//!
//! The text is tokenized with the model's own tokenizer (the GGUF file's, [`crate::tokenizer`]),
//! cut into windows of `ctx` tokens ([`windows`]), and each window runs from an empty cache
//! through an all-logits prefill graph (ONNX Runtime) or our wgpu kernels ([`models`]). Negative
//! log-likelihoods are summed in f64 ([`metrics`]). Two figures are reported, as llama.cpp's
//! `perplexity` tool and Hugging Face's guide do: the perplexity over every scored position,
//! and over the second half of each window only (llama.cpp's figure: every token then has at
//! least `ctx / 2` tokens of context). `--kld-against` follows llama.cpp's `--kl-divergence`:
//! the other model is the reference `P`, this one `Q`, on the same windows.
//!
//! The independent check of these numbers is `scripts/crosscheck_ppl.py` (llama.cpp through
//! llama-cpp-python, same windows and scoring rule).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::arch::Arch;
use crate::backend::RuntimeInfo;
use crate::job::BackendSpec;
use crate::tokenizer::Tokenizer;
use crate::workload::{estimate_memory, Logits, MemoryEstimate, MemoryLimit, Mode, Workload};

pub mod metrics;
pub mod models;
pub mod windows;

pub use crate::backend::Scorer;
pub use metrics::{DivergenceSummary, Perplexity};
pub use models::{ModelSource, Scored};

use metrics::{Divergence, NllSum};
use windows::Window;

/// The default window length (`--ctx`): 256 tokens.
pub const DEFAULT_CTX: usize = 256;

/// The largest text `lts eval` reads (256 MiB), checked before reading it.
pub const MAX_TEXT_BYTES: u64 = 256 << 20;

/// What to evaluate, on what, how.
#[derive(Clone, Debug)]
pub struct EvalConfig {
    /// The model scored.
    pub model: ModelSource,
    /// The GGUF file whose tokenizer cuts the text (the model itself when it is a GGUF).
    pub tokenizer: PathBuf,
    /// The UTF-8 text file.
    pub text: PathBuf,
    /// Tokens per window.
    pub ctx: usize,
    /// Tokens between window starts (`ctx`: no overlap).
    pub stride: usize,
    /// Only the first this many tokens of the text.
    pub max_tokens: Option<usize>,
    /// The runtime and its settings.
    pub backend: BackendSpec,
    /// A reference model for KL divergence and top-1 agreement (same tokenizer).
    pub kld_against: Option<ModelSource>,
    /// `--max-memory` (default: the machine's, see [`MemoryLimit::resolve`]).
    pub max_memory: Option<u64>,
}

/// The text after tokenization: what is scored.
#[derive(Clone, Debug)]
pub struct Text {
    /// Token ids (truncated to `--max-tokens`).
    pub ids: Vec<u32>,
    /// Tokens of the whole text, before truncation.
    pub total_tokens: usize,
    /// Bytes of the file.
    pub bytes: u64,
    /// SHA-256 of the file.
    pub sha256: String,
}

/// SHA-256 of token ids written as little-endian u32 (the `tokens_sha256` of results, which
/// `scripts/crosscheck_ppl.py` computes the same way from llama.cpp's tokenizer).
pub fn tokens_sha256(ids: &[u32]) -> String {
    let mut h = Sha256::new();
    for id in ids {
        h.update(id.to_le_bytes());
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a UTF-8 text file (a regular file of at most [`MAX_TEXT_BYTES`], its size checked
/// first and its read capped: [`crate::util::read_regular`]) and tokenizes it.
pub fn read_text(path: &Path, tokenizer: &Tokenizer, max_tokens: Option<usize>) -> Result<Text> {
    let bytes = crate::util::read_regular(
        path,
        MAX_TEXT_BYTES,
        "text file",
        "cut it (e.g. `head -c 100M`)",
    )?;
    let len = bytes.len() as u64;
    let sha256 = hex(&Sha256::digest(&bytes));
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{} is not UTF-8 text (invalid byte at offset {}): convert it, e.g. `iconv -f latin1 -t utf-8`",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })?;
    let mut ids = tokenizer.encode(&text);
    let total_tokens = ids.len();
    if let Some(n) = max_tokens {
        ids.truncate(n);
    }
    Ok(Text {
        ids,
        total_tokens,
        bytes: len,
        sha256,
    })
}

/// The prefill workload of one window, for the memory estimate and the positions check.
pub fn window_workload(ctx: usize) -> Workload {
    Workload {
        mode: Mode::Prefill,
        batch: 1,
        seq_len: ctx,
        new_tokens: 0,
        logits: Logits::All,
        seed: 0,
    }
}

/// Checks that windows of `ctx` fit `arch` and that the models' memory (plus the text, the
/// logits copies and the divergences kept) stays below the limit, before anything is loaded.
fn check_memory(cfg: &EvalConfig, archs: &[&Arch], text_tokens: usize) -> Result<MemoryEstimate> {
    let workload = window_workload(cfg.ctx);
    let mut total: Option<MemoryEstimate> = Some(MemoryEstimate {
        weights: 0,
        activations: 0,
        kv_cache: 0,
        // Token ids, per-position divergences (8 bytes each) and one logits copy per model.
        inputs: (text_tokens as u64).saturating_mul(12),
        runtime: 0,
    });
    for arch in archs {
        if cfg.ctx > arch.n_positions {
            bail!(
                "--ctx {} is longer than the model's context of {} positions: lower --ctx",
                cfg.ctx,
                arch.n_positions
            );
        }
        workload.check(arch)?;
        let e = estimate_memory(arch, &workload);
        total = match (total, e) {
            (Some(t), Some(e)) => Some(MemoryEstimate {
                weights: t.weights.saturating_add(e.weights),
                activations: t.activations.saturating_add(e.activations),
                kv_cache: t.kv_cache.saturating_add(e.kv_cache),
                inputs: t
                    .inputs
                    .saturating_add(e.inputs)
                    .saturating_add((arch.vocab_size as u64).saturating_mul(cfg.ctx as u64 * 4)),
                runtime: t.runtime.max(e.runtime),
            }),
            _ => None,
        };
    }
    let limit = MemoryLimit::resolve(cfg.max_memory);
    let fix = "lower --ctx (or evaluate without --kld-against) or raise --max-memory";
    let Some(total) = total else {
        bail!("this evaluation needs more memory than a 64-bit size can count: {fix}");
    };
    if total.total() > limit.bytes {
        bail!(
            "this evaluation needs about {}, above the limit of {} ({}): {fix}",
            total.describe(),
            crate::util::format_bytes(limit.bytes),
            limit.source
        );
    }
    Ok(total)
}

/// A second model compared with the evaluated one (`--kld-against`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The reference model's file.
    pub against: String,
    /// Its perplexity over every scored position of the same windows.
    pub ref_ppl_all: f64,
    /// Its perplexity over the second halves.
    pub ref_ppl_half: f64,
    /// KL divergence (reference `P` to this model `Q`) and top-1 agreement over every scored
    /// position.
    #[serde(flatten)]
    pub divergence: DivergenceSummary,
}

/// Everything `lts eval` reports (`--json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    /// lts version.
    pub tool_version: String,
    /// When the evaluation finished (RFC 3339, UTC).
    pub timestamp: String,
    /// The model file.
    pub model: String,
    /// `gguf` or `onnx`.
    pub model_kind: String,
    /// SHA-256 of the model file.
    pub model_sha256: String,
    /// The model's arch id and total parameters.
    pub arch_id: String,
    /// Total parameters (embeddings included).
    pub params: u64,
    /// The backend and its settings.
    pub backend: BackendSpec,
    /// What ran the model.
    pub runtime: RuntimeInfo,
    /// The text file.
    pub text: String,
    /// Its size.
    pub text_bytes: u64,
    /// Its SHA-256.
    pub text_sha256: String,
    /// Tokens used (after `--max-tokens`).
    pub text_tokens: usize,
    /// Tokens of the whole text.
    pub text_tokens_total: usize,
    /// SHA-256 of the used token ids as little-endian u32 ([`tokens_sha256`]).
    pub tokens_sha256: String,
    /// Window length.
    pub ctx: usize,
    /// Tokens between window starts.
    pub stride: usize,
    /// BOS token put at the start of every window (when the model asks for one).
    pub bos: Option<u32>,
    /// Windows evaluated.
    pub windows: usize,
    /// Windows planned (less than `windows` only when the run was interrupted).
    pub windows_planned: usize,
    /// Whether the run was stopped (Ctrl-C) before every planned window was scored: the
    /// figures then cover `windows` of `windows_planned`. Always written, `false` included.
    #[serde(default)]
    pub interrupted: bool,
    /// Tokens scored over all positions.
    pub tokens_scored_all: usize,
    /// Tokens scored over second halves.
    pub tokens_scored_half: usize,
    /// Perplexity over all scored positions.
    pub ppl_all: f64,
    /// Perplexity over the second half of each window (llama.cpp's figure).
    pub ppl_half: f64,
    /// Details (mean NLL, standard errors) of `ppl_all`.
    pub all: Perplexity,
    /// Details of `ppl_half`.
    pub half: Perplexity,
    /// Seconds loading the model(s) (reading, dequantising, session creation or upload).
    pub load_seconds: f64,
    /// Seconds of the evaluation loop (forwards and scoring).
    pub seconds: f64,
    /// Seconds inside the model's forwards (logits read back included).
    pub forward_seconds: f64,
    /// Window tokens run through the model per second of forward time.
    pub tokens_per_s: f64,
    /// The `--kld-against` comparison.
    pub kld: Option<Comparison>,
}

/// Progress of a running evaluation, for a progress bar.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Windows done.
    pub done: usize,
    /// Windows planned.
    pub total: usize,
    /// Perplexity over all positions so far.
    pub ppl_all: f64,
}

/// A model ready to score windows, with where it came from.
struct Loaded {
    scorer: Box<dyn Scorer>,
    runtime: RuntimeInfo,
}

fn load(cfg: &EvalConfig, source: &ModelSource, arch: &Arch) -> Result<Loaded> {
    let scorer = cfg
        .backend
        .backend()
        .scorer(&Scored::new(source, arch, cfg.ctx))?;
    Ok(Loaded {
        runtime: scorer.runtime(),
        scorer,
    })
}

/// Which model a vocabulary check is about: the one scored, or the `--kld-against` reference.
#[derive(Clone, Copy, PartialEq)]
enum Role {
    Scored,
    Reference,
}

/// Checks a model's vocabulary against the tokenizer's (the GGUF file `tokenizer_file`, given
/// as `--gguf`), naming the flag that fixes a mismatch.
fn check_vocab(
    arch: &Arch,
    tokenizer: &Tokenizer,
    tokenizer_file: &Path,
    source: &ModelSource,
    role: Role,
) -> Result<()> {
    if arch.vocab_size == tokenizer.vocab_size() {
        return Ok(());
    }
    let fix = match (role, source) {
        (Role::Scored, ModelSource::Gguf(p)) if p == tokenizer_file => {
            "the file's own tokenizer does not fit its model: the file is damaged or not a llama.cpp model; download it again"
        }
        (Role::Scored, _) => {
            "pass the GGUF file this model was made from as --gguf (its tokenizer cuts the text)"
        }
        (Role::Reference, _) => {
            "--kld-against needs a model with the same tokenizer: one made from the same GGUF file as --gguf (or that file itself)"
        }
    };
    bail!(
        "{} has a vocabulary of {} tokens but the tokenizer of {} has {}: {fix}",
        source.path().display(),
        arch.vocab_size,
        tokenizer_file.display(),
        tokenizer.vocab_size()
    )
}

/// Refuses a window's logits that are not all finite (NaN or infinite: the model's weights or
/// graph overflow or hold NaN), naming the model, the window and its token range, instead of
/// reporting a NaN perplexity.
fn check_finite_logits(
    logits: &[f32],
    vocab: usize,
    model: &Path,
    i: usize,
    win: &Window,
    ctx: usize,
) -> Result<()> {
    let Some(at) = logits.iter().position(|x| !x.is_finite()) else {
        return Ok(());
    };
    bail!(
        "{} computes non-finite logits ({} at position {}, token {} of the vocabulary) for window {} (text tokens {}..{}): its weights or graph hold NaN or overflow, so no perplexity can be computed; check or re-create the model file",
        model.display(),
        logits[at],
        at / vocab.max(1),
        at % vocab.max(1),
        i,
        win.start,
        win.start + ctx
    )
}

/// SHA-256 of a file, streamed.
fn file_sha256(path: &Path) -> Result<String> {
    let mut f = crate::util::open_regular(path, "model file")?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hex(&h.finalize()))
}

/// Runs the evaluation. `progress` is called after every window; `stop` before every window,
/// and when it returns true the loop ends early and the result covers the windows done
/// (`windows < windows_planned`). Errors name the problem and the flag that fixes it, before
/// any model is loaded where they can be known then.
pub fn run(
    cfg: &EvalConfig,
    progress: &mut dyn FnMut(Progress),
    stop: &dyn Fn() -> bool,
) -> Result<EvalResult> {
    let gguf = crate::gguf::Gguf::open(&cfg.tokenizer)?;
    let tokenizer = Tokenizer::new(gguf.tokenizer_spec()?)
        .with_context(|| format!("the tokenizer of {}", cfg.tokenizer.display()))?;
    drop(gguf);
    let arch = cfg.model.arch()?;
    check_vocab(&arch, &tokenizer, &cfg.tokenizer, &cfg.model, Role::Scored)?;
    let other_arch = match &cfg.kld_against {
        Some(o) => {
            let a = o.arch()?;
            check_vocab(&a, &tokenizer, &cfg.tokenizer, o, Role::Reference)?;
            Some(a)
        }
        None => None,
    };
    let text = read_text(&cfg.text, &tokenizer, cfg.max_tokens)?;
    let plan = windows::plan(text.ids.len(), cfg.ctx, cfg.stride)
        .with_context(|| format!("tokenizing {}", cfg.text.display()))?;
    let archs: Vec<&Arch> = std::iter::once(&arch).chain(other_arch.as_ref()).collect();
    check_memory(cfg, &archs, text.ids.len())?;

    let t_load = Instant::now();
    let mut model = load(cfg, &cfg.model, &arch)?;
    let mut other = match (&cfg.kld_against, &other_arch) {
        (Some(src), Some(a)) => Some(load(cfg, src, a)?),
        _ => None,
    };
    let load_seconds = t_load.elapsed().as_secs_f64();

    let bos = tokenizer.leading_bos();
    let vocab = arch.vocab_size;
    let ctx = cfg.ctx;
    let (mut all, mut half) = (Vec::new(), Vec::new());
    let (mut ref_all, mut ref_half) = (Vec::new(), Vec::new());
    let mut divergence = Divergence::default();
    let mut forward_seconds = 0.0;
    let t_eval = Instant::now();
    let mut interrupted = false;
    for (i, win) in plan.iter().enumerate() {
        if stop() {
            interrupted = true;
            break;
        }
        let mut ids = text.ids[win.start..win.start + ctx].to_vec();
        if let Some(b) = bos {
            ids[0] = b;
        }
        let t = Instant::now();
        let logits = model.scorer.logits(&ids)?;
        forward_seconds += t.elapsed().as_secs_f64();
        check_finite_logits(&logits, vocab, cfg.model.path(), i, win, ctx)?;
        let (a, h) = score_window(&logits, vocab, &text.ids, win, ctx);
        all.push(a);
        half.push(h);
        if let Some(o) = other.as_mut() {
            let reference = o.scorer.logits(&ids)?;
            let src = cfg
                .kld_against
                .as_ref()
                .map_or(cfg.model.path(), |s| s.path());
            check_finite_logits(&reference, vocab, src, i, win, ctx)?;
            let (a, h) = score_window(&reference, vocab, &text.ids, win, ctx);
            ref_all.push(a);
            ref_half.push(h);
            for j in win.rows(ctx) {
                let row = j * vocab..(j + 1) * vocab;
                divergence.add(&reference[row.clone()], &logits[row]);
            }
        }
        progress(Progress {
            done: i + 1,
            total: plan.len(),
            ppl_all: Perplexity::of(&all).map_or(f64::NAN, |p| p.ppl),
        });
    }
    let seconds = t_eval.elapsed().as_secs_f64();
    let done = all.len();
    let (Some(p_all), Some(p_half)) = (Perplexity::of(&all), Perplexity::of(&half)) else {
        bail!("stopped before the first window was scored");
    };
    let kld = match (&cfg.kld_against, divergence.summary()) {
        (Some(src), Some(divergence)) => Some(Comparison {
            against: src.path().display().to_string(),
            ref_ppl_all: Perplexity::of(&ref_all).map_or(f64::NAN, |p| p.ppl),
            ref_ppl_half: Perplexity::of(&ref_half).map_or(f64::NAN, |p| p.ppl),
            divergence,
        }),
        _ => None,
    };
    Ok(EvalResult {
        tool_version: env!("CARGO_PKG_VERSION").into(),
        timestamp: crate::util::now_rfc3339(),
        model: cfg.model.path().display().to_string(),
        model_kind: match cfg.model {
            ModelSource::Gguf(_) => "gguf".into(),
            ModelSource::Onnx(_) => "onnx".into(),
        },
        model_sha256: file_sha256(cfg.model.path())?,
        arch_id: arch.id(),
        params: arch.params().total,
        backend: cfg.backend.clone(),
        runtime: model.runtime,
        text: cfg.text.display().to_string(),
        text_bytes: text.bytes,
        text_sha256: text.sha256,
        text_tokens: text.ids.len(),
        text_tokens_total: text.total_tokens,
        tokens_sha256: tokens_sha256(&text.ids),
        ctx,
        stride: cfg.stride,
        bos,
        windows: done,
        windows_planned: plan.len(),
        interrupted,
        tokens_scored_all: p_all.tokens,
        tokens_scored_half: p_half.tokens,
        ppl_all: p_all.ppl,
        ppl_half: p_half.ppl,
        all: p_all,
        half: p_half,
        load_seconds,
        seconds,
        forward_seconds,
        tokens_per_s: (done * ctx) as f64 / forward_seconds.max(f64::MIN_POSITIVE),
        kld,
    })
}

/// Scores one window's logits (`[ctx, vocab]`) against the text's tokens: the NLL sums over
/// its scored rows and over its second-half rows ([`Window::rows`], [`Window::half_rows`]).
pub fn score_window(
    logits: &[f32],
    vocab: usize,
    tokens: &[u32],
    win: &Window,
    ctx: usize,
) -> (NllSum, NllSum) {
    let (mut all, mut half) = (NllSum::default(), NllSum::default());
    let half_from = win.half_rows(ctx).start;
    for j in win.rows(ctx) {
        let target = tokens[win.start + j + 1] as usize;
        let nll = metrics::nll(&logits[j * vocab..(j + 1) * vocab], target);
        all.add(nll);
        if j >= half_from {
            half.add(nll);
        }
    }
    (all, half)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hash_is_of_little_endian_u32() {
        // sha256 of the 8 bytes 01 00 00 00 02 01 00 00
        let want = hex(&Sha256::digest([1u8, 0, 0, 0, 2, 1, 0, 0]));
        assert_eq!(tokens_sha256(&[1, 258]), want);
    }

    #[test]
    fn a_window_scores_its_rows_against_the_next_tokens() {
        // vocab 3; the logits put all mass on token (row + 1) % 3 except row 1.
        let (vocab, ctx) = (3, 4);
        let tokens = [0u32, 1, 2, 0, 1];
        let mut logits = vec![0f32; ctx * vocab];
        for j in 0..ctx {
            logits[j * vocab + (j + 1) % 3] = if j == 1 { 0.0 } else { 50.0 };
        }
        let win = Window {
            start: 0,
            first_row: 0,
        };
        let (all, half) = score_window(&logits, vocab, &tokens, &win, ctx);
        assert_eq!((all.count, half.count), (3, 1));
        // Rows 0 and 2 are certain (NLL ~0); row 1 is uniform (ln 3).
        assert!((all.sum - 3f64.ln()).abs() < 1e-9, "{}", all.sum);
        assert!(half.sum.abs() < 1e-9);
    }
}
