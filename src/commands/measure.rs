//! `lts measure`: the jobs its flags describe, timed here or on a board's agent.

use super::agent::measure_on_agent;
use super::config::{OrtFlags, ProtocolFlags};
use super::recorded::{self, FileGraph, WorkloadFlags};
use super::*;

fn protocol_from(args: &MeasureArgs) -> Protocol {
    ProtocolFlags {
        warmup_s: args.warmup_s,
        min_runs: args.min_runs,
        min_duration_s: args.min_duration_s,
        max_runs: args.max_runs,
        max_duration_s: args.max_duration_s,
        cv_threshold: args.cv_threshold,
        target_ci_rel: Some(args.target_ci),
    }
    .over(Protocol::default())
}

/// Builds the jobs `lts measure` describes, one per `--backend` (same arch, weights, inputs and
/// protocol).
pub fn measure_jobs(args: &MeasureArgs) -> Result<Vec<Job>> {
    let base = measure_job(args)?;
    let mut backends = args.backend.clone();
    backends.dedup();
    if backends.is_empty() {
        bail!("--backend needs at least one of ort, wgpu");
    }
    let schemes = match &args.quant {
        Some(list) => {
            crate::quant::Scheme::parse_list(list, crate::quant::scheme::DEFAULT_PERCENTILE)?
                .into_iter()
                .map(Some)
                .collect()
        }
        None => vec![base.quant.clone()],
    };
    if backends.contains(&MeasureBackend::Wgpu) && schemes.iter().flatten().any(|q| !q.is_fp32()) {
        bail!("--quant: quantized graphs run on ONNX Runtime only; drop wgpu from --backend");
    }
    let mut jobs = Vec::new();
    for b in backends {
        for q in &schemes {
            jobs.push(Job {
                backend: b.spec(base.backend.clone(), args.gpu.options()),
                quant: q.clone(),
                ..base.clone()
            });
        }
    }
    Ok(jobs)
}

/// Builds the ONNX Runtime job `lts measure` describes (see [`measure_jobs`]).
pub fn measure_job(args: &MeasureArgs) -> Result<Job> {
    let flags = WorkloadFlags {
        mode: args.mode,
        lengths: args.lengths.clone(),
        batch: args.batch,
        seed: args.input_seed,
    };
    let (arch, weights, quant, (workload, notes)) = match &args.onnx {
        Some(path) => {
            // Decoded once: execution reuses it (graph::OnnxFile::open).
            let info = graph::OnnxFile::open(path)?.info.clone();
            let file = FileGraph {
                name: path.display().to_string(),
                kind: info.kind,
                logits: info.logits,
            };
            let resolved = recorded::for_measured_file(&info, &file, &flags)?;
            (
                info.arch,
                WeightsSpec::Onnx { path: path.clone() },
                info.quant,
                resolved,
            )
        }
        None => {
            let arch: Arch = args.arch.resolve()?;
            let w = weights_spec(&args.arch, &args.weights);
            let r = recorded::resolve(None, &flags, arch.n_positions, None)?;
            (arch, w, None, (r.workload, r.notes))
        }
    };
    let profile = load_profile(&args.profile)?;
    let ort = OrtFlags::from_args(&args.ort, args.opt_level).to_ort(profile.as_ref());
    // Before any weights or graph are built.
    ort.validate()?;
    // Printed before the checks: a workload taken from the file explains their errors.
    for note in notes {
        eprintln!("note: {note}");
    }
    workload.check(&arch)?;
    // Before anything is built or loaded (execute checks again, for jobs from elsewhere).
    MemoryLimit::resolve(args.max_memory)
        .check(estimate_memory(&arch, &workload), "this workload")?;
    Ok(Job {
        quant,
        arch,
        weights,
        workload,
        protocol: protocol_from(args),
        backend: BackendSpec::ort(ort),
        max_params: args.max_params,
        max_memory: args.max_memory,
        thermal: profile
            .as_ref()
            .map(|p| p.thermal.clone())
            .unwrap_or_default(),
        device_profile: profile.map(|p| p.name),
    })
}

/// `lts measure`.
pub fn measure(args: &MeasureArgs) -> Result<()> {
    let jobs = measure_jobs(args)?;
    if let Some(path) = &args.onnx {
        let kind = graph::OnnxFile::open(path)?.info.kind;
        // Generation takes any graph of the model (its weights give the graph it needs).
        let needed = job::graphs_for(&jobs[0].workload);
        if jobs[0].workload.mode != job::Mode::Generate && needed[0].0 != kind {
            bail!(
                "{} is a {kind:?} graph: pass --mode {}",
                path.display(),
                kind.as_str()
            );
        }
    }
    let mut results = Vec::with_capacity(jobs.len());
    if let Some(addr) = &args.agent {
        results = measure_on_agent(addr, args.key.as_ref(), &jobs, args.json)?;
    }
    let jobs = if args.agent.is_some() {
        Vec::new()
    } else {
        jobs
    };
    // Quantized variants on ONNX Runtime alone: one interleaved loop, so drift hits all alike.
    let interleave = jobs.len() > 1
        && jobs
            .iter()
            .all(|j| j.backend.backend().supports_quantized());
    if interleave {
        results = job::execute_interleaved(&jobs).context("measuring the --quant variants")?;
        if !args.json {
            for (i, r) in results.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                print!("{}", report::terminal::measurement_table(r));
            }
        }
    }
    for job in jobs.iter().filter(|_| !interleave) {
        let r = job::execute(job)
            .with_context(|| format!("measuring with --backend {}", job.backend.name()))?;
        if !args.json {
            if !results.is_empty() {
                println!();
            }
            print!("{}", report::terminal::measurement_table(&r));
        }
        results.push(r);
    }
    let json = if results.len() == 1 {
        serde_json::to_string_pretty(&results[0])?
    } else {
        serde_json::to_string_pretty(&results)?
    };
    if let Some(path) = &args.out {
        write_atomic(path, json.as_bytes())?;
    }
    if args.json {
        println!("{json}");
    } else {
        if results.len() > 1 {
            println!();
            print!("{}", report::terminal::backend_comparison(&results));
        }
        if let Some(path) = &args.out {
            println!("full result with raw samples: {}", path.display());
        } else {
            println!("(raw samples: --json or --out FILE)");
        }
    }
    Ok(())
}
