"""Inbound calls through the real Asterisk when things go wrong, and the media path measured at the caller.

The Realtime server (the shipped fake) refuses, drops, errors, expires a session or ignores audio/pcmu; the
caller is a Local channel into from-voip played by the test through its own ExternalMedia leg, as in
test_inbound_live.py (same configuration). Each failing call must end with the caller hearing the Spanish
notice and reaching the operator context, leave no bridge or channel behind, and leave other calls alone.

The box's own faults, with the service in this process: Asterisk restarted with a call up, the records
database locked by another process mid-call or made immutable (``chattr +i``) mid-call, and a real SIP caller
(SIPp, provider_call_falls_silent.xml) whose audio stops, given up by the no-caller-audio watchdog.

The watchdogs run with their thresholds shortened for their test only, through the service's own settings
(RTP_TIMEOUT=3, REPLY_TIMEOUT=2, MAX_CALL_SECONDS=8): each takes seconds, not the shipped minutes.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import logging
import math
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_ari_live import box_command, wait_for
from test_ari_live import endpoint as endpoint  # the same ARI credentials fixture
from test_inbound_live import CALLER_APP, GREETING, CallerLeg, running_service
from test_inbound_live import fake as fake  # the fake Realtime server fixture
from test_inbound_live import service as service  # the bridge service fixture

from centralita.calls.service import InboundService
from centralita.media.clips import Clips
from centralita.media.rtp import FRAME_BYTES
from centralita.storage.records import CallRecords
from centralita.telephony.ari import AriEndpoint, AriError, AriEvents, AriRest
from centralita.tools.call_control import builtin_tools
from centralita.tools.registry import Tool, ToolContext, ToolResult
from centralita_testing.fake_realtime import _ULAW_TABLE, AudioTurn, FakeRealtimeServer, Faults, ToolCallTurn, Turn

# Two seconds of the greeting as the caller's words, then a second of silence so the VAD hears them end.
CALLER_SPEECH = GREETING[: 8000 * 2] + b"\xff" * 8000

# The failover notice (roles/asterisk/files/sounds/asistente-no-disponible.ulaw) is 6.5 s long.
NOTICE_SECONDS = 6.5


def speech_frames(audio: bytes) -> int:
    """How many 20 ms frames of ``audio`` carry sound (silence is a handful of μ-law codes near zero)."""
    return sum(
        1 for i in range(0, len(audio) - FRAME_BYTES + 1, FRAME_BYTES) if len(set(audio[i : i + FRAME_BYTES])) > 4
    )


@dataclass
class Caller:
    local_id: str
    leg: CallerLeg
    call_id: str


@pytest.fixture
def callers(endpoint: AriEndpoint, service: tuple[InboundService, CallRecords]) -> Iterator[Any]:
    """Places calls into from-voip; hangs up whatever is left at the end."""
    with placing_calls(endpoint, service[1]) as place:
        yield place


@contextlib.contextmanager
def placing_calls(endpoint: AriEndpoint, records: CallRecords) -> Iterator[Any]:
    """``place(svc, number)`` puts a call into from-voip for the service ``svc`` (whose records are ``records``);
    whatever is left is hung up at the end."""
    rest = AriRest(endpoint)
    events: queue.Queue[dict[str, Any]] = queue.Queue()
    app = AriEvents(AriEndpoint(endpoint.url, endpoint.user, endpoint.password, CALLER_APP), events.put)
    app.start()
    assert app.wait_connected(10)
    placed: list[Caller] = []

    def seen(svc: InboundService) -> set[str]:
        """The calls the service holds or has recorded: a call that fails at once may come and go between
        two looks at the service, but its record stays."""
        return set(svc._calls) | {call["call_id"] for call in records.recent_calls(100)}

    def place(svc: InboundService, number: str = "5215550001111") -> Caller:
        before = seen(svc)
        # /n: no Local channel optimisation, which would swap the box's channel out of its bridge mid-call.
        local = rest.request(
            "POST", "/channels", {"endpoint": "Local/5215550002222@from-voip/n", "app": CALLER_APP, "callerId": number}
        )
        wait_for(events, "StasisStart", id=local["id"], timeout=15)
        leg = CallerLeg(rest, local["id"], events)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (seen(svc) - before):
            time.sleep(0.05)
        new = seen(svc) - before
        call_id = new.pop() if new else ""
        caller = Caller(local["id"], leg, call_id)
        placed.append(caller)
        return caller

    yield place
    for caller in placed:
        caller.leg.close()
        with contextlib.suppress(AriError):  # already gone is the usual case
            rest.hangup(caller.local_id)
    app.stop()


def wait_record(records: CallRecords, call_id: str, timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = records.get_call(call_id)
        if record is not None and record.get("ended_at"):
            return record
        time.sleep(0.1)
    raise AssertionError(f"call {call_id} did not end within {timeout} s: {records.get_call(call_id)}")


def wait_heard(leg: CallerLeg, frames: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and speech_frames(bytes(leg.heard)) < frames:
        time.sleep(0.1)
    return speech_frames(bytes(leg.heard))


def full_log_since(offset: int) -> str:
    return box_command(f"tail -c +{offset + 1} /var/log/asterisk/full").stdout


def full_log_size() -> int:
    return int(box_command("stat -c %s /var/log/asterisk/full").stdout)


def assert_released(rest: AriRest, svc: InboundService, call_id: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and call_id in svc._calls:
        time.sleep(0.1)
    assert call_id not in svc._calls
    assert not [b for b in rest.list_bridges() if b.get("name") == f"centralita-{call_id}"]
    assert not [c for c in rest.list_channels() if c["id"] == f"{call_id}-media"]


@pytest.mark.parametrize(
    ("faults", "reason", "detail"),
    [
        (Faults(refuse=True), "realtime_unreachable", "Realtime unavailable"),
        (Faults(drop_after_deltas=5), "realtime_dropped", "Realtime closed"),
        (Faults(close_after_s=2.0), "realtime_session_expired", "1001"),
        (Faults(error_after_ms=1500), "realtime_error", "server_error"),
    ],
    ids=["refused", "dropped", "session-expired", "error-event"],
)
def test_a_failing_realtime_session_hands_the_caller_to_the_operator_with_a_notice(
    endpoint: AriEndpoint,
    fake: FakeRealtimeServer,
    service: tuple[InboundService, CallRecords],
    callers: Any,
    faults: Faults,
    reason: str,
    detail: str,
) -> None:
    svc, records = service
    rest = AriRest(endpoint)
    fake.faults = faults
    offset = full_log_size()
    caller = callers(svc)
    assert caller.call_id
    record = wait_record(records, caller.call_id)
    assert record["outcome"] == "realtime_failed"
    assert detail in record["detail"]
    # The caller is not left in dead air: the notice plays to its end, then the operator context runs.
    if faults.refuse:
        # (Measured at the test's caller leg only when no assistant audio came first: after a mid-call switch
        # Asterisk sometimes stops relaying the Local channel's media to this test's own ExternalMedia leg,
        # an artefact of the test's Local-channel caller; the dialplan log below proves the playback.
        # The session is opened while the phone rings, so this call is first answered by the failover context:
        # the test's leg is only set up then, and misses the notice's first seconds on a busy box: a fresh-clone
        # run heard 81 frames of the 325. At least one second of it must reach the leg; the dialplan log below
        # proves the notice played to its end before the operator context ran.)
        heard = wait_heard(caller.leg, 50, timeout=15)
        assert heard >= 50, heard
    log = full_log_since(offset)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and "centralita-operator" not in log:  # after the notice
        time.sleep(0.5)
        log = full_log_since(offset)
    assert f"({reason}) - sent to the operator" in log
    assert "Playing 'centralita/asistente-no-disponible.ulaw' (language 'es')" in log
    assert "Goto (centralita-operator,s,1)" in log  # reached only once the notice has played
    assert_released(rest, svc, caller.call_id)


def test_a_dropped_session_leaves_the_other_calls_alone(
    endpoint: AriEndpoint, fake: FakeRealtimeServer, service: tuple[InboundService, CallRecords], callers: Any
) -> None:
    svc, records = service
    healthy = callers(svc)
    first = fake.wait_for_session(0, timeout=10)
    assert wait_heard(healthy.leg, 20, timeout=10) >= 20
    fake.faults = Faults(drop_after_deltas=3)  # only connections opened from now on
    failing = callers(svc)
    assert wait_record(records, failing.call_id)["outcome"] == "realtime_failed"
    # The healthy call still has its session and still hears the assistant.
    assert healthy.call_id in svc._calls
    assert not first.closed
    heard_before = len(healthy.leg.heard)
    healthy.leg.say(CALLER_SPEECH)  # the caller speaks; the assistant answers again
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(healthy.leg.heard) < heard_before + 8000:
        time.sleep(0.1)
    assert len(healthy.leg.heard) >= heard_before + 8000
    AriRest(endpoint).hangup(healthy.local_id)
    assert wait_record(records, healthy.call_id)["outcome"] == "hung_up_by_caller"


def test_a_24_khz_pcm_reply_is_resampled_and_the_caller_hears_it(
    fake: FakeRealtimeServer,
    service: tuple[InboundService, CallRecords],
    callers: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    svc, records = service
    fake.faults = Faults(ignore_output_format=True)
    with caplog.at_level(logging.WARNING):
        caller = callers(svc)
        session = fake.wait_for_session(0, timeout=10)
        # The wait and the assertion share one whole number of frames: waiting for int(x) and asserting >= x
        # failed whenever the poll saw exactly int(x) frames.
        needed = math.ceil(len(GREETING) / FRAME_BYTES * 0.4)
        heard = wait_heard(caller.leg, needed, timeout=15)
    updated = session.server_events("session.updated")
    assert updated[-1]["session"]["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert heard >= needed
    # What the caller heard is the greeting itself (the fake sent it as 24 kHz PCM; the bridge brought it back
    # to 8 kHz μ-law): the same waveform, not noise or a wrongly converted stream.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len(caller.leg.heard) < len(GREETING) * 0.9:
        time.sleep(0.1)
    correlation, level = _best_alignment(GREETING, bytes(caller.leg.heard))
    assert correlation >= 0.9, correlation
    assert 0.3 <= level <= 1.1, level
    assert caller.call_id in svc._calls  # not failed over: the call goes on
    assert any("resampling to 8 kHz" in record.getMessage() for record in caplog.records)
    record = records.get_call(caller.call_id)
    assert record is not None
    assert record["ended_at"] is None


def _best_alignment(sent: bytes, heard: bytes) -> tuple[float, float]:
    """Correlation and level ratio of a 1 s stretch of ``sent`` at its best-matching place in ``heard``."""
    table = np.array(_ULAW_TABLE, dtype=np.float64)
    reference = table[np.frombuffer(sent, dtype=np.uint8)][len(sent) // 4 :][:8000]
    received = table[np.frombuffer(heard, dtype=np.uint8)]
    scores = np.correlate(received, reference, "valid")
    at = int(np.argmax(np.abs(scores)))
    window = received[at : at + len(reference)]
    correlation = float(scores[at] / np.sqrt(np.sum(reference**2) * np.sum(window**2)))
    return correlation, float(np.sqrt(np.mean(window**2) / np.mean(reference**2)))


def test_the_reply_reaches_the_caller_whole_and_in_order(
    fake: FakeRealtimeServer, service: tuple[InboundService, CallRecords], callers: Any
) -> None:
    svc, _records = service
    caller = callers(svc)
    session = fake.wait_for_session(0, timeout=10)
    deadline = time.monotonic() + 15
    done: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not done:
        done = session.server_events("response.output_audio.done")
        time.sleep(0.1)
    assert done, "the fake never finished its reply"
    sent = b"".join(base64.b64decode(e["delta"]) for e in session.server_events("response.output_audio.delta"))
    # The last frames may still be on their way through Asterisk: wait until as many have arrived as were sent
    # (give or take the edges), or until nothing more arrives for a second.
    deadline = time.monotonic() + 15
    last_count, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = len(caller.leg.heard)
        if count // FRAME_BYTES >= len(sent) // FRAME_BYTES - 10:
            break
        if count != last_count:
            last_count, last_change = count, time.monotonic()
        elif time.monotonic() - last_change > 1.0:
            break
        time.sleep(0.05)
    heard = bytes(caller.leg.heard)
    # The caller gets the same waveform, in order, as 20 ms packets (as many as the reply has frames, give or
    # take the ones at the edges). Asterisk's path from the box's bridge to this test's leg (two bridges and a
    # Local channel) halves the level (-6 dB), so the check is the waveform's correlation, not the bytes.
    correlation, level = _best_alignment(sent, heard)
    assert correlation >= 0.98
    assert 0.4 <= level <= 1.1
    assert abs(len(heard) // FRAME_BYTES - len(sent) // FRAME_BYTES) <= 10


def test_barge_in_silences_the_assistant_within_100_ms(
    fake: FakeRealtimeServer, service: tuple[InboundService, CallRecords], callers: Any
) -> None:
    svc, _records = service
    caller = callers(svc)
    session = fake.wait_for_session(0, timeout=10)
    # Arrival time of every frame the caller hears, and whether it is loud, until the fake says the caller
    # stopped: what follows may be the assistant's answer to what the caller said, which is no barge-in failure.
    arrivals: list[tuple[float, bool]] = []
    stop = threading.Event()

    def watch() -> None:
        seen = 0
        while not stop.is_set():
            heard = bytes(caller.leg.heard)
            now = time.monotonic()
            if session.server_events("input_audio_buffer.speech_stopped"):
                return  # these frames may have come after the caller stopped (checked after reading them)
            while seen + FRAME_BYTES <= len(heard):
                arrivals.append((now, len(set(heard[seen : seen + FRAME_BYTES])) > 4))
                seen += FRAME_BYTES
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert wait_heard(caller.leg, 50, timeout=10) >= 50  # a second into the greeting
    speaking = threading.Thread(target=caller.leg.say, args=(CALLER_SPEECH,), daemon=True)
    speaking.start()
    started_at = None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and started_at is None:
        if session.server_events("input_audio_buffer.speech_started"):
            started_at = time.monotonic()
        time.sleep(0.002)
    assert started_at is not None, "the fake's VAD never heard the caller"
    stopped_deadline = time.monotonic() + 5
    while time.monotonic() < stopped_deadline and not session.server_events("input_audio_buffer.speech_stopped"):
        time.sleep(0.01)
    stop.set()
    watcher.join(2)
    speaking.join(5)
    late = [t - started_at for t, loud in arrivals if loud and t > started_at + 0.1]
    # Nothing the assistant said reaches the caller later than 100 ms after the caller started talking
    # (until the caller stops and the assistant may answer again).
    stopped = session.server_events("input_audio_buffer.speech_stopped")
    assert stopped
    assert late == [], f"{len(late)} frames of assistant audio after the barge-in, the last {max(late):.3f} s late"
    truncates = session.client_events("conversation.item.truncate")
    assert len(truncates) == 1
    assert 0 < truncates[0]["audio_end_ms"] <= len(GREETING) / 8


def registered_again(rest: AriRest, svc: InboundService, connections_before: int) -> bool:
    """The service's events connection is a new one (not the one Asterisk's restart closed) and Asterisk lists
    the Stasis app again, so the dialplan's calls reach it."""
    connected = svc._events.connections > connections_before and svc._events.connected
    return connected and app_registered(rest, "centralita")


def app_registered(rest: AriRest, app: str) -> bool:
    try:
        rest.request("GET", f"/applications/{app}")
    except AriError:
        return False
    return True


def poll(check: Any, what: str, timeout: float, every: float = 0.1) -> Any:
    """``check()`` until it gives something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)
    return value


def nothing_of_ours(rest: AriRest, call_ids: set[str]) -> bool:
    """No channel or bridge of the Stasis app, no ExternalMedia channel or centralita bridge of these calls."""
    app = rest.request("GET", "/applications/centralita")
    channels = {c["id"] for c in rest.list_channels()}
    bridges = {b.get("name", "") for b in rest.list_bridges()}
    return (
        not app["channel_ids"]
        and not app["bridge_ids"]
        and not channels & ({f"{call_id}-media" for call_id in call_ids} | call_ids)
        and not bridges & {f"centralita-{call_id}" for call_id in call_ids}
    )


def test_asterisk_restarted_with_a_call_up_ends_and_records_it_then_the_next_call_is_answered(
    endpoint: AriEndpoint, fake: FakeRealtimeServer, service: tuple[InboundService, CallRecords], callers: Any
) -> None:
    """``systemctl restart asterisk`` with a call up: the service reconnects, ends the call Asterisk dropped
    (recorded), leaves nothing in Asterisk, and the assistant answers the next call."""
    svc, records = service
    rest = AriRest(endpoint)
    dropped = callers(svc)
    assert dropped.call_id
    assert wait_heard(dropped.leg, 20, timeout=15) >= 20  # the assistant is talking
    connections_before = svc._events.connections
    restarted_at = time.monotonic()
    box_command("systemctl restart asterisk")
    poll(lambda: registered_again(rest, svc, connections_before), "the service's app registered again", 60)
    reconnected_at = time.monotonic()
    poll(lambda: app_registered(rest, CALLER_APP), "the test's caller app registered again", 60)
    record = wait_record(records, dropped.call_id, timeout=30)
    ended_at = time.monotonic()
    # Asterisk hangs its channels up as it stops: the service records the hang-up when the events of it reach it
    # before the connection closes, and otherwise its reconciliation after the reconnection finds the channel gone.
    assert record["outcome"] in ("hung_up_by_caller", "channel_gone"), record
    assert record["answered_at"]
    poll(lambda: dropped.call_id not in svc._calls, "the dropped call released by the service", 15)
    poll(lambda: nothing_of_ours(rest, {dropped.call_id}), "nothing of the service left in Asterisk", 15)
    print(
        f"asterisk restart: reconnected {reconnected_at - restarted_at:.1f} s after the restart command, "
        f"the dropped call recorded ({record['outcome']}) {ended_at - restarted_at:.1f} s after it"
    )
    # A new call is answered by the assistant, who greets it.
    caller = callers(svc)
    assert caller.call_id
    assert wait_heard(caller.leg, 50, timeout=15) >= 50
    answered = records.get_call(caller.call_id)
    assert answered is not None
    assert answered["answered_at"]
    assert answered["ended_at"] is None


# Holds an exclusive lock on the records database, as another program (a backup, an operator's sqlite3 shell)
# would: prints "locked" once it holds it, releases it after argv[2] seconds.
_LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""
LOCK_SECONDS = 8.0


def test_a_database_locked_by_another_process_mid_call_stops_no_audio_and_the_records_resume(
    fake: FakeRealtimeServer, service: tuple[InboundService, CallRecords], callers: Any
) -> None:
    svc, records = service
    caller = callers(svc)
    assert caller.call_id
    fake.wait_for_session(0, timeout=10)
    assert wait_heard(caller.leg, 10, timeout=15) >= 10  # the greeting has started
    before = records.get_call(caller.call_id)
    assert before is not None
    assert before["answered_at"]
    # Every change in what the leg has heard, with its time.
    arrivals: list[tuple[float, int]] = []
    stop = threading.Event()

    def watch() -> None:
        seen = 0
        while not stop.is_set():
            heard = len(caller.leg.heard)
            if heard != seen:
                arrivals.append((time.monotonic(), heard))
                seen = heard
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    locker = subprocess.Popen(
        [sys.executable, "-c", _LOCKER, str(svc._settings.db_path), str(LOCK_SECONDS)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert locker.stdout is not None
        assert locker.stdout.readline().strip() == "locked"
        locked_at = time.monotonic()
        most_queued = 0
        while locker.poll() is None:
            most_queued = max(most_queued, svc._queued.stats().queued)
            time.sleep(0.05)
        released_at = time.monotonic()
    finally:
        if locker.poll() is None:
            locker.kill()
        locker.wait(10)
    stop.set()
    watcher.join(2)
    assert locker.returncode == 0
    # The lock held the call's writes (the greeting's transcript and usage) in the writer's queue...
    assert most_queued > 0
    # ...and the caller heard the greeting on, at the pace it was sent, while the database was locked.
    during = [(t, n) for t, n in arrivals if locked_at <= t <= released_at]
    assert during, "no audio reached the caller while the database was locked"
    greeting_heard = [t for t, n in during if n >= len(GREETING) - 20 * FRAME_BYTES]
    assert greeting_heard, f"the greeting was not heard whole before the lock ended: {during[-1][1]} bytes"
    times = [locked_at] + [t for t, _ in during if t <= greeting_heard[0]]
    gap = max(b - a for a, b in itertools.pairwise(times))
    print(f"database locked {released_at - locked_at:.1f} s; longest pause in the caller's audio {gap:.2f} s")
    assert gap < 0.5
    # Once the lock is gone the queued writes are made: nothing lost, the transcript there, the call goes on.
    poll(lambda: svc._queued.stats().queued == 0, "the writer's queue to empty", 30)
    assert svc._queued.stats().lost == 0
    record = records.get_call(caller.call_id)
    assert record is not None
    assert ("assistant", "Hola, soy el asistente.") in [(t["speaker"], t["text"]) for t in record["transcript"]]
    assert caller.call_id in svc._calls
    caller.leg.rest.hangup(caller.local_id)
    assert wait_record(records, caller.call_id)["outcome"] == "hung_up_by_caller"


SIPP_DIR = Path(os.environ.get("CENTRALITA_SIPP_DIR", "/opt/centralita-test/sipp"))
RTP_TIMEOUT = 3.0
# cliente_sin_internet.wav, the caller's only words before its line falls silent.
CALLER_SPEECH_SECONDS = 7.0


@pytest.fixture
def short_rtp_timeout(
    endpoint: AriEndpoint, fake: FakeRealtimeServer, tmp_path: Path
) -> Iterator[tuple[InboundService, CallRecords]]:
    """The service with RTP_TIMEOUT shortened for this test only (the shipped default is 30 s)."""
    with running_service(endpoint, fake, tmp_path, RTP_TIMEOUT=f"{RTP_TIMEOUT:g}") as running:
        yield running


def test_a_caller_whose_audio_stops_is_given_up_by_the_watchdog_and_reaches_the_operator(
    endpoint: AriEndpoint, short_rtp_timeout: tuple[InboundService, CallRecords]
) -> None:
    """A real SIP call (SIPp) speaks for 7 s and then sends no more RTP: the no-caller-audio watchdog ends the
    call (``no_caller_audio``, recorded) and the caller hears the notice and reaches the operator context."""
    svc, records = short_rtp_timeout
    offset = full_log_size()
    before = {call["call_id"] for call in records.recent_calls(100)}
    started_at = time.monotonic()
    command = "sipp -sf provider_call_falls_silent.xml -s 5215550002222 127.0.0.1:5060 -i 127.0.0.1 -p 5079 -m 1"
    sipp = subprocess.Popen(
        [*command.split(), "-timeout", "90s", "-nostdin"],
        cwd=SIPP_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        call_id = poll(
            lambda: ({c["call_id"] for c in records.recent_calls(100)} - before or {""}).pop(), "the call", 30
        )
        record = wait_record(records, call_id, timeout=60)
        given_up_at = time.monotonic()
        output, _ = sipp.communicate(timeout=60)
    finally:
        if sipp.poll() is None:
            sipp.kill()
            sipp.wait(10)
    assert record["outcome"] == "no_caller_audio", record
    assert f"no audio from Asterisk for {RTP_TIMEOUT:g} s" in record["detail"]
    # Given up once the caller's audio had stopped, not before: RTP came and was seen while the caller spoke.
    assert given_up_at - started_at >= CALLER_SPEECH_SECONDS + RTP_TIMEOUT - 1, given_up_at - started_at
    print(f"no-caller-audio watchdog: call given up {given_up_at - started_at:.1f} s after it was placed")
    # The notice plays, then the operator context runs and ends the call (SIPp sees the BYE and exits 0).
    assert sipp.returncode == 0, output
    log = full_log_since(offset)
    assert "(no_caller_audio) - sent to the operator" in log
    assert "Playing 'centralita/asistente-no-disponible.ulaw' (language 'es')" in log
    assert "Goto (centralita-operator,s,1)" in log
    assert_released(AriRest(endpoint), svc, call_id)


# --- The watchdogs that need the model or the clock, with their thresholds shortened for these tests only ---


class Arrivals:
    """When the caller's leg heard each change in how much it has heard: ``(time.monotonic(), bytes)`` pairs,
    sampled every 5 ms by a thread of its own until ``stop()``."""

    def __init__(self, leg: CallerLeg) -> None:
        self.leg = leg
        self.points: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        seen = 0
        while not self._stop.is_set():
            heard = len(self.leg.heard)
            if heard != seen:
                self.points.append((time.monotonic(), heard))
                seen = heard
            time.sleep(0.005)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def time_of(self, offset: int) -> float:
        """When the leg had heard ``offset`` bytes (the first look that saw them)."""
        return next(t for t, n in self.points if n >= offset)

    def longest_pause(self, start: float, end: float) -> float:
        """The longest time without a new frame between ``start`` and ``end`` (both ends count)."""
        times = [start] + [t for t, _ in self.points if start <= t <= end] + [end]
        return max(b - a for a, b in itertools.pairwise(times))


def clip_found_at(clip: bytes, heard: bytes, threshold: float = 0.8) -> list[int]:
    """Where in ``heard`` (byte offsets of the clip's start) a recording of ``clip`` was heard: the places where a
    half-second stretch from inside the clip correlates with what was heard above ``threshold`` (Asterisk's path
    to the test's leg changes the level, not the waveform). Matches closer than the clip's length are one."""
    table = np.array(_ULAW_TABLE, dtype=np.float64)
    start = min(4000, len(clip) // 4)
    reference = table[np.frombuffer(clip, dtype=np.uint8)][start : start + 4000]
    received = table[np.frombuffer(heard, dtype=np.uint8)]
    if len(received) < len(reference):
        return []
    scores = np.correlate(received, reference, "valid")
    energy = np.concatenate(([0.0], np.cumsum(received**2)))
    windows = energy[len(reference) :] - energy[: -len(reference)]
    normalised = scores / np.sqrt(np.sum(reference**2) * np.maximum(windows, 1e-9))
    found: list[int] = []
    for at in np.flatnonzero(normalised >= threshold):
        if not found or at - (found[-1] + start) >= len(clip):
            found.append(int(at) - start)
    return found


REPLY_TIMEOUT = 2.0
SHORT_GREETING = GREETING[: 8000 * 2]


def test_a_model_that_goes_silent_after_the_caller_speaks_gets_one_filler_then_the_caller_reaches_the_operator(
    endpoint: AriEndpoint, tmp_path: Path
) -> None:
    """The Realtime server greets, then starts its reply to the caller's words and never sends it (REPLY_TIMEOUT
    shortened to 2 s for this test): the caller hears "un momento, por favor" once, then the notice and the
    operator context; the call is recorded ``no_reply``."""
    clips = Clips.load()
    faults = Faults(silent_after_responses=1)  # the greeting, then nothing
    with (
        FakeRealtimeServer(script=[AudioTurn(SHORT_GREETING, "Hola.")], faults=faults, pace=1.0) as server,
        running_service(endpoint, server, tmp_path, REPLY_TIMEOUT=f"{REPLY_TIMEOUT:g}") as (svc, records),
        placing_calls(endpoint, records) as place,
    ):
        offset = full_log_size()
        caller = place(svc)
        assert caller.call_id
        session = server.wait_for_session(0, timeout=10)
        arrivals = Arrivals(caller.leg)
        try:
            poll(lambda: session.server_events("response.output_audio.done"), "the greeting sent whole", 15)
            assert wait_heard(caller.leg, 50, timeout=10) >= 50  # a second of the greeting reached the caller
            # The caller speaks; the moment the server hears them stop is when the reply is due.
            speaking = threading.Thread(target=caller.leg.say, args=(CALLER_SPEECH,), daemon=True)
            speaking.start()
            stopped = session.server_events
            poll(lambda: stopped("input_audio_buffer.speech_stopped"), "the caller's words heard", 10, every=0.02)
            stopped_at = time.monotonic()
            speaking.join(5)
            record = wait_record(records, caller.call_id, timeout=30)
            given_up_at = time.monotonic()
            # The notice's first second reaches the leg too, or the leg is gone with the caller's channel.
            log = full_log_since(offset)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and "centralita-operator" not in log:  # after the notice
                time.sleep(0.5)
                log = full_log_since(offset)
        finally:
            arrivals.stop()
        assert record["outcome"] == "no_reply", record
        assert record["detail"] == f"no reply from the model for {REPLY_TIMEOUT:g} s after the filler"
        # The caller heard the filler once (the reply the fake started never came).
        heard = bytes(caller.leg.heard)
        fillers = clip_found_at(clips.filler, heard)
        assert len(fillers) == 1, fillers
        filler_heard_at = arrivals.time_of(fillers[0] + len(clips.filler) // 2)
        # Not before REPLY_TIMEOUT (the filler's middle is a second into it), given up after as long again.
        assert filler_heard_at - stopped_at >= REPLY_TIMEOUT, filler_heard_at - stopped_at
        assert given_up_at - stopped_at >= 2 * REPLY_TIMEOUT - 0.2, given_up_at - stopped_at
        assert svc.stats.snapshot()["watchdogs"] == {"filler": 1, "no_reply": 1}
        assert "(realtime_no_reply) - sent to the operator" in log
        assert "Playing 'centralita/asistente-no-disponible.ulaw' (language 'es')" in log
        assert "Goto (centralita-operator,s,1)" in log
        print(
            f"reply watchdog (REPLY_TIMEOUT={REPLY_TIMEOUT:g} s): the filler heard at the caller's leg "
            f"{filler_heard_at - stopped_at:.1f} s after the caller stopped speaking (its middle), the call given up "
            f"{given_up_at - stopped_at:.1f} s after it"
        )
        assert_released(AriRest(endpoint), svc, caller.call_id)


MAX_CALL_SECONDS = 8.0


def test_a_call_that_reaches_its_maximum_length_is_warned_then_transferred_to_the_operator(
    endpoint: AriEndpoint, tmp_path: Path
) -> None:
    """MAX_CALL_SECONDS shortened to 8 s for this test (the warning comes half-way when the limit is under two
    minutes): the caller hears the recorded warning, then the call goes to the operator context (``time_limit``)."""
    clips = Clips.load()
    with (
        FakeRealtimeServer(script=[AudioTurn(GREETING[:8000], "Hola.")], pace=1.0) as server,
        running_service(
            endpoint, server, tmp_path, MAX_CALL_SECONDS=f"{MAX_CALL_SECONDS:g}", ON_CALL_LIMIT="transfer"
        ) as (svc, records),
        placing_calls(endpoint, records) as place,
    ):
        offset = full_log_size()
        placed_at = time.monotonic()
        caller = place(svc)
        assert caller.call_id
        arrivals = Arrivals(caller.leg)
        try:
            record = wait_record(records, caller.call_id, timeout=MAX_CALL_SECONDS + 20)
            limited_at = time.monotonic()
        finally:
            arrivals.stop()
        assert (record["outcome"], record["detail"]) == (
            "time_limit",
            f"the call reached its maximum length of {MAX_CALL_SECONDS:g} s",
        )
        heard = bytes(caller.leg.heard)
        warnings = clip_found_at(clips.warning_transfer, heard)
        assert len(warnings) == 1, warnings
        warned_at = arrivals.time_of(warnings[0])
        # Warned half-way, transferred at the limit (counted from the call's start, a moment after placing it).
        assert MAX_CALL_SECONDS / 2 - 0.5 <= warned_at - placed_at < MAX_CALL_SECONDS, warned_at - placed_at
        assert limited_at - placed_at >= MAX_CALL_SECONDS, limited_at - placed_at
        assert svc.stats.snapshot()["watchdogs"] == {"time_warning": 1, "time_limit": 1}
        log = full_log_since(offset)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and "Centralita: transfer to operator" not in log:
            time.sleep(0.5)
            log = full_log_since(offset)
        assert "Centralita: transfer to operator" in log
        assert "centralita-unavailable" not in log  # a transfer to the operator, not a failover
        print(
            f"call-length watchdog (MAX_CALL_SECONDS={MAX_CALL_SECONDS:g} s): the warning began at the caller's leg "
            f"{warned_at - placed_at:.1f} s after the call was placed, the call recorded time_limit and sent to the "
            f"operator {limited_at - placed_at:.1f} s after it"
        )
        assert_released(AriRest(endpoint), svc, caller.call_id)


# --- The records database made unwritable mid-call ----------------------------------------------------------


def balance_tool(ran: list[str]) -> Tool:
    def look_up(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        ran.append(arguments["cuenta"])
        return ToolResult({"ok": True, "saldo": "350.00"})

    return Tool(
        name="consultar_saldo",
        description="Consulta el saldo.",
        parameters={
            "type": "object",
            "properties": {"cuenta": {"type": "string"}},
            "required": ["cuenta"],
            "additionalProperties": False,
        },
        handler=look_up,
    )


def set_immutable(paths: list[Path], on: bool) -> None:
    """``chattr +i`` / ``-i``: not even root may write the file, through a descriptor opened before either (a
    chmod changes nothing for the service's open WAL connection, and nothing at all for root)."""
    result = subprocess.run(
        ["chattr", "+i" if on else "-i", *map(str, paths)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"chattr failed (the box needs CAP_LINUX_IMMUTABLE): {result.stderr}"


# A directory on a disk filesystem (ext4 or xfs), where chattr +i stops writes through descriptors already open:
# the test box's tmpfs and overlay root check the flag only when a file is opened. The Molecule scenario mounts
# one here (molecule/default/create.yml).
RECORDS_DISK = Path(os.environ.get("CENTRALITA_RECORDS_DISK", "/var/lib/centralita-itest-disk"))
# A small filesystem of its own (the scenario mounts a 16 MiB tmpfs here) that the full-disk test fills.
FULL_DISK = Path(os.environ.get("CENTRALITA_FULL_DISK", "/var/lib/centralita-itest-full"))


class Unwritable:
    """How the records database is made unwritable mid-call, and writable again."""

    def __init__(self, how: str, db: Path) -> None:
        self.how, self.db = how, db
        self._filler = db.with_name("filler")

    def files(self) -> list[Path]:
        return [self.db, self.db.with_name(self.db.name + "-wal")]

    def start(self) -> None:
        if self.how == "immutable":
            set_immutable(self.files(), True)
            return
        # The disk full: every free block taken by one file, in shrinking chunks, down to the last one.
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for size in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
                chunk = b"\0" * size
                with contextlib.suppress(OSError):  # ENOSPC: the next, smaller chunk
                    while os.write(fd, chunk) == size:
                        pass
            with contextlib.suppress(OSError):
                os.fsync(fd)
        finally:
            os.close(fd)
        probe = os.statvfs(self.db.parent)
        assert probe.f_bavail * probe.f_frsize < 4096, f"the disk is not full: {probe.f_bavail} blocks left"

    def stop(self) -> None:
        if self.how == "immutable":
            set_immutable(self.files(), False)
        else:
            self._filler.unlink(missing_ok=True)


@pytest.fixture(params=["immutable", "full"])
def unwritable(request: pytest.FixtureRequest) -> Iterator[Unwritable]:
    """A records database path on the disk directory for ``immutable`` (chattr +i), on the small filesystem for
    ``full``; every flag cleared and everything removed afterwards."""
    root = RECORDS_DISK if request.param == "immutable" else FULL_DISK
    assert root.is_dir(), f"{root} is missing: mount a directory of a disk filesystem there (a small one for full)"
    directory = Path(tempfile.mkdtemp(prefix="records-", dir=root))
    way = Unwritable(request.param, directory / "centralita.db")
    try:
        yield way
    finally:
        files = [p for p in directory.iterdir()]
        subprocess.run(["chattr", "-i", *map(str, files)], capture_output=True, check=False)
        shutil.rmtree(directory, ignore_errors=True)


IMMUTABLE_REPLY = GREETING[: 8000 * 3]


def test_a_database_made_unwritable_mid_call_stops_no_audio_nor_tools_and_the_records_resume(
    endpoint: AriEndpoint, tmp_path: Path, unwritable: Unwritable
) -> None:
    """The records database and its WAL made immutable (``chattr +i``), or the disk under them filled, mid-call:
    the greeting goes on at its pace, the caller's question runs a tool whose output reaches the model and whose
    answer is heard, the writes wait in the writer's queue (none lost: the outage is shorter than the writer's
    60 s), and once the files are writable again everything queued is written."""
    disk_db = unwritable.db
    ran: list[str] = []
    tools = builtin_tools()
    tools.register(balance_tool(ran))
    script: list[Turn] = [
        AudioTurn(GREETING, "Hola, soy el asistente."),
        ToolCallTurn("consultar_saldo", '{"cuenta": "C001"}'),
        AudioTurn(IMMUTABLE_REPLY, "Su saldo es de trescientos cincuenta."),
    ]
    with (
        FakeRealtimeServer(script=script, pace=1.0) as server,
        running_service(endpoint, server, tmp_path, tools=tools, DB_PATH=str(disk_db)) as (svc, records),
        placing_calls(endpoint, records) as place,
    ):
        caller = place(svc)
        assert caller.call_id
        session = server.wait_for_session(0, timeout=10)
        assert wait_heard(caller.leg, 10, timeout=15) >= 10  # the greeting has started
        poll(lambda: (found := records.get_call(caller.call_id)) and found["answered_at"], "the answer's record", 10)
        assert unwritable.files()[1].exists()  # the service's open WAL connection
        arrivals = Arrivals(caller.leg)
        unwritable.start()
        try:
            unwritable_at = time.monotonic()
            # The greeting's end writes its transcript: the write fails, waits in the queue, is retried.
            poll(lambda: svc._queued.stats().failing, "the writer to see its writes fail", 15)
            whole = len(GREETING) - 20 * FRAME_BYTES
            poll(lambda: len(caller.leg.heard) >= whole, "the greeting heard whole", 15)
            greeting_heard_at = arrivals.time_of(whole)
            greeting_pause = arrivals.longest_pause(unwritable_at, greeting_heard_at)
            # The caller asks; the tool runs, its output reaches the model, and its answer reaches the caller.
            before_reply = len(caller.leg.heard)
            caller.leg.say(CALLER_SPEECH)
            outputs = poll(lambda: session.client_events("conversation.item.create"), "the tool's output", 15)
            assert json.loads(outputs[0]["item"]["output"]) == {"ok": True, "saldo": "350.00"}
            assert ran == ["C001"]
            reply_frames = int(len(IMMUTABLE_REPLY) / FRAME_BYTES * 0.8)
            poll(
                lambda: speech_frames(bytes(caller.leg.heard[before_reply:])) >= reply_frames,
                "the tool's answer heard",
                20,
            )
            reply_heard_at = time.monotonic()
            reply_started_at = arrivals.time_of(before_reply + FRAME_BYTES)
            reply_pause = arrivals.longest_pause(reply_started_at, reply_heard_at)
            during = svc._queued.stats()
            assert during.failing
            assert during.queued > 0
            assert during.lost == 0
            assert records.get_call(caller.call_id)["tool_calls"] == []  # not written: the files are unwritable
            if unwritable.how == "full":
                assert "full" in during.last_error, during.last_error  # SQLite's "database or disk is full"
        finally:
            unwritable.stop()
            arrivals.stop()
        writable_at = time.monotonic()
        print(
            f"database {unwritable.how} {writable_at - unwritable_at:.1f} s ({during.last_error}); "
            f"{during.queued} writes queued, {during.lost} lost; longest pause in the caller's audio: "
            f"{greeting_pause:.2f} s in the greeting, {reply_pause:.2f} s in the tool's answer"
        )
        assert greeting_pause < 0.5
        assert reply_pause < 0.5
        # Writable again: what waited is written, in order, nothing lost; the call goes on.
        poll(lambda: svc._queued.stats().queued == 0 and not svc._queued.stats().failing, "the queue to empty", 30)
        resumed_at = time.monotonic()
        assert svc._queued.stats().lost == 0
        record = records.get_call(caller.call_id)
        assert record is not None
        assert [call["name"] for call in record["tool_calls"]] == ["consultar_saldo"]
        spoken = [(t["speaker"], t["text"]) for t in record["transcript"]]
        assert ("assistant", "Hola, soy el asistente.") in spoken
        assert ("assistant", "Su saldo es de trescientos cincuenta.") in spoken
        print(f"records resumed: the queue written {resumed_at - writable_at:.1f} s after the files were writable")
        assert caller.call_id in svc._calls
        caller.leg.rest.hangup(caller.local_id)
        assert wait_record(records, caller.call_id)["outcome"] == "hung_up_by_caller"
