//! The emitted ONNX graphs, run by ONNX Runtime, against the plain-Rust reference forward pass:
//! prefill (logits of every position and of the last one) and decode, both families,
//! heterogeneous layers, batch 2; and decode-with-cache against prefill of the full sequence.

mod common;

use common::{assert_close, cache_close, session, session_with, sharpened, tokens};
use lts::arch::Arch;
use lts::backend::ort::{infer, OptLevel};
use lts::graph::GraphKind;
use lts::reference::{self, KvCache};
use lts::weights::Weights;
use lts::workload::Logits;
use ndarray::{s, ArrayD};

/// Prefill and decode of ORT against the reference, and ORT decode vs ORT prefill.
fn check_arch(arch: &Arch, seed: u64) {
    let w = sharpened(arch, seed);
    let batch = 2;
    let (prompt, extra) = (6, 3);
    let ids = tokens(arch, batch, prompt + extra, seed as i64);
    for opt in [OptLevel::Disable, OptLevel::All] {
        let mut pre = session(arch, &w, GraphKind::Prefill, opt);
        let mut dec = session(arch, &w, GraphKind::Decode, opt);

        // Prefill of the whole sequence.
        let ort_full = infer(&mut pre, arch, &ids, None).unwrap();
        let ref_full = reference::forward(arch, &w, &ids, None).unwrap();
        assert_close(
            &format!("{} {opt:?} prefill logits", arch.id()),
            &ort_full.logits.clone().into_dyn(),
            &ref_full.logits.clone().into_dyn(),
            1e-5,
            1e-4,
        );
        cache_close("prefill present", &ort_full.present, &ref_full.present);

        // Last-position logits (the latency graph): `[batch, 1, vocab]` equal to the
        // reference's last position, and the same cache.
        let mut last = session_with(arch, &w, GraphKind::Prefill, opt, Logits::Last);
        let ort_last = infer(&mut last, arch, &ids, None).unwrap();
        assert_eq!(ort_last.logits.dim(), (batch, 1, arch.vocab_size));
        let n = prompt + extra;
        assert_close(
            &format!("{} {opt:?} prefill last-position logits", arch.id()),
            &ort_last.logits.clone().into_dyn(),
            &ref_full
                .logits
                .slice(s![.., n - 1..n, ..])
                .to_owned()
                .into_dyn(),
            1e-5,
            1e-4,
        );
        cache_close(
            "last-logits prefill present",
            &ort_last.present,
            &ref_full.present,
        );

        // Decode: prompt through the prefill graph, then the rest through the decode graph
        // (a chunk of 2, then one token), fed with ORT's own cache.
        let head = ids.slice(s![.., ..prompt]).to_owned();
        let mut cache = infer(&mut pre, arch, &head, None).unwrap().present;
        let mut pos = prompt;
        for chunk in [2usize, 1] {
            let step = ids.slice(s![.., pos..pos + chunk]).to_owned();
            let ort_step = infer(&mut dec, arch, &step, Some(&cache)).unwrap();
            let ref_step = reference::forward(arch, &w, &step, Some(&cache)).unwrap();
            assert_close(
                &format!("{} {opt:?} decode logits at {pos}", arch.id()),
                &ort_step.logits.clone().into_dyn(),
                &ref_step.logits.clone().into_dyn(),
                1e-5,
                1e-4,
            );
            // Decode-with-cache equals prefill of the full sequence at the same positions.
            let full_slice: ArrayD<f32> = ort_full
                .logits
                .slice(s![.., pos..pos + chunk, ..])
                .to_owned()
                .into_dyn();
            assert_close(
                &format!("{} {opt:?} decode vs prefill at {pos}", arch.id()),
                &ort_step.logits.clone().into_dyn(),
                &full_slice,
                1e-5,
                1e-4,
            );
            cache_close("decode present", &ort_step.present, &ref_step.present);
            cache = ort_step.present;
            pos += chunk;
        }
        assert_eq!(cache.len(), prompt + extra);
        cache_close("final cache vs prefill", &cache, &ort_full.present);

        // Decode graph with an empty cache (past_seq = 0) equals prefill.
        let empty = KvCache::empty(arch, batch);
        let from_empty = infer(&mut dec, arch, &head, Some(&empty)).unwrap();
        let pre_head = infer(&mut pre, arch, &head, None).unwrap();
        assert_close(
            "decode from empty cache vs prefill",
            &from_empty.logits.into_dyn(),
            &pre_head.logits.into_dyn(),
            1e-5,
            1e-4,
        );
    }
}

#[test]
fn gpt2_tiny_matches_reference() {
    check_arch(&Arch::preset("gpt2-tiny").unwrap(), 1);
}

#[test]
fn llama_tiny_untied_gqa_matches_reference() {
    check_arch(&Arch::preset("llama-tiny").unwrap(), 2);
}

#[test]
fn gpt2_mid_heterogeneous_matches_reference() {
    let arch = Arch::from_json(
        r#"{"family":"gpt2","n_layer":3,"d_model":128,"d_inner":[256,512,192],
            "n_head":[2,8,4],"vocab_size":500,"n_positions":64}"#,
    )
    .unwrap();
    check_arch(&arch, 3);
}

#[test]
fn llama_mid_tied_gqa_matches_reference() {
    let arch = Arch::from_json(
        r#"{"family":"llama","n_layer":3,"d_model":96,"d_inner":[256,128,192],
            "n_head":[6,4,3],"n_kv_head":[2,4,1],"vocab_size":300,"n_positions":64,
            "tie_embeddings":true,"rope_theta":100000.0}"#,
    )
    .unwrap();
    check_arch(&arch, 4);
}

#[test]
fn safetensors_weights_give_the_same_graph_outputs() {
    let arch = Arch::preset("llama-tiny").unwrap();
    let w = Weights::random(&arch, 9);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    w.save_safetensors(&path).unwrap();
    let back = Weights::from_safetensors(&arch, &path).unwrap();
    let ids = tokens(&arch, 1, 5, 0);
    let mut a = session(&arch, &w, GraphKind::Prefill, OptLevel::All);
    let mut b = session(&arch, &back, GraphKind::Prefill, OptLevel::All);
    let la = infer(&mut a, &arch, &ids, None).unwrap().logits;
    let lb = infer(&mut b, &arch, &ids, None).unwrap().logits;
    assert_eq!(la, lb);
    // And the logits actually depend on the weights.
    let other = Weights::random(&arch, 10);
    let mut c = session(&arch, &other, GraphKind::Prefill, OptLevel::All);
    let lc = infer(&mut c, &arch, &ids, None).unwrap().logits;
    assert_ne!(la, lc);
}
