"""The record writer against real SQLite: locked and full databases, a full queue, order, shutdown."""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from polling import wait_for

from centralita.storage.writer import RecordWriter

DEADLINE = 20.0


@pytest.fixture
def db(tmp_path: Path):
    path = tmp_path / "records.db"
    connection = sqlite3.connect(path, timeout=0.05, check_same_thread=False, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE lines (n INTEGER)")
    yield path, connection
    connection.close()


def insert(connection: sqlite3.Connection, n: int):
    return lambda: connection.execute("INSERT INTO lines (n) VALUES (?)", (n,))


def rows(path: Path) -> list[int]:
    with sqlite3.connect(path) as reader:
        return [n for (n,) in reader.execute("SELECT n FROM lines ORDER BY rowid")]


def test_writes_run_in_the_order_they_were_submitted(db) -> None:
    path, connection = db
    writer = RecordWriter("test")
    for n in range(200):
        assert writer.submit(f"line {n}", insert(connection, n))
    assert writer.flush(DEADLINE)
    assert rows(path) == list(range(200))
    assert writer.stats().written == 200
    writer.close()


def test_submit_does_not_wait_for_a_locked_database_and_the_writes_land_once_it_is_free(db, caplog) -> None:
    path, connection = db
    writer = RecordWriter("test")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock, as an operator's shell could
    caplog.set_level(logging.WARNING, logger="centralita.storage.writer")
    started = time.monotonic()
    for n in range(50):
        assert writer.submit(f"line {n}", insert(connection, n))
    assert time.monotonic() - started < 0.5  # the media thread never waits on SQLite
    wait_for(lambda: writer.stats().failing, timeout=DEADLINE)
    assert rows_while_locked(path) == []
    holder.execute("ROLLBACK")
    holder.close()
    assert writer.flush(DEADLINE)
    assert rows(path) == list(range(50))
    stats = writer.stats()
    assert (stats.written, stats.lost, stats.failing) == (50, 0, False)
    messages = [record.getMessage() for record in caplog.records]
    assert sum("records failing" in message for message in messages) == 1
    assert any("records resumed" in message and "0 writes lost" in message for message in messages)
    writer.close()


def rows_while_locked(path: Path) -> list[int]:
    # WAL readers are not blocked by the writer's lock: nothing has been written yet.
    return rows(path)


def test_a_full_database_drops_writes_after_the_deadline_counts_them_and_resumes(db, caplog) -> None:
    path, connection = db
    clock = FakeClock()
    writer = RecordWriter("test", give_up_after=30.0, clock=clock)
    caplog.set_level(logging.WARNING, logger="centralita.storage.writer")
    page_count = connection.execute("PRAGMA page_count").fetchone()[0]
    connection.execute(f"PRAGMA max_page_count = {page_count}")  # SQLite's own "database or disk is full"
    big = "x" * 100_000
    writer.submit("big line", lambda: connection.execute("INSERT INTO lines (n) VALUES (?)", (big,)))
    writer.submit("line 1", insert(connection, 1))
    wait_for(lambda: writer.stats().failing, timeout=DEADLINE)
    assert "full" in writer.stats().last_error
    clock.advance(31.0)  # the big write has been failing for longer than give_up_after: it is dropped
    wait_for(lambda: writer.stats().dropped_failed == 1, timeout=DEADLINE)
    assert writer.flush(DEADLINE)
    assert rows(path) == [1]  # the next write fits: records resume by themselves
    stats = writer.stats()
    assert (stats.written, stats.lost, stats.failing) == (1, 1, False)
    messages = [record.getMessage() for record in caplog.records]
    assert any("records lost: big line" in message for message in messages)
    assert any("records resumed" in message and "1 writes lost" in message for message in messages)
    writer.close()


def test_a_full_queue_drops_the_new_write_and_counts_it() -> None:
    gate, running = threading.Event(), threading.Event()
    writer = RecordWriter("test", capacity=3)
    done: list[int] = []

    def blocker() -> None:
        running.set()
        gate.wait()

    writer.submit("blocker", blocker)
    assert running.wait(DEADLINE)  # taken off the queue: three more fit
    for n in range(3):
        assert writer.submit(f"line {n}", functools.partial(done.append, n))
    assert not writer.submit("one too many", lambda: done.append(99))
    assert writer.stats().dropped_full == 1
    gate.set()
    assert writer.flush(DEADLINE)
    assert done == [0, 1, 2]
    writer.close()


def test_a_write_that_raises_something_else_is_dropped_at_once_and_the_next_goes_on() -> None:
    writer = RecordWriter("test")
    done: list[str] = []

    def broken() -> None:
        raise LookupError("no such call")

    writer.submit("broken", broken)
    writer.submit("fine", lambda: done.append("fine"))
    assert writer.flush(DEADLINE)
    stats = writer.stats()
    assert done == ["fine"]
    assert (stats.dropped_failed, stats.written) == (1, 1)
    assert "no such call" in stats.last_error
    writer.close()


def test_close_writes_what_is_queued_then_refuses_and_stops_its_thread(db) -> None:
    path, connection = db
    writer = RecordWriter("test")
    for n in range(20):
        writer.submit(f"line {n}", insert(connection, n))
    writer.close()
    assert rows(path) == list(range(20))
    assert not writer.submit("late", insert(connection, 99))
    assert not any(thread.name == "records-test" for thread in threading.enumerate())


def test_close_does_not_hang_on_a_database_that_stays_locked(db) -> None:
    path, connection = db
    writer = RecordWriter("test")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    writer.submit("line 1", insert(connection, 1))
    wait_for(lambda: writer.stats().failing, timeout=DEADLINE)
    writer.close(timeout=DEADLINE)
    assert writer.stats().lost == 1
    assert not any(thread.name == "records-test" for thread in threading.enumerate())
    holder.execute("ROLLBACK")
    holder.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds
