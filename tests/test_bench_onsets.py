"""What the barge-in bench calls a user starting to talk, and when it says they started."""

from __future__ import annotations

import numpy as np
import pytest

from bench.vad_noise import SR, load_audio_16k, onset_of, speech_pieces, utterance_starts, word_onset_of
from tests.support import CORPUS


def tone(seconds: float, level: float, hz: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (level * np.sqrt(2) * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def quiet(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR), np.float32)


def test_pieces_begin_only_where_someone_starts_to_talk():
    # 5 s of unbroken sound, a pause, then 1 s: two starts; speech_pieces also cuts the long one inside
    x = np.concatenate([quiet(0.5), tone(5.0, 0.1), quiet(0.6), tone(1.0, 0.1), quiet(0.5)])
    starts = utterance_starts(x)
    assert len(starts) == 2
    assert [len(p) / SR for p in starts] == pytest.approx([3.0, 1.55], abs=0.02)  # the last one keeps its trailing pause
    assert len(speech_pieces(x)) > len(starts)
    for p in starts:  # ~50 ms of the pause, then the sound
        assert onset_of(p) == pytest.approx(0.05, abs=0.011)


def test_a_breath_apart_from_the_words_is_not_where_they_start():
    breath = np.random.default_rng(0).standard_normal(int(0.4 * SR)).astype(np.float32) * 0.006
    soft = tone(0.04, 0.006, hz=3000.0)  # a soft first consonant leading into the vowel, 24 dB under it
    x = np.concatenate([quiet(0.1), breath, quiet(0.3), soft, tone(0.6, 0.1), quiet(0.2)])
    assert onset_of(x) == pytest.approx(0.1, abs=0.011)  # the first sound: the breath
    assert word_onset_of(x) == pytest.approx(0.8, abs=0.011)  # the consonant, not the vowel after it


def test_a_real_piece_that_opens_with_breathing():
    x = load_audio_16k(CORPUS / "speech" / "silero_en.wav")
    piece = x[int(7.49 * SR) : int(10.49 * SR)]  # a start 7.54 s into the recording
    assert onset_of(piece) < 0.2  # the breathing
    assert word_onset_of(piece) > 1.5  # the words come 1.8 s later
