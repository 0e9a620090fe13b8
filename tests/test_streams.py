"""The cancel scope and the thread-to-iterator bridge every streaming stage uses."""

from __future__ import annotations

import threading
import time

import pytest

from backend.cancel import CancelScope
from backend.streams import ThreadStream


def test_a_scope_is_stale_once_cancelled_or_moved_on():
    scope = CancelScope(3)
    assert not scope.cancelled and not scope.is_stale(3) and scope.is_stale(2)
    following = scope.next()
    assert scope.cancelled and scope.is_set() and scope.is_stale(3)
    assert following.generation == 4 and not following.cancelled and not following.is_stale(4)
    assert not following.wait(0.01)
    threading.Timer(0.05, following.cancel).start()
    assert following.wait(5)


def test_items_arrive_in_order_then_the_stream_ends():
    def produce(emit, stopping):
        for i in range(1, 6):
            emit(i)

    stream = ThreadStream(produce)
    assert list(stream) == [1, 2, 3, 4, 5]
    assert stream.finished


def test_the_producers_error_follows_its_items():
    def produce(emit, stopping):
        emit("a")
        raise ValueError("broken")

    stream = ThreadStream(produce)
    assert next(stream) == "a"
    with pytest.raises(ValueError, match="broken"):
        next(stream)


def _endless(seen_stop: threading.Event):
    def produce(emit, stopping):
        i = 0
        while not stopping():
            emit(i)
            i += 1
            time.sleep(0.005)
        seen_stop.set()

    return produce


def test_closing_stops_the_producer():
    seen_stop = threading.Event()
    stream = ThreadStream(_endless(seen_stop), name="test-endless")
    assert next(stream) == 0
    stream.close()
    assert seen_stop.is_set(), "close() waits for the producer to return"
    assert not any(t.name == "test-endless" and t.is_alive() for t in threading.enumerate())


def test_cancelling_the_scope_ends_the_stream_and_the_producer():
    seen_stop = threading.Event()
    scope = CancelScope(1)
    stream = ThreadStream(_endless(seen_stop), scope=scope)
    taken = []
    for item in stream:
        taken.append(item)
        if len(taken) == 3:
            scope.cancel()
    assert taken == [0, 1, 2]
    assert seen_stop.wait(5)


def test_an_error_after_a_stop_is_not_raised():
    scope = CancelScope()

    def produce(emit, stopping):
        emit(1)
        while not stopping():
            time.sleep(0.005)
        raise ConnectionError("closed under it")

    stream = ThreadStream(produce, scope=scope)
    assert next(stream) == 1
    scope.cancel()
    assert list(stream) == []


def test_ready_and_wait_for_a_consumer_that_polls():
    go = threading.Event()

    def produce(emit, stopping):
        go.wait(5)
        emit("x")
        emit("y")

    stream = ThreadStream(produce)
    assert stream.ready() == [] and not stream.finished
    go.set()
    deadline = time.monotonic() + 5
    got = []
    while not stream.finished and time.monotonic() < deadline:
        stream.wait(0.05)
        got += stream.ready()
    assert got == ["x", "y"]
