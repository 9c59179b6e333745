#!/usr/bin/env python3
"""Validate ONNX files written by `lts`.

Usage: python3 scripts/check_onnx.py FILE...

For each file: onnx.load, onnx.checker.check_model(model, full_check=True) (which includes
strict shape inference), plus an explicit strict shape-inference pass. Prints
`ok FILE opset N nodes M initializers K` per file; exits 1 with a message on the first failure.
"""
import sys


def main(argv):
    if len(argv) < 2:
        print("usage: python3 scripts/check_onnx.py FILE...", file=sys.stderr)
        return 2
    try:
        import onnx
    except ImportError:
        print("error: the `onnx` Python package is missing (pip install onnx)", file=sys.stderr)
        return 1
    for path in argv[1:]:
        try:
            model = onnx.load(path)
            onnx.checker.check_model(model, full_check=True)
            onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
        except Exception as e:  # noqa: BLE001 - report any failure with the file name
            print(f"error: {path} failed the ONNX check: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
        opset = next(
            (o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None
        )
        g = model.graph
        print(f"ok {path} opset {opset} nodes {len(g.node)} initializers {len(g.initializer)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
