"""Shared helpers for the chan_sip box tests: the box, SIPp calls inside it, logs, and re-running the playbook."""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BOX = os.environ.get("CENTRALITA_CHANSIP_CONTAINER", "centralita-chansip")
PROJECT = Path(__file__).resolve().parents[3]
SCENARIO = Path(__file__).resolve().parents[1]
SIPP_DIR = "/opt/centralita-test/sipp"
FULL_LOG = "/var/log/asterisk/full"
BRIDGE_LOG = "/var/log/asterisk/inbound_openai.log"


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


def fully_booted(host) -> bool:
    return "fully booted" in host.run("timeout 10 asterisk -rx 'core waitfullybooted'").stdout


def app_registered(host, app: str = "centralita") -> bool:
    return app in host.run("asterisk -rx 'ari show apps'").stdout.split()


def run_playbook(*extra_args: str, playbook: str = "site.yml") -> subprocess.CompletedProcess[str]:
    """Run a playbook of the project (the real site.yml by default) on the box with the scenario's inventory."""
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(PROJECT / "ansible.cfg")
    env["ANSIBLE_ROLES_PATH"] = str(PROJECT / "roles")
    env["ANSIBLE_NOCOLOR"] = "1"
    cmd = ["ansible-playbook", "-i", str(SCENARIO / "inventory"), str(PROJECT / playbook), *extra_args]
    return subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=PROJECT, timeout=900)


@pytest.fixture(scope="module")
def ari_secret(host) -> str:
    return host.check_output("cat /etc/centralita/ari-password").strip()
