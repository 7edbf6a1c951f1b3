"""Personal data in the call records: masked when a tool call is recorded, purged when old, and the
``centralita records purge`` command the daily timer runs (also as root, against the service user's files)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from paths import PYTHONPATH
from unprivileged import NOBODY

from centralita import cli
from centralita.storage import cli as records_cli
from centralita.storage.records import CallRecords
from centralita.storage.retention import mask_number, mask_personal

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("12.345.678", "**.***.678"),
        ("12345678", "*****678"),
        ("+5215550004444", "+**********444"),
        ("55 5000 1111", "** **** *111"),
        ("12", "12"),
        ("", ""),
        ("DNI 12345678-Z", "DNI *****678-Z"),
    ],
)
def test_every_digit_but_the_last_three_is_masked(value: str, masked: str) -> None:
    assert mask_number(value) == masked


def test_dni_and_phones_are_masked_at_any_depth_and_nothing_else() -> None:
    arguments = {
        "dni": "12.345.678",
        "telefono": "5215550004444",
        "nombre": "Luis Hernández",
        "confirmado": True,
        "cliente": {"Telefonos": ["5215550001111", 5215550002222], "direccion_ip": "10.20.0.14"},
        "raw": '{"dni": "12345678", "plan": "10 Mb"',
    }
    assert mask_personal(arguments) == {
        "dni": "**.***.678",
        "telefono": "**********444",
        "nombre": "Luis Hernández",
        "confirmado": True,
        "cliente": {"Telefonos": ["**********111", "**********222"], "direccion_ip": "10.20.0.14"},
        "raw": '{"dni": "*****678", "plan": "10 Mb"',
    }
    assert arguments["dni"] == "12.345.678"  # a copy: the tool's own data is not changed


def test_the_second_factors_of_a_verification_are_masked_too() -> None:
    said = {"dni": "45678901", "numero_cliente": "C-10 004", "ultimos_digitos": "4444", "usuario": "luis.hernandez"}
    assert mask_personal(said) == {
        "dni": "*****901",
        "numero_cliente": "C-** 004",
        "ultimos_digitos": "*444",
        "usuario": "luis.hernandez",
    }


def test_tool_calls_are_stored_masked(tmp_path: Path) -> None:
    with CallRecords(tmp_path / "centralita.db") as records:
        records.start_call("c1", "inbound", "5215550004444", "5215550000000")
        records.add_tool_call(
            "c1", "t1", "reactivar_servicio", {"dni": "12345678", "confirmado": True}, {"ok": True, "dias": 3}, True
        )
        call = records.get_call("c1")
    assert call is not None
    assert call["tool_calls"][0]["arguments"] == {"dni": "*****678", "confirmado": True}
    assert call["caller"] == "5215550004444"  # a fresh call keeps its numbers until it is old
    raw = sqlite3.connect(tmp_path / "centralita.db").execute("SELECT arguments FROM tool_calls").fetchall()
    assert "12345678" not in str(raw)


def _record(records: CallRecords, call_id: str, started: datetime) -> None:
    records.start_call(call_id, "inbound", "5215550004444", "5215550000000", started_at=started)
    records.add_transcript(call_id, "caller", "mi DNI es 12345678")
    records.add_transcript(call_id, "assistant", "Gracias, Luis.")
    records.add_tool_call(call_id, "t1", "consultar_cliente", {"dni": "12345678"}, {"nombre": "Luis"}, True)
    records.add_audit(call_id, "reactivar_servicio", "address-list add", "done", caller="5215550004444")
    records.end_call(call_id, "completed")


def test_purge_deletes_old_transcripts_and_tool_calls_masks_numbers_and_keeps_the_rest(tmp_path: Path) -> None:
    with CallRecords(tmp_path / "centralita.db", clock=lambda: NOW) as records:
        _record(records, "old", NOW - timedelta(days=91))
        _record(records, "new", NOW - timedelta(days=89))
        counts = records.purge(NOW - timedelta(days=90))
        assert (counts.calls, counts.transcript_lines, counts.tool_calls) == (1, 2, 1)
        old, new = records.get_call("old"), records.get_call("new")
        assert old is not None
        assert new is not None
        assert (old["transcript"], old["tool_calls"]) == ([], [])
        assert (old["caller"], old["callee"], old["outcome"]) == ("**********444", "**********000", "completed")
        assert len(new["transcript"]) == 2
        assert len(new["tool_calls"]) == 1
        assert new["caller"] == "5215550004444"
        assert len(records.audit_entries("old")) == 1  # the audit log of router writes stays
        again = records.purge(NOW - timedelta(days=90))
        assert (again.calls, again.transcript_lines, again.tool_calls) == (0, 0, 0)


def _db_with_an_old_and_a_new_call(path: Path) -> None:
    now = datetime.now(UTC)
    with CallRecords(path) as records:
        _record(records, "old", now - timedelta(days=40))
        _record(records, "new", now - timedelta(days=1))


def test_the_command_purges_and_says_what_it_did(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "centralita.db"
    _db_with_an_old_and_a_new_call(db)
    assert cli.main(["records", "purge", "--older-than-days", "30", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "(30 days): 2 transcript line(s) and 1 tool call(s) deleted, 1 call(s) affected" in out
    with CallRecords(db) as records:
        assert records.get_call("old")["transcript"] == []  # type: ignore[index]
        assert len(records.get_call("new")["transcript"]) == 2  # type: ignore[index]


def test_the_command_refuses_a_useless_age_and_creates_no_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        cli.main(["records", "purge", "--older-than-days", "0", "--db", str(tmp_path / "x.db")])
    assert "must be 1 or more" in capsys.readouterr().err
    assert cli.main(["records", "purge", "--older-than-days", "5", "--db", str(tmp_path / "x.db")]) == 0
    assert "does not exist: nothing to purge" in capsys.readouterr().out
    assert not (tmp_path / "x.db").exists()


def test_the_default_database_is_the_roles(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Path("/var/lib/centralita/centralita.db") == records_cli.DEFAULT_DB


@pytest.fixture
def service_state() -> Iterator[Path]:
    """The service user's state directory (nobody's), reachable by nobody (not under pytest's private tmp)."""
    with tempfile.TemporaryDirectory() as name:
        Path(name).chmod(0o755)
        state = Path(name) / "state"
        state.mkdir()
        os.chown(state, NOBODY, NOBODY)
        yield state


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: this is what happens when root runs it")
def test_run_as_root_it_works_as_the_service_user_and_follows_no_link(service_state: Path, tmp_path: Path) -> None:
    db = service_state / "centralita.db"
    _db_with_an_old_and_a_new_call(db)
    for path in service_state.iterdir():
        os.chown(path, NOBODY, NOBODY)
    victim = tmp_path / "shadow"
    victim.write_text("root:secret\n")
    victim.chmod(0o600)
    (service_state / "centralita.db-shm").unlink(missing_ok=True)
    (service_state / "centralita.db-shm").symlink_to(victim)
    os.chown(service_state / "centralita.db-shm", NOBODY, NOBODY, follow_symlinks=False)  # the service user's

    done = subprocess.run(
        [sys.executable, "-m", "centralita.cli", "records", "purge", "--older-than-days", "30", "--db", str(db)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
        timeout=120,
        check=False,
    )
    info = victim.stat()
    assert (info.st_uid, info.st_mode & 0o7777, victim.read_text()) == (0, 0o600, "root:secret\n")
    # As nobody, SQLite could not use the planted -shm (root's file): the purge stops with the records' message.
    assert done.returncode == 2, done.stdout + done.stderr
    assert "centralita records:" in done.stderr
    assert {path.stat(follow_symlinks=False).st_uid for path in service_state.iterdir()} == {NOBODY}
