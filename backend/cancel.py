"""One answer's lifetime: a generation number and the flag that ends it.

Every answer runs inside a ``CancelScope``. The conversation owns the current scope
and hands it to the engine (which polls it once per token) and to the speaker (which
drops queued sentences once it is cancelled). Stop cancels the current scope; a
barge-in or a new turn cancels it and opens the next one (``scope.next()``), so any
text or audio that still carries an older generation is stale wherever it surfaces.
"""

from __future__ import annotations

import threading


class CancelScope:
    """A generation number plus an Event-like cancel flag (``is_set``/``wait``) that engines can poll."""

    def __init__(self, generation: int = 0) -> None:
        self.generation = generation
        self._cancelled = threading.Event()

    def __repr__(self) -> str:
        return f"CancelScope(generation={self.generation}, cancelled={self.cancelled})"

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    # Event-like, for code that waits on or polls a stop flag.
    def is_set(self) -> bool:
        return self._cancelled.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until cancelled or ``timeout`` passes; True when cancelled."""
        return self._cancelled.wait(timeout)

    def is_stale(self, generation: int) -> bool:
        """True for a chunk of another generation, or of this one once it is cancelled."""
        return generation != self.generation or self.cancelled

    def next(self) -> CancelScope:
        """Cancel this scope and open the following generation."""
        self.cancel()
        return CancelScope(self.generation + 1)
