"""The bridge's side of the OpenAI Realtime API (GA): client events, the connection, tool-call assembly.

Three layers, each testable alone:

* pure functions that build client events in the GA shape (``session_update``, ``audio_append``, ...): the
  beta shape is now answered with ``beta_api_shape_disabled`` and a closed socket, so the shape is built in
  one place and nowhere else;
* ``RealtimeConnection``: the WebSocket (websocket-client) with the GA handshake done in order, which is
  connect, wait for ``session.created``, send ``session.update``, wait for ``session.updated``, then check
  which audio formats the server really uses (a model may ignore the requested output format, and the bridge
  must then convert instead of playing PCM16 as μ-law noise). After that a receive thread delivers events to a
  callback. websocket-client opens the connection and sends the control frames; the data frames, 50 a second
  each way on every call, are written and read here (``_client_frame``, ``_FrameReader``), at a fraction of
  the library's cost per frame;
* ``ToolCallAssembler``: puts function-call arguments back together from their deltas and holds the outputs
  until the call's ``response.done``. An output sent earlier gets ``invalid_tool_call_id``, and the model
  then repeats the call, so a side-effecting tool would run twice.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import json
import logging
import os
import random
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import websocket

from centralita.config import Secret

__all__ = [
    "PCM24K",
    "PCMA",
    "PCMU",
    "AudioFormat",
    "CloseInfo",
    "RealtimeClosed",
    "RealtimeConnection",
    "RealtimeError",
    "RealtimeRejected",
    "RealtimeServerError",
    "RealtimeTimeout",
    "RealtimeUnreachable",
    "SessionInfo",
    "ToolCall",
    "ToolCallAssembler",
    "ToolCallUpdate",
    "TurnDetection",
    "audio_append",
    "audio_from_deltas",
    "function_call_output",
    "function_tool",
    "realtime_url",
    "response_cancel",
    "response_create",
    "session_update",
    "truncate",
]

JsonObject = dict[str, Any]
EventCallback = Callable[[JsonObject], None]

log = logging.getLogger(__name__)

_POLL_SECONDS: Final = 0.05  # how often the receive thread looks up from the socket (close, pings)
_NORMAL_CLOSURE: Final = 1000
_READ_BYTES: Final = 65536  # read at once: every frame that has arrived, not one header at a time


# --- Client events -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """A GA audio format: ``audio/pcmu``, ``audio/pcma`` or ``audio/pcm`` (which is 24 kHz only)."""

    type: str
    rate: int | None = None

    def to_json(self) -> JsonObject:
        return {"type": self.type} if self.rate is None else {"type": self.type, "rate": self.rate}

    @classmethod
    def from_json(cls, value: object) -> AudioFormat:
        """Parse a session's format object; ValueError when it is not one."""
        if not isinstance(value, Mapping) or not isinstance(value.get("type"), str):
            raise ValueError(f"not an audio format: {value!r}")
        rate = value.get("rate")
        if value["type"] == "audio/pcm":
            return cls("audio/pcm", rate if isinstance(rate, int) else 24000)
        return cls(value["type"])

    def __str__(self) -> str:
        return self.type if self.rate is None else f"{self.type}@{self.rate}"


PCMU: Final = AudioFormat("audio/pcmu")
PCMA: Final = AudioFormat("audio/pcma")
PCM24K: Final = AudioFormat("audio/pcm", 24000)


@dataclass(frozen=True, slots=True)
class TurnDetection:
    """Server VAD settings (GA ``audio.input.turn_detection`` of type ``server_vad``)."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True

    def to_json(self) -> JsonObject:
        return {
            "type": "server_vad",
            "threshold": self.threshold,
            "prefix_padding_ms": self.prefix_padding_ms,
            "silence_duration_ms": self.silence_duration_ms,
            "create_response": self.create_response,
            "interrupt_response": self.interrupt_response,
        }


def _event_id() -> str:
    return f"evt_{os.urandom(10).hex()}"


def _event(event_type: str, **fields: Any) -> JsonObject:
    """A client event with its own id, so an ``error`` naming it can be traced back in the logs."""
    return {"type": event_type, "event_id": _event_id(), **fields}


def function_tool(name: str, description: str, parameters: Mapping[str, Any]) -> JsonObject:
    """A tool in the GA (flat) shape; the Chat Completions shape ``{"function": {...}}`` is refused."""
    return {"type": "function", "name": name, "description": description, "parameters": dict(parameters)}


def _check_tool(tool: Mapping[str, Any]) -> JsonObject:
    if tool.get("type") != "function" or not isinstance(tool.get("name"), str) or "function" in tool:
        raise ValueError(
            f"a Realtime tool must be flat, {{'type': 'function', 'name': ..., 'parameters': ...}}, not {tool!r}"
        )
    return dict(tool)


def session_update(
    *,
    instructions: str,
    voice: str,
    tools: Sequence[Mapping[str, Any]] = (),
    model: str | None = None,
    turn_detection: TurnDetection | None = None,
    input_format: AudioFormat = PCMU,
    output_format: AudioFormat = PCMU,
) -> JsonObject:
    """The ``session.update`` the bridge sends: GA shape, G.711 μ-law both ways, server VAD, audio out.

    μ-law end to end means no resampling anywhere in the bridge; the connection checks afterwards whether the
    server honoured the output format. ``turn_detection=None`` means the defaults, not manual turns.
    """
    session: JsonObject = {
        "type": "realtime",
        "output_modalities": ["audio"],
        "instructions": instructions,
        "audio": {
            "input": {
                "format": input_format.to_json(),
                "turn_detection": (turn_detection or TurnDetection()).to_json(),
            },
            "output": {"format": output_format.to_json(), "voice": voice},
        },
        "tools": [_check_tool(tool) for tool in tools],
        "tool_choice": "auto",
    }
    if model is not None:
        session["model"] = model
    return _event("session.update", session=session)


def audio_append(audio: bytes) -> JsonObject:
    """Caller audio for the input buffer (base64 of the raw bytes in the session's input format)."""
    return _event("input_audio_buffer.append", audio=base64.b64encode(audio).decode("ascii"))


def _audio_append_text(audio: bytes, event_id: str) -> bytes:
    """``json.dumps(audio_append(audio))``, encoded, without building the dict: the event sent 50 times a second."""
    return b'{"type": "input_audio_buffer.append", "event_id": "%s", "audio": "%s"}' % (
        event_id.encode("ascii"),
        base64.b64encode(audio),
    )


def function_call_output(call_id: str, output: str) -> JsonObject:
    """A tool's result, for the call ``call_id``; send only after that call's ``response.done``."""
    return _event(
        "conversation.item.create", item={"type": "function_call_output", "call_id": call_id, "output": output}
    )


def response_create() -> JsonObject:
    """Ask for a response now (after tool outputs, or to greet the caller first)."""
    return _event("response.create")


def response_cancel(response_id: str | None = None) -> JsonObject:
    """Cancel the response in progress (barge-in when the client detects it)."""
    return _event("response.cancel") if response_id is None else _event("response.cancel", response_id=response_id)


def truncate(item_id: str, audio_end_ms: int, content_index: int = 0) -> JsonObject:
    """Tell the server how much of an assistant item the caller actually heard (after a barge-in).

    The server refuses an ``audio_end_ms`` past the audio it sent, so clamp it to what was received.
    """
    if audio_end_ms < 0:
        raise ValueError(f"audio_end_ms must be 0 or more, not {audio_end_ms}")
    return _event("conversation.item.truncate", item_id=item_id, content_index=content_index, audio_end_ms=audio_end_ms)


def realtime_url(base_url: str, model: str) -> str:
    """``base_url`` (e.g. OPENAI_BASE_URL, wss://api.openai.com/v1/realtime) with ``?model=`` set."""
    parts = urlsplit(base_url)
    query = [(key, value) for key, value in parse_qsl(parts.query) if key != "model"]
    query.append(("model", model))
    return urlunsplit(parts._replace(query=urlencode(query)))


# --- Errors --------------------------------------------------------------------------------------------


class RealtimeError(Exception):
    """The Realtime connection failed; the bridge then follows ON_REALTIME_FAILURE."""


class RealtimeUnreachable(RealtimeError):
    """No TCP or TLS connection could be made (refused, unreachable, DNS)."""


class RealtimeRejected(RealtimeError):
    """The server answered the WebSocket handshake with an HTTP error (401 bad key, 503 overloaded...)."""

    def __init__(self, status: int, code: str | None, message: str) -> None:
        super().__init__(f"HTTP {status} at the Realtime handshake ({code or 'no code'}): {message}")
        self.status, self.code, self.message = status, code, message


class RealtimeTimeout(RealtimeError):
    """A step of the handshake took too long (connect, session.created, session.updated)."""


class RealtimeServerError(RealtimeError):
    """The server sent an ``error`` event during the handshake (e.g. beta_api_shape_disabled)."""

    def __init__(self, code: str | None, message: str, error: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"Realtime error {code or '(no code)'}: {message}")
        self.code, self.message, self.error = code, message, dict(error or {})


class RealtimeClosed(RealtimeError):
    """The connection closed during the handshake."""

    def __init__(self, close: CloseInfo) -> None:
        super().__init__(f"the Realtime connection closed during the handshake: {close}")
        self.close = close


# --- WebSocket data frames ----------------------------------------------------------------------------


def _client_frame(payload: bytes, opcode: int = websocket.ABNF.OPCODE_TEXT) -> bytes:
    """One final, masked client frame (RFC 6455 section 5.2), the mask key from the OS's random source."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    mask = os.urandom(4)
    key = (mask * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(length, "little")
    return header + mask + masked


class _FrameReader:
    """The server's frames out of what was read from the socket, in order, whole messages put back together.

    ``feed`` takes bytes as they come (several frames, or part of one); ``next`` hands out the next complete
    frame as (opcode, payload), a data message only once its last fragment is in (with the opcode of its first
    frame), control frames as they come, even between fragments. A broken frame is a protocol error
    (``websocket.WebSocketProtocolException``), as it would be from websocket-client.
    """

    _DATA: Final = (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY)
    _CONTROL: Final = (websocket.ABNF.OPCODE_CLOSE, websocket.ABNF.OPCODE_PING, websocket.ABNF.OPCODE_PONG)

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next(self) -> tuple[int, bytes] | None:
        """The next complete message or control frame; None until more bytes are fed."""
        while (frame := self._frame()) is not None:
            fin, opcode, payload = frame
            if opcode in self._CONTROL:
                return opcode, payload
            if opcode == websocket.ABNF.OPCODE_CONT:
                if not self._fragment_opcode:
                    raise websocket.WebSocketProtocolException("Illegal frame: a continuation with nothing to continue")
                self._fragments.append(payload)
            elif self._fragment_opcode:
                raise websocket.WebSocketProtocolException("Illegal frame: a new message inside a fragmented one")
            elif fin:
                return opcode, payload
            else:
                self._fragment_opcode = opcode
                self._fragments = [payload]
            if fin:
                opcode, self._fragment_opcode = self._fragment_opcode, 0
                message, self._fragments = b"".join(self._fragments), []
                return opcode, message
        return None

    def _frame(self) -> tuple[bool, int, bytes] | None:
        buffer = self._buffer
        if len(buffer) < 2:
            return None
        first, second = buffer[0], buffer[1]
        fin, opcode, masked, length = bool(first & 0x80), first & 0x0F, second & 0x80, second & 0x7F
        if first & 0x70:
            raise websocket.WebSocketProtocolException("rsv is not implemented, yet")
        if opcode not in (websocket.ABNF.OPCODE_CONT, *self._DATA, *self._CONTROL):
            raise websocket.WebSocketProtocolException(f"Invalid opcode {opcode!r}")
        if opcode in self._CONTROL and (not fin or length > 125):
            raise websocket.WebSocketProtocolException(f"Invalid control frame (opcode {opcode})")
        offset = 2
        if length == 126:
            if len(buffer) < 4:
                return None
            (length,) = struct.unpack_from("!H", buffer, 2)
            offset = 4
        elif length == 127:
            if len(buffer) < 10:
                return None
            (length,) = struct.unpack_from("!Q", buffer, 2)
            offset = 10
        mask = b""
        if masked:  # servers must not mask; tolerated as websocket-client does
            mask = bytes(buffer[offset : offset + 4])
            offset += 4
        end = offset + length
        if len(buffer) < end:
            return None
        payload = bytes(buffer[offset:end])
        del buffer[:end]
        if masked and len(mask) == 4:
            key = (mask * (length // 4 + 1))[:length]
            payload = (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(length, "little")
        if opcode == websocket.ABNF.OPCODE_CLOSE and length == 1:
            raise websocket.WebSocketProtocolException("Invalid close frame.")
        return fin, opcode, payload

    @property
    def has_frame(self) -> bool:
        """Whether a whole frame is buffered (then ``next`` may return without reading more)."""
        buffer = self._buffer
        if len(buffer) < 2:
            return False
        length, offset = buffer[1] & 0x7F, 2
        if length == 126:
            length, offset = (struct.unpack_from("!H", buffer, 2)[0], 4) if len(buffer) >= 4 else (1 << 62, 4)
        elif length == 127:
            length, offset = (struct.unpack_from("!Q", buffer, 2)[0], 10) if len(buffer) >= 10 else (1 << 62, 10)
        return len(buffer) >= offset + (4 if buffer[1] & 0x80 else 0) + length


# --- The connection ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """The effective session after ``session.updated``: what the server will really do."""

    session_id: str
    model: str
    input_format: AudioFormat
    output_format: AudioFormat
    requested_output_format: AudioFormat
    session: JsonObject = field(repr=False)

    @property
    def output_format_honoured(self) -> bool:
        """False when the server sends another format than asked: the bridge must convert it."""
        return self.output_format == self.requested_output_format


@dataclass(frozen=True, slots=True)
class CloseInfo:
    """How the connection ended. ``code`` is None when the TCP connection was lost without a close frame."""

    code: int | None
    reason: str = ""
    by_client: bool = False
    error: str | None = None

    @property
    def clean(self) -> bool:
        """A normal close (1000) that this side asked for or the server performed."""
        return self.code == _NORMAL_CLOSURE and self.error is None

    def __str__(self) -> str:
        who = "client" if self.by_client else "server"
        code = "no close frame" if self.code is None else f"code {self.code}"
        detail = f", {self.error}" if self.error else ""
        return f"{code} by {who}{': ' + self.reason if self.reason else ''}{detail}"


def _parse_close(data: bytes) -> tuple[int | None, str]:
    if len(data) < 2:
        return None, ""
    return int.from_bytes(data[:2], "big"), data[2:].decode("utf-8", errors="replace")


def _error_body(body: bytes | None) -> tuple[str | None, str]:
    """The (code, message) of an OpenAI-style JSON error body, tolerating anything else."""
    try:
        error = json.loads(body or b"")["error"]
        return error.get("code"), str(error.get("message", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, (body or b"").decode("utf-8", errors="replace")[:200]


class RealtimeConnection:
    """One WebSocket to the Realtime API for one call.

    ``connect()`` runs the handshake on the caller's thread and raises a ``RealtimeError`` when it fails;
    afterwards a receive thread calls ``on_event`` with each parsed server event, sends pings every
    ``ping_interval`` seconds (the connection is given up when no pong comes within ``ping_timeout``), and
    calls ``on_close`` once when the connection ends, whoever ended it. ``send`` may be called from any
    thread. ``close()`` closes cleanly and waits for the thread, so no thread or socket outlives the call.

    The API key goes into the Authorization header and nowhere else: it is never logged, and no error
    message contains it.
    """

    def __init__(
        self,
        url: str,
        api_key: Secret | str,
        *,
        on_event: EventCallback,
        on_close: Callable[[CloseInfo], None] | None = None,
        ping_interval: float = 20.0,
        ping_timeout: float = 10.0,
        open_timeout: float = 10.0,
        session_timeout: float = 5.0,
    ) -> None:
        if ping_interval <= ping_timeout:
            raise ValueError(f"ping_interval ({ping_interval}) must be greater than ping_timeout ({ping_timeout})")
        self._url = url
        self._api_key = api_key if isinstance(api_key, Secret) else Secret(api_key)
        self._on_event = on_event
        self._on_close = on_close
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._open_timeout = open_timeout
        self._session_timeout = session_timeout
        self._ws: websocket.WebSocket | None = None
        self._send_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._closed = threading.Event()
        self._close_sent = False
        self._close_deadline = 0.0
        self._close_info: CloseInfo | None = None
        self._pending: list[JsonObject] = []  # events that arrived during the handshake, delivered afterwards
        self._reader = _FrameReader()
        self._poller: select.poll | None = None  # the receive thread's, on the socket
        self._ids = random.Random(os.urandom(16))  # event ids of the audio appends: no system call each
        self._session: SessionInfo | None = None
        self._last_pong = 0.0

    # -- public API --

    @property
    def session(self) -> SessionInfo | None:
        return self._session

    @property
    def close_info(self) -> CloseInfo | None:
        """How the connection ended; None while it is open."""
        return self._close_info

    @property
    def is_open(self) -> bool:
        """Whether the socket is still open (False once closed, dropped or never connected)."""
        ws = self._ws
        return ws is not None and ws.sock is not None and not self._closed.is_set()

    def connect(self, session_update_event: Mapping[str, Any]) -> SessionInfo:
        """Open the socket and configure the session; raise a RealtimeError (and release everything) on failure."""
        if self._ws is not None:
            raise RuntimeError("connect() may be called only once per RealtimeConnection")
        requested = session_update_event.get("session", {})
        requested_out = AudioFormat.from_json(requested.get("audio", {}).get("output", {}).get("format", {}))
        requested_in = AudioFormat.from_json(requested.get("audio", {}).get("input", {}).get("format", {}))
        log.info("connecting to the Realtime API at %s", self._url)
        ws = self._open()
        self._ws = ws
        try:
            deadline = time.monotonic() + self._session_timeout
            self._await_event(ws, "session.created", deadline)
            self.send(dict(session_update_event))
            deadline = time.monotonic() + self._session_timeout
            updated = self._await_event(ws, "session.updated", deadline)
            info = self._session_info(updated.get("session", {}), requested_in, requested_out)
        except BaseException as error:
            self._teardown(ws)
            self._finish(CloseInfo(None, by_client=True, error=f"handshake failed: {error}"), notify=False)
            raise
        self._session = info
        # The receive thread runs in a copy of the caller's context, so its log lines keep the call's id.
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._receive_loop,), name="realtime-receive", daemon=True
        )
        self._thread.start()
        return info

    def send(self, event: Mapping[str, Any]) -> None:
        """Send one client event; thread-safe. RealtimeError when the connection is not open."""
        self._send_text(event.get("type"), json.dumps(event).encode())

    def send_audio(self, audio: bytes) -> None:
        """Send ``audio_append(audio)``, built for less (the caller's audio goes 50 times a second)."""
        event_id = f"evt_{self._ids.getrandbits(80):020x}"
        self._send_text("input_audio_buffer.append", _audio_append_text(audio, event_id))

    def _send_text(self, event_type: object, text: bytes) -> None:
        ws = self._ws
        if ws is None or self._closing.is_set() or self._closed.is_set():
            raise RealtimeError(f"cannot send {event_type}: the Realtime connection is not open")
        frame = _client_frame(text)
        try:
            with self._send_lock:
                sock = ws.sock
                if sock is None:
                    raise websocket.WebSocketConnectionClosedException("socket is already closed.")
                sock.sendall(frame)
        except (websocket.WebSocketException, OSError) as error:
            raise RealtimeError(f"sending {event_type} failed: {error}") from error

    def close(self, timeout: float = 2.0) -> None:
        """Close with code 1000, wait up to ``timeout`` for the server's close frame, then release everything."""
        ws = self._ws
        if ws is None:
            return
        if not self._closed.is_set() and not self._closing.is_set():
            self._close_deadline = time.monotonic() + timeout
            self._closing.set()
            self._send_close(ws)
        thread = self._thread
        if thread is not None:
            thread.join(timeout + 1.0)
            if thread.is_alive():  # the server never answered: cut the socket to wake the thread
                sock = ws.sock
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                thread.join()
            self._thread = None
        else:
            self._teardown(ws)
            self._finish(CloseInfo(None, by_client=True), notify=False)

    def wait_closed(self, timeout: float | None = None) -> CloseInfo | None:
        """Block until the connection has ended (by either side); its CloseInfo, or None on timeout."""
        self._closed.wait(timeout)
        return self._close_info

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- handshake --

    def _open(self) -> websocket.WebSocket:
        header = [f"Authorization: Bearer {self._api_key.reveal()}"]
        try:
            # websocket-client checks UTF-8 in pure Python, about 0.1 ms per audio delta: the bridge's largest
            # cost per call. json.loads decodes strictly anyway, and a message that is not UTF-8 is then dropped
            # like any other that is not JSON.
            return websocket.create_connection(
                self._url,
                timeout=self._open_timeout,
                header=header,
                suppress_origin=True,
                enable_multithread=True,
                skip_utf8_validation=True,
            )
        except websocket.WebSocketBadStatusException as error:
            code, message = _error_body(error.resp_body)
            log.warning("the Realtime API refused the connection: HTTP %s (%s)", error.status_code, code)
            raise RealtimeRejected(error.status_code, code, message) from None
        except (websocket.WebSocketTimeoutException, TimeoutError) as error:
            raise RealtimeTimeout(f"no WebSocket handshake with {self._url} within {self._open_timeout} s") from error
        except (websocket.WebSocketException, OSError) as error:
            raise RealtimeUnreachable(f"cannot connect to {self._url}: {error}") from error

    def _await_event(self, ws: websocket.WebSocket, wanted: str, deadline: float) -> JsonObject:
        """Read until the event ``wanted``; any ``error`` event or a close during the handshake is fatal."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RealtimeTimeout(f"no {wanted} within {self._session_timeout} s")
            ws.settimeout(remaining)
            try:
                event = self._read(ws)
            except (websocket.WebSocketTimeoutException, TimeoutError):
                raise RealtimeTimeout(f"no {wanted} within {self._session_timeout} s") from None
            except (websocket.WebSocketException, OSError) as error:
                raise RealtimeClosed(CloseInfo(None, error=str(error) or type(error).__name__)) from None
            if event is None:
                continue
            if isinstance(event, CloseInfo):
                raise RealtimeClosed(event)
            if event.get("type") == wanted:
                return event
            if event.get("type") == "error":
                error_obj = event.get("error") or {}
                raise RealtimeServerError(error_obj.get("code"), str(error_obj.get("message", "")), error_obj)
            self._pending.append(event)

    def _session_info(self, session: JsonObject, requested_in: AudioFormat, requested_out: AudioFormat) -> SessionInfo:
        try:
            audio = session["audio"]
            input_format = AudioFormat.from_json(audio["input"]["format"])
            output_format = AudioFormat.from_json(audio["output"]["format"])
        except (KeyError, TypeError, ValueError) as error:
            raise RealtimeError(f"session.updated has no usable audio formats: {error}") from None
        if input_format != requested_in:
            # The server would misread every byte of caller audio: no conversion on this side can fix that.
            raise RealtimeError(f"the server uses input format {input_format}, not the requested {requested_in}")
        if output_format != requested_out:
            log.warning(
                "the Realtime API ignored output format %s and sends %s: converting", requested_out, output_format
            )
        return SessionInfo(
            session_id=str(session.get("id", "")),
            model=str(session.get("model", "")),
            input_format=input_format,
            output_format=output_format,
            requested_output_format=requested_out,
            session=session,
        )

    # -- frames --

    def _read(self, ws: websocket.WebSocket) -> JsonObject | CloseInfo | None:
        """One frame: a parsed event, a CloseInfo for a close frame, or None (control frame, bad JSON, or no
        whole frame yet). Reads the socket (waiting up to its timeout) only when no whole frame is buffered."""
        frame = self._reader.next()
        if frame is None:
            sock = ws.sock
            if sock is None:
                raise websocket.WebSocketConnectionClosedException("socket is already closed.")
            data = sock.recv(_READ_BYTES)
            if not data:
                raise websocket.WebSocketConnectionClosedException("Connection to remote host was lost.")
            self._reader.feed(data)
            frame = self._reader.next()
            if frame is None:
                return None
        opcode, data = frame
        if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
            try:
                event = json.loads(data)
            except (UnicodeDecodeError, json.JSONDecodeError):
                log.warning("ignoring a Realtime message that is not JSON (%d bytes)", len(data))
                return None
            if not isinstance(event, dict):
                log.warning("ignoring a Realtime message that is not an object")
                return None
            return event
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            code, reason = _parse_close(data)
            if not self._close_sent:
                self._send_close(ws, code if code is not None and code != 1005 else _NORMAL_CLOSURE)
            return CloseInfo(code, reason, by_client=self._closing.is_set())
        if opcode == websocket.ABNF.OPCODE_PING:
            with self._send_lock:
                ws.pong(data)
        elif opcode == websocket.ABNF.OPCODE_PONG:
            self._last_pong = time.monotonic()
        return None

    def _send_close(self, ws: websocket.WebSocket, code: int = _NORMAL_CLOSURE) -> None:
        with self._send_lock:
            if self._close_sent:
                return
            self._close_sent = True
            with contextlib.suppress(websocket.WebSocketException, OSError):  # gone already: the loop notices
                ws.send_close(code)

    def _readable(self, ws: websocket.WebSocket, timeout: float) -> bool:
        sock = ws.sock
        if sock is None or self._reader.has_frame:
            return True  # a whole frame is waiting, or let the read fail and end the loop
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True  # TLS may hold decrypted bytes that poll() cannot see
        if self._poller is None:
            self._poller = select.poll()
            self._poller.register(sock, select.POLLIN)
        return bool(self._poller.poll(timeout * 1000))

    # -- the receive thread --

    def _receive_loop(self) -> None:
        ws = self._ws
        assert ws is not None
        close: CloseInfo | None = None
        try:
            for event in self._pending:
                self._deliver(event)
            self._pending.clear()
            ws.settimeout(self._ping_timeout)  # a frame that starts arriving must finish within this
            last_ping = time.monotonic()
            self._last_pong = last_ping
            awaiting_pong = False
            while close is None:
                now = time.monotonic()
                if self._closing.is_set() and now > self._close_deadline:
                    close = CloseInfo(None, by_client=True, error="no close frame from the server in time")
                    break
                if awaiting_pong and self._last_pong >= last_ping:
                    awaiting_pong = False
                if awaiting_pong and now - last_ping > self._ping_timeout:
                    close = CloseInfo(None, error=f"no pong within {self._ping_timeout} s")
                    break
                if not awaiting_pong and now - last_ping >= self._ping_interval and not self._closing.is_set():
                    with self._send_lock:
                        ws.ping()
                    last_ping, awaiting_pong = now, True
                if not self._readable(ws, _POLL_SECONDS):
                    continue
                result = self._read(ws)
                if isinstance(result, CloseInfo):
                    close = result
                elif result is not None:
                    self._deliver(result)
        except (websocket.WebSocketException, OSError) as error:
            close = CloseInfo(None, by_client=self._closing.is_set(), error=str(error) or type(error).__name__)
        finally:
            self._teardown(ws)
            self._finish(close or CloseInfo(None, error="receive loop ended"))

    def _deliver(self, event: JsonObject) -> None:
        try:
            self._on_event(event)
        except Exception:  # a bug in the handler must not take the call's connection down with it
            log.exception("the Realtime event handler failed on %s", event.get("type"))

    def _teardown(self, ws: websocket.WebSocket) -> None:
        """Release the socket (no close frame: that is for close() and the receive loop to send)."""
        with self._send_lock:
            ws.shutdown()

    def _finish(self, close: CloseInfo, *, notify: bool = True) -> None:
        if self._closed.is_set():
            return
        self._close_info = close
        self._closed.set()
        if not notify:
            return
        if close.clean or close.by_client:
            log.info("Realtime connection closed: %s", close)
        else:
            log.warning("Realtime connection lost: %s", close)
        if self._on_close is not None:
            try:
                self._on_close(close)
            except Exception:
                log.exception("the Realtime close handler failed")


# --- Tool calls ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete function call from the model."""

    call_id: str
    item_id: str
    response_id: str
    name: str
    arguments: str

    def parsed_arguments(self) -> Any:
        """The arguments as JSON (ValueError when the model produced invalid JSON)."""
        return json.loads(self.arguments or "{}")


@dataclass(frozen=True, slots=True)
class ToolCallUpdate:
    """What one server event changed: calls now complete (run them), events now safe to send (send them)."""

    completed: tuple[ToolCall, ...] = ()
    ready: tuple[JsonObject, ...] = ()


@dataclass(slots=True)
class _PendingCall:
    item_id: str
    response_id: str
    call_id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)
    call: ToolCall | None = None
    output: str | None = None
    sent: bool = False


class ToolCallAssembler:
    """Reassembles function calls and releases their outputs in the order the API requires.

    Feed it every server event. A call is complete at ``response.function_call_arguments.done``; its output
    (``submit``) is held until that response's ``response.done``, and only once every call of the response
    has its output are they released, followed by a single ``response.create``. A call_id seen before is
    never reported again, so a repeated ``.done`` cannot run a side-effecting tool twice. Calls of a response
    that ends cancelled, failed or incomplete are dropped: their items are not a valid place for an output.
    """

    def __init__(self) -> None:
        self._calls: dict[str, _PendingCall] = {}  # by item_id
        self._seen_call_ids: set[str] = set()
        self._finished_call_ids: set[str] = set()  # outputs sent, or dropped with their response
        self._done_responses: set[str] = set()

    def feed(self, event: Mapping[str, Any]) -> ToolCallUpdate:
        kind = event.get("type")
        if kind == "response.output_item.added":
            item = event.get("item") or {}
            if item.get("type") == "function_call":
                pending = self._pending(str(item.get("id", "")), str(event.get("response_id", "")))
                pending.call_id = pending.call_id or str(item.get("call_id", ""))
                pending.name = pending.name or str(item.get("name", ""))
        elif kind == "response.function_call_arguments.delta":
            pending = self._pending(str(event.get("item_id", "")), str(event.get("response_id", "")))
            pending.call_id = pending.call_id or str(event.get("call_id", ""))
            pending.parts.append(str(event.get("delta", "")))
        elif kind == "response.function_call_arguments.done":
            return ToolCallUpdate(completed=self._complete(event))
        elif kind == "response.done":
            return ToolCallUpdate(ready=self._response_done(event.get("response") or {}))
        return ToolCallUpdate()

    def submit(self, call_id: str, output: str) -> tuple[JsonObject, ...]:
        """Record a tool's output; returns the events that may be sent now (often none yet).

        An output for a call already answered, or for a call whose response was cancelled (a barge-in while
        the tool ran), is dropped with a warning; an output for a call never seen is a bug (KeyError).
        """
        if call_id in self._finished_call_ids:
            log.warning("dropping an output for tool call %s: it was already answered or cancelled", call_id)
            return ()
        pending = next((p for p in self._calls.values() if p.call_id == call_id and p.call is not None), None)
        if pending is None:
            raise KeyError(f"no complete tool call {call_id!r} is waiting for an output")
        if pending.output is not None:
            log.warning("ignoring a second output for tool call %s", call_id)
            return ()
        pending.output = output
        return self._release(pending.response_id)

    def _pending(self, item_id: str, response_id: str) -> _PendingCall:
        pending = self._calls.get(item_id)
        if pending is None:
            pending = self._calls[item_id] = _PendingCall(item_id=item_id, response_id=response_id)
        return pending

    def _complete(self, event: Mapping[str, Any]) -> tuple[ToolCall, ...]:
        pending = self._pending(str(event.get("item_id", "")), str(event.get("response_id", "")))
        call_id = str(event.get("call_id") or pending.call_id)
        if not call_id or call_id in self._seen_call_ids:
            if call_id:
                log.warning("ignoring a repeated completion of tool call %s", call_id)
            return ()
        assembled = "".join(pending.parts)
        arguments = event.get("arguments")
        if not isinstance(arguments, str):
            arguments = assembled
        elif arguments != assembled:
            log.warning("tool call %s: the deltas and .done disagree; using .done", call_id)
        self._seen_call_ids.add(call_id)
        pending.call_id = call_id
        pending.name = str(event.get("name") or pending.name)
        pending.call = ToolCall(call_id, pending.item_id, pending.response_id, pending.name, arguments)
        return (pending.call,)

    def _response_done(self, response: Mapping[str, Any]) -> tuple[JsonObject, ...]:
        response_id = str(response.get("id", ""))
        if response.get("status") != "completed":
            dropped = [item for item, p in self._calls.items() if p.response_id == response_id]
            for item in dropped:
                self._finished_call_ids.add(self._calls[item].call_id)
                log.warning(
                    "dropping tool call %s: its response ended %s", self._calls[item].call_id, response.get("status")
                )
                del self._calls[item]
            return ()
        self._done_responses.add(response_id)
        return self._release(response_id)

    def _release(self, response_id: str) -> tuple[JsonObject, ...]:
        if response_id not in self._done_responses:
            return ()
        calls = [p for p in self._calls.values() if p.response_id == response_id and not p.sent]
        if not calls or any(p.call is None or p.output is None for p in calls):
            return ()
        events: list[JsonObject] = []
        for pending in calls:
            assert pending.output is not None
            events.append(function_call_output(pending.call_id, pending.output))
            pending.sent = True
        for pending in calls:
            self._finished_call_ids.add(pending.call_id)
            del self._calls[pending.item_id]
        self._done_responses.discard(response_id)
        events.append(response_create())
        return tuple(events)


def audio_from_deltas(events: Iterable[Mapping[str, Any]]) -> bytes:
    """The audio of a sequence of ``response.output_audio.delta`` events, in order (for tests and tools)."""
    return b"".join(
        base64.b64decode(event["delta"]) for event in events if event.get("type") == "response.output_audio.delta"
    )
