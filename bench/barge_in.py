"""Barge-in bench: how fast a user can cut in, what falsely cuts in, and how fast a reply starts.

Everything runs through the code path of the web UI's voice mode: microphone chunks of
48 kHz int16 go into ``VoiceSession.hear`` (resampler, echo guard, silero VAD, turn state);
answers stream from the tiny random Gemma 4 (built offline into a temporary folder) through
``answer_aloud(..., speak=True)`` with espeak-ng, and every audio chunk handed out goes to
``VoiceSession.played`` as the UI does before the browser plays it.

Method
------
P1 (onset of user speech -> old answer stopped and its audio dropped) runs in real time. An
answer is started and spoken; once its first audio chunk is out, a mic stream is fed at the
pace of a real microphone, one chunk every ``--chunk-s`` seconds, each handed over when its
last sample would have been recorded. The stream holds low noise, the assistant's own voice
coming back (what ``played`` registered, through a simulated room, -6 dB, 30-200 ms late),
then someone starting to talk: the first 3 s after a pause in a real recording (``utterance_starts``).
With ``w0`` the wall time of stream time 0, the onset happens at ``w0 + onset``, ``onset`` being
the first word's (``word_onset_of``, from the recording's energy, independent of the VAD).
"Stopped" is the later of: the barge-in event returned by ``hear`` (the conversation's
generation moved on: the turn is interrupted and stale audio is dropped by AnswerSpeaker),
and ``answer_aloud`` returning (which happens only after the engine's generate() thread was
joined). P1 = stopped - (w0 + onset); ``p1_from_first_sound_ms`` takes the first sound within 30 dB
of the talker's level instead (``onset_of``: breaths and clicks before the words count). Audio chunks of the old generation that still come
out after the barge-in are counted (``p1_stale_chunks``; must be 0). ``p1_paused_ms`` is what the user
hears first: onset -> the ``pause`` event that silences the page's answer at the VAD's speech candidate,
before the barge-in is confirmed.

P2 (false barge-ins, detection) and P3 are fed faster than real time: the VAD's decisions
depend only on the samples, never on wall time. For P2 the session is put in the speaking
state (an answer is playing), so any confirmed speech start is a barge-in; a ``pause`` that
ends in ``resume`` is a false pause (``noise_paused``, ``echo_paused``: trials with one;
``paused_s``: the seconds of answer they held back in all). Noise: the files
of ``--noise`` (5 s slices, or the whole file), else generated white, pink, tone, click,
chord, typing, hum, door... clips of 3 s at three levels. Echo: espeak-ng speaking answers in
several languages (``--echo-voice piper``: the Piper voices of ``--piper-voices``, in the languages
they speak, with five more English answers),
registered with ``played`` and heard back at -6 dB with 30-200 ms delay through a room that pauses
and resumes with the page, ``--page-lag-ms`` after the chunk that brought the event, and says where
as the page does (``speakers_held``); and the same voices half as loud through a plain delay with
no noise (``plain_echo_*``: a headset, or a speaker by the mic).
Utterances: pieces >= 0.5 s of the ``--speech`` recordings over low noise, half of them over
the assistant's echo; "detected" means a barge-in near the piece's onset.

P3 (end of user speech -> first audio chunk out) feeds an utterance on the stream clock: the
silence wait is the stream time from the true end of speech (energy) to the end of the chunk
in which the VAD gave up waiting, plus the wall time of that ``hear`` call. From there all is
wall time, through the UI's steps: save the utterance, prepare and add the turn, answer aloud
until the first audio chunk. It is split into ASR (``turn.asr_s``), time to first token
(``stats.first_token_s``: prompt, prefill, first decode), first sentence (first token -> the
first sentence is complete in the text, measured with the same sentence splitter; this
includes the detokenizer holding back incomplete words), first TTS (sentence complete ->
its audio synthesized, ``SpokenChunk.ready_at``) and overhead: the rest, i.e. saving and
decoding the utterance, building the prompt, and the wait between a chunk being ready and
``answer_aloud`` handing it out.

Prints one JSON object. ``--quick`` runs a small version (under a minute).
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from backend import media  # noqa: E402
from backend.conversation.voice import MIC_CHUNK_S, VOICE_VAD  # noqa: E402
from bench.vad_noise import (  # noqa: E402
    ASSISTANT_LINES,
    AUDIO_EXT,
    NOISE_KINDS,
    echo_path,
    make_noise,
    onset_of,
    rms,
    speech_pieces,
    utterance_starts,
    word_onset_of,
)
from tests.support import CORPUS  # noqa: E402

SR = 16000
MIC_SR = 48000
# More of the assistant's answers, for voices that speak English only (--echo-voice piper).
ENGLISH_ANSWERS = [
    ("en", "Of course. Preheat the oven to two hundred degrees, and bake the bread for about forty minutes."),
    ("en", "The museum is closed on Mondays, but on every other day it opens at nine in the morning."),
    ("en", "Yes, you can. Just keep the receipt, and bring the jacket back within thirty days."),
    ("en", "Good question! Leaves look green because chlorophyll reflects green light and absorbs the rest."),
    ("en", "Turn left at the bakery, walk past the bank, and the station is right in front of you."),
]
QUESTIONS = [
    "Bonjour ! Pouvez-vous m'expliquer comment fonctionne la photosynthèse ?",
    "Hello, how are you today? Tell me about the weather in London.",
    "Pourquoi le ciel est-il bleu ? Expliquez simplement, s'il vous plaît.",
    "Je voudrais apprendre le français. Par où commencer ?",
]


def audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXT)


def load(path: Path) -> np.ndarray:
    limits = media.MediaLimits(max_audio_seconds=3600.0)
    return media.load_audio(path, limits).samples.astype(np.float32)


def offset_of(x: np.ndarray) -> float:
    """Seconds to the end of the last 10 ms frame within 30 dB of the piece's loud level."""
    return len(x) / SR - onset_of(x[::-1].copy())


def to_mic(x16: np.ndarray) -> np.ndarray:
    import soxr

    x48 = soxr.resample(x16.astype(np.float32), SR, MIC_SR)
    return (np.clip(x48, -1, 1) * 32767).astype(np.int16)


def stats(xs: list[float]) -> dict | None:
    if not xs:
        return None
    return {"median": round(float(np.median(xs)), 1), "p95": round(float(np.percentile(xs, 95)), 1),
            "n": len(xs)}


def med(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return round(float(np.median(xs)), 1) if xs else None


class Speakers:
    """The assistant's playback on the mic clock and its echo as the mic hears it."""

    def __init__(self, rng: np.random.Generator, delay_s: float, gain_db: float = -6.0) -> None:
        self.ir = echo_path(rng) * 10 ** (gain_db / 20)
        self.delay = int(delay_s * SR)
        self.echo = np.zeros(SR * 120, np.float32)
        self.play_end = 0
        self.held: np.ndarray | None = None  # the echo of what the paused page still holds, on the mic clock
        self.held_at = 0
        self.lock = threading.Lock()

    def play(self, samples: np.ndarray, sample_rate: int, now: int) -> None:
        import soxr

        x = samples.astype(np.float32)
        if sample_rate != SR:
            x = soxr.resample(x, sample_rate, SR).astype(np.float32)
        with self.lock:
            start = max(now, self.play_end) + self.delay
            self.play_end = max(now, self.play_end) + len(x)
            e = np.convolve(x, self.ir).astype(np.float32)
            end = min(len(self.echo), start + len(e))
            target = self.echo if self.held is None else self.held
            if end > start:
                target[start:end] += e[: end - start]

    def pause(self, now: int) -> None:
        """The page holds the answer from mic sample ``now``: its echo stops there (what is in the air rings out)."""
        with self.lock:
            if self.held is None:
                cut = now + self.delay
                self.held, self.held_at = np.zeros_like(self.echo), now
                self.held[cut:] = self.echo[cut:]
                self.echo[cut:] = 0

    def resume(self, now: int) -> None:
        """The page plays on from where it held: the rest of the echo comes that much later."""
        with self.lock:
            if self.held is not None:
                gap = now - self.held_at
                self.echo[gap:] += self.held[: len(self.echo) - gap]
                self.held = None
                self.play_end += gap

    def heard(self, a: int, b: int) -> np.ndarray:
        with self.lock:
            return self.echo[a:b].copy()


def page_holds(voice, speakers: Speakers, at: int) -> None:
    """The page holds the answer at mic sample ``at``, and says so, as assets/mic_stream.js does."""
    speakers.pause(at)
    voice.speakers_held(at / SR)


def page_releases(voice, speakers: Speakers, at: int) -> None:
    speakers.resume(at)
    voice.speakers_released(at / SR)


class TimedEngine:
    """The engine as the conversation sees it, noting when each answer's stream() is called."""

    def __init__(self, engine) -> None:
        self._engine = engine
        self.stream_called: float | None = None

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def stream(self, *args, **kwargs):
        self.stream_called = time.perf_counter()
        return self._engine.stream(*args, **kwargs)


def build_engine(folder: Path | None):
    import torch

    from backend.models.engine import LocalEngine
    from tests import tiny_models

    torch.set_num_threads(1)  # a tiny model: threads only fight the VAD and TTS for the cores
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="omnilingo-bench-tiny-"))
    for name in ("gemma4", "whisper"):
        if not (folder / name / "config.json").exists():
            tiny_models.build_all(folder, [name])
    engine = LocalEngine(str(folder / "gemma4"), device="cpu")
    engine.load()
    from backend.models.asr import open_recognizer

    asr = open_recognizer(str(folder / "whisper"), device="cpu")
    asr.load()
    return TimedEngine(engine), asr


# The echo guard's residual suppression (EchoGuard's suppress_db); None: the app's own setting.
ECHO_SUPPRESS_DB: float | None = None
# Mic samples (16 kHz) between the end of the chunk that brought a pause or resume and the page's speakers
# doing it (--page-lag-ms): the reply's way to the browser and the audio thread's next render.
PAGE_LAG = 0


def voice_session(conversation, config):
    """The app's voice session, its echo guard set as --echo-suppress-db asks."""
    from backend.audio.echo import EchoGuard
    from backend.conversation.voice import ECHO_MAX_DELAY_MS, VoiceSession

    voice = VoiceSession(conversation, config)
    if ECHO_SUPPRESS_DB is not None:
        voice.echo = voice.vad.echo_guard = EchoGuard(max_delay_ms=ECHO_MAX_DELAY_MS, suppress_db=ECHO_SUPPRESS_DB)
    return voice


# -- P1 -------------------------------------------------------------------------------------


def p1_trial(engine, router, config, chunk_s, piece, question, rng, max_new_tokens) -> dict:
    from backend.conversation.speaker import answer_aloud
    from backend.conversation.turns import Conversation

    conversation = Conversation(engine, max_new_tokens=max_new_tokens)
    voice = voice_session(conversation, config)
    voice.start()
    turn = conversation.add(conversation.prepare(question))
    voice.answering(turn.generation)
    speakers = Speakers(rng, rng.uniform(0.03, 0.2))
    clock = {"w0": None}
    out = {"first_audio": threading.Event(), "done_at": None, "audio_at": [], "error": None}

    def mic_now() -> int:
        w0 = clock["w0"]
        return 0 if w0 is None else max(0, int((time.perf_counter() - w0) * SR))

    def consume() -> None:
        try:
            for event in answer_aloud(conversation, turn, router, True):
                if event.kind == "audio":
                    audio = event.chunk.audio
                    out["audio_at"].append(time.perf_counter())
                    voice.played(audio.samples, audio.sample_rate)
                    speakers.play(audio.samples, audio.sample_rate, mic_now())
                    out["first_audio"].set()
        except Exception as err:  # reported in the JSON
            out["error"] = repr(err)
        finally:
            out["done_at"] = time.perf_counter()
            out["first_audio"].set()

    worker = threading.Thread(target=consume, daemon=True)
    worker.start()
    out["first_audio"].wait(60)
    if out["done_at"] is not None:
        return {"skipped": "the answer ended before it was spoken"}

    lead = rng.uniform(0.6, 1.2)
    user = piece / (rms(piece) + 1e-12) * 0.08
    total = int((lead + len(piece) / SR + 0.5) * SR)
    onset = lead + word_onset_of(piece)
    first_sound = lead + onset_of(piece)
    mic = make_noise("pink", total / SR + 0.01, 0.003, seed=int(rng.integers(1 << 30)))[:total]
    s = int(lead * SR)
    mic[s : s + len(user)] += user
    step = int(chunk_s * SR)
    barge_at = paused_at = None
    paused_chunk_end = 0.0  # stream time of the end of the chunk that brought the pause
    clock["w0"] = w0 = time.perf_counter()
    for a in range(0, total, step):
        b = min(total, a + step)
        wait = w0 + b / SR - time.perf_counter()  # the chunk leaves the browser when it is recorded
        if wait > 0:
            time.sleep(wait)
        chunk = mic[a:b] + speakers.heard(a, b)
        events = voice.hear(to_mic(chunk), MIC_SR)
        kinds = [e.kind for e in events]
        if "pause" in kinds and paused_at is None:
            paused_at = time.perf_counter()  # the page's answer falls silent here
            paused_chunk_end = b / SR
            page_holds(voice, speakers, b + PAGE_LAG)
        elif "resume" in kinds:
            paused_at = None  # a candidate dropped before the user's speech: the answer played on
            page_releases(voice, speakers, b + PAGE_LAG)
        if "barge_in" in kinds:
            barge_at = time.perf_counter()
            if paused_at is None:  # confirmed at once: the barge-in silences the answer
                paused_at, paused_chunk_end = barge_at, b / SR
            break
    worker.join(30)
    if barge_at is None:
        conversation.interrupt()
        worker.join(30)
        return {"missed": True}
    stopped = max(barge_at, out["done_at"] or time.perf_counter())
    stale = sum(1 for t in out["audio_at"] if t > barge_at)
    return {
        "paused_ms": (paused_at - (w0 + onset)) * 1000,
        # the pause split: the speech the chunks had brought by then, and the wall time past their recording
        "paused_stream_ms": (paused_chunk_end - onset) * 1000,
        "paused_processing_ms": (paused_at - (w0 + paused_chunk_end)) * 1000,
        "paused_from_first_sound_ms": (paused_at - (w0 + first_sound)) * 1000,
        "p1_ms": (stopped - (w0 + onset)) * 1000,
        "detect_ms": (barge_at - (w0 + onset)) * 1000,
        "from_first_sound_ms": (stopped - (w0 + first_sound)) * 1000,
        "stop_after_barge_ms": (stopped - barge_at) * 1000,
        "stale_chunks": stale,
        "status": turn.status,
        "error": out["error"],
    }


# -- P2 -------------------------------------------------------------------------------------


def feed(voice, x16: np.ndarray, chunk_s: float, speakers: Speakers | None = None) -> list:
    """Feed a 16 kHz signal as 48 kHz int16 mic chunks; returns [(event, stream time of chunk end)].

    With ``speakers`` their echo joins the mic, and stops and goes on as the page pauses and resumes the
    answer (a precomputed echo would go on playing through a pause the guard was told of), ``PAGE_LAG``
    samples after the end of the chunk that brought the event."""
    out = []
    if speakers is None:
        pcm = to_mic(x16)
        step = int(chunk_s * MIC_SR)
        for i in range(0, len(pcm), step):
            for event in voice.hear(pcm[i : i + step], MIC_SR):
                out.append((event, min(len(pcm), i + step) / MIC_SR))
        return out
    step = int(chunk_s * SR)
    for a in range(0, len(x16), step):
        b = min(len(x16), a + step)
        for event in voice.hear(to_mic(x16[a:b] + speakers.heard(a, b)), MIC_SR):
            out.append((event, b / SR))
            if event.kind == "pause":
                page_holds(voice, speakers, b + PAGE_LAG)
            elif event.kind == "resume":
                page_releases(voice, speakers, b + PAGE_LAG)
    return out


def speaking_session(config, assistant: np.ndarray | None):
    """A voice session whose answer is playing ``assistant`` (or merely being thought about)."""
    from backend.conversation.turns import Conversation

    conversation = Conversation(engine=None, session_dir=Path(tempfile.mkdtemp(prefix="omnilingo-bench-")))
    voice = voice_session(conversation, config)
    voice.start()
    voice.answering(conversation.generation)
    if assistant is not None:
        voice.played(assistant, SR)
    return voice, conversation


def p2(config, chunk_s, noises, voices, pieces, rng) -> dict:
    result = {"noise_trials": 0, "noise_false": 0, "noise_paused": 0, "echo_trials": 0, "echo_false": 0,
              "echo_paused": 0, "plain_echo_trials": 0, "plain_echo_false": 0, "plain_echo_paused": 0, "paused_s": 0.0,
              "utterances": 0, "detected": 0, "utterances_over_echo": 0, "detected_over_echo": 0}
    false_kinds: dict[str, int] = {}
    paused_kinds: dict[str, int] = {}

    def run(mic, assistant, playing=False, delay_s=None):
        # playing: an answer the microphone does not pick up (headphones), so that speech can pause it;
        # delay_s: the speakers play it and the mic hears it this late, through a room
        if assistant is None and playing:
            assistant = np.zeros(len(mic), np.float32)
        voice, conversation = speaking_session(config, assistant)
        speakers = None
        if delay_s is not None:
            speakers = Speakers(rng, delay_s)
            speakers.play(assistant, SR, 0)
        try:
            return feed(voice, mic, chunk_s, speakers)
        finally:
            shutil.rmtree(conversation.session_dir, ignore_errors=True)

    def paused_s(events) -> float:
        """Seconds the answer was paused for speech that never came (pause → resume)."""
        total, since = 0.0, None
        for e, at in events:
            if e.kind == "pause":
                since = at
            elif e.kind == "resume" and since is not None:
                total, since = total + at - since, None
        return total

    for name, noise in noises:
        result["noise_trials"] += 1
        events = run(noise, None, playing=True)
        if any(e.kind == "barge_in" for e, _ in events):
            result["noise_false"] += 1
            false_kinds[name] = false_kinds.get(name, 0) + 1
        if any(e.kind == "pause" for e, _ in events):
            result["noise_paused"] += 1
            paused_kinds[name] = paused_kinds.get(name, 0) + 1
        result["paused_s"] += paused_s(events)
    delays = [0.03, 0.06, 0.1, 0.15, 0.2]
    for k in range(max(30, len(voices))):
        v = voices[k % len(voices)]
        total = len(v) + SR
        mic = make_noise("pink", total / SR + 0.01, 0.002, seed=1000 + k)[:total]
        result["echo_trials"] += 1
        events = run(mic, v, delay_s=delays[k % len(delays)])
        result["echo_false"] += any(e.kind == "barge_in" for e, _ in events)
        result["echo_paused"] += any(e.kind == "pause" for e, _ in events)
        result["paused_s"] += paused_s(events)
    # A headset or a speaker right by the mic: the voice itself, half as loud and late, and no room or noise
    # to hide what the subtraction leaves.
    for v in voices:
        for delay in (0.03, 0.12, 0.25):
            mic = np.zeros(len(v) + SR, np.float32)
            mic[int(delay * SR) : int(delay * SR) + len(v)] = 0.5 * v
            events = run(mic, v)
            result["plain_echo_trials"] += 1
            result["plain_echo_false"] += any(e.kind == "barge_in" for e, _ in events)
            result["plain_echo_paused"] += any(e.kind == "pause" for e, _ in events)
            result["paused_s"] += paused_s(events)
    kinds = ["white", "pink", "hum", "typing", "chords"]
    for k, piece in enumerate(pieces):
        lead = rng.uniform(1.0, 1.5)
        total = int((lead + len(piece) / SR + 1.0) * SR)
        mic = make_noise(kinds[k % len(kinds)], total / SR + 0.01, 0.004, seed=2000 + k)[:total]
        s = int(lead * SR)
        mic[s : s + len(piece)] += piece / (rms(piece) + 1e-12) * 0.08
        assistant, delay_s = None, None
        if k % 2 and voices:
            v = voices[k % len(voices)]
            assistant = np.concatenate([np.zeros(int(max(0.0, lead - 1.0) * SR), np.float32), v])
            delay_s = delays[k % len(delays)]
        onset = lead + onset_of(piece)
        events = run(mic, assistant, delay_s=delay_s)
        hit = any(e.kind == "barge_in" and onset - 0.3 <= e.t <= lead + len(piece) / SR for e, _ in events)
        result["utterances"] += 1
        result["detected"] += hit
        result["utterances_over_echo"] += assistant is not None
        result["detected_over_echo"] += hit and assistant is not None
    result["noise_false_by_kind"] = false_kinds
    result["noise_paused_by_kind"] = paused_kinds
    result["paused_s"] = round(result["paused_s"], 2)
    return result


# -- P3 -------------------------------------------------------------------------------------


def p3_trial(engine, asr, router, config, chunk_s, piece, rng, max_new_tokens) -> dict:
    from backend.conversation.speaker import answer_aloud
    from backend.conversation.turns import Conversation
    from backend.language.sentences import SentenceStream

    engine.stream_called = None
    conversation = Conversation(engine, max_new_tokens=max_new_tokens, asr=asr)
    voice = voice_session(conversation, config)
    voice.start()
    lead = rng.uniform(0.5, 1.0)
    total = int((lead + len(piece) / SR + 1.5) * SR)
    mic = make_noise("pink", total / SR + 0.01, 0.002, seed=int(rng.integers(1 << 30)))[:total]
    s = int(lead * SR)
    mic[s : s + len(piece)] += piece / (rms(piece) + 1e-12) * 0.08
    speech_end = lead + offset_of(piece)
    pcm = to_mic(mic)
    step = int(chunk_s * MIC_SR)
    utterance = None
    for i in range(0, len(pcm), step):
        t0 = time.perf_counter()
        events = voice.hear(pcm[i : i + step], MIC_SR)
        utterance = next((e for e in events if e.kind == "utterance"), None)
        if utterance is not None:
            handed = time.perf_counter()
            silence_wait = (min(len(pcm), i + step) / MIC_SR - speech_end) * 1000 + (handed - t0) * 1000
            break
    if utterance is None:
        conversation.close()
        return {"missed": True}
    # What the UI does with an utterance (app/mic.py, then stream_answer).
    path = voice.save_utterance(utterance.audio, conversation.session_dir)
    # The tiny Whisper hears random languages: the answer language is set so that a voice exists.
    turn = conversation.add(conversation.prepare("", [str(path)], "en"))
    voice.answering(turn.generation)
    sentences = SentenceStream("en")
    first_sentence_at = first_audio_at = ready_at = None
    for event in answer_aloud(conversation, turn, router, True):
        if event.kind == "text" and first_sentence_at is None and sentences.feed(event.text):
            first_sentence_at = time.perf_counter()
        if event.kind == "audio":
            first_audio_at, ready_at = time.perf_counter(), event.chunk.ready_at
            voice.played(event.chunk.audio.samples, event.chunk.audio.sample_rate)
            conversation.interrupt()  # the first chunk is all this trial needs
    if first_audio_at is None or first_sentence_at is None or engine.stream_called is None:
        conversation.close()
        return {"missed": True, "status": turn.status}
    asr_ms = (turn.asr_s or 0.0) * 1000
    first_token = (turn.stats.first_token_s or 0.0) * 1000
    first_token_at = engine.stream_called + first_token / 1000
    sentence_ms = (first_sentence_at - first_token_at) * 1000
    tts_ms = (ready_at - first_sentence_at) * 1000
    prep = (engine.stream_called - handed) * 1000 - asr_ms
    handoff = (first_audio_at - ready_at) * 1000
    overhead = prep + handoff
    after = (first_audio_at - handed) * 1000
    conversation.close()
    return {"silence_wait": silence_wait, "asr": asr_ms, "first_token": first_token, "first_sentence": sentence_ms,
            "first_tts": tts_ms, "overhead": overhead, "total": silence_wait + after,
            "overhead_prep": prep, "overhead_handoff": handoff,
            "speech_end_to_vad_ms": (utterance.t - speech_end) * 1000}


# -- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--speech", type=Path, default=CORPUS / "speech", help="recordings of people talking (any format)")
    ap.add_argument("--noise", type=Path, default=None, help="noise recordings (any format); default: generated")
    ap.add_argument("--quick", action="store_true", help="a small run (under a minute)")
    ap.add_argument("--trials", type=int, default=None, help="P1 trials (default 60, quick 8)")
    ap.add_argument("--p3-trials", type=int, default=None, help="P3 trials (default 20, quick 4)")
    ap.add_argument("--chunk-s", type=float, default=MIC_CHUNK_S, help="microphone chunk length, seconds")
    ap.add_argument("--min-speech-ms", type=int, default=None)
    ap.add_argument("--start-threshold", type=float, default=None)
    ap.add_argument("--end-silence-ms", type=int, default=None)
    ap.add_argument("--max-gap-ms", type=int, default=None)
    ap.add_argument("--max-new-tokens", type=int, default=3000)
    ap.add_argument("--echo-suppress-db", type=float, default=None,
                    help="the echo guard silences what is this far under the echo it predicts (default: the app's)")
    ap.add_argument("--models", type=Path, default=None, help="folder for the tiny models (built if missing)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["p1", "p2", "p3"])
    ap.add_argument("--p1-pieces", choices=["starts", "running"], default="starts",
                    help="P1's user speech: where someone starts to talk after a pause (utterance_starts), or "
                         "the pieces P2 uses, some cut inside running speech (speech_pieces)")
    ap.add_argument("--page-lag-ms", type=float, default=0.0,
                    help="the page's speakers pause and resume this long after the chunk that brought the event")
    ap.add_argument("--echo-voice", choices=["espeak", "piper"], default="espeak",
                    help="P2's echo: espeak-ng in six languages, or the Piper voices of --piper-voices (their languages)")
    ap.add_argument("--piper-voices", type=Path, default=None, help="folder of Piper voices (.onnx + .onnx.json)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.echo_voice == "piper" and args.piper_voices is None:
        ap.error("--echo-voice piper needs --piper-voices")
    global ECHO_SUPPRESS_DB, PAGE_LAG
    ECHO_SUPPRESS_DB = args.echo_suppress_db
    PAGE_LAG = int(round(args.page_lag_ms * SR / 1000))
    # Each trial's conversation keeps a session folder: all of them go when the bench ends.
    tempfile.tempdir = tempfile.mkdtemp(prefix="omnilingo-bench-barge-in-")
    atexit.register(shutil.rmtree, tempfile.tempdir, True)
    rng = np.random.default_rng(args.seed)
    overrides = {k: v for k, v in {
        "min_speech_ms": args.min_speech_ms, "start_threshold": args.start_threshold,
        "end_silence_ms": args.end_silence_ms, "max_gap_ms": args.max_gap_ms,
    }.items() if v is not None}
    base = VOICE_VAD  # the app's own voice-mode settings, unless overridden
    if "start_threshold" in overrides and overrides["start_threshold"] < base.end_threshold:
        overrides["end_threshold"] = overrides["start_threshold"]
    config = dataclasses.replace(base, **overrides)
    trials = args.trials if args.trials is not None else (8 if args.quick else 60)
    p3_trials = args.p3_trials if args.p3_trials is not None else (4 if args.quick else 20)

    from backend.models.tts import SpeechRouter

    router = SpeechRouter(preferred_engine=args.echo_voice, piper_voices=args.piper_voices)
    recordings = [load(p) for p in audio_files(args.speech)]
    recordings = [x for x in recordings if len(x) >= SR // 2]
    if not recordings:
        raise SystemExit(f"no audio files in {args.speech}")
    pieces = [p for x in recordings for p in speech_pieces(x)]
    if args.quick:
        pieces = pieces[::3]
    rng.shuffle(pieces)
    if args.p1_pieces == "starts":
        starts = [p for x in recordings for p in utterance_starts(x)]
        rng.shuffle(starts)
    else:
        starts = pieces

    voices = []
    lines = ASSISTANT_LINES + ENGLISH_ANSWERS if args.echo_voice == "piper" else ASSISTANT_LINES
    for lang, text in lines[: 3 if args.quick else None]:
        chunks = list(router.speak(text, lang))
        if any(c.note for c in chunks):
            continue  # a fallback voice spoke: P2's echo is the chosen voice only
        if chunks:
            import soxr

            audio = np.concatenate([soxr.resample(c.samples, c.sample_rate, SR) for c in chunks]).astype(np.float32)
            voices.append(audio)

    noises: list[tuple[str, np.ndarray]] = []
    if args.noise:
        for p in audio_files(args.noise):
            x = load(p)
            for i in range(0, max(1, len(x) - 2 * SR + 1), 5 * SR):
                seg = x[i : i + 5 * SR]
                if len(seg) >= 2 * SR or i == 0:
                    noises.append((p.name, seg))
    else:
        levels = ((0, 0.01), (1, 0.05), (2, 0.2))[: 2 if args.quick else None]
        for kind in NOISE_KINDS:
            for seed, level in levels:
                noises.append((kind, make_noise(kind, 3.0, level, seed=args.seed * 100 + seed)))

    result: dict = {}
    t_start = time.perf_counter()
    if "p2" not in args.skip:
        result["p2"] = p2(config, args.chunk_s, noises, voices, pieces, rng)

    need_model = "p1" not in args.skip or "p3" not in args.skip
    engine = asr = None
    if need_model:
        engine, asr = build_engine(args.models)

    if "p1" not in args.skip:
        runs = []
        for k in range(trials):
            runs.append(p1_trial(engine, router, config, args.chunk_s, starts[k % len(starts)],
                                 QUESTIONS[k % len(QUESTIONS)], rng, args.max_new_tokens))
        ok = [r for r in runs if "p1_ms" in r]
        # what the user hears: onset -> the answer's audio paused (at the VAD's speech candidate)
        result["p1_paused_ms"] = stats([r["paused_ms"] for r in ok])
        result["p1_ms"] = stats([r["p1_ms"] for r in ok])
        # the same trials from the first sound within 30 dB of the talker's level (onset_of), breaths included
        result["p1_paused_from_first_sound_ms"] = stats([r["paused_from_first_sound_ms"] for r in ok])
        result["p1_from_first_sound_ms"] = stats([r["from_first_sound_ms"] for r in ok])
        result["p1_detail"] = {
            "trials": len(runs), "measured": len(ok), "missed": sum(1 for r in runs if r.get("missed")),
            "skipped": sum(1 for r in runs if r.get("skipped")),
            "onset_to_barge_in_ms": stats([r["detect_ms"] for r in ok]),
            "paused_stream_ms": stats([r["paused_stream_ms"] for r in ok]),
            "paused_processing_ms": stats([r["paused_processing_ms"] for r in ok]),
            "barge_in_to_generation_stopped_ms": stats([r["stop_after_barge_ms"] for r in ok]),
            "stale_chunks_after_barge_in": sum(r["stale_chunks"] for r in ok),
            "turn_status": sorted({r["status"] for r in ok}),
            "errors": [r["error"] for r in ok if r["error"]][:3],
            # which pieces make the tail: (piece, onset -> barge-in ms), slowest first
            "slowest": sorted(([k % len(starts), round(r["detect_ms"])] for k, r in enumerate(runs) if "detect_ms" in r),
                              key=lambda row: -row[1])[:6],
            "slowest_paused": sorted(([k % len(starts), round(r["paused_ms"]), round(r["paused_stream_ms"])]
                                      for k, r in enumerate(runs) if "paused_ms" in r), key=lambda row: -row[1])[:6],
        }
    if "p3" not in args.skip:
        runs = [p3_trial(engine, asr, router, config, args.chunk_s, pieces[k % len(pieces)], rng, args.max_new_tokens)
                for k in range(p3_trials)]
        ok = [r for r in runs if "total" in r]
        keys = ("silence_wait", "asr", "first_token", "first_sentence", "first_tts", "overhead", "total")
        result["p3_ms"] = {k: med([r[k] for r in ok]) for k in keys}
        result["p3_detail"] = {"trials": len(runs), "measured": len(ok),
                               "total_p95": stats([r["total"] for r in ok]),
                               "overhead_p95": stats([r["overhead"] for r in ok]),
                               "overhead_prep_ms": med([r["overhead_prep"] for r in ok]),
                               "overhead_chunk_ready_to_handed_out_ms": med([r["overhead_handoff"] for r in ok]),
                               "vad_end_minus_true_end_ms": med([r["speech_end_to_vad_ms"] for r in ok])}
    result["config"] = {k: v for k, v in config.__dict__.items() if k != "model_path"} | {
        "chunk_s": args.chunk_s, "echo_suppress_db": args.echo_suppress_db, "page_lag_ms": args.page_lag_ms}
    result["setup"] = {"speech_pieces": len(pieces), "p1_pieces": f"{len(starts)} {args.p1_pieces}", "recordings": len(recordings), "assistant_voices": len(voices),
                       "model": "tiny random Gemma 4 (CPU, 1 thread)", "asr": "tiny random Whisper",
                       "tts": args.echo_voice, "seconds": round(time.perf_counter() - t_start, 1)}
    print(json.dumps(result))
    if engine is not None:
        engine.close()
    return result


if __name__ == "__main__":
    main()
