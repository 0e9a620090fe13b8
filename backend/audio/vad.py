"""Voice activity detection: when a user starts and stops talking.

Silero VAD (the ONNX model shipped inside the ``silero-vad`` wheel) scores 32 ms
frames of 16 kHz audio; a small state machine around it turns scores into turn
events:

* ``speech_candidate`` at the second frame that sounds like speech (the first, when
  the model is sure of it), before it is confirmed: what an answer being played can
  pause on, to resume it if no ``speech_start`` follows.
* ``speech_start`` once ``min_speech_ms`` of speech has been heard (clicks and
  short bursts never count). Its ``t`` is the estimated onset, and the event comes
  out of the very ``process`` call in which the confirmation was reached: this is
  the barge-in trigger.
* ``speech_end`` after ``end_silence_ms`` below the lower threshold, with the
  whole utterance (pre-roll included, so the first word is not lost).
* ``discarded`` for a burst that never reached ``min_speech_ms``.

The model runs through onnxruntime directly: no torch, no hub download.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from backend.audio.pcm import SAMPLE_RATE, StreamResampler

if TYPE_CHECKING:
    from backend.audio.echo import EchoGuard

FRAME = 512  # samples per model call at 16 kHz (32 ms), fixed by silero v5
CONTEXT = 64  # samples of the previous frame that silero v5 expects in front
FRAME_S = FRAME / SAMPLE_RATE
# Frames of speech that make a candidate (what an answer being played pauses on). Two, not one: at the
# first frame, beeps and chords paused an answer in 3 of 33 noise clips, at the second in 1, for 32 ms
# more before the pause (bench/barge_in.py).
CANDIDATE_FRAMES = 2
# A first frame this sure is a candidate on its own, 32 ms sooner: a soft start can score near nothing for
# 0.2 s, then 0.84-0.99 as the frames fall (the Mandarin of sr_chinese.flac, the slowest start but one in
# bench/barge_in.py). No beep or chord of the bench reached it: they paused no more answers than with two.
CONFIDENT_FRAME = 0.9

EventKind = Literal["speech_candidate", "speech_start", "speech_end", "discarded"]


@dataclass
class VadConfig:
    start_threshold: float = 0.5  # probability that opens a speech candidate
    end_threshold: float = 0.35  # below this a frame counts as silence (hysteresis)
    min_speech_ms: int = 250  # speech needed before speech_start is emitted
    end_silence_ms: int = 500  # silence that ends a turn
    preroll_ms: int = 500  # audio kept from before the onset
    max_utterance_s: float = 30.0  # longer turns are cut (the omni model takes 30 s clips)
    # A candidate whose speech stops for this long before it is confirmed is dropped:
    # separate clicks or knocks do not add up to min_speech_ms.
    max_gap_ms: int = 150
    trailing_ms: int = 200  # silence kept after the last speech frame in an utterance
    model_path: str | None = None  # default: the model inside the silero-vad wheel

    def __post_init__(self) -> None:
        if not 0.0 < self.end_threshold <= self.start_threshold < 1.0:
            raise ValueError("need 0 < end_threshold <= start_threshold < 1")
        for name in ("min_speech_ms", "end_silence_ms", "preroll_ms", "max_gap_ms", "trailing_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.max_utterance_s <= 0:
            raise ValueError("max_utterance_s must be positive")


@dataclass
class VadEvent:
    kind: EventKind
    t: float  # stream time in seconds: onset for speech_candidate/start/discarded, end of speech for speech_end
    audio: np.ndarray | None = None  # speech_end: the utterance, pre-roll included, 16 kHz float32
    decided_at: float = 0.0  # stream time of the frame that settled the event (t + confirmation delay)
    forced: bool = False  # speech_end because max_utterance_s was reached or the stream was flushed

    @property
    def duration(self) -> float:
        """Seconds of audio carried (0 when none)."""
        return 0.0 if self.audio is None else len(self.audio) / SAMPLE_RATE


def default_model_path() -> Path:
    """Path of silero_vad.onnx inside the installed silero-vad wheel.

    Found with ``find_spec`` so that the package (which imports torch) is not imported.
    """
    override = os.environ.get("OMNILINGO_VAD_MODEL")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the silero-vad package is not installed; `pip install silero-vad` "
            "or set OMNILINGO_VAD_MODEL to a silero_vad.onnx file"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "silero_vad.onnx"
    if not path.is_file():
        raise FileNotFoundError(f"silero VAD model not found at {path}")
    return path


_sessions: dict[str, object] = {}
_sessions_lock = threading.Lock()


def _session(path: Path):
    """One onnxruntime session per model file, shared by all detectors (runs are thread-safe)."""
    key = str(path)
    with _sessions_lock:
        if key not in _sessions:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            # The model is tiny: more threads only add overhead and steal cores from the LLM.
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            _sessions[key] = ort.InferenceSession(key, sess_options=opts, providers=["CPUExecutionProvider"])
        return _sessions[key]


_IDLE, _CANDIDATE, _SPEECH = 0, 1, 2


class VoiceActivityDetector:
    """Streaming VAD: feed any chunk size at any rate, get turn events back.

    Not thread-safe: one detector per microphone stream.
    """

    # Silero's recurrent state, its audio context and rate input; set by reset().
    _state: np.ndarray
    _context: np.ndarray
    _sr: np.ndarray

    def __init__(self, config: VadConfig | None = None, *, echo_guard: EchoGuard | None = None) -> None:
        self.config = config or VadConfig()
        self.echo_guard = echo_guard  # when set, the model hears the mic minus the assistant's own voice
        self._model = _session(Path(self.config.model_path) if self.config.model_path else default_model_path())
        self._resampler = StreamResampler()
        c = self.config
        self._min_speech_frames = max(1, int(np.ceil(c.min_speech_ms / 1000 / FRAME_S)))
        self._end_frames = max(1, int(np.ceil(c.end_silence_ms / 1000 / FRAME_S)))
        self._gap_frames = max(1, int(np.ceil(c.max_gap_ms / 1000 / FRAME_S)))
        self._preroll_frames = int(np.ceil(c.preroll_ms / 1000 / FRAME_S))
        self._trailing_frames = int(np.ceil(c.trailing_ms / 1000 / FRAME_S))
        self._max_frames = max(1, int(c.max_utterance_s / FRAME_S))
        self.reset()

    # -- model -------------------------------------------------------------------------

    def speech_probability(self, frame_16k: np.ndarray) -> float:
        """Silero's speech probability for one 512-sample 16 kHz frame.

        Advances the model's recurrent state and context: frames must come in stream order.
        """
        frame = np.asarray(frame_16k, dtype=np.float32).reshape(-1)
        if frame.shape[0] != FRAME:
            raise ValueError(f"a frame is {FRAME} samples at 16 kHz, got {frame.shape[0]}")
        x = np.concatenate([self._context, frame])[None, :]
        out, self._state = self._model.run(None, {"input": x, "state": self._state, "sr": self._sr})
        self._context = frame[-CONTEXT:].copy()
        return float(out.reshape(-1)[0])

    # -- streaming -----------------------------------------------------------------------

    @property
    def stream_time(self) -> float:
        """Seconds of 16 kHz audio scored so far (the clock of every event's ``t``)."""
        return self._frames_done * FRAME_S

    @property
    def in_speech(self) -> bool:
        """True between speech_start and speech_end."""
        return self._phase == _SPEECH

    @property
    def may_be_speech(self) -> bool:
        """True from the first frame that sounds like speech until it ends or is discarded."""
        return self._phase != _IDLE

    def reset(self) -> None:
        """Forget everything: model state, buffered audio, the stream clock."""
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros(CONTEXT, np.float32)
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)
        self._resampler.reset()
        self._pending = np.zeros(0, np.float32)
        self._frames_done = 0
        self._phase = _IDLE
        self._preroll: deque[np.ndarray] = deque(maxlen=max(1, self._preroll_frames))
        self._utt: list[np.ndarray] = []
        self._onset_frame = 0
        self._candidate_told = False  # the speech_candidate of this candidate was sent
        self._speech_frames = 0
        self._silent_run = 0
        self._last_speech_frame = 0
        self.last_probability = 0.0

    def process(self, samples: np.ndarray, sample_rate: int) -> list[VadEvent]:
        """Feed the next chunk of the stream (any length, any rate, int or float PCM)."""
        x16 = self._resampler(samples, sample_rate)
        return self._feed16(x16)

    def flush(self) -> list[VadEvent]:
        """End of stream: score what is buffered and close an open utterance."""
        events = self._feed16(self._resampler.flush())
        if len(self._pending):
            pad = np.zeros(FRAME - len(self._pending), np.float32)
            events += self._feed16(pad)
        if self._phase == _SPEECH:
            events.append(self._end(self._frames_done, forced=True))
        elif self._phase == _CANDIDATE:
            events.append(self._discard())
        return events

    def speech_segments(self, samples: np.ndarray, sample_rate: int) -> list[tuple[float, float]]:
        """Offline helper: (start, end) seconds of each confirmed utterance in a whole recording.

        Uses a fresh stream (the detector is reset before and after).
        """
        self.reset()
        try:
            events = self.process(samples, sample_rate) + self.flush()
        finally:
            self.reset()
        return _pair(events)

    def _feed16(self, x16: np.ndarray) -> list[VadEvent]:
        if self.echo_guard is not None and len(x16):
            x16 = self.echo_guard.residual(x16)
        buf = np.concatenate([self._pending, x16]) if len(self._pending) else x16
        n = len(buf) // FRAME
        events: list[VadEvent] = []
        for i in range(n):
            frame = buf[i * FRAME : (i + 1) * FRAME]
            ev = self._step(frame, self.speech_probability(frame))
            if ev:
                events.extend(ev)
        self._pending = buf[n * FRAME :].copy()
        return events

    def _step(self, frame: np.ndarray, p: float) -> list[VadEvent] | None:
        c = self.config
        idx = self._frames_done  # index of this frame; it spans [idx, idx+1) * FRAME_S
        self._frames_done += 1
        self.last_probability = p
        out: list[VadEvent] = []
        if self._phase == _IDLE:
            if p >= c.start_threshold:
                self._phase = _CANDIDATE
                self._candidate_told = False
                self._onset_frame = idx
                self._utt = list(self._preroll)
                self._preroll.clear()
                self._utt.append(frame)
                self._speech_frames = 1
                self._silent_run = 0
                self._last_speech_frame = idx
                if self._speech_frames >= self._min_speech_frames:
                    out.append(self._confirm(idx))
                elif p >= CONFIDENT_FRAME:
                    out.append(self._candidate(idx))
            else:
                self._preroll.append(frame)
            return out
        self._utt.append(frame)
        if p >= c.end_threshold:
            self._speech_frames += 1
            self._silent_run = 0
            self._last_speech_frame = idx
        else:
            self._silent_run += 1
        if self._phase == _CANDIDATE:
            # Once, at the frame of speech that makes the count reach CANDIDATE_FRAMES (a silent frame leaves it
            # there); never when that count already confirms the speech.
            if not self._candidate_told and p >= c.end_threshold and self._speech_frames == CANDIDATE_FRAMES < self._min_speech_frames:
                out.append(self._candidate(idx))
            if self._speech_frames >= self._min_speech_frames:
                out.append(self._confirm(idx))
            elif self._silent_run >= self._gap_frames:
                out.append(self._discard())
            return out
        # in speech
        if self._silent_run >= self._end_frames:
            out.append(self._end(idx + 1))
        elif idx + 1 - self._onset_frame >= self._max_frames:
            out.append(self._end(idx + 1, forced=True))
        return out

    def _candidate(self, idx: int) -> VadEvent:
        self._candidate_told = True
        return VadEvent("speech_candidate", self._onset_frame * FRAME_S, decided_at=(idx + 1) * FRAME_S)

    def _confirm(self, idx: int) -> VadEvent:
        self._phase = _SPEECH
        return VadEvent("speech_start", self._onset_frame * FRAME_S, decided_at=(idx + 1) * FRAME_S)

    def _discard(self) -> VadEvent:
        ev = VadEvent("discarded", self._onset_frame * FRAME_S, decided_at=self._frames_done * FRAME_S)
        # The burst's audio goes back to the pre-roll: if speech follows, its lead-in is kept.
        for f in self._utt[-(self._preroll.maxlen or 1) :]:
            self._preroll.append(f)
        self._utt = []
        self._phase = _IDLE
        return ev

    def _end(self, end_frame: int, forced: bool = False) -> VadEvent:
        # Keep pre-roll + speech + a little trailing silence; drop the rest of the wait.
        first = self._onset_frame - (len(self._utt) - (end_frame - self._onset_frame))
        keep_until = min(end_frame, self._last_speech_frame + 1 + self._trailing_frames)
        frames = self._utt[: max(1, keep_until - first)]
        audio = np.concatenate(frames).astype(np.float32, copy=False)
        t_end = (end_frame if forced else self._last_speech_frame + 1) * FRAME_S
        ev = VadEvent("speech_end", t_end, audio=audio, decided_at=end_frame * FRAME_S, forced=forced)
        self._utt = []
        self._preroll.clear()
        self._phase = _IDLE
        self._silent_run = 0
        return ev


def _pair(events: list[VadEvent]) -> list[tuple[float, float]]:
    segs = []
    start = None
    for ev in events:
        if ev.kind == "speech_start":
            start = ev.t
        elif ev.kind == "speech_end" and start is not None:
            segs.append((start, ev.t))
            start = None
    return segs


def speech_segments(samples: np.ndarray, sample_rate: int, config: VadConfig | None = None) -> list[tuple[float, float]]:
    """(start, end) seconds of each utterance in a whole recording."""
    return VoiceActivityDetector(config).speech_segments(samples, sample_rate)
