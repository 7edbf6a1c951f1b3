"""Timing of outgoing audio: a 20 ms frame clock, and the thread that runs the clocks of many calls.

The Realtime API delivers audio in bursts, much faster than real time, while the caller's side expects one
160-byte frame every 20 ms: sent too fast, Asterisk's jitter buffer overflows and drops audio; too slow,
the caller hears gaps. The pacer does no I/O, and the clock and sleep are injected, so the timing is tested
exactly with a fake clock. ``PacerThread`` runs the pacers of many calls on one thread; what each slot sends
is the business of its callback (a call's ``Playout``).
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable

from centralita.media.rtp import FRAME_MS

FRAME_SECONDS = FRAME_MS / 1000

log = logging.getLogger(__name__)


class Pacer:
    """A deadline-based frame clock: frame n is due at start + n x 20 ms.

    Deadlines come from the start time, never from "now + 20 ms", so oversleeping and the time spent
    between frames do not accumulate into drift. A sender that falls behind by up to ``max_lag_frames``
    catches up by sending without sleeping; one that falls further behind (a stalled event loop, a
    suspended VM) skips the missed slots instead of bursting them, and the skipped slots are counted.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        *,
        frame_seconds: float = FRAME_SECONDS,
        max_lag_frames: int = 3,
        start: float | None = None,
    ) -> None:
        """``start`` is the clock time of the first slot; by default the time of the first ``wait``."""
        if not frame_seconds > 0:
            raise ValueError(f"frame_seconds must be greater than 0, not {frame_seconds}")
        if max_lag_frames < 0:
            raise ValueError(f"max_lag_frames must be 0 or more, not {max_lag_frames}")
        self._clock = clock
        self._sleep = sleep
        self._frame_seconds = frame_seconds
        self._max_lag = max_lag_frames * frame_seconds
        self._start = start
        self._frame = 0
        self._late_frames = 0
        self._resyncs = 0

    @property
    def next_deadline(self) -> float | None:
        """When the next frame is due (clock time); None until the first ``wait``."""
        if self._start is None:
            return None
        return self._start + self._frame * self._frame_seconds

    @property
    def frames(self) -> int:
        """Frame slots passed so far, sent or skipped."""
        return self._frame

    @property
    def late_frames(self) -> int:
        """Frame slots skipped because the sender fell too far behind."""
        return self._late_frames

    @property
    def resyncs(self) -> int:
        """How many times the pacer skipped ahead."""
        return self._resyncs

    def wait(self) -> int:
        """Block until the next frame is due, then claim it; return how many slots were skipped first.

        The first call starts the clock and returns at once. A non-zero return means that much audio time
        passed unsent: the RTP timestamp should jump by as many frames (``RtpSender.start_talkspurt``).
        """
        now = self._clock()
        if self._start is None:
            self._start = now
        deadline = self._start + self._frame * self._frame_seconds
        if now < deadline:
            self._sleep(deadline - now)
            now = deadline
        return self.claim(now)

    def claim(self, now: float) -> int:
        """Claim the next slot at clock time ``now`` without sleeping; return how many slots were skipped first.

        For a caller that does its own waiting (``PacerThread``): call it at or after ``next_deadline``.
        Up to ``max_lag_frames`` behind, the slot is simply taken (the caller catches up); further behind,
        the missed slots are skipped as in ``wait``.
        """
        if self._start is None:
            self._start = now
        deadline = self._start + self._frame * self._frame_seconds
        skipped = 0
        if now - deadline > self._max_lag:
            # Jump to the slot that contains "now"; the grid stays anchored at the start time.
            skipped = math.floor((now - deadline) / self._frame_seconds)
            self._frame += skipped
            self._late_frames += skipped
            self._resyncs += 1
        self._frame += 1
        return skipped


SlotCallback = Callable[[int], bool]


class PacedStream:
    """One stream's place on a ``PacerThread``, from ``PacerThread.add`` until ``cancel()`` or its callback quits."""

    __slots__ = ("_context", "_on_slot", "_owner", "cancelled", "pacer")

    def __init__(self, owner: PacerThread, pacer: Pacer, on_slot: SlotCallback) -> None:
        self._owner = owner
        self._on_slot = on_slot
        self._context = contextvars.copy_context()  # the adding thread's (the call's id on its log lines)
        self.pacer = pacer
        self.cancelled = False

    def cancel(self) -> None:
        """Take the stream off its thread. Once this returns its callback is not running and never runs again
        (except when called from the callback itself, which then simply finishes)."""
        self._owner._cancel(self)

    def _play(self, now: float) -> bool:
        return self._context.run(self._on_slot, self.pacer.claim(now))


class PacerThread:
    """The 20 ms frame clocks of many streams (one per call) on one thread.

    A sending thread per call costs a wakeup, a context switch and a handover of the GIL, every 20 ms for every
    call; here one thread serves them all. Each stream keeps its own ``Pacer``, so its own 20 ms grid, but the
    grid starts on a tick of ``tick_seconds`` (1 ms): the streams that fall on the same tick are served by one
    wakeup, so any number of calls costs at most 1000 wakeups a second, and no stream's grid ever moves.

    At each of its deadlines a stream's ``on_slot(skipped)`` runs on this thread (``skipped`` as from
    ``Pacer.claim``); it must not block, since the other streams wait for it, and it returns False to leave.
    The thread starts with the first stream and ends with ``close()``.
    """

    def __init__(
        self,
        *,
        name: str = "rtp-out",
        clock: Callable[[], float] = time.monotonic,
        tick_seconds: float = 0.001,
        frame_seconds: float = FRAME_SECONDS,
        max_lag_frames: int = 3,
    ) -> None:
        if not 0 < tick_seconds <= frame_seconds:
            raise ValueError(f"tick_seconds must be greater than 0 and at most frame_seconds, not {tick_seconds}")
        Pacer(clock, frame_seconds=frame_seconds, max_lag_frames=max_lag_frames)  # the same checks as a Pacer's
        self._name = name
        self._clock = clock
        self._tick = tick_seconds
        self._frame_seconds = frame_seconds
        self._max_lag_frames = max_lag_frames
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._due: list[tuple[float, int, PacedStream]] = []  # a heap of (next deadline, order added, stream)
        self._order = itertools.count()
        self._playing: PacedStream | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def streams(self) -> int:
        """Streams on the thread (cancelled ones may count until their next deadline)."""
        with self._lock:
            return len(self._due) + (self._playing is not None)

    def add(self, on_slot: SlotCallback) -> PacedStream:
        """Start a stream: its first slot is the next tick, then one every frame. RuntimeError once closed."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the PacerThread is closed")
            start = math.ceil(self._clock() / self._tick) * self._tick
            pacer = Pacer(
                self._clock, frame_seconds=self._frame_seconds, max_lag_frames=self._max_lag_frames, start=start
            )
            stream = PacedStream(self, pacer, on_slot)
            heapq.heappush(self._due, (start, next(self._order), stream))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._changed.notify_all()
        return stream

    def close(self, timeout: float = 2.0) -> None:
        """Drop every stream and stop the thread (waiting up to ``timeout`` for it). Idempotent."""
        with self._lock:
            self._closed = True
            for _, _, stream in self._due:
                stream.cancelled = True
            self._due.clear()
            self._changed.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _cancel(self, stream: PacedStream) -> None:
        with self._lock:
            stream.cancelled = True
            if threading.current_thread() is not self._thread:
                while self._playing is stream:
                    self._changed.wait()

    def _run(self) -> None:
        while True:
            with self._lock:
                while True:
                    if self._closed:
                        return
                    if not self._due:
                        self._changed.wait()
                        continue
                    delay = self._due[0][0] - self._clock()
                    if delay <= 0:
                        break
                    self._changed.wait(delay)
                now = self._clock()
                ready = []
                while self._due and self._due[0][0] <= now:
                    stream = heapq.heappop(self._due)[2]
                    if not stream.cancelled:
                        ready.append(stream)
            for stream in ready:
                self._play(stream, now)

    def _play(self, stream: PacedStream, now: float) -> None:
        with self._lock:
            if stream.cancelled:
                return
            self._playing = stream
        keep = False
        try:
            keep = stream._play(now)
        except Exception:
            log.exception("a paced stream failed and was stopped")
        finally:
            with self._lock:
                self._playing = None
                deadline = stream.pacer.next_deadline
                if keep and not stream.cancelled and not self._closed and deadline is not None:
                    heapq.heappush(self._due, (deadline, next(self._order), stream))
                else:
                    stream.cancelled = True
                self._changed.notify_all()
