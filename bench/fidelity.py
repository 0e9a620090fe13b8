"""Answer-language fidelity: how often the model answers in the language it was asked in.

    python bench/fidelity.py [--model PATH_OR_ID] [--max-new-tokens 48] [--languages fr,ja] [--quick]
    python bench/fidelity.py --engine openai --base-url http://HOST:8000/v1 [--model NAME]
    python bench/fidelity.py --table bench/results/fidelity.json   # the README table

For every prompt of bench/data/fidelity_prompts.tsv (each written in its own language), three
ways of asking, as the app does:

  none     the user's message alone, no language instruction
  named    the app's system prompt naming the answer language (backend.conversation.turns.system_prompt)
  retry    named, and when the app's check says the answer drifted (Turn.language_mismatch), the
           app's firm retry (system_prompt(..., firm=True)) replaces it

Judge: the app's own text detector (backend.language.detect) on the answer; an answer counts as in
the asked language when its detected tag is the asked one. Answers the detector cannot name (too
short, empty, or "und") count as not in the language, and are counted apart. Small models often
repeat the question before answering, which flatters them, so each share is given twice: as the
app judges the answer, and "strict", with verbatim repeats of the question removed first.
Greedy decoding, so one run is the result. Without --model
it measures SmolLM2-135M-Instruct, assembled from its pinned package (tests.real_models).

Prints one JSON object and writes it to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.cancel import CancelScope  # noqa: E402
from backend.conversation.turns import Turn, system_prompt  # noqa: E402
from backend.language import detect, tags  # noqa: E402
from backend.models.engine import LocalEngine, PromptMessage  # noqa: E402

PROMPTS = ROOT / "bench" / "data" / "fidelity_prompts.tsv"
OUT = ROOT / "bench" / "results" / "fidelity.json"
CONDITIONS = ("none", "named", "retry")
JUDGE = "backend.language.detect (the app's text detector: langdetect + CLD2 + fastText + rules)"
QUICK_LANGUAGES = ("en", "fr", "ja", "sw")


def read_prompts(path: Path = PROMPTS) -> list[tuple[str, str]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        tag, _, prompt = line.partition("\t")
        if tag != "language":
            rows.append((tag, prompt))
    return rows


def asked(tag: str, prompt: str, instruction: str | None) -> list[PromptMessage]:
    system = [PromptMessage("system", instruction)] if instruction else []
    return system + [PromptMessage("user", prompt)]


def judged_turn(tag: str, prompt: str, answer: str) -> Turn:
    """The answer as the app judges it: the same Turn, detector and mismatch rule."""
    turn = Turn(id=0, text=prompt, language=detect.detect(prompt), answer_language=tag, answer=answer,
                status="done")
    turn.answer_guess = detect.detect(answer) if answer.strip() else None
    return turn


def in_language(turn: Turn) -> bool:
    guess = turn.answer_guess
    return guess is not None and guess.known and tags.normalize_tag(guess.tag) == turn.answer_language


def strictly_in_language(turn: Turn) -> bool:
    """In the language once verbatim repeats of the question are taken out of the answer."""
    rest = turn.answer.replace(turn.text, " ").strip()
    return bool(rest) and in_language(judged_turn(turn.answer_language, turn.text, rest))


class Answerer:
    """Greedy answers for many prompts: padded batches on a local model, parallel streams on a server.

    With a cache file, answers already given are kept between runs, so a long run on a slow machine
    can be stopped and taken up again (greedy decoding: the same prompt gets the same answer)."""

    def __init__(self, engine, max_new_tokens: int, batch: int, cache: Path | None = None) -> None:
        self.engine = engine
        self.max_new_tokens = max_new_tokens
        self.batch = max(1, batch)
        self.cache_path = cache
        self.cache: dict[str, str] = {}
        if cache is not None and cache.exists():
            self.cache = json.loads(cache.read_text(encoding="utf-8"))

    def key(self, messages: list[PromptMessage]) -> str:
        return json.dumps([self.engine.name, self.max_new_tokens, [(m.role, m.text) for m in messages]],
                          ensure_ascii=False)

    def __call__(self, prompts: list[list[PromptMessage]]) -> list[str]:
        todo = [m for m in prompts if self.key(m) not in self.cache]
        if todo:
            if isinstance(self.engine, LocalEngine) and self.batch > 1:
                answers = self._local_batch(todo)
            else:
                with ThreadPoolExecutor(max_workers=self.batch) as pool:
                    answers = list(pool.map(self._one, todo))
            self.cache.update({self.key(m): text for m, text in zip(todo, answers, strict=True)})
            if self.cache_path is not None:
                self.cache_path.write_text(json.dumps(self.cache, ensure_ascii=False), encoding="utf-8")
        return [self.cache[self.key(m)] for m in prompts]

    def _one(self, messages: list[PromptMessage]) -> str:
        # The app's own path: one stream, as a user's turn runs.
        return "".join(self.engine.stream(messages, CancelScope(), self.max_new_tokens))

    def _local_batch(self, prompts: list[list[PromptMessage]]) -> list[str]:
        """One padded generate() for several text prompts; greedy, so each answer is the one the app would
        give up to floating-point noise from padding."""
        import torch

        engine = self.engine
        tokenizer = engine.tokenizer
        texts = [engine.processor.apply_chat_template(engine._chat(m)[0], add_generation_prompt=True,
                                                      tokenize=False) for m in prompts]
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(engine.model.device)
        with torch.inference_mode():
            out = engine._generator.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                             pad_token_id=tokenizer.pad_token_id)
        new = out[:, inputs["input_ids"].shape[-1]:]
        return [tokenizer.decode(row, skip_special_tokens=True) for row in new]


def share(values: list[bool]) -> float:
    return round(sum(values) / len(values), 3) if values else 0.0


def run(engine, rows: list[tuple[str, str]], max_new_tokens: int, batch: int, cache: Path | None = None) -> dict:
    answer = Answerer(engine, max_new_tokens, batch, cache)
    started = time.perf_counter()
    judged: dict[str, list[Turn]] = {condition: [] for condition in CONDITIONS}
    redo: list[int] = []
    # A batch of prompts at a time, all three ways, so that a stopped run has whole languages done.
    for start in range(0, len(rows), answer.batch):
        chunk = rows[start:start + answer.batch]
        plain = answer([asked(tag, prompt, None) for tag, prompt in chunk])
        named = answer([asked(tag, prompt, system_prompt(tag)) for tag, prompt in chunk])
        judged["none"] += [judged_turn(tag, prompt, text) for (tag, prompt), text in zip(chunk, plain, strict=True)]
        named_turns = [judged_turn(tag, prompt, text) for (tag, prompt), text in zip(chunk, named, strict=True)]
        judged["named"] += named_turns
        # The firm retry runs where the app would offer it: a finished answer the check says drifted.
        flagged = [i for i, turn in enumerate(named_turns) if turn.language_mismatch]
        firm = answer([asked(chunk[i][0], chunk[i][1], system_prompt(chunk[i][0], firm=True)) for i in flagged])
        retried = list(named_turns)
        for i, text in zip(flagged, firm, strict=True):
            retried[i] = judged_turn(chunk[i][0], chunk[i][1], text)
        judged["retry"] += retried
        redo += [start + i for i in flagged]
        print(f"{start + len(chunk)} of {len(rows)} prompts", file=sys.stderr, flush=True)

    per_language: dict[str, dict] = {}
    for tag in dict.fromkeys(tag for tag, _ in rows):
        picked = [i for i, (t, _) in enumerate(rows) if t == tag]
        per_language[tag] = {"prompts": len(picked)} | {
            condition: share([in_language(judged[condition][i]) for i in picked]) for condition in CONDITIONS
        } | {"strict": {
            condition: share([strictly_in_language(judged[condition][i]) for i in picked]) for condition in CONDITIONS
        }} | {"retried": sum(1 for i in redo if i in picked)}
    overall = {condition: share([in_language(turn) for turn in judged[condition]]) for condition in CONDITIONS}
    overall["strict"] = {
        condition: share([strictly_in_language(turn) for turn in judged[condition]]) for condition in CONDITIONS
    }
    overall["not_english"] = {
        condition: share([in_language(turn) for turn in judged[condition] if turn.answer_language != "en"])
        for condition in CONDITIONS
    }
    overall["not_judged"] = {
        condition: sum(1 for turn in judged[condition] if turn.answer_guess is None or not turn.answer_guess.known)
        for condition in CONDITIONS
    }
    overall["retried"] = len(redo)
    drift = {}
    for condition in CONDITIONS:
        counts: dict[str, int] = {}
        for turn in judged[condition]:
            if not in_language(turn) and turn.answer_guess is not None and turn.answer_guess.known:
                counts[turn.answer_guess.tag] = counts.get(turn.answer_guess.tag, 0) + 1
        drift[condition] = dict(sorted(counts.items(), key=lambda item: -item[1]))
    answers = [
        {"language": tag, "prompt": prompt, **{
            condition: {"answer": judged[condition][i].answer,
                        "detected": judged[condition][i].answer_guess.tag if judged[condition][i].answer_guess else None}
            for condition in CONDITIONS
        }}
        for i, (tag, prompt) in enumerate(rows)
    ]
    return {"overall": overall, "languages": per_language, "drifted_to": drift, "answers": answers,
            "seconds": round(time.perf_counter() - started, 1)}


def table(result: dict) -> str:
    """The README's Markdown table of a result: each cell as the app judges (strict)."""
    def cells(row: dict) -> str:
        return " | ".join(f"{row[c]:.0%} ({row['strict'][c]:.0%})" for c in CONDITIONS)

    lines = ["| language | prompts | no instruction | language named | named + firm retry | retried |",
             "|---|---|---|---|---|---|"]
    for tag, row in result["languages"].items():
        lines.append(f"| {tags.language_name(tag)} (`{tag}`) | {row['prompts']} | {cells(row)} | {row['retried']} |")
    overall = result["overall"]
    total = sum(r["prompts"] for r in result["languages"].values())
    lines.append(f"| **all** | {total} | {cells(overall)} | {overall['retried']} |")
    other = overall["not_english"]
    lines.append(f"| all but English | | {other['none']:.0%} | {other['named']:.0%} | {other['retry']:.0%} | |")
    return "\n".join(lines)


def build_engine(args):
    if args.engine == "openai":
        from backend.models.remote import RemoteEngine

        return RemoteEngine(base_url=args.base_url, model=args.model, api_key=os.environ.get("OMNILINGO_API_KEY"))
    model = args.model
    if model is None:
        from tests.real_models import assemble

        model = str(assemble("smollm2-135m-instruct", Path(tempfile.gettempdir()) / "omnilingo-real"))
    return LocalEngine(model, device=args.device, dtype=args.dtype)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="hub id, folder or .gguf file (default: SmolLM2-135M-Instruct); "
                                        "with --engine openai, the served model's name")
    parser.add_argument("--engine", choices=["local", "openai"], default="local")
    parser.add_argument("--base-url", help="server URL for --engine openai")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto", help="as the app's --dtype (auto: what the app picks)")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch", type=int, default=16,
                        help="prompts per padded generate() locally, requests at once remotely; 1: the app's path")
    parser.add_argument("--languages", help="comma-separated tags (default: every language of the prompt file)")
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK_LANGUAGES)}, 2 prompts each")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--table", type=Path, metavar="JSON", help="print the README table of a result and exit")
    parser.add_argument("--cache", type=Path, help="keep answers in this file and reuse them when run again")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.table:
        print(table(json.loads(args.table.read_text(encoding="utf-8"))))
        return 0

    rows = read_prompts()
    wanted = args.languages.split(",") if args.languages else (QUICK_LANGUAGES if args.quick else None)
    if wanted:
        rows = [row for row in rows if row[0] in wanted]
    if args.quick:
        rows = [row for i, row in enumerate(rows) if [r[0] for r in rows[:i]].count(row[0]) < 2]
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    engine = build_engine(args)
    started = time.perf_counter()
    engine.load()
    load_s = time.perf_counter() - started
    result = {
        "bench": "fidelity",
        "model": engine.name,
        "engine": args.engine,
        "precision": engine.describe_precision({"dtype": engine.model.dtype}) if isinstance(engine, LocalEngine)
        else "server",
        "judge": JUDGE,
        "prompts_file": str(PROMPTS.relative_to(ROOT)),
        "max_new_tokens": args.max_new_tokens,
        "decoding": "greedy",
        "batch": args.batch,
        "load_s": round(load_s, 1),
        "command": "python bench/fidelity.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        **run(engine, rows, args.max_new_tokens, args.batch, args.cache),
    }
    if not args.quick:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
