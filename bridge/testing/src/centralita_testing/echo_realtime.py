"""A lean echo peer of the Realtime API for load: one ``selectors`` loop, hundreds of WebSocket sessions.

``fake_realtime`` (asyncio and the websockets library) checks every event as the real API would, and costs
about as much CPU per call as the bridge itself: at a hundred calls it, not the bridge, is the limit of
``make bench``. This peer speaks just enough of the GA protocol for a call to run (``session.created``,
``session.updated`` echoing the requested session, ``response.create`` opening a response whose audio is the
caller's own, ``response.cancel`` closing it) and spends its time on the audio:

* ``deltas="worst"``: each ``input_audio_buffer.append`` goes straight back as one
  ``response.output_audio.delta`` carrying the same base64 text (validated, not re-encoded): one delta per
  20 ms frame, the worst case for the bridge's receive path;
* ``deltas="realistic"``: the caller's audio is gathered into deltas of 100-300 ms each (length drawn per
  delta from a seeded generator), each sent at once when complete, as the real API sends a reply: a delta's
  later frames reach the bridge up to 280 ms before their turn to play, and the bridge's playout queue holds
  them meanwhile.

With ``vad=True`` (``--vad``) the peer also plays the server's turn detection, so a benchmark can time
barge-in: a caller frame whose samples are mostly not silence (μ-law 0xFF or 0x7F) is speech. The first
speech frame after silence gets ``input_audio_buffer.speech_started`` (its ``audio_start_ms`` counted from
the session's first appended byte) and, as the real API interrupts a reply, the open response ends
``cancelled`` at once, its audio not yet sent dropped; the first silent frame after speech gets
``input_audio_buffer.speech_stopped`` and a new response opens on its own (server VAD's
``create_response``), echoing from that frame on. Speech frames are never echoed. Without ``vad`` the
peer never barges in: the caller's audio is only echoed.

The audio goes back byte for byte, so a benchmark's stamps survive the round trip. Everything runs on one
thread: non-blocking sockets, each connection's output gathered while its input is handled and written in
one ``send`` (the rest, if the kernel takes less, when the socket is writable again).

Run it with ``python -m centralita_testing.echo_realtime --port 0 --api-key KEY``; it prints
``echo Realtime peer listening on ws://HOST:PORT/v1/realtime`` (the base URL to give the client) once
ready. The WebSocket framing (RFC 6455, server side) is in ``FrameReader``/``server_frame``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import itertools
import json
import random
import selectors
import signal
import socket
import struct
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal

__all__ = [
    "EchoPeer",
    "FrameReader",
    "ProtocolError",
    "accept_key",
    "is_speech",
    "server_frame",
    "start_in_thread",
]

OP_CONTINUATION: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA
_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_MESSAGE: Final = 16 << 20  # a client message larger than this is refused (close 1009)
_MAX_REQUEST: Final = 16 << 10  # the HTTP upgrade request
_FRAME_BYTES: Final = 160  # 20 ms of μ-law
_APPEND_PREFIX: Final = b'{"type": "input_audio_buffer.append"'
_AUDIO_KEY: Final = b'"audio": "'
_READ_BYTES: Final = 1 << 16
_BYTES_PER_MS: Final = 8  # μ-law at 8000 samples/s

Deltas = Literal["worst", "realistic"]


class ProtocolError(Exception):
    """The client broke RFC 6455; ``code`` is the close code to answer with."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value for a client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest()).decode("ascii")


def server_frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked frame (servers never mask)."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, length)
    return header + payload


def is_speech(audio: bytes) -> bool:
    """The peer's voice activity detector: most of the frame's μ-law samples are not silence (0xFF, 0x7F).

    Crude on purpose (a benchmark marks a caller's speech with loud frames): it costs two ``count``s.
    """
    return 2 * (audio.count(0xFF) + audio.count(0x7F)) < len(audio)


def _unmask(payload: bytes, mask: bytes) -> bytes:
    length = len(payload)
    key = (mask * (length // 4 + 1))[:length]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(length, "little")


class FrameReader:
    """Client frames from a byte stream: ``feed`` bytes, then ``next`` until None.

    Client frames must be masked (``ProtocolError`` 1002 otherwise); fragmented messages are joined, control
    frames may come between their fragments; ``next`` gives whole messages as ``(opcode, payload)``.
    """

    def __init__(self, max_message: int = _MAX_MESSAGE) -> None:
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragment_opcode: int | None = None
        self._max = max_message

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next(self) -> tuple[int, bytes] | None:
        while True:
            frame = self._frame()
            if frame is None:
                return None
            fin, opcode, payload = frame
            if opcode >= OP_CLOSE:
                if not fin or len(payload) > 125:
                    raise ProtocolError(1002, "a control frame must be final and at most 125 bytes")
                return opcode, payload
            if opcode == OP_CONTINUATION:
                if self._fragment_opcode is None:
                    raise ProtocolError(1002, "a continuation frame without a message to continue")
            elif opcode in (OP_TEXT, OP_BINARY):
                if self._fragment_opcode is not None:
                    raise ProtocolError(1002, "a new message began before the last one ended")
                if fin:
                    return opcode, payload
                self._fragment_opcode = opcode
            else:
                raise ProtocolError(1002, f"unknown opcode {opcode:#x}")
            self._fragments.append(payload)
            if sum(map(len, self._fragments)) > self._max:
                raise ProtocolError(1009, f"a message over {self._max} bytes")
            if fin:
                whole, first = b"".join(self._fragments), self._fragment_opcode
                self._fragments, self._fragment_opcode = [], None
                return first, whole

    def _frame(self) -> tuple[bool, int, bytes] | None:
        buffer = self._buffer
        if len(buffer) < 2:
            return None
        first, second = buffer[0], buffer[1]
        if first & 0x70:
            raise ProtocolError(1002, "reserved bits set without an extension")
        if not second & 0x80:
            raise ProtocolError(1002, "a client frame must be masked")
        length, offset = second & 0x7F, 2
        if length == 126:
            if len(buffer) < 4:
                return None
            length, offset = int.from_bytes(buffer[2:4], "big"), 4
        elif length == 127:
            if len(buffer) < 10:
                return None
            length, offset = int.from_bytes(buffer[2:10], "big"), 10
        if length > self._max:
            raise ProtocolError(1009, f"a frame of {length} bytes (at most {self._max})")
        end = offset + 4 + length
        if len(buffer) < end:
            return None
        mask = bytes(buffer[offset : offset + 4])
        payload = _unmask(bytes(buffer[offset + 4 : end]), mask)
        del buffer[:end]
        return bool(first & 0x80), first & 0x0F, payload


class _Session:
    """One connection: the upgrade, then the Realtime events of one call."""

    def __init__(self, peer: EchoPeer, sock: socket.socket) -> None:
        self.peer = peer
        self.sock = sock
        self.request = bytearray()
        self.upgraded = False
        self.reader = FrameReader()
        self.out = bytearray()
        self.closing = False  # a close frame (or an HTTP error) sent: nothing more is read
        self.writing = False  # registered for EVENT_WRITE: output waits for the socket
        self.session: dict[str, Any] = {
            "type": "realtime",
            "object": "realtime.session",
            "id": peer.new_id("sess"),
            "model": "gpt-realtime",
            "output_modalities": ["audio"],
            "audio": {
                "input": {"format": {"type": "audio/pcm", "rate": 24000}},
                "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy"},
            },
        }
        self.response_id: str | None = None
        self.delta_fields = b""  # the open response's delta fields after the event id, up to the audio
        self.pending = bytearray()  # realistic mode: audio gathered for the next delta
        self.target = 0
        self.appended = 0  # bytes of caller audio appended so far (vad: audio_start_ms, audio_end_ms)
        self.speaking = False  # vad: the caller's last frame was speech
        self.input_item = ""  # vad: the item of the caller's speech

    # -- output --

    def send_event(self, event: dict[str, Any]) -> None:
        event = {"event_id": self.peer.new_id("event"), **event}
        self.out += server_frame(OP_TEXT, json.dumps(event).encode())

    def send_delta(self, b64: bytes) -> None:
        event_id = b"event_echo%012d" % self.peer.next_number()
        self.out += server_frame(OP_TEXT, b'{"type": "response.output_audio.delta", "event_id": "%s", %s%s"}' % (
            event_id, self.delta_fields, b64))  # fmt: skip

    # -- input --

    def on_bytes(self, data: bytes) -> None:
        if not self.upgraded:
            self.request += data
            end = self.request.find(b"\r\n\r\n")
            if end < 0:
                if len(self.request) > _MAX_REQUEST:
                    self.http_error(431, "request_too_large", "The upgrade request is too large.")
                return
            rest = bytes(self.request[end + 4 :])
            if not self.upgrade(bytes(self.request[:end]).decode("latin-1")):
                return
            data = rest
        self.reader.feed(data)
        try:
            while not self.closing:
                message = self.reader.next()
                if message is None:
                    return
                self.on_message(*message)
        except ProtocolError as error:
            self.close(error.code, str(error))

    def upgrade(self, request: str) -> bool:
        lines = request.split("\r\n")
        parts = lines[0].split(" ")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if len(parts) != 3 or parts[0] != "GET" or not parts[1].startswith("/v1/realtime"):
            self.http_error(404, "not_found", f"Unknown endpoint {parts[1] if len(parts) > 1 else '?'}.")
            return False
        if headers.get("authorization") != f"Bearer {self.peer.api_key}":
            self.http_error(401, "invalid_api_key", "Incorrect API key provided.")
            return False
        key = headers.get("sec-websocket-key")
        if headers.get("upgrade", "").lower() != "websocket" or not key:
            self.http_error(400, "invalid_request", "A WebSocket upgrade is required (Upgrade, Sec-WebSocket-Key).")
            return False
        query = parts[1].partition("?")[2]
        for pair in query.split("&"):
            name, _, value = pair.partition("=")
            if name == "model" and value:
                self.session["model"] = value
        self.out += (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n"
        ).encode("ascii")
        self.upgraded = True
        self.send_event({"type": "session.created", "session": self.session})
        return True

    def http_error(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": {"type": "invalid_request_error", "code": code, "message": message}}).encode()
        reason = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 431: "Header Fields Too Large"}
        self.out += (
            f"HTTP/1.1 {status} {reason.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode("ascii") + body
        self.closing = True

    def close(self, code: int, reason: str) -> None:
        if not self.closing:
            self.out += server_frame(OP_CLOSE, struct.pack("!H", code) + reason.encode()[:120])
            self.closing = True

    def on_message(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            self.out += server_frame(OP_PONG, payload)
        elif opcode == OP_CLOSE:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1000
            self.close(code if 1000 <= code < 5000 and code not in (1005, 1006, 1015) else 1000, "")
        elif opcode in (OP_TEXT, OP_BINARY):
            if payload.startswith(_APPEND_PREFIX):
                start = payload.find(_AUDIO_KEY)
                end = payload.find(b'"', start + len(_AUDIO_KEY)) if start >= 0 else -1
                if end > 0:
                    self.on_append(payload[start + len(_AUDIO_KEY) : end])
                    return
            self.on_event(payload)

    def on_event(self, payload: bytes) -> None:
        try:
            event = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            self.error("invalid_json", f"We could not parse the JSON body of your event: {error}")
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            self.error("invalid_value", "An event must be an object with a 'type'.")
            return
        kind = event["type"]
        if kind == "input_audio_buffer.append":
            audio = event.get("audio")
            if isinstance(audio, str):
                self.on_append(audio.encode("ascii", "replace"))
            else:
                self.error("invalid_value", "'audio' must be base64-encoded audio.", event)
        elif kind == "session.update":
            requested = event.get("session")
            if isinstance(requested, dict):
                self.session = {**self.session, **requested, "id": self.session["id"], "object": "realtime.session"}
            self.send_event({"type": "session.updated", "session": self.session})
        elif kind == "response.create":
            self.open_response(event)
        elif kind == "response.cancel":
            if self.response_id is None:
                self.error("response_cancel_not_active", "Cancellation failed: no active response found.", event)
            else:
                self.close_response("cancelled")
        elif kind in ("input_audio_buffer.commit", "input_audio_buffer.clear", "conversation.item.truncate"):
            pass  # no conversation is kept: nothing to do, nothing to answer
        else:
            self.error("invalid_value", f"The echo peer does not handle '{kind}'.", event)

    def error(self, code: str, message: str, event: dict[str, Any] | None = None) -> None:
        error = {"type": "invalid_request_error", "code": code, "message": message, "param": None}
        if event is not None:
            error["event_id"] = event.get("event_id")
        self.send_event({"type": "error", "error": error})

    def open_response(self, event: dict[str, Any]) -> None:
        if self.response_id is not None:
            self.error(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {self.response_id}.",
                event,
            )
            return
        response_id, item_id = self.peer.new_id("resp"), self.peer.new_id("item")
        self.response_id = response_id
        item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "assistant"}
        ids = {"response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0}
        response = {"object": "realtime.response", "id": response_id, "status": "in_progress", "output": []}
        self.send_event({"type": "response.created", "response": response})
        self.send_event({"type": "response.output_item.added", "response_id": response_id, "output_index": 0,
                         "item": {**item, "status": "in_progress", "content": []}})  # fmt: skip
        self.send_event({"type": "response.content_part.added", **ids, "part": {"type": "audio", "transcript": ""}})
        fields = json.dumps({**ids, "delta": ""})
        self.delta_fields = fields[1:-2].encode()  # '"response_id": ..., "delta": "' (no braces, no closing quote)
        self.pending.clear()
        self.target = self.peer.delta_frames() * _FRAME_BYTES

    def close_response(self, status: str) -> None:
        if self.pending:
            self.send_delta(base64.b64encode(self.pending))
            self.pending.clear()
        response_id, self.response_id = self.response_id, None
        self.send_event({"type": "response.output_audio.done", "response_id": response_id})
        self.send_event(
            {"type": "response.done", "response": {"object": "realtime.response", "id": response_id, "status": status}}
        )

    def on_append(self, b64: bytes) -> None:
        try:
            audio = binascii.a2b_base64(b64, strict_mode=True)
        except binascii.Error:
            self.error("invalid_value", "'audio' must be base64-encoded audio.")
            return
        if self.peer.vad and audio:
            speech = is_speech(audio)
            if speech != self.speaking:
                self.turn(speech)
            self.appended += len(audio)
        if self.response_id is None or not audio:
            return  # no response open: the audio would go to the conversation, which this peer does not keep
        if self.peer.deltas == "worst":
            self.send_delta(b64)
            return
        self.pending += audio
        while len(self.pending) >= self.target:
            self.send_delta(base64.b64encode(self.pending[: self.target]))
            del self.pending[: self.target]
            self.target = self.peer.delta_frames() * _FRAME_BYTES

    def turn(self, speech: bool) -> None:
        """vad: the caller started (``speech``) or stopped speaking at the frame being appended."""
        self.speaking = speech
        at_ms = self.appended // _BYTES_PER_MS
        if speech:
            self.input_item = self.peer.new_id("item")
            self.send_event(
                {"type": "input_audio_buffer.speech_started", "audio_start_ms": at_ms, "item_id": self.input_item}
            )
            if self.response_id is not None:  # the server interrupts its reply; what it had not sent is gone
                self.pending.clear()
                self.close_response("cancelled")
        else:
            self.send_event(
                {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": at_ms, "item_id": self.input_item}
            )
            if self.response_id is None:
                self.open_response({})


class EchoPeer:
    """The echo peer on ``host:port`` (0: a free one); ``serve()`` runs its loop until ``stop()``."""

    def __init__(
        self,
        api_key: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        deltas: Deltas = "worst",
        seed: int = 0,
        vad: bool = False,
    ) -> None:
        if deltas not in ("worst", "realistic"):
            raise ValueError(f"deltas must be 'worst' or 'realistic', not {deltas!r}")
        self.api_key = api_key
        self.deltas = deltas
        self.vad = vad
        self._rng = random.Random(seed)
        self._ids = itertools.count(1)
        self._listener = socket.create_server((host, port), backlog=1024)
        self._listener.setblocking(False)
        self.host, self.port = self._listener.getsockname()[:2]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._selector.register(self._wake_read, selectors.EVENT_READ)
        self._stopping = False
        self.sessions = 0  # connections upgraded so far

    @property
    def base_url(self) -> str:
        """What to give the client as OPENAI_BASE_URL."""
        return f"ws://{self.host}:{self.port}/v1/realtime"

    def next_number(self) -> int:
        return next(self._ids)

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_echo{next(self._ids):012d}"

    def delta_frames(self) -> int:
        """Frames of 20 ms in the next realistic delta: 5 to 15 (100-300 ms)."""
        return self._rng.randint(5, 15)

    def stop(self) -> None:
        """Make ``serve()`` return (from any thread)."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_write.send(b"x")

    def serve(self) -> None:
        """Run the loop until ``stop()``; every socket is closed on return."""
        selector = self._selector
        try:
            while not self._stopping:
                for key, events in selector.select():
                    if key.fileobj is self._listener:
                        self._accept()
                    elif key.fileobj is self._wake_read:
                        with contextlib.suppress(OSError):
                            self._wake_read.recv(64)
                    else:
                        session: _Session = key.data
                        if events & selectors.EVENT_READ:
                            self._read(session)
                        if events & selectors.EVENT_WRITE:
                            self._flush(session)
        finally:
            for key in list(selector.get_map().values()):
                if isinstance(key.data, _Session):
                    key.data.sock.close()
            selector.close()
            self._listener.close()
            self._wake_read.close()
            self._wake_write.close()

    def _accept(self) -> None:
        while True:
            try:
                sock, _address = self._listener.accept()
            except OSError:  # BlockingIOError: no more waiting
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._selector.register(sock, selectors.EVENT_READ, _Session(self, sock))

    def _read(self, session: _Session) -> None:
        try:
            data = session.sock.recv(_READ_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(session)
            return
        upgraded = session.upgraded
        if not session.closing:
            session.on_bytes(data)
        if session.upgraded and not upgraded:
            self.sessions += 1
        self._flush(session)

    def _flush(self, session: _Session) -> None:
        if session.out:
            try:
                sent = session.sock.send(session.out)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._drop(session)
                return
            del session.out[:sent]
        if session.out and not session.writing:
            self._selector.modify(session.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, session)
            session.writing = True
        elif not session.out and session.writing:
            self._selector.modify(session.sock, selectors.EVENT_READ, session)
            session.writing = False
        if session.closing and not session.out:
            self._drop(session)

    def _drop(self, session: _Session) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(session.sock)
        session.sock.close()


def start_in_thread(peer: EchoPeer) -> Callable[[], None]:
    """Serve ``peer`` on a daemon thread (tests); the function returned stops it and waits for the thread."""
    thread = threading.Thread(target=peer.serve, name="echo-realtime", daemon=True)
    thread.start()

    def stop() -> None:
        peer.stop()
        thread.join(5)

    return stop


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: a free one, printed)")
    parser.add_argument("--api-key", required=True, help="the bearer token a client must send")
    parser.add_argument(
        "--deltas",
        choices=("worst", "realistic"),
        default="worst",
        help="one delta per appended 20 ms frame, or deltas of 100-300 ms as the real API sends (default worst)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the realistic deltas' lengths")
    parser.add_argument(
        "--vad",
        action="store_true",
        help="play the server's turn detection: loud caller frames are speech (speech_started, the reply "
        "cancelled), the first silent one ends it (speech_stopped, a new reply)",
    )
    args = parser.parse_args(argv)
    peer = EchoPeer(args.api_key, host=args.host, port=args.port, deltas=args.deltas, seed=args.seed, vad=args.vad)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: peer.stop())
    print(f"echo Realtime peer listening on {peer.base_url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        peer.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
