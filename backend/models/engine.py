"""The chat model: load it, build its prompt, stream its answer, stop it.

One engine interface, three kinds behind it: ``LocalEngine`` runs a model with
transformers (4-bit nf4 through bitsandbytes on CUDA, fp32/bf16 on CPU),
``backend.models.llamacpp.LlamaCppEngine`` runs GGUF weights with llama.cpp, and
``backend.models.remote.RemoteEngine`` talks to an OpenAI-compatible server.
``LocalEngine`` runs omni models (text, pictures, sound) and text-only chat models,
including a single GGUF file; the config decides which.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from backend.cancel import CancelScope
from backend.errors import GenerationError, ModelUnavailableError
from backend.streams import ThreadStream

log = logging.getLogger(__name__)

DEFAULT_MODELS = {"cuda": "google/gemma-4-E4B-it", "cpu": "google/gemma-4-E2B-it"}

# bitsandbytes anchors skip patterns at the start of the module path ("vision_tower" does not
# skip "model.vision_tower.*"), and any explicit list replaces its automatic lm_head exclusion.
SKIP_MODULES = {
    "gemma4": ["lm_head", "model.vision_tower", "model.embed_vision", "model.audio_tower", "model.embed_audio"],
    "qwen2_5_omni": [
        "lm_head", "thinker.lm_head", "thinker.model.visual", "thinker.model.audio_tower", "talker", "token2wav",
    ],
    "qwen2_5_omni_thinker": ["lm_head", "model.visual", "model.audio_tower"],
}
# Families whose processor takes audio next to images and text (Gemma 4 E2B/E4B, Qwen2.5-Omni).
AUDIO_FAMILIES = {"gemma4", "qwen2_5_omni", "qwen2_5_omni_thinker"}
# Families that take a video's frames as one video: measured with bench/turn.py, 8 frames cost 618
# instead of 2,215 prompt tokens on Gemma 4's processor, 1,612 instead of 3,218 on Qwen2.5-Omni's.
VIDEO_FAMILIES = AUDIO_FAMILIES
MAX_NATIVE_AUDIO_S = 30.0
GGUF_SUFFIX = ".gguf"


@dataclass
class PromptMessage:
    """One message as the model sees it. Images are RGB PIL images; audio is 16 kHz mono float32."""

    role: str  # "system" | "user" | "assistant"
    text: str = ""
    images: list[Any] = field(default_factory=list)
    audio: list[np.ndarray] = field(default_factory=list)
    # The last ``video_frames`` images are frames of one video, taken at ``video_times`` seconds. A model
    # whose processor and chat template take video gets them as one (a shorter prompt); others, as pictures.
    video_frames: int = 0
    video_times: list[float] = field(default_factory=list)


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    new_tokens: int = 0
    first_token_s: float | None = None
    total_s: float = 0.0
    stopped: bool = False
    truncated_history: int = 0  # older messages left out to fit the context
    cached_tokens: int = 0  # prompt tokens taken from the last answer's KV cache, not prefilled again


class Engine(Protocol):
    name: str
    accepts_images: bool
    accepts_audio: bool
    # Answers this engine generates at once: the UI queues the rest.
    concurrency: int

    def load(self, progress: Callable[[str], None] | None = None) -> None: ...

    def stream(
        self, messages: list[PromptMessage], scope: CancelScope, max_new_tokens: int = 512,
        stats: GenerationStats | None = None,
    ) -> Iterator[str]: ...

    def close(self) -> None: ...


def resolve_device(device: str = "auto") -> str:
    if device != "auto":
        return device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:  # torch missing or broken CUDA: the CPU still works
        return "cpu"


def default_model(device: str) -> str:
    return DEFAULT_MODELS["cuda" if device.startswith("cuda") else "cpu"]


def model_family(config: Any) -> str:
    return getattr(config, "model_type", "unknown")


def bnb_config(family: str):
    """The 4-bit nf4 config for a model family, towers and heads kept in bf16."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        # fp16 compute gives empty output on Gemma
        bnb_4bit_compute_dtype=torch.bfloat16,
        llm_int8_skip_modules=list(SKIP_MODULES.get(family, ["lm_head"])),
    )


def total_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 * 2**30


def cpu_has_fast_bf16(cpuinfo: str | None = None) -> bool:
    """AVX-512 BF16 or AMX: bf16 matmuls run natively instead of being emulated."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="ignore")
        except OSError:
            return False
    flags = set(cpuinfo.split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def choose_cpu_dtype(n_params: int, memory_bytes: int | None = None, fast_bf16: bool | None = None) -> str:
    """The CPU dtype from measured figures (README, bench/model.py): where the CPU has native bf16,
    bf16 decodes about 4x faster than fp32 at half the memory; elsewhere bf16 is emulated and fp32 is
    faster, as long as it fits in about 60 % of memory (a 5 B-parameter model takes 20 GB in fp32)."""
    if fast_bf16 is None:
        fast_bf16 = cpu_has_fast_bf16()
    if fast_bf16:
        return "bfloat16"
    memory_bytes = memory_bytes or total_memory_bytes()
    return "float32" if n_params * 4 < 0.6 * memory_bytes else "bfloat16"


class _StopWhen:
    """A StoppingCriteria that ends generate() within one decode step of ``stopping()`` turning true."""

    def __init__(self, stopping: Callable[[], bool]) -> None:
        self.stopping = stopping

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        return torch.full((input_ids.shape[0],), self.stopping(), dtype=torch.bool, device=input_ids.device)


def _is_network_failure(err: BaseException) -> bool:
    """A connection refused, dropped or timed out (not a missing or gated repository)."""
    import httpx

    cause: BaseException | None = err
    for _ in range(8):  # the error and what caused it
        if cause is None:
            return False
        if isinstance(cause, ConnectionError | TimeoutError | httpx.TransportError):
            return True
        if type(cause).__name__ in {"ConnectionError", "ChunkedEncodingError", "ReadTimeout", "IncompleteRead"}:
            return True  # requests' and http.client's, without importing them
        cause = cause.__cause__ or cause.__context__
    return False


def locate_weights(model: str) -> tuple[str, str | None]:
    """(what from_pretrained reads, the GGUF file name in it or None).

    ``--model`` may name a hub id, a folder with config.json, a .gguf file, or a folder
    holding exactly one .gguf file (and no config.json)."""
    path = Path(model).expanduser()
    if path.is_file() and path.suffix.lower() == GGUF_SUFFIX:
        return str(path.parent), path.name
    if path.is_dir() and not (path / "config.json").exists():
        found = sorted(p.name for p in path.iterdir() if p.suffix.lower() == GGUF_SUFFIX and p.is_file())
        if len(found) == 1:
            return str(path), found[0]
        if len(found) > 1:
            raise ModelUnavailableError(
                f"The folder {path} holds several GGUF files ({', '.join(found)}): pass the one to use, "
                f"as --model {path / found[0]}.",
                key="model.several_gguf", model=model, files=", ".join(found),
            )
    return model, None


def model_kind(config: Any) -> str:
    """"multimodal" (text, pictures, maybe sound) or "text", from the config's type alone (no remote code)."""
    from transformers.models.auto import modeling_auto

    family = model_family(config)
    if family in modeling_auto.MODEL_FOR_MULTIMODAL_LM_MAPPING_NAMES:
        return "multimodal"
    if family in modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "text"
    raise ValueError(f"{family} is neither a chat model nor a multimodal model transformers knows")


def _missing_weights_message(model: str, err: Exception) -> ModelUnavailableError:
    from huggingface_hub import constants

    local = Path(model).expanduser()
    if not isinstance(err, OSError):
        return ModelUnavailableError(
            f"The model {model} was found but could not be loaded: its files look damaged or it is not an "
            f"architecture Omnilingo can run ({type(err).__name__}). Pass another model with --model.",
            key="model.broken", model=model,
        )
    if local.exists():
        where = f"the local folder {local}"
        hint = "Check that it holds config.json, the weights and the processor files."
    else:
        where = f"the Hugging Face hub and the cache at {constants.HF_HUB_CACHE}"
        hint = "Connect to the internet once to download it, or pass a local copy with --model PATH."
    return ModelUnavailableError(
        f"The model {model} could not be loaded: it was not found in {where}. {hint} ({type(err).__name__})",
        key="model.unavailable", model=model, where=where,
    )


def hub_progress(model_id: str, report: Callable[[str], None]):
    """A tqdm class for huggingface_hub downloads that reports the bytes fetched, for the page to show."""
    from tqdm.auto import tqdm

    class Progress(tqdm):
        def update(self, n=1):
            shown = super().update(n)
            if self.unit == "B" and self.total:
                report(f"Downloading {model_id}: {self.n / 1e9:.2f} of {self.total / 1e9:.2f} GB")
            return shown

    return Progress


def fit_to_context(
    messages: list[PromptMessage], count_tokens: Callable[[list[PromptMessage]], int], context: int,
    max_new_tokens: int,
) -> tuple[list[PromptMessage], int]:
    """Drop the oldest turns (never the system prompt or the last user message) until the prompt fits
    ``context`` with room for the answer; returns the messages kept and how many were left out."""
    budget = context - min(max_new_tokens, context // 2)
    system = [m for m in messages if m.role == "system"]
    rest = [m for m in messages if m.role != "system"]
    dropped = 0
    while True:
        candidate = system + rest
        length = count_tokens(candidate)
        if length <= budget or len(rest) <= 1:
            if length > budget:
                raise GenerationError(
                    "This message is too long for the model: shorten it or split it into parts.",
                    key="error.too_long", tokens=length, limit=budget,
                )
            return candidate, dropped
        # drop a user turn with its answer so roles keep alternating
        cut = 2 if len(rest) > 2 and rest[1].role == "assistant" else 1
        rest = rest[cut:]
        dropped += cut


# One generate() at a time per device: two at once on one GPU only thrash its memory.
_DEVICE_LOCKS: dict[str, threading.Lock] = {}
_DEVICE_LOCKS_GUARD = threading.Lock()


def device_lock(device: str) -> threading.Lock:
    with _DEVICE_LOCKS_GUARD:
        return _DEVICE_LOCKS.setdefault(device, threading.Lock())


class LocalEngine:
    """A chat model run in-process with transformers: an omni model (through its processor) or a
    text-only model (through its tokenizer), chosen from the model's config."""

    # One generate() at a time per device (see device_lock).
    concurrency = 1
    keeps_prompt_prefix = True  # the last prompt's KV cache serves the next prompt that starts the same

    def __init__(
        self,
        model: str | None = None,
        device: str = "auto",
        quantization: str = "auto",  # "auto" | "nf4" | "none"
        dtype: str = "auto",  # "auto" | "float32" | "bfloat16" | "float16"
        max_context_tokens: int | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        self.device = resolve_device(device)
        self.model_id = model or default_model(self.device)
        self.name = self.model_id
        self.quantization = quantization
        self.dtype = dtype
        self.trust_remote_code = trust_remote_code
        self.max_context_tokens = max_context_tokens
        self.family = "unknown"
        self.kind = "multimodal"  # or "text": the model reads text only
        self.gguf_file: str | None = None
        self.model: Any = None  # loaded by load()
        self.processor: Any = None  # an omni model's processor, or a text model's tokenizer
        self.load_seconds: float | None = None
        self.accepts_images = True
        self.accepts_audio = False
        self.accepts_video = False  # frames as one video (else as pictures)
        self._generator: Any = None  # the module whose generate() streams text
        self._download_error: Exception | None = None  # the last download's network failure
        self._prefix: _Prefix | None = None  # the last text prompt and answer, prefilled (see _reusable_cache)
        self._prefix_cacheable = False

    # -- loading ---------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self.model is not None

    def use_4bit(self) -> bool:
        if self.quantization == "nf4":
            return True
        if self.quantization == "none":
            return False
        # bitsandbytes 4-bit works on CPU but decodes 3-6x slower than fp32 there
        return self.device.startswith("cuda")

    def load(self, progress: Callable[[str], None] | None = None) -> None:
        if self.loaded:
            return
        report = progress or (lambda message: log.info(message))
        started = time.perf_counter()
        try:
            import torch
            from transformers import (
                AutoConfig,
                AutoModelForCausalLM,
                AutoModelForMultimodalLM,
                AutoProcessor,
                AutoTokenizer,
            )

            source, self.gguf_file = locate_weights(self.model_id)
            if self.gguf_file is None:
                self._download(report)
            report(f"Reading the configuration of {self.model_id}…")
            # gguf_file is only passed when there is one: a plain folder must not get the keyword.
            files = {"gguf_file": self.gguf_file} if self.gguf_file else {}
            config = AutoConfig.from_pretrained(source, trust_remote_code=self.trust_remote_code, **files)
            self.family = model_family(config)
            self.kind = model_kind(config)
            kwargs: dict[str, Any] = {"trust_remote_code": self.trust_remote_code, **files}
            if self.family == "qwen2_5_omni":
                # Text out only: the talker and vocoder would cost memory for nothing.
                kwargs["enable_audio_output"] = False
            if self.use_4bit():
                kwargs["quantization_config"] = bnb_config(self.family)
                kwargs["device_map"] = self.device if self.device != "cuda" else {"": 0}
                kwargs["dtype"] = torch.bfloat16
            else:
                kwargs["dtype"] = self._plain_dtype(config)
                kwargs["device_map"] = self.device
            report(f"Loading {self.model_id} ({self.describe_precision(kwargs)}) on {self.device}…")
            if self.kind == "text":
                self.processor = AutoTokenizer.from_pretrained(
                    source, trust_remote_code=self.trust_remote_code, **files)
                model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
            else:
                self.processor = AutoProcessor.from_pretrained(source, trust_remote_code=self.trust_remote_code)
                model = AutoModelForMultimodalLM.from_pretrained(source, **kwargs)
        except ModelUnavailableError:
            raise
        except ImportError:
            raise
        except Exception as err:  # hub misses, bad folders, corrupt or unknown weights
            if self._download_error is not None:
                # The weights are missing because the download broke off: worth trying again.
                raise ModelUnavailableError(
                    f"The download of {self.model_id} was cut off ({type(self._download_error).__name__}); "
                    "it will be tried again.",
                    key="model.download_failed", model=self.model_id,
                ) from err
            raise _missing_weights_message(self.model_id, err) from err
        model.eval()
        self.model = model
        self._generator = getattr(model, "thinker", model) if self.family == "qwen2_5_omni" else model
        if self.kind == "text":
            self.accepts_images = self.accepts_audio = False
            self._prefix_cacheable = _full_attention_cache(model)
        else:
            self.accepts_audio = self.family in AUDIO_FAMILIES and hasattr(self.processor, "feature_extractor")
            self.accepts_images = hasattr(self.processor, "image_processor")
            self.accepts_video = self.family in VIDEO_FAMILIES and _template_takes_video(self.processor)
        if self.max_context_tokens is None:
            text_config = getattr(config, "text_config", None) or getattr(config, "thinker_config", config)
            text_config = getattr(text_config, "text_config", text_config)
            self.max_context_tokens = int(getattr(text_config, "max_position_embeddings", 8192) or 8192)
        self.load_seconds = time.perf_counter() - started
        report(f"{self.model_id} is ready ({self.load_seconds:.1f} s).")

    def _download(self, report: Callable[[str], None]) -> None:
        """Fetch the weights into the hub cache first, so the page can show the download's progress.

        Offline, or for a local folder, nothing happens here and from_pretrained reads what is there."""
        from huggingface_hub import constants

        if Path(self.model_id).expanduser().exists() or constants.HF_HUB_OFFLINE:
            return
        from huggingface_hub import snapshot_download

        model_id = self.model_id
        report(f"Looking for {model_id} on the Hugging Face hub…")
        self._download_error = None
        try:
            snapshot_download(
                model_id, tqdm_class=hub_progress(model_id, report),
                allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"],
            )
        except Exception as err:  # no network, gated repo…: from_pretrained then explains what is missing
            log.warning("download of %s failed: %s", model_id, type(err).__name__)
            if _is_network_failure(err):
                self._download_error = err

    def _plain_dtype(self, config: Any):
        import torch

        name = self.dtype
        if name == "auto":
            if self.device.startswith("cuda"):
                name = "bfloat16"
            else:
                name = choose_cpu_dtype(_estimate_params(config, self.kind))
        return getattr(torch, name)

    def describe_precision(self, kwargs: dict[str, Any] | None = None) -> str:
        if kwargs and "quantization_config" in kwargs or (kwargs is None and self.use_4bit()):
            return "4-bit nf4, bf16 compute"
        dtype = (kwargs or {}).get("dtype")
        return str(dtype).replace("torch.", "") if dtype is not None else self.dtype

    def close(self) -> None:
        """Release the model (and its GPU memory)."""
        self.model = None
        self._generator = None
        self.processor = None
        self._prefix = None
        # Never import torch here: at shutdown the loader thread may still be importing it, and an
        # import here would wait for that to finish.
        torch = sys.modules.get("torch")
        try:
            if torch is not None and torch.cuda.is_initialized():
                torch.cuda.empty_cache()
        except Exception:  # nothing to free on a broken (or half-imported) CUDA setup
            log.debug("could not empty the CUDA cache", exc_info=True)

    @property
    def tokenizer(self):
        return self.processor if self.kind == "text" else self.processor.tokenizer

    # -- prompting ---------------------------------------------------------------
    def _chat(self, messages: list[PromptMessage]) -> tuple[list[dict], list[Any], list[np.ndarray], list[tuple]]:
        """The chat for the template, and the images, audio clips and videos (frames, times) in its order."""
        if self.kind == "text":
            # Text models' chat templates read each message's content as one string.
            return [{"role": m.role, "content": m.text} for m in messages if m.text], [], [], []
        chat: list[dict] = []
        images: list[Any] = []
        audio: list[np.ndarray] = []
        videos: list[tuple[np.ndarray, list[float]]] = []
        for message in messages:
            content: list[dict] = []
            pictures = list(message.images) if self.accepts_images else []
            frames: list[Any] = []
            if self.accepts_video and message.video_frames and pictures:
                count = min(message.video_frames, len(pictures))
                pictures, frames = pictures[:-count], pictures[-count:]
            for image in pictures:
                content.append({"type": "image"})
                images.append(image)
            if frames:
                content.append({"type": "video"})
                times = list(message.video_times[-len(frames):])
                if len(times) != len(frames):
                    times = [float(i) for i in range(len(frames))]
                videos.append((np.stack([np.asarray(f.convert("RGB")) for f in _same_size(frames)]), times))
            for clip in message.audio if self.accepts_audio else []:
                content.append({"type": "audio"})
                audio.append(clip[: int(MAX_NATIVE_AUDIO_S * 16000)])
            if message.text:
                content.append({"type": "text", "text": message.text})
            if content:
                chat.append({"role": message.role, "content": content})
        return chat, images, audio, videos

    def encode(self, messages: list[PromptMessage]):
        chat, images, audio, videos = self._chat(messages)
        prompt = self.processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        if self.kind == "text":
            # The template already holds the special tokens: adding them again would double the BOS.
            return self.processor(prompt, return_tensors="pt", add_special_tokens=False).to(self.model.device)
        kwargs: dict[str, Any] = {"text": prompt, "return_tensors": "pt"}
        if images:
            kwargs["images"] = images
        if audio:
            kwargs["audio"] = audio
        if videos:
            kwargs["videos"] = [frames for frames, _ in videos]
            # our own frames, kept as sampled; their times label them (Gemma 4 writes mm:ss before each)
            kwargs["do_sample_frames"] = False
            kwargs["video_metadata"] = [
                {"fps": 10.0, "frames_indices": [round(t * 10) for t in times], "total_num_frames": len(frames)}
                for frames, times in videos
            ]
        inputs = self.processor(**kwargs)
        return inputs.to(self.model.device)

    def fit_to_context(self, messages: list[PromptMessage], max_new_tokens: int) -> tuple[list[PromptMessage], int]:
        """The messages that fit the model's context (oldest turns dropped), and how many were dropped."""
        return fit_to_context(
            messages, lambda candidate: int(self.encode(candidate)["input_ids"].shape[-1]),
            self.max_context_tokens or 8192, max_new_tokens,
        )

    # -- generation ----------------------------------------------------------------
    def _reusable_cache(self, input_ids) -> Any:
        """The KV cache to answer ``input_ids`` with: the last prompt and answer's, cut back to the tokens
        this prompt shares with them, so that only the rest is prefilled (a conversation's next turn
        repeats the system prompt, the history and the last answer); a new empty cache when nothing is
        shared; None where no cache is kept (models that see pictures or sound, sliding-window layers).

        Only the caller's device lock guards ``_prefix``: it is taken here and put back by the thread
        that runs generate(), which is joined before the lock is released."""
        if not self._prefix_cacheable:
            return None
        from transformers import DynamicCache

        # Taken out until the answer succeeds: a failed generate() may leave it half-written.
        prefix, self._prefix = self._prefix, None
        ids = input_ids[0]
        if prefix is not None:
            # One token at least is left to prefill: generate() takes the first answer token from its logits.
            span = min(len(prefix.ids), len(ids) - 1)
            differs = (prefix.ids[:span] != ids[:span]).nonzero()
            shared = int(differs[0, 0]) if len(differs) else span
            if shared > 0:
                surplus = prefix.cache.get_seq_length() - shared
                if surplus:
                    prefix.cache.crop(-surplus)
                return prefix.cache
        return DynamicCache(config=self._generator.config.get_text_config(decoder=True))

    def stream(
        self,
        messages: list[PromptMessage],
        scope: CancelScope,
        max_new_tokens: int = 512,
        stats: GenerationStats | None = None,
    ) -> Iterator[str]:
        """Yield text deltas. Cancelling ``scope`` ends generation within one decode step."""
        if not self.loaded:
            self.load()
        from transformers import StoppingCriteriaList

        stats = stats if stats is not None else GenerationStats()
        started = time.perf_counter()
        lock = device_lock(self.device)
        # Wait for the device without ignoring a stop pressed meanwhile.
        while not lock.acquire(timeout=0.05):
            if scope.cancelled:
                stats.stopped = True
                return
        finished = False
        try:
            messages, stats.truncated_history = self.fit_to_context(messages, max_new_tokens)
            inputs = self.encode(messages)
            stats.prompt_tokens = int(inputs["input_ids"].shape[-1])
            tokenizer = self.tokenizer
            cache = self._reusable_cache(inputs["input_ids"])
            extra: dict[str, Any] = {}
            if cache is not None:
                stats.cached_tokens = cache.get_seq_length()
                extra["past_key_values"] = cache

            def generate(emit: Callable[[str], None], stopping: Callable[[], bool]) -> None:
                streamer = _counting_streamer(tokenizer, stats, started, emit, skip_prompt=True,
                                              skip_special_tokens=True)
                sequences = self._generator.generate(
                    **inputs,
                    **extra,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([_StopWhen(stopping)]),
                )
                if cache is not None:
                    # A stopped answer leaves a consistent cache too; a failed one never gets here.
                    self._prefix = _Prefix(sequences[0, :cache.get_seq_length()], cache)

            # Closing the stream (the consumer left early) stops generate() too; it is joined
            # before the device is released.
            deltas: ThreadStream[str]
            with ThreadStream(generate, scope=scope, name="omnilingo-generate") as deltas:
                try:
                    yield from deltas
                except Exception as err:
                    raise _generation_error(err) from err
                finished = not scope.cancelled
        finally:
            lock.release()
            stats.total_s = time.perf_counter() - started
            stats.stopped = stats.stopped or scope.cancelled or not finished


@dataclass
class _Prefix:
    """A KV cache and the token ids it holds (a prompt and the answer to it but its last token).

    One per engine: an engine answers one turn at a time, and a conversation's next turn extends the
    last one, so a single entry catches the repeats that matter; it holds at most the model's context
    (for SmolLM2-135M in fp32, 46 KB a token)."""

    ids: Any  # 1-D tensor
    cache: Any  # transformers DynamicCache


def _full_attention_cache(model: Any) -> bool:
    """Whether the model's default cache is a DynamicCache of full-attention layers, which can be cut
    back to any shared prefix (a sliding window has already dropped what it would need)."""
    from transformers import DynamicCache

    if getattr(model.generation_config, "cache_implementation", None) is not None:
        return False
    cache = DynamicCache(config=model.config.get_text_config(decoder=True))
    return not any(cache.is_sliding) and all(layer.is_croppable for layer in cache.layers)


@functools.lru_cache(maxsize=1)
def _counting_streamer_class():
    from transformers import TextStreamer

    class CountingStreamer(TextStreamer):
        """Hands out finished text, counts generated tokens and stamps the first one (text may lag
        behind tokens)."""

        def __init__(self, tokenizer, stats: GenerationStats, started: float, emit: Callable[[str], None],
                     **kwargs) -> None:
            super().__init__(tokenizer, **kwargs)
            self.stats = stats
            self.started = started
            self.emit = emit
            self.seen_prompt = False

        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text:
                self.emit(text)

        def put(self, value) -> None:
            if not self.seen_prompt:
                self.seen_prompt = True
            else:
                self.stats.new_tokens += int(value.numel()) if hasattr(value, "numel") else 1
                if self.stats.first_token_s is None:
                    self.stats.first_token_s = time.perf_counter() - self.started
            super().put(value)

    return CountingStreamer


def _counting_streamer(tokenizer, stats: GenerationStats, started: float, emit: Callable[[str], None], **kwargs):
    # The class is made on first use so that importing the engine does not import transformers.
    return _counting_streamer_class()(tokenizer, stats, started, emit, **kwargs)


def _generation_error(err: BaseException) -> GenerationError:
    if isinstance(err, GenerationError):
        return err
    text = f"{type(err).__name__}: {err}"
    if "out of memory" in text.lower():
        try:
            import torch

            torch.cuda.empty_cache()
        except Exception:  # freeing is best effort
            log.debug("could not empty the CUDA cache", exc_info=True)
        return GenerationError(
            "The model ran out of memory on this request. Try fewer or smaller images, or a shorter message.",
            key="error.out_of_memory",
        )
    log.exception("generation failed", exc_info=err)
    return GenerationError("The model failed while answering. Please try again.", key="error.generation")


def _template_takes_video(processor: Any) -> bool:
    """Whether the model's chat template writes a video placeholder the processor can expand."""
    token = getattr(processor, "video_token", None)
    if not token or getattr(processor, "video_processor", None) is None:
        return False
    try:
        probe = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "?"}]}]
        return token in processor.apply_chat_template(probe, add_generation_prompt=True, tokenize=False)
    except Exception:  # a template that rejects the item: pictures then
        return False


def _same_size(frames: list[Any]) -> list[Any]:
    """Frames of one video share a size (they do when decoded from one stream; this guards the rest)."""
    size = frames[0].size
    return [f if f.size == size else f.resize(size) for f in frames]


def _estimate_params(config: Any, kind: str = "multimodal") -> int:
    """Parameter count from a config without building the model (meta device)."""
    try:
        from accelerate import init_empty_weights
        from transformers import AutoModelForCausalLM, AutoModelForMultimodalLM

        auto = AutoModelForCausalLM if kind == "text" else AutoModelForMultimodalLM
        with init_empty_weights():
            model = auto.from_config(config)
        return sum(p.numel() for p in model.parameters())
    except Exception:  # unknown architecture: assume the CPU default's size
        return 5_100_000_000
