"""``centralita calls report`` over a real call records file: calls per day, outcomes, minutes, tokens and cost,
each cost beside the date of its price table."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from paths import PYTHONPATH
from unprivileged import NOBODY

from centralita import cli
from centralita.billing.usage import Usage
from centralita.storage.records import CallRecords, Outcome
from centralita.storage.report import IN_PROGRESS, UNKNOWN_PRICES, build_report

MEXICO = ZoneInfo("America/Mexico_City")  # UTC-6 all year
PERIOD = ("--since", "2026-12-01", "--until", "2026-12-02")
EARLY = "2025-08-28"


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """A moment of December 2026, Mexico City time."""
    return datetime(2026, 12, day, hour, minute, second, tzinfo=MEXICO)


def fill(records: CallRecords) -> None:
    """Four calls over two days, and their usage:

    Dec 1: c1 inbound, answered 10:00:05, ended 10:03:05 (3 min), completed, 2 responses, prices of 2025-08-28;
           c2 outbound, answered 11:00:00, ended 11:01:30 (1.5 min), transferred, 1 response, prices of 2026-06-01;
           c3 inbound, refused (never answered), no usage.
    Dec 2: c4 inbound at 23:59:00, answered at once, still up (no end), 1 response recorded after midnight,
           from before prices had a date (a row of schema 5).
    Nov 30 23:00 UTC-6 is outside the period: c0, with usage.
    """
    records.start_call("c0", "inbound", "5550000", "800", at(1, 0) - timedelta(hours=1))
    records.end_call("c0", Outcome.COMPLETED, at=at(1, 0) - timedelta(minutes=50))
    records.add_usage("c0", "r0", Usage(input_audio=999), Decimal("9"), "USD", at=at(1, 0) - timedelta(minutes=55))

    records.start_call("c1", "inbound", "5551111", "800", at(1, 10))
    records.mark_answered("c1", at(1, 10, 0, 5))
    records.add_usage(
        "c1",
        "r1",
        Usage(input_audio=100, output_audio=50),
        Decimal("0.0064"),
        "USD",
        at(1, 10, 1),
        prices_as_of=EARLY,
    )
    records.add_usage(
        "c1",
        "r2",
        Usage(input_text=10, cached_audio=5),
        Decimal("0.000042"),
        "USD",
        at(1, 10, 2),
        prices_as_of=EARLY,
    )
    records.end_call("c1", Outcome.COMPLETED, at=at(1, 10, 3, 5))

    records.start_call("c2", "outbound", "", "5552222", at(1, 10, 59), campaign="diciembre")
    records.mark_answered("c2", at(1, 11))
    records.add_usage("c2", "r3", Usage(output_text=7), Decimal("0.5"), "USD", at(1, 11, 1), prices_as_of="2026-06-01")
    records.end_call("c2", Outcome.TRANSFERRED, at=at(1, 11, 1, 30))

    records.start_call("c3", "inbound", "5553333", "800", at(1, 12))
    records.end_call("c3", Outcome.REFUSED, "box_full", at=at(1, 12))

    records.start_call("c4", "inbound", "5554444", "800", at(2, 23, 59))
    records.mark_answered("c4", at(2, 23, 59))
    records.add_usage("c4", "r4", Usage(output_audio=20), Decimal("0.25"), "USD", at(3, 0, 1))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "centralita.db"
    with CallRecords(path) as records:
        fill(records)
    return path


def test_the_figures_of_each_day(db: Path) -> None:
    with CallRecords(db) as records:
        report = build_report(records, date(2026, 12, 1), date(2026, 12, 2), MEXICO)
    first, second = report.days
    assert first.day == date(2026, 12, 1)
    assert (first.calls, first.inbound, first.outbound, first.answered) == (3, 2, 1, 2)
    assert first.seconds == 180 + 90
    assert first.minutes == Decimal("4.5")
    assert dict(first.outcomes) == {"completed": 1, "transferred": 1, "refused": 1}
    assert first.usage == Usage(input_text=10, input_audio=100, cached_audio=5, output_text=7, output_audio=50)
    assert first.cost("USD") == Decimal("0.506442")  # exact, to the millionth
    assert first.prices_as_of == {"2025-08-28", "2026-06-01"}
    # The call that started before midnight keeps its usage on its own day, even recorded after it.
    assert (second.calls, second.answered, second.seconds) == (1, 1, 0.0)
    assert dict(second.outcomes) == {IN_PROGRESS: 1}
    assert second.cost("USD") == Decimal("0.25")
    assert second.prices_as_of == {UNKNOWN_PRICES}
    assert report.total.calls == 4
    assert report.total.cost("USD") == Decimal("0.756442")
    assert report.currencies == ("USD",)


def test_days_are_those_of_the_time_zone_asked_for(db: Path) -> None:
    with CallRecords(db) as records:
        report = build_report(records, date(2026, 12, 1), date(2026, 12, 1), UTC)
    # In UTC, c0 (Nov 30 23:00 in Mexico) is on Dec 1, and c1 to c3 too; c4 (Dec 3 05:59 UTC) is not.
    [day] = report.days
    assert day.calls == 4
    assert day.cost("USD") == Decimal("9.506442")


def test_the_table_shows_every_cost_with_its_price_tables_date(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arguments = ["calls", "report", "--since", "2026-12-01", "--until", "2026-12-02"]
    assert cli.main([*arguments, "--timezone", "America/Mexico_City", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "Calls from 2026-12-01 to 2026-12-02 (America/Mexico_City)"
    header = lines[2].split()
    assert header[:8] == ["date", "calls", "in", "out", "answered", "minutes", "tokens", "cost"]
    assert lines[2].rstrip().endswith("cost USD  prices as of")
    assert lines[3].split() == ["2026-12-01", "3", "2", "1", "2", "4.5", "172", "0.5064", "2025-08-28,", "2026-06-01"]
    assert lines[4].split() == ["2026-12-02", "1", "1", "0", "1", "0.0", "20", "0.2500", UNKNOWN_PRICES]
    assert lines[6].split()[:8] == ["total", "4", "3", "1", "3", "4.5", "192", "0.7564"]
    assert "Outcomes: completed 1, transferred 1, refused 1, in_progress 1" in out


def test_the_csv_has_every_token_kind_and_outcome_per_day(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arguments = ["calls", "report", "--since", "2026-12-01", "--until", "2026-12-02", "--csv"]
    assert cli.main([*arguments, "--timezone", "America/Mexico_City", "--db", str(db)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [row["date"] for row in rows] == ["2026-12-01", "2026-12-02", "total"]
    first, _second, total = rows
    assert (first["input_text"], first["input_audio"], first["cached_audio"], first["output_text"]) == (
        "10",
        "100",
        "5",
        "7",
    )
    assert first["cost_USD"] == "0.506442"
    assert first["prices_as_of"] == "2025-08-28 2026-06-01"
    assert (first["outcome_completed"], first["outcome_refused"], first["outcome_in_progress"]) == ("1", "1", "0")
    assert (total["calls"], total["minutes"], total["cost_USD"]) == ("4", "4.5", "0.756442")


def test_an_empty_period_says_so(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arguments = ["calls", "report", "--since", "2027-01-01", "--until", "2027-01-31", "--timezone", "UTC"]
    assert cli.main([*arguments, "--db", str(db)]) == 0
    assert capsys.readouterr().out == "No calls and no usage recorded from 2027-01-01 to 2027-01-31 (UTC).\n"


def test_bad_arguments_name_their_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["calls", "report", "--since", "01/12/2026"])
    assert "'01/12/2026' is not a date: write it as YYYY-MM-DD" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["calls", "report", "--timezone", "Mexico"])
    assert "'Mexico' is not a time zone: use an IANA name" in capsys.readouterr().err
    assert cli.main(["calls", "report", "--since", "2026-12-02", "--until", "2026-12-01"]) == 2
    assert "--until 2026-12-01 is before --since 2026-12-02: swap them." in capsys.readouterr().err
    missing = tmp_path / "nothing.db"
    assert cli.main(["calls", "report", "--db", str(missing)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not missing.exists()  # a report never creates a database


@pytest.fixture
def service_state() -> Iterator[Path]:
    """The service user's state directory (nobody's), reachable by nobody (not under pytest's private tmp)."""
    with tempfile.TemporaryDirectory() as name:
        Path(name).chmod(0o755)
        state = Path(name) / "state"
        state.mkdir()
        os.chown(state, NOBODY, NOBODY)
        yield state


def run_as_root(db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "centralita.cli", "calls", "report", *PERIOD, "--db", str(db)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
        timeout=120,
        check=False,
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: this is what happens when root runs it")
def test_run_as_root_it_reads_as_the_service_user_and_follows_no_link(service_state: Path, tmp_path: Path) -> None:
    db = service_state / "centralita.db"
    with CallRecords(db) as records:
        fill(records)
    for path in service_state.iterdir():
        os.chown(path, NOBODY, NOBODY)
    done = run_as_root(db)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Calls from 2026-12-01 to 2026-12-02" in done.stdout

    # The service user plants a link where SQLite keeps its shared memory: root would write through it.
    victim = tmp_path / "shadow"
    victim.write_text("root:secret\n")
    victim.chmod(0o600)
    (service_state / "centralita.db-shm").unlink(missing_ok=True)
    (service_state / "centralita.db-shm").symlink_to(victim)
    os.chown(service_state / "centralita.db-shm", NOBODY, NOBODY, follow_symlinks=False)
    done = run_as_root(db)
    info = victim.stat()
    assert (info.st_uid, info.st_mode & 0o7777, victim.read_text()) == (0, 0o600, "root:secret\n")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "centralita calls:" in done.stderr
