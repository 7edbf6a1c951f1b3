"""Faults and floods, through the real service against the fake Asterisk and the fake Realtime server.

Each test makes one thing go wrong (a session slow to open, a model that stops answering, Asterisk's audio
that stops, a database another process holds locked, a service that died with callers on the line, an Asterisk
restart, one call too many) and checks what the caller gets, what is recorded and that nothing is left behind.
The thresholds are made small through the settings, so each takes a second or two; every wait has a deadline.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from test_call import (
    APP,
    CALLER,
    DID,
    FAILOVER,
    GREETING,
    LONG_GREETING,
    OPERATOR,
    OTHER,
    REPLY,
    SAYING,
    TEST_CLIPS,
    TIMEOUT,
    Box,
    padded,
    pcmu,
    settings_for,
    wait_for,
)
from test_call import asterisk as asterisk  # the fixtures, under their own names
from test_call import boxes as boxes
from test_call import media_engine as media_engine

from centralita.billing.usage import Usage
from centralita.calls.call import FAILOVER_REASON_VARIABLE
from centralita.calls.service import InboundService
from centralita.calls.status import read_status
from centralita.storage.records import CallRecords, Outcome
from centralita.tools.call_control import builtin_tools
from centralita.tools.registry import Tool, ToolContext, ToolResult
from centralita_testing.fake_asterisk import FakeAsterisk
from centralita_testing.fake_realtime import AudioTurn, FakeRealtimeServer, Faults, ToolCallTurn

CLIPS = TEST_CLIPS
LONG_REPLY = OTHER[8000:24000]  # 2 s


def heard_audio(leg: Any) -> bytes:
    return pcmu(leg.heard)


def contains(audio: bytes, clip: bytes) -> bool:
    """Whether the caller heard ``clip`` (byte for byte, somewhere in ``audio``)."""
    return clip[400:2000] in audio  # 0.2 s from inside the clip


# --- Connect before answering ---------------------------------------------------------------------------------


def test_the_phone_rings_until_the_session_is_live_and_only_then_is_answered(boxes: Callable[..., Box]) -> None:
    box = boxes([AudioTurn(GREETING, "Hola.")], faults=Faults(delay_ms=700), CONNECT_TIMEOUT="5")
    channel_id, _call, leg = box.call_in()
    [ring] = box.asterisk.requests_to("POST", f"/ari/channels/{channel_id}/ring")
    [answer] = box.asterisk.requests_to("POST", f"/ari/channels/{channel_id}/answer")
    assert answer.at - ring.at >= 0.7  # the session took 0.7 s to open: the caller heard ringback meanwhile
    session = box.session()
    assert session.server_events("session.updated")  # checked before the answer
    leg.wait_heard(lambda heard: len(pcmu(heard)) >= len(GREETING), TIMEOUT)  # then the greeting, at once
    record = box.records.get_call(channel_id)
    assert record is not None
    assert record["answered_at"]


def test_a_session_slower_than_connect_timeout_fails_over_while_the_phone_still_rings(
    boxes: Callable[..., Box],
) -> None:
    box = boxes([AudioTurn(GREETING, "Hola.")], faults=Faults(delay_ms=3000), CONNECT_TIMEOUT="0.5")
    started = time.monotonic()
    channel_id = box.dial()
    record = box.ended(channel_id)
    assert time.monotonic() - started < 2.5  # not the 3 s the server would take, nor the old 20 s
    assert record["outcome"] == Outcome.REALTIME_FAILED
    assert "in time" in record["detail"]
    assert box.continues(channel_id) == [(FAILOVER, "s", 1)]
    assert box.asterisk.channels[channel_id].variables == {FAILOVER_REASON_VARIABLE: "realtime_unreachable"}
    assert box.asterisk.requests_to("POST", f"/ari/channels/{channel_id}/answer") == []


def test_a_caller_who_hangs_up_while_it_rings_leaves_no_session_open(boxes: Callable[..., Box]) -> None:
    box = boxes([AudioTurn(GREETING, "Hola.")], faults=Faults(delay_ms=800), CONNECT_TIMEOUT="5")
    channel_id, _call = box.ring()
    session = box.session()  # the connection is opening
    box.asterisk.hang_up(channel_id)
    record = box.ended(channel_id)
    assert record["outcome"] == Outcome.HUNG_UP_BY_CALLER
    session.wait_closed(TIMEOUT)  # the session that opened after the hang-up was closed, not leaked
    assert box.asterisk.requests_to("POST", f"/ari/channels/{channel_id}/answer") == []
    wait_for(lambda: not [t for t in threading.enumerate() if t.name == "realtime-receive"], "no receive thread")


# --- Watchdogs -------------------------------------------------------------------------------------------------


def test_no_audio_from_asterisk_gives_the_call_up(boxes: Callable[..., Box]) -> None:
    box = boxes([AudioTurn(GREETING, "Hola.")], RTP_TIMEOUT="0.6")
    channel_id, _call, leg = box.call_in()
    leg.wait_heard(lambda heard: len(heard) >= 5, TIMEOUT)
    box.asterisk.mute(channel_id)  # Asterisk stops sending the caller's audio
    record = box.ended(channel_id)
    assert (record["outcome"], record["detail"]) == (Outcome.NO_CALLER_AUDIO, "no audio from Asterisk for 0.6 s")
    assert box.continues(channel_id) == [(FAILOVER, "s", 1)]
    assert box.asterisk.channels[channel_id].variables == {FAILOVER_REASON_VARIABLE: "no_caller_audio"}
    assert box.service.stats.snapshot()["watchdogs"] == {"no_caller_audio": 1}


def test_a_realtime_peer_that_stops_reading_misses_its_pong_and_the_caller_goes_to_failover(
    boxes: Callable[..., Box],
) -> None:
    """The server (or the path to it) stops reading mid-call: the keepalive's ping gets no pong, the session is
    given up and the caller hears the notice and reaches a person, as for any lost connection."""
    box = boxes(
        [AudioTurn(GREETING, "Hola.")],
        faults=Faults(stop_reading_after_ms=300),
        WS_PING_INTERVAL="1",
        WS_PING_TIMEOUT="0.5",
    )
    channel_id, _call, leg = box.call_in()
    leg.wait_heard(lambda heard: len(heard) >= 5, TIMEOUT)
    record = box.ended(channel_id)
    assert record["outcome"] == Outcome.REALTIME_FAILED
    assert record["detail"] == "Realtime closed: no close frame by server, no pong within 0.5 s"
    assert box.continues(channel_id) == [(FAILOVER, "s", 1)]
    assert box.asterisk.channels[channel_id].variables == {FAILOVER_REASON_VARIABLE: "realtime_dropped"}


def test_the_audio_a_lost_connection_refuses_is_logged_once_not_per_frame(
    boxes: Callable[..., Box], caplog: pytest.LogCaptureFixture, media_engine: str
) -> None:
    """Between the connection's loss and the failover's leaving the bridge (here an ARI request a second and a
    half slow), the caller's frames keep coming and the connection refuses each: one warning says so, not one
    per frame (which would bury the log an operator reads)."""
    box = boxes(
        [AudioTurn(GREETING, "Hola.")],
        faults=Faults(stop_reading_after_ms=300),
        WS_PING_INTERVAL="1",
        WS_PING_TIMEOUT="0.5",
    )
    box.asterisk.slow("POST", "/ari/channels/*/variable", 1.5)
    with caplog.at_level(logging.DEBUG, logger="centralita"):
        channel_id, _call, _leg = box.call_in()
        record = box.ended(channel_id)
    assert record["outcome"] == Outcome.REALTIME_FAILED
    messages = [r.getMessage() for r in caplog.records]
    counted = [m for m in messages if m.endswith(" sends refused by the closed Realtime connection")]
    assert len(counted) == 1, messages
    # The media loop keeps reading the caller's frames until the call leaves the bridge: those of that second and
    # a half were refused. The threads engine's RTP thread stops reading at the first.
    assert int(counted[0].split()[0]) >= (10 if media_engine == "loop" else 1), counted
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and "is not open" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]  # said once
    assert box.continues(channel_id) == [(FAILOVER, "s", 1)]


def test_a_silent_model_gets_one_filler_then_the_caller_goes_to_a_person(boxes: Callable[..., Box]) -> None:
    box = boxes([AudioTurn(GREETING, "Hola.")], faults=Faults(silent_after_responses=0), REPLY_TIMEOUT="0.5")
    channel_id, _call, leg = box.call_in()
    record = box.ended(channel_id)
    assert record["outcome"] == Outcome.NO_REPLY
    assert box.continues(channel_id) == [(FAILOVER, "s", 1)]
    assert box.asterisk.channels[channel_id].variables == {FAILOVER_REASON_VARIABLE: "realtime_no_reply"}
    heard = heard_audio(leg)
    assert contains(heard, CLIPS.filler)  # "Un momento, por favor."
    assert heard.count(CLIPS.filler[400:2000]) == 1  # once
    assert box.service.stats.snapshot()["watchdogs"] == {"filler": 1, "no_reply": 1}


def test_a_model_that_answers_resets_the_reply_watchdog(boxes: Callable[..., Box]) -> None:
    box = boxes([AudioTurn(GREETING, "Hola."), AudioTurn(REPLY, "Dígame.")], REPLY_TIMEOUT="1.5")
    channel_id, call, leg = box.call_in()
    session = box.session()
    for turn in range(2):  # the caller speaks twice; the model answers each time in well under 1.5 s
        leg.say(SAYING[8000:11200] + b"\xff" * 5600)
        session.wait_for_server_event("response.output_audio.done", count=turn + 2, timeout=TIMEOUT)
    leg.wait_silent(1.6, TIMEOUT)  # then silence for longer than REPLY_TIMEOUT: nobody is waiting for a reply
    assert not call.state.ended.is_set()
    assert box.service.stats.snapshot()["watchdogs"] == {}
    assert not contains(heard_audio(leg), CLIPS.filler)
    box.asterisk.hang_up(channel_id)
    assert box.ended(channel_id)["outcome"] == Outcome.HUNG_UP_BY_CALLER


def test_the_longest_call_is_warned_then_transferred(boxes: Callable[..., Box]) -> None:
    box = boxes([AudioTurn(GREETING, "Hola.")], MAX_CALL_SECONDS="1.6")
    channel_id, _call, leg = box.call_in()
    record = box.ended(channel_id)
    assert (record["outcome"], record["detail"]) == (
        Outcome.TIME_LIMIT,
        "the call reached its maximum length of 1.6 s",
    )
    assert box.continues(channel_id) == [(OPERATOR, "s", 1)]
    assert contains(heard_audio(leg), CLIPS.warning_transfer)  # warned half-way (a minute before, normally)
    assert box.service.stats.snapshot()["watchdogs"] == {"time_warning": 1, "time_limit": 1}


def test_with_hangup_at_the_limit_the_goodbye_plays_whole_before_the_hang_up(boxes: Callable[..., Box]) -> None:
    box = boxes([AudioTurn(GREETING, "Hola.")], MAX_CALL_SECONDS="1.6", ON_CALL_LIMIT="hangup")
    channel_id, _call, leg = box.call_in()
    record = box.ended(channel_id)
    assert record["outcome"] == Outcome.TIME_LIMIT
    heard = heard_audio(leg)
    assert contains(heard, CLIPS.warning_hangup)
    assert heard.endswith(padded(CLIPS.goodbye))  # whole, and the last thing the caller heard
    [hangup] = box.asterisk.requests_to("DELETE", f"/ari/channels/{channel_id}")
    assert hangup.at > leg.heard[-1].arrival
    assert box.continues(channel_id) == []


# --- Records off the media path -------------------------------------------------------------------------------


def lookup_tool(ran: list[str]) -> Tool:
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


@pytest.mark.parametrize("fault", ["locked", "read-only"])
def test_a_database_that_cannot_be_written_mid_call_stops_neither_audio_nor_tools(
    boxes: Callable[..., Box], tmp_path: Path, fault: str
) -> None:
    ran: list[str] = []
    tools = builtin_tools()
    tools.register(lookup_tool(ran))
    script = [
        AudioTurn(GREETING, "Hola."),
        ToolCallTurn("consultar_saldo", '{"cuenta": "C001"}'),
        AudioTurn(LONG_REPLY, "Su saldo es de trescientos cincuenta."),
    ]
    box = boxes(script, tools=tools)
    db = tmp_path / "centralita.db"
    channel_id, _call, leg = box.call_in()
    session = box.session()
    session.wait_for_server_event("response.done", timeout=TIMEOUT)
    # The greeting played whole first: what the caller hears from here on is the reply alone.
    leg.wait_heard(lambda heard: len(pcmu(heard)) >= len(GREETING), TIMEOUT)
    wait_for(lambda: box.service.records_writer.stats().written >= 2, "the call's first records")
    holder = sqlite3.connect(db, isolation_level=None, timeout=1)
    try:
        if fault == "locked":
            holder.execute("BEGIN EXCLUSIVE")  # another process holds the database
        else:
            # What a file that became read-only gives every write (SQLITE_READONLY), on the service's own connection.
            with box.records._lock:
                box.records._connection().execute("PRAGMA query_only = ON")
        failing_from = len(leg.heard)
        # The caller speaks (their words reach the model), a tool runs and its record cannot be written; the
        # reply still comes, and plays at its pace.
        words = SAYING[8000:11200]
        leg.say(words + b"\xff" * 5600)
        wait_for(lambda: words[:1600] in session.audio, "the caller's words at the model")
        [output] = session.wait_for_client_event("conversation.item.create", timeout=TIMEOUT)
        assert json.loads(output["item"]["output"]) == {"ok": True, "saldo": "350.00"}
        session.wait_for_server_event("response.output_audio.done", count=2, timeout=TIMEOUT)
        heard = leg.wait_heard(lambda heard: len(pcmu(heard[failing_from:])) >= len(LONG_REPLY), TIMEOUT)
        reply = heard[failing_from:]
        gaps = [later.arrival - earlier.arrival for earlier, later in itertools.pairwise(reply)]
        assert len(reply) >= 100  # 2 s of reply...
        # ...paced while the writes failed: audio waiting on the database would stall for its busy wait (seconds);
        # a busy test machine may delay one frame by tens of milliseconds, which says nothing of the database.
        assert max(gaps) < 1.0
        assert pcmu(reply) == padded(LONG_REPLY)
        wait_for(lambda: box.service.records_writer.stats().failing, "the writer to see the failure")
        assert ran == ["C001"]
    finally:
        if fault == "locked":
            holder.execute("ROLLBACK")
        else:
            with box.records._lock:
                box.records._connection().execute("PRAGMA query_only = OFF")
        holder.close()
    # The database takes writes again: what waited is written, nothing was lost.
    wait_for(lambda: not box.service.records_writer.stats().failing, "the writes to resume", timeout=15)
    tool_calls = wait_for(
        lambda: box.records.get_call(channel_id)["tool_calls"],
        "the tool's record",
    )
    assert [call["name"] for call in tool_calls] == ["consultar_saldo"]
    assert box.service.records_writer.stats().lost == 0
    box.asterisk.hang_up(channel_id)
    assert box.ended(channel_id)["outcome"] == Outcome.HUNG_UP_BY_CALLER


def test_a_tool_whose_record_write_raises_still_answers_the_model(boxes: Callable[..., Box]) -> None:
    """A record that cannot even be queued (a bug, an object JSON cannot encode) must not silence the call."""
    ran: list[str] = []
    tools = builtin_tools()
    tools.register(lookup_tool(ran))
    box = boxes([ToolCallTurn("consultar_saldo", '{"cuenta": "C9"}'), AudioTurn(REPLY, "Ya.")], tools=tools)

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the records are broken")

    box.service._queued.add_tool_call = broken
    _channel_id, _call, leg = box.call_in()
    session = box.session()
    [output] = session.wait_for_client_event("conversation.item.create", timeout=TIMEOUT)
    assert json.loads(output["item"]["output"]) == {"ok": True, "saldo": "350.00"}
    leg.wait_heard(lambda heard: pcmu(heard).endswith(REPLY[: len(REPLY) - len(REPLY) % 160]), TIMEOUT)


def test_a_call_starts_and_talks_while_the_database_is_locked_from_the_start(
    boxes: Callable[..., Box], tmp_path: Path
) -> None:
    box = boxes([AudioTurn(GREETING, "Hola.")])
    holder = sqlite3.connect(tmp_path / "centralita.db", isolation_level=None, timeout=1)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        channel_id, _call, leg = box.call_in()  # answered and bridged although its row cannot be written
        leg.wait_heard(lambda heard: len(pcmu(heard)) >= len(GREETING), TIMEOUT)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    # The writes waited in order: the row, then its answer, once the database is free.
    record = wait_for(
        lambda: (found := box.records.get_call(channel_id)) and found["answered_at"] and found,
        "the call's row and its answer, once the database is free",
    )
    assert record["started_at"] < record["answered_at"]


# --- Spending ---------------------------------------------------------------------------------------------------


def test_every_response_is_recorded_with_its_tokens_and_cost(boxes: Callable[..., Box]) -> None:
    box = boxes([AudioTurn(GREETING, "Hola.")])
    channel_id, _call, _leg = box.call_in()
    session = box.session()
    [done] = session.wait_for_server_event("response.done", timeout=TIMEOUT)
    expected = Usage.from_response_done(done)
    assert expected is not None
    assert expected.total
    box.asterisk.hang_up(channel_id)
    box.ended(channel_id)
    usage, cost = wait_for(lambda: (u := box.records.usage_of(channel_id))[0].total and u, "the usage record")
    assert usage == expected
    prices = box.service._settings.spending.prices
    assert cost == (prices.cost(expected) * 1_000_000).to_integral_value() / Decimal(1_000_000)
    # With the date of the price table it was reckoned with, which every report shows beside the cost.
    rows = box.records.usage_between(box.records.now() - timedelta(hours=1), box.records.now())
    assert [(row["call_id"], row["prices_as_of"]) for row in rows] == [(channel_id, prices.as_of)]


def test_when_the_budget_is_spent_new_calls_go_to_the_operator(asterisk: FakeAsterisk, tmp_path: Path) -> None:
    with CallRecords(tmp_path / "centralita.db") as records:
        records.add_usage("earlier", "resp_1", Usage(output_audio=100_000), Decimal("6.40"), "USD")
    with FakeRealtimeServer(script=[AudioTurn(GREETING, "Hola.")]) as realtime:
        settings = settings_for(asterisk, realtime, tmp_path, BUDGET_DAILY="5", BUDGET_MONTHLY="0")
        records = CallRecords(settings.db_path)
        service = InboundService(settings, records, builtin_tools(), "Eres el asistente.", status_interval=0.1)
        service.start()
        try:
            assert service.wait_connected(TIMEOUT)
            assert asterisk.wait_until(lambda: APP in asterisk.connected_apps(), TIMEOUT)
            channel_id = asterisk.incoming_call(APP, ("inbound", DID), caller=CALLER)
            assert asterisk.wait_until(lambda: bool(asterisk.channels[channel_id].continued), TIMEOUT)
            assert asterisk.channels[channel_id].continued == [(FAILOVER, "s", 1)]
            assert asterisk.channels[channel_id].variables == {FAILOVER_REASON_VARIABLE: "budget_spent"}
            assert realtime.sessions() == []  # no session was opened (and billed) for it
            status = wait_for(
                lambda: (found := read_status(settings.status_file)) and found["refused"] and found,
                "the refusal in the status file",
            )
            assert status["budget"]["spent"] is True
            assert status["budget"]["day_spent"] == "6.4"
            assert status["refused"] == {"budget_spent": 1}
        finally:
            service.stop()
            records.close()
    with CallRecords(tmp_path / "centralita.db") as records:
        record = records.get_call(channel_id)
    assert record is not None
    assert (record["outcome"], record["detail"]) == (Outcome.REFUSED, f"budget_spent: sent to {FAILOVER}")


# --- Admission --------------------------------------------------------------------------------------------------


def test_the_call_over_the_box_limit_goes_to_the_failover_context_while_the_others_talk(
    boxes: Callable[..., Box],
) -> None:
    box = boxes([AudioTurn(LONG_GREETING, "Un saludo largo.")], pace=1.0, MAX_CALLS="2")
    first, _one, leg_one = box.call_in(caller="5215550000001")
    second, _two, leg_two = box.call_in(caller="5215550000002")
    third = box.asterisk.incoming_call(APP, ("inbound", DID), caller="5215550000003")
    assert box.asterisk.wait_until(lambda: box.asterisk.channels[third].continued, TIMEOUT)
    assert box.asterisk.channels[third].continued == [(FAILOVER, "s", 1)]
    assert box.asterisk.channels[third].variables == {FAILOVER_REASON_VARIABLE: "box_full"}
    assert box.ended(third)["outcome"] == Outcome.REFUSED
    # The two calls in progress keep talking: their audio goes on.
    for leg in (leg_one, leg_two):
        count = len(leg.heard)
        leg.wait_heard(lambda heard, count=count: len(heard) >= count + 25, TIMEOUT)
    assert box.service.active_calls == 2
    # A place freed is a place taken again.
    box.asterisk.hang_up(first)
    box.ended(first)
    fourth, _four, leg_four = box.call_in(caller="5215550000004")
    leg_four.wait_heard(lambda heard: len(heard) >= 5, TIMEOUT)
    assert box.service.admission.refused == {"box_full": 1}
    for channel in (second, fourth):
        box.asterisk.hang_up(channel)


def test_a_number_over_its_limits_is_refused_as_caller_busy_then_caller_rate(boxes: Callable[..., Box]) -> None:
    box = boxes(
        [AudioTurn(LONG_GREETING, "Un saludo largo.")],
        pace=1.0,
        MAX_CALLS_PER_CALLER="1",
        MAX_CALLS_PER_CALLER_PER_MINUTE="3",
    )
    first, _call = box.ring(caller="+525550001234")
    busy = box.asterisk.incoming_call(
        APP, ("inbound", DID), caller="525550001234"
    )  # the same number, written otherwise
    assert box.asterisk.wait_until(lambda: box.asterisk.channels[busy].continued, TIMEOUT)
    assert box.asterisk.channels[busy].variables == {FAILOVER_REASON_VARIABLE: "caller_busy"}
    box.asterisk.hang_up(first)
    box.ended(first)
    third, _again = box.ring(caller="+525550001234")  # a third call in the minute: allowed
    box.asterisk.hang_up(third)
    box.ended(third)
    fourth = box.asterisk.incoming_call(APP, ("inbound", DID), caller="+525550001234")
    assert box.asterisk.wait_until(lambda: box.asterisk.channels[fourth].continued, TIMEOUT)
    assert box.asterisk.channels[fourth].variables == {FAILOVER_REASON_VARIABLE: "caller_rate"}
    other, _other = box.ring(caller="+525550009999")  # another number is not affected
    assert box.service.admission.refused == {"caller_busy": 1, "caller_rate": 1}
    box.asterisk.hang_up(other)


# --- Bounded memory ---------------------------------------------------------------------------------------------


def test_a_model_streaming_faster_than_real_time_cannot_grow_the_queue_past_its_cap(
    boxes: Callable[..., Box],
) -> None:
    long_reply = SAYING * 3  # tens of seconds of audio, sent as fast as the server can
    box = boxes([AudioTurn(long_reply, "Mucho.")], pace=0, PLAYOUT_MAX_SECONDS="2")
    channel_id, call, _leg = box.call_in()
    box.session().wait_for_server_event("response.output_audio.done", timeout=TIMEOUT)
    playout = call.playout
    sent_ms = len(long_reply) / 8
    # Every ms the server sent ends up queued (never more than the cap), played, or dropped and counted; the
    # bridge may still be reading the last deltas when the server is done sending them.
    wait_for(
        lambda: playout.queued_ms + playout.played_ms + playout.overflow_ms >= sent_ms - 100,
        "every delta accounted for",
    )
    assert playout.queued_ms <= 2000
    assert playout.overflow_ms >= sent_ms / 2  # most of it: the reply came many times faster than real time
    box.asterisk.hang_up(channel_id)
    box.ended(channel_id)
    media = box.service.stats.snapshot()["media_dropped"]
    assert media["playout_overflow_ms"] == round(playout.overflow_ms)  # what the call dropped, counted


def test_rtp_from_a_stranger_never_reaches_the_model_and_is_counted(boxes: Callable[..., Box]) -> None:
    box = boxes([AudioTurn(GREETING, "Hola.")])
    channel_id, call, leg = box.call_in()
    session = box.session()
    leg.wait_heard(lambda heard: len(heard) >= 5, TIMEOUT)
    port = call.rtp_port
    assert port is not None
    marker = bytes(range(1, 161))  # no real caller sends this
    packet = b"\x80\x00\x00\x01\x00\x00\x00\xa0\x12\x34\x56\x78" + marker
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        for _ in range(20):
            stranger.sendto(packet, ("127.0.0.1", port))
    words = SAYING[16000:17600]
    leg.say(words)  # the real caller's audio still goes through, after the stranger's packets
    wait_for(lambda: words[:800] in session.audio, "the caller's words at the model")
    assert marker not in session.audio
    box.asterisk.hang_up(channel_id)
    box.ended(channel_id)
    assert call.rtp_counts["foreign"] == 20
    assert box.service.stats.snapshot()["media_dropped"]["rtp_foreign"] == 20


# --- Health snapshot --------------------------------------------------------------------------------------------


def test_the_status_file_says_what_the_service_does(boxes: Callable[..., Box], tmp_path: Path) -> None:
    box = boxes([AudioTurn(GREETING, "Hola.")])
    channel_id, _call, leg = box.call_in()
    leg.wait_heard(lambda heard: len(heard) >= 5, TIMEOUT)
    box.service._status.write()  # the reporter writes every 5 s; a test does not wait for it
    status = read_status(tmp_path / "status.json")
    assert status is not None
    assert status["service"] == "openai-inbound-calls"
    assert status["ari_connected"] is True
    assert status["active_calls"] == 1
    assert status["limits"] == {"max_calls": 20, "max_per_caller": 2, "max_per_caller_per_minute": 6}
    assert status["records"]["lost"] == 0
    assert status["budget"]["limited"] is True
    assert status["budget"]["spent"] is False
    assert status["calls_started"] == 1
    # The call in progress, for the web console's live page.
    [listed] = status["calls"]
    assert listed["call_id"] == channel_id
    assert (listed["direction"], listed["caller"], listed["did"], listed["campaign"]) == ("inbound", CALLER, DID, "")
    assert listed["activity"] in ("listening", "speaking")
    assert listed["tool"] == ""
    assert listed["worker"] == status["worker"] == f"{socket.gethostname()}/{os.getpid()}"
    assert timedelta(0) <= datetime.now(UTC) - datetime.fromisoformat(listed["started_at"]) < timedelta(minutes=1)
    box.asterisk.hang_up(channel_id)
    box.ended(channel_id)
    box.service._status.write()
    assert read_status(tmp_path / "status.json")["calls"] == []  # type: ignore[index]
    box.service.stop()
    assert not (tmp_path / "status.json").exists()  # a stopped service leaves no stale snapshot


def test_the_live_view_says_which_tool_runs_then_that_the_assistant_speaks_then_listens(
    boxes: Callable[..., Box],
) -> None:
    release = threading.Event()
    running = threading.Event()

    def slow_lookup(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        running.set()
        release.wait(TIMEOUT)
        return ToolResult({"ok": True, "saldo": "350.00"})

    tools = builtin_tools()
    tools.register(
        Tool(
            name="consultar_saldo",
            description="Consulta el saldo.",
            parameters={"type": "object", "properties": {"cuenta": {"type": "string"}}, "required": ["cuenta"]},
            handler=slow_lookup,
        )
    )
    box = boxes([ToolCallTurn("consultar_saldo", '{"cuenta": "C9"}'), AudioTurn(LONG_REPLY, "Su saldo.")], tools=tools)
    channel_id, call, leg = box.call_in()
    assert running.wait(TIMEOUT)
    view = call.live_view()
    assert (view["activity"], view["tool"]) == ("tool", "consultar_saldo")
    release.set()
    wait_for(lambda: call.live_view()["activity"] == "speaking", "the reply to the tool's output")
    assert call.live_view()["tool"] == ""
    leg.wait_heard(lambda heard: len(pcmu(heard)) >= len(LONG_REPLY), TIMEOUT)
    wait_for(lambda: call.live_view()["activity"] == "listening", "the reply played out")
    box.asterisk.hang_up(channel_id)
    box.ended(channel_id)
    assert call.live_view()["activity"] == "ending"


# --- Reconciliation ---------------------------------------------------------------------------------------------


def test_a_restarted_service_hands_the_callers_its_previous_run_left_to_the_failover_context(
    boxes: Callable[..., Box], asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """The previous run died (SIGKILL) with a caller bridged to its ExternalMedia channel: Asterisk still has
    them all, in silence. The new run finds them, sends the caller on with the notice, and removes the rest."""
    with CallRecords(tmp_path / "centralita.db") as records:
        records.start_call("1700000000.7", "inbound", CALLER, DID)  # the previous run's open records
        records.start_call("1700000000.9", "inbound", "5215550002222", DID)  # (its caller hung up meanwhile)
    caller, media, _bridge = asterisk.leftover_call(APP, ("inbound", DID), caller=CALLER, channel_id="1700000000.7")
    untouched = asterisk.incoming_call("someone-else", caller="5550000", channel_id="other.1")

    box = boxes([AudioTurn(GREETING, "Hola.")])
    assert asterisk.wait_until(
        lambda: bool(caller in asterisk.channels and asterisk.channels[caller].continued), TIMEOUT
    )
    assert asterisk.channels[caller].continued == [(FAILOVER, "s", 1)]
    assert asterisk.channels[caller].variables == {FAILOVER_REASON_VARIABLE: "service_restarted"}
    assert asterisk.wait_until(lambda: media not in asterisk.channels and not asterisk.bridges, TIMEOUT)
    assert untouched in asterisk.channels
    assert not asterisk.channels[untouched].continued
    interrupted = box.ended("1700000000.7")
    assert interrupted["outcome"] == Outcome.INTERRUPTED
    assert interrupted["detail"] == f"the service restarted mid-call; sent to {FAILOVER}"
    stale = box.ended("1700000000.9")
    assert (stale["outcome"], stale["detail"]) == (
        Outcome.INTERRUPTED,
        "the service stopped with the call up; the caller was gone by its restart",
    )
    reconciled = box.service.stats.snapshot()["reconciled"]
    assert reconciled == {
        "orphan_callers": 1,
        "orphan_media": 1,
        "orphan_bridges": 1,
        "gone_calls": 0,
        "stale_records": 1,
    }
    # The service takes calls as usual meanwhile.
    _channel_id, _call, leg = box.call_in()
    leg.wait_heard(lambda heard: len(heard) >= 5, TIMEOUT)


def test_after_an_asterisk_restart_the_calls_it_dropped_are_ended_and_recorded(boxes: Callable[..., Box]) -> None:
    box = boxes([AudioTurn(LONG_GREETING, "Un saludo largo.")], pace=1.0)
    channel_id, _call, leg = box.call_in()
    session = box.session()
    leg.wait_heard(lambda heard: len(heard) >= 5, TIMEOUT)
    box.asterisk.restart()  # every channel gone, and no event says so
    record = box.ended(channel_id)
    assert record["outcome"] == Outcome.CHANNEL_GONE
    session.wait_closed(TIMEOUT)  # its Realtime session, threads and socket are released
    wait_for(lambda: box.service.active_calls == 0 and box.service.paced_streams == 0, "the call released")
    assert box.asterisk.bridges == {}
    assert box.asterisk.wait_until(lambda: APP in box.asterisk.connected_apps(), TIMEOUT)  # reconnected
    _again, _call, leg = box.call_in()
    leg.wait_heard(lambda heard: len(heard) >= 5, TIMEOUT)


def test_a_hang_up_missed_while_the_events_connection_was_down_ends_the_call(boxes: Callable[..., Box]) -> None:
    box = boxes([AudioTurn(LONG_GREETING, "Un saludo largo.")], pace=1.0)
    gone, _call, leg = box.call_in(caller="5215550000001")
    staying, _other, other_leg = box.call_in(caller="5215550000002")
    leg.wait_heard(lambda heard: len(heard) >= 5, TIMEOUT)
    box.asterisk.drop_events()
    box.asterisk.vanish(gone)  # hung up while nobody listened
    assert box.ended(gone)["outcome"] == Outcome.CHANNEL_GONE
    count = len(other_leg.heard)
    other_leg.wait_heard(lambda heard: len(heard) >= count + 25, TIMEOUT)  # the other call was left alone
    assert box.service.call(staying) is not None
    box.asterisk.hang_up(staying)
    assert box.ended(staying)["outcome"] == Outcome.HUNG_UP_BY_CALLER
