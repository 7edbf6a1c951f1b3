"""The fake Asterisk on its own, driven with bare HTTP, a bare WebSocket and raw UDP.

These pin the fake's side of ARI and RTP without the bridge's own clients (``AriRest``, ``AriEvents``,
``RtpReceiver``), so a bug in one cannot hide the same bug in the other. The dialer's tests
(test_dialer_ari.py) cover originate and subscriptions; the call's tests (test_call.py) cover the rest in use.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
import socket
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import websocket

from centralita_testing.fake_asterisk import FRAME_BYTES, SILENCE, FakeAsterisk, LegHooks, RtpLeg, parse_rtp

USER, PASSWORD = "centralita", "secreto"
APP = "centralita"


@pytest.fixture
def fake() -> Iterator[FakeAsterisk]:
    with FakeAsterisk(USER, PASSWORD) as running:
        yield running


def ari(fake: FakeAsterisk, method: str, path: str, password: str = PASSWORD, **params: str) -> tuple[int, Any]:
    url = f"{fake.url}/ari{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    request = urllib.request.Request(url, method=method)
    token = base64.b64encode(f"{USER}:{password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


class Events:
    """An app's events WebSocket, read with a timeout."""

    def __init__(self, fake: FakeAsterisk, app: str = APP) -> None:
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{fake.port}/ari/events?app={app}", header=[f"Authorization: Basic {token}"], timeout=5
        )
        assert fake.wait_until(lambda: app in fake.connected_apps())

    def next(self) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(self.ws.recv())
        return event

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def events(fake: FakeAsterisk) -> Iterator[Events]:
    connection = Events(fake)
    yield connection
    connection.close()


def rtp(sequence: int, payload: bytes, timestamp: int = 1000, marker: bool = False) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0), sequence, timestamp, 0x1234) + payload


def test_every_request_needs_the_credentials(fake: FakeAsterisk) -> None:
    assert ari(fake, "GET", "/channels", password="wrong") == (401, {"message": "Authentication required"})
    assert ari(fake, "GET", "/channels") == (200, [])
    assert [r.path for r in fake.requests_to("GET", "/ari/channels")] == ["/ari/channels", "/ari/channels"]


def test_a_caller_enters_the_app_and_hangs_up(fake: FakeAsterisk, events: Events) -> None:
    channel_id = fake.incoming_call(APP, ("inbound", "8005550100"), caller="5215550001111")
    start = events.next()
    assert (start["type"], start["args"], start["application"]) == ("StasisStart", ["inbound", "8005550100"], APP)
    assert start["channel"]["id"] == channel_id
    assert start["channel"]["caller"]["number"] == "5215550001111"
    assert ari(fake, "POST", f"/channels/{channel_id}/answer") == (204, None)
    assert events.next()["channel"]["state"] == "Up"
    fake.hang_up(channel_id, 16, "Normal Clearing")
    assert [events.next()["type"], events.next()["type"]] == ["StasisEnd", "ChannelDestroyed"]
    assert ari(fake, "GET", f"/channels/{channel_id}") == (404, {"message": "Channel not found"})


def test_continue_sends_the_channel_to_the_dialplan(fake: FakeAsterisk, events: Events) -> None:
    channel_id = fake.incoming_call(APP, ("inbound",))
    events.next()
    status, _ = ari(fake, "POST", f"/channels/{channel_id}/continue", context="centralita-operator", extension="s")
    assert status == 204
    assert events.next()["type"] == "StasisEnd"
    assert fake.channels[channel_id].continued == [("centralita-operator", "s", 1)]
    assert ari(fake, "GET", f"/channels/{channel_id}")[1]["dialplan"]["context"] == "centralita-operator"
    # Out of Stasis now: the app can no longer move it.
    assert ari(fake, "POST", f"/channels/{channel_id}/continue", context="x")[0] == 409
    assert ari(fake, "POST", "/channels/nope/continue", context="x")[0] == 404


def test_channel_variables(fake: FakeAsterisk, events: Events) -> None:
    channel_id = fake.incoming_call(APP)
    events.next()
    assert ari(fake, "GET", f"/channels/{channel_id}/variable", variable="X")[0] == 404
    assert ari(fake, "POST", f"/channels/{channel_id}/variable", variable="X", value="1")[0] == 204
    varset = events.next()
    assert (varset["type"], varset["variable"], varset["value"]) == ("ChannelVarset", "X", "1")
    assert ari(fake, "GET", f"/channels/{channel_id}/variable", variable="X") == (200, {"value": "1"})
    assert ari(fake, "POST", f"/channels/{channel_id}/variable", value="1")[0] == 400


def test_external_media_sends_rtp_once_bridged_and_records_what_it_hears(fake: FakeAsterisk) -> None:
    caller = fake.incoming_call(APP)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as bridge_side:
        bridge_side.bind(("127.0.0.1", 0))
        bridge_side.settimeout(5)
        host, port = bridge_side.getsockname()
        status, media = ari(
            fake, "POST", "/channels/externalMedia", app=APP, external_host=f"{host}:{port}", format="ulaw"
        )
        assert status == 200
        address = (media["channelvars"]["UNICASTRTP_LOCAL_ADDRESS"], int(media["channelvars"]["UNICASTRTP_LOCAL_PORT"]))
        status, bridge = ari(fake, "POST", "/bridges", type="mixing", name="centralita-x")
        assert (status, bridge["bridge_type"], bridge["name"]) == (200, "mixing", "centralita-x")
        bridge_side.settimeout(0.1)
        with pytest.raises(TimeoutError):
            bridge_side.recv(2048)  # not bridged yet: no media
        ari(fake, "POST", f"/bridges/{bridge['id']}/addChannel", channel=caller)
        ari(fake, "POST", f"/bridges/{bridge['id']}/addChannel", channel=media["id"])
        leg = fake.leg_of(caller)
        assert leg.address == address
        bridge_side.settimeout(5)
        words = bytes(range(256)) * 2  # 512 bytes: three frames and a padded fourth
        leg.say(words)
        received: list[bytes] = []
        while len(received) < 10:
            datagram, source = bridge_side.recvfrom(2048)
            assert source == address
            received.append(datagram)
        packets = [parse_rtp(datagram, 0.0) for datagram in received]
        assert all(p is not None and p.payload_type == 0 and len(p.payload) == FRAME_BYTES for p in packets)
        payloads = b"".join(p.payload for p in packets if p is not None)
        start = payloads.find(words[:FRAME_BYTES])
        assert start >= 0
        assert payloads[start : start + 4 * FRAME_BYTES] == words + SILENCE[: 4 * FRAME_BYTES - len(words)]
        assert payloads[:start] == SILENCE * (start // FRAME_BYTES)  # silence until the caller spoke
        sequences = [p.sequence for p in packets if p is not None]
        assert sequences == [(sequences[0] + n) & 0xFFFF for n in range(10)]
        # What the bridge sends to the leg's port is heard, with its arrival time.
        before = time.monotonic()
        bridge_side.sendto(rtp(7, b"\x01" * FRAME_BYTES, marker=True), address)
        [heard] = leg.wait_heard(lambda heard: len(heard) == 1)
        assert (heard.sequence, heard.marker, heard.payload) == (7, True, b"\x01" * FRAME_BYTES)
        assert before - 0.01 <= heard.arrival <= time.monotonic()
        assert leg.heard_audio() == b"\x01" * FRAME_BYTES
        # Hanging the media channel up frees its port.
        assert ari(fake, "DELETE", f"/channels/{media['id']}") == (204, None)
        assert media["id"] not in fake.bridges[bridge["id"]].channels
        assert ari(fake, "DELETE", f"/bridges/{bridge['id']}") == (204, None)
        assert ari(fake, "GET", "/bridges") == (200, [])

    def port_free() -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(address)
            except OSError:
                return False
            return True

    assert fake.wait_until(port_free)


def test_bridges_refuse_what_asterisk_refuses(fake: FakeAsterisk) -> None:
    caller = fake.incoming_call(APP)
    _, bridge = ari(fake, "POST", "/bridges", type="mixing")
    assert ari(fake, "POST", "/bridges/nope/addChannel", channel=caller)[0] == 404
    assert ari(fake, "POST", f"/bridges/{bridge['id']}/addChannel", channel="nope")[0] == 400
    ari(fake, "POST", f"/channels/{caller}/continue", context="x")
    assert ari(fake, "POST", f"/bridges/{bridge['id']}/addChannel", channel=caller)[0] == 422  # not in Stasis
    assert ari(fake, "DELETE", "/bridges/nope")[0] == 404
    assert ari(fake, "POST", "/channels/externalMedia", app=APP, format="ulaw")[0] == 400
    assert ari(fake, "GET", "/nothing")[0] == 404


def test_failures_and_slow_answers_on_demand(fake: FakeAsterisk, events: Events) -> None:
    channel_id = fake.incoming_call(APP)
    events.next()
    fake.fail("POST", "/ari/channels/*/answer", 500, "Internal Server Error")
    assert ari(fake, "POST", f"/channels/{channel_id}/answer") == (500, {"message": "Internal Server Error"})
    assert fake.channels[channel_id].state == "Ring"  # a failure does nothing
    assert ari(fake, "POST", f"/channels/{channel_id}/answer")[0] == 204  # only the next one failed
    events.next()
    fake.slow("POST", "/ari/channels/*/continue", 0.3)
    started = time.monotonic()
    assert ari(fake, "POST", f"/channels/{channel_id}/continue", context="x")[0] == 204
    assert time.monotonic() - started >= 0.3
    # The work was done at once: StasisEnd was sent before the late answer.
    assert events.next()["type"] == "StasisEnd"


@pytest.mark.parametrize("media_loop", [False, True], ids=["two-threads", "one-loop"])
def test_custom_leg_hooks_choose_what_legs_send_and_see_what_they_get(media_loop: bool) -> None:
    class Counting(LegHooks):
        def __init__(self) -> None:
            self.sent = 0
            self.got: list[tuple[int, bool]] = []

        def payload(self, leg: RtpLeg, now_ns: int) -> bytes:
            self.sent += 1
            return bytes([leg.index]) * FRAME_BYTES

        def received(self, leg: RtpLeg, datagram: bytes, arrival_ns: int, kernel_stamped: bool) -> None:
            self.got.append((len(datagram), kernel_stamped))

    hooks = Counting()
    with FakeAsterisk(USER, PASSWORD, hooks=hooks, hold_media=True, media_loop=media_loop) as fake:
        caller = fake.incoming_call(APP)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as bridge_side:
            bridge_side.bind(("127.0.0.1", 0))
            host, port = bridge_side.getsockname()
            _, media = ari(
                fake, "POST", "/channels/externalMedia", app=APP, external_host=f"{host}:{port}", format="ulaw"
            )
            _, bridge = ari(fake, "POST", "/bridges", type="mixing")
            ari(fake, "POST", f"/bridges/{bridge['id']}/addChannel", channel=caller)
            ari(fake, "POST", f"/bridges/{bridge['id']}/addChannel", channel=media["id"])
            leg = fake.leg_of(caller)
            bridge_side.settimeout(0.1)
            with pytest.raises(TimeoutError):
                bridge_side.recv(2048)  # held
            fake.release_media()
            bridge_side.settimeout(5)
            first = parse_rtp(bridge_side.recv(2048), 0.0)
            assert first is not None
            assert first.payload == bytes([leg.index]) * FRAME_BYTES
            second = parse_rtp(bridge_side.recv(2048), 0.0)  # the next 20 ms slot, the next RTP numbers
            assert second is not None
            assert (second.sequence - first.sequence) & 0xFFFF == 1
            assert (second.timestamp - first.timestamp) & 0xFFFFFFFF == FRAME_BYTES
            bridge_side.sendto(rtp(1, b"\x02" * 10), leg.address)
            bridge_side.sendto(rtp(2, b"\x03" * 10), leg.address)
            assert fake.wait_until(lambda: hooks.got == [(22, True), (22, True)])
    assert hooks.sent >= 1
    assert leg.heard == []  # the hooks took the packet instead


def test_the_legs_spread_their_phases_over_the_frame() -> None:
    legs = [RtpLeg(index, f"m{index}", ("127.0.0.1", 9), random.Random(index)) for index in range(50)]
    try:
        phases = sorted(leg.phase_ns for leg in legs)
        gaps = [later - earlier for earlier, later in itertools.pairwise(phases)]
        assert phases[0] >= 0
        assert phases[-1] < 20_000_000
        assert max(gaps) < 3 * 20_000_000 / 50  # no crowding: at most 3 times the even spacing
    finally:
        for leg in legs:
            leg.socket.close()


def test_stop_is_idempotent_and_frees_the_ports_even_unstarted() -> None:
    never_started = FakeAsterisk(USER, PASSWORD)
    never_started.stop()
    fake = FakeAsterisk(USER, PASSWORD).start()
    port = fake.port
    fake.stop()
    fake.stop()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # the HTTP port is free
