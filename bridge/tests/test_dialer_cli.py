"""``centralita campaign ...`` end to end through ``centralita.cli.main``, with temporary files."""

from __future__ import annotations

import csv
import getpass
import os
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from paths import PYTHONPATH
from unprivileged import NOBODY

from centralita import cli
from centralita.dialer import cli as dialer_cli
from centralita.dialer.outcomes import Outcome
from centralita.dialer.policy import Verdict
from centralita.dialer.store import CampaignStore
from centralita.isp.routeros.client import RouterClient
from centralita_testing.fake_routeros.server import FakeRouterOS

HEADER = "id_cliente;nombre;telefono;monto;vencimiento\n"
ROWS = (
    "C001;María Peña;55 5000 1111;350,00;31/01/2024\n"
    "C002;José Muñoz;55 5000 2222;1.200,50;31/01/2024\n"
    "C003;Ana García;55-12;100;31/01/2024\n"
    'C004;=HYPERLINK("http://x");55 5000 4444;80;31/01/2024\n'
)


@pytest.fixture(autouse=True)
def only_the_dialer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Other subcommand modules are built elsewhere; these tests need only the campaign commands."""
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", ("centralita.dialer.cli",))


@pytest.fixture
def env(tmp_path: Path) -> Path:
    path = tmp_path / ".env"
    path.write_text(
        "DIALER_TIMEZONE=America/Mexico_City\n"
        f"DIALER_DB_PATH={tmp_path / 'dialer.db'}\n"
        "DIALER_COUNTRY_CODE=52\n"
        "OPENAI_API_KEY=sk-not-used-here\n"
    )
    return path


def run(env: Path, *argv: str) -> int:
    return cli.main(["campaign", *argv[:1], "--env-file", str(env), *argv[1:]])


def test_import_reports_bad_rows_and_keeps_the_good_ones(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "morosos.csv"
    data.write_text(HEADER + ROWS, encoding="utf-8")
    assert run(env, "import", str(data), "--campaign", "marzo") == 1
    out, err = capsys.readouterr()
    assert "Imported" in out
    assert "3 new, 0 updated, 0 unchanged; 1 skipped" in out
    assert "skipped line 4: phone '55-12' has too few digits" in err
    assert run(env, "import", str(data), "--campaign", "marzo") == 1
    out, _ = capsys.readouterr()
    assert "0 new, 0 updated, 3 unchanged" in out
    assert run(env, "status", "marzo") == 0
    out, _ = capsys.readouterr()
    assert "Campaign 'marzo': draft" in out
    assert "customers: pending 3" in out


def test_a_whole_file_error_exits_2(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "morosos.csv"
    data.write_bytes((HEADER + "C001;Peña;5550001111;1;31/01/2024\n").encode("latin-1"))
    assert run(env, "import", str(data), "--campaign", "marzo") == 2
    err = capsys.readouterr().err
    assert "is not UTF-8: line 2" in err
    assert "--encoding latin-1" in err
    assert run(env, "import", str(data), "--campaign", "marzo", "--encoding", "latin-1") == 0
    assert "1 new" in capsys.readouterr().out


def test_remove_missing_is_refused_when_rows_were_skipped(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "morosos.csv"
    data.write_text(HEADER + ROWS)
    assert run(env, "import", str(data), "--campaign", "marzo", "--remove-missing") == 2
    assert "fix the rows" in capsys.readouterr().err
    with CampaignStore(tmp_path / "dialer.db") as store:
        assert [campaign.name for campaign in store.campaigns()] == []


def test_start_pause_status_and_errors(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "morosos.csv"
    data.write_text(HEADER + ROWS)
    run(env, "import", str(data), "--campaign", "marzo")
    capsys.readouterr()
    assert run(env, "pause", "marzo") == 2
    assert "draft: it cannot be paused" in capsys.readouterr().err
    assert run(env, "start", "marzo") == 0
    assert "is running: 3 customers pending" in capsys.readouterr().out
    assert run(env, "pause", "marzo") == 0
    assert "is paused" in capsys.readouterr().out
    assert run(env, "status") == 0
    listing = capsys.readouterr().out
    assert listing.splitlines()[0].split() == ["CAMPAIGN", "STATE", "CUSTOMERS", "PENDING", "ATTEMPTS", "OPEN"]
    assert listing.splitlines()[1].split() == ["marzo", "paused", "3", "3", "0", "0"]
    assert run(env, "start", "abril") == 2
    assert "There is no campaign 'abril'" in capsys.readouterr().err
    # The dialer's audit of campaign actions has the two that went through, with who ran them.
    with CampaignStore(tmp_path / "dialer.db") as store:
        actions = [(row["action"], row["source"], row["result"], row["user"]) for row in reversed(store.actions())]
    operator = os.environ.get("SUDO_USER") or getpass.getuser()
    assert actions == [("resume", "cli", "applied", operator), ("pause", "cli", "applied", operator)]


def test_report_writes_every_attempt(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "morosos.csv"
    data.write_text(HEADER + ROWS)
    run(env, "import", str(data), "--campaign", "marzo")
    run(env, "start", "marzo")
    with CampaignStore(tmp_path / "dialer.db") as store:
        leases = []
        while (
            lease := store.lease_next(store.campaign("marzo").created_at, "t", timedelta(minutes=2), _allow)
        ) is not None:
            leases.append(lease)
        store.record_outcome(leases[0].channel_id, Outcome.PROMISE_TO_PAY, promise_date=date(2024, 2, 5))
        store.finish_attempt(leases[0].attempt_id, Outcome.ANSWERED_HUMAN, cause=16)
        store.finish_attempt(leases[1].attempt_id, Outcome.BUSY, cause=17)
    capsys.readouterr()
    output = tmp_path / "reporte.csv"
    assert run(env, "report", "marzo", "--output", str(output)) == 0
    assert "Wrote 3 attempt(s)" in capsys.readouterr().out
    raw = output.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "a BOM, for spreadsheets"
    rows = list(csv.DictReader(raw.decode("utf-8-sig").splitlines()))
    assert [(row["customer_id"], row["outcome"]) for row in rows] == [
        ("C001", "promise-to-pay"),
        ("C002", "busy"),
        ("C004", ""),
    ]
    assert rows[0]["promise_date"] == "2024-02-05"
    assert rows[0]["phone"] == "+525550001111", "a phone number is not mangled"
    assert rows[0]["amount_due"] == "350.00"
    assert rows[2]["name"].startswith("'="), "a formula in a name is neutralised"


def test_optout(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "morosos.csv"
    data.write_text(HEADER + ROWS)
    run(env, "import", str(data), "--campaign", "marzo")
    capsys.readouterr()
    assert run(env, "optout", "55 5000 2222", "--note", "pidió por correo") == 0
    assert "+525550002222 is now on the opt-out list" in capsys.readouterr().out
    assert run(env, "optout", "+52 55 5000 2222") == 0
    assert "was already" in capsys.readouterr().out
    assert run(env, "status", "marzo") == 0
    assert "opted_out 1, pending 2" in capsys.readouterr().out
    assert run(env, "optout", "+52 1 55 5000 1111") == 0  # Mexico's retired mobile 1: the same line as C001's
    assert "+525550001111 is now on the opt-out list: never called again (1 pending customer(s) stopped)" in (
        capsys.readouterr().out
    )
    assert run(env, "optout", "12") == 2
    assert "too few digits (2 after +52)" in capsys.readouterr().err


def test_a_number_shared_by_two_customers_is_a_warning(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "morosos.csv"
    data.write_text(HEADER + "C001;Ana;55 5000 1111;1;31/01/2024\nC002;Eva;525550001111;1;31/01/2024\n")
    assert run(env, "import", str(data), "--campaign", "marzo") == 0
    out, err = capsys.readouterr()
    assert "1 new, 0 updated, 0 unchanged." in out
    assert "warning line 3: phone +525550001111 of customer 'C002' already belongs to customer 'C001'" in err
    data.write_text(HEADER + "C003;Rosa;+52 1 55 5000 1111;1;31/01/2024\n")
    assert run(env, "import", str(data), "--campaign", "marzo") == 0
    out, err = capsys.readouterr()
    assert "0 new, 0 updated, 0 unchanged, 1 with the number of a customer already in the campaign" in out
    assert "warning csv:morosos.csv:2: phone +525550001111 of customer 'C003' is already pending for customer" in err


def test_a_bad_env_file_is_explained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = tmp_path / ".env"
    env.write_text("DIALER_DB_PATH=relative.db\n")
    assert run(env, "status") == 2
    err = capsys.readouterr().err
    assert "DIALER_TIMEZONE is missing" in err
    assert "DIALER_DB_PATH is 'relative.db', a relative path" in err


@pytest.fixture
def router() -> Iterator[FakeRouterOS]:
    with FakeRouterOS(None, "api-dialer", "s3creto") as fake:
        yield fake


def test_import_routers(env: Path, router: FakeRouterOS, capsys: pytest.CaptureFixture[str]) -> None:
    with env.open("a") as extra:
        extra.write(
            "ROUTEROS_ROUTERS=nucleo\n"
            f"ROUTEROS_NUCLEO_HOST={router.host}\nROUTEROS_NUCLEO_PORT={router.port}\n"
            "ROUTEROS_NUCLEO_USER=api-dialer\nROUTEROS_NUCLEO_PASSWORD=s3creto\n"
        )
    assert run(env, "import-routers", "--campaign", "cortados") == 0
    assert "Imported router(s) nucleo into campaign 'cortados': 2 new" in capsys.readouterr().out
    assert run(env, "import-routers", "--campaign", "cortados", "--router", "sur") == 2
    assert "no router named sur" in capsys.readouterr().err
    router.stop()
    assert run(env, "import-routers", "--campaign", "cortados") == 2
    assert "router nucleo could not be read, nothing was imported" in capsys.readouterr().err


def test_import_routers_reads_two_phones_and_dotted_dnis(
    env: Path, router: FakeRouterOS, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The comment format docs/MIKROTIK_INTEGRATION.md documents, as the assistant's tools read it."""
    with RouterClient(router.host, "api-dialer", "s3creto", port=router.port, timeout=2) as client:
        [luis] = client.print("/ppp/secret", where={"name": "luis.hernandez"})
        comment = "tel=+52 1 555 000 4444 | 55 4000 4444;dni=45.678.901;nombre=Luis Hernández;plan=10M"
        client.set("/ppp/secret", str(luis[".id"]), comment=comment)
        [carmen] = client.print("/ppp/secret", where={"name": "carmen.nunez"})
        comment = "tel=5550005555/5540005555;dni=56.789.012;nombre=Carmen Núñez Ortiz;plan=20M"
        client.set("/ppp/secret", str(carmen[".id"]), comment=comment)
    with env.open("a") as extra:
        extra.write(
            "ROUTEROS_ROUTERS=nucleo\n"
            f"ROUTEROS_NUCLEO_HOST={router.host}\nROUTEROS_NUCLEO_PORT={router.port}\n"
            "ROUTEROS_NUCLEO_USER=api-dialer\nROUTEROS_NUCLEO_PASSWORD=s3creto\n"
        )
    assert run(env, "import-routers", "--campaign", "cortados") == 0
    out, err = capsys.readouterr()
    assert "Imported router(s) nucleo into campaign 'cortados': 2 new, 0 updated, 0 unchanged." in out
    assert err == ""
    connection = sqlite3.connect(tmp_path / "dialer.db")
    try:
        targets = connection.execute("SELECT customer_id, phone, status FROM targets ORDER BY id").fetchall()
    finally:
        connection.close()
    assert targets == [("45678901", "+525550004444", "pending"), ("56789012", "+525550005555", "pending")]


def _allow(_candidate: object) -> Verdict:
    return Verdict(True)


# ---- run as root: the command gives up root before it touches the service user's directory ----------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: this is what happens when root runs it")


@pytest.fixture
def service_state() -> Iterator[tuple[Path, Path]]:
    """(an .env, the service user's state directory): the stand-in service user (nobody) owns the directory.

    Not tmp_path: pytest's base directory is private to root, and the command, once it is nobody, must reach it.
    """
    with tempfile.TemporaryDirectory() as name:
        top = Path(name)
        top.chmod(0o755)
        state = top / "state"
        state.mkdir()
        os.chown(state, NOBODY, NOBODY)
        env = top / ".env"
        env.write_text(
            f"DIALER_TIMEZONE=America/Mexico_City\nDIALER_COUNTRY_CODE=52\nDIALER_DB_PATH={state / 'dialer.db'}\n",
            encoding="utf-8",
        )
        env.chmod(0o600)
        yield env, state


def run_as_root(*argv: str) -> subprocess.CompletedProcess[str]:
    """``centralita ARGV`` in a child process: the command gives up root for good, which pytest must not."""
    return subprocess.run(
        [sys.executable, "-m", "centralita.cli", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
        timeout=120,
        check=False,
    )


@needs_root
def test_run_as_root_the_database_is_created_by_the_service_user(
    service_state: tuple[Path, Path], tmp_path: Path
) -> None:
    env, state = service_state
    data = tmp_path / "deudores.csv"  # root's own file, in root's private directory: read before giving up root
    data.write_text(HEADER + ROWS, encoding="utf-8")
    data.chmod(0o600)
    done = run_as_root("campaign", "import", str(data), "--campaign", "marzo", "--env-file", str(env))
    assert done.returncode == 1, done.stderr  # one row is bad on purpose
    assert "3 new" in done.stdout, done.stdout + done.stderr
    created = [path for path in state.iterdir() if path.name.startswith("dialer.db")]
    assert created
    assert {(path.stat().st_uid, path.stat().st_gid) for path in created} == {(NOBODY, NOBODY)}


@needs_root
@pytest.mark.parametrize("planted", ["dialer.db-shm", "dialer.db-wal", "dialer.db"])
def test_a_link_the_service_user_planted_does_not_hand_root_files_over(
    service_state: tuple[Path, Path], tmp_path: Path, planted: str
) -> None:
    """The service user links a database file to a file of root's (it would be /etc/shadow) and waits for root to
    run a campaign command: root's file must keep its owner, mode and content."""
    env, state = service_state
    created = run_as_root("campaign", "status", "--env-file", str(env))
    assert created.returncode == 0, created.stderr
    victim = tmp_path / "shadow"
    victim.write_text("root:secret:19000:0:99999:7:::\n")
    victim.chmod(0o640)
    before = victim.stat()
    link = state / planted
    link.unlink(missing_ok=True)
    link.symlink_to(victim)
    os.chown(link, NOBODY, NOBODY, follow_symlinks=False)

    for argv in (["status"], ["start", "marzo"], ["optout", "+525550001111"]):
        run_as_root("campaign", *argv, "--env-file", str(env))

    after = victim.stat()
    assert (after.st_uid, after.st_gid, after.st_mode) == (before.st_uid, before.st_gid, before.st_mode)
    assert victim.read_text() == "root:secret:19000:0:99999:7:::\n"
    assert link.is_symlink()


def test_the_report_is_never_written_through_a_link(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    link = tmp_path / "report.csv"
    link.symlink_to(victim)
    assert run(env, "report", "marzo", "--output", str(link)) == 2
    assert f"cannot write {link}: it is a symbolic link" in capsys.readouterr().err
    assert victim.read_text() == "keep me\n"


def test_someone_who_cannot_read_the_settings_is_told_to_use_sudo(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dialer_cli, "running_as_root", lambda: False)
    monkeypatch.setattr(dialer_cli.os, "access", lambda _path, _mode: False)
    assert run(env, "status") == 2
    err = capsys.readouterr().err
    assert f"{env} holds the dialer's settings and secrets, readable only by root and the service user" in err
    assert "sudo centralita campaign" in err


def test_a_box_imports_and_starts_only_its_own_campaigns(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "morosos.csv"
    data.write_text(HEADER + ROWS, encoding="utf-8")
    assert run(env, "import", str(data), "--campaign", "sur-marzo") == 1
    assert run(env, "start", "sur-marzo") == 0
    capsys.readouterr()
    # The box is given the campaigns starting with norte- (a cluster: another box dials the others).
    env.write_text(env.read_text() + "DIALER_CAMPAIGNS=norte-\n")
    assert run(env, "import", str(data), "--campaign", "sur-abril") == 2
    err = capsys.readouterr().err
    assert "campaign 'sur-abril' is not one of this box's" in err
    assert "starts with 'norte-' (DIALER_CAMPAIGNS, from bridge_dialer_campaigns)" in err
    assert "Nothing was changed." in err
    assert run(env, "pause", "sur-marzo") == 0
    assert run(env, "start", "sur-marzo") == 2
    assert "campaign 'sur-marzo' is not one of this box's" in capsys.readouterr().err
    assert run(env, "import", str(data), "--campaign", "norte-abril") == 1
    assert run(env, "start", "norte-abril") == 0
    with CampaignStore(tmp_path / "dialer.db") as store:
        states = {campaign.name: campaign.state.value for campaign in store.campaigns()}
    assert states == {"sur-marzo": "paused", "norte-abril": "running"}
