"""Two boxes behind the SIP front, with live SIPp calls from the provider's container.

The tests run in this order and each leaves the cluster as it found it: both boxes up, no call in progress.
Box limits (inventory): box1 takes 2 calls at once, box2 6; the proxy knows them as each box's maxload.
"""

from __future__ import annotations

import pytest
from conftest import (
    BOX_IPS,
    PROVIDER_IP,
    PROXY_IP,
    SIPP_DIR,
    STRANGER_IP,
    active_calls,
    calls_taken,
    container,
    dispatcher_flags,
    log_offsets,
    log_since,
    podman,
    sipp_calls,
    sipp_command,
    statistics,
    wait_for,
)

# The probing interval of the scenario's inventory is 2 s, 2 failed probes mark a box down: a generous deadline.
PROBING_DEADLINE_S = 30


def no_calls_anywhere(boxes) -> bool:
    return all(active_calls(box) == 0 for box in boxes.values())


@pytest.fixture(autouse=True)
def quiet_cluster(proxy, boxes):
    """Every test starts with both boxes up in the proxy's view and no call in progress."""
    wait_for(lambda: no_calls_anywhere(boxes), "no call left on either box", 60)
    wait_for(
        lambda: set(dispatcher_flags(proxy).values()) == {"AP"} and len(dispatcher_flags(proxy)) == 2,
        "both boxes active in kamcmd dispatcher.list",
        PROBING_DEADLINE_S,
    )


def test_the_proxy_runs_the_checked_configuration_with_both_boxes(proxy):
    assert proxy.service("kamailio").is_running
    assert proxy.service("kamailio").is_enabled
    assert proxy.run("kamailio -c -f /etc/kamailio/kamailio.cfg").rc == 0
    assert set(dispatcher_flags(proxy)) == set(BOX_IPS.values())
    cfg = proxy.file("/etc/kamailio/kamailio.cfg")
    assert cfg.user == "root"
    assert cfg.group == "kamailio"
    assert cfg.mode == 0o640


def test_the_boxes_trust_the_proxy_not_the_provider(boxes):
    for box in boxes.values():
        identify = box.check_output("asterisk -rx 'pjsip show identify provider-identify'")
        assert f"{PROXY_IP}/32" in identify
        assert PROVIDER_IP not in identify


def test_twenty_calls_are_spread_over_both_boxes(proxy, provider, boxes):
    offsets = log_offsets(boxes)
    before = statistics(proxy)
    result = sipp_calls(provider, 20, limit=4, rate=10, hold_ms=1500)
    assert result.successful == 20, result.output
    taken = calls_taken(boxes, offsets)
    assert sum(taken.values()) == 20, taken
    for name, count in taken.items():
        assert count >= 7, f"{name} took {count} of 20 calls: {taken}"
    assert statistics(proxy)["calls_to_boxes"] - before.get("calls_to_boxes", 0) == 20


def test_a_full_box_answers_503_and_the_call_goes_to_the_other_box(proxy, provider, boxes):
    """box1 takes 2 calls at once. With 2 calls up there, the proxy re-reads its list (dispatcher.reload, as
    when the inventory changes), which forgets how many calls it counted on each box: the next call goes to
    box1 again, which refuses it with 503, and the proxy gives it to box2."""
    hold = provider.run(
        f"nohup sh -c {sipp_command(4, limit=4, rate=20, hold_ms=20000, port=5072)!r} > /tmp/hold.log 2>&1 &"
    )
    assert hold.rc == 0
    wait_for(lambda: active_calls(boxes["box1"]) == 2, "box1 at its limit of 2 calls", 30)
    wait_for(lambda: active_calls(boxes["box2"]) == 2, "the other 2 calls up on box2", 30)
    proxy.check_output("kamcmd dispatcher.reload")

    offsets = log_offsets(boxes)
    result = sipp_calls(provider, 2, limit=1, hold_ms=500)
    assert result.successful == 2, result.output
    box1_log = log_since(boxes["box1"], offsets["box1"])
    assert "Centralita: box full (2 calls)" in box1_log
    assert "refused with 503" in box1_log
    assert calls_taken(boxes, offsets) == {"box1": 0, "box2": 2}
    wait_for(lambda: "Successful call" in provider.run("cat /tmp/hold.log").stdout, "the 4 held calls to end", 60)
    assert "Successful call" in provider.check_output("cat /tmp/hold.log")


def test_a_stopped_box_gets_no_new_calls_and_the_other_keeps_its_calls(proxy, provider, boxes):
    # Four long calls: two on each box.
    provider.run("rm -f /tmp/long.log")
    provider.check_output(
        f"nohup sh -c {sipp_command(4, limit=4, rate=20, hold_ms=25000, port=5074)!r} > /tmp/long.log 2>&1 &"
    )
    wait_for(lambda: active_calls(boxes["box1"]) == 2 and active_calls(boxes["box2"]) == 2, "2 calls on each box")

    boxes["box1"].check_output("systemctl stop asterisk")
    try:
        # Calls placed at once still reach box2 (box1 does not answer: the proxy tries box2), and once the
        # probes mark box1 down, the proxy does not even try it.
        offsets = log_offsets({"box2": boxes["box2"]})
        result = sipp_calls(provider, 2, limit=1, hold_ms=300, port=5076)
        assert result.successful == 2, result.output
        wait_for(lambda: dispatcher_flags(proxy)[BOX_IPS["box1"]].startswith("I"), "box1 marked down by probing")
        result = sipp_calls(provider, 6, limit=3, rate=10, hold_ms=300, port=5076)
        assert result.successful == 6, result.output
        assert calls_taken({"box2": boxes["box2"]}, offsets)["box2"] == 8
        # The calls up on box2 all along were not touched: its 2 held calls end normally, box1's 2 are lost.
        wait_for(lambda: "Successful call" in provider.run("cat /tmp/long.log").stdout, "the long calls to end", 60)
        long_calls = provider.check_output("cat /tmp/long.log")
        successful = [line for line in long_calls.splitlines() if line.strip().startswith("Successful call")]
        failed = [line for line in long_calls.splitlines() if line.strip().startswith("Failed call")]
        assert successful[-1].split("|")[-1].strip() == "2", long_calls
        assert failed[-1].split("|")[-1].strip() == "2", long_calls
    finally:
        boxes["box1"].run("systemctl start asterisk")

    # Back: probing marks it up and it takes calls again.
    wait_for(lambda: dispatcher_flags(proxy)[BOX_IPS["box1"]] == "AP", "box1 active again", PROBING_DEADLINE_S)
    offsets = log_offsets(boxes)
    result = sipp_calls(provider, 6, limit=3, rate=10, hold_ms=1000, port=5076)
    assert result.successful == 6, result.output
    assert calls_taken(boxes, offsets)["box1"] >= 1


def test_no_box_up_gives_the_provider_503(proxy, provider, boxes):
    for box in boxes.values():
        box.check_output("systemctl stop asterisk")
    try:
        wait_for(
            lambda: all(flag.startswith("I") for flag in dispatcher_flags(proxy).values()),
            "both boxes marked down",
            PROBING_DEADLINE_S,
        )
        before = statistics(proxy).get("no_box_available", 0)
        result = provider.run(
            f"cd {SIPP_DIR} && sipp -sf call_via_proxy.xml -s 6000 {PROXY_IP}:5060 -i {PROVIDER_IP} "
            "-p 5078 -m 1 -timeout 20s -nostdin -trace_msg -message_file /tmp/nobox.log 2>&1; cat /tmp/nobox.log"
        )
        assert "SIP/2.0 503 No Centralita Box Available" in result.stdout
        assert statistics(proxy)["no_box_available"] > before
    finally:
        for box in boxes.values():
            box.run("systemctl start asterisk")


@pytest.fixture
def stranger_address():
    """A second address on the provider's container: a host on the network that is not the provider."""
    added = podman(
        "exec", "--privileged", container("provider"), "ip", "addr", "add", f"{STRANGER_IP}/24", "dev", "eth0"
    )
    assert added.returncode == 0 or "already assigned" in added.stderr, added.stderr
    yield STRANGER_IP
    podman("exec", "--privileged", container("provider"), "ip", "addr", "del", f"{STRANGER_IP}/24", "dev", "eth0")


def test_a_stranger_gets_403_at_the_proxy_and_never_reaches_a_box(proxy, provider, boxes, stranger_address):
    offsets = log_offsets(boxes)
    before = statistics(proxy)
    result = provider.run(
        f"cd {SIPP_DIR} && sipp -sf stranger_call.xml -s 6000 {PROXY_IP}:5060 -i {stranger_address} -p 5080 "
        "-m 1 -timeout 15s -nostdin 2>&1"
    )
    # The scenario succeeds only on 403 Forbidden.
    assert result.rc == 0, result.stdout
    after = statistics(proxy)
    assert after["refused_requests"] == before.get("refused_requests", 0) + 1
    assert after.get("calls_to_boxes", 0) == before.get("calls_to_boxes", 0)
    assert calls_taken(boxes, offsets) == {"box1": 0, "box2": 0}
    assert "refused with 403: not the provider's address" in proxy.check_output(
        "journalctl -u kamailio --no-pager -n 200"
    )
    assert stranger_address in proxy.check_output("journalctl -u kamailio --no-pager -n 200")


FLOOD = r"""
import socket, sys, time, uuid
proxy, count = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[3], 5090))
s.settimeout(3)
for i in range(count):
    cid = uuid.uuid4().hex
    s.sendto((f"OPTIONS sip:6000@{proxy}:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {sys.argv[3]}:5090;branch=z9hG4bK{cid}\r\n"
              f"From: <sip:flood@{sys.argv[3]}>;tag={i}\r\nTo: <sip:6000@{proxy}>\r\nCall-ID: {cid}\r\n"
              f"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode(), (proxy, 5060))
codes = []
try:
    while len(codes) < count:
        codes.append(s.recv(4096).split(b"\r\n", 1)[0].decode())
except socket.timeout:
    pass
for line in codes:
    print(line)
"""


def test_a_flood_from_the_provider_is_limited(proxy, provider):
    before = statistics(proxy).get("flood_limited", 0)
    provider.check_output(f"cat > /tmp/flood.py <<'EOF'\n{FLOOD}\nEOF")
    replies = provider.check_output(f"python3 /tmp/flood.py {PROXY_IP} 200 {PROVIDER_IP}").splitlines()
    limited = [line for line in replies if line == "SIP/2.0 503 Rate Limited"]
    served = [line for line in replies if line.startswith("SIP/2.0 405")]
    assert limited, replies[:5]
    assert served, replies[:5]
    assert len(served) < 200
    assert statistics(proxy)["flood_limited"] >= before + len(limited)
