"""Word-frequency evidence for short messages: which languages use these words, and how much.

"Hola", "Merci beaucoup", "Wat is dit?" carry too few character n-grams for the text
detector, but everyday words are among the most frequent words of their language.
wordfreq (code Apache-2.0; word lists CC-BY-SA 4.0, built from Wikipedia, subtitles,
news, books, the web and social media) gives each word's frequency in 42 languages. A
unigram model over its lists ranks those languages for a short text, beside an "other"
class for the languages it does not cover, so that words none of its languages uses
often (Swahili "asante") point away from all of them instead of to the least bad one.

Texts written without spaces (Han, kana, Thai) and in Hangul are left to the detector:
wordfreq's own tokenizers for them need extra dictionaries or split words into morphemes,
and the script already tells.
"""

from __future__ import annotations

import functools
import re
import sys
import threading
import unicodedata

from backend.language import scripts, tags

OTHER = "und"  # a language beyond wordfreq's lists

# The most frequent words of each language: everyday messages rarely use rarer ones, and
# the whole lists would take over a gigabyte. 30,000 words reach a Zipf value near 2.5.
TOP_WORDS = 30_000
# Zipf value (log10 of frequency per billion words) given to a word a language's list
# lacks, and the value every word gets under "other". Tuned on the short-message dev set.
ABSENT_ZIPF = 1.0
OTHER_ZIPF = 3.4
# A language beyond the lists may share a word with one on them (Afrikaans "wat is" with
# Dutch): under "other" a word is at least this much rarer than in the list that has it most.
OTHER_GAP = 1.5
# wordfreq's Serbo-Croatian list serves Croatian, Bosnian and Serbian; the text detector
# and its markers choose among them.
SERBO_CROATIAN = ("hr", "bs", "sr")
_WORD_RE = re.compile(r"[^\W\d_]+")
# Scripts written without spaces between words, and Hangul (wordfreq lists Korean by
# morpheme, not by the words people type): no word evidence.
_UNSPACED = {"Hani", "Kana", "Hang", "Thai", "Laoo", "Khmr", "Mymr", "Tibt"}

_load_lock = threading.Lock()


def _app_tag(code: str) -> str:
    return "hr" if code == "sh" else tags.normalize_tag(code)


def _tables() -> dict[str, dict[str, int]]:
    with _load_lock:  # one load, even when the first message and the warm-up ask at once
        return _load_tables()


@functools.lru_cache(maxsize=1)
def _load_tables() -> dict[str, dict[str, int]]:
    """{app tag: {word: Zipf value × 10}} for wordfreq's small lists, cut to TOP_WORDS words.

    The packed files are read directly (wordfreq's own readers keep every whole list cached);
    small integers and interned words are shared objects."""
    import wordfreq

    tables: dict[str, dict[str, int]] = {}
    for code, path in sorted(wordfreq.available_languages("small").items()):
        top: dict[str, int] = {}
        # bucket i holds the words of frequency 10^(-i/100): Zipf 9 - i/100
        for index, bucket in enumerate(wordfreq.read_cBpack(path)):
            zipf10 = round(90 - index / 10)
            for word in bucket:
                if not word.isdigit():
                    top[sys.intern(word)] = zipf10
            if len(top) >= TOP_WORDS:
                break
        tables[_app_tag(code)] = top
    return tables


def covers(tag: str) -> bool:
    """Whether a word list speaks for this language (else it hides in ``OTHER``)."""
    return tag in _tables() or tag in SERBO_CROATIAN


def warm_up() -> None:
    """Load the lists (3-7 s on a small CPU) before the first message needs them."""
    _tables()


@functools.cache
def _languages_of_script(script: str) -> tuple[str, ...]:
    return tuple(tag for tag in _tables() if script in _script_set(tag))


@functools.cache
def _script_set(tag: str) -> frozenset[str]:
    written = set(scripts.primary_scripts(tag)) | ({"Cyrl"} if tag == "hr" else set())  # Serbian Cyrillic
    return frozenset(u for script in written for u in scripts.SCRIPT_EXPANSION.get(script, (script,)))


def words_of(text: str) -> list[str]:
    """Lower-cased words as wordfreq stores them: apostrophes split words ("c'est" -> c, est),
    Arabic-script vowel marks dropped."""
    text = unicodedata.normalize("NFC", text).casefold()
    text = "".join(ch for ch in unicodedata.normalize("NFD", text) if not _is_arabic_mark(ch))
    return _WORD_RE.findall(unicodedata.normalize("NFC", text))


def _is_arabic_mark(ch: str) -> bool:
    return "\u064b" <= ch <= "\u065f" or ch == "\u0670"


def dominant_script(text: str) -> str | None:
    weights = scripts.script_weights(text)
    return weights.most_common(1)[0][0] if weights else None


def log_likelihoods(text: str, script: str | None = None) -> dict[str, float] | None:
    """log10 likelihood of the text's words under each wordfreq language of its script, and
    under ``OTHER``; None when word frequencies say nothing (no words, an unspaced script, a
    script only one listed language writes)."""
    script = script or dominant_script(text)
    if script is None or script in _UNSPACED:
        return None
    candidates = _languages_of_script(script)
    words = [w for w in words_of(text) if scripts.char_script(w[0]) == script]
    if not candidates or not words:
        return None
    tables = _tables()
    absent = round(10 * ABSENT_ZIPF)
    per_word = {tag: [tables[tag].get(word, absent) / 10 for word in words] for tag in candidates}
    scores = {tag: sum(values) for tag, values in per_word.items()}
    scores[OTHER] = sum(max(OTHER_ZIPF, max(values) - OTHER_GAP) for values in zip(*per_word.values(), strict=True))
    return scores
