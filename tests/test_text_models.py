"""Text-only chat models: which Auto class a config gets, where a GGUF file is, and what a model
that cannot see does with a picture. No weights needed (the real GGUF model is in test_real_model.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from backend.conversation.turns import Conversation
from backend.errors import MediaError, ModelUnavailableError
from backend.models.engine import locate_weights, model_kind


def test_a_gguf_file_or_a_folder_with_one_is_found(tmp_path):
    gguf = tmp_path / "chat.Q4_1.gguf"
    gguf.write_bytes(b"GGUF")
    assert locate_weights(str(gguf)) == (str(tmp_path), "chat.Q4_1.gguf")
    assert locate_weights(str(tmp_path)) == (str(tmp_path), "chat.Q4_1.gguf")
    # A folder with config.json is a transformers folder, whatever else it holds; hub ids pass through.
    (tmp_path / "config.json").write_text("{}")
    assert locate_weights(str(tmp_path)) == (str(tmp_path), None)
    assert locate_weights("HuggingFaceTB/SmolLM2-135M-Instruct") == ("HuggingFaceTB/SmolLM2-135M-Instruct", None)


def test_a_folder_with_several_gguf_files_asks_which(tmp_path):
    for name in ("a.Q4_1.gguf", "a.Q8_0.gguf"):
        (tmp_path / name).write_bytes(b"GGUF")
    with pytest.raises(ModelUnavailableError) as caught:
        locate_weights(str(tmp_path))
    assert caught.value.key == "model.several_gguf"
    assert "a.Q4_1.gguf" in caught.value.message and "--model" in caught.value.message


def test_the_config_chooses_the_auto_class(tiny_gemma):
    from transformers import AutoConfig, LlamaConfig, Qwen2Config

    assert model_kind(LlamaConfig()) == "text" and model_kind(Qwen2Config()) == "text"
    assert model_kind(AutoConfig.from_pretrained(tiny_gemma)) == "multimodal"
    with pytest.raises(ValueError):
        model_kind(SimpleNamespace(model_type="not-a-model"))


class _TextOnlyEngine:
    name = "some/text-model"
    accepts_images = False
    accepts_audio = False
    loaded = True

    def load(self, progress=None):
        pass

    def stream(self, messages, stop, max_new_tokens=512, stats=None):
        yield "Paris is the capital of France."

    def close(self):
        pass


def test_a_picture_to_a_text_model_is_refused_and_loses_nothing(tmp_path, corpus):
    conversation = Conversation(_TextOnlyEngine(), tmp_path / "session")
    first = conversation.add(conversation.prepare("What is the capital of France?"))
    list(conversation.answer(first))
    picture = str(corpus / "images" / "rapid_el_rec.jpg")
    with pytest.raises(MediaError) as caught:
        conversation.prepare("What does this sign say?", [picture])
    assert caught.value.key == "media.model_cannot_see"
    assert "cannot read pictures" in caught.value.message and "--model" in caught.value.message
    assert caught.value.params["model"] == "some/text-model"
    assert [t.id for t in conversation.turns] == [first.id] and first.answer.startswith("Paris")
    assert list(tmp_path.joinpath("session").glob("image-*")) == [], "a refused picture is not kept"
    conversation.close()


def test_a_picture_sent_while_the_model_loaded_gets_the_message_on_its_turn(tmp_path, corpus):
    engine = _TextOnlyEngine()
    engine.accepts_images = True  # not known yet while loading
    conversation = Conversation(engine, tmp_path / "session")
    turn = conversation.add(conversation.prepare("What does this sign say?", [str(corpus / "images" / "rapid_el_rec.jpg")]))
    engine.accepts_images = False  # loaded: a text model
    with pytest.raises(MediaError):
        list(conversation.answer(turn))
    assert turn.status == "error" and turn.error_key == "media.model_cannot_see" and turn.text
    conversation.close()


@pytest.mark.parametrize(("images", "audio", "asr", "expected"), [
    (True, True, object(), "takes text, pictures, sound"),
    (False, False, object(), "takes text, speech (through speech recognition)"),
    (False, False, None, "takes text"),
])
def test_the_status_line_says_what_the_model_takes(images, audio, asr, expected):
    from app.handlers import model_inputs

    runtime = SimpleNamespace(engine=SimpleNamespace(accepts_images=images, accepts_audio=audio), asr=asr)
    assert model_inputs(runtime, "en") == expected
    assert model_inputs(runtime, "de").startswith("versteht Text")

