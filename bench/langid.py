"""Language identification benchmark: prints one JSON object.

    python bench/langid.py [--data TSV] [--quick]

Snippets are cut deterministically from a TSV with columns bcp47, iso6393, name,
article, text (the UDHR corpus by default): sentences of 20-200 characters, and
short snippets of 10-29 characters cut at word boundaries (fixed 15-character slices
for scripts written without spaces). Gold tags are folded with
``backend.language.tags.normalize_tag``. Rows whose tag names a script that CLDR lists
only as a secondary script of the language (Vietnamese in Han characters, Javanese
in Javanese script...) are counted in ``rows_secondary_script`` and left out.
Accuracies are means of per-language accuracies (every language weighs the same).
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.language import detect, scripts  # noqa: E402
from backend.language.tags import normalize_tag  # noqa: E402
from tests.support import CORPUS  # noqa: E402

DEFAULT_DATA = CORPUS / "text" / "udhr_dev.tsv"

SENTENCE_END = re.compile(r"(?<=[.!?;:।॥။።。！？؟۔])\s+|(?<=[。！？])")
PAIRS = {"id/ms": ("id", "ms"), "hr/bs/sr": ("hr", "bs", "sr"), "no/da": ("no", "da"), "af/nl": ("af", "nl")}
LANGDETECT_PROFILES = Path(__import__("langdetect").__file__).with_name("profiles")


def cut_words(text: str, limit: int) -> str:
    out = ""
    for word in text.split():
        candidate = f"{out} {word}" if out else word
        if len(candidate) > limit:
            break
        out = candidate
    return out


def uses_spaces(text: str) -> bool:
    return text.count(" ") * 25 >= len(text)


def spread(items: list, n: int) -> list:
    """n items evenly spaced through the list (all of them when fewer)."""
    if len(items) <= n:
        return items
    return [items[i * len(items) // n] for i in range(n)]


def variant_rows(path: Path) -> set[tuple[str, str]]:
    """(bcp47, name) of rows filed under a tag that also has a plainly named row.

    "French (Welche)" and "Swahili (Chimwiini)" are dialects filed under ``fr`` and
    ``sw`` beside "French" and "Swahili": data issues, reported apart as well.
    """
    names: dict[str, set[str]] = collections.defaultdict(set)
    with open(path, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            names[row["bcp47"]].add(row["name"])
    return {(tag, name) for tag, group in names.items() for name in group
            if any(other != name and name.startswith(other + " (") for other in group)}


def parse_articles(spec: str | None) -> set[int] | None:
    """"8-15" or "0-7" or "1,3,5" -> a set of article numbers; None keeps every article."""
    if not spec or spec == "all":
        return None
    out: set[int] = set()
    for part in spec.split(","):
        low, _, high = part.partition("-")
        out.update(range(int(low), int(high or low) + 1))
    return out


Snippet = tuple[str, bool]  # (text, from a variant row)


def build_snippets(path: Path, per_language: int, articles: set[int] | None = None,
                   ) -> tuple[dict[str, list[Snippet]], dict[str, list[Snippet]], int]:
    """({gold: sentences}, {gold: short snippets}, rows left out for a secondary script)."""
    import langcodes

    variants = variant_rows(path)
    sentences: dict[str, list[Snippet]] = collections.defaultdict(list)
    shorts: dict[str, list[Snippet]] = collections.defaultdict(list)
    left_out = 0
    with open(path, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            tag, text = row["bcp47"], row["text"].strip()
            if articles is not None and int(row["article"] or 0) not in articles:
                continue
            parsed = langcodes.Language.get(tag)
            if parsed.script and parsed.script not in scripts.primary_scripts(parsed.language or "") \
                    and scripts.primary_scripts(parsed.language or ""):
                left_out += 1
                continue
            gold = normalize_tag(tag)
            variant = (tag, row["name"]) in variants
            for sentence in SENTENCE_END.split(text):
                sentence = sentence.strip()
                if len(sentence) > 200:
                    sentence = cut_words(sentence, 200) if uses_spaces(sentence) else sentence[:200]
                if 20 <= len(sentence) <= 200:
                    sentences[gold].append((sentence, variant))
            if uses_spaces(text):
                words = text.split()
                for start in range(0, len(words), 6):
                    snippet = cut_words(" ".join(words[start:]), 29)
                    if len(snippet) >= 10:
                        shorts[gold].append((snippet, variant))
            else:
                for start in range(0, len(text) - 15, 23):
                    shorts[gold].append((text[start:start + 15], variant))
    return ({g: spread(v, per_language) for g, v in sentences.items()},
            {g: spread(v, per_language) for g, v in shorts.items()}, left_out)


def accuracy(results: dict[str, list[bool]], tags) -> float:
    tags = [t for t in tags if results.get(t)]
    if not tags:
        return 0.0
    return round(sum(sum(results[t]) / len(results[t]) for t in tags) / len(tags), 4)


def pooled(results: dict[str, list[bool]], tags) -> float | None:
    hits = [ok for t in tags for ok in results.get(t, [])]
    return round(sum(hits) / len(hits), 4) if hits else None


_PROBE = """
import resource, sys, time, json
t = time.perf_counter()
from backend.language.detect import detect
detect("Bonjour tout le monde, comment allez-vous ?")
startup = time.perf_counter() - t
for line in sys.stdin:
    detect(line.strip())
print(json.dumps({"startup_s": startup, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def probe_startup_and_memory(samples: list[str]) -> dict[str, float]:
    """Start-up and peak memory of a fresh interpreter that loads the detector and runs it."""
    done = subprocess.run([sys.executable, "-c", _PROBE], input="\n".join(samples), text=True,
                          capture_output=True, cwd=ROOT, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


Baseline = tuple[Callable[[str], str], set[str] | None]  # (text -> folded tag, languages it knows)


def _baseline_detectors() -> dict[str, Baseline]:
    """Other detectors, where installed: what the README compares ours with."""
    found: dict[str, Baseline] = {}
    model = detect._fasttext()
    if model is not None:
        found["fasttext_lid176"] = (lambda text: (model.predict(text, k=1) or [("und", 0.0)])[0][0], None)
    try:
        import py3langid
    except ImportError:
        pass
    else:
        found["py3langid"] = (lambda text: normalize_tag(py3langid.classify(text)[0]), None)
    try:
        from lingua import Language, LanguageDetectorBuilder
    except ImportError:
        return found
    known = {normalize_tag(x.iso_code_639_1.name.lower()) for x in Language.all()}
    for name, low_accuracy in (("lingua_low_accuracy", True), ("lingua", False)):
        builder = LanguageDetectorBuilder.from_all_languages()
        lingua = (builder.with_low_accuracy_mode() if low_accuracy else builder).with_preloaded_language_models().build()

        def guess(text: str, lingua=lingua) -> str:
            answer = lingua.detect_language_of(text)
            return normalize_tag(answer.iso_code_639_1.name.lower()) if answer else "und"

        found[name] = (guess, known)
    return found


def baselines(sentences, shorts, ld54: list[str]) -> dict[str, dict]:
    """Each other detector alone on the 54 langdetect languages (plain rows, NFC text)."""
    import unicodedata

    out: dict[str, dict] = {}
    for name, (guess_tag, supported) in _baseline_detectors().items():
        results = {"sentence": collections.defaultdict(list), "short": collections.defaultdict(list)}
        count, started = 0, time.perf_counter()
        for kind, data in (("sentence", sentences), ("short", shorts)):
            for gold in ld54:
                for snippet, variant in data.get(gold, []):
                    if not variant and (supported is None or gold in supported):
                        results[kind][gold].append(guess_tag(unicodedata.normalize("NFC", snippet)) == gold)
                        count += 1
        tags = [t for t in ld54 if results["sentence"].get(t)]
        out[name] = {"languages": len(tags), "sentence_acc": accuracy(results["sentence"], tags),
                     "short_acc": accuracy(results["short"], tags),
                     "snippets_per_s": round(count / (time.perf_counter() - started))}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="TSV: bcp47, iso6393, name, article, text")
    parser.add_argument("--quick", action="store_true", help="8 snippets of each kind a language instead of 40")
    parser.add_argument("--errors", type=Path, help="write per-language accuracies and confusions here (JSON)")
    parser.add_argument("--baselines", action="store_true",
                        help="also measure fastText, py3langid and lingua alone where installed (plain rows of the 54)")
    parser.add_argument("--articles", default="all",
                        help='UDHR articles to use: "all" (default), "8-15" (held out from tuning), "0-7"')
    args = parser.parse_args(argv)

    per_language = 8 if args.quick else 40
    sentences, shorts, left_out = build_snippets(args.data, per_language, parse_articles(args.articles))
    claimed = detect.detector_languages()
    ld54 = sorted({normalize_tag(name) for name in os.listdir(LANGDETECT_PROFILES)})

    identify = detect.detect.__wrapped__  # bypass the cache: measure real work
    identify("warm up")
    results = {"sentence": collections.defaultdict(list), "short": collections.defaultdict(list)}
    plain = {"sentence": collections.defaultdict(list), "short": collections.defaultdict(list)}
    confusions: collections.Counter[tuple[str, str, str]] = collections.Counter()
    examples: dict[tuple[str, str, str], str] = {}
    count = 0
    started = time.perf_counter()
    for kind, data in (("sentence", sentences), ("short", shorts)):
        for gold, snippets in data.items():
            if gold not in claimed and gold not in ld54:
                continue
            for snippet, variant in snippets:
                guess = identify(snippet).tag
                results[kind][gold].append(guess == gold)
                if not variant:
                    plain[kind][gold].append(guess == gold)
                if guess != gold:
                    confusions[(kind, gold, guess)] += 1
                    examples.setdefault((kind, gold, guess), snippet)
                count += 1
    elapsed = time.perf_counter() - started

    all_tags = sorted(t for t in results["sentence"] if t in claimed)
    ld_tags = [t for t in ld54 if results["sentence"].get(t)]
    probe_samples = [s for v in list(sentences.values())[::4] for s, _ in v[:3]][:300]
    report = {
        "langdetect54": {
            "languages": len(ld_tags),
            "sentence_acc": accuracy(results["sentence"], ld_tags),
            "short_acc": accuracy(results["short"], ld_tags),
        },
        # The same without dialect rows filed under a standard tag ("French (Welche)" as fr).
        "langdetect54_plain": {
            "sentence_acc": accuracy(plain["sentence"], ld_tags),
            "short_acc": accuracy(plain["short"], ld_tags),
        },
        "all": {
            "languages": len(all_tags),
            "sentence_acc": accuracy(results["sentence"], all_tags),
            "short_acc": accuracy(results["short"], all_tags),
            "languages_sentence_acc_ge_97": sum(
                1 for t in all_tags if sum(results["sentence"][t]) / len(results["sentence"][t]) >= 0.97),
        },
        "all_plain": {
            "sentence_acc": accuracy(plain["sentence"], all_tags),
            "short_acc": accuracy(plain["short"], all_tags),
        },
        "pairs": {name: pooled(results["sentence"], tags) for name, tags in PAIRS.items()},
        "pairs_short": {name: pooled(results["short"], tags) for name, tags in PAIRS.items()},
        "snippets": count,
        "snippets_per_s": round(count / elapsed),
        **{k: round(v, 3 if k == "startup_s" else 1) for k, v in probe_startup_and_memory(probe_samples).items()},
        "rows_secondary_script": left_out,
        "data": str(args.data.name),
        "articles": args.articles,
        "quick": args.quick,
    }
    if args.baselines:
        report["baselines_langdetect54_plain"] = baselines(sentences, shorts, ld_tags)
    if args.errors:
        per_language = {t: {k: round(sum(results[k][t]) / len(results[k][t]), 3)
                            for k in results if results[k].get(t)} for t in sorted(results["sentence"])}
        args.errors.write_text(json.dumps({
            "per_language": per_language,
            "confusions": [[k, g, p, n, examples[(k, g, p)]] for (k, g, p), n in confusions.most_common(200)],
        }, ensure_ascii=False, indent=1))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
