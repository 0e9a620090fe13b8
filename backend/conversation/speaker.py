"""Speaks a streaming answer sentence by sentence, beside the text stream, never in its way.

Sentences are cut as the text streams (the first may end at a clause) and synthesized on a worker thread, so the
first sentence is heard while the model still writes the second. Every sentence and
every audio chunk carries the generation it belongs to; once the conversation moves
on (Stop, barge-in, a new turn) the old ones are dropped wherever they are.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from backend.cancel import CancelScope
from backend.errors import UserFacingError
from backend.language.sentences import FIRST_CLAUSE_CHARS, FIRST_CLAUSE_WORDS, SentenceStream
from backend.models.tts import AudioChunk, SpeechRouter, Voice, speakable
from backend.streams import ThreadStream

log = logging.getLogger(__name__)


@dataclass
class SpokenChunk:
    generation: int
    audio: AudioChunk
    ready_at: float  # perf_counter when synthesis finished

    def wav_bytes(self) -> bytes:
        return self.audio.wav_bytes()


_END = object()


class AnswerSpeaker:
    """One answer's voice. ``feed`` text deltas, ``finish`` at the end, read ``ready()`` chunks.

    Everything it holds belongs to ``scope``: once that is cancelled, nothing more is spoken or
    handed out."""

    def __init__(self, router: SpeechRouter, language: str, scope: CancelScope, voice: Voice | None = None,
                 on_stage: Callable[[str], None] | None = None) -> None:
        self.router = router
        self.on_stage = on_stage or (lambda stage: None)  # first_sentence, first_tts_chunk
        self.language = language
        self.scope = scope
        self.voice = voice or router.voice_for(language)
        # The first chunk may end at a clause: the voice starts before the first sentence is written.
        self.sentences = SentenceStream(language, first_clause_words=FIRST_CLAUSE_WORDS,
                                        first_clause_chars=FIRST_CLAUSE_CHARS)
        self.note: UserFacingError | None = None
        self.fallback_notes: list[str] = []  # why another voice than the chosen one spoke (turn.notes keys)
        self.first_audio_at: float | None = None
        self._todo: queue.Queue = queue.Queue()
        self._spoken: ThreadStream[SpokenChunk] | None = None
        if self.voice is None:
            self.note = UserFacingError(
                f"There is no voice for {language}; the answer is shown as text only.",
                key="tts.no_voice", language=language,
            )
        else:
            self._spoken = ThreadStream(self._synthesize, scope=scope, name="omnilingo-speak")

    @property
    def generation(self) -> int:
        return self.scope.generation

    @property
    def stale(self) -> bool:
        return self.scope.cancelled

    def feed(self, delta: str) -> None:
        if self._spoken is None or self.stale:
            return
        for sentence in self.sentences.feed(delta):
            self.on_stage("first_sentence")
            self._todo.put(sentence)

    def finish(self) -> None:
        if self._spoken is None:
            return
        if not self.stale:
            for sentence in self.sentences.flush():
                self.on_stage("first_sentence")
                self._todo.put(sentence)
        self._todo.put(_END)

    def cancel(self) -> None:
        """Drop what is left of this voice (its scope stays as it is)."""
        if self._spoken is not None:
            self._spoken.close(wait=False)  # never wait for a sentence being synthesized
        self._todo.put(_END)

    @property
    def done(self) -> bool:
        """All speech produced (or dropped) and handed out."""
        return self._spoken is None or self._spoken.finished

    def ready(self) -> list[SpokenChunk]:
        """Chunks synthesized so far, while the answer's scope is live."""
        if self._spoken is None:
            return []
        return [chunk for chunk in self._spoken.ready() if not self.scope.is_stale(chunk.generation)]

    def wait(self, timeout: float) -> None:
        """Block until a chunk is ready, speech is finished, or ``timeout`` passes."""
        if self._spoken is not None:
            self._spoken.wait(timeout)

    def _synthesize(self, emit: Callable[[SpokenChunk], None], stopping: Callable[[], bool]) -> None:
        prepare = getattr(self.router, "prepare", None)
        if prepare is not None:
            prepare(self.language, self.voice)  # a neural voice loads while the model writes the first sentence
        while True:
            sentence = self._todo.get()
            if sentence is _END or stopping():
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
            if stopping():
                return
            if audio.note and audio.note not in self.fallback_notes:
                self.fallback_notes.append(audio.note)
            if self.first_audio_at is None:
                self.first_audio_at = time.perf_counter()
                self.on_stage("first_tts_chunk")
            emit(SpokenChunk(self.generation, audio, time.perf_counter()))


class TurnEventKind(StrEnum):
    TEXT = "text"
    AUDIO = "audio"


@dataclass
class TurnEvent:
    kind: TurnEventKind
    text: str = ""
    chunk: SpokenChunk | None = None


# How often a spoken answer looks for finished sentences while the model is between words.
AUDIO_POLL_S = 0.02


def _still_current(chunks: list[SpokenChunk], scope: CancelScope) -> Iterator[TurnEvent]:
    """Audio events for ``chunks``, checked one by one: a barge-in while the first of them is being
    handed out (and played) makes the rest stale."""
    for chunk in chunks:
        if scope.is_stale(chunk.generation):
            return
        yield TurnEvent(TurnEventKind.AUDIO, chunk=chunk)


def answer_aloud(conversation, turn, router: SpeechRouter | None, speak: bool) -> Iterator[TurnEvent]:
    """Stream a turn's answer as text events and, when ``speak``, audio events of its sentences.

    Speech never holds the text back, and text never holds speech back: the answer is read on
    a worker thread, so a sentence's audio is handed out as soon as it is ready, not at the
    next word. Once the text is complete the remaining sentences are waited for (unless the
    turn was stopped or interrupted)."""
    if not speak or router is None:
        for delta in conversation.answer(turn):
            yield TurnEvent(TurnEventKind.TEXT, text=delta)
        return

    scope: CancelScope = conversation.scope

    def read_answer(emit: Callable[[str], None], stopping: Callable[[], bool]) -> None:
        for delta in conversation.answer(turn):
            emit(delta)
            if stopping():
                return

    deltas: ThreadStream[str] = ThreadStream(read_answer, name="omnilingo-answer")
    speaker: AnswerSpeaker | None = None
    complete = False
    try:
        while True:
            try:
                delta = deltas.get(timeout=AUDIO_POLL_S)
            except StopIteration:
                break
            if delta is not None:
                yield TurnEvent(TurnEventKind.TEXT, text=delta)
                if speaker is None:
                    # Made at the first words: for speech input the language is known only after hearing.
                    speaker = AnswerSpeaker(router, turn.answer_language, scope, on_stage=turn.mark)
                speaker.feed(delta)
            if speaker is not None:
                yield from _still_current(speaker.ready(), scope)
        complete = True
        if speaker is None:
            return
        speaker.finish()
        while not speaker.done and turn.status == "done" and not scope.cancelled:
            speaker.wait(AUDIO_POLL_S)
            yield from _still_current(speaker.ready(), scope)
        if speaker.note is not None and speaker.note.key not in turn.notes:
            turn.notes.append(speaker.note.key)
        turn.notes.extend(n for n in speaker.fallback_notes if n not in turn.notes)
    finally:
        if not complete:
            conversation.stop_turn(turn)  # the consumer left early: the model must not run on
        deltas.close()
        if speaker is not None and not speaker.done:
            speaker.cancel()
