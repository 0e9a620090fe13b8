"""Speech to text with spoken-language identification (Whisper through transformers).

A recording is cut into windows of at most 30 s (Whisper's input size) at the
quietest moment near each boundary, so long recordings are transcribed whole
rather than cut off. The spoken language comes with its probability: the first
decoder step after <|startoftranscript|>, softmaxed over the language tokens
(transformers' own ``detect_language`` only gives the most likely one).
Recordings without speech (silence, steady noise, a click, Whisper's
<|nospeech|>) come back as ``Transcript(no_speech=True)`` so the caller can say
"I did not catch that" instead of sending an empty turn to the model.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backend.errors import ModelUnavailableError, UserFacingError
from backend.language.tags import normalize_tag
from backend.media import AudioClip

log = logging.getLogger(__name__)

DEFAULT_ASR_MODEL = {"cuda": "openai/whisper-large-v3-turbo", "cpu": "openai/whisper-small"}

WINDOW_S = 30.0
# Where a window may end early to avoid cutting a word: the quietest spot in its last seconds.
CUT_SEARCH_S = 5.0
MIN_SPEECH_S = 0.3
NO_SPEECH_THRESHOLD = 0.6

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
_NO_SPACE_LANGUAGES = {"zh", "ja", "th", "lo", "my", "km", "yue", "bo"}


def default_asr_model(device: str = "cpu") -> str:
    return DEFAULT_ASR_MODEL["cuda" if str(device).startswith("cuda") else "cpu"]


@dataclass
class Transcript:
    text: str
    language: str  # BCP 47 tag ("und" when nothing was heard)
    language_probability: float
    duration_s: float
    no_speech: bool
    no_speech_probability: float = 0.0
    speech_s: float = 0.0  # seconds with speech energy
    windows: int = 0  # 30 s windows run through the model
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage: detect, generate, total


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


# --------------------------------------------------------------------------- recognizer


def _looks_like_path(model: str) -> bool:
    """Hub ids are "name" or "owner/name"; anything else was meant as a folder."""
    return model.startswith((".", "/", "~")) or "\\" in model or model.count("/") > 1


class SpeechRecognizer:
    """Whisper (any size) from a hub id or a local folder."""

    def __init__(self, model: str, device: str = "cpu", dtype=None) -> None:
        self.model_name = str(model)
        self.device = device
        self.dtype = dtype
        self._model: Any = None  # loaded on first use
        self._processor: Any = None
        self._lock = threading.Lock()  # one transcription at a time per loaded model
        # Loaded once: the background load and a spoken message arriving meanwhile share it.
        self._load_lock = threading.Lock()
        self._lang_ids: dict[str, int] = {}
        self._no_speech_id: int | None = None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        if self._model is not None:
            return
        with self._load_lock:
            if self._model is None:
                self._load()

    def _load(self) -> None:
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        name = self.model_name
        local = Path(name).expanduser()
        if local.exists():
            source = str(local)
        elif _looks_like_path(name):
            raise ModelUnavailableError(
                f"Speech recognition model folder {name!r} does not exist. "
                "Pass a folder that holds a Whisper model with --asr-model PATH.",
                key="model.asr_folder_missing",
                model=name,
                looked_in=str(local),
            )
        else:
            source = name
        dtype = self.dtype
        if dtype is None:
            dtype = torch.float16 if str(self.device).startswith("cuda") else torch.float32
        try:
            processor = WhisperProcessor.from_pretrained(source)
            model = WhisperForConditionalGeneration.from_pretrained(source, dtype=dtype)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise self._unavailable(source, exc) from exc
        model.to(self.device).eval()
        gen = model.generation_config
        lang_to_id = dict(getattr(gen, "lang_to_id", None) or {})
        if not lang_to_id:
            raise ModelUnavailableError(
                f"{name!r} is an English-only Whisper model; Omnilingo needs a multilingual one "
                "(for example openai/whisper-small).",
                key="model.asr_not_multilingual",
                model=name,
            )
        self._lang_ids = {tok.strip("<|>"): int(i) for tok, i in lang_to_id.items()}
        tokenizer = processor.tokenizer
        for tok in ("<|nospeech|>", "<|nocaptions|>"):  # the token's name changed across releases
            tid = tokenizer.convert_tokens_to_ids(tok)
            if tid is not None and tid != tokenizer.unk_token_id:
                self._no_speech_id = int(tid)
                break
        self._processor, self._model = processor, model
        log.info("speech recognition model %s loaded on %s", name, self.device)

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

    # ------------------------------------------------------------------ inference

    def _features(self, samples: np.ndarray):
        import torch

        feats = self._processor.feature_extractor(
            samples, sampling_rate=16_000, return_tensors="pt"
        ).input_features
        return feats.to(self.device, dtype=next(self._model.parameters()).dtype) if isinstance(feats, torch.Tensor) else feats

    def _first_step(self, encoder_outputs) -> tuple[list[tuple[str, float]], float]:
        """Language probabilities and the no-speech probability from the first decoder step."""
        import torch

        sot = self._model.generation_config.decoder_start_token_id
        decoder_ids = torch.tensor([[sot]], device=self.device)
        logits = self._model(encoder_outputs=encoder_outputs, decoder_input_ids=decoder_ids).logits[0, -1].float()
        codes = list(self._lang_ids)
        ids = torch.tensor([self._lang_ids[c] for c in codes], device=logits.device)
        probs = torch.softmax(logits[ids], dim=-1).cpu().numpy()
        order = np.argsort(-probs)
        ranked = [(codes[i], float(probs[i])) for i in order]
        no_speech = 0.0
        if self._no_speech_id is not None and self._no_speech_id < logits.shape[-1]:
            no_speech = float(torch.softmax(logits, dim=-1)[self._no_speech_id])
        return ranked, no_speech

    def detect_language(self, clip: AudioClip) -> list[tuple[str, float]]:
        """[(BCP 47 tag, probability)] over every language Whisper knows, most likely first."""
        import torch

        self.load()
        spans = split_windows(clip.samples, clip.sample_rate)
        start, end = self._speechiest(clip.samples, spans)
        with self._lock, torch.inference_mode():
            enc = self._model.get_encoder()(self._features(clip.samples[start:end]))
            ranked, _ = self._first_step(enc)
        return [(normalize_tag(code), p) for code, p in ranked]

    @staticmethod
    def _speechiest(samples: np.ndarray, spans: list[tuple[int, int]]) -> tuple[int, int]:
        return max(spans, key=lambda s: speech_seconds(samples[s[0]:s[1]]))

    def transcribe(self, clip: AudioClip, language: str | None = None) -> Transcript:
        """Text of the whole recording, its language, or no_speech=True when nothing was said."""
        import torch

        t0 = time.perf_counter()
        samples = clip.samples
        if clip.sample_rate != 16_000:
            raise UserFacingError("Recordings must be decoded with backend.media first.", key="asr.bad_rate")
        duration = clip.duration_s
        forced = None
        if language:
            forced = bcp47_to_whisper(language, set(self._lang_ids) or None)
            if forced is None:
                log.info("Whisper has no %r; detecting the spoken language instead", language)
        speech = speech_seconds(samples, clip.sample_rate)
        if speech < MIN_SPEECH_S:
            return Transcript(
                text="", language=normalize_tag(forced) if forced else "und", language_probability=0.0,
                duration_s=duration, no_speech=True, speech_s=speech,
                timings={"total": time.perf_counter() - t0},
            )

        self.load()
        spans = [s for s in split_windows(samples, clip.sample_rate) if speech_seconds(samples[s[0]:s[1]]) > 0]
        if not spans:  # speech spread thinly over windows: transcribe the whole in one pass each
            spans = split_windows(samples, clip.sample_rate)
        detect_span = self._speechiest(samples, spans)
        timings = {"detect": 0.0, "generate": 0.0}
        texts: list[str] = []
        lang_code, lang_prob, no_speech_prob = forced, 1.0 if forced else 0.0, 0.0
        try:
            with self._lock, torch.inference_mode():
                encoded = []
                for span in spans:
                    enc = self._model.get_encoder()(self._features(samples[span[0]:span[1]]))
                    encoded.append(enc)
                    if span == detect_span:
                        t = time.perf_counter()
                        ranked, no_speech_prob = self._first_step(enc)
                        timings["detect"] += time.perf_counter() - t
                        if forced is None:
                            lang_code, lang_prob = ranked[0]
                        else:
                            lang_prob = dict(ranked).get(forced, 0.0)
                if no_speech_prob > NO_SPEECH_THRESHOLD and len(spans) == 1:
                    return Transcript(
                        text="", language=normalize_tag(lang_code), language_probability=lang_prob,
                        duration_s=duration, no_speech=True, no_speech_probability=no_speech_prob,
                        speech_s=speech, windows=1, timings={**timings, "total": time.perf_counter() - t0},
                    )
                t = time.perf_counter()
                for enc in encoded:
                    ids = self._model.generate(encoder_outputs=enc, language=lang_code, task="transcribe")
                    texts.append(self._processor.batch_decode(ids, skip_special_tokens=True)[0].strip())
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
        if lang_code in _NO_SPACE_LANGUAGES:
            text = "".join(texts).strip()
        else:
            text = " ".join(" ".join(texts).split())
        timings["total"] = time.perf_counter() - t0
        return Transcript(
            text=text,
            language=normalize_tag(lang_code),
            language_probability=float(lang_prob),
            duration_s=duration,
            no_speech=not text,
            no_speech_probability=no_speech_prob,
            speech_s=speech,
            windows=len(spans),
            timings=timings,
        )
