"""Injected faults: each gives a plain message and the app keeps serving."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from app import render
from backend.conversation.speaker import answer_aloud
from backend.conversation.turns import Conversation
from backend.errors import UserFacingError
from backend.runtime import Runtime
from backend.settings import Settings
from tests.fakes import ScriptedEngine

HELLO = "Hello! Could you tell me something interesting about the moon?"


def _answer(conversation: Conversation, text: str = HELLO, files=()):
    turn = conversation.add(conversation.prepare(text, list(files)))
    try:
        for _ in conversation.answer(turn, max_new_tokens=6):
            pass
    except UserFacingError:
        pass  # the turn keeps the message, as the UI does
    return turn


def _shown(conversation: Conversation) -> str:
    return " ".join(str(m["content"]) for m in render.chat_messages(conversation))


@pytest.fixture()
def conversation(gemma_engine, tmp_path):
    conv = Conversation(gemma_engine, tmp_path / "session", max_new_tokens=6)
    yield conv
    conv.close()


# --------------------------------------------------------------------------- the model


def test_missing_model_fails_plainly_and_keeps_serving(tmp_path):
    missing = tmp_path / "no-such-model"
    runtime = Runtime(Settings(model=str(missing), device="cpu", asr_model="off", tts_engine="off"))
    try:
        status = runtime.wait_until_loaded(60)
        assert status.state == "failed" and str(missing) in status.message and "--model" in status.message
        with pytest.raises(UserFacingError) as info:
            runtime.require_model()
        assert info.value.key == "model.unavailable" and "Traceback" not in info.value.message
    finally:
        runtime.close()


def test_corrupt_weights_fail_plainly(tiny_gemma, tmp_path):
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_gemma, broken)
    for weights in broken.glob("*.safetensors"):
        weights.write_bytes(b"\x00garbage" * 1000)
    runtime = Runtime(Settings(model=str(broken), device="cpu", asr_model="off", tts_engine="off"))
    try:
        status = runtime.wait_until_loaded(60)
        assert status.state == "failed"
        assert status.key == "model.broken" and "damaged" in status.message and "Traceback" not in status.message
    finally:
        runtime.close()


def test_out_of_memory_is_told_and_the_next_turn_works(conversation, gemma_engine, monkeypatch):
    import torch

    emptied = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 14.75 GiB total capacity)")

    with monkeypatch.context() as patch:
        patch.setattr(gemma_engine._generator, "generate", out_of_memory)
        turn = _answer(conversation)
    assert turn.status == "error" and turn.error_key == "error.out_of_memory"
    assert emptied, "the cache is freed after an out-of-memory error"
    shown = _shown(conversation)
    assert "ran out of memory" in shown and "Tried to allocate" not in shown and "Traceback" not in shown
    nxt = _answer(conversation, "And what about the sun, then?")
    assert nxt.status == "done" and nxt.answer
    assert turn in conversation.turns  # the failed question stays in the history


def test_any_generate_failure_is_a_plain_message(conversation, gemma_engine, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(gemma_engine._generator, "generate", lambda *a, **k: (_ for _ in ()).throw(ValueError("boom")))
        turn = _answer(conversation)
    assert turn.status == "error" and turn.error_key == "error.generation" and "boom" not in _shown(conversation)
    assert _answer(conversation, "Shall we try again now?").status == "done"


# --------------------------------------------------------------------------- speech in


def _recording(path: Path) -> str:
    t = np.linspace(0, 2, 32_000, dtype=np.float32)
    sf.write(path, 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)), 16_000)
    return str(path)


def test_broken_asr_folder_leaves_typing_working(gemma_engine, tmp_path):
    broken = tmp_path / "whisper-broken"
    broken.mkdir()
    (broken / "config.json").write_text("{ this is not json")
    runtime = Runtime(Settings(model="unused", device="cpu", asr_model=str(broken), tts_engine="off"),
                      engine=gemma_engine)
    try:
        assert runtime.wait_until_loaded(60).state == "ready"
        runtime._loader.join(60)  # speech recognition loads after the model
        assert runtime.asr_error is not None and runtime.asr_error.key.startswith("model.asr")
        assert str(broken) in runtime.asr_error.message or "could not be loaded" in runtime.asr_error.message
        conversation = runtime.new_conversation()
        conversation.max_new_tokens = 6
        typed = _answer(conversation)
        assert typed.status == "done" and typed.answer
        spoken = _answer(conversation, "", [_recording(tmp_path / "q.wav")])
        # this model hears audio itself, so the recording is still answered, with a note
        assert spoken.status == "done" and "heard_by_model_only" in spoken.notes
    finally:
        runtime.close()


def test_asr_crash_is_a_plain_message(gemma_engine, tiny_dir, tmp_path, monkeypatch):
    from backend.models.whisper_transformers import TransformersWhisper

    asr = TransformersWhisper(str(tiny_dir / "whisper"))
    asr.load()
    monkeypatch.setattr(asr._model, "generate", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("kaboom")))
    monkeypatch.setattr("backend.models.asr.speech_seconds", lambda *a, **k: 2.0)
    conversation = Conversation(gemma_engine, tmp_path / "s", max_new_tokens=6, asr=asr)
    try:
        spoken = _answer(conversation, "", [_recording(tmp_path / "q.wav")])
        assert spoken.status == "error" and spoken.error_key == "asr.failed"
        assert "type your message" in _shown(conversation) and "kaboom" not in _shown(conversation)
        assert _answer(conversation).status == "done"
    finally:
        conversation.close()


# --------------------------------------------------------------------------- speech out


@pytest.fixture()
def speaking(tmp_path):
    # Real sentences, so there is something to speak.
    engine = ScriptedEngine("The moon is bright tonight. It shines on the sea. Good night!", accepts_images=True)
    conv = Conversation(engine, tmp_path / "speaking")
    yield conv
    conv.close()


def _spoken_turn(conversation, router):
    turn = conversation.add(conversation.prepare(HELLO))
    texts, audio = [], []
    for event in answer_aloud(conversation, turn, router, speak=True):
        (texts if event.kind == "text" else audio).append(event)
    return turn, texts, audio


def test_missing_espeak_still_delivers_the_text(speaking):
    conversation = speaking
    from backend.models.tts import EspeakEngine, SpeechRouter

    router = SpeechRouter(engines=[EspeakEngine(binary="/nonexistent/espeak-ng")])
    turn, texts, audio = _spoken_turn(conversation, router)
    assert turn.status == "done" and turn.answer == "The moon is bright tonight. It shines on the sea. Good night!"
    assert texts and not audio
    assert any(note.startswith("tts.") for note in turn.notes)
    assert "text only" in _shown(conversation) or "voice" in _shown(conversation)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_crashing_voice_still_delivers_the_text(speaking, monkeypatch):
    conversation = speaking
    from backend.models.tts import EspeakEngine, SpeechRouter

    monkeypatch.setattr(EspeakEngine, "synthesize", lambda self, text, voice: 1 / 0)
    router = SpeechRouter(engines=[EspeakEngine()])
    turn, texts, audio = _spoken_turn(conversation, router)
    assert turn.status == "done" and turn.answer and texts and not audio
    assert "tts.engine_failed" in turn.notes
    shown = _shown(conversation)
    assert "ZeroDivisionError" not in shown and "Traceback" not in shown


# --------------------------------------------------------------------------- remote engine


def test_unreachable_remote_engine_is_a_plain_message(tmp_path):
    pytest.importorskip("backend.models.remote", reason="the remote engine is not in this tree")
    runtime = Runtime(Settings(engine="openai", base_url="http://127.0.0.1:9/v1", model="some-model",
                               asr_model="off", tts_engine="off"))
    try:
        status = runtime.wait_until_loaded(60)
        conversation = runtime.new_conversation()
        if status.state == "failed":
            message, key = status.message, status.key
        else:  # an engine that connects lazily fails on the first answer instead
            turn = _answer(conversation)
            message, key = turn.error or "", turn.error_key or ""
        assert key.startswith("remote.") and "Traceback" not in message
        assert "reach" in message or "server" in message
    finally:
        runtime.close()
