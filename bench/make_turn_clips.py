"""Cut real read speech into finished and unfinished utterances for bench/turn_taking.py.

Whisper base (faster-whisper, ``word_timestamps=True``) gives each word's start and end in the
corpus's long recordings (silero_en.wav, silero_de.wav: 60 s of read speech each). A sentence is
the run of words up to one that ends in . ! or ?. From each sentence:

* ``complete``: the sentence from its first word to its last;
* ``incomplete``: the sentence from its first word to the end of an inner word, at most four cuts
  a sentence, never right after the first word or before the last (the sentence goes on after it).

A cut falls between two words: at the middle of the gap Whisper leaves between them, or at the
first word's end when they touch, with a 10 ms fade so the cut itself makes no click. Clips are
written to ``OUT/{first,second}/{complete,incomplete}/`` by the half of the recording where they
end (first: 0-30 s, tuning; second: 30-60 s, held out), with ``clips.json`` listing every clip's
words.

    python bench/make_turn_clips.py --out /tmp/turn_clips [--model OUTDIR/whisper-base]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.audio.pcm import SAMPLE_RATE, StreamResampler  # noqa: E402

LEAD_S = 0.15  # audio kept before the first word (Whisper's word starts are a little late)
FADE_S = 0.01
HALF_S = 30.0
CUTS_PER_SENTENCE = 4  # evenly spread over the sentence's inner word boundaries
SENTENCE_END = (".", "!", "?")


def words_of(path: Path, model_dir: str) -> tuple[np.ndarray, str, list[dict]]:
    from faster_whisper import WhisperModel

    data, rate = sf.read(path, dtype="float32", always_2d=True)
    resampler = StreamResampler()
    audio = np.concatenate([resampler(data, rate), resampler.flush()])
    model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=2)
    segments, info = model.transcribe(audio, word_timestamps=True, beam_size=5, vad_filter=False)
    words = [{"w": w.word.strip(), "start": float(w.start), "end": float(w.end)} for s in segments for w in s.words]
    return audio, info.language, [w for w in words if w["w"]]


def cut_point(words: list[dict], i: int) -> float:
    """Seconds between word i and word i+1."""
    end = words[i]["end"]
    if i + 1 < len(words) and words[i + 1]["start"] > end:
        return (end + words[i + 1]["start"]) / 2
    return end


def clip(audio: np.ndarray, start: float, end: float) -> np.ndarray:
    piece = audio[max(0, int(start * SAMPLE_RATE)) : int(end * SAMPLE_RATE)].copy()
    fade = min(len(piece), int(FADE_S * SAMPLE_RATE))
    if fade:
        piece[-fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
    return piece


def sentences(words: list[dict]) -> list[list[int]]:
    out, current = [], []
    for i, w in enumerate(words):
        current.append(i)
        if w["w"].endswith(SENTENCE_END):
            out.append(current)
            current = []
    return out  # a trailing run without an end mark was cut by the recording's end: left out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    corpus = ROOT / "tests" / "fixtures"  # the corpus as vendored with the tests
    parser.add_argument("--recordings", nargs="+", type=Path,
                        default=[corpus / "speech" / "silero_en.wav", corpus / "speech" / "silero_de.wav"])
    parser.add_argument("--model", default=None,
                        help="faster-whisper (CTranslate2) folder (default: Whisper base from tests.real_models)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.model is None:
        from tests import real_models

        args.model = real_models.folder("whisper-base")

    listing = []
    for path in args.recordings:
        audio, language, words = words_of(path, args.model)
        for s_index, sentence in enumerate(sentences(words)):
            first = sentence[0]
            start = max(0.0, words[first]["start"] - LEAD_S)
            if first > 0:
                start = max(start, cut_point(words, first - 1))
            cuts = [("complete", sentence[-1])]
            inner = sentence[1:-2]  # not after the first word, and at least two words still to come
            if inner:
                picks = sorted({inner[(k * len(inner)) // CUTS_PER_SENTENCE] for k in range(CUTS_PER_SENTENCE)})
                cuts += [("incomplete", i) for i in picks]
            for kind, last in cuts:
                end = cut_point(words, last) if kind == "incomplete" else words[last]["end"] + 0.05
                half = "first" if end <= HALF_S else "second"
                if start < HALF_S < end:
                    continue  # a clip across the middle belongs to neither half
                name = f"{path.stem}_{s_index:02d}_{kind[0]}{last:03d}.wav"
                folder = args.out / half / kind
                folder.mkdir(parents=True, exist_ok=True)
                sf.write(folder / name, clip(audio, start, end), SAMPLE_RATE, subtype="PCM_16")
                text = " ".join(words[j]["w"] for j in range(first, last + 1))
                listing.append({"file": f"{half}/{kind}/{name}", "language": language, "start": round(start, 3),
                                "end": round(end, 3), "text": text,
                                "next": words[last + 1]["w"] if last + 1 < len(words) else None})
    (args.out / "clips.json").write_text(json.dumps(listing, ensure_ascii=False, indent=1))
    counts: dict[str, int] = {}
    for item in listing:
        key = item["file"].rsplit("/", 1)[0]
        counts[key] = counts.get(key, 0) + 1
    print(json.dumps({"out": str(args.out), "clips": counts}))


if __name__ == "__main__":
    main()
