"""The caller's audio from the media loop to the call's Realtime connection, on a thread of the call's own.

With ``MEDIA_ENGINE=loop`` the call's RTP is read on the process's ``MediaLoop`` (``media/loop.py``), which
must never wait, while a send on the Realtime WebSocket may: websocket-client writes on a blocking (TLS)
socket, and a server that stops reading fills its buffer. So the loop only queues the caller's frames here
(``put`` never blocks) and this thread sends them, one ``input_audio_buffer.append`` per frame as with the
threads engine; a connection that stalls holds up this call's audio alone. The WebSocket is not on the loop
yet: when it is, this thread goes.

The thread also runs the call's periodic checks (``tick``, its watchdogs), as the RTP thread does with the
threads engine, and stops for good when ``send`` returns False (the connection is gone).

The queue is bounded (``max_frames``): a connection that stalls for seconds must not grow a call's memory
without limit; the oldest frames go first, counted in ``dropped``.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["Uplink"]


class Uplink:
    """One call's queue of caller frames and the thread that sends them (see the module's doc)."""

    def __init__(
        self,
        *,
        send: Callable[[bytes], bool],
        heard: Callable[[float], None],
        tick: Callable[[float], None],
        every: float,
        name: str,
        max_frames: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``send`` sends one frame (False: the connection is gone, the thread ends); ``heard(at)`` says that
        Asterisk's RTP arrived at ``at``; ``tick(now)`` runs every ``every`` seconds."""
        if every <= 0:
            raise ValueError(f"every must be above 0, not {every}")
        if max_frames < 1:
            raise ValueError(f"max_frames must be 1 or more, not {max_frames}")
        self._send = send
        self._heard = heard
        self._tick = tick
        self._every = every
        self._max_frames = max_frames
        self._clock = clock
        self._name = name
        self._changed = threading.Condition(threading.Lock())
        self._frames: deque[bytes] = deque()
        self._heard_at: float | None = None
        self._dropped = 0
        self._stop = False
        self._thread: threading.Thread | None = None

    @property
    def dropped(self) -> int:
        """Frames dropped because the queue was full (the connection did not take them in time)."""
        with self._changed:
            return self._dropped

    def start(self) -> None:
        """Start the thread, in a copy of the caller's context (the call's id on its log lines)."""
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._run,), name=self._name, daemon=True)
        self._thread.start()

    def put(self, frames: list[bytes], at: float) -> None:
        """Queue the caller's ``frames`` (possibly none: RTP came but released no audio yet), received at
        ``at``. Never blocks."""
        with self._changed:
            if self._stop:
                return
            self._frames.extend(frames)
            over = len(self._frames) - self._max_frames
            for _ in range(max(0, over)):
                self._frames.popleft()
            self._dropped += max(0, over)
            self._heard_at = at
            self._changed.notify()

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread and wait up to ``timeout`` for it (not when called on it). Idempotent."""
        with self._changed:
            self._stop = True
            self._frames.clear()
            self._changed.notify()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        next_tick = 0.0
        while True:
            with self._changed:
                while not self._stop and not self._frames and self._heard_at is None:
                    wait = next_tick - self._clock()
                    if wait <= 0:
                        break
                    self._changed.wait(wait)
                if self._stop:
                    return
                frames, self._frames = self._frames, deque()
                heard_at, self._heard_at = self._heard_at, None
            now = self._clock()
            if now >= next_tick:
                next_tick = now + self._every
                self._tick(now)
            if heard_at is not None:
                self._heard(heard_at)
            for frame in frames:
                if not self._send(frame):
                    with self._changed:  # the connection is gone: what comes now is not dropped, just unsent
                        self._stop = True
                        self._frames.clear()
                    return
