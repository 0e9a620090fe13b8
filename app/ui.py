"""The Gradio web UI: chat, images, language, stop, and the /chat API endpoint."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import gradio as gr

from app import render
from app.i18n import STRINGS, translate, translate_error
from backend import languages
from backend.conversation import transcript
from backend.conversation.speaker import answer_aloud
from backend.conversation.turns import Conversation
from backend.conversation.voice import MIC_CHUNK_S
from backend.errors import UserFacingError
from backend.language.decide import browser_languages
from backend.runtime import Runtime
from backend.settings import state_secret

log = logging.getLogger(__name__)

# The UI's static files: assets/ in the repository, app/assets once installed with pip.
ASSETS = next(
    (p for p in (Path(__file__).resolve().parent.parent / "assets", Path(__file__).resolve().parent / "assets")
     if (p / "omnilingo.css").exists()),
    Path(__file__).resolve().parent.parent / "assets",
)
# Re-render the chat at most this often while streaming: smooth, without flooding the socket.
STREAM_INTERVAL_S = 0.04
# The microphone starts only from its own Record button (setting recording=True from the server
# shows a recorder that sends no chunks), so the voice button presses it, once it is on screen.
START_MIC_JS = """() => {
  const press = (tries) => {
    const root = document.querySelector('#voice-mic');
    const record = root && root.offsetParent !== null ? root.querySelector('.record-button') : null;
    if (record) { record.click(); return; }
    if (tries > 0) { setTimeout(() => press(tries - 1), 100); }
  };
  setTimeout(() => press(150), 50);  // up to 15 s: a busy machine renders the recorder late
}"""
STOP_MIC_JS = """() => {
  document.querySelectorAll('#voice-mic button').forEach((b) => {
    if (/stop/i.test(b.className) || b.innerText.trim() === 'Stop') { b.click(); }
  });
  document.querySelectorAll('audio').forEach((a) => { a.pause(); });
}"""
# Stop and barge-in also silence what the browser has already buffered.
PAUSE_AUDIO_JS = "() => { document.querySelectorAll('audio').forEach((a) => { a.pause(); }); }"


# Labels are translated in the browser, by the visitor's locale (English fallback).
I18N = gr.I18n(**STRINGS)

# The page's language and writing direction follow the UI language the browser picks (its
# first preferred language that Omnilingo speaks, as gr.I18n chooses): an Arabic UI reads
# right to left. Gradio itself leaves <html> left to right.
PAGE_LANGUAGE_JS = """() => {
  const known = KNOWN_LOCALES;
  const rtl = RTL_LOCALES;
  for (const wanted of navigator.languages || [navigator.language || "en"]) {
    const code = wanted.toLowerCase();
    const hit = known.find((k) => k.toLowerCase() === code)
      || known.find((k) => k.toLowerCase() === code.split("-")[0]);
    if (hit) {
      document.documentElement.lang = hit;
      document.documentElement.dir = rtl.includes(hit) ? "rtl" : "ltr";
      return;
    }
  }
}""".replace("KNOWN_LOCALES", json.dumps(sorted(STRINGS))).replace(
    "RTL_LOCALES", json.dumps(sorted(code for code in STRINGS if languages.is_rtl(code))))


def _t(key: str) -> Any:
    return I18N(key)


def _session_id(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "default"


def _session(runtime: Runtime, request: gr.Request | None) -> Conversation:
    return runtime.sessions.get(_session_id(request))


def voice_status(voice) -> str:
    if not voice.active:
        return ""
    icon = {"listening": "🎙️", "thinking": "💭", "speaking": "🔊"}.get(voice.state, "")
    return f"{icon} " + _t("voice." + voice.state)  # translated in the browser


def _files_of(message: dict | None) -> list[str]:
    files = []
    for item in (message or {}).get("files") or []:
        path = item.get("path") if isinstance(item, dict) else getattr(item, "path", item)
        if path:
            files.append(str(path))
    return files


def locale_of(request: gr.Request | None) -> str:
    """The visitor's UI language, from the browser's Accept-Language header."""
    from app.i18n import locale_from_request

    headers = getattr(request, "headers", None) or {}
    return locale_from_request(headers.get("accept-language"))


def browser_languages_of(request: gr.Request | None) -> tuple[str, ...]:
    """The visitor's languages, from the browser's Accept-Language header: a prior for the answer language."""
    headers = getattr(request, "headers", None) or {}
    return browser_languages(headers.get("accept-language"))


def status_markdown(runtime: Runtime, locale: str = "en") -> str:
    status = runtime.status()
    if status.state == "ready":
        # isolated (FSI…PDI): a model path keeps its own direction inside an Arabic sentence
        return translate("status.ready", locale, model=f"\u2068{runtime.engine.name}\u2069")
    if status.state == "failed":
        return "⚠️ " + translate("status.failed", locale, detail=status.message)
    return "⏳ " + translate("status.loading", locale, detail=status.message, seconds=int(status.elapsed_s))


def build_ui(runtime: Runtime) -> gr.Blocks:
    language_choices = [(_t("language.auto"), "auto")] + [
        (label, tag) for label, tag in languages.choices() if tag != "auto"
    ]

    with gr.Blocks(title="Omnilingo", fill_height=True, analytics_enabled=False) as demo:
        with gr.Row(equal_height=True):
            gr.Markdown("## Omnilingo\n" + _t("app.tagline"), elem_id="title")
            model_status = gr.Markdown(status_markdown(runtime), elem_id="model-status")
        chatbot = gr.Chatbot(
            label=_t("chat.label"),
            elem_id="chat",
            height="62vh",
            buttons=["copy", "copy_all"],
            sanitize_html=True,
            render_markdown=True,
            group_consecutive_messages=False,
            placeholder=_t("chat.empty"),
            feedback_options=None,
        )
        box = gr.MultimodalTextbox(
            elem_id="message",
            placeholder=_t("chat.placeholder"),
            show_label=False,
            file_types=["image", "audio"],
            file_count="multiple",
            sources=["upload", "microphone"],
            submit_btn=True,
            stop_btn=True,
            autofocus=True,
        )
        with gr.Row():
            language = gr.Dropdown(
                choices=language_choices, value="auto", label=_t("language.label"),
                elem_id="language", filterable=True, scale=3,
            )
            speak = gr.Checkbox(value=False, label=_t("speak.label"), elem_id="speak", scale=1,
                                interactive=runtime.tts is not None)
            stop = gr.Button(_t("button.stop"), elem_id="stop", variant="stop", scale=1)
            new = gr.Button(_t("button.new"), elem_id="new-conversation", scale=1)
            download = gr.DownloadButton(_t("button.download"), elem_id="download", scale=1, interactive=False)
        # The conversation also lives in the browser: a reload or a server restart restores it.
        saved = gr.BrowserState(None, storage_key="omnilingo-conversation",
                                secret=state_secret(runtime.settings))
        with gr.Row(equal_height=True):
            voice_toggle = gr.Button(_t("voice.start"), elem_id="voice-toggle", variant="primary", scale=1,
                                     interactive=runtime.tts is not None)
            voice_state = gr.Markdown("", elem_id="voice-state")
        mic = gr.Audio(
            sources=["microphone"], streaming=True, visible=False, elem_id="voice-mic",
            label=_t("voice.mic_label"), type="numpy",
        )
        utterance_signal = gr.Number(value=0, visible=False, elem_id="utterance-signal")
        barge_signal = gr.Number(value=0, visible=False, elem_id="barge-signal")
        answer_audio = gr.Audio(
            label=_t("audio.label"), elem_id="answer-audio", streaming=True, autoplay=True,
            interactive=False,
        )

        # -- handlers --------------------------------------------------------------------
        def view(conversation: Conversation, request: gr.Request | None) -> list[dict]:
            return render.chat_messages(conversation, locale_of(request), can_speak=runtime.tts is not None)

        def add_user_turn(message: dict, language_value: str, request: gr.Request):
            conversation = _session(runtime, request)
            if conversation.busy:
                raise gr.Error(translate("error.busy", locale_of(request)), print_exception=False)
            try:
                turn = conversation.prepare((message or {}).get("text", ""), _files_of(message), language_value,
                                            browser=browser_languages_of(request))
            except UserFacingError as err:
                # gr.Error leaves the textbox as it was: the message and its files are kept.
                raise gr.Error(translate_error(err, locale_of(request)), print_exception=False) from None
            conversation.add(turn)
            return gr.MultimodalTextbox(value=None, interactive=False), view(conversation, request)

        def stream_answer(speak_value: bool, request: gr.Request):
            conversation = _session(runtime, request)
            turn = conversation.last()
            busy = gr.MultimodalTextbox(interactive=False)
            if turn is None or turn.status != "pending":
                yield view(conversation, request), gr.MultimodalTextbox(interactive=True), gr.skip()
                return
            while runtime.status().state == "loading":
                yield view(conversation, request), busy, gr.skip()
                time.sleep(0.5)
            try:
                runtime.require_model()
                voice = runtime.voice_session(_session_id(request))
                voice.answering(turn.generation)
                speak_it = bool(speak_value) or voice.active
                last = 0.0
                while turn is not None:
                    for event in answer_aloud(conversation, turn, runtime.tts, speak_it):
                        if event.kind == "audio":
                            audio = event.chunk.audio
                            voice.played(audio.samples, audio.sample_rate)
                            yield view(conversation, request), busy, event.chunk.wav_bytes()
                            continue
                        now = time.monotonic()
                        if now - last >= STREAM_INTERVAL_S:
                            last = now
                            yield view(conversation, request), busy, gr.skip()
                    # The answer drifted to another language: ask once more, firmly, when the user wants it.
                    turn = conversation.auto_retry(turn) if runtime.settings.auto_retry_language else None
            except UserFacingError as err:
                turn.status, turn.error, turn.error_key, turn.error_params = "error", err.message, err.key, err.params
            runtime.voice_session(_session_id(request)).finished(conversation.generation)
            yield view(conversation, request), gr.MultimodalTextbox(interactive=True), gr.skip()

        def toggle_voice(request: gr.Request):
            voice = runtime.voice_session(_session_id(request))
            if voice.active:
                voice.stop()
                return gr.Button(value=_t("voice.start")), gr.Audio(visible=False), voice_status(voice)
            voice.start()
            return gr.Button(value=_t("voice.stop")), gr.Audio(visible=True), voice_status(voice)

        def on_mic(chunk, language_value: str, request: gr.Request):
            """Each ~0.25 s of microphone audio: VAD, barge-in, and the end of an utterance."""
            session_id = _session_id(request)
            voice = runtime.voice_session(session_id)
            utterance, barged = gr.skip(), gr.skip()
            if chunk is not None and voice.active:
                sample_rate, samples = chunk
                for event in voice.hear(samples, sample_rate):
                    if event.kind == "barge_in":
                        barged = voice.barge_ins
                    elif event.kind == "utterance":
                        conversation = runtime.sessions.get(session_id)
                        path = voice.save_utterance(event.audio, conversation.session_dir)
                        try:
                            turn = conversation.add(conversation.prepare(
                                "", [str(path)], language_value, browser=browser_languages_of(request)))
                            utterance = turn.id
                        except UserFacingError as err:
                            gr.Warning(err.message)
            return voice_status(voice), utterance, barged

        def listen(turn_id: int, conversation: Conversation):
            """Play one earlier answer again."""
            turn = next((t for t in conversation.turns if t.id == turn_id), None)
            if turn is None or not turn.answer or runtime.tts is None:
                return
            try:
                yield from runtime.tts.speak(turn.answer, turn.answer_language)
            except UserFacingError as err:
                gr.Warning(err.message)

        def stop_answer(request: gr.Request):
            _session(runtime, request).stop()

        def new_conversation(request: gr.Request):
            _session(runtime, request).clear()
            return [], gr.MultimodalTextbox(value=None, interactive=True)

        def save_conversation(request: gr.Request):
            """After each answer: the copy kept in the browser, and the download (Markdown+pictures zip)."""
            conversation = _session(runtime, request)
            if not conversation.turns:
                return None, gr.DownloadButton(value=None, interactive=False)
            zipped, _ = transcript.write_downloads(conversation)
            return transcript.for_browser(conversation), gr.DownloadButton(value=str(zipped), interactive=True)

        def restore_conversation(saved_value, request: gr.Request):
            """A reloaded page: the conversation comes back from the browser's copy."""
            conversation = _session(runtime, request)
            if saved_value and not conversation.turns:
                try:
                    transcript.restore(conversation, saved_value)
                except UserFacingError as err:
                    gr.Warning(err.message)
            download_value = None
            if conversation.turns:
                download_value = str(transcript.write_downloads(conversation)[0])
            return view(conversation, request), gr.DownloadButton(value=download_value,
                                                                  interactive=download_value is not None)

        def choose_option(event: gr.SelectData, request: gr.Request):
            """Options under an answer: "answer again in <language>" and "listen"."""
            conversation = _session(runtime, request)
            value = str(getattr(event, "value", "") or "")
            action, _, turn_id = value.partition(":")
            if action == "listen" and turn_id.isdigit():
                import io

                import soundfile as sf

                for chunk in listen(int(turn_id), conversation):
                    buffer = io.BytesIO()
                    sf.write(buffer, chunk.samples, chunk.sample_rate, format="WAV", subtype="PCM_16")
                    yield view(conversation, request), buffer.getvalue()
                return
            if action == "retry" and turn_id.isdigit() and not conversation.busy:
                try:
                    conversation.retry_in_language(int(turn_id))
                except StopIteration:
                    pass
            yield view(conversation, request), gr.skip()

        def refresh_status(request: gr.Request):
            state = runtime.status().state
            return status_markdown(runtime, locale_of(request)), gr.Timer(active=state == "loading")

        # -- wiring --------------------------------------------------------------------
        # Undocumented but callable: tests and scripts drive the chat exactly as the page does.
        submitted = box.submit(
            add_user_turn, [box, language], [box, chatbot], api_name="send_message",
            api_visibility="undocumented", queue=False,
        )
        submitted.success(
            stream_answer, [speak], [chatbot, box, answer_audio], api_name="stream_answer", api_visibility="undocumented",
            concurrency_id="model",
            concurrency_limit=runtime.model_concurrency,
        ).then(save_conversation, None, [saved, download], api_visibility="private", queue=False)
        box.stop(stop_answer, None, None, api_visibility="private", queue=False, js=PAUSE_AUDIO_JS)
        stop.click(stop_answer, None, None, api_name="stop", api_visibility="undocumented", queue=False,
                   js=PAUSE_AUDIO_JS)
        new.click(new_conversation, None, [chatbot, box], api_name="new_conversation",
                  api_visibility="undocumented", queue=False).then(
            save_conversation, None, [saved, download], api_visibility="private", queue=False)
        chatbot.option_select(choose_option, None, [chatbot, answer_audio], api_visibility="private").then(
            stream_answer, [speak], [chatbot, box, answer_audio], api_visibility="private", concurrency_id="model",
            concurrency_limit=runtime.model_concurrency,
        ).then(save_conversation, None, [saved, download], api_visibility="private", queue=False)

        voice_toggle.click(
            toggle_voice, None, [voice_toggle, mic, voice_state], api_visibility="private", queue=False,
            js=STOP_MIC_JS,
        ).then(None, None, None, js=START_MIC_JS, api_visibility="private", queue=False)
        mic.stream(
            on_mic, [mic, language], [voice_state, utterance_signal, barge_signal], api_visibility="private",
            stream_every=MIC_CHUNK_S, time_limit=3600, concurrency_limit=None, concurrency_id="microphone",
        )
        # A barge-in silences what the browser already buffered, at once, in the page.
        barge_signal.change(None, None, None, js=PAUSE_AUDIO_JS, api_visibility="private", queue=False)
        utterance_signal.change(
            lambda: True, None, speak, api_visibility="private", queue=False,
        ).then(
            stream_answer, [speak], [chatbot, box, answer_audio], api_visibility="private",
            concurrency_id="model", concurrency_limit=runtime.model_concurrency,
        ).then(save_conversation, None, [saved, download], api_visibility="private", queue=False)

        timer = gr.Timer(1.0, active=runtime.status().state == "loading")
        timer.tick(refresh_status, None, [model_status, timer], api_visibility="private", queue=False)
        demo.load(refresh_status, None, [model_status, timer], api_visibility="private", queue=False)
        demo.load(restore_conversation, [saved], [chatbot, download], api_visibility="private", queue=False)

        # -- the API endpoint --------------------------------------------------------------
        api_message = gr.Textbox(visible=False)
        api_files = gr.File(file_count="multiple", visible=False)
        api_language = gr.Textbox(value="auto", visible=False)
        api_result = gr.JSON(visible=False)
        api_button = gr.Button(visible=False)

        def chat_api(message: str, files: list[str] | None, language_value: str | None,
                     request: gr.Request) -> dict:
            """Ask Omnilingo one question (text, optional images); returns the answer and the language.

            The request's Accept-Language header is a prior for the answer language, as on the page."""
            return answer_once(runtime, message or "", [str(f) for f in files or []], language_value or "auto",
                               browser=browser_languages_of(request))

        api_button.click(
            chat_api, [api_message, api_files, api_language], api_result,
            api_name="chat", concurrency_id="model", concurrency_limit=runtime.model_concurrency,
        )

    @demo.unload
    def _drop_session(request: gr.Request = None) -> None:  # type: ignore[assignment]
        if request is not None and getattr(request, "session_hash", None):
            runtime.drop_session(request.session_hash)

    return demo


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
        return result
    except UserFacingError as err:
        return {"error": err.message, "error_key": err.key}
    except Exception:  # the API never hands a traceback to a caller
        log.exception("chat API failed")
        return {"error": translate("error.generic"), "error_key": "error.generic"}
    finally:
        conversation.close()


def launch_kwargs(runtime: Runtime) -> dict[str, Any]:
    settings = runtime.settings
    kwargs: dict[str, Any] = {
        "server_name": settings.host,
        "server_port": settings.port,
        "share": settings.share,
        "max_file_size": f"{settings.max_upload_mb}mb",
        "i18n": I18N,
        "js": PAGE_LANGUAGE_JS,
        "css_paths": [ASSETS / "omnilingo.css"],
        "theme": gr.themes.Soft(),
        "favicon_path": ASSETS / "favicon.svg",
        "show_error": True,
    }
    if settings.auth and ":" in settings.auth:
        user, password = settings.auth.split(":", 1)
        kwargs["auth"] = (user, password)
    return kwargs
