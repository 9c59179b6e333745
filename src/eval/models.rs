//! The models `lts eval` scores text with: where one comes from ([`ModelSource`]: a GGUF file or
//! an exported all-logits ONNX graph) and what runs it ([`Scorer`]: ONNX Runtime or our wgpu
//! kernels), each returning every position's logits for one window of token ids.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ndarray::Array2;
use ort::session::{Session, SessionInputValue};
use ort::value::Tensor;
use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::backend::ort::{Ort, OrtOptions};
use crate::backend::wgpu::model::{Capacity, GpuModel};
use crate::backend::wgpu::{Gpu, WgpuOptions};
use crate::graph::{self, GraphKind, OnnxFile};
use crate::weights::Weights;
use crate::workload::Logits;

/// A model to score text with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "path", rename_all = "lowercase")]
pub enum ModelSource {
    /// A llama.cpp GGUF file (Llama family), its weights dequantised to f32.
    Gguf(PathBuf),
    /// An ONNX prefill graph written by `lts export --logits all`.
    Onnx(PathBuf),
}

impl ModelSource {
    /// The source a path names: by its first four bytes (`GGUF`), else by its extension
    /// (`.gguf`, `.onnx`), else an error saying which files are accepted.
    pub fn from_path(path: &Path) -> Result<ModelSource> {
        let mut magic = [0u8; 4];
        let head = crate::util::open_regular(path, "model file").and_then(|mut f| {
            std::io::Read::read_exact(&mut f, &mut magic)
                .with_context(|| format!("cannot read model file {}", path.display()))
        });
        if head.is_ok() && &magic == b"GGUF" {
            return Ok(ModelSource::Gguf(path.to_path_buf()));
        }
        head?;
        match path.extension().and_then(|e| e.to_str()) {
            Some("onnx") => Ok(ModelSource::Onnx(path.to_path_buf())),
            _ => bail!(
                "{} is neither a GGUF file nor a .onnx file: pass a llama.cpp .gguf model or a graph written by `lts export --logits all`",
                path.display()
            ),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        match self {
            ModelSource::Gguf(p) | ModelSource::Onnx(p) => p,
        }
    }

    /// The model's arch (GGUF metadata, or the ONNX file's embedded arch), after checking that
    /// an ONNX file is a prefill graph computing every position's logits.
    pub fn arch(&self) -> Result<Arch> {
        match self {
            ModelSource::Gguf(p) => crate::gguf::llama::arch(&crate::gguf::Gguf::open(p)?),
            ModelSource::Onnx(p) => {
                let info = &OnnxFile::open(p)?.info;
                if info.kind != GraphKind::Prefill || info.logits != Logits::All {
                    bail!(
                        "{} is a {} graph with {} logits; scoring text needs a prefill graph with every position's logits: export it with `lts export --kind prefill --logits all`",
                        p.display(),
                        info.kind,
                        info.logits.as_str()
                    );
                }
                Ok(info.arch.clone())
            }
        }
    }

    /// The model's weights in Hugging Face layout, every value finite
    /// ([`Weights::check_finite`]).
    fn weights(&self, arch: &Arch) -> Result<Weights> {
        let w = match self {
            ModelSource::Gguf(p) => crate::gguf::llama::weights(&crate::gguf::Gguf::open(p)?, arch),
            ModelSource::Onnx(p) => OnnxFile::open(p)?.weights(),
        }?;
        w.check_finite()?;
        Ok(w)
    }
}

/// Runs a model on one window of token ids from an empty cache.
pub trait Scorer {
    /// Logits of every position for `ids` (one sequence), row-major `[ids.len(), vocab]`.
    fn logits(&mut self, ids: &[u32]) -> Result<Vec<f32>>;
}

/// ONNX Runtime running the model's all-logits prefill graph.
pub struct OrtScorer {
    session: Session,
    vocab: usize,
}

impl OrtScorer {
    /// Builds the session: a GGUF's weights go to ONNX Runtime as in-memory external data of a
    /// freshly emitted prefill graph ([`graph::build_models_external`]); an ONNX file is loaded
    /// as it is.
    pub fn new(source: &ModelSource, arch: &Arch, opts: &OrtOptions) -> Result<OrtScorer> {
        let ort = Ort::load()?;
        let session = match source {
            ModelSource::Onnx(p) => ort.session(&OnnxFile::open(p)?.bytes, opts)?,
            ModelSource::Gguf(_) => {
                let weights = source.weights(arch)?;
                let (models, files) = graph::build_models_external(
                    arch,
                    weights,
                    &[(GraphKind::Prefill, Logits::All)],
                )?;
                ort.session_with_files(&graph::to_bytes(&models[0]), &files, opts)?
            }
        };
        Ok(OrtScorer {
            session,
            vocab: arch.vocab_size,
        })
    }
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
}

/// Our WGSL kernels running the model on a wgpu adapter, every position's logits read back.
pub struct WgpuScorer {
    model: GpuModel,
}

impl WgpuScorer {
    /// Uploads the model for windows of `ctx` tokens.
    pub fn new(
        source: &ModelSource,
        arch: &Arch,
        ctx: usize,
        opts: &WgpuOptions,
    ) -> Result<WgpuScorer> {
        let gpu = Gpu::shared(opts.adapter)?;
        let weights = source.weights(arch)?;
        let cap = Capacity {
            batch: 1,
            tokens: ctx,
            positions: ctx,
            logits: Logits::All,
        };
        let model = GpuModel::new(gpu, arch, &weights, opts.precision, cap)?;
        Ok(WgpuScorer { model })
    }

    /// The model on the GPU (precision, adapter, bytes).
    pub fn model(&self) -> &GpuModel {
        &self.model
    }
}

impl Scorer for WgpuScorer {
    fn logits(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        let input = Array2::from_shape_fn((1, ids.len()), |(_, j)| i64::from(ids[j]));
        self.model.upload(&input, None)?;
        self.model.submit_read_logits(1, ids.len(), 0)
    }
}
