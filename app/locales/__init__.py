"""UI translations: one flat ``{key: text}`` JSON file per locale in this folder.

File names are the locale codes Gradio's ``gr.I18n`` expects (``fr``, ``zh`` for
Simplified Chinese, ``zh-TW`` for Traditional). ``en.json`` holds the English text
of the backend's user-facing messages; the UI's own English strings live in
``app/i18n.py``.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from backend.language.tags import accept_language as accept_language_tags

LOCALE_DIR = Path(__file__).resolve().parent
DEFAULT = "en"
# Chinese in traditional characters; "zh" alone is Simplified.
TRADITIONAL_CHINESE = ("zh-TW", "zh-Hant")
_TRADITIONAL_REGIONS = {"TW", "HK", "MO"}


@lru_cache(maxsize=1)
def load_locales() -> dict[str, dict[str, str]]:
    """Every locale file, by its code."""
    return {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(LOCALE_DIR.glob("*.json"))}


def _canonical(tag: str) -> tuple[str, str, str]:
    """(language, Script, REGION) of a BCP 47 tag; missing parts are empty."""
    parts = [p for p in re.split(r"[-_]", tag.strip()) if p]
    language = parts[0].lower() if parts else ""
    script = region = ""
    for part in parts[1:]:
        if len(part) == 4 and part.isalpha() and not script:
            script = part.title()
        elif (len(part) == 2 and part.isalpha()) or (len(part) == 3 and part.isdigit()):
            region = region or part.upper()
    return language, script, region


def match_locale(tag: str | None, available) -> str | None:
    """The available locale that serves ``tag`` best, or None (``zh-HK`` → ``zh-TW``, ``pt-BR`` → ``pt``)."""
    if not tag:
        return None
    by_lower = {code.lower(): code for code in available}
    exact = by_lower.get(tag.strip().replace("_", "-").lower())
    if exact:
        return exact
    language, script, region = _canonical(tag)
    if language == "zh":
        traditional = script == "Hant" or (not script and region in _TRADITIONAL_REGIONS)
        if traditional:
            for code in TRADITIONAL_CHINESE:
                if code.lower() in by_lower:
                    return by_lower[code.lower()]
    return by_lower.get(language)


def locale_from_request(accept_language: str | None, available=None) -> str:
    """The best supported locale for an Accept-Language header (q-values honoured), else English."""
    available = list(available if available is not None else load_locales())
    for tag in accept_language_tags(accept_language):
        found = match_locale(tag, available)
        if found:
            return found
    return DEFAULT


def lookup_chain(locale: str | None, available) -> list[str]:
    """Tables to look a key up in, best first, ending with English (as the browser does)."""
    chain: list[str] = []
    found = match_locale(locale, available)
    if found:
        chain.append(found)
        base = found.split("-")[0]
        if base != found and base in available:
            chain.append(base)
    if DEFAULT not in chain:
        chain.append(DEFAULT)
    return chain
