"""Hands-free voice mode: listen, answer aloud, and let the user cut in (barge-in).

The microphone streams into ``VoiceSession.hear``; silero VAD (behind the echo guard,
so the assistant's own voice coming back through the speakers does not count) finds
where the user starts and stops. A start while the assistant thinks or speaks is a
barge-in: the conversation cancels the answer's scope and opens the next generation,
which stops the model within one decode step and drops every queued sentence of the
old answer. The end of speech
hands over the utterance, pre-roll included, as the next turn.

While the answer plays, the VAD's speech candidate (64 ms of sound like speech, 32 ms it is sure of) pauses it
(``PAUSE``), about 100 ms before the VAD confirms the speech: the user hears the assistant fall
silent as they start. Confirmed, it is a barge-in; dropped as a click or a cough, the answer
resumes (``RESUME``) where it paused, and nothing of it is lost. The page says at which sample of
the microphone stream its speakers held and released the answer (``speakers_held``,
``speakers_released``): the echo guard follows the speakers, not the events.

When the turn ends (``end_of_turn``): "silence" hands over after half a second of silence.
"smart" judges every pause of 200 ms from the sound (Smart Turn) and from the transcript's last
word (backend.audio.turn_end): finished → the turn is handed over at once, with its transcript;
unfinished → the session keeps listening, and the next stretch of speech joins the same utterance.
The judgement runs on a worker thread, not in ``hear``: the microphone's stream goes on being
heard while Whisper works (a stream held up behind it ran 1.4 s late), the verdict comes out of
the first ``hear`` after it is ready, and speech that resumes meanwhile makes it moot. A pause held
open on its sound alone is heard by Whisper while the user is silent, so a turn handed over after
the longer wait comes with its words.

A barge-in whose words only ask the assistant to stop or wait ("stop", "attends", "espera")
ends the answer and listens: it is not answered as a new question.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from backend.audio.echo import EchoGuard
from backend.audio.pcm import SAMPLE_RATE
from backend.audio.turn_end import TurnEndDetector, TurnVerdict
from backend.audio.vad import VadConfig, VoiceActivityDetector
from backend.conversation.stop_words import is_stop_request
from backend.conversation.turns import Conversation

log = logging.getLogger(__name__)

LISTENING, THINKING, SPEAKING, OFF = "listening", "thinking", "speaking", "off"
ECHO_MAX_DELAY_MS = 1500
# Measured with bench/barge_in.py: 160 ms of speech confirms a barge-in 214 ms sooner (median)
# than 250 ms, with no more false starts on noise or on the assistant's own voice.
VOICE_VAD = VadConfig(min_speech_ms=160)
# Microphone chunks (WebSocket messages from the page). A decision waits for the end of the chunk that
# brings it, so shorter chunks pause an answer sooner: 0.05 s brought a barge-in 75 ms sooner (median) than
# 0.1 s, and 0.032 s (one VAD frame) paused it 21 ms (median) and 39 ms (p95) sooner than 0.05 s, with no more
# false starts on noise or echo (bench/barge_in.py). 0.02 s gained nothing more in process, and the echo
# guard's fit, about 10 ms a chunk while an answer plays, would take half a core.
MIC_CHUNK_S = 0.032
# The page's player starts a chunk this much after it is handed out at most (the event stream to
# the page, then a WAV decoded and scheduled on its AudioContext).
PLAYBACK_SLACK_S = 0.5
# A pause held open (its sound unfinished) is heard by Whisper once the user has been silent this long,
# so that a turn handed over after the longer wait comes with its words. Not at the pause itself: users
# often go on within a second, and the next pause's judgement would wait for Whisper to let go of the
# model. Not beside Smart Turn either: on two cores Whisper took 1.0-1.2 s beside it against 0.5-0.6 s
# after it (bench/results/voice_browser_llamacpp_asr_beside_smart_turn.json).
HEAR_HELD_AFTER_S = 1.0
END_OF_TURN_MODES = ("smart", "silence")


class VoiceEventKind(StrEnum):
    SPEECH_START = "speech_start"
    BARGE_IN = "barge_in"
    UTTERANCE = "utterance"
    DISCARDED = "discarded"
    PAUSE = "pause"  # speech may have begun over the answer: the page pauses its audio
    RESUME = "resume"  # it was not speech: the page plays on from where it paused
    STOP_REQUEST = "stop_request"  # a barge-in that only said "stop" / "wait": no new turn


@dataclass
class VoiceEvent:
    kind: VoiceEventKind
    t: float  # stream time, seconds
    audio: np.ndarray | None = None  # 16 kHz float32, for "utterance"
    detected_at: float = field(default_factory=time.perf_counter)
    transcript: Any = None  # backend.models.asr.Transcript when the words were heard before the hand-over
    verdict: TurnVerdict | None = None  # why the turn ended there ("smart" mode)
    timings: dict[str, float] = field(default_factory=dict)  # wall clock of the ASR at the pause


@dataclass
class _Held:
    """An utterance at a pause: being judged, or judged unfinished. More speech joins it."""

    audio: np.ndarray
    end_t: float  # stream time the speech stopped
    audio_end_t: float  # stream time of the utterance audio's last sample
    verdict: TurnVerdict | None = None  # None while it is being judged
    transcript: Any = None
    # (verdict, transcript) worked out off the microphone's thread; "final": hand over once it is ready
    judging: Future | None = None
    final: bool = False
    # Whisper on the audio of a pause held open without its words, once the silence has lasted
    # HEAR_HELD_AFTER_S: a turn handed over after the longer wait then does not wait for Whisper
    hearing: Future | None = None


def _audio_end(event) -> float:
    """Stream time of the last sample of a speech_end event's audio (trailing silence included)."""
    return event.decided_at if event.forced else min(event.decided_at, event.t + VOICE_VAD.trailing_ms / 1000)


class VoiceSession:
    """One browser tab's voice conversation: the VAD, the echo guard, and the turn state."""

    def __init__(
        self, conversation: Conversation, config: VadConfig | None = None, *,
        end_of_turn: str = "silence", turn_end: TurnEndDetector | None = None,
    ) -> None:
        if end_of_turn not in END_OF_TURN_MODES:
            raise ValueError(f"end_of_turn must be one of {', '.join(END_OF_TURN_MODES)}, not {end_of_turn!r}")
        self.conversation = conversation
        # The page plays each sentence a moment after it is sent, and the microphone's stream lags
        # as well: search echoes up to 1.5 s behind what was sent, longer than on a phone call.
        self.echo = EchoGuard(max_delay_ms=ECHO_MAX_DELAY_MS)
        config = config or VOICE_VAD
        self.turn_end = (turn_end or TurnEndDetector()) if end_of_turn == "smart" else None
        if self.turn_end is not None:
            config = replace(config, end_silence_ms=self.turn_end.config.pause_ms)  # a pause, not the end
        self.end_of_turn = end_of_turn
        self.vad = VoiceActivityDetector(config, echo_guard=self.echo)
        self.spoken_language: str | None = None  # the language picked in the UI ("auto": none)
        self.browser_languages: tuple[str, ...] = ()  # the browser's, a prior until the conversation has one
        self._held: _Held | None = None
        self._barged = False  # the utterance in progress began as a barge-in
        # One judgement at a time, in order: a newer pause waits for the older one's Whisper call. The
        # words of a pause held open are heard on a thread of their own.
        self._judge_pool: ThreadPoolExecutor | None = None
        self._hear_pool: ThreadPoolExecutor | None = None
        self.state = OFF
        self.barge_ins = 0
        self.utterances = 0
        self._lock = threading.Lock()
        self._answering_generation: int | None = None
        self._asr_timings: dict[str, float] = {}
        self._audible_until = 0.0  # monotonic time the page ends playing what was handed out
        self._paused_at: float | None = None  # monotonic time the answer's audio was paused for a speech candidate
        self._answer_done = True
        # (stream seconds heard, wall clock) after each chunk: when a moment of the stream reached
        # the server (a microphone stream that falls behind shows here).
        self._heard: deque[tuple[float, float]] = deque(maxlen=600)

    # -- the microphone ---------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            self.vad.reset()
            self.echo.reset()
            self._drop_held()
            self._barged = False
            self._paused_at = None
            self.state = LISTENING
        # The end-of-turn model loads with the app (Runtime); elsewhere at the first pause, on the judging thread.
        prefill = getattr(self.conversation, "prefill", None)
        if prefill is not None and not getattr(self.conversation, "turns", True):
            # the first answer is heard: its system prompt is prefilled while the user speaks
            threading.Thread(target=prefill, args=(self._language(),), name="omnilingo-prefill", daemon=True).start()

    def stop(self) -> None:
        with self._lock:
            self.state = OFF
            self.vad.reset()
            self.echo.reset()
            self._drop_held()
            self._barged = False
            self._paused_at = None
            for pool in (self._judge_pool, self._hear_pool):  # their idle threads would outlive a closed tab
                if pool is not None:
                    pool.shutdown(wait=False, cancel_futures=True)
            self._judge_pool = self._hear_pool = None

    def _drop_held(self) -> None:
        if self._held is not None:
            for job in (self._held.judging, self._held.hearing):
                if job is not None:
                    job.cancel()  # not started yet: skipped; under way: its result is ignored
        self._held = None

    def wait_for_verdict(self, timeout: float | None = None) -> None:
        """Block until the pause being judged has its verdict and its words (for feeds faster than real time)."""
        held = self._held
        if held is not None and held.judging is not None:
            wait([held.judging], timeout)  # a failure is reported by the next hear(), which reads the verdict
        if held is not None and held.hearing is not None:
            wait([held.hearing], timeout)

    @property
    def active(self) -> bool:
        return self.state != OFF

    def hear(self, samples: np.ndarray, sample_rate: int) -> list[VoiceEvent]:
        """Feed one microphone chunk (any rate, int16 or float); returns what happened in it."""
        if not self.active:
            return []
        if self.state == SPEAKING and self._answer_done and not self._still_audible():
            self.state = LISTENING
        with self._lock:
            events = self.vad.process(samples, sample_rate)
            self._heard.append((self.vad.stream_time, time.time()))
        log.debug("mic chunk: %d samples at %d Hz, peak %.3f, events %s", len(samples), sample_rate,
                  float(np.abs(np.asarray(samples, dtype=np.float32)).max() or 0), [e.kind for e in events])
        out: list[VoiceEvent] = []
        for event in events:
            if event.kind == "speech_candidate":
                if self.state == SPEAKING and self._paused_at is None:
                    with self._lock:  # the page says where its speakers paused (speakers_held)
                        self._paused_at = time.monotonic()
                    out.append(VoiceEvent(VoiceEventKind.PAUSE, event.t))
            elif event.kind == "speech_start":
                if self.state in (THINKING, SPEAKING):
                    self.barge_in()  # a paused answer stops there
                    self._barged = True
                    out.append(VoiceEvent(VoiceEventKind.BARGE_IN, event.t))
                else:
                    out.append(VoiceEvent(VoiceEventKind.SPEECH_START, event.t))
            elif event.kind == "speech_end" and event.audio is not None:
                out += self._pause(event)
            elif event.kind == "discarded":
                out.append(VoiceEvent(VoiceEventKind.DISCARDED, event.t))
                if self._paused_at is not None:
                    self._resume()
                    out.append(VoiceEvent(VoiceEventKind.RESUME, event.t))
        return out + self._settle()

    def _resume(self) -> None:
        """The page plays the paused answer on: what it still holds ends that much later."""
        with self._lock:
            if self._paused_at is not None:
                self._audible_until += time.monotonic() - self._paused_at
                self._paused_at = None

    def speakers_held(self, at_s: float) -> None:
        """The page's speakers paused the answer at microphone-stream time ``at_s``: its echo stops there.

        The page tells, because only it knows: its pause comes after the reply's way to it (11-18 ms after
        the chunk reached the server on the same computer, bench/voice_browser.py; more over a network),
        and an echo guard that took the speakers as paused at the chunk that brought the event lined the
        echo after the resume up that far off (bench/barge_in.py --page-lag-ms 60: the echo barged in on
        1 of 30 clips)."""
        with self._lock:  # hear() runs the echo guard under this lock on another thread
            self.echo.pause(at_s)

    def speakers_released(self, at_s: float) -> None:
        """The page's speakers play the held answer on from microphone-stream time ``at_s``."""
        with self._lock:
            self.echo.resume(at_s)

    def _settle(self) -> list[VoiceEvent]:
        """A held utterance: its verdict came in, or its silence grew long enough to hand it over."""
        held = self._held
        # The user goes on, or may be going on (speech not yet confirmed): the next pause judges it all.
        if held is None or self.vad.may_be_speech:
            return []
        if held.judging is not None:
            if not held.judging.done():
                return []
            try:
                held.verdict, held.transcript = held.judging.result()
            except Exception:  # noqa: BLE001 - a broken model file must not end voice mode: the silence rule stays
                log.exception("end-of-turn judgement failed; the silence rule decides")
                silence_ms = self.turn_end.config.silence_ms if self.turn_end is not None else VOICE_VAD.end_silence_ms
                held.verdict = TurnVerdict(False, silence_ms, "silence")
            held.judging = None
            log.debug("pause at %.2f s: %s", held.end_t, held.verdict)
        silent_s = self.vad.stream_time - held.end_t
        if (held.verdict is not None and held.transcript is None and held.hearing is None
                and held.verdict.wait_ms / 1000 > silent_s >= HEAR_HELD_AFTER_S):
            self._hear_meanwhile(held)
        if held.transcript is None and held.hearing is not None and held.hearing.done() and not held.hearing.cancelled():
            held.transcript = held.hearing.result()  # heard while the user was silent: the words may shorten the wait
            if held.verdict is not None and self.turn_end is not None:
                held.verdict = self.turn_end.reconsider(held.verdict, held.transcript, self._language())
        if held.final or (held.verdict is not None and silent_s >= held.verdict.wait_ms / 1000):
            return self._hand_over(held.audio, held.end_t, held.transcript, held.verdict, heard=held.final)
        return []

    def _judge_later(self, held: _Held, job) -> None:
        """Work out ``held``'s (verdict, transcript) with ``job(held)`` on the judging thread."""
        with self._lock:  # stop() on the page's thread shuts the pools down under this lock
            if self.state == OFF:
                return
            if self._judge_pool is None:
                self._judge_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="omnilingo-turn-end")
            held.judging = self._judge_pool.submit(job, held)
            self._held = held

    def _hear_meanwhile(self, held: _Held) -> None:
        """Start Whisper on ``held``'s audio on its own thread (its words for a later hand-over)."""
        with self._lock:
            if self.state == OFF or self._held is not held or getattr(self.conversation, "asr", None) is None:
                return  # off, or the user went on meanwhile: the next pause is heard whole
            if self._hear_pool is None:
                self._hear_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="omnilingo-hear")
            held.hearing = self._hear_pool.submit(self._transcribe, held.audio)

    def _pause(self, event) -> list[VoiceEvent]:
        """The VAD heard a pause: hand the turn over, or judge (off this thread) whether the user goes on."""
        audio, held = event.audio, self._held
        if held is not None:  # the user went on after an unfinished pause: one utterance
            gap = int(round((_audio_end(event) - len(audio) / SAMPLE_RATE - held.audio_end_t) * SAMPLE_RATE))
            audio = np.concatenate([held.audio, np.zeros(max(gap, 0), np.float32), audio[max(-gap, 0):]])
            self._drop_held()
        if self.turn_end is None or event.forced:
            return self._hand_over(audio, event.t)
        turn_end, language = self.turn_end, self._language()
        self._judge_later(_Held(audio, event.t, _audio_end(event)),
                          lambda held: turn_end.judge(held.audio, lambda: self._transcribe(held.audio), language))
        return []

    def _language(self) -> str | None:
        """The language the user chose, else the conversation's so far, else the browser's first.

        The browser's only guides the end-of-turn judgement (which word list, which stop words): Whisper
        still hears any language. Without it a first turn had only Whisper's guess from a second or two of
        speech, often a language with no word list (bench/turn_taking.py, "smart" against "smart-browser").
        """
        if self.spoken_language not in (None, "", "auto"):
            return self.spoken_language
        current = getattr(self.conversation, "_current_language", None)
        language = current() if callable(current) else None
        if language not in (None, "", "und"):
            return language
        return self.browser_languages[0] if self.browser_languages else None

    def _transcribe(self, audio: np.ndarray):
        asr = getattr(self.conversation, "asr", None)
        if asr is None:
            return None
        from backend.media import AudioClip

        # A language the user chose is forced: Whisper guesses badly from a second of speech.
        chosen = self.spoken_language if self.spoken_language not in (None, "", "auto") else None
        self._asr_timings = {"asr_start": time.time()}
        try:
            return asr.transcribe(AudioClip(samples=np.asarray(audio, dtype=np.float32)), chosen)
        except Exception:  # noqa: BLE001 - the turn's own transcription reports the problem to the user
            log.warning("transcription at a pause failed", exc_info=True)
            return None
        finally:
            self._asr_timings["asr_end"] = time.time()

    def _hand_over(self, audio: np.ndarray, t: float, transcript=None, verdict: TurnVerdict | None = None,
                   *, heard: bool = False):
        self._held = None
        if self._barged and transcript is None and not heard and getattr(self.conversation, "asr", None) is not None:
            # Only the words tell "stop" from a question: hear them first (the turn reuses them).
            self._judge_later(_Held(audio, t, t, final=True), lambda held: (verdict, self._transcribe(held.audio)))
            return []
        barged, self._barged = self._barged, False
        if barged:
            if transcript is not None and is_stop_request(transcript.text, transcript.language, self._language()):
                log.info("barge-in asked to stop: %r", transcript.text)
                self.state = LISTENING
                return [VoiceEvent(VoiceEventKind.STOP_REQUEST, t, transcript=transcript)]
        self.utterances += 1
        self.state = THINKING
        timings = self._asr_timings if transcript is not None else {}
        return [VoiceEvent(VoiceEventKind.UTTERANCE, t, audio=audio, transcript=transcript, verdict=verdict,
                           timings=dict(timings))]

    def heard_at(self, t: float) -> float | None:
        """Wall clock at which stream time ``t`` had been heard (None: too long ago)."""
        return next((wall for stream_t, wall in list(self._heard) if stream_t >= t), None)

    def barge_in(self) -> int:
        """The user cut in: stop the answer and its voice, listen again."""
        generation = self.conversation.interrupt()
        with self._lock:  # hear() runs the echo guard under this lock on another thread
            self.echo.clear()
            self.barge_ins += 1
            self.state = LISTENING
            self._audible_until = 0.0  # the page's audio is silenced
            self._paused_at = None
        log.info("barge-in: answer interrupted (generation %d)", generation)
        return generation

    # -- the assistant's side -----------------------------------------------------------------
    def answering(self, generation: int) -> None:
        """The answer of ``generation`` starts (an automatic language retry keeps the generation)."""
        self._answering_generation = generation
        self._answer_done = False
        with self._lock:
            if self.echo.paused:  # a held answer that never played on (Stop, or a barge-in before the page said)
                self.echo.clear()
        if self.active:
            self.state = THINKING

    def played(self, samples: np.ndarray, sample_rate: int) -> None:
        """Audio about to reach the speakers: the echo guard must know it to ignore it."""
        samples = np.asarray(samples, dtype=np.float32)
        with self._lock:  # hear() runs the echo guard under this lock on another thread
            self.echo.played(samples, sample_rate=sample_rate)
            self._audible_until = max(self._audible_until, time.monotonic()) + len(samples) / float(sample_rate)
            if self.active:
                self.state = SPEAKING

    def finished(self, generation: int) -> None:
        """The answer's text and speech were all handed out; the page may still be playing it."""
        if self._answering_generation == generation and self.active:
            self._answer_done = True
            if not self._still_audible():
                self.state = LISTENING

    def _still_audible(self) -> bool:
        # Handed-out speech plays on in the page after the server is done with it: cutting in
        # then is still a barge-in (it stops the page's audio), not a new question over the answer.
        # Paused for a speech candidate, the page still holds the rest.
        return self._paused_at is not None or time.monotonic() < self._audible_until + PLAYBACK_SLACK_S

    def save_utterance(self, audio: np.ndarray, folder: Path) -> Path:
        """Write an utterance as a WAV file the turn can keep and replay."""
        import soundfile as sf

        self._saved = getattr(self, "_saved", 0) + 1
        path = folder / f"voice-{self._saved:04d}.wav"
        sf.write(path, np.clip(audio, -1, 1), SAMPLE_RATE, subtype="PCM_16")
        return path
