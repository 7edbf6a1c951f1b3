"""The ARI client against a real Asterisk: events, bridges, ExternalMedia RTP, cleanup, reconnect.

Runs where a Centralita box's Asterisk is reachable: inside the Molecule box (verify step) or
against the lab box from its host. Not part of the unit run: there is no Asterisk on the test host.
Configuration: CENTRALITA_ARI_URL (default http://127.0.0.1:8088), CENTRALITA_ARI_SECRET_FILE
(default /etc/centralita/ari-password) or CENTRALITA_ARI_PASSWORD, and CENTRALITA_BOX_EXEC: the prefix
that runs a command on the box (empty inside the box; "podman exec centralita-lab" from the lab's host).
"""

from __future__ import annotations

import contextlib
import os
import queue
import random
import shlex
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from centralita.media.rtp import FRAME_BYTES, RtpSender, parse
from centralita.telephony.ari import AriEndpoint, AriError, AriEvents, AriRest

APP = "centralita-itest"


@pytest.fixture(scope="module")
def endpoint() -> AriEndpoint:
    password = os.environ.get("CENTRALITA_ARI_PASSWORD")
    if not password:
        path = Path(os.environ.get("CENTRALITA_ARI_SECRET_FILE", "/etc/centralita/ari-password"))
        password = path.read_text().strip()
    url = os.environ.get("CENTRALITA_ARI_URL", "http://127.0.0.1:8088")
    return AriEndpoint(url=url, user="centralita", password=password, app=APP)


@pytest.fixture
def events(endpoint: AriEndpoint) -> Iterator[tuple[AriEvents, queue.Queue[dict[str, Any]]]]:
    received: queue.Queue[dict[str, Any]] = queue.Queue()
    client = AriEvents(endpoint, received.put, ping_interval=5, ping_timeout=2, min_backoff=0.2, max_backoff=1)
    client.start()
    assert client.wait_connected(10), "no ARI events connection"
    yield client, received
    client.stop()


def box_command(command: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command on the box (see CENTRALITA_BOX_EXEC)."""
    prefix = shlex.split(os.environ.get("CENTRALITA_BOX_EXEC", ""))
    return subprocess.run([*prefix, *shlex.split(command)], capture_output=True, text=True, check=check, timeout=60)


def wait_for(received: queue.Queue[dict[str, Any]], kind: str, timeout: float = 10, **match: str) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            event = received.get(timeout=left)
        except queue.Empty:
            break
        if event.get("type") == kind and all(event.get("channel", {}).get(k) == v for k, v in match.items()):
            return event
    raise AssertionError(f"no {kind} event within {timeout} s")


def test_wrong_password_is_reported_with_the_status(endpoint: AriEndpoint) -> None:
    bad = AriEndpoint(endpoint.url, endpoint.user, "wrong", endpoint.app)
    with pytest.raises(AriError) as err:
        AriRest(bad).list_bridges()
    assert err.value.status == 401
    assert "wrong" not in str(err.value)


def test_unreachable_ari_fails_within_the_timeout() -> None:
    rest = AriRest(AriEndpoint("http://127.0.0.1:9", "centralita", "x", APP), timeout=1)
    with pytest.raises(AriError) as err:
        rest.list_channels()
    assert err.value.status is None


def test_audio_flows_through_a_mixing_bridge_and_everything_is_released(endpoint, events) -> None:
    _client, received = events
    rest = AriRest(endpoint)
    # A Local channel whose other half runs the echo extension stands in for a caller.
    caller = rest.request("POST", "/channels", {"endpoint": "Local/6000@from-voip", "app": APP, "appArgs": "itest"})
    caller_id = caller["id"]
    wait_for(received, "StasisStart", id=caller_id)
    rest.answer(caller_id)

    rtp_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp_socket.bind(("127.0.0.1", 0))
    rtp_socket.settimeout(0.5)
    bridge_id = ""
    media_id = ""
    try:
        host, port = rtp_socket.getsockname()
        bridge_id = rest.create_bridge()
        media = rest.external_media(APP, f"{host}:{port}")
        media_id = media["id"]
        # The ExternalMedia channel enters the app too; a bridge must recognise and ignore it.
        wait_for(received, "StasisStart", id=media_id)
        rest.add_to_bridge(bridge_id, caller_id)
        rest.add_to_bridge(bridge_id, media_id)
        asterisk_rtp = (
            media["channelvars"]["UNICASTRTP_LOCAL_ADDRESS"],
            int(media["channelvars"]["UNICASTRTP_LOCAL_PORT"]),
        )

        sender = RtpSender(random.Random(7))
        tone = bytes((0x10 + i % 0x60) for i in range(FRAME_BYTES))  # non-silent μ-law
        echoed = 0
        for _ in range(100):  # two seconds of audio, paced loosely
            rtp_socket.sendto(sender.build(tone), asterisk_rtp)
            time.sleep(0.02)
            try:
                while True:
                    packet = parse(rtp_socket.recv(2048))
                    if packet and packet.payload_type == 0 and set(packet.payload) != {0xFF}:
                        echoed += 1
            except TimeoutError:
                pass
            except BlockingIOError:
                pass
            rtp_socket.settimeout(0.001)
        assert echoed > 20, f"only {echoed} non-silent RTP packets came back through the bridge"
    finally:
        rtp_socket.close()
        for channel in (caller_id, media_id):
            if channel:
                with contextlib.suppress(AriError):
                    rest.hangup(channel)
        if bridge_id:
            rest.destroy_bridge(bridge_id)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        leftover = [c for c in rest.list_channels() if c["id"] in (caller_id, media_id)]
        if not leftover and bridge_id not in [b["id"] for b in rest.list_bridges()]:
            break
        time.sleep(0.1)
    assert not [c for c in rest.list_channels() if c["id"] in (caller_id, media_id)]
    assert bridge_id not in [b["id"] for b in rest.list_bridges()]


def test_events_reconnect_after_asterisk_restarts(endpoint, events) -> None:
    client, _received = events
    box_command("systemctl restart asterisk")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and client.connections < 2:
        time.sleep(0.2)
    assert client.connections >= 2, "the events connection did not come back after the restart"
    assert client.connected
    # And the REST side works again.
    AriRest(endpoint).list_bridges()
