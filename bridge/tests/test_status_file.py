"""The service's status file: written atomically, refreshed, removed on close, read safely."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from polling import wait_for

from centralita.calls.status import MAX_STATUS_BYTES, StatusReporter, read_status


def test_the_snapshot_is_written_at_start_refreshed_and_removed_on_close(tmp_path: Path) -> None:
    path = tmp_path / "inbound.json"
    count = {"n": 0}
    lock = threading.Lock()

    def snapshot() -> dict[str, Any]:
        with lock:
            count["n"] += 1
            return {"active_calls": count["n"]}

    reporter = StatusReporter(path, snapshot, interval=0.02)
    reporter.start()
    first = read_status(path)
    assert first is not None
    assert first["active_calls"] == 1
    assert first["pid"] == os.getpid()
    wait_for(lambda: (read_status(path) or {}).get("active_calls", 0) >= 3, "three calls", timeout=20)
    reporter.close()
    assert not path.exists()
    assert not any(thread.name == "status" for thread in threading.enumerate())
    assert not list(tmp_path.iterdir())  # no temporary file left behind


def test_a_snapshot_that_raises_or_a_missing_directory_never_raises(tmp_path: Path, caplog) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("boom")

    reporter = StatusReporter(tmp_path / "missing" / "inbound.json", lambda: {})
    reporter.write()
    StatusReporter(tmp_path / "inbound.json", broken).write()
    messages = [record.getMessage() for record in caplog.records]
    assert any("cannot be written" in message and "missing" in message for message in messages)
    assert any("boom" in message for message in messages)


def test_reading_refuses_symlinks_oversized_and_malformed_files(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    target.write_text('{"a": 1}')
    link = tmp_path / "link.json"
    link.symlink_to(target)
    assert read_status(link) is None
    big = tmp_path / "big.json"
    big.write_text('{"a": "' + "x" * MAX_STATUS_BYTES + '"}')
    assert read_status(big) is None
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    assert read_status(bad) is None
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    assert read_status(listed) is None
    assert read_status(tmp_path / "absent.json") is None
