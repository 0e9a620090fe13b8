"""Omnilingo's pipeline: one module a stage, no UI code."""

import os

# oneDNN (bf16 matmuls on CPU) keeps a compiled kernel for every input shape it meets, up to
# 1024 of them: in a chat every prompt length is a new shape, and resident memory crept up by
# hundreds of MB over a few hundred turns (bench/soak.py). A smaller cache bounds that; a miss
# costs one recompile per new prompt length, not per token.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "128")
