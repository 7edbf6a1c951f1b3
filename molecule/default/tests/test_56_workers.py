"""openai-inbound-calls with two workers (the scenario's bridge_workers: 2), live: one unit whose supervisor runs
both, each with its own Stasis app; a call on each; one worker killed (SIGKILL): only its caller goes to the
failover context, the other talks on to its own hang-up; new calls reach the assistant; the killed worker is back
and takes calls. A call placed while a worker is down (its supervisor held still) reaches the other worker.

SIPp plays the provider. Every wait polls what it asserts up to a generous deadline: the box is a shared, busy
machine.
"""

from __future__ import annotations

import json
import re

import pytest
from conftest import (
    BOX,
    BRIDGE_LOG,
    app_registered,
    ended_record,
    log_since,
    log_size,
    nothing_left,
    poll,
    sipp,
    sipp_detached,
    sipp_result,
)

testinfra_hosts = [f"podman://{BOX}"]

STATUS = "/run/centralita/openai-inbound-calls.json"
WORKERS = ("centralita", "centralita-2")
STAY_MS = 20000  # how long a caller stays after speaking: well within RTP_TIMEOUT (30 s) of silence


def status(host) -> dict:
    result = host.run(f"cat {STATUS}")
    return json.loads(result.stdout) if result.rc == 0 and result.stdout.strip() else {}


def workers(host) -> list[dict]:
    return list(status(host).get("workers") or [])


def all_connected(host) -> list[dict] | None:
    found = workers(host)
    ready = [w["name"] for w in found if w["running"] and w["ari_connected"]] == list(WORKERS)
    return found if ready and all(app_registered(host, app) for app in WORKERS) else None


def caller_in_background(host, name: str, caller: str, port: int, stay_ms: int) -> None:
    """One provider call from ``caller`` that speaks after the greeting and hangs up ``stay_ms`` later, detached
    (``sipp_result`` waits for it)."""
    arguments = (
        f"-sf caller_speaking.xml -key caller {caller} -s 8005550100 127.0.0.1:5060 -i 127.0.0.1 -p {port} -m 1 "
        f"-d {stay_ms} -timeout 150s"
    )
    sipp_detached(host, name, arguments)


def media_ready(host, offset: int, caller: str) -> tuple[str, str] | None:
    """(worker, call id) of the call from ``caller`` once its media is ready, from the log after ``offset``."""
    log = log_since(host, offset, BRIDGE_LOG)
    started = re.search(rf"call=([0-9.]+) call started: caller={caller}\b", log)
    if started is None:
        return None
    ready = re.search(rf"worker=(\S+) call={re.escape(started.group(1))} media ready", log)
    return (ready.group(1), started.group(1)) if ready else None


@pytest.fixture
def ready(host) -> list[dict]:
    found = poll(lambda: all_connected(host), "both workers running and connected to ARI", 90)
    poll(lambda: nothing_left(host), "a box with no call up", 60)
    return found


def test_one_unit_shows_its_supervisor_and_both_workers(host, ready):
    main_pid = host.service("openai-inbound-calls").systemd_properties["MainPID"]
    assert main_pid not in {str(worker["pid"]) for worker in ready}  # the supervisor is the unit's main process
    shown = host.run("systemctl status openai-inbound-calls --no-pager --full --lines 0").stdout
    for worker in ready:
        assert re.search(rf"\b{worker['pid']}\b.*openai-inbound-calls --worker \d", shown), shown
    assert len(re.findall(r"openai-inbound-calls --worker [12]\b", shown)) == 2, shown
    # Each worker is a child of the supervisor, running as the service user.
    for worker in ready:
        parent = host.check_output(f"ps -o ppid= -p {worker['pid']}").strip()
        assert parent == main_pid
        assert host.check_output(f"ps -o user= -p {worker['pid']}").strip() == "centralita"


def test_a_killed_worker_loses_only_its_call_and_is_back_for_new_ones(host, ready):
    offset = log_size(host, BRIDGE_LOG)
    full_offset = log_size(host)
    # The first call goes to the least busy worker (both idle: worker 1), the second to the other. Each caller
    # speaks after the greeting and hangs up 20 s after it began to: before its silence reaches RTP_TIMEOUT (30 s).
    caller_in_background(host, "survivor", "5215550005601", 5084, STAY_MS)
    first = poll(lambda: media_ready(host, offset, "5215550005601"), "the first call's media", 60)
    caller_in_background(host, "victim", "5215550005602", 5085, STAY_MS)
    second = poll(lambda: media_ready(host, offset, "5215550005602"), "the second call's media", 60)
    assert {first[0], second[0]} == set(WORKERS), (first, second)  # one call on each worker
    on_worker = {first[0]: first[1], second[0]: second[1]}
    survivor, victim = on_worker["centralita"], on_worker["centralita-2"]
    listed = poll(lambda: (s := status(host)) and s.get("active_calls") == 2 and s["calls"], "the live list", 30)
    assert {(call["call_id"], call["worker"]) for call in listed} == {
        (survivor, "centralita"),
        (victim, "centralita-2"),
    }

    killed_pid = ready[1]["pid"]
    host.check_output(f"kill -KILL {killed_pid}")
    poll(
        lambda: "(service_restarted) - sent to the operator" in log_since(host, full_offset),
        "the killed worker's caller in the failover context",
        60,
    )
    record = ended_record(host, victim)
    assert record["outcome"] == "interrupted"
    log = log_since(host, offset, BRIDGE_LOG)
    assert re.search(
        rf"worker=supervisor call=- worker centralita-2 \(pid {killed_pid}\) died \(killed by SIGKILL\)", log
    )
    assert f"worker=centralita-2 call={victim} recovered call: found in Stasis(centralita-2,inbound," in log

    # Worker 1's call was untouched: its caller talked on to their own hang-up, after the other caller had failed
    # over (SIPp succeeds only if the box never hangs up on it), and nothing of it was recovered or transferred.
    rc, output = sipp_result(host, "survivor", 120)
    assert rc == 0, output
    ended = ended_record(host, survivor)
    assert ended["outcome"] == "hung_up_by_caller"
    assert ended["ended_at"] > record["ended_at"]  # still up when the killed worker's caller was sent on
    log = log_since(host, offset, BRIDGE_LOG)
    assert f"call={survivor} recovered" not in log
    assert f"call={survivor} transferring" not in log
    sipp_result(host, "victim", 120)  # its SIPp ends too (the operator context hangs up)

    # The killed worker is back (a new process) and takes calls: with one call on worker 1, the next goes to it.
    back = poll(lambda: (w := all_connected(host)) and w[1]["pid"] != killed_pid and w, "worker 2 back", 60)
    assert back[1]["restarts"] >= 1
    assert back[0]["pid"] == ready[0]["pid"]  # worker 1 never stopped
    poll(lambda: nothing_left(host), "the first calls gone", 60)
    fresh_offset = log_size(host, BRIDGE_LOG)
    caller_in_background(host, "fresh", "5215550005603", 5086, STAY_MS)
    fresh = poll(lambda: media_ready(host, fresh_offset, "5215550005603"), "a new call's media", 60)
    assert fresh[0] == "centralita", fresh
    result = sipp(
        host, "caller_speaking.xml", "8005550100", port=5087, extra="-key caller 5215550005604 -d 2000", timeout_s=60
    )
    assert result.rc == 0, result.output
    again = poll(lambda: media_ready(host, fresh_offset, "5215550005604"), "the next call's media", 30)
    assert again[0] == "centralita-2", again
    rc, output = sipp_result(host, "fresh", 120)
    assert rc == 0, output
    poll(lambda: nothing_left(host), "no channel or centralita bridge left", 60)


def test_a_call_placed_while_a_worker_is_down_reaches_the_other_one(host, ready):
    """The second in which a killed worker is not back yet: a call the dialplan gives to it (the least busy) finds
    its Stasis app gone, goes on to the next worker round the ring, and reaches the assistant there; no caller
    hears the failover notice. The supervisor is stopped (SIGSTOP) for that second so the worker stays down until
    the call has been placed, and continued afterwards whatever happened."""
    offset = log_size(host, BRIDGE_LOG)
    full_offset = log_size(host)
    supervisor = host.service("openai-inbound-calls").systemd_properties["MainPID"]
    # Worker 1 carries a call, so the next call's least busy worker is worker 2.
    caller_in_background(host, "busy", "5215550005611", 5088, STAY_MS)
    busy = poll(lambda: media_ready(host, offset, "5215550005611"), "the first call's media", 60)
    assert busy[0] == "centralita", busy
    host.check_output(f"kill -STOP {supervisor}")
    try:
        host.check_output(f"kill -KILL {ready[1]['pid']}")
        poll(lambda: not app_registered(host, "centralita-2"), "worker 2's Stasis app gone from Asterisk", 30)
        result = sipp(
            host,
            "caller_speaking.xml",
            "8005550100",
            port=5089,
            extra="-key caller 5215550005612 -d 2000",
            timeout_s=60,
        )
    finally:
        host.check_output(f"kill -CONT {supervisor}")
    assert result.rc == 0, result.output
    taken = poll(lambda: media_ready(host, offset, "5215550005612"), "the call's media", 30)
    assert taken[0] == "centralita", taken
    full = log_since(host, full_offset)
    assert "Centralita: worker 2 is not connected - trying the next one" in full
    assert "sent to the operator" not in full
    # Worker 2 comes back once its supervisor runs again.
    back = poll(lambda: (w := all_connected(host)) and w[1]["pid"] != ready[1]["pid"] and w, "worker 2 back", 60)
    assert back[0]["pid"] == ready[0]["pid"]
    rc, output = sipp_result(host, "busy", 120)
    assert rc == 0, output
    poll(lambda: nothing_left(host), "no channel or centralita bridge left", 60)
