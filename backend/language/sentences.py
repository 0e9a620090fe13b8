"""Split a streaming answer into sentences as soon as each one is finished.

Speech starts with the first sentence instead of waiting for the whole answer.
A sentence counts as finished only once something follows its end, so
"Dr." + " Smith" or "3." + "14" are not cut. pysbd knows abbreviations and
numbers for the languages it supports; for every other language (and inside
any text) the terminal punctuation of many scripts ends a sentence:
。！？ (CJK, no space needed), । ॥ (Devanagari, Bengali...), ؟ ۔ (Arabic,
Urdu), ። ፧ (Ethiopic), ։ (Armenian), ။ (Myanmar), ། (Tibetan), ។ (Khmer),
; (Greek question mark), and . ! ? … followed by a space. A line break ends a
sentence too (lists, headings).

The first chunk of an answer may end earlier, at a clause mark (, ; : and their
CJK, Arabic, Ethiopic... forms) once it is long enough to sound like a phrase
rather than a fragment: the voice starts while the model still writes the rest
of the sentence. Later sentences stay whole, for natural prosody.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from backend.language.tags import normalize_tag

log = logging.getLogger(__name__)

# Ends a sentence even when the next character follows without a space.
WIDE_TERMINALS = "。！？｡"
# Ends a sentence when whitespace follows.
TERMINALS = ".!?…‼⁇⁈⁉।॥؟۔።፧፨։။།។;" + WIDE_TERMINALS
# What closes a finished sentence in a transcript: the terminals less those that trail off or join ("…", ";").
SENTENCE_END_MARKS = ".!?。！？؟।॥።"
# Closing quotes and brackets that belong to the sentence before them.
CLOSERS = "\"'”’»)]}」』】）〕》〉›"

_BOUNDARY = re.compile(
    rf"(?:[{re.escape(WIDE_TERMINALS)}]+[{re.escape(CLOSERS)}]*\s*(?=\S))"
    rf"|(?:[{re.escape(TERMINALS)}]+[{re.escape(CLOSERS)}]*\s+(?=\S))"
    r"|(?:\s*\n\s*(?=\S))"
)
_HAS_WORD = re.compile(r"[^\W\d_]")  # a letter of any script

# pysbd's languages (its own codes are ISO 639-1), and tags that mean one of them.
_PYSBD_LANGUAGES = {
    "en", "hi", "mr", "zh", "es", "am", "ar", "hy", "bg", "ur", "ru", "pl", "fa", "nl", "da", "fr",
    "my", "el", "it", "ja", "de", "kk", "sk",
}
# Languages pysbd lacks, split by a close neighbour's rules.
_STAND_INS = {"yue": "zh", "no": "da"}

# Clause marks that end a clause even when the next character follows without a space.
WIDE_CLAUSE_MARKS = "、，；：､"
# Clause marks that end a clause when whitespace follows ("1,000" and "10:30" stay whole):
# Latin , ; : (also Devanagari, Hebrew, Cyrillic... text), Arabic ، ؛, Ethiopic ፣ ፤ ፥, Armenian ՝,
# Myanmar ၊, Greek ano teleia ·, Mongolian ᠂.
CLAUSE_MARKS = ",;:،؛፣፤፥՝၊·᠂" + WIDE_CLAUSE_MARKS
_CLAUSE = re.compile(
    rf"(?:[{re.escape(WIDE_CLAUSE_MARKS)}][{re.escape(CLOSERS)}]*\s*(?=\S))"
    rf"|(?:[{re.escape(CLAUSE_MARKS)}][{re.escape(CLOSERS)}]*\s+(?=\S))"
)
# Scripts written without spaces between words: their length is counted in characters.
_UNSPACED = re.compile(
    "[\u0e00-\u0eff\u0f00-\u0fff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf"
    "\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]"
)
# The first chunk's least length before a clause mark may end it (see bench/first_chunk.py): words in
# spaced scripts, characters in unspaced ones. Shorter, "Sure," or "Well," would be heard alone.
FIRST_CLAUSE_WORDS = 5
FIRST_CLAUSE_CHARS = 8

# Without any boundary a sentence is still spoken once it gets this long (at a comma or space).
MAX_CHARS = 300


def _pysbd_language(tag: str) -> str | None:
    folded = normalize_tag(tag)
    folded = _STAND_INS.get(folded, folded)
    return folded if folded in _PYSBD_LANGUAGES else None


class SentenceStream:
    """Feed text deltas as they stream; get back the sentences that are complete."""

    def __init__(self, language: str, max_chars: int = MAX_CHARS, first_clause_words: int | None = None,
                 first_clause_chars: int | None = None) -> None:
        """``first_clause_words``/``first_clause_chars``: let the first chunk end at a clause mark once
        it holds that many words (spaced scripts) or characters (unspaced ones); None = whole sentences."""
        self.language = language
        self.max_chars = max_chars
        self.first_clause_words = first_clause_words
        self.first_clause_chars = first_clause_chars
        self._released = False  # a chunk was handed out: the rest goes sentence by sentence
        self._buffer = ""
        self._carry = ""  # a fragment without words ("1.", "—") waiting for its sentence
        self._segmenter: Any = None
        code = _pysbd_language(language)
        if code is not None:
            try:
                import pysbd

                self._segmenter = pysbd.Segmenter(language=code, clean=False)
            except Exception:  # noqa: BLE001 - pysbd missing or broken: punctuation rules still work
                log.debug("pysbd unavailable for %s", code, exc_info=True)

    def feed(self, text_delta: str) -> list[str]:
        if not text_delta:
            return []
        self._buffer += text_delta
        ends = self._boundaries(self._buffer, final=False)
        sentences = self._cut(ends)
        if not sentences and not self._released:
            clause = self._first_clause(self._buffer)
            if clause is not None:
                sentences = self._cut([clause])
        if not sentences and len(self._buffer) > self.max_chars:
            sentences = self._cut([self._soft_break(self._buffer)])
        self._released = self._released or bool(sentences)
        return sentences

    def flush(self) -> list[str]:
        """The rest of the answer once the stream ended."""
        ends = self._boundaries(self._buffer, final=True)
        sentences = self._cut(ends + [len(self._buffer)])
        if self._carry.strip():
            if sentences:
                sentences[-1] = f"{sentences[-1]} {self._carry.strip()}"
            elif _HAS_WORD.search(self._carry) or self._carry.strip():
                sentences = [self._carry.strip()]
        self._carry = ""
        return [s for s in sentences if s]

    # ------------------------------------------------------------------ internals

    def _boundaries(self, text: str, final: bool) -> list[int]:
        """Offsets just past each finished sentence (and its trailing space)."""
        if not any(ch in TERMINALS or ch == "\n" for ch in text):
            return []
        ends = {m.end() for m in _BOUNDARY.finditer(text)}
        if self._segmenter is not None:
            ends = {e for e in ends if not self._is_abbreviation(text, e)}
            ends |= self._pysbd_ends(text, final)
        return sorted(e for e in ends if 0 < e < len(text) or (final and e == len(text)))

    def _first_clause(self, text: str) -> int | None:
        """The end of the first clause of ``text`` long enough to be spoken on its own, if any."""
        if self.first_clause_words is None and self.first_clause_chars is None:
            return None
        if not any(ch in CLAUSE_MARKS for ch in text):
            return None
        for match in _CLAUSE.finditer(text):
            if text[match.start() - 1: match.start()].isdigit() and text[match.end(): match.end() + 1].isdigit():
                continue  # "1，000": a number, not a clause
            if self._long_enough(self._carry + " " + text[: match.end()]):
                return match.end()
        return None

    def _long_enough(self, clause: str) -> bool:
        words, chars = clause_length(clause)
        return (self.first_clause_words is not None and words >= self.first_clause_words) or (
            self.first_clause_chars is not None and chars >= self.first_clause_chars)

    def _is_abbreviation(self, text: str, end: int) -> bool:
        """A '.' boundary pysbd would not make ("Dr. Smith", "e.g. this")."""
        head = text[:end].rstrip()
        if not head.endswith("."):
            return False
        segs = self._segment(text[: min(len(text), end + 40)])
        if segs is None:
            return False
        pysbd_ends = self._offsets(text, segs)
        return end not in pysbd_ends and len(segs) > 0

    def _segment(self, text: str) -> list[str] | None:
        try:
            return self._segmenter.segment(text)
        except Exception:  # noqa: BLE001 - pysbd's regexes fail on some inputs: fall back to punctuation
            log.debug("pysbd failed on %r", text[:80], exc_info=True)
            return None

    @staticmethod
    def _offsets(text: str, segments: list[str]) -> set[int]:
        ends, pos = set(), 0
        for seg in segments:
            core = seg.strip()
            if not core:
                continue
            found = text.find(core, pos)
            if found < 0:
                break
            pos = found + len(core)
            # include the whitespace that follows, as the regex does
            while pos < len(text) and text[pos].isspace():
                pos += 1
            ends.add(pos)
        return ends

    def _pysbd_ends(self, text: str, final: bool) -> set[int]:
        segs = self._segment(text)
        if not segs:
            return set()
        # pysbd's Arabic (and Persian, Urdu) rules end a sentence at every comma ("،"): a clause mark is
        # not the end of a sentence here, only of the first chunk (_first_clause).
        ends = {e for e in self._offsets(text, segs) if text[:e].rstrip().rstrip(CLOSERS)[-1:] not in CLAUSE_MARKS}
        if not final:
            # the last segment may still grow: its end is not a boundary yet
            ends.discard(max(ends, default=-1))
            ends = {e for e in ends if e < len(text)}
        return ends

    def _cut(self, ends: list[int]) -> list[str]:
        sentences: list[str] = []
        start = 0
        for end in ends:
            if end <= start:
                continue
            piece = self._buffer[start:end].strip()
            start = end
            if not piece:
                continue
            if not _HAS_WORD.search(piece):  # "1." or "—": speak it with what follows
                self._carry = f"{self._carry} {piece}".strip()
                continue
            if self._carry:
                piece = f"{self._carry} {piece}"
                self._carry = ""
            sentences.append(piece)
        self._buffer = self._buffer[start:]
        return sentences

    def _soft_break(self, text: str) -> int:
        """Where to cut an over-long run without sentence punctuation: last comma, else last space."""
        window = text[: self.max_chars]
        for mark in ("、", "，", ",", "،", ";", ":", " "):
            idx = window.rfind(mark)
            if idx > self.max_chars // 3:
                return idx + 1
        return self.max_chars


def clause_length(text: str) -> tuple[int, int]:
    """Words written with spaces, and characters of scripts written without them (Han, kana, Thai...)."""
    chars = len(_UNSPACED.findall(text))
    words = sum(1 for word in _UNSPACED.sub(" ", text).split() if _HAS_WORD.search(word))
    return words, chars


def split_sentences(text: str, language: str) -> list[str]:
    """All sentences of a finished text."""
    stream = SentenceStream(language)
    return stream.feed(text) + stream.flush()
