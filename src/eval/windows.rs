//! Which tokens of a text are fed to the model and which are scored: fixed windows of `ctx`
//! tokens, each run from an empty cache.
//!
//! The rule (the same as `scripts/crosscheck_ppl.py` implements independently):
//! - window starts are `0, stride, 2 * stride, ...` while `start + ctx <= tokens`: only full
//!   windows, the tail is not scored (llama.cpp's `perplexity` also drops it);
//! - in the window starting at `s`, logits row `j` (`0 <= j <= ctx - 2`) predicts token
//!   `s + j + 1`; a token is scored once, in the first window whose rows reach it: rows from
//!   `first_row = max(0, previous start + ctx - s - 1)` (0 in the first window). With
//!   `stride == ctx` (the default) every window scores `ctx - 1` tokens; with overlap each
//!   window scores its `stride` new tokens, with at least `ctx - stride` tokens of context
//!   (Hugging Face's "perplexity of fixed-length models" sliding window);
//! - the "second half" subset is rows `j >= ctx / 2`: llama.cpp's `perplexity` scores only those
//!   (`first = n_ctx / 2`), so every scored token has at least `ctx / 2` tokens of context.

use anyhow::{bail, Result};

/// The smallest `--ctx`: a window must have a second half with a scored token.
pub const MIN_CTX: usize = 4;

/// One window of the evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Index of the window's first token in the text's tokens.
    pub start: usize,
    /// First scored logits row (see the module documentation); rows `first_row..ctx - 1`.
    pub first_row: usize,
}

impl Window {
    /// The scored rows of all positions (`first_row..ctx - 1`).
    pub fn rows(&self, ctx: usize) -> std::ops::Range<usize> {
        self.first_row..ctx - 1
    }

    /// The scored rows of the second half (`max(first_row, ctx / 2)..ctx - 1`).
    pub fn half_rows(&self, ctx: usize) -> std::ops::Range<usize> {
        self.first_row.max(ctx / 2)..ctx - 1
    }
}

/// The windows of a text of `tokens` tokens, or an error naming the flag to change when the
/// text is shorter than one window or the lengths cannot work.
pub fn plan(tokens: usize, ctx: usize, stride: usize) -> Result<Vec<Window>> {
    if ctx < MIN_CTX {
        bail!("--ctx {ctx} is too short: use at least {MIN_CTX} tokens (default 256)");
    }
    if stride == 0 || stride > ctx {
        bail!("--stride {stride} must be between 1 and --ctx ({ctx})");
    }
    if tokens < ctx {
        bail!(
            "the text has {tokens} tokens, fewer than one window of --ctx {ctx}: use a longer text, a smaller --ctx or a larger --max-tokens"
        );
    }
    let mut out = Vec::with_capacity((tokens - ctx) / stride + 1);
    let mut prev_end: Option<usize> = None;
    let mut start = 0;
    while start + ctx <= tokens {
        let first_row = match prev_end {
            None => 0,
            Some(end) => (end - start).saturating_sub(1),
        };
        out.push(Window { start, first_row });
        prev_end = Some(start + ctx);
        start += stride;
    }
    Ok(out)
}

/// Tokens scored over all positions and over second halves by `windows` of `ctx`.
pub fn counts(windows: &[Window], ctx: usize) -> (usize, usize) {
    windows.iter().fold((0, 0), |(a, h), w| {
        (a + w.rows(ctx).len(), h + w.half_rows(ctx).len())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_overlapping_windows_score_all_but_their_first_token() {
        let w = plan(1000, 256, 256).unwrap();
        assert_eq!(w.len(), 3); // 768 tokens in windows, 232 left unscored
        assert!(w.iter().all(|w| w.first_row == 0));
        assert_eq!(w[2].start, 512);
        // llama.cpp: n_ctx - 1 - n_ctx/2 = 127 per chunk in the second half.
        assert_eq!(counts(&w, 256), (3 * 255, 3 * 127));
    }

    #[test]
    fn overlapping_windows_score_each_token_once() {
        let (n, ctx, stride) = (40, 8, 3);
        let w = plan(n, ctx, stride).unwrap();
        let mut scored = vec![0; n];
        for win in &w {
            for j in win.rows(ctx) {
                scored[win.start + j + 1] += 1;
            }
        }
        let last_end = w.last().unwrap().start + ctx;
        assert!(scored[0] == 0 && scored[1..last_end].iter().all(|&c| c == 1));
        assert!(scored[last_end..].iter().all(|&c| c == 0));
        // After the first window each one scores its `stride` new tokens.
        assert!(w[1..].iter().all(|win| win.rows(ctx).len() == stride));
        // Half rows are a subset of rows; with stride < ctx / 2 every new token after the first
        // window has at least ctx / 2 tokens of context, so the two are equal.
        for stride in 1..=ctx {
            let w = plan(n, ctx, stride).unwrap();
            for win in &w {
                let (r, h) = (win.rows(ctx), win.half_rows(ctx));
                assert!(h.start >= r.start && h.end == r.end);
            }
            let equal = w[1..].iter().all(|win| win.rows(ctx) == win.half_rows(ctx));
            assert_eq!(equal, stride < ctx / 2, "stride {stride}");
        }
    }

    #[test]
    fn lengths_that_cannot_work_name_the_flag() {
        let e = plan(100, 256, 256).unwrap_err().to_string();
        assert!(e.contains("100 tokens") && e.contains("--ctx"), "{e}");
        assert!(plan(100, 2, 2).unwrap_err().to_string().contains("--ctx 2"));
        assert!(plan(100, 8, 0)
            .unwrap_err()
            .to_string()
            .contains("--stride"));
        assert!(plan(100, 8, 9)
            .unwrap_err()
            .to_string()
            .contains("--stride"));
        assert_eq!(plan(8, 8, 8).unwrap().len(), 1);
    }
}
