"""RemoteEngine against a real OpenAI-compatible server: ``transformers serve`` on loopback.

The server is transformers' own (not written here), serving a tiny random Llama whose
word-level vocabulary decodes to valid text whatever it samples. The tiny Gemma 4 is
served too, but its random byte tokens make the server's streaming decoder fail
mid-answer, so streaming behaviour is checked on the text model and the image path
by what the server accepts.
"""

from __future__ import annotations

import base64
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from backend.cancel import CancelScope
from backend.errors import GenerationError, ModelUnavailableError, UserFacingError
from backend.models.engine import GenerationStats, PromptMessage
from backend.models.remote import RemoteEngine, image_data_url, normalize_base_url
from tests.support import free_port

pytest.importorskip("openai", reason="transformers serve needs the openai package (requirements-dev.txt)")

WORDS = (
    "bonjour merci oui non le la un une et est dans avec pour sur chat chien maison soleil eau pain "
    "hello yes no the a and is in with for on cat dog house sun water bread "
    "hola gracias sí el y es en con para gato perro casa sol agua pan"
).split()



def build_tiny_text_model(out: Path) -> Path:
    """A 2-layer Llama with a word-level tokenizer: every token it samples decodes to real text."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    tokens = specials + ["▁" + w for w in WORDS]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>")
    fast.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {% if m['content'] is string %}{{ m['content'] }}"
        "{% else %}{% for p in m['content'] %}{% if p['type'] == 'text' %}{{ p['text'] }}{% endif %}"
        "{% endfor %}{% endif %}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
    )
    fast.save_pretrained(out)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                         bos_token_id=1, eos_token_id=2, pad_token_id=3)
    model = LlamaForCausalLM(config)
    # No end-of-sequence token: answers run to max_tokens, so lengths are known in advance.
    model.generation_config = GenerationConfig(bos_token_id=1, pad_token_id=3, eos_token_id=None)
    model.save_pretrained(out)
    return out


class Server:
    """``transformers serve [MODEL]`` in a subprocess on a free loopback port."""

    def __init__(self, model: Path | None, home: Path, port: int | None = None) -> None:
        self.model = str(model) if model else None
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        (home / "hub").mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"), "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1", "NO_PROXY": "*"}
        self.log = home / f"serve-{self.port}.log"
        command = [sys.executable, "-m", "transformers.cli.transformers", "serve", *([self.model] if model else []),
                   "--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu"]
        self.process = subprocess.Popen(command, env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"transformers serve exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2, trust_env=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"transformers serve did not start: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="module")
def text_model(tmp_path_factory) -> Path:
    return build_tiny_text_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def server(text_model, tmp_path_factory):
    srv = Server(text_model, tmp_path_factory.mktemp("serve-home"))
    yield srv
    srv.stop()


def _messages(text: str = "bonjour", images=()) -> list[PromptMessage]:
    return [PromptMessage("system", "Answer in French."), PromptMessage("user", text, images=list(images))]


def test_transformers_serve_cli_is_the_one_we_start():
    # The test starts the server through the same module as the `transformers` console script.
    out = subprocess.run([sys.executable, "-m", "transformers.cli.transformers", "serve", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "/v1/chat/completions" in out.stdout


@pytest.mark.slow
def test_streams_an_answer_from_the_server(server):
    engine = RemoteEngine(server.url, model=server.model)
    progress: list[str] = []
    engine.load(progress.append)
    assert engine.loaded and engine.name == server.model
    assert any(server.url in line for line in progress)
    stats = GenerationStats()
    deltas = list(engine.stream(_messages(), CancelScope(), max_new_tokens=12, stats=stats))
    answer = "".join(deltas)
    assert len(deltas) > 1, "the answer should arrive in several pieces"
    assert len(answer.split()) == 12 and set(answer.split()) <= set(WORDS)
    assert stats.new_tokens == 12 and stats.prompt_tokens > 0 and not stats.stopped
    assert stats.first_token_s is not None
    engine.close()


@pytest.mark.slow
def test_stop_closes_the_stream_early_and_the_next_answer_still_works(server):
    engine = RemoteEngine(server.url, model=server.model)
    engine.load()
    stop = CancelScope()
    stats = GenerationStats()
    received = []
    for delta in engine.stream(_messages("hello"), stop, max_new_tokens=2000, stats=stats):
        received.append(delta)
        if len(received) == 3:
            stop.cancel()
    assert len(received) == 3
    assert stats.stopped
    # The server is free again: the stopped stream was closed, not left generating 2000 tokens.
    again = list(engine.stream(_messages("merci"), CancelScope(), max_new_tokens=5))
    assert len(again) == 5
    engine.close()


@pytest.mark.slow
def test_consumer_that_walks_away_closes_the_stream(server):
    engine = RemoteEngine(server.url, model=server.model)
    engine.load()
    stream = engine.stream(_messages(), CancelScope(), max_new_tokens=2000)
    assert next(stream)
    stream.close()  # what Gradio does when the browser tab goes away
    assert len(list(engine.stream(_messages(), CancelScope(), max_new_tokens=4))) == 4
    engine.close()


@pytest.mark.slow
def test_unknown_model_is_a_clear_4xx_message(server):
    engine = RemoteEngine(server.url, model="someone/not-served", api_key="sk-secret-123")
    engine.load()  # this server lists no models, so the name is only checked by the first answer
    with pytest.raises(GenerationError) as caught:
        list(engine.stream(_messages(), CancelScope(), max_new_tokens=4))
    message = caught.value.message
    assert "HTTP 400" in message and "someone/not-served" in message and server.url in message
    assert "sk-secret-123" not in message and "sk-secret-123" not in repr(engine)


def test_connection_refused_is_a_clear_message():
    url = f"http://127.0.0.1:{free_port()}/v1"
    engine = RemoteEngine(url, model="any")
    with pytest.raises(ModelUnavailableError) as caught:
        engine.load()
    assert "Could not reach the model server" in caught.value.message and url in caught.value.message
    assert not engine.loaded
    with pytest.raises(GenerationError) as caught:
        list(engine.stream(_messages(), CancelScope(), max_new_tokens=4))
    assert "Could not reach" in caught.value.message


@pytest.mark.slow
def test_server_dying_mid_answer_is_a_clear_message(text_model, tmp_path):
    srv = Server(text_model, tmp_path / "home")
    try:
        engine = RemoteEngine(srv.url, model=srv.model)
        engine.load()
        received = []
        with pytest.raises(GenerationError) as caught:
            for delta in engine.stream(_messages(), CancelScope(), max_new_tokens=3000):
                received.append(delta)
                if len(received) == 1:
                    srv.kill()
        assert received, "the answer had started"
        assert "broke while it was answering" in caught.value.message
        assert caught.value.key == "remote.disconnected"
    finally:
        srv.stop()


@pytest.mark.slow
def test_load_picks_the_served_model_and_refuses_others(tiny_gemma, tmp_path):
    # A server that lists its models: the hub cache holds a (tiny) Gemma 4 snapshot.
    home = tmp_path / "home"
    snapshot = home / "hub" / "models--tiny--gemma4" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for f in Path(tiny_gemma).iterdir():
        (snapshot / f.name).symlink_to(f)
    (home / "hub" / "models--tiny--gemma4" / "refs").mkdir()
    (home / "hub" / "models--tiny--gemma4" / "refs" / "main").write_text("0" * 40)
    srv = Server(None, home)  # not pinned: it serves what its cache holds
    try:
        engine = RemoteEngine(srv.url)
        engine.load()
        assert "tiny/gemma4" in engine.served_models and engine.name == engine.served_models[0]
        with pytest.raises(ModelUnavailableError) as caught:
            RemoteEngine(srv.url, model="someone/else").load()
        assert "does not serve someone/else" in caught.value.message and "tiny/gemma4" in caught.value.message
        # Images go as data URLs; the server decodes them into the prompt and starts answering.
        from PIL import Image

        picture = Image.new("RGB", (64, 48), (200, 10, 10))
        stream = engine.stream(_messages("Que vois-tu ?", [picture]), CancelScope(), max_new_tokens=1)
        try:
            first = next(stream)
        except GenerationError as err:  # random byte tokens may break the server's decoder, never the request
            assert "failed while answering" in err.message
        else:
            assert isinstance(first, str)
        stream.close()
    finally:
        srv.stop()


def test_images_travel_as_data_urls():
    from PIL import Image

    picture = Image.new("RGB", (40, 30), (10, 120, 200))
    url = image_data_url(picture)
    assert url.startswith("data:image/jpeg;base64,")
    back = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert back.size == (40, 30)
    transparent = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert image_data_url(transparent).startswith("data:image/png;base64,")
    engine = RemoteEngine("http://127.0.0.1:9", model="m")
    body = engine.payload(_messages("what is this?", [picture]), 7)
    user = body["messages"][1]["content"]
    assert [part["type"] for part in user] == ["image_url", "text"] and body["max_tokens"] == 7
    assert body["messages"][0] == {"role": "system", "content": "Answer in French."}


@pytest.mark.parametrize(("given", "expected"), [
    ("http://h:8000", "http://h:8000/v1"), ("http://h:8000/v1/", "http://h:8000/v1"),
    ("https://api.example/openai/v1", "https://api.example/openai/v1"),
])
def test_base_url_forms(given, expected):
    assert normalize_base_url(given) == expected


def test_missing_or_bad_url_says_what_to_pass():
    with pytest.raises(ModelUnavailableError, match="--base-url"):
        RemoteEngine(None)
    with pytest.raises(ModelUnavailableError, match="not an http"):
        RemoteEngine("localhost:8000")


def test_app_started_before_its_model_server_connects_once_the_server_is_up(text_model, tmp_path):
    """Starting the app first and the model server second must not leave "model not available" for good."""
    from backend.runtime import Runtime
    from backend.settings import Settings

    port = free_port()
    settings = Settings(engine="openai", base_url=f"http://127.0.0.1:{port}/v1", model=str(text_model),
                        asr_model="off", tts_engine="off", max_new_tokens=8)
    patient = Runtime(settings)  # retries on its own, quickly
    patient.retry_first_s, patient.retry_max_s = 0.2, 0.5
    waiting = Runtime(settings)  # its next attempt is far away: only a message brings it forward
    waiting.retry_first_s = waiting.retry_max_s = 3600
    srv = None
    try:
        for runtime in (patient, waiting):
            status = runtime.wait_until_loaded(30)
            assert status.state == "retrying" and status.waiting
            assert "Could not reach the model server" in status.message and "Trying again in" in status.message
        with pytest.raises(UserFacingError) as caught:
            waiting.require_model()  # a message while the server is still down: a plain answer, no hang
        assert caught.value.key == "model.retrying" and "Trying again in" in caught.value.message

        srv = Server(text_model, tmp_path / "home", port=port)
        deadline = time.monotonic() + 60
        while patient.status().state != "ready" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert patient.status().state == "ready"
        assert waiting.status().state == "retrying"
        waiting.require_model()  # a message arrives: tried again at once, and it works
        assert waiting.status().state == "ready"
        conversation = waiting.new_conversation()
        turn = conversation.add(conversation.prepare("Bonjour, comment allez-vous ?"))
        assert "".join(conversation.answer(turn)) and turn.status == "done"
    finally:
        patient.close()
        waiting.close()
        if srv is not None:
            srv.stop()


@pytest.fixture(scope="module")
def smollm2_folder(smollm2, tmp_path_factory) -> Path:
    """The real GGUF model's weights saved as a plain transformers folder: transformers serve 5.23 picks
    the model class from config.architectures, which a config read from a GGUF file lacks, and a model
    loaded from GGUF cannot be saved as it is, so its weights go into a fresh model of the same config."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = next(smollm2.glob("*.gguf")).name
    out = tmp_path_factory.mktemp("smollm2-transformers")
    AutoTokenizer.from_pretrained(smollm2, gguf_file=gguf).save_pretrained(out)
    loaded = AutoModelForCausalLM.from_pretrained(smollm2, gguf_file=gguf, dtype=torch.bfloat16)
    config = AutoConfig.from_pretrained(smollm2, gguf_file=gguf)
    config.architectures = [type(loaded).__name__]
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)  # tied to the embeddings
    fresh.generation_config = loaded.generation_config
    fresh.save_pretrained(out)
    return out


@pytest.mark.real
@pytest.mark.slow
def test_a_served_real_model_streams_readable_text(smollm2_folder, tmp_path):
    srv = Server(smollm2_folder, tmp_path / "home")
    try:
        engine = RemoteEngine(srv.url, model=srv.model)
        engine.load()
        from backend.conversation.turns import system_prompt

        # The app's own prompt: a 135M model's answer turns on every word of it.
        messages = [PromptMessage("system", system_prompt("en")), PromptMessage("user", "What is the capital of France?")]
        stats = GenerationStats()
        deltas = list(engine.stream(messages, CancelScope(), max_new_tokens=24, stats=stats))
        answer = "".join(deltas)
        assert len(deltas) > 1, "the answer should arrive in several pieces"
        assert "Paris" in answer and "\ufffd" not in answer and len(answer.split()) >= 3
        assert not stats.stopped
    finally:
        srv.stop()
