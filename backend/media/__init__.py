"""Decode and check what people upload: images and recordings (video files: ``backend.media.video``).

Everything that leaves this module is in one shape the rest of the pipeline can
trust: images are RGB ``PIL.Image`` objects the right way up, recordings are
16 kHz mono float32 ``AudioClip`` objects within the configured limits. Anything
else becomes a ``MediaError`` with a plain message and a ``media.*`` key.
"""

from __future__ import annotations

import io
import logging
import math
import struct
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from backend.errors import MediaError

log = logging.getLogger(__name__)

TARGET_RATE = 16_000
# How many bytes of a file we look at to recognise what it really is.
SNIFF_BYTES = 4096


@dataclass
class MediaLimits:
    max_image_pixels: int = 40_000_000
    max_images_per_turn: int = 8
    max_file_bytes: int = 50 * 2**20
    max_audio_seconds: float = 600.0  # recordings and videos alike
    max_video_pixels: int = 4096 * 2160  # one frame of DCI 4K


DEFAULT_LIMITS = MediaLimits()


# --------------------------------------------------------------------------- files


def _file_size(path: Path) -> int:
    try:
        if not path.is_file():
            raise MediaError(f"The file {path.name!r} could not be found.", key="media.file_missing", name=path.name)
        return path.stat().st_size
    except OSError as exc:  # permission denied, broken link...
        raise MediaError(f"The file {path.name!r} could not be read.", key="media.unreadable", name=path.name) from exc


def _check_size(size: int, name: str, limits: MediaLimits) -> None:
    if size == 0:
        raise MediaError(f"The file {name!r} is empty.", key="media.empty_file", name=name)
    if size > limits.max_file_bytes:
        raise MediaError(
            f"The file {name!r} is too large ({size / 2**20:.1f} MB; the limit is "
            f"{limits.max_file_bytes / 2**20:.0f} MB).",
            key="media.file_too_large",
            name=name,
            size_mb=round(size / 2**20, 1),
            limit_mb=round(limits.max_file_bytes / 2**20),
        )


def _read_head(path: Path, n: int = SNIFF_BYTES) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(n)
    except OSError as exc:
        raise MediaError(f"The file {path.name!r} could not be read.", key="media.unreadable", name=path.name) from exc


def _looks_like_markup(head: bytes) -> bool:
    """SVG, HTML or XML: text that starts with a tag (after a BOM and whitespace)."""
    text = head.lstrip(b"\xef\xbb\xbf").lstrip().lower()
    if not text.startswith(b"<"):
        return False
    return any(tag in text[:SNIFF_BYTES] for tag in (b"<svg", b"<html", b"<!doctype", b"<?xml", b"<body", b"<script"))


def _looks_like_text(head: bytes) -> bool:
    """Plain text (UTF-8 without NUL bytes), which no audio or image format is."""
    if not head or b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # a multi-byte character cut by the sniff window is still text
        if exc.start < len(head) - 4:
            return False
    return True


def warm_up() -> None:
    """Load Pillow's format plugins and PyAV now: the first message with a file (a voice turn's recording is
    one) spent 0.12-0.16 s on them while it was being checked."""
    Image.init()
    import av  # noqa: F401


# --------------------------------------------------------------------------- images


def is_image_file(path: str | Path) -> bool:
    """True when the content is a raster image Pillow can open (whatever its name says)."""
    path = Path(path)
    try:
        if not path.is_file() or path.stat().st_size == 0:
            return False
        if _looks_like_markup(_read_head(path)):
            return False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:  # reads the header only
                return img.format is not None
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, MediaError, ValueError):
        return False


_IMAGE_SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif"}


def image_suffix(path: str | Path) -> str:
    """The file extension of the image's real format (from its header, not its name)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                return _IMAGE_SUFFIXES.get(img.format or "", ".img")
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError):
        return ".img"


def load_image(path: str | Path, limits: MediaLimits = DEFAULT_LIMITS) -> Image.Image:
    """Open an image file as an RGB image, the right way up, within the pixel limit."""
    path = Path(path)
    name = path.name
    _check_size(_file_size(path), name, limits)
    head = _read_head(path)
    if _looks_like_markup(head):
        raise MediaError(
            f"{name!r} is a web page or vector drawing (SVG/HTML), not a picture. "
            "Please send a PNG, JPEG, WebP or GIF image.",
            key="media.image_is_markup",
            name=name,
        )
    try:
        with warnings.catch_warnings():
            # Our own pixel check below replaces Pillow's warning; its hard error stays as a backstop.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if width <= 0 or height <= 0:
                    raise MediaError(f"{name!r} has no pixels.", key="media.image_empty", name=name)
                # Checked from the header, before any pixel is decoded (decompression bombs).
                if width * height > limits.max_image_pixels:
                    raise MediaError(
                        f"{name!r} is too large ({width}×{height} pixels; the limit is "
                        f"{limits.max_image_pixels / 1e6:.0f} megapixels).",
                        key="media.image_too_large",
                        name=name,
                        width=width,
                        height=height,
                        limit_megapixels=round(limits.max_image_pixels / 1e6),
                    )
                img.seek(0)  # first frame of an animation
                img.load()
                return _to_rgb(ImageOps.exif_transpose(img))
    except MediaError:
        raise
    except UnidentifiedImageError as exc:
        raise MediaError(
            f"{name!r} is not an image Omnilingo can read.", key="media.not_an_image", name=name
        ) from exc
    except Image.DecompressionBombError as exc:
        raise MediaError(
            f"{name!r} is too large to open safely.", key="media.image_too_large", name=name,
            width=None, height=None, limit_megapixels=round(limits.max_image_pixels / 1e6),
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        # Pillow reports truncated or corrupt data as OSError ("image file is truncated"),
        # SyntaxError (broken headers) or ValueError.
        raise MediaError(
            f"{name!r} is damaged or incomplete and cannot be shown.", key="media.image_corrupt", name=name
        ) from exc


def load_images(paths: Iterable[str | Path], limits: MediaLimits = DEFAULT_LIMITS) -> list[Image.Image]:
    """Load every image of one turn; too many images is refused before any is decoded."""
    paths = list(paths)
    if len(paths) > limits.max_images_per_turn:
        raise MediaError(
            f"Too many images in one message ({len(paths)}; the limit is {limits.max_images_per_turn}).",
            key="media.too_many_images",
            count=len(paths),
            limit=limits.max_images_per_turn,
        )
    return [load_image(p, limits) for p in paths]


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency is laid on white, as a viewer shows it."""
    mode = img.mode
    if mode == "RGB":
        return img.copy() if img.readonly else img
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        # Pillow's own convert() clips 16-bit values at 255 (a white picture); scale instead.
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        if mode == "F":
            lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
            arr = (arr - lo) / ((hi - lo) or 1.0) * 255.0
        else:
            arr = arr / hi * 255.0
        gray = Image.fromarray(np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8), "L")
        return gray.convert("RGB")
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    # L, 1, CMYK, YCbCr, LAB, HSV...: Pillow converts these correctly
    return img.convert("RGB")


# --------------------------------------------------------------------------- audio


@dataclass
class AudioClip:
    """A recording ready for speech models: float32 mono samples at 16 kHz."""

    samples: np.ndarray
    sample_rate: int = TARGET_RATE
    source_rate: int = TARGET_RATE
    source_channels: int = 1
    source_format: str = field(default="")

    @property
    def duration_s(self) -> float:
        return len(self.samples) / float(self.sample_rate) if self.sample_rate else 0.0


def is_audio_file(path: str | Path) -> bool:
    """True when the content holds an audio stream we can decode (whatever its name says)."""
    path = Path(path)
    try:
        if not path.is_file() or path.stat().st_size == 0:
            return False
        head = _read_head(path)
        if _looks_like_text(head):
            return False
    except (OSError, MediaError):
        return False
    try:
        import soundfile as sf

        info = sf.info(str(path))
        return info.frames > 0 or info.duration > 0
    except Exception:  # noqa: BLE001 - soundfile raises several types; PyAV decides next
        log.debug("soundfile cannot read %s; asking PyAV", path.name)
    try:
        import av

        with av.open(str(path)) as container:
            return any(s.type == "audio" and s.codec_context is not None for s in container.streams)
    except Exception:  # noqa: BLE001 - anything PyAV cannot open is not audio to us
        return False


def load_audio(source: str | Path | bytes | bytearray | memoryview, limits: MediaLimits = DEFAULT_LIMITS) -> AudioClip:
    """Decode a recording (wav, flac, aiff, mp3, ogg/opus, webm, m4a...) to 16 kHz mono."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = "recording"
        _check_size(len(data), name, limits)
        head = data[:SNIFF_BYTES]
        opener: Callable[[], io.BytesIO | str] = lambda: io.BytesIO(data)  # noqa: E731 - each decoder needs a fresh stream
    else:
        path = Path(source)
        name = path.name
        _check_size(_file_size(path), name, limits)
        head = _read_head(path)
        opener = lambda: str(path)  # noqa: E731

    if _looks_like_text(head):
        raise MediaError(
            f"{name!r} is a text file, not a recording.", key="media.not_audio", name=name
        )

    try:
        decoded = _decode_with_soundfile(opener, name, limits)
        if decoded is None:
            decoded = _decode_with_pyav(opener, name, limits)
        samples, rate, channels, fmt = decoded
        return _finish_clip(samples, rate, channels, fmt, name, limits)
    except MediaError:
        raise
    except MemoryError as exc:
        raise MediaError(f"{name!r} is too large to decode.", key="media.file_too_large", name=name,
                         size_mb=None, limit_mb=round(limits.max_file_bytes / 2**20)) from exc
    except Exception as exc:  # noqa: BLE001 - a decoder bug must reach the user as a message, not a traceback
        log.exception("decoding %s failed", name)
        raise MediaError(f"{name!r} is damaged and cannot be played.", key="media.audio_corrupt", name=name) from exc


def _too_long(name: str, seconds: float, limits: MediaLimits, kind: str = "audio") -> MediaError:
    """A recording (``kind`` "audio") or a video longer than the limit both share."""
    what = f"The video {name!r}" if kind == "video" else repr(name)
    return MediaError(
        f"{what} is too long ({_fmt_duration(seconds)}; the limit is {_fmt_duration(limits.max_audio_seconds)}).",
        key=f"media.{kind}_too_long",
        name=name,
        seconds=round(seconds, 1),
        limit_seconds=limits.max_audio_seconds,
    )


def _fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d} min" if seconds >= 60 else f"{seconds} s"


def _decode_with_soundfile(opener, name: str, limits: MediaLimits):
    """libsndfile: wav, flac, aiff, ogg/vorbis/opus, mp3. None when it cannot read the file."""
    import soundfile as sf

    try:
        with sf.SoundFile(opener()) as f:
            rate, channels, frames = f.samplerate, f.channels, f.frames
            if rate <= 0:
                return None
            if frames > 0 and frames / rate > limits.max_audio_seconds:
                raise _too_long(name, frames / rate, limits)
            samples = f.read(dtype="float32", always_2d=True)
            fmt = f.format
    except MediaError:
        raise
    except Exception as exc:  # noqa: BLE001 - LibsndfileError, RuntimeError, TypeError...: try PyAV
        log.debug("soundfile could not read %s: %s", name, exc)
        return None
    return samples, rate, channels, fmt.lower()


def _decode_with_pyav(opener, name: str, limits: MediaLimits):
    """FFmpeg through PyAV: mp3, m4a/aac, webm/opus, video files with a sound track..."""
    import av

    try:
        container = av.open(opener(), mode="r")
    except Exception as exc:  # noqa: BLE001 - av.error.* subclasses; all mean "not a media file"
        raise MediaError(
            f"{name!r} is not a recording Omnilingo can read.", key="media.not_audio", name=name
        ) from exc
    with container:
        streams = [s for s in container.streams if s.type == "audio"]
        if not streams:
            raise MediaError(f"{name!r} has no sound track.", key="media.no_audio_stream", name=name)
        stream = streams[0]
        context = stream.codec_context
        if context is None:  # FFmpeg knows the container but has no decoder for the codec
            raise _unsupported(name, _codec_tag(stream))
        codec = getattr(context, "name", None) or "unknown"
        rate = context.sample_rate or stream.rate or 0
        declared = _declared_seconds(container, stream)
        if declared is not None and declared > limits.max_audio_seconds:
            raise _too_long(name, declared, limits)
        if rate <= 0:
            raise _unsupported(name, codec)
        # Planar float keeps the source's channels and rate: soxr resamples, we downmix.
        resampler = av.AudioResampler(format="fltp")
        pieces: list[np.ndarray] = []
        total = 0
        limit_samples = int(limits.max_audio_seconds * rate) + 1
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    arr = out.to_ndarray()  # (channels, n)
                    pieces.append(arr)
                    total += arr.shape[1]
                if total > limit_samples:
                    raise _too_long(name, total / rate, limits)
            for out in resampler.resample(None):
                pieces.append(out.to_ndarray())
        except MediaError:
            raise
        except av.error.DecoderNotFoundError as exc:
            raise _unsupported(name, codec) from exc
        except Exception as exc:  # noqa: BLE001 - InvalidDataError, EOFError...: damaged data
            if not pieces:
                if isinstance(exc, (av.error.PatchWelcomeError, NotImplementedError)):
                    raise _unsupported(name, codec) from exc
                raise MediaError(
                    f"{name!r} is damaged and cannot be played.", key="media.audio_corrupt", name=name
                ) from exc
            log.warning("%s: decoding stopped early (%s); keeping what was decoded", name, exc)
    if not pieces:
        if codec in ("unknown", "none") or not _decoder_exists(codec):
            raise _unsupported(name, codec)
        raise MediaError(f"{name!r} contains no sound.", key="media.audio_empty", name=name)
    channels = max(p.shape[0] for p in pieces)
    pieces = [p if p.shape[0] == channels else np.repeat(p[:1], channels, axis=0) for p in pieces]
    samples = np.concatenate(pieces, axis=1).T.astype(np.float32, copy=False)
    return samples, int(rate), channels, f"{container.format.name}/{codec}"


def _codec_tag(stream) -> str:
    try:
        tag = stream.codec_tag
    except Exception:  # noqa: BLE001 - older PyAV lacks it
        tag = None
    return str(tag or "unknown")


def _decoder_exists(codec: str) -> bool:
    import av

    try:
        av.codec.Codec(codec, "r")
        return True
    except Exception:  # noqa: BLE001 - UnknownCodecError and friends
        return False


def _unsupported(name: str, codec: str) -> MediaError:
    return MediaError(
        f"{name!r} uses a sound format ({codec}) that Omnilingo cannot decode. "
        "Please send WAV, FLAC, MP3, OGG/Opus, WebM or M4A.",
        key="media.audio_unsupported_codec",
        name=name,
        codec=codec,
    )


def _declared_seconds(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # av.time_base
    return None


def _finish_clip(samples: np.ndarray, rate: int, channels: int, fmt: str, name: str, limits: MediaLimits) -> AudioClip:
    """Shared tail of every decoder: check, downmix, clean, resample."""
    if samples.size == 0 or samples.shape[0] == 0:
        raise MediaError(f"{name!r} contains no sound.", key="media.audio_empty", name=name)
    seconds = samples.shape[0] / rate
    if seconds > limits.max_audio_seconds:
        raise _too_long(name, seconds, limits)

    finite = np.isfinite(samples)
    if not finite.all():
        bad = 1.0 - float(finite.mean())
        # A few bad samples are repaired (silence in their place); a file of them is refused.
        if bad > 0.01:
            raise MediaError(
                f"{name!r} holds invalid sample values (NaN or infinity) and cannot be used.",
                key="media.audio_invalid_samples",
                name=name,
                fraction=round(bad, 3),
            )
        samples = np.where(finite, samples, 0.0).astype(np.float32)

    mono = samples.mean(axis=1, dtype=np.float64).astype(np.float32) if samples.shape[1] > 1 else samples[:, 0]
    peak = float(np.max(np.abs(mono))) if mono.size else 0.0
    if peak > 1.0:  # float files may exceed full scale; models expect [-1, 1]
        mono = mono / peak

    if rate != TARGET_RATE:
        import soxr

        mono = soxr.resample(mono, rate, TARGET_RATE, quality="HQ").astype(np.float32, copy=False)
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if mono.size == 0:
        raise MediaError(f"{name!r} contains no sound.", key="media.audio_empty", name=name)
    if not math.isfinite(float(mono.sum(dtype=np.float64))):
        mono = np.nan_to_num(mono, nan=0.0, posinf=0.0, neginf=0.0)
    return AudioClip(samples=mono, sample_rate=TARGET_RATE, source_rate=int(rate), source_channels=int(channels), source_format=fmt)
