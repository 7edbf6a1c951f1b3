"""Records written off the media path: one writer thread per database, fed by a bounded queue.

The threads that carry a call's audio and its Realtime events must never wait on SQLite: a database that
another process holds locked, a disk that is full or a file made read-only would otherwise stall every
call's audio for the busy timeout, or end a call on a failed write. So those threads only ``submit`` a write;
one thread per database runs the writes in the order they were submitted.

What happens when a write fails:

* ``sqlite3.OperationalError`` (locked, busy, disk full, I/O error, read-only file) may pass: the same write
  is tried again with a growing pause, while later writes wait behind it in order (a transcript line must not
  land before its call's row). A write still failing after ``give_up_after`` seconds is dropped and counted.
* Any other error (a bug, a call that was never recorded, a constraint) will not pass by retrying: the write
  is dropped at once and counted.
* A full queue drops the new write and counts it: memory stays bounded whatever the disk does.

Nothing here raises into the caller. Losses are logged once per outage, with the count, when the first write
is lost and again when writes succeed again ("records resumed"); ``stats()`` gives the counters to whoever
reports the service's health.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = ["RecordWriter", "WriterStats"]

log = logging.getLogger(__name__)

DEFAULT_CAPACITY: Final = 20_000  # queued writes; a call writes a few dozen, so this is hours of an outage
_FIRST_PAUSE: Final = 0.05
_MAX_PAUSE: Final = 2.0


@dataclass(frozen=True, slots=True)
class WriterStats:
    """Counters since the writer started. ``lost`` = ``dropped_full`` + ``dropped_failed``."""

    written: int
    queued: int
    dropped_full: int
    dropped_failed: int
    failing: bool  # the write at the head of the queue is failing now
    last_error: str

    @property
    def lost(self) -> int:
        return self.dropped_full + self.dropped_failed


@dataclass(frozen=True, slots=True)
class _Write:
    what: str
    run: Callable[[], object]
    submitted: float


class RecordWriter:
    """Runs the writes submitted to it on its own thread, in order; ``submit`` never blocks and never raises.

    ``name`` names the database in log lines and the thread. ``clock`` and ``sleep`` are injected in tests.
    """

    def __init__(
        self,
        name: str,
        *,
        capacity: int = DEFAULT_CAPACITY,
        give_up_after: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.name = name
        self._capacity = capacity
        self._give_up_after = give_up_after
        self._clock = clock
        self._queue: deque[_Write] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._busy = False  # a write taken off the queue is being run
        self._written = 0
        self._dropped_full = 0
        self._dropped_failed = 0
        self._failing = False
        self._last_error = ""
        self._outage_losses = 0  # lost since the last success, for the "resumed" line
        self._thread = threading.Thread(target=self._run, name=f"records-{name}", daemon=True)
        self._thread.start()

    def submit(self, what: str, write: Callable[[], object]) -> bool:
        """Queue ``write`` (``what`` describes it for the log); False when the queue is full or closed."""
        with self._cond:
            if self._closing or len(self._queue) >= self._capacity:
                self._dropped_full += 1
                first = self._outage_losses == 0
                self._outage_losses += 1
                reason = "the writer is closed" if self._closing else f"{self._capacity} writes are waiting"
            else:
                self._queue.append(_Write(what, write, self._clock()))
                self._cond.notify()
                return True
        if first:
            log.error("records lost: %s not written to the %s database (%s)", what, self.name, reason)
        return False

    def stats(self) -> WriterStats:
        with self._cond:
            return WriterStats(
                written=self._written,
                queued=len(self._queue) + int(self._busy),
                dropped_full=self._dropped_full,
                dropped_failed=self._dropped_failed,
                failing=self._failing,
                last_error=self._last_error,
            )

    def flush(self, timeout: float) -> bool:
        """Wait until every write submitted so far was run (or dropped); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (for at most ``timeout`` seconds), then stop the thread. Idempotent."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        with self._cond:
            left = len(self._queue)
            self._queue.clear()
            self._dropped_failed += left
        if left:
            log.error("records lost: %d writes to the %s database were still queued at shutdown", left, self.name)

    # -- the writer thread -------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                write = self._queue.popleft()
                self._busy = True
            try:
                self._write(write)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _write(self, write: _Write) -> None:
        pause = _FIRST_PAUSE
        while True:
            try:
                write.run()
            except sqlite3.OperationalError as error:
                if self._clock() - write.submitted < self._give_up_after and not self._closing_now():
                    self._note_failure(write, error, retrying=True)
                    self._pause(pause)
                    pause = min(pause * 2, _MAX_PAUSE)
                    continue
                self._drop(write, error)
                return
            except Exception as error:  # a write must never kill the writer: count it and go on
                self._drop(write, error)
                return
            self._note_success()
            return

    def _closing_now(self) -> bool:
        with self._cond:
            return self._closing

    def _pause(self, seconds: float) -> None:
        with self._cond:
            if not self._closing:
                self._cond.wait(seconds)

    def _note_failure(self, write: _Write, error: BaseException, *, retrying: bool) -> None:
        with self._cond:
            first = not self._failing
            self._failing = True
            self._last_error = f"{type(error).__name__}: {error}"
        if first:
            log.error(
                "records failing: %s cannot be written to the %s database (%s); %s",
                write.what,
                self.name,
                error,
                "retrying while calls go on" if retrying else "dropped",
            )

    def _drop(self, write: _Write, error: BaseException) -> None:
        with self._cond:
            self._dropped_failed += 1
            first = self._outage_losses == 0
            self._outage_losses += 1
            self._last_error = f"{type(error).__name__}: {error}"
        if first:
            log.error("records lost: %s not written to the %s database (%s)", write.what, self.name, error)
        else:
            log.debug("records lost: %s (%s)", write.what, error)

    def _note_success(self) -> None:
        with self._cond:
            self._written += 1
            recovered = self._failing or self._outage_losses > 0
            lost = self._outage_losses
            self._failing = False
            self._outage_losses = 0
        if recovered:
            log.warning(
                "records resumed: the %s database takes writes again (%d writes lost meanwhile)", self.name, lost
            )

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *_exc: object) -> None:
        with contextlib.suppress(Exception):
            self.close()
