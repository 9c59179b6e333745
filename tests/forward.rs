//! One numerical check over every [`Forward`] implementation (the seam of `model_io`), after
//! candle's `test_device!`: the table at the end instantiates the same tests for the plain-Rust
//! reference (itself, exactly), ONNX Runtime (the exported prefill/decode graphs, without and
//! with graph optimizations) and wgpu (f32 storage), each with its tolerance.
//!
//! Each test runs, on sharpened weights (attention peaked, see `common::sharpened`), batch 2:
//! prefill of the whole sequence (logits of every position and the present cache) against the
//! reference; the prompt through the implementation, then decode steps of 2 and 1 tokens fed
//! with the implementation's own cache, each against the reference on that cache and against
//! the implementation's own prefill at the same positions. Configs: GPT-2 and Llama tiny
//! presets (Llama untied with grouped-query attention), a heterogeneous GPT-2 and a
//! heterogeneous tied Llama with mixed GQA ratios.
//!
//! wgpu is skipped with a note when the machine has no adapter, except under CI (`CI=true`),
//! where that fails (`common::gpu_for_tests`). A new implementation (the trainer of issue 23)
//! is one more line of `forward_tests!` with its constructor and tolerance.

mod common;

use std::sync::Arc;

use common::{assert_close, gpu_for_tests, sharpened, tokens};
use lts::arch::Arch;
use lts::backend::ort::{OptLevel, Ort, OrtOptions};
use lts::backend::ort_forward::OrtForward;
use lts::backend::wgpu::model::{Capacity, GpuModel};
use lts::backend::wgpu::Precision;
use lts::model_io::{Forward, KvCache};
use lts::reference::Reference;
use lts::weights::Weights;
use lts::workload::Logits;
use ndarray::{s, ArrayD};

/// Batch rows, prompt length and tokens decoded after it in every check.
const BATCH: usize = 2;
const PROMPT: usize = 6;
const EXTRA: usize = 3;

/// How close an implementation must stay to the reference, per element.
#[derive(Clone, Copy, Debug)]
enum Tol {
    /// `|a - b| <= atol + rtol |b|` (ONNX Runtime: the tolerance of `tests/ort_vs_reference.rs`).
    Abs { atol: f32, rtol: f32 },
    /// `|a - b| <= rel (max |b| + |b|)`: relative to the tensor's scale (wgpu: the tolerance
    /// of `tests/wgpu_vs_ort.rs`; rounding grows with reduction lengths, not each element).
    Scaled { rel: f32 },
}

impl Tol {
    fn check(self, what: &str, a: ArrayD<f32>, b: ArrayD<f32>) {
        match self {
            Tol::Abs { atol, rtol } => assert_close(what, &a, &b, atol, rtol),
            Tol::Scaled { rel } => {
                let scale = b.iter().fold(0f32, |m, x| m.max(x.abs()));
                assert_close(what, &a, &b, rel * scale.max(1e-3), rel);
            }
        }
    }

    fn cache(self, what: &str, a: &KvCache, b: &KvCache) {
        assert_eq!(
            a.layers.len(),
            b.layers.len(),
            "{what}: layer counts differ"
        );
        for (i, ((ka, va), (kb, vb))) in a.layers.iter().zip(&b.layers).enumerate() {
            let (ka, kb) = (ka.clone().into_dyn(), kb.clone().into_dyn());
            self.check(&format!("{what} layer {i} key"), ka, kb);
            let (va, vb) = (va.clone().into_dyn(), vb.clone().into_dyn());
            self.check(&format!("{what} layer {i} value"), va, vb);
        }
    }
}

/// Builds an implementation of one model, or `None` when this machine cannot run it (skipped).
type Make = for<'a> fn(&'a Arch, &'a Weights) -> Option<Box<dyn Forward + 'a>>;

fn reference<'a>(arch: &'a Arch, weights: &'a Weights) -> Option<Box<dyn Forward + 'a>> {
    Some(Box::new(Reference { arch, weights }))
}

fn ort(arch: &Arch, weights: &Weights, opt_level: OptLevel) -> Option<Box<dyn Forward>> {
    let ort = Ort::load().expect("ONNX Runtime available (run `lts setup`)");
    let opts = OrtOptions {
        opt_level,
        ..OrtOptions::default()
    };
    Some(Box::new(
        OrtForward::new(&ort, arch, weights, &opts).unwrap(),
    ))
}

fn ort_disable<'a>(arch: &'a Arch, weights: &'a Weights) -> Option<Box<dyn Forward + 'a>> {
    ort(arch, weights, OptLevel::Disable)
}

fn ort_all<'a>(arch: &'a Arch, weights: &'a Weights) -> Option<Box<dyn Forward + 'a>> {
    ort(arch, weights, OptLevel::All)
}

fn wgpu_f32<'a>(arch: &'a Arch, weights: &'a Weights) -> Option<Box<dyn Forward + 'a>> {
    let gpu = Arc::new(gpu_for_tests()?);
    let cap = Capacity {
        batch: BATCH,
        tokens: PROMPT + EXTRA,
        positions: PROMPT + EXTRA,
        logits: Logits::All,
    };
    let model = GpuModel::new(gpu, arch, weights, Precision::F32, cap).unwrap();
    Some(Box::new(model))
}

/// The check of the module doc for one implementation on one arch.
fn check(make: Make, tol: Tol, arch: &Arch, seed: u64) {
    let w = sharpened(arch, seed);
    let Some(mut imp) = make(arch, &w) else {
        return;
    };
    let mut truth = Reference { arch, weights: &w };
    let n = PROMPT + EXTRA;
    let ids = tokens(arch, BATCH, n, seed as i64);
    let label = format!("{} {}", imp.name(), arch.id());
    let what = |part: &str| format!("{label}: {part}");

    let full = imp.forward(&ids, None).unwrap();
    let want = truth.forward(&ids, None).unwrap();
    assert_eq!(full.logits.dim(), (BATCH, n, arch.vocab_size));
    let logits = |o: &lts::model_io::Output| o.logits.clone().into_dyn();
    tol.check(&what("prefill logits"), logits(&full), logits(&want));
    tol.cache(&what("prefill present"), &full.present, &want.present);

    let head = ids.slice(s![.., ..PROMPT]).to_owned();
    let mut cache = imp.forward(&head, None).unwrap().present;
    let mut pos = PROMPT;
    for chunk in [2usize, 1] {
        let step = ids.slice(s![.., pos..pos + chunk]).to_owned();
        let got = imp.forward(&step, Some(&cache)).unwrap();
        let want = truth.forward(&step, Some(&cache)).unwrap();
        tol.check(
            &what(&format!("decode logits at {pos}")),
            logits(&got),
            logits(&want),
        );
        tol.cache(&what("decode present"), &got.present, &want.present);
        let own = full.logits.slice(s![.., pos..pos + chunk, ..]).to_owned();
        tol.check(
            &what(&format!("decode vs own prefill at {pos}")),
            logits(&got),
            own.into_dyn(),
        );
        cache = got.present;
        pos += chunk;
    }
    assert_eq!(cache.len(), n, "{}", what("final cache length"));
    tol.cache(&what("final cache vs prefill"), &cache, &full.present);
}

fn gpt2_heterogeneous_arch() -> Arch {
    Arch::from_json(
        r#"{"family":"gpt2","n_layer":3,"d_model":128,"d_inner":[256,512,192],
            "n_head":[2,8,4],"vocab_size":500,"n_positions":64}"#,
    )
    .unwrap()
}

fn llama_heterogeneous_tied_gqa_arch() -> Arch {
    Arch::from_json(
        r#"{"family":"llama","n_layer":3,"d_model":96,"d_inner":[256,128,192],
            "n_head":[6,4,3],"n_kv_head":[2,4,1],"vocab_size":300,"n_positions":64,
            "tie_embeddings":true,"rope_theta":100000.0}"#,
    )
    .unwrap()
}

/// One module of tests per implementation: `name: constructor, tolerance;`.
macro_rules! forward_tests {
    ($($name:ident: $make:expr, $tol:expr;)*) => {$(
        mod $name {
            use super::*;

            #[test]
            fn gpt2_tiny() {
                check($make, $tol, &Arch::preset("gpt2-tiny").unwrap(), 1);
            }

            #[test]
            fn llama_tiny_untied_gqa() {
                check($make, $tol, &Arch::preset("llama-tiny").unwrap(), 2);
            }

            #[test]
            fn gpt2_heterogeneous() {
                check($make, $tol, &gpt2_heterogeneous_arch(), 3);
            }

            #[test]
            fn llama_heterogeneous_tied_gqa() {
                check($make, $tol, &llama_heterogeneous_tied_gqa_arch(), 4);
            }
        }
    )*};
}

forward_tests! {
    reference_itself: reference, Tol::Abs { atol: 0.0, rtol: 0.0 };
    ort_unoptimized: ort_disable, Tol::Abs { atol: 1e-5, rtol: 1e-4 };
    ort_optimized: ort_all, Tol::Abs { atol: 1e-5, rtol: 1e-4 };
    wgpu: wgpu_f32, Tol::Scaled { rel: 1e-4 };
}
