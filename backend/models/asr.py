"""Speech to text with spoken-language identification (Whisper), on one of two engines.

``SpeechRecognizer`` is what the rest of the app calls; ``open_recognizer`` picks the
engine: transformers (``whisper_transformers``: hub ids and folders in the transformers
format, the GPU default) or faster-whisper / CTranslate2 (``whisper_ctranslate2``:
CTranslate2 folders such as the one ``tests.real_models`` assembles, int8 on CPU).
Both run the same steps, written once here in ``WhisperRecognizer``:

A recording is cut into windows of at most 30 s (Whisper's input size) at the
quietest moment near each boundary, so long recordings are transcribed whole
rather than cut off. The spoken language comes with its probability: the first
decoder step after <|startoftranscript|>, softmaxed over the language tokens.
Recordings without speech (silence, steady noise, a click, Whisper's
<|nospeech|>) come back as ``Transcript(no_speech=True)`` so the caller can say
"I did not catch that" instead of sending an empty turn to the model.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from backend.errors import ModelUnavailableError, UserFacingError
from backend.language.sentences import CLOSERS, SENTENCE_END_MARKS
from backend.language.tags import normalize_tag
from backend.media import AudioClip

log = logging.getLogger(__name__)

DEFAULT_ASR_MODEL = {"cuda": "openai/whisper-large-v3-turbo", "cpu": "openai/whisper-small"}
# The same Whisper small, converted for CTranslate2 (faster-whisper's own name for it).
DEFAULT_CT2_ASR_MODEL = "Systran/faster-whisper-small"
ASR_ENGINES = ("auto", "transformers", "faster-whisper")
TOP_LANGUAGES = 5  # language_probs kept on a Transcript

WINDOW_S = 30.0
# Where a window may end early to avoid cutting a word: the quietest spot in its last seconds.
CUT_SEARCH_S = 5.0
MIN_SPEECH_S = 0.3
NO_SPEECH_THRESHOLD = 0.6
MAX_TOKENS = 448  # Whisper's decoder context
# Greedy decoding can loop on one token until the context is full (seen on synthetic Arabic heard as
# Thai: 448 tokens, 11 s for 3 s of audio). People say 2-4 words a second; 25 tokens a second leaves
# room for scripts that take several byte tokens a word.
TOKENS_PER_SECOND = 25

# Energy-based speech estimate: 30 ms frames; speech is what rises well above the
# recording's own floor. Steady signals (hiss, hum, a tone) have no such rise.
FRAME_S = 0.03
ABSOLUTE_FLOOR = 10 ** (-50 / 20)  # -50 dBFS
RISE_OVER_FLOOR = 2.0  # +6 dB over the 10th percentile frame
MIN_DYNAMIC_RANGE = 2.0  # 95th/10th percentile RMS; white noise is about 1.1

# Whisper's one language code that is not the folded BCP 47 tag (Javanese); normalize_tag
# reads Whisper's codes, jw included.
_WHISPER_CODES = {"jv": "jw"}
# Scripts written without spaces between words: window texts are joined without one.
NO_SPACE_LANGUAGES = {"zh", "ja", "th", "lo", "my", "km", "yue", "bo"}


def default_asr_model(device: str = "cpu", engine: str = "transformers") -> str:
    """The model used when none is given: per device for transformers, Whisper small for faster-whisper."""
    if engine == "faster-whisper":
        return DEFAULT_CT2_ASR_MODEL
    return DEFAULT_ASR_MODEL["cuda" if _on_cuda(device) else "cpu"]


def _on_cuda(device: str) -> bool:
    return str(device).startswith("cuda")


@dataclass
class Transcript:
    text: str
    language: str  # BCP 47 tag ("und" when nothing was heard)
    language_probability: float
    duration_s: float
    no_speech: bool
    no_speech_probability: float = 0.0  # Whisper's <|nospeech|> probability in the window the language came from
    speech_s: float = 0.0  # seconds with speech energy
    windows: int = 0  # 30 s windows run through the model
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage: detect, generate, total
    # Whisper's language head, most likely first: [(BCP 47 tag, probability)], TOP_LANGUAGES of them
    # (also when the language was forced: what the recording itself sounded like).
    language_probs: list[tuple[str, float]] = field(default_factory=list)
    # Mean log-probability of the transcript's tokens (end of text included); near 0 is sure, below -1 is a guess.
    avg_logprob: float | None = None
    # Where the text ends in a sentence mark (". ! ?" and their forms in other scripts): Whisper's probability, at
    # that step, of closing the sentence there with any such mark rather than writing on ("," or more words).
    end_mark_probability: float | None = None


# --------------------------------------------------------------------------- language codes


def bcp47_to_whisper(tag: str, known: set[str] | None = None) -> str | None:
    """The Whisper language code for a BCP 47 tag, or None when Whisper has no token for it."""
    if known is None:
        from transformers.models.whisper.tokenization_whisper import LANGUAGES

        known = set(LANGUAGES)
    folded = normalize_tag(tag)
    code = _WHISPER_CODES.get(folded, folded)
    return code if code in known else None


# --------------------------------------------------------------------------- speech energy


def _frame_rms(samples: np.ndarray, rate: int) -> np.ndarray:
    hop = max(1, int(rate * FRAME_S))
    n = len(samples) // hop
    if n == 0:
        return np.sqrt(np.mean(samples.astype(np.float64) ** 2, keepdims=True)) if len(samples) else np.zeros(0)
    frames = samples[: n * hop].astype(np.float64).reshape(n, hop)
    return np.sqrt(np.mean(frames**2, axis=1))


def speech_seconds(samples: np.ndarray, rate: int = 16_000) -> float:
    """Seconds of the recording that carry speech-like energy (not silence, not steady noise)."""
    rms = _frame_rms(samples, rate)
    if rms.size == 0:
        return 0.0
    floor = float(np.percentile(rms, 10))
    top = float(np.percentile(rms, 95))
    if top < ABSOLUTE_FLOOR or top < MIN_DYNAMIC_RANGE * max(floor, 1e-9):
        return 0.0
    threshold = max(ABSOLUTE_FLOOR, RISE_OVER_FLOOR * floor)
    return float(np.count_nonzero(rms > threshold)) * FRAME_S


def split_windows(samples: np.ndarray, rate: int = 16_000, window_s: float = WINDOW_S) -> list[tuple[int, int]]:
    """[(start, end)] sample ranges of at most window_s, cut at a quiet moment near each end."""
    total = len(samples)
    size = int(window_s * rate)
    if total <= size:
        return [(0, total)]
    hop = max(1, int(rate * 0.1))
    search = int(CUT_SEARCH_S * rate)
    spans = []
    start = 0
    while total - start > size:
        lo, hi = start + size - search, start + size
        energy = _frame_rms(samples[lo:hi], rate) if hi > lo else np.zeros(0)
        if energy.size:
            # sum over 100 ms so one quiet 30 ms frame inside a word is not taken for a pause
            k = max(1, hop // max(1, int(rate * FRAME_S)))
            smooth = np.convolve(energy, np.ones(k), mode="same")
            cut = lo + int(np.argmin(smooth)) * int(rate * FRAME_S)
        else:
            cut = hi
        cut = min(max(cut, start + size // 2), hi)
        spans.append((start, cut))
        start = cut
    spans.append((start, total))
    return spans


def _no_words(text: str) -> bool:
    """Whisper's way of hearing no words in noise: "...", "!", "♪ ♪"."""
    return all(ch.isspace() or ch in "♪♫" or unicodedata.category(ch).startswith("P") for ch in text)


def window_tokens(seconds: float) -> int:
    """The most tokens a window of this length may decode to (room left for the prompt's few tokens)."""
    return int(min(MAX_TOKENS - 8, 10 + TOKENS_PER_SECOND * seconds))


# --------------------------------------------------------------------------- the interface


@runtime_checkable
class SpeechRecognizer(Protocol):
    """What the app calls to hear a recording; ``open_recognizer`` makes one."""

    model_name: str
    engine: str  # "transformers" | "faster-whisper"

    @property
    def loaded(self) -> bool: ...

    def load(self) -> None: ...

    def transcribe(self, clip: AudioClip, language: str | None = None) -> Transcript:
        """The whole recording as text. ``language`` (BCP 47) forces it; None detects it."""
        ...

    def detect_language(self, clip: AudioClip) -> list[tuple[str, float]]:
        """[(BCP 47 tag, probability)] over every language the model knows, most likely first."""
        ...


# --------------------------------------------------------------------------- shared steps


def _looks_like_path(model: str) -> bool:
    """Hub ids are "name" or "owner/name"; anything else was meant as a folder."""
    return model.startswith((".", "/", "~")) or "\\" in model or model.count("/") > 1


@dataclass
class Decoded:
    """One window's text and the log-probabilities of the tokens that made it."""

    text: str
    logprob_sum: float
    tokens: int
    end_mark_probability: float | None = None  # see Transcript


def end_mark_ids(decode_token: Callable[[int], str], vocab_size: int) -> np.ndarray:
    """Ids of the tokens that are a sentence mark, alone or with closing quotes (".", "?", ".\"", "。").

    An ellipsis ("..", "...") trails off rather than ends, as ``turn_end`` reads it."""
    ids = []
    for i in range(vocab_size):
        piece = decode_token(i).strip()
        if (piece and piece[0] in SENTENCE_END_MARKS and ".." not in piece
                and all(c in SENTENCE_END_MARKS or c in CLOSERS for c in piece)):
            ids.append(i)
    return np.array(ids, dtype=np.int64)


def end_mark_probability(logits: np.ndarray, mark_ids: np.ndarray) -> float:
    """P(any sentence mark) under one decoder step's logits."""
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    z = z - z[np.isfinite(z)].max()
    p = np.exp(z)  # suppressed tokens (-inf) get 0
    return float(p[mark_ids[mark_ids < len(p)]].sum() / p.sum())


class WhisperRecognizer:
    """Whisper on some engine: the engine-free steps (windows, silence gate, languages, errors).

    An engine subclass loads the model (``_load``) and runs it on one window at a time:
    ``_encode`` (samples -> encoder output), ``_first_step`` (language probabilities and
    the no-speech probability after <|startoftranscript|>) and ``_decode`` (the text in a
    given language)."""

    engine = ""

    def __init__(self, model: str, device: str = "cpu") -> None:
        self.model_name = str(model)
        self.device = device
        self._lock = threading.Lock()  # one transcription at a time per loaded model
        self._load_lock = threading.Lock()  # a second caller waits for the first load instead of loading again
        self._codes: list[str] = []  # Whisper language codes of the loaded model

    # ------------------------------------------------------------------ engine hooks

    @property
    def loaded(self) -> bool:
        raise NotImplementedError

    def _load(self, source: str) -> None:
        """Load the model from a folder or hub id; set ``self._codes``."""
        raise NotImplementedError

    def _inference(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def _encode(self, samples: np.ndarray) -> Any:
        raise NotImplementedError

    def _first_step(self, encoded: Any) -> tuple[list[tuple[str, float]], float]:
        """[(Whisper code, probability)] over all languages, most likely first, and P(<|nospeech|>)."""
        raise NotImplementedError

    def _decode(self, encoded: Any, code: str, max_tokens: int) -> Decoded:
        raise NotImplementedError

    # ------------------------------------------------------------------ loading

    def load(self) -> None:
        if self.loaded:
            return
        with self._load_lock:
            if self.loaded:
                return
            self._load(self._source())
            log.info("speech recognition model %s loaded on %s (%s)", self.model_name, self.device, self.engine)

    def _source(self) -> str:
        name = self.model_name
        local = Path(name).expanduser()
        if local.exists():
            return str(local)
        if _looks_like_path(name):
            raise ModelUnavailableError(
                f"Speech recognition model folder {name!r} does not exist. "
                "Pass a folder that holds a Whisper model with --asr-model PATH.",
                key="model.asr_folder_missing",
                model=name,
                looked_in=str(local),
            )
        return name

    def _not_multilingual(self) -> ModelUnavailableError:
        return ModelUnavailableError(
            f"{self.model_name!r} is an English-only Whisper model; Omnilingo needs a multilingual one "
            "(for example openai/whisper-small).",
            key="model.asr_not_multilingual",
            model=self.model_name,
        )

    def _unavailable(self, source: str, exc: Exception) -> ModelUnavailableError:
        if Path(source).exists():
            return ModelUnavailableError(
                f"The speech recognition model in {source!r} could not be loaded ({type(exc).__name__}: {exc}). "
                "Check that the folder holds a complete Whisper model, or pass another with --asr-model PATH.",
                key="model.asr_broken",
                model=source,
                looked_in=source,
            )
        try:
            from huggingface_hub import constants

            cache = constants.HF_HUB_CACHE
        except Exception:  # noqa: BLE001
            cache = "~/.cache/huggingface/hub"
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
        why = "downloads are switched off (HF_HUB_OFFLINE)" if offline else "it could not be downloaded"
        return ModelUnavailableError(
            f"Speech recognition model {source!r} is not available: it is not in the local cache "
            f"({cache}) and {why}. Download it once (huggingface-cli download {source}) "
            "or pass a local folder with --asr-model PATH.",
            key="model.asr_unavailable",
            model=source,
            looked_in=cache,
        )

    # ------------------------------------------------------------------ languages

    def _forced_code(self, language: str | None) -> str | None:
        if not language:
            return None
        code = bcp47_to_whisper(language, set(self._codes) or None)
        if code is None:
            log.info("Whisper has no %r; detecting the spoken language instead", language)
        return code

    # ------------------------------------------------------------------ inference

    @staticmethod
    def _speechiest(samples: np.ndarray, spans: list[tuple[int, int]]) -> tuple[int, int]:
        return max(spans, key=lambda s: speech_seconds(samples[s[0]:s[1]]))

    def detect_language(self, clip: AudioClip) -> list[tuple[str, float]]:
        """[(BCP 47 tag, probability)] over every language Whisper knows, most likely first."""
        self.load()
        spans = split_windows(clip.samples, clip.sample_rate)
        start, end = self._speechiest(clip.samples, spans)
        with self._lock, self._inference():
            ranked, _ = self._first_step(self._encode(clip.samples[start:end]))
        return [(normalize_tag(code), p) for code, p in ranked]

    def transcribe(self, clip: AudioClip, language: str | None = None) -> Transcript:
        """Text of the whole recording, its language, or no_speech=True when nothing was said.

        ``language`` (BCP 47) is used as given when Whisper knows it; otherwise it is detected."""
        t0 = time.perf_counter()
        samples = clip.samples
        if clip.sample_rate != 16_000:
            raise UserFacingError("Recordings must be decoded with backend.media first.", key="asr.bad_rate")
        duration = clip.duration_s
        speech = speech_seconds(samples, clip.sample_rate)
        if speech < MIN_SPEECH_S:
            forced = self._forced_code(language)
            return Transcript(
                text="", language=normalize_tag(forced) if forced else "und", language_probability=0.0,
                duration_s=duration, no_speech=True, speech_s=speech,
                timings={"total": time.perf_counter() - t0},
            )

        self.load()
        forced = self._forced_code(language)
        spans = [s for s in split_windows(samples, clip.sample_rate) if speech_seconds(samples[s[0]:s[1]]) > 0]
        if not spans:  # speech spread thinly over windows: transcribe the whole in one pass each
            spans = split_windows(samples, clip.sample_rate)
        detect_span = self._speechiest(samples, spans)
        timings = {"encode": 0.0, "detect": 0.0, "generate": 0.0}
        try:
            with self._lock, self._inference():
                t = time.perf_counter()
                encoded = {span: self._encode(samples[span[0]:span[1]]) for span in spans}
                timings["encode"] = time.perf_counter() - t
                t = time.perf_counter()
                ranked, no_speech_prob = self._first_step(encoded[detect_span])
                timings["detect"] = time.perf_counter() - t
                lang_code, lang_prob = (forced, dict(ranked).get(forced, 0.0)) if forced else ranked[0]
                heard = Transcript(
                    text="", language=normalize_tag(lang_code), language_probability=float(lang_prob),
                    duration_s=duration, no_speech=True, no_speech_probability=no_speech_prob, speech_s=speech,
                    windows=len(spans), timings=timings,
                    language_probs=[(normalize_tag(c), float(p)) for c, p in ranked[:TOP_LANGUAGES]],
                )
                if no_speech_prob > NO_SPEECH_THRESHOLD and len(spans) == 1:
                    timings["total"] = time.perf_counter() - t0
                    return heard
                t = time.perf_counter()
                decoded = [
                    self._decode(encoded[span], lang_code, window_tokens((span[1] - span[0]) / clip.sample_rate))
                    for span in spans
                ]
                timings["generate"] = time.perf_counter() - t
        except UserFacingError:
            raise
        except Exception as exc:  # noqa: BLE001 - out of memory, a broken model...: a message, not a traceback
            log.exception("speech recognition failed")
            raise UserFacingError(
                f"Speech recognition failed ({type(exc).__name__}). Please try again or type your message.",
                key="asr.failed",
                error=type(exc).__name__,
            ) from exc
        texts = [d.text.strip() for d in decoded]
        if lang_code in NO_SPACE_LANGUAGES:
            heard.text = "".join(texts).strip()
        else:
            heard.text = " ".join(" ".join(texts).split())
        if _no_words(heard.text):
            heard.text = ""
        heard.no_speech = not heard.text
        tokens = sum(d.tokens for d in decoded)
        heard.avg_logprob = sum(d.logprob_sum for d in decoded) / tokens if tokens else None
        heard.end_mark_probability = decoded[-1].end_mark_probability if decoded else None
        timings["total"] = time.perf_counter() - t0
        return heard


# --------------------------------------------------------------------------- choosing an engine


def _looks_like_ctranslate2_id(model: str) -> bool:
    """faster-whisper's own size names ("small", "large-v3") and hub repos of converted models."""
    name = model.lower()
    if "/" not in name:
        return True  # a bare name is a size: transformers needs "openai/whisper-small"
    return any(mark in name for mark in ("faster-whisper", "ctranslate2", "ct2"))


def choose_asr_engine(model: str | None, device: str = "cpu", engine: str = "auto") -> str:
    """"transformers" or "faster-whisper" for this model and device; ``engine`` other than auto wins.

    auto: a CTranslate2 folder (it has model.bin) or hub id can only be read by faster-whisper, a
    transformers folder or hub id only by transformers. With no model given, faster-whisper (int8)
    on CPU and transformers on a GPU."""
    if engine not in ASR_ENGINES:
        raise UserFacingError(
            f"Unknown speech recognition engine {engine!r}; use one of {', '.join(ASR_ENGINES)}.",
            key="settings.asr_engine",
            engine=engine,
        )
    if engine != "auto":
        return engine
    if model:
        folder = Path(model).expanduser()
        if folder.is_dir():
            return "faster-whisper" if (folder / "model.bin").is_file() else "transformers"
        if not _looks_like_path(model):
            return "faster-whisper" if _looks_like_ctranslate2_id(model) else "transformers"
        return "transformers"  # a folder that is not there: transformers' loader says so
    # CPU: faster-whisper int8 ran Whisper base on the corpus recordings in 9.8 s a clip against 20.1 s
    # for transformers float32 (13.3 s for faster-whisper float32), same word error rate (10 %) and the
    # same spoken languages (6/6): python -m bench.speech, asr_engines in bench/results/speech.json.
    return "transformers" if _on_cuda(device) else "faster-whisper"


def open_recognizer(model: str | None = None, engine: str = "auto", device: str = "cpu",
                    cpu_threads: int | None = None) -> SpeechRecognizer:
    """A recognizer (not loaded yet) for ``model`` (hub id or folder; None = the default) on ``engine``;
    ``cpu_threads`` for faster-whisper (transformers takes torch's)."""
    chosen = choose_asr_engine(model, device, engine)
    name = model or default_asr_model(device, chosen)
    if chosen == "faster-whisper":
        from backend.models.whisper_ctranslate2 import CTranslate2Whisper

        return CTranslate2Whisper(name, device=device, cpu_threads=cpu_threads)
    from backend.models.whisper_transformers import TransformersWhisper

    return TransformersWhisper(name, device=device)
