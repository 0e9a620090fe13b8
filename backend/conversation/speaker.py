"""Speaks a streaming answer sentence by sentence, beside the text stream, never in its way.

Sentences are cut as the text streams and synthesized on a worker thread, so the
first sentence is heard while the model still writes the second. Every sentence and
every audio chunk carries the generation it belongs to; once the conversation moves
on (Stop, barge-in, a new turn) the old ones are dropped wherever they are.
"""

from __future__ import annotations

import io
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from backend.errors import UserFacingError
from backend.language.sentences import SentenceStream
from backend.models.tts import AudioChunk, SpeechRouter, Voice, speakable

log = logging.getLogger(__name__)


@dataclass
class SpokenChunk:
    generation: int
    audio: AudioChunk
    ready_at: float  # perf_counter when synthesis finished

    def wav_bytes(self) -> bytes:
        import soundfile as sf

        buffer = io.BytesIO()
        samples = np.clip(self.audio.samples, -1.0, 1.0)
        sf.write(buffer, samples, self.audio.sample_rate, format="WAV", subtype="PCM_16")
        return buffer.getvalue()


_END = object()


class AnswerSpeaker:
    """One answer's voice. ``feed`` text deltas, ``finish`` at the end, read ``ready()`` chunks."""

    def __init__(
        self,
        router: SpeechRouter,
        language: str,
        generation: int,
        current_generation: Callable[[], int],
        voice: Voice | None = None,
    ) -> None:
        self.router = router
        self.language = language
        self.generation = generation
        self._current = current_generation
        self.voice = voice or router.voice_for(language)
        self.sentences = SentenceStream(language)
        self.note: UserFacingError | None = None
        self.fallback_notes: list[str] = []  # why another voice than the chosen one spoke (turn.notes keys)
        self.first_audio_at: float | None = None
        self._todo: queue.Queue = queue.Queue()
        self._done: queue.Queue[SpokenChunk] = queue.Queue()
        self._cancelled = threading.Event()
        self._finished = threading.Event()
        if self.voice is None:
            self.note = UserFacingError(
                f"There is no voice for {language}; the answer is shown as text only.",
                key="tts.no_voice", language=language,
            )
            self._finished.set()
            self._worker = None
        else:
            self._worker = threading.Thread(target=self._run, name="omnilingo-speak", daemon=True)
            self._worker.start()

    @property
    def stale(self) -> bool:
        return self._cancelled.is_set() or self._current() != self.generation

    def feed(self, delta: str) -> None:
        if self._worker is None or self.stale:
            return
        for sentence in self.sentences.feed(delta):
            self._todo.put(sentence)

    def finish(self) -> None:
        if self._worker is None:
            return
        if not self.stale:
            for sentence in self.sentences.flush():
                self._todo.put(sentence)
        self._todo.put(_END)

    def cancel(self) -> None:
        self._cancelled.set()
        self._todo.put(_END)

    @property
    def done(self) -> bool:
        """All speech produced (or dropped) and handed out."""
        return self._finished.is_set() and self._done.empty()

    def ready(self) -> list[SpokenChunk]:
        """Chunks synthesized so far, of the current generation only."""
        out: list[SpokenChunk] = []
        while True:
            try:
                chunk = self._done.get_nowait()
            except queue.Empty:
                return out
            if chunk.generation == self._current() and not self._cancelled.is_set():
                out.append(chunk)

    def wait(self, timeout: float) -> None:
        """Block until a chunk is ready, speech is finished, or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while self._done.empty() and not self._finished.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)

    def _run(self) -> None:
        try:
            prepare = getattr(self.router, "prepare", None)
            if prepare is not None:
                prepare(self.language, self.voice)  # a neural voice loads while the model writes the first sentence
            while True:
                sentence = self._todo.get()
                if sentence is _END or self.stale:
                    return
                text = speakable(sentence)
                if not text.strip():
                    continue
                try:
                    audio = self.router.say(text, self.language, self.voice)
                except UserFacingError as err:
                    self.note = err
                    log.warning("speech stopped: %s", err.message)
                    return
                if self.stale:
                    return
                if audio.note and audio.note not in self.fallback_notes:
                    self.fallback_notes.append(audio.note)
                if self.first_audio_at is None:
                    self.first_audio_at = time.perf_counter()
                self._done.put(SpokenChunk(self.generation, audio, time.perf_counter()))
        finally:
            self._finished.set()


@dataclass
class TurnEvent:
    kind: str  # "text" | "audio"
    text: str = ""
    chunk: SpokenChunk | None = None


# How often a spoken answer looks for finished sentences while the model is between words.
AUDIO_POLL_S = 0.02


def _still_current(chunks: list[SpokenChunk], conversation) -> Iterator[TurnEvent]:
    """Audio events for ``chunks``, checked one by one: a barge-in while the first of them is being
    handed out (and played) makes the rest stale."""
    for chunk in chunks:
        if chunk.generation != conversation.generation:
            return
        yield TurnEvent("audio", chunk=chunk)


def answer_aloud(conversation, turn, router: SpeechRouter | None, speak: bool) -> Iterator[TurnEvent]:
    """Stream a turn's answer as text events and, when ``speak``, audio events of its sentences.

    Speech never holds the text back, and text never holds speech back: the answer is read on
    a worker thread, so a sentence's audio is handed out as soon as it is ready, not at the
    next word. Once the text is complete the remaining sentences are waited for (unless the
    turn was stopped or interrupted)."""
    if not speak or router is None:
        for delta in conversation.answer(turn):
            yield TurnEvent("text", text=delta)
        return

    deltas: queue.Queue = queue.Queue()
    failure: list[BaseException] = []

    def read_answer() -> None:
        try:
            for delta in conversation.answer(turn):
                deltas.put(delta)
        except BaseException as err:  # handed to the consumer below
            failure.append(err)
        finally:
            deltas.put(_END)

    reader = threading.Thread(target=read_answer, name="omnilingo-answer", daemon=True)
    reader.start()
    speaker: AnswerSpeaker | None = None
    complete = False
    try:
        while True:
            try:
                delta = deltas.get(timeout=AUDIO_POLL_S)
            except queue.Empty:
                delta = None
            if delta is _END:
                break
            if delta is not None:
                yield TurnEvent("text", text=delta)
                if speaker is None:
                    # Made at the first words: for speech input the language is known only after hearing.
                    speaker = AnswerSpeaker(router, turn.answer_language, turn.generation,
                                            lambda: conversation.generation)
                speaker.feed(delta)
            if speaker is not None:
                yield from _still_current(speaker.ready(), conversation)
        reader.join()
        if failure:
            raise failure[0]
        complete = True
        if speaker is None:
            return
        speaker.finish()
        while not speaker.done and turn.status == "done" and turn.generation == conversation.generation:
            speaker.wait(AUDIO_POLL_S)
            yield from _still_current(speaker.ready(), conversation)
        if speaker.note is not None and speaker.note.key not in turn.notes:
            turn.notes.append(speaker.note.key)
        turn.notes.extend(n for n in speaker.fallback_notes if n not in turn.notes)
    finally:
        if not complete:
            conversation.stop_turn(turn)  # the consumer left early: the model must not run on
            reader.join()
        if speaker is not None and not speaker.done:
            speaker.cancel()
