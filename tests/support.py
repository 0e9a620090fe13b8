"""Small helpers shared by the tests."""

from __future__ import annotations

import socket
import struct
import zlib
from pathlib import Path

# Real recordings, photos and text that travel with the tests (sources and licences in its README).
CORPUS = Path(__file__).resolve().parent / "fixtures"


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
