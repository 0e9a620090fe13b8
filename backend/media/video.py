"""Video files: a few frames spread over the clip, and its sound track as a recording.

The frames are RGB ``PIL.Image`` objects the model sees as pictures; the sound track goes
through the same decoder and limits as any recording (``backend.media.load_audio``). Length,
file size and resolution are checked from the container's header before any frame is decoded.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from backend.errors import MediaError
from backend.media import (
    DEFAULT_LIMITS,
    AudioClip,
    MediaLimits,
    _check_size,
    _file_size,
    _looks_like_text,
    _read_head,
    _too_long,
    load_audio,
)

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".3gp", ".ogv"}
# A handful of frames for a short clip; one more for every this many seconds, up to the limit.
MIN_FRAMES = 4
SECONDS_PER_EXTRA_FRAME = 10.0
# Frames are kept at most this wide or tall: the models' image processors shrink them further anyway.
MAX_FRAME_SIDE = 1280


@dataclass
class VideoClip:
    """What the model gets from a video: sampled frames, their times, and the sound track (if any)."""

    frames: list[Image.Image]
    times_s: list[float]
    duration_s: float
    width: int
    height: int
    audio: AudioClip | None = None
    source_format: str = field(default="")


def frames_for(duration_s: float, max_frames: int) -> int:
    """How many frames to show the model: a handful, more for a longer clip, never more than ``max_frames``."""
    extra = max(0, math.ceil((duration_s - SECONDS_PER_EXTRA_FRAME * MIN_FRAMES) / SECONDS_PER_EXTRA_FRAME))
    return max(1, min(max_frames, MIN_FRAMES + extra))


def _picture_streams(container) -> list:
    """Real video streams: an mp3's or m4a's cover art is a still picture, not a video."""
    streams = []
    for stream in container.streams.video:
        disposition = getattr(stream, "disposition", None)
        attached = False
        try:
            import av

            attached = bool(disposition is not None and disposition & av.stream.Disposition.attached_pic)
        except (AttributeError, TypeError):
            attached = False
        if not attached and stream.codec_context is not None:
            streams.append(stream)
    return streams


def is_video_file(path: str | Path) -> bool:
    """True when the content holds a moving picture (whatever its name says)."""
    path = Path(path)
    try:
        if not path.is_file() or path.stat().st_size == 0 or _looks_like_text(_read_head(path)):
            return False
    except (OSError, MediaError):
        return False
    try:
        import av

        with av.open(str(path)) as container:
            if container.format.name in {"image2", "png_pipe", "jpeg_pipe", "gif", "webp_pipe"}:
                return False
            return bool(_picture_streams(container))
    except Exception:  # noqa: BLE001 - anything PyAV cannot open is not a video to us
        return False


def _corrupt(name: str) -> MediaError:
    return MediaError(f"The video {name!r} is damaged and cannot be played.", key="media.video_corrupt", name=name)


def _duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # av.time_base
    return None


def _shrink(image: Image.Image) -> Image.Image:
    image = image.convert("RGB") if image.mode != "RGB" else image
    if max(image.size) > MAX_FRAME_SIDE:
        image.thumbnail((MAX_FRAME_SIDE, MAX_FRAME_SIDE), Image.Resampling.LANCZOS)
    return image


def load_video(path: str | Path, limits: MediaLimits = DEFAULT_LIMITS, max_frames: int = 8) -> VideoClip:
    """Open a video (mp4, webm, mov...): ``frames_for`` frames spread over it, and its sound track."""
    import av

    path = Path(path)
    name = path.name
    _check_size(_file_size(path), name, limits)
    if _looks_like_text(_read_head(path)):
        raise MediaError(f"{name!r} is a text file, not a video.", key="media.not_video", name=name)
    try:
        container = av.open(str(path), mode="r")
    except Exception as exc:  # noqa: BLE001 - av.error.*: not a media file FFmpeg knows
        raise MediaError(f"{name!r} is not a video Omnilingo can read.", key="media.not_video", name=name) from exc
    with container:
        streams = _picture_streams(container)
        if not streams:
            raise MediaError(f"{name!r} is not a video Omnilingo can read.", key="media.not_video", name=name)
        stream = streams[0]
        context = stream.codec_context
        width, height = int(context.width or 0), int(context.height or 0)
        if width * height > limits.max_video_pixels:
            raise MediaError(
                f"The video {name!r} has too many pixels ({width}×{height}; the limit is "
                f"{limits.max_video_pixels / 1e6:.1f} megapixels, 4K).",
                key="media.video_too_large",
                name=name,
                width=width,
                height=height,
                limit_megapixels=round(limits.max_video_pixels / 1e6, 1),
            )
        declared = _duration(container, stream)
        if declared is not None and declared > limits.max_audio_seconds:
            raise _too_long(name, declared, limits, kind="video")
        frames, times = _sample_frames(container, stream, declared, max_frames, name, limits)
        fmt = f"{container.format.name}/{getattr(context, 'name', 'unknown')}"
    if not frames:
        raise MediaError(f"The video {name!r} has no pictures in it.", key="media.video_empty", name=name)
    duration = max(declared or 0.0, times[-1])
    audio = _sound_track(path, limits)
    return VideoClip(frames=frames, times_s=times, duration_s=duration, width=width, height=height, audio=audio,
                     source_format=fmt)


def _sample_frames(container, stream, declared: float | None, max_frames: int, name: str, limits: MediaLimits):
    """Frames at the middle of ``frames_for`` equal slices of the clip, by seeking; every frame is
    decoded instead when seeking fails or the length is unknown."""
    wanted = frames_for(declared or 0.0, max_frames)
    if declared and declared > 0 and wanted > 1:
        try:
            picked = _seek_frames(container, stream, [(i + 0.5) * declared / wanted for i in range(wanted)], limits)
            if picked:
                return [f for f, _ in picked], [t for _, t in picked]
        except MediaError:
            raise
        except Exception as exc:  # noqa: BLE001 - a file that cannot seek is read from the start
            log.debug("%s: seeking failed (%s); decoding every frame", name, exc)
        container.seek(0)
    return _scan_frames(container, stream, wanted, name, limits)


def _time_of(frame, stream) -> float | None:
    if frame.pts is None:
        return None
    base = frame.time_base or stream.time_base
    return float(frame.pts * base) if base is not None else None


def _seek_frames(container, stream, targets: list[float], limits: MediaLimits) -> list[tuple[Image.Image, float]]:
    picked: list[tuple[Image.Image, float]] = []
    base = stream.time_base
    for target in targets:
        container.seek(int(target / base), stream=stream, backward=True, any_frame=False)
        chosen = None
        for frame in container.decode(stream):
            t = _time_of(frame, stream)
            chosen = (frame, t if t is not None else target)
            if t is None or t >= target:
                break
        if chosen is None:
            break
        frame, t = chosen
        if picked and t <= picked[-1][1]:
            continue  # two targets inside one long frame
        picked.append((_shrink(frame.to_image()), t))
    return picked


def _scan_frames(container, stream, wanted: int, name: str, limits: MediaLimits):
    """Decode every frame (the length was unknown): keep the first and then evenly spaced ones."""
    kept: list[tuple[Image.Image, float]] = []
    every = 1
    count = 0
    try:
        for frame in container.decode(stream):
            t = _time_of(frame, stream)
            t = t if t is not None else count / float(stream.average_rate or 25)
            if t > limits.max_audio_seconds:
                raise _too_long(name, t, limits, kind="video")
            if count % every == 0:
                kept.append((_shrink(frame.to_image()), t))
                if len(kept) > 2 * wanted:  # too many: keep every other one from here on
                    kept = kept[::2]
                    every *= 2
            count += 1
    except MediaError:
        raise
    except Exception as exc:  # noqa: BLE001 - InvalidDataError and friends: damaged data
        if not kept:
            raise _corrupt(name) from exc
        log.warning("%s: decoding stopped early (%s); keeping what was decoded", name, exc)
    if len(kept) > wanted:
        step = len(kept) / wanted
        kept = [kept[int(i * step + step / 2)] for i in range(wanted)]
    return [f for f, _ in kept], [t for _, t in kept]


def _sound_track(path: Path, limits: MediaLimits) -> AudioClip | None:
    """The video's sound as a 16 kHz recording; None for a silent film (no sound track, or an empty one)."""
    try:
        return load_audio(path, limits)
    except MediaError as err:
        if err.key in {"media.no_audio_stream", "media.audio_empty", "media.not_audio"}:
            return None
        if err.key == "media.audio_too_long":
            seconds = err.params.get("seconds")
            raise _too_long(path.name, float(seconds) if isinstance(seconds, (int, float)) else 0.0, limits,
                            kind="video") from err
        raise
