"""Everyday finished utterances for bench/turn_taking.py: does a rule keep finished turns waiting?

bench/make_turn_clips.py cuts two long recordings of read speech; what people say to an assistant is
shorter and in more languages. This writes, as ``OUT/complete/NAME_LANG_N.wav`` (the name pattern
bench/turn_taking.py reads the language from):

* the corpus's short real recordings (tests/fixtures/speech: jfk.flac, sr_english.wav, sr_french.aiff,
  sr_chinese.flac), each a finished utterance;
* every question of bench/data/speech_questions.tsv (two a language, 28 languages) spoken by
  espeak-ng through the app's own SpeechRouter.

    python bench/make_finished_clips.py --out DIR
    python bench/turn_taking.py --complete DIR/complete --modes smart-chosen --verbose
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.audio.pcm import SAMPLE_RATE, resample_whole  # noqa: E402

SPEECH = ROOT / "tests" / "fixtures" / "speech"
RECORDINGS = {"jfk.flac": "en", "sr_english.wav": "en", "sr_french.aiff": "fr", "sr_chinese.flac": "zh"}
QUESTIONS = ROOT / "bench" / "data" / "speech_questions.tsv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    out = args.out / "complete"
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for name, language in RECORDINGS.items():
        data, rate = sf.read(SPEECH / name, dtype="float32", always_2d=True)
        sf.write(out / f"corpus_{language}_{Path(name).stem}.wav", resample_whole(data, rate), SAMPLE_RATE)
        written += 1

    from backend.models.tts import EspeakEngine, SpeechRouter

    router = SpeechRouter(engines=[EspeakEngine()])
    skipped = []
    for i, line in enumerate(QUESTIONS.read_text(encoding="utf-8").splitlines()):
        if not line.strip() or line.startswith("#"):
            continue
        language, question = line.split("\t")
        voice = router.voice_for(language)
        if voice is None:
            skipped.append(language)
            continue
        chunk = router.say(question, language, voice)
        sf.write(out / f"espeak_{language}_{i:02d}.wav", resample_whole(chunk.samples, chunk.sample_rate), SAMPLE_RATE)
        written += 1
    print({"written": written, "folder": str(out), "no_voice": sorted(set(skipped))})


if __name__ == "__main__":
    main()
