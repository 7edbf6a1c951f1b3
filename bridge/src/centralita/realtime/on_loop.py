"""One call's Realtime WebSocket served by the process's ``MediaLoop`` (``MEDIA_ENGINE=loop``): no thread of its own.

websocket-client still does the handshake (``RealtimeConnection.connect``: the TCP and TLS connection, the HTTP
upgrade, ``session.created`` and ``session.updated``, on the calling thread). Then the socket is made
non-blocking and put on the loop, which serves every call's RTP too:

* **Reading**: when the socket is readable the loop reads what has arrived (a few reads at most per round, so one
  busy connection cannot hold the others up; what is left is read next round) and hands it to the framing
  (``wire.FrameReader``). Events go to ``on_event`` on the loop: an audio delta goes straight to the call's
  playout, and the slow work an event may start (tools, records, failover) is handed to other threads by the
  call. Over TLS, a read may leave decrypted bytes in the TLS buffer, which epoll cannot see: the connection
  asks the loop to read it again next round without waiting (``sslsock.pending()``).
* **Writing**: every send is queued on the connection's send buffer and written by the loop without ever
  blocking; the loop asks to hear of the socket being writable (EPOLLOUT) only while the buffer holds
  something. A send from another thread (a tool's output) is handed to the loop (``MediaLoop.call_soon``), so
  that every read and write of the socket, TLS included, happens on the loop's thread.
* **A connection that stops reading** (the server, or the network path, stalls) fills its own buffer and no
  other: beyond ``send_buffer_bytes`` the oldest caller audio still queued is dropped (counted in
  ``stats.audio_frames_dropped``: stale audio is worth nothing to turn detection, and the newest is what the
  model must hear when the path recovers); the other events (tool outputs, ``response.create``) are never
  dropped. If they alone grow past four times the bound, or the stall outlasts the keepalive (no pong within
  ``ping_timeout``), the connection is given up and the call goes to failover as for any lost connection.
* **Keepalive and close**: a ping every ``ping_interval`` seconds, the connection given up when no pong comes
  within ``ping_timeout`` (timers on the loop); the server's pings are answered; ``close()`` sends a close frame
  (code 1000) and waits up to its timeout for the server's, as the threads engine does.
"""

from __future__ import annotations

import collections
import logging
import socket
import ssl
import struct
import threading
from dataclasses import dataclass
from typing import Any, Final

import websocket

from centralita.config.bridge import Secret
from centralita.media.loop import LoopTimer, MediaLoop, StreamEntry
from centralita.media.rtp import FRAME_BYTES
from centralita.realtime.connection import (
    _NORMAL_CLOSURE,
    _READ_BYTES,
    CloseInfo,
    RealtimeConnection,
    RealtimeError,
    _parse_close,
    parse_event,
)
from centralita.realtime.events import audio_append_text
from centralita.realtime.wire import client_frame

__all__ = ["SEND_BUFFER_BYTES", "ConnectionStats", "LoopRealtimeConnection"]

log = logging.getLogger(__name__)

SEND_BUFFER_BYTES: Final = 64 * 1024  # about 4 s of caller audio as appends (~15 kB/s): older is worthless
_HARD_FACTOR: Final = 4  # events that are never dropped may fill this many times the bound: then give up
_SHED_TO: Final = 0.75  # dropping audio frees a quarter of the bound at once, not one frame per send
_WRITE_CHUNK: Final = 16 * 1024  # queued frames joined into one write of up to this much
_READS_PER_ROUND: Final = 4  # reads of one connection per loop round (the rest next round)

_PING: Final = client_frame(b"", websocket.ABNF.OPCODE_PING)


@dataclass(slots=True)
class ConnectionStats:
    """What the connection's send buffer went through."""

    audio_frames_dropped: int = 0  # 20 ms caller frames dropped from a full send buffer (oldest first)
    write_waits: int = 0  # times the socket would not take more and the loop waited for EPOLLOUT
    bytes_sent: int = 0
    bytes_read: int = 0


class LoopRealtimeConnection(RealtimeConnection):
    """A ``RealtimeConnection`` served by ``loop`` after the handshake (see the module's doc)."""

    def __init__(
        self,
        url: str,
        api_key: Secret | str,
        *,
        loop: MediaLoop,
        send_buffer_bytes: int = SEND_BUFFER_BYTES,
        **options: Any,
    ) -> None:
        """``options`` as for ``RealtimeConnection``; ``send_buffer_bytes`` bounds the queued caller audio."""
        super().__init__(url, api_key, **options)
        if send_buffer_bytes < 4096:
            raise ValueError(f"send_buffer_bytes must be 4096 or more, not {send_buffer_bytes}")
        self._loop = loop
        self._limit = send_buffer_bytes
        self._out: collections.deque[tuple[bytes, int]] = collections.deque()  # (frame, caller frames in it)
        self._out_bytes = 0
        self._out_lock = threading.Lock()  # senders on any thread append, the loop takes
        self._inflight: memoryview | None = None  # a write the socket took part of (or TLS must retry as is)
        self._flush_handed = False  # a flush is on its way to the loop (``call_soon``)
        self._sock: socket.socket | None = None
        self._stream: StreamEntry | None = None
        self._attached = False  # after the handshake: sends go to the buffer
        self._done = False
        self._done_lock = threading.Lock()
        self._keepalive: LoopTimer | None = None
        self._closer: LoopTimer | None = None
        self._last_ping = 0.0
        self._awaiting_pong = False
        self.stats = ConnectionStats()

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting in the send buffer (not counting a write in progress)."""
        with self._out_lock:
            return self._out_bytes

    # -- sending (any thread) --

    def send_audio(self, audio: bytes) -> None:
        """One ``input_audio_buffer.append`` of ``audio`` (one or more 20 ms frames), queued."""
        if not self._attached:
            super().send_audio(audio)
            return
        event_id = f"evt_{self._ids.getrandbits(80):020x}"
        frames = max(1, len(audio) // FRAME_BYTES)
        self._queue("input_audio_buffer.append", client_frame(audio_append_text(audio, event_id)), frames)

    def _send_text(self, event_type: object, text: bytes) -> None:
        if not self._attached:  # the handshake's session.update: websocket-client's blocking socket still
            super()._send_text(event_type, text)
            return
        self._queue(event_type, client_frame(text), 0)

    def _queue(self, event_type: object, frame: bytes, audio_frames: int) -> None:
        if self._closing.is_set() or self._closed.is_set():
            raise RealtimeError(f"cannot send {event_type}: the Realtime connection is not open")
        with self._out_lock:
            self._out.append((frame, audio_frames))
            self._out_bytes += len(frame)
            if self._out_bytes > self._limit:
                self._shed()
            overfull = self._out_bytes > self._limit * _HARD_FACTOR
        if overfull:
            self._loop.call_soon(self._give_up_overfull)
        self._hand_flush()

    def _shed(self) -> None:
        """Drop the oldest caller audio until the buffer is at ``_SHED_TO`` of its bound (under ``_out_lock``)."""
        target = self._limit * _SHED_TO
        kept: collections.deque[tuple[bytes, int]] = collections.deque()
        dropped = 0
        for item in self._out:
            if item[1] and self._out_bytes > target:
                self._out_bytes -= len(item[0])
                dropped += item[1]
            else:
                kept.append(item)
        self._out = kept
        if dropped:
            if not self.stats.audio_frames_dropped:
                log.warning(
                    "the Realtime connection does not take the caller's audio (send buffer of %d bytes full): "
                    "the oldest is dropped",
                    self._limit,
                )
            self.stats.audio_frames_dropped += dropped

    def _hand_flush(self) -> None:
        if self._loop.in_loop():
            self._flush()
            return
        with self._out_lock:
            if self._flush_handed:
                return
            self._flush_handed = True
        self._loop.call_soon(self._flush)

    def _queue_control(self, frame: bytes) -> None:
        """A pong, ping or close frame (on the loop): never refused, never dropped."""
        with self._out_lock:
            self._out.append((frame, 0))
            self._out_bytes += len(frame)
        self._flush()

    # -- on the loop --

    def _start_receiving(self) -> None:
        ws = self._ws
        assert ws is not None
        self._sock = ws.sock
        self._attached = True
        self._loop.call_soon(self._attach)

    def _attach(self) -> None:
        sock = self._sock
        if self._done or self._closed.is_set() or sock is None:
            return
        try:
            self._stream = self._loop.add_stream(sock, self._on_readable, self._on_writable)
        except RuntimeError as error:  # the loop closed meanwhile (the service is stopping)
            self._end(CloseInfo(None, error=str(error)))
            return
        for event in self._pending:  # what arrived with the handshake's events, in order
            self._deliver(event)
            if self._done:
                return
        self._pending.clear()
        now = self._loop.clock()
        self._last_ping = now
        self._keepalive = self._loop.call_at(now + self._ping_interval, self._keep_alive)
        self._stream.mark_ready()  # the handshake's reads may have left whole frames (or TLS records) behind
        self._flush()

    def _on_readable(self, _now: float) -> None:
        sock, stream = self._sock, self._stream
        if self._done or sock is None or stream is None:
            return
        try:
            if not self._handle_frames():
                return
            for _ in range(_READS_PER_ROUND):
                try:
                    data = sock.recv(_READ_BYTES)
                except (BlockingIOError, ssl.SSLWantReadError):
                    break
                except ssl.SSLWantWriteError:  # TLS must write (a key update) before it reads on
                    stream.want_write(True)
                    break
                if not data:
                    raise websocket.WebSocketConnectionClosedException("Connection to remote host was lost.")
                self.stats.bytes_read += len(data)
                self._reader.feed(data)
                if not self._handle_frames():
                    return
                if len(data) < _READ_BYTES and not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                    break  # the kernel had no more: no read that would only say so
            else:
                stream.mark_ready()  # the round's reads are used up: the rest next round
            if isinstance(sock, ssl.SSLSocket) and sock.pending():
                stream.mark_ready()  # decrypted bytes epoll cannot see
        except (websocket.WebSocketException, OSError) as error:
            self._end(CloseInfo(None, by_client=self._closing.is_set(), error=str(error) or type(error).__name__))
            return
        if self._inflight is not None or self._out_bytes:
            self._flush()  # a TLS write that waited for a read goes on

    def _handle_frames(self) -> bool:
        """Act on every whole frame buffered; False once the connection has ended."""
        while (frame := self._reader.next()) is not None:
            opcode, data = frame
            if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                event = parse_event(data)
                if event is not None:
                    self._deliver(event)
            elif opcode == websocket.ABNF.OPCODE_CLOSE:
                code, reason = _parse_close(data)
                self._send_close_frame(code if code is not None and code != 1005 else _NORMAL_CLOSURE)
                self._end(CloseInfo(code, reason, by_client=self._closing.is_set()))
            elif opcode == websocket.ABNF.OPCODE_PING:
                self._queue_control(client_frame(data, websocket.ABNF.OPCODE_PONG))
            elif opcode == websocket.ABNF.OPCODE_PONG:
                self._awaiting_pong = False
            if self._done:
                return False
        return True

    def _on_writable(self, _now: float) -> None:
        self._flush()

    def _flush(self) -> None:
        """Write what the buffer holds until the socket would block (then wait for EPOLLOUT). On the loop."""
        with self._out_lock:
            self._flush_handed = False
        sock, stream = self._sock, self._stream
        if self._done or sock is None or stream is None:
            return
        while True:
            view = self._inflight
            if view is None:
                with self._out_lock:
                    if not self._out:
                        break
                    parts: list[bytes] = []
                    size = 0
                    while self._out and size < _WRITE_CHUNK:
                        frame = self._out.popleft()[0]
                        parts.append(frame)
                        size += len(frame)
                    self._out_bytes -= size
                view = self._inflight = memoryview(parts[0] if len(parts) == 1 else b"".join(parts))
            try:
                sent = sock.send(view)  # TLS: a write that must be retried is retried with the same bytes
            except (BlockingIOError, ssl.SSLWantWriteError):
                self.stats.write_waits += 1
                stream.want_write(True)
                return
            except ssl.SSLWantReadError:
                return  # TLS must read first: the next readable round writes on
            except OSError as error:
                self._end(CloseInfo(None, by_client=self._closing.is_set(), error=f"send failed: {error}"))
                return
            self.stats.bytes_sent += sent
            self._inflight = None if sent >= len(view) else view[sent:]
        stream.want_write(False)

    def _keep_alive(self, now: float) -> float | None:
        """The keepalive timer: a ping every ``ping_interval``; no pong within ``ping_timeout`` ends the session."""
        if self._done or self._closing.is_set():
            return None
        if self._awaiting_pong:
            if now - self._last_ping >= self._ping_timeout - 1e-6:
                self._end(CloseInfo(None, error=f"no pong within {self._ping_timeout} s"))
                return None
            return self._last_ping + self._ping_timeout
        due = self._last_ping + self._ping_interval
        if now + 1e-6 < due:
            return due
        self._last_ping, self._awaiting_pong = now, True
        self._queue_control(_PING)
        return now + self._ping_timeout

    def _send_close_frame(self, code: int) -> None:
        if self._close_sent:
            return
        self._close_sent = True
        self._queue_control(client_frame(struct.pack("!H", code), websocket.ABNF.OPCODE_CLOSE))

    def _begin_close(self, timeout: float) -> None:
        if self._done:
            return
        self._send_close_frame(_NORMAL_CLOSURE)
        if self._done:
            return

        def no_answer(_now: float) -> None:
            self._end(CloseInfo(None, by_client=True, error="no close frame from the server in time"))

        self._closer = self._loop.call_at(self._loop.clock() + timeout, no_answer)

    def _give_up_overfull(self) -> None:
        if not self._done:
            self._end(
                CloseInfo(
                    None,
                    by_client=self._closing.is_set(),
                    error=f"the server took nothing for too long (send buffer over {self._limit * _HARD_FACTOR} bytes)",
                )
            )

    def _end(self, close: CloseInfo) -> None:
        """Off the loop, socket closed, ``on_close`` told once. On the loop (or holding its lock)."""
        with self._done_lock:
            if self._done:
                return
            self._done = True
        for timer in (self._keepalive, self._closer):
            if timer is not None:
                timer.cancel()
        if self._stream is not None:
            self._stream.cancel()
        ws = self._ws
        if ws is not None:
            self._teardown(ws)
        with self._out_lock:
            self._out.clear()
            self._out_bytes = 0
        self._inflight = None
        self._finish(close)

    # -- closing (any thread) --

    def close(self, timeout: float = 2.0) -> None:
        """Close with code 1000 and wait up to ``timeout`` for the server's close frame (not when called on the
        loop: the close then goes on there), then release everything."""
        if not self._attached:
            super().close(timeout)
            return
        if self._closed.is_set():
            return
        if not self._closing.is_set():
            self._close_deadline = self._loop.clock() + timeout
            self._closing.set()
            self._loop.call_soon(lambda: self._begin_close(timeout))
        if self._loop.in_loop():
            return
        if self._loop.closed or not self._closed.wait(timeout + 1.0):
            with self._loop._lock:  # the loop is gone (or stuck): cut the connection here
                self._end(CloseInfo(None, by_client=True, error="closed without the media loop"))
