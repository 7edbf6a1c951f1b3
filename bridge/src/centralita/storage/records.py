"""Call records in SQLite: one row per call, its transcript and the tools the assistant ran; the audit log of
every change the assistant asked to make on a router (and of every refusal); the outage tickets it opened; and
the caller events the limits are counted from across calls (lookups, failed identity checks).

The database is created, schema included, when ``CallRecords`` is built, so a bad ``DB_PATH`` stops the
bridge at start-up with a message that names the path and the fix, not at the first call. Its directory
must already exist (the role creates it with the right owner); it is not created here, so a typo in
``DB_PATH`` cannot silently start an empty database somewhere else.

Concurrency: the bridge runs each call on its own threads, so one ``CallRecords`` is shared by many
threads. It holds a single connection (``check_same_thread=False``) and a lock around every use of it,
rather than one connection per thread, because

* the bridge starts new threads for every call: per-thread connections (``threading.local``) would leave
  one open connection, and its file descriptors, per finished call until ``close()``, since a thread-local
  value cannot be closed when its thread ends;
* SQLite lets one writer in at a time anyway, and almost every operation here is a write of one small row:
  separate connections would only turn waiting on a lock into ``SQLITE_BUSY`` retries;
* ``close()`` must close every connection from the thread that stops the bridge, which requires
  ``check_same_thread=False`` in any case.

WAL mode lets other processes (an operator's ``sqlite3`` shell, a report) read while the bridge writes, and
``busy_timeout`` makes the bridge wait for them, instead of failing, when one holds a write lock.

Schema versions live in ``PRAGMA user_version``; ``_MIGRATIONS[n]`` turns version n into version n + 1, each
in its own transaction, so a newer bridge upgrades an existing file in place and an older bridge refuses a
file it does not understand.

Timestamps are ISO-8601 in UTC with milliseconds (``2026-11-25T14:03:07.123+00:00``): they sort as text.

``audit_log`` and ``tickets`` carry a ``call_id`` but no foreign key to ``calls``: an audit line or a ticket
must never be lost because its call was not recorded (a tool run by hand, or by another program).

Schema versions:

1. ``calls``, ``transcript``, ``tool_calls``.
2. ``audit_log`` (one row per write the assistant asked for, refused or not) and ``tickets`` (outages).
3. ``calls.campaign``: the dialer campaign of an outbound call. A call row reads the same way in both
   directions: ``caller`` is who called (for a dialer call, the caller ID presented, when known) and
   ``callee`` who was called (the DID of an inbound call, the customer's number of a dialer call). Outbound
   rows written before version 3 held the number called in ``caller`` and the campaign in ``callee``; the
   upgrade moves them to this layout (their presented caller ID was never recorded: NULL).
4. ``caller_events`` (lookups, failed identity checks and limits reached, per caller number and customer, so
   limits hold across calls) and ``audit_log.customer_id`` (the holder, whose reactivations are counted).
5. ``usage``: the tokens of every Realtime response (``response.done``) and what they cost at the price table
   of the time (in millionths of its currency, summed exactly), for the spending budget. No foreign key to
   ``calls``: spending is recorded even when its call's row could not be written.
6. ``usage.prices_as_of``: the date of the price table each cost was reckoned with, shown beside every cost
   (NULL in rows written before: their table's date was not kept).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from centralita.billing.usage import Usage
from centralita.storage.retention import PurgeCounts, mask_personal, purge
from centralita.storage.sqlite import SharedDatabase, open_database

__all__ = [
    "SCHEMA_VERSION",
    "AuditResult",
    "CallRecords",
    "CallRecordsError",
    "CallerEvent",
    "Direction",
    "Outcome",
    "Speaker",
    "UnknownCallError",
]

BUSY_TIMEOUT_MS: Final = 5000


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class Speaker(StrEnum):
    CALLER = "caller"
    ASSISTANT = "assistant"


class Outcome(StrEnum):
    """How a call ended: the ``outcome`` column (stored data: a value never changes once released)."""

    COMPLETED = "completed"  # the assistant ended the call (its hang-up tool), after its last words
    TRANSFERRED = "transferred"  # the assistant handed the caller to the operator context (its transfer tool)
    HUNG_UP_BY_CALLER = "hung_up_by_caller"  # the caller's channel went away while the assistant had it
    REALTIME_FAILED = "realtime_failed"  # the Realtime session failed: failover context, or hung up
    SERVICE_STOPPED = "service_stopped"  # the service stopped: the caller was handed to the operator context
    ERROR = "error"  # the call could not be set up (failover context), or a transfer failed (hung up)
    REFUSED = "refused"  # not given to the assistant (box full, caller limits, budget spent): failover context
    NO_CALLER_AUDIO = "no_caller_audio"  # no RTP from Asterisk for RTP_TIMEOUT: failover context, or hung up
    NO_REPLY = "no_reply"  # the model stayed silent through REPLY_TIMEOUT twice (a filler between): failover
    TIME_LIMIT = "time_limit"  # MAX_CALL_SECONDS reached: to the operator, or hung up after a goodbye
    CHANNEL_GONE = "channel_gone"  # the caller's channel vanished unseen (Asterisk restarted, events lost)
    INTERRUPTED = "interrupted"  # the service died with the call up; its next start handed the caller on


class AuditResult(StrEnum):
    """What became of a write the assistant asked for."""

    REFUSED = "refused"  # a rule said no (writes off, identity not verified, not confirmed...): nothing sent
    ATTEMPTED = "attempted"  # about to be sent to the router; a row left like this means the outcome is unknown
    DONE = "done"  # the router accepted it
    FAILED = "failed"  # the router refused it or could not be reached


class CallerEvent(StrEnum):
    """What a caller made the service do, counted across calls (``caller_events``)."""

    LOOKUP = "lookup"  # a tool looked customers up or read a router for the caller
    IDENTITY_FAILURE = "identity_failure"  # an identity check with data that did not match
    LIMIT = "limit"  # a limit was reached and the tool refused


class CallRecordsError(OSError):
    """The call records database cannot be opened or used; the message names the path and the fix.

    An OSError, like the other "this file cannot be used" errors a start-up handles.
    """


class UnknownCallError(LookupError):
    """An operation named a call_id that ``start_call`` never recorded."""


def _migrate_to_1(connection: sqlite3.Connection) -> None:
    connection.execute(
        """
        CREATE TABLE calls (
            call_id     TEXT PRIMARY KEY,
            direction   TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
            caller      TEXT,
            callee      TEXT,
            started_at  TEXT NOT NULL,
            answered_at TEXT,
            ended_at    TEXT,
            outcome     TEXT,
            detail      TEXT
        )
        """
    )
    connection.execute("CREATE INDEX calls_started_at ON calls (started_at)")
    connection.execute(
        """
        CREATE TABLE transcript (
            id      INTEGER PRIMARY KEY,
            call_id TEXT NOT NULL REFERENCES calls (call_id),
            at      TEXT NOT NULL,
            speaker TEXT NOT NULL CHECK (speaker IN ('caller', 'assistant')),
            text    TEXT NOT NULL
        )
        """
    )
    connection.execute("CREATE INDEX transcript_call_id ON transcript (call_id, id)")
    connection.execute(
        """
        CREATE TABLE tool_calls (
            id           INTEGER PRIMARY KEY,
            call_id      TEXT NOT NULL REFERENCES calls (call_id),
            at           TEXT NOT NULL,
            tool_call_id TEXT NOT NULL,
            name         TEXT NOT NULL,
            arguments    TEXT NOT NULL,
            result       TEXT NOT NULL,
            ok           INTEGER NOT NULL CHECK (ok IN (0, 1)),
            UNIQUE (call_id, tool_call_id)
        )
        """
    )


def _migrate_to_2(connection: sqlite3.Connection) -> None:
    connection.execute(
        """
        CREATE TABLE audit_log (
            id       INTEGER PRIMARY KEY,
            at       TEXT NOT NULL,
            call_id  TEXT NOT NULL,
            caller   TEXT,
            tool     TEXT NOT NULL,
            action   TEXT NOT NULL,
            router   TEXT,
            customer TEXT,
            result   TEXT NOT NULL CHECK (result IN ('refused', 'attempted', 'done', 'failed')),
            reason   TEXT NOT NULL DEFAULT '',
            done_at  TEXT
        )
        """
    )
    connection.execute("CREATE INDEX audit_log_call_id ON audit_log (call_id, id)")
    connection.execute("CREATE INDEX audit_log_at ON audit_log (at)")
    connection.execute(
        """
        CREATE TABLE tickets (
            id            INTEGER PRIMARY KEY,
            at            TEXT NOT NULL,
            call_id       TEXT NOT NULL,
            caller        TEXT,
            customer      TEXT,
            customer_name TEXT,
            router        TEXT,
            symptom       TEXT NOT NULL,
            connection    TEXT NOT NULL,
            status        TEXT NOT NULL DEFAULT 'open'
        )
        """
    )
    connection.execute("CREATE INDEX tickets_call_id ON tickets (call_id)")
    connection.execute("CREATE INDEX tickets_at ON tickets (at)")


def _migrate_to_3(connection: sqlite3.Connection) -> None:
    connection.execute("ALTER TABLE calls ADD COLUMN campaign TEXT")
    # Outbound rows held the number called in caller and the campaign in callee (the callee column of an
    # inbound call is its DID): each value goes to the column that names it.
    connection.execute(
        "UPDATE calls SET campaign = callee, callee = caller, caller = NULL WHERE direction = 'outbound'"
    )


def _migrate_to_4(connection: sqlite3.Connection) -> None:
    connection.execute(
        """
        CREATE TABLE caller_events (
            id       INTEGER PRIMARY KEY,
            at       TEXT NOT NULL,
            call_id  TEXT NOT NULL,
            caller   TEXT NOT NULL,
            customer TEXT,
            kind     TEXT NOT NULL CHECK (kind IN ('lookup', 'identity_failure', 'limit')),
            detail   TEXT NOT NULL DEFAULT ''
        )
        """
    )
    connection.execute("CREATE INDEX caller_events_caller ON caller_events (kind, caller, at)")
    connection.execute("CREATE INDEX caller_events_customer ON caller_events (kind, customer, at)")
    connection.execute("CREATE INDEX caller_events_at ON caller_events (at)")
    connection.execute("ALTER TABLE audit_log ADD COLUMN customer_id TEXT")
    connection.execute("CREATE INDEX audit_log_customer_id ON audit_log (customer_id, tool, at)")


def _migrate_to_5(connection: sqlite3.Connection) -> None:
    connection.execute(
        """
        CREATE TABLE usage (
            id           INTEGER PRIMARY KEY,
            at           TEXT NOT NULL,
            call_id      TEXT NOT NULL,
            response_id  TEXT NOT NULL,
            input_text   INTEGER NOT NULL,
            input_audio  INTEGER NOT NULL,
            cached_text  INTEGER NOT NULL,
            cached_audio INTEGER NOT NULL,
            output_text  INTEGER NOT NULL,
            output_audio INTEGER NOT NULL,
            cost_micros  INTEGER NOT NULL CHECK (cost_micros >= 0),
            currency     TEXT NOT NULL
        )
        """
    )
    connection.execute("CREATE INDEX usage_at ON usage (at)")
    connection.execute("CREATE INDEX usage_call_id ON usage (call_id)")


def _migrate_to_6(connection: sqlite3.Connection) -> None:
    connection.execute("ALTER TABLE usage ADD COLUMN prices_as_of TEXT")


# _MIGRATIONS[n] upgrades a database at user_version n to n + 1. Append only; never edit a released step.
_MIGRATIONS: Final[tuple[Callable[[sqlite3.Connection], None], ...]] = (
    _migrate_to_1,
    _migrate_to_2,
    _migrate_to_3,
    _migrate_to_4,
    _migrate_to_5,
    _migrate_to_6,
)
_MICROS: Final = Decimal(1_000_000)
SCHEMA_VERSION: Final = len(_MIGRATIONS)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _timestamp(moment: datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"timestamps must be timezone-aware, got the naive datetime {moment.isoformat()}")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _connect(path: Path) -> sqlite3.Connection:
    return open_database(
        path,
        what="call records database",
        setting="DB_PATH",
        user="the bridge",
        when_damaged="the bridge then creates a new one",
        when_newer="this bridge knows: run the newer bridge",
        migrations=_MIGRATIONS,
        error=CallRecordsError,
        busy_timeout_ms=BUSY_TIMEOUT_MS,
    )


class CallRecords(SharedDatabase):
    """The call records database at ``path``; safe to share between threads.

    ``clock`` returns the current time as an aware datetime; tests inject a fixed one.
    """

    def __init__(self, path: str | Path, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self._clock = clock
        super().__init__(Path(path), _connect(Path(path)))

    def _closed_error(self) -> CallRecordsError:
        return CallRecordsError(f"The call records database {self.path} was closed: no more records can be written.")

    def now(self) -> datetime:
        """The records' clock: when a write queued now should say it happened."""
        return self._clock()

    def _now(self) -> str:
        return _timestamp(self._clock())

    def _since(self, window: timedelta) -> str:
        return _timestamp(self._clock() - window)

    def _at(self, at: datetime | None) -> str:
        return _timestamp(at) if at is not None else self._now()

    def _require_call(self, db: sqlite3.Connection, call_id: str) -> None:
        if db.execute("SELECT 1 FROM calls WHERE call_id = ?", (call_id,)).fetchone() is None:
            raise UnknownCallError(f"No call {call_id!r} in {self.path}: start_call() must come first.")

    def start_call(
        self,
        call_id: str,
        direction: str,
        caller: str | None,
        callee: str | None,
        started_at: datetime | None = None,
        *,
        campaign: str | None = None,
    ) -> None:
        """Record a new call; a call_id that was already recorded raises ValueError.

        ``caller`` is who called and ``callee`` who was called, in both directions (see schema version 3);
        ``campaign`` is the dialer campaign of an outbound call, and only of one.
        """
        if direction not in tuple(Direction):
            raise ValueError(f"direction must be 'inbound' or 'outbound', got {direction!r}")
        if campaign is not None and direction != Direction.OUTBOUND:
            raise ValueError(f"only an outbound call has a campaign, not this {direction} call ({campaign!r})")
        at = _timestamp(started_at) if started_at is not None else self._now()
        with self._lock:
            try:
                self._connection().execute(
                    "INSERT INTO calls (call_id, direction, caller, callee, campaign, started_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (call_id, str(direction), caller, callee, campaign, at),
                )
            except sqlite3.IntegrityError as error:
                raise ValueError(f"call {call_id!r} is already recorded in {self.path}") from error

    def mark_answered(self, call_id: str, at: datetime | None = None) -> bool:
        """Record when the call was answered (``at``, default now); only the first time counts (returns whether
        this one did)."""
        stamp = self._at(at)
        with self._lock:
            db = self._connection()
            cursor = db.execute(
                "UPDATE calls SET answered_at = ? WHERE call_id = ? AND answered_at IS NULL", (stamp, call_id)
            )
            if cursor.rowcount == 0:
                self._require_call(db, call_id)
                return False
            return True

    def add_transcript(self, call_id: str, speaker: str, text: str, at: datetime | None = None) -> None:
        """Append one line said by ``speaker`` ('caller' or 'assistant') at ``at`` (default now) to the call's
        transcript."""
        if speaker not in tuple(Speaker):
            raise ValueError(f"speaker must be 'caller' or 'assistant', got {speaker!r}")
        stamp = self._at(at)
        with self._lock:
            db = self._connection()
            self._require_call(db, call_id)
            db.execute(
                "INSERT INTO transcript (call_id, at, speaker, text) VALUES (?, ?, ?, ?)",
                (call_id, stamp, str(speaker), text),
            )

    def add_tool_call(
        self,
        call_id: str,
        tool_call_id: str,
        name: str,
        arguments: Mapping[str, Any],
        result: Mapping[str, Any],
        ok: bool,
        at: datetime | None = None,
    ) -> bool:
        """Record a tool the assistant ran (at ``at``, default now); a tool_call_id already recorded for the call
        is ignored (False).

        ``arguments`` and ``result`` are stored as JSON, DNI and phone numbers masked (``retention``): a value
        json cannot encode raises TypeError.
        """
        encoded_arguments = json.dumps(mask_personal(arguments), ensure_ascii=False)
        encoded_result = json.dumps(mask_personal(result), ensure_ascii=False)
        stamp = self._at(at)
        with self._lock:
            db = self._connection()
            self._require_call(db, call_id)
            cursor = db.execute(
                "INSERT INTO tool_calls (call_id, at, tool_call_id, name, arguments, result, ok)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (call_id, tool_call_id) DO NOTHING",
                (call_id, stamp, tool_call_id, name, encoded_arguments, encoded_result, int(bool(ok))),
            )
            return cursor.rowcount == 1

    def end_call(self, call_id: str, outcome: Outcome | str, detail: str = "", at: datetime | None = None) -> bool:
        """Record how the call ended (an ``Outcome``) and when (``at``, default now); only the first end counts
        (returns whether this one did)."""
        if outcome not in tuple(Outcome):
            raise ValueError(f"outcome must be one of {', '.join(Outcome)}, got {outcome!r}")
        stamp = self._at(at)
        with self._lock:
            db = self._connection()
            cursor = db.execute(
                "UPDATE calls SET ended_at = ?, outcome = ?, detail = ? WHERE call_id = ? AND ended_at IS NULL",
                (stamp, str(outcome), detail, call_id),
            )
            if cursor.rowcount == 0:
                self._require_call(db, call_id)
                return False
            return True

    def get_call(self, call_id: str) -> dict[str, Any] | None:
        """The call's row, with ``transcript`` and ``tool_calls`` lists in the order they were recorded."""
        with self._lock:
            db = self._connection()
            # One read transaction, so the three queries see the same state even with other writers.
            db.execute("BEGIN")
            try:
                call: dict[str, Any] | None = db.execute("SELECT * FROM calls WHERE call_id = ?", (call_id,)).fetchone()
                if call is None:
                    return None
                call["transcript"] = db.execute(
                    "SELECT at, speaker, text FROM transcript WHERE call_id = ? ORDER BY id", (call_id,)
                ).fetchall()
                tool_calls: list[dict[str, Any]] = db.execute(
                    "SELECT at, tool_call_id, name, arguments, result, ok FROM tool_calls"
                    " WHERE call_id = ? ORDER BY id",
                    (call_id,),
                ).fetchall()
            finally:
                db.execute("COMMIT")
        for tool_call in tool_calls:
            tool_call["arguments"] = json.loads(tool_call["arguments"])
            tool_call["result"] = json.loads(tool_call["result"])
            tool_call["ok"] = bool(tool_call["ok"])
        call["tool_calls"] = tool_calls
        return call

    def open_calls(self, before: datetime | None = None) -> list[str]:
        """The calls recorded as started (before ``before``, if given) and never ended, oldest first: at a
        service's start, those a previous run of it left behind (it died with them up)."""
        bound = _timestamp(before) if before is not None else "9999"
        with self._lock:
            rows = (
                self._connection()
                .execute(
                    "SELECT call_id FROM calls WHERE ended_at IS NULL AND started_at < ? ORDER BY started_at, rowid",
                    (bound,),
                )
                .fetchall()
            )
        return [str(row["call_id"]) for row in rows]

    # -- spending ---------------------------------------------------------------------------------------

    def add_usage(
        self,
        call_id: str,
        response_id: str,
        usage: Usage,
        cost: Decimal,
        currency: str,
        at: datetime | None = None,
        *,
        prices_as_of: str | None = None,
    ) -> None:
        """Record the tokens of one response and their ``cost`` (kept to the millionth of ``currency``), at ``at``
        (default now), reckoned with the price table of ``prices_as_of``."""
        if cost < 0:
            raise ValueError(f"a cost is 0 or more, not {cost}")
        micros = int((cost * _MICROS).to_integral_value())
        stamp = self._at(at)
        with self._lock:
            self._connection().execute(
                "INSERT INTO usage (at, call_id, response_id, input_text, input_audio, cached_text, cached_audio,"
                " output_text, output_audio, cost_micros, currency, prices_as_of)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    stamp,
                    call_id,
                    response_id,
                    usage.input_text,
                    usage.input_audio,
                    usage.cached_text,
                    usage.cached_audio,
                    usage.output_text,
                    usage.output_audio,
                    micros,
                    currency,
                    prices_as_of,
                ),
            )

    def spent_since(self, moment: datetime) -> Decimal:
        """What the responses recorded at or after ``moment`` cost, exactly (in the price table's currency)."""
        at = _timestamp(moment)
        with self._lock:
            row = (
                self._connection()
                .execute("SELECT SUM(cost_micros) AS micros FROM usage WHERE at >= ?", (at,))
                .fetchone()
            )
        return Decimal(int(row["micros"] or 0)) / _MICROS

    def calls_started_between(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """The call rows that started at or after ``start`` and before ``end``, oldest first."""
        with self._lock:
            rows: list[dict[str, Any]] = (
                self._connection()
                .execute(
                    "SELECT call_id, direction, started_at, answered_at, ended_at, outcome FROM calls"
                    " WHERE started_at >= ? AND started_at < ? ORDER BY started_at, rowid",
                    (_timestamp(start), _timestamp(end)),
                )
                .fetchall()
            )
        return rows

    def usage_between(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """The usage rows recorded at or after ``start`` and before ``end``, each with ``started_at``, the start
        of its call (None when the call's row is missing)."""
        with self._lock:
            rows: list[dict[str, Any]] = (
                self._connection()
                .execute(
                    "SELECT usage.*, calls.started_at AS started_at FROM usage"
                    " LEFT JOIN calls ON calls.call_id = usage.call_id"
                    " WHERE usage.at >= ? AND usage.at < ? ORDER BY usage.id",
                    (_timestamp(start), _timestamp(end)),
                )
                .fetchall()
            )
        return rows

    def usage_of(self, call_id: str) -> tuple[Usage, Decimal]:
        """The tokens of every response of the call, summed, and what they cost."""
        with self._lock:
            row = (
                self._connection()
                .execute(
                    "SELECT COALESCE(SUM(input_text), 0) AS input_text, COALESCE(SUM(input_audio), 0) AS input_audio,"
                    " COALESCE(SUM(cached_text), 0) AS cached_text, COALESCE(SUM(cached_audio), 0) AS cached_audio,"
                    " COALESCE(SUM(output_text), 0) AS output_text, COALESCE(SUM(output_audio), 0) AS output_audio,"
                    " COALESCE(SUM(cost_micros), 0) AS micros FROM usage WHERE call_id = ?",
                    (call_id,),
                )
                .fetchone()
            )
        micros = int(row.pop("micros"))
        return Usage(**{name: int(value) for name, value in row.items()}), Decimal(micros) / _MICROS

    # -- audit log of router writes ----------------------------------------------------------------------

    def add_audit(
        self,
        call_id: str,
        tool: str,
        action: str,
        result: str,
        reason: str = "",
        *,
        caller: str | None = None,
        router: str | None = None,
        customer: str | None = None,
        customer_id: str | None = None,
    ) -> int:
        """Record a write (or a privileged action) the assistant asked for; its audit id.

        ``action`` says what the write is (e.g. ``address-list add list=promesa-pago address=10.20.0.14
        timeout=3d``), ``result`` is an ``AuditResult`` and ``reason`` why it was refused or failed. A write
        about to be sent is recorded as ``attempted`` first and finished with ``finish_audit``, so a crash in
        between leaves a trace. ``customer`` is the service (PPPoE user), ``customer_id`` the holder (the DNI)
        whose actions are counted across services. Never put passwords in ``action`` or ``reason``.
        """
        if result not in tuple(AuditResult):
            raise ValueError(f"result must be one of {', '.join(AuditResult)}, got {result!r}")
        if not call_id or not tool or not action:
            raise ValueError("call_id, tool and action must not be empty")
        at = self._now()
        done_at = at if result != AuditResult.ATTEMPTED else None
        with self._lock:
            return self._insert_audit(
                self._connection(),
                (at, call_id, caller, tool, action, router, customer, customer_id, result, reason, done_at),
            )

    @staticmethod
    def _insert_audit(db: sqlite3.Connection, values: tuple[Any, ...]) -> int:
        cursor = db.execute(
            "INSERT INTO audit_log"
            " (at, call_id, caller, tool, action, router, customer, customer_id, result, reason, done_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            tuple(str(value) if isinstance(value, AuditResult) else value for value in values),
        )
        return int(cursor.lastrowid or 0)

    def count_audit(
        self, tool: str, customer_id: str, window: timedelta, results: Collection[str] = (AuditResult.DONE,)
    ) -> int:
        """How many ``tool`` rows of holder ``customer_id`` with one of ``results`` are within ``window`` of now."""
        marks = ", ".join("?" for _ in results)
        with self._lock:
            row = (
                self._connection()
                .execute(
                    "SELECT count(*) AS n FROM audit_log WHERE customer_id = ? AND tool = ? AND at >= ?"
                    f" AND result IN ({marks})",
                    (customer_id, tool, self._since(window), *map(str, results)),
                )
                .fetchone()
            )
        return int(row["n"])

    def reserve_audit(
        self,
        call_id: str,
        tool: str,
        action: str,
        *,
        customer_id: str,
        limit: int,
        window: timedelta,
        caller: str | None = None,
        router: str | None = None,
        customer: str | None = None,
    ) -> int | None:
        """Record an ``attempted`` write only if the holder has fewer than ``limit`` ``done`` or ``attempted``
        ``tool`` rows within ``window``: its audit id, or None when the limit is reached (nothing is written).

        Count and insert are one transaction (``BEGIN IMMEDIATE``), so two calls for the same holder at once
        cannot both get the last one, even from two processes.
        """
        if not call_id or not tool or not action or not customer_id:
            raise ValueError("call_id, tool, action and customer_id must not be empty")
        at = self._now()
        since = self._since(window)
        with self._lock:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(
                    "SELECT count(*) AS n FROM audit_log WHERE customer_id = ? AND tool = ? AND at >= ?"
                    " AND result IN ('done', 'attempted')",
                    (customer_id, tool, since),
                ).fetchone()
                if int(row["n"]) >= limit:
                    db.execute("COMMIT")
                    return None
                audit_id = self._insert_audit(
                    db,
                    (at, call_id, caller, tool, action, router, customer, customer_id, AuditResult.ATTEMPTED, "", None),
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return audit_id

    def finish_audit(self, audit_id: int, result: str, reason: str = "") -> bool:
        """Record how an ``attempted`` write ended (``done``, ``failed``, or ``refused`` by a check made just
        before sending it); False if it was not pending."""
        if result not in (AuditResult.DONE, AuditResult.FAILED, AuditResult.REFUSED):
            raise ValueError(f"an attempted write ends 'done', 'failed' or 'refused', got {result!r}")
        at = self._now()
        with self._lock:
            cursor = self._connection().execute(
                "UPDATE audit_log SET result = ?, reason = ?, done_at = ? WHERE id = ? AND result = 'attempted'",
                (str(result), reason, at, audit_id),
            )
            return cursor.rowcount == 1

    def audit_entries(self, call_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Audit rows, oldest first: those of ``call_id``, or (``None``) the last ``limit`` of all calls."""
        return self._rows("audit_log", call_id, limit)

    # -- caller events (limits across calls) -----------------------------------------------------------

    def add_caller_event(
        self, call_id: str, kind: str, caller: str, *, customer: str | None = None, detail: str = ""
    ) -> None:
        """Record that ``caller`` (a number, or ``anonymous``) made the service do ``kind`` (a ``CallerEvent``)."""
        if kind not in tuple(CallerEvent):
            raise ValueError(f"kind must be one of {', '.join(CallerEvent)}, got {kind!r}")
        if not call_id or not caller:
            raise ValueError("call_id and caller must not be empty")
        at = self._now()
        with self._lock:
            self._connection().execute(
                "INSERT INTO caller_events (at, call_id, caller, customer, kind, detail) VALUES (?, ?, ?, ?, ?, ?)",
                (at, call_id, caller, customer, str(kind), detail),
            )

    def count_caller_events(
        self, kind: str, window: timedelta, *, caller: str | None = None, customer: str | None = None
    ) -> int:
        """How many ``kind`` events within ``window`` of now: of ``caller``, or of ``customer`` (exactly one)."""
        if (caller is None) == (customer is None):
            raise ValueError("count the events of a caller or of a customer, not both and not neither")
        column, value = ("caller", caller) if caller is not None else ("customer", customer)
        with self._lock:
            row = (
                self._connection()
                .execute(
                    f"SELECT count(*) AS n FROM caller_events WHERE kind = ? AND {column} = ? AND at >= ?",
                    (str(kind), value, self._since(window)),
                )
                .fetchone()
            )
        return int(row["n"])

    def caller_events(self, call_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Caller events, oldest first: those of ``call_id``, or (``None``) the last ``limit`` of all."""
        return self._rows("caller_events", call_id, limit)

    def prune_caller_events(self, older_than: timedelta) -> int:
        """Delete caller events older than ``older_than`` (no limit counts that far back); how many went."""
        with self._lock:
            cursor = self._connection().execute("DELETE FROM caller_events WHERE at < ?", (self._since(older_than),))
            return cursor.rowcount

    # -- outage tickets --------------------------------------------------------------------------------

    def add_ticket(
        self,
        call_id: str,
        symptom: str,
        *,
        caller: str | None = None,
        customer: str | None = None,
        customer_name: str | None = None,
        router: str | None = None,
        connection: Mapping[str, Any] | None = None,
    ) -> int:
        """Open an outage ticket; its number. ``connection`` is the connection state seen when it was opened
        (stored as JSON)."""
        if not call_id or not symptom.strip():
            raise ValueError("call_id and symptom must not be empty")
        encoded = json.dumps(dict(connection or {}), ensure_ascii=False)
        at = self._now()
        with self._lock:
            cursor = self._connection().execute(
                "INSERT INTO tickets (at, call_id, caller, customer, customer_name, router, symptom, connection)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (at, call_id, caller, customer, customer_name, router, symptom.strip(), encoded),
            )
            return int(cursor.lastrowid or 0)

    def get_ticket(self, number: int) -> dict[str, Any] | None:
        """The ticket ``number`` with its ``connection`` decoded, or None."""
        with self._lock:
            row: dict[str, Any] | None = (
                self._connection().execute("SELECT * FROM tickets WHERE id = ?", (number,)).fetchone()
            )
        if row is not None:
            row["connection"] = json.loads(row["connection"])
        return row

    def tickets(self, call_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Tickets, oldest first: those opened in ``call_id``, or (``None``) the last ``limit`` of all."""
        rows = self._rows("tickets", call_id, limit)
        for row in rows:
            row["connection"] = json.loads(row["connection"])
        return rows

    def _rows(self, table: str, call_id: str | None, limit: int) -> list[dict[str, Any]]:
        """Rows of ``table`` (audit_log, tickets or caller_events), oldest first: those of ``call_id``, or the last
        ``limit``."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        with self._lock:
            db = self._connection()
            if call_id is not None:
                return db.execute(
                    f"SELECT * FROM {table} WHERE call_id = ? ORDER BY id LIMIT ?", (call_id, limit)
                ).fetchall()
            return db.execute(
                f"SELECT * FROM (SELECT * FROM {table} ORDER BY id DESC LIMIT ?) ORDER BY id", (limit,)
            ).fetchall()

    def purge(self, before: datetime) -> PurgeCounts:
        """Delete the transcripts and tool calls of calls that started before ``before``, masking their numbers
        (``retention.purge``)."""
        at = _timestamp(before)
        with self._lock:
            return purge(self._connection(), at)

    def recent_calls(self, limit: int = 20) -> list[dict[str, Any]]:
        """The last ``limit`` calls by start time, newest first (call rows only, no transcripts)."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        with self._lock:
            rows: list[dict[str, Any]] = (
                self._connection()
                .execute("SELECT * FROM calls ORDER BY started_at DESC, rowid DESC LIMIT ?", (limit,))
                .fetchall()
            )
        return rows
