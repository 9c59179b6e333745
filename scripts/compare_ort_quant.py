#!/usr/bin/env python3
"""Cross-check `lts quantize` against ONNX Runtime's own quantizer on the same fp32 ONNX file.

What it checks (issue 14, item 4)
  For each preset (default gpt2-small and smollm2-135m, random weights, --seed 0):
  1. `lts export --kind prefill --logits all` writes the fp32 prefill graph
     (input_ids [batch, seq] -> logits [batch, seq, vocab] + present.*).
  2. `lts quantize --onnx FP32 --scheme int8-dynamic,int8-dynamic:head,int8-static:minmax,
     int8-static:entropy --logits all` writes OUR quantized prefill graphs (its own fidelity
     numbers are shown as "lts says", for information only). `:head` also quantizes the LM head,
     as ORT's default dynamic call does.
  3. ONNX Runtime's tool quantizes the same fp32 file (quantize_dynamic: a rewritten copy with
     identical logits when the head is tied, see "Tied head"), in two flavours:
       ort-default  what a user gets from the documented call:
                    quantize_dynamic(per_channel=True, weight_type=QInt8) with its default op
                    types (MatMul with a constant B, and Gather: the token embedding table is
                    quantized per-tensor and dequantized after the lookup; and it turns the Gemm
                    LM head into a MatMul, so the head is quantized too; see "Tied head");
                    quantize_static(QDQ, per_channel=True, QUInt8 activations, QInt8 weights,
                    MinMax / Entropy) with op_types_to_quantize=["MatMul"]: ORT's full default op
                    list fails on these graphs (KeyError on the GELU constant 'inner_scale' when it
                    tries to QDQ the Mul initializers), and leaving Gemm out keeps the head fp32 as
                    ours does. In QDQ mode ORT then quantizes EVERY MatMul (also the activation x
                    activation ones, q.k^T and softmax.v) and the MatMul outputs too
                    (MatMulConstBOnly is ignored by the QDQ quantizer).
       ort-matched  the same ORT calls restricted to exactly the tensors ours quantizes: the
                    MatMuls whose B is a weight (nodes_to_quantize), their activation input and
                    the weight, no output QDQ (OpTypesToExcludeOutputQuantization=["MatMul"]);
                    dynamic: op_types_to_quantize=["MatMul"] (no embedding Gather).
                    This is the apples-to-apples pair the verdict uses (for entropy:
                    ort-matched:int8-static-entropy2048, see "Entropy" below).
     quantize_dynamic cannot take lts's file as is when the head is tied (see "Tied head" below).
  4. Every model (fp32, ours, ORT's) is evaluated HERE with onnxruntime on the same --eval
     sequences of --seq-len seeded random tokens, all positions, so both tools are measured the
     same way, and timed here, interleaved, with the LTS protocol.

How to run
  python3 scripts/compare_ort_quant.py                        # gpt2-small + smollm2-135m
  python3 scripts/compare_ort_quant.py --presets gpt2-small --rounds 30 --json out.json
  python3 scripts/compare_ort_quant.py --quick                # gpt2-tiny + llama-tiny, seconds
  Needs: pip install -r scripts/compare_ort_quant_requirements.txt (onnxruntime==1.31.1, onnx,
  numpy) and an `lts` binary with the `quantize` subcommand (--lts; by default
  target/release/lts when it is newer than src/, else target/debug/lts).
  Exit code: 0 when every apples-to-apples verdict (* below) passes, 1 otherwise, 2 on a setup
  error. Expect about 10 minutes per 125M-parameter preset on 2 cores (ORT's Python entropy
  calibrator with 2048 bins is the slowest part); all files stay under --work.

What each number means (all vs the fp32 file's logits on the evaluation sequences, every
position; statistics in float64)
  bytes / ratio  size of the prefill .onnx file, and fp32 bytes / this file's bytes (4.0 = 4x smaller)
  SQNR dB        10 log10( sum ref^2 / sum (ref - q)^2 ) over every logit
  KLD mean/p99   KL(softmax(fp32) || softmax(quant)) per position: mean and 99th percentile
  top-1 %        positions whose argmax matches fp32's
  max err        largest |ref - q| over every logit
  ms / speedup   median ms of one prefill of 1 x seq-len tokens (1 intra-op thread, 1 inter-op,
                 sequential, ORT_ENABLE_ALL, CPU EP), and fp32 median / this median. Rounds are
                 interleaved: each round runs every model --runs-per-round times, round-robin,
                 starting one model later each round, so drift of the shared machine hits all
                 models alike. A pair's latency ratio is the median over rounds of
                 (ours round median / ORT round median) with a bootstrap 95% interval; "spread" is
                 the interquartile range of those per-round ratios.
  fused ops      quantized op types in ORT's OPTIMIZED graph (SessionOptions.optimized_model_filepath,
                 ORT_ENABLE_ALL): what ORT actually runs (DynamicQuantizeMatMul, MatMulIntegerToFloat,
                 QLinearMatMul, MatMulInteger, DynamicQuantizeLinear, QuantizeLinear, ...).
Verdict per pair (ours vs ORT, same method): fidelity OK when ours SQNR >= ORT SQNR - 0.5 dB;
latency OK ("not slower beyond noise") when the lower end of the 95% interval of the paired
ratio ours/ORT is <= 1 + --latency-tol (default 0). The pairs that decide PASS / FAIL (marked *):
  lts:int8-dynamic        vs ort-matched:int8-dynamic              (head fp32 in both)
  lts:int8-dynamic-head   vs ort-default:int8-dynamic              (head int8 in both; ORT also
                                                                    quantizes the embedding table)
  lts:int8-static-minmax  vs ort-matched:int8-static-minmax
  lts:int8-static-entropy vs ort-matched:int8-static-entropy2048   (a real KL search, see below)
Other pairs are printed for information. For static pairs the script also compares the
activation ranges the two calibrations chose (width of each QuantizeLinear's uint8 range, ours /
ORT's, over the activations both quantize).

Why some differences are expected
  - Calibration data differ: `lts quantize` draws its own seeded random tokens (--input-seed) and
    takes no token file, so ORT is calibrated here on other seeded uniform tokens (numpy, same
    count and length, same distribution). For random-weight models this does not matter beyond
    noise. The EVALUATION data are identical for every model (generated here, disjoint seeds).
  - Entropy: ORT's EntropyCalibrater defaults are num_bins=128, num_quantized_bins=128. Its KL
    search then has a single candidate threshold, the whole (symmetric, +-max|x|) histogram, which
    ORT finally clamps to [min, max]: ORT "Entropy" with defaults IS MinMax (identical ranges; the
    script checks this on the two calibration caches and prints it). quantize_static's
    extra_options cannot change it: it forwards only CalibTensorRangeSymmetric,
    CalibMovingAverage(Constant), CalibMaxIntermediateOutputs and CalibPercentile to the
    calibrator, never num_bins / num_quantized_bins. So this script also builds ORT's
    EntropyCalibrater directly (create_calibrator, num_bins=2048, num_quantized_bins=128,
    TensorRT's setting), saves its ranges as a calibration cache and hands that to
    quantize_static(calibration_cache_path=...): "ort-matched:int8-static-entropy2048". That one,
    a real KL search, is the apples-to-apples partner of lts's entropy (ORT chooses a symmetric
    threshold, then clamps each side to the observed min / max).
  - The LM head (tied to the embedding in the GPT-2 and SmolLM2 presets) is fp32 in
    lts:int8-dynamic, lts static, every ort-matched and every ORT static model; int8 in
    lts:int8-dynamic-head and ort-default:int8-dynamic. At 128 positions the head is a large part
    of the prefill time, so only pairs that agree on the head are comparable in latency.
    ort-default:int8-dynamic also stores the embedding table as int8 (per-tensor) where lts :head
    keeps it fp32 beside an int8 copy for the head: ORT's file is smaller.
  - Tied head: lts writes the tied LM head as Gemm(transB=1) reading the embedding table the
    token Gather reads. quantize_dynamic rewrites every Gemm into a MatMul and transposes B IN
    PLACE ("assume B is not used by any other node"), so the Gather then reads a [d, vocab] table:
    ORT_ENABLE_ALL refuses the file (ShapeInferenceError at the embedding Add) and lower levels
    compute garbage. So quantize_dynamic gets a rewritten fp32 copy, checked to give the same
    logits: ort-default the "untied" one (the head reads its own copy of the table, as in an
    untied export: ORT then quantizes the head too, and the embedding Gather per-tensor; that is
    what ORT does by default and what the issue's reference figure, 4x smaller, reflects);
    ort-matched the "transposed" one (MatMul(x, Transpose(table)): B is no constant, the head
    stays fp32 and the file keeps one table, as ours). quantize_static does no Gemm rewrite and
    gets the original file. An untied arch (llama-tiny) needs no rewrite, but quantize_dynamic
    still turns its Gemm head into a MatMul, quantized in ort-default, excluded in ort-matched.
  - No ORT pre-processing (quant_pre_process) is run: both tools get the identical file.
"""

import argparse
import collections
import contextlib
import glob
import json
import logging
import math
import os
import shutil
import statistics
import subprocess
import sys
import time

OURS_SCHEMES = ["int8-dynamic", "int8-dynamic:head", "int8-static:minmax", "int8-static:entropy"]
# ours -> [ORT models to compare with]; the first one is the apples-to-apples pair of the verdict.
PAIRS = {
    "int8-dynamic": ["ort-matched:int8-dynamic", "ort-default:int8-dynamic"],
    # ORT's default dynamic call also quantizes the (untied) head: compare with ours + :head.
    "int8-dynamic-head": ["ort-default:int8-dynamic"],
    "int8-static-minmax": ["ort-matched:int8-static-minmax", "ort-default:int8-static-minmax"],
    "int8-static-entropy": ["ort-matched:int8-static-entropy2048", "ort-matched:int8-static-entropy",
                            "ort-default:int8-static-entropy"],
}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- lts side

def newest_source_mtime():
    newest = 0.0
    for root in ("src", "benches", "tests"):
        for dirpath, _, files in os.walk(os.path.join(REPO, root)):
            for f in files:
                newest = max(newest, os.path.getmtime(os.path.join(dirpath, f)))
    for f in ("Cargo.toml", "Cargo.lock"):
        p = os.path.join(REPO, f)
        if os.path.exists(p):
            newest = max(newest, os.path.getmtime(p))
    return newest


def has_quantize(lts):
    r = subprocess.run([lts, "quantize", "--help"], capture_output=True, text=True)
    return r.returncode == 0


def pick_lts():
    """target/release/lts when newer than the sources and it knows `quantize`, else debug."""
    release, debug = (os.path.join(REPO, "target", k, "lts") for k in ("release", "debug"))
    ok = {c: os.path.exists(c) and has_quantize(c) for c in (release, debug)}
    if ok[release] and os.path.getmtime(release) >= newest_source_mtime():
        return release
    for c in (debug, release):
        if ok[c]:
            if os.path.getmtime(c) < newest_source_mtime():
                log(f"warning: {c} is older than the sources")
            return c
    return None


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-4000:]}")
    return r.stdout


def lts_export(lts, preset, seed, out):
    shutil.rmtree(out, ignore_errors=True)
    run([lts, "export", "--preset", preset, "--kind", "prefill", "--logits", "all",
         "--seed", str(seed), "--out", out, "--force"])
    onnx_path = glob.glob(os.path.join(out, "*.prefill.onnx"))[0]
    arch = json.load(open(glob.glob(os.path.join(out, "*.arch.json"))[0]))
    arch_id = os.path.basename(onnx_path)[: -len(".prefill.onnx")]
    return onnx_path, arch, arch_id


def lts_quantize(lts, fp32, arch_id, calib, n_eval, seq_len, out):
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    stdout = run([lts, "quantize", "--onnx", fp32, "--scheme", ",".join(OURS_SCHEMES),
                  "--logits", "all", "--calib", str(calib), "--eval", str(n_eval),
                  "--seq-len", str(seq_len), "--out", out, "--force", "--json"])
    wall = time.perf_counter() - t0
    rows = json.loads(stdout)
    res = {}
    for row in rows:
        slug = row["name"].replace(":", "-")
        path = os.path.join(out, f"{arch_id}.{slug}.prefill.onnx")
        if not os.path.exists(path):
            path = next(f for f in row["files"] if f.endswith(".prefill.onnx"))
        res[slug] = {"path": path, "reported": row}
    return res, wall


# ---------------------------------------------------------------- ORT side

class Reader:
    """CalibrationDataReader over a fixed list of [1, seq] int64 token arrays."""

    def __init__(self, ids):
        self.ids = ids
        self.i = 0

    def get_next(self):
        if self.i >= len(self.ids):
            return None
        self.i += 1
        return {"input_ids": self.ids[self.i - 1][None, :]}

    def rewind(self):
        self.i = 0

    def __len__(self):
        return len(self.ids)


@contextlib.contextmanager
def quiet(logfile):
    """ORT's quantizer prints progress with print() and logging: send both to a log file."""
    root = logging.getLogger()
    handler = logging.FileHandler(logfile)
    old_handlers, old_level = root.handlers[:], root.level
    root.handlers = [handler]
    root.setLevel(logging.WARNING)
    with open(logfile, "a") as f, contextlib.redirect_stdout(f):
        try:
            yield
        finally:
            root.handlers = old_handlers
            root.setLevel(old_level)
            handler.close()


def weight_matmuls(fp32):
    import onnx
    m = onnx.load(fp32, load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    names = [n.name for n in m.graph.node if n.op_type == "MatMul" and n.input[1] in inits]
    if any(not n for n in names):
        raise RuntimeError("a weight MatMul has no node name: ort-matched needs names")
    return names


def tied_head_gemms(model):
    """Gemm nodes (transB=1) whose B initializer is also read by another node (tied embedding)."""
    inits = {i.name for i in model.graph.initializer}
    users = collections.Counter(x for n in model.graph.node for x in n.input)
    out = []
    for n in model.graph.node:
        if n.op_type == "Gemm" and len(n.input) > 1 and n.input[1] in inits and users[n.input[1]] > 1:
            attrs = {a.name: a for a in n.attribute}
            if "transB" in attrs and attrs["transB"].i == 1:
                out.append(n)
    return out


def prepare_for_dynamic(fp32, out):
    """quantize_dynamic rewrites every Gemm into MatMul and, for transB=1, TRANSPOSES B IN PLACE
    ("assume B is not used by any other node", onnx_model.py). With a tied head that initializer
    is also the embedding table of the Gather, so ORT's output is broken (ORT_ENABLE_ALL refuses
    it: ShapeInferenceError at the embedding Add). Two semantically identical fp32 rewrites avoid
    that: 'untied' gives the head its own copy of the table (ORT then quantizes it, as it would on
    an untied export); 'transposed' reads the table through a Transpose node into a MatMul (B is
    not a constant, so ORT leaves the head fp32 and the file keeps one table, as ours does).
    Returns {kind: path}; the original file when there is no tied Gemm head."""
    import onnx
    from onnx import helper, numpy_helper
    m = onnx.load(fp32)
    tied = tied_head_gemms(m)
    if not tied:
        return {"untied": fp32, "transposed": fp32}, []
    paths = {}
    for kind in ("untied", "transposed"):
        m = onnx.load(fp32)
        inits = {i.name: i for i in m.graph.initializer}
        nodes = []
        for n in m.graph.node:
            if n.name in {t.name for t in tied}:
                b = n.input[1]
                if kind == "untied":
                    copy = numpy_helper.from_array(numpy_helper.to_array(inits[b]), b + ".head_copy")
                    m.graph.initializer.append(copy)
                    n.input[1] = copy.name
                    nodes.append(n)
                else:
                    at = {a.name: a for a in n.attribute}
                    if ("alpha" in at and at["alpha"].f != 1.0) or ("beta" in at and at["beta"].f != 1.0) \
                            or ("transA" in at and at["transA"].i != 0):
                        raise RuntimeError(f"{n.name}: Gemm with alpha/beta/transA not handled")
                    t = helper.make_node("Transpose", [b], [b + ".T"], name=n.name + ".transpose_b", perm=[1, 0])
                    mm_out = n.output[0] if len(n.input) == 2 else n.output[0] + ".mm"
                    mm = helper.make_node("MatMul", [n.input[0], b + ".T"], [mm_out], name=n.name)
                    nodes += [t, mm]
                    if len(n.input) > 2:
                        nodes.append(helper.make_node("Add", [mm_out, n.input[2]], [n.output[0]],
                                                      name=n.name + ".bias"))
            else:
                nodes.append(n)
        del m.graph.node[:]
        m.graph.node.extend(nodes)
        path = os.path.join(out, os.path.basename(fp32).replace(".prefill.onnx", f".{kind}.prefill.onnx"))
        onnx.save(m, path)
        paths[kind] = path
    return paths, [t.name for t in tied]


def ort_quantize(fp32, out, calib_ids, logfile, flavours):
    import onnx
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_dynamic, quantize_static)
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data
    from pathlib import Path

    os.makedirs(out, exist_ok=True)
    wm = weight_matmuls(fp32)
    res, info = {}, {"weight_matmuls": len(wm)}

    def timed(name, fn):
        t0 = time.perf_counter()
        with quiet(logfile):
            fn()
        res[name] = {"path": os.path.join(out, name.replace(":", ".") + ".onnx"),
                     "quantize_s": time.perf_counter() - t0}
        log(f"  {name}: {res[name]['quantize_s']:.1f} s")

    def p(name):
        return os.path.join(out, name.replace(":", ".") + ".onnx")

    # dynamic (on a rewritten fp32 copy when the head is tied, see prepare_for_dynamic)
    dyn_in, tied = prepare_for_dynamic(fp32, out)
    info["tied_head_gemms"] = tied
    info["dynamic_inputs"] = dyn_in
    heads = [n.name for n in onnx.load(fp32, load_external_data=False).graph.node if n.op_type == "Gemm"]
    if "default" in flavours:
        timed("ort-default:int8-dynamic", lambda: quantize_dynamic(
            dyn_in["untied"], p("ort-default:int8-dynamic"), per_channel=True,
            weight_type=QuantType.QInt8))
        res["ort-default:int8-dynamic"]["input"] = dyn_in["untied"]
    if "matched" in flavours:
        # quantize_dynamic turns the (untied) Gemm head into <name>_MatMul: exclude it too.
        timed("ort-matched:int8-dynamic", lambda: quantize_dynamic(
            dyn_in["transposed"], p("ort-matched:int8-dynamic"), per_channel=True,
            weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
            nodes_to_exclude=heads + [h + "_MatMul" for h in heads]))
        res["ort-matched:int8-dynamic"]["input"] = dyn_in["transposed"]

    common = dict(quant_format=QuantFormat.QDQ, per_channel=True,
                  activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                  op_types_to_quantize=["MatMul"])
    matched = dict(nodes_to_quantize=wm,
                   extra_options={"OpTypesToExcludeOutputQuantization": ["MatMul"]})
    caches = {}
    for method, tag in ((CalibrationMethod.MinMax, "minmax"), (CalibrationMethod.Entropy, "entropy")):
        cache = os.path.join(out, f"calib.{tag}.json")
        if os.path.exists(cache):
            os.remove(cache)
        caches[tag] = cache
        # The first call calibrates through quantize_static's own path (reader) and saves the
        # ranges; the second flavour reuses them (same op types calibrated: MatMul in/outputs).
        first = True
        for flav in ("default", "matched"):
            if flav not in flavours:
                continue
            name = f"ort-{flav}:int8-static-{tag}"
            kw = dict(common, **(matched if flav == "matched" else {}))
            reader = Reader(calib_ids) if first else None
            timed(name, lambda: quantize_static(fp32, p(name), reader, calibrate_method=method,
                                                calibration_cache_path=cache, **kw))
            first = False

    # Entropy with TensorRT-like bins: not reachable through quantize_static's extra_options.
    if "matched" in flavours:
        cache = os.path.join(out, "calib.entropy2048.json")
        name = "ort-matched:int8-static-entropy2048"

        def ent2048():
            cal = create_calibrator(Path(fp32), ["MatMul"],
                                    augmented_model_path=os.path.join(out, "augmented.onnx"),
                                    calibrate_method=CalibrationMethod.Entropy,
                                    extra_options={"num_bins": 2048, "num_quantized_bins": 128})
            cal.collect_data(Reader(calib_ids))
            save_tensors_data(cal.compute_data(), cache)
            del cal
            quantize_static(fp32, p(name), None, calibrate_method=CalibrationMethod.Entropy,
                            calibration_cache_path=cache, **dict(common, **matched))
        timed(name, ent2048)
        caches["entropy2048"] = cache
    info["ranges"] = compare_ranges(caches)
    for f in glob.glob(os.path.join(out, "augmented*.onnx")):
        os.remove(f)
    return res, info


def compare_ranges(caches):
    """How ORT's Entropy ranges relate to its MinMax ranges, tensor by tensor."""
    from onnxruntime.quantization.calibrate import load_tensors_data
    import numpy as np
    if "minmax" not in caches or not os.path.exists(caches["minmax"]):
        return None

    def rng(td):
        return tuple(float(np.asarray(v, dtype=np.float64).reshape(-1)[0]) for v in td.range_value)

    mm = load_tensors_data(caches["minmax"])
    out = {}
    for tag in ("entropy", "entropy2048"):
        if tag not in caches or not os.path.exists(caches[tag]):
            continue
        ent = load_tensors_data(caches[tag])
        n = same = 0
        widths = []
        for name, td in mm.items():
            if name not in ent:
                continue
            lo, hi = rng(td)
            elo, ehi = rng(ent[name])
            n += 1
            same += int(lo == elo and hi == ehi)
            if hi > lo:
                widths.append((ehi - elo) / (hi - lo))
        out[tag] = {"tensors": n, "equal_to_minmax": same,
                    "median_width_over_minmax": statistics.median(widths) if widths else None,
                    "min_width_over_minmax": min(widths) if widths else None}
    return out


# ---------------------------------------------------------------- evaluation

def session(path, optimized=None):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if optimized:
        so.optimized_model_filepath = optimized
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def is_quant_op(op):
    return ("Quant" in op or "Integer" in op or op.startswith("QLinear") or op in
            ("QGemm", "QAttention", "MatMulNBits", "QOrderedMatMul") or "Dequant" in op)


def optimized_ops(path, tmpdir):
    """Quantized op types (and the float matmuls left) in ORT's optimized graph."""
    import onnx
    opt = os.path.join(tmpdir, "optimized." + os.path.basename(path))
    s = session(path, optimized=opt)
    del s
    m = onnx.load(opt, load_external_data=False)
    c = collections.Counter(n.op_type for n in m.graph.node)
    for f in glob.glob(opt + "*"):
        os.remove(f)
    quant = {k: v for k, v in sorted(c.items()) if is_quant_op(k)}
    floatmm = {k: v for k, v in sorted(c.items()) if k in ("MatMul", "FusedMatMul", "Gemm")}
    return {"quant": quant, "float_matmul": floatmm}


def log_softmax64(x):
    import numpy as np
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))


def fidelity(ref_logits, sess, eval_ids):
    """SQNR, KLD mean/p99, top-1, max err of one model vs the fp32 logits (list per sequence)."""
    import numpy as np
    names = [o.name for o in sess.get_outputs()]
    li = names.index("logits")
    sig = err = 0.0
    maxerr = 0.0
    kls, agree, n = [], 0, 0
    for ref, ids in zip(ref_logits, eval_ids):
        q = sess.run(names, {"input_ids": ids[None, :]})[li][0]
        r64, q64 = ref.astype(np.float64), q.astype(np.float64)
        sig += float((r64 * r64).sum())
        d = r64 - q64
        err += float((d * d).sum())
        maxerr = max(maxerr, float(np.abs(d).max()))
        lp, lq = log_softmax64(ref), log_softmax64(q)
        kls.append((np.exp(lp) * (lp - lq)).sum(axis=-1))
        agree += int((ref.argmax(-1) == q.argmax(-1)).sum())
        n += ref.shape[0]
    kl = np.concatenate(kls)
    return {"sqnr_db": 10 * math.log10(sig / err) if err > 0 else float("inf"),
            "kld_mean": float(kl.mean()), "kld_p99": float(np.percentile(kl, 99)),
            "top1_pct": 100.0 * agree / n, "max_abs_error": maxerr, "positions": n}


def latency(sessions, ids, rounds, runs_per_round, warmup):
    """Interleaved rounds, rotating start. Returns {name: [[ms per run] per round]}."""
    import onnxruntime as ort
    feeds = {"input_ids": ort.OrtValue.ortvalue_from_numpy(ids[None, :])}
    names = list(sessions)
    outs = {k: [o.name for o in s.get_outputs()] for k, s in sessions.items()}
    for k in names:
        for _ in range(warmup):
            sessions[k].run_with_ort_values(outs[k], feeds)
    samples = {k: [] for k in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for k in order:
            s, o, ms = sessions[k], outs[k], []
            for _ in range(runs_per_round):
                t0 = time.perf_counter()
                s.run_with_ort_values(o, feeds)
                ms.append((time.perf_counter() - t0) * 1e3)
            samples[k].append(ms)
    return samples


def quartiles(xs):
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[2]


def paired(samples, a, b, seed=0):
    """Median over rounds of (a round median / b round median), bootstrap 95% CI, IQR."""
    import numpy as np
    ra = [statistics.median(x) for x in samples[a]]
    rb = [statistics.median(x) for x in samples[b]]
    ratios = np.array([x / y for x, y in zip(ra, rb)])
    rng = np.random.default_rng(seed)
    boots = np.median(rng.choice(ratios, size=(2000, len(ratios)), replace=True), axis=1)
    q1, q3 = quartiles(list(ratios))
    return {"ratio": float(np.median(ratios)), "ci95": [float(np.percentile(boots, 2.5)),
                                                        float(np.percentile(boots, 97.5))],
            "iqr": [q1, q3]}


def activation_ranges(ours, theirs):
    """Width of each activation's uint8 range (255 x scale of its QuantizeLinear), ours / ORT's,
    over the activations both quantize (a direct look at the calibration results)."""
    import onnx
    from onnx import numpy_helper

    def widths(path):
        m = onnx.load(path)
        inits = {i.name: i for i in m.graph.initializer}
        consts = {n.output[0]: n.attribute[0].t for n in m.graph.node if n.op_type == "Constant"}
        out = {}
        for n in m.graph.node:
            if n.op_type == "QuantizeLinear" and n.input[0] not in inits:
                t = inits.get(n.input[1]) or consts.get(n.input[1])
                if t is not None:
                    out[n.input[0]] = 255.0 * float(numpy_helper.to_array(t).reshape(-1)[0])
        return out

    a, b = widths(ours), widths(theirs)
    r = sorted(a[k] / b[k] for k in a if k in b and b[k] > 0)
    if not r:
        return None
    return {"tensors": len(r), "median": statistics.median(r), "min": r[0], "max": r[-1],
            "narrower_pct": 100.0 * sum(x < 0.999 for x in r) / len(r),
            "wider_pct": 100.0 * sum(x > 1.001 for x in r) / len(r)}


# ---------------------------------------------------------------- driver

def fmt_ops(d):
    short = {"DynamicQuantizeMatMul": "DQMatMul", "MatMulIntegerToFloat": "MMInt2Float",
             "DynamicQuantizeLinear": "DQLinear", "QuantizeLinear": "Q", "DequantizeLinear": "DQ",
             "MatMulInteger": "MMInteger", "QLinearMatMul": "QLinearMatMul"}
    return " ".join(f"{short.get(k, k)}x{v}" for k, v in d.items()) or "-"


def compare_preset(args, preset, lts):
    import numpy as np
    import onnxruntime as ort
    work = os.path.join(args.work, preset)
    os.makedirs(work, exist_ok=True)
    logfile = os.path.join(work, "ort_quantize.log")
    log(f"== {preset}: export")
    fp32, arch, arch_id = lts_export(lts, preset, args.seed, os.path.join(work, "fp32"))
    vocab, seq_len = arch["vocab_size"], min(args.seq_len, arch["n_positions"])
    fp32_bytes = os.path.getsize(fp32)

    log(f"== {preset}: lts quantize ({os.path.relpath(lts, REPO) if lts.startswith(REPO) else lts})")
    ours, ours_wall = lts_quantize(lts, fp32, arch_id, args.calib, args.eval, seq_len,
                                   os.path.join(work, "lts"))
    log(f"  {ours_wall:.1f} s (calibration, quantization and its own fidelity pass)")

    # Our own token ids for ORT's calibration and for everyone's evaluation (disjoint seeds).
    calib_ids = list(np.random.default_rng(1000 + args.input_seed).integers(
        0, vocab, size=(args.calib, seq_len), dtype=np.int64))
    eval_ids = list(np.random.default_rng(2000 + args.input_seed).integers(
        0, vocab, size=(args.eval, seq_len), dtype=np.int64))
    bench_ids = np.random.default_rng(3000 + args.input_seed).integers(
        0, vocab, size=seq_len, dtype=np.int64)

    log(f"== {preset}: onnxruntime.quantization {ort.__version__}")
    theirs, ort_info = ort_quantize(fp32, os.path.join(work, "ort"), calib_ids, logfile,
                                    args.ort_flavours)

    # The rewritten fp32 inputs of quantize_dynamic must compute the same logits as the original.
    rewrites = {}
    for kind, path in ort_info["dynamic_inputs"].items():
        if path != fp32:
            a = session(fp32).run(["logits"], {"input_ids": eval_ids[0][None, :]})[0]
            b = session(path).run(["logits"], {"input_ids": eval_ids[0][None, :]})[0]
            rewrites[kind] = {"path": path, "bytes": os.path.getsize(path),
                              "max_abs_diff_vs_fp32": float(np.abs(a - b).max())}
    ort_info["dynamic_input_check"] = rewrites

    models = {"fp32": {"path": fp32}}
    for slug in ours:
        models[f"lts:{slug}"] = {"path": ours[slug]["path"], "lts_reported": ours[slug]["reported"]}
    for name in theirs:
        models[name] = dict(theirs[name])

    log(f"== {preset}: optimized graphs")
    for name, m in models.items():
        m["bytes"] = os.path.getsize(m["path"])
        m["ratio"] = fp32_bytes / m["bytes"]
        m["ops"] = optimized_ops(m["path"], work) if name != "fp32" else {"quant": {}, "float_matmul": {}}

    log(f"== {preset}: fidelity on {args.eval} x {seq_len} tokens")
    sessions = {name: session(m["path"]) for name, m in models.items()}
    ref_sess = sessions["fp32"]
    li = [o.name for o in ref_sess.get_outputs()].index("logits")
    ref_logits = [ref_sess.run(None, {"input_ids": ids[None, :]})[li][0] for ids in eval_ids]
    for name, m in models.items():
        if name != "fp32":
            m["fidelity"] = fidelity(ref_logits, sessions[name], eval_ids)
    del ref_logits

    log(f"== {preset}: latency, {args.rounds} rounds x {args.runs_per_round} runs x {len(models)} models")
    samples = latency(sessions, bench_ids, args.rounds, args.runs_per_round, args.warmup)
    for name, m in models.items():
        flat = [x for r in samples[name] for x in r]
        rm = [statistics.median(r) for r in samples[name]]
        q1, q3 = quartiles(rm)
        m["median_ms"] = statistics.median(flat)
        m["round_iqr_pct"] = 100 * (q3 - q1) / statistics.median(rm)
        m["samples_ms"] = samples[name]
    for name, m in models.items():
        m["speedup"] = models["fp32"]["median_ms"] / m["median_ms"]
        m["vs_fp32"] = paired(samples, "fp32", name) if name != "fp32" else None
    del sessions

    verdicts = []
    for slug in ours:
        for i, ref in enumerate(PAIRS.get(slug, [])):
            if ref not in models:
                continue
            a, b = models[f"lts:{slug}"], models[ref]
            lat = paired(samples, f"lts:{slug}", ref)
            fid_ok = a["fidelity"]["sqnr_db"] >= b["fidelity"]["sqnr_db"] - 0.5
            lat_ok = lat["ci95"][0] <= 1.0 + args.latency_tol
            ranges = activation_ranges(a["path"], b["path"]) if "static" in slug else None
            verdicts.append({"ours": f"lts:{slug}", "ort": ref, "primary": i == 0,
                             "activation_width_ours_over_ort": ranges,
                             "sqnr_delta_db": a["fidelity"]["sqnr_db"] - b["fidelity"]["sqnr_db"],
                             "fidelity_ok": fid_ok, "latency": lat, "latency_ok": lat_ok})
    return {"preset": preset, "arch_id": arch_id, "arch": arch, "seq_len": seq_len,
            "fp32_bytes": fp32_bytes, "lts": lts, "lts_quantize_wall_s": ours_wall,
            "ort_version": ort.__version__, "ort_info": ort_info, "models": models,
            "verdicts": verdicts}


def print_report(r):
    print(f"\n### {r['preset']} ({r['arch_id']}), seq {r['seq_len']}, fp32 {r['fp32_bytes']:,} bytes, "
          f"onnxruntime {r['ort_version']}")
    hdr = (f"{'model':38} {'bytes':>12} {'ratio':>5} {'SQNR dB':>7} {'KLD mean':>9} {'KLD p99':>9} "
           f"{'top-1 %':>7} {'max err':>8} {'ms':>8} {'iqr%':>5} {'speedup':>7}  fused ops (ORT optimized graph)")
    print(hdr)
    print("-" * len(hdr))
    for name, m in r["models"].items():
        f = m.get("fidelity")
        fid = (f"{f['sqnr_db']:7.2f} {f['kld_mean']:9.2e} {f['kld_p99']:9.2e} {f['top1_pct']:7.2f} "
               f"{f['max_abs_error']:8.4f}") if f else f"{'':7} {'':9} {'':9} {'':7} {'':8}"
        print(f"{name:38} {m['bytes']:12,} {m['ratio']:5.2f} {fid} {m['median_ms']:8.2f} "
              f"{m['round_iqr_pct']:5.1f} {m['speedup']:6.2f}x  {fmt_ops(m['ops']['quant'])}")
    print("\nfp32 matmuls left in the optimized graphs: " + "; ".join(
        f"{n}: {fmt_ops(m['ops']['float_matmul'])}" for n, m in r["models"].items() if n != "fp32"))
    said = [f"{n}: {m['lts_reported']['fidelity']['sqnr_db']:.2f} dB / top-1 "
            f"{100 * m['lts_reported']['fidelity']['top1_agreement']:.1f} %"
            for n, m in r["models"].items() if "lts_reported" in m]
    print("lts says (its own eval tokens): " + "; ".join(said))
    rg = r["ort_info"].get("ranges")
    if rg:
        for tag, v in rg.items():
            print(f"ORT {tag} ranges vs its MinMax ranges: {v['equal_to_minmax']}/{v['tensors']} tensors "
                  f"identical; range width / MinMax width: median {v['median_width_over_minmax']:.3f}, "
                  f"min {v['min_width_over_minmax']:.3f}")
    if r["ort_info"].get("tied_head_gemms"):
        print("tied head: quantize_dynamic would transpose the shared embedding table in place (broken "
              "model); its inputs were rewritten fp32 copies: " + "; ".join(
                  f"{k} {v['bytes']:,} bytes, logits max |diff| vs fp32 {v['max_abs_diff_vs_fp32']:.1e}"
                  for k, v in r["ort_info"]["dynamic_input_check"].items())
              + " (ort-default <- untied, ort-matched <- transposed)")
        ud = r["ort_info"]["dynamic_input_check"].get("untied")
        od = r["models"].get("ort-default:int8-dynamic")
        if ud and od:
            print(f"ort-default:int8-dynamic is {ud['bytes'] / od['bytes']:.2f}x smaller than its untied fp32 input")
    print("calibration data: lts used its own seeded tokens (--input-seed), ORT this script's seeded "
          "tokens (same count, length and distribution); evaluation tokens identical for all models.")
    print("\nverdicts (ours vs ORT, same method; * = apples-to-apples pair):")
    for v in r["verdicts"]:
        lat = v["latency"]
        print(f" {'*' if v['primary'] else ' '} {v['ours']:28} vs {v['ort']:38} SQNR {v['sqnr_delta_db']:+6.2f} dB "
              f"[{'ok' if v['fidelity_ok'] else 'WORSE'}]  time ratio {lat['ratio']:.3f} "
              f"(95% CI {lat['ci95'][0]:.3f}-{lat['ci95'][1]:.3f}, round IQR {lat['iqr'][0]:.3f}-"
              f"{lat['iqr'][1]:.3f}) [{'ok' if v['latency_ok'] else 'SLOWER'}]")
        w = v.get("activation_width_ours_over_ort")
        if w:
            print(f"      activation range width ours/ORT over {w['tensors']} tensors: median {w['median']:.3f} "
                  f"(min {w['min']:.3f}, max {w['max']:.3f}; ours narrower {w['narrower_pct']:.0f} %, "
                  f"wider {w['wider_pct']:.0f} %)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", help="comma-separated presets (default gpt2-small,smollm2-135m)")
    ap.add_argument("--quick", action="store_true", help="gpt2-tiny,llama-tiny, few rounds: a self-test")
    ap.add_argument("--lts", help="lts binary (default: target/release/lts if newer than src/, else debug)")
    ap.add_argument("--work", default="/tmp/compare_ort_quant", help="work folder (files are kept)")
    ap.add_argument("--seed", type=int, default=0, help="weight seed of the presets")
    ap.add_argument("--input-seed", type=int, default=0, help="seed of this script's token ids")
    ap.add_argument("--calib", type=int, default=16)
    ap.add_argument("--eval", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=128, help="capped at the arch's n_positions")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--runs-per-round", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=3, help="untimed runs per model before the rounds")
    ap.add_argument("--ort-flavours", default="default,matched",
                    help="which ORT variants: default, matched or both")
    ap.add_argument("--latency-tol", type=float, default=0.0,
                    help="latency verdict: ours/ORT 95%% CI lower bound must be <= 1 + this")
    ap.add_argument("--json", help="write everything (incl. raw timings) to this file")
    args = ap.parse_args()
    if args.quick:
        args.presets = args.presets or "gpt2-tiny,llama-tiny"
        args.rounds = min(args.rounds, 10)
    args.presets = args.presets or "gpt2-small,smollm2-135m"
    args.ort_flavours = [f.strip() for f in args.ort_flavours.split(",") if f.strip()]
    if not set(args.ort_flavours) <= {"default", "matched"} or not args.ort_flavours:
        ap.error("--ort-flavours takes default, matched or both")

    try:
        import numpy  # noqa: F401
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        log(f"error: {e}: pip install -r scripts/compare_ort_quant_requirements.txt")
        return 2
    lts = args.lts or pick_lts()
    if not lts or not os.path.exists(lts):
        log("error: no lts binary with `quantize`: build it (cargo build --release) or pass --lts")
        return 2
    lts = os.path.abspath(lts)
    os.makedirs(args.work, exist_ok=True)

    reports = []
    for preset in [p.strip() for p in args.presets.split(",") if p.strip()]:
        t0 = time.perf_counter()
        r = compare_preset(args, preset, lts)
        r["wall_s"] = time.perf_counter() - t0
        reports.append(r)
        print_report(r)
        print(f"({preset}: {r['wall_s']:.0f} s)", flush=True)

    ok = all(v["fidelity_ok"] and v["latency_ok"] for r in reports for v in r["verdicts"] if v["primary"])
    print(f"\noverall (apples-to-apples pairs): {'PASS' if ok else 'FAIL'}")
    out = args.json or os.path.join(args.work, "compare.json")
    with open(out, "w") as f:
        json.dump({"args": {k: v for k, v in vars(args).items()}, "reports": reports}, f, indent=1,
                  default=float)
    log(f"wrote {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
