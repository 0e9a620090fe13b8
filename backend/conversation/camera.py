"""The camera in voice mode: the latest pictures the browser streamed, for the next spoken turn.

While the camera is on, the page streams a picture every CAMERA_EVERY_S; a spoken turn takes the
newest one (or the last few) when the utterance ends. When it is off nothing is kept, and pictures
that still arrive (a stream that has not noticed yet) are dropped.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

# How often the page sends a camera picture (640×480, app/ui.py): the newest is at most this old when
# the user stops speaking. Measured in chromium with its fake devices: 1280×960 pictures every 0.5 s
# starved the microphone's stream (no utterance arrived in 60 s); at 640×480 every 1 s the microphone
# kept its pace (8.2 chunks/s with the camera on, 7.7 with it off, of the 10 it sends; one run each).
CAMERA_EVERY_S = 1.0
# A picture older than this when the utterance ends shows something else (the stream stalled).
MAX_AGE_S = 5.0
# Sent at most this wide or tall: the models shrink pictures further anyway.
MAX_SIDE = 1280


@dataclass
class Snapshot:
    image: Image.Image
    at: float  # time.monotonic() when it arrived


class CameraFeed:
    """One browser tab's camera: on or off, and its last few pictures."""

    def __init__(self, keep: int = 1) -> None:
        self.keep = max(1, keep)
        self.on = False
        self._frames: deque[Snapshot] = deque(maxlen=self.keep)
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            self.on = True
            self._frames.clear()

    def stop(self) -> None:
        with self._lock:
            self.on = False
            self._frames.clear()

    def see(self, picture: np.ndarray | Image.Image | None, now: float | None = None) -> bool:
        """A picture from the stream; kept only while the camera is on."""
        if picture is None or not self.on:
            return False
        image = picture if isinstance(picture, Image.Image) else Image.fromarray(np.asarray(picture, dtype=np.uint8))
        image = image.convert("RGB")
        if max(image.size) > MAX_SIDE:
            image.thumbnail((MAX_SIDE, MAX_SIDE))
        with self._lock:
            if not self.on:
                return False
            self._frames.append(Snapshot(image, time.monotonic() if now is None else now))
        return True

    def latest(self, now: float | None = None) -> list[Image.Image]:
        """The pictures for a turn that ends now: the newest ``keep``, none older than MAX_AGE_S."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if not self.on:
                return []
            return [s.image for s in self._frames if now - s.at <= MAX_AGE_S]

    def save_latest(self, folder: Path, stem: str) -> list[Path]:
        """The turn's pictures as JPEG files in ``folder`` (the conversation copies what it keeps)."""
        paths = []
        for index, image in enumerate(self.latest(), 1):
            path = folder / f"{stem}-{index}.jpg"
            image.save(path, quality=90)
            paths.append(path)
        return paths
