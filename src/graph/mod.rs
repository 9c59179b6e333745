//! ONNX emission: an [`Arch`] with its [`Weights`] becomes a self-contained ONNX model (opset
//! [`OPSET`], default domain only, fp32 parameters embedded as initializers).
//!
//! Two graphs exist per candidate ([`GraphKind`]), with the I/O contract of Hugging Face optimum's
//! decoder export (`decoder_model.onnx` for [`GraphKind::Prefill`], `decoder_with_past_model.onnx`
//! for [`GraphKind::Decode`]; we take no `attention_mask`/`position_ids` inputs: every sequence
//! in a batch has the same length and positions follow from the cache length):
//!
//! - inputs: `input_ids` int64 `[batch, seq]`; for decode also, per layer `i`,
//!   `past_key_values.{i}.key` / `past_key_values.{i}.value` f32
//!   `[batch, n_kv_head[i], past_seq, head_dim(i)]`;
//! - outputs: `logits` f32 `[batch, seq, vocab]` and, per layer, `present.{i}.key` /
//!   `present.{i}.value` f32 `[batch, n_kv_head[i], total_seq, head_dim(i)]` where
//!   `total_seq = past_seq + seq` (just `seq` for prefill, which fills the cache).
//!
//! Graph structure, shared by both families:
//! - positions: token `t` of the new chunk sits at absolute position `past_seq + t`, where
//!   `past_seq` is read in-graph from the `Shape` of `past_key_values.0.key` (0 for prefill), and
//!   the positions are a `Range`;
//! - causal mask, built once per graph: `LessOrEqual(key_pos[1, T], query_pos[S, 1])` and
//!   `Where(·, 0, -inf)` give an additive `[seq, total_seq]` mask added to the scores of every
//!   layer (a query at position `p` sees keys `0..=p`);
//! - attention: scores `q·kᵀ · (1/sqrt(head_dim))` + mask, `Softmax` on the last axis, times `v`;
//!   the new keys/values are concatenated after the past ones on axis 2, so the cache layout is
//!   optimum's `[batch, heads, seq, head_dim]`;
//! - grouped-query attention (HF `repeat_kv`: query head `h` uses kv head `h / (n_head /
//!   n_kv_head)`) without `Expand`: queries are laid out `[B, Hkv, g, S, hd]`, keys and values
//!   `[B, Hkv, 1, T, hd]`, and `MatMul` broadcasting does the sharing;
//! - LM head: `h` is flattened to `[B*S, D]` and multiplied by the `[V, D]` matrix with
//!   `Gemm(transB=1)`, so no transposed copy of the (possibly tied) embedding is ever made; a tied
//!   embedding is one initializer read by both `Gather` and `Gemm`.
//!
//! Family specifics follow `transformers`: GPT-2 (`GPT2LMHeadModel`: pre-LN `LayerNormalization`,
//! learned positions, Conv1D weights `[in, out]` used as-is, `gelu_new` written from primitives)
//! and Llama (`LlamaForCausalLM`: RMSNorm from primitives as `LlamaRMSNorm`, RoPE with the
//! "rotate_half" convention computed in-graph from the positions, SwiGLU MLP as `x·Sigmoid(x)`).
//! HF `nn.Linear` weights (`[out, in]`) are stored **transposed** (`[in, out]`, under their HF
//! name, with a `doc_string` saying so) so that every projection is a plain `MatMul`.
//!
//! Initializers that are model parameters keep their HF names; every other constant (shape
//! vectors, `inv_freq`, epsilons, scales, `-inf`) is named `const.*` (see [`CONST_PREFIX`]), which
//! is how [`parameter_count`] tells them apart. Every node has a unique readable name such as
//! `layers.3.attn.qk`; a node's (first) output carries the node's name unless it is a graph output.

pub mod onnx;
mod tensors;

pub use tensors::{check_parameters, weights_from_model};
use tensors::{external_params, f32_le_bytes, i64_le_bytes, param_tensors, tensor_info, Dim};

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Result};
use prost::Message;

use crate::arch::{Arch, Family};
use crate::weights::Weights;
use crate::workload::Logits;
use onnx::attribute_proto::AttributeType;
use onnx::tensor_proto::DataType;
use onnx::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto,
};

/// ONNX operator set of the default domain the graphs use (the first with `LayerNormalization`).
pub const OPSET: i64 = 17;

/// ONNX IR version written into models: 8 is the IR that goes with opset 17 (ONNX 1.12).
pub const IR_VERSION: i64 = 8;

/// Name prefix of initializers that are constants of the graph, not model parameters.
pub const CONST_PREFIX: &str = "const.";

/// A serialized protobuf message cannot exceed 2 GiB; we keep a margin for the graph itself.
const MAX_MODEL_BYTES: u64 = (2 << 30) - (64 << 20);

/// Which of a candidate's two graphs to build (HF optimum's decoder pair).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GraphKind {
    /// Whole prompt at once, no cache input; returns the cache it fills (optimum's
    /// `decoder_model.onnx`).
    Prefill,
    /// New token(s) on top of a key/value cache (optimum's `decoder_with_past_model.onnx`).
    Decode,
}

impl GraphKind {
    /// Lowercase name, as in serde (`prefill` / `decode`).
    pub fn as_str(self) -> &'static str {
        match self {
            GraphKind::Prefill => "prefill",
            GraphKind::Decode => "decode",
        }
    }
}

impl fmt::Display for GraphKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Graph input names in order: `input_ids`, then for decode `past_key_values.{i}.key` and
/// `past_key_values.{i}.value` for each layer (optimum's naming and order).
pub fn input_names(arch: &Arch, kind: GraphKind) -> Vec<String> {
    let mut names = vec!["input_ids".to_string()];
    if kind == GraphKind::Decode {
        for i in 0..arch.n_layer {
            names.push(past_name(i, "key"));
            names.push(past_name(i, "value"));
        }
    }
    names
}

/// Graph output names in order: `logits`, then `present.{i}.key` and `present.{i}.value` for
/// each layer (optimum's naming and order; both kinds return the cache).
pub fn output_names(arch: &Arch, _kind: GraphKind) -> Vec<String> {
    let mut names = vec!["logits".to_string()];
    for i in 0..arch.n_layer {
        names.push(present_name(i, "key"));
        names.push(present_name(i, "value"));
    }
    names
}

fn past_name(layer: usize, which: &str) -> String {
    format!("past_key_values.{layer}.{which}")
}

fn present_name(layer: usize, which: &str) -> String {
    format!("present.{layer}.{which}")
}

/// Serializes a model to ONNX protobuf bytes.
pub fn to_bytes(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// Writes a model to `path` atomically (temporary file + rename, see
/// [`crate::util::write_atomic`]).
pub fn save(model: &ModelProto, path: &Path) -> Result<()> {
    crate::util::write_atomic(path, &to_bytes(model))
}

/// Number of parameter values stored in a model: elements of every initializer except the
/// graph constants (names starting with [`CONST_PREFIX`]). For a model from [`build_model`] this
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

/// Builds the prefill or decode graph of `arch` with `weights` embedded (see the module docs for
/// the I/O contract and the math). Fails when the weights do not fit the arch or the model would
/// not fit in one protobuf (2 GiB).
///
/// `logits` chooses which positions of a prefill graph get logits: [`Logits::Last`] slices the
/// last position before the final norm and the LM head (output `[batch, 1, vocab]`, what
/// producing the first token needs), [`Logits::All`] keeps every position (`[batch, seq,
/// vocab]`, for scoring text). Decode graphs compute one position either way and ignore it.
pub fn build_model(
    arch: &Arch,
    weights: &Weights,
    kind: GraphKind,
    logits: Logits,
) -> Result<ModelProto> {
    let specs = weights.check(arch)?;
    let bytes = arch.params().total * 4;
    if bytes > MAX_MODEL_BYTES {
        bail!(
            "arch {} has {} parameters ({:.2} GB in fp32), too large for one ONNX protobuf (2 GiB); choose a smaller arch",
            arch.id(),
            arch.params().total,
            bytes as f64 / 1e9
        );
    }
    let initializers = param_tensors(arch, weights, &specs);
    Ok(assemble(arch, kind, logits, initializers, &weights.source))
}

/// Parameter data kept outside the ONNX protobuf, one in-memory "file" per parameter (named
/// after it) that ONNX Runtime reads through `AddExternalInitializersFromFilesInMemory`
/// (`ort`'s `with_external_initializer_file_in_memory`): the fp32 little-endian bytes of the
/// parameter in its graph layout. Several graphs of one model (prefill and decode) share them.
pub type ExternalFiles = Vec<(String, Arc<[u8]>)>;

/// Builds the graphs `graphs` of `arch` with the parameters held outside the protobuf
/// ([`ExternalFiles`]): each graph's initializers are `data_location = EXTERNAL` references
/// (`location` = the parameter's name), so a graph is a few KB and the weights are converted to
/// their graph layout once, tensor by tensor (each HF tensor is freed as soon as it is
/// converted, so `weights` and its converted copy never coexist whole), and shared by every
/// graph and session. Same math and I/O as [`build_model`]; no 2 GiB protobuf limit.
pub fn build_models_external(
    arch: &Arch,
    weights: Weights,
    graphs: &[(GraphKind, Logits)],
) -> Result<(Vec<ModelProto>, ExternalFiles)> {
    let specs = weights.check(arch)?;
    let source = weights.source.clone();
    let (initializers, files) = external_params(arch, weights, &specs);
    let models = graphs
        .iter()
        .map(|&(kind, logits)| assemble(arch, kind, logits, initializers.clone(), &source))
        .collect();
    Ok((models, files))
}

/// The graph of `kind` around the given parameter initializers (embedded or external).
fn assemble(
    arch: &Arch,
    kind: GraphKind,
    logits: Logits,
    initializers: Vec<TensorProto>,
    weights_source: &str,
) -> ModelProto {
    let mut b = Builder {
        initializers,
        ..Default::default()
    };
    let last_only = kind == GraphKind::Prefill && logits == Logits::Last;
    let common = common(&mut b, kind, last_only);
    match arch.family {
        Family::Gpt2 => gpt2(&mut b, arch, kind, &common),
        Family::Llama => llama(&mut b, arch, kind, &common),
    }

    let mut inputs = vec![tensor_info(
        "input_ids",
        DataType::Int64,
        &[Dim::Sym("batch"), Dim::Sym("seq")],
    )];
    let mut outputs = vec![tensor_info(
        "logits",
        DataType::Float,
        &[
            Dim::Sym("batch"),
            if last_only {
                Dim::Fixed(1)
            } else {
                Dim::Sym("seq")
            },
            Dim::Fixed(arch.vocab_size),
        ],
    )];
    let present_len = match kind {
        GraphKind::Prefill => "seq",
        GraphKind::Decode => "total_seq",
    };
    for i in 0..arch.n_layer {
        let cache = |len: &'static str| {
            [
                Dim::Sym("batch"),
                Dim::Fixed(arch.n_kv_head[i]),
                Dim::Sym(len),
                Dim::Fixed(arch.head_dim(i)),
            ]
        };
        for which in ["key", "value"] {
            if kind == GraphKind::Decode {
                inputs.push(tensor_info(
                    &past_name(i, which),
                    DataType::Float,
                    &cache("past_seq"),
                ));
            }
            outputs.push(tensor_info(
                &present_name(i, which),
                DataType::Float,
                &cache(present_len),
            ));
        }
    }

    let id = arch.id();
    let graph = GraphProto {
        name: Some(format!("lts_{}_{}", id.replace('-', "_"), kind)),
        doc_string: Some(format!(
            "{kind} graph of {} arch {id}: {} layers, d_model {}, vocab {}",
            arch.family, arch.n_layer, arch.d_model, arch.vocab_size
        )),
        node: b.nodes,
        initializer: b.initializers,
        input: inputs,
        output: outputs,
        ..Default::default()
    };
    let meta = |k: &str, v: String| StringStringEntryProto {
        key: Some(k.to_string()),
        value: Some(v),
    };
    ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        producer_name: Some("lts".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: Some(format!(
            "lts {kind} graph for arch {id} (HF optimum decoder I/O: input_ids, past_key_values.*, logits, present.*)"
        )),
        graph: Some(graph),
        metadata_props: vec![
            meta("arch", arch.canonical_json()),
            meta("arch_id", id),
            meta("graph_kind", kind.to_string()),
            meta(
                "logits",
                if last_only { Logits::Last } else { Logits::All }
                    .as_str()
                    .into(),
            ),
            meta("weights_source", weights_source.to_string()),
        ],
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Graph builder.

/// Accumulates nodes and initializers; constants are deduplicated by name.
#[derive(Default)]
struct Builder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    /// `const.*` name -> index in `initializers`.
    consts: HashMap<String, usize>,
}

fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(v),
        ..Default::default()
    }
}

impl Builder {
    /// Adds a node with explicit output names.
    fn node_multi(
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
    fn op_to(
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
    fn op(&mut self, op: &str, name: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        self.op_to(op, name, inputs, name, attrs)
    }

    fn constant(&mut self, name: &str, dims: &[i64], elem: DataType, raw: Vec<u8>) -> String {
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
    fn const_i64(&mut self, name: &str, dims: &[i64], vals: &[i64]) -> String {
        self.constant(name, dims, DataType::Int64, i64_le_bytes(vals))
    }

    /// A 1-D int64 constant (shape vectors, axes, split sizes), named after its values.
    fn ints(&mut self, kind: &str, vals: &[i64]) -> String {
        let text: Vec<String> = vals.iter().map(|v| v.to_string()).collect();
        self.const_i64(
            &format!("{kind}.{}", text.join("_")),
            &[vals.len() as i64],
            vals,
        )
    }

    fn scalar_i64(&mut self, v: i64) -> String {
        self.const_i64(&format!("i64.{v}"), &[], &[v])
    }

    /// An fp32 constant.
    fn const_f32(&mut self, name: &str, dims: &[i64], vals: &[f32]) -> String {
        self.constant(name, dims, DataType::Float, f32_le_bytes(vals))
    }

    fn scalar_f32(&mut self, name: &str, v: f32) -> String {
        self.const_f32(name, &[], &[v])
    }
}

// ---------------------------------------------------------------------------------------------
// Shared pieces: positions, mask, attention, LM head.

/// Tensors every layer uses.
struct Common {
    /// `Shape(input_ids)`: `[batch, seq]` as a 1-D int64 tensor.
    ids_shape: String,
    /// Absolute positions of the new tokens, int64 `[seq]`.
    pos: String,
    /// Additive causal mask, f32 `[seq, total_seq]` (0 where allowed, -inf elsewhere).
    mask: String,
    /// Logits of the last position only ([`Logits::Last`] prefill graphs).
    last_only: bool,
}

/// Positions (`Range(past_seq, past_seq + seq)`, with `past_seq` from the `Shape` of layer 0's
/// past key, or 0 for prefill) and the additive causal mask, built once per graph.
fn common(b: &mut Builder, kind: GraphKind, last_only: bool) -> Common {
    let zero = b.scalar_i64(0);
    let one = b.scalar_i64(1);
    let ids_shape = b.op("Shape", "pos.ids_shape", &["input_ids"], vec![]);
    let seq = b.op(
        "Gather",
        "pos.seq",
        &[&ids_shape, &one],
        vec![attr_int("axis", 0)],
    );
    let (pos, key_pos) = match kind {
        GraphKind::Prefill => {
            let pos = b.op("Range", "pos.ids", &[&zero, &seq, &one], vec![]);
            (pos.clone(), pos)
        }
        GraphKind::Decode => {
            let two = b.scalar_i64(2);
            let past_shape = b.op("Shape", "pos.past_shape", &[&past_name(0, "key")], vec![]);
            let past = b.op(
                "Gather",
                "pos.past_seq",
                &[&past_shape, &two],
                vec![attr_int("axis", 0)],
            );
            let total = b.op("Add", "pos.total_seq", &[&past, &seq], vec![]);
            let pos = b.op("Range", "pos.ids", &[&past, &total, &one], vec![]);
            let key_pos = b.op("Range", "pos.key_ids", &[&zero, &total, &one], vec![]);
            (pos, key_pos)
        }
    };
    let ax0 = b.ints("axes", &[0]);
    let ax1 = b.ints("axes", &[1]);
    let q_col = b.op("Unsqueeze", "mask.query_pos", &[&pos, &ax1], vec![]);
    let k_row = b.op("Unsqueeze", "mask.key_pos", &[&key_pos, &ax0], vec![]);
    let allowed = b.op("LessOrEqual", "mask.allowed", &[&k_row, &q_col], vec![]);
    let fzero = b.scalar_f32("f32.0", 0.0);
    let ninf = b.scalar_f32("f32.neg_inf", f32::NEG_INFINITY);
    let mask = b.op("Where", "mask.additive", &[&allowed, &fzero, &ninf], vec![]);
    Common {
        ids_shape,
        pos,
        mask,
        last_only,
    }
}

/// The hidden states the final norm and the LM head see: all of `h` `[B, S, D]`, or for
/// last-position logits only its last position, `Slice(h, -1:, axis 1)` `[B, 1, D]`.
fn head_input(b: &mut Builder, h: &str, c: &Common) -> String {
    if !c.last_only {
        return h.to_string();
    }
    let starts = b.ints("starts", &[-1]);
    let ends = b.ints("ends", &[i64::MAX]);
    let axes = b.ints("axes", &[1]);
    b.op(
        "Slice",
        "final.last_position",
        &[h, &starts, &ends, &axes],
        vec![],
    )
}

/// `[B, S, heads*hd]` -> `[B, heads, S, hd]` (Reshape + Transpose); the output is named `out`.
fn split_heads(b: &mut Builder, p: &str, x: &str, heads: usize, hd: usize, out: &str) -> String {
    let shape = b.ints("shape", &[0, 0, heads as i64, hd as i64]);
    let r = b.op("Reshape", &format!("{p}.reshape"), &[x, &shape], vec![]);
    b.op_to(
        "Transpose",
        &format!("{p}.transpose"),
        &[&r],
        out,
        vec![attr_ints("perm", &[0, 2, 1, 3])],
    )
}

/// Name under which layer `i`'s new `[B, Hkv, S, hd]` keys/values (`which`) are produced: for
/// prefill they are the cache output `present.{i}.{which}` itself (no Identity node needed).
fn cache_name(kind: GraphKind, p: &str, i: usize, which: &str) -> String {
    match kind {
        GraphKind::Prefill => present_name(i, which),
        GraphKind::Decode => format!("{p}.attn.{which}_new"),
    }
}

/// The full cache `[B, Hkv, T, hd]` of layer `i`: for prefill the new tensor `new` (already named
/// `present.{i}.{which}`), for decode `Concat(past, new)` on the sequence axis, output under the
/// present name.
fn append_cache(
    b: &mut Builder,
    kind: GraphKind,
    p: &str,
    i: usize,
    which: &str,
    new: &str,
) -> String {
    match kind {
        GraphKind::Prefill => new.to_string(),
        GraphKind::Decode => b.op_to(
            "Concat",
            &format!("{p}.attn.{which}_cache"),
            &[&past_name(i, which), new],
            &present_name(i, which),
            vec![attr_int("axis", 2)],
        ),
    }
}

/// Scaled dot-product attention with the shared causal mask.
///
/// `q` is `[B, H, S, hd]` when `group == 1`, else `[B, Hkv, group, S, hd]`; `k`, `v` are the
/// full caches `[B, Hkv, T, hd]`. Returns the merged heads `[B, S, d_model]`.
#[allow(clippy::too_many_arguments)]
fn attention(
    b: &mut Builder,
    p: &str,
    q: &str,
    k: &str,
    v: &str,
    group: usize,
    hd: usize,
    d_model: usize,
    mask: &str,
) -> String {
    let mut kt = b.op(
        "Transpose",
        &format!("{p}.attn.k_t"),
        &[k],
        vec![attr_ints("perm", &[0, 1, 3, 2])],
    );
    let mut v = v.to_string();
    if group > 1 {
        let ax2 = b.ints("axes", &[2]);
        kt = b.op(
            "Unsqueeze",
            &format!("{p}.attn.k_t_group"),
            &[&kt, &ax2],
            vec![],
        );
        v = b.op(
            "Unsqueeze",
            &format!("{p}.attn.v_group"),
            &[&v, &ax2],
            vec![],
        );
    }
    let scale = b.scalar_f32(
        &format!("attn.scale.hd{hd}"),
        (1.0 / (hd as f64).sqrt()) as f32,
    );
    let qk = b.op("MatMul", &format!("{p}.attn.qk"), &[q, &kt], vec![]);
    let scaled = b.op("Mul", &format!("{p}.attn.scale"), &[&qk, &scale], vec![]);
    let masked = b.op("Add", &format!("{p}.attn.mask"), &[&scaled, mask], vec![]);
    let probs = b.op(
        "Softmax",
        &format!("{p}.attn.softmax"),
        &[&masked],
        vec![attr_int("axis", -1)],
    );
    let ctx = b.op("MatMul", &format!("{p}.attn.pv"), &[&probs, &v], vec![]);
    let perm: &[i64] = if group > 1 {
        &[0, 3, 1, 2, 4]
    } else {
        &[0, 2, 1, 3]
    };
    let merged = b.op(
        "Transpose",
        &format!("{p}.attn.merge_heads"),
        &[&ctx],
        vec![attr_ints("perm", perm)],
    );
    let shape = b.ints("shape", &[0, 0, d_model as i64]);
    b.op(
        "Reshape",
        &format!("{p}.attn.merged"),
        &[&merged, &shape],
        vec![],
    )
}

/// `logits = h @ weightᵀ` with `weight` `[V, D]`: Reshape to `[B*S, D]`, `Gemm(transB=1)`,
/// Reshape to `[B, S, V]` (`[B, 1, V]` for last-position logits), output named `logits`.
fn lm_head(b: &mut Builder, arch: &Arch, h: &str, weight: &str, c: &Common) {
    let flat_shape = b.ints("shape", &[-1, arch.d_model as i64]);
    let flat = b.op("Reshape", "lm_head.flatten", &[h, &flat_shape], vec![]);
    let gemm = b.op(
        "Gemm",
        "lm_head.gemm",
        &[&flat, weight],
        vec![attr_int("transB", 1)],
    );
    let out_shape = if c.last_only {
        b.ints("shape", &[-1, 1, arch.vocab_size as i64])
    } else {
        let vocab = b.ints("shape", &[arch.vocab_size as i64]);
        b.op(
            "Concat",
            "lm_head.out_shape",
            &[&c.ids_shape, &vocab],
            vec![attr_int("axis", 0)],
        )
    };
    b.op_to(
        "Reshape",
        "lm_head.reshape",
        &[&gemm, &out_shape],
        "logits",
        vec![],
    );
}

// ---------------------------------------------------------------------------------------------
// GPT-2.

/// HF `gelu_new`: `0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³)))`, in the order torch exports it.
fn gelu_new(b: &mut Builder, p: &str, x: &str) -> String {
    let three = b.scalar_f32("f32.3", 3.0);
    let c = b.scalar_f32("gelu.coeff", 0.044715);
    let s = b.scalar_f32(
        "gelu.sqrt_2_over_pi",
        (2.0 / std::f64::consts::PI).sqrt() as f32,
    );
    let one = b.scalar_f32("f32.1", 1.0);
    let half = b.scalar_f32("f32.0_5", 0.5);
    let cube = b.op("Pow", &format!("{p}.cube"), &[x, &three], vec![]);
    let scaled = b.op("Mul", &format!("{p}.cube_coeff"), &[&cube, &c], vec![]);
    let inner = b.op("Add", &format!("{p}.inner"), &[x, &scaled], vec![]);
    let arg = b.op("Mul", &format!("{p}.inner_scale"), &[&inner, &s], vec![]);
    let t = b.op("Tanh", &format!("{p}.tanh"), &[&arg], vec![]);
    let t1 = b.op("Add", &format!("{p}.tanh_plus_1"), &[&t, &one], vec![]);
    let hx = b.op("Mul", &format!("{p}.half_x"), &[&half, x], vec![]);
    b.op("Mul", &format!("{p}.out"), &[&hx, &t1], vec![])
}

fn layer_norm(b: &mut Builder, name: &str, x: &str, param: &str, eps: f64) -> String {
    b.op(
        "LayerNormalization",
        name,
        &[x, &format!("{param}.weight"), &format!("{param}.bias")],
        vec![attr_int("axis", -1), attr_float("epsilon", eps as f32)],
    )
}

/// `x @ weight + bias` (Conv1D / transposed Linear layout `[in, out]`).
fn linear(b: &mut Builder, p: &str, x: &str, weight: &str, bias: Option<&str>) -> String {
    let y = b.op("MatMul", p, &[x, weight], vec![]);
    match bias {
        Some(bias) => b.op("Add", &format!("{p}.bias"), &[&y, bias], vec![]),
        None => y,
    }
}

fn gpt2(b: &mut Builder, arch: &Arch, kind: GraphKind, c: &Common) {
    let d = arch.d_model;
    let tok = b.op(
        "Gather",
        "embed.tokens",
        &["transformer.wte.weight", "input_ids"],
        vec![attr_int("axis", 0)],
    );
    let pe = b.op(
        "Gather",
        "embed.positions",
        &["transformer.wpe.weight", &c.pos],
        vec![attr_int("axis", 0)],
    );
    let mut h = b.op("Add", "embed.sum", &[&tok, &pe], vec![]);
    for i in 0..arch.n_layer {
        let p = format!("layers.{i}");
        let w = format!("transformer.h.{i}");
        let (nh, hd) = (arch.n_head[i], arch.head_dim(i));
        let a = layer_norm(
            b,
            &format!("{p}.ln_1"),
            &h,
            &format!("{w}.ln_1"),
            arch.norm_eps,
        );
        let qkv = linear(
            b,
            &format!("{p}.attn.qkv"),
            &a,
            &format!("{w}.attn.c_attn.weight"),
            Some(&format!("{w}.attn.c_attn.bias")),
        );
        let split = b.ints("split", &[d as i64; 3]);
        let (q, k, v) = (
            format!("{p}.attn.q"),
            format!("{p}.attn.k"),
            format!("{p}.attn.v"),
        );
        b.node_multi(
            "Split",
            &format!("{p}.attn.split"),
            &[&qkv, &split],
            &[&q, &k, &v],
            vec![attr_int("axis", -1)],
        );
        let q = split_heads(
            b,
            &format!("{p}.attn.q_heads"),
            &q,
            nh,
            hd,
            &format!("{p}.attn.q_heads"),
        );
        let k_out = cache_name(kind, &p, i, "key");
        let k = split_heads(b, &format!("{p}.attn.k_heads"), &k, nh, hd, &k_out);
        let v_out = cache_name(kind, &p, i, "value");
        let v = split_heads(b, &format!("{p}.attn.v_heads"), &v, nh, hd, &v_out);
        let k = append_cache(b, kind, &p, i, "key", &k);
        let v = append_cache(b, kind, &p, i, "value", &v);
        let ctx = attention(b, &p, &q, &k, &v, 1, hd, d, &c.mask);
        let o = linear(
            b,
            &format!("{p}.attn.c_proj"),
            &ctx,
            &format!("{w}.attn.c_proj.weight"),
            Some(&format!("{w}.attn.c_proj.bias")),
        );
        h = b.op("Add", &format!("{p}.attn.residual"), &[&h, &o], vec![]);
        let m = layer_norm(
            b,
            &format!("{p}.ln_2"),
            &h,
            &format!("{w}.ln_2"),
            arch.norm_eps,
        );
        let fc = linear(
            b,
            &format!("{p}.mlp.c_fc"),
            &m,
            &format!("{w}.mlp.c_fc.weight"),
            Some(&format!("{w}.mlp.c_fc.bias")),
        );
        let act = gelu_new(b, &format!("{p}.mlp.gelu"), &fc);
        let proj = linear(
            b,
            &format!("{p}.mlp.c_proj"),
            &act,
            &format!("{w}.mlp.c_proj.weight"),
            Some(&format!("{w}.mlp.c_proj.bias")),
        );
        h = b.op("Add", &format!("{p}.mlp.residual"), &[&h, &proj], vec![]);
    }
    let h = head_input(b, &h, c);
    let hf = layer_norm(b, "final.ln_f", &h, "transformer.ln_f", arch.norm_eps);
    lm_head(b, arch, &hf, "transformer.wte.weight", c);
}

// ---------------------------------------------------------------------------------------------
// Llama.

/// HF `LlamaRMSNorm`: `weight · x / sqrt(mean(x², last axis) + eps)`, written as
/// Pow/ReduceMean/Add/Sqrt/Div/Mul (the pattern runtimes fuse into one normalization).
fn rms_norm(b: &mut Builder, p: &str, x: &str, weight: &str, eps: f64) -> String {
    let two = b.scalar_f32("f32.2", 2.0);
    let eps = b.scalar_f32("norm_eps", eps as f32);
    let sq = b.op("Pow", &format!("{p}.square"), &[x, &two], vec![]);
    let mean = b.op(
        "ReduceMean",
        &format!("{p}.mean"),
        &[&sq],
        vec![attr_ints("axes", &[-1]), attr_int("keepdims", 1)],
    );
    let var = b.op("Add", &format!("{p}.add_eps"), &[&mean, &eps], vec![]);
    let rms = b.op("Sqrt", &format!("{p}.sqrt"), &[&var], vec![]);
    let norm = b.op("Div", &format!("{p}.div"), &[x, &rms], vec![]);
    b.op("Mul", &format!("{p}.scale"), &[&norm, weight], vec![])
}

/// RoPE tables `cos`, `sin` `[seq, head_dim]` for one head size, computed once per graph:
/// HF `LlamaRotaryEmbedding` (`inv_freq[j] = 1/theta^(2j/hd)`, `emb = cat(freqs, freqs)`).
fn rope_tables(b: &mut Builder, arch: &Arch, pos_col: &str, hd: usize) -> (String, String) {
    let half = hd / 2;
    let theta = arch.rope_theta as f32;
    let inv: Vec<f32> = (0..half)
        .map(|j| 1.0 / theta.powf((2 * j) as f32 / hd as f32))
        .collect();
    let inv = b.const_f32(&format!("rope.inv_freq.hd{hd}"), &[half as i64], &inv);
    let p = format!("rope.hd{hd}");
    let freqs = b.op("Mul", &format!("{p}.freqs"), &[pos_col, &inv], vec![]);
    let emb = b.op(
        "Concat",
        &format!("{p}.emb"),
        &[&freqs, &freqs],
        vec![attr_int("axis", -1)],
    );
    let cos = b.op("Cos", &format!("{p}.cos"), &[&emb], vec![]);
    let sin = b.op("Sin", &format!("{p}.sin"), &[&emb], vec![]);
    (cos, sin)
}

/// `x·cos + rotate_half(x)·sin` on the last axis (`rotate_half([x1, x2]) = [-x2, x1]`);
/// the output is named `out`.
fn apply_rope(
    b: &mut Builder,
    p: &str,
    x: &str,
    cos: &str,
    sin: &str,
    hd: usize,
    out: &str,
) -> String {
    let split = b.ints("split", &[(hd / 2) as i64; 2]);
    let (x1, x2) = (format!("{p}.x1"), format!("{p}.x2"));
    b.node_multi(
        "Split",
        &format!("{p}.split"),
        &[x, &split],
        &[&x1, &x2],
        vec![attr_int("axis", -1)],
    );
    let neg = b.op("Neg", &format!("{p}.neg"), &[&x2], vec![]);
    let rot = b.op(
        "Concat",
        &format!("{p}.rotate_half"),
        &[&neg, &x1],
        vec![attr_int("axis", -1)],
    );
    let xc = b.op("Mul", &format!("{p}.cos"), &[x, cos], vec![]);
    let rs = b.op("Mul", &format!("{p}.sin"), &[&rot, sin], vec![]);
    b.op_to("Add", &format!("{p}.add"), &[&xc, &rs], out, vec![])
}

fn llama(b: &mut Builder, arch: &Arch, kind: GraphKind, c: &Common) {
    let d = arch.d_model;
    let mut h = b.op(
        "Gather",
        "embed.tokens",
        &["model.embed_tokens.weight", "input_ids"],
        vec![attr_int("axis", 0)],
    );
    let pos_f = b.op(
        "Cast",
        "rope.pos",
        &[&c.pos],
        vec![attr_int("to", DataType::Float as i64)],
    );
    let ax1 = b.ints("axes", &[1]);
    let pos_col = b.op("Unsqueeze", "rope.pos_col", &[&pos_f, &ax1], vec![]);
    let mut tables: HashMap<usize, (String, String)> = HashMap::new();
    for i in 0..arch.n_layer {
        let p = format!("layers.{i}");
        let w = format!("model.layers.{i}");
        let (nh, nkv, hd) = (arch.n_head[i], arch.n_kv_head[i], arch.head_dim(i));
        let group = nh / nkv;
        let (cos, sin) = tables
            .entry(hd)
            .or_insert_with(|| rope_tables(b, arch, &pos_col, hd))
            .clone();
        let a = rms_norm(
            b,
            &format!("{p}.input_layernorm"),
            &h,
            &format!("{w}.input_layernorm.weight"),
            arch.norm_eps,
        );
        let q = linear(
            b,
            &format!("{p}.attn.q_proj"),
            &a,
            &format!("{w}.self_attn.q_proj.weight"),
            None,
        );
        let k = linear(
            b,
            &format!("{p}.attn.k_proj"),
            &a,
            &format!("{w}.self_attn.k_proj.weight"),
            None,
        );
        let v = linear(
            b,
            &format!("{p}.attn.v_proj"),
            &a,
            &format!("{w}.self_attn.v_proj.weight"),
            None,
        );
        // Queries: [B, S, H*hd] -> [B, H, S, hd], or [B, Hkv, g, S, hd] for grouped attention
        // (query head h = kv * g + j, matching HF repeat_kv).
        let q = if group > 1 {
            let shape = b.ints("shape", &[0, 0, nkv as i64, group as i64, hd as i64]);
            let r = b.op(
                "Reshape",
                &format!("{p}.attn.q_heads.reshape"),
                &[&q, &shape],
                vec![],
            );
            b.op(
                "Transpose",
                &format!("{p}.attn.q_heads.transpose"),
                &[&r],
                vec![attr_ints("perm", &[0, 2, 3, 1, 4])],
            )
        } else {
            let name = format!("{p}.attn.q_heads");
            split_heads(b, &name, &q, nh, hd, &name)
        };
        let q = apply_rope(
            b,
            &format!("{p}.attn.q_rope"),
            &q,
            &cos,
            &sin,
            hd,
            &format!("{p}.attn.q_rope"),
        );
        let k = split_heads(
            b,
            &format!("{p}.attn.k_heads"),
            &k,
            nkv,
            hd,
            &format!("{p}.attn.k_heads"),
        );
        let k_out = cache_name(kind, &p, i, "key");
        let k = apply_rope(b, &format!("{p}.attn.k_rope"), &k, &cos, &sin, hd, &k_out);
        let v_out = cache_name(kind, &p, i, "value");
        let v = split_heads(b, &format!("{p}.attn.v_heads"), &v, nkv, hd, &v_out);
        let k = append_cache(b, kind, &p, i, "key", &k);
        let v = append_cache(b, kind, &p, i, "value", &v);
        let ctx = attention(b, &p, &q, &k, &v, group, hd, d, &c.mask);
        let o = linear(
            b,
            &format!("{p}.attn.o_proj"),
            &ctx,
            &format!("{w}.self_attn.o_proj.weight"),
            None,
        );
        h = b.op("Add", &format!("{p}.attn.residual"), &[&h, &o], vec![]);
        let m = rms_norm(
            b,
            &format!("{p}.post_attention_layernorm"),
            &h,
            &format!("{w}.post_attention_layernorm.weight"),
            arch.norm_eps,
        );
        let gate = linear(
            b,
            &format!("{p}.mlp.gate_proj"),
            &m,
            &format!("{w}.mlp.gate_proj.weight"),
            None,
        );
        let sig = b.op("Sigmoid", &format!("{p}.mlp.sigmoid"), &[&gate], vec![]);
        let act = b.op("Mul", &format!("{p}.mlp.silu"), &[&gate, &sig], vec![]);
        let up = linear(
            b,
            &format!("{p}.mlp.up_proj"),
            &m,
            &format!("{w}.mlp.up_proj.weight"),
            None,
        );
        let prod = b.op("Mul", &format!("{p}.mlp.gate_up"), &[&act, &up], vec![]);
        let down = linear(
            b,
            &format!("{p}.mlp.down_proj"),
            &prod,
            &format!("{w}.mlp.down_proj.weight"),
            None,
        );
        h = b.op("Add", &format!("{p}.mlp.residual"), &[&h, &down], vec![]);
    }
    let h = head_input(b, &h, c);
    let hf = rms_norm(b, "final.norm", &h, "model.norm.weight", arch.norm_eps);
    let head = if arch.tie_embeddings {
        "model.embed_tokens.weight"
    } else {
        "lm_head.weight"
    };
    lm_head(b, arch, &hf, head, c);
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    fn archs() -> Vec<(String, Arch)> {
        let mut out = Vec::new();
        for name in ["gpt2-tiny", "llama-tiny"] {
            out.push((name.to_string(), Arch::preset(name).unwrap()));
        }
        let mut tied = Arch::preset("llama-tiny").unwrap();
        tied.tie_embeddings = true;
        out.push(("llama-tiny-tied".into(), tied));
        let mha = Arch::from_json(
            r#"{"family":"llama","n_layer":3,"d_model":48,"d_inner":[64,32,96],"n_head":[4,6,2],
                "n_kv_head":[4,2,1],"vocab_size":50,"n_positions":64,"tie_embeddings":true}"#,
        )
        .unwrap();
        out.push(("llama-hetero".into(), mha));
        out
    }

    fn graph(m: &ModelProto) -> &GraphProto {
        m.graph.as_ref().unwrap()
    }

    #[test]
    fn parameter_count_matches_arch() {
        for (name, arch) in archs() {
            let w = Weights::random(&arch, 3);
            for kind in [GraphKind::Prefill, GraphKind::Decode] {
                let m = build_model(&arch, &w, kind, Logits::All).unwrap();
                assert_eq!(parameter_count(&m), arch.params().total, "{name} {kind}");
            }
        }
    }

    #[test]
    fn every_parameter_is_one_initializer() {
        for (name, arch) in archs() {
            let w = Weights::random(&arch, 3);
            let m = build_model(&arch, &w, GraphKind::Decode, Logits::All).unwrap();
            let mut seen: HashMap<&str, usize> = HashMap::new();
            for t in &graph(&m).initializer {
                *seen.entry(t.name()).or_default() += 1;
            }
            assert!(
                seen.values().all(|&n| n == 1),
                "{name}: duplicate initializer"
            );
            let specs = crate::weights::param_specs(&arch);
            for spec in &specs {
                assert_eq!(
                    seen.get(spec.name.as_str()),
                    Some(&1),
                    "{name}: {}",
                    spec.name
                );
            }
            let params = seen.keys().filter(|n| !n.starts_with(CONST_PREFIX)).count();
            assert_eq!(
                params,
                specs.len(),
                "{name}: initializers that are neither params nor const.*"
            );
        }
    }

    #[test]
    fn linear_weights_are_stored_transposed() {
        let arch = Arch::preset("llama-tiny").unwrap();
        let w = Weights::random(&arch, 5);
        let m = build_model(&arch, &w, GraphKind::Prefill, Logits::All).unwrap();
        let find = |n: &str| {
            graph(&m)
                .initializer
                .iter()
                .find(|t| t.name() == n)
                .unwrap()
        };
        let name = "model.layers.0.self_attn.k_proj.weight"; // HF [16, 32]
        let t = find(name);
        assert_eq!(t.dims, vec![32, 16]);
        let hf = w.get(name);
        let raw = t.raw_data.as_ref().unwrap();
        let at = |i: usize| f32::from_le_bytes(raw[4 * i..4 * i + 4].try_into().unwrap());
        // stored[c][r] == hf[r][c]
        for (r, c) in [(0, 0), (3, 7), (15, 31)] {
            assert_eq!(at(c * 16 + r), hf.data[r * 32 + c]);
        }
        assert_eq!(find("model.embed_tokens.weight").dims, vec![101, 32]);
        assert_eq!(find("lm_head.weight").dims, vec![101, 32]);
    }

    #[test]
    fn io_names_follow_optimum() {
        let arch = Arch::preset("gpt2-tiny").unwrap();
        assert_eq!(input_names(&arch, GraphKind::Prefill), vec!["input_ids"]);
        assert_eq!(
            input_names(&arch, GraphKind::Decode),
            vec![
                "input_ids",
                "past_key_values.0.key",
                "past_key_values.0.value",
                "past_key_values.1.key",
                "past_key_values.1.value"
            ]
        );
        let outs = vec![
            "logits",
            "present.0.key",
            "present.0.value",
            "present.1.key",
            "present.1.value",
        ];
        assert_eq!(output_names(&arch, GraphKind::Prefill), outs);
        assert_eq!(output_names(&arch, GraphKind::Decode), outs);
        for (name, arch) in archs() {
            let w = Weights::random(&arch, 1);
            for kind in [GraphKind::Prefill, GraphKind::Decode] {
                let m = build_model(&arch, &w, kind, Logits::All).unwrap();
                let g = graph(&m);
                let ins: Vec<String> = g.input.iter().map(|v| v.name().to_string()).collect();
                let outs: Vec<String> = g.output.iter().map(|v| v.name().to_string()).collect();
                assert_eq!(ins, input_names(&arch, kind), "{name} {kind}");
                assert_eq!(outs, output_names(&arch, kind), "{name} {kind}");
                assert_eq!(
                    ins.len(),
                    1 + if kind == GraphKind::Decode {
                        2 * arch.n_layer
                    } else {
                        0
                    }
                );
                assert_eq!(outs.len(), 1 + 2 * arch.n_layer);
            }
        }
    }

    /// Nodes are in topological order, every input is defined, node names and outputs are
    /// unique, only default-domain ops are used, and every graph output is produced.
    #[test]
    fn graphs_are_well_formed() {
        for (name, arch) in archs() {
            let w = Weights::random(&arch, 1);
            for kind in [GraphKind::Prefill, GraphKind::Decode] {
                let m = build_model(&arch, &w, kind, Logits::All).unwrap();
                assert_eq!(m.ir_version, Some(IR_VERSION));
                assert_eq!(m.opset_import[0].version, Some(OPSET));
                let g = graph(&m);
                let mut defined: HashSet<String> =
                    g.input.iter().map(|v| v.name().to_string()).collect();
                defined.extend(g.initializer.iter().map(|t| t.name().to_string()));
                let mut node_names = HashSet::new();
                for n in &g.node {
                    assert!(n.domain.as_deref().unwrap_or("").is_empty());
                    assert!(
                        node_names.insert(n.name().to_string()),
                        "{name}: node {} twice",
                        n.name()
                    );
                    for i in &n.input {
                        assert!(
                            defined.contains(i),
                            "{name} {kind}: {} reads undefined {i}",
                            n.name()
                        );
                    }
                    for o in &n.output {
                        assert!(
                            defined.insert(o.clone()),
                            "{name} {kind}: {o} defined twice"
                        );
                    }
                }
                for o in &g.output {
                    assert!(
                        defined.contains(o.name()),
                        "{name} {kind}: output {} not produced",
                        o.name()
                    );
                }
                let masks = g.node.iter().filter(|n| n.op_type() == "Where").count();
                assert_eq!(masks, 1, "{name}: the mask is built once");
                let transposes_of_params = g
                    .node
                    .iter()
                    .filter(|n| n.op_type() == "Transpose")
                    .filter(|n| n.input.iter().any(|i| w.tensors.contains_key(i)))
                    .count();
                assert_eq!(transposes_of_params, 0, "{name}: no Transpose of a weight");
                let consts = g
                    .initializer
                    .iter()
                    .filter(|t| t.name().starts_with(CONST_PREFIX));
                for t in consts {
                    assert!(t.raw_data.is_some(), "{}", t.name());
                }
            }
        }
    }

    #[test]
    fn metadata_records_arch_and_weights() {
        let arch = Arch::preset("llama-tiny").unwrap();
        let w = Weights::random(&arch, 9);
        let m = build_model(&arch, &w, GraphKind::Decode, Logits::All).unwrap();
        let get = |k: &str| {
            m.metadata_props
                .iter()
                .find(|e| e.key() == k)
                .map(|e| e.value().to_string())
        };
        assert_eq!(get("arch"), Some(arch.canonical_json()));
        assert_eq!(get("weights_source"), Some("random(seed=9)".to_string()));
        assert!(m.doc_string().contains(&arch.id()));
        assert_eq!(m.producer_name(), "lts");
        // Round trip through bytes.
        let back = ModelProto::decode(&to_bytes(&m)[..]).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn check_parameters_compares_initializers_with_the_arch() {
        for preset in ["gpt2-tiny", "llama-tiny"] {
            let arch = Arch::preset(preset).unwrap();
            let m = build_model(
                &arch,
                &Weights::random(&arch, 0),
                GraphKind::Prefill,
                Logits::Last,
            )
            .unwrap();
            check_parameters(&arch, &m).unwrap();
            // Another arch: a different total, both numbers named.
            let mut wider = arch.clone();
            wider.d_model *= 2;
            let e = check_parameters(&wider, &m).unwrap_err().to_string();
            let th = crate::report::thousands;
            assert!(e.contains(&th(arch.params().total)), "{e}");
            assert!(e.contains(&th(wider.params().total)), "{e}");
            // The same total with other shapes: the initializer is named.
            let mut swapped = arch.clone();
            swapped.d_inner.reverse();
            if swapped != arch {
                let e = check_parameters(&swapped, &m).unwrap_err().to_string();
                assert!(e.contains("has shape"), "{e}");
            }
        }
    }

    #[test]
    fn mismatched_weights_are_rejected() {
        let arch = Arch::preset("gpt2-tiny").unwrap();
        let mut other = arch.clone();
        other.d_inner[0] = 128;
        let w = Weights::random(&other, 1);
        let e = build_model(&arch, &w, GraphKind::Prefill, Logits::All)
            .unwrap_err()
            .to_string();
        assert!(e.contains("transformer.h.0.mlp.c_fc.weight"), "{e}");
    }

    #[test]
    fn graph_kind_serde_is_lowercase() {
        assert_eq!(
            serde_json::to_string(&GraphKind::Prefill).unwrap(),
            "\"prefill\""
        );
        let k: GraphKind = serde_json::from_str("\"decode\"").unwrap();
        assert_eq!(k, GraphKind::Decode);
        assert_eq!(GraphKind::Decode.to_string(), "decode");
    }

    /// Runs `scripts/check_onnx.py` (onnx.checker full check + strict shape inference) when
    /// Python with the `onnx` package is available; CI installs it.
    #[test]
    fn onnx_checker_accepts_graphs() {
        let has_onnx = std::process::Command::new("python3")
            .args(["-c", "import onnx"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !has_onnx {
            eprintln!(
                "notice: python3 with the `onnx` package not found; skipping scripts/check_onnx.py"
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for (name, arch) in archs() {
            let w = Weights::random(&arch, 2);
            for kind in [GraphKind::Prefill, GraphKind::Decode] {
                let path = dir.path().join(format!("{name}-{kind}.onnx"));
                save(&build_model(&arch, &w, kind, Logits::All).unwrap(), &path).unwrap();
                files.push(path);
            }
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check_onnx.py");
        let out = std::process::Command::new("python3")
            .arg(&script)
            .args(&files)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "check_onnx.py failed:\n{text}");
        assert_eq!(text.matches("ok ").count(), files.len(), "{text}");
    }

    /// Emission time of GPT-2 small (124 M parameters): `cargo test --release --lib graph -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn emission_time_gpt2_small() {
        for preset in ["gpt2-small", "smollm2-135m"] {
            let arch = Arch::preset(preset).unwrap();
            let w = Weights::random(&arch, 0);
            for kind in [GraphKind::Prefill, GraphKind::Decode] {
                let t0 = std::time::Instant::now();
                let m = build_model(&arch, &w, kind, Logits::All).unwrap();
                let t1 = t0.elapsed();
                let bytes = to_bytes(&m);
                let t2 = t0.elapsed();
                eprintln!(
                    "{preset} {kind}: build_model {:.3} s, build+to_bytes {:.3} s, {} nodes, {:.1} MB",
                    t1.as_secs_f64(),
                    t2.as_secs_f64(),
                    graph(&m).node.len(),
                    bytes.len() as f64 / 1e6
                );
                assert_eq!(parameter_count(&m), arch.params().total);
            }
        }
    }
}
