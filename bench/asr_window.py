"""Whisper's encoder window for a short utterance: the full 30 s against a window cut to the speech.

    python bench/asr_window.py [--model FOLDER] [--windows 30 15 10 8 5]

Whisper pads every recording to 30 s, so a 2 s question costs as much encoder time as 30 s of
speech. CTranslate2 encodes a shorter window as it is. For each window length this runs the
app's faster-whisper recognizer (``CTranslate2Whisper``) over the same utterances and reports
the encoder seconds, and how far the transcript moved from the 30 s one (word edit distance /
words; 0 = the same words; punctuation and case ignored). Utterances: the vendored recordings
(tests/fixtures/speech, tests/fixtures/turns) cut where the app's own VAD ends a turn, and
espeak-ng speaking bench/data/speech_questions.tsv (two questions in each of 28 languages).
Prints one JSON object (bench/results/asr_window.json).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from tests.support import CORPUS  # noqa: E402


def words(text: str) -> list[str]:
    return re.sub(r"[^\w\s]", " ", text.lower()).split()


def edit_distance(a: list[str], b: list[str]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def utterances(max_s: float = 12.0) -> list[tuple[str, str | None, np.ndarray]]:
    """(name, language or None, 16 kHz samples): recordings cut by the voice mode's VAD, espeak questions."""
    from backend import media
    from backend.audio.vad import VoiceActivityDetector
    from backend.conversation.voice import VOICE_VAD

    out: list[tuple[str, str | None, np.ndarray]] = []
    files = sorted((CORPUS / "speech").iterdir()) + sorted((CORPUS / "turns").glob("*.wav"))
    for path in files:
        samples = media.load_audio(str(path)).samples
        vad = VoiceActivityDetector(VOICE_VAD)
        events = vad.process(samples, 16_000) + vad.process(np.zeros(16_000, np.float32), 16_000)
        pieces = [e.audio for e in events if e.kind == "speech_end" and e.audio is not None]
        for i, audio in enumerate(pieces):
            if 0.5 <= len(audio) / 16_000 <= max_s:
                out.append((f"{path.name}#{i}", None, audio))
    with (ROOT / "bench" / "data" / "speech_questions.tsv").open(encoding="utf-8") as handle:
        rows = [r for r in csv.reader(handle, delimiter="\t") if r and not r[0].startswith("#")]
    with tempfile.TemporaryDirectory() as tmp:
        for n, (language, question) in enumerate(rows[1:] if rows[0][0] == "language" else rows):
            wav = Path(tmp) / f"{n}.wav"
            done = subprocess.run(["espeak-ng", "-v", language, "-w", str(wav), question], capture_output=True)
            if done.returncode == 0 and wav.exists():
                out.append((f"espeak-{language}-{n}", language, media.load_audio(str(wav)).samples))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a CTranslate2 Whisper folder (default: Whisper base from tests.real_models)")
    parser.add_argument("--windows", type=float, nargs="+", default=[30.0, 15.0, 10.0, 8.0, 5.0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "asr_window.json")
    args = parser.parse_args(argv)

    from backend.media import AudioClip
    from backend.models import whisper_ctranslate2
    from backend.models.whisper_ctranslate2 import CTranslate2Whisper

    if args.model is None:
        from tests.real_models import folder

        args.model = folder("whisper-base")
    clips = utterances()
    recognizer = CTranslate2Whisper(args.model)
    recognizer.load()
    load_before = [round(x, 2) for x in os.getloadavg()]
    texts: dict[float, list[str]] = {}
    encode: dict[float, list[float]] = {}
    for window in sorted(args.windows, reverse=True):
        whisper_ctranslate2.MIN_WINDOW_S = window  # the shortest window the encoder is given
        texts[window], encode[window] = [], []
        for _name, language, samples in clips:
            heard = recognizer.transcribe(AudioClip(samples=samples), language)
            texts[window].append(heard.text)
            encode[window].append(heard.timings.get("encode", 0.0))
    full = max(args.windows)
    result: dict = {"model": args.model, "utterances": len(clips), "load_before": load_before, "windows": {}}
    for window in sorted(args.windows, reverse=True):
        changes = [edit_distance(words(a), words(b)) / max(1, len(words(a))) for a, b in zip(texts[full], texts[window], strict=True)]
        changed = [(name, a, b) for (name, _, _), a, b in zip(clips, texts[full], texts[window], strict=True)
                   if words(a) != words(b)]
        result["windows"][str(window)] = {
            "encode_s_median": round(statistics.median(encode[window]), 3),
            "same_words": round(sum(c == 0 for c in changes) / len(changes), 3),
            "word_change_rate": round(sum(changes) / len(changes), 4),
            "changed": [{"clip": n, "30s": a, "short": b} for n, a, b in changed[:12]],
        }
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(result, indent=2, ensure_ascii=False)
    print(text)
    args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
