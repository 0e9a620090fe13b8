"""Speaking a streaming answer: sentence by sentence, beside the text, dropped when stale."""

from __future__ import annotations

import time

import numpy as np
import pytest

from backend.conversation.speaker import AnswerSpeaker, answer_aloud
from backend.conversation.turns import Conversation
from backend.models.tts import SpeechRouter, espeak_available
from tests.support import ScriptedEngine

pytestmark = pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")


class Generation:
    def __init__(self) -> None:
        self.value = 1

    def __call__(self) -> int:
        return self.value


def _collect(speaker: AnswerSpeaker, timeout: float = 30.0) -> list:
    chunks = []
    deadline = time.monotonic() + timeout
    while not speaker.done and time.monotonic() < deadline:
        speaker.wait(0.05)
        chunks += speaker.ready()
    return chunks + speaker.ready()


def test_each_sentence_becomes_audio_as_the_text_streams():
    router = SpeechRouter()
    generation = Generation()
    speaker = AnswerSpeaker(router, "fr", 1, generation)
    text = "Bonjour à tous. Il fait beau aujourd'hui à Paris ! Voulez-vous une promenade ?"
    for ch in text:
        speaker.feed(ch)
    first = []
    deadline = time.monotonic() + 20
    while not first and time.monotonic() < deadline:  # the first sentence is spoken before the text ends
        speaker.wait(0.05)
        first = speaker.ready()
    speaker.finish()
    chunks = first + _collect(speaker)
    assert [c.audio.text for c in chunks] == [
        "Bonjour à tous.", "Il fait beau aujourd'hui à Paris !", "Voulez-vous une promenade ?"
    ]
    for chunk in chunks:
        assert chunk.audio.sample_rate > 8000
        assert float(np.sqrt(np.mean(chunk.audio.samples ** 2))) > 0.01
        assert chunk.wav_bytes()[:4] == b"RIFF"


def test_a_new_generation_drops_queued_speech():
    generation = Generation()
    speaker = AnswerSpeaker(SpeechRouter(), "en", 1, generation)
    for sentence in ["One sentence here. ", "Another one follows. ", "And a third one. ", "Last one."]:
        speaker.feed(sentence)
    generation.value = 2  # a barge-in
    speaker.finish()
    assert _collect(speaker) == []


def test_language_without_a_voice_is_text_only_with_a_note():
    speaker = AnswerSpeaker(SpeechRouter(), "tlh", 1, Generation())
    speaker.feed("Some text. ")
    speaker.finish()
    assert speaker.done and _collect(speaker) == []
    assert speaker.note is not None and speaker.note.key == "tts.no_voice"


# The last piece has no sentence end: what was written is still spoken once the text is complete.
SCRIPT = ["The moon is bright ", "tonight. It shines ", "on the sea and the sand"]


@pytest.mark.parametrize(("language", "has_voice"), [("en", True), ("tlh", False)])
def test_answer_aloud_streams_text_and_audio(tmp_path, language, has_voice):
    router = SpeechRouter()
    assert (router.voice_for(language) is not None) == has_voice
    conversation = Conversation(ScriptedEngine(SCRIPT), tmp_path / "s")
    turn = conversation.add(conversation.prepare("Tell me about the moon.", language=language))
    events = list(answer_aloud(conversation, turn, router, speak=True))
    assert turn.status == "done" and turn.answer_language == language
    assert "".join(e.text for e in events if e.kind == "text") == "".join(SCRIPT)
    spoken = [e.chunk.audio.text for e in events if e.kind == "audio"]
    if has_voice:
        assert spoken == ["The moon is bright tonight.", "It shines on the sea and the sand"]
        assert not [note for note in turn.notes if note.startswith("tts.")]
    else:
        assert spoken == [] and "tts.no_voice" in turn.notes
    conversation.close()


def test_stop_silences_the_rest(gemma_engine, tmp_path):
    import threading

    conversation = Conversation(gemma_engine, tmp_path / "s", max_new_tokens=3000)
    turn = conversation.add(conversation.prepare("Tell me everything about the sea."))
    threading.Timer(0.3, conversation.stop).start()
    started = time.monotonic()
    list(answer_aloud(conversation, turn, SpeechRouter(), speak=True))
    assert turn.status == "stopped" and turn.stats.new_tokens < 3000
    assert time.monotonic() - started < 30, "speech kept going after Stop"


def test_speech_off_yields_only_text(gemma_engine, tmp_path):
    conversation = Conversation(gemma_engine, tmp_path / "s", max_new_tokens=10)
    turn = conversation.add(conversation.prepare("Hello there, how are you today?"))
    assert {e.kind for e in answer_aloud(conversation, turn, SpeechRouter(), speak=False)} == {"text"}
