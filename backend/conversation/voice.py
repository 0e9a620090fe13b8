"""Hands-free voice mode: listen, answer aloud, and let the user cut in (barge-in).

The microphone streams into ``VoiceSession.hear``; silero VAD (behind the echo guard,
so the assistant's own voice coming back through the speakers does not count) finds
where the user starts and stops. A start while the assistant thinks or speaks is a
barge-in: the conversation cancels the answer's scope and opens the next generation,
which stops the model within one decode step and drops every queued sentence of the
old answer. The end of speech
hands over the utterance, pre-roll included, as the next turn.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np

from backend.audio.echo import EchoGuard
from backend.audio.pcm import SAMPLE_RATE
from backend.audio.vad import VadConfig, VoiceActivityDetector
from backend.conversation.turns import Conversation

log = logging.getLogger(__name__)

LISTENING, THINKING, SPEAKING, OFF = "listening", "thinking", "speaking", "off"
ECHO_MAX_DELAY_MS = 1500
# Measured with bench/barge_in.py: 160 ms of speech confirms a barge-in 214 ms sooner (median)
# than 250 ms, with no more false starts on noise or on the assistant's own voice.
VOICE_VAD = VadConfig(min_speech_ms=160)
# Microphone chunks: 0.1 s brings a barge-in about 200 ms sooner than 0.25 s, at ten small
# requests a second.
MIC_CHUNK_S = 0.1


class VoiceEventKind(StrEnum):
    SPEECH_START = "speech_start"
    BARGE_IN = "barge_in"
    UTTERANCE = "utterance"
    DISCARDED = "discarded"


@dataclass
class VoiceEvent:
    kind: VoiceEventKind
    t: float  # stream time, seconds
    audio: np.ndarray | None = None  # 16 kHz float32, for "utterance"
    detected_at: float = field(default_factory=time.perf_counter)


class VoiceSession:
    """One browser tab's voice conversation: the VAD, the echo guard, and the turn state."""

    def __init__(self, conversation: Conversation, config: VadConfig | None = None) -> None:
        self.conversation = conversation
        # The page plays streamed audio through a short buffer, so its sound reaches the
        # microphone later than on a phone call: search echoes up to 1.5 s behind what was sent.
        self.echo = EchoGuard(max_delay_ms=ECHO_MAX_DELAY_MS)
        self.vad = VoiceActivityDetector(config or VOICE_VAD, echo_guard=self.echo)
        self.state = OFF
        self.barge_ins = 0
        self.utterances = 0
        self._lock = threading.Lock()
        self._answering_generation: int | None = None

    # -- the microphone ---------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            self.vad.reset()
            self.echo.reset()
            self.state = LISTENING

    def stop(self) -> None:
        with self._lock:
            self.state = OFF
            self.vad.reset()
            self.echo.reset()

    @property
    def active(self) -> bool:
        return self.state != OFF

    def hear(self, samples: np.ndarray, sample_rate: int) -> list[VoiceEvent]:
        """Feed one microphone chunk (any rate, int16 or float); returns what happened in it."""
        if not self.active:
            return []
        with self._lock:
            events = self.vad.process(samples, sample_rate)
        log.debug("mic chunk: %d samples at %d Hz, peak %.3f, events %s", len(samples), sample_rate,
                  float(np.abs(np.asarray(samples, dtype=np.float32)).max() or 0), [e.kind for e in events])
        out: list[VoiceEvent] = []
        for event in events:
            if event.kind == "speech_start":
                if self.state in (THINKING, SPEAKING):
                    self.barge_in()
                    out.append(VoiceEvent(VoiceEventKind.BARGE_IN, event.t))
                else:
                    out.append(VoiceEvent(VoiceEventKind.SPEECH_START, event.t))
            elif event.kind == "speech_end" and event.audio is not None:
                self.utterances += 1
                self.state = THINKING
                out.append(VoiceEvent(VoiceEventKind.UTTERANCE, event.t, audio=event.audio))
            elif event.kind == "discarded":
                out.append(VoiceEvent(VoiceEventKind.DISCARDED, event.t))
        return out

    def barge_in(self) -> int:
        """The user cut in: stop the answer and its voice, listen again."""
        generation = self.conversation.interrupt()
        with self._lock:  # hear() runs the echo guard under this lock on another thread
            self.echo.clear()
            self.barge_ins += 1
            self.state = LISTENING
        log.info("barge-in: answer interrupted (generation %d)", generation)
        return generation

    # -- the assistant's side -----------------------------------------------------------------
    def answering(self, generation: int) -> None:
        """The answer of ``generation`` starts (an automatic language retry keeps the generation)."""
        self._answering_generation = generation
        if self.active:
            self.state = THINKING

    def played(self, samples: np.ndarray, sample_rate: int) -> None:
        """Audio about to reach the speakers: the echo guard must know it to ignore it."""
        samples = np.asarray(samples, dtype=np.float32)
        with self._lock:  # hear() runs the echo guard under this lock on another thread
            self.echo.played(samples, sample_rate=sample_rate)
            if self.active:
                self.state = SPEAKING

    def finished(self, generation: int) -> None:
        """The answer's text and speech were all handed out."""
        if self._answering_generation == generation and self.active:
            self.state = LISTENING

    def save_utterance(self, audio: np.ndarray, folder: Path) -> Path:
        """Write an utterance as a WAV file the turn can keep and replay."""
        import soundfile as sf

        self._saved = getattr(self, "_saved", 0) + 1
        path = folder / f"voice-{self._saved:04d}.wav"
        sf.write(path, np.clip(audio, -1, 1), SAMPLE_RATE, subtype="PCM_16")
        return path
