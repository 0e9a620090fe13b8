"""Whisper through faster-whisper (CTranslate2): CTranslate2 folders and hub ids, int8 on CPU.

Reads a converted model folder as it is (model.bin, config.json, tokenizer.json,
vocabulary.json; ``python -m tests.real_models OUTDIR`` assembles Whisper base).
faster-whisper's own ``transcribe`` is not used: it would encode each window twice
(language detection, then decoding) and run its own silence rules; the shared steps
in ``backend.models.asr`` call the CTranslate2 model once per window instead.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from backend.models.asr import WINDOW_S, Decoded, WhisperRecognizer, end_mark_ids, end_mark_probability


def default_cpu_threads() -> int:
    """The cores this process may use, at most 8 (Whisper's decoder gains little beyond)."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        available = os.cpu_count() or 1
    return max(1, min(8, available))


# Whisper pads every window to 30 s; CTranslate2 encodes a shorter one as it is, in proportion less
# time. A window of at least 10 s, and 1 s past the speech, took 0.48 s a transcription against 1.32 s
# and heard about as well: of 158 utterances with known words (recordings, a Piper voice, espeak-ng in
# 28 languages; clean and in noise) 47 came closer to what was said, 28 went farther, 83 the same
# (python bench/asr_window.py). 6 s heard worse.
MIN_WINDOW_S = 10.0
TRAILING_S = 1.0  # a window cut right at the speech's end made Whisper add or drop words
FRAMES_PER_S = 100  # mel frames


def encoder_frames(frames: int) -> int:
    """Mel frames the encoder is given for ``frames`` of audio: TRAILING_S more, at least MIN_WINDOW_S, at most 30 s."""
    wanted = max(frames + int(TRAILING_S * FRAMES_PER_S), int(MIN_WINDOW_S * FRAMES_PER_S))
    return min(int(WINDOW_S * FRAMES_PER_S), wanted + wanted % 2)  # even: the encoder's convolution halves it


class CTranslate2Whisper(WhisperRecognizer):
    """Whisper converted for CTranslate2, run by faster-whisper's model classes."""

    engine = "faster-whisper"

    def __init__(
        self,
        model: str,
        device: str = "cpu",
        compute_type: str | None = None,
        cpu_threads: int | None = None,
        beam_size: int = 1,
    ) -> None:
        super().__init__(model, device)
        # int8 on CPU: 9.8 s a clip against 13.3 s for float32, same words (python -m bench.speech); float16 on CUDA.
        self.compute_type = compute_type or ("float16" if str(device).startswith("cuda") else "int8")
        self.cpu_threads = cpu_threads or default_cpu_threads()
        self.beam_size = beam_size  # 1 = greedy, as the transformers engine decodes
        self._model: Any = None  # a faster_whisper.WhisperModel once loaded
        self._sot = 0
        self._end_marks = np.zeros(0, np.int64)  # token ids of sentence marks (end_mark_ids)
        self._tokenizers: dict[str, Any] = {}

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _load(self, source: str) -> None:
        from faster_whisper import WhisperModel

        device, _, index = str(self.device).partition(":")
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
        try:
            model = WhisperModel(
                source, device=device, device_index=int(index or 0), compute_type=self.compute_type,
                cpu_threads=self.cpu_threads, local_files_only=offline,
            )
        except Exception as exc:  # noqa: BLE001 - CTranslate2 and the hub raise many kinds; all mean "not loadable"
            raise self._unavailable(source, exc) from exc
        if not model.model.is_multilingual:
            raise self._not_multilingual()
        self._codes = list(model.supported_languages)
        self._sot = model.hf_tokenizer.token_to_id("<|startoftranscript|>")
        tokenizer = model.hf_tokenizer
        self._end_marks = end_mark_ids(lambda i: tokenizer.decode([i]), tokenizer.get_vocab_size())
        self._model = model

    def _tokenizer(self, code: str):
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        if code not in self._tokenizers:
            tokenizer = Tokenizer(self._model.hf_tokenizer, True, task="transcribe", language=code)
            self._tokenizers[code] = (tokenizer, get_suppressed_tokens(tokenizer, [-1]))
        return self._tokenizers[code]

    def _encode(self, samples: np.ndarray):
        from faster_whisper.audio import pad_or_trim

        features = self._model.feature_extractor(samples)[..., :-1]  # its last frame is padding
        return self._model.encode(pad_or_trim(features, encoder_frames(features.shape[-1])))

    def _first_step(self, encoded) -> tuple[list[tuple[str, float]], float]:
        ranked = [(token[2:-2], float(p)) for token, p in self._model.model.detect_language(encoded)[0]]
        # one decoder step after <|startoftranscript|> is where Whisper puts P(<|nospeech|>)
        step = self._model.model.generate(encoded, [[self._sot]], max_length=2, return_no_speech_prob=True)[0]
        return ranked, float(step.no_speech_prob)

    def _decode(self, encoded, code: str, max_tokens: int) -> Decoded:
        tokenizer, suppressed = self._tokenizer(code)
        prompt = tokenizer.sot_sequence + [tokenizer.no_timestamps]
        result = self._model.model.generate(
            encoded, [prompt], beam_size=self.beam_size, max_length=len(prompt) + max_tokens, return_scores=True,
            suppress_blank=True, suppress_tokens=suppressed, return_logits_vocab=True,
        )[0]
        ids = result.sequences_ids[0]
        end_mark = None  # CTranslate2 gives each step's logits in greedy decoding only: with beams, not known
        if ids and ids[-1] in self._end_marks and result.logits and len(result.logits[0]) >= len(ids):
            end_mark = end_mark_probability(np.asarray(result.logits[0][len(ids) - 1]), self._end_marks)
        # CTranslate2's score is the tokens' summed log-probability over their number; the mean counts
        # the end of text as one more token, as faster-whisper's avg_logprob does
        return Decoded(tokenizer.decode(ids).strip(), float(result.scores[0]) * len(ids), len(ids) + 1, end_mark)
