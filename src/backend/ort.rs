//! ONNX Runtime backend through the `ort` crate (2.0.0-rc.15, `load-dynamic`).
//!
//! One process-wide ONNX Runtime environment is created from the library [`super::ortlib`]
//! finds. Sessions are created from in-memory ONNX bytes with the recorded [`OrtOptions`]
//! (LTS's defaults: one intra-op thread, `ORT_ENABLE_ALL`, CPU provider).

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use ndarray::{Array2, Array3, Array4, Ix3, Ix4};
use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor};
use serde::{Deserialize, Serialize};

use super::{ortlib, FirstTokenLog, Runner, RuntimeInfo};
use crate::arch::Arch;
use crate::model_io::{KvCache, Output};
use crate::workload::{Mode, Workload};

/// ONNX Runtime graph optimisation level (`GraphOptimizationLevel`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OptLevel {
    /// `ORT_DISABLE_ALL`.
    Disable,
    /// `ORT_ENABLE_BASIC`: constant folding, redundant node elimination.
    Basic,
    /// `ORT_ENABLE_EXTENDED`: adds fusions (GELU, LayerNorm, attention…).
    Extended,
    /// `ORT_ENABLE_ALL` (LTS's setting): adds layout optimisations.
    All,
}

impl crate::choice::Choice for OptLevel {
    const ALL: &'static [(Self, &'static str, &'static str)] = &[
        (OptLevel::Disable, "disable", "ORT_DISABLE_ALL"),
        (
            OptLevel::Basic,
            "basic",
            "ORT_ENABLE_BASIC: constant folding, redundant node elimination",
        ),
        (
            OptLevel::Extended,
            "extended",
            "ORT_ENABLE_EXTENDED: adds fusions (GELU, LayerNorm, attention)",
        ),
        (
            OptLevel::All,
            "all",
            "ORT_ENABLE_ALL (LTS's setting): adds layout optimisations",
        ),
    ];
}

/// Session settings, recorded with every measurement.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OrtOptions {
    /// Intra-op threads (LTS measured with 1).
    pub intra_threads: usize,
    /// Inter-op threads (parallel execution of independent nodes when > 1).
    pub inter_threads: usize,
    /// Graph optimisation level.
    pub opt_level: OptLevel,
    /// Execution provider; only `cpu` today (the loaded library's list is in `lts device`).
    pub provider: String,
    /// Whether idle intra-op threads spin (`session.intra_op.allow_spinning`, ORT's default on).
    pub allow_spinning: bool,
}

impl Default for OrtOptions {
    fn default() -> Self {
        OrtOptions {
            intra_threads: 1,
            inter_threads: 1,
            opt_level: OptLevel::All,
            provider: "cpu".into(),
            allow_spinning: true,
        }
    }
}

impl OrtOptions {
    /// Checks the settings that can never work, before anything is built or created; errors
    /// name the flag. ONNX Runtime reads a thread count of 0 as "its own default" (one per
    /// core), which is not a setting a measurement can record, so 0 is refused.
    pub fn validate(&self) -> Result<()> {
        if self.intra_threads == 0 {
            bail!("--threads 0: ONNX Runtime needs at least 1 intra-op thread");
        }
        if self.inter_threads == 0 {
            bail!("--inter-threads 0: ONNX Runtime needs at least 1 inter-op thread");
        }
        if self.provider != "cpu" {
            bail!(
                "execution provider `{}` is not supported yet; use `cpu`",
                self.provider
            );
        }
        Ok(())
    }
}

static ENV: OnceLock<std::result::Result<(Environment, RuntimeInfo), String>> = OnceLock::new();

/// A loaded ONNX Runtime: the process-wide environment and what was loaded.
#[derive(Clone, Copy)]
pub struct Ort {
    env: &'static Environment,
    info: &'static RuntimeInfo,
}

impl Ort {
    /// Finds the library (see [`ortlib::locate`]) and creates the environment, once per process.
    pub fn load() -> Result<Ort> {
        let loaded = ENV.get_or_init(|| init().map_err(|e| format!("{e:#}")));
        match loaded {
            Ok((env, info)) => Ok(Ort { env, info }),
            Err(e) => Err(anyhow!("{e}")),
        }
    }

    /// Version, library path and providers of the loaded runtime.
    pub fn info(&self) -> &RuntimeInfo {
        self.info
    }

    /// Creates a session from serialized ONNX bytes.
    pub fn session(&self, model: &[u8], opts: &OrtOptions) -> Result<Session> {
        self.session_with_files(model, &[], opts)
    }

    /// Creates a session from serialized ONNX bytes whose external-data initializers live in
    /// the in-memory `files` ([`crate::graph::build_models_external`]): ONNX Runtime reads
    /// them from our buffers (`AddExternalInitializersFromFilesInMemory`) instead of a
    /// protobuf, and the session keeps them alive.
    pub fn session_with_files(
        &self,
        model: &[u8],
        files: &[(String, std::sync::Arc<[u8]>)],
        opts: &OrtOptions,
    ) -> Result<Session> {
        self.build_session(model, files, opts, None)
    }

    /// The op types (`domain:op` for contrib ops, with counts) of the graph ONNX Runtime runs
    /// for `model` under `opts` after its graph optimizations: the optimized model it writes
    /// when asked (`optimized_model_filepath`), read back. Shows which fused kernels a
    /// quantized graph becomes (`com.microsoft:DynamicQuantizeMatMul`...).
    pub fn optimized_ops(
        &self,
        model: &[u8],
        opts: &OrtOptions,
    ) -> Result<std::collections::BTreeMap<String, usize>> {
        use prost::Message;
        let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
        let path = dir.path().join("optimized.onnx");
        drop(self.build_session(model, &[], opts, Some(&path))?);
        let bytes = std::fs::read(&path).context("ONNX Runtime wrote no optimized model")?;
        let m = crate::graph::onnx::ModelProto::decode(bytes.as_slice())
            .context("cannot decode ONNX Runtime's optimized model")?;
        let mut ops = std::collections::BTreeMap::new();
        for n in m.graph.iter().flat_map(|g| &g.node) {
            let op = n.op_type.clone().unwrap_or_default();
            let key = match n.domain.as_deref() {
                None | Some("") | Some("ai.onnx") => op,
                Some(d) => format!("{d}:{op}"),
            };
            *ops.entry(key).or_insert(0) += 1;
        }
        Ok(ops)
    }

    fn build_session(
        &self,
        model: &[u8],
        files: &[(String, std::sync::Arc<[u8]>)],
        opts: &OrtOptions,
        optimized_to: Option<&std::path::Path>,
    ) -> Result<Session> {
        if opts.provider != "cpu" {
            bail!(
                "execution provider `{}` is not supported yet; use `cpu` (available in this library: {})",
                opts.provider,
                self.info.providers.join(", ")
            );
        }
        opts.validate()?;
        let level = match opts.opt_level {
            OptLevel::Disable => GraphOptimizationLevel::Disable,
            OptLevel::Basic => GraphOptimizationLevel::Level1,
            OptLevel::Extended => GraphOptimizationLevel::Level2,
            OptLevel::All => GraphOptimizationLevel::All,
        };
        let builder = Session::builder(self.env)?;
        let fail = |e: ort::Error<_>| anyhow!("cannot configure the ONNX Runtime session: {e}");
        let mut builder = builder
            .with_optimization_level(level)
            .map_err(fail)?
            .with_intra_threads(opts.intra_threads)
            .map_err(fail)?
            .with_inter_threads(opts.inter_threads)
            .map_err(fail)?
            .with_parallel_execution(opts.inter_threads > 1)
            .map_err(fail)?
            .with_config_entry(
                "session.intra_op.allow_spinning",
                if opts.allow_spinning { "1" } else { "0" },
            )
            .map_err(fail)?;
        for (name, data) in files {
            builder = builder
                .with_external_initializer_file_in_memory(name, data.clone())
                .map_err(fail)?;
        }
        if let Some(path) = optimized_to {
            builder = builder.with_optimized_model_path(path).map_err(fail)?;
        }
        builder
            .commit_from_memory(model)
            .context("ONNX Runtime could not load the model")
    }
}

fn init() -> Result<(Environment, RuntimeInfo)> {
    let located = ortlib::locate()?;
    let builder = ort::init_from(&located.path).map_err(|e| {
        anyhow!(
            "cannot load ONNX Runtime from {} (found via {}): {e}\nRun `lts setup --force` to reinstall it, or point ORT_DYLIB_PATH at a working libonnxruntime.so (>= 1.31).",
            located.path.display(),
            located.how
        )
    })?;
    let env = builder.with_name("lts").build()?;
    let version = library_version(&located.path).unwrap_or_else(|| "unknown".into());
    let info = RuntimeInfo {
        name: "onnxruntime".into(),
        version,
        library: Some(located.path.display().to_string()),
        providers: available_providers()?,
    };
    Ok((env, info))
}

/// Version from the build info (`git-branch=rel-1.31.1`), else from the file name.
fn library_version(path: &std::path::Path) -> Option<String> {
    let info = ort::info();
    if let Some(rest) = info.split("git-branch=rel-").nth(1) {
        let v: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        if !v.is_empty() {
            return Some(v);
        }
    }
    let name = path.file_name()?.to_string_lossy().into_owned();
    name.split(".so.").nth(1).map(str::to_string)
}

/// Execution providers compiled into the loaded library (`GetAvailableProviders`).
fn available_providers() -> Result<Vec<String>> {
    let api = ort::api();
    let mut list: *mut *mut std::ffi::c_char = std::ptr::null_mut();
    let mut n: std::ffi::c_int = 0;
    // SAFETY: documented C API; the list is released below with the matching call.
    let status = unsafe { (api.GetAvailableProviders)(&mut list, &mut n) };
    if !status.0.is_null() {
        // SAFETY: a non-null status is owned by us and released once.
        unsafe { (api.ReleaseStatus)(status.0) };
        bail!("ONNX Runtime could not list its execution providers");
    }
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n as usize {
        // SAFETY: `list` holds `n` valid C strings until released.
        let s = unsafe { std::ffi::CStr::from_ptr(*list.add(i)) };
        out.push(s.to_string_lossy().into_owned());
    }
    // SAFETY: releases the list obtained above.
    let status = unsafe { (api.ReleaseAvailableProviders)(list, n) };
    if !status.0.is_null() {
        unsafe { (api.ReleaseStatus)(status.0) };
    }
    Ok(out)
}

/// The seeded inputs of a workload ([`crate::workload::inputs`]) as named ONNX Runtime values.
pub fn make_inputs(arch: &Arch, workload: &Workload) -> Result<Vec<(String, DynValue)>> {
    let (ids, past) = crate::workload::inputs(arch, workload);
    let mut inputs = vec![("input_ids".to_string(), Tensor::from_array(ids)?.into_dyn())];
    if let Some(cache) = past {
        for (i, (k, v)) in cache.layers.into_iter().enumerate() {
            inputs.push((
                format!("past_key_values.{i}.key"),
                Tensor::from_array(k)?.into_dyn(),
            ));
            inputs.push((
                format!("past_key_values.{i}.value"),
                Tensor::from_array(v)?.into_dyn(),
            ));
        }
    }
    Ok(inputs)
}

/// A session plus its fixed inputs: one [`Runner::run`] is one `Session::run` (a prefill or one
/// decode step).
pub struct OrtRunner {
    session: Session,
    inputs: Vec<(String, DynValue)>,
}

impl OrtRunner {
    /// Wraps a session with the seeded inputs of `workload`.
    pub fn new(session: Session, arch: &Arch, workload: &Workload) -> Result<OrtRunner> {
        Ok(OrtRunner {
            session,
            inputs: make_inputs(arch, workload)?,
        })
    }
}

impl Runner for OrtRunner {
    fn run(&mut self) -> Result<Option<Duration>> {
        let inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = self
            .inputs
            .iter()
            .map(|(n, v)| (Cow::Borrowed(n.as_str()), SessionInputValue::from(v)))
            .collect();
        let outputs = self
            .session
            .run(inputs)
            .context("ONNX Runtime inference failed")?;
        drop(outputs);
        Ok(None)
    }
}

/// End-to-end generation (`--mode generate`) on one last-position decode graph, as a deployment
/// runs it (HF optimum's merged decoder, ONNX Runtime GenAI): one [`Runner::run`] feeds the
/// prompt with an empty past (`past_seq = 0`: the graph is then a last-position prefill), then
/// `new_tokens` decode steps, each feeding the previous step's greedy (argmax) token and the
/// `present.*` cache of the step before as `past_key_values.*`. One session holds the weights
/// (and ONNX Runtime's pre-packed copies of them) once; a prefill session beside a decode
/// session held them twice. The time to the first token (prefill + its argmax) of each run is
/// logged.
pub struct OrtGenerator {
    session: Session,
    prompt: DynValue,
    /// The empty cache of the first step, `[batch, n_kv_head, 0, head_dim]` per layer, key
    /// then value.
    empty_past: Vec<DynValue>,
    new_tokens: usize,
    first_token: FirstTokenLog,
    generated: Vec<i64>,
}

impl OrtGenerator {
    /// Wraps a session of the last-position decode graph of `arch` with the seeded prompt of
    /// `workload` (`seq_len` tokens, `new_tokens` steps).
    pub fn new(
        session: Session,
        arch: &Arch,
        workload: &Workload,
        first_token: FirstTokenLog,
    ) -> Result<OrtGenerator> {
        if workload.mode != Mode::Generate {
            bail!("OrtGenerator needs a generate workload");
        }
        let (ids, _) = crate::workload::inputs(arch, workload);
        let mut empty_past = Vec::with_capacity(2 * arch.n_layer);
        for i in 0..arch.n_layer {
            for _ in ["key", "value"] {
                let shape = (workload.batch, arch.n_kv_head[i], 0, arch.head_dim(i));
                empty_past.push(Tensor::from_array(Array4::<f32>::zeros(shape))?.into_dyn());
            }
        }
        Ok(OrtGenerator {
            session,
            prompt: Tensor::from_array(ids)?.into_dyn(),
            empty_past,
            new_tokens: workload.new_tokens,
            first_token,
            generated: Vec::new(),
        })
    }

    /// The greedy tokens of the last run, `[batch, 1 + new_tokens]` (the prefill's token, then
    /// one per decode step); empty before the first run.
    pub fn generated_tokens(&self) -> Array2<i64> {
        let steps = self.new_tokens + 1;
        let batch = self.generated.len() / steps;
        // Stored step-major: step s holds the batch's tokens at [s * batch ..].
        Array2::from_shape_fn((batch, steps), |(b, s)| self.generated[s * batch + b])
    }

    /// One step: `ids` on top of `past` (key, value per layer), returning the greedy tokens and
    /// the present cache.
    fn step(
        session: &mut Session,
        ids: &DynValue,
        past: &[DynValue],
    ) -> Result<(Array2<i64>, Vec<DynValue>)> {
        let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> =
            Vec::with_capacity(1 + past.len());
        inputs.push(("input_ids".into(), SessionInputValue::from(ids)));
        for (j, v) in past.iter().enumerate() {
            let part = if j % 2 == 0 { "key" } else { "value" };
            inputs.push((
                format!("past_key_values.{}.{part}", j / 2).into(),
                SessionInputValue::from(v),
            ));
        }
        let mut out = session.run(inputs)?;
        let next = argmax_last(&out["logits"])?;
        let mut present = Vec::with_capacity(past.len());
        for j in 0..past.len() {
            let part = if j % 2 == 0 { "key" } else { "value" };
            let name = format!("present.{}.{part}", j / 2);
            present.push(
                out.remove(&name)
                    .with_context(|| format!("no output {name}"))?,
            );
        }
        Ok((next, present))
    }
}

/// Greedy next token of every sequence: argmax over the vocabulary of the last position of
/// `logits` `[batch, seq, vocab]`, as `[batch, 1]` ids.
pub fn argmax_last(logits: &DynValue) -> Result<Array2<i64>> {
    let (shape, data) = logits.try_extract_tensor::<f32>()?;
    let [b, s, v] = shape[..] else {
        bail!("logits have shape {shape:?}, expected [batch, seq, vocab]");
    };
    let (b, s, v) = (b as usize, s as usize, v as usize);
    Ok(Array2::from_shape_fn((b, 1), |(i, _)| {
        super::argmax(&data[(i * s + s - 1) * v..(i * s + s) * v]) as i64
    }))
}

impl Runner for OrtGenerator {
    fn run(&mut self) -> Result<Option<Duration>> {
        let start = Instant::now();
        let (mut next, mut past) = Self::step(&mut self.session, &self.prompt, &self.empty_past)
            .context("ONNX Runtime prefill failed")?;
        self.generated.clear();
        self.generated.extend(next.iter());
        self.first_token
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(start.elapsed());
        for step in 0..self.new_tokens {
            let ids = Tensor::from_array(next)?.into_dyn();
            (next, past) = Self::step(&mut self.session, &ids, &past)
                .with_context(|| format!("ONNX Runtime decode step {} failed", step + 1))?;
            self.generated.extend(next.iter());
        }
        Ok(None)
    }
}

/// Runs one graph of `arch` on given tokens (and a past cache for decode graphs) and returns
/// logits and the present cache, in the same form as the reference forward pass.
pub fn infer(
    session: &mut Session,
    arch: &Arch,
    input_ids: &Array2<i64>,
    past: Option<&KvCache>,
) -> Result<Output> {
    let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = vec![(
        "input_ids".into(),
        Tensor::from_array(input_ids.clone())?.into_dyn().into(),
    )];
    if let Some(cache) = past {
        for (i, (k, v)) in cache.layers.iter().enumerate() {
            inputs.push((
                format!("past_key_values.{i}.key").into(),
                Tensor::from_array(k.clone())?.into_dyn().into(),
            ));
            inputs.push((
                format!("past_key_values.{i}.value").into(),
                Tensor::from_array(v.clone())?.into_dyn().into(),
            ));
        }
    }
    let outputs = session.run(inputs)?;
    let logits: Array3<f32> = outputs["logits"]
        .try_extract_array::<f32>()?
        .into_dimensionality::<Ix3>()?
        .to_owned();
    let mut layers = Vec::with_capacity(arch.n_layer);
    for i in 0..arch.n_layer {
        let get = |part: &str| -> Result<Array4<f32>> {
            Ok(outputs[format!("present.{i}.{part}").as_str()]
                .try_extract_array::<f32>()?
                .into_dimensionality::<Ix4>()?
                .to_owned())
        };
        layers.push((get("key")?, get("value")?));
    }
    Ok(Output {
        logits,
        present: KvCache { layers },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_names_the_flag() {
        assert!(OrtOptions::default().validate().is_ok());
        let zero_intra = OrtOptions {
            intra_threads: 0,
            ..OrtOptions::default()
        };
        let e = zero_intra.validate().unwrap_err().to_string();
        assert!(e.contains("--threads 0"), "{e}");
        let zero_inter = OrtOptions {
            inter_threads: 0,
            ..OrtOptions::default()
        };
        let e = zero_inter.validate().unwrap_err().to_string();
        assert!(e.contains("--inter-threads 0"), "{e}");
        let gpu = OrtOptions {
            provider: "cuda".into(),
            ..OrtOptions::default()
        };
        assert!(gpu.validate().unwrap_err().to_string().contains("cuda"));
    }
}
