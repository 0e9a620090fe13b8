"""Rules for what the statistical detectors get wrong: letters one language owns, marker words.

Close neighbours both detectors split poorly (hr/bs/sr, mk/bg, id/ms, no/nn/da, af/nl,
rn/rw, Malay in Jawi) are settled by spelling and vocabulary markers when those are
clear, as are a few languages no detector names (Ido, Papiamentu, K'iche', Scots,
Interlingua). Letters only one language of a script writes name Shan, Chuvash,
Azerbaijani in Cyrillic, written Cantonese and Hakka. The marker word lists live in
``data/markers.tsv``, read once on import.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

from backend.language.scripts import written_in

MARKERS_FILE = Path(__file__).with_name("data") / "markers.tsv"

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


def _load_markers(path: Path = MARKERS_FILE) -> dict[str, re.Pattern[str]]:
    """{list name: whole-word pattern}; a list's rows are joined in file order."""
    words: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, _, alternatives = line.partition("\t")
        words.setdefault(name.strip(), []).append(alternatives)
    return {name: _markers(" ".join(rows)) for name, rows in words.items()}


_MARKERS = _load_markers()

# Serbo-Croatian in Latin letters. Ekavian reflexes (vreme, čovek, gde) are Serbian;
# ijekavian ones (vrijeme, čovjek, gdje) are Croatian, Bosnian or Montenegrin.
_EKAVIAN = _MARKERS["ekavian"]
_IJEKAVIAN = _MARKERS["ijekavian"]
# Vocabulary Serbian and Bosnian share against Croatian, and the reverse.
_SR_BS_WORDS = _MARKERS["sr_bs_words"]
_HR_WORDS = _MARKERS["hr_words"]
_SR_WORDS = _MARKERS["sr_words"]
_BS_WORDS = _MARKERS["bs_words"]

# Cyrillic: letters each standard owns, then everyday words.
_MK_LETTERS = frozenset("ѓќѕЃЌЅ")
_SR_LETTERS = frozenset("ћђЋЂ")
_SR_MK_LETTERS = frozenset("јљњџЈЉЊЏ")  # never Bulgarian or Russian
# Letters of Bulgarian and the East Slavic languages, never of Serbian or Macedonian.
_BG_LETTERS = frozenset("ъщйяюыэёєіїґЪЩЙЯЮЫЭЁЄІЇҐ")
_MK_WORDS = _MARKERS["mk_words"]
_SR_CYRL_WORDS = _MARKERS["sr_cyrl_words"]
_BG_WORDS = _MARKERS["bg_words"]

# Malay (Malaysia, Brunei) and Indonesian spelling and vocabulary.
_MS_WORDS = _MARKERS["ms_words"]
_ID_WORDS = _MARKERS["id_words"]
# Malay in Jawi: letters Arabic, Persian and Urdu do not use.
_JAWI_LETTERS = frozenset("ڠڽݢۏڬ")
_JAWI_PA = "ڤ"  # also Arabic's loan-word "v": it takes two


def _jawi(text: str) -> bool:
    return not _JAWI_LETTERS.isdisjoint(text) or text.count(_JAWI_PA) >= 2

# Norwegian (Bokmål and Nynorsk) and Danish.
_NO_WORDS = _MARKERS["no_words"]
_DA_WORDS = _MARKERS["da_words"]
_NN_WORDS = _MARKERS["nn_words"]
_NB_ONLY = _MARKERS["nb_only"]

# Afrikaans and Dutch.
_NL_WORDS = _MARKERS["nl_words"]
_AF_WORDS = _MARKERS["af_words"]


def _count(pattern: re.Pattern[str], text: str) -> int:
    return len(pattern.findall(text))


def clear(scores: Mapping[str, float], current: str, margin: float) -> str:
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
    return clear(scores, current if current in scores else "hr", MARGIN)


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
    fallback = current if current in scores else max(scores, key=scores.__getitem__)
    return clear(scores, fallback, MARGIN)


def _malay(text: str, script: str, current: str) -> str:
    if script == "Arab":
        return "ms" if _jawi(text) else current
    low = text.lower()
    return clear({"ms": 2 * _count(_MS_WORDS, low), "id": 2 * _count(_ID_WORDS, low)}, current, MARGIN)


def _scandinavian(text: str, script: str, current: str) -> str:
    low = text.lower()
    nynorsk, bokmal = _count(_NN_WORDS, low), _count(_NB_ONLY, low)
    if current == "nn" and bokmal > nynorsk:
        current = "no"
    elif nynorsk > bokmal:
        return "nn"
    if current == "nn":
        return current
    return clear({"no": 2 * _count(_NO_WORDS, low), "da": 2 * _count(_DA_WORDS, low)}, current, MARGIN)


# Kirundi writes vy, c and canke where Kinyarwanda writes by, cy and cyangwa.
_RN_WORDS = _MARKERS["rn_words"]
_RW_WORDS = _MARKERS["rw_words"]


def _rundi_rwanda(text: str, script: str, current: str) -> str:
    low = text.lower()
    return clear({"rn": 2 * _count(_RN_WORDS, low), "rw": 2 * _count(_RW_WORDS, low)}, current, MARGIN)


def _afrikaans_dutch(text: str, script: str, current: str) -> str:
    low = text.lower()
    return clear({"nl": 2 * _count(_NL_WORDS, low), "af": 2 * _count(_AF_WORDS, low)}, current, MARGIN)


# Two marker points (one clear marker) more than any neighbour. Tuned on UDHR 0-7.
MARGIN = 2.0
_NEIGHBOURS: dict[str, Callable[[str, str, str], str]] = {
    **dict.fromkeys(("hr", "bs", "sr", "mk", "bg"), _serbo_croatian),
    **dict.fromkeys(("id", "ms"), _malay),
    **dict.fromkeys(("no", "da", "nn"), _scandinavian),
    **dict.fromkeys(("af", "nl"), _afrikaans_dutch),
    **dict.fromkeys(("rn", "rw"), _rundi_rwanda),
}


def neighbour(text: str, script: str, tag: str) -> str:
    """The detectors' answer, or its close neighbour when markers clearly say so."""
    rule = _NEIGHBOURS.get(tag)
    if rule is None and script == "Arab" and _jawi(text):
        rule = _malay
    if rule is None:
        return tag
    answer = rule(text, script, tag)
    return answer if written_in(answer, script) else tag


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
LETTER_LANGUAGES = frozenset(_OWN_LETTERS) | {"hak"}


def own_letters(text: str) -> str | None:
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
MARKED_LANGUAGES: dict[str, tuple[re.Pattern[str], re.Pattern[str], frozenset[str] | None]] = {
    "io": (_MARKERS["io"],
           _MARKERS["io_rivals"], None),
    "pap": (_MARKERS["pap"],
            _MARKERS["pap_rivals"], _ROMANCE),
    "quc": (_MARKERS["quc"],
            # English; Quechua and Aymara, which also write k' q' ch'
            _MARKERS["quc_rivals"], None),
    "sco": (_MARKERS["sco"],
            _MARKERS["sco_rivals"], frozenset({"en"})),
    "ia": (_MARKERS["ia"],
           _MARKERS["ia_rivals"],
           _ROMANCE - {"ia"}),
}


def marked(text: str, script: str, tag: str) -> str:
    """A language the detectors cannot name, when its markers clearly outweigh its rivals'."""
    if script != "Latn":
        return tag
    low = text.lower()
    words = max(1, len(_WORD_RE.findall(low)))
    for language, (own, rivals, instead_of) in MARKED_LANGUAGES.items():
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
