//! The emitted ONNX graphs, run by ONNX Runtime, against the plain-Rust reference forward pass:
//! prefill (logits of every position and of the last one) and decode, both families,
//! heterogeneous layers, batch 2; and decode-with-cache against prefill of the full sequence.

mod common;

use common::{assert_close, cache_close, session, session_with, sharpened, tokens};
use lts::arch::Arch;
use lts::backend::ort::{infer, OptLevel};
use lts::graph::GraphKind;
use lts::model_io::KvCache;
use lts::reference;
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

        // The generation graph: a last-position decode graph. From an empty cache it is the
        // last-position prefill (`[batch, 1, vocab]`, the same cache); on a cache, one step.
        let mut gen = session_with(arch, &w, GraphKind::Decode, opt, Logits::Last);
        let first = infer(&mut gen, arch, &ids, Some(&empty)).unwrap();
        assert_eq!(first.logits.dim(), (batch, 1, arch.vocab_size));
        assert_close(
            &format!(
                "{} {opt:?} last-position decode from an empty cache",
                arch.id()
            ),
            &first.logits.into_dyn(),
            &ort_last.logits.clone().into_dyn(),
            1e-5,
            1e-4,
        );
        cache_close(
            "generation graph present",
            &first.present,
            &ort_last.present,
        );
        let step = infer(
            &mut gen,
            arch,
            &ids.slice(s![.., n - 1..]).to_owned(),
            Some(&cache),
        )
        .unwrap()
        .logits;
        let want = reference::forward(
            arch,
            &w,
            &ids.slice(s![.., n - 1..]).to_owned(),
            Some(&cache),
        )
        .unwrap()
        .logits;
        assert_close(
            &format!("{} {opt:?} last-position decode step", arch.id()),
            &step.into_dyn(),
            &want.into_dyn(),
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

/// The measurement path hands the weights to ONNX Runtime as in-memory external data
/// (`build_models_external`, one buffer shared by the prefill and decode graphs): same outputs
/// as the self-contained graphs, both families.
#[test]
fn external_weights_give_the_same_outputs() {
    use lts::backend::ort::{Ort, OrtOptions};
    use lts::graph;
    for name in ["gpt2-tiny", "llama-tiny"] {
        let arch = Arch::preset(name).unwrap();
        let w = sharpened(&arch, 5);
        let ids = tokens(&arch, 2, 7, 1);
        let graphs = [
            (GraphKind::Prefill, Logits::Last),
            (GraphKind::Prefill, Logits::All),
        ];
        let (models, files) = graph::build_models_external(&arch, w.clone(), &graphs).unwrap();
        // The graphs themselves hold no parameter data.
        for m in &models {
            assert!(
                graph::to_bytes(m).len() < 64 * 1024,
                "{name}: graph carries the weights"
            );
        }
        let ort = Ort::load().unwrap();
        for (m, (kind, logits)) in models.iter().zip(graphs) {
            let mut ext = ort
                .session_with_files(&graph::to_bytes(m), &files, &OrtOptions::default())
                .unwrap();
            let mut emb = session_with(&arch, &w, kind, OptLevel::All, logits);
            let a = infer(&mut ext, &arch, &ids, None).unwrap();
            let b = infer(&mut emb, &arch, &ids, None).unwrap();
            assert_close(
                &format!("{name} {logits:?} external vs embedded"),
                &a.logits.into_dyn(),
                &b.logits.into_dyn(),
                1e-6,
                1e-6,
            );
            cache_close("external present", &a.present, &b.present);
        }
    }
}

/// `--mode generate` on ONNX Runtime: the greedy tokens of one run equal a plain loop over the
/// reference forward (prefill of the prompt, then one token at a time with the cache), both
/// families; and each run logs its time to first token.
#[test]
fn generation_matches_a_reference_greedy_loop() {
    use lts::backend::ort::{Ort, OrtGenerator, OrtOptions};
    use lts::backend::{FirstTokenLog, Runner};
    use lts::graph;
    use lts::workload::inputs as workload_inputs;
    use lts::workload::{Mode, Workload};
    for name in ["gpt2-tiny", "llama-tiny"] {
        let arch = Arch::preset(name).unwrap();
        let w = sharpened(&arch, 6);
        let workload = Workload {
            mode: Mode::Generate,
            batch: 2,
            seq_len: 9,
            new_tokens: 5,
            seed: 3,
            ..Workload::default()
        };
        // The one graph generation runs: a last-position decode graph (the prompt goes in
        // on an empty past).
        let graphs = lts::job::graphs_for(&workload);
        assert_eq!(graphs, [(GraphKind::Decode, Logits::Last)]);
        let (models, files) = graph::build_models_external(&arch, w.clone(), &graphs).unwrap();
        let ort = Ort::load().unwrap();
        let session = ort
            .session_with_files(&graph::to_bytes(&models[0]), &files, &OrtOptions::default())
            .unwrap();
        let log = FirstTokenLog::default();
        let mut gen = OrtGenerator::new(session, &arch, &workload, log.clone()).unwrap();
        gen.run().unwrap();
        gen.run().unwrap();
        assert_eq!(log.lock().unwrap().len(), 2);
        let got = gen.generated_tokens();
        assert_eq!(got.dim(), (2, 6));

        // Reference: greedy loop.
        let (prompt, _) = workload_inputs(&arch, &workload);
        let argmax = |l: &ndarray::Array3<f32>, b: usize| {
            let row = l.slice(s![b, l.dim().1 - 1, ..]);
            let mut best = 0;
            for (j, x) in row.iter().enumerate() {
                if *x > row[best] {
                    best = j;
                }
            }
            best as i64
        };
        let out = reference::forward(&arch, &w, &prompt, None).unwrap();
        let mut cache = out.present;
        let mut next: Vec<i64> = (0..2).map(|b| argmax(&out.logits, b)).collect();
        let mut want = vec![next.clone()];
        for _ in 0..workload.new_tokens {
            let ids = ndarray::Array2::from_shape_fn((2, 1), |(b, _)| next[b]);
            let o = reference::forward(&arch, &w, &ids, Some(&cache)).unwrap();
            next = (0..2).map(|b| argmax(&o.logits, b)).collect();
            want.push(next.clone());
            cache = o.present;
        }
        let want = ndarray::Array2::from_shape_fn((2, 6), |(b, t)| want[t][b]);
        assert_eq!(got, want, "{name}: greedy tokens differ from the reference");
        // With untied embeddings the sequence is not one token repeated, so a wrong token fed
        // back would show. (A tied random model tends to predict its input token again.)
        if !arch.tie_embeddings {
            assert!(
                got.row(0).iter().any(|&t| t != got[[0, 0]]),
                "{name}: degenerate generation {got:?}"
            );
        }
    }
}
