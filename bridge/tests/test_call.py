"""The call state machine (``calls/call.py`` run by ``calls/service.py``) over real sockets, in seconds.

The service runs as in production, against the fake Asterisk (ARI REST, the events WebSocket, and a real RTP
leg per call that plays the caller and records what the caller hears) and the in-process fake Realtime
server (scripted replies, tool calls, faults). Every test waits for the condition it checks, with a deadline.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from dialer_helpers import Clock, RecordingOriginator, config, target
from polling import wait_for

from centralita.calls.call import FAILOVER_REASON_VARIABLE, Call, FailoverReason
from centralita.calls.outbound import OutboundCalls
from centralita.calls.service import InboundService
from centralita.config.bridge import MediaEngine, Settings
from centralita.config.dialer import DialerSettings
from centralita.dialer.runner import Runner
from centralita.dialer.store import CampaignStore
from centralita.logs import Event
from centralita.media.clips import Clips
from centralita.storage.queued import QueuedRecords
from centralita.storage.records import CallRecords, Outcome
from centralita.tools.call_control import builtin_tools
from centralita.tools.registry import Tool, ToolAction, ToolContext, ToolRegistry, ToolResult
from centralita_testing.fake_asterisk import FRAME_BYTES, FakeAsterisk, Heard, RtpLeg
from centralita_testing.fake_realtime import (
    AudioTurn,
    FakeRealtimeServer,
    Faults,
    SessionRecord,
    ToolCallTurn,
    Turn,
    default_caller_lines,
)
from centralita_testing.fake_realtime import default_audio_dir as realtime_audio

SAYING = (realtime_audio() / "asistente_saludo.ulaw").read_bytes()
OTHER = (realtime_audio() / "asistente_reactivado.ulaw").read_bytes()
GREETING = SAYING[8000:12800]  # 0.6 s of the assistant's voice
LONG_GREETING = SAYING[: 8000 * 4]  # 4 s: long enough to be interrupted
REPLY = OTHER[8000:10400]  # 0.3 s of another recording: never mistaken for the greeting
CALLER_WORDS = SAYING[8000:11200] + b"\xff" * 5600  # 0.4 s of speech, then 0.7 s of silence (the VAD waits 0.5 s)
APP = "centralita"
DID = "8005550100"
CALLER = "5215550001111"
OPERATOR = "centralita-operator"
FAILOVER = "centralita-unavailable"
TIMEOUT = 10.0  # generous, the machine is shared: a passing test takes a fraction of it
# The bridge's own recordings, 0.3 s each here (the real ones take seconds): pieces of a recording used nowhere
# else in these tests, so what the caller hears tells them apart.
TEST_CLIPS = Clips(
    filler=OTHER[30000:32400],
    warning_transfer=OTHER[34000:36400],
    warning_hangup=OTHER[38000:40400],
    goodbye=OTHER[42000:44400],
)

T = TypeVar("T")


def padded(audio: bytes) -> bytes:
    """``audio`` as the caller hears it: whole 20 ms frames, the last one completed with silence."""
    return audio + b"\xff" * (-len(audio) % FRAME_BYTES)


def pcmu(heard: Sequence[Heard]) -> bytes:
    return b"".join(packet.payload for packet in heard if packet.payload_type == 0)


def sent_ms(session: SessionRecord, item_id: str) -> int:
    """How much audio of ``item_id`` the fake Realtime server sent, in ms."""
    deltas = session.server_events("response.output_audio.delta")
    return sum(len(base64.b64decode(d["delta"])) for d in deltas if d["item_id"] == item_id) // 8


@dataclass
class Box:
    """One running service with its fakes, and what a test needs to place and follow calls."""

    asterisk: FakeAsterisk
    realtime: FakeRealtimeServer
    service: InboundService
    records: CallRecords

    def call_in(self, caller: str = CALLER) -> tuple[str, Call, RtpLeg]:
        """A caller dials the DID: the channel id, its ``Call``, and the RTP leg that plays the caller."""
        channel_id, call = self.ring(caller)
        return channel_id, call, self.asterisk.leg_of(channel_id, TIMEOUT)

    def ring(self, caller: str = CALLER) -> tuple[str, Call]:
        """A caller dials the DID and the service takes the call (it may not be answered yet)."""
        channel_id = self.dial(caller)
        call = wait_for(lambda: self.service.call(channel_id), "the service to take the call")
        return channel_id, call

    def dial(self, caller: str = CALLER) -> str:
        """A caller dials the DID: the channel id. For a call whose setup fails: it may end before a test could see
        the service hold it (the service forgets an ended call), so the test follows it by its record instead."""
        return self.asterisk.incoming_call(APP, ("inbound", DID), caller=caller)

    def session(self, index: int = 0) -> SessionRecord:
        return self.realtime.wait_for_session(index, TIMEOUT)

    def ended(self, call_id: str) -> dict[str, Any]:
        """The call's record, once it has ended."""

        def read() -> dict[str, Any] | None:
            record = self.records.get_call(call_id)
            return record if record is not None and record["ended_at"] else None

        return wait_for(read, f"the record of {call_id} to end")

    def continues(self, channel_id: str) -> list[tuple[str, str, int]]:
        """Where the channel was sent on in the dialplan (POST .../continue), in order."""
        channel = self.asterisk.channels.get(channel_id)
        return list(channel.continued) if channel is not None else []


def settings_for(asterisk: FakeAsterisk, realtime: FakeRealtimeServer, tmp_path: Path, **extra: str) -> Settings:
    return Settings.from_values(
        {
            "OPENAI_API_KEY": realtime.api_key,
            "OPENAI_BASE_URL": realtime.base_url,
            "ARI_URL": asterisk.url,
            "ARI_USER": asterisk.user,
            "ARI_PASSWORD": asterisk.password,
            "ARI_APP": APP,
            # A pong may take long on a loaded machine (CI is a shared 2-core one): a pong missed within 0.3 s ended
            # healthy calls there. The tests of a peer that stops answering pings set their own, shorter values.
            "WS_PING_INTERVAL": "5",
            "WS_PING_TIMEOUT": "3",
            "LOG_FILE": str(tmp_path / "inbound_openai.log"),
            "DB_PATH": str(tmp_path / "centralita.db"),
            "OPERATOR_CONTEXT": OPERATOR,
            "FAILOVER_CONTEXT": FAILOVER,
            "STATUS_FILE": str(tmp_path / "status.json"),
            **extra,
        }
    )


@pytest.fixture
def asterisk() -> Iterator[FakeAsterisk]:
    with FakeAsterisk() as fake:
        yield fake


@pytest.fixture(params=[engine.value for engine in MediaEngine])
def media_engine(request: pytest.FixtureRequest) -> str:
    """MEDIA_ENGINE: every test that starts a service runs against each engine (threads and loop)."""
    return str(request.param)


@pytest.fixture
def boxes(asterisk: FakeAsterisk, tmp_path: Path, media_engine: str) -> Iterator[Callable[..., Box]]:
    """Starts the service, with the ``media_engine`` under test, against the fake Asterisk and a fake Realtime
    server playing ``script``."""
    started: list[tuple[InboundService, CallRecords, FakeRealtimeServer]] = []

    def start(
        script: Sequence[Turn],
        *,
        tools: ToolRegistry | None = None,
        outbound: OutboundCalls | None = None,
        faults: Faults | None = None,
        pace: float = 4.0,
        clips: Clips | None = None,
        **settings: str,
    ) -> Box:
        realtime = FakeRealtimeServer(script=script, pace=pace, faults=faults, tool_done_delay_ms=200).start()
        values = settings_for(asterisk, realtime, tmp_path, **{"MEDIA_ENGINE": media_engine, **settings})
        records = CallRecords(values.db_path)
        service = InboundService(
            values, records, tools or builtin_tools(), "Eres el asistente.", outbound, clips=clips or TEST_CLIPS
        )
        started.append((service, records, realtime))
        service.start()
        assert service.wait_connected(TIMEOUT)
        assert asterisk.wait_until(lambda: APP in asterisk.connected_apps(), TIMEOUT)
        return Box(asterisk, realtime, service, records)

    yield start
    for service, records, realtime in started:
        service.stop()
        records.close()
        realtime.stop()


# --- Audio both ways ----------------------------------------------------------------------------------------


def test_the_greeting_reaches_the_caller_whole_in_order_and_paced(boxes: Callable[..., Box]) -> None:
    box = boxes([AudioTurn(GREETING, "Hola, le atiende el asistente.")])
    channel_id, _call, leg = box.call_in()
    expected = padded(GREETING)
    heard = leg.wait_heard(lambda heard: len(pcmu(heard)) >= len(expected), TIMEOUT)
    assert pcmu(heard) == expected  # byte for byte: μ-law end to end, nothing lost, doubled or reordered
    assert len({packet.ssrc for packet in heard}) == 1
    assert all(packet.payload_type == 0 for packet in heard)
    assert heard[0].marker
    sequences = [packet.sequence for packet in heard]
    assert sequences == [(sequences[0] + n) & 0xFFFF for n in range(len(heard))]
    steps = [(later.timestamp - earlier.timestamp) & 0xFFFFFFFF for earlier, later in itertools.pairwise(heard)]
    assert all(step > 0 and step % FRAME_BYTES == 0 for step in steps)  # on the 20 ms grid, gaps included
    # Paced, not burst: the fake server sent it 4 times faster than real time. (A late clock catches up by at
    # most 3 frames; the lower bound holds on any machine.)
    assert heard[-1].arrival - heard[0].arrival >= (len(heard) - 4) * 0.020
    # The assistant's words are in the call's transcript.
    wait_for(
        lambda: box.records.get_call(channel_id)["transcript"],  # type: ignore[index]
        "the assistant's transcript",
    )
    record = box.records.get_call(channel_id)
    assert record is not None
    assert record["transcript"][0]["speaker"] == "assistant"
    assert (record["direction"], record["caller"], record["callee"], record["campaign"]) == (
        "inbound",
        CALLER,
        DID,
        None,
    )
    assert record["answered_at"]


def test_the_callers_words_reach_the_realtime_api_unchanged(boxes: Callable[..., Box]) -> None:
    box = boxes([AudioTurn(GREETING, "Hola.")])
    _channel_id, _call, leg = box.call_in()
    session = box.session()
    words = SAYING[16000:20000]
    leg.say(words)
    wait_for(lambda: words in session.audio, "the caller's words in the appended audio")


def test_the_callers_words_are_transcribed_and_stored_before_the_reply_even_when_their_text_comes_late(
    boxes: Callable[..., Box],
) -> None:
    box = boxes([AudioTurn(GREETING, "Hola."), AudioTurn(REPLY, "Dígame.")], faults=Faults(transcription_delay_ms=800))
    channel_id, _call, leg = box.call_in()
    session = box.session()
    [update] = session.client_events("session.update")
    assert update["session"]["audio"]["input"]["transcription"] == {"model": "whisper-1", "language": "es"}
    session.wait_for_server_event("response.done", timeout=TIMEOUT)
    leg.say(CALLER_WORDS)
    [completed] = session.wait_for_server_event(
        "conversation.item.input_audio_transcription.completed", timeout=TIMEOUT
    )
    events = [event["type"] for event in session.server_events()]
    # The reply to the caller's words was done before their text came: the late case did happen.
    assert events.index("conversation.item.input_audio_transcription.completed") > max(
        index for index, kind in enumerate(events) if kind == "response.output_audio_transcript.done"
    )
    said = default_caller_lines()[0]
    assert completed["transcript"] == said
    box.asterisk.hang_up(channel_id)
    record = box.ended(channel_id)
    assert [(line["speaker"], line["text"]) for line in record["transcript"]] == [
        ("assistant", "Hola."),
        ("caller", said),
        ("assistant", "Dígame."),
    ]
    stamps = [line["at"] for line in record["transcript"]]
    assert stamps == sorted(stamps)


def test_with_transcription_off_the_session_asks_for_none(boxes: Callable[..., Box]) -> None:
    box = boxes([AudioTurn(GREETING, "Hola.")], TRANSCRIPTION_MODEL="off")
    _channel_id, _call, _leg = box.call_in()
    [update] = box.session().client_events("session.update")
    assert "transcription" not in update["session"]["audio"]["input"]


# --- Barge-in -----------------------------------------------------------------------------------------------


def test_barge_in_stops_the_assistant_at_once_and_truncates_what_was_not_heard(boxes: Callable[..., Box]) -> None:
    box = boxes([AudioTurn(LONG_GREETING, "Un saludo largo."), AudioTurn(REPLY, "Dígame.")], pace=1.0)
    _channel_id, _call, leg = box.call_in()
    session = box.session()
    leg.wait_heard(lambda heard: len(heard) >= 10, TIMEOUT)  # 200 ms into the greeting
    leg.say(CALLER_WORDS)
    session.wait_for_server_event("input_audio_buffer.speech_started", timeout=TIMEOUT)
    noticed = time.monotonic()  # just after the server sent it
    [truncate] = session.wait_for_client_event("conversation.item.truncate", timeout=TIMEOUT)
    greeting_item = truncate["item_id"]
    heard_ms = truncate["audio_end_ms"]
    assert 0 < heard_ms <= sent_ms(session, greeting_item)
    # The second reply comes once the caller stops: by then, what the caller heard of the greeting is exactly
    # what the truncate says (no frame of it after the barge-in), and then the reply.
    session.wait_for_server_event("response.output_audio.done", count=2, timeout=TIMEOUT)
    heard = leg.wait_heard(lambda heard: len(pcmu(heard)) >= heard_ms * 8 + len(padded(REPLY)), TIMEOUT)
    audio = pcmu(heard)
    assert audio[: heard_ms * 8] == LONG_GREETING[: heard_ms * 8]
    assert audio[heard_ms * 8 :] == padded(REPLY)
    greeting_frames = heard[: heard_ms // 20]
    assert greeting_frames[-1].arrival < noticed + 0.5  # the greeting stopped when the caller spoke
    assert len(session.client_events("conversation.item.truncate")) == 1


# --- Tools ---------------------------------------------------------------------------------------------------


def test_a_tools_output_goes_to_the_model_only_after_response_done(boxes: Callable[..., Box]) -> None:
    ran: list[tuple[dict[str, Any], ToolContext]] = []

    def look_up(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        ran.append((arguments, context))
        return ToolResult({"ok": True, "saldo": "350.00"})

    tools = builtin_tools()
    tools.register(
        Tool(
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
    )
    script = [ToolCallTurn("consultar_saldo", '{"cuenta": "C001"}', pieces=3), AudioTurn(REPLY, "Su saldo es 350.")]
    box = boxes(script, tools=tools)
    channel_id, _call, leg = box.call_in()
    session = box.session()
    [output] = session.wait_for_client_event("conversation.item.create", timeout=TIMEOUT)
    # The fake refuses an output sent before its call's response.done (invalid_tool_call_id), as the real API.
    assert output["item"]["type"] == "function_call_output"
    assert json.loads(output["item"]["output"]) == {"ok": True, "saldo": "350.00"}
    leg.wait_heard(lambda heard: pcmu(heard) == padded(REPLY), TIMEOUT)  # the reply that follows the output
    assert session.server_events("error") == []
    assert len(session.client_events("response.create")) == 2  # the greeting's, then the one after the output
    assert ran == [({"cuenta": "C001"}, ToolContext(call_id=channel_id, caller=CALLER, did=DID))]
    tool_calls = wait_for(
        lambda: box.records.get_call(channel_id)["tool_calls"],  # type: ignore[index]
        "the tool call's record",
    )
    assert [(call["name"], call["arguments"], call["ok"]) for call in tool_calls] == [
        ("consultar_saldo", {"cuenta": "C001"}, True)
    ]


@pytest.mark.parametrize(
    ("tool", "outcome"),
    [("transferir_a_operador", Outcome.TRANSFERRED), ("finalizar_llamada", Outcome.COMPLETED)],
)
def test_the_last_words_are_waited_for_while_the_tools_output_is_still_being_sent(
    boxes: Callable[..., Box], tool: str, outcome: Outcome, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the tool's result (a transfer or hang-up to come) and the response.create after its output, nothing
    is queued and no reply is active yet: the call must not move on in that gap, or the caller loses the
    assistant's last words. The gap is made long here (the tool's record takes 0.5 s to hand over); on a busy
    machine it was a thread switch, and a CI run caught the transfer firing in it, the goodbye never played."""
    original = QueuedRecords.add_tool_call

    def slow(self: QueuedRecords, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.5)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(QueuedRecords, "add_tool_call", slow)
    goodbye = OTHER[8000:12000]
    box = boxes([ToolCallTurn(tool, "{}", pieces=1), AudioTurn(goodbye, "Hasta luego.")])
    channel_id, _call, leg = box.call_in()
    record = box.ended(channel_id)
    assert record["outcome"] == outcome
    assert pcmu(leg.heard) == padded(goodbye)


@pytest.mark.parametrize(
    ("tool", "outcome"),
    [("transferir_a_operador", Outcome.TRANSFERRED), ("finalizar_llamada", Outcome.COMPLETED)],
)
def test_the_assistants_last_words_play_whole_before_the_transfer_or_hang_up(
    boxes: Callable[..., Box], tool: str, outcome: Outcome
) -> None:
    goodbye = OTHER[8000:12000]  # 0.5 s, sent 4 times faster than it plays: most of it waits in the queue
    box = boxes([ToolCallTurn(tool, "{}", pieces=1), AudioTurn(goodbye, "Hasta luego.")])
    channel_id, _call, leg = box.call_in()
    record = box.ended(channel_id)
    assert record["outcome"] == outcome
    heard = leg.heard
    assert pcmu(heard) == padded(goodbye)  # every word, before the call moved on
    if outcome is Outcome.TRANSFERRED:
        [moved] = box.asterisk.requests_to("POST", f"/ari/channels/{channel_id}/continue")
        assert box.continues(channel_id) == [(OPERATOR, "s", 1)]
    else:
        [moved] = box.asterisk.requests_to("DELETE", f"/ari/channels/{channel_id}")
        assert channel_id not in box.asterisk.channels
    assert moved.at > heard[-1].arrival  # after the last frame reached the caller


def test_the_builtin_tools_ask_for_their_action() -> None:
    tools = builtin_tools()
    context = ToolContext(call_id="1732543387.12", caller=CALLER, did=DID)
    assert tools.run("transferir_a_operador", '{"motivo": "pide una persona"}', context).action is ToolAction.TRANSFER
    assert tools.run("finalizar_llamada", "{}", context).action is ToolAction.HANG_UP
    assert [action.value for action in ToolAction] == ["transfer", "hangup"]  # stored in no record, but logged


# --- Failures ------------------------------------------------------------------------------------------------


def test_an_error_event_and_the_close_after_it_fail_over_once(boxes: Callable[..., Box]) -> None:
    box = boxes([AudioTurn(LONG_GREETING, "Un saludo largo.")], pace=1.0)
    channel_id, _call, leg = box.call_in()
    session = box.session()
    leg.wait_heard(lambda heard: len(heard) >= 5, TIMEOUT)
    box.realtime.inject_error("server_error")  # a failure on the server's side...
    box.realtime.expire_sessions(60)  # ...and the connection closing right after it (1001)
    record = box.ended(channel_id)
    session.wait_closed(TIMEOUT)
    assert (record["outcome"], record["detail"]) == (Outcome.REALTIME_FAILED, "Realtime error: server_error")
    assert box.continues(channel_id) == [(FAILOVER, "s", 1)]  # once, to the failover context
    variables = box.asterisk.requests_to("POST", f"/ari/channels/{channel_id}/variable")
    assert [(r.query["variable"], r.query["value"]) for r in variables] == [
        (FAILOVER_REASON_VARIABLE, FailoverReason.REALTIME_ERROR)  # the first cause, not the close after it
    ]
    assert box.asterisk.channels[channel_id].variables == {FAILOVER_REASON_VARIABLE: "realtime_error"}


def test_a_session_that_cannot_open_sends_the_ringing_caller_to_the_failover_context(boxes: Callable[..., Box]) -> None:
    """The session is opened while the phone rings: the caller who cannot have the assistant is never answered
    into silence, and the failover context's notice is the first thing they hear."""
    box = boxes([AudioTurn(GREETING, "Hola.")], faults=Faults(refuse=True))
    channel_id = box.dial()
    record = box.ended(channel_id)
    assert record["outcome"] == Outcome.REALTIME_FAILED
    assert record["detail"].startswith("Realtime unavailable: HTTP 503")
    assert box.continues(channel_id) == [(FAILOVER, "s", 1)]
    assert box.asterisk.channels[channel_id].variables == {FAILOVER_REASON_VARIABLE: "realtime_unreachable"}
    assert box.asterisk.channels[channel_id].rang
    assert box.asterisk.requests_to("POST", f"/ari/channels/{channel_id}/answer") == []  # the dialplan answers
    assert box.asterisk.bridges == {}  # nothing was set up for the assistant
    assert record["answered_at"] is None


def test_with_hangup_on_failure_the_caller_is_hung_up(boxes: Callable[..., Box]) -> None:
    box = boxes([AudioTurn(LONG_GREETING, "Un saludo largo.")], pace=1.0, ON_REALTIME_FAILURE="hangup")
    channel_id, _call, leg = box.call_in()
    leg.wait_heard(lambda heard: len(heard) >= 5, TIMEOUT)
    box.realtime.expire_sessions(60)
    record = box.ended(channel_id)
    assert record["outcome"] == Outcome.REALTIME_FAILED
    assert "1001" in record["detail"]
    assert box.asterisk.requests_to("DELETE", f"/ari/channels/{channel_id}")
    assert box.continues(channel_id) == []


def test_the_transfers_own_stasis_end_is_not_a_hang_up(
    boxes: Callable[..., Box], caplog: pytest.LogCaptureFixture
) -> None:
    """Asterisk sends StasisEnd as the channel leaves for the dialplan, which may be handled before the
    continue request returns: the call must end as transferred, not as hung up by the caller."""
    box = boxes([ToolCallTurn("transferir_a_operador", "{}", pieces=1), AudioTurn(REPLY, "Le transfiero.")])
    box.asterisk.slow("POST", "/ari/channels/*/continue", 1.0)  # StasisEnd at once, the answer a second later
    with caplog.at_level(logging.INFO, logger="centralita"):
        channel_id, _call, _leg = box.call_in()
        record = box.ended(channel_id)

        def ended() -> list[logging.LogRecord]:  # logged just after the record is written
            return [r for r in caplog.records if r.getMessage().startswith(f"{Event.CALL_ENDED}: ")]

        wait_for(ended, "the call ended line")
    assert record["outcome"] == Outcome.TRANSFERRED
    assert [r.getMessage() for r in ended()] == [f"{Event.CALL_ENDED}: outcome=transferred"]
    assert ended()[0].threadName == f"hangup-{channel_id}"  # the race did happen: StasisEnd ended the call
    assert box.continues(channel_id) == [(OPERATOR, "s", 1)]


def test_a_channel_not_yet_in_stasis_is_added_to_the_bridge_again(boxes: Callable[..., Box]) -> None:
    """A busy Asterisk puts the ExternalMedia channel into the Stasis app just after answering the request that
    created it: the add that comes first is refused with 422, and the call must not end for that."""
    box = boxes([AudioTurn(GREETING, "Hola.")])
    box.asterisk.fail("POST", "/ari/bridges/*/addChannel", 422, "Channel not in Stasis application", times=2)
    channel_id, call, leg = box.call_in()
    leg.wait_heard(lambda heard: len(heard) >= 5, TIMEOUT)  # the greeting plays
    adds = box.asterisk.requests_to("POST", "/ari/bridges/*/addChannel")
    assert len(adds) == 4  # two refused, then the caller's channel and the media channel
    assert call.state.bridge_id is not None
    assert set(box.asterisk.bridges[call.state.bridge_id].channels) == {channel_id, f"{channel_id}-media"}
    record = box.records.get_call(channel_id)
    assert record is not None
    assert record["ended_at"] is None


def test_a_channel_that_never_reaches_stasis_ends_the_call_with_an_error(boxes: Callable[..., Box]) -> None:
    box = boxes([AudioTurn(GREETING, "Hola.")])
    box.asterisk.fail("POST", "/ari/bridges/*/addChannel", 422, "Channel not in Stasis application", times=10**6)
    channel_id = box.dial()
    record = box.ended(channel_id)
    assert record["outcome"] == Outcome.ERROR
    assert "Channel not in Stasis application" in record["detail"]
    assert len(box.asterisk.requests_to("POST", "/ari/bridges/*/addChannel")) > 2  # tried again, then gave up
    assert box.continues(channel_id) == [(FAILOVER, "s", 1)]  # the caller is not dropped: notice, then a person
    assert box.asterisk.channels[channel_id].variables == {FAILOVER_REASON_VARIABLE: "call_setup_failed"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/ari/channels/*/ring"),
        ("POST", "/ari/channels/*/answer"),
        ("POST", "/ari/bridges"),
        ("POST", "/ari/channels/externalMedia"),
    ],
    ids=["ring", "answer", "bridge", "external-media"],
)
def test_a_call_asterisk_will_not_set_up_goes_to_the_failover_context(
    boxes: Callable[..., Box], method: str, path: str
) -> None:
    """Not a Realtime failure, but the caller must not be hung up either: the failover context's notice (reason
    ``call_setup_failed``), then the operator; whatever was created for the call is released."""
    box = boxes([AudioTurn(GREETING, "Hola.")])
    box.asterisk.fail(method, path, 500, "Internal Server Error")
    channel_id = box.dial()
    record = box.ended(channel_id)
    assert record["outcome"] == Outcome.ERROR
    assert record["detail"].startswith(f"call setup failed: ARI {method} {path.removeprefix('/ari')}".split("*")[0])
    assert box.continues(channel_id) == [(FAILOVER, "s", 1)]
    assert box.asterisk.channels[channel_id].variables == {FAILOVER_REASON_VARIABLE: "call_setup_failed"}
    assert box.asterisk.requests_to("DELETE", f"/ari/channels/{channel_id}") == []  # never hung up
    assert box.asterisk.bridges == {}
    assert f"{channel_id}-media" not in box.asterisk.channels
    if not path.endswith("/ring"):  # (a channel that cannot ring gets no session at all)
        box.session().wait_closed(TIMEOUT)  # the session opened while it rang is closed, not leaked


def test_with_hangup_on_failure_a_call_that_cannot_be_set_up_is_hung_up(boxes: Callable[..., Box]) -> None:
    box = boxes([AudioTurn(GREETING, "Hola.")], ON_REALTIME_FAILURE="hangup")
    box.asterisk.fail("POST", "/ari/bridges", 500, "Internal Server Error")
    channel_id = box.dial()
    record = box.ended(channel_id)
    assert record["outcome"] == Outcome.ERROR
    assert record["detail"].startswith("call setup failed: ")
    assert box.asterisk.requests_to("DELETE", f"/ari/channels/{channel_id}")
    assert box.continues(channel_id) == []


def test_a_setup_that_fails_after_the_session_failed_leaves_the_caller_to_the_failover_it_began(
    boxes: Callable[..., Box], caplog: pytest.LogCaptureFixture
) -> None:
    """The session fails while Asterisk answers (the failover claims the caller), then the bridge cannot be
    created: the caller is being handed on already, so the setup's failure neither hangs up nor sends the caller
    on a second time; the reason stays the first one."""
    box = boxes([AudioTurn(GREETING, "Hola.")])
    box.asterisk.slow("POST", "/ari/channels/*/answer", 1.0)
    box.asterisk.fail("POST", "/ari/bridges", 500, "Internal Server Error")
    channel_id = box.dial()
    wait_for(lambda: box.asterisk.requests_to("POST", f"/ari/channels/{channel_id}/answer"), "the answer request")
    with caplog.at_level(logging.WARNING, logger="centralita"):
        box.realtime.inject_error("server_error")  # while the answer is on its way
        record = box.ended(channel_id)
        assert (record["outcome"], record["detail"]) == (Outcome.REALTIME_FAILED, "Realtime error: server_error")
        handed_on = wait_for(
            lambda: [r for r in caplog.records if "the caller is being handed on already" in r.getMessage()],
            "the setup's failure, seen as a caller handed on already",
        )
    assert "ARI POST /bridges failed: 500" in handed_on[0].getMessage()
    assert box.continues(channel_id) == [(FAILOVER, "s", 1)]
    assert box.asterisk.channels[channel_id].variables == {FAILOVER_REASON_VARIABLE: "realtime_error"}
    assert box.asterisk.requests_to("DELETE", f"/ari/channels/{channel_id}") == []


def test_a_transfer_asterisk_refuses_hangs_up_with_an_error(boxes: Callable[..., Box]) -> None:
    box = boxes([ToolCallTurn("transferir_a_operador", "{}", pieces=1), AudioTurn(REPLY, "Le transfiero.")])
    box.asterisk.fail("POST", "/ari/channels/*/continue", 500, "Internal Server Error")
    channel_id, _call, _leg = box.call_in()
    record = box.ended(channel_id)
    assert record["outcome"] == Outcome.ERROR
    assert record["detail"].startswith(f"{Event.TRANSFER_FAILED}: ARI POST /channels/{channel_id}/continue failed")
    assert box.asterisk.requests_to("DELETE", f"/ari/channels/{channel_id}")


def test_stopping_the_service_hands_the_caller_to_the_operator(boxes: Callable[..., Box]) -> None:
    box = boxes([AudioTurn(LONG_GREETING, "Un saludo largo.")], pace=1.0)
    channel_id, _call, leg = box.call_in()
    leg.wait_heard(lambda heard: len(heard) >= 5, TIMEOUT)
    box.service.stop()
    record = box.ended(channel_id)
    assert (record["outcome"], record["detail"]) == (Outcome.SERVICE_STOPPED, "service stopping")
    assert box.continues(channel_id) == [(OPERATOR, "s", 1)]


def test_stopping_waits_for_a_call_that_is_ending_on_its_own(boxes: Callable[..., Box]) -> None:
    """A caller hung up just before the service stopped: stop() must not return (and let the records be
    closed) before that call has ended and written its record."""
    box = boxes([AudioTurn(GREETING, "Hola.")])
    channel_id, call, leg = box.call_in()
    leg.wait_heard(lambda heard: len(heard) >= 5, TIMEOUT)
    box.asterisk.slow("DELETE", f"/ari/channels/{call.state.media_channel_id}", 1.0)  # the call ends slowly
    box.asterisk.hang_up(channel_id)
    wait_for(lambda: call.state.ended.is_set(), "the call to start ending")
    box.service.stop()
    record = box.records.get_call(channel_id)  # read at once: stop() returned, so the call has ended
    assert record is not None
    assert (record["outcome"], bool(record["ended_at"])) == (Outcome.HUNG_UP_BY_CALLER, True)
    assert box.service.active_calls == 0


# --- Ending -------------------------------------------------------------------------------------------------


def test_end_releases_everything_the_call_held(boxes: Callable[..., Box]) -> None:
    box = boxes([AudioTurn(GREETING, "Hola.")])
    before = set(threading.enumerate())
    channel_id, call, leg = box.call_in()
    session = box.session()
    leg.wait_heard(lambda heard: len(pcmu(heard)) >= len(padded(GREETING)), TIMEOUT)
    port = call.rtp_port
    assert port is not None
    media_id = call.state.media_channel_id
    bridge_id = call.state.bridge_id
    assert media_id in box.asterisk.channels
    assert bridge_id in box.asterisk.bridges
    assert box.service.paced_streams == 1

    box.asterisk.hang_up(channel_id)  # the caller hangs up
    record = box.ended(channel_id)
    assert record["outcome"] == Outcome.HUNG_UP_BY_CALLER
    wait_for(lambda: box.service.call(channel_id) is None and box.service.active_calls == 0, "the call forgotten")

    def call_threads() -> list[str]:
        return [
            thread.name
            for thread in threading.enumerate()
            if thread not in before and (channel_id in thread.name or thread.name.startswith("realtime"))
        ]

    wait_for(lambda: not call_threads(), "the call's threads to end")
    session.wait_closed(TIMEOUT)  # its WebSocket
    assert session.close_code == 1000
    assert bridge_id not in box.asterisk.bridges  # the mixing bridge destroyed
    assert media_id not in box.asterisk.channels  # the ExternalMedia channel hung up
    assert box.asterisk.requests_to("DELETE", f"/ari/bridges/{bridge_id}")
    assert box.asterisk.requests_to("DELETE", f"/ari/channels/{media_id}")
    wait_for(lambda: box.service.paced_streams == 0, "the pacer stream to go")
    assert call.state.ended.is_set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", port))  # the call's UDP port is free again


def test_an_outbound_call_is_recorded_with_its_campaign(
    boxes: Callable[..., Box], asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    dialer = DialerSettings.from_values(
        {"DIALER_TIMEZONE": "America/Mexico_City", "DIALER_DB_PATH": str(tmp_path / "dialer.db")}
    )
    clock = Clock()
    with CampaignStore(tmp_path / "dialer.db", clock=clock) as store:
        store.ensure_campaign("marzo")
        store.upsert_targets("marzo", [target(7)])
        store.start_campaign("marzo")
        originator = RecordingOriginator()
        Runner(store, originator, config(), clock=clock, owner="test").tick()
    [placed] = originator.placed
    outbound = OutboundCalls(dialer)
    try:
        box = boxes([AudioTurn(GREETING, "Buenos días.")], outbound=outbound)
        # The customer answered; the dialplan hands the channel to the app with the attempt id.
        arguments = ("outbound", str(placed.attempt_id))
        asterisk.incoming_call(APP, arguments, caller="5550000", channel_id=placed.channel_id)
        leg = asterisk.leg_of(placed.channel_id, TIMEOUT)
        leg.wait_heard(lambda heard: len(pcmu(heard)) >= len(padded(GREETING)), TIMEOUT)
        call = box.service.call(placed.channel_id)
        assert call is not None
        assert (call.state.campaign, call.state.attempt_id) == ("marzo", placed.attempt_id)
        asterisk.hang_up(placed.channel_id)
        record = box.ended(placed.channel_id)
    finally:
        outbound.close()
    assert (record["direction"], record["caller"], record["callee"], record["campaign"]) == (
        "outbound",
        "5550000",  # the caller ID the dialer presented
        placed.number,  # the customer's number
        "marzo",
    )
    assert record["outcome"] == Outcome.HUNG_UP_BY_CALLER


def test_a_call_needs_the_fields_of_its_direction(tmp_path: Path) -> None:
    common: dict[str, Any] = {
        "settings": Settings.from_values({"OPENAI_API_KEY": "sk-x", "ARI_PASSWORD": "x"}),
        "rest": None,
        "records": None,
        "tools": ToolRegistry(),
        "instructions": "",
    }
    with pytest.raises(ValueError, match="a campaign and an attempt id are required"):
        Call(channel_id="c1", direction="outbound", caller="", callee="555", **common)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="only an outbound call has a campaign"):
        Call(channel_id="c2", direction="inbound", caller="555", callee=DID, campaign="marzo", **common)  # type: ignore[arg-type]
