//! Initializers and value infos of the emitted graphs: parameters in their graph layout
//! (Llama linears transposed), embedded as raw data or as in-memory external data
//! ([`ExternalFiles`]), read back from a model, and the typed graph inputs/outputs.

use std::sync::Arc;

use super::io::CONST_PREFIX;
use crate::arch::parts::Naming;
use crate::arch::Arch;
use crate::onnx::tensor_proto::{DataLocation, DataType};
use crate::onnx::tensor_shape_proto::{dimension, Dimension};
use crate::onnx::{
    type_proto, ModelProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};
use crate::weights::{Tensor, Weights};

/// Parameter data kept outside the ONNX protobuf, one in-memory "file" per parameter (named
/// after it) that ONNX Runtime reads through `AddExternalInitializersFromFilesInMemory`
/// (`ort`'s `with_external_initializer_file_in_memory`): the fp32 little-endian bytes of the
/// parameter in its graph layout. Several graphs of one model (prefill and decode) share them.
pub type ExternalFiles = Vec<(String, Arc<[u8]>)>;

/// True for Llama `nn.Linear` weights, stored transposed (`[in, out]`).
pub(super) fn stored_transposed(arch: &Arch, name: &str) -> bool {
    arch.parts().naming == Naming::Llama
        && name.starts_with("model.layers.")
        && name.ends_with("_proj.weight")
}

/// The parameter the LM head's `Gemm(transB=1)` reads: the token embedding when it is tied
/// (always for GPT-2), else `lm_head.weight`.
pub(super) fn head_weight(arch: &Arch) -> &'static str {
    arch.head_weight()
}

/// All parameters as initializers, in `param_specs` order. The byte conversion (a copy of every
/// weight, and a transpose for Llama linears) dominates emission time, so it is spread over the
/// available cores, largest tensors first.
pub(super) fn param_tensors(
    arch: &Arch,
    weights: &Weights,
    specs: &[crate::weights::ParamSpec],
) -> Vec<TensorProto> {
    crate::util::parallel_by_size(
        specs.iter().collect(),
        |s| weights.get(&s.name).len(),
        crate::util::default_threads(),
        |s| param_tensor(arch, &s.name, weights.get(&s.name)),
    )
}

/// A parameter as an fp32 initializer with raw little-endian data.
pub(super) fn param_tensor(arch: &Arch, name: &str, t: &Tensor) -> TensorProto {
    let mut raw = vec![0u8; t.data.len() * 4];
    param_bytes_into(arch, name, t, &mut raw);
    TensorProto {
        raw_data: Some(raw),
        ..param_header(arch, name, t)
    }
}

/// Name, graph-layout dims, type and doc of a parameter's initializer, without its data.
pub(super) fn param_header(arch: &Arch, name: &str, t: &Tensor) -> TensorProto {
    if stored_transposed(arch, name) {
        TensorProto {
            name: Some(name.to_string()),
            dims: vec![t.shape[1] as i64, t.shape[0] as i64],
            data_type: Some(DataType::Float as i32),
            doc_string: Some(
                "HF nn.Linear weight [out, in] stored transposed as [in, out] (the graph uses a plain MatMul)"
                    .into(),
            ),
            ..Default::default()
        }
    } else {
        TensorProto {
            name: Some(name.to_string()),
            dims: t.shape.iter().map(|&d| d as i64).collect(),
            data_type: Some(DataType::Float as i32),
            ..Default::default()
        }
    }
}

/// Writes a parameter's fp32 little-endian bytes in its graph layout (Llama linears transposed)
/// into `dst` (`4 x len` bytes).
pub(super) fn param_bytes_into(arch: &Arch, name: &str, t: &Tensor, dst: &mut [u8]) {
    if stored_transposed(arch, name) {
        transposed_le_bytes_into(&t.data, t.shape[0], t.shape[1], dst);
    } else if cfg!(target_endian = "little") {
        dst.copy_from_slice(bytemuck::cast_slice::<f32, u8>(&t.data));
    } else {
        for (out, v) in dst.chunks_exact_mut(4).zip(&t.data) {
            out.copy_from_slice(&v.to_le_bytes());
        }
    }
}

/// Converts every parameter into one [`ExternalFiles`] entry and an external-data initializer
/// pointing at it, spread over the cores ([`crate::util::parallel_by_size`]); each HF tensor is
/// dropped as soon as it is converted.
pub(super) fn external_params(
    arch: &Arch,
    weights: Weights,
    specs: &[crate::weights::ParamSpec],
) -> (Vec<TensorProto>, ExternalFiles) {
    let mut tensors = weights.tensors;
    let items: Vec<(String, Tensor)> = specs
        .iter()
        .map(|s| {
            let t = tensors.remove(&s.name).expect("checked by check_weights");
            (s.name.clone(), t)
        })
        .collect();
    drop(tensors);
    let convert = |(name, t): (String, Tensor)| {
        let n = t.data.len() * 4;
        let mut buf: Arc<[u8]> = {
            let zeroed = Arc::<[u8]>::new_zeroed_slice(n);
            // SAFETY: all-zero bytes are valid `u8`s.
            unsafe { zeroed.assume_init() }
        };
        let dst = Arc::get_mut(&mut buf).expect("a new Arc is unique");
        param_bytes_into(arch, &name, &t, dst);
        let header = param_header(arch, &name, &t);
        drop(t);
        let entry = |k: &str, v: String| StringStringEntryProto {
            key: Some(k.into()),
            value: Some(v),
        };
        let init = TensorProto {
            data_location: Some(DataLocation::External as i32),
            external_data: vec![
                entry("location", name.clone()),
                entry("offset", "0".into()),
                entry("length", n.to_string()),
            ],
            ..header
        };
        (init, (name, buf))
    };
    crate::util::parallel_by_size(
        items,
        |(_, t)| t.data.len(),
        crate::util::default_threads(),
        convert,
    )
    .into_iter()
    .unzip()
}

/// `[rows, cols]` row-major f32 to the little-endian bytes of its `[cols, rows]` transpose,
/// a band of rows at a time so reads stay in cache and writes are sequential runs.
pub(super) fn transposed_le_bytes_into(src: &[f32], rows: usize, cols: usize, dst: &mut [u8]) {
    const BAND: usize = 16;
    for r0 in (0..rows).step_by(BAND) {
        let r1 = (r0 + BAND).min(rows);
        let band = &src[r0 * cols..r1 * cols];
        for c in 0..cols {
            let run = &mut dst[(c * rows + r0) * 4..(c * rows + r1) * 4];
            for (k, out) in run.chunks_exact_mut(4).enumerate() {
                out.copy_from_slice(&band[k * cols + c].to_le_bytes());
            }
        }
    }
}

pub(super) fn f32_le_bytes(data: &[f32]) -> Vec<u8> {
    data.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub(super) fn i64_le_bytes(data: &[i64]) -> Vec<u8> {
    data.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// One dimension of a graph input/output.
#[derive(Clone, Copy)]
pub(super) enum Dim {
    Fixed(usize),
    Sym(&'static str),
}

pub(super) fn tensor_info(name: &str, elem: DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match *d {
                Dim::Fixed(v) => dimension::Value::DimValue(v as i64),
                Dim::Sym(s) => dimension::Value::DimParam(s.to_string()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Number of parameter values stored in a model: elements of every initializer except the
/// graph constants (names starting with [`CONST_PREFIX`]). For a model from [`super::build_model`] this
/// equals `arch.params().total`.
pub fn parameter_count(model: &ModelProto) -> u64 {
    model
        .graph
        .iter()
        .flat_map(|g| g.initializer.iter())
        .filter(|t| !t.name().starts_with(CONST_PREFIX))
        .map(|t| t.dims.iter().product::<i64>() as u64)
        .sum()
}
