"""Hearing: a tiny random Whisper loaded through the app's own code, real recordings, espeak-ng round trips.

Trained weights (both engines on the real Whisper base) are in tests/test_asr_real.py."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from backend.errors import ModelUnavailableError
from backend.language.sentences import split_sentences
from backend.media import AudioClip, load_audio
from backend.models.asr import (
    DEFAULT_ASR_MODEL,
    DEFAULT_CT2_ASR_MODEL,
    SpeechRecognizer,
    Transcript,
    bcp47_to_whisper,
    choose_asr_engine,
    open_recognizer,
    speech_seconds,
    split_windows,
)
from backend.models.whisper_ctranslate2 import CTranslate2Whisper, default_cpu_threads, encoder_frames
from backend.models.whisper_transformers import TransformersWhisper
from tests.support import CORPUS

SPEECH_FILES = sorted((CORPUS / "speech").glob("*"))
# Recordings of 10 s and more (jfk, silero_*) take several windows of decoding each.
SPEECH_CASES = [pytest.param(p, marks=pytest.mark.slow) if p.stat().st_size > 1_000_000 else p for p in SPEECH_FILES]
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory) -> Path:
    from tests import tiny_models

    cached = os.environ.get("OMNILINGO_TINY_MODELS")
    if cached and (Path(cached) / "whisper" / "config.json").exists():
        return Path(cached) / "whisper"
    return tiny_models.build_whisper(tmp_path_factory.mktemp("tiny-whisper"))


@pytest.fixture(scope="module")
def recognizer(tiny_whisper) -> TransformersWhisper:
    rec = open_recognizer(str(tiny_whisper), device="cpu")
    assert isinstance(rec, TransformersWhisper) and isinstance(rec, SpeechRecognizer)
    rec.load()
    return rec


@pytest.fixture(scope="module")
def whisper_languages(recognizer) -> set[str]:
    return {tok.strip("<|>") for tok in recognizer._model.generation_config.lang_to_id}


def assert_transcript(tr: Transcript, clip: AudioClip, whisper_languages: set[str]) -> None:
    assert isinstance(tr.text, str)
    assert tr.duration_s == pytest.approx(clip.duration_s)
    assert 0.0 <= tr.language_probability <= 1.0
    assert bcp47_to_whisper(tr.language, whisper_languages) is not None, tr.language
    assert tr.timings["total"] >= tr.timings.get("generate", 0.0)


# --------------------------------------------------------------------------- corpus recordings


@pytest.mark.parametrize("path", SPEECH_CASES, ids=lambda p: p.name)
def test_every_corpus_recording_runs_through_asr(recognizer, whisper_languages, path):
    clip = load_audio(path)
    tr = recognizer.transcribe(clip)
    assert_transcript(tr, clip, whisper_languages)
    assert not tr.no_speech, "real speech must not be taken for silence"
    assert tr.text  # noise from random weights, but never an empty turn
    assert tr.speech_s >= 0.3
    expected_windows = int(np.ceil(clip.duration_s / 30.0))
    assert tr.windows >= expected_windows
    if clip.duration_s > 59:
        assert tr.windows >= 2, "a minute of speech is chunked, not cut off at 30 s"


def test_language_probabilities_cover_every_whisper_language(recognizer, whisper_languages):
    ranked = recognizer.detect_language(load_audio(CORPUS / "speech" / "sr_french.aiff"))
    assert len(ranked) == len(whisper_languages) >= 99
    probs = [p for _, p in ranked]
    assert sum(probs) == pytest.approx(1.0, abs=1e-4)
    assert probs == sorted(probs, reverse=True)
    tr = recognizer.transcribe(load_audio(CORPUS / "speech" / "sr_french.aiff"))
    assert (tr.language, tr.language_probability) == pytest.approx(ranked[0])
    # what a language decision weighs: the five most likely, as detect_language ranks them
    assert [tag for tag, _ in tr.language_probs] == [tag for tag, _ in ranked[:5]]
    assert [p for _, p in tr.language_probs] == pytest.approx([p for _, p in ranked[:5]], abs=1e-4)
    assert tr.avg_logprob is not None and tr.avg_logprob < 0


def test_forced_language_is_used_and_reported(recognizer):
    clip = load_audio(CORPUS / "speech" / "sr_french.aiff")
    tr = recognizer.transcribe(clip, language="fr-CA")
    assert tr.language.split("-")[0] == "fr"
    assert tr.language_probability == pytest.approx(dict(tr.language_probs).get("fr", tr.language_probability))
    assert len(tr.language_probs) == 5  # what the recording sounded like, even when forced
    unknown = recognizer.transcribe(clip, language="tlh")  # Klingon: Whisper has no token, so it detects
    assert unknown.language != "tlh" and not unknown.no_speech


def test_long_recordings_are_cut_near_quiet_moments():
    rate = 16_000
    rng = np.random.default_rng(0)
    speechy = (rng.standard_normal(rate * 70) * 0.2).astype(np.float32)
    speechy[rate * 27 : rate * 27 + rate // 2] = 0.0  # a pause inside the last 5 s of the first window
    spans = split_windows(speechy, rate)
    assert len(spans) == 3
    assert spans[0][0] == 0 and spans[-1][1] == len(speechy)
    assert all(b - a <= 30 * rate for a, b in spans)
    assert 27 * rate <= spans[0][1] <= 27 * rate + rate // 2
    assert all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1))


# --------------------------------------------------------------------------- nothing said


def _tone(seconds: float, rate: int = 16_000) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


@pytest.mark.parametrize(
    "samples",
    [
        np.zeros(16_000 * 3, dtype=np.float32),
        (np.random.default_rng(1).standard_normal(16_000 * 3) * 0.3).astype(np.float32),
        np.clip(np.random.default_rng(2).standard_normal(16_000 * 3), -0.4, 0.4).astype(np.float32),
        _tone(3.0),
        np.concatenate([np.zeros(16_000, np.float32), _tone(0.1), np.zeros(16_000, np.float32)]),  # a click
    ],
    ids=["silence", "white-noise", "clipped-noise", "steady-tone", "too-short"],
)
@pytest.mark.parametrize("engine", ["transformers", "faster-whisper"])
def test_nothing_said_gives_no_speech(recognizer, samples, engine, tmp_path):
    # The faster-whisper one points at no model at all: nothing that is not speech may reach a model.
    rec = recognizer if engine == "transformers" else CTranslate2Whisper(str(tmp_path / "never-loaded"))
    tr = rec.transcribe(AudioClip(samples))
    assert tr.no_speech and tr.text == ""
    assert tr.duration_s == pytest.approx(len(samples) / 16_000)
    assert tr.language == "und" and tr.language_probs == []


# --------------------------------------------------------------------------- model availability


def test_a_spoken_message_during_the_background_load_waits_for_it(tiny_whisper, monkeypatch):
    """The app loads Whisper in the background; a recording arriving meanwhile must not load it a second time."""
    import threading
    import time

    from transformers import WhisperForConditionalGeneration

    loads = []
    real = WhisperForConditionalGeneration.from_pretrained.__func__

    def slow_load(cls, *args, **kwargs):
        loads.append(threading.current_thread().name)
        time.sleep(0.5)  # a real model takes seconds: the second caller arrives meanwhile
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(WhisperForConditionalGeneration, "from_pretrained", classmethod(slow_load))
    recognizer = TransformersWhisper(str(tiny_whisper), device="cpu")
    background = threading.Thread(target=recognizer.load, name="background-load")
    background.start()
    time.sleep(0.1)
    speech = load_audio(CORPUS / "speech" / "jfk.flac")
    heard = recognizer.transcribe(speech)  # the spoken message's turn
    background.join()
    assert loads == ["background-load"], "loaded once, by the background load"
    assert heard.duration_s > 0 and heard.language




ENGINES = [TransformersWhisper, CTranslate2Whisper]


@pytest.mark.parametrize("engine", ENGINES, ids=lambda e: e.engine)
def test_missing_hub_model_explains_where_it_looked(engine):
    with pytest.raises(ModelUnavailableError) as err:
        engine("omnilingo-test/no-such-whisper").load()
    assert err.value.key == "model.asr_unavailable"
    assert "--asr-model PATH" in err.value.message
    assert err.value.params["model"] == "omnilingo-test/no-such-whisper"
    assert err.value.params["looked_in"]


@pytest.mark.parametrize("engine", ENGINES, ids=lambda e: e.engine)
def test_missing_folder(engine, tmp_path):
    with pytest.raises(ModelUnavailableError) as err:
        engine(str(tmp_path / "nowhere" / "whisper")).load()
    assert err.value.key == "model.asr_folder_missing"


@pytest.mark.parametrize("engine", ENGINES, ids=lambda e: e.engine)
def test_broken_folder(engine, tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    (tmp_path / "model.bin").write_bytes(b"not a model")
    with pytest.raises(ModelUnavailableError) as err:
        engine(str(tmp_path)).load()
    assert err.value.key == "model.asr_broken"
    assert str(tmp_path) in err.value.message


def test_default_models():
    assert DEFAULT_ASR_MODEL == {"cuda": "openai/whisper-large-v3-turbo", "cpu": "openai/whisper-small"}
    assert DEFAULT_CT2_ASR_MODEL == "Systran/faster-whisper-small"


def test_engine_follows_the_model_format(tiny_whisper, tmp_path):
    (tmp_path / "model.bin").write_bytes(b"")
    assert choose_asr_engine(str(tmp_path)) == "faster-whisper"  # a CTranslate2 folder
    assert choose_asr_engine(str(tiny_whisper), "cpu") == "transformers"  # a transformers folder
    assert choose_asr_engine("openai/whisper-small", "cpu") == "transformers"
    assert choose_asr_engine("small") == choose_asr_engine("Systran/faster-whisper-small") == "faster-whisper"
    assert choose_asr_engine(None, "cpu") == "faster-whisper"  # the CPU default (bench/speech.py)
    assert choose_asr_engine(None, "cuda") == "transformers"
    assert choose_asr_engine(str(tmp_path), engine="transformers") == "transformers"  # asked for: kept
    rec = open_recognizer(None, device="cpu")
    assert (rec.engine, rec.model_name, rec.loaded) == ("faster-whisper", DEFAULT_CT2_ASR_MODEL, False)
    with pytest.raises(Exception, match="faster-whisper"):
        choose_asr_engine(None, engine="whisper.cpp")


def test_engine_setting_reaches_the_recognizer(tmp_path):
    from app.cli import settings_from_args
    from backend.runtime import Runtime

    settings, _ = settings_from_args(["--asr-engine", "transformers", "--asr-model", "openai/whisper-base"])
    assert settings.asr_engine == "transformers"
    assert Runtime._build_asr(settings).engine == "transformers"
    from backend.settings import Settings

    assert Settings.from_env({"OMNILINGO_ASR_ENGINE": "faster-whisper"}).asr_engine == "faster-whisper"


def test_asr_threads_setting_reaches_faster_whisper():
    from app.cli import settings_from_args
    from backend.runtime import Runtime

    settings, _ = settings_from_args(["--asr-threads", "1", "--asr-model", "Systran/faster-whisper-small"])
    assert Runtime._build_asr(settings).cpu_threads == 1
    settings, _ = settings_from_args(["--asr-model", "Systran/faster-whisper-small"])
    assert Runtime._build_asr(settings).cpu_threads == default_cpu_threads()


# --------------------------------------------------------------------------- round trip: espeak-ng -> media -> ASR


ROUND_TRIP = ["en", "fr", "de", "es", "ru", "ar", "hi", "zh", "ja", "ko", "sw", "tr"]


@pytest.mark.slow
@needs_espeak
def test_espeak_round_trip_through_decoding_and_asr(recognizer, whisper_languages, tmp_path):
    from backend.models.tts import SpeechRouter

    udhr = CORPUS / "text" / "udhr_dev.tsv"
    sentences: dict[str, str] = {}
    with udhr.open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            if row["bcp47"] in ROUND_TRIP and row["article"] == "1" and row["bcp47"] not in sentences:
                sentences[row["bcp47"]] = split_sentences(row["text"], row["bcp47"])[0]
    assert len(sentences) >= 10
    router = SpeechRouter()
    for lang, sentence in sentences.items():
        voice = router.voice_for(lang)
        assert voice is not None, lang
        chunk = router.say(sentence, lang, voice)
        path = tmp_path / f"{lang}.wav"
        sf.write(path, chunk.samples, chunk.sample_rate)  # what an upload would be
        clip = load_audio(path)
        assert clip.source_rate == chunk.sample_rate == 22_050
        assert clip.duration_s == pytest.approx(chunk.duration_s, rel=0.01)
        assert speech_seconds(clip.samples) > 0.3, lang
        tr = recognizer.transcribe(clip)
        assert_transcript(tr, clip, whisper_languages)
        assert not tr.no_speech, lang
        forced = recognizer.transcribe(clip, language=lang)
        assert forced.language.split("-")[0] == lang


@pytest.mark.parametrize(("seconds", "window_s"), [(0.5, 10.0), (3.0, 10.0), (9.5, 10.5), (12.0, 13.0), (29.5, 30.0), (30.0, 30.0)])
def test_a_short_utterance_is_encoded_in_a_window_cut_to_it(seconds, window_s):
    # at least 10 s, and 1 s past the speech, at most Whisper's 30 s (bench/asr_window.py)
    assert encoder_frames(int(seconds * 100)) == int(window_s * 100)
