"""Images and recordings as users send them: real corpus files, many formats, broken files."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from backend.errors import MediaError
from backend.media import (
    AudioClip,
    MediaLimits,
    is_audio_file,
    is_image_file,
    load_audio,
    load_image,
    load_images,
)
from tests.support import CORPUS, png_bomb

SPEECH = CORPUS / "speech"
IMAGES = CORPUS / "images"

SPEECH_FILES = sorted(SPEECH.glob("*"))
IMAGE_FILES = sorted(IMAGES.glob("*"))

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
needs_sox = pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed")


def source_duration(path: Path) -> float:
    info = sf.info(str(path))
    return info.frames / info.samplerate


def assert_clip_shape(clip: AudioClip) -> None:
    assert clip.sample_rate == 16_000
    assert clip.samples.dtype == np.float32
    assert clip.samples.ndim == 1
    assert np.isfinite(clip.samples).all()
    assert np.abs(clip.samples).max() <= 1.0


# --------------------------------------------------------------------------- audio: corpus


@pytest.mark.parametrize("path", SPEECH_FILES, ids=lambda p: p.name)
def test_every_corpus_recording_decodes_to_16k_mono_with_its_duration(path):
    clip = load_audio(path)
    assert_clip_shape(clip)
    expected = source_duration(path)
    assert clip.duration_s == pytest.approx(expected, rel=0.02)
    assert clip.source_rate == sf.info(str(path)).samplerate
    assert np.sqrt(np.mean(clip.samples**2)) > 1e-3, "decoded speech must not be silent"
    assert is_audio_file(path)
    assert not is_image_file(path)


def test_bytes_decode_like_the_file():
    path = SPEECH / "sr_french.aiff"
    from_file = load_audio(path)
    from_bytes = load_audio(path.read_bytes())
    np.testing.assert_allclose(from_file.samples, from_bytes.samples)


def test_stereo_is_downmixed_and_rate_converted(tmp_path):
    t = np.arange(48_000) / 48_000
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([left, -left + 0.0], axis=1).astype(np.float32)
    stereo[:, 1] = left  # same signal in both: the mix keeps its level
    sf.write(tmp_path / "st.wav", stereo, 48_000)
    clip = load_audio(tmp_path / "st.wav")
    assert clip.source_channels == 2 and clip.source_rate == 48_000
    assert len(clip.samples) == 16_000
    assert np.sqrt(np.mean(clip.samples**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


# --------------------------------------------------------------------------- audio: formats


def _convert(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


CONVERSIONS = {
    "mp3": lambda src, dst: _convert(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", src, dst]),
    "ogg": lambda src, dst: _convert(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", src, "-c:a", "libopus", dst]),
    "webm": lambda src, dst: _convert(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", src, "-c:a", "libopus", dst]),
    "m4a": lambda src, dst: _convert(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", src, "-c:a", "aac", dst]),
    "aiff": lambda src, dst: _convert(["sox", src, dst]),
    "wav": lambda src, dst: _convert(["sox", src, "-r", "96000", "-c", "8", dst]),  # 8 channels, 96 kHz
}


@needs_ffmpeg
@needs_sox
@pytest.mark.parametrize("ext", sorted(CONVERSIONS))
def test_browser_and_disk_formats_decode(tmp_path, ext):
    src = SPEECH / "jfk.flac"
    dst = tmp_path / f"jfk.{ext}"
    CONVERSIONS[ext](str(src), str(dst))
    clip = load_audio(dst)
    assert_clip_shape(clip)
    # lossy codecs pad a few ms at the ends
    assert clip.duration_s == pytest.approx(11.0, rel=0.02)
    if ext == "wav":
        assert clip.source_channels == 8 and clip.source_rate == 96_000
    assert is_audio_file(dst)


@needs_ffmpeg
def test_sound_track_of_a_video_is_used_and_a_silent_video_refused(tmp_path):
    with_audio = tmp_path / "clip.mp4"
    _convert(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=5",
              "-i", str(SPEECH / "sr_english.wav"), "-shortest", "-c:v", "mpeg4", "-c:a", "libmp3lame", str(with_audio)])
    clip = load_audio(with_audio)
    assert clip.duration_s == pytest.approx(2.74, abs=0.15)

    video_only = tmp_path / "video.mp4"
    _convert(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=5",
              "-t", "1", str(video_only)])
    with pytest.raises(MediaError) as err:
        load_audio(video_only)
    assert err.value.key == "media.no_audio_stream"
    assert not is_audio_file(video_only)


# --------------------------------------------------------------------------- audio: bad input


def _wav_bytes(format_tag: int, payload: bytes) -> bytes:
    fmt = struct.pack("<HHIIHH", format_tag, 1, 16_000, 32_000, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize(
    ("name", "content", "key"),
    [
        ("zero.wav", b"", "media.empty_file"),
        ("header_only.wav", _wav_bytes(1, b""), "media.audio_empty"),
        ("notes.wav", b"This is not a recording.\nJust text.\n", "media.not_audio"),
        ("page.mp3", b"<!DOCTYPE html><html><body>hi</body></html>", "media.not_audio"),
        ("random.ogg", bytes(range(256)) * 40, "media.not_audio"),
        ("codec.wav", _wav_bytes(0x1234, b"\x01\x02" * 8000), "media.audio_unsupported_codec"),
    ],
)
def test_broken_recordings_give_a_specific_message(tmp_path, name, content, key):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(MediaError) as err:
        load_audio(path)
    assert err.value.key == key
    assert name in err.value.message
    assert not is_audio_file(path)


def test_nan_recording_is_refused_and_a_few_bad_samples_repaired(tmp_path):
    sf.write(tmp_path / "nan.wav", np.full(16_000, np.nan, dtype=np.float32), 16_000, subtype="FLOAT")
    with pytest.raises(MediaError) as err:
        load_audio(tmp_path / "nan.wav")
    assert err.value.key == "media.audio_invalid_samples"

    noisy = (np.random.default_rng(0).standard_normal(16_000) * 0.1).astype(np.float32)
    noisy[::1000] = np.inf
    sf.write(tmp_path / "few.wav", noisy, 16_000, subtype="FLOAT")
    clip = load_audio(tmp_path / "few.wav")
    assert_clip_shape(clip)


def test_too_long_recording_is_refused_before_decoding(tmp_path):
    # a 2-hour header over a few samples: refused from the declared length
    path = tmp_path / "long.wav"
    with sf.SoundFile(path, "w", samplerate=8000, channels=1, subtype="PCM_16") as f:
        f.write(np.zeros(8000 * 20, dtype=np.int16))
    with pytest.raises(MediaError) as err:
        load_audio(path, MediaLimits(max_audio_seconds=10))
    assert err.value.key == "media.audio_too_long"
    assert err.value.params["seconds"] == pytest.approx(20.0)


def test_file_size_limit(tmp_path):
    path = tmp_path / "big.wav"
    sf.write(path, np.zeros(16_000, dtype=np.float32), 16_000)
    with pytest.raises(MediaError) as err:
        load_audio(path, MediaLimits(max_file_bytes=1000))
    assert err.value.key == "media.file_too_large"


def test_missing_file(tmp_path):
    with pytest.raises(MediaError) as err:
        load_audio(tmp_path / "nowhere.wav")
    assert err.value.key == "media.file_missing"


# --------------------------------------------------------------------------- images


@pytest.mark.skipif(not IMAGE_FILES, reason="corpus not found")
@pytest.mark.parametrize("path", IMAGE_FILES, ids=lambda p: p.name)
def test_every_corpus_image_loads_as_rgb(path):
    with Image.open(path) as raw:
        size = raw.size
    img = load_image(path)
    assert img.mode == "RGB"
    assert img.size == size
    assert is_image_file(path)
    assert not is_audio_file(path)


def test_decompression_bomb_is_refused_from_its_header(tmp_path):
    path = tmp_path / "bomb.png"
    png_bomb(path)
    assert path.stat().st_size < 1_000_000
    with pytest.raises(MediaError) as err:
        load_image(path)
    assert err.value.key == "media.image_too_large"
    assert "too large" in err.value.message


def test_bomb_below_pillows_own_limit_is_refused_by_ours(tmp_path):
    path = tmp_path / "bomb.png"
    png_bomb(path, side=9_000)  # 81 MP: over our 40 MP default, under Pillow's hard stop
    with pytest.raises(MediaError) as err:
        load_image(path)
    assert err.value.key == "media.image_too_large"
    assert err.value.params["width"] == 9_000


def _sample_png(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    path = tmp_path / "noise.png"
    Image.fromarray(rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_images(tmp_path, fmt):
    rng = np.random.default_rng(2)
    full = tmp_path / f"full.{fmt.lower()}"
    Image.fromarray(rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)).save(full, fmt)
    cut = tmp_path / f"cut.{fmt.lower()}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(MediaError) as err:
        load_image(cut)
    assert err.value.key == "media.image_corrupt"


@pytest.mark.parametrize(
    ("name", "content", "key"),
    [
        ("empty.png", b"", "media.empty_file"),
        ("drawing.png", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>', "media.image_is_markup"),
        ("page.jpg", b"\xef\xbb\xbf  <!DOCTYPE html><html><script>alert(1)</script></html>", "media.image_is_markup"),
        ("notes.png", b"just some words", "media.not_an_image"),
    ],
)
def test_things_that_are_not_images(tmp_path, name, content, key):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(MediaError) as err:
        load_image(path)
    assert err.value.key == key
    assert not is_image_file(path)


def test_recording_named_png(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes((SPEECH / "sr_english.wav").read_bytes())
    with pytest.raises(MediaError) as err:
        load_image(path)
    assert err.value.key == "media.not_an_image"


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(path)  # pure red in CMYK
    img = load_image(path)
    assert img.mode == "RGB"
    r, g, b = img.getpixel((20, 15))
    assert r > 200 and g < 60 and b < 60


def test_16_bit_grayscale_keeps_its_levels(tmp_path):
    path = tmp_path / "deep.png"
    arr = np.full((20, 20), 32768, dtype=np.uint16)  # mid grey in 16 bits
    Image.fromarray(arr).save(path)
    img = load_image(path)
    assert img.mode == "RGB"
    assert img.getpixel((5, 5))[0] == pytest.approx(128, abs=2)  # not clipped to white


def test_transparent_palette_image_lies_on_white(tmp_path):
    path = tmp_path / "pal.png"
    img = Image.new("P", (10, 10), 0)
    img.putpalette([0, 0, 0] * 256)
    img.info["transparency"] = 0
    img.save(path, transparency=0)
    assert load_image(path).getpixel((3, 3)) == (255, 255, 255)


def test_animated_gif_gives_its_first_frame(tmp_path):
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (16, 16), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    img = load_image(path)
    r, g, b = img.getpixel((8, 8))
    assert r > 200 and g < 50 and b < 50


def test_exif_rotated_photo_is_turned_upright(tmp_path):
    path = tmp_path / "rotated.jpg"
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    img.save(path, exif=exif.tobytes())
    assert load_image(path).size == (20, 40)


def test_image_limits(tmp_path):
    png = _sample_png(tmp_path)
    with pytest.raises(MediaError) as err:
        load_image(png, MediaLimits(max_file_bytes=1000))
    assert err.value.key == "media.file_too_large"
    with pytest.raises(MediaError) as err:
        load_image(png, MediaLimits(max_image_pixels=100 * 100))
    assert err.value.key == "media.image_too_large"
    with pytest.raises(MediaError) as err:
        load_images([png] * 100)
    assert err.value.key == "media.too_many_images"
    assert err.value.params == {"count": 100, "limit": 8}
    assert [i.size for i in load_images([png, png])] == [(300, 200), (300, 200)]
