//! Quantized ONNX graphs: a rewrite of an fp32 graph written by [`crate::graph`] (prefill or
//! decode, either family) that replaces each weight matrix multiply with its quantized form.
//!
//! Targets are the `MatMul` nodes whose second input is a rank-2 fp32 initializer (every
//! Linear / Conv1D projection: q, k, v, o, MLP), and with `head` the LM head's `Gemm(transB=1)`
//! (rewritten as a `MatMul` with the transposed weight; a tied embedding keeps its fp32 copy for
//! the lookup). What each scheme emits:
//! - `int8-dynamic`: `DynamicQuantizeLinear(A)` -> `MatMulInteger(A_q, W_q, A_zp, W_zp)` ->
//!   `Cast` -> `Mul(A_scale * W_scale)`: exactly what ONNX Runtime's `quantize_dynamic` emits
//!   (`onnxruntime/python/tools/quantization/operators/matmul.py`, `MatMulInteger`), which its
//!   graph optimizer fuses into `com.microsoft.DynamicQuantizeMatMul` (level >= extended).
//! - `int8-static`: QDQ, as `quantize_static(quant_format=QDQ)`: the weight is an int8
//!   initializer behind `DequantizeLinear` (per output channel: `axis = 1`), the activation
//!   passes `QuantizeLinear` -> `DequantizeLinear` with its calibrated scale and zero point
//!   (uint8 asymmetric, or int8 symmetric); ONNX Runtime fuses DQ -> MatMul into
//!   `MatMulIntegerToFloat` / `QLinearMatMul`.
//! - `int4`: `com.microsoft.MatMulNBits` (bits 4, blocks of `block_size` along K, optional
//!   zero points), fp32 activations.
//! - `fp16`: every parameter stored as fp16 and `Cast` to fp32 where it was (fp32 compute).

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::{bail, Context, Result};

use super::ops;
use super::scheme::Scheme;
use crate::onnx::attribute_proto::AttributeType;
use crate::onnx::tensor_proto::DataType;
use crate::onnx::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto,
};

/// The ONNX Runtime contrib operator domain (`MatMulNBits`).
pub const MS_DOMAIN: &str = "com.microsoft";

/// Calibrated range `(min, max)` of each activation a static scheme quantizes, by tensor name
/// (the first input of each target).
pub type Ranges = BTreeMap<String, (f32, f32)>;

/// One weight multiply to quantize.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// Index of the node in the graph.
    pub node: usize,
    /// The activation input.
    pub input: String,
    /// The weight initializer.
    pub weight: String,
    /// The output.
    pub output: String,
    /// Input features.
    pub k: usize,
    /// Output features.
    pub n: usize,
    /// The LM head's `Gemm(transB=1)` (weight stored `[N, K]`).
    pub gemm: bool,
}

fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: Some(name.to_string()),
        op_type: Some(op.to_string()),
        ..Default::default()
    }
}

fn tensor(name: &str, dims: &[usize], ty: DataType, raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(ty as i32),
        raw_data: Some(raw),
        ..Default::default()
    }
}

fn f32_tensor(name: &str, dims: &[usize], v: &[f32]) -> TensorProto {
    tensor(
        name,
        dims,
        DataType::Float,
        v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )
}

/// The fp32 values of an initializer (raw little-endian data or `float_data`).
pub fn f32_values(t: &TensorProto) -> Result<Vec<f32>> {
    if t.data_type != Some(DataType::Float as i32) {
        bail!("initializer {:?} is not fp32", t.name);
    }
    match &t.raw_data {
        Some(raw) if t.data_location != Some(1) => Ok(raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()),
        _ if !t.float_data.is_empty() => Ok(t.float_data.clone()),
        _ => bail!(
            "initializer {:?} holds no data in the model (external data cannot be quantized: build the graph with embedded weights)",
            t.name
        ),
    }
}

/// The weight multiplies of `graph` a scheme quantizes (see the module documentation).
pub fn targets(graph: &GraphProto, head: bool) -> Vec<Target> {
    let inits: HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .filter_map(|t| t.name.as_deref().map(|n| (n, t)))
        .collect();
    let mut out = Vec::new();
    for (i, n) in graph.node.iter().enumerate() {
        let op = n.op_type.as_deref().unwrap_or_default();
        if n.input.len() < 2 || n.output.len() != 1 {
            continue;
        }
        let Some(w) = inits.get(n.input[1].as_str()) else {
            continue;
        };
        if w.dims.len() != 2 || w.data_type != Some(DataType::Float as i32) {
            continue;
        }
        let (d0, d1) = (w.dims[0] as usize, w.dims[1] as usize);
        let target = |k, n_, gemm| Target {
            node: i,
            input: n.input[0].clone(),
            weight: n.input[1].clone(),
            output: n.output[0].clone(),
            k,
            n: n_,
            gemm,
        };
        if op == "MatMul" && n.domain.as_deref().unwrap_or_default().is_empty() {
            out.push(target(d0, d1, false));
        } else if op == "Gemm" && head && n.input.len() == 2 {
            let trans_b = n
                .attribute
                .iter()
                .any(|a| a.name.as_deref() == Some("transB") && a.i == Some(1));
            let plain = n.attribute.iter().all(|a| match a.name.as_deref() {
                Some("transB") => true,
                Some("alpha") | Some("beta") => a.f.is_none_or(|f| f == 1.0),
                Some("transA") => a.i.is_none_or(|v| v == 0),
                _ => false,
            });
            if trans_b && plain {
                out.push(target(d1, d0, true));
            }
        }
    }
    out
}

/// The targets `scheme` quantizes in `graph`: [`targets`] with or without the head, less the
/// weights its `:keep=` parts name. A part that names no weight multiply is an error (a typo
/// would otherwise quantize everything silently).
pub fn scheme_targets(graph: &GraphProto, scheme: &Scheme) -> Result<Vec<Target>> {
    let head = match scheme {
        Scheme::Int8Dynamic { head, .. }
        | Scheme::Int8Static { head, .. }
        | Scheme::Int4 { head, .. } => *head,
        Scheme::Fp32 | Scheme::Fp16 => false,
    };
    let all = targets(graph, head);
    let keep = scheme.kept();
    for k in keep {
        if !all.iter().any(|t| t.weight.contains(k.as_str())) {
            let example = all.first().map_or("", |t| t.weight.as_str());
            bail!(
                "scheme {scheme}: `keep={k}` names no weight multiply of this model (its weights are named like `{example}`)"
            );
        }
    }
    let out: Vec<Target> = all
        .into_iter()
        .filter(|t| !keep.iter().any(|k| t.weight.contains(k.as_str())))
        .collect();
    if out.is_empty() {
        bail!("scheme {scheme}: `:keep=` leaves no weight multiply to quantize");
    }
    Ok(out)
}

/// The `[K, N]` row-major fp32 weight of a target.
fn weight_kn(graph: &GraphProto, t: &Target) -> Result<Vec<f32>> {
    let init = graph
        .initializer
        .iter()
        .find(|i| i.name.as_deref() == Some(t.weight.as_str()))
        .context("target weight disappeared")?;
    let v = f32_values(init)?;
    if v.len() != t.k * t.n {
        bail!(
            "initializer {} holds {} values, not {} x {}",
            t.weight,
            v.len(),
            t.k,
            t.n
        );
    }
    if !t.gemm {
        return Ok(v);
    }
    // Stored [N, K]: transpose.
    let mut out = vec![0f32; v.len()];
    for r in 0..t.n {
        for c in 0..t.k {
            out[c * t.n + r] = v[r * t.k + c];
        }
    }
    Ok(out)
}

/// What replaces one target: nodes and new initializers.
#[derive(Default)]
struct Rewrite {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

fn int8_dynamic(graph: &GraphProto, t: &Target, per_channel: bool) -> Result<Rewrite> {
    let w = ops::quantize_weight_int8(&weight_kn(graph, t)?, t.k, t.n, per_channel, true)?;
    let p = format!("{}.q", t.weight);
    let ch = w.scales.len();
    let (wq, ws, wz) = (
        format!("{p}.int8"),
        format!("{p}.scale"),
        format!("{p}.zero_point"),
    );
    let base = format!("{}.quant", t.output);
    let (aq, a_s, az) = (
        format!("{base}.a_q"),
        format!("{base}.a_scale"),
        format!("{base}.a_zp"),
    );
    let (yi, yf, s) = (
        format!("{base}.int32"),
        format!("{base}.float"),
        format!("{base}.scale"),
    );
    let scale_dims: &[usize] = if per_channel { &[ch] } else { &[] };
    let mut cast = node("Cast", &format!("{base}.cast"), &[&yi], &[&yf]);
    cast.attribute.push(attr_int("to", DataType::Float as i64));
    Ok(Rewrite {
        nodes: vec![
            node(
                "DynamicQuantizeLinear",
                &format!("{base}.dql"),
                &[&t.input],
                &[&aq, &a_s, &az],
            ),
            node(
                "MatMulInteger",
                &format!("{base}.matmul_integer"),
                &[&aq, &wq, &az, &wz],
                &[&yi],
            ),
            cast,
            node("Mul", &format!("{base}.scales"), &[&a_s, &ws], &[&s]),
            node("Mul", &format!("{base}.rescale"), &[&yf, &s], &[&t.output]),
        ],
        initializers: vec![
            tensor(
                &wq,
                &[t.k, t.n],
                DataType::Int8,
                w.data.iter().map(|&q| q as u8).collect(),
            ),
            f32_tensor(&ws, scale_dims, &w.scales),
            tensor(
                &wz,
                scale_dims,
                DataType::Int8,
                w.zero_points.iter().map(|&z| z as u8).collect(),
            ),
        ],
    })
}

/// Scale, zero point byte and zero point type of an activation range: uint8 asymmetric, or
/// int8 symmetric (zero point 0).
fn activation_qparams(range: (f32, f32), symmetric: bool) -> Result<(f32, u8, DataType)> {
    Ok(if symmetric {
        let amax = range.0.abs().max(range.1.abs());
        (ops::qparams_symmetric(amax)?.scale, 0, DataType::Int8)
    } else {
        let q = ops::qparams_asymmetric(range.0, range.1, 0, 255)?;
        (q.scale, q.zero_point as u8, DataType::Uint8)
    })
}

fn int8_static(
    graph: &GraphProto,
    t: &Target,
    per_channel: bool,
    symmetric: bool,
    ranges: &Ranges,
    done_inputs: &mut HashMap<String, String>,
) -> Result<Rewrite> {
    let mut rw = Rewrite::default();
    // The activation: one Q/DQ pair per tensor, shared by every target reading it.
    let a_dq = match done_inputs.get(&t.input) {
        Some(dq) => dq.clone(),
        None => {
            let range = *ranges
                .get(&t.input)
                .with_context(|| format!("no calibrated range for activation {}", t.input))?;
            let (scale, zp, zp_type) = activation_qparams(range, symmetric)?;
            let p = format!("{}.qdq", t.input);
            let (sn, zn, q, dq) = (
                format!("{p}.scale"),
                format!("{p}.zero_point"),
                format!("{p}.q"),
                format!("{p}.dq"),
            );
            rw.initializers.push(f32_tensor(&sn, &[], &[scale]));
            rw.initializers.push(tensor(&zn, &[], zp_type, vec![zp]));
            rw.nodes.push(node(
                "QuantizeLinear",
                &format!("{p}.quantize"),
                &[&t.input, &sn, &zn],
                &[&q],
            ));
            rw.nodes.push(node(
                "DequantizeLinear",
                &format!("{p}.dequantize"),
                &[&q, &sn, &zn],
                &[&dq],
            ));
            done_inputs.insert(t.input.clone(), dq.clone());
            dq
        }
    };
    let w = ops::quantize_weight_int8(&weight_kn(graph, t)?, t.k, t.n, per_channel, true)?;
    let p = format!("{}.q", t.weight);
    let (wq, ws, wz, wdq) = (
        format!("{p}.int8"),
        format!("{p}.scale"),
        format!("{p}.zero_point"),
        format!("{p}.dq"),
    );
    let dims: &[usize] = if per_channel { &[t.n] } else { &[] };
    rw.initializers.push(tensor(
        &wq,
        &[t.k, t.n],
        DataType::Int8,
        w.data.iter().map(|&q| q as u8).collect(),
    ));
    rw.initializers.push(f32_tensor(&ws, dims, &w.scales));
    rw.initializers.push(tensor(
        &wz,
        dims,
        DataType::Int8,
        w.zero_points.iter().map(|&z| z as u8).collect(),
    ));
    let mut dql = node(
        "DequantizeLinear",
        &format!("{p}.dequantize"),
        &[&wq, &ws, &wz],
        &[&wdq],
    );
    if per_channel {
        dql.attribute.push(attr_int("axis", 1));
    }
    rw.nodes.push(dql);
    rw.nodes.push(node(
        "MatMul",
        &format!("{}.matmul", t.output),
        &[&a_dq, &wdq],
        &[&t.output],
    ));
    Ok(rw)
}

fn int4(graph: &GraphProto, t: &Target, block_size: usize, zero_point: bool) -> Result<Rewrite> {
    let w = ops::quantize_weight_int4(&weight_kn(graph, t)?, t.k, t.n, block_size, zero_point)?;
    let n_blocks = t.k.div_ceil(block_size);
    let p = format!("{}.q4", t.weight);
    let (b, s, z) = (
        format!("{p}.blocks"),
        format!("{p}.scales"),
        format!("{p}.zero_points"),
    );
    let mut inputs = vec![t.input.as_str(), b.as_str(), s.as_str()];
    let mut initializers = vec![
        tensor(
            &b,
            &[t.n, n_blocks, block_size / 2],
            DataType::Uint8,
            w.packed,
        ),
        f32_tensor(&s, &[t.n * n_blocks], &w.scales),
    ];
    if let Some(zp) = w.zero_points {
        let len = zp.len();
        initializers.push(tensor(&z, &[len], DataType::Uint8, zp));
        inputs.push(&z);
    }
    let mut n = node(
        "MatMulNBits",
        &format!("{}.matmul_nbits", t.output),
        &inputs,
        &[&t.output],
    );
    n.domain = Some(MS_DOMAIN.into());
    n.attribute = vec![
        attr_int("K", t.k as i64),
        attr_int("N", t.n as i64),
        attr_int("bits", 4),
        attr_int("block_size", block_size as i64),
    ];
    Ok(Rewrite {
        nodes: vec![n],
        initializers,
    })
}

/// fp16 storage: every fp32 parameter initializer (not the graph's small `const.*` constants)
/// becomes fp16, cast back to fp32 under its old name.
fn fp16(graph: &mut GraphProto) -> Result<()> {
    let mut casts = Vec::new();
    for init in graph.initializer.iter_mut() {
        let name = init.name.clone().unwrap_or_default();
        if init.data_type != Some(DataType::Float as i32)
            || name.starts_with(crate::onnx::CONST_PREFIX)
        {
            continue;
        }
        let v = f32_values(init)?;
        let half: Vec<u8> = ops::to_f16_bits(&v)
            .with_context(|| format!("{name} to fp16"))?
            .iter()
            .flat_map(|h| h.to_le_bytes())
            .collect();
        let stored = format!("{name}.fp16");
        *init = TensorProto {
            name: Some(stored.clone()),
            dims: init.dims.clone(),
            data_type: Some(DataType::Float16 as i32),
            raw_data: Some(half),
            ..Default::default()
        };
        let mut c = node("Cast", &format!("{name}.cast"), &[&stored], &[&name]);
        c.attribute.push(attr_int("to", DataType::Float as i64));
        casts.push(c);
    }
    casts.append(&mut graph.node);
    graph.node = casts;
    Ok(())
}

/// Rewrites `model` (an fp32 graph of `crate::graph`, weights embedded) with `scheme`;
/// `ranges` are the calibrated activation ranges static schemes need. The model's metadata
/// records the scheme (`quant`: its spelling, `quant_scheme`: its JSON).
pub fn quantize(
    mut model: ModelProto,
    scheme: &Scheme,
    ranges: Option<&Ranges>,
) -> Result<ModelProto> {
    let graph = model.graph.as_mut().context("the model has no graph")?;
    match scheme {
        Scheme::Fp32 => return Ok(model),
        Scheme::Fp16 => fp16(graph)?,
        _ => rewrite_targets(graph, scheme, ranges)?,
    }
    if matches!(scheme, Scheme::Int4 { .. }) {
        model.opset_import.push(OperatorSetIdProto {
            domain: Some(MS_DOMAIN.into()),
            version: Some(1),
        });
    }
    let meta = |k: &str, v: String| StringStringEntryProto {
        key: Some(k.into()),
        value: Some(v),
    };
    model
        .metadata_props
        .retain(|p| !matches!(p.key.as_deref(), Some("quant" | "quant_scheme")));
    model.metadata_props.push(meta("quant", scheme.to_string()));
    model
        .metadata_props
        .push(meta("quant_scheme", serde_json::to_string(scheme)?));
    Ok(model)
}

fn rewrite_targets(graph: &mut GraphProto, scheme: &Scheme, ranges: Option<&Ranges>) -> Result<()> {
    if targets(graph, true).is_empty() {
        bail!("the graph has no weight MatMul to quantize");
    }
    let targets = scheme_targets(graph, scheme)?;
    let mut by_node: HashMap<usize, Rewrite> = HashMap::new();
    let mut done_inputs = HashMap::new();
    for t in &targets {
        let rw = match scheme {
            Scheme::Int8Dynamic { per_channel, .. } => int8_dynamic(graph, t, *per_channel)?,
            Scheme::Int8Static {
                per_channel,
                symmetric,
                ..
            } => {
                let ranges = ranges.context("int8-static needs calibrated activation ranges")?;
                int8_static(graph, t, *per_channel, *symmetric, ranges, &mut done_inputs)?
            }
            Scheme::Int4 {
                block_size,
                zero_point,
                ..
            } => int4(graph, t, *block_size, *zero_point)?,
            Scheme::Fp32 | Scheme::Fp16 => unreachable!("handled by quantize"),
        };
        by_node.insert(t.node, rw);
    }
    let old = std::mem::take(&mut graph.node);
    for (i, n) in old.into_iter().enumerate() {
        match by_node.remove(&i) {
            Some(rw) => {
                graph.node.extend(rw.nodes);
                graph.initializer.extend(rw.initializers);
            }
            None => graph.node.push(n),
        }
    }
    // fp32 weights nothing reads any more (a tied embedding's lookup still does).
    let used: HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .collect();
    let replaced: HashSet<&str> = targets.iter().map(|t| t.weight.as_str()).collect();
    let keep: Vec<bool> = graph
        .initializer
        .iter()
        .map(|i| {
            let n = i.name.as_deref().unwrap_or_default();
            !replaced.contains(n) || used.contains(n)
        })
        .collect();
    let mut keep = keep.into_iter();
    graph.initializer.retain(|_| keep.next().unwrap_or(true));
    Ok(())
}
