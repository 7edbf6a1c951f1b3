"""The bridge's Realtime client: event builders, ToolCallAssembler, and RealtimeConnection against the fake
server over real sockets, including every fault as production would meet it."""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import websocket

from centralita.config.bridge import Secret
from centralita.realtime.connection import (
    CloseInfo,
    RealtimeConnection,
    RealtimeError,
    RealtimeRejected,
    RealtimeServerError,
    RealtimeTimeout,
    RealtimeUnreachable,
)
from centralita.realtime.events import (
    PCM24K,
    PCMU,
    TurnDetection,
    audio_append,
    audio_from_deltas,
    function_call_output,
    function_tool,
    realtime_url,
    response_cancel,
    response_create,
    session_update,
    truncate,
)
from centralita.realtime.tool_calls import ToolCall, ToolCallAssembler
from centralita.realtime.wire import FrameReader, client_frame
from centralita_testing.fake_realtime import (
    DEFAULT_API_KEY,
    AudioTurn,
    FakeRealtimeServer,
    Faults,
    ToolCallTurn,
    default_audio_dir,
)

SPEECH = (default_audio_dir() / "asistente_saludo.ulaw").read_bytes()
SILENCE_1S = b"\xff" * 8000
JsonObject = dict[str, Any]
TOOL = function_tool(
    "consultar_estado_servicio",
    "Estado de la línea del cliente",
    {"type": "object", "properties": {"telefono": {"type": "string"}}, "required": ["telefono"]},
)


def update(**kwargs: Any) -> JsonObject:
    """The session.update the bridge would send, with a short VAD silence so tests run fast."""
    return session_update(
        instructions="Eres el asistente.",
        voice="marin",
        tools=[TOOL],
        turn_detection=TurnDetection(silence_duration_ms=800),
        **kwargs,
    )


class Events:
    """Collects what a RealtimeConnection delivers, for a test thread to wait on."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self.events: list[JsonObject] = []
        self.closes: list[CloseInfo] = []

    def __call__(self, event: JsonObject) -> None:
        with self._condition:
            self.events.append(event)
            self._condition.notify_all()

    def closed(self, info: CloseInfo) -> None:
        with self._condition:
            self.closes.append(info)
            self._condition.notify_all()

    def of(self, event_type: str) -> list[JsonObject]:
        with self._condition:
            return [e for e in self.events if e["type"] == event_type]

    def wait_for(self, event_type: str, count: int = 1, timeout: float = 5.0) -> list[JsonObject]:
        with self._condition:
            ok = self._condition.wait_for(lambda: len(self.of(event_type)) >= count, timeout)
            assert ok, f"no {count} x {event_type}; got {[e['type'] for e in self.events]}"
            return self.of(event_type)

    def wait_closed(self, timeout: float = 5.0) -> CloseInfo:
        with self._condition:
            assert self._condition.wait_for(lambda: bool(self.closes), timeout), "the connection did not end"
            return self.closes[0]


def connection(server: FakeRealtimeServer, events: Events, **kwargs: Any) -> RealtimeConnection:
    return RealtimeConnection(
        server.url(),
        Secret(kwargs.pop("key", server.api_key)),
        on_event=events,
        on_close=events.closed,
        ping_interval=kwargs.pop("ping_interval", 5.0),
        ping_timeout=kwargs.pop("ping_timeout", 2.0),
        **kwargs,
    )


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def fds_back_to(expected: int) -> bool:
    """Whether the open file descriptors return to ``expected`` (the fake server, in this same process,
    closes its side of a connection a moment after the client)."""
    for _ in range(100):
        if open_fds() == expected:
            return True
        threading.Event().wait(0.02)
    return False


def realtime_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "realtime-receive"]


@pytest.fixture
def server() -> Iterator[FakeRealtimeServer]:
    with FakeRealtimeServer(pace=0) as running:
        yield running


# --- Client events ---


def test_session_update_is_the_ga_shape_with_pcmu_both_ways() -> None:
    event = session_update(instructions="Hola", voice="cedar", tools=[TOOL], model="gpt-realtime")
    assert event["type"] == "session.update"
    session = event["session"]
    assert session["type"] == "realtime"
    assert session["model"] == "gpt-realtime"
    assert session["output_modalities"] == ["audio"]
    assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["output"] == {"format": {"type": "audio/pcmu"}, "voice": "cedar"}
    detection = session["audio"]["input"]["turn_detection"]
    assert detection["type"] == "server_vad"
    assert (detection["create_response"], detection["interrupt_response"]) == (True, True)
    assert session["tools"] == [TOOL]
    beta = {"modalities", "voice", "input_audio_format", "output_audio_format", "turn_detection", "temperature"}
    assert beta.isdisjoint(session)


def test_nested_chat_completions_tools_are_refused() -> None:
    with pytest.raises(ValueError, match="flat"):
        session_update(instructions="", voice="marin", tools=[{"type": "function", "function": {"name": "x"}}])


def test_the_other_builders() -> None:
    append = audio_append(b"\x00\xff")
    assert append["type"] == "input_audio_buffer.append"
    assert base64.b64decode(append["audio"]) == b"\x00\xff"
    output = function_call_output("call_1", '{"ok": true}')
    assert output["item"] == {"type": "function_call_output", "call_id": "call_1", "output": '{"ok": true}'}
    assert output["type"] == "conversation.item.create"
    assert response_create()["type"] == "response.create"
    assert "response_id" not in response_cancel()
    assert response_cancel("resp_1")["response_id"] == "resp_1"
    cut = truncate("item_1", 1200)
    assert {k: cut[k] for k in ("type", "item_id", "content_index", "audio_end_ms")} == {
        "type": "conversation.item.truncate",
        "item_id": "item_1",
        "content_index": 0,
        "audio_end_ms": 1200,
    }
    with pytest.raises(ValueError, match="audio_end_ms"):
        truncate("item_1", -1)
    assert audio_append(b"")["event_id"] != audio_append(b"")["event_id"]


def test_realtime_url_sets_the_model() -> None:
    assert realtime_url("wss://api.openai.com/v1/realtime", "gpt-realtime") == (
        "wss://api.openai.com/v1/realtime?model=gpt-realtime"
    )
    assert realtime_url("ws://h:1/v1/realtime?model=old&x=1", "new") == "ws://h:1/v1/realtime?x=1&model=new"


# --- ToolCallAssembler ---


def tool_events(response_id: str, item_id: str, call_id: str, arguments: str, pieces: int) -> list[JsonObject]:
    size = -(-len(arguments) // pieces)
    added = {
        "type": "response.output_item.added",
        "response_id": response_id,
        "item": {"id": item_id, "type": "function_call", "call_id": call_id, "name": "consultar"},
    }
    ids = {"response_id": response_id, "item_id": item_id, "call_id": call_id}
    deltas = [
        {"type": "response.function_call_arguments.delta", **ids, "delta": arguments[i : i + size]}
        for i in range(0, len(arguments), size)
    ]
    done = {"type": "response.function_call_arguments.done", **ids, "name": "consultar", "arguments": arguments}
    return [added, *deltas, done]


def response_done(response_id: str, status: str = "completed") -> JsonObject:
    return {"type": "response.done", "response": {"id": response_id, "status": status}}


def test_assembler_joins_deltas_and_holds_the_output_until_response_done() -> None:
    assembler = ToolCallAssembler()
    arguments = '{"telefono": "+34600000000"}'
    completed: list[ToolCall] = []
    for event in tool_events("resp_1", "item_1", "call_1", arguments, 4):
        update_ = assembler.feed(event)
        completed.extend(update_.completed)
        assert update_.ready == ()
    assert completed == [ToolCall("call_1", "item_1", "resp_1", "consultar", arguments)]
    assert completed[0].parsed_arguments() == {"telefono": "+34600000000"}

    assert assembler.submit("call_1", '{"estado": "ok"}') == ()  # response.done not seen yet: held
    ready = assembler.feed(response_done("resp_1")).ready
    assert [e["type"] for e in ready] == ["conversation.item.create", "response.create"]
    assert ready[0]["item"] == {"type": "function_call_output", "call_id": "call_1", "output": '{"estado": "ok"}'}


def test_assembler_output_after_response_done_is_released_at_once() -> None:
    assembler = ToolCallAssembler()
    for event in tool_events("resp_1", "item_1", "call_1", "{}", 1):
        assembler.feed(event)
    assert assembler.feed(response_done("resp_1")).ready == ()  # no output yet
    ready = assembler.submit("call_1", "ok")
    assert [e["type"] for e in ready] == ["conversation.item.create", "response.create"]
    assert assembler.submit("call_1", "again") == ()  # de-duplicated


def test_assembler_deduplicates_by_call_id() -> None:
    assembler = ToolCallAssembler()
    events = tool_events("resp_1", "item_1", "call_1", '{"a": 1}', 2)
    assert len([c for e in events for c in assembler.feed(e).completed]) == 1
    assert assembler.feed(events[-1]).completed == ()  # the same .done again: not run twice
    with pytest.raises(KeyError):
        assembler.submit("call_unknown", "x")


def test_assembler_waits_for_every_call_of_a_response_then_one_response_create() -> None:
    assembler = ToolCallAssembler()
    for event in [
        *tool_events("resp_1", "item_1", "call_1", '{"a": 1}', 2),
        *tool_events("resp_1", "item_2", "call_2", '{"b": 2}', 3),
    ]:
        assembler.feed(event)
    assert assembler.feed(response_done("resp_1")).ready == ()
    assert assembler.submit("call_2", "dos") == ()
    ready = assembler.submit("call_1", "uno")
    assert [e["type"] for e in ready] == ["conversation.item.create", "conversation.item.create", "response.create"]
    assert {e["item"]["call_id"] for e in ready[:2]} == {"call_1", "call_2"}


def test_assembler_drops_calls_of_a_cancelled_response() -> None:
    assembler = ToolCallAssembler()
    (call,) = [c for e in tool_events("resp_1", "item_1", "call_1", "{}", 1) for c in assembler.feed(e).completed]
    assert assembler.feed(response_done("resp_1", "cancelled")).ready == ()
    assert assembler.submit(call.call_id, "late") == ()  # the tool finished after a barge-in: dropped


# --- RealtimeConnection ---


def test_handshake_in_order_and_session_info(server: FakeRealtimeServer) -> None:
    events = Events()
    with connection(server, events) as conn:
        info = conn.connect(update())
        assert (info.input_format, info.output_format) == (PCMU, PCMU)
        assert info.output_format_honoured
        assert info.model == "gpt-realtime"
        assert info.session_id.startswith("sess_")
        record = server.wait_for_session()
        sent = record.server_events()
        assert [e["type"] for e in sent[:2]] == ["session.created", "session.updated"]
        client_events = record.client_events()
        assert [e["type"] for e in client_events] == ["session.update"]
        assert client_events[0]["session"]["tools"] == [TOOL]
        assert not any(name.lower() == "openai-beta" for name in record.headers)
    assert events.wait_closed().clean


def test_close_leaves_no_thread_and_no_socket(server: FakeRealtimeServer) -> None:
    fds = open_fds()
    events = Events()
    conn = connection(server, events)
    conn.connect(update())
    assert len(realtime_threads()) == 1
    assert conn.is_open
    conn.close()
    assert realtime_threads() == []
    assert not conn.is_open
    assert fds_back_to(fds)
    info = conn.close_info
    assert info is not None
    assert (info.code, info.by_client) == (1000, True)
    record = server.sessions()[0]
    record.wait_closed()
    assert record.close_code == 1000
    conn.close()  # twice is harmless
    with pytest.raises(RealtimeError, match="not open"):
        conn.send(response_create())


def test_close_from_an_event_handler_on_the_receive_thread_ends_the_connection(server: FakeRealtimeServer) -> None:
    # A handler that closes the connection runs on the receive thread: close() must not join that thread (a
    # RuntimeError, and a connection never torn down), it lets the thread end as it returns.
    events = Events()
    errors: list[BaseException] = []
    holder: list[RealtimeConnection] = []

    def close_on_first_event(event: JsonObject) -> None:
        events(event)
        if len(events.events) == 1:
            try:
                holder[0].close(timeout=2.0)
            except BaseException as error:  # what a handler raised is the failure under test
                errors.append(error)

    conn = RealtimeConnection(
        server.url(),
        Secret(server.api_key),
        on_event=close_on_first_event,
        on_close=events.closed,
        ping_interval=5.0,
        ping_timeout=2.0,
    )
    holder.append(conn)
    conn.connect(update())
    conn.send(response_create())
    info = events.wait_closed()
    assert errors == []
    assert (info.code, info.by_client) == (1000, True)
    for thread in realtime_threads():
        thread.join(5)
    assert realtime_threads() == []
    assert not conn.is_open


def test_speech_in_scripted_audio_out(server: FakeRealtimeServer) -> None:
    events = Events()
    with connection(server, events) as conn:
        conn.connect(update())
        audio = SPEECH + SILENCE_1S
        for start in range(0, len(audio), 160):  # 20 ms frames, as the bridge forwards RTP
            conn.send(audio_append(audio[start : start + 160]))
        events.wait_for("response.done")
        assert len(events.of("input_audio_buffer.speech_started")) == 1
        assert len(events.of("input_audio_buffer.speech_stopped")) == 1
        assert audio_from_deltas(events.events) == SPEECH
        assert server.sessions()[0].audio == audio
    assert realtime_threads() == []


def test_send_audio_is_the_append_event_and_the_fake_echoes_it_back() -> None:
    events = Events()
    with FakeRealtimeServer(echo=True) as echo, connection(echo, events) as conn:
        conn.connect(update())
        conn.send(response_create())
        events.wait_for("response.content_part.added")
        frames = [SPEECH[start : start + 160] for start in range(0, 20 * 160, 160)]
        for frame in frames:
            conn.send_audio(frame)
        events.wait_for("response.output_audio.delta", count=len(frames))
        assert audio_from_deltas(events.events) == b"".join(frames)
        appends = echo.sessions()[0].client_events("input_audio_buffer.append")
        assert [set(event) for event in appends] == [{"type", "event_id", "audio"}] * len(frames)
        assert [base64.b64decode(event["audio"]) for event in appends] == frames
        assert all(len(event["event_id"]) == len(audio_append(b"")["event_id"]) for event in appends)
        assert len({event["event_id"] for event in appends}) == len(frames)


def test_tool_call_output_is_sent_only_after_response_done() -> None:
    script = (
        ToolCallTurn(name="consultar_estado_servicio", arguments='{"telefono": "+34600000000"}', pieces=5),
        AudioTurn(audio=SPEECH[:3200], transcript="Su línea funciona."),
    )
    with FakeRealtimeServer(pace=0, script=script, tool_done_delay_ms=200) as server:
        events = Events()
        assembler = ToolCallAssembler()

        def on_event(event: JsonObject) -> None:
            events(event)
            update_ = assembler.feed(event)
            for call in update_.completed:  # the tool answers at once, long before response.done
                for ready in assembler.submit(call.call_id, json.dumps({"estado": "activo"})):
                    conn.send(ready)
            for ready in update_.ready:
                conn.send(ready)

        conn = RealtimeConnection(server.url(), server.api_key, on_event=on_event, ping_interval=5, ping_timeout=2)
        with conn:
            conn.connect(update())
            conn.send(response_create())
            events.wait_for("response.done", count=2)
            assert audio_from_deltas(events.events) == SPEECH[:3200]
            assert events.of("error") == []
            record = server.sessions()[0]
            deltas = record.server_events("response.function_call_arguments.delta")
            assert len(deltas) == 5
            outputs = record.client_events("conversation.item.create")
            assert len(outputs) == 1
            assert outputs[0]["item"]["call_id"] == deltas[0]["call_id"]
            # Order on the server: the call's response.done, then the output, then response.create.
            order = [e["type"] for e in record.client_events()]
            assert order == ["session.update", "response.create", "conversation.item.create", "response.create"]


def test_barge_in_then_truncate_through_the_connection() -> None:
    with FakeRealtimeServer(pace=1.0) as server:
        events = Events()
        with connection(server, events) as conn:
            conn.connect(update())
            conn.send(response_create())
            first = events.wait_for("response.output_audio.delta")[0]
            for start in range(0, 8000, 160):
                conn.send(audio_append(SPEECH[start : start + 160]))
            done = events.wait_for("response.done")[0]["response"]
            assert (done["status"], done["status_details"]["reason"]) == ("cancelled", "turn_detected")
            received_ms = len(audio_from_deltas(events.events)) // 8
            conn.send(truncate(first["item_id"], received_ms + 1000))
            assert events.wait_for("error")[0]["error"]["param"] == "audio_end_ms"
            conn.send(truncate(first["item_id"], received_ms))
            assert events.wait_for("conversation.item.truncated")[0]["audio_end_ms"] == received_ms


def test_wrong_key_is_rejected_and_the_key_never_logged(
    server: FakeRealtimeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = "sk-this-is-secret-123"
    with pytest.raises(RealtimeRejected) as caught:
        connection(server, Events(), key=key).connect(update())
    assert (caught.value.status, caught.value.code) == (401, "invalid_api_key")
    assert key not in str(caught.value)
    assert key not in caplog.text
    assert DEFAULT_API_KEY not in caplog.text
    assert realtime_threads() == []


def test_a_beta_session_is_refused_by_the_server(server: FakeRealtimeServer) -> None:
    audio = {"input": {"format": {"type": "audio/pcmu"}}, "output": {"format": {"type": "audio/pcmu"}}}
    beta: JsonObject = {
        "type": "session.update",
        "session": {"modalities": ["audio"], "input_audio_format": "g711_ulaw", "audio": audio},
    }
    fds = open_fds()
    with pytest.raises(RealtimeServerError) as caught:
        connection(server, Events()).connect(beta)
    assert caught.value.code == "beta_api_shape_disabled"
    assert fds_back_to(fds)


def test_fault_refuse_is_a_503_rejection(server: FakeRealtimeServer) -> None:
    server.faults = Faults(refuse=True)
    with pytest.raises(RealtimeRejected) as caught:
        connection(server, Events()).connect(update())
    assert caught.value.status == 503
    server.faults = Faults()  # changed at runtime: the next call gets through
    with connection(server, Events()) as conn:
        conn.connect(update())


def test_nothing_listening_is_unreachable() -> None:
    with FakeRealtimeServer() as server:
        url = server.url()
    conn = RealtimeConnection(url, "k", on_event=Events(), ping_interval=5, ping_timeout=2, open_timeout=2)
    with pytest.raises(RealtimeUnreachable):
        conn.connect(update())


def test_fault_delay_times_out_or_passes_depending_on_the_timeout(server: FakeRealtimeServer) -> None:
    server.faults = Faults(delay_ms=400)
    fds = open_fds()
    with pytest.raises(RealtimeTimeout, match=r"session\.created"):
        connection(server, Events(), session_timeout=0.1).connect(update())
    assert fds_back_to(fds)
    server.faults = Faults(delay_ms=100)
    with connection(server, Events(), session_timeout=3.0) as conn:
        assert conn.connect(update()).output_format == PCMU


def test_fault_drop_mid_response_is_an_abnormal_close() -> None:
    with FakeRealtimeServer(pace=0, faults=Faults(drop_after_deltas=4)) as server:
        events = Events()
        conn = connection(server, events)
        conn.connect(update())
        conn.send(response_create())
        info = events.wait_closed()
        assert info.code is None
        assert not info.clean
        assert not info.by_client
        assert info.error
        assert len(events.of("response.output_audio.delta")) == 4
        assert events.of("response.done") == []
        assert realtime_threads() == []
        with pytest.raises(RealtimeError):
            conn.send(response_create())
        conn.close()


def test_fault_error_event_is_delivered_and_the_call_goes_on() -> None:
    with FakeRealtimeServer(pace=0, faults=Faults(error_after_ms=300)) as server:
        events = Events()
        with connection(server, events) as conn:
            conn.connect(update())
            error = events.wait_for("error")[0]["error"]
            assert (error["type"], error["code"]) == ("server_error", "server_error")
            conn.send(response_create())
            assert events.wait_for("response.done")[0]["response"]["status"] == "completed"
            assert conn.close_info is None


def test_fault_session_length_limit_is_a_1001_close() -> None:
    with FakeRealtimeServer(pace=0, faults=Faults(close_after_s=0.5)) as server:
        events = Events()
        conn = connection(server, events)
        conn.connect(update())
        info = events.wait_closed()
        assert (info.code, info.by_client) == (1001, False)
        assert "maximum duration" in info.reason
        assert events.of("error")[0]["error"]["code"] == "session_expired"
        assert realtime_threads() == []
        conn.close()


def test_runtime_expiry_through_the_python_api(server: FakeRealtimeServer) -> None:
    events = Events()
    conn = connection(server, events)
    conn.connect(update())
    server.expire_sessions(3600)
    info = events.wait_closed()
    assert info.code == 1001
    assert "60 minutes" in info.reason
    conn.close()


def test_fault_ignore_output_format_is_reported_for_conversion() -> None:
    with FakeRealtimeServer(pace=0, faults=Faults(ignore_output_format=True)) as server:
        events = Events()
        with connection(server, events) as conn:
            info = conn.connect(update())
            assert info.requested_output_format == PCMU
            assert info.output_format == PCM24K
            assert not info.output_format_honoured
            conn.send(response_create())
            events.wait_for("response.done")
            assert len(audio_from_deltas(events.events)) == 6 * len(SPEECH)


def test_pings_keep_an_idle_connection_open(server: FakeRealtimeServer) -> None:
    events = Events()
    with connection(server, events, ping_interval=0.3, ping_timeout=0.25) as conn:
        conn.connect(update())
        threading.Event().wait(1.0)  # several ping/pong rounds
        assert conn.is_open
        assert conn.close_info is None


def test_ping_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="ping_interval"):
        RealtimeConnection("ws://x", "k", on_event=Events(), ping_interval=5, ping_timeout=5)


# --- WebSocket frames: the data frames the connection writes and reads itself ---


def server_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bytes = b"") -> bytes:
    """A frame as a server would send it (RFC 6455 section 5.2)."""
    length = len(payload)
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if mask else 0
    if length < 126:
        header = bytes([first, mask_bit | length])
    elif length < 1 << 16:
        header = bytes([first, mask_bit | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([first, mask_bit | 127]) + length.to_bytes(8, "big")
    if mask:
        payload = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    return header + mask + payload


def read_all(reader: FrameReader) -> list[tuple[int, bytes]]:
    frames = []
    while (frame := reader.next()) is not None:
        frames.append(frame)
    return frames


TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def test_frames_come_out_whole_however_the_bytes_arrive() -> None:
    big = json.dumps({"type": "x", "data": "a" * 70_000}).encode()  # a 64-bit length
    medium = b'{"type": "response.output_audio.delta", "delta": "' + b"A" * 300 + b'"}'  # a 16-bit length
    stream = (
        server_frame(TEXT, b'{"type": "a"}')
        + server_frame(TEXT, medium)
        + server_frame(PING, b"hi")
        + server_frame(TEXT, big)
        + server_frame(TEXT, b"masked", mask=b"\x01\x02\x03\x04")
    )
    expected = [(TEXT, b'{"type": "a"}'), (TEXT, medium), (PING, b"hi"), (TEXT, big), (TEXT, b"masked")]
    at_once = FrameReader()
    at_once.feed(stream)
    assert at_once.has_frame
    assert read_all(at_once) == expected
    assert not at_once.has_frame
    byte_by_byte, got = FrameReader(), []
    for index in range(len(stream)):
        byte_by_byte.feed(stream[index : index + 1])
        got.extend(read_all(byte_by_byte))
    assert got == expected


def test_a_fragmented_message_is_put_back_together_around_control_frames() -> None:
    reader = FrameReader()
    reader.feed(
        server_frame(TEXT, b'{"type": ', fin=False)
        + server_frame(PING, b"")
        + server_frame(CONT, b'"frag', fin=False)
        + server_frame(CONT, b'mented"}')
        + server_frame(BINARY, b"next")
    )
    assert read_all(reader) == [(PING, b""), (TEXT, b'{"type": "fragmented"}'), (BINARY, b"next")]


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (server_frame(CONT, b"orphan"), "continuation"),
        (server_frame(TEXT, b"a", fin=False) + server_frame(TEXT, b"b"), "inside a fragmented"),
        (bytes([0x80 | 0x40 | TEXT, 0]), "rsv"),
        (server_frame(0x3, b""), "opcode"),
        (server_frame(PING, b"x" * 126), "control frame"),
        (server_frame(PING, b"x", fin=False), "control frame"),
        (server_frame(CLOSE, b"x"), "close frame"),
    ],
)
def test_broken_frames_are_protocol_errors(stream: bytes, message: str) -> None:
    reader = FrameReader()
    reader.feed(stream)
    with pytest.raises(websocket.WebSocketProtocolException, match=message):
        read_all(reader)


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 100_003])
def test_client_frames_are_final_masked_text_frames(size: int) -> None:
    payload = bytes(index % 251 for index in range(size))
    frame = client_frame(payload)
    assert frame[0] == 0x81  # FIN, text
    assert frame[1] & 0x80  # masked
    length, offset = frame[1] & 0x7F, 2
    if length == 126:
        length, offset = int.from_bytes(frame[2:4], "big"), 4
    elif length == 127:
        length, offset = int.from_bytes(frame[2:10], "big"), 10
    assert length == size
    mask, masked = frame[offset : offset + 4], frame[offset + 4 :]
    assert bytes(byte ^ mask[index % 4] for index, byte in enumerate(masked)) == payload
    assert client_frame(payload)[offset : offset + 4] != mask or size == 0  # a fresh random key each time
