"""The llama.cpp engine (--engine llamacpp): picking GGUF files, the message when the package is
missing, and a real trained model (SmolLM2-135M-Instruct, GGUF) through the launched app."""

from __future__ import annotations

import importlib.util
import sys
import time

import pytest

from backend.cancel import CancelScope
from backend.models.engine import GenerationStats, PromptMessage
from backend.models.llamacpp import _hub_reference, pick_weights
from tests.test_real_model import conversation_with, readable, stop_ends_a_real_answer

HAVE_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None
needs_llama_cpp = pytest.mark.skipif(
    not HAVE_LLAMA_CPP, reason='llama-cpp-python is not installed (pip install "omnilingo[llamacpp]")'
)
# One thread: llama.cpp's threads wait for each other at every step, so on CPUs shared with other
# jobs (CI) two threads can be many times slower than one.
THREADS = 1
# Enough for a sentence, and short enough that an answer Stop misses is still a quick failure.
MAX_NEW_TOKENS = 40


# -- choosing the files ------------------------------------------------------------------
def test_a_repository_of_quantizations_gives_the_4bit_model_and_its_projector():
    names = [
        "README.md", "gemma-4-E2B-it-BF16.gguf", "gemma-4-E2B-it-Q8_0.gguf", "gemma-4-E2B-it-Q4_K_M.gguf",
        "gemma-4-E2B-it-Q4_K_S.gguf", "mmproj-BF16.gguf", "mmproj-F16.gguf", "mmproj-F32.gguf",
    ]
    assert pick_weights(names) == ("gemma-4-E2B-it-Q4_K_M.gguf", "mmproj-F16.gguf")


def test_a_split_model_loads_from_its_first_shard_and_a_lone_file_is_taken_as_is():
    shards = [f"big-Q4_K_M-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    assert pick_weights(shards) == ("big-Q4_K_M-00001-of-00003.gguf", None)
    assert pick_weights(["SmolLM2-135M-Instruct.Q4_1.gguf", "notes.txt"]) == ("SmolLM2-135M-Instruct.Q4_1.gguf", None)
    assert pick_weights(["mmproj-model-f16.gguf"]) == (None, "mmproj-model-f16.gguf")


def test_hub_references_and_paths_are_told_apart():
    assert _hub_reference("unsloth/gemma-4-E2B-it-GGUF") == ("unsloth/gemma-4-E2B-it-GGUF", None)
    assert _hub_reference("org/repo/sub/model-Q4_K_M.gguf") == ("org/repo", "sub/model-Q4_K_M.gguf")
    assert _hub_reference("/models/x.gguf") is None and _hub_reference("./a/b") is None
    assert _hub_reference("model.gguf") is None and _hub_reference("org/repo/readme.md") is None


# -- the package missing -----------------------------------------------------------------
def test_without_llama_cpp_the_app_starts_and_says_how_to_install_it(monkeypatch, tmp_path):
    from backend.runtime import Runtime
    from backend.settings import Settings

    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp now raises ImportError
    runtime = Runtime(Settings(model=str(model), engine="llamacpp", device="cpu", asr_model="off",
                               tts_engine="off"))
    try:
        status = runtime.wait_until_loaded(30)
        assert status.state == "failed" and status.key == "model.llamacpp_missing"
        assert 'pip install "omnilingo[llamacpp]"' in status.message and "compiler" in status.message
    finally:
        runtime.close()


def test_a_missing_model_file_is_named_in_the_message(tmp_path):
    from backend.errors import ModelUnavailableError
    from backend.models.llamacpp import LlamaCppEngine

    missing = tmp_path / "nothing-here.gguf"
    with pytest.raises(ModelUnavailableError) as info:
        LlamaCppEngine(str(missing)).locate(lambda _: None)
    assert str(missing) in info.value.message and "--model" in info.value.message


# -- a real trained model ------------------------------------------------------------------
@pytest.fixture(scope="module")
def app(smollm2):
    from tests.test_app import _launch

    demo, runtime, url = _launch(str(smollm2), engine="llamacpp", threads=THREADS,
                                 max_new_tokens=MAX_NEW_TOKENS, asr_model="off", tts_engine="off")
    status = runtime.wait_until_loaded(300)
    assert status.state == "ready", status.message
    yield runtime, url
    demo.close()
    runtime.close()


@pytest.fixture()
def client(app):
    from gradio_client import Client

    return Client(app[1], verbose=False)


@pytest.mark.real
@pytest.mark.slow
@needs_llama_cpp
def test_a_real_answer_streams_and_is_readable(app, client):
    question = "What is the capital of France?"
    client.predict({"text": question, "files": []}, "auto", api_name="/send_message")
    job = client.submit(False, api_name="/stream_answer")
    job.result()
    turn = conversation_with(app[0], question).turns[-1]
    assert turn.status == "done", turn.error
    assert "Paris" in turn.answer and readable(turn.answer), turn.answer
    assert len(job.outputs()) >= 3, "the answer arrived in one piece instead of streaming"
    assert turn.stats.prompt_tokens > 10 and 0 < turn.stats.new_tokens <= MAX_NEW_TOKENS
    assert turn.answer_language == "en" and not turn.language_mismatch
    assert not app[0].engine.accepts_images and not app[0].engine.accepts_audio


@pytest.mark.real
@pytest.mark.slow
@needs_llama_cpp
@pytest.mark.parametrize("how", ["stop", "barge_in"])
def test_stop_and_barge_in_end_a_real_answer(app, client, how):
    question = f"Write a long story about a brave knight who meets a dragon ({how})."
    stop_ends_a_real_answer(app, client, how, question, MAX_NEW_TOKENS)


@pytest.mark.real
@pytest.mark.slow
@needs_llama_cpp
def test_an_answer_in_another_language_is_flagged(app, client):
    question = "フランスの首都はどこですか？"  # "What is the capital of France?"; the 135M model answers in English
    client.predict({"text": question, "files": []}, "auto", api_name="/send_message")
    client.submit(False, api_name="/stream_answer").result()
    turn = conversation_with(app[0], question).turns[-1]
    assert turn.language.tag == "ja" and turn.answer_language == "ja" and turn.status == "done"
    assert turn.answer_guess.tag != "ja" and turn.language_mismatch, turn.answer


@pytest.mark.real
@needs_llama_cpp
def test_a_long_history_is_cut_to_the_context_and_stop_is_heard_within_a_token(smollm2):
    from backend.models.llamacpp import LlamaCppEngine

    engine = LlamaCppEngine(str(smollm2), device="cpu", max_context_tokens=512, threads=THREADS)
    engine.load()
    try:
        history = [PromptMessage("system", "You are a helpful assistant.")]
        for i in range(12):
            history += [PromptMessage("user", f"Tell me fact number {i} about the sea, in detail please."),
                        PromptMessage("assistant", "The sea is large, salty and deep. " * 4)]
        history.append(PromptMessage("user", "What is the capital of France?"))
        stats = GenerationStats()
        answer = "".join(engine.stream(history, CancelScope(), 24, stats))
        assert stats.truncated_history > 0 and stats.prompt_tokens <= 512 - 24
        assert "Paris" in answer

        stop = CancelScope()
        stats = GenerationStats()
        pieces, decoded_at_stop = [], None
        for delta in engine.stream([PromptMessage("user", "Count from one to one hundred in words.")], stop, 200,
                                   stats):
            pieces.append(delta)
            if len(pieces) == 3:
                decoded_at_stop = stats.new_tokens
                stop.cancel()
        time.sleep(0.3)
        assert stats.stopped and len(pieces) == 3
        assert stats.new_tokens <= decoded_at_stop + 1, "decoding went on after Stop"
    finally:
        engine.close()


# -- pictures and sound through the projector (a tiny random Gemma 4, converted by llama.cpp) ---------
@pytest.fixture(scope="module")
def tiny_gemma_gguf(tmp_path_factory):
    import os
    from pathlib import Path

    from tests import tiny_models

    source = Path(os.environ.get("OMNILINGO_LLAMA_CPP_SRC", "/nonexistent"))
    if not (source / "convert_hf_to_gguf.py").is_file():
        pytest.skip("llama.cpp's converter was not found: set OMNILINGO_LLAMA_CPP_SRC to a llama.cpp source tree "
                    "(.ci/run unpacks the one in the llama-cpp-python sdist)")
    return tiny_models.build_gemma4_gguf(tmp_path_factory.mktemp("tiny-gguf"), source)


def _picture():
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8), "RGB")


def _tone(seconds: float = 2.0):
    import numpy as np

    t = np.arange(int(seconds * 16000)) / 16000
    return (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


@needs_llama_cpp
def test_pictures_and_sound_go_through_the_projector(tiny_gemma_gguf):
    from backend.models.llamacpp import LlamaCppEngine

    engine = LlamaCppEngine(str(tiny_gemma_gguf), device="cpu", threads=THREADS)
    engine.load()
    try:
        assert engine.accepts_images and engine.accepts_audio
        assert engine.mmproj_path.name == "mmproj-tiny-gemma4-F16.gguf"  # found beside the model
        text = [PromptMessage("user", "what is this")]
        picture = [PromptMessage("user", "what is this", images=[_picture()])]
        sound = [PromptMessage("user", "what is this", audio=[_tone()])]
        both = [PromptMessage("user", "what is this", images=[_picture()], audio=[_tone()])]
        counts = {name: engine.count_tokens(m) for name, m in
                  {"text": text, "picture": picture, "sound": sound, "both": both}.items()}
        # each picture and clip becomes the projector's embeddings between its begin and end tokens
        assert counts["picture"] > counts["text"] + 10 and counts["sound"] > counts["text"] + 10
        assert counts["both"] - counts["text"] == (counts["picture"] - counts["text"]) + (counts["sound"] - counts["text"])
        for name, messages in {"picture": picture, "sound": sound, "both": both, "text": text}.items():
            stats = GenerationStats()
            list(engine.stream(messages, CancelScope(), 6, stats))
            assert stats.prompt_tokens == counts[name] and stats.new_tokens >= 1, name
    finally:
        engine.close()


@pytest.mark.slow
@needs_llama_cpp
def test_the_app_answers_a_picture_and_a_recording_with_the_gguf_model(tiny_gemma_gguf, tmp_path):
    import soundfile as sf
    from gradio_client import Client, handle_file

    from tests.test_app import _launch

    _picture().save(tmp_path / "photo.png")
    sf.write(tmp_path / "hello.wav", _tone(), 16000)
    demo, runtime, url = _launch(str(tiny_gemma_gguf), engine="llamacpp", threads=THREADS, max_new_tokens=6,
                                 asr_model="off", tts_engine="off")
    try:
        assert runtime.wait_until_loaded(120).state == "ready"
        client = Client(url, verbose=False)
        result = client.predict("Τι δείχνει αυτή η εικόνα;", [handle_file(str(tmp_path / "photo.png"))], "auto",
                                api_name="/chat")
        assert "error" not in result, result
        assert result["language"] == "el"
        result = client.predict("", [handle_file(str(tmp_path / "hello.wav"))], "auto", api_name="/chat")
        assert "error" not in result, result
        # With no speech recognition, the model itself hears the recording through its projector.
        conversation = runtime.new_conversation()
        turn = conversation.add(conversation.prepare("", [str(tmp_path / "hello.wav")]))
        list(conversation.answer(turn))
        assert turn.status == "done" and "heard_by_model_only" in turn.notes
        assert turn.stats.prompt_tokens > runtime.engine.count_tokens(conversation.prompt_for(turn)[:1]) + 40
    finally:
        demo.close()
        runtime.close()


def test_a_hub_repository_downloads_the_4bit_model_and_projector_once_with_progress(monkeypatch, tmp_path):
    import io

    import huggingface_hub
    from huggingface_hub import constants

    from backend.models.llamacpp import LlamaCppEngine

    repo = "someone/gemma-4-E2B-it-GGUF"
    files = ["README.md", "gemma-4-E2B-it-Q8_0.gguf", "gemma-4-E2B-it-Q4_K_M.gguf", "mmproj-BF16.gguf",
             "mmproj-F16.gguf"]
    cache = tmp_path / "snapshot"
    asked: list[dict] = []

    def snapshot_download(repo_id, allow_patterns=None, tqdm_class=None, local_files_only=False, **kwargs):
        asked.append({"repo": repo_id, "patterns": allow_patterns, "offline": local_files_only})
        if not local_files_only:
            bar = tqdm_class(total=3 * 10**9, unit="B", file=io.StringIO())
            for name in allow_patterns:
                (cache / name).parent.mkdir(parents=True, exist_ok=True)
                (cache / name).write_bytes(b"GGUF")
                bar.update(10**9)
        return str(cache)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", lambda self, repo_id, **kw: files)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    said: list[str] = []
    model, projector = LlamaCppEngine(repo).locate(said.append)
    assert asked == [{"repo": repo, "patterns": ["gemma-4-E2B-it-Q4_K_M.gguf", "mmproj-F16.gguf"], "offline": False}]
    assert (model.name, projector.name) == ("gemma-4-E2B-it-Q4_K_M.gguf", "mmproj-F16.gguf")
    assert any(f"Downloading {repo}: 2.00 of 3.00 GB" in line for line in said), said

    # Offline later: the cached files, without asking the hub.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", lambda *a, **k: pytest.fail("hub asked offline"))
    asked.clear()
    assert LlamaCppEngine(repo).locate(said.append) == (model, projector)
    assert asked == [{"repo": repo, "patterns": None, "offline": True}]
