"""The call records as the console reads them: read-only, one connection per request.

The console runs as its own user, in the service's group, and must never change the records, so the file is
opened with SQLite's ``mode=ro`` URI: a bug in a page cannot write, and the bridge stays the only writer. The
records are in WAL mode, so reading never blocks the bridge's writes. The schema is the bridge's own
(``storage.records``): a file the console does not understand is refused with a message, never guessed at.

A connection is opened for each request and closed at its end (``with open_records(path) as records``), so no
connection is shared between waitress's threads and nothing stays open between requests.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from centralita.billing.usage import Usage
from centralita.isp.customers import normalize_dni
from centralita.storage.records import SCHEMA_VERSION, CallRecordsError
from centralita.storage.sqlite import row_dict

__all__ = ["CallUsage", "ReadOnlyRecords", "Search", "open_records"]

BUSY_TIMEOUT_MS: Final = 5000
_MICROS: Final = Decimal(1_000_000)
_USAGE_FIELDS: Final = ("input_text", "input_audio", "cached_text", "cached_audio", "output_text", "output_audio")
UNKNOWN_PRICES: Final = "unknown"


@dataclass(frozen=True, slots=True)
class Search:
    """What the history page looks for; empty fields match everything. Days are those of ``zone``."""

    number: str = ""
    dni: str = ""
    first: date | None = None
    last: date | None = None
    outcome: str = ""
    limit: int = 100


@dataclass(slots=True)
class CallUsage:
    """A call's tokens and cost per currency, with the dates of the price tables the costs were reckoned with."""

    usage: Usage = field(default_factory=Usage)
    costs: dict[str, Decimal] = field(default_factory=dict)
    prices_as_of: list[str] = field(default_factory=list)
    responses: int = 0


def open_records(path: Path) -> ReadOnlyRecords:
    return ReadOnlyRecords(path)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


class ReadOnlyRecords:
    """The call records database at ``path``, opened read-only; use in a ``with`` block."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.is_file():
            raise CallRecordsError(
                f"The call records database {path} does not exist: the bridge creates it on its first start "
                "(systemctl status openai-inbound-calls), or set DB_PATH in the console's settings to where it is."
            )
        try:
            self._db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error as error:
            raise CallRecordsError(
                f"Cannot read the call records database {path} ({error}): the console's user (centralita-web) must "
                f"be in the service's group and {path}, its -wal and -shm files must be group-readable."
            ) from error
        if version != SCHEMA_VERSION:
            self._db.close()
            newer = version > SCHEMA_VERSION
            raise CallRecordsError(
                f"The call records database {path} has schema version {version}, "
                f"{'newer' if newer else 'older'} than the {SCHEMA_VERSION} this console knows: "
                + ("update the console with the bridge." if newer else "start the bridge once to upgrade it.")
            )
        self._db.row_factory = row_dict

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def search(self, search: Search, zone: tzinfo) -> list[dict[str, Any]]:
        """The calls that match ``search``, newest first (call rows, no transcripts)."""
        clauses: list[str] = []
        values: list[Any] = []
        if search.number:
            digits = "".join(character for character in search.number if character.isdigit())
            if digits:
                clauses.append("(caller LIKE ? OR callee LIKE ?)")
                values += [f"%{digits}%", f"%{digits}%"]
        if search.dni:
            dni = normalize_dni(search.dni)
            clauses.append(
                "(call_id IN (SELECT call_id FROM audit_log WHERE customer_id = ?)"
                " OR call_id IN (SELECT call_id FROM caller_events WHERE customer = ?))"
            )
            values += [dni, dni]
        if search.first is not None:
            clauses.append("started_at >= ?")
            values.append(_utc(datetime.combine(search.first, time(), zone)))
        if search.last is not None:
            clauses.append("started_at < ?")
            values.append(_utc(datetime.combine(search.last + timedelta(days=1), time(), zone)))
        if search.outcome:
            clauses.append("outcome = ?")
            values.append(search.outcome)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows: list[dict[str, Any]] = self._db.execute(
            f"SELECT * FROM calls{where} ORDER BY started_at DESC, rowid DESC LIMIT ?", (*values, search.limit)
        ).fetchall()
        return rows

    # The two queries of ``centralita calls report`` (``storage.report.build_report``), as CallRecords runs them.

    def calls_started_between(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._db.execute(
            "SELECT call_id, direction, started_at, answered_at, ended_at, outcome FROM calls"
            " WHERE started_at >= ? AND started_at < ? ORDER BY started_at, rowid",
            (_stamp(start), _stamp(end)),
        ).fetchall()
        return rows

    def usage_between(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._db.execute(
            "SELECT usage.*, calls.started_at AS started_at FROM usage"
            " LEFT JOIN calls ON calls.call_id = usage.call_id"
            " WHERE usage.at >= ? AND usage.at < ? ORDER BY usage.id",
            (_stamp(start), _stamp(end)),
        ).fetchall()
        return rows

    def call(self, call_id: str) -> dict[str, Any] | None:
        """The call's row with its ``transcript``, ``tool_calls``, ``audit`` (router writes), ``tickets`` and
        ``usage`` (a ``CallUsage``), read in one transaction."""
        self._db.execute("BEGIN")
        try:
            call: dict[str, Any] | None = self._db.execute(
                "SELECT * FROM calls WHERE call_id = ?", (call_id,)
            ).fetchone()
            if call is None:
                return None
            call["transcript"] = self._db.execute(
                "SELECT at, speaker, text FROM transcript WHERE call_id = ? ORDER BY id", (call_id,)
            ).fetchall()
            tools = self._db.execute(
                "SELECT at, name, arguments, result, ok FROM tool_calls WHERE call_id = ? ORDER BY id", (call_id,)
            ).fetchall()
            call["audit"] = self._db.execute(
                "SELECT * FROM audit_log WHERE call_id = ? ORDER BY id", (call_id,)
            ).fetchall()
            call["tickets"] = self._db.execute(
                "SELECT * FROM tickets WHERE call_id = ? ORDER BY id", (call_id,)
            ).fetchall()
            usage_rows = self._db.execute("SELECT * FROM usage WHERE call_id = ? ORDER BY id", (call_id,)).fetchall()
        finally:
            self._db.execute("COMMIT")
        for tool in tools:
            tool["arguments"] = json.loads(tool["arguments"])
            tool["result"] = json.loads(tool["result"])
            tool["ok"] = bool(tool["ok"])
        call["tool_calls"] = tools
        call["usage"] = _call_usage(usage_rows)
        return call

    def outcomes(self) -> list[str]:
        """Every outcome found in the records, for the search form."""
        return [
            str(row["outcome"])
            for row in self._db.execute("SELECT DISTINCT outcome FROM calls WHERE outcome IS NOT NULL ORDER BY outcome")
        ]


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _call_usage(rows: list[dict[str, Any]]) -> CallUsage:
    result = CallUsage()
    micros: dict[str, int] = {}
    dates: set[str] = set()
    for row in rows:
        result.usage += Usage(**{name: int(row[name]) for name in _USAGE_FIELDS})
        micros[str(row["currency"])] = micros.get(str(row["currency"]), 0) + int(row["cost_micros"])
        dates.add(str(row["prices_as_of"] or UNKNOWN_PRICES))
        result.responses += 1
    result.costs = {currency: Decimal(value) / _MICROS for currency, value in sorted(micros.items())}
    result.prices_as_of = sorted(dates)
    return result
