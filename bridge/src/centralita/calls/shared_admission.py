"""Admission shared by the workers of openai-inbound-calls: the same limits as ``calls/admission.py``, held across
processes.

With several workers (``calls/workers.py``) a caller's second call may reach another worker than the first, so
the per-caller limits (calls at once, calls started per minute) and the box's ``MAX_CALLS`` cannot be counted in
one process's memory. They are counted in one small SQLite file on /run's tmpfs (``admission_file``), each
decision one ``BEGIN IMMEDIATE`` transaction (well under a millisecond on tmpfs; a busy timeout covers a worker
holding the lock). The dialplan could hold the per-caller count (``GROUP_COUNT``) but not the per-minute one
without ``Gosub`` (which a source build of Asterisk does not have), and the bridge's refusal reasons
(``caller_busy``, ``caller_rate``) would then be logged in two places: so both stay here.

The rows of a worker's calls carry its name. A worker that starts (a restart after it died) forgets the rows
it left: its calls died with it. The supervisor removes the file when the service starts. If the file cannot
be used (a damaged or unwritable file), the worker decides with its own counts (``Admission``), logs it once
and tries the file again at the next call: a limit that holds per worker only is better than refusing calls.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Final, TypeVar

from centralita.calls.admission import Admission, AdmissionLimits, Refusal, caller_key, decide

__all__ = ["SharedAdmission"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_WINDOW_SECONDS: Final = 60.0
_BUSY_TIMEOUT_MS: Final = 2000
_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS calls (call_id TEXT PRIMARY KEY, caller TEXT, worker TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS starts (caller TEXT NOT NULL, at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS starts_caller ON starts (caller, at)",
)


class SharedAdmission:
    """An ``AdmissionGate`` (``Admission``'s interface) with the counts in the SQLite file ``path``, shared by every
    worker. Thread-safe.

    ``clock`` must be the same for every process (the default, ``time.monotonic``, is the system's)."""

    def __init__(
        self,
        path: Path,
        worker: str,
        limits: AdmissionLimits,
        *,
        budget_spent: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = path
        self._worker = worker
        self._limits = limits
        self._budget_spent = budget_spent
        self._clock = clock
        self._lock = threading.Lock()
        self._mine: set[str] = set()
        self._local = Admission(limits, budget_spent=budget_spent, clock=clock)
        self._failing = False
        self.refused: Counter[Refusal] = Counter()
        self._connection: sqlite3.Connection | None = None
        with self._lock:
            self._run(self._forget_my_rows)

    @property
    def limits(self) -> AdmissionLimits:
        return self._limits

    @property
    def active(self) -> int:
        """This worker's calls admitted and not released."""
        with self._lock:
            return len(self._mine)

    def admit(self, call_id: str, caller: str, *, outbound: bool = False) -> Refusal | None:
        """Take the call (None) or say why not, counting every worker's calls."""
        key = caller_key(caller)
        with self._lock:
            if call_id in self._mine:
                return None
            decided = self._run(lambda connection: self._decide(connection, call_id, key, outbound))
            # The file failed: this worker's own counts decide.
            refusal = self._local.admit(call_id, caller, outbound=outbound) if decided is None else decided[0]
            if refusal is not None:
                self.refused[refusal] += 1
                return refusal
            self._mine.add(call_id)
            return None

    def refuse(self, reason: Refusal) -> None:
        with self._lock:
            self.refused[reason] += 1

    def release(self, call_id: str) -> None:
        with self._lock:
            if call_id not in self._mine:
                return
            self._mine.discard(call_id)
            self._local.release(call_id)
            self._run(lambda connection: connection.execute("DELETE FROM calls WHERE call_id = ?", (call_id,)))

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    # -- the file ----------------------------------------------------------------------------------

    def _decide(self, connection: sqlite3.Connection, call_id: str, key: str, outbound: bool) -> tuple[Refusal | None]:
        now = self._clock()
        connection.execute("BEGIN IMMEDIATE")
        try:
            if connection.execute("SELECT 1 FROM calls WHERE call_id = ?", (call_id,)).fetchone():
                connection.execute("COMMIT")
                return (None,)
            (total,) = connection.execute("SELECT count(*) FROM calls").fetchone()

            def caller_counts() -> tuple[int, int]:
                connection.execute("DELETE FROM starts WHERE at <= ?", (now - _WINDOW_SECONDS,))
                connection.execute("INSERT INTO starts (caller, at) VALUES (?, ?)", (key, now))
                (same,) = connection.execute("SELECT count(*) FROM calls WHERE caller = ?", (key,)).fetchone()
                (started,) = connection.execute("SELECT count(*) FROM starts WHERE caller = ?", (key,)).fetchone()
                return int(same), int(started)

            refusal = decide(self._limits, int(total), outbound, caller_counts, self._budget_spent)
            if refusal is None:
                connection.execute(
                    "INSERT INTO calls (call_id, caller, worker) VALUES (?, ?, ?)",
                    (call_id, None if outbound else key, self._worker),
                )
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return (refusal,)

    def _forget_my_rows(self, connection: sqlite3.Connection) -> None:
        connection.execute("DELETE FROM calls WHERE worker = ?", (self._worker,))

    def _open(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=0)
            try:
                connection.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS:d}")
                connection.execute("PRAGMA journal_mode = WAL").fetchone()
                connection.execute("PRAGMA synchronous = OFF")  # tmpfs: nothing to sync, and lost at a reboot anyway
                for statement in _SCHEMA:
                    connection.execute(statement)
            except sqlite3.Error:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _run(self, work: Callable[[sqlite3.Connection], T]) -> T | None:
        """``work`` on the file (under ``self._lock``); None, logged once while it lasts, when the file fails."""
        try:
            result = work(self._open())
        except sqlite3.Error as error:
            if not self._failing:
                log.warning(
                    "admission: the shared counts in %s cannot be used (%s): this worker counts its own calls "
                    "until it can (the per-caller limits then hold per worker only)",
                    self._path,
                    error,
                )
            self._failing = True
            if self._connection is not None:
                self._connection.close()
                self._connection = None
            return None
        if self._failing:
            log.info("admission: the shared counts in %s are used again", self._path)
        self._failing = False
        return result
