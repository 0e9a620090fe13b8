"""Speaking a streaming answer: sentence by sentence, beside the text, dropped when stale."""

from __future__ import annotations

import time

import numpy as np
import pytest

from backend.cancel import CancelScope
from backend.conversation.speaker import AnswerSpeaker, answer_aloud
from backend.conversation.turns import Conversation
from backend.models.tts import SpeechRouter, espeak_available
from tests.fakes import ScriptedEngine, ScriptedVoice, long_answer

needs_espeak = pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")


def _collect(speaker: AnswerSpeaker, timeout: float = 30.0) -> list:
    chunks = []
    deadline = time.monotonic() + timeout
    while not speaker.done and time.monotonic() < deadline:
        speaker.wait(0.05)
        chunks += speaker.ready()
    return chunks + speaker.ready()


@needs_espeak
def test_each_sentence_becomes_audio_as_the_text_streams():
    speaker = AnswerSpeaker(SpeechRouter(), "fr", CancelScope(1))
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


@needs_espeak
def test_a_new_generation_drops_queued_speech():
    scope = CancelScope(1)
    speaker = AnswerSpeaker(SpeechRouter(), "en", scope)
    for sentence in ["One sentence here. ", "Another one follows. ", "And a third one. ", "Last one."]:
        speaker.feed(sentence)
    scope.next()  # a barge-in
    speaker.finish()
    assert _collect(speaker) == []


@needs_espeak
def test_language_without_a_voice_is_text_only_with_a_note():
    speaker = AnswerSpeaker(SpeechRouter(), "tlh", CancelScope(1))
    speaker.feed("Some text. ")
    speaker.finish()
    assert speaker.done and _collect(speaker) == []
    assert speaker.note is not None and speaker.note.key == "tts.no_voice"


# The last piece has no sentence end: what was written is still spoken once the text is complete.
SCRIPT = ["The moon is bright ", "tonight. It shines ", "on the sea and the sand"]


@needs_espeak
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


def test_stop_silences_the_rest(tmp_path):
    engine = ScriptedEngine(long_answer(), token_delay_s=0.005)
    voice = ScriptedVoice(delay_s=0.2)
    conversation = Conversation(engine, tmp_path / "s", max_new_tokens=3000)
    turn = conversation.add(conversation.prepare("Tell me everything about the sea."))
    said_at_stop = None
    for event in answer_aloud(conversation, turn, SpeechRouter(engines=[voice]), speak=True):
        if event.kind == "audio" and said_at_stop is None:
            conversation.stop()
            said_at_stop = len(voice.said)
    assert turn.status == "stopped" and said_at_stop is not None
    time.sleep(0.5)  # long enough for two more sentences, had the voice kept going
    assert len(voice.said) <= said_at_stop + 1, "only the sentence already in the voice's mouth may finish"
    assert turn.answer.count("Sentence number") < 500


def test_a_sentence_is_heard_while_the_model_still_writes(tmp_path):
    engine = ScriptedEngine("First sentence here. " + long_answer(20), token_delay_s=0.02)
    conversation = Conversation(engine, tmp_path / "s", max_new_tokens=3000)
    turn = conversation.add(conversation.prepare("Tell me a story."))
    text_before_audio = ""
    for event in answer_aloud(conversation, turn, SpeechRouter(engines=[ScriptedVoice()]), speak=True):
        if event.kind == "audio":
            assert event.chunk.audio.text == "First sentence here."
            break
        text_before_audio += event.text
    assert "Sentence number 20" not in text_before_audio, "the first sentence waited for the whole answer"


def test_first_clause_is_heard_and_the_text_is_unchanged(tmp_path):
    script = ["Sure, the capital ", "of France is Paris, ", "a city of art, ", "food and old streets. ",
              "It is, by far, the biggest city ", "in the country."]
    voice = ScriptedVoice()
    conversation = Conversation(ScriptedEngine(script), tmp_path / "s")
    turn = conversation.add(conversation.prepare("What is the capital of France?", language="en"))
    events = list(answer_aloud(conversation, turn, SpeechRouter(engines=[voice]), speak=True))
    assert "".join(e.text for e in events if e.kind == "text") == "".join(script)
    assert voice.said == ["Sure, the capital of France is Paris,", "a city of art, food and old streets.",
                          "It is, by far, the biggest city in the country."]
    conversation.close()


def test_speech_off_yields_only_text(gemma_engine, tmp_path):
    conversation = Conversation(gemma_engine, tmp_path / "s", max_new_tokens=10)
    turn = conversation.add(conversation.prepare("Hello there, how are you today?"))
    assert {e.kind for e in answer_aloud(conversation, turn, SpeechRouter(), speak=False)} == {"text"}
