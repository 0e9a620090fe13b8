"""Whisper through transformers: hub ids and folders in the transformers format (the GPU default).

The language probabilities come from the first decoder step after <|startoftranscript|>,
softmaxed over the language tokens (transformers' own ``detect_language`` only gives the
most likely one).
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from backend.models.asr import MAX_TOKENS, Decoded, WhisperRecognizer, end_mark_ids, end_mark_probability


class TransformersWhisper(WhisperRecognizer):
    """Whisper (any size) from a hub id or a local folder, run by transformers (float16 on CUDA)."""

    engine = "transformers"

    def __init__(self, model: str, device: str = "cpu", dtype=None) -> None:
        super().__init__(model, device)
        self.dtype = dtype
        self._model: Any = None  # loaded on first use
        self._processor: Any = None
        self._lang_ids: dict[str, int] = {}
        self._no_speech_id: int | None = None
        self._end_marks = np.zeros(0, np.int64)  # token ids of sentence marks (end_mark_ids)

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _load(self, source: str) -> None:
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        dtype = self.dtype
        if dtype is None:
            dtype = torch.float16 if str(self.device).startswith("cuda") else torch.float32
        try:
            processor = WhisperProcessor.from_pretrained(source)
            model = WhisperForConditionalGeneration.from_pretrained(source, dtype=dtype)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise self._unavailable(source, exc) from exc
        model.to(self.device).eval()
        lang_to_id = dict(getattr(model.generation_config, "lang_to_id", None) or {})
        if not lang_to_id:
            raise self._not_multilingual()
        self._lang_ids = {tok.strip("<|>"): int(i) for tok, i in lang_to_id.items()}
        tokenizer = processor.tokenizer
        for tok in ("<|nospeech|>", "<|nocaptions|>"):  # the token's name changed across releases
            tid = tokenizer.convert_tokens_to_ids(tok)
            if tid is not None and tid != tokenizer.unk_token_id:
                self._no_speech_id = int(tid)
                break
        self._codes = list(self._lang_ids)
        self._end_marks = end_mark_ids(lambda i: tokenizer.decode([i]), len(tokenizer))
        self._processor, self._model = processor, model

    def _inference(self) -> contextlib.AbstractContextManager:
        import torch

        return torch.inference_mode()

    def _encode(self, samples: np.ndarray):
        import torch

        feats = self._processor.feature_extractor(samples, sampling_rate=16_000, return_tensors="pt").input_features
        if isinstance(feats, torch.Tensor):
            feats = feats.to(self.device, dtype=next(self._model.parameters()).dtype)
        return self._model.get_encoder()(feats)

    def _first_step(self, encoded) -> tuple[list[tuple[str, float]], float]:
        import torch

        sot = self._model.generation_config.decoder_start_token_id
        decoder_ids = torch.tensor([[sot]], device=self.device)
        logits = self._model(encoder_outputs=encoded, decoder_input_ids=decoder_ids).logits[0, -1].float()
        codes = list(self._lang_ids)
        ids = torch.tensor([self._lang_ids[c] for c in codes], device=logits.device)
        probs = torch.softmax(logits[ids], dim=-1).cpu().numpy()
        ranked = [(codes[i], float(probs[i])) for i in np.argsort(-probs)]
        no_speech = 0.0
        if self._no_speech_id is not None and self._no_speech_id < logits.shape[-1]:
            no_speech = float(torch.softmax(logits, dim=-1)[self._no_speech_id])
        return ranked, no_speech

    def _decode(self, encoded, code: str, max_tokens: int) -> Decoded:
        # max_length counts the prompt (start, language, task, no timestamps); a model's own smaller limit stays
        limit = self._model.generation_config.max_length or MAX_TOKENS
        out = self._model.generate(
            encoder_outputs=encoded, language=code, task="transcribe", max_length=min(limit, 4 + max_tokens),
            return_dict_in_generate=True, output_scores=True,
        )
        sequences = out.sequences if hasattr(out, "sequences") else out
        text = self._processor.batch_decode(sequences, skip_special_tokens=True)[0].strip()
        scores = getattr(out, "scores", None)
        if not scores:
            return Decoded(text, 0.0, 0)
        logprobs = self._model.compute_transition_scores(sequences, scores, normalize_logits=True)[0].float()
        logprobs = logprobs[logprobs.isfinite()]
        generated = sequences[0, -len(scores):].tolist()  # one score per generated token
        eos = self._model.generation_config.eos_token_id
        last = len(generated) - 1
        if last > 0 and generated[last] in (eos if isinstance(eos, (list, tuple)) else [eos]):
            last -= 1  # the closing mark comes before the end of text
        end_mark = None
        if generated and generated[last] in self._end_marks:
            end_mark = end_mark_probability(scores[last][0].float().cpu().numpy(), self._end_marks)
        return Decoded(text, float(logprobs.sum()), int(logprobs.numel()), end_mark)
