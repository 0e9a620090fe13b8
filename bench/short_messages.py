"""Short everyday messages: is the answer language right, "not sure", or wrongly named? Prints JSON.

    python bench/short_messages.py [--data TSV] [--tune] [--out FILE]

Three settings, as a user meets them: no prior (a first message, a browser language the
app cannot use); the browser's language matches the message's; an English browser, for
the messages in other languages (the commonest mismatch). The set is split in two by
row (alternate rows of each language): the decision's constants are tuned on the first
half (``--tune`` searches them there) and the second half is reported as held out.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.language import decide, detect, tags, words  # noqa: E402
from bench.report import report  # noqa: E402

DEFAULT_DATA = ROOT / "bench" / "data" / "short_messages.tsv"
SETTINGS = ("no_prior", "matching_browser", "english_browser")


def load(path: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(tuning half, held-out half) of (gold tag, text) rows."""
    seen: dict[str, int] = defaultdict(int)
    halves: tuple[list, list] = ([], [])
    with open(path, encoding="utf-8") as handle:
        lines = [line for line in handle if not line.startswith("#")]
    for row in csv.DictReader(lines, delimiter="\t"):
        tag = tags.normalize_tag(row["tag"])
        halves[seen[tag] % 2].append((tag, row["text"]))
        seen[tag] += 1
    return halves


def priors_for(setting: str, gold: str) -> decide.Priors | None:
    if setting == "no_prior":
        return decide.Priors()
    if setting == "matching_browser":
        return decide.Priors(browser=(gold,))
    return None if gold == "en" else decide.Priors(browser=("en",))


def score(rows: list[tuple[str, str]], evidence: dict[str, dict[str, float]]) -> dict:
    out: dict = {}
    for setting in SETTINGS:
        counts = {"right": 0, "unsure": 0, "wrong": 0}
        wrong: list[str] = []
        for gold, text in rows:
            priors = priors_for(setting, gold)
            if priors is None:
                continue
            decision = decide.decide_from(evidence[text], priors)
            if decision.tag == gold:
                counts["right"] += 1
            elif not decision.sure:
                counts["unsure"] += 1
            else:
                counts["wrong"] += 1
                wrong.append(f"{gold}:{text}->{decision.tag}")
        total = sum(counts.values())
        out[setting] = {k: round(v / total, 4) for k, v in counts.items()} | {"messages": total,
                                                                              "wrong_examples": wrong[:12]}
    return out


def evidence_of(rows):
    return {text: decide.evidence(text) for _, text in rows}


def objective(result: dict) -> float:
    """Goals: no prior right >= 85 %, wrong <= 2 %; matching >= 97 %; English browser >= 85 %."""
    none, match, english = (result[s] for s in SETTINGS)
    penalty = 4 * max(0.0, none["wrong"] - 0.02) + max(0.0, 0.97 - match["right"])
    return none["right"] + match["right"] + english["right"] - 2 * none["wrong"] - 10 * penalty


def _set(params: dict) -> None:
    for name, value in params.items():
        setattr(words if hasattr(words, name) else decide, name, value)


def tune(rows) -> dict:
    """Grid search of the decision's constants on the tuning half."""
    best: tuple[float, dict] = (-1e9, {})
    grid = {
        "ABSENT_ZIPF": (1.0, 1.5),
        "OTHER_ZIPF": (3.0, 3.4, 3.8),
        "OTHER_GAP": (1.0, 1.5, 2.0),
        "DETECTOR_WEIGHT": (0.5, 1.0, 2.0),
        "COMMIT": (0.85, 0.9),
    }
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values, strict=True))
        _set(params)
        value = objective(score(rows, evidence_of(rows)))
        if value > best[0]:
            best = (value, params)
    return best[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--tune", action="store_true", help="search the constants on the tuning half first")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    tuning, held_out = load(args.data)
    started = time.perf_counter()
    words.warm_up()
    detect.detect("warm up the detector")
    load_s = time.perf_counter() - started
    tuned = tune(tuning) if args.tune else None
    if tuned:
        _set(tuned)
    # Time per message: the whole decision, and the detector alone (what the app ran before).
    texts = [text for _, text in tuning + held_out]
    for text in texts:  # warm every cache but the detector's own answer cache
        decide.decide(text)
    detect.detect.cache_clear()
    started = time.perf_counter()
    for text in texts:
        decide.decide(text, decide.Priors(browser=("en",)))
    decision_ms = (time.perf_counter() - started) * 1000 / len(texts)
    detect.detect.cache_clear()
    started = time.perf_counter()
    for text in texts:
        detect.detect(text)
    detector_ms = (time.perf_counter() - started) * 1000 / len(texts)
    result = {
        "data": args.data.name,
        "messages": len(texts),
        "languages": len({tag for tag, _ in tuning + held_out}),
        "tuning_half": score(tuning, evidence_of(tuning)),
        "held_out_half": score(held_out, evidence_of(held_out)),
        "constants": {"ABSENT_ZIPF": words.ABSENT_ZIPF, "OTHER_ZIPF": words.OTHER_ZIPF, "OTHER_GAP": words.OTHER_GAP,
                      "DETECTOR_WEIGHT": decide.DETECTOR_WEIGHT, "BEYOND_WEIGHT": decide.BEYOND_WEIGHT,
                      "DETECTOR_FULL_LETTERS": decide.DETECTOR_FULL_LETTERS, "COMMIT": decide.COMMIT,
                      "PRIOR_WEIGHT": decide.PRIOR_WEIGHT, "PLAUSIBLE": decide.PLAUSIBLE,
                      "SHORT_WORDS": decide.SHORT_WORDS, "TOP_WORDS": words.TOP_WORDS},
        "tuned": tuned is not None,
        "ms_per_message": round(decision_ms, 3),
        "detector_alone_ms_per_message": round(detector_ms, 3),
        "added_ms_per_message": round(decision_ms - detector_ms, 3),
        "word_lists_load_s": round(load_s, 2),
    }
    report(result, args.out)


if __name__ == "__main__":
    main()
