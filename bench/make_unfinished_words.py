"""Build backend/audio/data/unfinished_words.json: words after which a sentence goes on.

Source: Universal Dependencies treebanks (CoNLL-U, CC BY-SA 4.0), one a language. A word form
(lower-cased, as spoken: French "du", German "zum" count as one word) is kept when

* it is a function word: at least ``--min-function`` of its occurrences are tagged ADP
  (prepositions), CCONJ/SCONJ (conjunctions) or DET (articles, possessives, quantifiers; possessive
  pronouns count as DET), and
* it almost never ends a sentence: at most ``--max-final`` of its occurrences are the last word
  before the sentence's closing punctuation, and
* it is common enough for that rate to mean something (``--min-count`` occurrences).

Stopword lists alone would not do: they also hold words that often end a sentence ("this", "it",
"me", "is"); the treebank's tags and sentence ends sort those out ("this" ends 2.9 % of its
English sentences and is dropped, "the" never does and stays; "with" ends 2.9 %: stranded
prepositions, "who to talk with", are common in English and it is dropped too).

    python bench/make_unfinished_words.py en=PATH/en_ewt-ud-train.conllu de=PATH/de_gsd-ud-train.conllu ...
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "backend" / "audio" / "data" / "unfinished_words.json"
FUNCTION = {"ADP", "CCONJ", "SCONJ", "DET"}


def _tag(cols: list[str]) -> str:
    # Possessive pronouns ("my", "your": PRON with Poss=Yes in some treebanks) work as determiners.
    if cols[3] == "PRON" and "Poss=Yes" in cols[5]:
        return "DET"
    return cols[3]


def sentences(path: Path):
    """Each sentence as [(surface form, UPOS)], multiword tokens as one word tagged like their last part."""
    words: list[tuple[str, str]] = []
    span_end = 0
    span_form = ""
    for line in path.open(encoding="utf-8"):
        line = line.rstrip("\n")
        if not line:
            if words:
                yield words
            words, span_end = [], 0
            continue
        if line.startswith("#"):
            continue
        cols = line.split("\t")
        if "." in cols[0]:
            continue  # empty nodes
        if "-" in cols[0]:
            span_form, span_end = cols[1], int(cols[0].split("-")[1])
            continue
        index = int(cols[0])
        if span_end and index < span_end:
            continue
        if span_end and index == span_end:
            words.append((span_form, _tag(cols)))
            span_end = 0
            continue
        words.append((cols[1], _tag(cols)))
    if words:
        yield words


def measure(path: Path) -> tuple[Counter, Counter, dict[str, Counter]]:
    total: Counter = Counter()
    final: Counter = Counter()
    tags: dict[str, Counter] = defaultdict(Counter)
    for sentence in sentences(path):
        spoken = [(f.lower(), t) for f, t in sentence if t not in {"PUNCT", "SYM", "X"}]
        for i, (form, tag) in enumerate(spoken):
            total[form] += 1
            tags[form][tag] += 1
            if i == len(spoken) - 1:
                final[form] += 1
    return total, final, tags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("treebanks", nargs="+", help="LANG=FILE.conllu (several files of one language add up)")
    parser.add_argument("--min-count", type=int, default=20)
    parser.add_argument("--min-function", type=float, default=0.85)
    parser.add_argument("--max-final", type=float, default=0.01)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    files: dict[str, list[Path]] = defaultdict(list)
    for item in args.treebanks:
        lang, _, path = item.partition("=")
        files[lang].append(Path(path))
    words: dict[str, list[str]] = {}
    sources: dict[str, list[str]] = {}
    for lang, paths in sorted(files.items()):
        total: Counter = Counter()
        final: Counter = Counter()
        tags: dict[str, Counter] = defaultdict(Counter)
        for path in paths:
            t, f, g = measure(path)
            total.update(t)
            final.update(f)
            for form, c in g.items():
                tags[form].update(c)
        kept = [
            form for form, n in total.items()
            if n >= args.min_count
            and sum(tags[form][x] for x in FUNCTION) / n >= args.min_function
            and final[form] / n <= args.max_final
        ]
        words[lang] = sorted(kept, key=lambda w: -total[w])
        sources[lang] = [p.name for p in paths]
    data = {
        "about": "Words after which a sentence goes on, per language: function words (ADP, CCONJ, SCONJ, DET) "
                 f"that end at most {args.max_final:.1%} of the sentences they occur in, among words seen at least {args.min_count} times. "
                 "Built by bench/make_unfinished_words.py from Universal Dependencies treebanks "
                 "(CC BY-SA 4.0).",
        "treebanks": sources,
        "words": words,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({lang: len(w) for lang, w in words.items()}))


if __name__ == "__main__":
    main()
