//! `lts quantize` and `lts quant-bench`.

use super::config::{OrtFlags, ProtocolFlags};
use super::*;

/// `lts quantize`.
pub fn quantize(args: &QuantizeArgs) -> Result<()> {
    use crate::fidelity::{self as q, Fp32Graphs};
    use crate::quant::Scheme;
    let schemes = crate::quant::Scheme::parse_list(&args.scheme, args.calib.percentile)?;
    let (arch, weights, recorded) = match &args.onnx {
        Some(path) => {
            let file = graph::OnnxFile::open(path)?;
            if let Some(q) = &file.info.quant {
                bail!(
                    "{} is already quantized ({q}): quantize the fp32 file or model it came from",
                    path.display()
                );
            }
            (
                file.info.arch.clone(),
                WeightsSpec::Onnx { path: path.clone() },
                file.info.workload.clone(),
            )
        }
        None => (
            arch_from(&args.arch, &args.candidate)?,
            weights_spec(&args.arch, &args.weights),
            match &args.candidate.from {
                Some(dir) => Some(super::recorded::run_workload(dir)?),
                None => None,
            },
        ),
    };
    arch.check_size(args.max_params)?;
    let int8 = schemes
        .iter()
        .any(|s| matches!(s, Scheme::Int8Dynamic { .. } | Scheme::Int8Static { .. }));
    if int8 && crate::quant::int8_may_saturate() {
        eprintln!(
            "note: this CPU has no VNNI: ONNX Runtime's int8 kernels (VPMADDUBSW) may saturate here, so int8 fidelity reads lower than on a VNNI x86 or an ARM board"
        );
    }
    let (seq_len, logits, recorded) = quant_workload(args, &arch, recorded);
    if args.calib.calib == 0 && schemes.iter().any(|s| s.needs_calibration()) {
        bail!("--calib 0: int8-static needs at least one calibration sequence");
    }
    let ort =
        OrtFlags::threads(args.threads.unwrap_or_else(crate::util::default_threads)).to_ort(None);
    ort.validate()?;
    let seqs = quant_sequences(&arch, &args.calib, args.arch.gguf.as_ref(), seq_len)?;
    let stem = format!("{}.", arch.id());
    let mut existing = Vec::new();
    for s in schemes.iter().filter(|s| !s.is_fp32()) {
        let kinds: &[&str] = if args.prefill_only {
            &["prefill"]
        } else {
            &["prefill", "decode"]
        };
        for kind in kinds {
            let p = args.out.join(format!("{stem}{}.{kind}.onnx", q::slug(s)));
            if p.symlink_metadata().is_ok() {
                existing.push(p.display().to_string());
            }
        }
    }
    if !existing.is_empty() && !args.force {
        bail!(
            "{} already exist: pass --force to replace, or choose another --out",
            existing.join(", ")
        );
    }
    let weights = weights.load(&arch)?;
    let mut fp32 = Fp32Graphs::build(&arch, &weights, logits, !args.prefill_only)?;
    drop(weights);
    // The written graphs keep the workload the model was chosen on (`lts measure --onnx`).
    if let Some(rec) = &recorded {
        graph::record_workload(&mut fp32.prefill, rec);
        if let Some(decode) = fp32.decode.as_mut() {
            graph::record_workload(decode, rec);
        }
        fp32.prefill_len = prost::Message::encoded_len(&fp32.prefill) as u64;
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create output directory {}", args.out.display()))?;
    let mut results = Vec::new();
    for s in &schemes {
        let out = (!s.is_fp32()).then_some(args.out.as_path());
        let mut r = q::quantize_one(&arch, &fp32, s, &seqs, &ort, out)?;
        r.workload = recorded.clone();
        if !args.json {
            eprintln!("{}: {}", r.name, report::terminal::quant_line(&r));
        }
        results.push(r);
    }
    let json = serde_json::to_string_pretty(&results)?;
    write_atomic(
        &args.out.join(format!("{stem}quantize.json")),
        json.as_bytes(),
    )?;
    if args.json {
        println!("{json}");
    } else {
        println!(
            "{} on {} ({} calibration, {} evaluation sequences of {seq_len} tokens)",
            arch.id(),
            seqs.source,
            args.calib.calib,
            args.calib.eval
        );
        print!("{}", report::terminal::quant_table(&results));
    }
    Ok(())
}

/// The calibration / evaluation window length and the prefill logits of `lts quantize`: the
/// flags given, else the workload recorded by the run (`--from`) or file (`--onnx`), else
/// min(128, n_positions) and last; with the workload the written graphs record (its logits those
/// of the written prefill graph).
fn quant_workload(
    args: &QuantizeArgs,
    arch: &Arch,
    recorded: Option<RecordedWorkload>,
) -> (usize, Logits, Option<RecordedWorkload>) {
    let rec = recorded.as_ref().map(|r| &r.workload);
    let seq_len = match (args.calib.seq_len, rec, &recorded) {
        (Some(s), _, _) => s,
        (None, Some(w), Some(r)) => {
            let s = w.seq_len.min(arch.n_positions);
            eprintln!(
                "note: calibrating and judging on windows of {s} tokens, from {} ({}); --seq-len to change",
                w.describe(),
                r.source
            );
            s
        }
        _ => 128.min(arch.n_positions),
    };
    let recorded_logits = rec.filter(|w| w.mode == Mode::Prefill).map(|w| w.logits);
    let logits = args.logits.or(recorded_logits).unwrap_or(Logits::Last);
    let recorded = recorded.map(|mut r| {
        if r.workload.mode == Mode::Prefill && r.workload.logits != logits {
            r.workload.logits = logits;
            r.source = format!("{} with --logits {}", r.source, logits.as_str());
        }
        r
    });
    (seq_len, logits, recorded)
}

/// Calibration and evaluation sequences of `--seq-len` tokens: windows of `--text` cut by the
/// GGUF file's tokenizer, or seeded tokens.
fn quant_sequences(
    arch: &Arch,
    c: &CalibArgs,
    gguf: Option<&PathBuf>,
    seq_len: usize,
) -> Result<crate::fidelity::Sequences> {
    use crate::fidelity::Sequences;
    if seq_len == 0 || seq_len > arch.n_positions {
        bail!(
            "--seq-len {seq_len} must be between 1 and the arch's {} positions",
            arch.n_positions
        );
    }
    if c.eval == 0 {
        bail!("--eval 0 leaves nothing to judge fidelity on: use at least 1");
    }
    // Bounded before the token arrays are allocated.
    const MAX_SEQUENCES: usize = 65_536;
    if c.calib > MAX_SEQUENCES || c.eval > MAX_SEQUENCES {
        bail!(
            "--calib {} / --eval {}: at most {MAX_SEQUENCES} sequences each (16 and 8 are the defaults)",
            c.calib,
            c.eval
        );
    }
    let tokens = (c.calib + c.eval).saturating_mul(seq_len);
    if tokens > 1 << 26 {
        bail!(
            "(--calib {} + --eval {}) x --seq-len {seq_len} = {tokens} tokens, above the 67,108,864 lts keeps in memory: lower one of them",
            c.calib,
            c.eval
        );
    }
    Ok(match (&c.text, gguf) {
        (Some(text), Some(gguf)) => {
            let g = crate::gguf::Gguf::open(gguf)?;
            let tok = crate::tokenizer::Tokenizer::new(g.tokenizer_spec()?)?;
            let t = crate::eval::read_text(text, &tok, None)?;
            Sequences::from_tokens(
                &t.ids,
                c.calib,
                c.eval,
                seq_len,
                &text.display().to_string(),
            )?
        }
        (Some(text), None) => bail!(
            "--text {} needs --gguf FILE: only a GGUF model carries a tokenizer to cut the text with (this model has none); pass the GGUF file, or drop --text to calibrate and evaluate on seeded tokens (--input-seed)",
            text.display()
        ),
        (None, _) => Sequences::seeded(arch, c.calib, c.eval, seq_len, c.input_seed),
    })
}

/// `lts quant-bench`.
pub fn quant_bench(args: &QuantBenchArgs) -> Result<()> {
    use crate::fidelity::bench::{self, BenchConfig};
    let mut schemes = crate::quant::Scheme::parse_list(&args.scheme, args.calib.percentile)?;
    schemes.retain(|s| !s.is_fp32());
    let arch = args.arch.resolve()?;
    arch.check_size(crate::arch::DEFAULT_MAX_PARAMS)?;
    let seq_len = args.calib.seq_len.unwrap_or(128.min(arch.n_positions));
    if args.calib.calib == 0 && schemes.iter().any(|s| s.needs_calibration()) {
        bail!("--calib 0: int8-static needs at least one calibration sequence");
    }
    let seqs = quant_sequences(&arch, &args.calib, args.arch.gguf.as_ref(), seq_len)?;
    let csv = args.out.join("quant-bench.csv");
    if csv.exists() && !args.force {
        bail!(
            "{} already exists: pass --force to replace it, or choose another --out",
            csv.display()
        );
    }
    let timed_ort = OrtFlags::threads(args.threads).to_ort(None);
    timed_ort.validate()?;
    let protocol = ProtocolFlags {
        min_runs: Some(args.min_runs),
        min_duration_s: Some(args.min_duration_s),
        ..ProtocolFlags::default()
    }
    .over(Protocol::default());
    protocol.validate()?;
    crate::signals::install()?;
    let cfg = BenchConfig {
        weights: weights_spec(&args.arch, &args.weights),
        arch,
        schemes,
        seqs,
        seq_len,
        work_ort: OrtFlags::threads(crate::util::default_threads()).to_ort(None),
        timed_ort,
        protocol,
        out: args.out.clone(),
    };
    let rows = bench::run(&cfg, &mut |msg| eprintln!("{msg}"))?;
    print!("{}", bench::markdown(&cfg.arch, &rows));
    println!(
        "\nwrote {}/quant-bench.{{csv,md,json}} and the graphs",
        args.out.display()
    );
    Ok(())
}
