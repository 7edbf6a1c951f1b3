"""AriEvents while ARI is not answering: a box booting (the bridge up before Asterisk) or an Asterisk restart.

The service must wait quietly: one line saying it waits, no ERROR line per attempt (the operator's log and
`centralita doctor` count ERROR lines), one WARNING per quiet period if Asterisk stays away.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from functools import partial

import pytest
from polling import wait_for

from centralita.telephony.ari import AriEndpoint, AriEvents
from centralita_testing.fake_asterisk import FakeAsterisk

USER, PASSWORD = "centralita", "secreto"


def closed_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.DEBUG):
        yield caplog


def test_waiting_for_asterisk_at_boot_is_one_line_not_an_error_per_attempt(records: pytest.LogCaptureFixture) -> None:
    states: list[str] = []
    events = AriEvents(
        AriEndpoint(f"http://127.0.0.1:{closed_port()}", USER, PASSWORD, "centralita"),
        lambda _event: None,
        states.append,
        min_backoff=0.02,
        max_backoff=0.05,
        quiet_for=30.0,
    )
    events.start()
    try:
        # Dozens of refused attempts.
        time.sleep(1.5)
    finally:
        events.stop()
    lines = [(record.levelname, record.getMessage()) for record in records.records]
    waiting = [message for level, message in lines if "waiting for ARI at http://127.0.0.1:" in message]
    assert len(waiting) == 1, lines
    assert "refused" in waiting[0].lower(), waiting  # the reason, e.g. [Errno 111] Connection refused
    assert [line for line in lines if line[0] in ("WARNING", "ERROR", "CRITICAL")] == []
    assert not any("goodbye" in message for _level, message in lines)
    assert states == []  # never connected, so no "disconnected" either


def test_an_asterisk_that_stays_away_gets_one_warning_per_quiet_period(records: pytest.LogCaptureFixture) -> None:
    events = AriEvents(
        AriEndpoint(f"http://127.0.0.1:{closed_port()}", USER, PASSWORD, "centralita"),
        lambda _event: None,
        min_backoff=0.02,
        max_backoff=0.05,
        quiet_for=0.5,
    )
    events.start()
    try:
        time.sleep(1.3)
    finally:
        events.stop()
    warnings = [record.getMessage() for record in records.records if record.levelno >= logging.WARNING]
    assert 1 <= len(warnings) <= 3, warnings
    assert all("still unreachable after" in message and "still retrying" in message for message in warnings)
    assert not [record for record in records.records if record.levelno >= logging.ERROR]


def test_a_lost_connection_is_one_warning_then_quiet_retries(records: pytest.LogCaptureFixture) -> None:
    states: list[str] = []
    ari = FakeAsterisk(USER, PASSWORD).start()
    events = AriEvents(
        AriEndpoint(ari.url, USER, PASSWORD, "centralita"),
        lambda _event: None,
        states.append,
        ping_interval=1.0,
        ping_timeout=0.3,
        min_backoff=0.02,
        max_backoff=0.05,
        quiet_for=30.0,
    )
    events.start()
    try:
        assert events.wait_connected(5)
        ari.stop()  # Asterisk goes away: its port refuses from now on
        assert wait_for(lambda: "disconnected" in states)
        time.sleep(1.0)  # many refused attempts
    finally:
        events.stop()
    lost = [r.getMessage() for r in records.records if "ARI events connection lost" in r.getMessage()]
    assert len(lost) == 1, lost
    noisy = [r.getMessage() for r in records.records if r.levelno >= logging.WARNING and r.getMessage() not in lost]
    assert noisy == []
    assert states == ["connected", "disconnected"]


def one_connection_stopped_after_an_event(ari: FakeAsterisk, app: str) -> None:
    """Connect ``app``, let one event through, stop; ping_timeout (30 s) outlasts stop's own timeout (20 s)."""
    received: list[dict[str, object]] = []
    events = AriEvents(
        AriEndpoint(ari.url, USER, PASSWORD, app), received.append, ping_interval=60.0, ping_timeout=30.0
    )
    events.start()
    try:
        assert events.wait_connected(10)
        assert ari.wait_until(lambda: app in ari.connected_apps(), 10)
        ari.incoming_call(app, ("inbound", "8005550100"), caller="5215550001111")
        assert wait_for(lambda: bool(received), "an event", timeout=10)
    finally:
        events.stop(timeout=20.0)


def app_gone(ari: FakeAsterisk, app: str) -> bool:
    return app not in ari.connected_apps()


def test_stop_closes_cleanly_and_its_thread_has_ended_when_it_returns() -> None:
    # websocket-client's reader waits in select() for up to ping_timeout; a close made from the stopping thread
    # could shut the socket under it without waking it, and stop() then waited that long (one stop in two, after an
    # event): with a ping_timeout longer than stop's timeout, the thread was left running. Several rounds, each
    # after an event, as a service stops after its calls.
    with FakeAsterisk(USER, PASSWORD) as ari:
        for round_ in range(6):
            app = f"centralita-{round_}"
            one_connection_stopped_after_an_event(ari, app)
            assert not [thread for thread in threading.enumerate() if thread.name == f"ari-events-{app}"], round_
            # The fake marks a socket closed only on the client's close frame (a dropped connection stays listed),
            # once its own reader has read it: on a busy machine that can be a moment after stop() returns.
            assert ari.wait_until(partial(app_gone, ari, app), 10), round_
