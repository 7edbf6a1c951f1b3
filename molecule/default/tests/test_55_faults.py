"""Faults of the box itself, live: the service killed mid-call, and the call over the box's limit.

SIPp plays the provider. Every wait polls what it asserts (the logs, systemd, the channel list) up to a
generous deadline: the box is a shared, busy machine.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest
from conftest import BOX, SIPP_DIR, poll
from conftest import log_since as full_log_since
from conftest import log_size as full_log_size

testinfra_hosts = [f"podman://{BOX}"]

LOG = "/var/log/asterisk/inbound_openai.log"


def log_size(host) -> int:
    return int(host.check_output(f"stat -c %s {LOG}"))


def log_since(host, offset: int) -> str:
    return host.check_output(f"tail -c +{offset + 1} {LOG}")


def sipp_in_background(
    host, name: str, scenario: str, number: str, *, port: int, timeout_s: int, extra: str = ""
) -> None:
    """Start one SIPp call detached from this command; its output and exit code land in /tmp/<name>.*."""
    host.check_output(f"rm -f /tmp/{name}.out /tmp/{name}.rc")
    command = (
        f"cd {SIPP_DIR} && sipp -sf {scenario} -s {number} 127.0.0.1:5060 -i 127.0.0.1 -p {port} -m 1 "
        f"-timeout {timeout_s}s -nostdin {extra} > /tmp/{name}.out 2>&1; echo $? > /tmp/{name}.rc"
    )
    host.check_output(f"setsid -f bash -c '{command}' < /dev/null > /dev/null 2>&1")


def sipp_result(host, name: str, timeout: float) -> tuple[int, str]:
    rc = poll(lambda: host.run(f"cat /tmp/{name}.rc").stdout.strip(), f"SIPp call {name} to end", timeout)
    return int(rc), host.run(f"cat /tmp/{name}.out").stdout


def nothing_left(host) -> bool:
    channels = host.check_output("asterisk -rx 'core show channels count'")
    bridges = host.check_output("asterisk -rx 'bridge show all'")
    return "0 active channels" in channels and "centralita-" not in bridges


def call_record(host, call_id: str) -> dict | None:
    script = (
        "import json,sys; from centralita.storage.records import CallRecords; "
        "r=CallRecords('/var/lib/centralita/centralita.db'); print(json.dumps(r.get_call(sys.argv[1])))"
    )
    result = host.run(f'/usr/local/asterisk/venv/bin/python -c "{script}" {call_id}')
    return json.loads(result.stdout) if result.rc == 0 else None


def service_ready(host) -> bool:
    return (
        host.service("openai-inbound-calls").is_running
        and "centralita" in host.check_output("asterisk -rx 'ari show apps'").split()
    )


@pytest.fixture
def ready(host) -> None:
    poll(lambda: service_ready(host), "openai-inbound-calls to be connected to ARI", 60)
    poll(lambda: nothing_left(host), "a box with no call up", 60)


@pytest.mark.usefixtures("ready")
def test_a_caller_left_by_a_killed_service_reaches_the_failover_context_soon_after_the_restart(host):
    """SIGKILL mid-call: systemd restarts the service, whose reconciliation finds the caller still in the
    Stasis app and sends it on to the failover context (notice, then operator); nothing is left behind."""
    full_before = full_log_size(host)
    log_before = log_size(host)
    old_pid = host.service("openai-inbound-calls").systemd_properties["MainPID"]
    sipp_in_background(host, "killed", "provider_call_box_hangs_up.xml", "5215550002222", port=5072, timeout_s=120)
    ready_line = poll(
        lambda: re.search(r"call=([0-9.]+) media ready", log_since(host, log_before)), "the call's media", 60
    )
    call_id = ready_line.group(1)
    host.check_output("systemctl kill --signal=SIGKILL openai-inbound-calls")

    restarted_at: float | None = None
    failover_at: float | None = None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and failover_at is None:
        if restarted_at is None:
            props = host.service("openai-inbound-calls").systemd_properties
            if props["ActiveState"] == "active" and props["MainPID"] not in (old_pid, "0"):
                restarted_at = time.monotonic()
        if "(service_restarted) - sent to the operator" in full_log_since(host, full_before):
            failover_at = time.monotonic()
            restarted_at = restarted_at or failover_at
        time.sleep(0.2)
    assert restarted_at is not None, "systemd did not restart openai-inbound-calls"
    assert failover_at is not None, full_log_since(host, full_before)[-3000:]
    print(f"failover {failover_at - restarted_at:.1f} s after the restart was seen")
    assert failover_at - restarted_at < 10

    log = log_since(host, log_before)
    assert re.search(rf"call={re.escape(call_id)} recovered call: found in Stasis\(centralita,inbound,", log), log
    # The caller hears the notice, then reaches the operator context, which ends the call (SIPp sees the BYE).
    rc, output = sipp_result(host, "killed", 120)
    assert rc == 0, output
    asterisk_log = full_log_since(host, full_before)
    assert "centralita/asistente-no-disponible" in asterisk_log
    assert "Goto (centralita-operator,s,1)" in asterisk_log
    poll(lambda: nothing_left(host), "no channel or centralita bridge left", 30)
    record = poll(lambda: (r := call_record(host, call_id)) and r.get("ended_at") and r, "the call's record", 30)
    assert record["outcome"] == "interrupted"
    assert "centralita-unavailable" in record["detail"]


@pytest.fixture
def box_limit_of_one(host) -> Iterator[None]:
    """The dialplan's copy of the box limit (asterisk_max_calls), lowered to 1 for this test at run time."""
    before = host.check_output("asterisk -rx 'dialplan show globals' | grep -o 'CENTRALITA_MAX_CALLS=[0-9]*'")
    host.check_output("asterisk -rx 'dialplan set global CENTRALITA_MAX_CALLS 1'")
    try:
        yield
    finally:
        host.check_output(f"asterisk -rx 'dialplan set global CENTRALITA_MAX_CALLS {before.split('=')[1]}'")


@pytest.mark.usefixtures("ready", "box_limit_of_one")
def test_the_call_over_the_box_limit_goes_straight_to_the_failover_context(host):
    full_before = full_log_size(host)
    log_before = log_size(host)
    sipp_in_background(
        host, "first", "provider_call_speaking.xml", "5215550002222", port=5073, timeout_s=60, extra="-d 10000"
    )
    first = poll(
        lambda: re.search(r"call=([0-9.]+) media ready", log_since(host, log_before)), "the first call's media", 60
    ).group(1)
    sipp_in_background(host, "over", "provider_call_box_hangs_up.xml", "5215550002222", port=5074, timeout_s=60)
    poll(lambda: "(box_full) - sent to the operator" in full_log_since(host, full_before), "the refusal", 30)
    rc, output = sipp_result(host, "over", 60)
    assert rc == 0, output  # answered by the failover context, which hung up after the notice
    # It never reached the assistant: one call only in the service's log.
    assert set(re.findall(r"call=([0-9.]+) call started", log_since(host, log_before))) == {first}
    # The first call talked on to its end.
    rc, output = sipp_result(host, "first", 60)
    assert rc == 0, output
    record = poll(lambda: (r := call_record(host, first)) and r.get("ended_at") and r, "the first call's record", 30)
    assert record["outcome"] == "hung_up_by_caller"
    assert any(line["speaker"] == "assistant" for line in record["transcript"]), record
    poll(lambda: nothing_left(host), "no channel or centralita bridge left", 30)
