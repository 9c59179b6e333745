//! Where a quantized file stores each parameter of its arch: the initializers [`super::emit`]
//! writes for one parameter under one scheme (an fp16 copy; an int8 weight with its scales and
//! zero points; int4 blocks, scales and zero points; or the fp32 tensor a scheme leaves alone),
//! with the shapes that follow from the parameter's shape and the scheme's options.
//!
//! [`check`] compares them with a file's initializers, so a quantized file whose metadata
//! (arch or scheme) was edited, or that was damaged, is refused when it is read instead of
//! being timed and reported as another arch.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Result};

use super::scheme::Scheme;
use crate::onnx::GraphProto;

/// How the fp32 graph uses one parameter, which decides what a scheme does with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// Read as it is (norms, biases, position embeddings, an untied token embedding): kept
    /// fp32 by the int schemes.
    Plain,
    /// The weight `[K, N]` of a `MatMul` (every projection): quantized by the int schemes.
    MatMul,
    /// The untied LM head `[N, K]` of the `Gemm(transB=1)`: quantized with `:head`.
    Head,
    /// The token embedding `[N, K]` that is also the LM head: its fp32 copy stays for the
    /// lookup, and `:head` adds a quantized copy.
    TiedHead,
}

/// One parameter of an arch as the fp32 graph stores it.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// Initializer name (the Hugging Face name).
    pub name: String,
    /// Its shape in the fp32 graph (Llama projections stored `[in, out]`).
    pub dims: Vec<i64>,
    /// How the graph uses it.
    pub usage: Use,
}

/// The initializers `scheme` stores `p` in, with their shapes.
pub fn stored(scheme: &Scheme, p: &Param) -> Vec<(String, Vec<i64>)> {
    let fp32 = || (p.name.clone(), p.dims.clone());
    let (head, keep) = match scheme {
        Scheme::Fp32 => return vec![fp32()],
        Scheme::Fp16 => return vec![(format!("{}.fp16", p.name), p.dims.clone())],
        Scheme::Int8Dynamic { head, keep, .. }
        | Scheme::Int8Static { head, keep, .. }
        | Scheme::Int4 { head, keep, .. } => (*head, keep),
    };
    let target = match p.usage {
        Use::Plain => false,
        Use::MatMul => true,
        Use::Head | Use::TiedHead => head,
    } && p.dims.len() == 2
        && !keep.iter().any(|k| p.name.contains(k.as_str()));
    if !target {
        return vec![fp32()];
    }
    // K (input features) and N (output features) of the multiply.
    let (k, n) = match p.usage {
        Use::MatMul => (p.dims[0], p.dims[1]),
        _ => (p.dims[1], p.dims[0]),
    };
    let mut out = if p.usage == Use::TiedHead {
        vec![fp32()]
    } else {
        Vec::new()
    };
    match scheme {
        Scheme::Int8Dynamic { per_channel, .. } | Scheme::Int8Static { per_channel, .. } => {
            let scale: Vec<i64> = if *per_channel { vec![n] } else { vec![] };
            out.push((format!("{}.q.int8", p.name), vec![k, n]));
            out.push((format!("{}.q.scale", p.name), scale.clone()));
            out.push((format!("{}.q.zero_point", p.name), scale));
        }
        Scheme::Int4 {
            block_size,
            zero_point,
            ..
        } => {
            let bs = *block_size as i64;
            let blocks = (k + bs - 1) / bs;
            out.push((format!("{}.q4.blocks", p.name), vec![n, blocks, bs / 2]));
            out.push((format!("{}.q4.scales", p.name), vec![n * blocks]));
            if *zero_point {
                out.push((
                    format!("{}.q4.zero_points", p.name),
                    vec![n * ((blocks + 1) / 2)],
                ));
            }
        }
        Scheme::Fp32 | Scheme::Fp16 => unreachable!("returned above"),
    }
    out
}

/// Whether `name` is an activation's calibrated scale or zero point (`int8-static`: a scalar
/// per quantized activation, no parameter).
fn activation_qparam(scheme: &Scheme, name: &str, dims: &[i64]) -> bool {
    matches!(scheme, Scheme::Int8Static { .. })
        && dims.is_empty()
        && (name.ends_with(".qdq.scale") || name.ends_with(".qdq.zero_point"))
}

/// Checks that `graph`'s initializers (the graph constants, named `const_prefix*`, left out)
/// are exactly what `scheme` stores for `params` ([`stored`]): every one present with its
/// shape, and no other (a parameter of another arch). `arch` names the arch in errors.
pub fn check(
    scheme: &Scheme,
    params: &[Param],
    graph: &GraphProto,
    const_prefix: &str,
    arch: &str,
) -> Result<()> {
    const FIX: &str = "its metadata was edited or the file is damaged: quantize the fp32 model again with `lts quantize`";
    let held: BTreeMap<&str, &[i64]> = graph
        .initializer
        .iter()
        .map(|t| (t.name(), t.dims.as_slice()))
        .filter(|(n, _)| !n.starts_with(const_prefix))
        .collect();
    let mut expected = BTreeSet::new();
    for p in params {
        for (name, want) in stored(scheme, p) {
            match held.get(name.as_str()) {
                None => bail!(
                    "the arch in its metadata ({arch}) with scheme {scheme} stores parameter {} as initializer {name} {want:?}, which the file does not have: {FIX}",
                    p.name
                ),
                Some(&dims) if dims != want.as_slice() => {
                    let of = if name == p.name {
                        String::new()
                    } else {
                        format!(" (parameter {} {:?})", p.name, p.dims)
                    };
                    bail!(
                        "initializer {name} has shape {dims:?} but the arch in its metadata ({arch}) with scheme {scheme} needs {want:?}{of}: {FIX}"
                    )
                }
                Some(_) => {}
            }
            expected.insert(name);
        }
    }
    let extra: Vec<&str> = held
        .iter()
        .filter(|(n, d)| !expected.contains(**n) && !activation_qparam(scheme, n, d))
        .map(|(n, _)| *n)
        .collect();
    if let Some(first) = extra.first() {
        bail!(
            "{} initializer(s) of the file, such as {first}, are no parameter of the arch in its metadata ({arch}) with scheme {scheme}: {FIX}",
            extra.len()
        );
    }
    Ok(())
}
