"""transformers against llama.cpp on the same model, side by side: decode speed, first token, memory.

Each engine runs in a subprocess of its own, so the resident memory it reports is its own (no
torch in the llama.cpp process). Both answer the same chat prompt greedily through the app's own
engines: ``LlamaCppEngine.stream`` and ``LocalEngine.stream`` (which reads a GGUF file with
transformers' ``gguf_file=`` and dequantizes it).

    python bench/engines.py --model OUTDIR/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
    python bench/engines.py --model E2B.Q4_K_M.gguf --transformers-model /path/to/gemma-4-E2B-it-folder

Prints one JSON object: {"engines": {"transformers": {...}, "llamacpp": {...}}, ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.model import cpu_name  # noqa: E402
from bench.report import report  # noqa: E402

SYSTEM = "You are a helpful assistant."
QUESTION = "Write a long story about a brave knight who meets a dragon in the mountains."
ENGINES = ("transformers", "llamacpp")


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def summary(runs: list[dict[str, float | None]], load_s: float) -> dict[str, Any]:
    def median(key: str) -> float | None:
        values = [r[key] for r in runs if r[key] is not None]
        return round(statistics.median(values), 2) if values else None

    return {
        "decode_tok_s": median("decode_tok_s"),
        "first_token_ms": median("first_token_ms"),
        "rss_mb": peak_rss_mb(),
        "load_s": round(load_s, 2),
        "new_tokens": median("new_tokens"),
        "prompt_tokens": median("prompt_tokens"),
        "runs": len(runs),
    }


def one_run(prompt_tokens: int, new_tokens: int, first_token_s: float | None, total_s: float) -> dict:
    decode = None
    if first_token_s is not None and new_tokens >= 2:
        decode = (new_tokens - 1) / max(total_s - first_token_s, 1e-9)
    return {
        "decode_tok_s": decode,
        "first_token_ms": None if first_token_s is None else first_token_s * 1000,
        "new_tokens": new_tokens,
        "prompt_tokens": prompt_tokens,
    }


# -- workers (one engine per process) -----------------------------------------------------------
def timed_answers(engine: Any, tokens: int, repeats: int) -> list[dict[str, Any]]:
    """The same question ``repeats`` times through an engine of the app; the engine is closed after."""
    from backend.cancel import CancelScope
    from backend.models.engine import GenerationStats, PromptMessage

    messages = [PromptMessage("system", SYSTEM), PromptMessage("user", QUESTION)]
    runs = []
    for _ in range(repeats):
        # A fresh prompt each time: no KV cache left from the run before (llama.cpp keeps one).
        if hasattr(engine, "_cache_reusable"):
            engine._cache_reusable = False
        stats = GenerationStats()
        for _ in engine.stream(messages, CancelScope(), tokens, stats):
            pass
        runs.append(one_run(stats.prompt_tokens, stats.new_tokens, stats.first_token_s, stats.total_s))
    engine.close()
    return runs


def run_llamacpp(model: str, tokens: int, threads: int, repeats: int) -> dict[str, Any]:
    from backend.models.llamacpp import LlamaCppEngine

    started = time.perf_counter()
    engine = LlamaCppEngine(model, device="cpu", threads=threads)
    engine.load()
    load_s = time.perf_counter() - started
    runs = timed_answers(engine, tokens, repeats)
    result = summary(runs, load_s)
    result["weights"] = Path(model).name
    result["threads"] = threads
    return result


def run_transformers(model: str, tokens: int, threads: int, repeats: int, dtype: str) -> dict[str, Any]:
    import torch

    from backend.models.engine import LocalEngine

    torch.set_num_threads(threads)
    started = time.perf_counter()
    engine = LocalEngine(model, device="cpu", dtype=dtype)
    engine.load()
    load_s = time.perf_counter() - started
    runs = timed_answers(engine, tokens, repeats)
    result = summary(runs, load_s)
    result["weights"] = f"{Path(model).name} ({dtype})"
    result["threads"] = threads
    return result


# -- the side-by-side run -----------------------------------------------------------------------
def worker(args: argparse.Namespace) -> dict[str, Any]:
    if args.worker == "llamacpp":
        return run_llamacpp(args.model, args.tokens, args.threads, args.repeats)
    return run_transformers(args.transformers_model or args.model, args.tokens, args.threads, args.repeats,
                            args.dtype)


def side_by_side(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    load_before = os.getloadavg()[0]
    for engine in args.engines:
        command = [sys.executable, __file__, "--worker", engine, "--model", args.model, "--tokens", str(args.tokens),
                   "--threads", str(args.threads), "--repeats", str(args.repeats), "--dtype", args.dtype]
        if args.transformers_model:
            command += ["--transformers-model", args.transformers_model]
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            results[engine] = {"error": (done.stderr.strip().splitlines() or ["failed"])[-1][:300]}
        else:
            results[engine] = json.loads(lines[-1])
    figures: dict[str, Any] = {"engines": results, "model": args.model, "max_new_tokens": args.tokens,
                               "threads": args.threads, "cpu": cpu_name(), "cpus": os.cpu_count(),
                               # a busy machine slows every figure: the 1-minute load before and after
                               "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
                               "date": time.strftime("%Y-%m-%d")}
    tf, lc = results.get("transformers", {}), results.get("llamacpp", {})
    if tf.get("decode_tok_s") and lc.get("decode_tok_s"):
        figures["llamacpp_vs_transformers"] = {
            "decode_speed": round(lc["decode_tok_s"] / tf["decode_tok_s"], 2),
            "memory": round(lc["rss_mb"] / tf["rss_mb"], 2),
        }
    return figures


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a .gguf file (llama.cpp; transformers dequantizes it)")
    parser.add_argument("--transformers-model", help="what transformers loads instead (a folder of the same model)")
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per answer")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"], help="transformers weights")
    parser.add_argument("--engines", type=lambda s: s.split(","), default=list(ENGINES))
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    figures = side_by_side(args)
    report(figures, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
