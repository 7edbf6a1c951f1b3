"""Shared helpers for the cluster tests: the four containers, SIPp calls from the provider, the boxes' logs."""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import testinfra

PREFIX = os.environ.get("CENTRALITA_CLUSTER", "centralita-mol-cluster")
SUBNET = ipaddress.ip_network(os.environ.get("CENTRALITA_CLUSTER_SUBNET", "10.89.71.0/24"))
PROXY_IP = str(SUBNET[10])
BOX_IPS = {"box1": str(SUBNET[11]), "box2": str(SUBNET[12])}
PROVIDER_IP = str(SUBNET[20])
# An address on the scenario's network that is neither the provider, the proxy nor a box.
STRANGER_IP = str(SUBNET[30])
PROJECT = Path(__file__).resolve().parents[3]
SCENARIO = Path(__file__).resolve().parents[1]
SIPP_DIR = "/opt/centralita-test/sipp"
ECHO = "6000"
# Each box logs this line (at verbose 3, in /var/log/asterisk/full) for every call it takes on the echo extension.
ECHO_LINE = "Centralita: echo test call from"
# ... and this one (a warning) for each call it refuses with 503 at its asterisk_max_calls.
FULL_LINE = "Centralita: box full ("


def container(name: str) -> str:
    return f"{PREFIX}-{name}"


@pytest.fixture(scope="session")
def proxy():
    return testinfra.get_host(f"podman://{container('proxy')}")


@pytest.fixture(scope="session")
def provider():
    return testinfra.get_host(f"podman://{container('provider')}")


@pytest.fixture(scope="session")
def boxes():
    return {name: testinfra.get_host(f"podman://{container(name)}") for name in BOX_IPS}


@dataclass
class SippResult:
    rc: int
    output: str

    def count(self, what: str) -> int:
        """SIPp's final statistics line for `what` ("Successful call", "Failed call"), cumulative column."""
        for line in reversed(self.output.splitlines()):
            if line.strip().startswith(what):
                return int(line.split("|")[-1].strip())
        return 0

    @property
    def successful(self) -> int:
        return self.count("Successful call")

    @property
    def failed(self) -> int:
        return self.count("Failed call")


def sipp_command(
    calls: int, *, limit: int = 1, rate: int = 10, hold_ms: int = 1000, port: int = 5070, timeout_s: int = 60
) -> str:
    """SIPp on the provider calling the echo extension through the proxy: `calls` calls, at most `limit` at
    once, `rate` new calls per second, each held `hold_ms` ms."""
    return (
        f"cd {SIPP_DIR} && sipp -sf call_via_proxy.xml -s {ECHO} {PROXY_IP}:5060 -i {PROVIDER_IP} -p {port} "
        f"-m {calls} -l {limit} -r {rate} -d {hold_ms} -timeout {timeout_s}s -timeout_error -nostdin "
        f"-trace_err -error_file /tmp/sipp-{port}-errors.log"
    )


def sipp_calls(provider, calls: int, **kwargs) -> SippResult:
    result = provider.run(sipp_command(calls, **kwargs) + " 2>&1")
    return SippResult(result.rc, result.stdout)


def log_size(box) -> int:
    return int(box.check_output("stat -c %s /var/log/asterisk/full"))


def log_since(box, offset: int) -> str:
    return box.check_output(f"tail -c +{offset + 1} /var/log/asterisk/full")


def log_offsets(boxes) -> dict[str, int]:
    return {name: log_size(box) for name, box in boxes.items()}


def calls_taken(boxes, offsets: dict[str, int]) -> dict[str, int]:
    """How many calls each box's echo extension took since `offsets`: the calls that reached it, less those it
    refused because it was full."""
    taken = {}
    for name, box in boxes.items():
        log = log_since(box, offsets[name])
        refused = [line for line in log.splitlines() if " WARNING[" in line and FULL_LINE in line]
        taken[name] = log.count(ECHO_LINE) - len(refused)
    return taken


def active_calls(box) -> int:
    out = box.run("asterisk -rx 'core show channels count'").stdout
    match = re.search(r"(\d+) active call", out)
    return int(match.group(1)) if match else 0


def wait_for(condition: Callable[[], bool], what: str, deadline_s: float = 60, every_s: float = 0.5) -> None:
    """Poll `condition` until it holds; fail naming `what` after `deadline_s` seconds."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(every_s)
    raise AssertionError(f"not within {deadline_s} s: {what}")


def dispatcher_flags(proxy) -> dict[str, str]:
    """The running proxy's view of each box: {box address: flags} (AP active, IP inactive and probing...)."""
    out = proxy.check_output("kamcmd dispatcher.list")
    flags: dict[str, str] = {}
    for uri, flag in re.findall(r"URI: sip:([0-9.]+):\d+\s+FLAGS: (\w+)", out):
        flags[uri] = flag
    return flags


def statistics(proxy) -> dict[str, int]:
    out = proxy.check_output("kamcmd stats.get_statistics script:")
    return {name: int(value) for name, value in re.findall(r"centralita:(\w+) = (\d+)", out)}


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=False, timeout=120)


def run_playbook(*extra_args: str, playbook: str = "molecule/cluster/converge.yml") -> subprocess.CompletedProcess[str]:
    """Run a playbook with the scenario's inventory (plain text output)."""
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(PROJECT / "ansible.cfg")
    env["ANSIBLE_ROLES_PATH"] = str(PROJECT / "roles")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    cmd = ["ansible-playbook", "-i", str(SCENARIO / "inventory"), str(PROJECT / playbook), *extra_args]
    return subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=PROJECT, timeout=600, env=env)


def quote(text: str) -> str:
    return shlex.quote(text)
