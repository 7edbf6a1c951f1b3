"""One call's WebSocket to the Realtime API: the GA handshake in order, then a receive thread.

Connect, wait for ``session.created``, send ``session.update``, wait for ``session.updated``, then check
which audio formats the server really uses (a model may ignore the requested output format, and the bridge
must then convert instead of playing PCM16 as μ-law noise). After that a receive thread delivers events to a
callback.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import random
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Self

import websocket

from centralita.config.bridge import Secret
from centralita.realtime.events import AudioFormat, JsonObject, audio_append_text
from centralita.realtime.wire import FrameReader, client_frame

EventCallback = Callable[[JsonObject], None]

log = logging.getLogger(__name__)

_POLL_SECONDS: Final = 0.05  # how often the receive thread looks up from the socket (close, pings)
_NORMAL_CLOSURE: Final = 1000
_READ_BYTES: Final = 65536  # read at once: every frame that has arrived, not one header at a time


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


def parse_event(data: bytes) -> JsonObject | None:
    """A server event out of a data message; None (logged) when it is not a JSON object."""
    try:
        event = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        log.warning("ignoring a Realtime message that is not JSON (%d bytes)", len(data))
        return None
    if not isinstance(event, dict):
        log.warning("ignoring a Realtime message that is not an object")
        return None
    return event


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
        # The receive thread is started and published under this lock, and close() reads it under it: close() never
        # joins a thread not yet started, and a connection closed before its thread starts starts none.
        self._thread_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._closed = threading.Event()
        self._close_sent = False
        self._close_deadline = 0.0
        self._close_info: CloseInfo | None = None
        self._pending: list[JsonObject] = []  # events that arrived during the handshake, delivered afterwards
        self._reader = FrameReader()
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

    def connect(self, session_update_event: Mapping[str, Any], *, within: float | None = None) -> SessionInfo:
        """Open the socket and configure the session; raise a RealtimeError (and release everything) on failure.

        ``within`` bounds the whole handshake (socket, ``session.created``, ``session.updated``) in seconds, on top
        of each step's own timeout: a caller who hears the phone ring while it runs must not wait longer.
        """
        if self._ws is not None:
            raise RuntimeError("connect() may be called only once per RealtimeConnection")
        requested = session_update_event.get("session", {})
        requested_out = AudioFormat.from_json(requested.get("audio", {}).get("output", {}).get("format", {}))
        requested_in = AudioFormat.from_json(requested.get("audio", {}).get("input", {}).get("format", {}))
        log.info("connecting to the Realtime API at %s", self._url)
        overall = time.monotonic() + within if within is not None else None
        ws = self._open(overall)
        self._ws = ws
        try:
            deadline = self._step_deadline(overall)
            self._await_event(ws, "session.created", deadline)
            self.send(dict(session_update_event))
            deadline = self._step_deadline(overall)
            updated = self._await_event(ws, "session.updated", deadline)
            info = self._session_info(updated.get("session", {}), requested_in, requested_out)
        except BaseException as error:
            self._teardown(ws)
            self._finish(CloseInfo(None, by_client=True, error=f"handshake failed: {error}"), notify=False)
            raise
        self._session = info
        self._start_receiving()
        return info

    def _start_receiving(self) -> None:
        """After the handshake: the receive thread (``on_loop.LoopRealtimeConnection`` serves it on the media loop
        instead)."""
        # The receive thread runs in a copy of the caller's context, so its log lines keep the call's id.
        context = contextvars.copy_context()
        with self._thread_lock:
            if self._closing.is_set() or self._closed.is_set():
                return
            thread = threading.Thread(
                target=context.run, args=(self._receive_loop,), name="realtime-receive", daemon=True
            )
            thread.start()
            self._thread = thread

    def send(self, event: Mapping[str, Any]) -> None:
        """Send one client event; thread-safe. RealtimeError when the connection is not open."""
        self._send_text(event.get("type"), json.dumps(event).encode())

    def send_audio(self, audio: bytes) -> None:
        """Send ``audio_append(audio)``, built for less (the caller's audio goes 50 times a second)."""
        event_id = f"evt_{self._ids.getrandbits(80):020x}"
        self._send_text("input_audio_buffer.append", audio_append_text(audio, event_id))

    def _send_text(self, event_type: object, text: bytes) -> None:
        ws = self._ws
        if ws is None or self._closing.is_set() or self._closed.is_set():
            raise RealtimeError(f"cannot send {event_type}: the Realtime connection is not open")
        frame = client_frame(text)
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
        with self._thread_lock:
            thread = self._thread
        if thread is threading.current_thread():  # closed from its own receive thread: it tears down as it returns
            return
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

    def _step_deadline(self, overall: float | None) -> float:
        """When the next handshake step must be done: its own timeout, or the whole handshake's end if sooner."""
        step = time.monotonic() + self._session_timeout
        return step if overall is None else min(step, overall)

    def _open(self, overall: float | None = None) -> websocket.WebSocket:
        header = [f"Authorization: Bearer {self._api_key.reveal()}"]
        timeout = self._open_timeout
        if overall is not None:
            timeout = max(0.001, min(timeout, overall - time.monotonic()))
        try:
            # websocket-client checks UTF-8 in pure Python, about 0.1 ms per audio delta: the bridge's largest
            # cost per call. json.loads decodes strictly anyway, and a message that is not UTF-8 is then dropped
            # like any other that is not JSON.
            return websocket.create_connection(
                self._url,
                timeout=timeout,
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
            raise RealtimeTimeout(f"no WebSocket handshake with {self._url} within {timeout:g} s") from error
        except (websocket.WebSocketException, OSError) as error:
            raise RealtimeUnreachable(f"cannot connect to {self._url}: {error}") from error

    def _await_event(self, ws: websocket.WebSocket, wanted: str, deadline: float) -> JsonObject:
        """Read until the event ``wanted``; any ``error`` event or a close during the handshake is fatal."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RealtimeTimeout(f"no {wanted} in time (the handshake's deadline passed)")
            ws.settimeout(remaining)
            try:
                event = self._read(ws)
            except (websocket.WebSocketTimeoutException, TimeoutError):
                raise RealtimeTimeout(f"no {wanted} in time (the handshake's deadline passed)") from None
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
            return parse_event(data)
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
