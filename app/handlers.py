"""What the page's events do: one ChatController per runtime, one method per event.

app/ui.py lays out the components and wires each event to a method here; the methods
read the visitor's session from the gr.Request Gradio hands them.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import gradio as gr

from app import mic, render
from app.i18n import I18N, locale_from_request, translate, translate_error
from backend.conversation import transcript
from backend.conversation.speaker import answer_aloud
from backend.conversation.turns import Conversation, Turn, TurnStatus
from backend.conversation.voice import MIC_CHUNK_S
from backend.errors import UserFacingError
from backend.language import tags
from backend.language.decide import browser_languages
from backend.runtime import Runtime

log = logging.getLogger(__name__)

# Re-render the chat at most this often while streaming: smooth, without flooding the socket.
STREAM_INTERVAL_S = 0.04
def session_id_of(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "default"


def locale_of(request: gr.Request | None) -> str:
    """The visitor's UI language, from the browser's Accept-Language header."""
    headers = getattr(request, "headers", None) or {}
    return locale_from_request(headers.get("accept-language"))


def files_of(message: dict | None) -> list[str]:
    """The file paths a MultimodalTextbox value carries."""
    files = []
    for item in (message or {}).get("files") or []:
        path = item.get("path") if isinstance(item, dict) else getattr(item, "path", item)
        if path:
            files.append(str(path))
    return files


def browser_languages_of(request: gr.Request | None) -> tuple[str, ...]:
    """The visitor's languages, from the browser's Accept-Language header: a prior for the answer language."""
    headers = getattr(request, "headers", None) or {}
    return browser_languages(headers.get("accept-language"))


def warn(err: UserFacingError, request: gr.Request | None) -> None:
    """A toast in the visitor's language: the problem is told, nothing else changes."""
    gr.Warning(translate_error(err, locale_of(request)))


def log_timings(turn: Turn) -> None:
    """One log line per answered turn: the wall-clock time of each stage it went through."""
    if turn.timings:
        log.info("turn %d timings %s (%s, %d characters, %d tokens)", turn.id,
                 json.dumps(dict(sorted(turn.timings.items(), key=lambda kv: kv[1]))), turn.status,
                 len(turn.answer), turn.stats.new_tokens)


def model_inputs(runtime: Runtime, locale: str = "en") -> str:
    """What the loaded model can take: text, pictures, sound (its own ears, or speech recognition)."""
    engine = runtime.engine
    inputs = [translate("status.input.text", locale)]
    if getattr(engine, "accepts_images", False):
        inputs.append(translate("status.input.pictures", locale))
    if getattr(engine, "accepts_audio", False):
        inputs.append(translate("status.input.sound", locale))
    elif runtime.asr is not None:
        inputs.append(translate("status.input.speech_as_text", locale))
    return translate("status.inputs", locale, inputs=", ".join(inputs))


def status_markdown(runtime: Runtime, locale: str = "en") -> str:
    status = runtime.status()
    if status.state == "ready":
        # isolated (FSI…PDI): a model path keeps its own direction inside an Arabic sentence
        ready = translate("status.ready", locale, model=f"\u2068{runtime.engine.name}\u2069")
        return f"{ready} · {model_inputs(runtime, locale)}"
    if status.state == "failed":
        return "⚠️ " + translate("status.failed", locale, detail=status.message)
    return "⏳ " + translate("status.loading", locale, detail=status.message, seconds=int(status.elapsed_s))


def voice_markdown(runtime: Runtime, language: str, locale: str = "en") -> str:
    """Which voice will read answers in the chosen language, neural or espeak-ng, and its licence."""
    if runtime.tts is None or not language or language == "auto":
        return ""
    name = tags.display_name(language, locale)
    try:
        desc = runtime.tts.describe(language)
    except Exception:  # noqa: BLE001 - the settings line must not break the page
        log.warning("could not describe the voice for %s", language, exc_info=True)
        return ""
    if desc is None:
        return translate("voice.none", locale, language=name)
    licence = desc.licence or translate("voice.licence_on_download", locale)
    key = "voice.neural" if desc.neural else "voice.espeak"
    line = translate(key, locale, language=name, voice=f"\u2068{desc.label}\u2069", licence=licence)
    if desc.instead_of:
        line += " · " + translate("voice.instead", locale, voice=f"\u2068{desc.instead_of}\u2069")
    return "🔊 " + line + (f" · {runtime.voice_download}" if runtime.voice_download else "")


class ChatController:
    """The event handlers of one page layout, sharing one runtime (model, sessions, voices)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def _session(self, request: gr.Request | None) -> Conversation:
        return self.runtime.sessions.get(session_id_of(request))

    def voice_info(self, language: str, request: gr.Request | None = None) -> str:
        """The settings line for the chosen language; its voice starts loading (or downloading) at once."""
        tts = self.runtime.tts
        if tts is not None and language and language != "auto":
            threading.Thread(target=tts.prepare, args=(language,), name="omnilingo-voice", daemon=True).start()
        return voice_markdown(self.runtime, language, locale_of(request))

    def view(self, conversation: Conversation, request: gr.Request | None) -> list[dict]:
        return render.chat_messages(conversation, locale_of(request), can_speak=self.runtime.tts is not None)

    # -- typing and answering ------------------------------------------------------------------
    def add_user_turn(self, message: dict, language_value: str, request: gr.Request):
        conversation = self._session(request)
        if conversation.busy:
            raise gr.Error(translate("error.busy", locale_of(request)), print_exception=False)
        try:
            turn = conversation.prepare((message or {}).get("text", ""), files_of(message), language_value,
                                        browser=browser_languages_of(request))
        except UserFacingError as err:
            # gr.Error leaves the textbox as it was: the message and its files are kept.
            raise gr.Error(translate_error(err, locale_of(request)), print_exception=False) from None
        conversation.add(turn)
        return gr.MultimodalTextbox(value=None, interactive=False), self.view(conversation, request)

    def stream_answer(self, speak_value: bool, request: gr.Request):
        runtime = self.runtime
        conversation = self._session(request)
        turn = conversation.last()
        busy = gr.MultimodalTextbox(interactive=False)
        if turn is None or turn.status != "pending":
            yield self.view(conversation, request), gr.MultimodalTextbox(interactive=True), gr.skip()
            return
        while runtime.status().state == "loading":
            yield self.view(conversation, request), busy, gr.skip()
            time.sleep(0.5)
        first = turn
        first.mark("answer_start")
        player = render.PlayerFeed()
        try:
            runtime.require_model()
            voice = runtime.voice_session(session_id_of(request))
            voice.answering(turn.generation)
            speak_it = bool(speak_value) or voice.active
            last = 0.0
            while turn is not None:
                for event in answer_aloud(conversation, turn, runtime.tts, speak_it):
                    if event.kind == "audio" and event.chunk is not None:
                        audio = event.chunk.audio
                        voice.played(audio.samples, audio.sample_rate)
                        first.mark("first_audio_out")
                        yield self.view(conversation, request), busy, player.add(audio)
                        continue
                    now = time.monotonic()
                    if now - last >= STREAM_INTERVAL_S:
                        last = now
                        if turn.answer:
                            first.mark("first_text_out")
                        yield self.view(conversation, request), busy, gr.skip()
                # The answer drifted to another language: ask once more, firmly, when the user wants it.
                turn = conversation.auto_retry(turn) if runtime.settings.auto_retry_language else None
        except UserFacingError as err:
            if turn is not None:
                turn.status, turn.error, turn.error_key, turn.error_params = (
                    TurnStatus.ERROR, err.message, err.key, err.params)
        runtime.voice_session(session_id_of(request)).finished(conversation.generation)
        log_timings(first)
        spoken = player.finish()
        yield self.view(conversation, request), gr.MultimodalTextbox(interactive=True), spoken or gr.skip()

    def stop_answer(self, request: gr.Request):
        self._session(request).stop()

    def new_conversation(self, request: gr.Request):
        self._session(request).clear()
        return [], gr.MultimodalTextbox(value=None, interactive=True)

    # -- voice ---------------------------------------------------------------------------------
    def toggle_voice(self, language_value: str, request: gr.Request):
        """The voice button: the page's microphone stream starts with the address handed out here
        (app/mic.py), and stops when it gets none."""
        session_id = session_id_of(request)
        voice = self.runtime.voice_session(session_id)
        if voice.active:
            voice.stop()
            return gr.Button(value=I18N("voice.start")), None, gr.skip()
        voice.spoken_language = language_value
        voice.start()
        config = {"url": mic.stream_url(session_id), "chunk_s": MIC_CHUNK_S, "labels": mic.labels(locale_of(request))}
        # Voice mode answers aloud: the box shows it.
        return gr.Button(value=I18N("voice.stop")), config, True

    def choose_language(self, language_value: str, request: gr.Request):
        """A language picked in the page: voice mode hears it next, and the settings line names its voice."""
        voice = self.runtime.active_voice(session_id_of(request))
        if voice is not None:
            voice.spoken_language = language_value
        return self.voice_info(language_value, request)

    # -- camera (voice mode) -------------------------------------------------------------------
    def toggle_camera(self, request: gr.Request):
        """The camera button: the webcam shows (and the browser asks for it) only once turned on."""
        feed = self.runtime.camera(session_id_of(request))
        if feed.on:
            feed.stop()
            return gr.Button(value=I18N("camera.start")), gr.Image(visible=False, value=None)
        feed.start()
        return gr.Button(value=I18N("camera.stop")), gr.Image(visible=True)

    def on_camera(self, picture, request: gr.Request) -> None:
        """Each streamed camera picture (every CAMERA_EVERY_S): kept for the next spoken turn."""
        self.runtime.camera(session_id_of(request)).see(picture)

    # -- options under an answer -------------------------------------------------------------------
    def listen(self, turn_id: int, conversation: Conversation, request: gr.Request | None):
        """Play one earlier answer again."""
        tts = self.runtime.tts
        turn = next((t for t in conversation.turns if t.id == turn_id), None)
        if turn is None or not turn.answer or tts is None:
            return
        try:
            yield from tts.speak(turn.answer, turn.answer_language)
        except UserFacingError as err:
            warn(err, request)

    def choose_option(self, event: gr.SelectData, request: gr.Request):
        """Options under an answer: "answer again in <language>" and "listen"."""
        conversation = self._session(request)
        value = str(getattr(event, "value", "") or "")
        action, _, turn_id = value.partition(":")
        if action == "listen" and turn_id.isdigit():
            player = render.PlayerFeed()
            for chunk in self.listen(int(turn_id), conversation, request):
                yield self.view(conversation, request), player.add(chunk)
            spoken = player.finish()
            if spoken is not None:
                yield self.view(conversation, request), spoken
            return
        if action == "retry" and turn_id.isdigit() and not conversation.busy:
            try:
                conversation.retry_in_language(int(turn_id))
            except StopIteration:
                pass
        yield self.view(conversation, request), gr.skip()

    # -- keeping the conversation ------------------------------------------------------------------
    def save_conversation(self, request: gr.Request):
        """After each answer: the copy kept in the browser, and the download (Markdown+pictures zip)."""
        conversation = self._session(request)
        if not conversation.turns:
            return None, gr.DownloadButton(value=None, interactive=False)
        zipped, _ = transcript.write_downloads(conversation)
        return transcript.for_browser(conversation), gr.DownloadButton(value=str(zipped), interactive=True)

    def restore_conversation(self, saved_value, request: gr.Request):
        """A reloaded page: the conversation comes back from the browser's copy."""
        conversation = self._session(request)
        if saved_value and not conversation.turns:
            try:
                transcript.restore(conversation, saved_value)
            except UserFacingError as err:
                warn(err, request)
        download_value = None
        if conversation.turns:
            download_value = str(transcript.write_downloads(conversation)[0])
        return self.view(conversation, request), gr.DownloadButton(value=download_value,
                                                                   interactive=download_value is not None)

    # -- the page itself -----------------------------------------------------------------------
    def refresh_status(self, request: gr.Request):
        waiting = self.runtime.status().waiting  # loading, or retrying after a passing failure
        return status_markdown(self.runtime, locale_of(request)), gr.Timer(active=waiting)

    def drop_session(self, request: gr.Request = None) -> None:  # type: ignore[assignment]
        """The tab was closed: its conversation and voice go."""
        session_hash = getattr(request, "session_hash", None) if request is not None else None
        if session_hash:
            self.runtime.drop_session(session_hash)

    # -- the /chat API -------------------------------------------------------------------------
    def chat_api(self, message: str, files: list[str] | None, language_value: str | None,
                 request: gr.Request) -> dict:
        """Ask Omnilingo one question (text, optional images, a recording or a video); returns the answer,
        the language and, for a video, how many of its frames the model saw.

        The request's Accept-Language header is a prior for the answer language, as on the page."""
        return answer_once(self.runtime, message or "", [str(f) for f in files or []], language_value or "auto",
                           browser=browser_languages_of(request))


def answer_once(runtime: Runtime, message: str, files: list[str], language: str = "auto",
                browser: tuple[str, ...] = ()) -> dict:
    """One stateless question for the API: never raises, errors come back as ``{"error": ...}``.

    A recording is transcribed first; the result then holds ``transcript`` and the spoken language."""
    conversation = runtime.new_conversation()
    try:
        turn = conversation.add(conversation.prepare(message, files, language, browser=browser))
        runtime.require_model(wait_s=600.0)
        for _ in conversation.answer(turn):
            pass
        if turn.status == "no_speech":
            return {"error": turn.error, "error_key": turn.error_key, "transcript": "", "language": "und"}
        result = {
            "answer": turn.answer,
            "language": turn.language.tag,
            "language_name": turn.language.name,
            "confidence": round(turn.language.confidence, 4),
            "answer_language": turn.answer_language,
            "language_source": turn.language_source,
            "answer_language_detected": turn.answer_guess.tag if turn.answer_guess else None,
            "language_mismatch": turn.language_mismatch,
            "status": turn.status,
        }
        if turn.transcript is not None:
            result["transcript"] = turn.transcript
        # How many of the video's frames the model saw (none for a model that reads text only).
        result["frames"] = turn.frames_seen if getattr(runtime.engine, "accepts_images", False) else 0
        return result
    except UserFacingError as err:
        return {"error": err.message, "error_key": err.key}
    except Exception:  # the API never hands a traceback to a caller
        log.exception("chat API failed")
        return {"error": translate("error.generic"), "error_key": "error.generic"}
    finally:
        conversation.close()
