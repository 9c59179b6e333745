//! The subcommands' work: each takes its parsed arguments and prints or writes results.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::arch::Arch;
use crate::backend::ort::{Ort, OrtOptions};
use crate::backend::ortlib::{self, Target};
use crate::cli::{
    ArchArgs, CalibArgs, CandidateArgs, DeviceArgs, EvalArgs, ExportArgs, FetchArgs, LengthArgs,
    MeasureArgs, MeasureBackend, ParamsArgs, ProfileArgs, QuantBenchArgs, QuantizeArgs, SearchArgs,
    SearchBackend, SetupArgs, WeightArgs,
};
use crate::device::DeviceInfo;
use crate::eval::{EvalConfig, ModelSource};
use crate::graph;
use crate::graph::GraphKind;
use crate::job::{self, BackendSpec, Job, JobResult, WeightsSpec};
use crate::measure::Protocol;
use crate::profile::DeviceProfile;
use crate::report;
use crate::search::space::SearchSpace;
use crate::search::{EvaluatorSpec, RunOptions, SearchConfig};
use crate::thermal;
use crate::util::write_atomic;
use crate::workload::{estimate_memory, Logits, MemoryLimit, Mode, Workload};

/// `lts params`.
pub fn params(args: &ParamsArgs) -> Result<()> {
    let arch = args.arch.resolve()?;
    // The context `lts measure` and a search use by default: 192 (LTS) or the arch's positions.
    let context = crate::workload::DEFAULT_SEQ_LEN.min(arch.n_positions);
    if args.json {
        let v = serde_json::json!({
            "arch_id": arch.id(),
            "arch": arch,
            "params": arch.params(),
            "context": context,
            "flops_per_token": arch.flops_per_token(context),
            // Kept for existing readers; always at context 192, even beyond n_positions.
            "flops_per_token_ctx192": arch.flops_per_token(192),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", report::terminal::params_table(&arch, context));
    }
    Ok(())
}

/// Where the weights of `--gguf`, `--weights` or `--seed` come from (export and measure).
fn weights_spec(arch: &ArchArgs, weights: &WeightArgs) -> WeightsSpec {
    match (&arch.gguf, &weights.weights) {
        (Some(path), _) => WeightsSpec::Gguf { path: path.clone() },
        (None, Some(path)) => WeightsSpec::Safetensors { path: path.clone() },
        (None, None) => WeightsSpec::Random { seed: weights.seed },
    }
}

/// The arch of `--from DIR --arch-id ID` (a searched candidate), else of `--preset`, `--arch`
/// or `--gguf`.
fn arch_from(arch: &ArchArgs, candidate: &CandidateArgs) -> Result<Arch> {
    match (&candidate.from, &candidate.arch_id) {
        (Some(dir), Some(id)) => {
            let records = crate::search::store::RunDir::read_records(dir)?;
            match records.into_iter().find(|r| &r.arch_id == id) {
                Some(r) => Ok(r.arch),
                None => bail!(
                    "no candidate `{id}` in {} (see its candidates.csv or frontier.csv for arch ids)",
                    dir.display()
                ),
            }
        }
        _ => arch.resolve(),
    }
}

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
    let weights = weights_spec(&args.arch, &args.weights).load(&arch)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create output directory {}", args.out.display()))?;
    // Each file is written atomically (temporary file + rename): an interrupted export leaves
    // the previous file or the new one, never a partial one.
    for kind in args.kind.kinds() {
        let model = graph::build_model(&arch, &weights, kind, args.logits)?;
        let path = graph_path(kind);
        graph::save(&model, &path)?;
        println!("wrote {}", path.display());
    }
    write_atomic(&arch_path, arch.to_json_pretty().as_bytes())?;
    println!("wrote {}", arch_path.display());
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
                backend: match b {
                    MeasureBackend::Ort => base.backend.clone(),
                    MeasureBackend::Wgpu => BackendSpec::Wgpu(args.gpu.options()),
                },
                quant: q.clone(),
                ..base.clone()
            });
        }
    }
    Ok(jobs)
}

/// Builds the ONNX Runtime job `lts measure` describes (see [`measure_jobs`]).
pub fn measure_job(args: &MeasureArgs) -> Result<Job> {
    let (arch, weights, file, quant) = match &args.onnx {
        Some(path) => {
            // Decoded once: execution reuses it (graph::OnnxFile::open).
            let info = graph::OnnxFile::open(path)?.info.clone();
            let file = (info.kind, info.logits);
            (
                info.arch,
                WeightsSpec::Onnx { path: path.clone() },
                Some(file),
                info.quant,
            )
        }
        None => {
            let arch: Arch = args.arch.resolve()?;
            let w = weights_spec(&args.arch, &args.weights);
            (arch, w, None, None)
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
    // Before any weights or graph are built.
    ort.validate()?;
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
        quant,
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
        let kind = graph::OnnxFile::open(path)?.info.kind;
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
            .all(|j| matches!(j.backend, BackendSpec::Ort(_)));
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

/// The key file of `lts agent` and `--agent`: the flag or `LTS_AGENT_KEY_FILE`, else
/// `~/.config/lts/agent.key`.
fn agent_key_path(given: Option<&PathBuf>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.clone());
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("no --key given and $HOME is not set: pass --key FILE")?;
    Ok(PathBuf::from(home).join(".config/lts/agent.key"))
}

/// Loads the agent key, with the fix in the error.
fn load_agent_key(given: Option<&PathBuf>) -> Result<crate::remote::auth::Key> {
    let path = agent_key_path(given)?;
    crate::remote::auth::load_key(&path).with_context(|| {
        format!(
            "agent key {}: create it on the board with `lts agent --init --key {}` and copy it here (or pass --key / LTS_AGENT_KEY_FILE)",
            path.display(),
            path.display()
        )
    })
}

/// `lts measure --agent`: each job on the board, one after the other.
fn measure_on_agent(
    addr: &str,
    key: Option<&PathBuf>,
    jobs: &[Job],
    json: bool,
) -> Result<Vec<JobResult>> {
    use crate::remote::host::{self, AgentAddr, Client};
    let addr = AgentAddr::parse(addr)?;
    let key = load_agent_key(key)?;
    crate::signals::install()?;
    let mut client = Some(Client::connect(&addr, &key)?);
    if let (Some(c), false) = (&client, json) {
        eprintln!(
            "agent {addr}: {} ({}, lts {})",
            c.device.hostname.as_deref().unwrap_or("?"),
            c.device.cpu_brand.as_deref().unwrap_or("?"),
            c.tool_version
        );
    }
    let stamp = crate::util::now_rfc3339().replace([':', '-'], "");
    let mut results = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        let id = format!("measure-{stamp}-{}-{i}", std::process::id());
        let r = host::run_job(&mut client, &addr, &key, &id, job, &mut |_| {})
            .with_context(|| format!("measuring {} on the agent at {addr}", job.arch.id()))?;
        if !json {
            if !results.is_empty() {
                println!();
            }
            print!("{}", report::terminal::measurement_table(&r));
        }
        results.push(r);
    }
    Ok(results)
}

/// `lts agent`.
pub fn agent(args: &crate::cli::AgentArgs) -> Result<()> {
    use crate::remote::agent::{self, AgentConfig};
    let path = agent_key_path(args.key.as_ref())?;
    if args.init {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        crate::remote::auth::init_key_file(&path)?;
        println!(
            "wrote a new agent key to {} (mode 0600): copy it to the host, e.g. `scp {} host:~/.config/lts/agent.key`",
            path.display(),
            path.display()
        );
        return Ok(());
    }
    let key = load_agent_key(Some(&path))?;
    let limits = crate::remote::message::Limits {
        max_params: args.max_params,
        max_seq_len: args.max_seq_len,
        max_memory: args.max_memory,
    };
    crate::signals::install()?;
    let cfg = AgentConfig {
        key,
        limits,
        once: args.once,
        verbose: !args.quiet,
    };
    if let Some(dev) = &args.serial {
        let link = crate::remote::serial::SerialLink::open(dev, args.baud)?;
        eprintln!(
            "lts agent listening on serial {dev} at {} baud (key {}; Ctrl-C stops)",
            args.baud,
            path.display()
        );
        return agent::serve_serial(link, cfg);
    }
    let listener = std::net::TcpListener::bind(&args.listen).with_context(|| {
        format!(
            "cannot listen on {}: is another agent running there? choose another --listen",
            args.listen
        )
    })?;
    eprintln!(
        "lts agent listening on {} (key {}; Ctrl-C stops)",
        listener.local_addr()?,
        path.display()
    );
    agent::serve_tcp(listener, cfg)
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
    if let Some(addr) = &args.agent {
        crate::remote::host::AgentAddr::parse(addr)?;
        cfg.agents = vec![crate::search::config::AgentSpec {
            addr: addr.clone(),
            key_file: std::path::absolute(agent_key_path(args.key.as_ref())?)?,
            class: "default".into(),
        }];
    }
    if let Some(list) = &args.quantize {
        cfg.quantize =
            crate::quant::Scheme::parse_list(list, crate::quant::scheme::DEFAULT_PERCENTILE)
                .context("--quantize")?;
    }
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
    // Refuse what can never work before the runtime is loaded or the run folder created
    // (run_new checks again).
    cfg.validate()?;
    Ok(cfg)
}

/// `lts search`.
pub fn search(args: &SearchArgs) -> Result<()> {
    let opts = RunOptions {
        quiet: args.quiet || args.json,
    };
    // Ctrl-C / SIGTERM finish the current journal record, write the reports and exit 130/143.
    crate::signals::install()?;
    let outcome = match &args.resume {
        Some(given) => {
            let dir = crate::search::run_folder(given)?;
            if let Some(classes) = crate::search::fleet_classes(&dir)? {
                let outcomes = crate::search::run_classes(
                    classes.into_iter().map(|c| (c, None)).collect(),
                    &dir,
                )?;
                return print_class_outcomes(&outcomes, args.json);
            }
            if !args.quiet && !args.json {
                eprintln!("resuming {} (settings from its run.json)", dir.display());
            }
            crate::search::resume(&dir, &opts)?
        }
        None => {
            let cfg = search_config(args)?;
            // Fail before creating the folder when the runtime is missing.
            match &cfg.evaluator {
                // On a board's agent, the board needs the runtime, not this machine.
                EvaluatorSpec::Measure { .. } if !cfg.agents.is_empty() => {}
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
            let dir = args.out.join(run_id_for(args, &cfg));
            if let Some(fleet) = &args.agents {
                return search_fleet(args, fleet, cfg, &dir, &opts);
            }
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
        print!("{}", report::terminal::search_outcome(&outcome));
    }
    Ok(())
}

/// The run folder name: `--run-id`, else space, algorithm, seed and the UTC time.
fn run_id_for(args: &SearchArgs, cfg: &SearchConfig) -> String {
    args.run_id.clone().unwrap_or_else(|| {
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
    })
}

/// `lts search --agents FLEET`: one search per board class, its boards sharing the
/// candidates; several classes run side by side into `<run>/<class>/`.
fn search_fleet(
    args: &SearchArgs,
    fleet: &Path,
    cfg: SearchConfig,
    dir: &Path,
    opts: &RunOptions,
) -> Result<()> {
    let entries = crate::remote::fleet::load(fleet)?;
    let default_key = std::path::absolute(agent_key_path(args.key.as_ref())?)?;
    let mut runs = Vec::new();
    for (class, members) in crate::remote::fleet::classes(&entries) {
        let mut c = cfg.clone();
        c.agents = members
            .iter()
            .map(|m| {
                Ok(crate::search::config::AgentSpec {
                    addr: m.addr.clone(),
                    key_file: match &m.key {
                        Some(k) => {
                            std::path::absolute(fleet.parent().unwrap_or(Path::new(".")).join(k))?
                        }
                        None => default_key.clone(),
                    },
                    class: class.clone(),
                })
            })
            .collect::<Result<_>>()?;
        c.validate()?;
        runs.push((class, Some(c)));
    }
    if runs.len() == 1 {
        let (class, c) = runs.pop().expect("one class");
        let c = c.expect("new run");
        if !args.quiet && !args.json {
            eprintln!(
                "searching space `{}` ({} candidates at most) on {} board(s) of class `{class}` into {}",
                c.space.name,
                c.budget(),
                c.agents.len(),
                dir.display()
            );
        }
        let outcome = crate::search::run_new(c, dir, opts)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&outcome)?);
        } else {
            print!("{}", report::terminal::search_outcome(&outcome));
        }
        return Ok(());
    }
    if !args.quiet && !args.json {
        let names: Vec<&str> = runs.iter().map(|(c, _)| c.as_str()).collect();
        eprintln!(
            "searching space `{}` on {} board classes side by side ({}) into {}/<class>/",
            cfg.space.name,
            runs.len(),
            names.join(", "),
            dir.display()
        );
    }
    let outcomes = crate::search::run_classes(runs, dir)?;
    print_class_outcomes(&outcomes, args.json)
}

fn print_class_outcomes(outcomes: &[(String, crate::search::Outcome)], json: bool) -> Result<()> {
    if json {
        let m: std::collections::BTreeMap<&str, &crate::search::Outcome> =
            outcomes.iter().map(|(c, o)| (c.as_str(), o)).collect();
        println!("{}", serde_json::to_string_pretty(&m)?);
    } else {
        for (class, o) in outcomes {
            println!("== class {class}");
            print!("{}", report::terminal::search_outcome(o));
        }
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
    eprintln!("{}", report::terminal::profile_summary(&p));
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
    // The machine, the runtime this binary loads, and the GPUs wgpu sees.
    let info = DeviceInfo::collect();
    let gpu_adapters = crate::backend::wgpu::list_adapters();
    let (runtime, runtime_error) = match Ort::load() {
        Ok(ort) => (Some(ort.info().clone()), None),
        Err(e) => (None, Some(e)),
    };
    if args.json {
        let mut v = serde_json::to_value(&info)?;
        v["runtime"] = serde_json::to_value(&runtime)?;
        v["gpu_adapters"] = serde_json::to_value(&gpu_adapters)?;
        v["thermal"] = serde_json::to_value(&sample)?;
        v["board_model"] = serde_json::to_value(thermal::board_model(root))?;
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!(
            "{}",
            report::terminal::device_table(&info, runtime.as_ref(), &gpu_adapters)
        );
        print!(
            "{}",
            report::terminal::thermal_sample(&sample, thermal::board_model(root).as_deref())
        );
    }
    if let Some(e) = runtime_error {
        eprintln!("note: ONNX Runtime unavailable: {e:#}");
    }
    if gpu_adapters.is_empty() {
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

/// `lts fetch`.
pub fn fetch(args: &FetchArgs) -> Result<()> {
    let dir = match &args.dest {
        Some(d) => d.clone(),
        None => {
            ortlib::cache_dir().context("no cache directory: set LTS_CACHE_DIR or pass --dest")?
        }
    };
    let opts = crate::fetch::FetchOptions {
        from: args.from.clone(),
        force: args.force,
        unpinned: args.unpinned,
    };
    for path in crate::fetch::fetch(args.what, &dir, &opts)? {
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        println!("{} ({bytes} bytes)", path.display());
    }
    Ok(())
}

/// A file of the cache `lts fetch` fills, or an error naming the fetch command and the flag
/// that takes a file instead.
fn cached(
    path: impl FnOnce(&std::path::Path) -> PathBuf,
    fetch: &str,
    flag: &str,
) -> Result<PathBuf> {
    let dir = ortlib::cache_dir()
        .with_context(|| format!("no cache directory (set LTS_CACHE_DIR) and no {flag} given"))?;
    let p = path(&dir);
    if !p.is_file() {
        bail!(
            "{} does not exist: run `lts fetch {fetch}` or pass {flag} FILE",
            p.display()
        );
    }
    Ok(p)
}

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
    let backend = match args.backend {
        MeasureBackend::Ort => {
            let opts = OrtOptions {
                intra_threads: args.threads.unwrap_or_else(crate::util::default_threads),
                opt_level: args.opt_level,
                ..OrtOptions::default()
            };
            opts.validate()?;
            BackendSpec::Ort(opts)
        }
        MeasureBackend::Wgpu => {
            if args.threads.is_some() {
                bail!("--threads sets ONNX Runtime's threads: drop it with --backend wgpu");
            }
            BackendSpec::Wgpu(crate::backend::wgpu::WgpuOptions {
                adapter: args.adapter,
                precision: args.precision,
                timer: crate::backend::wgpu::GpuTimer::Wall,
            })
        }
    };
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

/// `lts quantize`.
pub fn quantize(args: &QuantizeArgs) -> Result<()> {
    use crate::quantize::{self as q, Fp32Graphs};
    let schemes = crate::quant::Scheme::parse_list(&args.scheme, args.calib.percentile)?;
    let (arch, weights) = match &args.onnx {
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
            )
        }
        None => (
            arch_from(&args.arch, &args.candidate)?,
            weights_spec(&args.arch, &args.weights),
        ),
    };
    arch.check_size(args.max_params)?;
    let seq_len = args.calib.seq_len.unwrap_or(128.min(arch.n_positions));
    if args.calib.calib == 0 && schemes.iter().any(|s| s.needs_calibration()) {
        bail!("--calib 0: int8-static needs at least one calibration sequence");
    }
    let ort = OrtOptions {
        intra_threads: args.threads.unwrap_or_else(crate::util::default_threads),
        ..OrtOptions::default()
    };
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
    let fp32 = Fp32Graphs::build(&arch, &weights, args.logits, !args.prefill_only)?;
    drop(weights);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create output directory {}", args.out.display()))?;
    let mut results = Vec::new();
    for s in &schemes {
        let out = (!s.is_fp32()).then_some(args.out.as_path());
        let r = q::quantize_one(&arch, &fp32, s, &seqs, &ort, out)?;
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

/// Calibration and evaluation sequences of `--seq-len` tokens: windows of `--text` cut by the
/// GGUF file's tokenizer, or seeded tokens.
fn quant_sequences(
    arch: &Arch,
    c: &CalibArgs,
    gguf: Option<&PathBuf>,
    seq_len: usize,
) -> Result<crate::quantize::Sequences> {
    use crate::quantize::Sequences;
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
        _ => Sequences::seeded(arch, c.calib, c.eval, seq_len, c.input_seed),
    })
}

/// `lts quant-bench`.
pub fn quant_bench(args: &QuantBenchArgs) -> Result<()> {
    use crate::quantize::bench::{self, BenchConfig};
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
    let timed_ort = OrtOptions {
        intra_threads: args.threads,
        ..OrtOptions::default()
    };
    timed_ort.validate()?;
    let protocol = Protocol {
        min_runs: args.min_runs,
        min_duration_s: args.min_duration_s,
        ..Protocol::default()
    };
    protocol.validate()?;
    crate::signals::install()?;
    let cfg = BenchConfig {
        weights: weights_spec(&args.arch, &args.weights),
        arch,
        schemes,
        seqs,
        seq_len,
        work_ort: OrtOptions {
            intra_threads: crate::util::default_threads(),
            ..OrtOptions::default()
        },
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
