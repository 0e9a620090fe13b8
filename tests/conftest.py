"""Shared fixtures: tiny offline models, real weights from pinned packages, the vendored corpus. No test ever reaches the network."""

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

from tests.support import CORPUS


@pytest.fixture(scope="session", autouse=True)
def _temporary_files_in_pytests_folder(tmp_path_factory):
    """Sessions and runtimes the tests leave open put their folders in pytest's own, which it prunes."""
    import tempfile

    before = tempfile.tempdir
    tempfile.tempdir = str(tmp_path_factory.mktemp("tempfile"))
    yield
    tempfile.tempdir = before


@pytest.fixture(scope="session")
def corpus() -> Path:
    """tests/fixtures: real speech, images and UDHR text, vendored with their licences."""
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
def tiny_text(tiny_dir) -> Path:
    """A text-only chat model (Qwen2), read through its tokenizer rather than a processor."""
    return tiny_dir / "qwen2-text"


@pytest.fixture(scope="session")
def gemma_engine(tiny_gemma):
    from backend.models.engine import LocalEngine

    engine = LocalEngine(str(tiny_gemma), device="cpu")
    engine.load()
    return engine


@pytest.fixture(scope="session")
def real_models_dir(tmp_path_factory) -> Path:
    """Trained weights (whisper-base, SmolLM2-135M, a Piper voice) assembled from the pinned packages in
    requirements-dev.txt, checked against their sha256. OMNILINGO_REAL_MODELS keeps them between runs."""
    from tests import real_models

    cached = os.environ.get("OMNILINGO_REAL_MODELS")
    out = Path(cached) if cached else tmp_path_factory.mktemp("real-models")
    try:
        for name in real_models.MODELS:
            real_models.assemble(name, out)
    except real_models.MissingPackage as err:
        pytest.skip(f"trained weights not installed: {err}")
    return out


@pytest.fixture(scope="session")
def smollm2(real_models_dir) -> Path:
    """SmolLM2-135M-Instruct, a trained text-only chat model: a folder holding one GGUF file."""
    return real_models_dir / "smollm2-135m-instruct"
