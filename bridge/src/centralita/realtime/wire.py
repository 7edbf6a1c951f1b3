"""WebSocket data frames written and read by hand: the 50-a-second audio frames of every call.

websocket-client opens the connection and sends the control frames; the data frames, 50 a second each way
on every call, are written and read here (``client_frame``, ``FrameReader``), at a fraction of the
library's cost per frame.
"""

from __future__ import annotations

import os
import struct
from typing import Any, Final

import websocket

JsonObject = dict[str, Any]


# --- WebSocket data frames ----------------------------------------------------------------------------


def client_frame(payload: bytes, opcode: int = websocket.ABNF.OPCODE_TEXT) -> bytes:
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


class FrameReader:
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
