"""The chat model through llama.cpp (llama-cpp-python), in-process: quantized GGUF weights, fast on a CPU.

``LlamaCppEngine`` has the same interface as ``backend.models.engine.LocalEngine``. ``--model``
names a ``.gguf`` file, a folder of GGUF files, or a hub repository of them (downloaded on first
use, the page showing the progress). Pictures and sound go through the model's multimodal
projector (an ``mmproj`` GGUF, found beside the model or given with ``--mmproj``) with llama.cpp's
mtmd library; without one the model reads text only.

llama-cpp-python is an optional dependency (``pip install "omnilingo[llamacpp]"``): it builds
llama.cpp from source where no wheel fits, which needs a C/C++ compiler and cmake.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from backend.audio.pcm import SAMPLE_RATE, resample_whole
from backend.cancel import CancelScope
from backend.errors import GenerationError, ModelUnavailableError
from backend.models.engine import (
    GGUF_SUFFIX,
    MAX_NATIVE_AUDIO_S,
    GenerationStats,
    PromptMessage,
    fit_to_context,
    hub_progress,
)
from backend.streams import ThreadStream

log = logging.getLogger(__name__)

LLAMA_CPP_VERSION = "0.3.36"
INSTALL_HINT = (
    f'pip install "omnilingo[llamacpp]" (or pip install llama-cpp-python=={LLAMA_CPP_VERSION}); '
    "where no ready-made wheel fits, pip builds llama.cpp from source, which needs a C/C++ compiler and cmake "
    "and takes several minutes"
)
# Gemma 4 E2B, 4-bit, with its vision and audio projector.
DEFAULT_MODEL = "unsloth/gemma-4-E2B-it-GGUF"
# The quantization picked from a repository or folder holding several: 4-bit K-quants keep
# answers close to the full model at about a third of its bf16 memory.
PREFERRED_QUANTS = ("Q4_K_M", "Q4_K_S", "Q4_0", "Q4_1", "Q5_K_M", "Q8_0", "BF16", "F16")
PREFERRED_PROJECTORS = ("F16", "BF16", "F32", "Q8_0")
# The KV cache is allocated for the whole context up front: a long one costs memory every turn.
DEFAULT_CONTEXT_TOKENS = 8192
_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
STOP_POLL_S = 0.05


def import_llama_cpp():
    """The llama_cpp module, or the message that says how to install it."""
    try:
        import llama_cpp
        import llama_cpp.mtmd_cpp  # noqa: F401  (the multimodal library ships in the same wheel)
    except (ImportError, OSError) as err:  # not installed, or its shared library does not load here
        raise ModelUnavailableError(
            f"The llama.cpp engine needs the llama-cpp-python package, which is not installed here "
            f"({type(err).__name__}). Install it with {INSTALL_HINT}. Or start without --engine llamacpp.",
            key="model.llamacpp_missing", hint=INSTALL_HINT,
        ) from err
    return llama_cpp


def default_threads() -> int:
    """One thread per physical core: llama.cpp decodes no faster on hyper-threads (beyond 4 CPUs,
    assume every second one is a hyper-thread)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return cpus if cpus <= 4 else cpus // 2


def pick_weights(names: list[str]) -> tuple[str | None, str | None]:
    """(the model GGUF, its projector GGUF) among file names of a folder or hub repository.

    Several quantizations: the first of PREFERRED_QUANTS that is there; a model split in
    shards is loaded from its first shard."""
    ggufs = sorted(n for n in names if n.lower().endswith(GGUF_SUFFIX))
    projectors = [n for n in ggufs if "mmproj" in Path(n).name.lower()]
    models = []
    for name in ggufs:
        shard = _SHARD.search(name)
        if name not in projectors and (shard is None or int(shard.group(1)) == 1):
            models.append(name)
    return _preferred(models, PREFERRED_QUANTS), _preferred(projectors, PREFERRED_PROJECTORS)


def _preferred(names: list[str], order: tuple[str, ...]) -> str | None:
    for quant in order:
        for name in names:
            if re.search(rf"(?<![A-Za-z0-9]){quant}(?![A-Za-z0-9])", Path(name).name, re.IGNORECASE):
                return name
    return names[0] if names else None


def _hub_reference(model: str) -> tuple[str, str | None] | None:
    """``org/repo`` or ``org/repo/file.gguf`` (a file in that repository), else None."""
    parts = model.strip("/").split("/")
    if len(parts) < 2 or any(not p or p in {".", ".."} for p in parts) or model.startswith((".", "~", "/")):
        return None
    repo = "/".join(parts[:2])
    rest = "/".join(parts[2:]) or None
    if rest is not None and not rest.lower().endswith(GGUF_SUFFIX):
        return None
    return repo, rest


class LlamaCppEngine:
    """A GGUF chat model run in-process by llama.cpp, with its projector for pictures and sound."""

    # One llama.cpp context: one answer at a time.
    concurrency = 1
    keeps_prompt_prefix = True  # llama.cpp reuses the KV cache of the longest common prefix

    def __init__(
        self,
        model: str | None = None,
        mmproj: str | None = None,
        device: str = "auto",
        max_context_tokens: int | None = None,
        threads: int | None = None,
    ) -> None:
        self.model_id = model or DEFAULT_MODEL
        self.name = self.model_id
        self.mmproj = mmproj
        self.device = device
        self.max_context_tokens = max_context_tokens
        self.threads = threads or default_threads()
        self.accepts_images = False
        self.accepts_audio = False
        self.model_path: Path | None = None
        self.mmproj_path: Path | None = None
        self.load_seconds: float | None = None
        self._llama: Any = None
        self._mtmd: Any = None  # the projector's mtmd context
        self._audio_rate = SAMPLE_RATE
        self._formatter: Any = None
        self._bos_text = ""
        self._add_bos = False
        self._cache_reusable = False  # the KV cache holds a text-only prompt that a new one may extend
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LlamaCppEngine(model={self.model_id!r}, mmproj={self.mmproj!r})"

    @property
    def loaded(self) -> bool:
        return self._llama is not None

    # -- finding the weights -------------------------------------------------------------
    def locate(self, report: Callable[[str], None]) -> tuple[Path, Path | None]:
        """The model GGUF and its projector (None when the model reads text only)."""
        path = Path(self.model_id).expanduser()
        if path.is_file():
            model = path
            sibling = pick_weights([p.name for p in path.parent.iterdir() if p.is_file()])[1]
            projector = path.parent / sibling if sibling else None
        elif path.is_dir():
            model_name, projector_name = pick_weights([p.name for p in path.iterdir() if p.is_file()])
            if model_name is None:
                raise ModelUnavailableError(
                    f"The model {self.model_id} could not be loaded: the folder {path} holds no .gguf file. "
                    "Pass a GGUF file with --model PATH.gguf.",
                    key="model.unavailable", model=self.model_id, where=str(path),
                )
            model = path / model_name
            projector = path / projector_name if projector_name else None
        elif (hub := _hub_reference(self.model_id)) is not None:
            model, projector = self._from_hub(*hub, report)
        else:
            raise ModelUnavailableError(
                f"The model {self.model_id} could not be loaded: there is no such file or folder. "
                "Pass a .gguf file or a folder of them with --model PATH, or a hub repository of GGUF files.",
                key="model.unavailable", model=self.model_id, where=str(path),
            )
        if self.mmproj:
            projector = Path(self.mmproj).expanduser()
            if not projector.is_file():
                raise ModelUnavailableError(
                    f"The projector {self.mmproj} given with --mmproj is not a file.",
                    key="model.unavailable", model=self.mmproj, where=str(projector),
                )
        return model, projector

    def _from_hub(self, repo: str, filename: str | None, report: Callable[[str], None]) -> tuple[Path, Path | None]:
        """Download the chosen GGUF (and projector) once; later starts and offline runs read the cache."""
        from huggingface_hub import HfApi, constants, snapshot_download

        where = f"the Hugging Face hub and the cache at {constants.HF_HUB_CACHE}"
        try:
            if constants.HF_HUB_OFFLINE:
                folder = Path(snapshot_download(repo, local_files_only=True))
                names = [str(p.relative_to(folder)) for p in folder.rglob("*.gguf")]
            else:
                report(f"Looking for {repo} on the Hugging Face hub…")
                names = list(HfApi().list_repo_files(repo))
                folder = None
        except Exception as err:  # not cached offline, no network, no such repository
            raise ModelUnavailableError(
                f"The model {self.model_id} could not be loaded: it was not found in {where}. Connect to the "
                f"internet once to download it, or pass a local .gguf file with --model PATH ({type(err).__name__})",
                key="model.unavailable", model=self.model_id, where=where,
            ) from err
        model_name, projector_name = pick_weights(names)
        if filename is not None:
            model_name = filename if filename in names else None
        if model_name is None:
            raise ModelUnavailableError(
                f"The model {self.model_id} could not be loaded: {repo} holds no such GGUF file "
                f"({', '.join(n for n in names if n.endswith(GGUF_SUFFIX))[:300] or 'none'}).",
                key="model.unavailable", model=self.model_id, where=where,
            )
        wanted = [model_name] + ([projector_name] if projector_name and not self.mmproj else [])
        if folder is None:
            shard = _SHARD.search(model_name)
            patterns = [_SHARD.sub("-*-of-*.gguf", model_name)] if shard else [model_name]
            patterns += wanted[1:]
            try:
                folder = Path(snapshot_download(repo, allow_patterns=patterns, tqdm_class=hub_progress(repo, report)))
            except Exception as err:  # cut off, disk full, gated
                raise ModelUnavailableError(
                    f"The model {self.model_id} could not be downloaded ({type(err).__name__}). "
                    "Try again, or pass a local .gguf file with --model PATH.",
                    key="model.unavailable", model=self.model_id, where=where,
                ) from err
        if not (folder / model_name).is_file():
            raise ModelUnavailableError(
                f"The model {self.model_id} could not be loaded: {model_name} is not in the cache at {folder}.",
                key="model.unavailable", model=self.model_id, where=where,
            )
        projector = folder / projector_name if projector_name and (folder / projector_name).is_file() else None
        return folder / model_name, projector

    # -- loading -------------------------------------------------------------------------
    def load(self, progress: Callable[[str], None] | None = None) -> None:
        if self.loaded:
            return
        report = progress or (lambda message: log.info(message))
        started = time.perf_counter()
        llama_cpp = import_llama_cpp()
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        model_path, projector = self.locate(report)
        gpu = self.device != "cpu" and bool(llama_cpp.llama_supports_gpu_offload())
        context = self.max_context_tokens or min(_trained_context(model_path), DEFAULT_CONTEXT_TOKENS)
        report(f"Loading {model_path.name} with llama.cpp ({self.threads} threads{', GPU' if gpu else ''})…")
        try:
            llama = llama_cpp.Llama(
                model_path=str(model_path), n_ctx=context, n_threads=self.threads, n_threads_batch=self.threads,
                n_gpu_layers=-1 if gpu else 0, verbose=False,
            )
        except Exception as err:  # llama.cpp says ValueError("Failed to load model from file") for any damage
            raise ModelUnavailableError(
                f"The model {model_path} was found but could not be loaded: the file looks damaged or it is not an "
                f"architecture this llama.cpp ({LLAMA_CPP_VERSION}) can run ({type(err).__name__}). "
                "Pass another model with --model.",
                key="model.broken", model=str(model_path),
            ) from err
        template = llama.metadata.get("tokenizer.chat_template")
        if not template:
            llama.close()
            raise ModelUnavailableError(
                f"The model {model_path} was found but could not be loaded: it has no chat template, so it is not "
                "a chat model. Pass another model with --model.",
                key="model.broken", model=str(model_path),
            )
        self._bos_text = _piece(llama, llama.token_bos())
        self._add_bos = bool(llama._model.add_bos_token())
        self._formatter = Jinja2ChatFormatter(
            template=template, eos_token=_piece(llama, llama.token_eos()), bos_token=self._bos_text,
            add_generation_prompt=True,
        )
        self._llama = llama
        if projector is not None:
            try:
                self._load_projector(projector, gpu)
            except ModelUnavailableError:
                self.close()
                raise
        self.model_path, self.mmproj_path = model_path, projector
        self.max_context_tokens = llama.n_ctx()
        self.load_seconds = time.perf_counter() - started
        takes = ", ".join(["text"] + ["pictures"] * self.accepts_images + ["sound"] * self.accepts_audio)
        report(f"{self.model_id} is ready ({self.load_seconds:.1f} s; reads {takes}).")

    def _load_projector(self, projector: Path, gpu: bool) -> None:
        import llama_cpp
        from llama_cpp import mtmd_cpp
        from llama_cpp._logger import llama_log_callback

        # The projector's library logs through the same quiet callback as llama.cpp (verbose=False).
        mtmd_cpp.mtmd_helper_log_set(llama_log_callback, ctypes.c_void_p(0))
        params = mtmd_cpp.mtmd_context_params_default()
        params.use_gpu = gpu
        params.print_timings = False
        params.n_threads = self.threads
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        ctx = mtmd_cpp.mtmd_init_from_file(str(projector).encode(), self._llama.model, params)
        if not ctx:
            raise ModelUnavailableError(
                f"The projector {projector} (pictures and sound) could not be loaded with {self.model_id}: the file "
                "looks damaged or belongs to another model. Pass the right one with --mmproj.",
                key="model.broken", model=str(projector),
            )
        self._mtmd = ctx
        self.accepts_images = bool(mtmd_cpp.mtmd_support_vision(ctx))
        self.accepts_audio = bool(mtmd_cpp.mtmd_support_audio(ctx))
        if self.accepts_audio:
            rate = int(mtmd_cpp.mtmd_get_audio_sample_rate(ctx))
            self._audio_rate = rate if rate > 0 else SAMPLE_RATE

    def close(self) -> None:
        with self._lock:
            if self._mtmd is not None:
                from llama_cpp import mtmd_cpp

                mtmd_cpp.mtmd_free(self._mtmd)
                self._mtmd = None
            if self._llama is not None:
                self._llama.close()
                self._llama = None
            self.accepts_images = self.accepts_audio = False
            self._cache_reusable = False

    # -- prompting -----------------------------------------------------------------------
    def render(self, messages: list[PromptMessage]) -> tuple[str, list[tuple[str, Any]]]:
        """The prompt text (a media marker where each picture or clip goes) and the media in order."""
        marker = self._marker()
        chat: list[dict[str, str]] = []
        media: list[tuple[str, Any]] = []
        for message in messages:
            parts: list[str] = []
            for image in message.images if self.accepts_images else []:
                parts.append(marker)
                media.append(("image", image))
            for clip in message.audio if self.accepts_audio else []:
                parts.append(marker)
                media.append(("audio", clip[: int(MAX_NATIVE_AUDIO_S * SAMPLE_RATE)]))
            if message.text:
                parts.append(message.text)
            if parts:
                chat.append({"role": message.role, "content": "\n".join(parts)})
        prompt = self._formatter(messages=chat).prompt
        # Templates write the BOS token themselves; the tokenizer adds it again when the model asks for it.
        if self._add_bos and self._bos_text and prompt.startswith(self._bos_text):
            prompt = prompt[len(self._bos_text):]
        return prompt, media

    def _marker(self) -> str:
        if self._mtmd is None:
            return ""
        from llama_cpp import mtmd_cpp

        return mtmd_cpp.mtmd_default_marker().decode("utf-8")

    def count_tokens(self, messages: list[PromptMessage]) -> int:
        prompt, media = self.render(messages)
        if not media:
            return len(self._llama.tokenize(prompt.encode("utf-8"), add_bos=self._add_bos, special=True))
        from llama_cpp import mtmd_cpp

        chunks = self._tokenize_media(prompt, media)
        try:
            return int(mtmd_cpp.mtmd_helper_get_n_tokens(chunks))
        finally:
            mtmd_cpp.mtmd_input_chunks_free(chunks)

    def _tokenize_media(self, prompt: str, media: list[tuple[str, Any]]):
        """mtmd input chunks (text, picture, sound) for a prompt with media markers; the caller frees them."""
        from llama_cpp import mtmd_cpp

        bitmaps = [self._bitmap(kind, item) for kind, item in media]
        try:
            if any(b is None for b in bitmaps):
                raise GenerationError("A picture or recording could not be handed to the model.",
                                      key="error.generation")
            text = mtmd_cpp.mtmd_input_text()
            encoded = prompt.encode("utf-8")
            text.text = encoded
            text.text_len = len(encoded)
            text.add_special = self._add_bos
            text.parse_special = True
            chunks = mtmd_cpp.mtmd_input_chunks_init()
            array = (mtmd_cpp.mtmd_bitmap_p_ctypes * len(bitmaps))(*bitmaps)
            result = mtmd_cpp.mtmd_tokenize(self._mtmd, chunks, ctypes.byref(text), array, len(bitmaps))
            if result != 0:
                mtmd_cpp.mtmd_input_chunks_free(chunks)
                raise GenerationError("The pictures or recordings could not be prepared for the model.",
                                      key="error.generation")
            return chunks
        finally:
            for bitmap in bitmaps:
                if bitmap is not None:
                    mtmd_cpp.mtmd_bitmap_free(bitmap)

    def _bitmap(self, kind: str, item: Any):
        from llama_cpp import mtmd_cpp

        if kind == "image":
            rgb = item.convert("RGB")
            data = rgb.tobytes()
            return mtmd_cpp.mtmd_bitmap_init(rgb.width, rgb.height, (ctypes.c_uint8 * len(data)).from_buffer_copy(data))
        samples = np.asarray(item, dtype=np.float32)
        if self._audio_rate != SAMPLE_RATE:
            samples = resample_whole(samples, SAMPLE_RATE, self._audio_rate)
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        pointer = samples.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        return mtmd_cpp.mtmd_bitmap_init_from_audio(len(samples), pointer)

    # -- generation ----------------------------------------------------------------------
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
        stats = stats if stats is not None else GenerationStats()
        started = time.perf_counter()
        # One llama.cpp context: wait for it without ignoring a stop pressed meanwhile.
        while not self._lock.acquire(timeout=STOP_POLL_S):
            if scope.cancelled:
                stats.stopped = True
                return
        finished = False
        try:
            def generate(emit: Callable[[str], None], stopping: Callable[[], bool]) -> None:
                self._generate(messages, max_new_tokens, stats, started, emit, stopping)

            # Closing the stream (the consumer left early) stops the decoding loop too; it is
            # joined before the context is released.
            deltas: ThreadStream[str]
            with ThreadStream(generate, scope=scope, name="omnilingo-llamacpp") as deltas:
                try:
                    yield from deltas
                except GenerationError:
                    raise
                except Exception as err:
                    raise _generation_error(err) from err
                finished = not scope.cancelled
        finally:
            self._lock.release()
            stats.total_s = time.perf_counter() - started
            stats.stopped = stats.stopped or scope.cancelled or not finished

    def _generate(
        self,
        messages: list[PromptMessage],
        max_new_tokens: int,
        stats: GenerationStats,
        started: float,
        emit: Callable[[str], None],
        stopping: Callable[[], bool],
    ) -> None:
        import llama_cpp

        llama = self._llama
        context = llama.n_ctx()
        messages, stats.truncated_history = fit_to_context(messages, self.count_tokens, context, max_new_tokens)
        prompt_text, media = self.render(messages)
        if media:
            prompt = self._prefill_media(prompt_text, media, stopping)
            if prompt is None:
                return
        else:
            prompt = llama.tokenize(prompt_text.encode("utf-8"), add_bos=self._add_bos, special=True)
            if not self._cache_reusable:
                llama.reset()
            self._cache_reusable = True
        stats.prompt_tokens = len(prompt)
        budget = max(0, min(max_new_tokens, context - len(prompt) - 1))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        vocab = llama._model.vocab
        if budget == 0 or stopping():
            return
        # Greedy, like the transformers engine: the same question gets the same answer.
        for token in llama.generate(prompt, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0):
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                break
            stats.new_tokens += 1
            if stats.first_token_s is None:
                stats.first_token_s = time.perf_counter() - started
            text = decoder.decode(_piece_bytes(llama, token))
            if text:
                emit(text)
            if stopping() or stats.new_tokens >= budget:
                break
        tail = decoder.decode(b"", final=True)
        if tail and not stopping():
            emit(tail)

    def _prefill_media(self, prompt_text: str, media: list[tuple[str, Any]], stopping: Callable[[], bool]):
        """Evaluate a prompt with pictures or sound chunk by chunk (Stop is heard between chunks).

        Returns the prompt's token list as llama.generate expects it (its KV cache already filled),
        or None when stopped."""
        import llama_cpp
        from llama_cpp import mtmd_cpp

        llama = self._llama
        chunks = self._tokenize_media(prompt_text, media)
        # Picture positions hold no token ids: a later prompt must not be matched against them.
        self._cache_reusable = False
        llama.reset()
        llama._ctx.kv_cache_clear()
        try:
            for i in range(mtmd_cpp.mtmd_input_chunks_size(chunks)):
                if stopping():
                    return None
                chunk = mtmd_cpp.mtmd_input_chunks_get(chunks, i)
                if mtmd_cpp.mtmd_input_chunk_get_type(chunk) == mtmd_cpp.MTMD_INPUT_CHUNK_TYPE_TEXT:
                    count = ctypes.c_size_t()
                    pointer = mtmd_cpp.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
                    llama.eval([pointer[j] for j in range(count.value)])
                    continue
                new_past = llama_cpp.llama_pos(0)
                result = mtmd_cpp.mtmd_helper_eval_chunk_single(
                    self._mtmd, llama._ctx.ctx, chunk, llama_cpp.llama_pos(llama.n_tokens),
                    llama_cpp.llama_seq_id(0), llama.n_batch, False, ctypes.byref(new_past),
                )
                if result != 0:
                    raise GenerationError("The model could not read a picture or recording.", key="error.generation")
                llama.n_tokens = new_past.value
        finally:
            mtmd_cpp.mtmd_input_chunks_free(chunks)
        return llama.input_ids[: llama.n_tokens].tolist()


def _piece_bytes(llama: Any, token: int) -> bytes:
    """The bytes of one token (a UTF-8 character may span several tokens)."""
    import llama_cpp

    buffer = ctypes.create_string_buffer(256)
    length = llama_cpp.llama_token_to_piece(llama._model.vocab, token, buffer, len(buffer), 0, False)
    return buffer.raw[:length] if length > 0 else b""


def _piece(llama: Any, token: int) -> str:
    if token < 0:
        return ""
    return llama._model.token_get_text(token)


def _trained_context(path: Path) -> int:
    """The context length the model was trained with, read from the GGUF header."""
    try:
        from gguf import GGUFReader

        reader = GGUFReader(str(path))
        arch = str(bytes(reader.fields["general.architecture"].parts[-1]), "utf-8")
        field = reader.fields.get(f"{arch}.context_length")
        return int(field.parts[-1][0]) if field is not None else DEFAULT_CONTEXT_TOKENS
    except Exception:  # an unreadable header: llama.cpp itself will say what is wrong
        return DEFAULT_CONTEXT_TOKENS


def _generation_error(err: BaseException) -> GenerationError:
    log.error("llama.cpp generation failed", exc_info=err)
    text = str(err).lower()
    if "exceeds n_ctx" in text or "context" in text and "exceed" in text:
        return GenerationError("This message is too long for the model: shorten it or split it into parts.",
                               key="error.too_long")
    return GenerationError("The model failed while answering. Please try again.", key="error.generation")
