"""The .env is checked by the product before the playbook installs it: a bad setting stops the play with
the product's own message, and the box keeps its working .env and its running services.

The play runs at -vvv with --diff, where Ansible prints every task's result: no secret may appear in it.
"""

from __future__ import annotations

import json

from conftest import BOX, run_playbook

testinfra_hosts = [f"podman://{BOX}"]

ENV = "/usr/local/asterisk/.env"
SERVICES = ("openai-inbound-calls", "openai-outbound-calls")


def main_pids(host) -> dict[str, str]:
    return {unit: host.check_output(f"systemctl show -p MainPID --value {unit}") for unit in SERVICES}


def test_a_bad_dialer_setting_stops_the_play_and_the_old_env_stays(host):
    before = host.check_output(f"sha256sum {ENV}")
    pids = main_pids(host)
    secrets = [host.check_output("cat /etc/centralita/ari-password").strip(), "centralita-fake-router"]

    bad = json.dumps({"bridge_dialer_windows": "someday 25:00"})
    run = run_playbook("-e", bad, "--tags", "bridge", "-vvv", "--diff")
    output = run.stdout + run.stderr
    flat = " ".join(output.split())

    assert run.returncode != 0, run.stdout[-3000:]
    assert "TASK [bridge : Render the bridge settings (.env), readable only by the service user]" in output
    assert "failed to validate" in flat
    assert "DIALER_WINDOWS is 'someday 25:00', which is wrong ('someday' is not a day" in flat, flat[-3000:]
    assert "e.g. DIALER_WINDOWS from bridge_dialer_windows" in flat  # where to fix it
    for secret in secrets:
        assert secret not in output
    assert host.check_output(f"sha256sum {ENV}") == before
    assert main_pids(host) == pids
    for unit in SERVICES:
        assert host.service(unit).is_running
