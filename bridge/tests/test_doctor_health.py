"""bridge.budget, bridge.records, bridge.admission: the doctor reads the running service's health snapshot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from doctor_support import FakeBox, env_text, healthy_status, make_app_dir, options

from centralita.calls.status import StatusReporter
from centralita.doctor.context import Context
from centralita.doctor.health import check_health
from centralita.doctor.model import Result, Status


def results(tmp_path: Path, state: dict[str, Any] | None) -> dict[str, Result]:
    status_file = tmp_path / "status.json"
    if state is not None:
        reporter = StatusReporter(status_file, lambda: state)
        reporter.write()  # as the service writes it
    make_app_dir(tmp_path, env_text(STATUS_FILE=str(status_file)))
    ctx = Context(options(tmp_path, FakeBox.healthy(), tmp_path / "app" / ".env"))
    return {result.name: result for result in check_health(ctx)}


def test_a_healthy_service_is_ok_on_every_line(tmp_path: Path) -> None:
    found = results(tmp_path, healthy_status())
    assert {name: result.status for name, result in found.items()} == {
        "bridge.budget": Status.OK,
        "bridge.records": Status.OK,
        "bridge.admission": Status.OK,
    }
    assert "spent today 1.25 of 100 USD, this month 30.5 of 2000 USD" in found["bridge.budget"].seen
    assert "120 record(s) written" in found["bridge.records"].seen
    assert "3 call(s) up; limits MAX_CALLS 20" in found["bridge.admission"].seen


def test_a_spent_budget_fails_and_says_how_to_raise_it(tmp_path: Path) -> None:
    budget = {**healthy_status()["budget"], "spent": True, "day_spent": "100.01"}
    found = results(tmp_path, healthy_status(budget=budget, refused={"budget_spent": 4}))
    assert found["bridge.budget"].status is Status.FAIL
    assert "new calls go to the operator" in found["bridge.budget"].seen
    assert "bridge_budget_daily" in found["bridge.budget"].fix
    assert found["bridge.admission"].status is Status.WARN
    assert "budget_spent 4" in found["bridge.admission"].seen


def test_records_that_cannot_be_written_fail_and_lost_ones_warn(tmp_path: Path) -> None:
    failing = {"written": 10, "queued": 7, "lost": 2, "failing": True, "last_error": "database or disk is full"}
    found = results(tmp_path, healthy_status(records=failing))
    assert found["bridge.records"].status is Status.FAIL
    assert "database or disk is full; 7 waiting, 2 lost" in found["bridge.records"].seen
    assert "df -h" in found["bridge.records"].fix
    (tmp_path / "later").mkdir()
    lost = {"written": 10, "queued": 0, "lost": 2, "failing": False, "last_error": ""}
    again = results(tmp_path / "later", healthy_status(records=lost))
    assert again["bridge.records"].status is Status.WARN


def test_refusals_are_counted_with_what_they_mean(tmp_path: Path) -> None:
    found = results(tmp_path, healthy_status(refused={"box_full": 3, "caller_rate": 1}))
    admission = found["bridge.admission"]
    assert admission.status is Status.WARN
    assert "box_full 3, caller_rate 1" in admission.seen
    assert "docs/PERFORMANCE.md" in admission.fix
    assert "MAX_CALLS_PER_CALLER_PER_MINUTE" in admission.fix


def test_without_a_snapshot_the_lines_say_they_could_not_be_checked(tmp_path: Path) -> None:
    found = results(tmp_path, None)
    assert set(found) == {"bridge.budget", "bridge.records", "bridge.admission"}
    for result in found.values():
        assert result.status is Status.WARN
        assert "writes no health snapshot" in result.seen
