"""One chat turn on the tiny models, on CPU: load time, time to first token, tokens/s, stop latency.

    python bench/turn.py [--runs 20] [--models DIR] [--quick]

Prints one JSON object. The tiny models have the real architectures and processors,
so the figures measure the app's own pipeline overhead, not answer quality.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image  # noqa: E402

from backend.cancel import CancelScope  # noqa: E402
from backend.models.engine import GenerationStats, LocalEngine, PromptMessage  # noqa: E402
from tests.support import CORPUS  # noqa: E402


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _summary(values: list[float], scale: float = 1.0) -> dict[str, float]:
    return {"median": round(statistics.median(values) * scale, 2), "p95": round(_p95(values) * scale, 2)}


def measure(model_dir: Path, runs: int, decode_tokens: int) -> dict:
    started = time.perf_counter()
    engine = LocalEngine(str(model_dir), device="cpu")
    engine.load()
    load_s = time.perf_counter() - started
    image = Image.open(CORPUS / "images" / "easy_french.jpg").convert("RGB")
    text_prompt = [PromptMessage("system", "Answer in French."), PromptMessage("user", "Bonjour, comment ça va ?")]
    image_prompt = [PromptMessage("system", "Answer in French."),
                    PromptMessage("user", "Que dit ce panneau ?", images=[image])]
    list(engine.stream(text_prompt, CancelScope(), 4))  # warm-up

    ttft_text, ttft_image, rates, stop_latency = [], [], [], []
    for _ in range(runs):
        for prompt, sink in ((text_prompt, ttft_text), (image_prompt, ttft_image)):
            stats = GenerationStats()
            list(engine.stream(prompt, CancelScope(), decode_tokens, stats))
            sink.append(stats.first_token_s)
            if prompt is text_prompt:
                rates.append((stats.new_tokens - 1) / (stats.total_s - stats.first_token_s))
        # stop latency: scope cancelled -> stream() returned (generate joined)
        stop, stats = CancelScope(), GenerationStats()
        set_at = 0.0
        for _ in engine.stream(text_prompt, stop, 5000, stats):
            if stats.new_tokens >= 8 and not stop.is_set():
                set_at = time.perf_counter()
                stop.cancel()
        stop_latency.append(time.perf_counter() - set_at)
    engine.close()
    return {
        "load_s": round(load_s, 3),
        "first_token_ms_text": _summary(ttft_text, 1000),
        "first_token_ms_image": _summary(ttft_image, 1000),
        "tokens_per_s": _summary(rates),
        "stop_latency_ms": _summary(stop_latency, 1000),
        "runs": runs,
    }


def speech_overhead(model_dir: Path, runs: int, decode_tokens: int = 200) -> dict:
    """Text throughput of a whole turn with the answer spoken (espeak-ng) vs not: speech must not slow text."""
    from backend.conversation.speaker import answer_aloud
    from backend.conversation.turns import Conversation
    from backend.models.tts import SpeechRouter, espeak_available

    if not espeak_available():
        return {"skipped": "espeak-ng is not installed"}
    engine = LocalEngine(str(model_dir), device="cpu")
    engine.load()
    router = SpeechRouter()
    rates: dict[str, list[float]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as folder:
        conversation = Conversation(engine, Path(folder), max_new_tokens=decode_tokens)
        for _ in range(runs):
            for mode in ("off", "on"):
                turn = conversation.add(conversation.prepare("Tell me about the sea. And the mountains."))
                started, last_text = time.perf_counter(), 0.0
                for event in answer_aloud(conversation, turn, router, speak=mode == "on"):
                    if event.kind == "text":
                        last_text = time.perf_counter()
                rates[mode].append(turn.stats.new_tokens / (last_text - started))
                conversation.clear()
    engine.close()
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    return {"tokens_per_s_speech_off": round(off, 1), "tokens_per_s_speech_on": round(on, 1),
            "ratio_on_off": round(on / off, 3), "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--models", type=Path, help="folder from `python -m tests.tiny_models` (built if absent)")
    parser.add_argument("--quick", action="store_true", help="3 runs, for CI")
    args = parser.parse_args(argv)
    runs = 3 if args.quick else args.runs

    from tests import tiny_models

    folder = args.models or Path(tempfile.mkdtemp(prefix="omnilingo-bench-"))
    names = ["gemma4", "qwen25omni"]
    missing = [n for n in names if not (folder / n / "config.json").exists()]
    if missing:
        tiny_models.build_all(folder, missing)
    result = {"device": "cpu", "models": {name: measure(folder / name, runs, args.decode_tokens) for name in names}}
    result["speech_on_vs_off"] = speech_overhead(folder / "gemma4", runs)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
