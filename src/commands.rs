//! The subcommands' work: each takes its parsed arguments and prints or writes results.

use anyhow::{bail, Context, Result};

use crate::arch::Arch;
use crate::backend::ort::{Ort, OrtOptions};
use crate::backend::ortlib::{self, Target};
use crate::cli::{
    DeviceArgs, ExportArgs, LengthArgs, MeasureArgs, MeasureBackend, ParamsArgs, ProfileArgs,
    SearchArgs, SearchBackend, SetupArgs,
};
use crate::device::DeviceInfo;
use crate::graph;
use crate::graph::GraphKind;
use crate::job::{self, BackendSpec, Job, WeightsSpec};
use crate::measure::Protocol;
use crate::profile::DeviceProfile;
use crate::report;
use crate::search::space::SearchSpace;
use crate::search::{EvaluatorSpec, RunOptions, SearchConfig};
use crate::thermal;
use crate::util::write_atomic;
use crate::weights::Weights;
use crate::workload::{estimate_memory, Logits, MemoryLimit, Mode, Workload};

/// `lts params`.
pub fn params(args: &ParamsArgs) -> Result<()> {
    let arch = args.arch.resolve()?;
    if args.json {
        let v = serde_json::json!({
            "arch_id": arch.id(),
            "arch": arch,
            "params": arch.params(),
            "flops_per_token_ctx192": arch.flops_per_token(192),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", report::params_table(&arch, 192));
    }
    Ok(())
}

/// `lts export`.
pub fn export(args: &ExportArgs) -> Result<()> {
    let arch = match (&args.from, &args.arch_id) {
        (Some(dir), Some(id)) => {
            let records = crate::search::store::RunDir::read_records(dir)?;
            match records.into_iter().find(|r| &r.arch_id == id) {
                Some(r) => r.arch,
                None => bail!(
                    "no candidate `{id}` in {} (see its candidates.csv or frontier.csv for arch ids)",
                    dir.display()
                ),
            }
        }
        _ => args.arch.resolve()?,
    };
    arch.check_size(args.max_params)?;
    let weights = match &args.weights.weights {
        Some(path) => Weights::from_safetensors(&arch, path)?,
        None => Weights::random(&arch, args.weights.seed),
    };
    let id = arch.id();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create output directory {}", args.out.display()))?;
    for kind in args.kind.kinds() {
        let model = graph::build_model(&arch, &weights, kind, args.logits)?;
        let path = args.out.join(format!("{id}.{}.onnx", kind.as_str()));
        graph::save(&model, &path)?;
        println!("wrote {}", path.display());
    }
    let arch_path = args.out.join(format!("{id}.arch.json"));
    write_atomic(&arch_path, arch.to_json_pretty().as_bytes())?;
    println!("wrote {}", arch_path.display());
    match arch.hf_config() {
        Some(cfg) => {
            let p = args.out.join(format!("{id}.config.json"));
            write_atomic(&p, serde_json::to_string_pretty(&cfg)?.as_bytes())?;
            println!("wrote {} (Hugging Face config to train from)", p.display());
        }
        None => println!(
            "no Hugging Face config.json: per-layer sizes differ, which one HF config cannot express"
        ),
    }
    if args.save_weights {
        let p = args.out.join(format!("{id}.safetensors"));
        weights.save_safetensors(&p)?;
        println!("wrote {}", p.display());
    }
    Ok(())
}

/// The lengths and logits flags of `measure` / `search` as a workload for an arch (or space) of
/// `n_positions`, with the note to print when a default had to shrink to fit. Flags that do not
/// apply to the mode are errors; values that do not fit are left to [`Workload::check`].
pub fn workload_from(
    mode: Mode,
    n_positions: usize,
    lengths: &LengthArgs,
) -> Result<(Workload, Option<String>)> {
    let LengthArgs {
        seq_len,
        logits,
        prompt_len,
        new_tokens,
    } = lengths.clone();
    if mode != Mode::Generate && (prompt_len.is_some() || new_tokens.is_some()) {
        bail!(
            "--prompt-len and --new-tokens apply to generation (--mode/--objective generate); for {} use --seq-len",
            mode.as_str()
        );
    }
    if mode == Mode::Generate && seq_len.is_some() {
        bail!("generation takes --prompt-len (and --new-tokens), not --seq-len");
    }
    let (seq_len, new_tokens, note) =
        crate::workload::resolve_lengths(mode, n_positions, seq_len.or(prompt_len), new_tokens);
    let workload = Workload {
        mode,
        seq_len,
        new_tokens,
        logits: logits.unwrap_or(Logits::Last),
        ..Workload::default()
    };
    Ok((workload, note))
}

fn protocol_from(args: &MeasureArgs) -> Protocol {
    let mut p = Protocol::default();
    if let Some(v) = args.warmup_s {
        p.warmup_s = v;
    }
    if let Some(v) = args.min_runs {
        p.min_runs = v;
    }
    if let Some(v) = args.min_duration_s {
        p.min_duration_s = v;
    }
    if let Some(v) = args.max_runs {
        p.max_runs = v;
    }
    if let Some(v) = args.max_duration_s {
        p.max_duration_s = v;
    }
    if let Some(v) = args.cv_threshold {
        p.cv_threshold = v;
    }
    p.target_ci_rel = args.target_ci;
    p
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
    Ok(backends
        .into_iter()
        .map(|b| Job {
            backend: match b {
                MeasureBackend::Ort => base.backend.clone(),
                MeasureBackend::Wgpu => BackendSpec::Wgpu(args.gpu.options()),
            },
            ..base.clone()
        })
        .collect())
}

/// Builds the ONNX Runtime job `lts measure` describes (see [`measure_jobs`]).
pub fn measure_job(args: &MeasureArgs) -> Result<Job> {
    let (arch, weights, file) = match &args.onnx {
        Some(path) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("cannot read ONNX file {}", path.display()))?;
            let info = job::read_onnx_info(&bytes).with_context(|| {
                format!(
                    "{} is not an ONNX file written by `lts export`",
                    path.display()
                )
            })?;
            let file = (info.kind, info.logits);
            (
                info.arch,
                WeightsSpec::Onnx { path: path.clone() },
                Some(file),
            )
        }
        None => {
            let arch: Arch = args.arch.resolve()?;
            let w = match &args.weights.weights {
                Some(path) => WeightsSpec::Safetensors { path: path.clone() },
                None => WeightsSpec::Random {
                    seed: args.weights.seed,
                },
            };
            (arch, w, None)
        }
    };
    let profile = load_profile(&args.profile)?;
    let mut ort = OrtOptions {
        opt_level: args.opt_level,
        ..OrtOptions::default()
    };
    if let Some(p) = &profile {
        ort = p.apply_ort(ort);
    }
    if let Some(n) = args.threads {
        ort.intra_threads = n;
    }
    if let Some(n) = args.inter_threads {
        ort.inter_threads = n;
    }
    if args.no_spin {
        ort.allow_spinning = false;
    }
    let (mut workload, note) = workload_from(args.mode, arch.n_positions, &args.lengths)?;
    workload.batch = args.batch;
    workload.seed = args.input_seed;
    if let (Some(path), Some((GraphKind::Prefill, logits)), Mode::Prefill) =
        (&args.onnx, file, args.mode)
    {
        // An exported prefill graph computes the logits it was exported with.
        match args.lengths.logits {
            Some(l) if l != logits => bail!(
                "{} was exported with --logits {}: drop --logits {} or export again with it",
                path.display(),
                logits.as_str(),
                l.as_str()
            ),
            _ => workload.logits = logits,
        }
    }
    workload.check(&arch)?;
    // Before anything is built or loaded (execute checks again, for jobs from elsewhere).
    MemoryLimit::resolve(args.max_memory)
        .check(estimate_memory(&arch, &workload), "this workload")?;
    if let Some(note) = note {
        eprintln!("note: {note}");
    }
    Ok(Job {
        arch,
        weights,
        workload,
        protocol: protocol_from(args),
        backend: BackendSpec::Ort(ort),
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
        let kind = job::read_onnx_info(&std::fs::read(path)?)?.kind;
        let needed = job::graphs_for(&jobs[0].workload);
        if needed.len() == 1 && needed[0].0 != kind {
            bail!(
                "{} is a {kind:?} graph: pass --mode {}",
                path.display(),
                kind.as_str()
            );
        }
    }
    let mut results = Vec::with_capacity(jobs.len());
    for job in &jobs {
        let r = job::execute(job)
            .with_context(|| format!("measuring with --backend {}", job.backend.name()))?;
        if !args.json {
            if !results.is_empty() {
                println!();
            }
            print!("{}", report::measurement_table(&r));
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
            print!("{}", report::backend_comparison(&results));
        }
        if let Some(path) = &args.out {
            println!("full result with raw samples: {}", path.display());
        } else {
            println!("(raw samples: --json or --out FILE)");
        }
    }
    Ok(())
}

/// The search configuration `lts search` describes (not used with --resume).
pub fn search_config(args: &SearchArgs) -> Result<SearchConfig> {
    let space = SearchSpace::resolve(&args.space)?;
    let mut cfg = SearchConfig::for_space(space);
    cfg.algo = args.algo;
    cfg.seed = args.seed;
    if let Some(v) = args.population {
        cfg.population = v;
    }
    if let Some(v) = args.iterations {
        cfg.iterations = v;
    }
    if let Some(v) = args.parents {
        cfg.parents = v;
    }
    if let Some(v) = args.mutations {
        cfg.mutations = v;
    }
    if let Some(v) = args.crossovers {
        cfg.crossovers = v;
    }
    cfg.mutation_prob = args.mutation_prob;
    cfg.crossover_prob = args.crossover_prob;
    // The space's own sequence length is the default of prefill/decode; generation lengths
    // default to what fits the space's positions.
    let space_seq = (args.objective != Mode::Generate)
        .then_some(cfg.space.search.seq_len)
        .flatten();
    let lengths = LengthArgs {
        seq_len: args.lengths.seq_len.or(space_seq),
        ..args.lengths.clone()
    };
    let (workload, note) = workload_from(args.objective, cfg.space.n_positions, &lengths)?;
    if let (Some(note), false) = (note, args.quiet || args.json) {
        eprintln!("note: {note}");
    }
    cfg.workload = Workload {
        batch: args.batch,
        seed: cfg.workload.seed,
        ..workload
    };
    cfg.short_protocol.min_runs = args.short_min_runs;
    cfg.full_protocol.min_runs = args.full_min_runs;
    cfg.full_protocol.min_duration_s = args.full_min_duration_s;
    cfg.full_protocol.max_duration_s = args.full_max_duration_s;
    cfg.full_protocol.target_ci_rel = args.target_ci;
    cfg.weights_seed = args.weights_seed;
    cfg.max_memory = args.max_memory;
    let profile = load_profile(&args.profile)?;
    let mut ort = match &profile {
        Some(p) => p.apply_ort(OrtOptions::default()),
        None => OrtOptions::default(),
    };
    if let Some(n) = args.threads {
        ort.intra_threads = n;
    }
    if let Some(p) = profile {
        cfg.thermal = p.thermal;
        cfg.device_profile = Some(p.name);
    }
    cfg.evaluator = match args.backend {
        SearchBackend::Ort => EvaluatorSpec::Measure {
            backend: BackendSpec::Ort(ort),
        },
        SearchBackend::Wgpu => EvaluatorSpec::Measure {
            backend: BackendSpec::Wgpu(args.gpu.options()),
        },
        SearchBackend::CostModel => EvaluatorSpec::CostModel {
            gflops: args.cost_gflops,
        },
    };
    // Before the runtime is loaded and the run folder created (run_new checks again).
    cfg.validate()?;
    Ok(cfg)
}

/// `lts search`.
pub fn search(args: &SearchArgs) -> Result<()> {
    let opts = RunOptions {
        quiet: args.quiet || args.json,
    };
    let outcome = match &args.resume {
        Some(dir) => {
            if !args.quiet && !args.json {
                eprintln!("resuming {} (settings from its run.json)", dir.display());
            }
            crate::search::resume(dir, &opts)?
        }
        None => {
            let cfg = search_config(args)?;
            // Fail before creating the folder when the runtime is missing.
            match &cfg.evaluator {
                EvaluatorSpec::Measure {
                    backend: BackendSpec::Ort(_),
                } => {
                    Ort::load()?;
                }
                EvaluatorSpec::Measure {
                    backend: BackendSpec::Wgpu(o),
                } => {
                    let gpu = crate::backend::wgpu::Gpu::shared(o.adapter)?;
                    gpu.resolve_precision(o.precision)?;
                    gpu.resolve_timer(o.timer)?;
                }
                EvaluatorSpec::CostModel { .. } => {}
            }
            let run_id = args.run_id.clone().unwrap_or_else(|| {
                let t = crate::util::now_rfc3339().replace([':', '-'], "");
                format!(
                    "{}-{}-s{}-{}",
                    cfg.space.name,
                    match cfg.algo {
                        crate::search::Algo::Lts => "lts",
                        crate::search::Algo::Random => "random",
                    },
                    cfg.seed,
                    t.trim_end_matches('Z')
                )
            });
            let dir = args.out.join(run_id);
            if !args.quiet && !args.json {
                eprintln!(
                    "searching space `{}` ({} candidates at most) into {}",
                    cfg.space.name,
                    cfg.budget(),
                    dir.display()
                );
            }
            crate::search::run_new(cfg, &dir, &opts)?
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        let front = crate::search::store::read_csv(&outcome.dir.join("frontier.csv"))?;
        println!(
            "{} candidates ({} measured now, {} reused), frontier {} points, hypervolume {:.4}, {:.0} s ({:.0}% in timed inference)",
            outcome.candidates,
            outcome.measured_now,
            outcome.reused,
            front.len(),
            outcome.hypervolume,
            outcome.wall_s,
            100.0 * outcome.timed_inference_s / outcome.wall_s.max(1e-9)
        );
        println!(
            "params-latency frontier ({} points; all {} frontier points with memory in frontier.csv):",
            front.iter().filter(|r| r.on_latency_frontier).count(),
            front.len()
        );
        println!(
            "{:<20} {:>7} {:>8} {:>15} {:>11} {:>10}",
            "arch id", "layers", "d_model", "decoder params", "median ms", "peak MiB"
        );
        for r in front.iter().filter(|r| r.on_latency_frontier) {
            println!(
                "{:<20} {:>7} {:>8} {:>15} {:>11.3} {:>10}",
                r.arch_id,
                r.n_layer,
                r.d_model,
                report::thousands(r.decoder_params),
                r.latency_median_ms,
                crate::report::mib_number(r.peak_memory_bytes)
            );
        }
        println!("report: {}", outcome.dir.join("summary.md").display());
    }
    Ok(())
}

/// Loads `--device-profile` and prints, on stderr, what it sets and where this machine does not
/// match it.
pub fn load_profile(args: &ProfileArgs) -> Result<Option<DeviceProfile>> {
    let Some(path) = &args.device_profile else {
        return Ok(None);
    };
    let p = DeviceProfile::load(path)?;
    eprintln!("{}", p.summary());
    for w in p.mismatches(p.thermal.root()) {
        eprintln!("warning: {w}");
    }
    Ok(Some(p))
}

/// `lts device`.
pub fn device(args: &DeviceArgs) -> Result<()> {
    let profile = load_profile(&args.profile)?;
    let thermal_settings = profile
        .as_ref()
        .map(|p| p.thermal.clone())
        .unwrap_or_default();
    let root = thermal_settings.root();
    if let Some(path) = &args.save {
        if path.exists() && !args.force {
            bail!(
                "{} exists: pass --force to replace it, or choose another file",
                path.display()
            );
        }
        let name = match &args.name {
            Some(n) => n.clone(),
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .filter(|s| !s.is_empty())
                .context("--save needs a file name such as devices/my-board.toml")?,
        };
        let p = DeviceProfile::from_machine(&name, &DeviceInfo::collect(), root);
        write_atomic(path, p.to_toml()?.as_bytes())?;
        println!("wrote device profile {} to {}", p.name, path.display());
        print!("{}", p.to_toml()?);
        return Ok(());
    }
    let sample = thermal::sample(&thermal_settings);
    let mut info = DeviceInfo::collect();
    info.gpu_adapters = crate::backend::wgpu::list_adapters();
    let runtime_error = match Ort::load() {
        Ok(ort) => {
            info.runtime = Some(ort.info().clone());
            None
        }
        Err(e) => Some(e),
    };
    if args.json {
        let mut v = serde_json::to_value(&info)?;
        v["thermal"] = serde_json::to_value(&sample)?;
        v["board_model"] = serde_json::to_value(thermal::board_model(root))?;
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", info.table());
        print!(
            "{}",
            report::thermal_sample(&sample, thermal::board_model(root).as_deref())
        );
    }
    if let Some(e) = runtime_error {
        eprintln!("note: ONNX Runtime unavailable: {e:#}");
    }
    if info.gpu_adapters.is_empty() {
        eprintln!(
            "note: no wgpu adapter, --backend wgpu unavailable: {}",
            crate::backend::wgpu::NO_ADAPTER_HINT
        );
    }
    Ok(())
}

/// `lts setup`.
pub fn setup(args: &SetupArgs) -> Result<()> {
    let target = match args.target.or_else(Target::host) {
        Some(t) => t,
        None => bail!(
            "no ONNX Runtime wheel for this CPU ({}): pass --target x86_64|aarch64, or bring your own library with ORT_DYLIB_PATH",
            std::env::consts::ARCH
        ),
    };
    let dir = match &args.dest {
        Some(d) => d.clone(),
        None => {
            ortlib::cache_dir().context("no cache directory: set LTS_CACHE_DIR or pass --dest")?
        }
    };
    let (path, version) = match &args.wheel {
        Some(wheel) => {
            let installed = ortlib::install_wheel(wheel, target, &dir)?;
            if let Some(n) = &installed.notice {
                eprintln!("lts: {n}");
            }
            (installed.path, installed.version)
        }
        None => (
            ortlib::setup(target, &dir, args.force)?,
            ortlib::ORT_VERSION.to_string(),
        ),
    };
    println!(
        "ONNX Runtime {version} for {:?}: {}",
        target,
        path.display()
    );
    if Some(target) == Target::host() && args.dest.is_none() {
        let ort = Ort::load()?;
        println!(
            "loaded: {} {} (providers: {})",
            ort.info().name,
            ort.info().version,
            ort.info().providers.join(", ")
        );
    } else {
        println!(
            "copy it to the board and set ORT_DYLIB_PATH={}",
            path.file_name().unwrap().to_string_lossy()
        );
    }
    Ok(())
}
