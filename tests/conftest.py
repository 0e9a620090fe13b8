"""Shared fixtures: tiny offline models and a corpus path. No test ever reaches the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Set before anything imports huggingface_hub or transformers.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The tests check behaviour, not speed: one thread per op keeps tiny models quick on shared cores.
try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a requirement
    pass

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("OMNILINGO_CORPUS", REPO.parent / "shared" / "corpus"))


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.exists():
        pytest.fail(f"corpus not found at {CORPUS} (set OMNILINGO_CORPUS)")
    return CORPUS


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """Tiny random models, built once per test run (OMNILINGO_TINY_MODELS reuses a folder)."""
    from tests import tiny_models

    cached = os.environ.get("OMNILINGO_TINY_MODELS")
    out = Path(cached) if cached else tmp_path_factory.mktemp("tiny-models")
    missing = [name for name in tiny_models.BUILDERS if not (out / name / "config.json").exists()]
    if missing:
        tiny_models.build_all(out, missing)
    return out


@pytest.fixture(scope="session")
def real_model(tmp_path_factory):
    """``real_model(name)``: a trained model folder from tests.real_models (OMNILINGO_REAL_MODELS reuses one,
    e.g. the output of ``python -m tests.real_models DIR``); skips when its weight packages are not installed."""
    from tests import real_models

    cached = os.environ.get("OMNILINGO_REAL_MODELS")
    out = Path(cached) if cached else tmp_path_factory.mktemp("real-models")

    def get(name: str) -> Path:
        try:
            return real_models.assemble(name, out)
        except real_models.MissingPackage as err:
            pytest.skip(f"trained weights for {name} not installed ({err})")

    return get


@pytest.fixture(scope="session")
def tiny_gemma(tiny_dir) -> Path:
    return tiny_dir / "gemma4"


@pytest.fixture(scope="session")
def tiny_qwen(tiny_dir) -> Path:
    return tiny_dir / "qwen25omni"


@pytest.fixture(scope="session")
def gemma_engine(tiny_gemma):
    from backend.models.engine import LocalEngine

    engine = LocalEngine(str(tiny_gemma), device="cpu")
    engine.load()
    return engine
