"""Helpers for the browser tests: fake-microphone WAVs, a headless chromium, and page probes."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
MIC_RATE = 48000

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]

# Records what the page's answer player (assets/answer_player.js) does: its media-like events.
MEDIA_PROBE_JS = """
(() => {
  window.__media = [];
  const mine = (el) => el && el.closest && el.closest('#answer-player');
  for (const kind of ['play', 'playing', 'pause', 'ended', 'emptied']) {
    document.addEventListener(kind, (e) => {
      if (mine(e.target)) {
        window.__media.push({kind, t: performance.now(), ended: kind === 'ended'});
      }
    }, true);
  }
})();
"""

ANSWER_AUDIO_STATE_JS = "() => window.omnilingoPlayer ? window.omnilingoPlayer.state() : null"


def have_chromium() -> bool:
    return Path(CHROMIUM).is_file()


def mic_wav(out: Path, parts: list[Path | float]) -> Path:
    """A 48 kHz mono WAV for chromium's fake microphone: recordings (any format sox reads)
    and pauses (seconds of silence), one after the other."""
    sox = shutil.which("sox")
    if sox is None:
        raise RuntimeError("sox is needed to build the fake microphone's recording")
    pieces = []
    for i, part in enumerate(parts):
        piece = out.parent / f"{out.stem}-part{i}.wav"
        if isinstance(part, (int, float)):
            cmd = [sox, "-n", "-r", str(MIC_RATE), "-c", "1", "-b", "16", str(piece), "trim", "0", str(part)]
        else:
            cmd = [sox, str(part), "-r", str(MIC_RATE), "-c", "1", "-b", "16", str(piece)]
        subprocess.run(cmd, check=True, capture_output=True)
        pieces.append(str(piece))
    subprocess.run([sox, *pieces, str(out)], check=True, capture_output=True)
    for piece in pieces:
        Path(piece).unlink(missing_ok=True)
    return out


def launch_browser(playwright, microphone_wav: Path | None = None):
    args = list(CHROMIUM_ARGS)
    if microphone_wav is not None:
        args.append(f"--use-file-for-fake-audio-capture={microphone_wav}")
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)


def open_page(browser, url: str, locale: str = "en-US"):
    """A fresh tab (its own Gradio session) with the microphone allowed and labels in ``locale``."""
    context = browser.new_context(permissions=["microphone"], locale=locale,
                                  extra_http_headers={"Accept-Language": locale})
    page = context.new_page()
    page.add_init_script(MEDIA_PROBE_JS)
    page.dialogs = []
    page.console_errors = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.on("console", lambda msg: page.console_errors.append(msg.text) if msg.type == "error" else None)
    page.goto(url)
    page.wait_for_selector("#message textarea")
    # "Model ready: …" in the page's language: no loading hourglass, no warning sign
    page.wait_for_function("() => { const t = document.querySelector('#model-status')?.innerText || '';"
                           " return t.trim() !== '' && !t.includes('⏳') && !t.includes('⚠'); }",
                           timeout=60_000)
    return page


def wait_for(condition: Callable[[], object], timeout: float = 30.0, interval: float = 0.1, what: str = "") -> object:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or condition}")
        time.sleep(interval)


def bot_texts(page) -> list[str]:
    return page.eval_on_selector_all("#chat [data-testid='bot']", "els => els.map(e => e.innerText)")


def user_texts(page) -> list[str]:
    return page.eval_on_selector_all("#chat [data-testid='user']", "els => els.map(e => e.innerText)")


def answer_audio(page) -> dict | None:
    return page.evaluate(ANSWER_AUDIO_STATE_JS)


def media_events(page) -> list[dict]:
    return page.evaluate("() => window.__media || []")


def choose_language(page, label: str) -> None:
    """Pick an entry of the language dropdown by its exact label."""
    page.click("#language input")
    page.fill("#language input", label.split(" ")[0])
    page.get_by_role("option", name=label, exact=True).click()
    wait_for(lambda: page.input_value("#language input") == label, 5, what=f"language {label}")
