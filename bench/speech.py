"""Speech figures: time to first audio and real-time factor per TTS engine, ASR engines side by side.

    python -m bench.speech [--sentences 12] [--device cpu] [--questions 1] [--no-engines]

Voices compared on the same English sentences (ROUND_TRIP_SENTENCES, ten everyday sentences
written for this benchmark, no digits so that spelling does not count as an error): per engine
the first audio of a short sentence (median ms of 5), the real-time factor (median over the ten)
and the round-trip word error rate: the voice speaks each sentence, the real Whisper base
(tests.real_models, the app's faster-whisper engine, int8, English forced) writes it back, and the words are
compared with the text (all sentences pooled). Piper uses the joe voice of tests.real_models.

Prints one JSON object and writes it to bench/results/speech.json. Real-time factor =
processing seconds / audio seconds (below 1 is faster than real time). Sentences are
the first sentence of UDHR article 1 in several languages (tests/fixtures/text/udhr_dev.tsv).
The tiny random models show the pipeline's own overhead, not a real model's speed; the
default CPU Whisper is measured only when its weights are already in the local cache
(nothing is downloaded).

``asr_engines``: the trained Whisper base (tests.real_models; its transformers copy is
made from the same weights) on transformers (float32) and faster-whisper (int8, float32),
one clip at a time on each engine in turn, same threads: seconds per clip, real-time
factor, word error rate where the corpus has a transcript, spoken-language top-1 on the
corpus recordings and on espeak-ng speech of bench/data/speech_questions.tsv (questions
written for this benchmark), and, with the language forced, the share of transcripts
that the app's text detector reads as that language.
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

RESULTS = REPO / "bench" / "results" / "speech.json"
QUESTIONS = REPO / "bench" / "data" / "speech_questions.tsv"
# The corpus recordings (tests/fixtures/README.md): spoken language and, where there is one, what was said.
CORPUS_SPEECH = {
    "jfk.flac": ("en", "And so my fellow Americans, ask not what your country can do for you, "
                       "ask what you can do for your country."),
    "sr_english.wav": ("en", "one two three"),
    "sr_french.aiff": ("fr", "si la dictée numéro un"),
    "sr_chinese.flac": ("zh", None),  # "砸自己的脚": no word boundaries to count words by
    "silero_en.wav": ("en", None),  # read speech, no transcript
    "silero_de.wav": ("de", None),  # read speech, no transcript
}
# Digits and number words are compared as digits (Whisper writes "1, 2, 3." for "one two three").
NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
    "eight": "8", "nine": "9", "ten": "10", "un": "1", "une": "1", "deux": "2", "trois": "3", "quatre": "4",
    "cinq": "5", "eins": "1", "zwei": "2", "drei": "3", "vier": "4", "fünf": "5",
}
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


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def bench_voice(router, language: str, sentences: list[str], recognizer) -> dict:
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
        heard = recognizer.transcribe(clip, language=language).text.strip()
        heard_all.append(heard)
        wrong, count = word_errors(sentence, heard)
        errors += wrong
        total += count
    return {
        "first_audio_ms": median(first),
        "first_audio_ms_worst": round(max(first), 1),
        # CPU seconds of this process and its children (espeak-ng): what the sentence costs on an idle core
        "first_audio_cpu_ms": median(first_cpu),
        "rtf": median(rtf),
        "round_trip_wer": round(errors / total, 4),
        "round_trip_sentences": len(sentences),
        "sample_rate": chunk.sample_rate,
        "heard": heard_all,
    }


def bench_voices(real_dir: Path, threads: int) -> dict:
    """espeak-ng and Piper (the joe voice) on ROUND_TRIP_SENTENCES, heard back by the real Whisper base."""
    from backend.models.piper import PiperEngine
    from backend.models.tts import EspeakEngine, SpeechRouter
    from backend.models.whisper_ctranslate2 import CTranslate2Whisper
    from tests import real_models

    try:
        whisper_dir = real_models.assemble("whisper-base", real_dir)
        joe_dir = real_models.assemble("piper-en_US-joe-medium", real_dir)
    except real_models.MissingPackage as err:
        return {"skipped": str(err)}
    recognizer = CTranslate2Whisper(str(whisper_dir), compute_type="int8", cpu_threads=threads)
    recognizer.load()
    espeak = EspeakEngine()
    if not espeak.available:
        return {"skipped": "espeak-ng is not installed (Piper needs it for phonemes)"}
    out: dict = {"espeak-ng": bench_voice(SpeechRouter(engines=[espeak]), "en", ROUND_TRIP_SENTENCES, recognizer)}
    out["piper"] = bench_voice(SpeechRouter(engines=[PiperEngine(joe_dir, use_hub=False)]), "en",
                               ROUND_TRIP_SENTENCES, recognizer)
    out["piper"]["voice"] = "en_US-joe-medium"
    out["piper"]["goal_first_audio_ms"] = 150
    # onnxruntime intra-op threads: the default (half the cores) against all of them
    for count in sorted({1, os.cpu_count() or 1}):
        router = SpeechRouter(engines=[PiperEngine(joe_dir, use_hub=False, threads=count)])
        router.say("Warm up.", "en")
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            router.say(SHORT_SENTENCE, "en")
            times.append((time.perf_counter() - t0) * 1000)
        out["piper"].setdefault("first_audio_ms_by_threads", {})[str(count)] = median(times)
    return out


def bench_asr(model: str, device: str, files: list[Path]) -> dict:
    from backend.media import load_audio
    from backend.models.asr import open_recognizer

    rec = open_recognizer(model, device=device)
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


def words(text: str) -> list[str]:
    """Lower case, punctuation out (an apostrophe splits words), number words as digits."""
    import unicodedata

    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)
    return [NUMBER_WORDS.get(w, w) for w in text.split()]


def edit_distance(a: list[str], b: list[str]) -> int:
    """Substitutions + deletions + insertions that turn ``a`` into ``b`` (Levenshtein)."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, words in the reference): Levenshtein over words."""
    ref = words(reference)
    return edit_distance(ref, words(hypothesis)), len(ref)


def spoken_questions(per_language: int) -> list[tuple[str, str]]:
    rows: dict[str, list[str]] = {}
    for line in QUESTIONS.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            lang, question = line.split("\t")
            rows.setdefault(lang, []).append(question)
    return [(lang, q) for lang, qs in rows.items() for q in qs[:per_language]]


def asr_engine_recognizers(real_dir: Path, threads: int) -> dict:
    """The trained Whisper base on each engine, loaded; {} when its weight packages are not installed."""
    from backend.models.whisper_ctranslate2 import CTranslate2Whisper
    from backend.models.whisper_transformers import TransformersWhisper
    from tests import real_models

    try:
        ct2_dir = real_models.assemble("whisper-base", real_dir)
    except real_models.MissingPackage as err:
        print(f"asr_engines skipped: {err}", file=sys.stderr)
        return {}
    hf_dir = real_models.whisper_for_transformers(ct2_dir, real_dir)
    recognizers = {
        "transformers float32": TransformersWhisper(str(hf_dir), device="cpu"),
        "faster-whisper int8": CTranslate2Whisper(str(ct2_dir), compute_type="int8", cpu_threads=threads),
        "faster-whisper float32": CTranslate2Whisper(str(ct2_dir), compute_type="float32", cpu_threads=threads),
    }
    return recognizers


def bench_asr_engines(recognizers: dict, questions_per_language: int) -> dict:
    """Each clip through every engine in turn, so a busy machine slows all of them alike."""
    import io

    import soundfile as sf

    from backend.language.detect import detect
    from backend.language.tags import normalize_tag
    from backend.media import load_audio
    from backend.models.tts import SpeechRouter

    out: dict = {}
    for name, rec in recognizers.items():
        t0 = time.perf_counter()
        rec.load()
        out[name] = {"load_s": round(time.perf_counter() - t0, 2), "corpus": {}, "espeak": {}}
    clips = {path.name: load_audio(path) for path in sorted((CORPUS / "speech").glob("*")) if path.name in CORPUS_SPEECH}
    warm = clips.get("sr_english.wav") or next(iter(clips.values()))
    for rec in recognizers.values():  # first call pays for lazy set-up, not a clip
        rec.transcribe(warm)

    for file, clip in clips.items():
        expected, reference = CORPUS_SPEECH[file]
        for name, rec in recognizers.items():
            t0 = time.perf_counter()
            tr = rec.transcribe(clip)
            elapsed = time.perf_counter() - t0
            row = {"seconds": round(clip.duration_s, 2), "elapsed_s": round(elapsed, 3),
                   "rtf": round(elapsed / clip.duration_s, 4), "language": tr.language, "expected": expected,
                   "avg_logprob": round(tr.avg_logprob, 3) if tr.avg_logprob is not None else None,
                   "text": tr.text[:160]}
            if reference:
                row["word_errors"], row["reference_words"] = word_errors(reference, tr.text)
            out[name]["corpus"][file] = row

    router = SpeechRouter()
    spoken = []
    for lang, question in spoken_questions(questions_per_language):
        voice = router.voice_for(lang)
        if voice is None:
            continue
        chunk = router.say(question, lang, voice)
        wav = io.BytesIO()
        sf.write(wav, chunk.samples, chunk.sample_rate, format="WAV")  # decoded as an upload would be
        spoken.append((lang, question, load_audio(wav.getvalue())))
    for i, (lang, _question, clip) in enumerate(spoken):
        for name, rec in recognizers.items():
            t0 = time.perf_counter()
            ranked = rec.detect_language(clip)
            detect_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            forced = rec.transcribe(clip, language=lang)
            forced_s = time.perf_counter() - t0
            judged = detect(forced.text).tag if forced.text else "und"
            out[name]["espeak"][f"{lang}-{i}"] = {
                "detected": ranked[0][0], "p": round(ranked[0][1], 3), "detect_s": round(detect_s, 3),
                "forced_s": round(forced_s, 3), "forced_text": forced.text[:120], "text_detector": judged,
                "right": normalize_tag(ranked[0][0]) == normalize_tag(lang),
                "forced_right": normalize_tag(judged) == normalize_tag(lang),
            }

    for row in out.values():
        corpus, espeak = row["corpus"], row["espeak"]
        errors = sum(c.get("word_errors", 0) for c in corpus.values())
        ref_words = sum(c.get("reference_words", 0) for c in corpus.values())
        row["summary"] = {
            "seconds_per_clip": round(statistics.mean(c["elapsed_s"] for c in corpus.values()), 3),
            "audio_seconds_per_clip": round(statistics.mean(c["seconds"] for c in corpus.values()), 2),
            "rtf_median": median([c["rtf"] for c in corpus.values()]),
            "rtf_total": round(sum(c["elapsed_s"] for c in corpus.values()) / sum(c["seconds"] for c in corpus.values()), 4),
            "wer": round(errors / ref_words, 3) if ref_words else None,
            "wer_clips": sorted(f for f, c in corpus.items() if "word_errors" in c),
            "corpus_language_top1": f"{sum(c['language'] == c['expected'] for c in corpus.values())}/{len(corpus)}",
            "espeak_languages": len({k.split("-")[0] for k in espeak}),
            "espeak_language_top1": f"{sum(e['right'] for e in espeak.values())}/{len(espeak)}",
            "espeak_forced_language_share": round(sum(e["forced_right"] for e in espeak.values()) / len(espeak), 3)
            if espeak else None,
            "espeak_seconds_per_clip_forced": round(statistics.mean(e["forced_s"] for e in espeak.values()), 3)
            if espeak else None,
        }
    return out


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
    parser.add_argument("--questions", type=int, default=1, help="espeak-ng questions per language (1 or 2)")
    parser.add_argument("--no-engines", action="store_true", help="skip the trained Whisper on both engines")
    parser.add_argument("--voices-only", action="store_true",
                        help="only the voices' round trip; updates the tts part of bench/results/speech.json")
    parser.add_argument("--real-models", type=Path, default=None,
        help="folder for tests.real_models' trained weights (assembled there once; default: its default_dir)")
    args = parser.parse_args(argv)
    if args.real_models is None:
        from tests import real_models

        args.real_models = real_models.default_dir()

    import torch

    from backend.models.asr import DEFAULT_ASR_MODEL
    from backend.models.tts import MMS, EspeakEngine, SpeechRouter, VitsEngine
    from backend.models.whisper_ctranslate2 import default_cpu_threads
    from tests import tiny_models

    threads = default_cpu_threads()
    torch.set_num_threads(threads)  # the same cores for both engines
    if args.voices_only:
        kept = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.exists() else {"bench": "speech", "tts": {}}
        kept["voices_load_average_1min"] = os.getloadavg()[0]
        for engine, figures in bench_voices(args.real_models, threads).items():
            # espeak-ng keeps its figures on the UDHR sentences of the full run; the rest is replaced
            kept["tts"][engine] = {**(kept["tts"].get(engine) or {}), **figures} if engine == "espeak-ng" else figures
        print(json.dumps(kept, ensure_ascii=False, indent=2))
        RESULTS.write_text(json.dumps(kept, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        return 0
    sentences = udhr_sentences(args.sentences)
    result: dict = {"bench": "speech", "host": platform.node(), "cpu_count": os.cpu_count(), "device": args.device,
                    "load_average_1min": os.getloadavg()[0], "tts": {}, "asr": {}}

    espeak = EspeakEngine()
    result["tts"]["espeak-ng"] = bench_router(SpeechRouter(engines=[espeak]), sentences) if espeak.available else None
    if result["tts"]["espeak-ng"]:
        result["tts"]["espeak-ng"]["goal_first_audio_ms"] = 60
    # the same English sentences through each voice and back through the real Whisper base
    for engine, figures in bench_voices(args.real_models, threads).items():
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

    recognizers = {} if args.no_engines else asr_engine_recognizers(args.real_models, threads)
    if recognizers:
        result["asr_engines"] = {
            "model": "Whisper base (tests.real_models; the transformers copy holds the same fp16 weights as fp32)",
            "threads": threads, "decoding": "greedy, one 30 s window at a time, both engines",
            "wer_note": "jfk.flac, sr_english.wav and sr_french.aiff have transcripts; silero_en/de.wav and "
                        "sr_chinese.flac have none, so no word error rate for them",
            "engines": bench_asr_engines(recognizers, args.questions),
        }
    print(json.dumps(result, ensure_ascii=False, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
