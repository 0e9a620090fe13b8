"""Run a producer on its own thread and read what it makes as an iterator.

Generation (``generate()`` with its streamer), the model server's event stream, the
answer read beside its speech and sentence synthesis all produce on a thread while
the caller consumes; this is the one place that bridges the two.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from backend.cancel import CancelScope

T = TypeVar("T")

_END = object()

# The producer: ``produce(emit, stopping)`` hands each item to ``emit`` and returns soon after
# ``stopping()`` turns true.
Producer = Callable[[Callable[[T], None], Callable[[], bool]], None]


class ThreadStream(Generic[T], Iterator[T]):
    """Items made by ``produce`` on a daemon thread, handed out in order.

    The stream stops when the producer returns, when the consumer closes it, or when
    ``scope`` is cancelled; the producer sees the last two through ``stopping()``. An
    exception in the producer is raised in the consumer after the items made before it,
    unless the stream was stopped (a stopped producer may break off any way it likes).
    Items must not be None: ``get`` returns None for "nothing yet".
    """

    def __init__(
        self, produce: Producer, *, scope: CancelScope | None = None, name: str = "omnilingo-stream",
        poll_s: float = 0.05,
    ) -> None:
        self._produce = produce
        self._scope = scope
        self._poll_s = poll_s
        self._items: queue.Queue = queue.Queue()
        self._arrived = threading.Condition()
        self._closed = threading.Event()
        self._ended = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- the producer's side --------------------------------------------------------------
    def stopping(self) -> bool:
        """True once the consumer closed the stream or the scope was cancelled."""
        return self._closed.is_set() or (self._scope is not None and self._scope.cancelled)

    def _emit(self, item: T) -> None:
        self._put(item)

    def _put(self, item: object) -> None:
        with self._arrived:
            self._items.put(item)
            self._arrived.notify_all()

    def _run(self) -> None:
        try:
            self._produce(self._emit, self.stopping)
        except BaseException as err:  # raised in the consumer
            self._error = err
        finally:
            self._put(_END)

    # -- the consumer's side --------------------------------------------------------------
    def get(self, timeout: float | None = None) -> T | None:
        """The next item; None when none came within ``timeout``; StopIteration at the end."""
        if self._ended or self.stopping():
            self._ended = True
            raise StopIteration
        try:
            item = self._items.get(timeout=timeout) if timeout != 0 else self._items.get_nowait()
        except queue.Empty:
            return None
        if item is _END:
            self._ended = True
            if self._error is not None and not self.stopping():
                raise self._error
            raise StopIteration
        return item

    def __iter__(self) -> ThreadStream[T]:
        return self

    def __next__(self) -> T:
        while True:  # a bounded wait, so a cancelled scope is seen while the producer is quiet
            item = self.get(self._poll_s)
            if item is not None:
                return item

    def ready(self) -> list[T]:
        """Every item made so far, without waiting."""
        out: list[T] = []
        try:
            while (item := self.get(0)) is not None:
                out.append(item)
        except StopIteration:
            pass
        return out

    def wait(self, timeout: float) -> None:
        """Block until an item is ready, the producer is done, or ``timeout`` passes."""
        with self._arrived:
            self._arrived.wait_for(lambda: not self._items.empty() or self.stopping(), timeout)

    @property
    def finished(self) -> bool:
        """Stopped, or the producer returned and everything it made was handed out."""
        if self._ended or self.stopping():
            return True
        if self._thread.is_alive() or self._items.qsize() > 1:
            return False
        # Only the end marker is left: take it (and with it the producer's exception, if any).
        try:
            self.get(0)
        except StopIteration:
            return True
        return self._ended

    def close(self, wait: bool = True, timeout: float | None = None) -> None:
        """Stop the producer; with ``wait``, until its thread has returned."""
        self._closed.set()
        self._ended = True
        if wait and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> ThreadStream[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
