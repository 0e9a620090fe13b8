"""The answer language: evidence from the message weighed with the browser's language, the
conversation's and a pinned one; "not sure" rather than a wrong guess. Seen through the app."""

from __future__ import annotations

import pytest

from backend.language import decide
from tests.support import message_text

# --------------------------------------------------------------------------- the decision itself

@pytest.mark.parametrize(("text", "wrong"), [("Hola", "tr"), ("Olá", "hu"), ("Merci beaucoup", "en"),
                                             ("Wat is dit?", "af"), ("Merhaba", "id"), ("Asante sana", "tl"),
                                             ("Halo, apa kabar?", "tl")])
def test_short_messages_are_not_named_wrongly_without_a_prior(text, wrong):
    decision = decide.decide(text)
    assert decision.tag != wrong
    assert decision.source in (decide.DETECTED, decide.NOT_SURE)


def test_clear_evidence_beats_an_english_browser():
    for text, tag in [("Merci beaucoup", "fr"), ("Danke schön", "de"), ("Grazie mille", "it"),
                      ("Dziękuję bardzo", "pl"), ("Спасибо большое", "ru")]:
        decision = decide.decide(text, decide.Priors(browser=("en",)))
        assert (decision.tag, decision.source) == (tag, decide.DETECTED), text


def test_the_browser_settles_what_the_text_leaves_open():
    assert decide.decide("Hola", decide.Priors(browser=("es",))).tag == "es"
    assert decide.decide("Hola", decide.Priors(browser=("es",))).source == decide.BROWSER
    assert decide.decide("Hallo", decide.Priors(browser=("de-DE",))).tag == "de"
    # ... but not when the text rules the browser's language out
    assert decide.decide("Hola", decide.Priors(browser=("en",))).tag != "en"
    # no letters at all: the browser's language, else not sure
    assert decide.decide("👍", decide.Priors(browser=("pt",))).tag == "pt"
    assert decide.decide("👍").source == decide.NOT_SURE


def test_the_conversation_goes_on_in_its_language():
    decision = decide.decide("ok", decide.Priors(conversation="fr", browser=("en",)))
    assert (decision.tag, decision.source) == ("fr", decide.CONVERSATION)


def test_a_pinned_language_wins():
    decision = decide.decide("What is the capital of Japan?", decide.Priors(pinned="ja", browser=("en",)))
    assert (decision.tag, decision.source) == ("ja", decide.PINNED)


def test_accept_language_gives_the_browsers_languages_in_order():
    assert decide.browser_languages("fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5") == ("fr", "en", "de")
    assert decide.browser_languages("en;q=0.2, sw") == ("sw", "en")
    assert decide.browser_languages("") == ()


def test_the_answer_settles_a_close_call():
    unsure = decide.decide("Hola")
    assert not unsure.sure
    better = decide.redecide(unsure, "es")
    assert better is not None and better.tag == "es"
    # a language the message's evidence did not rank is no reason to switch
    assert decide.redecide(unsure, "ja") is None
    pinned = decide.decide("Hola", decide.Priors(pinned="de"))
    assert decide.redecide(pinned, "es") is None


def test_speech_evidence_with_a_prior():
    heard = decide.spoken({"en": 0.19, "ar": 0.15, "fa": 0.1})
    decision = decide.decide_speech(heard, "مرحبا كيف حالك", decide.Priors(browser=("ar",)))
    assert decision.tag == "ar"
    assert decide.decide_speech(decide.spoken({"ru": 0.95}), "Привет, как дела?").tag == "ru"


# --------------------------------------------------------------------------- through the launched app

@pytest.fixture(scope="module")
def app(tiny_gemma):
    import transformers  # noqa: F401  # imported once here: two threads importing it at once break it

    from tests.test_app import _launch

    demo, runtime, url = _launch(str(tiny_gemma))
    assert runtime.wait_until_loaded(120).state == "ready"
    yield runtime, url
    demo.close()
    runtime.close()


def _client(url: str, accept_language: str | None = None):
    from gradio_client import Client

    return Client(url, verbose=False, headers={"Accept-Language": accept_language} if accept_language else None)


def test_hola_is_never_answered_under_a_turkish_prompt(app):
    result = _client(app[1]).predict("Hola", [], "auto", api_name="/chat")
    assert result["answer_language"] in ("es", "und"), result
    assert result["language_source"] in ("detected", "unsure")


def test_hola_with_a_spanish_browser_is_spanish_from_the_browser(app):
    result = _client(app[1], "es-ES,es;q=0.9").predict("Hola", [], "auto", api_name="/chat")
    assert (result["answer_language"], result["language_source"]) == ("es", "browser"), result


def test_merci_beaucoup_with_an_english_browser_is_french(app):
    result = _client(app[1], "en-US,en;q=0.9").predict("Merci beaucoup", [], "auto", api_name="/chat")
    assert (result["answer_language"], result["language_source"]) == ("fr", "detected"), result


def test_a_pinned_language_wins_and_says_so(app):
    client = _client(app[1], "es")
    result = client.predict("Hola", [], "de", api_name="/chat")
    assert (result["answer_language"], result["language_source"]) == ("de", "pinned"), result
    _, history = client.predict({"text": "Hola", "files": []}, "de", api_name="/send_message")
    assert "Deutsch" in message_text(history[0]) and "elegido por ti" in message_text(history[0])  # a Spanish page


def test_the_badge_says_where_the_language_came_from(app):
    spanish_browser = _client(app[1], "es-ES,es;q=0.9")
    _, history = spanish_browser.predict({"text": "Hola", "files": []}, "auto", api_name="/send_message")
    badge = message_text(history[0])
    # the page speaks Spanish to this visitor, the badge too
    assert "español" in badge and "idioma de tu navegador" in badge
    english_browser = _client(app[1], "en-US")
    _, history = english_browser.predict({"text": "Hola", "files": []}, "auto", api_name="/send_message")
    assert "not sure" in message_text(history[0])
    _, history = english_browser.predict({"text": "Merci beaucoup", "files": []}, "auto", api_name="/send_message")
    latest = [m for m in history if m["role"] == "user"][-1]
    assert "français" in message_text(latest) and "detected" in message_text(latest)


# --------------------------------------------------------------------------- speech, with a scripted recogniser

class ScriptedRecognizer:
    """Whisper as the conversation sees it: each call returns the next scripted hearing, and the
    language it was asked to transcribe in is kept."""

    def __init__(self, *heard: dict) -> None:
        self.heard = list(heard)
        self.asked: list[str | None] = []

    def transcribe(self, clip, language: str | None = None):
        from types import SimpleNamespace

        self.asked.append(language)
        given = self.heard.pop(0) if len(self.heard) > 1 else self.heard[0]
        base = {"text": "", "language": "und", "language_probability": 0.0, "language_probs": [],
                "no_speech": False, "no_speech_probability": 0.0, "avg_logprob": -1.0, "duration_s": 1.0}
        return SimpleNamespace(**{**base, **given})


def _spoken_turn(tmp_path, recognizer, language="auto", browser=()):
    import numpy as np
    import soundfile as sf

    from backend.conversation.turns import Conversation
    from tests.fakes import ScriptedEngine

    recording = tmp_path / "question.wav"
    t = np.arange(16000) / 16000
    sf.write(recording, 0.3 * np.sin(2 * np.pi * 220 * t), 16000)
    conversation = Conversation(ScriptedEngine("مرحبا! كيف يمكنني مساعدتك اليوم؟"), tmp_path / "session",
                                asr=recognizer)
    turn = conversation.add(conversation.prepare("", [str(recording)], language, browser=browser))
    list(conversation.answer(turn))
    return turn


def test_a_pinned_language_is_what_whisper_transcribes_in(tmp_path):
    recognizer = ScriptedRecognizer({"text": "ما هذا؟", "language": "ar", "language_probability": 1.0})
    turn = _spoken_turn(tmp_path, recognizer, language="ar")
    assert recognizer.asked == ["ar"]
    assert (turn.answer_language, turn.language_source, turn.status) == ("ar", "pinned", "done")


def test_unsure_whisper_hears_again_in_the_browsers_language(tmp_path):
    recognizer = ScriptedRecognizer(
        {"text": "", "language": "en", "language_probability": 0.19, "no_speech": True,
         "language_probs": [("en", 0.19), ("ar", 0.15), ("fa", 0.1)]},
        {"text": "ما هذا؟ هل يمكنك مساعدتي؟", "language": "ar", "language_probability": 1.0,
         "avg_logprob": -0.3},
    )
    turn = _spoken_turn(tmp_path, recognizer, browser=("ar",))
    assert recognizer.asked == [None, "ar"]
    assert turn.status == "done" and turn.transcript.startswith("ما هذا")  # not "I did not catch that"
    assert turn.answer_language == "ar"


def test_sure_whisper_is_not_asked_twice(tmp_path):
    recognizer = ScriptedRecognizer({"text": "Привет, как дела? Что это такое?", "language": "ru",
                                     "language_probability": 0.95, "language_probs": [("ru", 0.95)]})
    turn = _spoken_turn(tmp_path, recognizer, browser=("en",))
    assert recognizer.asked == [None]
    assert (turn.answer_language, turn.language_source) == ("ru", "detected")


def test_an_unsure_first_message_takes_the_language_the_answer_and_message_agree_on(tmp_path):
    from backend.conversation.turns import Conversation
    from tests.fakes import ScriptedEngine

    engine = ScriptedEngine("¡Hola! ¿En qué puedo ayudarte hoy? Estoy aquí para lo que necesites.",
                            next_answers=["Perfecto, dime qué necesitas."])
    conversation = Conversation(engine, tmp_path / "session")
    first = conversation.add(conversation.prepare("Hola"))
    assert first.answer_language == "und" and first.language_source == "unsure"
    assert "same language as the user's latest message" in engine_prompt(conversation, first)
    list(conversation.answer(first))
    assert (first.answer_language, first.language_source) == ("es", "detected")
    assert not first.language_mismatch
    follow_up = conversation.add(conversation.prepare("ok"))
    assert (follow_up.answer_language, follow_up.language_source) == ("es", "conversation")


def engine_prompt(conversation, turn) -> str:
    return conversation.prompt_for(turn)[0].text
