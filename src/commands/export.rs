//! `lts export`: an arch's ONNX graphs, its arch.json (and HF config.json), with the workload
//! it was chosen on recorded in both ([`super::recorded`]).

use super::*;

/// `lts export`.
pub fn export(args: &ExportArgs) -> Result<()> {
    let arch = arch_from(&args.arch, &args.candidate)?;
    arch.check_size(args.max_params)?;
    let id = arch.id();
    let graph_path = |kind: GraphKind| args.out.join(format!("{id}.{}.onnx", kind.as_str()));
    let arch_path = args.out.join(format!("{id}.arch.json"));
    let config_path = args.out.join(format!("{id}.config.json"));
    let weights_path = args.out.join(format!("{id}.safetensors"));
    let hf_config = arch.hf_config();
    // Every file this export writes, checked before any is written (or any weight generated):
    // the arch id does not depend on the weights, so another --seed or --weights would
    // silently replace the files of the first.
    let mut targets: Vec<PathBuf> = args.kind.kinds().into_iter().map(graph_path).collect();
    targets.push(arch_path.clone());
    if hf_config.is_some() {
        targets.push(config_path.clone());
    }
    if args.save_weights {
        targets.push(weights_path.clone());
    }
    let existing: Vec<String> = targets
        .iter()
        .filter(|p| p.symlink_metadata().is_ok())
        .map(|p| p.display().to_string())
        .collect();
    if !existing.is_empty() && !args.force {
        bail!(
            "{} already exist{} (possibly with other weights: the arch id does not depend on --seed or --weights): pass --force to replace, or choose another --out",
            existing.join(", "),
            if existing.len() == 1 { "s" } else { "" }
        );
    }
    let (recorded, graph_logits) = export_workload(args, &arch)?;
    let weights = weights_spec(&args.arch, &args.weights).load(&arch)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create output directory {}", args.out.display()))?;
    // Each file is written atomically (temporary file + rename): an interrupted export leaves
    // the previous file or the new one, never a partial one.
    for kind in args.kind.kinds() {
        let mut model = graph::build_model(&arch, &weights, kind, graph_logits)?;
        graph::record_workload(&mut model, &recorded);
        let path = graph_path(kind);
        graph::save(&model, &path)?;
        println!("wrote {}", path.display());
    }
    // The arch, with the workload beside it (`Arch::from_json` skips those keys).
    let mut arch_json: serde_json::Value = serde_json::from_str(&arch.to_json_pretty())?;
    arch_json[crate::workload::WORKLOAD_KEY] = serde_json::to_value(&recorded.workload)?;
    arch_json[crate::workload::WORKLOAD_SOURCE_KEY] = recorded.source.clone().into();
    write_atomic(
        &arch_path,
        serde_json::to_string_pretty(&arch_json)?.as_bytes(),
    )?;
    println!("wrote {}", arch_path.display());
    println!(
        "workload: {} ({}), what `lts measure --onnx` times by default",
        recorded.workload.describe(),
        recorded.source
    );
    match hf_config {
        Some(cfg) => {
            write_atomic(&config_path, serde_json::to_string_pretty(&cfg)?.as_bytes())?;
            println!(
                "wrote {} (Hugging Face config to train from)",
                config_path.display()
            );
        }
        None => println!(
            "no Hugging Face config.json: per-layer sizes differ, which one HF config cannot express"
        ),
    }
    if args.save_weights {
        weights.save_safetensors(&weights_path)?;
        println!("wrote {}", weights_path.display());
    }
    Ok(())
}

/// The workload `lts export` records (the search's for a candidate of a run, else its flags'
/// or defaults, a flag given overriding the search's with a note) and the logits of the prefill
/// graph it writes (`--logits`, else the workload's).
fn export_workload(args: &ExportArgs, arch: &Arch) -> Result<(RecordedWorkload, Logits)> {
    let run = match &args.candidate.from {
        Some(dir) => Some(recorded::run_workload(dir)?),
        None => None,
    };
    let flags = recorded::WorkloadFlags {
        mode: args.mode,
        lengths: args.lengths.clone(),
        batch: args.batch,
        seed: None,
    };
    let r = recorded::resolve(run.as_ref(), &flags, arch.n_positions, None)?;
    let mut workload = r.workload;
    // The prefill graph may compute every position's logits (for perplexity) whatever the mode
    // the files are meant for; decode and generation steps compute one.
    let graph_logits = args.lengths.logits.unwrap_or(workload.logits);
    if workload.mode != Mode::Prefill {
        workload.logits = Logits::Last;
    }
    workload.check(arch)?;
    for note in r.notes {
        eprintln!("note: {note}");
    }
    let source = match (&run, &r.change) {
        (Some(run), None) => run.source.clone(),
        (Some(run), Some(c)) => {
            eprintln!(
                "note: the search timed {} ({}); recording {} as {} {}",
                c.was, run.source, c.now, c.flags, c.verb
            );
            format!("lts export's flags over {}", run.source)
        }
        (None, _) if flags.any() => "lts export's workload flags".to_string(),
        (None, _) => "lts export's defaults".to_string(),
    };
    Ok((RecordedWorkload { workload, source }, graph_logits))
}
