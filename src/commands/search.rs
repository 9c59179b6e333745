//! `lts search`: a new run, a resume, or a fleet's runs (one per board class).

use super::agent::agent_key_path;
use super::config::{OrtFlags, ProtocolFlags};
use super::*;

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
    cfg.short_protocol = ProtocolFlags {
        min_runs: Some(args.short_min_runs),
        ..ProtocolFlags::default()
    }
    .over(cfg.short_protocol);
    cfg.full_protocol = ProtocolFlags {
        min_runs: Some(args.full_min_runs),
        min_duration_s: Some(args.full_min_duration_s),
        max_duration_s: Some(args.full_max_duration_s),
        target_ci_rel: Some(args.target_ci),
        ..ProtocolFlags::default()
    }
    .over(cfg.full_protocol);
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
    let ort =
        OrtFlags::from_args(&args.ort, OrtFlags::default().opt_level).to_ort(profile.as_ref());
    if let Some(p) = profile {
        cfg.thermal = p.thermal;
        cfg.device_profile = Some(p.name);
    }
    cfg.evaluator = args
        .backend
        .evaluator(ort, args.gpu.options(), args.cost_gflops);
    // Refuse what can never work before the runtime is loaded or the run folder created
    // (run_new checks again).
    cfg.validate()?;
    Ok(cfg)
}

/// `lts search`.
pub fn search(args: &SearchArgs) -> Result<()> {
    let opts = RunOptions {
        quiet: args.quiet || args.json,
        reporter: Some(std::sync::Arc::new(report::search_files::SearchFiles)),
        ..RunOptions::default()
    };
    // Ctrl-C / SIGTERM finish the current journal record, write the reports and exit 130/143.
    crate::signals::install()?;
    let outcome = match &args.resume {
        Some(given) => {
            let dir = crate::search::run_folder(given)?;
            if let Some(classes) = crate::search::classes::fleet_classes(&dir)? {
                let outcomes = crate::search::classes::run_classes(
                    classes.into_iter().map(|c| (c, None)).collect(),
                    &dir,
                    &opts,
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
                // On a board's agent, the board needs the runtime, not this machine; the
                // fidelity of --quantize's variants is judged here, though.
                EvaluatorSpec::Measure { .. }
                    if !cfg.agents.is_empty() || args.agents.is_some() =>
                {
                    if !cfg.quantize.is_empty() {
                        Ort::load().context(
                            "--quantize judges each variant's fidelity on this machine, with ONNX Runtime",
                        )?;
                    }
                }
                EvaluatorSpec::Measure { backend } => backend.backend().preflight()?,
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
    let outcomes = crate::search::classes::run_classes(runs, dir, opts)?;
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
