"""Shared helpers for the box tests: the box, SIPp calls inside it, and re-running the playbook."""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

BOX = os.environ.get("CENTRALITA_CONTAINER", "centralita-molecule")
PROJECT = Path(__file__).resolve().parents[3]
SCENARIO = Path(__file__).resolve().parents[1]
SIPP_DIR = "/opt/centralita-test/sipp"


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
    cmd = (
        f"cd {SIPP_DIR} && sipp -sf {scenario} -s {shlex.quote(number)} 127.0.0.1:5060 -i {source} "
        f"-p {port} -m 1 -timeout {timeout_s}s -nostdin {extra} 2>&1"
    )
    result = host.run(cmd)
    return SippResult(result.rc, result.stdout)


def full_log_size(host) -> int:
    return int(host.check_output("stat -c %s /var/log/asterisk/full"))


def full_log_since(host, offset: int) -> str:
    return host.check_output(f"tail -c +{offset + 1} /var/log/asterisk/full")


def run_playbook(*extra_args: str, playbook: str = "site.yml") -> subprocess.CompletedProcess[str]:
    """Run a playbook of the project (the real site.yml by default) on the box with the scenario's inventory."""
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(PROJECT / "ansible.cfg")
    env["ANSIBLE_ROLES_PATH"] = str(PROJECT / "roles")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "0"  # molecule forces colour for its own output; the tests read plain text
    cmd = ["ansible-playbook", "-i", str(SCENARIO / "inventory"), str(PROJECT / playbook), *extra_args]
    return subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=PROJECT, timeout=600, env=env)


@pytest.fixture(scope="module")
def ari_secret(host) -> str:
    return host.check_output("cat /etc/centralita/ari-password").strip()
