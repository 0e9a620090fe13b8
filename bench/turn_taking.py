"""Turn-taking bench: are finished utterances handed over quickly, and unfinished ones not cut off?

Each WAV file (``--complete``: finished utterances; ``--incomplete``: utterances cut inside a
sentence that goes on; bench/make_turn_clips.py makes both from real recordings) is played
into the app's own ``VoiceSession`` as the browser sends it (48 kHz int16, ``--chunk-s`` chunks)
with 0.3 s of silence before and 3 s after. Speech recognition is real Whisper base through
faster-whisper (``--asr-model``), behind the same ``transcribe(clip) -> Transcript`` call the app
makes.

Time: by default the stream is simulated: a chunk is handed in when its last sample would have
been recorded, or later if the session is still busy with the previous one, and the time each
``hear`` call takes is added to the clock (so Smart Turn and the transcription at a pause count
in full, as they would on a live stream). ``--real-time`` feeds the chunks at the microphone's pace
instead and reads the wall clock.

* ``end_ms`` (finished utterances): end of speech (the last 10 ms frame above the clip's speech
  floor) -> the utterance handed over. ``words_ms``: -> the transcript is ready as well (in
  "silence" mode the words are heard after the hand-over, so their time is added).
* ``stream_ms``: the part of ``end_ms`` that is waiting for audio (the pause, the chunk); the rest
  is computing (Smart Turn, the words at the pause, and any backlog of chunks).
* ``early`` (finished utterances): handed over at a pause inside the sentence, before its end.
* ``cut_off`` (unfinished utterances): handed over less than 1 s after the speech stopped (or
  before it stopped, at a pause inside the clip), on the stream clock: a slow machine must not turn
  a wrong "finished" into a long enough wait. ``early`` likewise.

Modes (``--modes``): ``silence`` (today's rule: 0.5 s of silence), ``audio`` (Smart Turn alone at
200 ms pauses), ``smart`` (Smart Turn and the transcript's last word, the language unknown: a first
turn with "auto" and no browser language), ``smart-chosen`` (the same with the language picked in the
page, taken from the file name ``NAME_LANG_...wav`` that bench/make_turn_clips.py writes),
``smart-browser`` (nothing picked, the browser's language is the recording's) and ``smart-browser-other``
(the browser's is the other one: English for German recordings and the other way round). With one mode it prints
``{"complete": {...}, "incomplete": {...}, "config": {...}}``; with several, one such object per
mode under ``"modes"``.

    python bench/turn_taking.py --complete DIR --incomplete DIR [--modes silence,audio,smart]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.audio.pcm import SAMPLE_RATE, resample_whole  # noqa: E402
from backend.audio.turn_end import TurnEndConfig, TurnEndDetector  # noqa: E402
from backend.conversation.turns import Conversation  # noqa: E402
from backend.conversation.voice import MIC_CHUNK_S, VOICE_VAD, VoiceSession  # noqa: E402
from backend.models.asr import Transcript  # noqa: E402
from backend.models.whisper_ctranslate2 import CTranslate2Whisper  # noqa: E402

MIC_SR = 48000
LEAD_S = 0.3
TAIL_S = 3.0
CUT_OFF_S = 1.0
OTHER_LANGUAGE = {"en": "de", "de": "en"}  # a browser set to the other language of the recordings


class TimedRecognizer:
    """The app's own CTranslate2 Whisper, with the time of every call kept for the report."""

    def __init__(self, model_dir: str, threads: int) -> None:
        self.recognizer = CTranslate2Whisper(model_dir, cpu_threads=threads)
        self.calls: list[float] = []

    def transcribe(self, clip, language: str | None = None) -> Transcript:
        started = time.perf_counter()
        try:
            return self.recognizer.transcribe(clip, language=language)
        finally:
            self.calls.append(time.perf_counter() - started)


def speech_end(samples: np.ndarray) -> float:
    """Seconds to the end of the last 10 ms frame well above the clip's floor (independent of the VAD)."""
    frame = SAMPLE_RATE // 100
    n = len(samples) // frame
    rms = np.sqrt(np.mean(samples[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    floor = max(10 ** (-50 / 20), 0.1 * float(np.percentile(rms, 95)))
    loud = np.nonzero(rms > floor)[0]
    return (int(loud[-1]) + 1) * frame / SAMPLE_RATE if len(loud) else len(samples) / SAMPLE_RATE


def load(path: Path) -> np.ndarray:
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    return resample_whole(data, rate)


def to_mic(samples: np.ndarray) -> np.ndarray:
    import soxr

    return (np.clip(soxr.resample(samples, SAMPLE_RATE, MIC_SR), -1, 1) * 32767).astype(np.int16)


def run_clip(voice: VoiceSession, clip: np.ndarray, chunk_s: float, real_time: bool) -> dict:
    """Play one clip; returns when (seconds after the end of speech) the turn was handed over."""
    stream = np.concatenate([np.zeros(int(LEAD_S * SAMPLE_RATE), np.float32), clip,
                             np.zeros(int(TAIL_S * SAMPLE_RATE), np.float32)])
    end = LEAD_S + speech_end(clip)
    pcm = to_mic(stream)
    step = int(MIC_SR * chunk_s)
    voice.start()
    clock = 0.0
    wall0 = time.perf_counter()
    try:
        for k, i in enumerate(range(0, len(pcm), step)):
            arrival = (k + 1) * chunk_s
            if real_time:
                time.sleep(max(0.0, wall0 + arrival - time.perf_counter()))
            clock = max(clock, arrival)
            t0 = time.perf_counter()
            events = voice.hear(pcm[i : i + step], MIC_SR)
            if not real_time:
                voice.wait_for_verdict()  # the judgement's time counts as if the stream waited for it
            clock += time.perf_counter() - t0
            if real_time:
                clock = time.perf_counter() - wall0
            handed = next((e for e in events if e.kind in {"utterance", "stop_request"}), None)
            if handed is not None:
                # stream: the chunk that settled it arrived; compute: Smart Turn, words, and any backlog
                return {"after_s": clock - end, "stream_s": arrival - end, "transcript": handed.transcript,
                        "verdict": asdict(handed.verdict) if handed.verdict else None, "audio": handed.audio}
    finally:
        voice.stop()
    return {"after_s": None, "stream_s": None, "transcript": None, "verdict": None, "audio": None}


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def bench_mode(mode: str, files: dict[str, list[Path]], asr: TimedRecognizer, args) -> dict:
    words = mode.startswith("smart")
    turn_config = TurnEndConfig(pause_ms=args.pause_ms, finished_probability=args.threshold,
                                unfinished_wait_ms=args.wait_ms, sure_end_probability=args.sure_end_probability,
                                use_words=words, use_end_mark=not args.no_end_mark)
    conversation = Conversation(engine=None, session_dir=Path(tempfile.mkdtemp(prefix="turn-bench-")),
                                asr=asr if words else None)
    voice = VoiceSession(conversation, end_of_turn="silence" if mode == "silence" else "smart",
                         turn_end=None if mode == "silence" else TurnEndDetector(turn_config))
    out: dict = {}
    rows = []
    calls_before = len(asr.calls)
    for kind, paths in files.items():
        results = []
        for path in paths:
            # "smart-chosen": the user picked the language in the page (here: the recording's, from its name);
            # "smart-browser": the browser's language is the recording's; "smart-browser-other": it is not.
            spoken = path.name.split("_")[1]
            voice.spoken_language = spoken if mode == "smart-chosen" else None
            voice.browser_languages = ((spoken,) if mode == "smart-browser"
                                       else (OTHER_LANGUAGE.get(spoken, "en"),) if mode == "smart-browser-other" else ())
            r = run_clip(voice, load(path), args.chunk_s, args.real_time)
            words_s = r["after_s"]
            if r["after_s"] is not None and r["transcript"] is None and kind == "complete":
                from backend.media import AudioClip

                t0 = time.perf_counter()  # the words are heard after the hand-over, as the turn does today
                asr.transcribe(AudioClip(samples=r["audio"]))
                words_s += time.perf_counter() - t0
            results.append((r, words_s))
            rows.append({"file": path.name, "kind": kind,
                         "after_ms": None if r["after_s"] is None else round(r["after_s"] * 1000),
                         "stream_ms": None if r["stream_s"] is None else round(r["stream_s"] * 1000),
                         "text": getattr(r["transcript"], "text", None), "verdict": r["verdict"]})
        if kind == "complete":
            ok = [(r, w) for r, w in results if r["stream_s"] is not None and r["stream_s"] >= 0]
            handed = [r["after_s"] * 1000 for r, _ in ok]
            words_ms = [w * 1000 for _, w in ok]
            stream = [r["stream_s"] * 1000 for r, _ in ok]
            out[kind] = {"n": len(paths), "end_ms": {"median": percentile(handed, 50), "p95": percentile(handed, 95)},
                         "words_ms": {"median": percentile(words_ms, 50), "p95": percentile(words_ms, 95)},
                         "stream_ms": {"median": percentile(stream, 50), "p95": percentile(stream, 95)},
                         "early": sum(1 for r, _ in results if r["stream_s"] is not None and r["stream_s"] < 0),
                         "never": sum(1 for r, _ in results if r["after_s"] is None)}
        else:
            # Judged on the stream clock: a slow machine must not turn a wrong "finished" into a wait.
            cut = sum(1 for r, _ in results if r["stream_s"] is not None and r["stream_s"] < CUT_OFF_S)
            out[kind] = {"n": len(paths), "cut_off": cut, "cut_off_rate": round(cut / len(paths), 3) if paths else None}
    out["asr_calls_at_pauses"] = len(asr.calls) - calls_before - (0 if words else len(files["complete"]))
    vad = voice.vad.config
    out["config"] = {"mode": mode, "vad_end_silence_ms": vad.end_silence_ms, "min_speech_ms": vad.min_speech_ms,
                     "chunk_s": args.chunk_s, "real_time": args.real_time, "asr": args.asr_model,
                     **({} if mode == "silence" else asdict(turn_config))}
    if args.verbose:
        out["clips"] = rows
    return out


def smart_turn_ms(runs: int = 10) -> float | None:
    """Time of one Smart Turn call (8 s of audio, features included) on this machine now."""
    from backend.audio.turn_end import smart_turn

    model = smart_turn()
    audio = np.random.default_rng(0).standard_normal(8 * SAMPLE_RATE).astype(np.float32) * 0.1
    took = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model.probability(audio)
        took.append((time.perf_counter() - t0) * 1000)
    return percentile(took, 50)


RULES = {"silence": "silence 0.5 s", "audio": "Smart Turn alone",
         "smart": "Smart Turn + words, nothing known of the language", "smart-chosen": "Smart Turn + words, language chosen",
         "smart-browser": "Smart Turn + words, the browser's language",
         "smart-browser-other": "Smart Turn + words, the browser in the other language"}
HALVES = {"tuning_first_half": "tuning 0–30 s", "held_out_second_half": "held out 30–60 s"}


def table_rows(result: dict, modes: list[str], label: str = "") -> list[str]:
    """README rows: half | rule | finished n | decided | words ready | early | unfinished n | cut off | calls."""
    def ms(stat: dict) -> str:
        return " / ".join("—" if stat[k] is None else f"{stat[k]:.0f}" for k in ("median", "p95"))

    rows = []
    for half, name in HALVES.items():
        for mode in modes:
            r = result[half]["modes"][mode]
            c, u = r["complete"], r["incomplete"]
            rows.append(f"| {name} | {RULES.get(mode, mode)}{' ' + label if label else ''} | {c['n']} | {ms(c['stream_ms'])} "
                        f"| {ms(c['words_ms'])} | {c['early']} | {u['n']} | {u['cut_off']} ({u['cut_off_rate']:.0%}) "
                        f"| {r['asr_calls_at_pauses']} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--complete", type=Path, nargs="*", default=[], help="folder(s) of finished utterances")
    parser.add_argument("--incomplete", type=Path, nargs="*", default=[], help="folder(s) of cut-off utterances")
    parser.add_argument("--modes", default="smart", help="comma-separated: silence, audio, smart")
    parser.add_argument("--asr-model", default=None,
                        help="faster-whisper (CTranslate2) folder (default: Whisper base from tests.real_models)")
    parser.add_argument("--asr-threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--chunk-s", type=float, default=MIC_CHUNK_S, help="the page's microphone chunks")
    parser.add_argument("--pause-ms", type=int, default=TurnEndConfig.pause_ms)
    parser.add_argument("--threshold", type=float, default=TurnEndConfig.finished_probability)
    parser.add_argument("--wait-ms", type=int, default=TurnEndConfig.unfinished_wait_ms)
    parser.add_argument("--sure-end-probability", type=float, default=TurnEndConfig.sure_end_probability)
    parser.add_argument("--no-end-mark", action="store_true",
                        help="no 'unsure' outcome from Whisper's closing mark (the rule before it)")
    parser.add_argument("--real-time", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="list every clip's outcome")
    parser.add_argument("--table", type=Path, help="print README rows (--modes of them) from a results file that has "
                        "both halves, as bench/results/turn_taking_end_mark.json, and run nothing")
    parser.add_argument("--label", default="", help="with --table: added to each rule's name, as '(before)'")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.table:
        print("\n".join(table_rows(json.loads(args.table.read_text(encoding="utf-8")), modes, args.label)))
        return
    if not args.complete:
        parser.error("--complete is needed")
    if args.asr_model is None:
        from tests import real_models

        args.asr_model = real_models.folder("whisper-base")

    files = {"complete": sorted(p for d in args.complete for p in d.glob("*.wav")),
             "incomplete": sorted(p for d in args.incomplete for p in d.glob("*.wav"))}
    asr = TimedRecognizer(args.asr_model, args.asr_threads)
    from backend.audio.turn_end import smart_turn

    smart_turn()  # loaded before the first clip, as the app loads it at start-up
    results = {m: bench_mode(m, files, asr, args) for m in modes}
    silence_vad = VOICE_VAD.end_silence_ms
    load = {"asr_ms_median": percentile([c * 1000 for c in asr.calls], 50), "smart_turn_ms_median": smart_turn_ms(),
            "load_average_1min": round(os.getloadavg()[0], 1), "cpus": os.cpu_count()}
    if len(modes) == 1:
        print(json.dumps({**results[modes[0]], "machine": load}, ensure_ascii=False))
    else:
        print(json.dumps({"modes": results, "silence_rule_ms": silence_vad, "machine": load}, ensure_ascii=False))


if __name__ == "__main__":
    main()
