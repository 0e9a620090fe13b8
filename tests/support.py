"""Small helpers shared by the tests."""

from __future__ import annotations

import contextlib
import socket
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

# Real recordings, photos and text that travel with the tests (sources and licences in its README).
CORPUS = Path(__file__).resolve().parent / "fixtures"


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def launched(settings) -> Iterator[tuple[object, str]]:
    """The app launched as ``python -m app`` launches it, models loaded: (its Runtime, its address)."""
    from app.server import create_app
    from app.ui import launch_kwargs

    demo, runtime = create_app(settings)
    try:
        demo.launch(**launch_kwargs(runtime), prevent_thread_lock=True, quiet=True)
        assert runtime.wait_until_loaded(120).state == "ready"
        yield runtime, f"http://127.0.0.1:{settings.port}/"
    finally:
        demo.close()
        runtime.close()


def png_bomb(path: Path, side: int = 30_000) -> Path:
    """A 1-bit PNG of side×side zero pixels: about 100 KB on disk, 2.7 GB once decoded to RGB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (side + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row * 1000) for _ in range(side // 1000)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def message_text(message: dict) -> str:
    """The text of a chat message as Gradio sends it: a string, or blocks with text."""
    content = message["content"]
    if isinstance(content, str):
        return content
    return " ".join(str(b.get("text") or "") if isinstance(b, dict) else str(b) for b in content)


def message_files(message: dict) -> list[str]:
    """The file paths a chat message shows (images, recordings)."""
    content = message["content"]
    if isinstance(content, str):
        return []
    paths = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "file":
            inner = block.get("file")
            paths.append(inner.get("path") if isinstance(inner, dict) else block.get("path") or inner)
    return [p for p in paths if p]


def make_video(path: Path, seconds: float = 3.0, size: tuple[int, int] = (96, 64), fps: float = 5.0,
               sound: Path | None = None, codec: str = "libx264", picture: Path | None = None) -> Path:
    """A small test video made with ffmpeg: a moving test pattern (or a still ``picture``), and ``sound``
    (any recording) as its sound track when given; no sound track otherwise."""
    import shutil
    import subprocess

    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("ffmpeg is needed to make test videos")
    width, height = size
    if picture is not None:
        video_in = ["-loop", "1", "-framerate", f"{fps:g}", "-i", str(picture)]
        scale = ["-vf", f"scale={width}:{height}"]
    else:
        video_in = ["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps:g}"]
        scale = []
    audio_in = ["-i", str(sound)] if sound is not None else []
    audio_out = ["-c:a", "libopus" if path.suffix == ".webm" else "aac"] if sound is not None else ["-an"]
    video_codec = "libvpx" if path.suffix == ".webm" else codec
    cmd = [ffmpeg, "-nostdin", "-loglevel", "error", "-y", *video_in, *audio_in, "-t", f"{seconds:g}", *scale,
           "-c:v", video_codec, "-pix_fmt", "yuv420p", *audio_out, str(path)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    return path
