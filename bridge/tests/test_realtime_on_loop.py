"""The Realtime WebSocket on the media loop (``realtime/on_loop.py``, MEDIA_ENGINE=loop), against the fake Realtime
server over real sockets (TLS included, with a certificate made for the test).

What is asserted is what the peer and the connection saw (events, close codes, counters), never how fast the
machine is; where a wrong implementation would block or hang, the wait has a generous deadline and fails.
"""

from __future__ import annotations

import base64
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from certs import self_signed
from test_realtime import Events, fds_back_to, open_fds, update

from centralita.config.bridge import Secret
from centralita.media.loop import MediaLoop
from centralita.realtime import on_loop
from centralita.realtime.on_loop import LoopRealtimeConnection
from centralita_testing.fake_realtime import FakeRealtimeServer, Faults

DEADLINE = 20.0  # seconds: a shared, busy machine


@pytest.fixture
def loop() -> Iterator[MediaLoop]:
    media_loop = MediaLoop(name="media-loop-test")
    yield media_loop
    media_loop.close()


def on_loop_connection(
    server: FakeRealtimeServer, loop: MediaLoop, events: Events, **kwargs: Any
) -> LoopRealtimeConnection:
    return LoopRealtimeConnection(
        server.url(),
        Secret(server.api_key),
        loop=loop,
        on_event=events,
        on_close=events.closed,
        ping_interval=kwargs.pop("ping_interval", 5.0),
        ping_timeout=kwargs.pop("ping_timeout", 2.0),
        **kwargs,
    )


def wait_until(condition: Any, what: str, timeout: float = DEADLINE) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.01)


def loop_threads() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name.startswith("realtime-")]


def test_events_arrive_and_the_audio_goes_out_on_the_loop_without_a_thread_per_connection(loop: MediaLoop) -> None:
    events = Events()
    with FakeRealtimeServer(echo=True) as server:
        loop.call_soon(lambda: None)  # the loop's own thread and sockets, before counting
        before = open_fds()
        connection = on_loop_connection(server, loop, events)
        connection.connect(update())
        assert loop_threads() == []  # no receive thread: the loop reads
        audio = bytes(range(256)) * 5  # 1280 bytes: 8 frames of 20 ms in one append
        connection.send_audio(audio)
        record = server.wait_for_session()
        wait_until(lambda: record.audio == audio, "the server to receive the appended audio")
        connection.close()
        assert connection.close_info is not None
        assert connection.close_info.clean
        wait_until(lambda: record.closed, "the server to see the close")
        assert record.close_code == 1000
        assert fds_back_to(before)  # the socket is closed and out of the loop


def test_a_connection_that_stops_reading_fills_its_own_buffer_and_no_other(loop: MediaLoop) -> None:
    """One server connection stops reading: its sends never block the sender or the loop, the oldest audio is
    dropped (counted), and the other connection on the same loop keeps its round trips and its ticks."""
    stalled_events, healthy_events = Events(), Events()
    with FakeRealtimeServer(echo=True) as server:
        server.faults = Faults(stop_reading_after_ms=0)
        stalled = on_loop_connection(server, loop, stalled_events, ping_interval=30.0, ping_timeout=20.0)
        stalled.connect(update())
        server.faults = Faults()
        healthy = on_loop_connection(server, loop, healthy_events)
        healthy.connect(update())
        healthy_record = server.wait_for_session(1)
        ticks: list[float] = []

        def tick(now: float) -> float:
            ticks.append(now)
            return now + 0.02

        loop.call_at(loop.clock(), tick)

        frame = bytes(160)
        sent_in = time.monotonic()
        sends = 0
        # Until the kernel's buffers and the connection's own are full and audio is being dropped.
        while stalled.stats.audio_frames_dropped == 0 or stalled.stats.write_waits == 0:
            stalled.send_audio(frame * 5)
            sends += 1
            assert time.monotonic() - sent_in < DEADLINE, "the stalled connection never filled"
            if sends % 50 == 0:
                time.sleep(0.001)  # let the loop write what the socket takes
        assert stalled.queued_bytes <= on_loop.SEND_BUFFER_BYTES
        ticks_then = len(ticks)
        for n in range(20):  # the stalled one keeps being fed while the healthy one works
            stalled.send_audio(frame * 5)
            healthy.send_audio(bytes([n]) * 160)
        wait_until(lambda: len(healthy_record.audio) == 20 * 160, "the healthy connection's audio to arrive")
        assert healthy_record.audio == b"".join(bytes([n]) * 160 for n in range(20))
        wait_until(lambda: len(ticks) >= ticks_then + 5, "the loop's timer to keep running")
        assert stalled.is_open  # the stall alone does not end it before the keepalive says so
        healthy.close()
        stalled.close(timeout=0.2)
        assert stalled.close_info is not None
        assert stalled.close_info.by_client


def test_pings_are_answered_and_the_connection_lives_on(loop: MediaLoop) -> None:
    events = Events()
    with FakeRealtimeServer() as server:
        connection = on_loop_connection(server, loop, events, ping_interval=0.5, ping_timeout=0.4)
        connection.connect(update())
        started = time.monotonic()
        # Several pings, each answered within its 0.4 s (a margin a busy CI machine's stalls stay inside), or
        # the connection would have ended.
        time.sleep(2.6)
        assert connection._last_ping >= started + 1.5  # the pings were sent: at least three after the first
        assert connection.is_open
        assert events.closes == []
        connection.close()


def test_a_missing_pong_ends_the_session(loop: MediaLoop) -> None:
    events = Events()
    with FakeRealtimeServer() as server:
        server.faults = Faults(stop_reading_after_ms=0)
        connection = on_loop_connection(server, loop, events, ping_interval=0.3, ping_timeout=0.2)
        connection.connect(update())
        close = events.wait_closed(DEADLINE)
        assert close.code is None
        assert not close.by_client
        assert close.error == "no pong within 0.2 s"
        assert not connection.is_open


def test_the_server_closing_is_answered_and_reported(loop: MediaLoop) -> None:
    events = Events()
    with FakeRealtimeServer() as server:
        server.faults = Faults(close_after_s=0.2)
        connection = on_loop_connection(server, loop, events)
        connection.connect(update())
        close = events.wait_closed(DEADLINE)
        assert close.code == 1001
        assert not close.by_client
        assert events.of("error")[0]["error"]["code"] == "session_expired"
        record = server.wait_for_session()
        wait_until(lambda: record.closed, "the server to finish its close")


def test_a_server_that_never_answers_the_close_is_cut_after_the_timeout(loop: MediaLoop) -> None:
    events = Events()
    with FakeRealtimeServer() as server:
        server.faults = Faults(stop_reading_after_ms=0)
        connection = on_loop_connection(server, loop, events, ping_interval=30.0, ping_timeout=20.0)
        connection.connect(update())
        time.sleep(0.1)
        began = time.monotonic()
        connection.close(timeout=0.3)
        assert time.monotonic() - began < DEADLINE
        close = connection.close_info
        assert close is not None
        assert close.by_client
        assert close.error == "no close frame from the server in time"


def test_tls_records_already_decrypted_are_read_without_waiting_for_epoll(
    loop: MediaLoop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over wss://, with reads smaller than a TLS record: the rest of the record sits decrypted in the TLS
    buffer, where epoll cannot see it; the connection must read it on without the socket becoming readable."""
    cert, key = self_signed(tmp_path, "realtime")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    monkeypatch.setenv("WEBSOCKET_CLIENT_CA_BUNDLE", str(cert))
    monkeypatch.setattr(on_loop, "_READ_BYTES", 512)
    events = Events()
    with FakeRealtimeServer(echo=True, tls=context) as server:
        assert server.url().startswith("wss://")
        # No ping within the test: its pong would make the socket readable and hide a missing drain.
        connection = on_loop_connection(server, loop, events, ping_interval=120.0, ping_timeout=60.0)
        connection.connect(update())
        connection.send({"type": "response.create"})
        events.wait_for("response.created", timeout=DEADLINE)
        audio = bytes(range(256)) * 40  # one append of 10 kB: its echo is one delta, one TLS record of ~14 kB
        connection.send_audio(audio)
        delta = events.wait_for("response.output_audio.delta", timeout=DEADLINE)[0]
        echoed = base64.b64decode(delta["delta"])
        assert echoed == audio
        connection.close()
        assert connection.close_info is not None
        assert connection.close_info.clean
