"""First token of a conversation's next turn with the transformers engine, with and without its prefix
KV cache (``LocalEngine`` keeps the last prompt and answer prefilled, and prefills only what follows).

    python bench/prefix_cache.py [--model PATH] [--runs 7] [--turns 2] [--busy 1] [--threads N] [--quick] [--out FILE]

The conversation is the app's: its system prompt (``backend.conversation.turns.system_prompt``),
``--turns`` earlier questions with the model's own greedy answers, then a new question. Each run
times that new question three ways, in an order that rotates from run to run:

  cached   the cache holds the conversation up to the last answer, as after the app's previous turn
  system   the cache holds another conversation with the same system prompt (another tab, say)
  none     no cache: the whole prompt is prefilled

The first-token time is the engine's own (``GenerationStats.first_token_s``: from the call, chat
template and tokenising included, to the first new token); ``before_prefill_ms`` and ``prefill_ms``
split it (the rest, after the prefill, is picking the token and handing it to the streamer).
``--busy N`` keeps N other processes spinning meanwhile, as Whisper and the browser do on a small
machine. Without --model it measures SmolLM2-135M-Instruct, assembled from its pinned package
(tests.real_models).

Prints one JSON object and writes it to --out. bench/results/prefix_cache.json (quiet),
prefix_cache_busy.json (--busy 1) and prefix_cache_busy_1thread.json (--busy 1 --threads 1) hold
SmolLM2-135M in fp32 on 2 cores, a 246-token prompt of which the cache held 226.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.cancel import CancelScope  # noqa: E402
from backend.conversation.turns import system_prompt  # noqa: E402
from backend.models.engine import GenerationStats, LocalEngine, PromptMessage  # noqa: E402
from bench.model import cpu_name  # noqa: E402
from bench.report import report  # noqa: E402

# Spoken questions that get answers of a few sentences, as in voice mode.
QUESTIONS = [
    "I'm going to Paris next week. What should I see there?",
    "Tell me more about the Louvre.",
    "What can I eat near the museum?",
    "How do I get there from the airport?",
]
WAYS = ("cached", "system", "none")


def answer(engine: LocalEngine, messages: list[PromptMessage], tokens: int) -> tuple[str, GenerationStats]:
    stats = GenerationStats()
    text = "".join(engine.stream(messages, CancelScope(), tokens, stats))
    return text, stats


def conversation(engine: LocalEngine, turns: int, answer_tokens: int) -> list[PromptMessage]:
    """The system prompt and ``turns`` questions with the model's answers, then the next question."""
    messages = [PromptMessage("system", system_prompt("en"))]
    for question in QUESTIONS[:turns]:
        messages.append(PromptMessage("user", question))
        text, _ = answer(engine, messages, answer_tokens)
        messages.append(PromptMessage("assistant", text.strip()))
    return messages + [PromptMessage("user", QUESTIONS[turns])]


class PrefillClock:
    """Stamps the model's first forward pass (the prefill) of an answer: when it starts and how long it takes."""

    def __init__(self, model) -> None:
        self.forward = model.forward
        model.forward = self
        self.started: float | None = None
        self.start_s: float | None = None
        self.prefill_s: float | None = None

    def arm(self) -> None:
        """Stamp the next answer; ``stream`` must be called right after."""
        self.started, self.start_s, self.prefill_s = time.perf_counter(), None, None

    def __call__(self, *args, **kwargs):
        begun = time.perf_counter()
        out = self.forward(*args, **kwargs)
        if self.started is not None and self.start_s is None:
            self.start_s, self.prefill_s = begun - self.started, time.perf_counter() - begun
        return out


def timed(engine: LocalEngine, clock: PrefillClock, way: str, messages: list[PromptMessage],
          answer_tokens: int) -> dict[str, Any]:
    engine._prefix = None
    if way == "cached":
        # The previous turn as the app ran it: its answer leaves the conversation so far in the cache.
        answer(engine, messages[:-2], answer_tokens)
    elif way == "system":
        answer(engine, [messages[0], PromptMessage("user", "Hello!")], 1)
    clock.arm()
    _, stats = answer(engine, messages, 4)
    return {"first_token_s": stats.first_token_s, "before_prefill_s": clock.start_s, "prefill_s": clock.prefill_s,
            "prompt_tokens": stats.prompt_tokens, "cached_tokens": stats.cached_tokens}


def spinners(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a folder or .gguf file (default: SmolLM2-135M-Instruct, tests.real_models)")
    parser.add_argument("--dtype", default="auto", help="auto (what the app picks), float32, bfloat16")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--turns", type=int, default=2, choices=range(len(QUESTIONS)), help="earlier questions")
    parser.add_argument("--answer-tokens", type=int, default=64, help="longest earlier answer, in tokens")
    parser.add_argument("--busy", type=int, default=0, help="other processes spinning during the runs")
    parser.add_argument("--threads", type=int, help="torch's threads (default: torch's own choice, one a core)")
    parser.add_argument("--quick", action="store_true", help="2 runs, for bench/run_all.py's quick pass")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = 2
    if not args.model:
        from tests.real_models import folder

        args.model = folder("smollm2-135m-instruct")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    engine = LocalEngine(args.model, device="cpu", dtype=args.dtype)
    engine.load()
    messages = conversation(engine, args.turns, args.answer_tokens)
    clock = PrefillClock(engine.model)
    runs: dict[str, list[dict[str, Any]]] = {way: [] for way in WAYS}
    load_before = os.getloadavg()[0]
    busy = spinners(args.busy)
    try:
        for run in range(args.runs):
            for way in WAYS[run % len(WAYS):] + WAYS[:run % len(WAYS)]:
                runs[way].append(timed(engine, clock, way, messages, args.answer_tokens))
    finally:
        for process in busy:
            process.kill()
            process.wait()
    load_after = os.getloadavg()[0]

    def median_ms(way: str, key: str) -> float:
        return round(statistics.median(run[key] for run in runs[way]) * 1000, 1)

    # before_prefill: chat template, tokenising, the generation thread's start and generate()'s set-up
    ways: dict[str, dict[str, Any]] = {way: {"first_token_ms": median_ms(way, "first_token_s"),
                  "first_token_ms_all": [round(run["first_token_s"] * 1000, 1) for run in runs[way]],
                  "before_prefill_ms": median_ms(way, "before_prefill_s"), "prefill_ms": median_ms(way, "prefill_s"),
                  "prompt_tokens": runs[way][0]["prompt_tokens"], "cached_tokens": runs[way][0]["cached_tokens"]}
            for way in WAYS}
    result = {
        "bench": "prefix_cache",
        "model": args.model,
        "dtype": str(engine.model.dtype).replace("torch.", ""),
        "turns": args.turns,
        "runs": args.runs,
        "busy": args.busy,
        "threads": torch.get_num_threads(),
        "conversation": [[m.role, m.text] for m in messages],
        "ways": ways,
        "none_vs_cached": round(ways["none"]["first_token_ms"] / ways["cached"]["first_token_ms"], 2),
        "none_vs_system": round(ways["none"]["first_token_ms"] / ways["system"]["first_token_ms"], 2),
        "cpu": cpu_name(),
        "cpus": os.cpu_count(),
        # a busy machine slows every figure: the 1-minute load before and after
        "load_average": [round(load_before, 1), round(load_after, 1)],
        "date": time.strftime("%Y-%m-%d"),
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *(argv if argv is not None else sys.argv[1:])]),
    }
    report(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
