"""Opening a SQLite database the Centralita way, shared by the call records and the dialer's campaign store.

``open_database`` checks that the file's directory exists (it is never created here, so a typo in the
setting cannot silently start an empty database somewhere else), connects in autocommit mode
(``isolation_level=None``: each single-row write is its own transaction and migrations manage theirs
explicitly) with ``check_same_thread=False`` (one connection shared behind a lock), sets a busy timeout,
foreign keys, WAL mode and ``synchronous = NORMAL``, and brings the schema up to date.

Schema versions live in ``PRAGMA user_version``; ``migrations[n]`` turns version n into version n + 1, each
in its own ``BEGIN IMMEDIATE`` transaction, so a newer program upgrades an existing file in place and an older
one refuses a file it does not understand.

Every failure is raised as the caller's own ``OSError`` subclass, with a message that names the file, the
setting that chooses it and the fix.

``SharedDatabase`` is the base of the stores built on such a connection: one connection behind a lock, safe
to share between threads, closed by ``close()`` or at the end of a ``with`` block.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = ["Migration", "SharedDatabase", "open_database", "row_dict"]

Migration = Callable[[sqlite3.Connection], None]


def row_dict(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    """A ``row_factory`` that returns each row as a dict keyed by column name."""
    return {column[0]: value for column, value in zip(cursor.description, row, strict=True)}


def open_database(
    path: Path,
    *,
    what: str,
    setting: str,
    user: str,
    when_damaged: str,
    when_newer: str,
    migrations: Sequence[Migration],
    error: type[OSError],
    busy_timeout_ms: int,
) -> sqlite3.Connection:
    """Open (creating if need be) and migrate the database at ``path``; rows come back as dicts.

    The wording of the error messages:

    * ``what`` names the database (``"call records database"``);
    * ``setting`` is the setting that chooses the file (``"DB_PATH"``);
    * ``user`` is who must be able to write it (``"the bridge"``, as in "the user running the bridge");
    * ``when_damaged`` says what happens once a damaged file is moved aside;
    * ``when_newer`` ends "newer than the N ..." for a file with a newer schema
      (``"this bridge knows: run the newer bridge"``).

    Every failure is raised as ``error``.
    """
    if not path.parent.is_dir():
        raise error(
            f"Cannot open the {what} {path}: the directory {path.parent} does not exist. Create it "
            f"(e.g. install -d -o asterisk -g asterisk {path.parent}) or set {setting} to a file in an "
            "existing directory."
        )

    def open_error(cause: sqlite3.Error) -> OSError:
        if cause.sqlite_errorname in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
            return error(
                f"The {what} {path} is not a SQLite database or is damaged ({cause}): move it aside "
                f"({when_damaged}) or set {setting} to another file."
            )
        return error(
            f"Cannot open the {what} {path} ({cause}): the user running {user} must be able to create and "
            f"write {path} and its -wal and -shm files in {path.parent}. Fix the owner or mode of {path.parent} "
            f"(e.g. chown asterisk: {path.parent}) or set {setting} to a writable location."
        )

    try:
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as cause:
        raise open_error(cause) from cause

    def set_up(remaining_ms: int) -> None:
        # While opening, each try waits for a lock only as long as is left of the one busy timeout, so that tries
        # answered "locked" at once and a last one that waits do not add up to more than it.
        connection.execute(f"PRAGMA busy_timeout = {remaining_ms:d}")
        connection.execute("PRAGMA foreign_keys = ON")
        # Switching to WAL writes to the file, so this is where an unwritable database or directory shows.
        connection.execute("PRAGMA journal_mode = WAL").fetchone()
        connection.execute("PRAGMA synchronous = NORMAL")
        _migrate(
            connection,
            migrations,
            lambda version: error(
                f"The {what} {path} has schema version {version}, newer than the {len(migrations)} {when_newer}, "
                f"or set {setting} to another file."
            ),
        )
        connection.execute(f"PRAGMA busy_timeout = {busy_timeout_ms:d}")

    try:
        _while_busy(set_up, busy_timeout_ms / 1000)
    except error:
        connection.close()
        raise
    except sqlite3.Error as cause:
        connection.close()
        raise open_error(cause) from cause
    connection.row_factory = row_dict
    return connection


def _while_busy(step: Callable[[int], None], timeout: float) -> None:
    """Run ``step``, again while SQLite says the database is busy, for up to ``timeout`` seconds; ``step`` is
    given what is left of them, in milliseconds (at least 1), as the longest it may wait for a lock.

    The busy timeout does not cover every case: two processes opening a new file at once (the service's workers,
    started together) may both read it, then both ask to switch it to WAL, and SQLite answers one of them "database
    is locked" at once rather than wait (waiting could deadlock). Everything ``step`` does may be done again.
    """
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        try:
            step(max(1, int((deadline - time.monotonic()) * 1000)))
            return
        except sqlite3.OperationalError as busy:
            if not (busy.sqlite_errorname or "").startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
                raise
            wait = pause * (0.5 + random.random())
            if time.monotonic() + wait > deadline:  # no try starts after the deadline
                raise
        time.sleep(wait)
        pause = min(pause * 2, 0.2)


def _migrate(
    connection: sqlite3.Connection, migrations: Sequence[Migration], too_new: Callable[[int], OSError]
) -> None:
    """Bring the schema up to ``len(migrations)``, one transaction per step."""
    latest = len(migrations)
    while True:
        # BEGIN IMMEDIATE takes the write lock before reading the version, so two processes opening a new
        # file at once cannot both run the same step.
        connection.execute("BEGIN IMMEDIATE")
        try:
            version: int = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > latest:
                raise too_new(version)
            if version == latest:
                connection.execute("COMMIT")
                return
            migrations[version](connection)
            connection.execute(f"PRAGMA user_version = {version + 1:d}")
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise


class SharedDatabase:
    """An open database ``connection`` to the file at ``path``, behind a lock; safe to share between threads.

    Subclasses hold ``_lock`` around every use of ``_connection()`` and say, in ``_closed_error``, what a use
    after ``close()`` raises.
    """

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._open: sqlite3.Connection | None = connection

    def __repr__(self) -> str:
        state = "closed" if self._open is None else "open"
        return f"{type(self).__name__}({str(self.path)!r}, {state})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (its WAL is checkpointed and removed); calling it again does nothing."""
        with self._lock:
            if self._open is not None:
                self._open.close()
                self._open = None

    def _connection(self) -> sqlite3.Connection:
        """The connection; call with the lock held."""
        if self._open is None:
            raise self._closed_error()
        return self._open

    def _closed_error(self) -> OSError:
        return OSError(f"The database {self.path} was closed.")
