#!/usr/bin/env python3
"""Independent perplexity reference for `lts eval`: llama.cpp (via llama-cpp-python) on a GGUF.

What it checks
  It computes the perplexity of a GGUF language model on a UTF-8 text file with llama.cpp's own
  tokenizer and forward pass, scored by exactly the rule `lts eval` uses, and (with --lts-json)
  compares the result with the JSON that `lts eval --json` printed:
    * tokens_sha256 equal    -> both sides tokenized the text to the same ids (tokenizer check);
    * counts equal           -> same windows and the same scored targets;
    * |ppl_lts / ppl_ref - 1| <= --tolerance (default 1 %) for ppl_all and ppl_half.

Scoring rule (the same as `lts eval`)
  * ids = tokenize(text, add_bos=False, special=False), truncated to --max-tokens when given.
    tokens_sha256 = sha256 of the ids written as u32 little-endian.
  * windows of ctx tokens (default 256) starting at s = 0, stride, 2*stride, ... while
    s + ctx <= n (full windows only, the tail is not scored); stride defaults to ctx. Each window is
    evaluated from an empty KV cache, all ctx tokens in one batch, logits for every position.
  * logits row j (0..ctx-2) of the window at s predicts ids[s+j+1]; it is scored iff
    s+j+1 >= prev_end, where prev_end = 1 for the first window and previous start + ctx after it.
  * nll = logsumexp(row) - row[target] in float64; ppl_all = exp(mean nll over the scored targets),
    ppl_half = exp(mean nll over the scored targets with j >= ctx // 2) (llama.cpp `perplexity`'s
    scoring, which scores the second half of each chunk).

Why Q4_1 and F32 differ
  With quantised weights (Q4_1 blocks, Q8_0 token embeddings / tied output) llama.cpp's CPU
  matmuls do not dequantise the weights to f32: they quantise the *activations* too (to Q8_1 for
  Q4_1 weights, Q8_0 for Q8_0 weights) and take integer dot products. A tool that dequantises the
  weights to f32 and multiplies in f32 (as `lts eval` does through ONNX Runtime) therefore lands
  slightly off the Q4_1 figure; that difference is expected and is not a bug.
  With --f32 the script first writes an F32 copy of the model (every tensor dequantised to f32 by
  llama.cpp's own `llama_model_quantize`, ftype ALL_F32, allow_requantize, pure; or with
  --f32-method gguf by gguf-py's `gguf.quants.dequantize` + GGUFWriter). Those f32 weights equal
  what a correct fp32 dequantiser gives, llama.cpp then multiplies in f32, and the KV cache is kept
  in f32 with flash attention off (the default for both modes here), so only float summation order
  remains: that is "the fp32 figure", and `lts eval` must match it within 1 %.

How to run
  pip install -r scripts/crosscheck_requirements.txt     # builds llama.cpp from source, ~7 min
  python3 scripts/crosscheck_ppl.py --gguf model.gguf --text eval.txt --f32 --json
  lts eval ... --json > lts.json
  python3 scripts/crosscheck_ppl.py --gguf model.gguf --text eval.txt --f32 --lts-json lts.json

Exit status: 0 ok (or, with --lts-json, within tolerance with equal tokens and counts); 1 a
comparison outside tolerance or a token-hash / count mismatch; 2 a usage or setup error.
"""

import argparse
import contextlib
import hashlib
import json
import math
import os
import sys
import tempfile
import time

LLAMA_FTYPE_ALL_F32 = 0
GGML_TYPE_F32 = 0
GGML_TYPE_F16 = 1

INSTALL_HINT = (
    "install it with:\n"
    "  CMAKE_ARGS='-DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAVA_BUILD=OFF' CMAKE_BUILD_PARALLEL_LEVEL=2 \\\n"
    "    pip install -r scripts/crosscheck_requirements.txt\n"
    "(PyPI has only an sdist: pip builds llama.cpp from source with cmake, about 7 minutes on "
    "2 cores; needs gcc and g++)"
)


def die(msg, code=2):
    print(f"crosscheck_ppl: error: {msg}", file=sys.stderr)
    sys.exit(code)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def import_llama_cpp():
    try:
        import llama_cpp  # noqa: F401
    except ImportError as e:
        die(f"the Python package llama-cpp-python is missing ({e}); {INSTALL_HINT}")
    return llama_cpp


def import_numpy():
    try:
        import numpy as np
    except ImportError:
        die("numpy is missing; pip install numpy")
    return np


# --------------------------------------------------------------------------------------------
# F32 copy of the model
# --------------------------------------------------------------------------------------------

def default_f32_cache(gguf_path, method):
    base = os.path.join(os.path.expanduser("~"), ".cache", "lts", "crosscheck")
    stem = os.path.basename(gguf_path)
    if stem.endswith(".gguf"):
        stem = stem[:-5]
    return os.path.join(base, f"{stem}.F32-{method}.gguf")


def source_stamp(path):
    st = os.stat(path)
    return {"source": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


@contextlib.contextmanager
def quiet_stderr(enabled=True):
    """Send file descriptor 2 (where llama.cpp's C code logs) to /dev/null for a while."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def make_f32_llama(llama_cpp, src, dst, verbose=False):
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = LLAMA_FTYPE_ALL_F32
    params.allow_requantize = True
    params.pure = True  # no per-tensor type overrides: every weight becomes the default type (F32)
    params.nthread = 2
    # the tied output / token embedding would otherwise be eligible for their own types
    if hasattr(params, "output_tensor_type"):
        params.output_tensor_type = GGML_TYPE_F32
    if hasattr(params, "token_embedding_type"):
        params.token_embedding_type = GGML_TYPE_F32
    with quiet_stderr(not verbose):  # llama.cpp logs one line per tensor
        rc = llama_cpp.llama_model_quantize(src.encode("utf-8"), dst.encode("utf-8"),
                                            llama_cpp.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize returned {rc}")


def make_f32_gguf(src, dst):
    try:
        import gguf
    except ImportError:
        die("--f32-method gguf needs the gguf package: pip install gguf")
    np = import_numpy()
    reader = gguf.GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(dst, arch)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        val_type = field.types[0]
        sub_type = field.types[-1] if val_type == gguf.GGUFValueType.ARRAY else None
        value = field.contents()
        if field.name == gguf.Keys.General.FILE_TYPE:
            value = LLAMA_FTYPE_ALL_F32
        writer.add_key_value(field.name, value, val_type, sub_type=sub_type)
    arrays = []
    for t in reader.tensors:
        data = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        # GGUF lists dims fastest-first; numpy wants them slowest-first
        data = np.ascontiguousarray(data.reshape(tuple(int(d) for d in reversed(t.shape))))
        arrays.append((t.name, data))
        writer.add_tensor_info(t.name, data.shape, data.dtype, data.nbytes,
                               gguf.GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for _, data in arrays:
        writer.write_tensor_data(data)
    writer.close()


def check_all_f32(path):
    """Return None when every tensor in the file is F32, else a message (skipped without gguf)."""
    try:
        import gguf
    except ImportError:
        return None
    reader = gguf.GGUFReader(path)
    bad = [f"{t.name}:{t.tensor_type.name}" for t in reader.tensors
           if t.tensor_type != gguf.GGMLQuantizationType.F32]
    return None if not bad else f"{len(bad)} tensors are not F32: {', '.join(bad[:5])}"


def ensure_f32(llama_cpp, src, dst, method, verbose=False):
    stamp = source_stamp(src)
    stamp["method"] = method
    side = dst + ".json"
    if os.path.exists(dst) and os.path.exists(side):
        try:
            with open(side) as f:
                if json.load(f) == stamp:
                    return dst, 0.0, True
        except (OSError, ValueError):
            pass
    os.makedirs(os.path.dirname(os.path.abspath(dst)) or ".", exist_ok=True)
    log(f"writing F32 copy of {src} to {dst} (method {method}) ...")
    t0 = time.perf_counter()
    fd, tmp = tempfile.mkstemp(prefix=".f32-", suffix=".gguf",
                               dir=os.path.dirname(os.path.abspath(dst)))
    os.close(fd)
    try:
        if method == "llama":
            make_f32_llama(llama_cpp, src, tmp, verbose)
        else:
            make_f32_gguf(src, tmp)
        problem = check_all_f32(tmp)
        if problem:
            raise RuntimeError(f"F32 copy is not all F32: {problem}")
        os.replace(tmp, dst)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    with open(side, "w") as f:
        json.dump(stamp, f)
    return dst, time.perf_counter() - t0, False


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------

def tokens_sha256(np, ids):
    return hashlib.sha256(np.asarray(ids, dtype="<u4").tobytes()).hexdigest()


def window_starts(n, ctx, stride):
    starts = []
    s = 0
    while s + ctx <= n:
        starts.append(s)
        s += stride
    return starts


def clear_cache(llm):
    """Empty the KV cache and the high-level object's token history before a new window."""
    llm.reset()  # n_tokens = 0; Llama.eval then removes cache cells from position n_tokens on
    ctx = getattr(llm, "_ctx", None)
    for name in ("memory_clear", "kv_cache_clear"):
        fn = getattr(ctx, name, None)
        if fn is None:
            continue
        try:
            fn(True) if name == "memory_clear" else fn()
        except TypeError:
            fn()
        return


def score(args, model_path, llama_cpp, np):
    from llama_cpp import Llama

    ctx, stride = args.ctx, args.stride
    kw = dict(model_path=model_path, n_ctx=ctx, n_batch=ctx, n_ubatch=ctx, logits_all=True,
              n_threads=args.threads, n_threads_batch=args.threads, n_gpu_layers=0,
              verbose=args.verbose, seed=0)
    if not args.kv_f16:
        kw.update(type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32)
    # flash attention off: plain f32 KQ / softmax / KQV
    import inspect
    sig = inspect.signature(Llama.__init__).parameters
    if "flash_attn_type" in sig:
        kw["flash_attn_type"] = 0  # LLAMA_FLASH_ATTN_TYPE_DISABLED
    elif "flash_attn" in sig:
        kw["flash_attn"] = False
    kw = {k: v for k, v in kw.items() if k in sig}
    llm = Llama(**kw)
    if llm.n_ctx() < ctx:
        die(f"llama.cpp gave n_ctx {llm.n_ctx()} < ctx {ctx}")

    with open(args.text, "rb") as f:
        raw = f.read()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        die(f"{args.text} is not valid UTF-8: {e}")
    t0 = time.perf_counter()
    ids = llm.tokenize(raw, add_bos=False, special=False)
    tok_s = time.perf_counter() - t0
    if args.max_tokens is not None:
        ids = ids[: args.max_tokens]
    n = len(ids)
    sha = tokens_sha256(np, ids)
    starts = window_starts(n, ctx, stride)
    if not starts:
        die(f"only {n} tokens, fewer than one window of ctx {ctx}")

    half = ctx // 2
    sum_all = 0.0
    sum_half = 0.0
    cnt_all = 0
    cnt_half = 0
    ids_np = np.asarray(ids, dtype=np.int64)
    prev_end = 1
    t0 = time.perf_counter()
    for w, s in enumerate(starts):
        clear_cache(llm)
        llm.eval(ids[s:s + ctx])
        logits = np.asarray(llm.scores[:ctx - 1], dtype=np.float64)  # rows j = 0..ctx-2
        if logits.shape != (ctx - 1, llm.n_vocab()):
            die(f"unexpected logits shape {logits.shape}")
        j = np.arange(ctx - 1)
        pos = s + j + 1
        keep = pos >= prev_end
        j = j[keep]
        rows = logits[keep]
        tgt = ids_np[pos[keep]]
        m = rows.max(axis=1)
        lse = m + np.log(np.exp(rows - m[:, None]).sum(axis=1))
        nll = lse - rows[np.arange(len(j)), tgt]
        sum_all += float(nll.sum())
        cnt_all += int(len(nll))
        h = j >= half
        sum_half += float(nll[h].sum())
        cnt_half += int(h.sum())
        prev_end = s + ctx
        if args.progress and (w + 1) % 10 == 0:
            el = time.perf_counter() - t0
            log(f"  window {w + 1}/{len(starts)}  {el:.1f}s  running ppl_all "
                f"{math.exp(sum_all / cnt_all):.4f}")
    eval_s = time.perf_counter() - t0
    return {
        "ppl_all": math.exp(sum_all / cnt_all),
        "ppl_half": math.exp(sum_half / cnt_half) if cnt_half else None,
        "nll_mean_all": sum_all / cnt_all,
        "nll_mean_half": sum_half / cnt_half if cnt_half else None,
        "tokens_scored_all": cnt_all,
        "tokens_scored_half": cnt_half,
        "windows": len(starts),
        "text_tokens": n,
        "tokens_sha256": sha,
        "ctx": ctx,
        "stride": stride,
        "max_tokens": args.max_tokens,
        "seconds": round(eval_s, 3),
        "tokenize_seconds": round(tok_s, 3),
    }


# --------------------------------------------------------------------------------------------
# Comparison with `lts eval --json`
# --------------------------------------------------------------------------------------------

def compare(ref, lts, tol):
    rows = []
    ok = True
    for key in ("tokens_sha256", "text_tokens", "windows", "tokens_scored_all",
                "tokens_scored_half", "ctx", "stride"):
        if key not in lts:
            rows.append((key, "(absent)", ref[key], "", "skip"))
            continue
        same = lts[key] == ref[key]
        ok &= same
        rows.append((key, lts[key], ref[key], "", "ok" if same else "MISMATCH"))
    for key in ("ppl_all", "ppl_half"):
        if lts.get(key) is None or ref.get(key) is None:
            rows.append((key, lts.get(key), ref.get(key), "", "missing"))
            ok = False
            continue
        rel = lts[key] / ref[key] - 1.0
        good = abs(rel) <= tol
        ok &= good
        rows.append((key, f"{lts[key]:.4f}", f"{ref[key]:.4f}", f"{rel * 100:+.3f}%",
                     "ok" if good else f"OUTSIDE {tol * 100:g}%"))
    return ok, rows


def print_table(rows, out):
    def short(v):
        v = str(v)
        return v if len(v) <= 20 else v[:8] + ".." + v[-8:]
    hdr = ("field", "lts", "reference", "diff", "verdict")
    table = [hdr] + [tuple(short(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(hdr))]
    for r in table:
        print("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip(), file=out)


# --------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", required=True, help="GGUF model file")
    ap.add_argument("--text", required=True, help="UTF-8 text file to score")
    ap.add_argument("--ctx", type=int, default=None,
                    help="window length in tokens (default: the --lts-json file's, else 256)")
    ap.add_argument("--stride", type=int, default=None, help="window stride (default: ctx)")
    ap.add_argument("--max-tokens", type=int, default=None, help="truncate the token ids to N")
    ap.add_argument("--f32", action="store_true",
                    help="evaluate an F32 copy of the model (dequantised, cached)")
    ap.add_argument("--f32-cache", default=None,
                    help="where the F32 copy is kept (default ~/.cache/lts/crosscheck/<name>.F32-<method>.gguf)")
    ap.add_argument("--f32-method", choices=("llama", "gguf"), default="llama",
                    help="llama: llama_model_quantize ALL_F32 (default); gguf: gguf-py dequantize + GGUFWriter")
    ap.add_argument("--threads", type=int, default=2,
                    help="llama.cpp threads (default 2; use 1 while other jobs load the cores: its "
                         "spinning threads ran 3x slower than 1 thread under contention here)")
    ap.add_argument("--kv-f16", action="store_true",
                    help="keep llama.cpp's default f16 KV cache (default here: f32)")
    ap.add_argument("--lts-json", default=None, help="JSON printed by `lts eval --json` to compare")
    ap.add_argument("--tolerance", type=float, default=0.01,
                    help="allowed |ppl_lts/ppl_ref - 1| (default 0.01)")
    ap.add_argument("--json", action="store_true", help="print the result as one JSON object")
    ap.add_argument("--progress", action="store_true", help="progress lines on stderr")
    ap.add_argument("--verbose", action="store_true", help="let llama.cpp log to stderr")
    args = ap.parse_args()

    for label, p in (("--gguf", args.gguf), ("--text", args.text), ("--lts-json", args.lts_json)):
        if p is not None and not os.path.isfile(p):
            die(f"{label} file not found: {p}")

    lts = None
    if args.lts_json:
        try:
            with open(args.lts_json) as f:
                lts = json.load(f)
        except ValueError as e:
            die(f"{args.lts_json} is not JSON: {e}")
    if args.ctx is None:
        args.ctx = int(lts["ctx"]) if lts and lts.get("ctx") else 256
    if args.stride is None:
        args.stride = int(lts["stride"]) if lts and lts.get("stride") else args.ctx
    if args.ctx < 2 or args.stride < 1:
        die("need --ctx >= 2 and --stride >= 1")
    if args.stride > args.ctx:
        die("--stride larger than --ctx would leave tokens unscored; not supported")

    np = import_numpy()
    llama_cpp = import_llama_cpp()
    version = getattr(llama_cpp, "__version__", "unknown")

    model_path = args.gguf
    convert_s = 0.0
    if args.f32:
        dst = args.f32_cache or default_f32_cache(args.gguf, args.f32_method)
        model_path, convert_s, cached = ensure_f32(llama_cpp, args.gguf, dst, args.f32_method,
                                                     args.verbose)
        how = ("llama.cpp llama_model_quantize, ftype ALL_F32, allow_requantize, pure"
               if args.f32_method == "llama" else "gguf-py gguf.quants.dequantize + GGUFWriter")
        weights = f"F32 (dequantised from {source_ftype_name(args.gguf)[1]} by {how})"
        if cached:
            log(f"using cached F32 copy {model_path}")
    else:
        weights = source_ftype_name(args.gguf)[1]

    res = score(args, model_path, llama_cpp, np)
    res["reference"] = f"llama.cpp via llama-cpp-python {version}"
    res["weights"] = weights
    res["model"] = os.path.abspath(model_path)
    res["kv_cache"] = "f16" if args.kv_f16 else "f32"
    res["threads"] = args.threads
    if args.f32:
        res["f32_convert_seconds"] = round(convert_s, 3)

    code = 0
    out = sys.stderr if args.json else sys.stdout
    if lts is not None:
        ok, rows = compare(res, lts, args.tolerance)
        print(f"lts eval vs {res['reference']} ({weights}), tolerance {args.tolerance * 100:g}%",
              file=out)
        print_table(rows, out)
        if not args.f32:
            print("note: reference uses the quantised weights (activations quantised to Q8_1 in "
                  "llama.cpp's dot products); compare with --f32 for the fp32 figure", file=out)
        print("PASS" if ok else "FAIL", file=out)
        res["comparison"] = {"ok": ok, "tolerance": args.tolerance,
                             "rows": [list(map(str, r)) for r in rows]}
        code = 0 if ok else 1
    if args.json:
        print(json.dumps(res))
    elif lts is None:
        for k in ("ppl_all", "ppl_half", "tokens_scored_all", "tokens_scored_half", "windows",
                  "text_tokens", "tokens_sha256", "ctx", "stride", "seconds", "reference",
                  "weights", "kv_cache"):
            v = res[k]
            print(f"{k:20s} {v:.6f}" if isinstance(v, float) else f"{k:20s} {v}")
    sys.exit(code)


def source_ftype_name(path):
    """(file type name from general.file_type, e.g. Q4_1; that name with tensor type counts)."""
    names = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
             10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
             16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 32: "BF16"}
    try:
        import gguf
        from collections import Counter
        r = gguf.GGUFReader(path)
        f = r.fields.get("general.file_type")
        name = names.get(int(f.contents()), f"ftype {int(f.contents())}") if f else "?"
        counts = Counter(t.tensor_type.name for t in r.tensors)
        parts = ", ".join(f"{c} {t}" for t, c in counts.most_common())
        return name, f"{name} (tensors: {parts})"
    except Exception:
        return "as given", "as given"


if __name__ == "__main__":
    main()
