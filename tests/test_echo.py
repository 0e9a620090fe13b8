"""The echo guard: the assistant's own voice through speakers and mic never starts a
turn; a user talking over it does."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from backend.audio.echo import EchoGuard
from backend.audio.pcm import SAMPLE_RATE
from backend.audio.vad import VoiceActivityDetector
from bench.vad_noise import echo_of, espeak, load_audio_16k, make_noise, rms, to_mic_chunks
from tests.support import CORPUS

SPEECH = CORPUS / "speech"

pytestmark = pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng not installed")


@pytest.fixture(scope="module")
def assistant() -> np.ndarray:
    """What the assistant says aloud (espeak-ng, as the TTS fallback does)."""
    v = espeak(
        "Of course. The museum opens at nine, tickets are twelve euros, and on the first "
        "Sunday of the month entry is free for everyone.",
        "en",
    )
    return (v / rms(v) * 0.08).astype(np.float32)


@pytest.fixture(scope="module")
def user() -> np.ndarray:
    x = load_audio_16k(SPEECH / "jfk.flac")
    return (x / rms(x) * 0.08).astype(np.float32)


def mic_signal(voice, delay_s, seed, total_s=None):
    total = int((total_s or len(voice) / SAMPLE_RATE + 1.0) * SAMPLE_RATE)
    mic = echo_of(voice, delay_s, -6.0, np.random.default_rng(seed), total)
    return mic + make_noise("pink", total / SAMPLE_RATE + 0.01, 0.002, seed=seed)[:total]


def run(mic, guard=None, played=None):
    vad = VoiceActivityDetector(echo_guard=guard)
    if guard is not None and played is not None:
        guard.played(played, t=0.0)
    events = []
    for c in to_mic_chunks(mic, 0.25):  # 48 kHz int16, as the browser sends it
        events += vad.process(c, 48000)
    return events + vad.flush()


def starts(events):
    return [e.t for e in events if e.kind == "speech_start"]


@pytest.mark.parametrize("delay_ms", [30, 80, 120, 200])
@pytest.mark.parametrize("seed", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_own_voice_coming_back_does_not_barge_in(assistant, delay_ms, seed):
    mic = mic_signal(assistant, delay_ms / 1000, seed)
    # without the guard the echo is taken for a user: the guard is what stops it
    assert starts(run(mic))
    assert starts(run(mic, EchoGuard(), assistant)) == []


@pytest.mark.parametrize(("voice", "delay_ms"), [("en", 30), ("en", 250), ("de", 30), ("de", 120)])
def test_own_voice_through_a_plain_delay_does_not_barge_in(voice, delay_ms):
    """A headset or a speaker next to the mic, and no noise to hide what the subtraction leaves: each of
    these barged in while the fit solved Toeplitz equations from the playback's autocorrelation."""
    from backend.conversation.voice import ECHO_MAX_DELAY_MS, VOICE_VAD

    own = espeak("The sea covers most of our planet and holds countless forms of life.", voice)
    delay = int(delay_ms * SAMPLE_RATE / 1000)
    mic = np.zeros(len(own) + delay, np.float32)
    mic[delay:] = 0.5 * own
    guard = EchoGuard(max_delay_ms=ECHO_MAX_DELAY_MS)
    guard.played(own, t=0.0)
    vad = VoiceActivityDetector(VOICE_VAD, echo_guard=guard)
    events = [e for c in to_mic_chunks(mic, 0.05) for e in vad.process(c, 48000)]
    assert [e.kind for e in events if e.kind in ("speech_candidate", "speech_start")] == []


def test_a_plain_delay_is_cancelled_far_below_hearing(assistant):
    guard = EchoGuard(residual_margin_db=None, suppress_db=200)  # the subtraction alone
    guard.played(assistant, t=0.0)
    mic = np.zeros(len(assistant) + 800, np.float32)
    mic[800:] = 0.5 * assistant
    residual = np.concatenate([guard.residual(mic[a : a + 800]) for a in range(0, len(mic), 800)])
    after_a_second = slice(SAMPLE_RATE, len(mic))
    erle = 10 * np.log10(np.mean(mic[after_a_second] ** 2) / np.mean(residual[after_a_second] ** 2))
    assert erle > 60  # 27 dB with the Toeplitz fit


@pytest.mark.slow
@pytest.mark.parametrize("delay_ms", [40, 150])
def test_user_talking_over_the_assistant_is_heard(assistant, user, delay_ms):
    at = 1.5  # the user cuts in 1.5 s into the answer
    mic = mic_signal(assistant, delay_ms / 1000, 3, total_s=len(assistant) / SAMPLE_RATE + 1.0)
    seg = user[: len(mic) - int(at * SAMPLE_RATE)]
    mic[int(at * SAMPLE_RATE) : int(at * SAMPLE_RATE) + len(seg)] += seg
    onset = at + 0.35  # "And so..." starts 0.35 s into jfk.flac
    found = starts(run(mic, EchoGuard(), assistant))
    assert found, "the user's speech over the echo was not detected"
    assert onset - 0.3 <= found[0] <= onset + 1.0


def test_a_user_quieter_than_the_echo_is_heard_where_the_echo_is_well_cancelled(assistant, user):
    # The user at -30 dBFS, under the assistant's echo (-6 dB of a -22 dBFS voice, 40 ms late). The linear
    # canceller leaves the echo about 30 dB down here: the guard silences what stays within 10 dB of that, and
    # only as long as the echo's reverberation lasts. Silencing everything up to 10 dB under an echo envelope
    # that lingers (the loudest of the last syllables) held back the user's first syllables.
    at = 1.5
    quiet = user * (0.03 / 0.08)
    mic = mic_signal(assistant, 0.04, 3, total_s=len(assistant) / SAMPLE_RATE + 1.0)
    seg = quiet[: len(mic) - int(at * SAMPLE_RATE)]
    mic[int(at * SAMPLE_RATE) : int(at * SAMPLE_RATE) + len(seg)] += seg
    onset = at + 0.35
    heard = starts(run(mic, EchoGuard(), assistant))
    lingering = starts(run(mic, EchoGuard(residual_margin_db=None, tail_fall_db_per_s=10), assistant))
    assert heard and onset - 0.1 <= heard[0] <= onset + 0.3, heard
    assert lingering and lingering[0] > onset + 0.5, lingering  # heard the user only later


@pytest.mark.slow
def test_playback_queued_in_pieces_without_times(assistant):
    """played() without t: sentences follow each other from the moment playback starts."""
    mic = mic_signal(assistant, 0.1, 4)
    guard = EchoGuard()
    vad = VoiceActivityDetector(echo_guard=guard)
    events = []
    for c in to_mic_chunks(np.zeros(SAMPLE_RATE, np.float32)):  # 1 s of quiet before the answer
        events += vad.process(c, 48000)
    assert guard.now == pytest.approx(1.0, abs=0.05)
    third = len(assistant) // 3
    for piece in (assistant[:third], assistant[third : 2 * third], assistant[2 * third :]):
        guard.played(piece)  # queued back to back, starting now
    assert guard.playing
    for c in to_mic_chunks(mic):
        events += vad.process(c, 48000)
    assert starts(events + vad.flush()) == []


def test_is_echo_tells_echo_from_user(assistant, user):
    mic = mic_signal(assistant, 0.06, 5)
    guard = EchoGuard()
    guard.played(assistant, t=0.0)
    half = SAMPLE_RATE // 2
    verdicts = [guard.is_echo(mic[i : i + half]) for i in range(0, 3 * SAMPLE_RATE, half)]
    assert sum(verdicts) >= len(verdicts) - 1  # the first chunk may hold only the delay
    # the same playback with the user's voice on top is not "just echo"
    mic2 = mic_signal(assistant, 0.06, 5)
    mic2[: 3 * SAMPLE_RATE] += user[: 3 * SAMPLE_RATE] * 2
    guard = EchoGuard()
    guard.played(assistant, t=0.0)
    verdicts = [guard.is_echo(mic2[i : i + half]) for i in range(half, 3 * SAMPLE_RATE, half)]
    assert not any(verdicts[1:])


def test_without_playback_the_mic_passes_unchanged(user):
    guard = EchoGuard()
    chunk = user[:8000]
    assert np.array_equal(guard.residual(chunk), chunk)
    assert not guard.last_ref_active and not guard.playing


def test_clear_stops_cancelling_what_was_not_played(assistant, user):
    """After playback is stopped (barge-in), the rest of the answer is not subtracted
    from the mic: the user's next words are heard intact."""
    guard = EchoGuard()
    guard.played(assistant, t=0.0)
    guard.residual(mic_signal(assistant, 0.05, 6)[: SAMPLE_RATE])
    guard.clear()
    # echo of what did play still arrives, and rings, for a moment...
    tail = guard.residual(np.zeros(8000, np.float32))
    assert tail.shape == (8000,)
    # ...then the mic is the user alone and passes untouched
    later = user[:8000]
    out = guard.residual(later)
    assert np.array_equal(out, later)
    assert not guard.playing


def test_resampled_playback_and_reset(assistant):
    import soxr

    v24 = soxr.resample(assistant, SAMPLE_RATE, 24000).astype(np.float32)  # a 24 kHz TTS voice
    mic = mic_signal(assistant, 0.12, 7)
    guard = EchoGuard()
    guard.played(v24, t=0.0, sample_rate=24000)
    assert starts(run(mic, guard)) == []
    assert guard.delay_samples == pytest.approx(0.12 * SAMPLE_RATE, abs=24)
    guard.reset()
    assert guard.now == 0.0 and not guard.playing


def test_an_answer_paused_and_played_on_is_still_cancelled(assistant):
    """The page pauses the answer for 0.3 s (speech may have begun) and plays it on from there.

    Told so, the guard follows: it neither subtracts the echo of audio that no longer plays (which
    adds the assistant's voice, inverted, to what the voice detector hears) nor loses the echo that
    comes 0.3 s later than queued."""
    pause_at, gap = int(1.5 * SAMPLE_RATE), int(0.3 * SAMPLE_RATE)
    heard = np.concatenate([assistant[:pause_at], np.zeros(gap, np.float32), assistant[pause_at:]])
    mic = mic_signal(heard, 0.08, seed=1)

    def db(x: np.ndarray) -> float:
        return float(10 * np.log10(np.mean(x**2) + 1e-12))

    residuals = {}
    for told in (False, True):
        guard = EchoGuard(max_delay_ms=1500)
        guard.played(assistant, t=0.0)
        out = []
        for i in range(0, len(mic), 800):  # 50 ms chunks
            if told and i == pause_at:
                guard.pause(pause_at / SAMPLE_RATE)
            if told and i == pause_at + gap:
                guard.resume((pause_at + gap) / SAMPLE_RATE)
            out.append(guard.residual(mic[i : i + 800]))
        residuals[told] = np.concatenate(out)
    during, after = slice(pause_at + 800, pause_at + gap), slice(pause_at + gap, len(heard))
    told = residuals[True]
    assert db(told[during]) < db(mic[during]) - 10, "the echo of audio that was paused was subtracted"
    assert db(told[after]) < db(mic[after]) - 20, "the echo after the pause was not cancelled"
    untold = residuals[False]
    assert db(untold[after]) > db(told[after]) + 10  # what pause() and resume() are for


@pytest.mark.parametrize("told", ["where the speakers stopped", "where the guard had heard up to"])
def test_a_pause_is_placed_where_the_speakers_stopped(assistant, told):
    """The page's speakers pause ahead of what the guard has heard: the mic's resampler holds back ~36 ms,
    and the page pauses after the reply's way to it. Told where the speakers really stopped and went on,
    the guard cancels the echo after the resume; placed where it had heard up to, 36 ms off, it does not."""
    delay, lag = 800, 576  # a plain 50 ms delay; samples the guard has not heard when the speakers pause
    pause_at, resume_at = SAMPLE_RATE, SAMPLE_RATE + 4800  # the speakers hold the answer 0.3 s
    played = np.concatenate([assistant[:pause_at], np.zeros(resume_at - pause_at, np.float32), assistant[pause_at:]])
    mic = np.zeros(len(played) + delay, np.float32)
    mic[delay:] = 0.5 * played
    guard = EchoGuard(residual_margin_db=None, suppress_db=200)  # the subtraction alone
    guard.played(assistant, t=0.0)
    shift = 0 if told == "where the speakers stopped" else lag
    out, t = [], 0
    for at, act in ((pause_at - lag, guard.pause), (resume_at - lag, guard.resume), (len(mic), None)):
        while t < at:
            out.append(guard.residual(mic[t : min(at, t + 800)]))
            t = min(at, t + 800)
        if act is not None:
            act((at + lag - shift) / SAMPLE_RATE)
    residual = np.concatenate(out)
    after = slice(resume_at + delay + 1600, resume_at + delay + SAMPLE_RATE)  # 0.1 s after the echo is back
    erle = 10 * np.log10(np.mean(mic[after] ** 2) / np.mean(residual[after] ** 2))
    if not shift:
        assert erle > 50, erle
    else:
        assert erle < 30, erle  # the echo 36 ms off what is subtracted
