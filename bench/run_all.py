"""Run every benchmark in bench/, collect one JSON, write the README performance table.

    python bench/run_all.py                      # quick pass: every script with its quick/small flag
    python bench/run_all.py --device cuda        # model benchmarks at full size, bf16 and nf4
    python bench/run_all.py --merge out/*.json   # add results measured elsewhere (a GPU run)
    python bench/run_all.py --only model --no-readme

Each script prints one JSON object (or a list of them) on stdout. The results go to
bench/results.json, and the Markdown table replaces whatever sits between
``<!-- bench:start -->`` and ``<!-- bench:end -->`` in README.md when both markers exist.
What bench/results.json already holds is kept (``--fresh``: start empty): a benchmark run or
merged now replaces its own entry, with today's date beside it.

    python bench/run_all.py --skip-run --merge bench/results/barge_in.json   # one row from its latest run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
QUICK_FLAGS = ("--quick", "--small")
MODELS = ("gemma-4-E4B-it", "gemma-4-E2B-it", "Qwen2.5-Omni-7B")


def scripts(only: list[str] | None) -> list[Path]:
    found = sorted(p for p in BENCH.glob("*.py") if p.name not in {"run_all.py", "__init__.py"})
    if only:
        found = [p for p in found if p.stem in only]
    return found


def quick_flag(script: Path) -> str | None:
    """The script's own quick/small flag, read from its --help."""
    try:
        help_text = subprocess.run(
            [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120, cwd=ROOT, env=_env(),
        ).stdout
    except subprocess.TimeoutExpired:
        return None
    for flag in QUICK_FLAGS:
        if re.search(rf"(^|\s){re.escape(flag)}(\s|,|$)", help_text):
            return flag
    return None


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def parse_json_output(stdout: str) -> Any:
    """The JSON a script printed, even when log lines come before it."""
    stdout = stdout.strip()
    try:
        return json.loads(stdout)
    except json.JSONDecodeError:
        pass
    for match in re.finditer(r"^[\[{]", stdout, flags=re.M):
        try:
            return json.loads(stdout[match.start():])
        except json.JSONDecodeError:
            continue
    raise ValueError("no JSON object in the output")


def run(cmd: list[str], timeout: int) -> dict[str, Any]:
    print("$", " ".join(cmd[1:]), file=sys.stderr, flush=True)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=_env())
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}", "stderr_tail": done.stderr[-1500:]}
    try:
        return {"result": parse_json_output(done.stdout)}
    except ValueError as err:
        return {"error": str(err), "stdout_tail": done.stdout[-1500:]}


def model_commands(args: argparse.Namespace) -> list[list[str]]:
    script = str(BENCH / "model.py")
    if args.device == "cuda":
        return [
            [sys.executable, script, "--model", m, "--device", "cuda", "--precision", p, "--runs", str(args.runs)]
            for m in MODELS
            for p in ("bf16", "nf4")
        ]
    return [[sys.executable, script, "--model", m, "--small"] for m in MODELS]


def earlier(path: Path) -> dict[str, Any]:
    """The results a former run left in ``path``, each benchmark with the date it was measured."""
    if not path.exists():
        return {"benchmarks": {}, "measured": {}}
    old = json.loads(path.read_text(encoding="utf-8"))
    measured = old.get("measured") or {}
    return {"benchmarks": old.get("benchmarks", {}),
            "measured": {name: measured.get(name, old.get("date")) for name in old.get("benchmarks", {})}}


def collect(args: argparse.Namespace) -> dict[str, Any]:
    today = dt.date.today().isoformat()
    kept = {"benchmarks": {}, "measured": {}} if args.fresh else earlier(args.out)
    results: dict[str, Any] = {"date": today, "python": sys.version.split()[0], **kept}
    benches, measured = results["benchmarks"], results["measured"]
    for script in scripts(args.only):
        if script.stem == "model":
            runs = [run(cmd, args.timeout) for cmd in model_commands(args)]
            benches["model"] = [r.get("result", r) for r in runs]
            measured["model"] = today
            continue
        cmd = [sys.executable, str(script)]
        flag = quick_flag(script)
        if flag:
            cmd.append(flag)
        outcome = run(cmd, args.timeout)
        benches[script.stem] = outcome.get("result", outcome)
        measured[script.stem] = today
    for path in args.merge or []:
        merged = json.loads(Path(path).read_text(encoding="utf-8"))
        entries = merged if isinstance(merged, list) else [merged]
        for entry in entries:
            if isinstance(entry, dict) and "model" in entry and "precision" in entry:
                benches.setdefault("model", []).append(entry)
                measured["model"] = today
            else:
                benches[Path(path).stem] = entry
                measured[Path(path).stem] = today
    return results


# -- Markdown ---------------------------------------------------------------------------------
def _fmt(value: Any, unit: str = "", digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def model_rows(entries: list[dict]) -> list[str]:
    lines = [
        "| model | size | device | precision | params | memory (GiB) | first token: text / image / audio (s) "
        "| decode (tok/s) | stop (ms) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        if "error" in e:
            lines.append(f"| {e.get('model', '?')} | — | — | — | — | — | failed: {e['error']} | — | — |")
            continue
        mem = e.get("memory", {})
        memory = mem.get("load_allocated_gib") or mem.get("load_rss_gib")
        peak = mem.get("run_peak_gib") or mem.get("peak_rss_gib")
        ttft = e.get("ttft_s", {})
        firsts = " / ".join(_fmt(ttft.get(k)) for k in ("text", "image", "audio"))
        stop = e.get("stop_latency_s")
        device = e.get("device_name") or e.get("device")
        lines.append(
            f"| {e['model']} | {e.get('config', 'full')} | {device} | {e['precision']} | {_fmt(e.get('params_b'), ' B')} "
            f"| {_fmt(memory)} (peak {_fmt(peak)}) | {firsts} | {_fmt(e.get('decode_tok_s'), digits=1)} "
            f"| {_fmt(stop * 1000 if stop is not None else None, digits=0)} |"
        )
    return lines


def _summary(value: Any, depth: int = 0) -> str:
    """A one-cell summary of a benchmark's scalar figures."""
    if isinstance(value, dict):
        parts = []
        for key, item in value.items():
            if isinstance(item, (int, float, str, bool)) or item is None:
                parts.append(f"{key}: {_fmt(item, digits=3)}")
            elif isinstance(item, dict) and depth < 1:
                inner = _summary(item, depth + 1)
                if inner:
                    parts.append(f"{key}: {{{inner}}}")
        return "; ".join(parts)
    return _fmt(value)


def markdown(results: dict[str, Any]) -> str:
    benches = results["benchmarks"]
    measured = results.get("measured") or {}
    dates = {name: measured.get(name, results["date"]) for name in benches}
    common = max(sorted(set(dates.values())), key=list(dates.values()).count) if dates else results["date"]
    apart = "".join(f"; {name} {date}" for name, date in dates.items() if date != common)
    lines = [f"Measured {common}{apart} with `python bench/run_all.py` (figures in bench/results.json).", ""]
    if benches.get("model"):
        lines += model_rows(benches["model"]) + [""]
    others = {k: v for k, v in benches.items() if k != "model"}
    if others:
        lines += ["| benchmark | result |", "|---|---|"]
        for name, value in others.items():
            lines.append(f"| {name} | {_summary(value).replace('|', '/')} |")
        lines.append("")
    return "\n".join(lines)


def write_readme(table: str, readme: Path) -> bool:
    if not readme.exists():
        return False
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text or text.index(START) > text.index(END):
        return False
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{table}\n{END}{tail}", encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement on CUDA")
    parser.add_argument("--only", nargs="*", help="script names to run (e.g. model langid)")
    parser.add_argument("--merge", nargs="*", help="JSON files of results measured elsewhere")
    parser.add_argument("--skip-run", action="store_true", help="only merge and write the table")
    parser.add_argument("--fresh", action="store_true", help="drop what --out holds from earlier runs")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per script run")
    parser.add_argument("--out", type=Path, default=BENCH / "results.json")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args(argv)
    if args.skip_run:
        args.only = ["__none__"]
    results = collect(args)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    table = markdown(results)
    print(table)
    if not args.no_readme and write_readme(table, args.readme):
        print(f"README table updated in {args.readme}", file=sys.stderr)
    failed = [
        name for name, value in results["benchmarks"].items()
        if (isinstance(value, dict) and "error" in value)
        or (isinstance(value, list) and any(isinstance(v, dict) and "error" in v for v in value))
    ]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
