//! `lts eval`: perplexity of a trained model on a text.

use super::config::OrtFlags;
use super::*;

/// The evaluation `lts eval` describes.
pub fn eval_config(args: &EvalArgs) -> Result<EvalConfig> {
    let gguf = match &args.gguf {
        Some(p) => p.clone(),
        None => cached(crate::fetch::model_path, "smollm2-135m", "--gguf")?,
    };
    let text = match &args.text {
        Some(p) => p.clone(),
        None => cached(
            |d| crate::fetch::brown_dir(d).join("eval.txt"),
            "brown",
            "--text",
        )?,
    };
    let model = match &args.onnx {
        Some(p) => ModelSource::Onnx(p.clone()),
        None => ModelSource::Gguf(gguf.clone()),
    };
    if args.backend == MeasureBackend::Wgpu && args.threads.is_some() {
        bail!("--threads sets ONNX Runtime's threads: drop it with --backend wgpu");
    }
    // Scoring text is not a timed measurement: every core by default.
    let ort = OrtFlags {
        opt_level: args.opt_level,
        ..OrtFlags::threads(args.threads.unwrap_or_else(crate::util::default_threads))
    }
    .to_ort(None);
    let backend = args.backend.spec(
        BackendSpec::ort(ort),
        crate::backend::wgpu::WgpuOptions {
            adapter: args.adapter,
            precision: args.precision,
            timer: crate::backend::wgpu::GpuTimer::Wall,
        },
    );
    backend.backend().validate()?;
    if args.max_tokens == Some(0) {
        bail!(
            "--max-tokens 0 leaves nothing to score: give at least --ctx ({}) tokens",
            args.ctx
        );
    }
    Ok(EvalConfig {
        model,
        tokenizer: gguf,
        text,
        ctx: args.ctx,
        stride: args.stride.unwrap_or(args.ctx),
        max_tokens: args.max_tokens,
        backend,
        kld_against: args
            .kld_against
            .as_deref()
            .map(ModelSource::from_path)
            .transpose()?,
        max_memory: args.max_memory,
    })
}

/// `lts eval`.
pub fn eval(args: &EvalArgs) -> Result<()> {
    let cfg = eval_config(args)?;
    crate::signals::install()?;
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} windows, ETA {eta}  {msg}",
        )
        .expect("valid template"),
    );
    let result = crate::eval::run(
        &cfg,
        &mut |p| {
            bar.set_length(p.total as u64);
            bar.set_position(p.done as u64);
            bar.set_message(format!("PPL {:.3}", p.ppl_all));
        },
        &|| crate::signals::pending().is_some(),
    );
    bar.finish_and_clear();
    let result = result?;
    let json = serde_json::to_string_pretty(&result)?;
    if let Some(path) = &args.out {
        write_atomic(path, json.as_bytes())?;
    }
    if args.json {
        println!("{json}");
    } else {
        print!("{}", report::terminal::eval_table(&result));
    }
    // Interrupted: what was scored is printed (and written) above, then the exit code says so.
    crate::signals::check()?;
    Ok(())
}
