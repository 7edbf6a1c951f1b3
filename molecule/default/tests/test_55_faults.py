"""Faults of the box itself, live: the service killed mid-call, and the call over the box's limit.

SIPp plays the provider. Every wait polls what it asserts (the logs, systemd, the channel list) up to a
generous deadline: the box is a shared, busy machine.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from conftest import BOX, BRIDGE_LOG, ended_record, log_since, log_size, nothing_left, poll, sipp_detached, sipp_result

testinfra_hosts = [f"podman://{BOX}"]


def provider_call(scenario: str, *, port: int, timeout_s: int) -> str:
    """SIPp's arguments for one call from the provider's trunk to the DID."""
    return f"-sf {scenario} -s 5215550002222 127.0.0.1:5060 -i 127.0.0.1 -p {port} -m 1 -timeout {timeout_s}s"


def media_ready(host, offset: int) -> str | None:
    """The id of the first call whose media is ready in the service's log after ``offset``."""
    found = re.search(r"call=([0-9.]+) media ready", log_since(host, offset, BRIDGE_LOG))
    return found.group(1) if found else None


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
    full_before = log_size(host)
    log_before = log_size(host, BRIDGE_LOG)
    old_pid = host.service("openai-inbound-calls").systemd_properties["MainPID"]
    sipp_detached(host, "killed", provider_call("provider_call_box_hangs_up.xml", port=5072, timeout_s=120))
    call_id = poll(lambda: media_ready(host, log_before), "the call's media", 60)
    host.check_output("systemctl kill --signal=SIGKILL openai-inbound-calls")

    restarted_at: float | None = None
    failover_at: float | None = None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and failover_at is None:
        if restarted_at is None:
            props = host.service("openai-inbound-calls").systemd_properties
            if props["ActiveState"] == "active" and props["MainPID"] not in (old_pid, "0"):
                restarted_at = time.monotonic()
        if "(service_restarted) - sent to the operator" in log_since(host, full_before):
            failover_at = time.monotonic()
            restarted_at = restarted_at or failover_at
        time.sleep(0.2)
    assert restarted_at is not None, "systemd did not restart openai-inbound-calls"
    assert failover_at is not None, log_since(host, full_before)[-3000:]
    print(f"failover {failover_at - restarted_at:.1f} s after the restart was seen")
    assert failover_at - restarted_at < 10

    log = log_since(host, log_before, BRIDGE_LOG)
    assert re.search(rf"call={re.escape(call_id)} recovered call: found in Stasis\(centralita,inbound,", log), log
    # The caller hears the notice, then reaches the operator context, which ends the call (SIPp sees the BYE).
    rc, output = sipp_result(host, "killed", 120)
    assert rc == 0, output
    asterisk_log = log_since(host, full_before)
    assert "centralita/asistente-no-disponible" in asterisk_log
    assert "Goto (centralita-operator,s,1)" in asterisk_log
    poll(lambda: nothing_left(host), "no channel or centralita bridge left", 30)
    record = ended_record(host, call_id)
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
    full_before = log_size(host)
    log_before = log_size(host, BRIDGE_LOG)
    sipp_detached(host, "first", provider_call("provider_call_speaking.xml", port=5073, timeout_s=60) + " -d 10000")
    first = poll(lambda: media_ready(host, log_before), "the first call's media", 60)
    sipp_detached(host, "over", provider_call("provider_call_box_hangs_up.xml", port=5074, timeout_s=60))
    poll(lambda: "(box_full) - sent to the operator" in log_since(host, full_before), "the refusal", 30)
    rc, output = sipp_result(host, "over", 60)
    assert rc == 0, output  # answered by the failover context, which hung up after the notice
    # It never reached the assistant: one call only in the service's log.
    assert set(re.findall(r"call=([0-9.]+) call started", log_since(host, log_before, BRIDGE_LOG))) == {first}
    # The first call talked on to its end.
    rc, output = sipp_result(host, "first", 60)
    assert rc == 0, output
    record = ended_record(host, first)
    assert record["outcome"] == "hung_up_by_caller"
    assert any(line["speaker"] == "assistant" for line in record["transcript"]), record
    poll(lambda: nothing_left(host), "no channel or centralita bridge left", 30)
