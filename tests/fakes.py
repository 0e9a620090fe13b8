"""Scripted stand-ins for the model and the voice: set outputs at a set pace.

Stop and barge-in tests need an answer that is still running when the test acts on it,
and a known number of sentences to drop. A random tiny model gives neither for sure; these
do. They implement the same protocols as the real ones (backend.models.engine.Engine,
backend.models.tts.TTSEngine), so the conversation code under test is the real code.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from backend.models.engine import GenerationStats, PromptMessage
from backend.models.tts import AudioChunk, Voice

_TOKEN = re.compile(r"\s*\S+|\s+")


def tokens(text: str) -> list[str]:
    """The pieces ScriptedEngine streams: one word with the spaces before it."""
    return _TOKEN.findall(text)


def _sleep_unless(stop: Any, seconds: float) -> bool:
    """Sleep up to ``seconds``; True as soon as ``stop.is_set()``. Only ``is_set`` is called, so any
    stop signal with that method works (threading.Event or a cancel scope)."""
    deadline = time.monotonic() + seconds
    while True:
        if stop.is_set():
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(left, 0.005))


class ScriptedEngine:
    """An Engine whose answers are given. The first call streams ``answer``, later calls ``next_answers``
    in turn (the last one repeats). An answer given as a string streams word by word (``tokens``);
    given as a list, piece by piece as listed.

    ``first_token_delay_s`` stands for the prefill, ``token_delay_s`` for each decode step; a stop
    is seen within about 5 ms of either. ``before_piece(i)`` runs before piece ``i`` is written, so
    a test can act mid-answer. Every prompt it was given is kept in ``prompts``."""

    name = "scripted"

    def __init__(
        self,
        answer: str | Sequence[str] = "Hello. How can I help?",
        *,
        next_answers: Sequence[str | Sequence[str]] = (),
        token_delay_s: float = 0.0,
        first_token_delay_s: float = 0.0,
        before_piece: Callable[[int], None] | None = None,
        accepts_images: bool = True,
        accepts_audio: bool = False,
    ) -> None:
        self.answers = [answer, *next_answers]
        self.token_delay_s = token_delay_s
        self.first_token_delay_s = first_token_delay_s
        self.before_piece = before_piece
        self.accepts_images = accepts_images
        self.accepts_audio = accepts_audio
        self.prompts: list[list[PromptMessage]] = []
        self.loaded = False
        self.closed = False

    def load(self, progress: Callable[[str], None] | None = None) -> None:
        if progress is not None:
            progress("scripted model ready")
        self.loaded = True

    def stream(
        self, messages: list[PromptMessage], stop: Any, max_new_tokens: int = 512,
        stats: GenerationStats | None = None,
    ) -> Iterator[str]:
        stats = stats if stats is not None else GenerationStats()
        self.prompts.append(messages)
        answer = self.answers[min(len(self.prompts), len(self.answers)) - 1]
        pieces = tokens(answer) if isinstance(answer, str) else list(answer)
        stats.prompt_tokens = sum(len(tokens(m.text)) for m in messages)
        started = time.perf_counter()
        try:
            if _sleep_unless(stop, self.first_token_delay_s):
                stats.stopped = True
                return
            for i, piece in enumerate(pieces[:max_new_tokens]):
                if self.before_piece is not None:
                    self.before_piece(i)
                if (i and _sleep_unless(stop, self.token_delay_s)) or stop.is_set():
                    stats.stopped = True
                    return
                if stats.first_token_s is None:
                    stats.first_token_s = time.perf_counter() - started
                stats.new_tokens += 1
                yield piece
        finally:
            stats.total_s = time.perf_counter() - started

    def close(self) -> None:
        self.closed = True


def long_answer(sentences: int = 500) -> str:
    """An answer that outlasts any test: numbered sentences, easy to count in what was kept."""
    return " ".join(f"Sentence number {i} is here." for i in range(1, sentences + 1))


class ScriptedVoice:
    """A TTSEngine that speaks any text in ``languages``: a 220 Hz tone of ``seconds_per_sentence``,
    after ``delay_s`` of "synthesis". Every sentence it was asked to say is kept in ``said``."""

    name = "scripted-voice"

    def __init__(
        self,
        languages: Sequence[str] = ("en", "fr", "de"),
        delay_s: float = 0.0,
        seconds_per_sentence: float = 0.5,
        sample_rate: int = 16000,
    ) -> None:
        self.languages = list(languages)
        self.delay_s = delay_s
        self.seconds_per_sentence = seconds_per_sentence
        self.sample_rate = sample_rate
        self.said: list[str] = []

    def voices(self) -> list[Voice]:
        return [Voice(self.name, f"scripted-{tag}", tag, f"Scripted ({tag})") for tag in self.languages]

    def synthesize(self, text: str, voice: Voice) -> AudioChunk:
        time.sleep(self.delay_s)
        self.said.append(text)
        t = np.arange(int(self.seconds_per_sentence * self.sample_rate), dtype=np.float32) / self.sample_rate
        samples = (0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)
        return AudioChunk(samples=samples, sample_rate=self.sample_rate, text=text)
