"""Omnilingo's pipeline: one module a stage, no UI code."""

import ctypes
import os
import sys

# A chat server runs for days; two native caches made its resident memory creep up turn after
# turn (bench/soak.py):
# - oneDNN (bf16 matmuls on CPU) keeps a compiled kernel for every input shape it meets, up to
#   1024, and in a chat every prompt length is a new shape. A small cache bounds that; a miss
#   costs one recompile per new prompt length, not per token.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16")
# - glibc gives each of the web server's worker threads its own malloc arena, and freed model
#   buffers stay mapped in all of them. Two arenas are plenty for one generate() at a time.
if sys.platform.startswith("linux") and "MALLOC_ARENA_MAX" not in os.environ:
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, 2)  # M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to tune
        pass
