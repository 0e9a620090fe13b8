"""Spoken language with doubt in it: Whisper's top-1 alone against the app's decision. Prints JSON.

    python bench/speech_language.py [--real-dir /tmp/real] [--questions 1] [--out FILE]

Clips: the corpus's real recordings and espeak-ng speech of bench/data/speech_questions.tsv.
Each goes through ``Conversation.hear`` with the trained Whisper base (faster-whisper, int8):
with no prior, with the browser in the clip's language (an unsure Whisper hears the clip again
in it), with an English browser, and with the language pinned (Whisper transcribes in it; the
text detector then reads the transcript). Counted: right / not sure / wrong-named, and clips
answered "I did not catch that".
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import report  # noqa: E402
from bench.speech import CORPUS, CORPUS_SPEECH, spoken_questions  # noqa: E402

SETTINGS = ("whisper_top1", "no_prior", "matching_browser", "english_browser", "pinned")


def clips(questions: int, folder: Path) -> list[tuple[str, str, Path]]:
    """(name, language, wav path): the corpus recordings, then espeak-ng questions."""
    import soundfile as sf

    from backend.models.tts import SpeechRouter

    out = [(name, lang, CORPUS / "speech" / name) for name, (lang, _) in CORPUS_SPEECH.items()
           if (CORPUS / "speech" / name).exists()]
    router = SpeechRouter()
    for i, (lang, question) in enumerate(spoken_questions(questions)):
        voice = router.voice_for(lang)
        if voice is None:
            continue
        chunk = router.say(question, lang, voice)
        path = folder / f"{lang}-{i}.wav"
        sf.write(path, chunk.samples, chunk.sample_rate)
        out.append((f"espeak {lang}-{i}", lang, path))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real-dir", type=Path, default=Path(tempfile.gettempdir()) / "omnilingo-real")
    parser.add_argument("--questions", type=int, default=1, help="espeak-ng questions per language")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from backend.conversation.turns import Conversation
    from backend.language import tags
    from backend.language.detect import detect
    from backend.models.whisper_ctranslate2 import CTranslate2Whisper
    from tests import real_models
    from tests.fakes import ScriptedEngine

    recognizer = CTranslate2Whisper(str(real_models.assemble("whisper-base", args.real_dir)), compute_type="int8")
    recognizer.load()
    counts = {s: {"right": 0, "unsure": 0, "wrong": 0, "no_speech": 0} for s in SETTINGS}
    rows = []
    hearings = 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name, lang, path in clips(args.questions, Path(tmp)):
            row: dict = {"clip": name, "language": lang}
            settings = {"no_prior": ("auto", ()), "matching_browser": ("auto", (lang,)),
                        "english_browser": ("auto", ("en",)), "pinned": (lang, ())}
            for setting, (pinned, browser) in settings.items():
                if setting == "english_browser" and lang == "en":
                    continue
                conversation = Conversation(ScriptedEngine(), Path(tmp) / "session", asr=recognizer)
                calls = []
                transcribe = recognizer.transcribe

                def counted(clip, language=None, _calls=calls, _transcribe=transcribe):
                    _calls.append(language)
                    return _transcribe(clip, language=language)

                conversation.asr = type("Counted", (), {"transcribe": staticmethod(counted)})()
                turn = conversation.add(conversation.prepare("", [str(path)], pinned, browser=browser))
                heard = conversation.hear(turn)
                hearings += len(calls)
                if setting == "no_prior":
                    top = tags.normalize_tag(turn.language.tag)
                    row["whisper"] = f"{top} {turn.language.confidence:.2f}"
                    counts["whisper_top1"]["right" if top == lang else "wrong"] += 1
                if not heard:
                    counts[setting]["no_speech"] += 1
                    row[setting] = "no_speech"
                    continue
                if setting == "pinned":  # what language the transcript is in, read by the text detector
                    decided = detect(turn.transcript).tag
                else:
                    decided = turn.answer_language
                outcome = "right" if decided == lang else "unsure" if decided == tags.UNKNOWN else "wrong"
                counts[setting][outcome] += 1
                row[setting] = f"{decided} ({turn.language_source}, heard {len(calls)}x)"
                conversation.close()
            rows.append(row)
    result = {
        "clips": len(rows),
        "languages": len({r["language"] for r in rows}),
        "model": "Whisper base (faster-whisper int8, tests.real_models)",
        "counts": counts,
        "share_right": {s: round(c["right"] / max(1, sum(c.values())), 3) for s, c in counts.items()},
        "transcriptions_per_clip": round(hearings / max(1, len(rows)), 2),
        "seconds": round(time.perf_counter() - started, 1),
        "rows": rows,
    }
    report(result, args.out)


if __name__ == "__main__":
    main()
