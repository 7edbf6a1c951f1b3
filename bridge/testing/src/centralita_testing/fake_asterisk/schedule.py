"""The send schedule of many RTP legs on one 20 ms clock: which legs are due now, and when the next one is.

Each leg sends once per period at its own phase (an offset into the period). A single loop asks ``due(now)``
for every leg whose deadline has passed, sends them, and sleeps (or polls its sockets) until
``next_deadline()``: one wake-up serves every leg due by then, so hundreds of legs cost one loop, not one
timer each. The schedule holds no clock of its own: the loop passes ``now`` in, so tests drive it with a
fake one.

A loop that falls further behind than ``max_behind_ns`` (a stalled process, a descheduled vCPU) does not
burst the missed frames out at once, which no real caller would: those slots are skipped (and counted in
``skipped``), and sending resumes on the same grid.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from typing import Generic, TypeVar

__all__ = ["SendSchedule"]

T = TypeVar("T")


class SendSchedule(Generic[T]):
    """Items (legs) with a phase each, due once per ``period_ns`` at ``start_ns + k * period_ns + phase``."""

    def __init__(self, period_ns: int, start_ns: int, max_behind_ns: int | None = None) -> None:
        if period_ns <= 0:
            raise ValueError(f"period_ns must be positive, not {period_ns}")
        self.period_ns = period_ns
        self.max_behind_ns = 3 * period_ns if max_behind_ns is None else max_behind_ns
        self._start = start_ns
        self._phases: list[int] = []
        self._items: list[T] = []
        self._period = 0  # the period the cursor is in
        self._cursor = 0  # the next item due in that period
        self.skipped = 0  # slots given up because the loop was too far behind

    def __len__(self) -> int:
        return len(self._items)

    def set_items(self, items: Iterable[tuple[int, T]], now_ns: int) -> None:
        """Replace the items: ``(phase_ns, item)`` pairs, phases in ``[0, period_ns)``.

        Items already sent in the current period are not sent again in it; a new item whose phase has
        passed in this period sends from the next one. A schedule that was empty starts at ``now_ns``
        (nothing is owed for the time it had nothing to send).
        """
        was_empty = not self._items
        pairs = sorted(items, key=lambda pair: pair[0])
        for phase, _item in pairs:
            if not 0 <= phase < self.period_ns:
                raise ValueError(f"phase {phase} ns is outside the period [0, {self.period_ns})")
        last_phase = self._phases[self._cursor - 1] if self._cursor > 0 else -1
        self._phases = [phase for phase, _item in pairs]
        self._items = [item for _phase, item in pairs]
        self._cursor = bisect_right(self._phases, last_phase)
        if was_empty:
            self._period, offset = divmod(now_ns - self._start, self.period_ns)
            self._cursor = bisect_left(self._phases, offset)
        self._wrap()

    def next_deadline(self) -> int | None:
        """When the next item is due (``start_ns`` clock); None with no items."""
        if not self._items:
            return None
        return self._start + self._period * self.period_ns + self._phases[self._cursor]

    def due(self, now_ns: int) -> list[T]:
        """Every item due at ``now_ns`` and not yet taken, in deadline order (an item at most once per period)."""
        if not self._items:
            return []
        self._skip_stale(now_ns)
        due: list[T] = []
        base = self._start + self._period * self.period_ns
        phases, items, count = self._phases, self._items, len(self._items)
        while base + phases[self._cursor] <= now_ns:
            due.append(items[self._cursor])
            self._cursor += 1
            if self._cursor == count:
                self._cursor = 0
                self._period += 1
                base += self.period_ns
        return due

    def _skip_stale(self, now_ns: int) -> None:
        """Drop the slots whose deadline is more than ``max_behind_ns`` before ``now_ns``."""
        floor = now_ns - self.max_behind_ns
        deadline = self._start + self._period * self.period_ns + self._phases[self._cursor]
        if deadline >= floor:
            return
        count = len(self._items)
        period, offset = divmod(floor - self._start, self.period_ns)
        index = bisect_left(self._phases, offset)
        self.skipped += (period * count + index) - (self._period * count + self._cursor)
        self._period, self._cursor = period, index
        self._wrap()

    def _wrap(self) -> None:
        if self._items and self._cursor >= len(self._items):
            self._cursor = 0
            self._period += 1
