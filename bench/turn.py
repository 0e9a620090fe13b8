"""One chat turn on CPU: load time, time to first token, tokens/s, stop latency, and what a video's
frames cost (prompt tokens, first token) with 1, 4 and 8 frames on the tiny models.

    python bench/turn.py [--runs 20] [--models DIR] [--quick] [--frames-only]
    python bench/turn.py --model PATH [--dtype auto] [--no-tiny]   # a real model as well

Prints one JSON object. The tiny models have the real architectures and processors,
so their figures measure the app's own pipeline overhead, not answer quality; ``--model``
adds a real model (a hub id, a folder or a .gguf file, e.g. SmolLM2-135M-Instruct from
``python -m tests.real_models OUT``), loaded in the dtype the app picks unless --dtype says
otherwise, so the figures of a real answer sit beside the overhead.
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


# A trained model stops when it has answered: ask for something long, so tokens/s has tokens to count.
REAL_MODEL_PROMPT = "Écris une longue histoire sur un chevalier et un dragon."


def measure(model_dir: Path | str, runs: int, decode_tokens: int, dtype: str = "auto",
            question: str = "Bonjour, comment ça va ?") -> dict:
    started = time.perf_counter()
    engine = LocalEngine(str(model_dir), device="cpu", dtype=dtype)
    engine.load()
    load_s = time.perf_counter() - started
    text_prompt = [PromptMessage("system", "Answer in French."), PromptMessage("user", question)]
    prompts = [(text_prompt, "text")]
    if engine.accepts_images:
        image = Image.open(CORPUS / "images" / "easy_french.jpg").convert("RGB")
        prompts.append(([PromptMessage("system", "Answer in French."),
                         PromptMessage("user", "Que dit ce panneau ?", images=[image])], "image"))
    list(engine.stream(text_prompt, CancelScope(), 4))  # warm-up

    first_token: dict[str, list[float]] = {kind: [] for _, kind in prompts}
    rates, stop_latency = [], []
    for _ in range(runs):
        for prompt, kind in prompts:
            sink = first_token[kind]
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
    precision = engine.describe_precision({"dtype": engine.model.dtype})
    engine.close()
    result = {"load_s": round(load_s, 3)}
    result.update({f"first_token_ms_{kind}": _summary(values, 1000) for kind, values in first_token.items()})
    result.update({
        "tokens_per_s": _summary(rates),
        "stop_latency_ms": _summary(stop_latency, 1000),
        "runs": runs,
        "precision": precision,
        "takes": ["text"] + ["images"] * engine.accepts_images + ["audio"] * engine.accepts_audio,
    })
    return result


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


FRAME_COUNTS = (1, 4, 8)
VIDEO_QUESTION = "What happens in this video?"


def video_frames(folder: Path) -> list:
    """Eight frames of a 40-second video of a corpus photo, sampled by the app's own video path."""
    from backend.media.video import load_video
    from tests.support import make_video

    clip = make_video(folder / "street.mp4", 40, size=(640, 480), fps=2, picture=CORPUS / "images" / "easy_french.jpg")
    return load_video(clip, max_frames=max(FRAME_COUNTS)).frames


def frames_cost(model_dir: Path, frames: list, runs: int) -> dict:
    """Prompt tokens and first-token time of one video turn as the app sends it (frames as pictures),
    and the prompt length the processor makes of the same frames given as one video."""
    import numpy as np

    engine = LocalEngine(str(model_dir), device="cpu")
    engine.load()
    system = PromptMessage("system", "Answer in English.")
    list(engine.stream([system, PromptMessage("user", "Hello")], CancelScope(), 2))  # warm-up
    out: dict[str, dict] = {}
    for count in FRAME_COUNTS:
        picked = [frames[round(i * (len(frames) - 1) / max(1, count - 1))] for i in range(count)] if count > 1 \
            else [frames[len(frames) // 2]]
        prompt = [system, PromptMessage("user", VIDEO_QUESTION, images=picked)]
        first, tokens = [], 0
        for _ in range(runs):
            stats = GenerationStats()
            list(engine.stream(prompt, CancelScope(), 2, stats))
            first.append(stats.first_token_s)
            tokens = stats.prompt_tokens
        row = {"prompt_tokens": tokens, "first_token_ms": _summary(first, 1000)}
        stacked = np.stack([np.asarray(f) for f in picked])
        row["prompt_tokens_as_video"] = _video_prompt_tokens(engine, stacked)
        # The tiny models' processors are shrunk; the processors' own defaults are the full models' sizes.
        tiny = engine.processor.image_processor, engine.processor.video_processor
        try:
            engine.processor.image_processor = type(tiny[0])()
            engine.processor.video_processor = type(tiny[1])()
            row["full_size_processor"] = {"as_images": int(engine.encode(prompt)["input_ids"].shape[-1]),
                                          "as_video": _video_prompt_tokens(engine, stacked)}
        finally:
            engine.processor.image_processor, engine.processor.video_processor = tiny
        out[str(count)] = row
    engine.close()
    return out


def _video_prompt_tokens(engine: LocalEngine, stacked) -> int | None:
    """The same frames as one video through the model's video processor (None where it has none)."""
    processor = engine.processor
    video_token = getattr(processor, "video_token", None)
    if getattr(processor, "video_processor", None) is None or not video_token:
        return None
    if engine.family.startswith("qwen2_5_omni"):
        video_token = f"<|vision_bos|>{video_token}<|vision_eos|>"
    chat = [{"role": "user", "content": [{"type": "text", "text": VIDEO_QUESTION}]}]
    text = processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    text = text.replace(VIDEO_QUESTION, video_token + VIDEO_QUESTION)
    metadata = [{"fps": 1.0, "total_num_frames": len(stacked), "frames_indices": list(range(len(stacked)))}]
    try:
        inputs = processor(text=text, videos=[stacked], return_tensors="pt", video_metadata=metadata,
                           do_sample_frames=False)
    except (TypeError, ValueError):
        inputs = processor(text=text, videos=[stacked], return_tensors="pt")
    return int(inputs["input_ids"].shape[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--models", type=Path, help="folder from `python -m tests.tiny_models` (built if absent)")
    parser.add_argument("--quick", action="store_true", help="3 runs, for CI")
    parser.add_argument("--frames-only", action="store_true", help="only the video frames' cost (tiny models)")
    parser.add_argument("--model", help="a real model too: hub id, folder or .gguf file")
    parser.add_argument("--dtype", default="auto", help="for --model: auto (what the app picks), float32, bfloat16")
    parser.add_argument("--no-tiny", action="store_true", help="only --model")
    args = parser.parse_args(argv)
    runs = 3 if args.quick else args.runs
    result: dict = {"device": "cpu", "models": {}}
    if args.model:
        name = Path(args.model).name if Path(args.model).exists() else args.model
        result["models"][name] = measure(args.model, runs, args.decode_tokens, args.dtype, REAL_MODEL_PROMPT)
    if args.no_tiny:
        print(json.dumps(result))
        return 0

    from tests import tiny_models

    folder = args.models or Path(tempfile.mkdtemp(prefix="omnilingo-bench-"))
    names = ["gemma4", "qwen25omni"]
    missing = [n for n in names if not (folder / n / "config.json").exists()]
    if missing:
        tiny_models.build_all(folder, missing)
    with tempfile.TemporaryDirectory() as scratch:
        frames = video_frames(Path(scratch))
    video = {name: frames_cost(folder / name, frames, runs) for name in names}
    if args.frames_only:
        print(json.dumps({"device": "cpu", "video_frames": video, "runs": runs}))
        return 0
    result["models"].update({name: measure(folder / name, runs, args.decode_tokens) for name in names})
    result["speech_on_vs_off"] = speech_overhead(folder / "gemma4", runs)
    result["video_frames"] = video
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
