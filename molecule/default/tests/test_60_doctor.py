"""`centralita doctor` on the converged box: all OK, then one real fault at a time, each caught by its own
check with its fix while every other check keeps its healthy status; `--fix` repairs the safe ones.

Every fault is undone in a `finally`, so a failing assertion never leaves the box broken for later tests.
Faults in the settings are made in a copy of the .env (passed with --env-file), never in the real one.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from conftest import BOX, run_playbook

testinfra_hosts = [f"podman://{BOX}"]

DOCTOR = "/usr/local/asterisk/venv/bin/centralita doctor"
APP_DIR = "/usr/local/asterisk"
ENV = f"{APP_DIR}/.env"
OPERATOR = "soporte"  # bridge_operator_user in the scenario's inventory
TRUNK_FILE = "/etc/asterisk/pjsip_trunk.conf"
# May be WARN on a healthy box: the outbound dialer may not be deployed, earlier tests (Asterisk
# restarts, fault injection) may have left ERROR lines in the bridge's log, and the health snapshot's lines
# cannot be checked while a test has the inbound service stopped.
MAY_WARN = {"bridge.outbound_service", "bridge.log", "bridge.budget", "bridge.records", "bridge.admission"}


def doctor(host, *args: str) -> tuple[int, dict]:
    """Run the doctor with --json; its exit code and report."""
    result = host.run(f"{DOCTOR} --json {' '.join(args)}")
    assert result.rc in (0, 1), f"rc={result.rc}\n{result.stdout}\n{result.stderr}"
    return result.rc, json.loads(result.stdout)


def statuses(report: dict) -> dict[str, str]:
    return {check["name"]: check["status"] for check in report["checks"]}


def check(report: dict, name: str) -> dict:
    return next(item for item in report["checks"] if item["name"] == name)


def same_as_healthy(now: dict[str, str], healthy: dict[str, str], skip: set[str]) -> None:
    """Every check but ``skip`` has its healthy status (the MAY_WARN ones may go from OK to WARN, never FAIL)."""
    for name, status in healthy.items():
        if name in skip:
            continue
        if name in MAY_WARN:
            assert now.get(name) in ("OK", "WARN"), name
        else:
            assert now.get(name) == status, name
    assert set(now) == set(healthy)


def only_this_fails(report: dict, name: str, healthy: dict[str, str]) -> dict:
    """Assert ``name`` FAILs and every other check keeps its healthy status; the failing check."""
    now = statuses(report)
    assert now[name] == "FAIL", check(report, name)
    same_as_healthy(now, healthy, {name})
    return check(report, name)


def env_copy(host, path: str, sed: str) -> None:
    """A copy of the real .env, edited with ``sed``, with the real one's owner and mode (0600)."""
    host.run_expect([0], f"install -m 0600 -o centralita -g centralita {ENV} {path}")
    host.run_expect([0], f"sed -i {sed} {path}")


def wait_for(host, command: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while host.run(command).rc != 0:
        assert time.monotonic() < deadline, f"still failing after {timeout_s} s: {command}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def healthy(host) -> dict[str, str]:
    """The healthy box's statuses: every check OK but the ones allowed to WARN, and exit code 0."""
    rc, report = doctor(host)
    lines = [item["line"] for item in report["checks"] if item["status"] != "OK"]
    assert rc == 0, lines
    assert report["summary"]["FAIL"] == 0, lines
    not_ok = {item["name"] for item in report["checks"] if item["status"] != "OK"}
    assert not_ok <= MAY_WARN, lines
    routers = [name for name in statuses(report) if name.startswith("routeros.")]
    assert routers, "the box's .env names no router: the role must render ROUTEROS_* for the fake RouterOS"
    return statuses(report)


def test_healthy_box_is_all_ok(host, healthy):
    for name in (
        "env.settings",
        "env.ws_ping",
        "env.permissions",
        "asterisk.service",
        "asterisk.files",
        "asterisk.sip_module",
        "asterisk.registration",
        "asterisk.dialplan",
        "asterisk.channels",
        "asterisk.ari",
        "bridge.inbound_service",
        "system.disk",
        "bridge.code",
        "bridge.app_dir",
        "bridge.git",
        "openai.api_key",
        "network.sip_provider",
        "network.openai",
    ):
        assert healthy[name] == "OK", name
    text = host.run(DOCTOR)
    assert text.rc == 0
    assert text.stdout.splitlines()[-1].endswith(": no failures")


def test_sip_config_owned_by_root_fails_and_fix_repairs_it(host, healthy):
    host.run_expect([0], f"chown root:root {TRUNK_FILE}")
    try:
        rc, report = doctor(host)
        assert rc == 1
        files = only_this_fails(report, "asterisk.files", healthy)
        assert f"{TRUNK_FILE} is root:root 0640" in files["seen"]
        assert f"chown asterisk:asterisk {TRUNK_FILE}" in files["fix"]
        assert files["fixable"] is True

        rc, report = doctor(host, "--fix")
        assert rc == 0, [item["line"] for item in report["checks"] if item["status"] != "OK"]
        assert report["fixes"] == [
            {
                "check": "asterisk.files",
                "changes": [f"chown -h asterisk:asterisk {TRUNK_FILE} (was root:root)"],
                "error": "",
            }
        ]
        trunk = host.file(TRUNK_FILE)
        assert (trunk.user, trunk.group, trunk.mode) == ("asterisk", "asterisk", 0o640)
        same_as_healthy(statuses(report), healthy, set())
    finally:
        host.run(f"chown asterisk:asterisk {TRUNK_FILE}")


def test_bridge_stopped_fails_and_fix_starts_it(host, healthy):
    host.run_expect([0], "systemctl stop openai-inbound-calls")
    try:
        rc, report = doctor(host)
        assert rc == 1
        service = only_this_fails(report, "bridge.inbound_service", healthy)
        assert "openai-inbound-calls is inactive" in service["seen"]
        assert service["fix"].startswith("systemctl start openai-inbound-calls")

        rc, report = doctor(host, "--fix")
        assert rc == 0, [item["line"] for item in report["checks"] if item["status"] != "OK"]
        assert report["fixes"][0]["changes"] == ["systemctl start openai-inbound-calls"]
        assert host.service("openai-inbound-calls").is_running
    finally:
        host.run("systemctl start openai-inbound-calls")
        wait_for(host, "asterisk -rx 'ari show apps' | grep -qx ' *centralita *'")


def test_wrong_api_key_against_the_fake_server_fails(host, healthy):
    copy = "/root/doctor-wrong-key.env"
    env_copy(host, copy, "'s/^OPENAI_API_KEY=.*/OPENAI_API_KEY=sk-not-the-right-key-0123456789/'")
    try:
        rc, report = doctor(host, "--env-file", copy)
        assert rc == 1
        key = only_this_fails(report, "openai.api_key", healthy)
        assert key["seen"] == (
            f"http://127.0.0.1:8765/v1/models refused OPENAI_API_KEY from {copy} (401 invalid_api_key)"
        )
        assert "bridge_openai_api_key" in key["fix"]
        assert "systemctl restart openai-inbound-calls" in key["fix"]
        assert "sk-not-the-right-key" not in json.dumps(report)
    finally:
        host.run(f"rm -f {copy}")


def test_router_down_fails(host, healthy):
    routers = [name for name in healthy if name.startswith("routeros.")]
    host.run_expect([0], "systemctl stop centralita-fake-routeros")
    try:
        rc, report = doctor(host)
        assert rc == 1
        now = statuses(report)
        for name in routers:
            assert now[name] == "FAIL", check(report, name)
            assert "cannot reach the API" in check(report, name)["seen"]
            assert "/ip service print where name=api" in check(report, name)["fix"]
        same_as_healthy(now, healthy, set(routers))
    finally:
        host.run("systemctl start centralita-fake-routeros")
        wait_for(host, "systemctl is-active --quiet centralita-fake-routeros")


def test_prompts_edited_as_root_fail_and_fix_gives_them_back(host, healthy):
    prompt = f"{APP_DIR}/prompts/asistente_entrante.es.txt"
    host.run_expect([0], f"chown root {prompt}")
    host.run_expect([0], f"install -o root -g root -m 0644 /dev/null {APP_DIR}/prompts/notes-by-root.txt")
    # The operator planted a link to a root-only file in their directory: --fix must not hand it over.
    host.run_expect([0], f"ln -s /etc/centralita/ari-password {APP_DIR}/prompts/link")
    try:
        rc, report = doctor(host)
        assert rc == 1
        app = only_this_fails(report, "bridge.app_dir", healthy)
        assert f"2 path(s) in {APP_DIR}/prompts not owned by {OPERATOR} (owned by root)" in app["seen"]
        assert app["fix"].startswith("centralita doctor --fix gives them back without following links")

        rc, report = doctor(host, "--fix")
        assert rc == 0, [item["line"] for item in report["checks"] if item["status"] != "OK"]
        assert report["fixes"][0]["check"] == "bridge.app_dir"
        assert host.file(prompt).user == OPERATOR
        assert host.file(f"{APP_DIR}/prompts/notes-by-root.txt").user == OPERATOR
        secret = host.file("/etc/centralita/ari-password")
        assert (secret.user, secret.mode) == ("root", 0o600)
        assert host.file(ENV).user == "centralita"  # the .env stays the service user's
    finally:
        host.run(f"rm -f {APP_DIR}/prompts/notes-by-root.txt {APP_DIR}/prompts/link; chown {OPERATOR} {prompt}")


def test_a_venv_the_operator_could_change_fails_with_the_rebuild_as_its_fix(host, healthy):
    host.run_expect([0], f"chown {OPERATOR} {APP_DIR}/venv/bin")
    try:
        rc, report = doctor(host)
        assert rc == 1
        code = only_this_fails(report, "bridge.code", healthy)
        assert f"venv/bin ({OPERATOR}:root 0755)" in code["seen"]
        assert "whoever can change them can run code as root" in code["seen"]
        assert "ansible-playbook site.yml --tags bridge" in code["fix"]
        rc, report = doctor(host, "--fix")
        assert rc == 1  # nothing the doctor may repair: it would make root run what the operator left there
        assert host.file(f"{APP_DIR}/venv/bin").user == OPERATOR
    finally:
        host.run(f"chown root {APP_DIR}/venv/bin")


def test_ping_timeout_not_below_interval_fails_only_the_keepalive(host, healthy):
    copy = "/root/doctor-ping.env"
    edit = "-e 's/^WS_PING_INTERVAL=.*/WS_PING_INTERVAL=20/' -e 's/^WS_PING_TIMEOUT=.*/WS_PING_TIMEOUT=20/'"
    env_copy(host, copy, edit)
    try:
        rc, report = doctor(host, "--env-file", copy)
        assert rc == 1
        ping = only_this_fails(report, "env.ws_ping", healthy)
        assert "Ensure ping_interval > ping_timeout" in ping["seen"]
        assert "set WS_PING_INTERVAL=20 and WS_PING_TIMEOUT=10" in ping["fix"]
        assert check(report, "env.settings")["status"] == "OK"
    finally:
        host.run(f"rm -f {copy}")


def test_the_doctor_playbook_reports_the_healthy_box():
    # The same checks for every box of an inventory, run from the controller: one summary, no failure.
    result = run_playbook(playbook="playbooks/doctor.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "TASK [Show the summary, with every check that is not OK]" in result.stdout
    assert re.search(r"centralita-molecule\s*: ok=\d+\s+changed=0\s+unreachable=0\s+failed=0", result.stdout)
