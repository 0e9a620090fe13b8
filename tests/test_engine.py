"""The engine loads the real architectures through the app's own code, streams, and stops."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PIL import Image

from backend.cancel import CancelScope
from backend.errors import ModelUnavailableError
from backend.models.engine import (
    SKIP_MODULES,
    GenerationStats,
    LocalEngine,
    PromptMessage,
    bnb_config,
    choose_cpu_dtype,
    cpu_has_fast_bf16,
    default_model,
)


def _image(corpus, name="easy_french.jpg"):
    return Image.open(corpus / "images" / name).convert("RGB")


def test_defaults_follow_the_device():
    assert default_model("cuda") == "google/gemma-4-E4B-it"
    assert default_model("cpu") == "google/gemma-4-E2B-it"
    engine = LocalEngine(device="cpu")
    assert engine.model_id == "google/gemma-4-E2B-it"
    assert not engine.use_4bit(), "4-bit on CPU is slower than fp32: not the default there"
    assert LocalEngine(device="cuda").use_4bit()


def test_4bit_config_keeps_towers_and_heads_unquantized():
    import torch

    config = bnb_config("gemma4")
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4"
    assert config.bnb_4bit_compute_dtype == torch.bfloat16
    # bitsandbytes anchors skip patterns at the start of the module path
    assert config.llm_int8_skip_modules == [
        "lm_head", "model.vision_tower", "model.embed_vision", "model.audio_tower", "model.embed_audio",
    ]
    qwen = bnb_config("qwen2_5_omni").llm_int8_skip_modules
    assert "lm_head" in qwen and "thinker.lm_head" in qwen and "thinker.model.visual" in qwen
    assert "talker" in qwen and "token2wav" in qwen
    for family, skips in SKIP_MODULES.items():
        assert "lm_head" in skips, f"{family}: an explicit list drops the automatic lm_head exclusion"


def test_nf4_load_quantizes_the_language_model_only(tiny_gemma):
    import bitsandbytes as bnb

    engine = LocalEngine(str(tiny_gemma), device="cpu", quantization="nf4")
    engine.load()
    quantized = [name for name, m in engine.model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantized, "no layer was quantized"
    assert all(name.startswith("model.language_model.") for name in quantized)
    answer = "".join(engine.stream([PromptMessage("user", "hello")], CancelScope(), max_new_tokens=4))
    assert isinstance(answer, str)
    engine.close()


def test_cpu_dtype_choice_follows_the_hardware_and_memory():
    assert choose_cpu_dtype(300_000_000, memory_bytes=24 * 2**30, fast_bf16=False) == "float32"
    assert choose_cpu_dtype(5_100_000_000, memory_bytes=24 * 2**30, fast_bf16=False) == "bfloat16"
    assert choose_cpu_dtype(300_000_000, memory_bytes=24 * 2**30, fast_bf16=True) == "bfloat16"
    assert cpu_has_fast_bf16("flags : fpu avx512f avx512_bf16 amx_tile") and not cpu_has_fast_bf16("flags : avx2")


@pytest.mark.parametrize("family", ["gemma", "qwen"])
def test_generates_from_text_and_images(family, tiny_gemma, tiny_qwen, corpus):
    path = tiny_gemma if family == "gemma" else tiny_qwen
    engine = LocalEngine(str(path), device="cpu")
    engine.load()
    assert engine.accepts_images and engine.accepts_audio
    images = [_image(corpus), _image(corpus, "rapid_el_rec.jpg")]
    messages = [
        PromptMessage("system", "Answer in Greek."),
        PromptMessage("user", "Τι γράφει;", images=images),
    ]
    inputs = engine.encode(messages)
    assert "pixel_values" in inputs
    stats = GenerationStats()
    deltas = list(engine.stream(messages, CancelScope(), max_new_tokens=12, stats=stats))
    assert stats.new_tokens == 12 and stats.prompt_tokens > 20
    assert stats.first_token_s is not None and not stats.stopped
    assert "".join(deltas)


def test_audio_goes_to_the_model_natively(gemma_engine):
    clip = (0.1 * np.sin(np.linspace(0, 2000, 32000))).astype(np.float32)
    inputs = gemma_engine.encode([PromptMessage("user", "What is this sound?", audio=[clip])])
    assert "input_features" in inputs


def test_streams_in_several_pieces(gemma_engine):
    messages = [PromptMessage("user", "Tell me a story")]
    pieces = list(gemma_engine.stream(messages, CancelScope(), max_new_tokens=60))
    assert len(pieces) > 1


def test_stop_ends_generation_within_a_decode_step(gemma_engine):
    stop = CancelScope()
    stats = GenerationStats()
    seen_at_stop = None
    for _ in gemma_engine.stream([PromptMessage("user", "Count")], stop, max_new_tokens=1500, stats=stats):
        if seen_at_stop is None and stats.new_tokens >= 5:
            stop.cancel()
            seen_at_stop = stats.new_tokens
    assert stats.stopped
    # the criterion is checked after every token: at most the token in flight follows
    assert stats.new_tokens <= seen_at_stop + 2, (seen_at_stop, stats.new_tokens)


def test_stop_from_another_thread(gemma_engine):
    stop = CancelScope()
    stats = GenerationStats()
    timer = threading.Timer(0.2, stop.cancel)
    timer.start()
    started = time.perf_counter()
    list(gemma_engine.stream([PromptMessage("user", "Count")], stop, max_new_tokens=1500, stats=stats))
    assert stats.stopped and stats.new_tokens < 1500
    assert time.perf_counter() - started < 60


def test_abandoned_stream_does_not_leave_generation_running(gemma_engine):
    stop = CancelScope()
    stream = gemma_engine.stream([PromptMessage("user", "Count")], stop, max_new_tokens=1500)
    next(stream)
    stream.close()  # the consumer walks away
    assert not any(t.name == "omnilingo-generate" and t.is_alive() for t in threading.enumerate())


def test_long_history_is_shortened_to_fit(tiny_gemma):
    engine = LocalEngine(str(tiny_gemma), device="cpu", max_context_tokens=600)
    engine.load()
    messages = [PromptMessage("system", "Be brief.")]
    for i in range(12):
        messages += [PromptMessage("user", f"question {i} " * 10), PromptMessage("assistant", "answer " * 10)]
    messages.append(PromptMessage("user", "last question"))
    stats = GenerationStats()
    list(engine.stream(messages, CancelScope(), max_new_tokens=8, stats=stats))
    assert stats.truncated_history > 0
    assert stats.prompt_tokens <= 600


@pytest.mark.parametrize("model", ["google/gemma-4-not-a-model", "/nonexistent/folder/model"])
def test_missing_weights_say_what_and_where(model):
    with pytest.raises(ModelUnavailableError) as info:
        LocalEngine(model, device="cpu").load()
    message = info.value.message
    assert model in message and "--model" in message
    assert "Traceback" not in message


def test_corrupt_weights_give_a_plain_message(tiny_gemma, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_gemma, broken)
    for weights in broken.glob("*.safetensors"):
        weights.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelUnavailableError) as info:
        LocalEngine(str(broken), device="cpu").load()
    assert str(broken) in info.value.message


def test_each_engine_declares_how_many_answers_it_runs_at_once(tmp_path):
    from backend.models.remote import RemoteEngine
    from backend.models.zerogpu import ZeroGPUEngine
    from backend.runtime import Runtime
    from backend.settings import Settings

    def runtime_for(engine) -> int:
        runtime = Runtime(Settings(asr_model="off", tts_engine="off", concurrency=8), engine=engine)
        try:
            return runtime.model_concurrency
        finally:
            runtime.close()

    local = LocalEngine(str(tmp_path), device="cpu")
    assert runtime_for(local) == 1  # one generate() at a time per device
    # A lent ZeroGPU worker runs one answer at a time, although the engine is not a LocalEngine.
    assert runtime_for(ZeroGPUEngine(local)) == 1
    assert runtime_for(RemoteEngine("http://127.0.0.1:9/v1", model="m", concurrency=8)) == 8


def test_a_download_cut_off_is_worth_trying_again(tmp_path, monkeypatch):
    import httpx
    import huggingface_hub
    import transformers
    from huggingface_hub import constants

    from backend.runtime import TRANSIENT_LOAD_ERRORS

    def cut_off(*args, **kwargs):
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    def not_in_cache(*args, **kwargs):
        raise OSError("not in the cache")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", cut_off)
    # Nothing here may reach the network: what from_pretrained finds is what the cut download left.
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", not_in_cache)
    engine = LocalEngine("someone/not-downloaded-yet", device="cpu")
    with pytest.raises(ModelUnavailableError) as caught:
        engine.load()
    assert caught.value.key == "model.download_failed" and caught.value.key in TRANSIENT_LOAD_ERRORS
    assert "cut off" in caught.value.message
