"""Which language to answer in, and why: evidence from the message, weighed with what the app knows.

The evidence is a probability over languages: for short messages, word frequencies
(``backend.language.words``) with the text detector's answer as one more vote; for longer
ones, the detector alone. The priors are what the app already knows about the person:

* a language they pinned with the language picker: it always wins;
* the language of the conversation so far;
* their browser's languages (Accept-Language), first one first.

The rule: the priors multiply the evidence for their languages by ``PRIOR_WEIGHT``; a
language is taken when it then holds at least ``COMMIT`` of the probability. Otherwise
the first prior the evidence does not rule out (at least ``PLAUSIBLE`` times the best
language's probability) is taken, and with none the
answer is "not sure" (``und``): the model is then asked to answer in the language of the
message. Every decision says where it came from, for the badge under the message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from backend.language import tags, words
from backend.language.detect import detect

UNSURE = tags.UNKNOWN

# Where a decision came from (the badge's words are in app/locales).
DETECTED = "detected"
BROWSER = "browser"
CONVERSATION = "conversation"
PINNED = "pinned"
NOT_SURE = "unsure"
SOURCES = (DETECTED, BROWSER, CONVERSATION, PINNED, NOT_SURE)

# Up to this many words, word frequencies are the evidence; beyond it the detector is.
SHORT_WORDS = 8
# The detector's answer counts as this many orders of magnitude of likelihood (times its confidence).
DETECTOR_WEIGHT = 1.0
# The same vote for a language beyond the word lists (on top of its share of what they leave unexplained).
BEYOND_WEIGHT = 1.0
# ... reached from this many letters on: the detector's n-grams say little about "Hola".
DETECTOR_FULL_LETTERS = 12
# Share of the probability a language needs to be taken.
COMMIT = 0.9
# How much a prior multiplies the evidence for its language (conversation, browser).
PRIOR_WEIGHT = {CONVERSATION: 30.0, BROWSER: 20.0}
# A browser's later languages count less than its first.
SECOND_BROWSER_WEIGHT = 5.0
# A prior's language is ruled out when the evidence for it is below this share of the best
# language's ("Hola" is not English; "ok" may be French).
PLAUSIBLE = 0.05
# A candidate this close to the best (share of its probability) can be confirmed by the answer.
CLOSE = 0.1


@dataclass(frozen=True)
class Priors:
    """What the app knows before reading the message."""

    pinned: str | None = None
    conversation: str | None = None
    browser: tuple[str, ...] = ()

    def ranked(self) -> list[tuple[str, str, float]]:
        """(tag, source, weight) of each prior language, strongest first, each language once."""
        out: list[tuple[str, str, float]] = []
        seen: set[str] = set()
        items = [(self.conversation, CONVERSATION, PRIOR_WEIGHT[CONVERSATION])]
        items += [(tag, BROWSER, PRIOR_WEIGHT[BROWSER] if i == 0 else SECOND_BROWSER_WEIGHT)
                  for i, tag in enumerate(self.browser)]
        for tag, source, weight in items:
            tag = tags.normalize_tag(tag or "")
            if tag != UNSURE and tag not in seen:
                seen.add(tag)
                out.append((tag, source, weight))
        return out


@dataclass(frozen=True)
class Decision:
    tag: str  # the answer language; "und" when not sure
    source: str  # one of SOURCES
    confidence: float  # the evidence's probability for ``tag`` (before priors)
    candidates: tuple[tuple[str, float], ...] = field(default_factory=tuple)  # evidence, best first

    @property
    def sure(self) -> bool:
        return self.tag != UNSURE


def browser_languages(accept_language: str | None, limit: int = 3) -> tuple[str, ...]:
    """Language tags of an Accept-Language header, by preference (q-values honoured), folded."""
    out: list[str] = []
    for tag in tags.accept_language(accept_language):
        folded = tags.normalize_tag(tag)
        if folded != UNSURE and folded not in out:
            out.append(folded)
    return tuple(out[:limit])


def _normalized(log10_scores: Mapping[str, float]) -> dict[str, float]:
    top = max(log10_scores.values())
    weights = {tag: 10.0 ** (score - top) for tag, score in log10_scores.items()}
    total = sum(weights.values())
    return {tag: w / total for tag, w in weights.items()}


def evidence(text: str) -> dict[str, float]:
    """Probability of each language given the text alone; ``und`` holds what no named language
    explains. Empty when the text has no letters to judge."""
    guess = detect(text)
    scores = words.log_likelihoods(text) if len(words.words_of(text)) <= SHORT_WORDS else None
    if scores is None:
        if not guess.known:
            return {}
        return {guess.tag: guess.confidence, UNSURE: 1.0 - guess.confidence}
    detected = guess.tag if guess.known else None
    if detected in words.SERBO_CROATIAN and "hr" in scores:
        scores[detected] = scores.pop("hr")  # one word list for the three; the detector's markers choose
    if detected is not None:
        # The detector's n-grams say little about "Hola": its vote grows with the text's letters.
        trust = guess.confidence * min(1.0, sum(ch.isalpha() for ch in text) / DETECTOR_FULL_LETTERS)
        if detected in scores:
            scores[detected] += DETECTOR_WEIGHT * trust
        else:
            # A language beyond the lists: it takes the detector's trust in it, of what they leave unexplained.
            other = scores[words.OTHER]
            scores[detected] = other + math.log10(max(trust, 1e-3)) + BEYOND_WEIGHT * trust
            scores[words.OTHER] = other + math.log10(max(1.0 - trust, 1e-3))
    return _normalized(scores)


def ranked(probabilities: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    return tuple(sorted(((t, round(p, 4)) for t, p in probabilities.items()), key=lambda kv: -kv[1]))


def _share(probabilities: Mapping[str, float], tag: str) -> float:
    """The evidence for ``tag``; for a language no word list covers, the share no named
    language explains may be it (Afrikaans, Estonian, Swahili)."""
    if tag in probabilities:
        return probabilities[tag]
    return 0.0 if words.covers(tag) else probabilities.get(UNSURE, 0.0)


def decide_from(probabilities: Mapping[str, float], priors: Priors = Priors(),
                commit: float | None = None, plausible: float | None = None) -> Decision:
    """The decision for evidence already weighed (text, speech, or both)."""
    commit = COMMIT if commit is None else commit
    plausible = PLAUSIBLE if plausible is None else plausible
    candidates = ranked(probabilities)[:5]
    if priors.pinned and tags.normalize_tag(priors.pinned) != UNSURE:
        tag = tags.normalize_tag(priors.pinned)
        return Decision(tag, PINNED, probabilities.get(tag, 0.0), candidates)
    prior_list = priors.ranked()
    source_of = {tag: source for tag, source, _ in prior_list}
    if not probabilities:  # no letters: "👍", "42", "?"
        if prior_list:
            return Decision(prior_list[0][0], prior_list[0][1], 0.0, candidates)
        return Decision(UNSURE, NOT_SURE, 0.0, candidates)
    weighted = dict(probabilities)
    for tag, _source, weight in prior_list:
        weighted[tag] = _share(probabilities, tag) * weight
    total = sum(weighted.values()) or 1.0
    best = max((t for t in weighted if t != UNSURE), key=lambda t: weighted[t], default=None)
    if best is not None and weighted[best] / total >= commit:
        alone = probabilities.get(best, 0.0) >= commit
        source = DETECTED if alone or best not in source_of else source_of[best]
        return Decision(best, source, probabilities.get(best, 0.0), candidates)
    leader = max(probabilities.values())
    for tag, source, _weight in prior_list:
        if _share(probabilities, tag) >= plausible * leader:
            return Decision(tag, source, _share(probabilities, tag), candidates)
    return Decision(UNSURE, NOT_SURE, probabilities.get(best, 0.0) if best else 0.0, candidates)


def decide(text: str, priors: Priors = Priors()) -> Decision:
    """The answer language for a typed message."""
    return decide_from(evidence(text), priors)


def combine(*distributions: Mapping[str, float], weights: Sequence[float] | None = None) -> dict[str, float]:
    """Several independent pieces of evidence (speech ID, text of the transcript) as one:
    a weighted product, where a language one piece does not name gets that piece's ``und`` share."""
    weights = list(weights or [1.0] * len(distributions))
    present = [(d, w) for d, w in zip(distributions, weights, strict=True) if d]
    if not present:
        return {}
    tags: set[str] = set().union(*(d.keys() for d, _ in present))
    logs: dict[str, float] = {}
    for tag in tags:
        total = 0.0
        for dist, weight in present:
            p = dist.get(tag, dist.get(UNSURE, 0.0) * 0.1)
            total += weight * math.log10(max(p, 1e-6))
        logs[tag] = total
    return _normalized(logs)


def redecide(decision: Decision, answer_language: str) -> Decision | None:
    """A better decision once the answer is in: the model answered in a language the message's
    evidence ranked close behind the chosen one (or the only one when unsure). None: keep it."""
    answer_language = tags.normalize_tag(answer_language)
    if decision.source == PINNED or answer_language in (UNSURE, decision.tag):
        return None
    shares = dict(decision.candidates)
    best = max((p for t, p in decision.candidates if t != UNSURE), default=0.0)
    close = shares.get(answer_language, 0.0)
    if close <= 0.0 or close < CLOSE * best:
        return None
    ranks = [t for t, _ in decision.candidates if t != UNSURE]
    if decision.sure and ranks.index(answer_language) > 1:
        return None
    return Decision(answer_language, DETECTED, close, decision.candidates)



# Whisper's spoken-language probability below which a prior's language is also tried; what it
# needs to be taken on its own.
SPEECH_SURE = 0.7
# How much the text detector on the transcript counts beside Whisper's own language ID.
TRANSCRIPT_WEIGHT = 0.5
# Whisper spreads an unsure guess over many languages: a prior's language must hold at least
# this share of the best one's probability (an English browser is no reason to answer
# unclear Arabic speech in English).
SPEECH_PLAUSIBLE = 0.25


def spoken(language_probs: Mapping[str, float] | Sequence[tuple[str, float]] | None, language: str = UNSURE,
           probability: float = 0.0) -> dict[str, float]:
    """Whisper's language probabilities (a mapping or (tag, probability) pairs; folded tags,
    summed), with the rest as ``und``; from its single best guess when it gives no list."""
    pairs = language_probs.items() if isinstance(language_probs, Mapping) else (language_probs or ())
    probs: dict[str, float] = {}
    for tag, p in pairs:
        folded = tags.normalize_tag(tag)
        if folded != UNSURE:
            probs[folded] = probs.get(folded, 0.0) + float(p)
    if not probs and tags.normalize_tag(language) != UNSURE:
        probs[tags.normalize_tag(language)] = float(probability)
    rest = 1.0 - sum(probs.values())
    if rest > 0:
        probs[UNSURE] = rest
    return probs


def decide_speech(heard: Mapping[str, float], transcript: str, priors: Priors = Priors(),
                  transcribed_in: str = UNSURE) -> Decision:
    """The answer language for speech, weighed with the priors.

    Whisper writes its transcript in the language it chose, so a transcript that reads as that
    language confirms nothing: Whisper's own probabilities decide. A transcript that reads as
    another language (Russian heard as Polish, written in Cyrillic) is evidence beside them.
    Whisper's probability is taken at ``SPEECH_SURE``."""
    text = evidence(transcript) if transcript.strip() else {}
    named = [t for t, _ in ranked(text) if t != UNSURE]
    if not named or named[0] == tags.normalize_tag(transcribed_in):
        return decide_from(heard, priors, commit=SPEECH_SURE, plausible=SPEECH_PLAUSIBLE)
    return decide_from(combine(heard, text, weights=(1.0, TRANSCRIPT_WEIGHT)), priors, commit=SPEECH_SURE,
                       plausible=SPEECH_PLAUSIBLE)
