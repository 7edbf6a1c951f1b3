"""The fake Realtime server, driven over real sockets by a bare WebSocket client speaking the GA protocol.

These tests pin the server's side of the protocol (handshake, validation, VAD, scripted replies, barge-in,
faults) without the bridge's own client, so a bug in one cannot hide the same bug in the other.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import websocket
from paths import PYTHONPATH

from centralita_testing.fake_realtime import (
    DEFAULT_API_KEY,
    AudioTurn,
    FakeRealtimeServer,
    Faults,
    ScriptError,
    ToolCallTurn,
    default_audio_dir,
    default_caller_lines,
    default_script,
    load_script,
    vad_rms_threshold,
)

SPEECH = (default_audio_dir() / "asistente_saludo.ulaw").read_bytes()
SILENCE_1S = b"\xff" * 8000  # μ-law 0xFF is linear 0
REPO_AUDIO = Path(__file__).resolve().parents[2] / "files" / "audio" / "asistente_saludo.ulaw"

JsonObject = dict[str, Any]


def ga_session(**overrides: Any) -> JsonObject:
    """A GA session for session.update: μ-law both ways, server VAD with short silences for fast tests."""
    session: JsonObject = {
        "type": "realtime",
        "output_modalities": ["audio"],
        "instructions": "Eres el asistente.",
        "audio": {
            "input": {
                "format": {"type": "audio/pcmu"},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 800, "prefix_padding_ms": 300},
            },
            "output": {"format": {"type": "audio/pcmu"}, "voice": "marin"},
        },
    }
    session.update(overrides)
    return session


def tool(name: str) -> JsonObject:
    """A function tool for session.update (the fake plays a scripted call only of a tool the session offers)."""
    return {"type": "function", "name": name, "description": "Una herramienta.", "parameters": {"type": "object"}}


class Client:
    """A bare GA client over websocket-client: send events, read events one by one with a timeout."""

    def __init__(self, server: FakeRealtimeServer, *, key: str = DEFAULT_API_KEY, header: list[str] | None = None):
        self.ws = websocket.create_connection(
            server.url(), timeout=5, header=[f"Authorization: Bearer {key}", *(header or [])], suppress_origin=True
        )

    def send(self, event_type: str, **fields: Any) -> None:
        self.ws.send(json.dumps({"type": event_type, **fields}))

    def append(self, audio: bytes, chunk: int = 1600) -> None:
        for start in range(0, len(audio), chunk):
            self.send("input_audio_buffer.append", audio=base64.b64encode(audio[start : start + chunk]).decode())

    def recv(self) -> JsonObject:
        data = self.ws.recv()
        if not data:  # websocket-client answers a close frame with "" (it has echoed the close)
            raise websocket.WebSocketConnectionClosedException("closed by the server")
        event: JsonObject = json.loads(data)
        return event

    def until(self, event_type: str) -> list[JsonObject]:
        """Events up to and including the first of ``event_type``."""
        events = [self.recv()]
        while events[-1]["type"] != event_type:
            events.append(self.recv())
        return events

    def configure(self, session: JsonObject | None = None) -> JsonObject:
        assert self.recv()["type"] == "session.created"
        self.send("session.update", session=session or ga_session())
        updated = self.recv()
        assert updated["type"] == "session.updated", updated
        return updated

    def close(self) -> None:
        self.ws.close()
        self.ws.shutdown()  # after a server-initiated close websocket-client leaves the TCP socket open


@pytest.fixture
def server() -> Iterator[FakeRealtimeServer]:
    with FakeRealtimeServer(pace=0) as running:
        yield running


@pytest.fixture
def client(server: FakeRealtimeServer) -> Iterator[Client]:
    connected = Client(server)
    yield connected
    connected.close()


def types(events: list[JsonObject]) -> list[str]:
    return [event["type"] for event in events]


def audio_of(events: list[JsonObject]) -> bytes:
    return b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta")


# --- Handshake and session ---


def test_session_created_comes_first_then_session_updated_carries_the_full_session(client: Client) -> None:
    created = client.recv()
    assert created["type"] == "session.created"
    assert created["event_id"]
    assert created["session"]["type"] == "realtime"
    assert created["session"]["model"] == "gpt-realtime"
    assert created["session"]["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}

    client.send("session.update", session=ga_session())
    updated = client.recv()
    assert updated["type"] == "session.updated"
    session = updated["session"]
    assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["output"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["output"]["voice"] == "marin"
    assert session["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 800
    assert session["audio"]["input"]["turn_detection"]["threshold"] == 0.5  # defaults filled in
    assert session["id"] == created["session"]["id"]
    assert session["tools"] == []


def test_a_partial_update_changes_only_what_it_names(client: Client) -> None:
    client.configure()
    client.send("session.update", session={"type": "realtime", "instructions": "Otra cosa."})
    session = client.recv()["session"]
    assert session["instructions"] == "Otra cosa."
    assert session["audio"]["output"]["format"] == {"type": "audio/pcmu"}


@pytest.mark.parametrize("key", ["sk-wrong", None])
def test_wrong_or_missing_key_gets_http_401_with_a_json_error(server: FakeRealtimeServer, key: str | None) -> None:
    header = [] if key is None else [f"Authorization: Bearer {key}"]
    with pytest.raises(websocket.WebSocketBadStatusException) as caught:
        websocket.create_connection(server.url(), timeout=5, header=header)
    assert caught.value.status_code == 401
    body = json.loads(caught.value.resp_body or b"")
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["code"] == ("invalid_api_key" if key else "missing_api_key")
    assert "sk-wrong" not in body["error"]["message"]
    assert server.sessions() == []
    assert server.rejections()[0][0] == 401


def test_a_wrong_path_is_404_and_a_missing_model_is_400(server: FakeRealtimeServer) -> None:
    header = [f"Authorization: Bearer {DEFAULT_API_KEY}"]
    with pytest.raises(websocket.WebSocketBadStatusException) as caught:
        websocket.create_connection(f"ws://{server.host}:{server.port}/v1/other?model=x", timeout=5, header=header)
    assert caught.value.status_code == 404
    with pytest.raises(websocket.WebSocketBadStatusException) as caught:
        websocket.create_connection(server.base_url, timeout=5, header=header)
    assert caught.value.status_code == 400


def expect_beta_rejection(client: Client) -> JsonObject:
    """The error event, then the close: the socket is unusable afterwards."""
    error = client.recv()
    assert error["type"] == "error"
    assert error["error"]["code"] == "beta_api_shape_disabled"
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        client.recv()
    return error


def test_the_beta_header_is_rejected_and_the_socket_closed(server: FakeRealtimeServer) -> None:
    client = Client(server, header=["OpenAI-Beta: realtime=v1"])
    try:
        expect_beta_rejection(client)
    finally:
        client.close()
    record = server.wait_for_session()
    record.wait_closed()
    assert record.close_code == 1008
    assert record.server_events("session.created") == []


@pytest.mark.parametrize(
    "session",
    [
        {"modalities": ["audio", "text"], "input_audio_format": "g711_ulaw", "output_audio_format": "g711_ulaw"},
        {"instructions": "sin type"},
        {"type": "realtime", "turn_detection": {"type": "server_vad"}},
    ],
    ids=["beta-flat", "no-type", "flat-turn-detection"],
)
def test_a_beta_shaped_session_is_rejected_and_the_socket_closed(client: Client, session: JsonObject) -> None:
    assert client.recv()["type"] == "session.created"
    client.send("session.update", event_id="evt_1", session=session)
    error = expect_beta_rejection(client)
    assert error["error"]["event_id"] == "evt_1"


@pytest.mark.parametrize(
    ("session", "code", "param"),
    [
        (ga_session(temperature=0.8), "unknown_parameter", "session.temperature"),
        (
            ga_session(audio={"input": {"format": {"type": "audio/pcm", "rate": 16000}}}),
            "invalid_value",
            "session.audio.input.format.rate",
        ),
        (
            ga_session(audio={"output": {"format": {"type": "g711_ulaw"}}}),
            "invalid_value",
            "session.audio.output.format.type",
        ),
        (ga_session(audio={"output": {"voice": "nadie"}}), "invalid_value", "session.audio.output.voice"),
        (ga_session(output_modalities=["audio", "text"]), "invalid_value", "session.output_modalities"),
        (
            ga_session(tools=[{"type": "function", "function": {"name": "x"}}]),
            "unknown_parameter",
            "session.tools[0].function",
        ),
        (ga_session(model="gpt-4o"), "invalid_value", "session.model"),
    ],
    ids=["temperature", "pcm-16k", "beta-format-name", "voice", "modalities", "nested-tool", "model-change"],
)
def test_an_invalid_session_update_gets_an_error_and_changes_nothing(
    client: Client, session: JsonObject, code: str, param: str
) -> None:
    client.configure()
    client.send("session.update", session=session)
    error = client.recv()
    assert error["type"] == "error"
    assert (error["error"]["code"], error["error"]["param"]) == (code, param)
    # The session is untouched and still usable.
    client.send("session.update", session={"type": "realtime"})
    session_now = client.recv()["session"]
    assert session_now["audio"]["output"]["format"] == {"type": "audio/pcmu"}
    assert session_now["audio"]["output"]["voice"] == "marin"


def test_every_ga_format_is_accepted(client: Client) -> None:
    client.configure()
    for kind in ({"type": "audio/pcma"}, {"type": "audio/pcm", "rate": 24000}, {"type": "audio/pcmu"}):
        client.send("session.update", session={"type": "realtime", "audio": {"input": {"format": kind}}})
        assert client.recv()["session"]["audio"]["input"]["format"] == kind


def test_unknown_events_and_bad_json_get_errors_and_the_session_goes_on(client: Client) -> None:
    client.configure()
    client.send("response.audio.delta")
    assert client.recv()["error"]["param"] == "type"
    client.ws.send("{not json")
    assert client.recv()["error"]["code"] == "invalid_json"
    client.send("input_audio_buffer.append", audio="***")
    assert client.recv()["error"]["param"] == "audio"
    client.send("input_audio_buffer.commit")
    assert client.recv()["error"]["code"] == "input_audio_buffer_commit_empty"


# --- VAD and scripted replies ---


def test_speech_triggers_vad_and_a_scripted_reply_with_the_files_audio(
    server: FakeRealtimeServer, client: Client
) -> None:
    client.configure()
    client.append(SPEECH + SILENCE_1S)
    events = client.until("response.done")
    assert types(events)[:5] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
    ]
    started, stopped, committed = events[:3]
    assert started["audio_start_ms"] == 0
    assert stopped["audio_end_ms"] > len(SPEECH) // 8 - 500
    assert started["item_id"] == stopped["item_id"] == committed["item_id"]
    assert types(events).count("input_audio_buffer.speech_started") == 1

    reply = events[5:]
    assert types(reply)[:5] == [
        "response.created",
        "rate_limits.updated",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
    ]
    assert types(reply)[-6:] == [
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    assert audio_of(reply) == SPEECH
    deltas = [e for e in reply if e["type"] == "response.output_audio.delta"]
    assert len(deltas) > 10
    assert all(len(base64.b64decode(e["delta"])) <= 40 * 8 for e in deltas)
    transcript = "".join(e["delta"] for e in reply if e["type"] == "response.output_audio_transcript.delta")
    assert transcript == "Hola, soy el asistente de su proveedor de internet. ¿En qué puedo ayudarle?"
    first_text = types(reply).index("response.output_audio_transcript.delta")
    last_audio = len(reply) - 1 - types(reply)[::-1].index("response.output_audio.delta")
    assert first_text < last_audio  # interleaved, not all text after the audio
    done = reply[-1]["response"]
    assert done["status"] == "completed"
    assert done["usage"]["output_token_details"]["audio_tokens"] > 0

    record = server.sessions()[0]
    assert record.audio == SPEECH + SILENCE_1S
    assert len(record.client_events("input_audio_buffer.append")) == len(SPEECH + SILENCE_1S) // 1600 + 1


def test_silence_triggers_nothing(server: FakeRealtimeServer, client: Client) -> None:
    client.configure()
    client.append(SILENCE_1S * 3)
    # A sentinel: the server handles events in order, so its answer proves the silence was processed.
    client.send("response.cancel")
    answer = client.recv()
    assert answer["type"] == "error"
    assert answer["error"]["code"] == "response_cancel_not_active"
    assert server.sessions()[0].audio == SILENCE_1S * 3


def test_quiet_audio_is_below_the_threshold_and_loud_audio_above() -> None:
    assert 400 < vad_rms_threshold(0.5) < 700
    assert vad_rms_threshold(0.9) > vad_rms_threshold(0.5) > vad_rms_threshold(0.1)


def test_the_reply_follows_the_output_format(client: Client) -> None:
    session = ga_session()
    session["audio"]["output"]["format"] = {"type": "audio/pcm", "rate": 24000}
    client.configure(session)
    client.send("response.create")
    reply = client.until("response.done")
    assert len(audio_of(reply)) == 6 * len(SPEECH)  # 3 samples for each μ-law sample, 2 bytes each


def test_response_create_while_one_is_active_is_an_error() -> None:
    # Paced at real time, the first response is still streaming when the second create arrives, however busy the
    # machine is (at pace 0 it could finish first); a cancel then ends it without waiting for all its audio.
    with FakeRealtimeServer(pace=1.0) as server:
        client = Client(server)
        try:
            client.configure()
            client.send("response.create")
            client.until("response.output_audio.delta")  # active from here on
            client.send("response.create")
            assert client.until("error")[-1]["error"]["code"] == "conversation_already_has_active_response"
            client.send("response.cancel")
            events = client.until("response.done")
            assert events[-1]["response"]["status"] == "cancelled"
            assert "error" not in types(events)  # one error, for the one create too many
        finally:
            client.close()


def test_text_only_sessions_get_text_deltas(client: Client) -> None:
    client.configure(ga_session(output_modalities=["text"]))
    client.send("response.create")
    reply = client.until("response.done")
    assert "response.output_audio.delta" not in types(reply)
    text = "".join(e["delta"] for e in reply if e["type"] == "response.output_text.delta")
    assert text.startswith("Hola, soy el asistente")


# --- Tool calls ---


def test_a_tool_call_streams_arguments_and_an_early_output_is_refused(tmp_path: Path) -> None:
    script = (
        ToolCallTurn(name="consultar", arguments='{"telefono": "+34600000000", "motivo": "sin internet"}', pieces=3),
        AudioTurn(audio=SPEECH[:1600], transcript="Listo."),
    )
    with FakeRealtimeServer(pace=0, script=script, tool_done_delay_ms=200) as server:
        client = Client(server)
        try:
            client.configure(ga_session(tools=[tool("consultar")]))
            client.send("response.create")
            events = client.until("response.function_call_arguments.done")
            deltas = [e for e in events if e["type"] == "response.function_call_arguments.delta"]
            done = events[-1]
            assert len(deltas) == 3
            assert "".join(e["delta"] for e in deltas) == done["arguments"]
            assert json.loads(done["arguments"]) == {"telefono": "+34600000000", "motivo": "sin internet"}
            assert done["name"] == "consultar"
            call_id = done["call_id"]
            assert all(e["call_id"] == call_id and e["item_id"] == done["item_id"] for e in deltas)

            # Sent before response.done: the call is not in the conversation yet.
            output = {"type": "function_call_output", "call_id": call_id, "output": '{"estado": "ok"}'}
            client.send("conversation.item.create", item=output)
            rest = client.until("response.done")
            errors = [e for e in rest if e["type"] == "error"]
            assert [e["error"]["code"] for e in errors] == ["invalid_tool_call_id"]
            assert rest[-1]["response"]["status"] == "completed"

            # After response.done the same output is accepted, and response.create plays the next turn.
            client.send("conversation.item.create", item=output)
            added = client.until("conversation.item.done")
            assert added[-1]["item"]["type"] == "function_call_output"
            client.send("response.create")
            reply = client.until("response.done")
            assert audio_of(reply) == SPEECH[:1600]
        finally:
            client.close()


# --- Barge-in, cancel, truncate ---


def test_barge_in_cancels_the_response_and_truncate_is_checked() -> None:
    with FakeRealtimeServer(pace=1.0) as server:  # real time, so the reply is still playing when we talk
        client = Client(server)
        try:
            client.configure()
            client.send("response.create")
            first = client.until("response.output_audio.delta")
            item_id = first[-1]["item_id"]
            client.append(SPEECH[:8000])  # one second of the caller talking over the assistant
            events = client.until("response.done")
            started = types(events).index("input_audio_buffer.speech_started")
            assert started < types(events).index("response.done")
            done = events[-1]["response"]
            assert done["status"] == "cancelled"
            assert done["status_details"]["reason"] == "turn_detected"
            received_ms = len(audio_of(first + events)) // 8
            assert received_ms < len(SPEECH) // 8

            client.send("conversation.item.truncate", item_id=item_id, content_index=0, audio_end_ms=received_ms + 500)
            error = client.recv()
            assert error["type"] == "error"
            assert error["error"]["param"] == "audio_end_ms"

            client.send("conversation.item.truncate", item_id=item_id, content_index=0, audio_end_ms=received_ms)
            truncated = client.recv()
            assert truncated == {**truncated, "type": "conversation.item.truncated", "audio_end_ms": received_ms}
        finally:
            client.close()


def test_response_cancel_stops_a_response_and_without_one_is_an_error() -> None:
    with FakeRealtimeServer(pace=1.0) as server:
        client = Client(server)
        try:
            client.configure()
            client.send("response.cancel")
            assert client.recv()["error"]["code"] == "response_cancel_not_active"
            client.send("response.create")
            client.until("response.output_audio.delta")
            client.send("response.cancel")
            done = client.until("response.done")[-1]["response"]
            assert (done["status"], done["status_details"]["reason"]) == ("cancelled", "client_cancelled")
            client.send("response.cancel")
            assert client.recv()["error"]["code"] == "response_cancel_not_active"
        finally:
            client.close()


def test_interrupt_response_false_lets_the_response_finish() -> None:
    with FakeRealtimeServer(pace=0) as server:
        client = Client(server)
        try:
            session = ga_session()
            session["audio"]["input"]["turn_detection"]["interrupt_response"] = False
            session["audio"]["input"]["turn_detection"]["create_response"] = False
            client.configure(session)
            client.append(SPEECH + SILENCE_1S)
            client.until("input_audio_buffer.committed")
            client.send("response.cancel")  # create_response false: nothing started
            assert client.until("error")[-1]["error"]["code"] == "response_cancel_not_active"
        finally:
            client.close()


# --- Faults ---


def test_refuse_is_http_503(server: FakeRealtimeServer) -> None:
    server.faults = Faults(refuse=True)
    with pytest.raises(websocket.WebSocketBadStatusException) as caught:
        Client(server)
    assert caught.value.status_code == 503
    server.faults = Faults()
    Client(server).close()


def test_drop_aborts_tcp_mid_response_without_a_close_frame() -> None:
    with FakeRealtimeServer(pace=0, faults=Faults(drop_after_deltas=3)) as server:
        client = Client(server)
        client.configure()
        client.send("response.create")
        received: list[JsonObject] = []

        def read_until_dropped() -> None:
            while True:
                received.append(client.recv())

        with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
            read_until_dropped()
        assert types(received).count("response.output_audio.delta") == 3
        assert "response.done" not in types(received)
        record = server.sessions()[0]
        record.wait_closed()
        assert record.close_code is None
        client.close()


def test_error_event_mid_call_and_the_session_goes_on() -> None:
    with FakeRealtimeServer(pace=0, faults=Faults(error_after_ms=300)) as server:
        client = Client(server)
        try:
            client.configure()
            error = client.recv()
            assert error["error"] == {**error["error"], "type": "server_error", "code": "server_error"}
            server.inject_error("rate_limit_exceeded", "slow down")
            assert client.recv()["error"]["code"] == "rate_limit_exceeded"
            client.send("session.update", session={"type": "realtime"})
            assert client.recv()["type"] == "session.updated"
        finally:
            client.close()


def test_session_length_limit_closes_with_1001() -> None:
    with FakeRealtimeServer(pace=0, faults=Faults(close_after_s=0.5)) as server:
        client = Client(server)
        try:
            client.configure()
            error = client.recv()
            assert error["error"]["code"] == "session_expired"
            frame = client.ws.recv_frame()
            assert frame.opcode == websocket.ABNF.OPCODE_CLOSE
            assert int.from_bytes(frame.data[:2], "big") == 1001
            assert b"maximum duration" in frame.data
        finally:
            client.close()


def test_delay_holds_back_session_created(server: FakeRealtimeServer) -> None:
    server.faults = Faults(delay_ms=300)
    client = Client(server)
    try:
        client.ws.settimeout(0.1)
        with pytest.raises(websocket.WebSocketTimeoutException):
            client.recv()
    finally:
        client.close()


def test_ignore_output_format_answers_pcmu_with_pcm16() -> None:
    with FakeRealtimeServer(pace=0, faults=Faults(ignore_output_format=True)) as server:
        client = Client(server)
        try:
            session = client.configure()["session"]
            assert session["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
            assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"}
            client.send("response.create")
            assert len(audio_of(client.until("response.done"))) == 6 * len(SPEECH)
        finally:
            client.close()


def test_faults_parse_command_line_specs() -> None:
    faults = Faults.parse(["refuse", "delay_ms=250", "close_after_s=1.5", "ignore-output-format", "error_code=x"])
    assert faults == Faults(refuse=True, delay_ms=250, close_after_s=1.5, ignore_output_format=True, error_code="x")
    transcription = Faults.parse(["transcription_delay_ms=900", "transcription-fails"])
    assert transcription == Faults(transcription_delay_ms=900, transcription_fails=True)
    with pytest.raises(ValueError, match="unknown fault"):
        Faults.parse(["explode"])
    with pytest.raises(ValueError, match="needs a value"):
        Faults.parse(["delay_ms"])


# --- Scripts, package data, command line ---


def test_the_default_script_comes_from_package_data() -> None:
    turns = default_script()
    assert isinstance(turns[0], AudioTurn)
    assert turns[0].audio == SPEECH
    assert isinstance(turns[1], ToolCallTurn)
    assert len(SPEECH) < 64 * 1024
    if REPO_AUDIO.exists():
        assert REPO_AUDIO.read_bytes() == SPEECH


def test_a_script_file_resolves_audio_against_audio_dir(tmp_path: Path) -> None:
    (tmp_path / "hola.ulaw").write_bytes(b"\x00\x7f" * 100)
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"turns": [{"type": "audio", "audio": "hola.ulaw", "transcript": "Hola."}]}))
    (turn,) = load_script(script, tmp_path)
    assert turn == AudioTurn(audio=b"\x00\x7f" * 100, transcript="Hola.", source=str(tmp_path / "hola.ulaw"))
    with pytest.raises(ScriptError, match="cannot read"):
        load_script(script, tmp_path / "elsewhere")
    script.write_text(json.dumps({"turns": [{"type": "song"}]}))
    with pytest.raises(ScriptError, match="turn 1"):
        load_script(script, tmp_path)


def test_the_command_line_serves_the_default_script(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    process = subprocess.Popen(
        [sys.executable, "-m", "centralita_testing.fake_realtime", "--port", "0", "--api-key", "sk-cli", "--pace", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "listening on ws://127.0.0.1:" in line
        base_url = line.split()[-1]
        ws = websocket.create_connection(
            f"{base_url}?model=gpt-realtime", timeout=5, header=["Authorization: Bearer sk-cli"]
        )
        try:
            assert json.loads(ws.recv())["type"] == "session.created"
            ws.send(json.dumps({"type": "session.update", "session": ga_session()}))
            assert json.loads(ws.recv())["type"] == "session.updated"
            ws.send(json.dumps({"type": "response.create"}))
            events: list[JsonObject] = []
            while not events or events[-1]["type"] != "response.done":
                events.append(json.loads(ws.recv()))
            assert audio_of(events) == SPEECH
        finally:
            ws.close()
    finally:
        process.terminate()
        process.wait(timeout=5)


def test_pcma_output_and_conversation_item_retrieve_and_delete(client: Client) -> None:
    session = ga_session()
    session["audio"]["output"]["format"] = {"type": "audio/pcma"}
    client.configure(session)
    client.send("response.create")
    reply = client.until("response.done")
    alaw = audio_of(reply)
    assert len(alaw) == len(SPEECH)
    assert alaw != SPEECH
    assert alaw[SPEECH.index(0xFF)] in (0xD5, 0x55)  # μ-law silence is A-law silence
    item_id = reply[-1]["response"]["output"][0]["id"]
    client.send("conversation.item.retrieve", item_id=item_id)
    assert client.recv()["item"]["role"] == "assistant"
    client.send("conversation.item.delete", item_id=item_id)
    deleted = client.recv()
    assert (deleted["type"], deleted["item_id"]) == ("conversation.item.deleted", item_id)
    client.send("conversation.item.retrieve", item_id=item_id)
    assert client.recv()["error"]["code"] == "item_not_found"


# --- Echo mode ---


def test_echo_mode_streams_appended_audio_back_in_one_response_until_cancelled() -> None:
    with FakeRealtimeServer(echo=True) as server:
        client = Client(server)
        try:
            client.configure()
            client.append(SPEECH[:800], chunk=160)  # no response open yet: kept in the input buffer, not echoed
            client.send("response.create")
            opening = client.until("response.content_part.added")
            assert types(opening) == [
                "response.created",
                "rate_limits.updated",
                "response.output_item.added",
                "conversation.item.added",
                "response.content_part.added",
            ]
            response_id = opening[0]["response"]["id"]
            item_id = opening[2]["item"]["id"]

            frames = [SPEECH[start : start + 160] for start in range(8000, 8000 + 50 * 160, 160)]  # 1 s of speech
            for frame in frames:
                client.append(frame, chunk=160)
            deltas = [client.recv() for _ in frames]
            assert types(deltas) == ["response.output_audio.delta"] * len(frames)  # no VAD, so no barge-in
            assert [base64.b64decode(delta["delta"]) for delta in deltas] == frames
            for delta in deltas:
                assert delta == {
                    "type": "response.output_audio.delta",
                    "event_id": delta["event_id"],
                    "response_id": response_id,
                    "item_id": item_id,
                    "output_index": 0,
                    "content_index": 0,
                    "delta": delta["delta"],
                }

            client.send("response.cancel")
            closing = client.until("response.done")
            assert types(closing) == [
                "response.output_audio.done",
                "response.output_audio_transcript.done",
                "response.content_part.done",
                "response.output_item.done",
                "conversation.item.done",
                "response.done",
            ]
            assert closing[3]["item"]["status"] == "incomplete"
            done = closing[-1]["response"]
            assert (done["id"], done["status"], done["status_details"]["reason"]) == (
                response_id,
                "cancelled",
                "client_cancelled",
            )
            client.send("conversation.item.truncate", item_id=item_id, content_index=0, audio_end_ms=len(frames) * 20)
            assert client.recv()["type"] == "conversation.item.truncated"  # the echo counts as audio sent

            client.append(frames[0], chunk=160)  # the response is over: nothing comes back
            client.send("response.cancel")
            assert client.recv()["error"]["code"] == "response_cancel_not_active"
        finally:
            client.close()
    record = server.sessions()[0]
    assert record.audio == SPEECH[:800] + b"".join(frames) + frames[0]


def test_tool_calls_of_tools_the_session_does_not_offer_are_skipped_and_dates_filled_in() -> None:
    script = (
        ToolCallTurn(name="consultar", arguments="{}", pieces=1),
        ToolCallTurn(name="registrar", arguments='{"fecha": "{fecha+3}"}', pieces=1),
        AudioTurn(audio=SPEECH[:1600], transcript="Listo."),
    )
    with FakeRealtimeServer(pace=0, script=script) as server:
        client = Client(server)
        try:
            client.configure(ga_session(tools=[tool("registrar")]))
            client.send("response.create")
            done = client.until("response.function_call_arguments.done")[-1]
            # "consultar" is not offered: a model would never call it, so the fake goes on to "registrar".
            assert done["name"] == "registrar"
            expected = (datetime.now(UTC).date() + timedelta(days=3)).isoformat()
            assert json.loads(done["arguments"]) == {"fecha": expected}
        finally:
            client.close()


# --- The caller's transcription ---


def transcribed_session(model: str = "whisper-1") -> JsonObject:
    session = ga_session()
    session["audio"]["input"]["transcription"] = {"model": model, "language": "es"}
    return session


@pytest.mark.parametrize("model", ["whisper-1", "gpt-4o-mini-transcribe"])
def test_a_transcribed_session_gets_the_callers_scripted_words_as_deltas_then_completed(model: str) -> None:
    lines = ("No tengo internet desde ayer.", "Gracias.")
    with FakeRealtimeServer(pace=0, caller_lines=lines) as server:
        client = Client(server)
        try:
            client.configure(transcribed_session(model))
            client.append(SPEECH + SILENCE_1S)
            events = client.until("conversation.item.input_audio_transcription.completed")
        finally:
            client.close()
    committed = next(e for e in events if e["type"] == "input_audio_buffer.committed")
    deltas = [e for e in events if e["type"] == "conversation.item.input_audio_transcription.delta"]
    completed = events[-1]
    assert {e["item_id"] for e in [*deltas, completed]} == {committed["item_id"]}
    assert "".join(e["delta"] for e in deltas) == lines[0] == completed["transcript"]
    assert completed["content_index"] == 0
    if model == "whisper-1":  # billed by the second
        assert completed["usage"]["type"] == "duration"
        assert completed["usage"]["seconds"] == pytest.approx((len(SPEECH) + 8000) / 8000, abs=0.6)
    else:
        assert completed["usage"]["type"] == "tokens"
        assert completed["usage"]["input_token_details"]["audio_tokens"] > 0


def test_without_transcription_no_transcription_event_is_sent(server: FakeRealtimeServer, client: Client) -> None:
    client.configure()
    client.append(SPEECH + SILENCE_1S)
    events = client.until("response.done")
    assert not [e for e in events if e["type"].startswith("conversation.item.input_audio_transcription")]


def test_a_failing_transcription_sends_failed_with_its_error_after_partial_deltas() -> None:
    with FakeRealtimeServer(
        pace=0, caller_lines=("uno dos tres cuatro",), faults=Faults(transcription_fails=True)
    ) as server:
        client = Client(server)
        try:
            client.configure(transcribed_session())
            client.append(SPEECH + SILENCE_1S)
            events = client.until("conversation.item.input_audio_transcription.failed")
        finally:
            client.close()
    deltas = [e["delta"] for e in events if e["type"] == "conversation.item.input_audio_transcription.delta"]
    assert "".join(deltas) == "uno dos "
    assert events[-1]["error"]["code"] == "audio_unintelligible"
    assert not [e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed"]


@pytest.mark.parametrize(
    "transcription", [{"model": "whisper-1", "language": "spanish"}, {"model": "whisper-1", "idioma": "es"}]
)
def test_a_bad_transcription_setting_is_an_error(client: Client, transcription: JsonObject) -> None:
    assert client.recv()["type"] == "session.created"
    session = ga_session()
    session["audio"]["input"]["transcription"] = transcription
    client.send("session.update", session=session)
    error = client.recv()
    assert error["type"] == "error"
    assert error["error"]["param"].startswith("session.audio.input.transcription")


def test_the_default_script_has_caller_lines() -> None:
    lines = default_caller_lines()
    assert lines
    assert all(line.strip() for line in lines)
