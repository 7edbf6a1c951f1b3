"""openai-inbound-calls as deployed: the unit, its sandbox, its files, and a real SIPp call through it.

Runs after test_40, whose suite restarted Asterisk: the call here also proves the service reconnected.
"""

from __future__ import annotations

import re

import pytest
from conftest import BOX, sipp

testinfra_hosts = [f"podman://{BOX}"]

LOG = "/var/log/asterisk/inbound_openai.log"


def test_service_is_enabled_running_and_sandboxed(host):
    svc = host.service("openai-inbound-calls")
    assert svc.is_enabled
    assert svc.is_running
    props = svc.systemd_properties
    assert props["User"] == "centralita"
    assert props["NoNewPrivileges"] == "yes"
    assert props["ProtectSystem"] == "strict"
    assert props["ProtectHome"] == "yes"
    assert props["PrivateTmp"] == "yes"
    assert props["Restart"] == "on-failure"
    assert "asterisk.service" in props["After"]


def test_env_is_readable_only_by_the_service_user(host):
    env = host.file("/usr/local/asterisk/.env")
    assert (env.user, env.group, env.mode) == ("centralita", "centralita", 0o600)
    assert env.contains("^WS_PING_INTERVAL=20$")
    assert env.contains("^WS_PING_TIMEOUT=10$")


def test_app_directory_belongs_to_the_operator(host):
    app = host.file("/usr/local/asterisk")
    assert (app.user, app.group, app.mode) == ("soporte", "centralita", 0o750)
    stray = host.check_output(
        "find /usr/local/asterisk -path /usr/local/asterisk/.env -prune -o ! -user soporte -print"
    )
    assert stray == ""


def test_logrotate_covers_the_log(host):
    conf = host.file("/etc/logrotate.d/openai-inbound-calls")
    assert conf.contains(LOG)
    assert host.run("logrotate --debug /etc/logrotate.d/openai-inbound-calls").rc == 0


def test_service_registered_its_ari_app(host):
    assert "centralita" in host.check_output("asterisk -rx 'ari show apps'").split()


@pytest.fixture(scope="module")
def speaking_call(host):
    before = int(host.check_output(f"stat -c %s {LOG}"))
    result = sipp(host, "provider_call_speaking.xml", "5215550002222", extra="-d 8000", timeout_s=40)
    assert result.rc == 0, result.output
    log = host.check_output(f"tail -c +{before + 1} {LOG}")
    ids = sorted(set(re.findall(r"call=([0-9.]+)", log)))
    assert len(ids) == 1, log
    return ids[0], log


def test_the_call_walks_through_every_lifecycle_event(speaking_call):
    call_id, log = speaking_call
    lines = [line for line in log.splitlines() if f"call={call_id}" in line]
    events = [
        "call started",
        "ARI answered",
        "Iniciando conexión WebSocket con OpenAI",
        "session.update sent",
        "session.updated received",
        "call ended: outcome=hung_up_by_caller",
    ]
    positions = [next(i for i, line in enumerate(lines) if event in line) for event in events]
    assert positions == sorted(positions)


def test_the_log_and_journal_never_show_secrets(host, speaking_call):
    secret = host.check_output("cat /etc/centralita/ari-password")
    log = host.check_output(f"cat {LOG}")
    journal = host.check_output("journalctl -u openai-inbound-calls --no-pager -o cat")
    for text in (log, journal):
        assert "centralita-fake-key" not in text
        assert secret not in text
    assert "session.updated received" in journal


def test_the_call_is_recorded_with_the_assistant_transcript(host, speaking_call):
    call_id, _log = speaking_call
    script = (
        "import json,sys; from centralita.records import CallRecords; "
        "r=CallRecords('/var/lib/centralita/centralita.db'); print(json.dumps(r.get_call(sys.argv[1])))"
    )
    record = host.check_output(f'/usr/local/asterisk/venv/bin/python -c "{script}" {call_id}')
    assert '"outcome": "hung_up_by_caller"' in record
    assert '"speaker": "assistant"' in record
    assert '"caller": "5215550001111"' in record


def test_nothing_is_left_behind_after_the_call(host, speaking_call):
    assert "0 active channels" in host.check_output("asterisk -rx 'core show channels count'")
    bridges = host.check_output("asterisk -rx 'bridge show all'")
    assert "centralita-" not in bridges
