"""Speech figures: time to first audio and real-time factor per TTS engine, ASR real-time factor.

    python -m bench.speech [--sentences 12] [--device cpu]

Prints one JSON object. Real-time factor = processing seconds / audio seconds
(below 1 is faster than real time). Sentences are the first sentence of UDHR
article 1 in several languages (tests/fixtures/text/udhr_dev.tsv). The tiny
random models show the pipeline's own overhead, not a real model's speed; the
default CPU Whisper is measured only when its weights are already in the local
cache (nothing is downloaded).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support import CORPUS  # noqa: E402

LANGUAGES = ["en", "fr", "de", "es", "ru", "ar", "hi", "zh", "ja", "ko", "sw", "tr", "vi", "fa"]


def udhr_sentences(limit: int) -> list[tuple[str, str]]:
    from backend.language.sentences import split_sentences

    found: dict[str, str] = {}
    with (CORPUS / "text" / "udhr_dev.tsv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            if row["bcp47"] in LANGUAGES and row["article"] == "1" and row["bcp47"] not in found:
                found[row["bcp47"]] = split_sentences(row["text"], row["bcp47"])[0]
    return [(lang, found[lang]) for lang in LANGUAGES if lang in found][:limit]


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 4) if values else None


def bench_router(router, sentences: list[tuple[str, str]]) -> dict:
    """Time to the first chunk of speak() and real-time factor, one sentence at a time."""
    first_ms, rtf, langs = [], [], []
    router.say("Warm up.", "en")  # first process start / model load is not a sentence's cost
    for lang, sentence in sentences:
        if router.voice_for(lang) is None:
            continue
        t0 = time.perf_counter()
        chunk = next(iter(router.speak(sentence, lang)))
        elapsed = time.perf_counter() - t0
        first_ms.append(elapsed * 1000)
        rtf.append(elapsed / max(chunk.duration_s, 1e-6))
        langs.append(lang)
    return {
        "sentences": len(first_ms),
        "languages": langs,
        "first_audio_ms_median": median(first_ms),
        "first_audio_ms_max": round(max(first_ms), 1) if first_ms else None,
        "rtf_median": median(rtf),
    }


def bench_asr(model: str, device: str, files: list[Path]) -> dict:
    from backend.media import load_audio
    from backend.models.asr import SpeechRecognizer

    rec = SpeechRecognizer(model, device=device)
    t0 = time.perf_counter()
    rec.load()
    load_s = time.perf_counter() - t0
    rtf, per_file = [], {}
    for path in files:
        clip = load_audio(path)
        t0 = time.perf_counter()
        tr = rec.transcribe(clip)
        elapsed = time.perf_counter() - t0
        rtf.append(elapsed / clip.duration_s)
        per_file[path.name] = {"seconds": round(clip.duration_s, 2), "rtf": round(elapsed / clip.duration_s, 4),
                               "windows": tr.windows, "language": tr.language}
    return {"model": model, "load_s": round(load_s, 2), "rtf_median": median(rtf), "files": per_file}


def cached(repo: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo, "model.safetensors"), str) or isinstance(
            try_to_load_from_cache(repo, "pytorch_model.bin"), str
        )
    except Exception:  # noqa: BLE001
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=12)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    import torch

    from backend.models.asr import DEFAULT_ASR_MODEL
    from backend.models.tts import MMS, EspeakEngine, SpeechRouter, VitsEngine
    from tests import tiny_models

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    sentences = udhr_sentences(args.sentences)
    result: dict = {"bench": "speech", "host": platform.node(), "cpu_count": os.cpu_count(), "device": args.device,
                    "tts": {}, "asr": {}}

    espeak = EspeakEngine()
    result["tts"]["espeak-ng"] = bench_router(SpeechRouter(engines=[espeak]), sentences) if espeak.available else None
    if result["tts"]["espeak-ng"]:
        result["tts"]["espeak-ng"]["goal_first_audio_ms"] = 60

    with tempfile.TemporaryDirectory() as tmp:
        vits_dir = tiny_models.build_vits(Path(tmp))
        whisper_dir = tiny_models.build_whisper(Path(tmp))
        latin = [(lang, s) for lang, s in sentences if lang in ("en", "fr", "de", "es", "sw", "tr", "vi")]
        vits = VitsEngine(allow_noncommercial=True, models={lang: str(vits_dir) for lang in ["en"] + [x for x, _ in latin]},
                          use_hub=False, device=args.device)
        result["tts"][f"{MMS} (tiny random VITS)"] = bench_router(SpeechRouter(engines=[vits], allow_noncommercial=True), latin)

        files = sorted((CORPUS / "speech").glob("*"))
        result["asr"]["tiny-whisper"] = bench_asr(str(whisper_dir), args.device, files)

    default = DEFAULT_ASR_MODEL["cuda" if args.device.startswith("cuda") else "cpu"]
    result["asr"][default] = bench_asr(default, args.device, files) if cached(default) else None
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
