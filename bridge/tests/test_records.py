"""Call records: schema, round trips, idempotence, threads, reopening, errors and closing."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from unprivileged import error_as_unprivileged

from centralita.billing.usage import Usage
from centralita.storage import sqlite as sqlite_storage
from centralita.storage.records import (
    _MIGRATIONS,
    SCHEMA_VERSION,
    AuditResult,
    CallerEvent,
    CallRecords,
    CallRecordsError,
    Outcome,
    UnknownCallError,
)

START = datetime(2026, 11, 25, 14, 3, 7, 123000, tzinfo=UTC)


class FakeClock:
    """Advances one second per reading, so every timestamp is distinct and predictable."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        moment = self.now
        self.now += timedelta(seconds=1)
        return moment


def stamp(seconds: int) -> str:
    return (START + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "centralita.db"


@pytest.fixture
def records(db_path: Path) -> Iterator[CallRecords]:
    with CallRecords(db_path, clock=FakeClock()) as opened:
        yield opened


def sqlite_query(path: Path, sql: str) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def test_schema_is_created_on_first_use(records: CallRecords, db_path: Path) -> None:
    tables = {name for (name,) in sqlite_query(db_path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"calls", "transcript", "tool_calls", "usage"} <= tables
    assert sqlite_query(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert SCHEMA_VERSION == 6
    assert sqlite_query(db_path, "PRAGMA journal_mode") == [("wal",)]
    columns = [row[1] for row in sqlite_query(db_path, "PRAGMA table_info(calls)")]
    assert columns == [
        "call_id",
        "direction",
        "caller",
        "callee",
        "started_at",
        "answered_at",
        "ended_at",
        "outcome",
        "detail",
        "campaign",
    ]


def test_round_trip_of_a_whole_call(records: CallRecords) -> None:
    records.start_call("1732543387.12", "inbound", "+34600111222", "+34910000000")  # clock: +0 s
    assert records.mark_answered("1732543387.12")  # +1 s
    records.add_transcript("1732543387.12", "assistant", "Hola, ¿en qué puedo ayudarle?")  # +2 s
    records.add_transcript("1732543387.12", "caller", "Quiero hablar con soporte")  # +3 s
    assert records.add_tool_call(
        "1732543387.12", "call_abc", "lookup_customer", {"phone": "+34600111222"}, {"name": "Ana"}, True
    )  # +4 s
    assert records.end_call("1732543387.12", "transferred", "to centralita-operator")  # +5 s

    assert records.get_call("1732543387.12") == {
        "call_id": "1732543387.12",
        "direction": "inbound",
        "caller": "+34600111222",
        "callee": "+34910000000",
        "started_at": stamp(0),
        "answered_at": stamp(1),
        "ended_at": stamp(5),
        "outcome": "transferred",
        "detail": "to centralita-operator",
        "campaign": None,
        "transcript": [
            {"at": stamp(2), "speaker": "assistant", "text": "Hola, ¿en qué puedo ayudarle?"},
            {"at": stamp(3), "speaker": "caller", "text": "Quiero hablar con soporte"},
        ],
        "tool_calls": [
            {
                "at": stamp(4),
                "tool_call_id": "call_abc",
                "name": "lookup_customer",
                "arguments": {"phone": "+********222"},  # stored masked (storage.retention)
                "result": {"name": "Ana"},
                "ok": True,
            }
        ],
    }
    assert stamp(0) == "2026-11-25T14:03:07.123+00:00"


def test_unknown_call_gives_none_and_writes_to_it_fail(records: CallRecords) -> None:
    assert records.get_call("nope") is None
    with pytest.raises(UnknownCallError, match="nope"):
        records.add_transcript("nope", "caller", "hola")
    with pytest.raises(UnknownCallError):
        records.end_call("nope", "completed")
    with pytest.raises(UnknownCallError):
        records.mark_answered("nope")


def test_invalid_values_are_refused(records: CallRecords) -> None:
    with pytest.raises(ValueError, match="direction"):
        records.start_call("c1", "sideways", "a", "b")
    records.start_call("c1", "outbound", None, "+34910000000")
    with pytest.raises(ValueError, match="already recorded"):
        records.start_call("c1", "inbound", "a", "b")
    with pytest.raises(ValueError, match="speaker"):
        records.add_transcript("c1", "operator", "hola")
    with pytest.raises(ValueError, match="naive"):
        records.start_call("c2", "inbound", "a", "b", started_at=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="only an outbound call has a campaign"):
        records.start_call("c3", "inbound", "a", "b", campaign="marzo")
    assert records.get_call("c3") is None
    with pytest.raises(ValueError, match=r"outcome must be one of completed, transferred, .*got 'hung_up'"):
        records.end_call("c1", "hung_up")
    with pytest.raises(ValueError, match="outcome must be one of"):
        records.end_call("c1", "")
    assert records.get_call("c1")["ended_at"] is None  # type: ignore[index]


def test_every_outcome_is_stored_as_its_value(records: CallRecords) -> None:
    for number, outcome in enumerate(Outcome):
        records.start_call(f"c{number}", "inbound", "a", "b")
        assert records.end_call(f"c{number}", outcome)
        assert records.get_call(f"c{number}")["outcome"] == outcome.value  # type: ignore[index]
    assert {outcome.value for outcome in Outcome} == {
        "completed",
        "transferred",
        "hung_up_by_caller",
        "realtime_failed",
        "service_stopped",
        "error",
        "refused",
        "no_caller_audio",
        "no_reply",
        "time_limit",
        "channel_gone",
        "interrupted",
    }


def test_an_outbound_call_names_its_campaign(records: CallRecords) -> None:
    records.start_call("1732543999.40", "outbound", "", "+525550001111", campaign="marzo")
    call = records.get_call("1732543999.40")
    assert call is not None
    assert (call["direction"], call["caller"], call["callee"], call["campaign"]) == (
        "outbound",
        "",
        "+525550001111",
        "marzo",
    )


def test_started_at_is_stored_in_utc(records: CallRecords) -> None:
    madrid = datetime(2026, 11, 25, 16, 3, 7, tzinfo=timezone(timedelta(hours=1)))
    records.start_call("c1", "inbound", "a", "b", started_at=madrid)
    call = records.get_call("c1")
    assert call is not None
    assert call["started_at"] == "2026-11-25T15:03:07.000+00:00"


def test_transcript_keeps_the_order_lines_were_added(db_path: Path) -> None:
    # A clock that goes backwards: the order must come from insertion, not from the timestamps.
    moments = iter(START - timedelta(seconds=second) for second in range(100))
    with CallRecords(db_path, clock=lambda: next(moments)) as records:
        records.start_call("c1", "inbound", "a", "b")
        lines = [f"línea {number}" for number in range(20)]
        for number, line in enumerate(lines):
            records.add_transcript("c1", "caller" if number % 2 else "assistant", line)
        call = records.get_call("c1")
    assert call is not None
    assert [entry["text"] for entry in call["transcript"]] == lines
    assert [entry["speaker"] for entry in call["transcript"]][:2] == ["assistant", "caller"]


def test_duplicate_tool_call_is_ignored(records: CallRecords) -> None:
    records.start_call("c1", "inbound", "a", "b")
    records.start_call("c2", "inbound", "a", "b")
    assert records.add_tool_call("c1", "call_1", "transfer", {"to": "ventas"}, {"ok": True}, True) is True
    assert records.add_tool_call("c1", "call_1", "transfer", {"to": "OTHER"}, {"ok": False}, False) is False
    # The same tool_call_id in another call is another tool call.
    assert records.add_tool_call("c2", "call_1", "transfer", {"to": "soporte"}, {"ok": True}, True) is True

    call = records.get_call("c1")
    assert call is not None
    assert [(tool["arguments"], tool["ok"]) for tool in call["tool_calls"]] == [({"to": "ventas"}, True)]


def test_end_call_is_idempotent(records: CallRecords) -> None:
    records.start_call("c1", "inbound", "a", "b")
    assert records.end_call("c1", "hung_up_by_caller") is True
    assert records.end_call("c1", "error", "cleanup after hangup") is False
    assert records.mark_answered("c1") is True
    assert records.mark_answered("c1") is False

    call = records.get_call("c1")
    assert call is not None
    assert (call["outcome"], call["detail"], call["ended_at"]) == ("hung_up_by_caller", "", stamp(1))
    assert call["answered_at"] == stamp(3)


def test_recent_calls_newest_first(records: CallRecords) -> None:
    for number in range(5):
        records.start_call(f"c{number}", "inbound", "a", "b")
    assert [call["call_id"] for call in records.recent_calls(3)] == ["c4", "c3", "c2"]
    assert "transcript" not in records.recent_calls(1)[0]
    with pytest.raises(ValueError, match="limit"):
        records.recent_calls(0)


def test_concurrent_writers_lose_nothing(records: CallRecords) -> None:
    threads_count, lines_per_thread = 8, 50
    records.start_call("busy", "inbound", "a", "b")
    barrier = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def writer(number: int) -> None:
        try:
            barrier.wait()
            for line in range(lines_per_thread):
                records.add_transcript("busy", "caller", f"{number}:{line}")
        except BaseException as error:
            errors.append(error)
            raise

    threads = [threading.Thread(target=writer, args=(number,)) for number in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    call = records.get_call("busy")
    assert call is not None
    texts = [entry["text"] for entry in call["transcript"]]
    assert len(texts) == threads_count * lines_per_thread
    assert set(texts) == {f"{number}:{line}" for number in range(threads_count) for line in range(lines_per_thread)}
    # Each thread's own lines stay in the order it wrote them.
    for number in range(threads_count):
        mine = [int(text.split(":")[1]) for text in texts if text.startswith(f"{number}:")]
        assert mine == list(range(lines_per_thread))


def test_reopening_keeps_data_and_version(db_path: Path) -> None:
    with CallRecords(db_path, clock=FakeClock()) as records:
        records.start_call("c1", "inbound", "a", "b")
        records.add_transcript("c1", "caller", "hola")
        records.end_call("c1", "completed")

    with CallRecords(db_path, clock=FakeClock()) as reopened:
        call = reopened.get_call("c1")
        assert call is not None
        assert call["outcome"] == "completed"
        assert [entry["text"] for entry in call["transcript"]] == ["hola"]
        reopened.start_call("c2", "inbound", "a", "b")
    assert sqlite_query(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert sqlite_query(db_path, "SELECT call_id FROM calls ORDER BY call_id") == [("c1",), ("c2",)]


def _open_when_all_are_ready(path: str, start: Any, results: Any) -> None:
    """In a process of its own, as each worker is: open the records file once every process is ready."""
    start.wait(30)
    try:
        CallRecords(Path(path)).close()
    except OSError as error:
        results.put(str(error))
    else:
        results.put("")


def test_workers_opening_a_new_file_at_once_all_open_it(tmp_path: Path) -> None:
    # The service's workers start together and open the same new records file: SQLite answers one of two
    # processes switching it to WAL at once "database is locked" without waiting; the open tries again. Without
    # that, this test failed in about one run in two on this machine (8 processes, 30 new files).
    context = multiprocessing.get_context("fork")
    for attempt in range(30):
        path = tmp_path / f"at-once-{attempt}.db"
        start, results = context.Barrier(8), context.Queue()
        processes = [
            context.Process(target=_open_when_all_are_ready, args=(str(path), start, results)) for _ in range(8)
        ]
        for process in processes:
            process.start()
        errors = [results.get(timeout=60) for _ in processes]
        for process in processes:
            process.join(30)
        assert [error for error in errors if error] == []
        assert sqlite_query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def test_opening_waits_for_locks_no_longer_than_one_busy_timeout_in_all(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tries answered "locked" at once and a last one that waits: each may wait only for what is left of the one
    busy timeout, so that together they never take twice as long."""
    given: list[int] = []
    clock = [100.0]
    monkeypatch.setattr(sqlite_storage.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(sqlite_storage.time, "sleep", lambda seconds: clock.__setitem__(0, clock[0] + seconds))

    def locked(remaining_ms: int) -> None:
        given.append(remaining_ms)
        clock[0] += 0.05  # each try takes 50 ms before SQLite says "locked"
        error = sqlite3.OperationalError("database is locked")
        error.sqlite_errorname = "SQLITE_BUSY"
        raise error

    with pytest.raises(sqlite3.OperationalError, match="locked"):
        sqlite_storage._while_busy(locked, 1.0)
    assert given[0] == 1000
    assert given == sorted(given, reverse=True)
    assert len(given) > 3
    # What each try may wait plus when it started never passes the deadline (100 s + 1 s).
    assert clock[0] <= 101.0 + 0.05


def test_an_open_database_waits_the_configured_busy_timeout(tmp_path: Path) -> None:
    connection = sqlite_storage.open_database(
        tmp_path / "busy.db",
        what="test database",
        setting="TEST_DB",
        user="the test",
        when_damaged="",
        when_newer="",
        migrations=[],
        error=OSError,
        busy_timeout_ms=1234,
    )
    try:
        assert connection.execute("PRAGMA busy_timeout").fetchone() == {"timeout": 1234}
    finally:
        connection.close()


def test_a_newer_schema_is_refused(db_path: Path) -> None:
    CallRecords(db_path).close()
    connection = sqlite3.connect(db_path)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(CallRecordsError, match=f"schema version {SCHEMA_VERSION + 1}, newer"):
        CallRecords(db_path)


def test_missing_directory_names_path_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "centralita.db"
    with pytest.raises(CallRecordsError) as caught:
        CallRecords(path)
    assert isinstance(caught.value, OSError)  # what the start-up catches and prints
    message = str(caught.value)
    assert str(path) in message
    assert "does not exist" in message
    assert "install -d" in message
    assert not path.parent.exists()


def test_not_a_database_names_path(tmp_path: Path) -> None:
    path = tmp_path / "centralita.db"
    path.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(CallRecordsError, match="not a database") as caught:
        CallRecords(path)
    assert str(path) in str(caught.value)


def test_unwritable_directory_names_path_and_fix() -> None:
    # Not tmp_path: pytest's base directory is private to its owner, and the unprivileged child must reach it.
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        directory.chmod(0o555)
        try:
            message = error_as_unprivileged(lambda: CallRecords(directory / "centralita.db"), CallRecordsError)
        finally:
            directory.chmod(0o755)
        assert not (directory / "centralita.db").exists()
    assert str(directory / "centralita.db") in message
    assert "writable" in message
    assert "DB_PATH" in message


def open_files(path: Path) -> list[str]:
    """The descriptors of this process open on ``path`` or its -wal / -shm files."""
    path = path.resolve()
    names = {str(path), f"{path}-wal", f"{path}-shm", f"{path}-journal"}
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the descriptor os.listdir itself used, closed by now
            continue
        if target in names:
            found.append(target)
    return found


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc")
def test_close_releases_the_files(db_path: Path) -> None:
    records = CallRecords(db_path)
    records.start_call("c1", "inbound", "a", "b")
    assert str(db_path.resolve()) in open_files(db_path)
    assert f"{db_path.resolve()}-wal" in open_files(db_path)

    records.close()
    assert open_files(db_path) == []
    records.close()  # a second close is harmless
    with pytest.raises(CallRecordsError, match="closed"):
        records.add_transcript("c1", "caller", "hola")


# -- audit log and tickets (schema version 2) --------------------------------------------------------------


def test_audit_rows_round_trip_and_finish_once(records: CallRecords) -> None:
    refused = records.add_audit(
        "c1", "reactivar_servicio", "address-list add", AuditResult.REFUSED, "writes are disabled", caller="555"
    )
    attempted = records.add_audit(
        "c1",
        "reactivar_servicio",
        "address-list add list=promesa-pago address=10.20.0.14 timeout=3d",
        AuditResult.ATTEMPTED,
        router="nucleo",
        customer="luis.hernandez",
    )
    records.add_audit("c2", "reactivar_servicio", "address-list add", AuditResult.REFUSED, "not confirmed")
    assert attempted == refused + 1

    [first, second] = records.audit_entries("c1")
    assert (first["result"], first["reason"], first["caller"], first["done_at"]) == (
        "refused",
        "writes are disabled",
        "555",
        stamp(0),
    )
    assert (second["result"], second["router"], second["customer"], second["done_at"]) == (
        "attempted",
        "nucleo",
        "luis.hernandez",
        None,
    )
    assert records.finish_audit(attempted, AuditResult.DONE, "entry *4") is True
    assert records.finish_audit(attempted, AuditResult.FAILED, "late") is False  # only a pending row changes
    assert records.finish_audit(refused, AuditResult.DONE) is False
    finished = records.audit_entries("c1")[1]
    assert (finished["result"], finished["reason"]) == ("done", "entry *4")
    assert [row["call_id"] for row in records.audit_entries()] == ["c1", "c1", "c2"]
    assert [row["call_id"] for row in records.audit_entries(limit=1)] == ["c2"]


def test_audit_needs_a_known_result_and_no_call_row(records: CallRecords) -> None:
    with pytest.raises(ValueError, match="result must be one of"):
        records.add_audit("c1", "t", "a", "maybe")
    with pytest.raises(ValueError, match="ends 'done', 'failed' or 'refused'"):
        records.finish_audit(1, AuditResult.ATTEMPTED)
    with pytest.raises(ValueError, match="must not be empty"):
        records.add_audit("", "t", "a", AuditResult.REFUSED)
    # No start_call: an audit line is never lost for want of a call row.
    assert records.add_audit("never-started", "t", "a", AuditResult.REFUSED) > 0


# -- limits across calls (schema version 3) ----------------------------------------------------------------


class SettableClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def test_caller_events_are_counted_per_caller_and_per_customer_within_a_window(db_path: Path) -> None:
    clock = SettableClock()
    with CallRecords(db_path, clock=clock) as records:
        records.add_caller_event("c1", CallerEvent.IDENTITY_FAILURE, "+525550009999", customer="45678901")
        records.add_caller_event("c2", CallerEvent.IDENTITY_FAILURE, "+525550008888", customer="45678901")
        records.add_caller_event("c2", CallerEvent.LOOKUP, "+525550008888")
        clock.now += timedelta(hours=2)
        records.add_caller_event("c3", CallerEvent.IDENTITY_FAILURE, "+525550009999")
        day, hour = timedelta(days=1), timedelta(hours=1)
        failure = CallerEvent.IDENTITY_FAILURE
        assert records.count_caller_events(failure, day, caller="+525550009999") == 2  # two calls, one count
        assert records.count_caller_events(failure, day, customer="45678901") == 2  # two numbers, one customer
        assert records.count_caller_events(failure, hour, caller="+525550009999") == 1  # the first is too old
        assert records.count_caller_events(CallerEvent.LOOKUP, day, caller="+525550008888") == 1
        assert [row["call_id"] for row in records.caller_events("c2")] == ["c2", "c2"]
        with pytest.raises(ValueError, match="a caller or of a customer"):
            records.count_caller_events(failure, day)
        with pytest.raises(ValueError, match="kind must be one of"):
            records.add_caller_event("c1", "guess", "+525550009999")
        assert records.prune_caller_events(hour) == 3
        assert [row["call_id"] for row in records.caller_events()] == ["c3"]


def test_reactivations_are_counted_from_the_audit_log_and_reserved_atomically(db_path: Path) -> None:
    clock = SettableClock()
    period = timedelta(days=30)
    tool = "reactivar_servicio"
    with CallRecords(db_path, clock=clock) as records:

        def reserve(call_id: str) -> int | None:
            return records.reserve_audit(call_id, tool, "add", customer_id="45678901", limit=1, window=period)

        first = reserve("c1")
        assert first is not None
        assert reserve("c2") is None  # an attempted write counts: its outcome is unknown
        records.finish_audit(first, AuditResult.FAILED, "router down")
        second = reserve("c3")  # a failed one does not
        assert second is not None
        records.finish_audit(second, AuditResult.DONE, "entry *9")
        records.add_audit("c4", tool, "add", AuditResult.REFUSED, "limit", customer_id="45678901")
        assert records.count_audit(tool, "45678901", period) == 1
        assert records.count_audit(tool, "45678901", period, results=(AuditResult.REFUSED,)) == 1
        assert reserve("c5") is None
        assert records.count_audit(tool, "other", period) == 0
        clock.now += period + timedelta(seconds=1)
        assert reserve("c6") is not None  # a new period
        assert [row["result"] for row in records.audit_entries()] == ["failed", "done", "refused", "attempted"]


def test_reservations_from_many_threads_give_out_exactly_the_limit(db_path: Path) -> None:
    with CallRecords(db_path) as records:
        got: list[int | None] = []
        lock = threading.Lock()

        def take(index: int) -> None:
            audit_id = records.reserve_audit(
                f"c{index}", "reactivar_servicio", "add", customer_id="45678901", limit=2, window=timedelta(days=30)
            )
            with lock:
                got.append(audit_id)

        threads = [threading.Thread(target=take, args=(index,)) for index in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len([audit_id for audit_id in got if audit_id is not None]) == 2


def test_tickets_round_trip(records: CallRecords) -> None:
    snapshot = {"conectado": False, "resumen": "Sin sesión", "velocidad_maxima": {"subida": "10M", "bajada": "20M"}}
    first = records.add_ticket(
        "c1",
        "  no tengo internet desde ayer  ",
        caller="+5215550006666",
        customer="pedro.sanchez",
        customer_name="Pedro Sánchez",
        router="nucleo",
        connection=snapshot,
    )
    second = records.add_ticket("c2", "lento")
    assert second == first + 1
    ticket = records.get_ticket(first)
    assert ticket is not None
    assert ticket["symptom"] == "no tengo internet desde ayer"
    assert ticket["customer_name"] == "Pedro Sánchez"
    assert ticket["connection"] == snapshot
    assert ticket["status"] == "open"
    assert ticket["at"] == stamp(0)
    assert records.get_ticket(second + 10) is None
    assert [t["id"] for t in records.tickets()] == [first, second]
    assert [t["id"] for t in records.tickets("c2")] == [second]
    assert records.tickets("c2")[0]["connection"] == {}
    with pytest.raises(ValueError, match="must not be empty"):
        records.add_ticket("c1", "   ")


def test_a_version_1_file_is_upgraded_in_place(db_path: Path) -> None:
    connection = sqlite3.connect(db_path, isolation_level=None)
    _MIGRATIONS[0](connection)
    connection.execute("PRAGMA user_version = 1")
    connection.execute(
        "INSERT INTO calls (call_id, direction, started_at) VALUES ('old', 'inbound', '2025-01-01T00:00:00.000+00:00')"
    )
    connection.close()

    with CallRecords(db_path, clock=FakeClock()) as upgraded:
        assert upgraded.get_call("old") is not None
        assert upgraded.add_ticket("old", "sin servicio") == 1
    assert sqlite_query(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    tables = {name for (name,) in sqlite_query(db_path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"audit_log", "tickets", "caller_events"} <= tables
    assert "customer_id" in [row[1] for row in sqlite_query(db_path, "PRAGMA table_info(audit_log)")]


def test_a_version_2_file_gets_the_campaign_of_its_outbound_calls(db_path: Path) -> None:
    """Before version 3 an outbound row held the number called as caller and the campaign as callee."""
    connection = sqlite3.connect(db_path, isolation_level=None)
    _MIGRATIONS[0](connection)
    _MIGRATIONS[1](connection)
    connection.execute("PRAGMA user_version = 2")
    connection.executemany(
        "INSERT INTO calls (call_id, direction, caller, callee, started_at, outcome) VALUES (?, ?, ?, ?, ?, ?)",
        [
            ("in", "inbound", "+525550001111", "8005550100", "2026-03-01T10:00:00.000+00:00", "transferred"),
            ("out", "outbound", "+525550002222", "marzo", "2026-03-01T11:00:00.000+00:00", "completed"),
        ],
    )
    connection.close()

    with CallRecords(db_path, clock=FakeClock()) as upgraded:
        inbound, outbound = upgraded.get_call("in"), upgraded.get_call("out")
    assert inbound is not None
    assert outbound is not None
    assert (inbound["caller"], inbound["callee"], inbound["campaign"]) == ("+525550001111", "8005550100", None)
    assert (outbound["caller"], outbound["callee"], outbound["campaign"]) == (None, "+525550002222", "marzo")
    assert (outbound["outcome"], outbound["started_at"]) == ("completed", "2026-03-01T11:00:00.000+00:00")
    assert sqlite_query(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def test_usage_is_summed_exactly_per_call_and_since_a_moment(records: CallRecords) -> None:
    early = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    late = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    records.add_usage("c1", "r1", Usage(input_audio=1000, output_audio=500), Decimal("0.064"), "USD", at=early)
    records.add_usage("c1", "r2", Usage(input_text=10, cached_audio=7), Decimal("0.0000041"), "USD", at=late)
    records.add_usage("c2", "r3", Usage(output_text=3), Decimal("0.1"), "USD", at=late)
    usage, cost = records.usage_of("c1")
    assert usage == Usage(input_text=10, input_audio=1000, cached_audio=7, output_audio=500)
    assert cost == Decimal("0.064004")  # to the millionth
    assert records.spent_since(early) == Decimal("0.164004")
    assert records.spent_since(late) == Decimal("0.100004")
    assert records.usage_of("nobody") == (Usage(), Decimal(0))
    with pytest.raises(ValueError, match="0 or more"):
        records.add_usage("c1", "r4", Usage(), Decimal("-1"), "USD")


def test_the_calls_a_previous_run_left_open_are_found(records: CallRecords) -> None:
    records.start_call("old-open", "inbound", "a", "b")
    records.start_call("old-closed", "inbound", "a", "b")
    records.end_call("old-closed", "completed")
    boundary = records.now()
    assert records.open_calls(before=boundary) == ["old-open"]
    assert records.open_calls() == ["old-open"]


def test_a_version_5_database_keeps_its_usage_and_learns_the_price_tables_date(tmp_path: Path) -> None:
    db_path = tmp_path / "v5.db"
    connection = sqlite3.connect(db_path)
    for step in _MIGRATIONS[:5]:
        step(connection)
    connection.execute("PRAGMA user_version = 5")
    connection.execute(
        "INSERT INTO usage (at, call_id, response_id, input_text, input_audio, cached_text, cached_audio,"
        " output_text, output_audio, cost_micros, currency)"
        " VALUES ('2026-03-01T10:00:00.000+00:00', 'c1', 'r1', 1, 2, 3, 4, 5, 6, 700, 'USD')"
    )
    connection.commit()
    connection.close()
    day = datetime(2026, 3, 1, tzinfo=UTC)
    with CallRecords(db_path) as upgraded:
        [old] = upgraded.usage_between(day, day + timedelta(days=1))
        upgraded.add_usage("c1", "r2", Usage(output_text=1), Decimal("0.5"), "USD", at=day, prices_as_of="2025-08-28")
        new = upgraded.usage_between(day, day + timedelta(days=1))[-1]
    assert (old["cost_micros"], old["prices_as_of"], old["started_at"]) == (700, None, None)
    assert (new["cost_micros"], new["prices_as_of"]) == (500_000, "2025-08-28")
    assert sqlite_query(db_path, "PRAGMA user_version") == [(6,)]
