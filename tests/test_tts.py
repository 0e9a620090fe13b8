"""Voices per language, sentence streaming, and the non-commercial switch for MMS-TTS."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from backend.errors import UserFacingError
from backend.language.sentences import FIRST_CLAUSE_CHARS, FIRST_CLAUSE_WORDS, SentenceStream, split_sentences
from backend.models.tts import (
    ESPEAK,
    MMS,
    NOTE_FALLBACK,
    AudioChunk,
    EspeakEngine,
    SpeechRouter,
    TTSEngine,
    VitsEngine,
    Voice,
    speakable,
    voices_for,
)
from tests.support import CORPUS

UDHR = CORPUS / "text" / "udhr_dev.tsv"
# Languages with an espeak-ng voice, in many scripts.
SPOKEN = ["en", "fr", "de", "es", "ru", "ar", "hi", "zh", "ja", "ko", "sw", "tr", "vi", "fa", "he", "ta"]
RMS_FLOOR = 0.01

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


def udhr_sentences(languages: list[str]) -> dict[str, str]:
    """The first sentence of article 1 of the UDHR in each language."""
    found: dict[str, str] = {}
    with UDHR.open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            if row["bcp47"] in languages and row["article"] == "1" and row["bcp47"] not in found:
                found[row["bcp47"]] = split_sentences(row["text"], row["bcp47"])[0]
    return found


def udhr_paragraphs(languages: list[str]) -> dict[str, str]:
    """The preamble's first paragraph (long sentences, many commas) in each language."""
    found: dict[str, str] = {}
    with UDHR.open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            if row["bcp47"] in languages and row["article"] == "0" and row["bcp47"] not in found:
                found[row["bcp47"]] = row["text"]
    return found


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


# --------------------------------------------------------------------------- espeak-ng


@pytest.mark.slow
@needs_espeak
def test_espeak_speaks_corpus_sentences_in_many_languages():
    sentences = udhr_sentences(SPOKEN)
    assert len(sentences) >= 10
    router = SpeechRouter(preferred_engine="espeak")
    for lang, sentence in sentences.items():
        voice = router.voice_for(lang)
        assert voice is not None and voice.engine == ESPEAK, lang
        chunks = list(router.speak(sentence, lang))
        assert chunks, lang
        for chunk in chunks:
            assert isinstance(chunk, AudioChunk)
            assert chunk.sample_rate == 22_050
            assert chunk.samples.dtype == np.float32 and chunk.samples.ndim == 1
            assert rms(chunk.samples) > RMS_FLOOR, f"{lang}: silent audio for {chunk.text!r}"
            # about a second of speech per 15 characters at most: not a truncated clip
            assert chunk.duration_s > 0.3


@needs_espeak
def test_long_burmese_clause_is_spoken_in_pieces():
    # espeak-ng 1.51 aborts ("buffer overflow") on this UDHR paragraph as one clause.
    with UDHR.open(encoding="utf-8") as fh:
        text = next(row["text"] for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
                    if row["bcp47"] == "my" and len(row["text"]) > 300)
    chunk = SpeechRouter(preferred_engine="espeak").say(text, "my")
    assert chunk.duration_s > 5 and rms(chunk.samples) > RMS_FLOOR


@needs_espeak
@pytest.mark.parametrize(
    ("tag", "voice_id"),
    [("en-US", "en-us"), ("pt-BR", "pt-br"), ("fr-CA", "fr-fr"), ("zh-Hant", "cmn"), ("zh-HK", "sit/yue"),
     ("arb", "ar"), ("pes", "fa"), ("swh", "sw"), ("iw", "he"), ("no", "nb"), ("es-MX", "es-419")],
)
def test_language_tags_map_to_espeak_voices(tag, voice_id):
    assert [v for v in voices_for(tag) if v[0] == ESPEAK] == [(ESPEAK, voice_id)]
    assert SpeechRouter(preferred_engine="espeak").voice_for(tag).voice_id == voice_id


@needs_espeak
@pytest.mark.parametrize("tag", ["yo", "zu", "jv", "", "not a tag"])
def test_language_without_a_voice_gets_none_and_a_clear_note(tag):
    router = SpeechRouter()
    assert router.voice_for(tag) is None
    assert voices_for(tag) == []
    with pytest.raises(UserFacingError) as err:
        list(router.speak("Bawo ni.", tag))
    assert err.value.key == "tts.no_voice"


def test_missing_espeak_is_a_note_not_a_crash(tmp_path):
    router = SpeechRouter(engines=[EspeakEngine(str(tmp_path / "no-espeak-ng"))])
    assert router.voice_for("fr") is None
    assert not router.available()
    with pytest.raises(UserFacingError) as err:
        list(router.speak("Bonjour.", "fr"))
    assert err.value.key == "tts.engine_missing"


@needs_espeak
def test_crashing_espeak_reports_engine_failed(tmp_path):
    fake = tmp_path / "espeak-ng"
    real = shutil.which("espeak-ng")
    # lists voices like the real one, then dies when asked to speak
    fake.write_text(f'#!/bin/sh\nif [ "$1" = "--voices" ]; then exec {real} --voices; fi\necho boom >&2\nexit 3\n')
    fake.chmod(0o755)
    router = SpeechRouter(engines=[EspeakEngine(str(fake))])
    assert router.voice_for("fr") is not None
    with pytest.raises(UserFacingError) as err:
        list(router.speak("Bonjour.", "fr"))
    assert err.value.key == "tts.engine_failed"
    assert "boom" in err.value.params["detail"]


@needs_espeak
def test_text_that_looks_like_options_is_spoken_not_obeyed(tmp_path):
    router = SpeechRouter(preferred_engine="espeak")
    out = tmp_path / "x.wav"
    chunk = router.say(f"-w {out} --help", "en")
    assert rms(chunk.samples) > RMS_FLOOR
    assert not out.exists()


@needs_espeak
def test_speak_stops_when_asked():
    router = SpeechRouter(preferred_engine="espeak")
    spoken = []
    for chunk in router.speak("One. Two. Three. Four.", "en", should_stop=lambda: len(spoken) >= 2):
        spoken.append(chunk.text)
    assert spoken == ["One.", "Two."]


@needs_espeak
def test_override_and_preferred_engine():
    scot = Voice(ESPEAK, "en-gb-scotland", "en", "Scottish")
    assert SpeechRouter(overrides={"en": scot}).voice_for("en-GB") == scot
    assert SpeechRouter(preferred_engine="espeak").voice_for("en").voice_id == "en-gb"


def test_speakable_drops_markdown_urls_and_emoji():
    assert speakable("**Bold** and `code` [link](https://x.org) 😀 see https://a.b/c") == "Bold and code link see"


def test_engines_meet_the_protocol():
    assert isinstance(EspeakEngine(), TTSEngine)
    assert isinstance(VitsEngine(), TTSEngine)


# --------------------------------------------------------------------------- MMS-TTS through a tiny VITS


@pytest.fixture(scope="module")
def tiny_vits(tmp_path_factory) -> Path:
    from tests import tiny_models

    cached = os.environ.get("OMNILINGO_TINY_MODELS")
    if cached and (Path(cached) / "vits" / "config.json").exists():
        return Path(cached) / "vits"
    return tiny_models.build_vits(tmp_path_factory.mktemp("tiny-vits"))


def test_vits_is_off_unless_non_commercial_use_is_allowed(tiny_vits):
    engine = VitsEngine(models={"en": str(tiny_vits)})
    assert engine.voices() == [] and engine.voices_for("en") == []
    with pytest.raises(UserFacingError) as err:
        engine.load(str(tiny_vits))
    assert err.value.key == "tts.noncommercial_disabled"
    assert "non-commercial" in err.value.message

    router = SpeechRouter(vits_models={"en": str(tiny_vits)})  # not allowed: espeak only
    assert MMS not in router.engines
    assert all(v.engine != MMS for v in router.voices_for("en"))


@pytest.mark.slow
def test_vits_speaks_when_allowed_and_is_preferred(tiny_vits):
    router = SpeechRouter(engines=[VitsEngine(allow_noncommercial=True, models={"en": str(tiny_vits)}),
                                   EspeakEngine()], allow_noncommercial=True)
    voice = router.voice_for("en-US")
    assert voice.engine == MMS and voice.voice_id == str(tiny_vits)
    chunks = list(router.speak("Hello there. How are you today?", "en"))
    assert [c.text for c in chunks] == ["Hello there.", "How are you today?"]
    for c in chunks:
        assert c.sample_rate == 16_000 and c.samples.dtype == np.float32 and rms(c.samples) > RMS_FLOOR
    if shutil.which("espeak-ng"):
        assert [v.engine for v in router.voices_for("en")] == [MMS, ESPEAK]
        assert SpeechRouter(preferred_engine=ESPEAK, allow_noncommercial=True,
                            vits_models={"en": str(tiny_vits)}).voice_for("en").engine == ESPEAK


@needs_espeak
def test_broken_neural_voice_falls_back_to_espeak(tmp_path, monkeypatch):
    router = SpeechRouter(engines=[VitsEngine(allow_noncommercial=True, models={"fr": str(tmp_path / "missing")}),
                                   EspeakEngine()], allow_noncommercial=True)
    assert router.voice_for("fr").engine == MMS
    chunks = list(router.speak("Bonjour à tous. Merci.", "fr"))
    assert len(chunks) == 2 and rms(chunks[0].samples) > RMS_FLOOR
    assert all(c.sample_rate == 22_050 and c.note == NOTE_FALLBACK for c in chunks)  # espeak-ng, and says why
    assert router.describe("fr").engine == ESPEAK  # the settings name the voice that really speaks
    monkeypatch.setattr(VitsEngine, "load", lambda self, voice_id: 1 / 0)
    assert router.say("Encore.", "fr").note == NOTE_FALLBACK  # the broken voice is not tried again


# --------------------------------------------------------------------------- sentence streaming


def feed_char_by_char(language: str, text: str) -> tuple[list[list[str]], list[str]]:
    stream = SentenceStream(language)
    per_char = [stream.feed(ch) for ch in text]
    return per_char, stream.flush()


@pytest.mark.parametrize(
    ("language", "text", "expected"),
    [
        ("en", "Dr. Smith paid $3.50 today. Is that right? Yes!", ["Dr. Smith paid $3.50 today.", "Is that right?", "Yes!"]),
        ("zh", "你好。我很好！你呢？今天天气很好", ["你好。", "我很好！", "你呢？", "今天天气很好"]),
        ("hi", "आज मौसम अच्छा है। कल बारिश होगी। और फिर", ["आज मौसम अच्छा है।", "कल बारिश होगी।", "और फिर"]),
        ("ar", "كيف حالك؟ أنا بخير. شكرا", ["كيف حالك؟", "أنا بخير.", "شكرا"]),
        # pysbd ends Arabic sentences at every comma (،): a sentence is spoken whole, as in English
        ("ar", "القاهرة هي عاصمة مصر، وهي أكبر مدينة في العالم العربي. تقع على نهر النيل",
         ["القاهرة هي عاصمة مصر، وهي أكبر مدينة في العالم العربي.", "تقع على نهر النيل"]),
        ("am", "ሰላም ነው። እንዴት ነህ፧ ደህና", ["ሰላም ነው።", "እንዴት ነህ፧", "ደህና"]),
        ("en", "Steps:\n1. Open the door\n2. Walk in", ["Steps:", "1. Open the door", "2. Walk in"]),
    ],
)
def test_sentence_stream_fed_char_by_char(language, text, expected):
    per_char, rest = feed_char_by_char(language, text)
    emitted = [s for batch in per_char for s in batch]
    assert emitted + rest == expected
    # each sentence is released as soon as the next one starts, not at the end
    first_release = next(i for i, batch in enumerate(per_char) if batch)
    assert first_release <= text.index(expected[1][0]) + 1


def test_sentence_stream_does_not_hold_back_long_runs():
    stream = SentenceStream("th")  # Thai: no sentence punctuation at all
    out = stream.feed("สวัสดีครับ " * 60)
    assert out and all(len(s) <= 300 for s in out)


def feed_first_clause(language: str, text: str) -> tuple[list[str], list[str]]:
    """Chunks released while ``text`` streams char by char with the first-clause rule on, and the rest."""
    stream = SentenceStream(language, first_clause_words=FIRST_CLAUSE_WORDS, first_clause_chars=FIRST_CLAUSE_CHARS)
    released = [s for ch in text for s in stream.feed(ch)]
    return released, stream.flush()


def test_first_chunk_ends_at_a_comma_once_long_enough():
    text = "Sure, the capital of France is Paris, a city of art and food."
    stream = SentenceStream("en", first_clause_words=FIRST_CLAUSE_WORDS, first_clause_chars=FIRST_CLAUSE_CHARS)
    out = [stream.feed(ch) for ch in text]
    first = next(i for i, batch in enumerate(out) if batch)
    assert out[first] == ["Sure, the capital of France is Paris,"]
    assert first == text.index(" a city") + 1, "spoken as soon as the next word starts"
    assert [s for batch in out for s in batch] + stream.flush() == [
        "Sure, the capital of France is Paris,", "a city of art and food."]


@pytest.mark.parametrize("text", ["Sure, I can help.", "Well, yes. Paris is the capital.", "Oui, bien sûr !"])
def test_a_short_opening_word_is_not_spoken_alone(text):
    released, rest = feed_first_clause("en", text)
    assert all(len(chunk.split()) > 1 for chunk in released + rest)
    assert (released + rest)[0] == split_sentences(text, "en")[0]


def test_numbers_with_commas_are_not_cut():
    text = "The city has 2,100,000 people and 3,14 square units of parks, more or less, they say."
    released, rest = feed_first_clause("en", text)
    assert released[0] == "The city has 2,100,000 people and 3,14 square units of parks,"
    released, _ = feed_first_clause("zh", "总数是1，000，000个人口以及很多很多的其他东西，对吗？")
    assert released[0] == "总数是1，000，000个人口以及很多很多的其他东西，"


@pytest.mark.parametrize(
    ("language", "text", "first"),
    [
        ("zh", "当然，法国的首都是巴黎，一个很大的城市。", "当然，法国的首都是巴黎，"),
        ("ja", "はい、フランスの首都はパリです、とても美しい都市です。", "はい、フランスの首都はパリです、"),
        ("hi", "हाँ, फ़्रांस की राजधानी पेरिस है, जो एक बहुत सुंदर शहर है।", "हाँ, फ़्रांस की राजधानी पेरिस है,"),
    ],
)
def test_first_chunk_ends_at_clause_marks_of_other_scripts(language, text, first):
    released, rest = feed_first_clause(language, text)
    assert released[0] == first
    assert "".join(released + rest).replace(" ", "") == text.replace(" ", "")


def test_later_sentences_stay_whole():
    text = ("Paris is the capital of France. It is a city of art, of food, and of long walks by the river, "
            "loved by many. Come, see it.")
    released, rest = feed_first_clause("en", text)
    assert released + rest == [
        "Paris is the capital of France.",
        "It is a city of art, of food, and of long walks by the river, loved by many.",
        "Come, see it.",
    ]
    released, rest = feed_first_clause("en", "Sure, the capital of France is Paris, a big city, old, loved. Yes, it is, truly.")
    assert released + rest == ["Sure, the capital of France is Paris,", "a big city, old, loved.", "Yes, it is, truly."]


def test_first_clause_rule_keeps_every_word_and_splits_the_rest_as_before():
    for lang, text in udhr_paragraphs(["en", "fr", "de", "ru", "zh", "ja", "hi"]).items():
        released, rest = feed_first_clause(lang, text)
        chunks = released + rest
        assert "".join("".join(chunks).split()) == "".join(text.split()), lang
        assert len(chunks[0]) < len(split_sentences(text, lang)[0]), f"{lang}: not cut at a clause"
        after_first = text[text.index(chunks[0]) + len(chunks[0]):].strip()
        assert chunks[1:] == split_sentences(after_first, lang), lang


def test_udhr_paragraphs_split_in_their_own_scripts():
    sentences = udhr_sentences(["en", "zh", "hi", "ar", "ja", "ru"])
    for lang, first in sentences.items():
        assert 5 < len(first) < 400, lang
