"""Voice mode's microphone stream: the page's PCM chunks over one WebSocket, into the session's VoiceSession.

The page (assets/mic_stream.js) records with an AudioWorklet and sends MIC_CHUNK_S of 16-bit mono PCM
per binary message, after one JSON message that names its sample rate. Other JSON messages say at which
sample of that stream the page's speakers held or released the answer (the echo guard follows them,
speakers_moved). Each chunk goes through the
VAD, barge-in and the end of turn (VoiceSession.hear); the reply, sent only when something changed,
tells the page the voice state, a pause or resume of the answer's audio (speech may have begun over
it), a barge-in (silence the answer now) or a new turn (start its answer).

The socket's address carries the page's Gradio session and a signature of it, handed out by the voice
button's handler: only that page can stream into that session's conversation.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from urllib.parse import urlencode

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from app.i18n import locale_from_request, translate, translate_error
from backend.conversation.voice import VoiceEventKind
from backend.errors import UserFacingError
from backend.language.decide import browser_languages
from backend.runtime import Runtime

log = logging.getLogger(__name__)

PATH = "/omnilingo/mic"
# A chunk longer than this is not a microphone chunk (10 s of 48 kHz 16-bit PCM).
MAX_CHUNK_BYTES = 48_000 * 2 * 10
# A speakers message further than this from the stream time the server has heard is not of this stream.
SPEAKERS_SLACK_S = 5.0
CLOSE_FORBIDDEN = 4403  # an application close code: the address is not this app's signature
# Signs the stream addresses this process hands out; a restarted app hands out new ones.
_KEY = secrets.token_bytes(32)


def sign(session_id: str) -> str:
    return hmac.new(_KEY, session_id.encode(), hashlib.sha256).hexdigest()


def stream_url(session_id: str) -> str:
    """The page's address for its microphone stream, relative to the app's root."""
    return PATH.lstrip("/") + "?" + urlencode({"session": session_id, "sig": sign(session_id)})


def hear_chunk(runtime: Runtime, session_id: str, samples: np.ndarray, sample_rate: int,
               browser: tuple[str, ...], locale: str) -> dict:
    """One microphone chunk: VAD, barge-in and the end of an utterance. Returns what the page must know."""
    voice = runtime.active_voice(session_id)
    if voice is None:
        return {"state": "off"}
    reply: dict = {}
    voice.browser_languages = browser
    arrived = time.time()
    events = voice.hear(samples, sample_rate)
    judged = time.time()  # the VAD, and the verdict of a pause once its worker has it
    for event in events:
        if event.kind in (VoiceEventKind.PAUSE, VoiceEventKind.RESUME):
            reply[event.kind.value] = True
            if event.kind == VoiceEventKind.PAUSE:
                log.info("pause timings %s", json.dumps(
                    {"onset_heard": voice.heard_at(event.t), "mic_chunk_in": arrived, "pause": judged}))
        elif event.kind == VoiceEventKind.BARGE_IN:
            reply["barge_in"] = voice.barge_ins
            log.info("barge-in timings %s", json.dumps(
                {"onset_heard": voice.heard_at(event.t), "mic_chunk_in": arrived, "barge_in": judged}))
        elif event.kind == VoiceEventKind.UTTERANCE and event.audio is not None:
            conversation = runtime.sessions.get(session_id)
            path = voice.save_utterance(event.audio, conversation.session_dir)
            # the camera's newest picture(s) at the end of the utterance; none when it is off
            pictures = runtime.camera(session_id).save_latest(conversation.session_dir, f"{path.stem}-camera")
            try:
                turn = conversation.add(conversation.prepare(
                    "", [str(path), *map(str, pictures)], voice.spoken_language or "auto", browser=browser))
                turn.timings.update(event.timings, mic_chunk_in=arrived, turn_judged=judged)
                heard = voice.heard_at(event.t)
                if heard is not None:
                    turn.timings["speech_end_heard"] = heard
                if event.transcript is not None and event.transcript.text.strip():
                    conversation.hear(turn, event.transcript)  # heard at the pause already
                turn.mark("turn_added")
                reply["turn"] = turn.id
            except UserFacingError as err:
                reply["warning"] = translate_error(err, locale)
            finally:
                for picture in pictures:  # the turn keeps its own copies
                    picture.unlink(missing_ok=True)
    reply["state"] = voice.state
    return reply


def speakers_moved(runtime: Runtime, session_id: str, message: dict, sample_rate: int) -> None:
    """The page's speakers held or released the answer at a sample of its microphone stream: the echo guard
    follows them there. A message that does not fit is ignored."""
    voice = runtime.active_voice(session_id)
    at = message.get("at")
    if voice is None or message.get("speakers") not in ("held", "released") or type(at) is not int or at < 0:
        return
    at_s = at / sample_rate
    if abs(at_s - voice.vad.stream_time) > SPEAKERS_SLACK_S:  # not this stream's clock
        log.debug("speakers message off the stream clock: %.2f s at %.2f s", at_s, voice.vad.stream_time)
        return
    (voice.speakers_held if message["speakers"] == "held" else voice.speakers_released)(at_s)


def route(runtime: Runtime) -> WebSocketRoute:
    """The WebSocket endpoint, given to Gradio's FastAPI app at launch."""

    async def endpoint(socket: WebSocket) -> None:
        session_id = socket.query_params.get("session", "")
        signature = socket.query_params.get("sig", "")
        if not session_id or not hmac.compare_digest(signature, sign(session_id)):
            await socket.close(code=CLOSE_FORBIDDEN)
            return
        await socket.accept()
        accept_language = socket.headers.get("accept-language")
        browser, locale = browser_languages(accept_language), locale_from_request(accept_language)
        try:
            hello = json.loads(await socket.receive_text())
            sample_rate = int(hello["sample_rate"])
            if not 8000 <= sample_rate <= 192_000:
                raise ValueError(f"sample rate {sample_rate}")
        except (ValueError, KeyError, TypeError) as err:
            log.warning("microphone stream refused: %s", err)
            await socket.close(code=1003)
            return
        told: dict = {}
        try:
            while True:
                message = await socket.receive()
                if message["type"] == "websocket.disconnect":
                    raise WebSocketDisconnect(message.get("code", 1000))
                if message.get("text") is not None:  # where the page's speakers held or released the answer
                    try:
                        speakers_moved(runtime, session_id, json.loads(message["text"]), sample_rate)
                    except (ValueError, TypeError, AttributeError):
                        log.debug("unreadable message on the microphone stream dropped")
                    continue
                data = message.get("bytes") or b""
                if len(data) > MAX_CHUNK_BYTES or len(data) % 2:
                    continue  # not a chunk of 16-bit PCM: dropped, the stream goes on
                samples = np.frombuffer(data, dtype="<i2")
                reply = await run_in_threadpool(hear_chunk, runtime, session_id, samples, sample_rate, browser, locale)
                news = {k: v for k, v in reply.items() if k != "state" or told.get("state") != v}
                if news:
                    told.update(news)
                    await socket.send_json(news)
        except WebSocketDisconnect:
            pass
        except Exception:  # noqa: BLE001 - a broken chunk must not take the app down; the page shows it
            log.exception("microphone stream of session %s failed", session_id)
            await socket.close(code=1011)

    return WebSocketRoute(PATH, endpoint)


def labels(locale: str) -> dict[str, str]:
    """The voice state line's texts, in the page's language."""
    icons = {"listening": "🎙️ ", "thinking": "💭 ", "speaking": "🔊 "}
    keys = ("listening", "thinking", "speaking", "connecting", "no_microphone", "disconnected")
    return {key: icons.get(key, "") + translate("voice." + key, locale) for key in keys} | {"off": ""}
