"""False triggers and detection of the voice detector and echo guard (issue 4, P2).

    python bench/vad_noise.py [--speech DIR] [--noise DIR] [--seed N]

Streams audio through the same path the UI uses (48 kHz int16 chunks of 0.25 s into
``VoiceActivityDetector.process``, with an ``EchoGuard`` when the assistant is
talking) and prints one JSON object:

* noise trials: noise only (files from --noise, or a generated set: white, pink and
  brown noise, steady tones, beeps, sweeps, clicks, typing, music-like chords, mains
  hum, a door thump), each >= 2 s; any speech_start is a false trigger.
* echo trials: the assistant's own voice (espeak-ng sentences and pieces of the
  speech files) coming back at -6 dB, 30-200 ms late, through a coloured echo path
  with a short reverberant tail, plus room noise; any speech_start is a false barge-in.
* utterances: pieces >= 0.5 s of the speech files (cut at pauses by energy, not by
  the VAD under test) in noise, half of them spoken over the assistant's echo.
  Detected when a speech_start comes between onset - 0.3 s and the piece's end.
  onset_to_start_ms: from the true onset to the end of the 0.25 s chunk whose
  processing returned speech_start (what a barge-in waits), also split in noise /
  over echo, plus the same counted to the model frame that confirmed it
  (``confirm_ms_in_noise``: what is left without chunking).
* ms_per_chunk: cost of one 0.5 s 48 kHz chunk (VAD alone, and VAD + echo guard).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from backend.audio.echo import EchoGuard  # noqa: E402
from backend.audio.vad import VadConfig, VoiceActivityDetector  # noqa: E402
from tests.support import CORPUS  # noqa: E402

SR = 16000
MIC_SR = 48000
CHUNK_S = 0.25
AUDIO_EXT = {".wav", ".flac", ".aiff", ".aif", ".ogg", ".mp3", ".m4a", ".opus", ".webm", ".aac"}


# -- audio in ----------------------------------------------------------------------------


def load_audio_16k(path: Path) -> np.ndarray:
    """Any audio file as 16 kHz mono float32 (soundfile, then PyAV for compressed formats)."""
    import soxr

    try:
        import soundfile as sf

        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
        x = x.mean(axis=1)
    except Exception:
        import av

        with av.open(str(path)) as f:
            stream = f.streams.audio[0]
            res = av.AudioResampler(format="flt", layout="mono", rate=SR)
            parts = []
            for frame in f.decode(stream):
                for out in res.resample(frame):
                    parts.append(out.to_ndarray().reshape(-1))
            x, sr = (np.concatenate(parts) if parts else np.zeros(0, np.float32)), SR
    if sr != SR:
        x = soxr.resample(x, sr, SR)
    return np.asarray(x, np.float32)


def audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXT)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


HOP = SR // 100  # 10 ms energy frames: how the benches find speech without the VAD under test


def loud_frames(x: np.ndarray, within_db: float = 30.0) -> np.ndarray:
    """Which 10 ms frames are within ``within_db`` of the recording's loud level (its 95th percentile)."""
    n = len(x) // HOP
    if n == 0:
        return np.zeros(0, bool)
    e = 10 * np.log10(np.mean(x[: n * HOP].reshape(n, HOP) ** 2, axis=1) + 1e-12)
    return e > np.percentile(e, 95) - within_db


def speech_pieces(x: np.ndarray, min_s: float = 0.5, max_s: float = 3.0, limit: int = 16) -> list[np.ndarray]:
    """Cut a recording at pauses (10 ms energy frames), independent of the VAD under test.

    Each piece starts ~50 ms before its first loud frame, so its onset is known.
    """
    loud = loud_frames(x)
    n = len(loud)
    if n == 0:
        return []
    pieces, i = [], 0
    while i < n and len(pieces) < limit:
        if not loud[i]:
            i += 1
            continue
        j, quiet = i, 0
        while j < n and quiet < 30:  # a pause of 300 ms ends the piece
            quiet = 0 if loud[j] else quiet + 1
            j += 1
        end = j - quiet
        # Long stretches of speech give several pieces, each cut where speech goes on.
        start = i
        while (end - start) * HOP / SR >= min_s and len(pieces) < limit:
            stop = min(end, start + int(max_s * 100))
            if (end - stop) * HOP / SR < min_s:
                stop = end if (end - start) * HOP / SR <= 1.5 * max_s else stop
            a = max(0, start * HOP - SR // 20)
            b = min(len(x), stop * HOP + SR // 20)
            pieces.append(x[a:b])
            start = stop
        i = j
    return pieces


def utterance_starts(x: np.ndarray, pause_ms: int = 300, min_s: float = 0.5, max_s: float = 3.0) -> list[np.ndarray]:
    """The first ``max_s`` of each stretch of speech that follows a pause of ``pause_ms`` (or opens the
    recording): how someone sounds who starts to talk, which a piece cut inside running speech is not.

    Each piece starts ~50 ms before its first loud frame (loud as in ``speech_pieces``).
    """
    loud = loud_frames(x)
    n = len(loud)
    if n == 0:
        return []
    pieces, quiet = [], pause_ms // 10
    for i in range(n):
        if not loud[i]:
            quiet += 1
            continue
        if quiet >= pause_ms // 10:
            a = max(0, i * HOP - SR // 20)
            piece = x[a : a + int(max_s * SR)]
            if len(piece) >= min_s * SR:
                pieces.append(piece)
        quiet = 0
    return pieces


def onset_of(x: np.ndarray) -> float:
    """Seconds to the first 10 ms frame within 30 dB of the piece's loud level."""
    return float(np.argmax(loud_frames(x))) * HOP / SR


def speech_onset_of(x: np.ndarray, within_db: float = 20.0, run_ms: int = 50) -> float:
    """Seconds to the first run of ``run_ms`` of 10 ms frames within ``within_db`` of the piece's loud level.

    ``onset_of`` counts the first frame within 30 dB, and a piece cut from running speech can open
    with a breath, a click or the room at -15 to -40 dB, long before its words (0.8 s in one piece
    of silero_de.wav): this one waits for sustained sound at speaking level.
    """
    loud = loud_frames(x, within_db)
    need = max(1, run_ms // 10)
    for i in range(max(0, len(loud) - need + 1)):
        if loud[i : i + need].all():
            return i * HOP / SR
    return onset_of(x)


def word_onset_of(x: np.ndarray, gap_ms: int = 30) -> float:
    """Seconds to the first word: the first sustained sound at speaking level (``speech_onset_of``), back
    over the quieter sound that leads into it (within 30 dB, as ``onset_of``) up to a gap of ``gap_ms``.

    A soft first consonant counts; a breath or a click set apart from the words does not (one piece of
    silero_en.wav opens with 1.8 s of breathing that ``onset_of`` takes for the onset).
    """
    audible = loud_frames(x)
    start = int(round(speech_onset_of(x) * 100))
    i, gap = start, 0
    while i > 0 and gap * 10 <= gap_ms:
        i -= 1
        if audible[i]:
            start, gap = i, 0
        else:
            gap += 1
    return start * HOP / SR


def espeak(text: str, voice: str) -> np.ndarray | None:
    if not shutil.which("espeak-ng"):
        return None
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "s.wav"
        r = subprocess.run(["espeak-ng", "-v", voice, "-w", str(out), text], capture_output=True)
        if r.returncode or not out.exists():
            return None
        return load_audio_16k(out)


ASSISTANT_LINES = [
    ("en", "Sure. The train leaves at seven fifteen, and the trip takes about two hours, so you will arrive before ten."),
    ("fr", "Bien sûr. Le musée ouvre à neuf heures, et l'entrée est gratuite le premier dimanche du mois."),
    ("de", "Gern. Für das Rezept brauchst du Mehl, Eier, Milch und eine Prise Salz, dann zehn Minuten backen."),
    ("es", "Claro. Mañana habrá sol por la mañana y lluvia por la tarde, así que lleva un paraguas."),
    ("it", "Certo. La farmacia più vicina è in fondo alla strada, aperta fino alle otto di sera."),
    ("pt", "Claro. O voo tem uma escala em Lisboa e chega ao destino às quatro da tarde."),
]


# -- noise -------------------------------------------------------------------------------


def _spectral(rng, n, power):
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=float)
    f[0] = 1.0
    return np.fft.irfft(spec / f ** (power / 2), n)


def _white(rng, d):
    return rng.standard_normal(int(d * SR))


def _pink(rng, d):
    return _spectral(rng, int(d * SR), 1)


def _brown(rng, d):
    return _spectral(rng, int(d * SR), 2)


def _tone(rng, d):
    t = np.arange(int(d * SR)) / SR
    return np.sin(2 * np.pi * rng.uniform(150, 3000) * t)


def _beeps(rng, d):
    t = np.arange(int(d * SR)) / SR
    x = np.zeros_like(t)
    for _ in range(int(d * 3)):
        s, ln, f = rng.uniform(0, d - 0.3), rng.uniform(0.1, 0.4), rng.uniform(300, 2500)
        m = (t >= s) & (t < s + ln)
        x[m] += np.sin(2 * np.pi * f * t[m])
    return x


def _sweep(rng, d):
    t = np.arange(int(d * SR)) / SR
    f0, f1 = rng.uniform(100, 500), rng.uniform(1000, 4000)
    return np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * d)))


def _clicks(rng, d):
    n = int(d * SR)
    x = np.zeros(n)
    for p in rng.integers(0, n - 200, int(d * rng.uniform(3, 15))):
        ln = int(rng.integers(20, 160))
        x[p : p + ln] += rng.standard_normal(ln) * np.exp(-np.arange(ln) / (ln / 4))
    return x


def _typing(rng, d):
    n = int(d * SR)
    x = np.zeros(n)
    p = 0
    while True:
        p += int(rng.uniform(0.08, 0.3) * SR)
        if p >= n - 800:
            return x
        ln = int(rng.uniform(0.01, 0.04) * SR)
        b = rng.standard_normal(ln) * np.exp(-np.arange(ln) / (ln / 5))
        b = np.convolve(b, rng.standard_normal(12) * np.exp(-np.arange(12) / 3), "same")
        x[p : p + ln] += b * rng.uniform(0.5, 1)


def _chords(rng, d):
    t = np.arange(int(d * SR)) / SR
    x = np.zeros_like(t)
    beat = rng.uniform(0.3, 0.7)
    roots = [220, 247, 262, 294, 330, 349, 392]
    for s in np.arange(0, d, beat):
        r = roots[rng.integers(len(roots))]
        m = (t >= s) & (t < s + beat)
        tt = t[m] - s
        env = np.minimum(1, tt / 0.01) * np.exp(-tt * 3)
        for ratio in (1, 1.26, 1.5, 2):
            for h in range(1, 6):
                x[m] += env * np.sin(2 * np.pi * r * ratio * h * tt) / h**1.5
    return x


def _hum(rng, d):
    t = np.arange(int(d * SR)) / SR
    f = rng.choice([50, 60])
    x = sum(np.sin(2 * np.pi * f * h * t) / h for h in range(1, 8))
    p = _pink(rng, d)
    return x + 0.3 * p / np.std(p)


def _door(rng, d):
    n = int(d * SR)
    x = _pink(rng, d)
    x = 0.05 * x / np.std(x)
    p = int(rng.uniform(0.3, d - 1) * SR)
    ln = int(0.6 * SR)
    b = _brown(rng, 0.6)
    b = b / np.std(b) * np.exp(-np.arange(ln) / (0.08 * SR))
    x[p : p + ln] += 3 * b[: n - p]
    return x


NOISE_KINDS = {
    "white": _white,
    "pink": _pink,
    "brown": _brown,
    "tone": _tone,
    "beeps": _beeps,
    "sweep": _sweep,
    "clicks": _clicks,
    "typing": _typing,
    "chords": _chords,
    "hum": _hum,
    "door": _door,
}


def make_noise(kind: str, seconds: float = 3.0, level: float = 0.05, seed: int = 0) -> np.ndarray:
    """A generated noise clip at 16 kHz with the given RMS level."""
    x = NOISE_KINDS[kind](np.random.default_rng(seed), seconds)
    x = x / (rms(x) + 1e-12) * level
    return np.clip(x, -1, 1).astype(np.float32)


def echo_path(rng: np.random.Generator) -> np.ndarray:
    """Speaker -> room -> mic impulse response: lowpass colouring, one early
    reflection, a diffuse tail 15-25 dB down (unit energy)."""
    ln = int(0.2 * SR)
    ir = np.zeros(ln)
    a = rng.uniform(0.2, 0.7)
    ir[:40] = (1 - a) * a ** np.arange(40)
    ir[int(rng.uniform(0.003, 0.015) * SR)] += rng.uniform(0.1, 0.4) * rng.choice([-1, 1])
    t = np.arange(ln) / SR
    tail = rng.standard_normal(ln) * np.exp(-6.9 * t / rng.uniform(0.1, 0.3))
    tail[: int(0.005 * SR)] = 0
    tail *= np.sqrt(np.sum(ir**2) / np.sum(tail**2) * 10 ** (-rng.uniform(15, 25) / 10))
    ir += tail
    return ir / np.sqrt(np.sum(ir**2))


def echo_of(voice: np.ndarray, delay_s: float, gain_db: float, rng: np.random.Generator, total: int) -> np.ndarray:
    """What the mic hears of the speakers playing ``voice`` from time 0."""
    out = np.zeros(total, np.float32)
    e = np.convolve(voice, echo_path(rng))[: len(voice)]
    e = e / (rms(e) + 1e-12) * rms(voice) * 10 ** (gain_db / 20)
    d = int(delay_s * SR)
    n = min(len(e), total - d)
    out[d : d + n] = e[:n]
    return out


# -- streaming ---------------------------------------------------------------------------


def to_mic_chunks(x16: np.ndarray, chunk_s: float = CHUNK_S) -> list[np.ndarray]:
    """16 kHz float -> what Gradio's microphone stream delivers: 48 kHz int16 chunks."""
    import soxr

    x48 = soxr.resample(x16, SR, MIC_SR)
    pcm = (np.clip(x48, -1, 1) * 32767).astype(np.int16)
    step = int(chunk_s * MIC_SR)
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


def stream(mic16: np.ndarray, assistant: np.ndarray | None = None, config: VadConfig | None = None):
    """Run one trial; returns [(event, stream time when returned)]."""
    guard = EchoGuard() if assistant is not None else None
    vad = VoiceActivityDetector(config, echo_guard=guard)
    if guard is not None:
        guard.played(assistant, t=0.0)
    out, fed = [], 0
    for c in to_mic_chunks(mic16):
        fed += len(c)
        for ev in vad.process(c, MIC_SR):
            out.append((ev, fed / MIC_SR))
    for ev in vad.flush():
        out.append((ev, fed / MIC_SR))
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--speech", type=Path, default=CORPUS / "speech")
    ap.add_argument("--noise", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    recordings = [load_audio_16k(p) for p in audio_files(args.speech)]
    recordings = [x for x in recordings if len(x) >= SR // 2]
    if not recordings:
        raise SystemExit(f"no audio files in {args.speech}")
    pieces = [p for x in recordings for p in speech_pieces(x)]
    voices = [v for lang, text in ASSISTANT_LINES if (v := espeak(text, lang)) is not None]
    voices += [x[: 8 * SR] for x in recordings if len(x) >= 2 * SR]
    for i, v in enumerate(voices):
        voices[i] = (v / (rms(v) + 1e-12) * 0.08).astype(np.float32)

    # noise set
    noises: list[np.ndarray] = []
    if args.noise:
        for p in audio_files(args.noise):
            x = load_audio_16k(p)
            for i in range(0, max(1, len(x) - 2 * SR + 1), 5 * SR):  # long files -> 5 s trials
                seg = x[i : i + 5 * SR]
                if len(seg) >= 2 * SR or i == 0:
                    noises.append(seg)
    else:
        for kind in NOISE_KINDS:
            for seed, level in ((0, 0.01), (1, 0.05), (2, 0.2)):
                noises.append(make_noise(kind, 3.0, level, seed=args.seed * 100 + seed))
    noise_false = sum(any(e.kind == "speech_start" for e, _ in stream(n)) for n in noises)

    # echo trials: the assistant's voice only
    echo_trials = echo_false = 0
    delays = [0.03, 0.06, 0.1, 0.15, 0.2]
    for k in range(max(30, len(voices))):
        v = voices[k % len(voices)]
        total = len(v) + SR
        mic = echo_of(v, delays[k % len(delays)], -6.0, rng, total)
        mic += make_noise("pink", total / SR + 0.01, 0.002, seed=1000 + k)[:total]
        echo_trials += 1
        echo_false += any(e.kind == "speech_start" for e, _ in stream(mic, assistant=v))

    # utterances: in noise, and half of them over the assistant's echo
    detected = over_echo = detected_over_echo = 0
    lat, confirm, lat_echo = [], [], []
    kinds = ["white", "pink", "hum", "typing", "chords"]
    for k, piece in enumerate(pieces):
        lead = rng.uniform(1.0, 1.5)
        total = int((lead + len(piece) / SR + 1.0) * SR)
        mic = make_noise(kinds[k % len(kinds)], total / SR + 0.01, 0.004, seed=2000 + k)[:total]
        user = piece / (rms(piece) + 1e-12) * 0.08
        s = int(lead * SR)
        mic[s : s + len(user)] += user
        assistant = None
        if k % 2 and voices:
            v = voices[k % len(voices)]
            assistant = np.concatenate([np.zeros(int(max(0.0, lead - 1.0) * SR), np.float32), v])
            mic += echo_of(assistant, delays[k % len(delays)], -6.0, rng, total)
        onset = lead + onset_of(piece)
        hits = [
            (e, at)
            for e, at in stream(mic, assistant=assistant)
            if e.kind == "speech_start" and onset - 0.3 <= e.t <= lead + len(piece) / SR
        ]
        over_echo += assistant is not None
        if hits:
            detected += 1
            detected_over_echo += assistant is not None
            e, at = hits[0]
            (lat if assistant is None else lat_echo).append((at - onset) * 1000)
            if assistant is None:
                confirm.append((e.decided_at - onset) * 1000)

    # cost per 0.5 s chunk of 48 kHz int16
    v = voices[0]
    mic = echo_of(v, 0.1, -6.0, rng, len(v))
    chunks = to_mic_chunks(mic, 0.5)[:16]
    cost = {}
    for name, guard in (("vad", None), ("vad_echo", EchoGuard())):
        vad = VoiceActivityDetector(echo_guard=guard)
        if guard is not None:
            guard.played(v, t=0.0)
        ts = []
        for c in chunks:
            t = time.perf_counter()
            vad.process(c, MIC_SR)
            ts.append((time.perf_counter() - t) * 1000)
        cost[name] = round(float(np.median(ts)), 2)

    def stats(xs):
        return {"median": round(float(np.median(xs)), 1), "p95": round(float(np.percentile(xs, 95)), 1)} if xs else None

    result = {
        "noise_trials": len(noises),
        "noise_false": int(noise_false),
        "echo_trials": echo_trials,
        "echo_false": int(echo_false),
        "utterances": len(pieces),
        "detected": detected,
        "onset_to_start_ms": stats(lat + lat_echo),
        "utterances_over_echo": over_echo,
        "detected_over_echo": detected_over_echo,
        "onset_to_start_ms_in_noise": stats(lat),
        "onset_to_start_ms_over_echo": stats(lat_echo),
        "confirm_ms_in_noise": stats(confirm),
        "ms_per_chunk": cost,
        "chunk_s": CHUNK_S,
        "config": VadConfig().__dict__ | {"model_path": None},
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
