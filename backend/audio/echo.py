"""Echo guard: keep the assistant's own voice, coming back through the mic, from
triggering a barge-in.

The server knows what the speakers are playing. For each mic chunk the guard

1. finds the echo delay by GCC-PHAT cross-correlation of the recent mic signal
   with the recent playback (searching 0..max_delay_ms);
2. fits a short FIR echo path around that delay by least squares (covers the
   attenuation and the colouring of speaker, room and mic);
3. subtracts the predicted echo, and
4. silences sub-frames whose residual is still far below the predicted echo
   (residual echo suppression), so leftovers of the assistant's voice do not reach
   the voice detector, while a user talking over it keeps most of their energy.
   How far below follows what the subtraction achieves: what the echo alone leaves
   (the median of residual / predicted echo over the last 2 s), plus a margin,
   and never less than ``suppress_db`` under the echo. Where the fit removes the echo
   well, a user's first syllables, still quieter than the echo, get through sooner.

The VAD then runs on the residual (``VoiceActivityDetector(echo_guard=...)``).
Everything is numpy FFTs and one 256-tap solve over about a second of audio per chunk.

Clock: positions are mic-stream samples at 16 kHz. ``played(samples, t)`` says the
speakers start playing ``samples`` at mic-stream time ``t``; without ``t`` the audio
follows the previous chunk, or starts now when playback had run dry. The delay search
absorbs the unknown output latency up to ``max_delay_ms``, as long as it stays the same:
``pause(at_s)`` and ``resume(at_s)`` take the times the speakers really stopped and went on.
"""

from __future__ import annotations

import numpy as np

from backend.audio.pcm import SAMPLE_RATE, to_float_mono

_EPS = 1e-10
RIDGE = 1e-5  # of the mean tap energy: keeps the fit stable where the playback has no energy


class EchoGuard:
    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        max_delay_ms: int = 300,
        *,
        taps: int = 256,
        pre_taps: int = 16,
        window_s: float = 1.0,
        suppress_db: float = 10.0,
        tail_fall_db_per_s: float = 125.0,
        echo_db: float = 10.0,
        min_ref_rms: float = 1e-4,
        residual_margin_db: float | None = 10.0,
    ) -> None:
        """
        max_delay_ms: longest speaker-to-mic delay searched (output buffering + air).
        taps / pre_taps: length of the fitted echo path and how many taps of it lie
            before the correlation peak (filters spread the peak both ways).
        window_s: how much recent audio the delay search and the fit look at.
        suppress_db: a residual sub-frame more than this below the predicted echo
            (its envelope: reverberation lingers after each syllable) is treated as echo
            leftover and silenced.
        tail_fall_db_per_s: how fast that envelope falls after a loud syllable, as a room's
            reverberation dies away (a T60 of 0.5 s is 120 dB/s). Holding the loudest echo of
            the last 80 ms instead silenced a user's quiet first syllable 30-80 ms after a
            loud one of the assistant's (bench/barge_in.py).
        residual_margin_db: a residual sub-frame is kept once it is this much above what the
            echo alone typically leaves after subtraction (None: ``suppress_db`` alone decides).
            Measured from the median: from the 20th percentile, even 15 dB over it let the
            assistant's own voice barge in where the subtraction is good and the room still
            rings.
        echo_db: ``is_echo`` says True when cancellation removed at least this much.
        min_ref_rms: playback quieter than this counts as silence (nothing to cancel).
        """
        if sample_rate != SAMPLE_RATE:
            raise ValueError("the echo guard works on the VAD's 16 kHz stream")
        if not 0 <= pre_taps < taps:
            raise ValueError("need 0 <= pre_taps < taps")
        self.sample_rate = sample_rate
        self.max_delay = int(max_delay_ms * sample_rate / 1000)
        self.taps = taps
        self.pre = pre_taps
        self.window = int(window_s * sample_rate)
        self.suppress = 10 ** (-suppress_db / 10)
        self.echo_ratio = 10 ** (-echo_db / 10)
        self.min_ref_power = min_ref_rms**2
        self.residual_margin = None if residual_margin_db is None else 10 ** (residual_margin_db / 10)
        self._sub = 256  # residual-suppression granularity (16 ms)
        self._fall_db = tail_fall_db_per_s * self._sub / sample_rate  # per sub-frame
        self.reset()

    # -- playback side ---------------------------------------------------------------

    def reset(self) -> None:
        """Forget playback and mic history and restart the clock at 0."""
        self._now = 0  # mic samples seen so far
        self._ref = np.zeros(0, np.float32)  # playback on the mic clock, from _ref_base
        self._ref_base = 0
        self._play_end = 0
        self._paused_at: int | None = None  # mic sample at which the speakers were paused (pause())
        self._mic = np.zeros(0, np.float32)  # recent mic audio, ending at _now
        self.delay_samples: int | None = None  # last estimated echo delay
        self.last_erle_db = 0.0  # echo removed from the last chunk (dB), 0 when nothing played
        self.last_ref_active = False
        self._played_any = False
        self._env_db = -200.0  # the predicted echo's envelope at the last sub-frame (dB)
        self._ratios: list[float] = []  # residual / predicted echo power of recent echo-active sub-frames

    @property
    def now(self) -> float:
        """Mic-stream time in seconds (samples passed through ``residual``)."""
        return self._now / self.sample_rate

    @property
    def playing(self) -> bool:
        """Whether registered playback is still running (or its echo can still arrive)."""
        return self._played_any and self._play_end + self.max_delay + self.taps > self._now

    @property
    def paused(self) -> bool:
        """Whether the speakers hold what is queued (between ``pause`` and ``resume``)."""
        return self._paused_at is not None

    def played(self, samples_16k: np.ndarray, t: float | None = None, sample_rate: int = SAMPLE_RATE) -> None:
        """Register audio the speakers play, starting at mic-stream time ``t`` (seconds)."""
        x = to_float_mono(samples_16k)
        if sample_rate != self.sample_rate:
            import soxr

            x = soxr.resample(x, sample_rate, self.sample_rate).astype(np.float32)
        if not len(x):
            return
        start = int(round(t * self.sample_rate)) if t is not None else max(self._now, self._play_end)
        end = start + len(x)
        if start < self._ref_base:  # older than what is kept: only the recent part matters
            x = x[self._ref_base - start :]
            start = self._ref_base
            if not len(x):
                return
        need = end - self._ref_base
        if need > len(self._ref):
            self._ref = np.concatenate([self._ref, np.zeros(need - len(self._ref), np.float32)])
        self._ref[start - self._ref_base : end - self._ref_base] += x
        self._play_end = max(self._play_end, end)
        self._played_any = True

    def clear(self) -> None:
        """Playback stopped now: drop what was queued beyond this moment.

        What already played keeps being cancelled while its echo can still arrive.
        """
        stopped_at = self._now if self._paused_at is None else self._paused_at  # paused: it stopped then
        self._paused_at = None
        cut = max(0, stopped_at - self._ref_base)
        self._ref = self._ref[:cut].copy()
        self._play_end = min(self._play_end, stopped_at)

    def pause(self, at_s: float) -> None:
        """The speakers paused at mic-stream time ``at_s``, keeping their place: nothing queued plays until
        ``resume``.

        Without it the guard would go on subtracting the echo of audio that no longer plays, and so add the
        assistant's voice, inverted, to what the voice detector hears. The time is where the speakers
        really stopped, as their player tells it: placed 36 ms early, the echo after the resume came 36 ms
        off what was subtracted, and barged in."""
        if self._paused_at is None:
            self._paused_at = int(round(at_s * self.sample_rate))

    def resume(self, at_s: float) -> None:
        """The speakers play on at mic-stream time ``at_s`` from where they paused: what was queued after
        that moment plays that much later."""
        if self._paused_at is None:
            return
        cut = min(max(0, self._paused_at - self._ref_base), len(self._ref))
        gap = max(0, int(round(at_s * self.sample_rate)) - self._paused_at)
        self._ref = np.concatenate([self._ref[:cut], np.zeros(gap, np.float32), self._ref[cut:]])
        if self._play_end > self._paused_at:
            self._play_end += gap
        self._paused_at = None

    # -- mic side ----------------------------------------------------------------------

    def _ref_span(self, a: int, b: int) -> np.ndarray:
        """Playback for absolute samples [a, b), zeros outside what is known."""
        out = np.zeros(b - a, np.float32)
        lo, hi = max(a, self._ref_base), min(b, self._ref_base + len(self._ref))
        if self._paused_at is not None:  # queued, not playing
            hi = min(hi, self._paused_at)
        if hi > lo:
            out[lo - a : hi - a] = self._ref[lo - self._ref_base : hi - self._ref_base]
        return out

    def residual(self, mic_16k: np.ndarray) -> np.ndarray:
        """The next mic chunk with the assistant's own voice removed (same length)."""
        mic = to_float_mono(mic_16k)
        n = len(mic)
        t0, t1 = self._now, self._now + n
        self._now = t1
        keep = self.window + n
        self._mic = np.concatenate([self._mic, mic])[-keep:]
        self._trim()
        post = self.taps - 1 - self.pre
        # Playback that could echo into this chunk.
        near = self._ref_span(t0 - self.max_delay - post, t1 + self.pre)
        if not n or float(np.mean(near**2)) < self.min_ref_power:
            self.last_ref_active = False
            self.last_erle_db = 0.0
            self._env_db = -200.0
            return mic
        self.last_ref_active = True
        w = len(self._mic)
        m = self._mic
        lo = self.max_delay + post  # ref window starts this far before the mic window
        r = self._ref_span(t1 - w - lo, t1 + self.pre)
        delay, h = self._fit(m, r, lo)
        if h is None:
            self.last_erle_db = 0.0
            return mic
        self.delay_samples = delay
        # Predicted echo for this chunk: e[t] = sum_i h[i] ref(t - delay - i + pre).
        s0 = t0 - delay + self.pre - (self.taps - 1)
        seg = self._ref_span(s0, s0 + n + self.taps - 1)
        echo = np.convolve(seg, h, mode="valid").astype(np.float32)
        res = mic - echo
        res = self._suppress(res, echo)
        p_mic = float(np.mean(mic**2)) + _EPS
        p_res = float(np.mean(res**2)) + _EPS
        self.last_erle_db = 10 * np.log10(p_mic / p_res)
        return res

    def is_echo(self, mic_16k: np.ndarray) -> bool:
        """Consume the next mic chunk; True when it is (almost) only the assistant's voice.

        Use either this or ``residual`` for a given chunk, not both (each advances the clock).
        """
        self.residual(mic_16k)
        return self.last_ref_active and self.last_erle_db >= 10 * np.log10(1 / self.echo_ratio)

    # -- internals ---------------------------------------------------------------------

    def _trim(self) -> None:
        # Keep playback from (now - window - max_delay - taps) on; the rest can no longer echo.
        horizon = self._now - self.window - self.max_delay - 2 * self.taps - 4096
        if self._paused_at is not None:
            horizon = min(horizon, self._paused_at)  # what is queued waits for resume()
        if horizon > self._ref_base:
            drop = min(horizon - self._ref_base, len(self._ref))
            self._ref = self._ref[drop:]
            self._ref_base += drop

    def _fit(self, m: np.ndarray, r: np.ndarray, lo: int) -> tuple[int, np.ndarray | None]:
        """Delay (samples) and echo-path taps that best map playback ``r`` onto mic ``m``.

        ``r`` starts ``lo`` samples before ``m``: mic[t] ~ sum_i h[i] r[t + lo - d - i + pre].
        """
        w = len(m)
        nfft = 1 << int(np.ceil(np.log2(w + len(r))))
        M = np.fft.rfft(m, nfft)
        R = np.fft.rfft(r, nfft)
        cross = np.conj(M) * R
        # c[k] = sum_t m[t] r[t + k]; delay d sits at k = lo - d.
        c = np.fft.irfft(cross, nfft)
        mag = np.abs(cross)
        # PHAT weighting sharpens the peak whatever the speech spectrum; the small
        # floor keeps near-empty bins from dominating.
        phat = np.fft.irfft(cross / (mag + 1e-3 * mag.max() + _EPS), nfft)
        ks = lo - np.arange(0, self.max_delay + 1)  # k for d = 0..max_delay
        score = phat[ks]
        best = int(np.argmax(score))
        d = best
        # Least squares for the taps, over exactly the mic window: X[t, i] = r[s + t - i].
        # (The playback's autocorrelation, a Toeplitz stand-in for X'X, left the echo of a
        # plain delay only 27 dB down: speech is so coloured that its small error mattered.)
        taps = self.taps
        s = lo - d + self.pre
        if float(np.mean(r[s - taps + 1 : s + w] ** 2)) < self.min_ref_power:
            return d, None
        A = self._gram(r, s, w)
        idx = np.arange(taps)
        A[idx, idx] += RIDGE * np.trace(A) / taps + _EPS  # keeps the fit stable on narrowband playback
        lags = d + idx - self.pre  # delay of tap i
        b = c[lo - lags]
        try:
            h = np.linalg.solve(A, b)
        except np.linalg.LinAlgError:
            return d, None
        return d, h.astype(np.float32)

    def _gram(self, r: np.ndarray, s: int, w: int) -> np.ndarray:
        """X'X for X[t, i] = r[s + t - i], t < w, i < taps: its first row by FFT, then down each
        diagonal, adding the sample that enters the window and removing the one that leaves."""
        taps = self.taps
        seg = r[s - taps + 1 : s + w]
        nf = 1 << int(np.ceil(np.log2(len(seg) + w)))
        corr = np.fft.irfft(np.conj(np.fft.rfft(seg[taps - 1 :], nf)) * np.fft.rfft(seg, nf), nf)
        row0 = corr[:taps][::-1]  # sum_t r[s + t] r[s + t - j]
        q = np.arange(taps - 1)
        enters = np.zeros(2 * taps)
        leaves = np.zeros(2 * taps)
        enters[: taps - 1] = r[s - 1 - q]
        leaves[: taps - 1] = r[s + w - 1 - q]
        win_e = np.lib.stride_tricks.sliding_window_view(enters, taps)[: taps - 1]
        win_l = np.lib.stride_tricks.sliding_window_view(leaves, taps)[: taps - 1]
        step = enters[: taps - 1, None] * win_e - leaves[: taps - 1, None] * win_l
        diag = row0[None, :] + np.vstack([np.zeros(taps), np.cumsum(step, axis=0)])  # diag[i, k] = X'X[i, i + k]
        i, k = np.nonzero(np.add.outer(np.arange(taps), np.arange(taps)) < taps)
        gram = np.zeros((taps, taps))
        gram[i, i + k] = diag[i, k]
        gram[i + k, i] = diag[i, k]
        return gram

    def _suppress(self, res: np.ndarray, echo: np.ndarray) -> np.ndarray:
        """Silence sub-frames where the residual is just leftover echo."""
        s = self._sub
        edges = np.arange(0, len(res), s)
        sizes = np.diff(np.append(edges, len(res)))
        r2 = np.add.reduceat(res**2, edges) / sizes
        e2 = np.add.reduceat(echo**2, edges) / sizes
        # Envelope: each sub-frame's predicted echo, or an earlier one fallen by fall_db per
        # sub-frame since, whichever is louder (this chunk continues the previous one's envelope):
        # env_db[i] = max over j <= i of e_db[j] - fall * (i - j).
        fall = self._fall_db
        steps = np.arange(len(e2)) * fall
        lead_in = np.concatenate([[self._env_db - fall], 10 * np.log10(e2 + 1e-20) + steps])
        env_db = np.maximum.accumulate(lead_in)[1:] - steps
        self._env_db = float(env_db[-1])
        env = 10 ** (env_db / 10)
        threshold = self.suppress
        active = env > self.min_ref_power
        if self.residual_margin is not None:
            self._ratios = (self._ratios + list(r2[active] / env[active]))[-125:]  # the last 2 s of echo
            if len(self._ratios) >= 30:  # half a second before the fit's own figure is trusted
                # the median: the echo alone; a user cutting in raises only the upper ones
                floor = float(np.percentile(self._ratios, 50))
                threshold = min(self.suppress, max(floor * self.residual_margin, 1e-3))  # 30 dB at most
        quiet = active & (r2 < env * threshold)
        if quiet.any():
            res = res.copy()
            for i in np.flatnonzero(quiet):
                res[edges[i] : edges[i] + s] = 0.0
        return res
