"""Is a barge-in only asking the assistant to stop or wait?

"Wait, stop." said over an answer must end the answer and listen, not become a question the model
answers. An utterance counts as a stop request when its words, in the language Whisper heard or
the conversation's language, are made only of the phrases in ``data/stop_phrases.json`` (in any
order, repeated: "wait wait, stop, please"), at least one of them a real "stop" ("okay" or "no"
alone may answer something the assistant asked). A question that happens to start with "wait"
("wait, what is the capital of Peru?") is not one.
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import lru_cache
from pathlib import Path

PHRASES_PATH = Path(__file__).resolve().parent / "data" / "stop_phrases.json"
_WORD = re.compile(r"[\w'’-]+", re.UNICODE)


def _words(text: str) -> list[str]:
    text = unicodedata.normalize("NFC", text).lower().replace("’", "'")
    return [w.strip("'-") for w in _WORD.findall(text) if w.strip("'-")]


Phrases = tuple[tuple[tuple[str, ...], bool], ...]  # (words, is a real stop) pairs


@lru_cache(maxsize=1)
def _phrases() -> dict[str, Phrases]:
    data = json.loads(PHRASES_PATH.read_text(encoding="utf-8"))
    out = {}
    for lang, entry in data["languages"].items():
        pairs = {(tuple(_words(p)), True) for p in entry["stop"]} | {(tuple(_words(p)), False) for p in entry["with"]}
        out[lang] = tuple(sorted(pairs, key=lambda pair: -len(pair[0])))
    return out


def stop_languages() -> frozenset[str]:
    return frozenset(_phrases())


def _covered(units: list[str] | str, phrases: list[tuple[tuple[str, ...] | str, bool]]) -> bool:
    """True when ``units`` (words, or letters) is a sequence of phrases with at least one real stop.

    Dynamic programming over positions; each position keeps whether a stop was met on the way.
    """
    n = len(units)
    reach: list[set[bool]] = [set() for _ in range(n + 1)]
    reach[0].add(False)
    for i in range(n):
        for seen in tuple(reach[i]):
            for phrase, is_stop in phrases:
                if phrase and units[i:i + len(phrase)] == phrase:
                    reach[i + len(phrase)].add(seen or is_stop)
    return True in reach[n]


def _unspaced(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFC", text) if ch.isalnum())


def is_stop_request(text: str | None, *languages: str | None) -> bool:
    """True when ``text`` only asks to stop or wait, in any of ``languages`` (BCP 47 tags)."""
    words = _words(text or "")
    if not words:
        return False
    table = _phrases()
    for tag in languages:
        phrases = table.get((tag or "").replace("_", "-").split("-")[0].lower())
        if not phrases:
            continue
        if _covered(words, [(list(p), s) for p, s in phrases]):  # type: ignore[misc]
            return True
        # Chinese, Japanese: no spaces between words, so cover the letters instead.
        if len(words) <= 2 and _covered(_unspaced(text or ""), [(_unspaced(" ".join(p)), s) for p, s in phrases]):
            return True
    return False
