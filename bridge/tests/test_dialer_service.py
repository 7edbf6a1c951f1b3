"""openai-outbound-calls as a process against the local ARI stand-in: a call, its outcome, SIGTERM and restart."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dialer_helpers import target
from paths import PYTHONPATH

from centralita.dialer import service
from centralita.dialer.store import CampaignStore
from centralita_testing.fake_asterisk import FakeAsterisk

SRC = Path(__file__).resolve().parents[1] / "src"


def test_a_bad_configuration_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = tmp_path / ".env"
    env.write_text("DIALER_TIMEZONE=America/Mexico_City\n")
    assert service.main(["--env-file", str(env)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("openai-outbound-calls: Invalid Centralita configuration")
    assert "ARI_PASSWORD is missing" in err
    assert err.count("ARI_PASSWORD is missing") == 1  # the bridge's and the dialer's: one problem
    assert "OPENAI_API_KEY is missing" in err  # the whole file, as openai-inbound-calls reads it


def test_the_dialer_is_required_and_the_file_read_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from centralita.config import box

    reads: list[Path] = []
    real = box.read_env_file

    def counting(path: Path) -> box.EnvFile:
        reads.append(Path(path))
        return real(path)

    monkeypatch.setattr(box, "read_env_file", counting)
    env = tmp_path / ".env"
    env.write_text("OPENAI_API_KEY=sk-test\nARI_PASSWORD=secreto\nDIALER_MAX_CONCURRENT=3\n")
    assert service.main(["--env-file", str(env)]) == 2
    assert "DIALER_TIMEZONE is missing" in capsys.readouterr().err
    assert reads == [env]


@pytest.fixture
def ari() -> Iterator[FakeAsterisk]:
    with FakeAsterisk("centralita", "secreto") as fake:
        yield fake


@pytest.fixture
def env(tmp_path: Path, ari: FakeAsterisk) -> Path:
    path = tmp_path / ".env"
    path.write_text(
        "DIALER_TIMEZONE=America/Mexico_City\n"
        "DIALER_WINDOWS=mon-sun 00:00-24:00\n"  # any moment: the test runs on the real clock
        "DIALER_WINDOW_END_MARGIN=0s\n"
        f"DIALER_DB_PATH={tmp_path / 'dialer.db'}\n"
        f"DIALER_LOG_FILE={tmp_path / 'outbound.log'}\n"
        f"ARI_URL={ari.url}\nARI_USER=centralita\nARI_PASSWORD=secreto\n"
        "OPENAI_API_KEY=sk-not-used-by-the-dialer\n"  # the file is the box's: openai-inbound-calls takes its calls
    )
    with CampaignStore(tmp_path / "dialer.db") as store:
        store.ensure_campaign("marzo")
        store.upsert_targets("marzo", [target(1)])
        store.start_campaign("marzo")
    return path


def start(env: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "centralita.dialer.service",
            "--env-file",
            str(env),
            "--interval",
            "0.05",
            "--drain-timeout",
            "0.5",
        ],
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(60)  # generous: a loaded CI machine starts and stops Python slowly
    finally:
        if process.stderr:
            process.stderr.close()


def attempts(database: Path) -> list[tuple[str, str, str | None]]:
    connection = sqlite3.connect(database)
    try:
        return connection.execute("SELECT channel_id, state, outcome FROM attempts ORDER BY id").fetchall()
    finally:
        connection.close()


def wait(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail("timed out")


def test_a_call_a_busy_signal_and_a_graceful_stop(ari: FakeAsterisk, env: Path, tmp_path: Path) -> None:
    process = start(env)
    try:
        wait(lambda: bool(ari.channels) and "centralita-dialer" in ari.connected_apps())
        [channel_id] = list(ari.channels)
        wait(lambda: channel_id in ari.subscriptions.get("centralita-dialer", set()))
        ari.hang_up(channel_id, 17, "User busy")
        wait(lambda: attempts(tmp_path / "dialer.db") == [(channel_id, "ended", "busy")])
    finally:
        code = stop(process)
    assert code == 0
    log = (tmp_path / "outbound.log").read_text()
    assert f"call={channel_id} dialing attempt=1 campaign=marzo customer=C001" in log
    assert f"call={channel_id} attempt=1 ended: busy (cause 17) User busy" in log
    assert "secreto" not in log


def test_a_call_open_at_sigterm_is_taken_over_by_the_next_start(ari: FakeAsterisk, env: Path, tmp_path: Path) -> None:
    first = start(env)
    try:
        wait(lambda: bool(ari.channels))
        [channel_id] = list(ari.channels)
        ari.answer(channel_id)
        wait(lambda: attempts(tmp_path / "dialer.db") == [(channel_id, "answered", None)])
    finally:
        assert stop(first) == 0
    assert attempts(tmp_path / "dialer.db") == [(channel_id, "answered", None)], "still open, not invented"
    originates = len(ari.requests_to("POST", "/ari/channels"))
    second = start(env)
    try:
        # The first run's requests and subscription are still in the fake's history: only the second run's own
        # word says it has taken the call over (it logs that once it has looked the channel up and followed it).
        wait(lambda: "adopted" in (tmp_path / "outbound.log").read_text())
        ari.hang_up(channel_id, 16, "Normal Clearing")
        wait(lambda: attempts(tmp_path / "dialer.db") == [(channel_id, "ended", "answered-human")])
    finally:
        assert stop(second) == 0
    assert len(ari.requests_to("POST", "/ari/channels")) == originates, "nobody was dialled again"
    assert "adopted" in (tmp_path / "outbound.log").read_text()
