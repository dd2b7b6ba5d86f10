"""The edge's body reader over a fake consumer: runs of nearby offsets, rounds, the round bound."""

from __future__ import annotations

import threading
import time
from typing import Any

from ws_edge import _kafka


class _Msg:
    def __init__(self, partition: int, offset: int) -> None:
        self._partition, self._offset = partition, offset

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return f"p{self._partition}@{self._offset}".encode()


class _Consumer:
    """Serves each assigned partition sequentially from its start offset up to ``high``."""

    def __init__(self, high: dict[int, int]) -> None:
        self.high = high
        self.assignments: list[list[tuple[int, int]]] = []
        self._next: dict[int, int] = {}

    def assign(self, parts: list[Any]) -> None:
        self.assignments.append([(tp.partition, tp.offset) for tp in parts])
        self._next = {tp.partition: tp.offset for tp in parts}

    def unassign(self) -> None:
        self._next = {}

    def poll(self, timeout: float) -> _Msg | None:
        for partition, offset in self._next.items():
            if offset < self.high[partition]:
                self._next[partition] = offset + 1
                return _Msg(partition, offset)
        time.sleep(min(timeout, 0.01))
        return None

    def consume(self, num_messages: int, timeout: float) -> list[_Msg]:
        out: list[_Msg] = []
        while len(out) < num_messages and (msg := self.poll(0)) is not None:
            out.append(msg)
        return out


def test_nearby_offsets_are_one_run_and_far_ones_another_round() -> None:
    far = 10 + _kafka._RUN_GAP + 1
    consumer = _Consumer({0: far + 5, 1: 50})
    found = _kafka.read_bodies(consumer, "bodies", {0: {3, 10, far}, 1: {7}}, threading.Event())
    assert found == {(0, 3): b"p0@3", (0, 10): b"p0@10", (0, far): f"p0@{far}".encode(), (1, 7): b"p1@7"}
    assert consumer.assignments == [[(0, 3), (1, 7)], [(0, far)]]


def test_a_round_that_cannot_finish_ends_after_its_bound() -> None:
    consumer = _Consumer({0: 5})  # offset 8 is past the partition's end
    started = time.monotonic()
    found = _kafka.read_bodies(consumer, "bodies", {0: {2, 8}}, threading.Event(), round_s=0.2)
    assert found == {(0, 2): b"p0@2"}
    assert 0.2 <= time.monotonic() - started < 5
