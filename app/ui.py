"""The Gradio web UI: chat, images, language, stop, and the /chat API endpoint."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import gradio as gr

from app import render
from app.i18n import STRINGS, translate
from backend import languages
from backend.errors import UserFacingError
from backend.runtime import Runtime
from backend.turns import Conversation

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent / "assets"
# Re-render the chat at most this often while streaming: smooth, without flooding the socket.
STREAM_INTERVAL_S = 0.04


# Labels are translated in the browser, by the visitor's locale (English fallback).
I18N = gr.I18n(**STRINGS)


def _t(key: str) -> Any:
    return I18N(key)


def _session(runtime: Runtime, request: gr.Request | None) -> Conversation:
    session_id = getattr(request, "session_hash", None) or "default"
    return runtime.sessions.get(session_id)


def _files_of(message: dict | None) -> list[str]:
    files = []
    for item in (message or {}).get("files") or []:
        path = item.get("path") if isinstance(item, dict) else getattr(item, "path", item)
        if path:
            files.append(str(path))
    return files


def status_markdown(runtime: Runtime) -> str:
    status = runtime.status()
    if status.state == "ready":
        return translate("status.ready", model=runtime.engine.name)
    if status.state == "failed":
        return "⚠️ " + translate("status.failed", detail=status.message)
    return "⏳ " + translate("status.loading", detail=status.message, seconds=int(status.elapsed_s))


def build_ui(runtime: Runtime) -> gr.Blocks:
    language_choices = [(translate("language.auto"), "auto")] + [
        (label, tag) for label, tag in languages.choices() if tag != "auto"
    ]

    with gr.Blocks(title="Omnilingo", fill_height=True, analytics_enabled=False) as demo:
        with gr.Row(equal_height=True):
            gr.Markdown(f"## {translate('app.title')}\n{translate('app.tagline')}", elem_id="title")
            model_status = gr.Markdown(status_markdown(runtime), elem_id="model-status")
        chatbot = gr.Chatbot(
            label=_t("chat.label"),
            elem_id="chat",
            height="62vh",
            buttons=["copy", "copy_all"],
            sanitize_html=True,
            render_markdown=True,
            group_consecutive_messages=False,
            placeholder=translate("chat.empty"),
            feedback_options=None,
        )
        box = gr.MultimodalTextbox(
            elem_id="message",
            placeholder=translate("chat.placeholder"),
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
            stop = gr.Button(_t("button.stop"), elem_id="stop", variant="stop", scale=1)
            new = gr.Button(_t("button.new"), elem_id="new-conversation", scale=1)

        # -- handlers --------------------------------------------------------------------
        def add_user_turn(message: dict, language_value: str, request: gr.Request):
            conversation = _session(runtime, request)
            if conversation.busy:
                raise gr.Error(translate("error.busy"), print_exception=False)
            try:
                turn = conversation.prepare((message or {}).get("text", ""), _files_of(message), language_value)
            except UserFacingError as err:
                # gr.Error leaves the textbox as it was: the message and its files are kept.
                raise gr.Error(err.message, print_exception=False) from None
            conversation.add(turn)
            return gr.MultimodalTextbox(value=None, interactive=False), render.chat_messages(conversation)

        def stream_answer(request: gr.Request):
            conversation = _session(runtime, request)
            turn = conversation.last()
            if turn is None or turn.status != "pending":
                yield render.chat_messages(conversation), gr.MultimodalTextbox(interactive=True)
                return
            while runtime.status().state == "loading":
                yield render.chat_messages(conversation), gr.MultimodalTextbox(interactive=False)
                time.sleep(0.5)
            try:
                runtime.require_model()
                last = 0.0
                for _ in conversation.answer(turn):
                    now = time.monotonic()
                    if now - last >= STREAM_INTERVAL_S:
                        last = now
                        yield render.chat_messages(conversation), gr.MultimodalTextbox(interactive=False)
            except UserFacingError as err:
                turn.status, turn.error, turn.error_key = "error", err.message, err.key
            yield render.chat_messages(conversation), gr.MultimodalTextbox(interactive=True)

        def stop_answer(request: gr.Request):
            _session(runtime, request).stop()

        def new_conversation(request: gr.Request):
            _session(runtime, request).clear()
            return [], gr.MultimodalTextbox(value=None, interactive=True)

        def retry(event: gr.SelectData, request: gr.Request):
            conversation = _session(runtime, request)
            value = str(getattr(event, "value", "") or "")
            if not value.startswith("retry:") or conversation.busy:
                return render.chat_messages(conversation)
            try:
                conversation.retry_in_language(int(value.split(":", 1)[1]))
            except (StopIteration, ValueError):
                pass
            return render.chat_messages(conversation)

        def refresh_status():
            state = runtime.status().state
            return status_markdown(runtime), gr.Timer(active=state == "loading")

        # -- wiring --------------------------------------------------------------------
        # Undocumented but callable: tests and scripts drive the chat exactly as the page does.
        submitted = box.submit(
            add_user_turn, [box, language], [box, chatbot], api_name="send_message",
            api_visibility="undocumented", queue=False,
        )
        submitted.success(
            stream_answer, None, [chatbot, box], api_name="stream_answer", api_visibility="undocumented",
            concurrency_id="model",
            concurrency_limit=runtime.model_concurrency,
        )
        box.stop(stop_answer, None, None, api_visibility="private", queue=False)
        stop.click(stop_answer, None, None, api_name="stop", api_visibility="undocumented", queue=False)
        new.click(new_conversation, None, [chatbot, box], api_name="new_conversation",
                  api_visibility="undocumented", queue=False)
        chatbot.option_select(retry, None, chatbot, api_visibility="private", queue=False).then(
            stream_answer, None, [chatbot, box], api_visibility="private", concurrency_id="model",
            concurrency_limit=runtime.model_concurrency,
        )

        timer = gr.Timer(1.0, active=runtime.status().state == "loading")
        timer.tick(refresh_status, None, [model_status, timer], api_visibility="private", queue=False)
        demo.load(refresh_status, None, [model_status, timer], api_visibility="private", queue=False)

        # -- the API endpoint --------------------------------------------------------------
        api_message = gr.Textbox(visible=False)
        api_files = gr.File(file_count="multiple", visible=False)
        api_language = gr.Textbox(value="auto", visible=False)
        api_result = gr.JSON(visible=False)
        api_button = gr.Button(visible=False)

        def chat_api(message: str, files: list[str] | None, language_value: str | None) -> dict:
            """Ask Omnilingo one question (text, optional images); returns the answer and the language."""
            return answer_once(runtime, message or "", [str(f) for f in files or []], language_value or "auto")

        api_button.click(
            chat_api, [api_message, api_files, api_language], api_result,
            api_name="chat", concurrency_id="model", concurrency_limit=runtime.model_concurrency,
        )

    @demo.unload
    def _drop_session(request: gr.Request = None) -> None:  # type: ignore[assignment]
        if request is not None and getattr(request, "session_hash", None):
            runtime.sessions.drop(request.session_hash)

    return demo


def answer_once(runtime: Runtime, message: str, files: list[str], language: str = "auto") -> dict:
    """One stateless question for the API: never raises, errors come back as ``{"error": ...}``."""
    conversation = Conversation(runtime.engine, limits=runtime.limits, max_new_tokens=runtime.settings.max_new_tokens)
    try:
        turn = conversation.add(conversation.prepare(message, files, language))
        runtime.require_model(wait_s=600.0)
        for _ in conversation.answer(turn):
            pass
        result = {
            "answer": turn.answer,
            "language": turn.language.tag,
            "language_name": turn.language.name,
            "confidence": round(turn.language.confidence, 4),
            "answer_language": turn.answer_language,
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
        "css_paths": [ASSETS / "omnilingo.css"],
        "theme": gr.themes.Soft(),
        "favicon_path": ASSETS / "favicon.svg",
        "show_error": True,
    }
    if settings.auth and ":" in settings.auth:
        user, password = settings.auth.split(":", 1)
        kwargs["auth"] = (user, password)
    return kwargs
