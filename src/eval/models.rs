//! The models `lts eval` scores text with: where one comes from ([`ModelSource`]: a GGUF file or
//! an exported all-logits ONNX graph) and what a backend asks of it ([`Scored`], the
//! [`backend::ModelSource`] of a scorer: ONNX Runtime or our wgpu kernels behind
//! [`backend::Backend::scorer`]), each returning every position's logits for one window.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::backend::onnx_model::{GraphBytes, OrtModel};
use crate::backend::{self, Built};
use crate::graph::{self, GraphKind, OnnxFile};
use crate::quant::scheme::Scheme;
use crate::weights::Weights;
use crate::workload::{Logits, Mode, Workload};

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

/// A model to score windows of up to `ctx` tokens with, as the backend seam asks for it
/// ([`backend::ModelSource`]): an all-logits prefill graph (an exported file as it is, or
/// emitted from a GGUF's weights) or the weights themselves.
pub struct Scored<'a> {
    source: &'a ModelSource,
    arch: Arch,
    workload: Workload,
}

impl<'a> Scored<'a> {
    /// `source` (whose arch is `arch`) for windows of up to `ctx` tokens.
    pub fn new(source: &'a ModelSource, arch: &Arch, ctx: usize) -> Scored<'a> {
        Scored {
            source,
            arch: arch.clone(),
            workload: Workload {
                mode: Mode::Prefill,
                batch: 1,
                seq_len: ctx,
                logits: Logits::All,
                ..Workload::default()
            },
        }
    }
}

impl backend::ModelSource for Scored<'_> {
    fn arch(&self) -> &Arch {
        &self.arch
    }

    fn workload(&self) -> &Workload {
        &self.workload
    }

    fn quant(&self) -> Option<&Scheme> {
        None
    }

    /// An exported file is loaded as it is; a GGUF's weights go to ONNX Runtime as in-memory
    /// external data of a freshly emitted prefill graph ([`graph::build_models_external`]).
    fn onnx(&self) -> Result<Built<OrtModel>> {
        let t0 = Instant::now();
        let model = match self.source {
            ModelSource::Onnx(p) => OrtModel {
                graphs: vec![GraphBytes::File(OnnxFile::open(p)?)],
                files: Vec::new(),
            },
            ModelSource::Gguf(_) => {
                let weights = self.source.weights(&self.arch)?;
                let (models, files) = graph::build_models_external(
                    &self.arch,
                    weights,
                    &[(GraphKind::Prefill, Logits::All)],
                )?;
                OrtModel {
                    graphs: vec![GraphBytes::Emitted(graph::to_bytes(&models[0]))],
                    files,
                }
            }
        };
        Ok(Built {
            model,
            source: self.source.path().display().to_string(),
            emission_ms: t0.elapsed().as_secs_f64() * 1e3,
        })
    }

    fn weights(&self) -> Result<Built<Weights>> {
        let t0 = Instant::now();
        let model = self.source.weights(&self.arch)?;
        Ok(Built {
            model,
            source: self.source.path().display().to_string(),
            emission_ms: t0.elapsed().as_secs_f64() * 1e3,
        })
    }
}
