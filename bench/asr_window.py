"""Whisper's encoder window for a short utterance: the full 30 s against a window cut to the speech.

    python bench/asr_window.py [--model FOLDER] [--windows 30 10+1 10 8+1 8 6+1]

Whisper pads every recording to 30 s, so a 2 s question costs as much encoder time as 30 s of
speech. CTranslate2 encodes a shorter window as it is. For each window length this runs the
app's faster-whisper recognizer (``CTranslate2Whisper``) and reports:

- ``reference``: word error rate against what was really said (character error rate for
  languages written without spaces), and how often the spoken language is detected right, on
  utterances whose words are known: the corpus recordings with transcripts, a trained Piper
  voice (en_US joe) saying everyday English, and espeak-ng saying everyday questions in 28
  languages; each also with street-like noise mixed in at 10 dB SNR.
- ``against_<first window>``: per source, how many of those utterances came closer to what was said
  than with the first window of ``--windows``, and how many went farther;
- ``unreferenced_against_<first window>``: how far the transcript moved from the first window's
  (0 = the same words) on real speech that has no transcript: the corpus's long recordings cut
  where the voice mode's VAD ends a turn.
- the encoder's and the whole transcription's seconds (median).

Punctuation and case are ignored. Prints one JSON object (bench/results/asr_window.json).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import statistics
import subprocess
import sys
import tempfile
import unicodedata
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from backend.models.asr import NO_SPACE_LANGUAGES  # noqa: E402
from bench.report import report  # noqa: E402
from bench.speech import edit_distance  # noqa: E402
from tests.support import CORPUS  # noqa: E402

# The corpus recordings whose words are known (fixtures/README.md).
SAID = {
    "jfk.flac": ("en", "And so my fellow Americans, ask not what your country can do for you, "
                       "ask what you can do for your country."),
    "sr_english.wav": ("en", "one two three"),
    "sr_french.aiff": ("fr", "si la dictée numéro un"),
    "sr_chinese.flac": ("zh", "砸自己的脚"),
}
NOISE_SNR_DB = 10.0


def units(text: str, language: str) -> list[str]:
    """Words, or characters for languages written without spaces; no punctuation, no case."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if unicodedata.category(ch)[0] in "PS" else ch for ch in text)
    if language.split("-")[0] in NO_SPACE_LANGUAGES:  # scored by characters
        return [ch for ch in text if not ch.isspace()]
    return text.split()


def words(text: str) -> list[str]:
    return re.sub(r"[^\w\s]", " ", text.lower()).split()


def _rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8") as handle:
        rows = [r for r in csv.reader(handle, delimiter="\t") if r and not r[0].startswith("#")]
    return [r for r in rows if r[0] != "language"]


def street_noise(n: int, seed: int) -> np.ndarray:
    """Brown-ish noise with a slow swell: closer to traffic and a room than white noise."""
    rng = np.random.default_rng(seed)
    noise = np.cumsum(rng.standard_normal(n)).astype(np.float32)
    noise -= np.convolve(noise, np.ones(400) / 400, mode="same")  # keep it from drifting
    swell = 1.0 + 0.5 * np.sin(np.linspace(0, 2 * np.pi * n / 16_000 / 3.0, n))
    return (noise * swell).astype(np.float32)


def with_noise(samples: np.ndarray, seed: int, snr_db: float = NOISE_SNR_DB) -> np.ndarray:
    noise = street_noise(len(samples), seed)
    speech_power = float(np.mean(samples[np.abs(samples) > 0.02 * np.max(np.abs(samples))] ** 2))
    noise *= np.sqrt(speech_power / (10 ** (snr_db / 10)) / max(float(np.mean(noise ** 2)), 1e-12))
    mixed = samples + noise
    return (mixed / max(1.0, float(np.max(np.abs(mixed))))).astype(np.float32)


def referenced(piper_voice: Path) -> list[tuple[str, str, np.ndarray, str]]:
    """(name, language, 16 kHz samples, what was said), then each again with noise ("+noise")."""
    import soundfile

    from backend import media
    from backend.models.piper import PiperVoice

    out: list[tuple[str, str, np.ndarray, str]] = []
    for name, (language, said) in SAID.items():
        out.append((name, language, media.load_audio(str(CORPUS / "speech" / name)).samples, said))
    english = [r[1] for r in _rows(ROOT / "bench" / "data" / "short_messages.tsv") if r[0] == "en"]
    english += [r[1] for r in _rows(ROOT / "bench" / "data" / "fidelity_prompts.tsv") if r[0] == "en"]
    spoken = _rows(ROOT / "bench" / "data" / "speech_questions.tsv")
    with tempfile.TemporaryDirectory() as tmp:
        onnx = next(piper_voice.glob("*.onnx"))
        voice = PiperVoice(onnx, onnx.with_name(onnx.name + ".json"))
        for n, said in enumerate(english):
            wav = Path(tmp) / f"piper{n}.wav"
            soundfile.write(wav, voice.synthesize(said), voice.sample_rate)
            out.append((f"piper-en-{n}", "en", media.load_audio(str(wav)).samples, said))
        for n, (language, said) in enumerate(spoken):
            wav = Path(tmp) / f"espeak{n}.wav"
            done = subprocess.run(["espeak-ng", "-v", language, "-w", str(wav), said], capture_output=True)
            if done.returncode == 0 and wav.exists():
                out.append((f"espeak-{language}-{n}", language, media.load_audio(str(wav)).samples, said))
    quiet = np.zeros(4_000, np.float32)  # a quarter second each side, as the voice mode's VAD hands a turn over
    out = [(name, lang, np.concatenate([quiet, s, quiet]), said) for name, lang, s, said in out]
    noisy = [(f"{name}+noise", lang, with_noise(s, seed), said) for seed, (name, lang, s, said) in enumerate(out)]
    return out + noisy


def unreferenced(max_s: float = 12.0) -> list[tuple[str, np.ndarray]]:
    """(name, 16 kHz samples): the long recordings cut where the voice mode's VAD ends a turn."""
    from backend import media
    from backend.audio.vad import VoiceActivityDetector
    from backend.conversation.voice import VOICE_VAD

    out: list[tuple[str, np.ndarray]] = []
    for name in ("silero_en.wav", "silero_de.wav"):
        samples = media.load_audio(str(CORPUS / "speech" / name)).samples
        vad = VoiceActivityDetector(VOICE_VAD)
        events = vad.process(samples, 16_000) + vad.process(np.zeros(16_000, np.float32), 16_000)
        pieces = [e.audio for e in events if e.kind == "speech_end" and e.audio is not None]
        out += [(f"{name}#{i}", a) for i, a in enumerate(pieces) if 0.5 <= len(a) / 16_000 <= max_s]
    return out


def source_of(name: str) -> str:
    return name.split("-")[0] if name.startswith(("piper-", "espeak-")) else "recorded"


def error_rate(pairs: list[tuple[str, str, str]]) -> float:
    """Edit distance over reference length, summed over utterances: (language, said, heard)."""
    errors = sum(edit_distance(units(said, lang), units(heard, lang)) for lang, said, heard in pairs)
    return round(errors / max(1, sum(len(units(said, lang)) for lang, said, _ in pairs)), 4)


def configure(window: str) -> None:
    """Set the recognizer's window from "MIN[+TRAILING]" (see --windows)."""
    from backend.models import whisper_ctranslate2

    shortest, _, trailing = window.partition("+")
    whisper_ctranslate2.MIN_WINDOW_S = float(shortest)
    whisper_ctranslate2.TRAILING_S = float(trailing or 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a CTranslate2 Whisper folder (default: Whisper base from tests.real_models)")
    parser.add_argument("--piper-voice", type=Path, help="a Piper voice folder (default: en_US joe from tests.real_models)")
    parser.add_argument("--windows", nargs="+", default=["30", "10+1", "10", "8+1", "8", "6+1"],
                        help="MIN[+TRAILING]: the shortest window in seconds, and the seconds it reaches past the "
                             "speech (0 unless given); the first is the one the others are compared with")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "asr_window.json")
    args = parser.parse_args(argv)

    from backend.media import AudioClip
    from backend.models.whisper_ctranslate2 import CTranslate2Whisper
    from tests.real_models import folder

    args.model = args.model or folder("whisper-base")
    args.piper_voice = args.piper_voice or Path(folder("piper-en_US-joe-medium"))
    said = referenced(args.piper_voice)
    cut = unreferenced()
    recognizer = CTranslate2Whisper(args.model)
    recognizer.load()
    result: dict = {
        "model": str(args.model), "referenced": len(said), "unreferenced": len(cut),
        "load_before": [round(x, 2) for x in os.getloadavg()], "windows": {},
    }
    baseline = args.windows[0]
    errors: dict[str, list[int]] = {}  # per referenced utterance
    cut_texts: dict[str, list[str]] = {}
    for window in args.windows:
        configure(window)
        scored: dict[tuple[str, str], list[tuple[str, str, str]]] = {}  # (condition, source) -> pairs
        detected: dict[str, list[bool]] = {"clean": [], "noise": []}
        encode, total, examples = [], [], []
        errors[window] = []
        for name, language, samples, text in said:
            heard = recognizer.transcribe(AudioClip(samples=samples), language)
            condition = "noise" if name.endswith("+noise") else "clean"
            scored.setdefault((condition, source_of(name)), []).append((language, text, heard.text))
            errors[window].append(edit_distance(units(text, language), units(heard.text, language)))
            encode.append(heard.timings.get("encode", 0.0))
            total.append(heard.timings.get("total", 0.0))
            # what the recording sounded like, reported also when the language is forced
            detected[condition].append(heard.language_probs[0][0].split("-")[0] == language)
            if len(examples) < 10 and errors[window][-1]:
                examples.append({"clip": name, "said": text, "heard": heard.text})
        cut_texts[window] = [recognizer.transcribe(AudioClip(samples=s)).text for _, s in cut]
        moved: dict[str, dict[str, int]] = {}
        for (name, *_), e, b in zip(said, errors[window], errors[baseline], strict=True):
            counts = moved.setdefault(source_of(name), {"closer": 0, "farther": 0, "same": 0})
            counts["closer" if e < b else "farther" if e > b else "same"] += 1
        changes = [edit_distance(words(a), words(b)) / max(1, len(words(a)))
                   for a, b in zip(cut_texts[baseline], cut_texts[window], strict=True)]
        result["windows"][window] = {
            "encode_s_median": round(statistics.median(encode), 3),
            "transcribe_s_median": round(statistics.median(total), 3),
            "reference": {
                condition: {
                    "error_rate": error_rate([p for (c, _), ps in scored.items() if c == condition for p in ps]),
                    **{f"error_rate_{source}": error_rate(ps) for (c, source), ps in sorted(scored.items())
                       if c == condition},
                    "language_right": round(sum(detected[condition]) / len(detected[condition]), 3),
                }
                for condition in ("clean", "noise")
            },
            # utterances whose words came closer to / farther from what was said than with the first window
            f"against_{baseline}": moved,
            "examples_wrong": examples,
            f"unreferenced_against_{baseline}": {
                "same_words": round(sum(c == 0 for c in changes) / len(changes), 3),
                "word_change_rate": round(sum(changes) / len(changes), 4),
                "changed": [{"clip": n, baseline: a, window: b} for (n, _), a, b
                            in zip(cut, cut_texts[baseline], cut_texts[window], strict=True) if words(a) != words(b)][:6],
            },
        }
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    report(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
