"""A stand-in for Asterisk's ARI, for the endpoints the dialer uses, on a real local HTTP port.

Asterisk cannot run in unit tests, so this serves, as ARI documents them:

* ``POST /ari/channels`` (originate): 400 without ``endpoint`` or with both ``app`` and ``context``, 409 when
  ``channelId`` is taken, else 200 with the channel snapshot;
* ``GET /ari/channels/{id}``: 200 with the snapshot, or 404 ``Channel not found``;
* ``POST /ari/applications/{app}/subscription?eventSource=channel:{id}``: 404 when the application has no
  events connection, 422 when the channel does not exist, else 200 with the application;
* ``GET /ari/events?app=...`` upgraded to a WebSocket (RFC 6455, text frames, ping/pong, close), on which the
  events of subscribed channels are sent.

Every request is recorded (method, path, query, JSON body). Basic auth is checked (401 otherwise). The test
drives the calls: ``answer``, ``set_var``, ``dial_status``, ``hang_up`` (with a Q.850 cause), ``vanish``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    body: Any


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


class _Socket:
    """One events WebSocket: sends text frames, under a lock."""

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
                self.connection.sendall(header + payload)

    def close(self) -> None:
        self.open = False
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class FakeAri:
    """The fake on 127.0.0.1:<free port>; a context manager. ``url`` is what ARI_URL would be."""

    def __init__(self, user: str = "centralita", password: str = "secreto") -> None:
        self.user = user
        self.password = password
        self.requests: list[Recorded] = []
        self.channels: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[str, set[str]] = {}  # app -> channel ids
        self.originate_delay = 0.0
        self.force_status: tuple[int, str] | None = None  # (status, message) for the next originate
        self._sockets: list[_Socket] = []
        self._lock = threading.Lock()
        self._counter = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

            def do_DELETE(self) -> None:
                fake._handle(self, "DELETE")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-ari", daemon=True
        )

    # ---- lifecycle -------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeAri:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            sock.close()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> FakeAri:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_until(self, condition: Callable[[], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.01)
        return condition()

    def connected_apps(self) -> list[str]:
        with self._lock:
            return [sock.app for sock in self._sockets if sock.open]

    def requests_to(self, method: str, path: str) -> list[Recorded]:
        with self._lock:
            return [request for request in self.requests if request.method == method and request.path == path]

    # ---- driving calls ---------------------------------------------------------------------------------

    def _event(self, channel_id: str, event: dict[str, Any]) -> None:
        with self._lock:
            apps = [app for app, ids in self.subscriptions.items() if channel_id in ids]
            sockets = [sock for sock in self._sockets if sock.open and sock.app in apps]
        for sock in sockets:
            sock.send_frame(0x1, json.dumps({**event, "timestamp": _stamp(), "application": sock.app}).encode())

    def _snapshot(self, channel_id: str) -> dict[str, Any]:
        with self._lock:
            return dict(self.channels[channel_id])

    def answer(self, channel_id: str) -> None:
        with self._lock:
            self.channels[channel_id]["state"] = "Up"
        self._event(channel_id, {"type": "ChannelStateChange", "channel": self._snapshot(channel_id)})

    def set_var(self, channel_id: str, variable: str, value: str) -> None:
        event = {"type": "ChannelVarset", "variable": variable, "value": value}
        self._event(channel_id, {**event, "channel": self._snapshot(channel_id)})

    def dial_status(self, channel_id: str, status: str) -> None:
        snapshot = self._snapshot(channel_id)
        self._event(channel_id, {"type": "Dial", "dialstatus": status, "peer": snapshot, "dialstring": "x"})

    def hang_up(self, channel_id: str, cause: int, cause_txt: str) -> None:
        snapshot = self._snapshot(channel_id)
        event = {"type": "ChannelDestroyed", "cause": cause, "cause_txt": cause_txt, "channel": snapshot}
        self._event(channel_id, event)
        with self._lock:
            del self.channels[channel_id]

    def vanish(self, channel_id: str) -> None:
        """The channel disappears and no event says so (a lost WebSocket)."""
        with self._lock:
            del self.channels[channel_id]

    # ---- HTTP ------------------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        with self._lock:
            self.requests.append(Recorded(method, parts.path, query, body))
        expected = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        if handler.headers.get("Authorization") != expected:
            self._reply(handler, 401, {"message": "Authentication required"})
            return
        path = parts.path
        if method == "GET" and path == "/ari/events":
            self._websocket(handler, query.get("app", ""))
        elif method == "POST" and path == "/ari/channels":
            self._originate(handler, query, body or {})
        elif method == "GET" and path.startswith("/ari/channels/"):
            channel_id = path.removeprefix("/ari/channels/")
            with self._lock:
                snapshot = dict(self.channels[channel_id]) if channel_id in self.channels else None
            if snapshot is None:
                self._reply(handler, 404, {"message": "Channel not found"})
            else:
                self._reply(handler, 200, snapshot)
        elif method == "POST" and path.startswith("/ari/applications/") and path.endswith("/subscription"):
            self._subscribe(handler, path.split("/")[3], query.get("eventSource", ""))
        else:
            self._reply(handler, 404, {"message": "Resource not found"})

    def _reply(self, handler: BaseHTTPRequestHandler, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _originate(self, handler: BaseHTTPRequestHandler, query: dict[str, str], body: dict[str, Any]) -> None:
        if self.force_status is not None:
            status, message = self.force_status
            self.force_status = None
            self._reply(handler, status, {"message": message})
            return
        if not query.get("endpoint"):
            self._reply(handler, 400, {"message": "Endpoint must be specified"})
            return
        if query.get("app") and query.get("context"):
            self._reply(handler, 400, {"message": "Application and dialplan location cannot both be specified"})
            return
        with self._lock:
            self._counter += 1
            channel_id = query.get("channelId") or f"{time.time():.0f}.{self._counter}"
            taken = channel_id in self.channels
            if not taken:
                self.channels[channel_id] = {
                    "id": channel_id,
                    "name": f"PJSIP/provider-{self._counter:08x}",
                    "state": "Down",
                    "protocol_id": "",
                    "caller": {"name": "", "number": ""},
                    "connected": {"name": "", "number": ""},
                    "accountcode": "",
                    "dialplan": {"context": query.get("context", "default"), "exten": "s", "priority": 1},
                    "creationtime": _stamp(),
                    "language": "es",
                    "channelvars": dict((body or {}).get("variables") or {}),
                }
                if query.get("app"):  # ARI subscribes the app it originates into
                    self.subscriptions.setdefault(query["app"], set()).add(channel_id)
        if taken:
            self._reply(handler, 409, {"message": "Channel with given unique ID already exists"})
            return
        if self.originate_delay:
            time.sleep(self.originate_delay)
        self._reply(handler, 200, self._snapshot(channel_id))

    def _subscribe(self, handler: BaseHTTPRequestHandler, app: str, source: str) -> None:
        if not source:
            self._reply(handler, 400, {"message": "Missing parameter eventSource"})
            return
        with self._lock:
            registered = app in [sock.app for sock in self._sockets if sock.open]
            scheme, _, channel_id = source.partition(":")
            exists = scheme == "channel" and channel_id in self.channels
            if registered and exists:
                self.subscriptions.setdefault(app, set()).add(channel_id)
            ids = sorted(self.subscriptions.get(app, set()))
        if not registered:
            self._reply(handler, 404, {"message": "Application not found"})
        elif not exists:
            self._reply(handler, 422, {"message": "Unable to find event source"})
        else:
            self._reply(handler, 200, {"name": app, "channel_ids": ids, "bridge_ids": [], "endpoint_ids": []})

    def _websocket(self, handler: BaseHTTPRequestHandler, app: str) -> None:
        key = handler.headers.get("Sec-WebSocket-Key", "")
        if handler.headers.get("Upgrade", "").lower() != "websocket" or not key or not app:
            self._reply(handler, 400, {"message": "WebSocket upgrade and app required"})
            return
        accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
        handler.send_response(101, "Switching Protocols")
        handler.send_header("Upgrade", "websocket")
        handler.send_header("Connection", "Upgrade")
        handler.send_header("Sec-WebSocket-Accept", accept)
        handler.end_headers()
        handler.wfile.flush()
        sock = _Socket(handler.connection, app)
        with self._lock:
            self._sockets.append(sock)
        try:
            self._read_frames(handler, sock)
        finally:
            sock.open = False
            with self._lock:
                self._sockets.remove(sock)
            handler.close_connection = True

    @staticmethod
    def _read_frames(handler: BaseHTTPRequestHandler, sock: _Socket) -> None:
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
            if opcode == 0x8:  # close: answer it, then end the TCP connection as a server does
                sock.send_frame(0x8, payload[:2])
                sock.close()
                return
            if opcode == 0x9:  # ping
                sock.send_frame(0xA, payload)
