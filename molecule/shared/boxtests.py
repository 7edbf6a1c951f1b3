"""What the box tests of every scenario share: SIPp calls placed inside the box, reading its logs from an offset,
waiting for a condition, re-running a playbook with the scenario's inventory, and the lifecycle of an assistant
call as the log tells it.

Each scenario's ``conftest.py`` puts this folder on ``sys.path`` and binds what is its own (the container's name,
its inventory). A plain module, not a scenario: Molecule only takes folders that hold a ``molecule.yml``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")

__all__ = [
    "BRIDGE_LOG",
    "DIALER_DB",
    "FULL_LOG",
    "LIFECYCLE",
    "PROJECT",
    "RECORDS_DB",
    "SIPP_DIR",
    "VENV_PYTHON",
    "SippResult",
    "app_registered",
    "ari_secret",
    "assistant_stopped",
    "box_name",
    "call_record",
    "dialer_query",
    "ended_record",
    "fully_booted",
    "lifecycle_positions",
    "log_since",
    "log_size",
    "nothing_left",
    "place_speaking_call",
    "playbook_runner",
    "poll",
    "sipp",
    "sipp_detached",
    "sipp_in_background",
    "sipp_result",
    "wait_until",
]

PROJECT = Path(__file__).resolve().parents[2]
SIPP_DIR = "/opt/centralita-test/sipp"
FULL_LOG = "/var/log/asterisk/full"
BRIDGE_LOG = "/var/log/asterisk/inbound_openai.log"
VENV_PYTHON = "/usr/local/asterisk/venv/bin/python"
RECORDS_DB = "/var/lib/centralita/centralita.db"
DIALER_DB = "/var/lib/centralita/dialer.db"

# What an answered assistant call logs, in this order: the session opens while the phone rings, and the call is
# answered only once it is live.
LIFECYCLE = (
    "call started",
    "ringing",
    "Iniciando conexión WebSocket con OpenAI",
    "session.update sent",
    "session.updated received",
    "ARI answered",
    "media ready",
    "call ended: outcome=hung_up_by_caller",
)


@dataclass
class SippResult:
    rc: int
    output: str

    @property
    def successful_calls(self) -> int:
        for line in self.output.splitlines():
            if line.strip().startswith("Successful call"):
                return int(line.split("|")[-1].strip())
        return 0


def sipp_command(scenario: str, number: str, *, source: str, port: int, extra: str, timeout_s: int) -> str:
    return (
        f"cd {SIPP_DIR} && sipp -sf {scenario} -s {shlex.quote(number)} 127.0.0.1:5060 -i {source} "
        f"-p {port} -m 1 -timeout {timeout_s}s -nostdin {extra} 2>&1"
    )


def sipp(
    host,
    scenario: str,
    number: str,
    *,
    source: str = "127.0.0.1",
    port: int = 5070,
    extra: str = "",
    timeout_s: int = 30,
) -> SippResult:
    """Place one SIPp call into the box's Asterisk from `source`:`port` and return its outcome."""
    result = host.run(sipp_command(scenario, number, source=source, port=port, extra=extra, timeout_s=timeout_s))
    return SippResult(result.rc, result.stdout)


@contextlib.contextmanager
def sipp_in_background(host, arguments: str, name: str) -> Iterator[None]:
    """SIPp running in the box (from SIPP_DIR, output in /tmp/<name>.out) for the duration of the block; stopped
    by its own process id afterwards, whatever the block did."""
    pid = host.check_output(
        f"cd {SIPP_DIR} && {{ sipp {arguments} -nostdin > /tmp/{name}.out 2>&1 & }} && echo $!"
    ).strip()
    try:
        yield
    finally:
        host.run(f"kill {pid} 2>/dev/null; true")


def sipp_detached(host, name: str, arguments: str) -> None:
    """One SIPp run (``arguments`` after ``sipp``, from SIPP_DIR), detached from this command, so that a test
    can act while the call is up; its output and exit code land in /tmp/<name>.out and .rc (``sipp_result``)."""
    host.check_output(f"rm -f /tmp/{name}.out /tmp/{name}.rc")
    command = f"cd {SIPP_DIR} && sipp {arguments} -nostdin > /tmp/{name}.out 2>&1; echo $? > /tmp/{name}.rc"
    host.check_output(f"setsid -f bash -c {shlex.quote(command)} < /dev/null > /dev/null 2>&1")


def sipp_result(host, name: str, timeout: float) -> tuple[int, str]:
    """The exit code and output of the detached SIPp run ``name``, once it has ended."""
    rc = poll(lambda: host.run(f"cat /tmp/{name}.rc").stdout.strip(), f"SIPp call {name} to end", timeout)
    return int(rc), host.run(f"cat /tmp/{name}.out").stdout


def nothing_left(host) -> bool:
    """No channel up in the box's Asterisk, and no bridge of the service's."""
    channels = host.check_output("asterisk -rx 'core show channels count'")
    return "0 active channels" in channels and "centralita-" not in host.check_output("asterisk -rx 'bridge show all'")


def log_size(host, path: str = FULL_LOG) -> int:
    return int(host.check_output(f"stat -c %s {path}"))


def log_since(host, offset: int, path: str = FULL_LOG) -> str:
    return host.check_output(f"tail -c +{offset + 1} {path}")


def wait_until(condition: Callable[[], bool], timeout_s: float = 60.0, interval_s: float = 0.5) -> bool:
    """Poll `condition` until it holds or the (generous) deadline passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_s)
    return condition()


def poll(read: Callable[[], T | None], what: str, timeout: float, every: float = 0.25) -> T:
    """``read()`` until it gives something truthy, and return that; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def fully_booted(host) -> bool:
    return "fully booted" in host.run("timeout 10 asterisk -rx 'core waitfullybooted'").stdout


def app_registered(host, app: str = "centralita") -> bool:
    return app in host.run("asterisk -rx 'ari show apps'").stdout.split()


def box_name(variable: str, default: str) -> str:
    """The scenario's container: `default`, or another name from `variable` (two checkouts side by side)."""
    return os.environ.get(variable, default)


def playbook_runner(scenario: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_playbook(*extra_args, playbook="site.yml")`` bound to `scenario`'s inventory."""

    def run(*extra_args: str, playbook: str = "site.yml") -> subprocess.CompletedProcess[str]:
        return run_playbook(scenario, *extra_args, playbook=playbook)

    return run


def run_playbook(scenario: Path, *extra_args: str, playbook: str = "site.yml") -> subprocess.CompletedProcess[str]:
    """Run a playbook of the project (the real site.yml by default) on the box with `scenario`'s inventory."""
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(PROJECT / "ansible.cfg")
    env["ANSIBLE_ROLES_PATH"] = str(PROJECT / "roles")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "0"  # molecule forces colour for its own output; the tests read plain text
    cmd = ["ansible-playbook", "-i", str(scenario / "inventory"), str(PROJECT / playbook), *extra_args]
    return subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=PROJECT, timeout=900, env=env)


def call_record(host, call_id: str) -> dict:
    """The call's record as the service stored it (CallRecords.get_call), read with the box's own venv."""
    script = (
        "import json,sys; from centralita.storage.records import CallRecords; "
        f"r=CallRecords('{RECORDS_DB}'); print(json.dumps(r.get_call(sys.argv[1])))"
    )
    return json.loads(host.check_output(f'{VENV_PYTHON} -c "{script}" {call_id}'))


def ended_record(host, call_id: str, timeout: float = 30) -> dict:
    """The call's record once it has ended: the service writes the end a moment after the hang-up (polled, and
    read again when the database is busy)."""

    def read() -> dict | None:
        script = (
            "import json,sys; from centralita.storage.records import CallRecords; "
            f"r=CallRecords('{RECORDS_DB}'); print(json.dumps(r.get_call(sys.argv[1])))"
        )
        result = host.run(f'{VENV_PYTHON} -c "{script}" {call_id}')
        record = json.loads(result.stdout) if result.rc == 0 else None
        return record if record and record.get("ended_at") else None

    return poll(read, f"the record of call {call_id} to end", timeout)


def dialer_query(host, sql: str) -> list[list]:
    """The rows of ``sql`` run on the dialer's database (campaigns, targets, attempts), read with the box's venv."""
    script = "import json,sqlite3,sys; print(json.dumps(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchall()))"
    return json.loads(host.check_output(f"{VENV_PYTHON} -c {shlex.quote(script)} {DIALER_DB} {shlex.quote(sql)}"))


def place_speaking_call(host) -> tuple[str, str]:
    """One provider call that talks to the assistant for ten seconds; its call id and the assistant's log of it.

    SIPp is done once its BYE is answered; the service logs the call's end a moment later (a busy box may take a
    while): the log is read once that line is there, not at once."""
    before = log_size(host, BRIDGE_LOG)
    result = sipp(host, "provider_call_speaking.xml", "5215550002222", extra="-d 10000", timeout_s=40)
    assert result.rc == 0, result.output
    assert wait_until(lambda: "call ended" in log_since(host, before, BRIDGE_LOG), 30, 0.25)
    log = log_since(host, before, BRIDGE_LOG)
    ids = sorted(set(re.findall(r"call=([0-9.]+)", log)))
    assert len(ids) == 1, log
    return ids[0], log


def lifecycle_positions(log: str, call_id: str) -> list[int]:
    """Where each LIFECYCLE event first appears among the call's own log lines (StopIteration if one is missing)."""
    lines = [line for line in log.splitlines() if f"call={call_id}" in line]
    return [next(i for i, line in enumerate(lines) if event in line) for event in LIFECYCLE]


@pytest.fixture(scope="module")
def ari_secret(host) -> str:
    return host.check_output("cat /etc/centralita/ari-password").strip()


@pytest.fixture
def assistant_stopped(host):
    """The box as it is when openai-inbound-calls is down: Stasis finds no app."""
    host.run_expect([0], "systemctl stop openai-inbound-calls")
    try:
        yield
    finally:
        host.run_expect([0], "systemctl start openai-inbound-calls")
        # Ready again once the app is registered (later tests call the assistant).
        assert wait_until(lambda: app_registered(host), 60)
