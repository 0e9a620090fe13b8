"""How long speech waits for its first chunk: the whole first sentence against a first chunk that may end
at a clause mark once it holds N words (spaced scripts) or N characters (unspaced ones).

    python bench/first_chunk.py --model OUTDIR/smollm2-135m-instruct [--max-new-tokens 96] [--out FILE]
        [--answers bench/results/first_chunk_answers.json]   # keep the answers; replay them when present

Two sets of answers, each replayed token by token through the app's own text streamer (the deltas the
speaker gets) and SentenceStream:

- ``model``: a real model's greedy answers to everyday questions in a few languages, written through the
  app's engine (``LocalEngine``) with the app's system prompt; its decode rate is measured on them.
- ``fixtures``: fixed multilingual text (UDHR preamble and articles 1-3, tests/fixtures/text) in spaced
  and unspaced scripts, tokenized by the same model.

For each rule: tokens until the first chunk is released (median, p95), the same in seconds after the first
token at the measured decode rate, how many first chunks are shorter than N words, how many were cut at a
clause, and the silence after the first chunk: how long its espeak-ng audio (when installed) lasts against
the time the model still needs to finish the next chunk. A first chunk too short to cover that time leaves
a gap in the voice. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from backend.cancel import CancelScope  # noqa: E402
from backend.conversation.turns import system_prompt  # noqa: E402
from backend.language.sentences import (  # noqa: E402
    FIRST_CLAUSE_CHARS,
    FIRST_CLAUSE_WORDS,
    SentenceStream,
    clause_length,
)
from backend.models.engine import GenerationStats, LocalEngine, PromptMessage, _counting_streamer  # noqa: E402
from bench.model import cpu_name  # noqa: E402
from bench.report import report  # noqa: E402
from tests.support import CORPUS  # noqa: E402

QUESTIONS = [
    ("en", "What is the capital of France?"),
    ("en", "How do I make a cup of tea?"),
    ("en", "Why is the sky blue?"),
    ("en", "What should I pack for a weekend at the beach?"),
    ("en", "Can you suggest a healthy breakfast?"),
    ("en", "How can I sleep better at night?"),
    ("fr", "Quelle est la capitale de l'Italie ?"),
    ("fr", "Comment faire une omelette ?"),
    ("es", "¿Cuál es el río más largo del mundo?"),
    ("de", "Was ist die Hauptstadt von Deutschland?"),
    ("it", "Come posso imparare una nuova lingua?"),
    ("pt", "Qual é a melhor época para visitar Lisboa?"),
]
FIXTURE_LANGUAGES = ["en", "fr", "de", "es", "ru", "hi", "ar", "zh", "ja"]
FIXTURE_ARTICLES = ("0", "1", "2", "3")
WORD_CANDIDATES = (3, 4, 5, 6, 8, 10)
CHAR_CANDIDATES = (4, 6, 8, 10, 12, 16)


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _summary(values: list[float], digits: int = 2) -> dict[str, float]:
    return {"median": round(statistics.median(values), digits), "p95": round(_p95(values), digits)}


def unspaced(text: str) -> bool:
    words, chars = clause_length(text)
    return chars > words


def length_of(chunk: str) -> int:
    """Words of a spaced chunk, characters of an unspaced one (the unit its threshold counts)."""
    words, chars = clause_length(chunk)
    return max(words, chars)


def stream_deltas(tokenizer: Any, text: str) -> list[tuple[int, str]]:
    """``text`` as the app's streamer hands it out token by token: (tokens written so far, delta)."""
    import torch

    out: list[tuple[int, str]] = []
    count = 0
    streamer = _counting_streamer(tokenizer, GenerationStats(), time.perf_counter(),
                                  lambda delta: out.append((count, delta)), skip_prompt=True,
                                  skip_special_tokens=True)
    streamer.put(torch.tensor([[tokenizer.eos_token_id or 0]]))  # the prompt, skipped
    for token in tokenizer.encode(text, add_special_tokens=False):
        count += 1
        streamer.put(torch.tensor([token]))
    streamer.end()
    return out


def first_chunks(language: str, deltas: list[tuple[int, str]], words: int | None,
                 chars: int | None) -> tuple[list[tuple[int, str]], int]:
    """The first two chunks and the token count at which each was released; total tokens."""
    stream = SentenceStream(language, first_clause_words=words, first_clause_chars=chars)
    released: list[tuple[int, str]] = []
    total = deltas[-1][0] if deltas else 0
    for tokens, delta in deltas:
        released += [(tokens, chunk) for chunk in stream.feed(delta)]
        if len(released) >= 2:
            break
    if len(released) < 2:
        released += [(total, chunk) for chunk in stream.flush()]
    return released[:2], total


def speech_seconds(router: Any, text: str, language: str, cache: dict) -> float | None:
    if router is None:
        return None
    key = (text, language)
    if key not in cache:
        try:
            audio = router.say(text, language)
            cache[key] = len(audio.samples) / audio.sample_rate
        except Exception:  # noqa: BLE001 - no voice for the language: no silence figure for it
            cache[key] = None
    return cache[key]


def evaluate(samples: list[dict], rate: float, rules: dict[str, tuple[int | None, int | None]], router: Any) -> dict:
    """Per rule, over ``samples`` ({language, text, deltas}): when the first chunk is released and how it sounds."""
    cache: dict = {}
    result: dict[str, Any] = {}
    for name, (words, chars) in rules.items():
        tokens, lengths, silences, clause_cuts = [], [], [], 0
        for sample in samples:
            chunks, total = first_chunks(sample["language"], sample["deltas"], words, chars)
            if not chunks:
                continue
            (t1, first), (t2, second) = chunks[0], chunks[1] if len(chunks) > 1 else (total, "")
            tokens.append(t1)
            lengths.append(length_of(first))
            whole = first_chunks(sample["language"], sample["deltas"], None, None)[0][0][1]
            clause_cuts += len(first) < len(whole)
            sample.setdefault("first_chunk", {})[name] = first
            spoken = speech_seconds(router, first, sample["language"], cache)
            if spoken is not None and second:
                silences.append(max(0.0, (t2 - t1) / rate - spoken))
        limit = words or chars
        entry: dict[str, Any] = {
            "tokens_to_first_chunk": _summary(tokens, 1),
            "seconds_after_first_token": _summary([(t - 1) / rate for t in tokens]),
            "first_chunk_length": _summary(lengths, 1),
            "cut_at_a_clause": clause_cuts,
            "answers": len(tokens),
        }
        if limit is not None:
            entry["first_chunks_shorter_than_threshold"] = sum(n < limit for n in lengths)
        else:
            entry["first_chunks_shorter_than"] = {
                str(n): sum(length < n for length in lengths) for n in sorted({*WORD_CANDIDATES, *CHAR_CANDIDATES})}
        if silences:
            entry["silence_after_first_chunk_s"] = _summary(silences)
            entry["first_chunks_followed_by_silence"] = sum(s > 0 for s in silences)
        result[name] = entry
    return result


def model_answers(model: str, max_new_tokens: int, saved: Path | None) -> tuple[list[dict], list[float], Any, float]:
    """The model's answers, written now or read from ``saved`` (written there the first time)."""
    engine = LocalEngine(model, device="cpu")
    if saved is not None and saved.exists():
        kept = json.loads(saved.read_text(encoding="utf-8"))
        samples = kept["answers"]
        engine.load()
        tokenizer = engine.tokenizer
        for sample in samples:
            sample["deltas"] = stream_deltas(tokenizer, sample["text"])
        engine.close()
        return samples, kept["decode_tokens_per_s"], tokenizer, kept["first_token_s"]
    engine.load()
    list(engine.stream([PromptMessage("user", "Hi")], CancelScope(), 4))  # warm-up
    samples, rates, first_token = [], [], []
    for language, question in QUESTIONS:
        messages = [PromptMessage("system", system_prompt(language)), PromptMessage("user", question)]
        stats = GenerationStats()
        text = "".join(engine.stream(messages, CancelScope(), max_new_tokens, stats))
        if stats.new_tokens > 1 and stats.first_token_s is not None:
            rates.append((stats.new_tokens - 1) / (stats.total_s - stats.first_token_s))
            first_token.append(stats.first_token_s)
        samples.append({"language": language, "question": question, "text": text})
    if saved is not None:
        saved.write_text(json.dumps({"model": model, "max_new_tokens": max_new_tokens, "decode_tokens_per_s": rates,
                                     "first_token_s": statistics.median(first_token), "answers": samples},
                                    ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    tokenizer = engine.tokenizer
    for sample in samples:
        sample["deltas"] = stream_deltas(tokenizer, sample["text"])
    engine.close()
    return samples, rates, tokenizer, statistics.median(first_token)


def fixture_texts() -> list[dict]:
    found = []
    with (CORPUS / "text" / "udhr_dev.tsv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            if row["bcp47"] in FIXTURE_LANGUAGES and row["article"] in FIXTURE_ARTICLES:
                found.append({"language": row["bcp47"], "article": row["article"], "text": row["text"]})
    return found


def run(model: str, max_new_tokens: int, saved: Path | None = None) -> dict:
    load_before = os.getloadavg()[0]
    samples, rates, tokenizer, first_token_s = model_answers(model, max_new_tokens, saved)
    rate = statistics.median(rates)
    router = None
    try:
        from backend.models.tts import EspeakEngine, SpeechRouter, espeak_available

        router = SpeechRouter(engines=[EspeakEngine()]) if espeak_available() else None
    except Exception:  # noqa: BLE001 - silence figures are left out without a voice
        router = None

    fixtures = fixture_texts()
    for sample in fixtures:
        sample["deltas"] = stream_deltas(tokenizer, sample["text"])
    spaced = [s for s in fixtures if not unspaced(s["text"])]
    cjk = [s for s in fixtures if unspaced(s["text"])]

    word_rules: dict[str, tuple[int | None, int | None]] = {"whole_first_sentence": (None, None)}
    word_rules.update({f"clause_after_{n}_words": (n, None) for n in WORD_CANDIDATES})
    char_rules: dict[str, tuple[int | None, int | None]] = {"whole_first_sentence": (None, None)}
    char_rules.update({f"clause_after_{n}_chars": (None, n) for n in CHAR_CANDIDATES})

    result = {
        "model": model,
        "cpu": cpu_name(),
        "decode_tokens_per_s": _summary(rates, 1),
        "first_token_s": round(first_token_s, 3),
        "chosen": {"first_clause_words": FIRST_CLAUSE_WORDS, "first_clause_chars": FIRST_CLAUSE_CHARS},
        "model_answers": evaluate(samples, rate, word_rules, router),
        "fixtures_spaced_scripts": evaluate(spaced, rate, word_rules, router),
        "fixtures_unspaced_scripts": evaluate(cjk, rate, char_rules, router),
        "first_chunks": {
            "model": [{"language": s["language"], "question": s["question"],
                       "whole_first_sentence": s["first_chunk"]["whole_first_sentence"],
                       "chosen": s["first_chunk"][f"clause_after_{FIRST_CLAUSE_WORDS}_words"]} for s in samples],
            "fixtures_unspaced": [{"language": s["language"], "article": s["article"],
                                   "whole_first_sentence": s["first_chunk"]["whole_first_sentence"][:80],
                                   "chosen": s["first_chunk"][f"clause_after_{FIRST_CLAUSE_CHARS}_chars"]}
                                  for s in cjk],
        },
        "answers": {"model": len(samples), "fixtures_spaced": len(spaced), "fixtures_unspaced": len(cjk)},
        "voice_for_silence": "espeak-ng" if router is not None else None,
        "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
    }
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a real chat model: hub id, folder or .gguf file")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--answers", type=Path,
                        help="keep the model's answers and decode rates here; when the file exists, replay them")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report(run(args.model, args.max_new_tokens, args.answers), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
