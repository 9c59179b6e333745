//! ONNX Runtime behind the backend seam: its [`Backend`] impl and a job's model prepared as
//! sessions ([`OrtPrepared`]).

use std::borrow::Cow;

use anyhow::{bail, Context, Result};
use ndarray::Array2;
use ort::session::SessionInputValue;
use ort::value::Tensor;

use super::onnx_model::OrtModel;
use super::ort::{Ort, OrtGenerator, OrtOptions, OrtRunner};
use super::{Backend, Built, FirstTokenLog, ModelSource, Prepared, Runner, RuntimeInfo, Scorer};
use crate::arch::Arch;
use crate::workload::{Mode, Workload};

impl Backend for OrtOptions {
    fn name(&self) -> &'static str {
        "ort"
    }

    fn supports_quantized(&self) -> bool {
        true
    }

    fn validate(&self) -> Result<()> {
        OrtOptions::validate(self)
    }

    fn preflight(&self) -> Result<()> {
        Ort::load()?;
        Ok(())
    }

    fn describe(&self, runtime: &RuntimeInfo) -> String {
        format!(
            "{} {} ({}), {} intra / {} inter threads, opt {:?}",
            runtime.name,
            runtime.version,
            self.provider,
            self.intra_threads,
            self.inter_threads,
            self.opt_level
        )
    }

    fn prepare(&self, source: &dyn ModelSource) -> Result<Box<dyn Prepared>> {
        let ort = Ort::load()?;
        let Built {
            model,
            source: weights_source,
            emission_ms,
        } = source.onnx()?;
        Ok(Box::new(OrtPrepared {
            ort,
            opts: self.clone(),
            bytes: model.bytes(),
            model: Some(model),
            arch: source.arch().clone(),
            workload: source.workload().clone(),
            weights_source,
            emission_ms,
        }))
    }

    fn scorer(&self, source: &dyn ModelSource) -> Result<Box<dyn Scorer>> {
        let ort = Ort::load()?;
        let OrtModel { graphs, files } = source.onnx()?.model;
        let graph = graphs.first().context("no graph to score with")?;
        let session = ort.session_with_files(graph, &files, self)?;
        let mut runtime = ort.info().clone();
        runtime.providers = vec![format!(
            "cpu, {} intra-op thread(s), opt level {}",
            self.intra_threads,
            crate::choice::Choice::name(self.opt_level)
        )];
        Ok(Box::new(OrtScorer {
            session,
            vocab: source.arch().vocab_size,
            runtime,
        }))
    }
}

/// ONNX Runtime running a model's all-logits prefill graph (`lts eval`).
struct OrtScorer {
    session: ort::session::Session,
    vocab: usize,
    runtime: RuntimeInfo,
}

impl Scorer for OrtScorer {
    fn logits(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        let input = Array2::from_shape_fn((1, ids.len()), |(_, j)| i64::from(ids[j]));
        let inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = vec![(
            "input_ids".into(),
            Tensor::from_array(input)?.into_dyn().into(),
        )];
        let out = self
            .session
            .run(inputs)
            .context("ONNX Runtime inference failed")?;
        let (shape, data) = out["logits"].try_extract_tensor::<f32>()?;
        if shape[..] != [1, ids.len() as i64, self.vocab as i64] {
            bail!(
                "the graph returned logits of shape {shape:?}, expected [1, {}, {}]",
                ids.len(),
                self.vocab
            );
        }
        Ok(data.to_vec())
    }

    fn runtime(&self) -> RuntimeInfo {
        self.runtime.clone()
    }
}

/// A job's ONNX graphs, waiting for the protocol to create their sessions.
struct OrtPrepared {
    ort: Ort,
    opts: OrtOptions,
    model: Option<OrtModel>,
    bytes: u64,
    arch: Arch,
    workload: Workload,
    weights_source: String,
    emission_ms: f64,
}

impl Prepared for OrtPrepared {
    fn runner(&mut self, first_token: FirstTokenLog) -> Result<Box<dyn Runner>> {
        // Our handles on the model are dropped once the sessions hold it, before the first run.
        let OrtModel { graphs, files } = self
            .model
            .take()
            .context("the sessions of this model were already created")?;
        let mut sessions = Vec::with_capacity(graphs.len());
        for g in graphs {
            sessions.push(self.ort.session_with_files(&g, &files, &self.opts)?);
        }
        drop(files);
        ort_runner(sessions, &self.arch, &self.workload, first_token)
    }

    fn runtime(&self) -> RuntimeInfo {
        self.ort.info().clone()
    }

    fn weights_source(&self) -> String {
        self.weights_source.clone()
    }

    fn emission_ms(&self) -> f64 {
        self.emission_ms
    }

    fn model_bytes(&self) -> u64 {
        self.bytes
    }
}

/// The ONNX Runtime runner of a workload from its sessions (in [`crate::job::graphs_for`]
/// order).
fn ort_runner(
    sessions: Vec<ort::session::Session>,
    arch: &Arch,
    workload: &Workload,
    first_token: FirstTokenLog,
) -> Result<Box<dyn Runner>> {
    let mut sessions = sessions.into_iter();
    let mut next = || sessions.next().context("a graph is missing");
    Ok(match workload.mode {
        Mode::Prefill | Mode::Decode => {
            Box::new(OrtRunner::new(next()?, arch, workload)?) as Box<dyn Runner>
        }
        Mode::Generate => Box::new(OrtGenerator::new(next()?, arch, workload, first_token)?),
    })
}
