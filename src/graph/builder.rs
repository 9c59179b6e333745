//! The graph builder: accumulates nodes and initializers, names every node, deduplicates
//! constants (`const.*`, see [`super::io::CONST_PREFIX`]).

use std::collections::HashMap;

use super::io::CONST_PREFIX;
use super::tensors::{f32_le_bytes, i64_le_bytes};
use crate::onnx::attribute_proto::AttributeType;
use crate::onnx::tensor_proto::DataType;
use crate::onnx::{AttributeProto, NodeProto, TensorProto};

/// Accumulates nodes and initializers; constants are deduplicated by name.
#[derive(Default)]
pub(super) struct Builder {
    pub(super) nodes: Vec<NodeProto>,
    pub(super) initializers: Vec<TensorProto>,
    /// `const.*` name -> index in `initializers`.
    pub(super) consts: HashMap<String, usize>,
}

pub(super) fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

pub(super) fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

pub(super) fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(v),
        ..Default::default()
    }
}

impl Builder {
    /// Adds a node with explicit output names.
    pub(super) fn node_multi(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name: Some(name.to_string()),
            op_type: Some(op.to_string()),
            attribute: attrs,
            ..Default::default()
        });
    }

    /// Adds a single-output node whose output is named `out`; returns `out`.
    pub(super) fn op_to(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        out: &str,
        attrs: Vec<AttributeProto>,
    ) -> String {
        self.node_multi(op, name, inputs, &[out], attrs);
        out.to_string()
    }

    /// Adds a single-output node; its output has the node's name, which is returned.
    pub(super) fn op(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> String {
        self.op_to(op, name, inputs, name, attrs)
    }

    pub(super) fn constant(
        &mut self,
        name: &str,
        dims: &[i64],
        elem: DataType,
        raw: Vec<u8>,
    ) -> String {
        let full = format!("{CONST_PREFIX}{name}");
        if let Some(&idx) = self.consts.get(&full) {
            let t = &self.initializers[idx];
            assert!(
                t.dims == dims && t.raw_data.as_deref() == Some(&raw[..]),
                "constant {full} defined twice with different values"
            );
            return full;
        }
        self.consts.insert(full.clone(), self.initializers.len());
        self.initializers.push(TensorProto {
            name: Some(full.clone()),
            dims: dims.to_vec(),
            data_type: Some(elem as i32),
            raw_data: Some(raw),
            ..Default::default()
        });
        full
    }

    /// An int64 constant (`dims` empty for a scalar).
    pub(super) fn const_i64(&mut self, name: &str, dims: &[i64], vals: &[i64]) -> String {
        self.constant(name, dims, DataType::Int64, i64_le_bytes(vals))
    }

    /// A 1-D int64 constant (shape vectors, axes, split sizes), named after its values.
    pub(super) fn ints(&mut self, kind: &str, vals: &[i64]) -> String {
        let text: Vec<String> = vals.iter().map(|v| v.to_string()).collect();
        self.const_i64(
            &format!("{kind}.{}", text.join("_")),
            &[vals.len() as i64],
            vals,
        )
    }

    pub(super) fn scalar_i64(&mut self, v: i64) -> String {
        self.const_i64(&format!("i64.{v}"), &[], &[v])
    }

    /// An fp32 constant.
    pub(super) fn const_f32(&mut self, name: &str, dims: &[i64], vals: &[f32]) -> String {
        self.constant(name, dims, DataType::Float, f32_le_bytes(vals))
    }

    pub(super) fn scalar_f32(&mut self, name: &str, v: f32) -> String {
        self.const_f32(name, &[], &[v])
    }
}
