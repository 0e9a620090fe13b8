"""The real web app in a real browser: typing, stopping, markup, spoken answers, voice mode and barge-in.

Headless Debian chromium driven by Playwright; its fake microphone plays a WAV built from the
corpus recordings. The app runs in-process with the tiny random models, so answers are random
bytes, long enough (max_new_tokens) to still be running when the test stops or interrupts them.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from playwright.sync_api import sync_playwright

from tests import browser_helpers as bh
from tests.support import free_port, launched

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not bh.have_chromium(), reason=f"chromium is not installed ({bh.CHROMIUM} not found)"),
]

QUESTION_FR = "Bonjour ! Pouvez-vous m'expliquer comment fonctionne la photosynthèse ?"
MAX_NEW_TOKENS = 3500  # the tiny model never ends by itself; stays inside its 4096 context



@pytest.fixture(scope="module")
def app_url(tiny_dir):
    import torch

    from backend.settings import Settings

    # The tiny model gains nothing from threads; on a busy CPU they make each token far slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    settings = Settings(
        model=str(tiny_dir / "gemma4"), asr_model=str(tiny_dir / "whisper"), device="cpu",
        port=free_port(), inbrowser=False, max_new_tokens=MAX_NEW_TOKENS, tts_engine="espeak",
    )
    with launched(settings) as (_, address):
        yield address
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def playwright():
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright, tmp_path_factory, corpus):
    """A browser whose microphone says a French question, then stays silent."""
    wav = bh.mic_wav(tmp_path_factory.mktemp("mic") / "question.wav",
                     [0.3, corpus / "speech" / "sr_french.aiff", 30.0])
    browser = bh.launch_browser(playwright, wav)
    yield browser
    browser.close()


@pytest.fixture()
def page(browser, app_url):
    page = bh.open_page(browser, app_url)
    yield page
    page.context.close()


def _send(page, text: str) -> None:
    page.fill("#message textarea", text)
    page.press("#message textarea", "Enter")


def _answer_length(page) -> int:
    texts = bh.bot_texts(page)
    return len(texts[-1]) if texts else 0


def _user_turns(page) -> list[str]:
    """User messages that carry a language badge (a recording's player is a message of its own)."""
    return [t for t in bh.user_texts(page) if " · " in t]


def _stop_and_settle(page, stopped: str = "Stopped.") -> None:
    page.click("#stop")
    bh.wait_for(lambda: any(stopped in t for t in bh.bot_texts(page)), 30, what=f"the answer marked {stopped}")


def test_text_turn_streams_stops_and_clears(page):
    _send(page, QUESTION_FR)
    badge = bh.wait_for(lambda: next((t for t in bh.user_texts(page) if re.search(r"French\)? · fr · ", t)), None), 30,
                        what="the user turn with its language badge")
    assert "photosynthèse" in badge
    first = bh.wait_for(lambda: _answer_length(page) > 5 and _answer_length(page), 60, what="the answer to start")
    bh.wait_for(lambda: _answer_length(page) > first, 60, what="the answer text to grow")

    _stop_and_settle(page)
    stopped = bh.bot_texts(page)[-1]
    time.sleep(1.0)
    assert bh.bot_texts(page)[-1] == stopped, "the answer kept growing after Stop"
    assert page.is_enabled("#message textarea")

    page.click("#new-conversation")
    bh.wait_for(lambda: not bh.user_texts(page) and not bh.bot_texts(page), 10, what="an empty chat")
    assert "Ask in any language" in page.inner_text("#chat")


def test_arabic_ui_reads_right_to_left(browser, app_url):
    from app.i18n import translate

    page = bh.open_page(browser, app_url, locale="ar-EG")
    try:
        assert page.evaluate("() => [document.documentElement.dir, document.documentElement.lang]") == ["rtl", "ar"]
        assert page.get_by_text(translate("language.label", "ar")).first.is_visible()
        _send(page, "مرحبا، كيف حالك اليوم؟")
        bh.wait_for(lambda: _answer_length(page) > 0, what="an answer")
        # the user's Arabic message keeps its own direction, and the badge names it in Arabic
        assert page.locator("#chat [dir=rtl]").count() >= 1
        assert "العربية" in " ".join(bh.user_texts(page))
        _stop_and_settle(page, translate("turn.stopped", "ar"))
    finally:
        page.context.close()


def test_markup_typed_by_the_user_is_shown_as_text(page):
    typed = "<img src=x onerror=alert(1)> <script>window.__omnilingo_injected = 1</script> <b>bold?</b>"
    _send(page, typed)
    shown = bh.wait_for(lambda: next((t for t in bh.user_texts(page) if "<img src=x" in t), None), 30,
                        what="the markup shown as text")
    assert "<script>" in shown and "<b>bold?</b>" in shown
    bh.wait_for(lambda: bh.bot_texts(page), 60, what="the answer")
    _stop_and_settle(page)
    assert page.dialogs == []
    assert page.query_selector("#chat img[src='x']") is None
    assert page.query_selector("#chat script") is None
    assert page.query_selector("#chat b") is None
    assert page.evaluate("() => window.__omnilingo_injected") is None


def test_typed_question_gets_a_spoken_answer(page):
    page.check("#speak input")
    _send(page, QUESTION_FR)
    bh.wait_for(lambda: _answer_length(page) > 5, 60, what="the answer text")
    # The page's player decoded a sentence and started it on its AudioContext.
    played = bh.wait_for(lambda: [e for e in bh.media_events(page) if e["kind"] == "playing"], 60,
                         what="the answer's voice to start playing")
    assert played
    state = bh.answer_audio(page)
    assert state["chunks"] >= 1 and state["context"] == "running", state
    # What voice mode does when speech may have begun over the answer, and when it was not speech.
    page.evaluate("() => window.omnilingoPlayer.hold()")
    held = bh.wait_for(lambda: (lambda s: s if s["context"] == "suspended" else None)(bh.answer_audio(page)), 5,
                       what="the answer's audio to be held")
    assert held["paused"] and held["id"] == state["id"], held
    time.sleep(0.3)
    assert bh.answer_audio(page)["time"] == held["time"], "the held answer went on playing"
    page.evaluate("() => window.omnilingoPlayer.release()")
    bh.wait_for(lambda: bh.answer_audio(page)["time"] > held["time"], 5, what="the answer to play on from where it was held")
    _stop_and_settle(page)
    # Stop silences the page too.
    bh.wait_for(lambda: (bh.answer_audio(page) or {}).get("paused"), 10, what="the player to pause after Stop")


def test_recorded_question_becomes_a_turn_with_its_audio_and_an_answer(page):
    bh.choose_language(page, "français (French)")
    page.click("#message button.microphone-button")
    page.click("#message .record-button")
    time.sleep(3.5)  # the fake microphone says the question (0.3 s of silence, 2.5 s of French)
    page.click("#message .stop-button[aria-label='Stop recording']")
    confirm = page.wait_for_selector("#message button.confirm-button", timeout=10_000)
    confirm.click()
    page.click("#message button.submit-button")

    user = bh.wait_for(lambda: next((t for t in bh.user_texts(page) if " · " in t), None), 60,
                       what="the spoken turn with its language")
    # the bubble's text and its player render in turn: a busy page shows the words a moment earlier
    bh.wait_for(lambda: page.query_selector("#chat .user-row audio, #chat [data-testid='user'] audio"), 10,
                what="the recording playable in the chat")
    assert re.search(r"\S", user.split("\n")[0]), "no transcript shown"
    bh.wait_for(lambda: _answer_length(page) > 5, 60, what="an answer to the recording")
    _stop_and_settle(page)


def test_voice_mode_answer_is_cut_off_by_the_user(playwright, app_url, tmp_path, corpus):
    """A question, then the user talks again while the answer is being spoken.

    The answer's start time depends on the machine (Whisper, the model, the speech), so the user
    talks again after pauses of growing length; every later utterance barges into the answer then
    running. The test waits for an answer that was heard and then cut off."""
    speech = corpus / "speech"
    wav = bh.mic_wav(tmp_path / "barge.wav", [0.3, speech / "sr_french.aiff", 4.0, speech / "sr_english.wav", 6.0,
                                             speech / "sr_english.wav", 9.0, speech / "sr_english.wav", 40.0])
    browser = bh.launch_browser(playwright, wav)
    try:
        page = bh.open_page(browser, app_url)
        bh.choose_language(page, "français (French)")  # the tiny Whisper hears random languages
        held: list[tuple[int, int]] = []  # (sample the page said its speakers held the answer at, samples sent)
        sent, rate = [0], [0]

        def watch(socket) -> None:
            def frame(payload) -> None:
                if isinstance(payload, bytes):
                    sent[0] += len(payload) // 2
                    return
                message = json.loads(payload)
                rate[0] = message.get("sample_rate", rate[0])
                if message.get("speakers") == "held":
                    held.append((message["at"], sent[0]))
            socket.on("framesent", frame)

        page.on("websocket", watch)
        page.click("#voice-toggle")
        states: list[str] = []
        seen_interrupted = 0
        paused_after_cut: list[bool] = []
        deadline = time.monotonic() + 100
        while time.monotonic() < deadline:
            state = page.inner_text("#voice-state")
            for word in ("Listening", "Thinking", "Speaking"):
                if word in state and (not states or states[-1] != word):
                    states.append(word)
            bots = bh.bot_texts(page)
            interrupted = [t for t in bots if "Interrupted." in t]
            if len(interrupted) > seen_interrupted:  # a barge-in just landed: the page must be silent
                seen_interrupted = len(interrupted)
                paused_after_cut.append(bool((bh.answer_audio(page) or {"paused": True})["paused"]))
            events = bh.media_events(page)
            heard = any(e["kind"] == "playing" for e in events)
            cut = any(e["kind"] == "pause" and not e["ended"] for e in events)
            started = [t for t in interrupted if t.split("Interrupted.")[0].strip()]
            if heard and cut and started and len(_user_turns(page)) > len(interrupted):
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"no spoken answer was cut off; states {states}, media {bh.media_events(page)}, "
                                 f"chat {bh.bot_texts(page)}")

        assert states[0] == "Listening"
        assert "Thinking" in states or "Speaking" in states, states
        assert "Listening" in states[1:], "not listening again after the barge-in"
        assert all(paused_after_cut), f"the page kept playing after a barge-in: {paused_after_cut}"
        # the page said where its speakers held the answer: the sample being recorded then, just past what it
        # had sent (less than a chunk and an audio callback further)
        assert held and all(0 <= at - n < 0.2 * rate[0] for at, n in held), (held, rate)
        assert page.query_selector("#chat [data-testid='user'] audio") is not None, "recordings not playable"
        page.click("#voice-toggle")
        page.context.close()
    finally:
        browser.close()
