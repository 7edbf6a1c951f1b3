"""The bench's lean echo peer of the Realtime API: its WebSocket framing, and calls over real sockets.

The framing is checked on bytes built here by hand (RFC 6455), the protocol with a bare websocket-client,
and the whole with the bridge's own ``RealtimeConnection``, which must run a session against it.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import websocket

from centralita.realtime.connection import RealtimeConnection, RealtimeRejected
from centralita.realtime.events import realtime_url, response_create, session_update
from centralita_testing.echo_realtime import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    Deltas,
    EchoPeer,
    FrameReader,
    ProtocolError,
    accept_key,
    is_speech,
    server_frame,
    start_in_thread,
)

KEY = "sk-echo-test"
FRAME = 160


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bytes = b"\x11\x22\x33\x44") -> bytes:
    """A masked client frame, built by hand."""
    first = (0x80 if fin else 0) | opcode
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", first, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, length)
    masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    return header + mask + masked


def test_the_accept_key_is_rfc_6455s() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455, section 1.3


@pytest.mark.parametrize("length", [0, 125, 126, 65535, 65536])
def test_server_frames_carry_every_length_unmasked(length: int) -> None:
    payload = os.urandom(length)
    frame = server_frame(OP_BINARY, payload)
    assert frame[0] == 0x80 | OP_BINARY
    assert not frame[1] & 0x80  # never masked
    size, offset = frame[1] & 0x7F, 2
    if size == 126:
        size, offset = struct.unpack_from("!H", frame, 2)[0], 4
    elif size == 127:
        size, offset = struct.unpack_from("!Q", frame, 2)[0], 10
    assert (size, frame[offset:]) == (length, payload)


@pytest.mark.parametrize("length", [3, 125, 126, 70_000])
def test_client_frames_are_unmasked_even_fed_a_byte_at_a_time(length: int) -> None:
    payload = os.urandom(length)
    stream = client_frame(OP_TEXT, payload) + client_frame(OP_PING, b"hi")
    reader = FrameReader()
    messages = []
    for index in range(len(stream)):
        reader.feed(stream[index : index + 1])
        while (message := reader.next()) is not None:
            messages.append(message)
    assert messages == [(OP_TEXT, payload), (OP_PING, b"hi")]


def test_fragments_are_joined_and_control_frames_may_come_between() -> None:
    reader = FrameReader()
    reader.feed(
        client_frame(OP_TEXT, b'{"a": ', fin=False)
        + client_frame(OP_PING, b"x")
        + client_frame(0x0, b"1", fin=False)
        + client_frame(0x0, b"}")
    )
    assert reader.next() == (OP_PING, b"x")
    assert reader.next() == (OP_TEXT, b'{"a": 1}')
    assert reader.next() is None


@pytest.mark.parametrize(
    ("stream", "code", "words"),
    [
        (b"\x81\x02hi", 1002, "must be masked"),
        (client_frame(0x0, b"x"), 1002, "continuation"),
        (client_frame(OP_TEXT, b"a", fin=False) + client_frame(OP_TEXT, b"b"), 1002, "before the last one ended"),
        (client_frame(OP_PING, b"p", fin=False), 1002, "control frame"),
        (client_frame(0x3, b""), 1002, "unknown opcode"),
        (b"\xc1\x80" + b"\x00" * 4, 1002, "reserved bits"),
    ],
)
def test_protocol_errors_name_the_problem(stream: bytes, code: int, words: str) -> None:
    reader = FrameReader()
    reader.feed(stream)

    def read_all() -> None:
        while reader.next() is not None:
            pass

    with pytest.raises(ProtocolError, match=words) as raised:
        read_all()
    assert raised.value.code == code


def test_oversized_messages_are_refused_before_they_are_buffered_whole() -> None:
    reader = FrameReader(max_message=1000)
    reader.feed(client_frame(OP_TEXT, b"x" * 2000)[:20])  # the header alone says too much
    with pytest.raises(ProtocolError, match="2000 bytes") as raised:
        reader.next()
    assert raised.value.code == 1009


# -- the peer over real sockets ------------------------------------------------------------------------------


@pytest.fixture(params=["worst", "realistic"])
def peer(request: pytest.FixtureRequest) -> Iterator[EchoPeer]:
    running = EchoPeer(KEY, deltas=request.param, seed=3)
    stop = start_in_thread(running)
    yield running
    stop()


def ga_session() -> dict[str, Any]:
    event = session_update(instructions="Repite.", voice="marin", tools=[])
    session: dict[str, Any] = event["session"]
    return session


def connect(peer: EchoPeer) -> websocket.WebSocket:
    ws = websocket.create_connection(
        f"{peer.base_url}?model=gpt-realtime", header=[f"Authorization: Bearer {KEY}"], timeout=5
    )
    return ws


def recv_event(ws: websocket.WebSocket) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(ws.recv())
    return event


def test_a_session_echoes_the_callers_audio_in_deltas_of_the_chosen_size(peer: EchoPeer) -> None:
    ws = connect(peer)
    try:
        assert recv_event(ws)["type"] == "session.created"
        ws.send(json.dumps({"type": "session.update", "session": ga_session()}))
        updated = recv_event(ws)
        assert updated["type"] == "session.updated"
        assert updated["session"]["audio"]["output"]["format"] == {"type": "audio/pcmu"}
        ws.send(json.dumps({"type": "response.create"}))
        opened = [recv_event(ws)["type"] for _ in range(3)]
        assert opened == ["response.created", "response.output_item.added", "response.content_part.added"]
        frames = [bytes([index]) * FRAME for index in range(40)]  # 800 ms of audio
        for frame in frames:
            ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(frame).decode()}))
        ws.send(json.dumps({"type": "response.cancel"}))
        deltas: list[bytes] = []
        event_ids: set[str] = set()
        while (event := recv_event(ws))["type"] == "response.output_audio.delta":
            deltas.append(base64.b64decode(event["delta"]))
            event_ids.add(event["event_id"])
        assert len(event_ids) == len(deltas)  # every event has its own id
        assert event["type"] == "response.output_audio.done"
        assert recv_event(ws)["response"]["status"] == "cancelled"
        assert b"".join(deltas) == b"".join(frames)  # byte for byte, in order
        sizes = [len(delta) // FRAME for delta in deltas]
        if peer.deltas == "worst":
            assert sizes == [1] * 40
        else:  # 100-300 ms each; the last one, flushed by the cancel, may be shorter
            assert all(5 <= size <= 15 for size in sizes[:-1])
            assert len(set(sizes[:-1])) > 1  # drawn, not fixed
    finally:
        ws.close()


def test_bad_events_get_an_error_and_the_session_goes_on(peer: EchoPeer) -> None:
    ws = connect(peer)
    try:
        recv_event(ws)
        ws.send("not json")
        assert recv_event(ws)["error"]["code"] == "invalid_json"
        ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": "%%%"}))
        assert "base64" in recv_event(ws)["error"]["message"]
        ws.send(json.dumps({"type": "response.cancel"}))
        assert recv_event(ws)["error"]["code"] == "response_cancel_not_active"
        ws.send(json.dumps({"type": "conversation.item.retrieve", "event_id": "e1"}))
        error = recv_event(ws)["error"]
        assert (error["event_id"], "conversation.item.retrieve" in error["message"]) == ("e1", True)
        ws.ping(b"still there")
        assert ws.recv_data_frame(control_frame=True)[1].data == b"still there"
        ws.send_close()
        assert ws.recv_data_frame(control_frame=True)[0] == OP_CLOSE
    finally:
        ws.close()


def test_a_wrong_key_is_refused_before_the_upgrade(peer: EchoPeer) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(peer.base_url, header=["Authorization: Bearer nope"], timeout=5)
    assert refused.value.status_code == 401
    assert b"invalid_api_key" in (refused.value.resp_body or b"")


def test_the_bridges_connection_runs_a_session_against_it(peer: EchoPeer) -> None:
    got: list[bytes] = []
    changed = threading.Condition()

    def on_event(event: Any) -> None:
        if event.get("type") == "response.output_audio.delta":
            with changed:
                got.append(base64.b64decode(event["delta"]))
                changed.notify_all()

    url = realtime_url(peer.base_url, "gpt-realtime")
    with RealtimeConnection(url, KEY, on_event=on_event) as connection:
        info = connection.connect(session_update(instructions="Repite.", voice="marin", tools=[]), within=10)
        assert info.output_format_honoured
        connection.send(response_create())
        audio = os.urandom(FRAME * 20)
        for start in range(0, len(audio), FRAME):
            connection.send_audio(audio[start : start + FRAME])
        with changed:
            wanted = 20 if peer.deltas == "worst" else 5  # realistic: at least the first whole delta
            assert changed.wait_for(lambda: sum(map(len, got)) >= wanted * FRAME, timeout=10)
            assert audio.startswith(b"".join(got))
    with pytest.raises(RealtimeRejected):
        RealtimeConnection(url, "wrong", on_event=on_event).connect(session_update(instructions="x", voice="marin"))


def test_the_vad_calls_a_frame_speech_when_most_of_its_samples_are_not_silence() -> None:
    assert not is_speech(b"\xff" * FRAME)
    assert not is_speech(b"\x7f" * FRAME)
    assert not is_speech(b"\x00" * 20 + b"\xff" * (FRAME - 20))  # a benchmark's stamp in silence
    assert is_speech(b"\x80\x00" * (FRAME // 2))
    assert is_speech(b"\x00" * (FRAME // 2 + 1) + b"\xff" * (FRAME // 2 - 1))
    assert not is_speech(b"\x00" * (FRAME // 2) + b"\xff" * (FRAME // 2))


@pytest.mark.parametrize("deltas", ["worst", "realistic"])
def test_with_vad_speech_interrupts_the_reply_and_its_end_opens_a_new_one(deltas: Deltas) -> None:
    running = EchoPeer(KEY, deltas=deltas, seed=3, vad=True)
    stop = start_in_thread(running)
    ws = connect(running)
    try:
        recv_event(ws)
        ws.send(json.dumps({"type": "response.create"}))
        first = recv_event(ws)["response"]["id"]
        for _ in range(2):
            recv_event(ws)
        silence = [bytes([index]) + b"\xff" * (FRAME - 1) for index in range(7)]
        speech = b"\x80\x00" * (FRAME // 2)
        after = [bytes([100 + index]) + b"\xff" * (FRAME - 1) for index in range(20)]

        def append(audio: bytes) -> None:
            ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(audio).decode()}))

        for frame in silence:
            append(frame)
        for _ in range(3):
            append(speech)
        for frame in after:
            append(frame)
        ws.send(json.dumps({"type": "response.cancel"}))
        events: list[dict[str, Any]] = []
        while not (events and events[-1]["type"] == "response.done" and events[-1]["response"]["id"] != first):
            events.append(recv_event(ws))
        kinds = [event["type"] for event in events]
        started = kinds.index("input_audio_buffer.speech_started")
        stopped = kinds.index("input_audio_buffer.speech_stopped")
        assert events[started]["audio_start_ms"] == 7 * 20
        assert events[stopped]["audio_end_ms"] == 10 * 20
        assert events[started]["item_id"] == events[stopped]["item_id"]
        # The interrupted reply: the audio it had sent before the speech, then its end, cancelled.
        assert kinds[started + 1 : started + 4] == [
            "response.output_audio.done",
            "response.done",
            "input_audio_buffer.speech_stopped",
        ]
        assert events[started + 2]["response"] == {"object": "realtime.response", "id": first, "status": "cancelled"}
        before = b"".join(base64.b64decode(e["delta"]) for e in events[:started] if e["type"].endswith("delta"))
        assert b"".join(silence).startswith(before)  # realistic: what was still gathering is dropped
        if deltas == "worst":
            assert before == b"".join(silence)
        assert kinds[stopped + 1] == "response.created"
        second = [base64.b64decode(e["delta"]) for e in events[stopped:] if e["type"].endswith("delta")]
        assert b"".join(second) == b"".join(after)  # the speech itself is never echoed
    finally:
        ws.close()
        stop()


def test_without_vad_loud_audio_is_only_echoed(peer: EchoPeer) -> None:
    ws = connect(peer)
    try:
        recv_event(ws)
        ws.send(json.dumps({"type": "response.create"}))
        for _ in range(3):
            recv_event(ws)
        speech = b"\x80\x00" * (FRAME // 2)
        for _ in range(15):
            ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(speech).decode()}))
        ws.send(json.dumps({"type": "response.cancel"}))
        kinds = []
        while (event := recv_event(ws))["type"] != "response.done":
            kinds.append(event["type"])
        assert set(kinds) == {"response.output_audio.delta", "response.output_audio.done"}
        assert event["response"]["status"] == "cancelled"
    finally:
        ws.close()
