"""`centralita doctor` on the chan_sip box: every check OK, the SIP ones reading sip.conf and chan_sip."""

from __future__ import annotations

import json

from conftest import BOX

testinfra_hosts = [f"podman://{BOX}"]

DOCTOR = "/usr/local/asterisk/venv/bin/centralita doctor"


def doctor(host) -> tuple[int, dict]:
    result = host.run(f"{DOCTOR} --json")
    assert result.rc in (0, 1), f"rc={result.rc}\n{result.stdout}\n{result.stderr}"
    return result.rc, json.loads(result.stdout)


def test_the_doctor_finds_the_chan_sip_box_all_ok(host):
    rc, report = doctor(host)
    not_ok = [item["line"] for item in report["checks"] if item["status"] != "OK"]
    assert rc == 0, not_ok
    assert not_ok == []
    checks = {item["name"]: item for item in report["checks"]}
    assert "chan_sip" in checks["asterisk.sip_module"]["seen"]
    assert "sip.conf" in checks["asterisk.files"]["seen"] or "sip.conf" in json.dumps(checks["asterisk.files"])
