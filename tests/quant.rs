//! Quantized graphs (issue 14): every scheme on both families runs in ONNX Runtime as prefill
//! and decode; decode with the cache agrees with a prefill of the whole sequence for the same
//! quantized model; fidelity against fp32 on random GPT-2 weights reaches the issue's floors
//! (int8 >= 25 dB SQNR, int4-b32 >= 15 dB); bad input gets clear errors.

mod common;

use assert_cmd::Command;
use lts::arch::Arch;
use lts::backend::ort::{infer, OptLevel, Ort, OrtOptions};
use lts::fidelity::{self as quantize, Fp32Graphs, Sequences};
use lts::graph::{self, GraphKind};
use lts::quant::{emit, Scheme};
use lts::weights::Weights;
use lts::workload::Logits;
use ndarray::{s, Array2};
use prost::Message;

const SCHEMES: &[&str] = &[
    "fp16",
    "int8-dynamic",
    "int8-dynamic:per-tensor:head",
    "int8-static:minmax",
    "int8-static:percentile",
    "int8-static:mse:sym",
    "int8-static:entropy:per-tensor:head",
    "int4:b32",
    "int4:b16:zp:head",
    // Mixed precision: the MLP multiplies stay fp32 (`mlp` names them in both families).
    "int8-static:minmax:keep=mlp",
];

fn scheme(s: &str) -> Scheme {
    Scheme::parse(s, 99.99).unwrap()
}

fn ort() -> OrtOptions {
    OrtOptions::default()
}

/// The quantized prefill (all logits) and decode graphs of `scheme`, calibrated as
/// `lts quantize` does.
fn quantized(arch: &Arch, w: &Weights, scheme: &Scheme) -> (Vec<u8>, Vec<u8>) {
    let fp32 = Fp32Graphs::build(arch, w, Logits::All, true).unwrap();
    let seqs = Sequences::seeded(arch, 4, 2, 16, 7);
    let ranges = scheme
        .needs_calibration()
        .then(|| quantize::calibrate(&fp32.prefill, scheme, &seqs.calib, &ort()).unwrap());
    let p = emit::quantize(fp32.prefill_all.clone(), scheme, ranges.as_ref()).unwrap();
    let d = emit::quantize(fp32.decode.clone().unwrap(), scheme, ranges.as_ref()).unwrap();
    (graph::to_bytes(&p), graph::to_bytes(&d))
}

fn sqnr(a: &[f32], b: &[f32]) -> f64 {
    let (mut s, mut n) = (0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        s += (*x as f64).powi(2);
        n += (*x as f64 - *y as f64).powi(2);
    }
    10.0 * (s / n.max(1e-300)).log10()
}

#[test]
fn every_scheme_runs_prefill_and_decode_and_decode_agrees_with_prefill() {
    let o = Ort::load().unwrap();
    for preset in ["gpt2-tiny", "llama-tiny"] {
        let arch = Arch::preset(preset).unwrap();
        let w = common::sharpened(&arch, 1);
        let ids = common::tokens(&arch, 2, 12, 3);
        for name in SCHEMES {
            let sc = scheme(name);
            let (p, d) = quantized(&arch, &w, &sc);
            let mut prefill = o.session(&p, &ort()).unwrap();
            let mut decode = o.session(&d, &ort()).unwrap();
            // Prefill of 11 tokens, then decode of the 12th with the cache, vs prefill of 12.
            let head = ids.slice(s![.., ..11]).to_owned();
            let last = ids.slice(s![.., 11..]).to_owned();
            let a = infer(&mut prefill, &arch, &head, None).unwrap();
            let b = infer(&mut decode, &arch, &last, Some(&a.present)).unwrap();
            let full = infer(&mut prefill, &arch, &ids, None).unwrap();
            let want = full.logits.slice(s![.., 11..12, ..]).to_owned();
            let got = b.logits.to_owned();
            let (want, got) = (want.as_slice().unwrap(), got.as_slice().unwrap());
            let q = sqnr(want, got);
            // Static ranges, fp16 and int4 weights make the model a fixed function: decode
            // equals prefill up to float summation order. Dynamic int8 quantizes each call's
            // activations with that call's range, so one token and twelve differ a little.
            // Without VNNI (x86-64 AVX2) ONNX Runtime's u8 x s8 kernels saturate 16-bit pair
            // sums, and one token saturates otherwise than twelve: measured 15.9 dB there
            // (gpt2-tiny), 25+ dB with VNNI.
            let floor = if name.starts_with("int8-dynamic") {
                if lts::quant::int8_may_saturate() {
                    12.0
                } else {
                    25.0
                }
            } else {
                60.0
            };
            assert!(
                q > floor,
                "{preset} {name}: decode vs prefill SQNR {q:.1} dB (floor {floor})"
            );
        }
    }
}

#[test]
fn fidelity_on_random_gpt2_weights_meets_the_floors() {
    // GPT-2 shape at reduced width (real init, N(0, 0.02)); fidelity does not depend on depth.
    let arch = Arch::from_json(
        r#"{"family":"gpt2","n_layer":2,"d_model":256,"d_inner":1024,"n_head":4,
            "vocab_size":2048,"n_positions":128}"#,
    )
    .unwrap();
    let w = Weights::random(&arch, 0);
    let fp32 = Fp32Graphs::build(&arch, &w, Logits::Last, false).unwrap();
    let seqs = Sequences::seeded(&arch, 8, 4, 64, 0);
    for (name, floor) in [
        ("int8-dynamic", 25.0),
        ("int8-static:minmax", 25.0),
        ("int8-static:entropy", 25.0),
        ("int4:b32", 15.0),
        ("fp16", 50.0),
    ] {
        let r = quantize::quantize_one(&arch, &fp32, &scheme(name), &seqs, &ort(), None).unwrap();
        let f = r.fidelity;
        eprintln!(
            "{name}: SQNR {:.1} dB, KLD mean {:.2e} p99 {:.2e}, top-1 {:.1}%, {} bytes vs {}",
            f.sqnr_db,
            f.kld_mean,
            f.kld_p99,
            100.0 * f.top1_agreement,
            r.model_bytes,
            r.fp32_bytes
        );
        assert!(
            f.sqnr_db >= floor,
            "{name}: SQNR {:.1} dB < {floor}",
            f.sqnr_db
        );
        assert_eq!(f.positions, 4 * 64);
        assert!(r.model_bytes < r.fp32_bytes, "{name} is not smaller");
    }
}

#[test]
fn quantized_files_are_recognised_and_timed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q");
    Command::cargo_bin("lts")
        .unwrap()
        .args([
            "quantize",
            "--preset",
            "llama-tiny",
            "--scheme",
            "int8-dynamic,int4:b32",
        ])
        .args(["--calib", "2", "--eval", "2", "--seq-len", "16", "--out"])
        .arg(&out)
        .assert()
        .success();
    let file = |kind: &str| {
        std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                let n = p.file_name().unwrap().to_string_lossy().into_owned();
                n.contains("int4-b32") && n.ends_with(&format!("{kind}.onnx"))
            })
            .unwrap()
    };
    // --prefill-only writes no decode graph.
    let only = dir.path().join("only");
    Command::cargo_bin("lts")
        .unwrap()
        .args([
            "quantize",
            "--preset",
            "llama-tiny",
            "--scheme",
            "int4:b32",
            "--prefill-only",
        ])
        .args(["--eval", "1", "--seq-len", "8", "--out"])
        .arg(&only)
        .assert()
        .success();
    let names: Vec<String> = std::fs::read_dir(&only)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.ends_with(".int4-b32.prefill.onnx")),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.ends_with(".decode.onnx")),
        "{names:?}"
    );
    let info = &graph::OnnxFile::open(&file("prefill")).unwrap().info;
    assert_eq!(info.quant, Some(scheme("int4:b32")));
    assert_eq!(info.kind, GraphKind::Prefill);
    // `lts measure --onnx` times it and records the scheme.
    let out = Command::cargo_bin("lts")
        .unwrap()
        .args([
            "measure",
            "--min-runs",
            "5",
            "--min-duration-s",
            "0.1",
            "--json",
            "--onnx",
        ])
        .arg(file("prefill"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["quant"]["scheme"], "int4");
    // Quantizing it again is refused.
    let e = Command::cargo_bin("lts")
        .unwrap()
        .args(["quantize", "--onnx"])
        .arg(file("prefill"))
        .output()
        .unwrap();
    assert!(!e.status.success());
    assert!(String::from_utf8_lossy(&e.stderr).contains("already quantized"));
    // Its fp32 weights are not available to other backends.
    let e = Command::cargo_bin("lts")
        .unwrap()
        .args(["measure", "--backend", "wgpu", "--onnx"])
        .arg(file("prefill"))
        .output()
        .unwrap();
    assert!(!e.status.success());
}

#[test]
fn measure_times_schemes_side_by_side() {
    let out = Command::cargo_bin("lts")
        .unwrap()
        .args(["measure", "--preset", "gpt2-tiny", "--seq-len", "16"])
        .args([
            "--quant",
            "fp32,int8-dynamic,int8-static:percentile,int4:b32",
        ])
        .args(["--min-runs", "5", "--min-duration-s", "0.1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "ort int8-dynamic",
        "ort int8-static:percentile",
        "ort int4:b32",
        "speedup",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
}

fn fails(args: &[&str], want: &str) {
    let out = Command::cargo_bin("lts")
        .unwrap()
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?} succeeded");
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains(want), "{args:?}: want {want:?} in {e}");
}

#[test]
fn bad_input_gets_clear_errors() {
    let q = [
        "quantize",
        "--preset",
        "gpt2-tiny",
        "--out",
        "/nonexistent/never",
        "--scheme",
    ];
    let with = |s: &'static str| q.iter().copied().chain([s]).collect::<Vec<&'static str>>();
    fails(&with("int3"), "unknown scheme `int3`");
    fails(&with("int4:b48"), "block size 48");
    fails(&with("int8-static:p=0"), "(0, 100]");
    fails(
        &with("int4:keep=down_proj"),
        "`keep=down_proj` names no weight multiply",
    );
    fails(&with("int4:keep=h."), "leaves no weight multiply");
    // Contradictory options: refused, not "the last one wins" (issue 21).
    fails(
        &with("int8-static:mse:entropy"),
        "`mse` and `entropy` both set the calibration method",
    );
    fails(
        &with("int4:b32:zp:sym"),
        "`zp` and `sym` both set the int4 zero point",
    );
    fails(
        &with("int8-dynamic:per-tensor:per-channel"),
        "`per-tensor` and `per-channel` both set the weight scale granularity",
    );
    let mut calib0 = with("int8-static");
    calib0.extend(["--calib", "0"]);
    fails(&calib0, "--calib 0");
    let mut huge = with("int8-dynamic");
    huge.extend(["--eval", "1000000000000"]);
    fails(&huge, "at most 65536 sequences");
    let mut long = [
        "quantize",
        "--preset",
        "smollm2-135m",
        "--scheme",
        "int8-dynamic",
    ]
    .to_vec();
    long.extend(["--calib", "60000", "--eval", "5000", "--seq-len", "8192"]);
    fails(&long, "tokens, above");
    let mut pct = with("int8-static:percentile");
    pct.extend(["--percentile", "101"]);
    fails(&pct, "(0, 100]");
    fails(
        &[
            "measure",
            "--preset",
            "gpt2-tiny",
            "--backend",
            "wgpu",
            "--quant",
            "int8-dynamic",
        ],
        "ONNX Runtime only",
    );
    fails(
        &[
            "measure",
            "--preset",
            "gpt2-tiny",
            "--quant",
            "int8-dynamic,int8-dynamic",
        ],
        "listed twice",
    );
    // Decode inputs of the quantized graphs are unchanged: a quantized decode graph runs on the
    // same past cache an fp32 prefill returns.
    let arch = Arch::preset("gpt2-tiny").unwrap();
    let w = Weights::random(&arch, 2);
    let fp32 = common::session(&arch, &w, GraphKind::Prefill, OptLevel::All);
    let mut fp32 = fp32;
    let ids: Array2<i64> = common::tokens(&arch, 1, 8, 0);
    let a = infer(&mut fp32, &arch, &ids, None).unwrap();
    let (_, d) = quantized(&arch, &w, &scheme("int4:b32"));
    let mut dec = Ort::load().unwrap().session(&d, &ort()).unwrap();
    let next = ids.slice(s![.., 7..]).to_owned();
    assert!(infer(&mut dec, &arch, &next, Some(&a.present)).is_ok());
}

#[test]
fn quant_bench_writes_its_table() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("qb");
    let run = || {
        Command::cargo_bin("lts")
            .unwrap()
            .args([
                "quant-bench",
                "--preset",
                "gpt2-tiny",
                "--calib",
                "2",
                "--eval",
                "2",
            ])
            .args([
                "--seq-len",
                "16",
                "--min-runs",
                "3",
                "--min-duration-s",
                "0.05",
            ])
            .args([
                "--scheme",
                "int8-dynamic,int8-static:mse:per-tensor,int4:b32:zp",
                "--out",
            ])
            .arg(&out)
            .output()
            .unwrap()
    };
    let o = run();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(out.join("quant-bench.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 5, "{csv}"); // header, fp32 and three schemes
    assert!(lines[0].starts_with("scheme,method,bits,granularity"));
    assert!(lines[1].starts_with("fp32,fp32,32"));
    assert!(lines[3].starts_with("int8-static:mse:per-tensor,mse,8,per-tensor"));
    let md = std::fs::read_to_string(out.join("quant-bench.md")).unwrap();
    assert!(
        md.contains("| int4:b32:zp | blockwise | 4 | block-32 |"),
        "{md}"
    );
    // A second run does not silently replace the first.
    let o = run();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
}

/// The int4 graph computes exactly what its dequantized weights compute: MatMulNBits against
/// the fp32 graph whose projection weights are replaced by `dequantize_int4(quantize_weight_int4(w))`
/// (the emission's layout, nibble order and zero points, not only its fidelity).
#[test]
fn int4_graph_equals_fp32_with_dequantized_weights() {
    use lts::quant::ops::{dequantize_int4, quantize_weight_int4};
    let arch = Arch::preset("llama-tiny").unwrap();
    let w = common::sharpened(&arch, 4);
    let ids = common::tokens(&arch, 1, 16, 1);
    // The last case keeps down_proj in fp32: the graph must then equal fp32 with every other
    // projection dequantized and down_proj untouched.
    for (name, zp) in [
        ("int4:b16", false),
        ("int4:b32:zp", true),
        ("int4:b16:keep=down_proj", false),
    ] {
        let block = if name.contains("b16") { 16 } else { 32 };
        let kept = name.contains("keep=down_proj");
        let mut deq = w.clone();
        for (n, t) in deq.tensors.iter_mut() {
            if kept && n.contains("down_proj") {
                continue;
            }
            let proj = [
                "q_proj",
                "k_proj",
                "v_proj",
                "o_proj",
                "gate_proj",
                "up_proj",
                "down_proj",
            ];
            if !proj.iter().any(|p| n.contains(p)) {
                continue;
            }
            // HF Linear [N, K]; the graph multiplies its transpose [K, N].
            let (rows, cols) = (t.shape[0], t.shape[1]);
            let kn: Vec<f32> = (0..cols * rows)
                .map(|i| t.data[(i % rows) * cols + i / rows])
                .collect();
            let q = quantize_weight_int4(&kn, cols, rows, block, zp).unwrap();
            let back = dequantize_int4(&q).unwrap();
            t.data = (0..rows * cols)
                .map(|i| back[(i % cols) * rows + i / cols])
                .collect();
        }
        let (p, _) = quantized(&arch, &w, &scheme(name));
        let nbits = lts::graph::onnx::ModelProto::decode(p.as_slice())
            .unwrap()
            .graph
            .unwrap()
            .node
            .iter()
            .filter(|n| n.op_type.as_deref() == Some("MatMulNBits"))
            .count();
        let per_layer = if kept { 6 } else { 7 };
        assert_eq!(nbits, per_layer * arch.n_layer, "{name}");
        let mut int4 = Ort::load().unwrap().session(&p, &ort()).unwrap();
        let mut fp32 = common::session(&arch, &deq, GraphKind::Prefill, OptLevel::All);
        let a = infer(&mut int4, &arch, &ids, None).unwrap().logits;
        let b = infer(&mut fp32, &arch, &ids, None).unwrap().logits;
        let q = sqnr(b.as_slice().unwrap(), a.as_slice().unwrap());
        assert!(
            q > 80.0,
            "{name}: MatMulNBits vs dequantized fp32: {q:.1} dB"
        );
    }
}

#[test]
fn text_without_a_tokenizer_is_refused() {
    // Without --gguf the model has no tokenizer: calibrating on seeded tokens instead of the
    // text asked for would be a silent wrong result (issue 21).
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text.txt");
    std::fs::write(&text, "some text ".repeat(100)).unwrap();
    let missing = dir.path().join("missing.txt");
    for cmd in ["quantize", "quant-bench"] {
        for t in [&text, &missing] {
            let out = Command::cargo_bin("lts")
                .unwrap()
                .args([cmd, "--preset", "gpt2-tiny", "--scheme", "int8-dynamic"])
                .args(["--eval", "1", "--seq-len", "8", "--text"])
                .arg(t)
                .arg("--out")
                .arg(dir.path().join("out"))
                .output()
                .unwrap();
            let e = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{cmd} {t:?} succeeded: {e}");
            assert!(e.contains("--text") && e.contains("--gguf"), "{cmd}: {e}");
            assert!(!dir.path().join("out").exists(), "{cmd} wrote results");
        }
    }
}

#[test]
fn measure_refuses_a_quantized_file_with_an_edited_arch() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q");
    Command::cargo_bin("lts")
        .unwrap()
        .args([
            "quantize",
            "--preset",
            "gpt2-tiny",
            "--scheme",
            "int8-dynamic",
        ])
        .args(["--eval", "1", "--seq-len", "8", "--prefill-only", "--out"])
        .arg(&out)
        .assert()
        .success();
    let file = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".int8-dynamic.prefill.onnx"))
        .unwrap();
    let model = graph::onnx::ModelProto::decode(&std::fs::read(&file).unwrap()[..]).unwrap();
    let honest = Arch::preset("gpt2-tiny").unwrap();
    let v = serde_json::to_value(&honest).unwrap();
    type Edit<'a> = &'a dyn Fn(&mut serde_json::Value);
    let edits: [(&str, Edit); 3] = [
        ("d_model", &|v| v["d_model"] = 64.into()),
        ("n_layer", &|v| {
            v["n_layer"] = 1.into();
            for k in ["d_inner", "n_head", "n_kv_head"] {
                if let Some(a) = v[k].as_array_mut() {
                    a.truncate(1);
                }
            }
        }),
        ("vocab", &|v| v["vocab_size"] = 120.into()),
    ];
    for (what, edit) in edits {
        let mut v = v.clone();
        edit(&mut v);
        let forged = Arch::from_json(&v.to_string()).unwrap();
        let mut m = model.clone();
        for p in &mut m.metadata_props {
            if p.key.as_deref() == Some("arch") {
                p.value = Some(forged.canonical_json());
            }
        }
        let tampered = dir.path().join(format!("{what}.onnx"));
        std::fs::write(&tampered, m.encode_to_vec()).unwrap();
        let o = Command::cargo_bin("lts")
            .unwrap()
            .args([
                "measure",
                "--min-runs",
                "2",
                "--min-duration-s",
                "0",
                "--onnx",
            ])
            .arg(&tampered)
            .output()
            .unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{what}: {e}");
        for want in [
            format!("{what}.onnx"),
            forged.id(),
            "metadata was edited".to_string(),
        ] {
            assert!(e.contains(&want), "{what}: want {want:?} in {e}");
        }
    }
}
