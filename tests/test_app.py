"""The web app, launched for real with a tiny model and driven through gradio_client."""

from __future__ import annotations

import time

import pytest

from backend.settings import Settings
from tests.support import free_port


def _launch(model: str, **overrides):
    from app.server import create_app
    from app.ui import launch_kwargs

    options = {"max_new_tokens": 24, **overrides}
    settings = Settings(model=model, device="cpu", port=free_port(), inbrowser=False, **options)
    demo, runtime = create_app(settings)
    kwargs = launch_kwargs(runtime)
    demo.launch(**kwargs, prevent_thread_lock=True, quiet=True)
    return demo, runtime, f"http://127.0.0.1:{settings.port}/"


@pytest.fixture(scope="module")
def app(tiny_gemma, tiny_dir):
    demo, runtime, url = _launch(str(tiny_gemma), asr_model=str(tiny_dir / "whisper"))
    assert runtime.wait_until_loaded(120).state == "ready"
    yield runtime, url
    demo.close()
    runtime.close()


@pytest.fixture()
def client(app):
    from gradio_client import Client

    return Client(app[1], verbose=False)


def test_chat_endpoint_answers_with_the_language(client):
    result = client.predict("Bonjour ! Pouvez-vous m'expliquer comment fonctionne la photosynthèse ?",
                            [], "auto", api_name="/chat")
    assert result["language"] == "fr"
    assert result["language_name"] == "French"
    assert 0.5 < result["confidence"] <= 1.0
    assert isinstance(result["answer"], str) and result["answer"]
    assert result["answer_language"] == "fr"


def test_chat_endpoint_takes_images(client, corpus):
    from gradio_client import handle_file

    files = [handle_file(str(corpus / "images" / "rapid_el_rec.jpg")), handle_file(str(corpus / "images" / "easy_korean.png"))]
    result = client.predict("Τι γράφει σε αυτές τις εικόνες;", files, "auto", api_name="/chat")
    assert "error" not in result, result
    assert result["language"] == "el" and result["answer"]


def test_chat_endpoint_language_override(client):
    result = client.predict("What is the capital of Japan?", [], "ja", api_name="/chat")
    assert result["language"] == "en" and result["answer_language"] == "ja"


@pytest.mark.parametrize(
    ("text", "content", "key"),
    [("", None, "error.empty_message"), ("look", b"this is text, not a picture", "media.unsupported_file")],
)
def test_chat_endpoint_reports_bad_input_as_an_error_object(client, tmp_path, text, content, key):
    from gradio_client import handle_file

    files = []
    if content is not None:
        bad = tmp_path / "photo.png"
        bad.write_bytes(content)
        files = [handle_file(str(bad))]
    result = client.predict(text, files, "auto", api_name="/chat")
    assert result["error_key"] == key
    assert result["error"] and "Traceback" not in result["error"]


def test_chat_event_streams_into_the_conversation(client):
    box, history = client.predict({"text": "Hola, ¿qué tiempo hace hoy en Madrid?", "files": []}, "auto",
                                  api_name="/send_message")
    assert history[0]["role"] == "user"
    job = client.submit(False, api_name="/stream_answer")
    updates = list(job)
    assert len(updates) >= 1
    final_history = job.outputs()[-1][0]
    user, answer = final_history[0], final_history[1]
    user_text = " ".join(c["text"] if isinstance(c, dict) and "text" in c else str(c) for c in user["content"])
    assert "Madrid" in user_text and "español" in user_text and "es" in user_text
    assert answer["role"] == "assistant"


def test_bad_input_keeps_the_message_and_history(client):
    client.predict({"text": "Guten Morgen, wie geht es dir heute?", "files": []}, "auto", api_name="/send_message")
    list(client.submit(False, api_name="/stream_answer"))
    with pytest.raises(Exception) as info:  # gr.Error: shown as a toast, the textbox keeps its value
        client.predict({"text": "   ", "files": []}, "auto", api_name="/send_message")
    assert "Type a message" in str(info.value)
    box, history = client.predict({"text": "Und morgen?", "files": []}, "auto", api_name="/send_message")
    texts = " ".join(str(m["content"]) for m in history)
    assert "Guten Morgen" in texts and "Und morgen" in texts


def test_warnings_speak_the_visitors_language(app):
    """A toast is in the page's language, like the errors: here a browser copy that is not a conversation."""
    from types import SimpleNamespace

    from app.handlers import ChatController

    runtime = app[0]
    french_page = SimpleNamespace(session_hash="warned-in-french", headers={"accept-language": "fr-FR,fr;q=0.9"})
    try:
        with pytest.warns(UserWarning) as shown:  # gr.Warning outside a running event is a Python warning
            history, _ = ChatController(runtime).restore_conversation({"format": "not-omnilingo"}, french_page)
    finally:
        runtime.drop_session("warned-in-french")
    assert "Ce fichier n'est pas une conversation Omnilingo enregistrée." in [str(w.message) for w in shown]
    assert not any("not a saved Omnilingo conversation" in str(w.message) for w in shown)
    assert history == []


def test_new_conversation_clears_history(client):
    client.predict({"text": "Ciao, come stai?", "files": []}, "auto", api_name="/send_message")
    list(client.submit(False, api_name="/stream_answer"))
    history, _ = client.predict(api_name="/new_conversation")
    assert history == []


def test_sessions_do_not_share_history(app):
    from gradio_client import Client

    a, b = Client(app[1], verbose=False), Client(app[1], verbose=False)
    a.predict({"text": "Secret of session A: blue", "files": []}, "auto", api_name="/send_message")
    _, history_b = b.predict({"text": "Session B here", "files": []}, "auto", api_name="/send_message")
    assert "blue" not in str(history_b)


def test_missing_model_still_starts_and_explains(tmp_path):
    from gradio_client import Client

    missing = str(tmp_path / "no-such-model")
    demo, runtime, url = _launch(missing)
    try:
        status = runtime.wait_until_loaded(60)
        assert status.state == "failed" and missing in status.message and "--model" in status.message
        result = Client(url, verbose=False).predict("Hello there, how are you?", [], "auto", api_name="/chat")
        assert missing in result["error"]
    finally:
        demo.close()
        runtime.close()


@pytest.mark.slow
def test_stop_halts_a_running_answer(tiny_gemma):
    from gradio_client import Client

    demo, runtime, url = _launch(str(tiny_gemma), max_new_tokens=4000)
    try:
        runtime.wait_until_loaded(120)
        client = Client(url, verbose=False)
        client.predict({"text": "Count to a million", "files": []}, "auto", api_name="/send_message")
        job = client.submit(False, api_name="/stream_answer")
        time.sleep(1.0)
        client.predict(api_name="/stop")
        deadline = time.time() + 60
        while not job.done() and time.time() < deadline:
            time.sleep(0.1)
        assert job.done()
        conversation = next(iter(runtime.sessions._sessions.values()))
        turn = conversation.last()
        assert turn.status == "stopped" and turn.stats.new_tokens < 4000
    finally:
        demo.close()
        runtime.close()


def test_chat_endpoint_takes_a_recording(client, corpus):
    from gradio_client import handle_file

    result = client.predict("", [handle_file(str(corpus / "speech" / "sr_french.aiff"))], "auto", api_name="/chat")
    assert "error" not in result, result
    assert isinstance(result["transcript"], str) and result["transcript"]
    assert result["language"] != "und" and result["answer"]


def test_silence_is_not_sent_to_the_model(client, tmp_path):
    import numpy as np
    import soundfile as sf
    from gradio_client import handle_file

    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros(16000 * 2, dtype=np.float32), 16000)
    result = client.predict("", [handle_file(str(silence))], "auto", api_name="/chat")
    assert result["error_key"] == "asr.no_speech" and "did not catch" in result["error"]


@pytest.fixture()
def prompts(app, monkeypatch):
    """Every prompt the launched app's model is given during one test."""
    engine = app[0].engine
    seen: list = []
    original = engine.stream

    def stream(messages, *args, **kwargs):
        seen.append(messages)
        return original(messages, *args, **kwargs)

    monkeypatch.setattr(engine, "stream", stream)
    return seen


def test_chat_endpoint_takes_a_video_with_a_spoken_question(client, corpus, tmp_path, prompts):
    from gradio_client import handle_file

    from backend.media.video import MIN_FRAMES
    from tests.support import make_video

    clip = make_video(tmp_path / "question.mp4", 4, sound=corpus / "speech" / "sr_french.aiff")
    result = client.predict("", [handle_file(str(clip))], "auto", api_name="/chat")
    assert "error" not in result, result
    assert result["frames"] == MIN_FRAMES
    assert isinstance(result["transcript"], str) and result["transcript"]
    assert result["language"] != "und" and result["answer"]
    user = prompts[-1][-1]
    assert len(user.images) == MIN_FRAMES and all(image.size == (96, 64) for image in user.images)
    assert result["transcript"] in user.text


def test_chat_endpoint_takes_a_video_without_sound(client, tmp_path, prompts):
    from gradio_client import handle_file

    from tests.support import make_video

    clip = make_video(tmp_path / "silent.webm", 2)
    result = client.predict("Was passiert in diesem kurzen Film? Bitte beschreiben Sie alles genau.", [handle_file(str(clip))], "auto", api_name="/chat")
    assert "error" not in result, result
    assert result["frames"] >= 1 and "transcript" not in result and result["language"] == "de"
    assert len(prompts[-1][-1].images) == result["frames"]


def test_a_video_over_the_length_limit_is_refused_plainly(client, tmp_path):
    from gradio_client import handle_file

    from tests.support import make_video

    clip = make_video(tmp_path / "lecture.mp4", 615, size=(16, 16), fps=0.5)
    result = client.predict("Summarise this", [handle_file(str(clip))], "auto", api_name="/chat")
    assert result["error_key"] == "media.video_too_long"
    assert "'lecture.mp4' is too long (10:1" in result["error"] and "the limit is 10:00 min" in result["error"]


def test_each_spoken_sentence_reaches_the_page_player_whole_and_in_order():
    """The page's player gets every sentence so far with each update (a missed update loses
    nothing), a new id for each answer, and a last update that says the answer is over."""
    import base64
    import io

    import numpy as np
    import soundfile as sf

    from app.render import PlayerFeed
    from backend.models.tts import AudioChunk

    first, second = PlayerFeed(), PlayerFeed()
    assert second.id > first.id
    assert first.finish() is None  # nothing was spoken: nothing to tell the page
    tone = (0.3 * np.sin(np.linspace(0, 200, 8000))).astype(np.float32)
    update = first.add(AudioChunk(samples=tone, sample_rate=22050, text="One."))
    update = first.add(AudioChunk(samples=tone[:4000], sample_rate=22050, text="Two."))
    assert [c["seq"] for c in update["chunks"]] == [0, 1] and update["done"] is False
    samples, rate = sf.read(io.BytesIO(base64.b64decode(update["chunks"][1]["wav"])), dtype="float32")
    assert rate == 22050 and np.allclose(samples, tone[:4000], atol=1e-4)
    last = first.finish()
    assert last["done"] is True and last["id"] == first.id and len(last["chunks"]) == 2
