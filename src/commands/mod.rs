//! The subcommands' work: each takes its parsed arguments and prints or writes results. One
//! file per command family (measure, search, agent, eval, quantize); the small ones and the
//! helpers they share (arch, weights and workload from flags, device profiles) are here.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::arch::Arch;
use crate::backend::ort::Ort;
use crate::backend::ortlib::{self, Target};
use crate::cli::{
    ArchArgs, CalibArgs, CandidateArgs, DeviceArgs, EvalArgs, ExportArgs, FetchArgs, LengthArgs,
    MeasureArgs, MeasureBackend, ParamsArgs, QuantBenchArgs, QuantizeArgs, SearchArgs, SetupArgs,
    WeightArgs,
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
use crate::workload::{estimate_memory, Logits, MemoryLimit, Mode, RecordedWorkload, Workload};

pub mod agent;
pub mod config;
pub mod eval;
pub mod export;
pub mod measure;
pub mod quantize;
pub mod recorded;
pub mod search;
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
pub use config::load_profile;

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
