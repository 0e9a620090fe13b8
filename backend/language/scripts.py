"""Writing systems: the Unicode script of each letter, and the scripts CLDR says each language uses.

The script settles languages that own it (Greek, Hangul, Thai, Georgian...) and rules
out impossible answers (a Han text is never Korean); it also sets the writing direction.
"""

from __future__ import annotations

import collections
import functools
import unicodedata
import xml.etree.ElementTree as ElementTree  # only CLDR data from language_data  # nosec B405
from pathlib import Path

import langcodes
import language_data

from backend.language.tags import UNKNOWN, normalize_tag, split_tag

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
SCRIPT_EXPANSION = {"Jpan": ("Kana",), "Kore": ("Hang",), "Hans": ("Hani",), "Hant": ("Hani",),
                     "Hrkt": ("Kana",), "Hira": ("Kana",)}
_RTL_SCRIPTS = {"Arab", "Hebr", "Thaa", "Syrc", "Nkoo", "Adlm", "Mand", "Samr", "Rohg"}

# Written with one sign per word or syllable: each character weighs as a word.
LOGOGRAPHIC = frozenset({"Hani", "Kana", "Hang", "Yiii"})


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
        for script in LOGOGRAPHIC & counts.keys():
            weights[script] += counts.pop(script)
        if counts:
            weights[counts.most_common(1)[0][0]] += 1
    return weights


@functools.lru_cache(maxsize=1)
def cldr_scripts() -> tuple[dict[str, tuple[str, ...]], dict[str, set[str]]]:
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
            every[tag].update(SCRIPT_EXPANSION.get(script, (script,)))
    return {k: tuple(v) for k, v in primary.items()}, dict(every)


def primary_scripts(tag: str) -> tuple[str, ...]:
    """CLDR's main scripts for a language (``sr`` -> ``("Cyrl", "Latn")``), else its likely script."""
    tag = normalize_tag(tag)
    scripts = cldr_scripts()[0].get(tag)
    if scripts:
        return scripts
    if tag == UNKNOWN:
        return ()
    likely = langcodes.Language.get(tag).maximize().script
    return (likely,) if likely else ()


def written_in(tag: str, script: str | None) -> bool:
    """Can this language be written in this Unicode script? Unknown data never excludes."""
    if script is None or script == "Zyyy":
        return True
    scripts = cldr_scripts()[1].get(tag)
    return True if not scripts else script in scripts



def is_rtl(tag: str) -> bool:
    """Whether the language's main script runs right to left (ar, he, fa, ur, ps, yi, dv...)."""
    lang, script = split_tag(tag)
    if script is None:
        scripts = primary_scripts(lang)
        script = scripts[0] if scripts else None
        if script is None:
            script = langcodes.Language.get(lang).maximize().script
    return script in _RTL_SCRIPTS

