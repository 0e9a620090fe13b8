"""Where Omnilingo runs: the Space entry point, the Dockerfile, Ctrl-C on a laptop, ZeroGPU."""

from __future__ import annotations

import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from backend.cancel import CancelScope
from backend.settings import Settings
from tests.support import free_port

REPO = Path(__file__).resolve().parents[1]



def front_matter() -> dict[str, str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text.split("---", 2)[1]
    out = {}
    for line in block.strip().splitlines():
        key, _, value = line.partition(":")
        out[key.strip()] = value.strip().strip('"')
    return out


def requirement_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    return pins


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    out = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


# -- Hugging Face Space ------------------------------------------------------------------------
def test_space_front_matter_matches_requirements_and_entry_point():
    meta = front_matter()
    assert meta["sdk"] == "gradio"
    assert meta["sdk_version"] == requirement_pins(REPO / "requirements.txt")["gradio"]
    assert meta["app_file"] == "app.py" and (REPO / meta["app_file"]).is_file()
    assert re.fullmatch(r"3\.\d+", meta["python_version"])


def test_space_defaults_listen_everywhere_without_a_browser():
    import importlib.util

    import app as space  # the package wins over app.py on import; load the file itself

    spec = importlib.util.spec_from_file_location("space_entry", REPO / "app.py")
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    assert space.__path__  # `python -m app` is still the package
    on_space = {"SPACE_ID": "someone/omnilingo"}
    assert entry.space_argv([], on_space) == ["--no-browser", "--host", "0.0.0.0"]
    assert entry.space_argv([], {**on_space, "GRADIO_SERVER_NAME": "127.0.0.1"}) == ["--no-browser"]
    assert entry.space_argv(["--port", "9000"], {}) == ["--port", "9000"]  # a laptop: unchanged


def _wait_for_page(url: str, process: subprocess.Popen, log: Path, limit_s: float = 240) -> str:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the app exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            response = httpx.get(url, timeout=5, trust_env=False)
            if response.status_code == 200:
                return response.text
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    pytest.fail(f"the app did not serve {url}:\n{log.read_text()[-4000:]}")


def _app_env(tiny_gemma: Path, port: int, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMNILINGO_", "GRADIO_", "SPACE"))}
    env.update({
        "OMNILINGO_MODEL": str(tiny_gemma), "OMNILINGO_DEVICE": "cpu", "OMNILINGO_MAX_NEW_TOKENS": "8",
        "OMNILINGO_TTS": "off", "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(home), "NO_PROXY": "*",
        "PYTHONUNBUFFERED": "1",
    })
    return env


@pytest.mark.slow
def test_space_command_serves_the_app(tiny_gemma, tmp_path):
    """Exactly what a Space runs: `python app.py` in the repository root, with the Space's variables."""
    port = free_port()
    env = _app_env(tiny_gemma, port, tmp_path / "hf")
    # SPACE_ID and SYSTEM are what Spaces set; the app would listen on 0.0.0.0 there, loopback is enough here.
    env.update({"SPACE_ID": "omnilingo/omnilingo", "SYSTEM": "spaces", "GRADIO_SERVER_NAME": "127.0.0.1"})
    log = tmp_path / "space.log"
    process = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=log.open("wb"),
                               stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        page = _wait_for_page(url, process, log)
        assert "<title>Omnilingo</title>" in page or "Omnilingo" in page
        config = httpx.get(url + "config", timeout=10, trust_env=False).json()
        elem_ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
        assert {"chat", "message", "model-status"} <= elem_ids

        from gradio_client import Client

        result = Client(url, verbose=False).predict("Bonjour, comment ça va aujourd'hui ?", [], "auto",
                                                    api_name="/chat")
        assert "error" not in result, result
        assert result["language"] == "fr" and result["answer"]
    finally:
        process.send_signal(signal.SIGTERM)  # how a Space stops its container
        try:
            code = process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail(f"the app did not stop on SIGTERM:\n{log.read_text()[-4000:]}")
    assert code == 0, log.read_text()[-4000:]
    assert "Shutting down" in log.read_text()


@pytest.mark.slow
def test_ctrl_c_stops_the_laptop_app_cleanly(tiny_gemma, tmp_path):
    port = free_port()
    env = _app_env(tiny_gemma, port, tmp_path / "hf")
    log = tmp_path / "laptop.log"
    process = subprocess.Popen([sys.executable, "-m", "app", "--no-browser", "--host", "127.0.0.1"], cwd=REPO,
                               env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    started = time.monotonic()
    try:
        _wait_for_page(f"http://127.0.0.1:{port}/", process, log)
        # A user presses Ctrl-C once the app says it runs (the page answers a moment before launch() returns).
        deadline = time.monotonic() + 60
        while "Omnilingo is running" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        # The app's own shutdown takes well under a second; then the interpreter unloads torch,
        # transformers and gradio, which (like starting) takes longer the busier the machine is.
        start_s = time.monotonic() - started
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(max(60.0, 3 * start_s))
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail(f"Ctrl-C did not stop the app:\n{log.read_text()[-4000:]}")
    text = log.read_text()
    assert code == 0, text[-4000:]
    assert "Shutting down" in text and "Traceback" not in text
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=5, trust_env=False)


# -- Docker -------------------------------------------------------------------------------------
def test_dockerfile_mirrors_the_install_steps():
    steps = dockerfile_instructions()
    kinds = [kind for kind, _ in steps]
    args = {kind: [a for k, a in steps if k == kind] for kind in kinds}
    base = args["FROM"][0]
    assert base == f"python:{front_matter()['python_version']}-slim"
    runs = " && ".join(args["RUN"])
    copies = " ".join(args["COPY"])
    # The same files a Space installs from: packages.txt through apt, requirements.txt through pip.
    assert "packages.txt" in copies and "xargs -a /tmp/packages.txt apt-get install" in runs
    assert "requirements.txt" in copies and "pip install --no-cache-dir -r requirements.txt" in runs
    assert "requirements-dev" not in runs
    # Non-root, UID 1000, from the first USER on.
    assert "--uid 1000" in runs and args["USER"] == ["1000:1000"]
    assert kinds.index("USER") > max(i for i, k in enumerate(kinds) if k == "RUN")
    port = Settings().port
    assert args["EXPOSE"] == [str(port)]
    env = " ".join(args["ENV"])
    assert "GRADIO_SERVER_NAME=0.0.0.0" in env and f"GRADIO_SERVER_PORT={port}" in env
    assert "HF_HOME=/data/hf" in env and args["VOLUME"] == ['["/data/hf"]']
    assert len(args["HEALTHCHECK"]) == 1 and f"127.0.0.1:{port}/" in args["HEALTHCHECK"][0]
    assert args["CMD"] == ['["python", "-m", "app", "--no-browser"]']


def test_packages_txt_lists_the_programs_the_app_runs():
    packages = [line.strip() for line in (REPO / "packages.txt").read_text().splitlines() if line.strip()]
    assert "espeak-ng" in packages  # the voice for every language (backend/models/tts.py)
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9.+-]*", p) for p in packages), packages


def test_dockerignore_keeps_secrets_and_caches_out_but_the_app_in():
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert ".git" in ignored and ".venv" in ignored
    for needed in ("app", "backend", "assets", "requirements.txt", "packages.txt", "app.py"):
        assert needed not in ignored


# -- ZeroGPU ------------------------------------------------------------------------------------
def test_zerogpu_detection_and_no_op_elsewhere():
    from backend.models import zerogpu

    assert zerogpu.enabled({"SPACES_ZERO_GPU": "true"}) and zerogpu.enabled({"SPACES_ZERO_GPU": "1"})
    assert not zerogpu.enabled({}) and not zerogpu.enabled({"SPACES_ZERO_GPU": "false"})

    def f(x):
        return x + 1

    assert zerogpu.gpu(f) is f and zerogpu.gpu(duration=30)(f) is f
    assert "spaces" not in sys.modules  # never imported off ZeroGPU


def test_zerogpu_engine_streams_the_same_answer_and_stops(gemma_engine, corpus):
    """Off ZeroGPU the worker is a plain generator: same answer, stats carried back, stop honoured."""
    from PIL import Image

    from backend.models.engine import GenerationStats, PromptMessage
    from backend.models.zerogpu import ZeroGPUEngine, wrap

    assert wrap(gemma_engine) is gemma_engine  # not on ZeroGPU: unchanged
    image = Image.open(corpus / "images" / "easy_korean.png").convert("RGB")
    messages = [PromptMessage("system", "Answer in Korean."),
                PromptMessage("user", "이 그림에 뭐라고 쓰여 있나요?", images=[image],
                              audio=[np.zeros(16000, dtype=np.float32)])]
    # ZeroGPU pickles the worker's arguments: they must survive it.
    again = pickle.loads(pickle.dumps((messages, 6)))
    assert again[0][1].images[0].size == image.size and again[1] == 6

    direct = "".join(gemma_engine.stream(messages, CancelScope(), 6))
    engine = ZeroGPUEngine(gemma_engine)
    assert engine.name == gemma_engine.name and engine.loaded and engine.accepts_images
    stats = GenerationStats()
    assert "".join(engine.stream(messages, CancelScope(), 6, stats)) == direct
    assert stats.new_tokens == 6 and stats.prompt_tokens > 0 and not stats.stopped

    stop = CancelScope()
    stats = GenerationStats()
    pieces = []
    for delta in engine.stream(messages, stop, 200, stats):
        pieces.append(delta)
        stop.cancel()
    assert len(pieces) == 1 and stats.stopped and stats.new_tokens < 200
    # The worker's generation really ended: the device is free for the next answer.
    assert "".join(engine.stream(messages, CancelScope(), 6)) == direct


def test_beside_llama_cpp_idle_openmp_threads_sleep_before_any_model_library_loads():
    # Read once, when each OpenMP runtime loads: it must be in place before Whisper or llama.cpp.
    probe = ("import os, sys\nimport app.server\n"
             "app.server.serve = lambda settings: print(os.environ.get('OMP_WAIT_POLICY'), "
             "sorted(m for m in ('torch', 'ctranslate2', 'llama_cpp', 'onnxruntime') if m in sys.modules)) or 0\n"
             "from app.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}

    def policy(*argv: str, **extra: str) -> str:
        out = subprocess.run([sys.executable, "-c", probe, *argv], cwd=REPO, env={**env, **extra},
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    assert policy("--engine", "llamacpp", "--model", "m.gguf") == "PASSIVE []"
    assert policy("--engine", "llamacpp", "--model", "m.gguf", OMP_WAIT_POLICY="ACTIVE") == "ACTIVE []"  # the user's
    assert policy() == "None []"  # transformers keeps OpenMP's default
