"""Cut real read speech into finished and unfinished utterances for bench/turn_taking.py.

Whisper base (faster-whisper, ``word_timestamps=True``) gives each word's start and end in the
corpus's long recordings (silero_en.wav, silero_de.wav: 60 s of read speech each). A sentence is
the run of words up to one that ends in . ! or ?. From each sentence:

* ``complete``: the sentence from its first word to its last;
* ``incomplete``: the sentence from its first word to the end of an inner word, at most four cuts
  a sentence, never right after the first word or before the last (the sentence goes on after it).

A cut falls between two words: at the middle of the gap Whisper leaves between them, or at the
first word's end when they touch, but never later than 0.1 s before the next word's start, with a
10 ms fade so the cut itself makes no click. Why the margin: Whisper base puts nearly every word
edge to edge with the next, and its word starts are late (see LEAD_S), so a cut at the boundary
can hold the onset of the next word, which tells a listener (and Smart Turn) that the sentence
went on. Shaving the end of the last word instead leaves an utterance that is still unfinished.
As a check, every clip is transcribed once more on its own (the app's Whisper base, in the
recording's language) and dropped when its transcript ends in one of the two words that follow
the cut; dropped clips stay in ``clips.json`` with ``"dropped"`` and the transcript that showed it.
An unfinished clip may still hold a pause after words that read as a sentence of their own
("... Glashäusern, | die einfach ..."): handed over there, it is rightly counted as cut off.
Clips are written to ``OUT/{first,second}/{complete,incomplete}/`` by the half of the
recording where they end (first: 0-30 s, tuning; second: 30-60 s, held out), with ``clips.json``
listing every clip's words.

    python bench/make_turn_clips.py --out /tmp/turn_clips [--model OUTDIR/whisper-base]

Whisper's word times move with the CPU's int8 kernels, and so do the clips: ``--cut-list`` cuts the clips of an
earlier run's ``clips.json`` again, at the same times and without Whisper, so that figures from two machines
compare. ``bench/data/turn_clips.json`` lists the clips of ``bench/results/turn_taking_avx512.json``.

    python bench/make_turn_clips.py --out /tmp/turn_clips --cut-list bench/data/turn_clips.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.audio.pcm import SAMPLE_RATE, resample_whole  # noqa: E402

LEAD_S = 0.15  # audio kept before the first word (Whisper's word starts are a little late)
NEXT_MARGIN_S = 0.1  # an inner cut ends at least this long before the next word's start
MIN_CLIP_S = 0.2  # shorter than a syllable: no utterance to judge
FADE_S = 0.01
HALF_S = 30.0
CUTS_PER_SENTENCE = 4  # evenly spread over the sentence's inner word boundaries
SENTENCE_END = (".", "!", "?")


def words_of(path: Path, model_dir: str) -> tuple[np.ndarray, str, list[dict]]:
    from faster_whisper import WhisperModel

    data, rate = sf.read(path, dtype="float32", always_2d=True)
    audio = resample_whole(data, rate)
    model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=2)
    segments, info = model.transcribe(audio, word_timestamps=True, beam_size=5, vad_filter=False)
    words = [{"w": w.word.strip(), "start": float(w.start), "end": float(w.end)} for s in segments for w in s.words]
    return audio, info.language, [w for w in words if w["w"]]


def cut_point(words: list[dict], i: int) -> float:
    """Seconds between word i and word i+1 (the start of a clip after word i)."""
    end = words[i]["end"]
    if i + 1 < len(words) and words[i + 1]["start"] > end:
        return (end + words[i + 1]["start"]) / 2
    return end


def inner_cut(words: list[dict], i: int) -> float:
    """The end of a clip cut after word i: before word i+1 has begun, even at the cost of word i's tail."""
    cut = cut_point(words, i)
    if i + 1 < len(words):
        cut = min(cut, words[i + 1]["start"] - NEXT_MARGIN_S)
    return cut


def _norm(word: str) -> str:
    return re.sub(r"[^\w']", "", word.lower())


def holds_next(transcript: str, own: str, following: list[str]) -> bool:
    """True when the transcript ends in one of the words that follow the cut (not in one of its own).

    Only the last word counts: Whisper mishears a clip's first word as readily ("Es" as "Das")."""
    heard = [_norm(w) for w in transcript.split()]
    mine = {_norm(w) for w in own.split()[-2:]}
    return bool(heard) and heard[-1] in {_norm(w) for w in following} - mine - {""}


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


def cut_again(listing_path: Path, recordings: list[Path], out: Path) -> None:
    """Write the clips of ``listing_path`` (a clips.json) from the recordings, at the times it gives."""
    listing = json.loads(listing_path.read_text(encoding="utf-8"))
    audio = {}
    for path in recordings:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
        audio[path.stem] = resample_whole(data, rate)
    counts: dict[str, int] = {}
    for item in listing:
        if "dropped" in item:
            continue
        name = item["file"].rsplit("/", 1)[-1]
        stem = name.rsplit("_", 2)[0]  # silero_de_03_i088.wav: from silero_de
        target = out / item["file"]
        target.parent.mkdir(parents=True, exist_ok=True)
        sf.write(target, clip(audio[stem], item["start"], item["end"]), SAMPLE_RATE, subtype="PCM_16")
        key = item["file"].rsplit("/", 1)[0]
        counts[key] = counts.get(key, 0) + 1
    (out / "clips.json").write_text(json.dumps(listing, ensure_ascii=False, indent=1))
    print(json.dumps({"out": str(out), "clips": counts, "cut_list": str(listing_path)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    corpus = ROOT / "tests" / "fixtures"  # the corpus as vendored with the tests
    parser.add_argument("--recordings", nargs="+", type=Path,
                        default=[corpus / "speech" / "silero_en.wav", corpus / "speech" / "silero_de.wav"])
    parser.add_argument("--model", default=None,
                        help="faster-whisper (CTranslate2) folder (default: Whisper base from tests.real_models)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cut-list", type=Path, default=None,
                        help="an earlier run's clips.json: cut the same clips again (no Whisper)")
    args = parser.parse_args()
    if args.cut_list is not None:
        cut_again(args.cut_list, args.recordings, args.out)
        return
    if args.model is None:
        from tests import real_models

        args.model = real_models.folder("whisper-base")

    from backend.media import AudioClip
    from backend.models.whisper_ctranslate2 import CTranslate2Whisper

    recognizer = CTranslate2Whisper(args.model, cpu_threads=2)  # as the app and bench/turn_taking.py hear
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
                end = inner_cut(words, last) if kind == "incomplete" else words[last]["end"] + 0.05
                half = "first" if end <= HALF_S else "second"
                if start < HALF_S < end:
                    continue  # a clip across the middle belongs to neither half
                name = f"{path.stem}_{s_index:02d}_{kind[0]}{last:03d}.wav"
                text = " ".join(words[j]["w"] for j in range(first, last + 1))
                following = words[last + 1]["w"] if last + 1 < len(words) else None
                item = {"file": f"{half}/{kind}/{name}", "language": language, "start": round(start, 3),
                        "end": round(end, 3), "text": text, "next": following}
                if end - start < MIN_CLIP_S:
                    listing.append({**item, "dropped": "too short once cut before the next word"})
                    continue
                piece = clip(audio, start, end)
                heard = recognizer.transcribe(AudioClip(samples=piece), language=language).text.strip()
                item["heard"] = heard
                if holds_next(heard, text, [w["w"] for w in words[last + 1 : last + 3]]):
                    item["dropped"] = "its transcript already holds the next word: the cut is not before it"
                else:
                    folder = args.out / half / kind
                    folder.mkdir(parents=True, exist_ok=True)
                    sf.write(folder / name, piece, SAMPLE_RATE, subtype="PCM_16")
                listing.append(item)
    (args.out / "clips.json").write_text(json.dumps(listing, ensure_ascii=False, indent=1))
    counts: dict[str, int] = {}
    for item in listing:
        key = item["file"].rsplit("/", 1)[0] + (" dropped" if "dropped" in item else "")
        counts[key] = counts.get(key, 0) + 1
    print(json.dumps({"out": str(args.out), "clips": counts}))


if __name__ == "__main__":
    main()
