//! The calibration pass of static int8 quantization on ONNX Runtime: the fp32 prefill graph,
//! with every activation a scheme quantizes added as an output, run over the calibration
//! sequences; one histogram per activation ([`crate::quant::calibrate`]) gives its range.
//! Used by `lts quantize` and by a quantized [`crate::job`] (int8-static graphs calibrate
//! before they are timed); it sits below both so that neither imports the other.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use ndarray::Array2;

use crate::backend::ort::{Ort, OrtOptions};
use crate::graph;
use crate::graph::onnx::{type_proto, ModelProto, TypeProto, ValueInfoProto};
use crate::quant::calibrate::{self, Histogram};
use crate::quant::emit::{self, Ranges};
use crate::quant::scheme::{Calibration, Scheme};

/// The fp32 prefill graph with every activation a scheme quantizes added as a graph output.
fn augmented(model: &ModelProto, scheme: &Scheme) -> Result<(ModelProto, Vec<String>)> {
    let mut m = model.clone();
    let g = m.graph.as_mut().context("no graph")?;
    let mut names: Vec<String> = emit::scheme_targets(g, scheme)?
        .into_iter()
        .map(|t| t.input)
        .collect();
    names.sort();
    names.dedup();
    for n in &names {
        g.output.push(ValueInfoProto {
            name: Some(n.clone()),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: Some(1),
                    shape: None,
                })),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    Ok((m, names))
}

/// Calibrated ranges of the activations `scheme` quantizes: the fp32 `prefill` graph run on
/// every calibration sequence, one histogram per activation.
pub fn calibrate(
    prefill: &ModelProto,
    scheme: &Scheme,
    calib: &Array2<i64>,
    ort: &OrtOptions,
) -> Result<Ranges> {
    let Scheme::Int8Static {
        calibration,
        percentile,
        symmetric,
        ..
    } = scheme
    else {
        return Ok(Ranges::new());
    };
    let (model, names) = augmented(prefill, scheme)?;
    let mut session = Ort::load()?.session(&graph::to_bytes(&model), ort)?;
    // Two passes, as ONNX Runtime's calibrator sees the data: its `collect_data` hands every
    // batch to one histogram whose 2048 bins span the largest |x| of all of them. Pass 1 finds
    // that |x| per activation; pass 2 fills the histograms on those fixed grids (filled one
    // sequence at a time, a histogram would grow with each new maximum and end on other bins).
    let mut amax: BTreeMap<String, f32> = BTreeMap::new();
    for_each_output(&mut session, calib, &names, &mut |n, data| {
        let m = data.iter().fold(0f32, |m, v| m.max(v.abs()));
        let e = amax.entry(n.to_string()).or_insert(0.0);
        *e = e.max(m);
        Ok(())
    })?;
    let mut hists: BTreeMap<String, Histogram> = BTreeMap::new();
    for_each_output(&mut session, calib, &names, &mut |n, data| {
        if !hists.contains_key(n) {
            let h = Histogram::with_threshold(calibrate::DEFAULT_NUM_BINS, amax[n])
                .with_context(|| format!("calibration histogram of {n}"))?;
            hists.insert(n.to_string(), h);
        }
        hists
            .get_mut(n)
            .expect("inserted above")
            .add(data)
            .with_context(|| format!("calibration histogram of {n}"))
    })?;
    let method = match calibration {
        Calibration::Minmax => calibrate::CalibMethod::MinMax,
        Calibration::Percentile => calibrate::CalibMethod::Percentile(*percentile),
        Calibration::Mse => calibrate::CalibMethod::Mse,
        Calibration::Entropy => calibrate::CalibMethod::Entropy,
    };
    hists
        .into_iter()
        .map(|(n, h)| {
            let r = calibrate::range(&h, method, *symmetric)
                .with_context(|| format!("calibrating {n}"))?;
            Ok((n, r))
        })
        .collect()
}

/// Runs `session` on every row of `ids` and hands each of the outputs `names` to `f`.
fn for_each_output(
    session: &mut ort::session::Session,
    ids: &Array2<i64>,
    names: &[String],
    f: &mut dyn FnMut(&str, &[f32]) -> Result<()>,
) -> Result<()> {
    for row in ids.rows() {
        let ids = row.to_owned().insert_axis(ndarray::Axis(0));
        let out = session.run(ort::inputs!["input_ids" => ort::value::Tensor::from_array(ids)?])?;
        for n in names {
            let (_, data) = out[n.as_str()].try_extract_tensor::<f32>()?;
            f(n, data)?;
        }
    }
    Ok(())
}
