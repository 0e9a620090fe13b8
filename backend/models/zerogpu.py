"""Hugging Face ZeroGPU: a GPU lent per call, in a forked worker process.

On ZeroGPU (the Space sets ``SPACES_ZERO_GPU``), functions that touch CUDA must be
wrapped with ``spaces.GPU``; the model must be loaded ("to cuda") before the app
launches, when ``spaces`` packs the weights; arguments and yielded values are
pickled between the app and the worker. Elsewhere everything here is a no-op and
``spaces`` is never imported.

``ZeroGPUEngine`` adapts ``LocalEngine`` to those rules: the worker runs
``LocalEngine.stream`` (prompt encoding, ``generate()`` and its streamer thread all
happen there), the answer's cancel scope stays in the app (it holds an Event, which
cannot be pickled), and cancelling it closes the worker's generator, which stops
``generate()`` there.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any

from backend.cancel import CancelScope
from backend.models.engine import GenerationStats, PromptMessage

# Seconds of GPU asked for one answer: a fixed part (worker start, prefill) plus decoding.
BASE_SECONDS = 20
SECONDS_PER_TOKEN = 0.05
MAX_SECONDS = 180


def enabled(environ: dict[str, str] | None = None) -> bool:
    """True on a ZeroGPU Space (same test as the ``spaces`` package itself)."""
    value = (os.environ if environ is None else environ).get("SPACES_ZERO_GPU")
    return value is not None and value.lower() in {"1", "t", "true"}


def gpu(fn: Callable | None = None, *, duration: int | Callable[..., int] | None = None) -> Any:
    """``spaces.GPU`` on ZeroGPU, the function unchanged elsewhere. Usable as ``@gpu`` or ``@gpu(duration=...)``."""

    def wrap(func: Callable) -> Callable:
        if not enabled():
            return func
        import spaces  # only present on Spaces

        return spaces.GPU(func, duration=duration)

    return wrap(fn) if fn is not None else wrap


def prepare() -> None:
    """Call first thing in the Space entry point, before torch touches CUDA."""
    if not enabled():
        return
    import spaces

    # Only the functions wrapped here run on the GPU: Gradio's automatic wrapping would
    # move whole UI handlers (and the conversations they change) into the worker.
    spaces.disable_gradio_auto_wrap()


def answer_seconds(messages: list[PromptMessage], max_new_tokens: int = 512) -> int:
    return int(min(MAX_SECONDS, BASE_SECONDS + SECONDS_PER_TOKEN * max_new_tokens))


# The engine the worker runs: set before the first call, inherited by the forked worker.
_ENGINE: Any = None


@gpu(duration=answer_seconds)
def _stream_on_gpu(messages: list[PromptMessage], max_new_tokens: int = 512) -> Iterator[tuple[str, dict]]:
    """Runs in the ZeroGPU worker: yields (text delta, stats so far)."""
    stats = GenerationStats()
    for delta in _ENGINE.stream(messages, CancelScope(), max_new_tokens, stats):
        yield delta, asdict(stats)
    yield "", asdict(stats)


class ZeroGPUEngine:
    """A LocalEngine whose answers are generated on a ZeroGPU worker."""

    # A Space lends one GPU per call: answers queue one at a time.
    concurrency = 1

    def __init__(self, engine: Any) -> None:
        global _ENGINE
        self.engine = engine
        _ENGINE = engine

    # What the rest of the app reads, passed through to the real engine.
    @property
    def name(self) -> str:
        return self.engine.name

    @property
    def accepts_images(self) -> bool:
        return self.engine.accepts_images

    @property
    def accepts_audio(self) -> bool:
        return self.engine.accepts_audio

    @property
    def loaded(self) -> bool:
        return self.engine.loaded

    def load(self, progress: Callable[[str], None] | None = None) -> None:
        # In the app process: ZeroGPU keeps "cuda" weights on the host until a worker gets a GPU.
        self.engine.load(progress)

    def close(self) -> None:
        self.engine.close()

    def stream(
        self,
        messages: list[PromptMessage],
        scope: CancelScope,
        max_new_tokens: int = 512,
        stats: GenerationStats | None = None,
    ) -> Iterator[str]:
        stats = stats if stats is not None else GenerationStats()
        worker = _stream_on_gpu(messages, max_new_tokens)
        finished = False
        try:
            for delta, snapshot in worker:
                for key, value in snapshot.items():
                    setattr(stats, key, value)
                if scope.cancelled:
                    break
                if delta:
                    yield delta
            else:
                finished = True
        finally:
            # Closing the worker's generator stops generate() there within one decode step.
            worker.close()
            stats.stopped = stats.stopped or scope.cancelled or not finished


def wrap(engine: Any) -> Any:
    """The engine to use: wrapped for ZeroGPU when on ZeroGPU and running locally, unchanged otherwise."""
    from backend.models.engine import LocalEngine

    if enabled() and isinstance(engine, LocalEngine):
        return ZeroGPUEngine(engine)
    return engine
