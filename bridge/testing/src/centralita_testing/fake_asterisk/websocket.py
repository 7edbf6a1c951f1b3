"""The server side of ARI's events WebSocket (RFC 6455): the upgrade, text frames out, ping, pong and close in."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler
from typing import Final

_GUID: Final = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT: Final = 0x1
CLOSE: Final = 0x8
PING: Final = 0x9
PONG: Final = 0xA


class EventSocket:
    """One events connection of one Stasis app: frames are sent under a lock, from any thread."""

    def __init__(self, connection: socket.socket, app: str) -> None:
        self.connection = connection
        self.app = app
        self.lock = threading.Lock()
        self.open = True

    def send_frame(self, opcode: int, payload: bytes) -> None:
        header = bytes([0x80 | opcode])
        size = len(payload)
        if size < 126:
            header += bytes([size])
        elif size < 65536:
            header += bytes([126]) + struct.pack("!H", size)
        else:
            header += bytes([127]) + struct.pack("!Q", size)
        with self.lock:
            if self.open:
                with contextlib.suppress(OSError):
                    self.connection.sendall(header + payload)

    def close(self) -> None:
        self.open = False
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def accept(handler: BaseHTTPRequestHandler, app: str) -> EventSocket | None:
    """Answer the upgrade (101) and return the socket; None, with nothing sent, when it is not an upgrade."""
    key = handler.headers.get("Sec-WebSocket-Key", "")
    if handler.headers.get("Upgrade", "").lower() != "websocket" or not key or not app:
        return None
    token = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()
    handler.send_response(101, "Switching Protocols")
    handler.send_header("Upgrade", "websocket")
    handler.send_header("Connection", "Upgrade")
    handler.send_header("Sec-WebSocket-Accept", token)
    handler.end_headers()
    handler.wfile.flush()
    return EventSocket(handler.connection, app)


def serve(handler: BaseHTTPRequestHandler, sock: EventSocket) -> None:
    """Read the client's frames until it closes: answer pings, and a close with a close."""
    stream = handler.rfile
    while sock.open:
        head = stream.read(2)
        if len(head) < 2:
            return
        opcode, size = head[0] & 0x0F, head[1] & 0x7F
        if size == 126:
            size = struct.unpack("!H", stream.read(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", stream.read(8))[0]
        mask = stream.read(4) if head[1] & 0x80 else b"\0\0\0\0"
        payload = bytes(byte ^ mask[index % 4] for index, byte in enumerate(stream.read(size)))
        if opcode == CLOSE:  # answer it, then end the TCP connection as a server does
            sock.send_frame(CLOSE, payload[:2])
            sock.close()
            return
        if opcode == PING:
            sock.send_frame(PONG, payload)
