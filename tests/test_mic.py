"""Voice mode's microphone stream (app/mic.py): the launched app's WebSocket, fed as the page feeds it.

16-bit PCM at the browser's rate in MIC_CHUNK_S pieces, after a JSON message that names the rate.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import soundfile as sf
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from backend.audio.pcm import to_float_mono
from backend.conversation.voice import MIC_CHUNK_S
from backend.settings import Settings
from tests.support import free_port, launched

RATE = 48_000


@pytest.fixture(scope="module")
def app(tiny_gemma, tiny_dir):
    # the silence rule: the end of turn does not depend on how fast the test sends
    settings = Settings(model=str(tiny_gemma), asr_model=str(tiny_dir / "whisper"), device="cpu", port=free_port(),
                        inbrowser=False, max_new_tokens=8, end_of_turn="silence")
    with launched(settings) as (runtime, address):
        yield runtime, "ws" + address.removeprefix("http")


def _pcm_chunks(audio: np.ndarray) -> list[bytes]:
    """The page's chunks: MIC_CHUNK_S of 16-bit little-endian PCM each."""
    step = round(RATE * MIC_CHUNK_S)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    return [pcm[i:i + step].tobytes() for i in range(0, len(pcm), step)]


def _speech_then_silence(corpus, silence_s: float = 1.5) -> np.ndarray:
    """One English sentence of real speech (4.5 s, no pause inside that ends a turn), then silence."""
    import soxr

    samples, rate = sf.read(corpus / "speech" / "silero_en.wav", dtype="float32")
    speech = soxr.resample(to_float_mono(samples)[int(2.5 * rate):int(7.0 * rate)], rate, RATE)
    return np.concatenate([np.zeros(RATE // 2, np.float32), speech, np.zeros(int(RATE * silence_s), np.float32)])


def _stream(url: str, chunks: list[bytes], pace_s: float = 0.0) -> list[dict]:
    """Sends the chunks as the page does and collects every reply until a second after the last."""
    replies = []
    with connect(url, open_timeout=10) as socket:
        socket.send(json.dumps({"sample_rate": RATE}))
        for chunk in chunks:
            socket.send(chunk)
            time.sleep(pace_s)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                replies.append(json.loads(socket.recv(timeout=0.2)))
            except TimeoutError:
                pass
    return replies


def test_spoken_question_becomes_a_turn_and_the_page_is_told(app, corpus):
    from app import mic

    runtime, root = app
    session = "mic-test-turn"
    runtime.voice_session(session).start()  # what the voice button does
    replies = _stream(root + mic.stream_url(session), _pcm_chunks(_speech_then_silence(corpus)), pace_s=0.01)

    turns = [r["turn"] for r in replies if "turn" in r]
    assert len(turns) == 1, replies
    conversation = runtime.sessions.get(session)
    turn = conversation.last()
    assert turn.id == turns[0] and turn.audio_path, "the recording is the turn's"
    assert sf.info(turn.audio_path).duration > 3.5  # the whole sentence, not a fragment
    assert replies[0] == {"state": "listening"}  # the page is told the state once, then what changes
    runtime.drop_session(session)


def test_a_forged_address_is_refused(app):
    from app import mic

    _, root = app
    with pytest.raises(InvalidStatus) as refused:
        with connect(root + mic.stream_url("someone-else").replace("sig=", "sig=0"), open_timeout=10):
            pass
    assert refused.value.response.status_code == 403


def test_chunks_while_voice_mode_is_off_make_nothing(app, corpus):
    from app import mic

    runtime, root = app
    session = "mic-test-off"
    replies = _stream(root + mic.stream_url(session), _pcm_chunks(_speech_then_silence(corpus))[:20])
    assert replies == [{"state": "off"}]  # told once, as the state never changes
    assert session not in runtime._voices and runtime.active_voice(session) is None


def test_a_broken_chunk_is_dropped_and_the_stream_goes_on(app, corpus):
    from app import mic

    runtime, root = app
    session = "mic-test-broken"
    runtime.voice_session(session).start()
    chunks = _pcm_chunks(_speech_then_silence(corpus))
    replies = _stream(root + mic.stream_url(session), [b"\x01\x02\x03", *chunks], pace_s=0.01)
    assert any("turn" in r for r in replies), replies
    runtime.drop_session(session)


def test_the_page_says_where_its_speakers_held_the_answer(app):
    # The page holds the answer after the reply's way to it, and says at which sample of its microphone
    # stream: the echo guard follows its speakers there. Messages that do not fit are dropped.
    from app import mic

    runtime, root = app
    session = "mic-test-speakers"
    voice = runtime.voice_session(session)
    voice.start()
    told: list[tuple[str, float]] = []
    voice.speakers_held = lambda at_s: told.append(("held", at_s))
    voice.speakers_released = lambda at_s: told.append(("released", at_s))
    silence = _pcm_chunks(np.zeros(RATE, np.float32))  # one second
    with connect(root + mic.stream_url(session), open_timeout=10) as socket:
        socket.send(json.dumps({"sample_rate": RATE}))
        for chunk in silence:
            socket.send(chunk)
        socket.send(json.dumps({"speakers": "held", "at": RATE + 1200}))
        for message in ({"speakers": "held", "at": RATE * 60}, {"speakers": "held", "at": "soon"},
                        {"speakers": "louder", "at": RATE}, ["held"]):
            socket.send(json.dumps(message))
        socket.send("not json")
        socket.send(json.dumps({"speakers": "released", "at": RATE + 2400}))
        socket.send(silence[0])  # the stream goes on
        deadline = time.monotonic() + 5
        while len(told) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert told == [("held", 1.025), ("released", 1.05)]
    runtime.drop_session(session)
