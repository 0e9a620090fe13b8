"""Whatever people send, they get an answer or a plain message, and their conversation survives.

Every case goes through the launched app exactly as the page drives it (/send_message, then
/stream_answer), in a session that already holds one answered turn. Each case checks:

* no traceback reaches the user, and the message says what was wrong (``rejected``), or the
  input is accepted and handled sensibly (``accepted``: first frame of a GIF, CMYK converted...);
* the conversation the user sees before the bad input is the one they see after it, and a refused
  message leaves no file behind in the session's folder;
* the next ordinary message is answered.

Cases that need the model's own output (surrogates, rendering) also run through Conversation and
app.render, where the page adds nothing.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import subprocess
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from backend.settings import Settings
from tests.support import free_port, launched, make_video, message_files, message_text, png_bomb

SEED_TEXT = "Hello! Please tell me something about the sea."
NEXT_TEXT = "Thank you. And what about the mountains?"
TRACEBACK_SIGNS = ("Traceback", 'File "', "Error:", "Exception")


# --------------------------------------------------------------------------- the app



@pytest.fixture(scope="module")
def app(tiny_dir):
    settings = Settings(
        model=str(tiny_dir / "gemma4"), asr_model=str(tiny_dir / "whisper"), device="cpu", port=free_port(),
        inbrowser=False, max_new_tokens=8, tts_engine="espeak",
    )
    with launched(settings) as app:
        yield app


@pytest.fixture()
def session(app):
    """A fresh browser tab with one answered turn in it."""
    from gradio_client import Client

    runtime, url = app
    client = Client(url, verbose=False)
    history = _send(client, SEED_TEXT)
    assert history[-1]["role"] == "assistant"
    yield Session(runtime, client, history)
    runtime.drop_session(client.session_hash)


@dataclass
class Session:
    runtime: object
    client: object
    history: list  # what the page shows after the seed turn

    @property
    def conversation(self):
        return self.runtime.sessions.get(self.client.session_hash)


def _send(client, text: str, files: list[str] = (), language: str = "auto", speak: bool = False) -> list:
    """One message as the page sends it: returns the chat after the answer streamed."""
    from gradio_client import handle_file

    client.predict({"text": text, "files": [handle_file(f) for f in files]}, language, api_name="/send_message")
    job = client.submit(speak, api_name="/stream_answer")
    list(job)
    return job.outputs()[-1][0]


def _snapshot(conversation) -> tuple:
    turns = [(t.id, t.text, tuple(t.image_paths), t.audio_path, t.answer, t.status) for t in conversation.turns]
    return turns, sorted(p.name for p in conversation.session_dir.iterdir())


def _assert_still_answers(session: Session) -> list:
    history = _send(session.client, NEXT_TEXT)
    # the seed turn, exactly as the page showed it before the bad input
    assert history[: len(session.history)] == session.history
    assert NEXT_TEXT in message_text(history[-2])
    last = session.conversation.last()
    assert last.text == NEXT_TEXT and last.status == "done" and last.answer
    return history


def _assert_plain(message: str) -> None:
    assert message
    for sign in TRACEBACK_SIGNS:
        assert sign not in message, message


# --------------------------------------------------------------------------- building bad files


def _png(path: Path, size=(64, 48), color=(200, 30, 30), mode="RGB") -> Path:
    Image.new(mode, size, color).save(path, "PNG")
    return path


def _noise_image(path: Path, fmt: str, size=(200, 150)) -> Path:
    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, fmt)
    return path


def _truncated(tmp: Path, fmt: str) -> list[str]:
    full = _noise_image(tmp / f"full.{fmt.lower()}", fmt)
    cut = tmp / f"photo.{fmt.lower()}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    return [str(cut)]


def _png_bomb(tmp: Path, side: int = 30_000) -> list[str]:
    path = png_bomb(tmp / "bomb.png", side)
    assert path.stat().st_size < 1_000_000
    return [str(path)]


def _big_png(tmp: Path, megabytes: int = 51) -> list[str]:
    """A PNG over the upload limit, written without compression (fast) and deleted by tmp_path."""
    side = int(math.sqrt(megabytes * 2**20 / 3)) + 1

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + os.urandom(side * 3)
    comp = zlib.compressobj(0)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path = tmp / "huge.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    assert path.stat().st_size > megabytes * 2**20
    return [str(path)]


def _animated_gif(tmp: Path) -> list[str]:
    frames = [Image.new("RGB", (40, 30), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    path = tmp / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return [str(path)]


def _cmyk(tmp: Path) -> list[str]:
    path = tmp / "print.jpg"
    Image.new("CMYK", (60, 40), (0, 255, 255, 0)).save(path, "JPEG")  # cyan-free, magenta+yellow: red
    return [str(path)]


def _sixteen_bit(tmp: Path) -> list[str]:
    arr = np.tile(np.linspace(0, 65535, 64, dtype=np.uint16), (32, 1))
    path = tmp / "scan16.png"
    Image.fromarray(arr, "I;16").save(path)
    return [str(path)]


def _exif_rotated(tmp: Path) -> list[str]:
    img = Image.new("RGB", (80, 40), (10, 120, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to view
    path = tmp / "phone.jpg"
    img.save(path, "JPEG", exif=exif)
    return [str(path)]


def _named(tmp: Path, name: str, content: bytes) -> list[str]:
    path = tmp / name
    path.write_bytes(content)
    return [str(path)]


SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><rect width="9" height="9"/></svg>'
HTML = b"<!DOCTYPE html><html><body><script>alert('x')</script><img src=x onerror=alert(1)></body></html>"


def _many_images(tmp: Path, count: int) -> list[str]:
    return [str(_png(tmp / f"dot{i:03d}.png", (8, 8), (i % 256, 0, 0))) for i in range(count)]


def _wav(tmp: Path, name: str, samples: np.ndarray, rate: int = 16_000, subtype: str = "PCM_16") -> list[str]:
    path = tmp / name
    sf.write(path, samples, rate, subtype=subtype)
    return [str(path)]


def _wav_header_only(tmp: Path) -> list[str]:
    fmt = struct.pack("<HHIIHH", 1, 1, 16_000, 32_000, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", 0)
    return _named(tmp, "empty.wav", b"RIFF" + struct.pack("<I", len(body)) + body)


def _wav_unknown_codec(tmp: Path) -> list[str]:
    payload = b"\x01\x02" * 8000
    fmt = struct.pack("<HHIIHH", 0x1234, 1, 16_000, 32_000, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(payload)) + payload
    return _named(tmp, "strange.wav", b"RIFF" + struct.pack("<I", len(body)) + body)


def _hour_long(tmp: Path) -> list[str]:
    """One hour of near-silence at 8 kHz as FLAC: a few hundred KB, written in blocks."""
    path = tmp / "meeting.flac"
    block = np.zeros(8000 * 60, dtype=np.int16)
    with sf.SoundFile(path, "w", samplerate=8000, channels=1, subtype="PCM_16", format="FLAC") as f:
        for _ in range(60):
            f.write(block)
    return [str(path)]


def _speech(corpus: Path) -> Path:
    return corpus / "speech" / "sr_english.wav"


def _mp3_with_video(tmp: Path, corpus: Path) -> list[str]:
    path = tmp / "song.mp3"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=5",
         "-i", str(_speech(corpus)), "-shortest", "-c:v", "mpeg4", "-c:a", "libmp3lame", "-f", "mp4", str(path)],
        check=True, capture_output=True, timeout=120,
    )
    return [str(path)]


def _eight_channels_96k(tmp: Path, corpus: Path) -> list[str]:
    mono, rate = sf.read(_speech(corpus), dtype="float32")
    if mono.ndim > 1:
        mono = mono.mean(axis=1)
    import soxr

    up = soxr.resample(mono, rate, 96_000)
    return _wav(tmp, "studio.wav", np.repeat(up[:, None], 8, axis=1), 96_000)


# --------------------------------------------------------------------------- the matrix


@dataclass
class Case:
    name: str
    build: Callable[[Path, Path], list[str]]  # (tmp_path, corpus) -> files
    text: str = "What is in this file?"
    expect: str = "rejected"  # rejected | accepted | noted
    message: str = ""  # for rejected: part of the message shown; for noted: part of the note
    check: Callable | None = None  # for accepted: check(turn, history)
    language: str = "auto"


def _first_image(turn) -> Image.Image:
    from backend import media

    assert len(turn.image_paths) == 1
    return media.load_image(turn.image_paths[0])


def _check_first_frame(turn, history):
    img = _first_image(turn)
    assert img.getpixel((5, 5))[0] > 200 and img.getpixel((5, 5))[1] < 60  # red: the first frame


def _check_cmyk(turn, history):
    img = _first_image(turn)
    assert img.mode == "RGB" and img.size == (60, 40)
    r, g, b = img.getpixel((30, 20))
    assert r > 180 and g < 80 and b < 80


def _check_16bit(turn, history):
    img = _first_image(turn)
    row = [img.getpixel((x, 10))[0] for x in (0, 32, 63)]
    assert row[0] < 10 and 100 < row[1] < 160 and row[2] > 245  # a gradient, not a white sheet


def _check_upright(turn, history):
    assert _first_image(turn).size == (40, 80)


def _check_kept_as(suffix: str):
    def check(turn, history):
        assert len(turn.image_paths) == 1 and turn.image_paths[0].endswith(suffix)
        assert message_files(history[-2])  # the picture is shown in the chat
    return check


def _check_recording(turn, history):
    info = sf.info(turn.audio_path)
    assert info.samplerate == 16_000 and info.channels == 1
    assert Path(turn.audio_path).name.startswith("audio-")
    assert turn.status in {"done", "no_speech"}


def _check_video_with_sound(turn, history):
    _check_recording(turn, history)
    assert turn.video_path and turn.frame_paths
    # the video plays in the chat, with its sound (Gradio serves a copy of the file)
    assert [Path(p).name for p in message_files(history[-2])] == [Path(turn.video_path).name]


def _check_video_without_sound(turn, history):
    assert turn.video_path and turn.frame_paths and turn.audio_path is None and turn.transcript is None
    assert [Path(p).name for p in message_files(history[-2])] == [Path(turn.video_path).name]


def _truncated_video(tmp: Path, corpus: Path) -> list[str]:
    """The first half of a video with sound: refused plainly, or answered from what decodes."""
    whole = make_video(tmp / "whole.mp4", 2, sound=_speech(corpus)).read_bytes()
    (tmp / "whole.mp4").unlink()
    return _named(tmp, "clip.mp4", whole[: len(whole) // 2])


def _check_image_and_audio(turn, history):
    assert len(turn.image_paths) == 1 and turn.audio_path


CASES = [
    # images
    Case("truncated_png", lambda t, c: _truncated(t, "PNG"), message="damaged or incomplete"),
    Case("truncated_jpeg", lambda t, c: _truncated(t, "JPEG"), message="damaged or incomplete"),
    Case("zero_byte_image", lambda t, c: _named(t, "photo.png", b""), message="is empty"),
    Case("png_named_jpg", lambda t, c: [str(_png(t / "holiday.jpg"))], expect="accepted", check=_check_kept_as(".png")),
    Case("png_named_wav", lambda t, c: [str(_png(t / "voice.wav"))], expect="accepted", check=_check_kept_as(".png")),
    Case("decompression_bomb", lambda t, c: _png_bomb(t), message="too large"),
    Case("over_pixel_limit", lambda t, c: _png_bomb(t, side=9_000), message="9000×9000 pixels"),
    Case("animated_gif", lambda t, c: _animated_gif(t), expect="accepted", check=_check_first_frame),
    Case("cmyk_jpeg", lambda t, c: _cmyk(t), expect="accepted", check=_check_cmyk),
    Case("sixteen_bit_png", lambda t, c: _sixteen_bit(t), expect="accepted", check=_check_16bit),
    Case("exif_rotated", lambda t, c: _exif_rotated(t), expect="accepted", check=_check_upright),
    Case("webp", lambda t, c: [str(_noise_image(t / "pic.webp", "WEBP"))], expect="accepted",
         check=_check_kept_as(".webp")),
    Case("svg_as_png", lambda t, c: _named(t, "logo.png", SVG), message="not a picture"),
    Case("html_as_jpg", lambda t, c: _named(t, "cat.jpg", HTML), message="not a picture"),
    Case("text_as_png", lambda t, c: _named(t, "photo.png", b"just some words, not a picture\n"),
         message="neither an image, a recording nor a video"),
    Case("nine_images", lambda t, c: _many_images(t, 9), message="the limit is 8"),
    Case("hundred_images", lambda t, c: _many_images(t, 100), message="Too many images in one message (100"),
    # refused by Gradio's max_file_size at upload, before Omnilingo sees it
    Case("over_upload_limit", lambda t, c: _big_png(t), message="exceeds the maximum file size"),
    Case("one_pixel", lambda t, c: [str(_png(t / "dot.png", (1, 1)))], expect="accepted",
         check=_check_kept_as(".png")),
    # audio
    Case("zero_byte_audio", lambda t, c: _named(t, "voice.wav", b""), message="is empty"),
    Case("wav_header_only", lambda t, c: _wav_header_only(t), message="contains no sound"),
    Case("nan_samples", lambda t, c: _wav(t, "nan.wav", np.full(16_000, np.nan, np.float32), subtype="FLOAT"),
         message="invalid sample values"),
    Case("inf_samples", lambda t, c: _wav(t, "inf.wav", np.full(16_000, np.inf, np.float32), subtype="FLOAT"),
         message="invalid sample values"),
    Case("eight_channels_96k", _eight_channels_96k, expect="accepted", check=_check_recording),
    Case("one_hour", lambda t, c: _hour_long(t), message="too long"),
    Case("pure_silence", lambda t, c: _wav(t, "quiet.wav", np.zeros(48_000, np.float32)), text="",
         expect="noted", message="did not catch that"),
    Case("clipped_noise", lambda t, c: _wav(t, "loud.wav", np.sign(np.random.default_rng(3).standard_normal(32_000))
                                           .astype(np.float32)), expect="accepted", check=_check_recording),
    Case("text_named_wav", lambda t, c: _named(t, "memo.wav", b"Dear diary,\nnot a recording at all.\n"),
         message="text file, not a recording"),
    Case("mp3_with_video", _mp3_with_video, expect="accepted", check=_check_video_with_sound),
    Case("unsupported_codec", lambda t, c: _wav_unknown_codec(t), message="cannot decode"),
    Case("two_recordings", lambda t, c: _wav(t, "a.wav", np.zeros(8000, np.float32))
         + _wav(t, "b.wav", np.zeros(8000, np.float32)), message="one recording or video at a time"),
    Case("image_and_recording", lambda t, c: [str(_png(t / "a.png")), str(_speech(c))], expect="accepted",
         check=_check_image_and_audio),
    # video
    Case("corrupt_mp4", lambda t, c: _named(t, "clip.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40),
         message="not a video Omnilingo can read"),
    Case("truncated_mp4", _truncated_video, message="clip.mp4"),
    Case("zero_byte_video", lambda t, c: _named(t, "clip.mp4", b""), message="is empty"),
    Case("huge_resolution_video", lambda t, c: [str(make_video(t / "big.mp4", 0.2, size=(4400, 2200)))],
         message="4400×2200"),
    Case("one_hour_video", lambda t, c: [str(make_video(t / "film.mp4", 3600, size=(16, 16), fps=0.2))],
         message="is too long (60:00 min"),
    Case("silent_video", lambda t, c: [str(make_video(t / "quiet.webm", 1))], expect="accepted",
         check=_check_video_without_sound),
    Case("video_and_recording", lambda t, c: [str(make_video(t / "v.mp4", 1)), str(_speech(c))],
         message="one recording or video at a time"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_file(session, tmp_path, corpus, case):
    files = case.build(tmp_path, corpus)
    before = _snapshot(session.conversation)
    if case.expect == "rejected":
        with pytest.raises(Exception) as info:
            _send(session.client, case.text, files, case.language)
        shown = str(info.value)
        _assert_plain(shown)
        assert case.message in shown
        assert _snapshot(session.conversation) == before  # nothing added, no file kept
    else:
        history = _send(session.client, case.text, files, case.language)
        assert history[: len(session.history)] == session.history
        turn = session.conversation.last()
        assert turn.id not in {t[0] for t in before[0]}
        if case.expect == "noted":
            assert case.message in message_text(history[-1])
            assert turn.status != "error"
        else:
            assert turn.status in {"done", "no_speech"}, (turn.status, turn.error)
            case.check(turn, history)
        _assert_plain(message_text(history[-1]))
        kept = turn.image_paths + turn.frame_paths + [p for p in (turn.audio_path, turn.video_path) if p]
        for path in kept:
            assert Path(path).parent == session.conversation.session_dir  # kept under a name of our own
            assert not any(Path(path).name == Path(f).name for f in files)
        session.history = history
    _assert_still_answers(session)


# --------------------------------------------------------------------------- text


TEXT_REJECTED = {
    "empty": ("", "Type a message"),
    "whitespace_only": ("   \n\t  \u3000 ", "Type a message"),
    "one_megabyte": ("Lorem ipsum dolor sit amet. " * 37_450, "too long"),
    "one_megabyte_no_spaces": ("x" * 1_048_576, "too long"),
}


@pytest.mark.parametrize("name", sorted(TEXT_REJECTED))
def test_unusable_text_is_refused_and_kept(session, name):
    text, message = TEXT_REJECTED[name]
    before = _snapshot(session.conversation)
    with pytest.raises(Exception) as info:
        _send(session.client, text)
    _assert_plain(str(info.value))
    assert message in str(info.value)
    assert _snapshot(session.conversation) == before
    _assert_still_answers(session)


RTL = "مرحبا، كيف حالك اليوم؟ أريد أن أتعلم شيئا عن البحر."
TEXT_ACCEPTED = {
    "emoji_only": ("😀🎉🌍👍", lambda turn, html: True),
    "right_to_left": (RTL, lambda turn, html: turn.language.tag == "ar" and 'dir="rtl"' in html),
    "mixed_scripts": ("मुझे Python programming के बारे में बताइए, कृपया विस्तार से समझाइए।",
                      lambda turn, html: turn.language.tag == "hi"),
    "control_characters": ("Hello\x00 there\x1b[31m, red\x07 text\x7f and a \x0c form feed",
                           lambda turn, html: not any(ch in html for ch in "\x00\x1b\x07\x7f\x0c")
                           and "red" in html),
    "zero_width_and_bidi_marks": ("Bon\u200bjour \u202etout\u202c le monde, comment ça va ?",
                                  lambda turn, html: "monde" in html),
    "html_and_script": ("<script>alert('x')</script><img src=x onerror=alert(1)> **bold** <b>hi</b>",
                        lambda turn, html: "<script" not in html and "<img" not in html and "<b>" not in html
                        and "&lt;script&gt;" in html and "**bold**" in html),
    "markdown_link_and_code": ("See [this](https://example.org) and `<b>code</b>` please",
                               lambda turn, html: "`<b>code</b>`" in html and "[this](https://example.org)" in html),
}


@pytest.mark.parametrize("name", sorted(TEXT_ACCEPTED))
def test_odd_text_is_answered_and_shown_inert(session, name):
    text, check = TEXT_ACCEPTED[name]
    history = _send(session.client, text)
    assert history[: len(session.history)] == session.history
    turn = session.conversation.last()
    assert turn.status == "done", (turn.status, turn.error)
    shown = message_text(history[-2])
    assert check(turn, shown), shown
    _assert_plain(message_text(history[-1]))
    session.history = history
    _assert_still_answers(session)


def test_invalid_surrogates_are_replaced_not_crashing(app):
    """A browser may send lone surrogates (JSON.stringify escapes them); they must not break the answer or the page."""
    from app import render

    runtime, _ = app
    conversation = runtime.new_conversation()
    try:
        turn = conversation.add(conversation.prepare("Bonjour \ud800 le monde \udfff !"))
        for _ in conversation.answer(turn):
            pass
        assert turn.status == "done"
        assert "\ufffd" in turn.text and "monde" in turn.text
        page = json.dumps(render.chat_messages(conversation), ensure_ascii=False)
        page.encode("utf-8")  # what the server sends the page: must be valid UTF-8
        conversation.to_json().encode("utf-8")
    finally:
        conversation.close()


def test_answer_with_html_renders_inert():
    from app import render
    from backend.conversation.turns import Turn
    from backend.language import detect

    turn = Turn(id=1, text="hi", language=detect.detect("hello there friend"), answer_language="en",
                answer="Sure: <script>steal()</script> <iframe src=//evil></iframe> **done**", status="done")
    shown = render.assistant_message(turn)["content"]
    assert "<script" not in shown and "<iframe" not in shown and "&lt;script&gt;" in shown and "**done**" in shown


# --------------------------------------------------------------------------- context


def test_long_history_is_shortened_and_the_user_told(session):
    engine = session.runtime.engine
    saved = engine.max_context_tokens
    paragraph = "Tell me about rivers, lakes and the sea. " * 3
    from backend.conversation.turns import system_prompt
    from backend.models.engine import PromptMessage

    one_turn = int(engine.encode([PromptMessage("system", system_prompt("en")), PromptMessage("user", paragraph)])
                   ["input_ids"].shape[-1])
    # the tiny model's context, made to hold the newest message and not much more
    engine.max_context_tokens = one_turn + session.runtime.settings.max_new_tokens + 40
    try:
        for _ in range(3):
            history = _send(session.client, paragraph)
        turn = session.conversation.last()
        assert turn.status == "done" and "history_shortened" in turn.notes, (turn.status, turn.error)
        assert "Older messages were left out" in message_text(history[-1])
        assert history[: len(session.history)] == session.history  # shortened for the model, not on screen
        # one message longer than the whole context: refused with a plain note, history kept
        history = _send(session.client, "word " * 400)
        assert "too long for the model" in message_text(history[-1])
        assert session.conversation.last().status == "error"
    finally:
        engine.max_context_tokens = saved
    session.history = history
    _assert_still_answers(session)


# --------------------------------------------------------------------------- language override


def _voice_language_without_voice() -> str:
    from backend.language import table
    from backend.models.tts import voices_for

    for _, tag in table.choices():
        if tag != "auto" and not voices_for(tag):
            return tag
    pytest.skip("every language in the menu has a voice here")


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_language_without_a_voice_still_answers_in_text(session):
    tag = _voice_language_without_voice()
    history = _send(session.client, "Tell me a short story about a cat.", language=tag, speak=True)
    turn = session.conversation.last()
    assert turn.answer_language == tag and turn.status == "done" and turn.answer
    assert "tts.no_voice" in turn.notes
    assert "no voice for" in message_text(history[-1])
    session.history = history
    _assert_still_answers(session)


def test_language_whisper_cannot_hear_still_answers(session, tmp_path, corpus):
    from backend.models.asr import bcp47_to_whisper

    runtime = session.runtime
    known = set(runtime.asr._lang_ids)
    tag = next(t for t in ("ig", "om", "ti", "rw", "wo", "xh", "zu") if bcp47_to_whisper(t, known) is None)
    history = _send(session.client, "", [str(_speech(corpus))], language=tag)
    turn = session.conversation.last()
    assert turn.answer_language == tag
    assert turn.status in {"done", "no_speech"}, (turn.status, turn.error)
    _assert_plain(message_text(history[-1]))
    session.history = history
    _assert_still_answers(session)


@pytest.mark.parametrize("value", ["xx-not-a-language", "../../etc/passwd", "<script>"])
def test_nonsense_language_value(session, value):
    """The dropdown only offers real tags, but the endpoint takes any string."""
    try:
        history = _send(session.client, "Good morning, how are you today?", language=value)
    except Exception as err:  # refused is fine, as long as it is plain
        _assert_plain(str(err))
    else:
        _assert_plain(message_text(history[-1]))
        assert "<script>" not in message_text(history[-1])
        session.history = history
    _assert_still_answers(session)
