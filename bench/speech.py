"""Speech figures: time to first audio and real-time factor per TTS engine, ASR real-time factor.

    python -m bench.speech [--sentences 12] [--device cpu] [--out bench/results/speech.json]

Voices compared on the same English sentences (ROUND_TRIP_SENTENCES, ten everyday sentences
written for this benchmark, no digits so that spelling does not count as an error): per engine
the first audio of a short sentence (median ms of 5), the real-time factor (median over the ten)
and the round-trip word error rate: the voice speaks each sentence, the real Whisper base
(tests.real_models, faster-whisper, int8, English forced) writes it back, and the words are
compared with the text (all sentences pooled). Piper uses the joe voice of tests.real_models.

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
import re
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


SHORT_SENTENCE = "Sure, I can help with that."
ROUND_TRIP_SENTENCES = [
    "Good morning, how can I help you today?",
    "The weather will be sunny and warm tomorrow afternoon.",
    "Please remember to buy milk, bread and fresh vegetables.",
    "The train to the city leaves from the second platform.",
    "I found some restaurants near your hotel that are open tonight.",
    "Drinking enough water is important when you exercise outside.",
    "Your meeting with the design team has been moved to Thursday.",
    "The museum is closed on Mondays but open late on Fridays.",
    "Turn left at the next corner and walk past the library.",
    "This recipe needs eggs, a cup of flour and some butter.",
]


def words(text: str) -> list[str]:
    return re.sub(r"[^\w\s']", " ", text.lower()).split()


def word_errors(reference: list[str], heard: list[str]) -> int:
    """Substitutions + deletions + insertions (Levenshtein distance over words)."""
    row = list(range(len(heard) + 1))
    for i, ref in enumerate(reference, 1):
        prev, row[0] = row[0], i
        for j, hyp in enumerate(heard, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ref != hyp))
    return row[-1]


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def bench_voice(router, language: str, sentences: list[str], whisper) -> dict:
    """First audio of a short sentence, real-time factor, and round-trip word error rate through Whisper."""
    from backend.media import load_audio

    router.say("Warm up.", language)
    first, first_cpu = [], []
    for _ in range(5):
        t0, c0 = time.perf_counter(), _cpu_s()
        next(iter(router.speak(SHORT_SENTENCE, language)))
        first.append((time.perf_counter() - t0) * 1000)
        first_cpu.append((_cpu_s() - c0) * 1000)
    rtf, errors, total, heard_all = [], 0, 0, []
    for sentence in sentences:
        t0 = time.perf_counter()
        chunk = router.say(sentence, language)
        elapsed = time.perf_counter() - t0
        rtf.append(elapsed / max(chunk.duration_s, 1e-6))
        clip = load_audio(chunk.wav_bytes())
        segments, _ = whisper.transcribe(clip.samples, language=language, beam_size=1)
        heard = " ".join(seg.text for seg in segments).strip()
        heard_all.append(heard)
        errors += word_errors(words(sentence), words(heard))
        total += len(words(sentence))
    return {
        "first_audio_ms": median(first),
        "first_audio_ms_max": round(max(first), 1),
        # CPU seconds of this process and its children (espeak-ng): what the sentence costs on an idle core
        "first_audio_cpu_ms": median(first_cpu),
        "rtf": median(rtf),
        "round_trip_wer": round(errors / total, 4),
        "sentences": len(sentences),
        "sample_rate": chunk.sample_rate,
        "heard": heard_all,
    }


def bench_voices(device: str) -> dict:
    """espeak-ng and Piper (the joe voice) on ROUND_TRIP_SENTENCES, heard back by the real Whisper base."""
    from backend.models.piper import PiperEngine
    from backend.models.tts import EspeakEngine, SpeechRouter
    from tests import real_models

    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            whisper_dir = real_models.assemble("whisper-base", Path(tmp))
            joe_dir = real_models.assemble("piper-en_US-joe-medium", Path(tmp))
        except real_models.MissingPackage as err:
            return {"skipped": str(err)}
        from faster_whisper import WhisperModel

        whisper = WhisperModel(str(whisper_dir), device=device, compute_type="int8",
                               cpu_threads=max(1, min(4, os.cpu_count() or 1)))
        espeak = EspeakEngine()
        if espeak.available:
            out["espeak-ng"] = bench_voice(SpeechRouter(engines=[espeak]), "en", ROUND_TRIP_SENTENCES, whisper)
            out["piper"] = bench_voice(SpeechRouter(engines=[PiperEngine(joe_dir, use_hub=False)]), "en",
                                       ROUND_TRIP_SENTENCES, whisper)
            out["piper"]["voice"] = "en_US-joe-medium"
            out["piper"]["goal_first_audio_ms"] = 150
            # onnxruntime intra-op threads: the default (half the cores) against all of them
            for threads in sorted({1, os.cpu_count() or 1}):
                router = SpeechRouter(engines=[PiperEngine(joe_dir, use_hub=False, threads=threads)])
                router.say("Warm up.", "en")
                times = []
                for _ in range(5):
                    t0 = time.perf_counter()
                    router.say(SHORT_SENTENCE, "en")
                    times.append((time.perf_counter() - t0) * 1000)
                out["piper"].setdefault("first_audio_ms_by_threads", {})[str(threads)] = median(times)
    return out


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
    parser.add_argument("--out", type=Path, help="also write the JSON here (e.g. bench/results/speech.json)")
    args = parser.parse_args(argv)

    import torch

    from backend.models.asr import DEFAULT_ASR_MODEL
    from backend.models.tts import MMS, EspeakEngine, SpeechRouter, VitsEngine
    from tests import tiny_models

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    sentences = udhr_sentences(args.sentences)
    result: dict = {"bench": "speech", "host": platform.node(), "cpu_count": os.cpu_count(), "device": args.device,
                    "load_average_1min": os.getloadavg()[0], "tts": {}, "asr": {}}

    espeak = EspeakEngine()
    result["tts"]["espeak-ng"] = bench_router(SpeechRouter(engines=[espeak]), sentences) if espeak.available else None
    if result["tts"]["espeak-ng"]:
        result["tts"]["espeak-ng"]["goal_first_audio_ms"] = 60
    # the same English sentences through each voice and back through the real Whisper base
    for engine, figures in bench_voices(args.device).items():
        if isinstance(figures, dict) and isinstance(result["tts"].get(engine), dict):
            result["tts"][engine].update(figures)
        else:
            result["tts"][engine] = figures

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
    text = json.dumps(result, ensure_ascii=False, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
