"""bench/model.py on a shrunk config: the real classes, processors and engine, on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KEYS = {
    "model", "config", "device", "precision", "params", "memory", "prompt_tokens", "ttft_s",
    "decode_tokens", "decode_tok_s", "stop_latency_s",
}


def run_bench(*args: str) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "model.py"), "--small", *args],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["gemma-4-E2B-it", "Qwen2.5-Omni-7B"])
def test_small_run_prints_the_figures(model):
    result = run_bench("--model", model, "--decode-tokens", "8")
    assert KEYS <= set(result)
    assert result["model"] == model and result["config"] == "small"
    assert set(result["ttft_s"]) == {"text", "image", "audio"}
    assert all(v is not None and v > 0 for v in result["ttft_s"].values())
    # an 896x896 image and 10 s of audio both add hundreds of soft tokens to the prompt
    assert result["prompt_tokens"]["image"] > result["prompt_tokens"]["text"] + 200
    assert result["prompt_tokens"]["audio"] > result["prompt_tokens"]["text"] + 200
    assert result["decode_tokens"] == 8 and result["decode_tok_s"] > 0
    assert result["stop_latency_s"] is not None and result["stop_latency_s"] < 5
    assert result["memory"]["load_rss_gib"] > 0


@pytest.mark.slow
def test_small_nf4_quantizes_only_the_language_model():
    pytest.importorskip("bitsandbytes")
    result = run_bench("--model", "gemma-4-E2B-it", "--precision", "nf4", "--decode-tokens", "4", "--scenarios", "text")
    assert result["precision"] == "nf4"
    # 2 layers x 7 projections + per-layer-input gate/projection + the per-layer model projection:
    # the vision and audio towers and lm_head stay unquantized (the app's skip list)
    assert 0 < result["nf4_linear_layers"] < 40
    assert result["decode_tokens"] == 4


def test_run_all_writes_the_table_between_markers(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import run_all
    finally:
        sys.path.pop(0)
    entry = run_bench("--model", "gemma-4-E2B-it", "--decode-tokens", "4", "--scenarios", "text")
    table = run_all.markdown({"date": "2026-01-01", "benchmarks": {"model": [entry], "langid": {"accuracy": 0.9}}})
    assert "| gemma-4-E2B-it | small |" in table and "| langid | accuracy: 0.900 |" in table
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{run_all.START}\nold\n{run_all.END}\nrest\n", encoding="utf-8")
    assert run_all.write_readme(table, readme)
    text = readme.read_text(encoding="utf-8")
    assert "old" not in text and "gemma-4-E2B-it" in text and text.endswith("rest\n")


def test_run_all_replaces_one_benchmark_and_keeps_the_others_with_their_dates(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import run_all
    finally:
        sys.path.pop(0)
    out = tmp_path / "results.json"
    out.write_text(json.dumps({"date": "2026-01-01", "benchmarks": {"langid": {"accuracy": 0.9},
                                                                    "barge_in": {"p95": 880}}}), encoding="utf-8")
    newer = tmp_path / "barge_in.json"
    newer.write_text(json.dumps({"p95": 639}), encoding="utf-8")
    args = run_all.argparse.Namespace(only=["__none__"], fresh=False, out=out, merge=[str(newer)], timeout=1)
    results = run_all.collect(args)
    assert results["benchmarks"] == {"langid": {"accuracy": 0.9}, "barge_in": {"p95": 639}}
    table = run_all.markdown(results)
    today = run_all.dt.date.today().isoformat()
    assert table.startswith(f"Measured 2026-01-01; barge_in {today} with") or today == "2026-01-01"
    assert "| barge_in | p95: 639 |" in table and "880" not in table
