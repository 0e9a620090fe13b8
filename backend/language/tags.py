"""Language tags: the one normaliser every stage uses, and the names CLDR gives each language.

``normalize_tag`` folds any BCP 47 / ISO 639 tag to the bare language code the app
uses: CLDR's folding of a macrolanguage's dominant member (arb->ar, cmn->zh, pes->fa,
swh->sw, zsm->ms...), Norwegian Bokmål to Norwegian, scripts and variants dropped.
Stages that need something else (a voice list keyed by region, Whisper's own codes,
pysbd's languages) build on it with a small function of their own.
"""

from __future__ import annotations

import functools

import langcodes
from langcodes.data_dicts import MACROLANGUAGES, NORMALIZED_MACROLANGUAGES

UNKNOWN = "und"

# The app's own choices on top of CLDR's macrolanguage folding: Norwegian is one
# language for the detector, the model and most voices; the UDHR's "Malay" is
# tagged with the individual-language code; Whisper and the detectors say "tl".
_APP_FOLDING = {"nb": "no", "nob": "no", "zlm": "ms", "fil": "tl", "gom": "kok"}


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


def lookup_keys(tag: str) -> list[str]:
    """Lower-case keys for a table keyed by language and region (voices), most specific first.

    The tag as written, shortened one subtag at a time, then the same with the folded
    language: ``zh-Hant-TW`` -> zh-hant-tw, zh-hant, zh; ``arb-EG`` -> arb-eg, arb, ar-eg, ar.
    """
    parts = [part for part in (tag or "").strip().replace("_", "-").lower().split("-") if part]
    if not parts:
        return []
    keys = ["-".join(parts[:i]) for i in range(len(parts), 0, -1)]
    folded = normalize_tag(tag)
    if folded != UNKNOWN:
        rest = [part for part in parts[1:] if part != folded]  # zh-yue: the extended subtag is the language
        keys += ["-".join([folded, *rest[:i]]) for i in range(len(rest), -1, -1)]
    return list(dict.fromkeys(keys))


def same_macrolanguage(a: str, b: str | None) -> bool:
    """id and ms, hr and sr: the same language, or members of one ISO macrolanguage."""
    if b is None:
        return False
    return a == b or MACROLANGUAGES.get(a, a) == MACROLANGUAGES.get(b, b) or MACROLANGUAGES.get(a) == b \
        or MACROLANGUAGES.get(b) == a


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


def accept_language(header: str | None) -> list[str]:
    """The tags of an HTTP Accept-Language header as sent, best first (q-values honoured, q=0 and * left out)."""
    ranked: list[tuple[float, int, str]] = []
    for index, item in enumerate((header or "").split(",")):
        tag, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if tag.strip() and tag.strip() != "*" and q > 0:
            ranked.append((-q, index, tag.strip()))
    return [tag for _, _, tag in sorted(ranked)]
