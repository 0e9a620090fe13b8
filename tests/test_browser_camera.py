"""The camera in voice mode, in a real browser at a phone's size (390×844).

Chromium's fake camera shows a corpus photo (a y4m file made at test time) and its fake microphone
says a French question. The page must ask for the camera only when the user turns it on, prefer the
back camera, keep the voice and camera buttons on screen without scrolling, and send the camera's
picture with each spoken turn while it is on, and none once it is off.
"""

from __future__ import annotations

import json
import subprocess
import time

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import sync_playwright

from tests import browser_helpers as bh
from tests.support import free_port, launched

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not bh.have_chromium(), reason=f"chromium is not installed ({bh.CHROMIUM} not found)"),
]

PHONE = {"width": 390, "height": 844}
PHOTO = "images/easy_french.jpg"
# Every getUserMedia call the page makes, with its constraints.
MEDIA_REQUESTS_JS = """
(() => {
  window.__requests = [];
  const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = (constraints) => {
    window.__requests.push(JSON.stringify(constraints));
    return original(constraints);
  };
})();
"""


@pytest.fixture(scope="module")
def app(tiny_dir):
    from backend.settings import Settings

    settings = Settings(
        model=str(tiny_dir / "gemma4"), asr_model=str(tiny_dir / "whisper"), device="cpu",
        port=free_port(), inbrowser=False, max_new_tokens=12, tts_engine="espeak",
    )
    with launched(settings) as app:
        yield app


@pytest.fixture(scope="module")
def browser(tmp_path_factory, corpus):
    """A phone-sized chromium whose camera films a corpus photo and whose microphone asks a question
    every few seconds (the fake file loops)."""
    folder = tmp_path_factory.mktemp("fake-devices")
    camera = folder / "camera.y4m"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-loop", "1", "-i", str(corpus / PHOTO),
                    "-t", "1", "-r", "10", "-vf", "scale=640:480,format=yuv420p", str(camera)],
                   check=True, capture_output=True, timeout=60)
    microphone = bh.mic_wav(folder / "question.wav", [0.3, corpus / "speech" / "sr_french.aiff", 6.0])
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=bh.CHROMIUM, headless=True,
            args=[*bh.CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={microphone}",
                  f"--use-file-for-fake-video-capture={camera}"],
        )
        yield browser
        browser.close()


@pytest.fixture()
def phone(browser, app):
    context = browser.new_context(permissions=["microphone", "camera"], viewport=PHONE, is_mobile=True,
                                  has_touch=True, device_scale_factor=2)
    page = context.new_page()
    page.add_init_script(MEDIA_REQUESTS_JS)
    page.goto(app[1])
    page.wait_for_selector("#message textarea")
    page.wait_for_function("() => (document.querySelector('#model-status')?.innerText || '').includes('ready')",
                           timeout=60_000)
    yield page
    context.close()


def _requests(page) -> list[dict]:
    return [json.loads(r) for r in page.evaluate("() => window.__requests")]


def _on_screen_and_pressable(page, selector: str) -> bool:
    """Inside the viewport as the page opens (no scrolling), and the topmost thing where it is."""
    return page.evaluate("""(s) => {
      const r = document.querySelector(s).getBoundingClientRect();
      if (r.top < 0 || r.bottom > window.innerHeight || r.left < 0 || r.right > window.innerWidth) { return false; }
      const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
      return !!(hit && hit.closest(s));
    }""", selector)


def test_on_a_phone_the_voice_and_camera_buttons_show_without_scrolling(phone):
    assert phone.evaluate("() => window.scrollY") == 0
    assert phone.evaluate("() => document.documentElement.scrollHeight") > PHONE["height"]  # the page is taller
    assert _on_screen_and_pressable(phone, "#voice-toggle")
    assert _on_screen_and_pressable(phone, "#camera-toggle")
    time.sleep(1.0)
    assert _requests(phone) == [], "the page asked for a device before the user turned one on"


def _user_turn_images(page) -> list[str]:
    return page.eval_on_selector_all("#chat [data-testid='user'] img", "els => els.map(e => e.src)")


def test_camera_on_sends_the_picture_with_the_spoken_question(phone, app, corpus):
    runtime = app[0]
    phone.click("#camera-toggle")
    bh.wait_for(lambda: _requests(phone), 20, what="the camera to be asked for")
    video = [r["video"] for r in _requests(phone) if r.get("video")]
    assert video and video[0]["facingMode"] == {"ideal": "environment"}  # the back camera on a phone
    assert "Camera off" in phone.inner_text("#camera-toggle")
    bh.wait_for(lambda: any(feed.latest() for feed in runtime._cameras.values()), 60,
                what="the camera's pictures to reach the server")

    phone.click("#voice-toggle")
    bh.wait_for(lambda: _user_turn_images(phone), 120, what="a spoken turn with the camera's picture")
    bh.wait_for(lambda: any(t.strip() and t.strip() != "…" for t in bh.bot_texts(phone)), 120,
                what="the answer")

    # on the server: the turn holds the recording and one picture, and it is the photo the camera films
    turns = [t for c in runtime.sessions._sessions.values() for t in c.turns if t.audio_path]
    assert turns and len(turns[0].image_paths) == 1
    seen = np.asarray(Image.open(turns[0].image_paths[0]).convert("RGB").resize((64, 48)), dtype=np.float32)
    photo = np.asarray(Image.open(corpus / PHOTO).convert("RGB").resize((64, 48)), dtype=np.float32)
    assert np.abs(seen - photo).mean() < 25, "the picture sent is not what the camera shows"

    # camera off: the next spoken turn carries no picture
    phone.click("#camera-toggle")
    asked = len(turns)
    bh.wait_for(lambda: len([t for c in runtime.sessions._sessions.values() for t in c.turns if t.audio_path])
                > asked, 120, what="another spoken turn")
    later = [t for c in runtime.sessions._sessions.values() for t in c.turns if t.audio_path][asked:]
    assert later and later[0].image_paths == []
    phone.click("#voice-toggle")
