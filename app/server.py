"""Start the web UI for a set of settings and shut it down cleanly."""

from __future__ import annotations

import logging

from backend.runtime import Runtime
from backend.settings import Settings

log = logging.getLogger("omnilingo")


def create_app(settings: Settings, runtime: Runtime | None = None):
    """The Gradio app and its runtime; the model starts loading in the background."""
    from app.ui import build_ui

    runtime = runtime or Runtime(settings)
    runtime.start_loading()
    demo = build_ui(runtime)
    demo.queue(default_concurrency_limit=settings.concurrency)
    return demo, runtime


def _open_window(url: str) -> bool:
    try:
        import webview  # optional extra: pip install pywebview
    except ImportError:
        log.warning("--window needs pywebview (pip install pywebview); opening the browser instead.")
        return False
    try:
        webview.create_window("Omnilingo", url, width=1100, height=850)
        webview.start()
    except Exception as err:  # pywebview present but no GUI backend (no GTK/Qt, no display)
        log.warning("No native window (%s); opening the browser instead.", err)
        return False
    return True


def serve(settings: Settings) -> int:
    from app.ui import launch_kwargs

    demo, runtime = create_app(settings)
    kwargs = launch_kwargs(runtime)
    windowed = settings.window
    try:
        demo.launch(**kwargs, inbrowser=settings.inbrowser and not windowed, prevent_thread_lock=True)
        url = demo.local_url or f"http://{settings.host}:{settings.port}/"
        print(f"Omnilingo is running at {url}  (Ctrl-C to stop)", flush=True)
        if windowed and _open_window(url):
            return 0  # the window was closed
        if windowed:
            import webbrowser

            webbrowser.open(url)
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        log.info("Shutting down…")
        demo.close()
        runtime.close()
    return 0
