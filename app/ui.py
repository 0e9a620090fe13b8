"""The Gradio web UI: the page's layout, its events wired to app/handlers.py, and launch options.

Chat, images, language, stop, voice, and the /chat API endpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gradio as gr

from app import mic
from app.handlers import ChatController, status_markdown
from app.i18n import I18N, STRINGS
from backend.conversation.camera import CAMERA_EVERY_S
from backend.language import scripts, table
from backend.runtime import Runtime
from backend.settings import state_secret

# The UI's static files: assets/ in the repository, app/assets once installed with pip.
ASSETS = next(
    (p for p in (Path(__file__).resolve().parent.parent / "assets", Path(__file__).resolve().parent / "assets")
     if (p / "omnilingo.css").exists()),
    Path(__file__).resolve().parent.parent / "assets",
)
# Voice mode's microphone (assets/mic_stream.js): the voice button's handler hands the page its
# stream's address; none turns the microphone off, and silences the answer.
VOICE_MIC_JS = """(config) => {
  if (!config) { window.omnilingoQuiet(); }
  window.omnilingoMic.start(config);
}"""
# The webcam, like the microphone, starts from its own buttons once on screen: "grant webcam
# access" (the browser's permission prompt comes only now), then the button that starts the stream.
START_CAMERA_JS = """() => {
  const press = (tries) => {
    const root = document.querySelector('#voice-camera');
    if (root && root.getClientRects().length > 0) {  // on screen (a fixed preview has no offsetParent)
      const grant = root.querySelector('[title="grant webcam access"] button');
      if (grant && !root.dataset.asked) { grant.click(); root.dataset.asked = '1'; }
      const video = root.querySelector('video');
      const start = root.querySelector('.button-wrap button');
      if (video && video.srcObject && start) {
        start.click();
        return;
      }
    }
    if (tries > 0) { setTimeout(() => press(tries - 1), 100); }
  };
  setTimeout(() => press(150), 50);
}"""
# Stop also silences what the browser has already buffered.
PAUSE_AUDIO_JS = "() => { window.omnilingoQuiet(); }"
# Each new sentence of a spoken answer goes straight to the page's player (assets/answer_player.js).
PLAY_JS = "(value) => { if (window.omnilingoPlayer) { window.omnilingoPlayer.feed(value); } }"


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
    "RTL_LOCALES", json.dumps(sorted(code for code in STRINGS if scripts.is_rtl(code))))


def _t(key: str) -> Any:
    return I18N(key)


def build_ui(runtime: Runtime) -> gr.Blocks:
    language_choices = [(_t("language.auto"), "auto")] + [
        (label, tag) for label, tag in table.choices() if tag != "auto"
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
            file_types=["image", "audio", "video"],
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
        voice_info = gr.Markdown("", elem_id="voice-info")
        # The conversation also lives in the browser: a reload or a server restart restores it.
        saved = gr.BrowserState(None, storage_key="omnilingo-conversation",
                                secret=state_secret(runtime.settings))
        with gr.Row(equal_height=True, elem_id="voice-row"):
            voice_toggle = gr.Button(_t("voice.start"), elem_id="voice-toggle", variant="primary", scale=1,
                                     interactive=runtime.tts is not None, min_width=0)
            camera_toggle = gr.Button(_t("camera.start"), elem_id="camera-toggle", scale=1, min_width=0)
            gr.HTML("", elem_id="voice-state")  # the voice state line, written by assets/mic_stream.js
        # The back camera on a phone (an ideal, so a laptop's only camera still works); not mirrored,
        # so that writing in the picture reads the right way for the model.
        camera = gr.Image(
            sources=["webcam"], streaming=True, visible=False, elem_id="voice-camera", type="numpy",
            label=_t("camera.label"), height=240,
            webcam_options=gr.WebcamOptions(mirror=False, constraints={
                "video": {"facingMode": {"ideal": "environment"}, "width": {"ideal": 640}, "height": {"ideal": 480}},
            }),
        )
        mic_config = gr.JSON(value=None, visible=False)  # the microphone stream's address and labels (app/mic.py)
        # The page presses it when its microphone stream hands over a turn (app/mic.py).
        voice_turn = gr.Button(visible="hidden", elem_id="voice-turn")
        # Spoken answers: the WAV of each sentence, played by assets/answer_player.js as it arrives.
        answer_audio = gr.JSON(value=None, visible=False, elem_id="answer-voice")

        handlers = ChatController(runtime)

        # -- wiring --------------------------------------------------------------------
        # Undocumented but callable: tests and scripts drive the chat exactly as the page does.
        submitted = box.submit(
            handlers.add_user_turn, [box, language], [box, chatbot], api_name="send_message",
            api_visibility="undocumented", queue=False,
        )
        submitted.success(
            handlers.stream_answer, [speak], [chatbot, box, answer_audio], api_name="stream_answer",
            api_visibility="undocumented", concurrency_id="model", concurrency_limit=runtime.model_concurrency,
        ).then(handlers.save_conversation, None, [saved, download], api_visibility="private", queue=False)
        box.stop(handlers.stop_answer, None, None, api_visibility="private", queue=False, js=PAUSE_AUDIO_JS)
        stop.click(handlers.stop_answer, None, None, api_name="stop", api_visibility="undocumented", queue=False,
                   js=PAUSE_AUDIO_JS)
        new.click(handlers.new_conversation, None, [chatbot, box], api_name="new_conversation",
                  api_visibility="undocumented", queue=False).then(
            handlers.save_conversation, None, [saved, download], api_visibility="private", queue=False)
        chatbot.option_select(handlers.choose_option, None, [chatbot, answer_audio], api_visibility="private").then(
            handlers.stream_answer, [speak], [chatbot, box, answer_audio], api_visibility="private",
            concurrency_id="model", concurrency_limit=runtime.model_concurrency,
        ).then(handlers.save_conversation, None, [saved, download], api_visibility="private", queue=False)

        voice_toggle.click(
            handlers.toggle_voice, [language], [voice_toggle, mic_config, speak], api_visibility="private",
            queue=False,
        ).then(None, [mic_config], None, js=VOICE_MIC_JS, api_visibility="private", queue=False)
        camera_toggle.click(
            handlers.toggle_camera, None, [camera_toggle, camera], api_visibility="private", queue=False,
        ).then(None, None, None, js=START_CAMERA_JS, api_visibility="private", queue=False)
        camera.stream(
            handlers.on_camera, [camera], None, api_visibility="private", stream_every=CAMERA_EVERY_S,
            time_limit=3600, concurrency_limit=None, concurrency_id="camera",
        )
        answer_audio.change(None, [answer_audio], None, js=PLAY_JS, api_visibility="private", queue=False)
        # Straight to the answer: one round trip from the page (voice mode always speaks; the
        # "speak answers" box was ticked when voice mode started).
        voice_turn.click(
            handlers.stream_answer, [speak], [chatbot, box, answer_audio], api_visibility="private",
            concurrency_id="model", concurrency_limit=runtime.model_concurrency,
        ).then(handlers.save_conversation, None, [saved, download], api_visibility="private", queue=False)

        language.change(handlers.choose_language, [language], voice_info, api_visibility="private", queue=False)

        timer = gr.Timer(1.0, active=runtime.status().waiting)
        timer.tick(handlers.refresh_status, None, [model_status, timer], api_visibility="private", queue=False)
        demo.load(handlers.refresh_status, None, [model_status, timer], api_visibility="private", queue=False)
        demo.load(handlers.restore_conversation, [saved], [chatbot, download], api_visibility="private",
                  queue=False)

        # -- the API endpoint --------------------------------------------------------------
        api_message = gr.Textbox(visible=False)
        api_files = gr.File(file_count="multiple", visible=False)
        api_language = gr.Textbox(value="auto", visible=False)
        api_result = gr.JSON(visible=False)
        api_button = gr.Button(visible=False)

        api_button.click(
            handlers.chat_api, [api_message, api_files, api_language], api_result,
            api_name="chat", concurrency_id="model", concurrency_limit=runtime.model_concurrency,
        )

    demo.unload(handlers.drop_session)
    return demo


def launch_kwargs(runtime: Runtime) -> dict[str, Any]:
    settings = runtime.settings
    kwargs: dict[str, Any] = {
        "server_name": settings.host,
        "server_port": settings.port,
        "share": settings.share,
        "max_file_size": f"{settings.max_upload_mb}mb",
        "i18n": I18N,
        "js": PAGE_LANGUAGE_JS,
        "head": "".join(f"<script>{(ASSETS / name).read_text(encoding='utf-8')}</script>"
                        for name in ("answer_player.js", "mic_stream.js")),
        # The page's microphone stream (app/mic.py), ahead of Gradio's own routes.
        "app_kwargs": {"routes": [mic.route(runtime)]},
        "css_paths": [ASSETS / "omnilingo.css"],
        "theme": gr.themes.Soft(),
        "favicon_path": ASSETS / "favicon.svg",
        "show_error": True,
    }
    if settings.auth and ":" in settings.auth:
        user, password = settings.auth.split(":", 1)
        kwargs["auth"] = (user, password)
    return kwargs
