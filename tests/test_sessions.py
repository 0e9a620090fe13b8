"""Many people at once: sessions never see each other's answers, history, images or Stop.

One launched app (tiny model), eight gradio_client sessions in threads, twenty turns each,
each in its own language with its own picture. Then Stop in one session while another
waits, and what happens to a session's resources when its tab goes away.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from backend.settings import Settings
from tests.fakes import ScriptedEngine
from tests.support import free_port, launched, message_files, message_text

TURNS = 20
SESSIONS = {
    "fr": "Bonjour, pouvez-vous m'expliquer comment les abeilles fabriquent le miel ?",
    "de": "Guten Tag, können Sie mir erklären, wie Bienen den Honig herstellen?",
    "es": "Hola, ¿puedes explicarme cómo fabrican la miel las abejas?",
    "it": "Ciao, puoi spiegarmi come fanno le api a produrre il miele?",
    "pt": "Olá, você pode me explicar como as abelhas fazem o mel?",
    "nl": "Hallo, kun je me uitleggen hoe bijen honing maken?",
    "pl": "Dzień dobry, czy możesz mi wyjaśnić, jak pszczoły robią miód?",
    "ru": "Здравствуйте, объясните, пожалуйста, как пчёлы делают мёд?",
}
COLORS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
          (70, 240, 240), (240, 50, 230)]



@pytest.fixture(scope="module")
def app(tiny_gemma):
    settings = Settings(model=str(tiny_gemma), device="cpu", port=free_port(), inbrowser=False, max_new_tokens=6,
                        tts_engine="off", asr_model="off")
    with launched(settings) as app:
        yield app


def _chat(client, text: str, files=(), language: str = "auto") -> list:
    from gradio_client import handle_file

    client.predict({"text": text, "files": [handle_file(f) for f in files]}, language, api_name="/send_message")
    job = client.submit(False, api_name="/stream_answer")
    list(job)
    return job.outputs()[-1][0]


@pytest.mark.slow
def test_eight_sessions_twenty_turns_stay_apart(app, tmp_path):
    from gradio_client import Client

    runtime, url = app
    pictures = {}
    for (tag, _), color in zip(SESSIONS.items(), COLORS, strict=True):
        pictures[tag] = str(tmp_path / f"{tag}.png")
        Image.new("RGB", (48, 32), color).save(pictures[tag])
    clients = {tag: Client(url, verbose=False) for tag in SESSIONS}
    start = threading.Barrier(len(SESSIONS))

    def run(tag: str) -> list:
        client = clients[tag]
        start.wait()
        history = []
        for turn in range(1, TURNS + 1):
            files = [pictures[tag]] if turn % 5 == 1 else []
            history = _chat(client, f"{SESSIONS[tag]} ({tag}-{turn})", files)
        return history

    with ThreadPoolExecutor(len(SESSIONS)) as pool:
        histories = dict(zip(SESSIONS, pool.map(run, SESSIONS), strict=True))

    folders = set()
    for index, (tag, history) in enumerate(histories.items()):
        conversation = runtime.sessions.get(clients[tag].session_hash)
        folders.add(conversation.session_dir)
        # what the page shows: twenty questions of its own, each with an answer
        users = [m for m in history if m["role"] == "user"]
        assert len(users) == TURNS and len(history) == 2 * TURNS
        for turn, message in enumerate(users, start=1):
            shown = message_text(message)
            assert f"({tag}-{turn})" in shown
            others = [other for other in SESSIONS if other != tag and f"({other}-" in shown]
            assert not others, (tag, others)
        # what the server holds
        assert [t.text for t in conversation.turns] == [f"{SESSIONS[tag]} ({tag}-{n})" for n in range(1, TURNS + 1)]
        assert all(t.status == "done" and t.answer for t in conversation.turns)
        assert {t.answer_language for t in conversation.turns} == {tag}
        images = [p for t in conversation.turns for p in t.image_paths]
        assert len(images) == 4
        for path in images:
            assert Path(path).parent == conversation.session_dir
            assert Image.open(path).convert("RGB").getpixel((3, 3)) == COLORS[index]
        shown_files = [f for m in users for f in message_files(m)]
        assert len(shown_files) == 4
        # the page shows the session's own copies, under names of ours
        assert {Path(f).name for f in shown_files} == {Path(p).name for p in images}
    assert len(folders) == len(SESSIONS)


def test_stop_in_one_session_never_stops_another(app):
    from gradio_client import Client

    runtime, url = app
    a, b = Client(url, verbose=False), Client(url, verbose=False)
    a.predict({"text": "Count slowly to one thousand, please.", "files": []}, "auto", api_name="/send_message")
    b.predict({"text": "Zähle bitte langsam bis tausend.", "files": []}, "auto", api_name="/send_message")
    conv_a, conv_b = runtime.sessions.get(a.session_hash), runtime.sessions.get(b.session_hash)
    conv_a.max_new_tokens, conv_b.max_new_tokens = 400, 30
    job_a = a.submit(False, api_name="/stream_answer")
    deadline = time.time() + 60
    while conv_a.last().status != "streaming" and time.time() < deadline:
        time.sleep(0.02)
    job_b = b.submit(False, api_name="/stream_answer")  # waits for the model while A answers
    a.predict(api_name="/stop")
    for job in (job_a, job_b):
        list(job)
    turn_a, turn_b = conv_a.last(), conv_b.last()
    assert turn_a.status == "stopped" and turn_a.stats.new_tokens < 400
    assert turn_b.status == "done" and turn_b.stats.new_tokens == 30
    # and the stopped session carries on
    history = _chat(a, "Now just say hello, please.")
    assert conv_a.last().status == "done" and len(history) == 4


def test_closing_a_tab_frees_its_session(app):
    """The page's heartbeat connection closing is how Gradio learns a tab went away (demo.unload)."""
    import httpx
    from gradio_client import Client

    runtime, url = app
    client = Client(url, verbose=False)
    _chat(client, "Bonjour, voici une image.", [])
    conversation = runtime.sessions.get(client.session_hash)
    runtime.voice_session(client.session_hash)
    folder = conversation.session_dir
    (folder / "upload-check.bin").write_bytes(b"x")
    other = runtime.sessions.get("a-tab-still-open")  # other tabs of this module's app may close meanwhile

    # the browser keeps /heartbeat/<session> open while the tab lives; closing it fires demo.unload
    with httpx.stream("GET", f"{url}gradio_api/heartbeat/{client.session_hash}", timeout=10) as response:
        assert response.status_code == 200
        next(response.iter_bytes(), None)
    deadline = time.time() + 30
    while folder.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert not folder.exists()
    assert client.session_hash not in runtime.sessions._sessions
    assert client.session_hash not in runtime._voices
    assert runtime.sessions._sessions.get("a-tab-still-open") is other and other.session_dir.exists()
    runtime.drop_session("a-tab-still-open")


def test_drop_session_frees_folder_voice_and_conversation(app):
    runtime, _ = app
    conversation = runtime.sessions.get("tab-that-closes")
    voice = runtime.voice_session("tab-that-closes")
    voice.start()
    (conversation.session_dir / "image-0001.png").write_bytes(b"x")
    runtime.drop_session("tab-that-closes")
    assert not conversation.session_dir.exists()
    assert "tab-that-closes" not in runtime.sessions._sessions and "tab-that-closes" not in runtime._voices
    assert not voice.active
    runtime.drop_session("tab-that-closes")  # twice is harmless
    runtime.drop_session("never-existed")


def test_sessions_idle_too_long_are_closed(tmp_path):
    from backend.runtime import Runtime

    runtime = Runtime(Settings(asr_model="off", tts_engine="off", session_idle_minutes=60), engine=ScriptedEngine("Bonjour, je vais bien."))
    try:
        gone = runtime.sessions.get("tab-left-open")
        voice = runtime.voice_session("tab-left-open")
        voice.start()
        folder = gone.session_dir
        (folder / "image-0001.png").write_bytes(b"x")
        assert runtime.sessions.evict_idle(time.monotonic() + 30 * 60) == [], "half an hour idle is kept"
        time.sleep(0.5)
        kept = runtime.sessions.get("tab-in-use")
        used_at = time.monotonic()
        # An hour after the second tab was last used: the first has been idle for longer.
        assert runtime.sessions.evict_idle(used_at + 60 * 60 - 0.25) == ["tab-left-open"]
        assert not folder.exists() and "tab-left-open" not in runtime.sessions
        assert "tab-left-open" not in runtime._voices and not voice.active
        assert "tab-in-use" in runtime.sessions and kept.session_dir.exists()
        # Coming back later starts afresh.
        assert runtime.sessions.get("tab-left-open") is not gone
    finally:
        runtime.close()


def test_a_session_still_answering_is_not_evicted(tmp_path):
    from backend.conversation.turns import Conversation, SessionRegistry

    registry = SessionRegistry(lambda sid: Conversation(ScriptedEngine("Bonjour, je vais bien."), tmp_path / sid), idle_s=60)
    conversation = registry.get("busy")
    turn = conversation.add(conversation.prepare("Bonjour, comment allez-vous ?"))
    answer = conversation.answer(turn)
    next(answer)  # streaming
    assert registry.evict_idle(time.monotonic() + 3600) == [] and "busy" in registry
    list(answer)
    assert registry.evict_idle(time.monotonic() + 3600) == ["busy"]
    registry.close_all()
