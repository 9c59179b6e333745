//! Reading back an ONNX file written by `lts export`: decoded once per process
//! ([`OnnxFile::open`]), its arch, graph kind and logits from the metadata ([`OnnxInfo`]), its
//! initializers checked against that arch ([`check_parameters`], or [`check_quantized`] for a
//! file written by `lts quantize`) and read back as weights in HF layout ([`weights_from_model`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{bail, Context, Result};
use prost::Message;

use super::io::{GraphKind, CONST_PREFIX};
use super::tensors::{head_weight, parameter_count, stored_transposed};
use crate::arch::Arch;
use crate::onnx::tensor_proto::DataType;
use crate::onnx::ModelProto;
use crate::quant::scheme::Scheme;
use crate::weights::{Tensor, Weights};
use crate::workload::{Logits, RecordedWorkload, WORKLOAD_KEY, WORKLOAD_SOURCE_KEY};

/// Largest ONNX file [`OnnxFile::open`] reads: a single-file model is one protobuf message,
/// which protobuf limits to 2 GiB.
pub const MAX_ONNX_BYTES: u64 = 2 << 30;

/// An exported ONNX file, read and decoded: its bytes (what ONNX Runtime loads), the decoded
/// model (metadata and initializers) and what the metadata says.
pub struct OnnxFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// The decoded protobuf.
    pub model: ModelProto,
    /// Arch, kind and logits, checked against the initializers.
    pub info: OnnxInfo,
}

/// Files decoded by this process, by path, length and modification time.
type Decoded = HashMap<(PathBuf, u64, Option<std::time::SystemTime>), Arc<OnnxFile>>;

impl OnnxFile {
    /// Reads, decodes and checks `path`, once per process: `lts measure --onnx` needs the arch
    /// to build its job, then ONNX Runtime needs the bytes and wgpu the weights, and a model
    /// file can be hundreds of MB. A file that changed on disk (length or modification time)
    /// is read again.
    pub fn open(path: &Path) -> Result<Arc<OnnxFile>> {
        static CACHE: OnceLock<Mutex<Decoded>> = OnceLock::new();
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read ONNX file {}", path.display()))?;
        let key = (path.to_path_buf(), meta.len(), meta.modified().ok());
        let cache = CACHE.get_or_init(Default::default);
        if let Some(f) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(f.clone());
        }
        let bytes = crate::util::read_regular(
            path,
            MAX_ONNX_BYTES,
            "ONNX file",
            "a single-file ONNX model is one protobuf message, at most 2 GiB",
        )?;
        let (model, info) = decode(&bytes).with_context(|| {
            format!(
                "{} is not an ONNX file written by `lts export`",
                path.display()
            )
        })?;
        let file = Arc::new(OnnxFile {
            path: path.to_path_buf(),
            bytes,
            model,
            info,
        });
        let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|k, _| k.0 != key.0);
        cache.insert(key, file.clone());
        Ok(file)
    }

    /// The file's weights in HF layout, with their source named after the file.
    pub fn weights(&self) -> Result<Weights> {
        if let Some(q) = &self.info.quant {
            bail!(
                "{} is quantized ({q}): its fp32 weights are not in it; use the fp32 file or model it was made from",
                self.path.display()
            );
        }
        let mut w = weights_from_model(&self.info.arch, &self.model)
            .with_context(|| format!("cannot read the weights of {}", self.path.display()))?;
        w.source = format!("onnx file {}", self.path.display());
        Ok(w)
    }
}

/// Decodes serialized model bytes and reads what they say about themselves ([`OnnxInfo`]).
pub fn decode(bytes: &[u8]) -> Result<(ModelProto, OnnxInfo)> {
    let model = ModelProto::decode(bytes).context("not a valid ONNX protobuf")?;
    let info = OnnxInfo::of(&model)?;
    Ok((model, info))
}

/// What an ONNX file written by `lts export` says about itself.
#[derive(Clone, Debug, PartialEq)]
pub struct OnnxInfo {
    /// The arch embedded in the model's metadata.
    pub arch: Arch,
    /// Prefill or decode, from the graph's inputs.
    pub kind: GraphKind,
    /// Which positions get logits (metadata `logits`; files written before it existed, and
    /// every prefill graph of theirs, computed all).
    pub logits: Logits,
    /// The quantization scheme of a file written by `lts quantize` (metadata `quant_scheme`),
    /// `None` for fp32 files.
    pub quant: Option<Scheme>,
    /// The workload the file was exported for (metadata `workload`, `workload_source`); `None`
    /// for files written before lts recorded one.
    pub workload: Option<RecordedWorkload>,
}

impl OnnxInfo {
    /// Reads the arch (from `metadata_props`) and graph kind (decode graphs take
    /// `past_key_values.*`) of a model written by `lts export`, and checks that its initializers
    /// hold exactly that arch's parameters ([`check_parameters`]), in the forms its
    /// quantization scheme stores them when it has one ([`check_quantized`]).
    pub fn of(model: &ModelProto) -> Result<OnnxInfo> {
        let meta = |key: &str| {
            model
                .metadata_props
                .iter()
                .find(|p| p.key.as_deref() == Some(key))
                .and_then(|p| p.value.as_deref())
        };
        let workload =
            RecordedWorkload::from_metadata(meta(WORKLOAD_KEY), meta(WORKLOAD_SOURCE_KEY))?;
        let arch = model
            .metadata_props
            .iter()
            .find_map(|p| p.value.as_deref().and_then(|v| Arch::from_json(v).ok()))
            .context("the model carries no lts arch in its metadata")?;
        let quant = match model
            .metadata_props
            .iter()
            .find(|p| p.key.as_deref() == Some("quant_scheme"))
            .and_then(|p| p.value.as_deref())
        {
            Some(json) => Some(
                serde_json::from_str::<Scheme>(json)
                    .context("the model's quant_scheme metadata is not a known scheme")?,
            ),
            None => None,
        };
        // The parameter counts reported are the arch's: they must be the file's.
        match &quant {
            None => check_parameters(&arch, model)?,
            Some(scheme) => check_quantized(&arch, scheme, model)?,
        }
        let graph = model.graph.as_ref().context("the model has no graph")?;
        let decode = graph.input.iter().any(|i| {
            i.name
                .as_deref()
                .is_some_and(|n| n.starts_with("past_key_values."))
        });
        let kind = if decode {
            GraphKind::Decode
        } else {
            GraphKind::Prefill
        };
        let logits = match model
            .metadata_props
            .iter()
            .find(|p| p.key.as_deref() == Some("logits"))
            .and_then(|p| p.value.as_deref())
        {
            Some("last") => Logits::Last,
            Some("all") | None if kind == GraphKind::Prefill => Logits::All,
            Some("all") | None => Logits::Last,
            Some(other) => bail!("unknown logits `{other}` in the model's metadata"),
        };
        Ok(OnnxInfo {
            arch,
            kind,
            logits,
            quant,
            workload,
        })
    }
}

/// Checks that the initializers of a model hold exactly the parameters of `arch` (the arch its
/// metadata claims): the same total count ([`parameter_count`] against
/// `arch.params().total`, both numbers in the error) and every parameter of `arch` present
/// with its graph-layout shape. A file whose metadata was edited, or written for another
/// arch, fails here instead of being timed and reported with the wrong parameter counts.
pub fn check_parameters(arch: &Arch, model: &ModelProto) -> Result<()> {
    let th = crate::util::format::thousands;
    let held = parameter_count(model);
    let claimed = arch.params().total;
    if held != claimed {
        bail!(
            "its initializers hold {} parameters but the arch in its metadata ({}) has {}",
            th(held),
            arch.id(),
            th(claimed)
        );
    }
    let shapes: std::collections::HashMap<&str, &[i64]> = model
        .graph
        .iter()
        .flat_map(|g| g.initializer.iter())
        .map(|t| (t.name(), t.dims.as_slice()))
        .collect();
    for spec in crate::weights::param_specs(arch) {
        let mut want: Vec<i64> = spec.shape.iter().map(|&d| d as i64).collect();
        if stored_transposed(arch, &spec.name) {
            want.reverse();
        }
        match shapes.get(spec.name.as_str()) {
            None => bail!(
                "the arch in its metadata ({}) has parameter {} but the file has no such initializer",
                arch.id(),
                spec.name
            ),
            Some(&dims) if dims != want.as_slice() => bail!(
                "initializer {} has shape {dims:?} but the arch in its metadata ({}) needs {want:?}",
                spec.name,
                arch.id()
            ),
            Some(_) => {}
        }
    }
    Ok(())
}

/// Checks that the initializers of a quantized model (written by `lts quantize` with
/// `scheme`) are exactly the forms `scheme` stores the parameters of `arch` in
/// ([`crate::quant::layout`]): every quantized weight, scale, zero point, fp16 and fp32 copy
/// with the shape that follows from the arch and the scheme, and nothing else. The
/// counterpart of [`check_parameters`] for quantized files.
pub fn check_quantized(arch: &Arch, scheme: &Scheme, model: &ModelProto) -> Result<()> {
    use crate::quant::layout::{self, Param, Use};
    let graph = model.graph.as_ref().context("the model has no graph")?;
    let head = head_weight(arch);
    let params: Vec<Param> = crate::weights::param_specs(arch)
        .into_iter()
        .map(|spec| {
            let mut dims: Vec<i64> = spec.shape.iter().map(|&d| d as i64).collect();
            if stored_transposed(arch, &spec.name) {
                dims.reverse();
            }
            let usage = match (spec.name == head, spec.embedding) {
                (true, true) if spec.name != "lm_head.weight" => Use::TiedHead,
                (true, _) => Use::Head,
                (false, false) if dims.len() == 2 => Use::MatMul,
                (false, _) => Use::Plain,
            };
            Param {
                name: spec.name,
                dims,
                usage,
            }
        })
        .collect();
    layout::check(scheme, &params, graph, CONST_PREFIX, &arch.id())
}

/// The parameters of a model written by [`super::build_model`] read back into HF layout (Llama linears
/// transposed back to `[out, in]`), so another backend runs exactly the weights of an exported
/// ONNX file. Checks every parameter of `arch` is present with its shape.
pub fn weights_from_model(arch: &Arch, model: &ModelProto) -> Result<Weights> {
    let graph = model.graph.as_ref().context("the model has no graph")?;
    let mut tensors = std::collections::BTreeMap::new();
    for spec in crate::weights::param_specs(arch) {
        let init = graph
            .initializer
            .iter()
            .find(|t| t.name.as_deref() == Some(spec.name.as_str()))
            .with_context(|| format!("the ONNX file has no initializer {}", spec.name))?;
        if init.data_type != Some(DataType::Float as i32) {
            bail!("initializer {} is not fp32", spec.name);
        }
        let raw = init
            .raw_data
            .as_deref()
            .with_context(|| format!("initializer {} has no raw_data", spec.name))?;
        let n: usize = spec.shape.iter().product();
        if raw.len() != n * 4 {
            bail!(
                "initializer {} holds {} bytes but {:?} needs {}",
                spec.name,
                raw.len(),
                spec.shape,
                n * 4
            );
        }
        let flat: Vec<f32> = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let data = if stored_transposed(arch, &spec.name) {
            // Stored [in, out] = [cols, rows] of the HF [rows, cols] tensor.
            let (rows, cols) = (spec.shape[0], spec.shape[1]);
            let mut out = vec![0f32; n];
            for c in 0..cols {
                for r in 0..rows {
                    out[r * cols + c] = flat[c * rows + r];
                }
            }
            out
        } else {
            flat
        };
        tensors.insert(
            spec.name.clone(),
            Tensor {
                shape: spec.shape.clone(),
                data,
            },
        );
    }
    Ok(Weights {
        tensors,
        source: "onnx initializers".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_over_2_gib_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.onnx");
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(MAX_ONNX_BYTES + 1).unwrap();
        let e = format!("{:#}", OnnxFile::open(&path).err().unwrap());
        assert!(
            e.contains("ONNX file") && e.contains("2147483649 bytes, more than 2.0 GiB"),
            "{e}"
        );
    }

    #[test]
    fn a_file_is_decoded_once_and_again_when_it_changes() {
        let arch = Arch::preset("gpt2-tiny").unwrap();
        let w = Weights::random(&arch, 1);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.onnx");
        let m = super::super::build_model(&arch, &w, GraphKind::Prefill, Logits::Last).unwrap();
        super::super::save(&m, &path).unwrap();
        let a = OnnxFile::open(&path).unwrap();
        let b = OnnxFile::open(&path).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "decoded twice");
        assert_eq!(a.info.arch, arch);
        assert_eq!(a.info.kind, GraphKind::Prefill);
        assert_eq!(a.info.logits, Logits::Last);
        assert_eq!(a.weights().unwrap().tensors, w.tensors);
        // Another file at the same path (a different length): read again.
        let m = super::super::build_model(&arch, &w, GraphKind::Decode, Logits::Last).unwrap();
        super::super::save(&m, &path).unwrap();
        let c = OnnxFile::open(&path).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(c.info.kind, GraphKind::Decode);
    }

    #[test]
    fn the_recorded_workload_reads_back_and_a_bad_one_is_an_error() {
        use crate::workload::{Mode, Workload};
        let arch = Arch::preset("gpt2-tiny").unwrap();
        let w = Weights::random(&arch, 1);
        let mut m = super::super::build_model(&arch, &w, GraphKind::Prefill, Logits::Last).unwrap();
        assert_eq!(OnnxInfo::of(&m).unwrap().workload, None);
        let rec = RecordedWorkload {
            workload: Workload {
                mode: Mode::Generate,
                seq_len: 16,
                new_tokens: 8,
                ..Workload::default()
            },
            source: "the search's workload, run r1".into(),
        };
        // Recorded twice: the second replaces the first.
        super::super::record_workload(&mut m, &rec);
        super::super::record_workload(&mut m, &rec);
        assert_eq!(m.metadata_props.len(), 7);
        assert_eq!(OnnxInfo::of(&m).unwrap().workload, Some(rec));
        for p in m.metadata_props.iter_mut() {
            if p.key() == WORKLOAD_KEY {
                p.value = Some("{\"mode\":\"sideways\"}".into());
            }
        }
        let e = OnnxInfo::of(&m).unwrap_err().to_string();
        assert!(
            e.contains("not a workload") && e.contains("export the file again"),
            "{e}"
        );
    }

    /// `model` quantized with `spelling` (static schemes with made-up activation ranges).
    fn quantized(model: &ModelProto, spelling: &str) -> ModelProto {
        use crate::quant::emit;
        let scheme = Scheme::parse(spelling, 99.99).unwrap();
        let ranges: emit::Ranges = emit::scheme_targets(model.graph.as_ref().unwrap(), &scheme)
            .unwrap()
            .into_iter()
            .map(|t| (t.input, (-1.5, 2.0)))
            .collect();
        emit::quantize(model.clone(), &scheme, Some(&ranges)).unwrap()
    }

    /// `model` with its metadata `key` replaced by `value`.
    fn with_meta(model: &ModelProto, key: &str, value: String) -> ModelProto {
        let mut m = model.clone();
        let p = m
            .metadata_props
            .iter_mut()
            .find(|p| p.key.as_deref() == Some(key))
            .unwrap();
        p.value = Some(value);
        m
    }

    /// `arch` edited: d_model doubled, one layer less, or another vocabulary (each still a
    /// valid arch).
    fn forged(arch: &Arch) -> Vec<(&'static str, Arch)> {
        let v = serde_json::to_value(arch).unwrap();
        let edit = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v = v.clone();
            f(&mut v);
            Arch::from_json(&v.to_string()).unwrap()
        };
        vec![
            (
                "d_model",
                edit(&|v| v["d_model"] = (arch.d_model * 2).into()),
            ),
            (
                "n_layer",
                edit(&|v| {
                    v["n_layer"] = 1.into();
                    for k in ["d_inner", "n_head", "n_kv_head"] {
                        if let Some(a) = v[k].as_array_mut() {
                            a.truncate(1);
                        }
                    }
                }),
            ),
            (
                "vocab",
                edit(&|v| v["vocab_size"] = (arch.vocab_size + 3).into()),
            ),
        ]
    }

    #[test]
    fn quantized_files_are_checked_against_their_arch_and_scheme() {
        for (preset, keep) in [("gpt2-tiny", "mlp.c_proj"), ("llama-tiny", "down_proj")] {
            let arch = Arch::preset(preset).unwrap();
            let w = Weights::random(&arch, 1);
            let keep = format!("keep={keep}");
            let schemes = [
                "fp16".to_string(),
                "int8-dynamic".into(),
                "int8-dynamic:head".into(),
                "int8-dynamic:per-tensor".into(),
                format!("int8-dynamic:{keep}"),
                "int8-static:entropy:sym".into(),
                "int8-static:per-tensor:head".into(),
                "int4:b32:zp:head".into(),
                "int4:b16".into(),
                format!("int4:b64:head:{keep}"),
            ];
            for kind in [GraphKind::Prefill, GraphKind::Decode] {
                let fp32 = super::super::build_model(&arch, &w, kind, Logits::Last).unwrap();
                for s in &schemes {
                    let q = quantized(&fp32, s);
                    let info = OnnxInfo::of(&q).unwrap_or_else(|e| panic!("{preset} {s}: {e:#}"));
                    assert_eq!(info.arch, arch);
                    assert_eq!(info.quant, Some(Scheme::parse(s, 99.99).unwrap()));
                    for (what, other) in forged(&arch) {
                        let e = OnnxInfo::of(&with_meta(&q, "arch", other.canonical_json()))
                            .expect_err(&format!("{preset} {s}: {what} edited"))
                            .to_string();
                        assert!(
                            e.contains(&other.id()) && e.contains("metadata was edited"),
                            "{preset} {s} {what}: {e}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_quantized_file_labelled_with_another_scheme_is_refused() {
        let arch = Arch::preset("llama-tiny").unwrap();
        let w = Weights::random(&arch, 1);
        let fp32 = super::super::build_model(&arch, &w, GraphKind::Prefill, Logits::Last).unwrap();
        for (written, label, want) in [
            (
                "int8-dynamic",
                "int8-dynamic:per-tensor",
                "q.scale has shape",
            ),
            ("int4:b32", "int4:b64", "q4.blocks has shape"),
            ("int4:b32", "int4:b32:zp", "q4.zero_points"),
            ("int4:b32:zp", "int4:b32", "q4.zero_points"),
            ("int8-dynamic", "int8-dynamic:head", "lm_head.weight.q.int8"),
            ("int8-dynamic:head", "int8-dynamic", "lm_head.weight"),
            ("fp16", "int8-dynamic", "which the file does not have"),
        ] {
            let q = quantized(&fp32, written);
            let label = Scheme::parse(label, 99.99).unwrap();
            let json = serde_json::to_string(&label).unwrap();
            let e = OnnxInfo::of(&with_meta(&q, "quant_scheme", json))
                .expect_err(&format!("{written} read as {label}"))
                .to_string();
            assert!(e.contains(want), "{written} as {label}: {e}");
        }
    }
}
