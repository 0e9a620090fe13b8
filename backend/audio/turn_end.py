"""End of a voice turn: has the user finished, or only paused?

A fixed silence cuts off anyone who pauses inside a sentence. At each short pause two signals
judge instead:

* the sound: Smart Turn v3.2 (an 8.7 MB int8 ONNX classifier on Whisper log-mel features of
  the last 8 s, trained on 23 languages; BSD-2-Clause, from the pipecat-ai 1.14.0 wheel and
  shipped in ``data/smart-turn-v3.2/``) gives the probability that the turn is complete;
* the words: an utterance whose transcript ends in an article, a preposition, a conjunction or a
  possessive ("… to the", "… und") is unfinished. The words come per language from Universal
  Dependencies treebanks (``data/unfinished_words.json``, built by bench/make_unfinished_words.py).

A transcript with no word at all (a second of speech Whisper could not yet make out) counts as
unfinished too: there is nothing to answer yet.

Finished: the turn is handed over at once. Unfinished: the session keeps listening and hands the
turn over only after a longer silence. Between the two, finished but unsure: the signals say
finished, yet Whisper itself hardly chose to close the sentence there (the probability of its
closing ". ! ?" against writing on with "," or a word, ``Transcript.end_mark_probability``); the
turn is handed over after a shorter wait, which lets most pauses inside a sentence pass. Where
neither signal covers the language, the plain silence rule applies.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from backend.audio.pcm import SAMPLE_RATE
from backend.language.sentences import SENTENCE_END_MARKS

DATA = Path(__file__).resolve().parent / "data"
SMART_TURN_PATH = DATA / "smart-turn-v3.2" / "smart-turn-v3.2-cpu.onnx"
SMART_TURN_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
UNFINISHED_WORDS_PATH = DATA / "unfinished_words.json"
WINDOW_S = 8  # Smart Turn reads the last 8 s, zero-padded in front when shorter
# The languages Smart Turn v3 was trained on (its model card).
SMART_TURN_LANGUAGES = frozenset({
    "ar", "bn", "da", "de", "en", "es", "fi", "fr", "hi", "id", "it", "ja", "ko", "mr", "nl", "no", "pl",
    "pt", "ru", "tr", "uk", "vi", "zh",
})


class TurnModelError(RuntimeError):
    """The end-of-turn model file is missing or is not the one this code was checked with."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class SmartTurn:
    """Smart Turn v3.2 through onnxruntime: P(the speaker has finished) for a 16 kHz utterance."""

    def __init__(self, path: Path | str = SMART_TURN_PATH, sha256: str | None = SMART_TURN_SHA256) -> None:
        path = Path(path)
        if not path.is_file():
            raise TurnModelError(f"end-of-turn model not found at {path}")
        if sha256 and _sha256(path) != sha256:
            raise TurnModelError(f"end-of-turn model at {path} does not match its sha256 {sha256}")
        import onnxruntime as ort
        from transformers import WhisperFeatureExtractor

        opts = ort.SessionOptions()
        # Like the VAD: one thread, so that the model never competes with the chat model for cores.
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        # The extended fusions swap in int8 kernels whose AVX2 path saturates: on a CPU without
        # AVX-512 VNNI, "und das" + a pause scored 0.85 finished with them and 0.02 without (as the
        # model scores it elsewhere), at 80 instead of 130 ms a call. Basic optimizations only.
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        self._session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name  # "input_features": [batch, 80, 800]
        self._features = WhisperFeatureExtractor(feature_size=80, sampling_rate=SAMPLE_RATE, chunk_length=WINDOW_S)
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Run the model a few times: its first calls took 330-400 ms, later ones 120-150 ms."""
        for _ in range(3):
            self.probability(np.zeros(SAMPLE_RATE, np.float32))

    def probability(self, audio: np.ndarray) -> float:
        """P(complete) for the utterance ``audio`` (16 kHz float32, ending where the user paused)."""
        n = WINDOW_S * SAMPLE_RATE
        x = np.asarray(audio, dtype=np.float32).reshape(-1)[-n:]
        x = np.pad(x, (n - len(x), 0))  # silence in front, as the model was trained
        features = self._features(
            x, sampling_rate=SAMPLE_RATE, return_tensors="np", padding="max_length", max_length=n,
            truncation=True, do_normalize=True,
        ).input_features.astype(np.float32)
        with self._lock:
            (out,) = self._session.run(None, {self._input: features})
        return float(np.asarray(out).reshape(-1)[0])  # the graph ends in a sigmoid


_smart_turn: SmartTurn | None = None
_smart_turn_lock = threading.Lock()


def smart_turn() -> SmartTurn:
    """The shared model (loaded once; runs are serialized, each takes a few tens of ms)."""
    global _smart_turn
    with _smart_turn_lock:
        if _smart_turn is None:
            _smart_turn = SmartTurn()
        return _smart_turn


# -- the words ---------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _unfinished_words() -> dict[str, frozenset[str]]:
    data = json.loads(UNFINISHED_WORDS_PATH.read_text(encoding="utf-8"))
    return {lang: frozenset(words) for lang, words in data["words"].items()}


def base_language(tag: str | None) -> str:
    return (tag or "und").replace("_", "-").split("-")[0].lower()


def word_languages() -> frozenset[str]:
    return frozenset(_unfinished_words())


_WORD = re.compile(r"\w+(?:['’]\w*)?|\w*['’]", re.UNICODE)


def last_word(text: str) -> str:
    words = _WORD.findall(unicodedata.normalize("NFC", text).lower().replace("’", "'"))
    return words[-1] if words else ""


_TRAILING_OFF = ("...", "…", ",", "、", "，", ";", ":", "-", "–", "—")


def ends_mid_phrase(text: str, *languages: str | None) -> bool | None:
    """True when ``text`` stops where a sentence goes on; None where no list covers its language.

    Three clues, all measured on real speech cut inside sentences (bench/turn_taking.py): the last
    word is one after which a sentence goes on ("the", "und", "de"); Whisper wrote no closing
    punctuation; or it wrote a trailing-off mark ("…", ",") there. Whisper's full stop alone is no
    proof of an end: it writes one after a cut-off phrase as readily, so the last word still counts.
    """
    table = _unfinished_words()
    words = next((table[base_language(tag)] for tag in languages if base_language(tag) in table), None)
    text = text.strip()
    if words is None or not text:
        return None
    if text.endswith(_TRAILING_OFF) or not text.endswith(tuple(SENTENCE_END_MARKS)):
        return True
    return last_word(text) in words


# -- the verdict -------------------------------------------------------------------------------

@dataclass(frozen=True)
class TurnEndConfig:
    pause_ms: int = 200  # VAD silence at which the turn is judged
    finished_probability: float = 0.5  # Smart Turn at or above this: finished
    unfinished_wait_ms: int = 2500  # unfinished: hand over after this much silence all the same
    # Finished, but Whisper closed the sentence with less than this probability: wait unsure_wait_ms. Chosen on
    # the tuning half of bench/turn_taking.py: under every finished utterance there (lowest 0.78), over 4 of
    # the 5 pauses inside sentences that were handed over at once.
    sure_end_probability: float = 0.75
    # The pauses inside sentences of the corpus's two long recordings last 0.1-1.1 s, one 1.5 s; a cut-off
    # counts below 1 s, and finished utterances should be handed over within 1.5 s.
    unsure_wait_ms: int = 1200
    silence_ms: int = 500  # the plain silence rule, where no signal covers the language
    use_audio: bool = True
    use_words: bool = True
    use_end_mark: bool = True  # False: no "unsure" outcome (the rule before it, for bench/turn_taking.py)


@dataclass(frozen=True)
class TurnVerdict:
    finished: bool
    wait_ms: int  # hand the turn over once the silence after speech reaches this (0: at once)
    reason: str  # "audio" | "words" | "unsure" | "silence"
    probability: float | None = None
    mid_phrase: bool | None = None
    end_mark_probability: float | None = None  # the transcript's, when it was heard


class TurnEndDetector:
    """Judges one pause from the utterance's sound and, where it is needed, its transcript."""

    def __init__(self, config: TurnEndConfig | None = None, model: SmartTurn | None = None) -> None:
        self.config = config or TurnEndConfig()
        self._model = model

    @property
    def model(self) -> SmartTurn:
        if self._model is None:
            self._model = smart_turn()
        return self._model

    def judge(
        self, audio: np.ndarray, hear: Callable[[], Any] | None = None, language: str | None = None,
    ) -> tuple[TurnVerdict, Any]:
        """The verdict on a pause, and the transcript when it was needed (``hear()`` is called at most once).

        ``hear`` returns a Transcript (``.text``, ``.language``) or None; ``language`` is the
        conversation's language so far, when known.
        """
        c = self.config
        hint = base_language(language)
        audio_covers = c.use_audio and (hint == "und" or hint in SMART_TURN_LANGUAGES)
        words_cover = c.use_words and hear is not None and (hint == "und" or hint in word_languages())
        if not audio_covers and not words_cover:
            return TurnVerdict(False, c.silence_ms, "silence"), None
        probability = None
        if audio_covers:
            probability = self.model.probability(audio)
            if probability < c.finished_probability:  # the voice says "more to come": no need for the words yet
                return TurnVerdict(False, c.unfinished_wait_ms, "audio", probability), None
        transcript = hear() if words_cover and hear is not None else None
        text = getattr(transcript, "text", "") or ""
        mid_phrase = self._mid_phrase(transcript, hint)
        if transcript is not None and not text.strip():
            # Whisper heard no word yet (the first syllables of a sentence): nothing to answer, keep listening.
            return TurnVerdict(False, c.unfinished_wait_ms, "words", probability, None), transcript
        if mid_phrase:
            return TurnVerdict(False, c.unfinished_wait_ms, "words", probability, True), transcript
        if probability is None and mid_phrase is None:
            return TurnVerdict(False, c.silence_ms, "silence", None, None), transcript
        # One signal or both say finished. Whisper's doubt about its closing mark needs no word list: it also
        # holds where Whisper named a language without one (a first turn, nothing known of the language).
        end_mark = getattr(transcript, "end_mark_probability", None)
        if c.use_end_mark and end_mark is not None and end_mark < c.sure_end_probability:
            return TurnVerdict(True, c.unsure_wait_ms, "unsure", probability, mid_phrase, end_mark), transcript
        reason = "audio" if probability is not None else "words"
        return TurnVerdict(True, 0, reason, probability, mid_phrase, end_mark), transcript

    def reconsider(self, verdict: TurnVerdict, transcript: Any, language: str | None = None) -> TurnVerdict:
        """A pause that only the sound held open, once its words are heard (the session hears them after a
        second of silence). Words that end a sentence Whisper surely closed disagree with the sound: the turn
        goes after ``unsure_wait_ms``, not ``unfinished_wait_ms``. Smart Turn hears an unfinished voice at the
        ends of some finished sentences ("… I wouldn't start from here, sonny.", 0.08)."""
        c = self.config
        if verdict.reason != "audio" or verdict.finished or transcript is None or not (c.use_words and c.use_end_mark):
            return verdict
        end_mark = getattr(transcript, "end_mark_probability", None)
        if self._mid_phrase(transcript, base_language(language)) is False and (end_mark or 0.0) >= c.sure_end_probability:
            return TurnVerdict(True, c.unsure_wait_ms, "unsure", verdict.probability, False, end_mark)
        return verdict

    @staticmethod
    def _mid_phrase(transcript: Any, hint: str) -> bool | None:
        """``ends_mid_phrase`` of the transcript, the conversation's language first: Whisper often names
        another one for a second of speech."""
        text = getattr(transcript, "text", "") or ""
        heard = getattr(transcript, "language", None)
        return ends_mid_phrase(text, *((hint, heard) if hint != "und" else (heard,))) if text else None
