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

mod builder;
mod gpt2;
mod io;
mod layers;
mod llama;
pub use crate::onnx;
pub mod read;
mod tensors;

use builder::Builder;
pub use io::{input_names, output_names, GraphKind, CONST_PREFIX, IR_VERSION, OPSET};
use io::{past_name, present_name};
pub use tensors::ExternalFiles;

pub use read::{check_parameters, weights_from_model, OnnxFile, OnnxInfo};
pub use tensors::parameter_count;
use tensors::{external_params, param_tensors, tensor_info, Dim};

use std::path::Path;

use anyhow::{bail, Result};
use prost::Message;

use crate::arch::{Arch, Family};
use crate::onnx::tensor_proto::DataType;
use crate::onnx::{
    GraphProto, ModelProto, OperatorSetIdProto, StringStringEntryProto, TensorProto,
};
use crate::weights::Weights;
use crate::workload::Logits;

/// A serialized protobuf message cannot exceed 2 GiB; we keep a margin for the graph itself.
const MAX_MODEL_BYTES: u64 = (2 << 30) - (64 << 20);

/// Serializes a model to ONNX protobuf bytes.
pub fn to_bytes(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// Writes a model to `path` atomically (temporary file + rename, see
/// [`crate::util::write_atomic`]).
pub fn save(model: &ModelProto, path: &Path) -> Result<()> {
    crate::util::write_atomic(path, &to_bytes(model))
}

/// Records in `model`'s metadata the workload it was made for (replacing one recorded before),
/// read back as [`OnnxInfo::workload`].
pub fn record_workload(model: &mut ModelProto, recorded: &crate::workload::RecordedWorkload) {
    let pairs = recorded.metadata();
    model
        .metadata_props
        .retain(|p| !pairs.iter().any(|(k, _)| p.key.as_deref() == Some(*k)));
    for (k, v) in pairs {
        model.metadata_props.push(StringStringEntryProto {
            key: Some(k.to_string()),
            value: Some(v),
        });
    }
}

/// Builds the prefill or decode graph of `arch` with `weights` embedded (see the module docs for
/// the I/O contract and the math). Fails when the weights do not fit the arch or the model would
/// not fit in one protobuf (2 GiB).
///
/// `logits` chooses which positions of the new chunk get logits: [`Logits::Last`] slices the
/// last position before the final norm and the LM head (output `[batch, 1, vocab]`, what
/// producing the next token needs), [`Logits::All`] keeps every position (`[batch, seq,
/// vocab]`, for scoring text). A decode graph with last-position logits is also the whole
/// generation graph (HF optimum's merged decoder, ONNX Runtime GenAI's one graph): fed an empty
/// past (`past_seq = 0`) it is a last-position prefill, so one session holds the weights once.
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
    let last_only = logits == Logits::Last;
    let common = layers::common(&mut b, kind, last_only);
    match arch.family {
        Family::Gpt2 => gpt2::gpt2(&mut b, arch, kind, &common),
        Family::Llama => llama::llama(&mut b, arch, kind, &common),
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
