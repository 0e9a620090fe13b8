"""Download and reload: a conversation survives as Markdown, JSON and the browser's copy."""

from __future__ import annotations

import base64
import io
import json
import zipfile

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from backend.conversation import transcript
from backend.conversation.turns import Conversation
from backend.errors import UserFacingError


class _NoEngine:
    name = "none"
    accepts_images = True
    accepts_audio = False


@pytest.fixture()
def conversation(tmp_path):
    conv = Conversation(_NoEngine(), tmp_path / "session")
    yield conv
    conv.close()


def _picture(path, color=(250, 10, 10), size=(120, 80)):
    Image.new("RGB", size, color).save(path)
    return str(path)


def _fill(conversation, tmp_path):
    first = conversation.add(conversation.prepare("Bonjour ! Que voyez-vous sur cette image, s'il vous plaît ?",
                                                  [_picture(tmp_path / "mine.png")]))
    first.answer, first.status = "Je vois un **carré rouge**. <script>x()</script>", "done"
    wav = tmp_path / "question.wav"
    sf.write(wav, 0.1 * np.sin(np.linspace(0, 2000, 16_000)).astype(np.float32), 16_000)
    second = conversation.add(conversation.prepare("", [str(wav)]))
    second.transcript, second.status, second.answer = "Was ist das?", "stopped", "Das ist"
    third = conversation.add(conversation.prepare("مرحبا كيف حالك اليوم يا صديقي؟", language="ar"))
    third.status, third.error, third.error_key = "error", "The model ran out of memory.", "error.out_of_memory"
    return first, second, third


def test_json_round_trip_keeps_text_languages_images_and_audio(conversation, tmp_path):
    first, second, third = _fill(conversation, tmp_path)
    saved = transcript.to_json(conversation)
    data = json.loads(saved)
    assert data["format"] == "omnilingo.conversation" and len(data["turns"]) == 3
    assert data["turns"][0]["language"]["tag"] == "fr"
    picture = Image.open(io.BytesIO(base64.b64decode(data["turns"][0]["images"][0]["data"])))
    assert picture.size == (120, 80)
    assert "mine.png" not in saved  # the user's file name never travels

    other = Conversation(_NoEngine(), tmp_path / "after-reload")
    try:
        assert transcript.restore(other, saved) == 3
        a, b, c = other.turns
        assert a.text == first.text and a.answer == first.answer and a.language.tag == "fr"
        assert a.status == "done" and len(a.image_paths) == 1
        assert Image.open(a.image_paths[0]).getpixel((5, 5))[:3] == (250, 10, 10)
        assert a.image_paths[0].startswith(str(other.session_dir))
        assert b.transcript == "Was ist das?" and b.status == "stopped" and sf.info(b.audio_path).samplerate == 16_000
        assert c.answer_language == "ar" and c.language_override == "ar" and c.error_key == "error.out_of_memory"
        # new turns continue after the restored ones
        nxt = other.add(other.prepare("Merci beaucoup pour votre réponse détaillée !"))
        assert nxt.id == 4
    finally:
        other.close()


def test_browser_copy_is_small_and_restores(conversation, tmp_path):
    conversation.add(conversation.prepare("Describe this big photo please, in detail.",
                                          [_picture(tmp_path / "big.png", size=(3000, 2000))]))
    state = transcript.for_browser(conversation)
    image = state["turns"][0]["images"][0]
    assert image["mime"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(base64.b64decode(image["data"]))).size) == transcript.BROWSER_IMAGE_SIDE
    assert "audio" not in state["turns"][0]
    conversation.clear()
    assert transcript.restore(conversation, state) == 1
    turn = conversation.turns[0]
    assert turn.status == "stopped"  # it was still pending when saved
    assert max(Image.open(turn.image_paths[0]).size) == transcript.BROWSER_IMAGE_SIDE


def test_markdown_and_zip(conversation, tmp_path):
    _fill(conversation, tmp_path)
    text = transcript.to_markdown(conversation)
    assert "## You (French, fr)" in text and "Je vois un **carré rouge**" in text
    assert "> Was ist das?" in text and "_The answer was stopped._" in text
    assert "_No answer: The model ran out of memory._" in text
    bundle = zipfile.ZipFile(io.BytesIO(transcript.to_zip(conversation)))
    names = set(bundle.namelist())
    assert {"conversation.md", "conversation.json"} <= names
    pictures = [n for n in names if n.startswith("images/")]
    assert len(pictures) == 1 and f"]({pictures[0]})" in bundle.read("conversation.md").decode()
    zipped, plain = transcript.write_downloads(conversation, tmp_path / "out")
    assert zipped.stat().st_size > 0 and json.loads(plain.read_text())["turns"]


@pytest.mark.parametrize(
    "payload",
    ["not json", "[]", json.dumps({"format": "something else", "turns": []}),
     json.dumps({"format": "omnilingo.conversation", "version": 99, "turns": []})],
)
def test_foreign_payload_is_refused_plainly(conversation, payload):
    with pytest.raises(UserFacingError) as info:
        transcript.restore(conversation, payload)
    assert info.value.key in {"transcript.invalid", "transcript.newer"}


def test_hostile_payload_is_cleaned(conversation):
    svg = base64.b64encode(b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>").decode()
    payload = {
        "format": "omnilingo.conversation", "version": 1,
        "turns": [
            {"text": "hi\x00 there \ud800", "answer": "ok", "status": "streaming",
             "images": [{"name": "../../etc/passwd", "data": svg}, {"data": "%%%not base64"}],
             "language": {"tag": "../../x", "confidence": "lots"}, "language_override": "<script>"},
            "not a turn",
            {"text": "", "images": []},
            {"text": "second", "status": "done", "notes": ["x" * 1000, "history_shortened"]},
        ] + [{"text": f"t{i}", "status": "done"} for i in range(transcript.MAX_TURNS)],
    }
    # at most MAX_TURNS entries are read; two of them are not turns
    assert transcript.restore(conversation, payload) == transcript.MAX_TURNS - 2
    first = conversation.turns[0]
    assert first.text == "hi there" and first.status == "stopped" and first.image_paths == []
    assert "<" not in first.language_override and 0.0 <= first.language.confidence <= 1.0
    assert conversation.turns[1].notes == ["history_shortened"]
    assert [p.name for p in conversation.session_dir.iterdir()] == []


def test_empty_state_restores_nothing(conversation):
    assert transcript.restore(conversation, None) == 0 and conversation.turns == []
