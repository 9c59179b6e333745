#!/usr/bin/env python3
"""Writes the tokenizer metadata of a GGUF file as a JSON `TokenizerSpec` (src/tokenizer.rs),
the fixture `smollm2_ids_match_hugging_face` reads from $LTS_SMOLLM2_TOKENIZER:

    pip install gguf
    python3 scripts/gguf_tokenizer_spec.py ~/.cache/lts/models/SmolLM2-135M-Instruct.Q4_1.gguf /tmp/smollm2.json
    LTS_SMOLLM2_TOKENIZER=/tmp/smollm2.json cargo test --lib smollm2_ids
"""
import json
import sys

import gguf

reader = gguf.GGUFReader(sys.argv[1])


def get(key, default=None):
    field = reader.fields.get(key)
    return default if field is None else field.contents()


spec = {
    "model": get("tokenizer.ggml.model"),
    "tokens": get("tokenizer.ggml.tokens"),
    "merges": get("tokenizer.ggml.merges", []),
    "token_types": get("tokenizer.ggml.token_type", []),
    "bos": get("tokenizer.ggml.bos_token_id"),
    "eos": get("tokenizer.ggml.eos_token_id"),
    "pre": get("tokenizer.ggml.pre"),
}
with open(sys.argv[2], "w") as f:
    json.dump(spec, f)
