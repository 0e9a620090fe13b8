"""Does a small chat model's P(end of turn) on the transcript help the end-of-turn rule? (go/no-go)

Transcript-based turn detectors (a small chat LM scoring its end-of-turn token after the user's
text, lower-cased and without punctuation) are reported to cut off far fewer unfinished
utterances than audio-only ones. This measures that idea zero-shot with SmolLM2-135M-Instruct
(GGUF Q4_1, llama.cpp) on the clips of bench/make_turn_clips.py, before any of it goes into
backend/audio/turn_end.py:

* ``p_end``: P(``<|im_end|>`` | the model's chat template with the user's text as the last
  message, its closing ``<|im_end|>`` cut off), for two transcripts of each clip: the whole clip
  heard on its own (``heard`` in clips.json), and the transcript at the pause that settled the
  turn in a bench/turn_taking.py ``--verbose`` run (the one the rule would judge).
* The rule as it would run: the LM is asked only where Smart Turn and the words both say
  "finished" (the turn would go at once); below the threshold the session keeps listening (2.5 s).
  The threshold is set per language on the first half only: a little under the lowest ``p_end``
  of a finished utterance handed over at once there, so that it delays none of them. Then on each half: cut-offs the LM would prevent
  ("rescued"; optimistic for a hand-over at a pause inside the clip, where a later pause is judged
  again) and finished utterances it would delay; per language, since SmolLM2 is English-centric.
* ``ms_per_call``: one scoring on this CPU (the whole prompt evaluated, one thread).

    python bench/turn_lm.py --clips DIR/clips.json --first FIRST.json --second SECOND.json \\
        [--model OUTDIR/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf] [--mode smart-chosen]

FIRST/SECOND: the JSON bench/turn_taking.py printed with ``--verbose`` for each half. The outcome
(bench/results/turn_lm.json) kept the model out of the rule: see the README, "Turn-taking in voice mode".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import unicodedata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CUT_OFF_S = 1.0
THRESHOLD_MARGIN = 0.8  # the threshold: this fraction of the lowest p_end of a finished utterance (tuning half)


def plain(text: str) -> str:
    """Lower case, no punctuation: as ASR text reaches a transcript-based turn detector."""
    text = unicodedata.normalize("NFC", text).lower().replace("’", "'")
    return " ".join(re.sub(r"[^\w' ]+", " ", text).split())


class EndOfTurnLM:
    """P(end of turn) after a user's words, from a chat model's end-of-message token."""

    def __init__(self, path: str, threads: int = 1) -> None:
        from jinja2 import Template
        from llama_cpp import Llama

        self.llama = Llama(model_path=path, n_ctx=512, n_threads=threads, n_threads_batch=threads, verbose=False)
        self.template = Template(self.llama.metadata["tokenizer.chat_template"])
        (self.end_id,) = self.llama.tokenize(b"<|im_end|>", add_bos=False, special=True)

    def prompt(self, text: str) -> str:
        rendered = self.template.render(messages=[{"role": "user", "content": plain(text)}],
                                        add_generation_prompt=False)
        return rendered[: rendered.rindex("<|im_end|>")]

    def p_end(self, text: str) -> float:
        tokens = self.llama.tokenize(self.prompt(text).encode(), add_bos=False, special=True)
        self.llama.reset()
        self.llama.eval(tokens)
        # the last position's logits (llama-cpp-python keeps them in its scores only with logits_all)
        logits = np.ctypeslib.as_array(self.llama._ctx.get_logits(), shape=(self.llama.n_vocab(),)).astype(np.float64)
        logits -= logits.max()
        return float(np.exp(logits[self.end_id]) / np.exp(logits).sum())


def sig(x: float) -> float:
    """Four significant digits: a zero-shot model's P(end) is tiny, decimals would round it to 0."""
    return float(f"{float(x):.4g}")


def language_of(name: str) -> str:
    return name.split("_")[1]  # silero_en_00_c007.wav


def settled(run: dict, mode: str) -> list[dict]:
    """Each clip's outcome in a turn_taking.py --verbose run, with whether the rule would ask the LM."""
    out = []
    for row in run["modes"][mode]["clips"]:
        verdict = row["verdict"] or {}
        fast = row["stream_ms"] is not None and row["stream_ms"] < CUT_OFF_S * 1000
        out.append({**row, "language": language_of(row["file"]),
                    # the LM is asked only where the turn would go at once, with its transcript
                    "asked": bool(verdict.get("finished")) and bool(row["text"]), "fast": fast})
    return out


def summarize(rows: list[dict], thresholds: dict[str, float]) -> dict:
    by_language: dict[str, dict] = {}
    for lang in sorted({r["language"] for r in rows}) + ["all"]:
        part = [r for r in rows if lang in ("all", r["language"])]
        inc = [r for r in part if r["kind"] == "incomplete"]
        com = [r for r in part if r["kind"] == "complete"]
        vetoed = [r for r in part if r["asked"] and r["p_end"] < thresholds.get(r["language"], 0.0)]
        cut = [r for r in inc if r["fast"]]
        rescued = [r for r in cut if r in vetoed]
        # a finished utterance handed over at its end, now held 2.5 s (one handed over early, at a pause
        # inside it, is already wrong: a veto there is judged again at the next pause)
        delayed = [r for r in com if r in vetoed and r["stream_ms"] >= 0]
        by_language[lang] = {
            "incomplete": len(inc), "cut_off_before": len(cut), "rescued": len(rescued),
            "cut_off_after": len(cut) - len(rescued), "complete": len(com),
            "delayed": len(delayed), "delayed_files": [r["file"] for r in delayed],
            "rescued_files": [r["file"] for r in rescued],
        }
    return by_language


def auc(pos: list[float], neg: list[float]) -> float | None:
    """P(a finished clip scores above an unfinished one)."""
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return round(wins / (len(pos) * len(neg)), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=Path, required=True, help="clips.json of bench/make_turn_clips.py")
    parser.add_argument("--first", type=Path, required=True, help="turn_taking.py --verbose JSON, first half")
    parser.add_argument("--second", type=Path, required=True, help="turn_taking.py --verbose JSON, second half")
    parser.add_argument("--mode", default="smart-chosen")
    parser.add_argument("--model", default=None, help="SmolLM2-135M-Instruct GGUF")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.model is None:
        from tests import real_models

        folder = Path(real_models.folder("smollm2-135m-instruct"))
        args.model = str(next(folder.glob("*.gguf")))

    lm = EndOfTurnLM(args.model, args.threads)
    took: list[float] = []

    def score(text: str) -> float:
        t0 = time.perf_counter()
        p = lm.p_end(text)
        took.append((time.perf_counter() - t0) * 1000)
        return sig(p)

    # 1. the clips heard whole: does p_end tell a finished sentence from one cut inside, per language?
    clips = [c for c in json.loads(args.clips.read_text()) if "dropped" not in c]
    heard = []
    for c in clips:
        half, kind, name = c["file"].split("/")
        heard.append({"file": name, "half": half, "kind": kind, "language": language_of(name),
                      "heard": c["heard"], "p_end": score(c["heard"]) if c["heard"] else None})
    separation = {}
    for half in ("first", "second"):
        for lang in ("en", "de"):
            part = [h for h in heard if h["half"] == half and h["language"] == lang and h["p_end"] is not None]
            separation[f"{half}_{lang}"] = {
                "auc": auc([h["p_end"] for h in part if h["kind"] == "complete"],
                           [h["p_end"] for h in part if h["kind"] == "incomplete"]),
                "complete_median": sig(np.median([h["p_end"] for h in part if h["kind"] == "complete"])),
                "incomplete_median": sig(np.median([h["p_end"] for h in part if h["kind"] == "incomplete"])),
            }

    # 2. the rule as it would run: asked where the turn would go at once
    halves = {}
    for name, path in (("first", args.first), ("second", args.second)):
        rows = settled(json.loads(path.read_text()), args.mode)
        for r in rows:
            r["p_end"] = score(r["text"]) if r["asked"] else None
        halves[name] = rows
    thresholds = {}
    for lang in sorted({r["language"] for r in halves["first"]}):
        finished = [r["p_end"] for r in halves["first"] if r["language"] == lang and r["kind"] == "complete"
                    and r["asked"] and r["fast"] and r["stream_ms"] >= 0]
        thresholds[lang] = sig(THRESHOLD_MARGIN * min(finished)) if finished else 0.0
    report = {
        "model": Path(args.model).name, "mode": args.mode, "thresholds": thresholds,
        "threshold_rule": f"per language, {THRESHOLD_MARGIN} x the lowest p_end of a finished utterance handed "
                          "over at once at its end, first half only",
        "tuning_first_half": summarize(halves["first"], thresholds),
        "held_out_second_half": summarize(halves["second"], thresholds),
        "heard_whole_separation": separation,
        "ms_per_call": {"median": round(float(np.median(took)), 1), "p95": round(float(np.percentile(took, 95)), 1),
                        "calls": len(took), "threads": args.threads},
        "load_average_1min": round(os.getloadavg()[0], 1), "cpus": os.cpu_count(),
        "settled": {h: [{k: r[k] for k in ("file", "kind", "stream_ms", "text", "asked", "p_end")} for r in rows]
                    for h, rows in halves.items()},
        "heard_whole": heard,
    }
    print(json.dumps(report, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
