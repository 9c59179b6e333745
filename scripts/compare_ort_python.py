#!/usr/bin/env python3
"""Compare `lts measure` with a plain Python onnxruntime timing loop on the same ONNX file.

Both time only the inference call on the same file with the same settings (1 intra-op thread,
1 inter-op thread, ORT_ENABLE_ALL, sequential execution, CPU provider, batch 1). The runs are
interleaved in ABBA order (lts, python, python, lts, ...) because these shared machines drift by
10-30% from one minute to the next (see shared/reference/measurement.md) and a fixed order would
favour one side; each pair gives a ratio lts_median / python_median and the verdict uses the
median of the ratios.

Usage:
  python3 scripts/compare_ort_python.py --lts target/release/lts --preset gpt2-small \
      --seq-len 192 --pairs 5 [--tolerance 0.05] [--json out.json]

Needs: `pip install onnxruntime==1.31.1 numpy`. Exit code 0 when |median ratio - 1| <= tolerance,
1 otherwise, 2 on a usage or setup error.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def python_median_ms(path, seq_len, vocab, runs, warmup_s, threads, seed):
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, size=(1, seq_len), dtype=np.int64)
    feeds = {"input_ids": ort.OrtValue.ortvalue_from_numpy(ids)}
    names = [o.name for o in sess.get_outputs()]
    # First run, then warm-up by time (at least one run), as lts does.
    sess.run_with_ort_values(names, feeds)
    t_end = time.perf_counter() + warmup_s
    while True:
        sess.run_with_ort_values(names, feeds)
        if time.perf_counter() >= t_end:
            break
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run_with_ort_values(names, feeds)
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples), samples


def lts_median_ms(lts, path, seq_len, runs, warmup_s, threads):
    cmd = [
        lts, "measure", "--onnx", path, "--mode", "prefill", "--seq-len", str(seq_len),
        "--threads", str(threads), "--min-runs", str(runs), "--max-runs", str(runs),
        "--min-duration-s", "0", "--warmup-s", str(warmup_s), "--json",
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result = json.loads(out.stdout)
    m = result["measurement"]
    return m["stats"]["median_ms"], m["samples_ms"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lts", default="target/release/lts", help="path of the lts binary")
    ap.add_argument("--preset", default="gpt2-small", help="built-in arch to export and time")
    ap.add_argument("--arch", help="arch file to export and time instead of --preset")
    ap.add_argument("--seq-len", type=int, default=192)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pairs", type=int, default=8, help="interleaved lts/python pairs (ABBA order)")
    ap.add_argument("--runs", type=int, default=10, help="timed runs per side per pair")
    ap.add_argument("--warmup-s", type=float, default=0.5)
    ap.add_argument("--tolerance", type=float, default=0.05)
    ap.add_argument("--json", help="write the comparison as JSON to this file")
    args = ap.parse_args()

    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        print("error: Python onnxruntime missing: pip install onnxruntime==1.31.1 numpy", file=sys.stderr)
        return 2
    if not os.path.exists(args.lts):
        print(f"error: {args.lts} not found: build it with `cargo build --release`", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [args.lts, "export", *(["--arch", args.arch] if args.arch else ["--preset", args.preset]),
             "--kind", "prefill", "--out", tmp],
            check=True, capture_output=True, text=True,
        )
        path = next(os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".prefill.onnx"))
        arch = json.load(open(next(os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".arch.json"))))
        vocab = arch["vocab_size"]
        pairs = []
        for i in range(args.pairs):
            run_lts = lambda: lts_median_ms(args.lts, path, args.seq_len, args.runs, args.warmup_s, args.threads)[0]
            run_py = lambda: python_median_ms(path, args.seq_len, vocab, args.runs, args.warmup_s, args.threads, i)[0]
            if i % 2 == 0:
                l_med = run_lts()
                p_med = run_py()
            else:
                p_med = run_py()
                l_med = run_lts()
            pairs.append({"lts_median_ms": l_med, "python_median_ms": p_med, "ratio": l_med / p_med})
            print(f"pair {i + 1}: lts {l_med:9.3f} ms   python {p_med:9.3f} ms   ratio {l_med / p_med:.3f}", flush=True)

    ratios = sorted(p["ratio"] for p in pairs)
    med = statistics.median(ratios)
    ok = abs(med - 1.0) <= args.tolerance
    print(
        f"{args.arch or args.preset} seq {args.seq_len} threads {args.threads}: median ratio lts/python {med:.3f} "
        f"(min {ratios[0]:.3f}, max {ratios[-1]:.3f}, {len(ratios)} pairs) -> "
        f"{'within' if ok else 'OUTSIDE'} +-{args.tolerance * 100:.0f}%"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.arch or args.preset, "seq_len": args.seq_len, "pairs": pairs,
                       "median_ratio": med, "within_tolerance": ok}, f, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
