"""PCM in, 16 kHz mono float32 out: the one audio format the pipeline hears.

Every stage below the decoders (VAD, echo guard, speech recognition, the model's
audio input) works on 16 kHz mono float32 in [-1, 1]; this module is the only
place that converts to it.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16_000


def to_float_mono(samples: np.ndarray) -> np.ndarray:
    """Any PCM array (int16/int32/uint8/float, mono or (n, channels)) as float32 mono in [-1, 1]."""
    x = np.asarray(samples)
    if x.dtype == np.int16:
        x = x.astype(np.float32) / 32768.0
    elif x.dtype == np.int32:
        x = x.astype(np.float32) / 2147483648.0
    elif x.dtype == np.uint8:
        x = (x.astype(np.float32) - 128.0) / 128.0
    else:
        x = x.astype(np.float32, copy=False)
    if x.ndim == 2:
        # (n, channels) as soundfile and Gradio give it; (channels, n) when clearly wider than tall
        x = x.mean(axis=1) if x.shape[1] <= x.shape[0] else x.mean(axis=0)
    elif x.ndim != 1:
        raise ValueError(f"audio must be 1-D or 2-D, got shape {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float32)


class StreamResampler:
    """Chunk-by-chunk resampling to 16 kHz mono float32, continuous across calls.

    soxr's ResampleStream keeps filter state between chunks, so cutting a stream into
    arbitrary pieces gives the same samples (up to float rounding) as one long call.
    """

    def __init__(self, out_rate: int = SAMPLE_RATE) -> None:
        self.out_rate = out_rate
        self._in_rate: int | None = None
        self._stream = None

    def __call__(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        x = to_float_mono(samples)
        sample_rate = int(sample_rate)
        if sample_rate <= 0:
            raise ValueError("sample_rate must be positive")
        pieces = []
        if sample_rate != self._in_rate:
            pieces.append(self.flush())
            self._in_rate = sample_rate
            if sample_rate != self.out_rate:
                import soxr

                self._stream = soxr.ResampleStream(sample_rate, self.out_rate, 1, dtype="float32")
        if self._stream is None:
            pieces.append(x)
        else:
            pieces.append(self._stream.resample_chunk(x))
        return np.concatenate(pieces) if len(pieces) > 1 else pieces[0]

    def flush(self) -> np.ndarray:
        """Samples still inside the filter (end of stream, or the input rate changes)."""
        out = np.zeros(0, np.float32)
        if self._stream is not None:
            out = self._stream.resample_chunk(np.zeros(0, np.float32), last=True)
        self.reset()
        return out

    def reset(self) -> None:
        self._stream = None
        self._in_rate = None


def resample_whole(samples: np.ndarray, sample_rate: int, out_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A whole recording at ``out_rate``, mono float32: StreamResampler's filter in one call."""
    resampler = StreamResampler(out_rate)
    return np.concatenate([resampler(samples, sample_rate), resampler.flush()])
