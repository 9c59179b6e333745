//! Benchmark: `lts eval` of a real trained model (issue 13), SmolLM2-135M-Instruct (Q4_1 GGUF,
//! dequantised to f32) on the Brown evaluation slice, with the figures the closing note needs:
//!
//! 1. ONNX Runtime on the whole text (`--ctx`, default 256, no overlap): perplexity over all
//!    scored positions and over second halves (llama.cpp's figure), tokens scored, tokens/s.
//! 2. wgpu against ONNX Runtime on the first `LTS_BENCH_WGPU_TOKENS` tokens (default 2048: on
//!    Mesa's llvmpipe, a CPU rasteriser, wgpu runs about 3 tokens/s here, so the whole text would
//!    take hours): both perplexities, their ratio (target: within 0.5 %), tokens/s of each.
//! 3. The independent cross-check, `scripts/crosscheck_ppl.py`: the same GGUF in llama.cpp
//!    (llama-cpp-python), same token ids (compared by hash), same windows and scoring rule,
//!    once on an F32 copy of the weights (the fp32 figure ours must match within 1 %) and once
//!    on the Q4_1 weights as they are (llama.cpp then quantises activations to Q8_1 inside its
//!    Q4_1 dot products, so a small difference is expected). Skipped with a note when
//!    `python3 -c "import llama_cpp"` fails; install with
//!    `pip install -r scripts/crosscheck_requirements.txt`.
//!
//! Run: `lts fetch smollm2-135m && lts fetch brown`, then `cargo bench --bench eval` (about
//! 3 min for ORT, 10 min for wgpu's 2048 tokens, 15 min for the two llama.cpp passes on 2
//! cores). Environment: `LTS_BENCH_GGUF`, `LTS_BENCH_TEXT` (default: the cached files),
//! `LTS_BENCH_CTX`, `LTS_BENCH_WGPU_TOKENS` (0 skips wgpu), `LTS_BENCH_CROSSCHECK=0` (skips 3).
//! Results are written as JSON under `target/bench-eval/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use lts::backend::ort::OrtOptions;
use lts::backend::wgpu::{GpuTimer, Precision, WgpuOptions};
use lts::eval::{self, EvalConfig, EvalResult, ModelSource};
use lts::job::BackendSpec;

fn env_path(key: &str, default: Option<PathBuf>) -> Option<PathBuf> {
    std::env::var_os(key).map(PathBuf::from).or(default)
}

fn env_usize(key: &str, default: usize) -> Result<usize> {
    match std::env::var(key) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{key}={v} is not a number")),
        Err(_) => Ok(default),
    }
}

fn run(cfg: &EvalConfig, what: &str) -> Result<EvalResult> {
    eprintln!("{what} ...");
    let r = eval::run(cfg, &mut |_| {}, &|| false)?;
    eprintln!(
        "  PPL all {:.4}, half {:.4}, {:.1} tokens/s",
        r.ppl_all, r.ppl_half, r.tokens_per_s
    );
    Ok(r)
}

fn save(dir: &Path, name: &str, r: &EvalResult) -> Result<PathBuf> {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_vec_pretty(r)?)?;
    Ok(p)
}

/// Runs the cross-check script; returns its JSON and whether it was within tolerance.
fn crosscheck(
    gguf: &Path,
    text: &Path,
    ctx: usize,
    ours: &Path,
    f32: bool,
) -> Result<(serde_json::Value, bool)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/crosscheck_ppl.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .arg("--gguf")
        .arg(gguf)
        .arg("--text")
        .arg(text)
        .args(["--ctx", &ctx.to_string(), "--json", "--lts-json"])
        .arg(ours);
    if f32 {
        cmd.arg("--f32");
    }
    let out = cmd.output().context("running python3")?;
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let code = out.status.code();
    if !matches!(code, Some(0) | Some(1)) {
        bail!("{} failed ({:?})", script.display(), out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l.trim()).ok())
        .with_context(|| format!("no JSON line in the script's output:\n{stdout}"))?;
    Ok((json, code == Some(0)))
}

fn main() -> Result<()> {
    // SAFETY: single-threaded still; quiets the display-server probes of the wgpu adapter search
    // as `lts` does (see `backend::wgpu::quiet_display_probe`).
    unsafe { lts::backend::wgpu::quiet_display_probe() };
    let cache = lts::backend::ortlib::cache_dir();
    let gguf = env_path(
        "LTS_BENCH_GGUF",
        cache.as_deref().map(lts::fetch::model_path),
    );
    let text = env_path(
        "LTS_BENCH_TEXT",
        cache
            .as_deref()
            .map(|d| lts::fetch::brown_dir(d).join("eval.txt")),
    );
    let (Some(gguf), Some(text)) = (gguf, text) else {
        bail!("no cache directory: set LTS_BENCH_GGUF and LTS_BENCH_TEXT");
    };
    if !gguf.is_file() || !text.is_file() {
        if std::env::var_os("LTS_BENCH_GGUF").is_some()
            || std::env::var_os("LTS_BENCH_TEXT").is_some()
        {
            bail!("{} or {} does not exist", gguf.display(), text.display());
        }
        println!(
            "eval bench skipped: run `lts fetch smollm2-135m` and `lts fetch brown` first ({} / {} missing)",
            gguf.display(),
            text.display()
        );
        return Ok(());
    }
    let ctx = env_usize("LTS_BENCH_CTX", eval::DEFAULT_CTX)?;
    let wgpu_tokens = env_usize("LTS_BENCH_WGPU_TOKENS", 2048)?;
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-eval");
    std::fs::create_dir_all(&out)?;
    let ort = BackendSpec::Ort(OrtOptions {
        intra_threads: lts::util::default_threads(),
        ..OrtOptions::default()
    });
    let cfg = EvalConfig {
        model: ModelSource::Gguf(gguf.clone()),
        tokenizer: gguf.clone(),
        text: text.clone(),
        ctx,
        stride: ctx,
        max_tokens: None,
        backend: ort.clone(),
        kld_against: None,
        max_memory: None,
    };
    let full = run(&cfg, "ONNX Runtime, whole text")?;
    let full_json = save(&out, "ort.json", &full)?;

    let mut lines = vec![format!(
        "{:<34} {:>10} {:>10} {:>9} {:>9} {:>9} {:>11}",
        "run", "PPL all", "PPL half", "scored", "half", "windows", "tokens/s"
    )];
    let row = |name: &str, r: &EvalResult| {
        format!(
            "{:<34} {:>10.4} {:>10.4} {:>9} {:>9} {:>9} {:>11.1}",
            name,
            r.ppl_all,
            r.ppl_half,
            r.tokens_scored_all,
            r.tokens_scored_half,
            r.windows,
            r.tokens_per_s
        )
    };
    lines.push(row("ort, whole text", &full));
    let mut notes = vec![format!(
        "text {}: {} tokens (tokens_sha256 {}), ctx {ctx}",
        text.display(),
        full.text_tokens,
        full.tokens_sha256
    )];

    if wgpu_tokens > 0 {
        let sub = EvalConfig {
            max_tokens: Some(wgpu_tokens),
            ..cfg.clone()
        };
        let o = run(&sub, "ONNX Runtime, first tokens")?;
        let gpu = EvalConfig {
            backend: BackendSpec::Wgpu(WgpuOptions {
                adapter: None,
                precision: Precision::F32,
                timer: GpuTimer::Wall,
            }),
            ..sub
        };
        match run(&gpu, "wgpu, first tokens") {
            Ok(w) => {
                save(&out, "wgpu.json", &w)?;
                lines.push(row(&format!("ort, first {wgpu_tokens} tokens"), &o));
                lines.push(row(&format!("wgpu, first {wgpu_tokens} tokens"), &w));
                notes.push(format!(
                    "wgpu / ort on the first {wgpu_tokens} tokens: PPL all {:+.4}%, half {:+.4}% (target within 0.5%); speed {:.3}x; adapter {}",
                    100.0 * (w.ppl_all / o.ppl_all - 1.0),
                    100.0 * (w.ppl_half / o.ppl_half - 1.0),
                    w.tokens_per_s / o.tokens_per_s,
                    w.runtime.providers.join(", ")
                ));
            }
            Err(e) => notes.push(format!("wgpu skipped: {e:#}")),
        }
    }

    let have_llama = std::env::var("LTS_BENCH_CROSSCHECK").map_or(true, |v| v != "0")
        && Command::new("python3")
            .args(["-c", "import llama_cpp"])
            .output()
            .is_ok_and(|o| o.status.success());
    if have_llama {
        for (f32, what) in [(true, "F32 copy"), (false, "Q4_1 as shipped")] {
            let (j, ok) = crosscheck(&gguf, &text, ctx, &full_json, f32)?;
            let get = |k: &str| j.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
            lines.push(format!(
                "{:<34} {:>10.4} {:>10.4} {:>9} {:>9} {:>9}",
                format!("llama.cpp, {what}"),
                get("ppl_all"),
                get("ppl_half"),
                get("tokens_scored_all"),
                get("tokens_scored_half"),
                get("windows")
            ));
            notes.push(format!(
                "ours / llama.cpp ({what}): PPL all {:+.3}%, half {:+.3}%, same token ids: {}, within tolerance: {ok} ({})",
                100.0 * (full.ppl_all / get("ppl_all") - 1.0),
                100.0 * (full.ppl_half / get("ppl_half") - 1.0),
                j.get("tokens_sha256").and_then(|v| v.as_str()) == Some(&full.tokens_sha256),
                j.get("reference").and_then(|v| v.as_str()).unwrap_or("?")
            ));
        }
    } else {
        notes.push(
            "llama.cpp cross-check skipped: pip install -r scripts/crosscheck_requirements.txt"
                .into(),
        );
    }
    println!("\nlts eval of {} (issue 13)\n", gguf.display());
    for l in lines.iter().chain(&[String::new()]).chain(&notes) {
        println!("{l}");
    }
    Ok(())
}
