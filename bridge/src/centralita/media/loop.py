"""One event loop for the RTP of every call of the process: reading, 20 ms pacing and sending, on one thread.

With ``MEDIA_ENGINE=threads`` each call has a thread blocked on its RTP socket and the calls share a
``PacerThread``; every frame wakes a thread of its own, and at a hundred calls the threads queue for the
GIL. ``MediaLoop`` serves the RTP sockets of all calls from one ``selectors`` loop (epoll on Linux): a
readable socket is read in a batch (up to ``batch`` datagrams, so one busy call cannot starve the others:
what is left waits for the next round, level-triggered), and every call's outgoing 20 ms slots are
deadlines on one heap, each with its own ``Pacer`` grid started on a 1 ms tick as in ``PacerThread``, so
the calls whose slots fall on the same tick share a wakeup.

Nothing on the loop may block: the callbacks run on it, for every call. Sends are non-blocking
(``MediaEntry.send``): a socket whose send buffer is full loses that frame, counted, and the next slot
goes on; the other calls never wait for it. Whatever may wait (ARI, the tools, the records) is handed off by
the callbacks to other threads through queues.

Besides the RTP entries the loop carries byte streams (``add_stream``: the calls' Realtime WebSockets, see
``realtime/on_loop.py``), timers on the same deadline heap as the slots (``call_at``: keepalives, watchdogs)
and callbacks handed to it from other threads (``call_soon``), so that every read and write of a call's
sockets happens on the loop's thread.

A call registers with ``add`` and leaves with ``MediaEntry.cancel``: once that returns, the call's
callbacks are not running and never run again, and its socket is out of the selector, so the call may
close it. The loop's clock is injected and ``run_once`` runs one round, so a test drives it with a fake
clock; the service starts its thread (``start`` on the first ``add``).
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import ctypes
import heapq
import itertools
import logging
import math
import os
import selectors
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from centralita.media.pacer import FRAME_SECONDS, Pacer, SlotCallback

__all__ = ["DatagramsCallback", "EntryStats", "LoopTimer", "MediaEntry", "MediaLoop", "StreamEntry"]

log = logging.getLogger(__name__)

DatagramsCallback = Callable[[list[tuple[bytes, Any]], float], None]
"""``(datagrams, now)``: one batch of ``(data, source address)`` read from an entry's socket, and the loop's
clock when the round began."""

# A slot this close ahead of the clock is due now: its deadline is a float sum (start + n x 20 ms) that may
# land a hair above the clock reading it equals, and waiting a round for it would make it a tick late.
_DUE_AHEAD = 1e-6
_MAX_DATAGRAM = 2048  # an RTP packet of one 20 ms frame is 172 bytes; anything longer is not ours anyway
_TIMER = object()  # the selector key data of the loop's timerfd


class _TimeSpec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


class _ITimerSpec(ctypes.Structure):
    _fields_ = (("it_interval", _TimeSpec), ("it_value", _TimeSpec))


class _MonotonicTimer:
    """A Linux timerfd on CLOCK_MONOTONIC (``time.monotonic``'s clock), armed at an absolute deadline.

    Why: ``epoll_wait`` takes its timeout in whole milliseconds, rounded up, so a loop that waits for a slot's
    deadline with it wakes 0.5 ms late on average: that much latency added to every outgoing frame. A timerfd
    in the same epoll set wakes the loop at the deadline to the microsecond, and RTP that arrives meanwhile
    still wakes it at once. Reached through ctypes: ``os.timerfd_create`` arrives only in Python 3.13.
    """

    _CLOCK_MONOTONIC = 1
    _TFD_NONBLOCK = os.O_NONBLOCK
    _TFD_CLOEXEC = os.O_CLOEXEC
    _TFD_TIMER_ABSTIME = 1

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._settime = libc.timerfd_settime
        fd = libc.timerfd_create(self._CLOCK_MONOTONIC, self._TFD_NONBLOCK | self._TFD_CLOEXEC)
        if fd < 0:
            error = ctypes.get_errno()
            raise OSError(error, f"timerfd_create: {os.strerror(error)}")
        self.fd: int = fd
        self._spec = _ITimerSpec()
        self._armed: float | None = None

    def arm(self, deadline: float) -> None:
        """Fire once at ``deadline`` (``time.monotonic`` seconds; at once if it has passed)."""
        if deadline == self._armed:
            return
        seconds = int(deadline)
        self._spec.it_value.tv_sec = seconds
        self._spec.it_value.tv_nsec = max(1, int((deadline - seconds) * 1e9))  # all zeros would disarm it
        if self._settime(self.fd, self._TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"timerfd_settime: {os.strerror(error)}")
        self._armed = deadline

    def fired(self) -> None:
        """Take the expiry (the fd stays readable until read) so that the next ``arm`` sets the timer again."""
        with contextlib.suppress(BlockingIOError, OSError):
            os.read(self.fd, 8)
        self._armed = None

    def close(self) -> None:
        os.close(self.fd)


def _precise_timer() -> _MonotonicTimer | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return _MonotonicTimer()
    except (OSError, AttributeError) as error:  # no timerfd: epoll's millisecond timeouts, 0.5 ms late on average
        log.warning("media loop: no timerfd (%s); slots are waited for in whole milliseconds", error)
        return None


@dataclass(slots=True)
class EntryStats:
    """What the loop did for one entry."""

    datagrams: int = 0  # read from the socket
    batches: int = 0  # reads that returned something (a batch holds up to the loop's ``batch`` datagrams)
    slots: int = 0  # 20 ms slots run (skipped ones not counted)
    sent: int = 0  # packets handed to the kernel
    send_blocked: int = 0  # packets dropped: the socket's send buffer was full


class MediaEntry:
    """One call's place on a ``MediaLoop``: its socket and its 20 ms slots, from ``add`` until ``cancel``."""

    __slots__ = ("_context", "_loop", "_on_datagrams", "_on_slot", "cancelled", "pacer", "peer", "sock", "stats")

    def __init__(
        self,
        loop: MediaLoop,
        sock: socket.socket,
        peer: Any,
        on_datagrams: DatagramsCallback,
        on_slot: SlotCallback | None,
        pacer: Pacer | None,
    ) -> None:
        self._loop = loop
        self.sock = sock
        self.peer = peer
        self._on_datagrams = on_datagrams
        self._on_slot = on_slot
        self._context = contextvars.copy_context()  # the adding thread's: the call's id on its log lines
        self.pacer = pacer
        self.cancelled = False
        self.stats = EntryStats()

    @property
    def pacing(self) -> bool:
        """Whether the entry still has 20 ms slots (its slot callback has not returned False)."""
        return self.pacer is not None and not self.cancelled

    def send(self, packet: bytes) -> bool:
        """Send one packet to the entry's peer without ever blocking; False only when the socket failed.

        A full send buffer drops the packet (counted in ``stats.send_blocked``): a frame that cannot leave
        in its slot is worthless in the next one, and the loop serves every other call meanwhile.
        """
        try:
            if self.peer is None:
                self.sock.send(packet, socket.MSG_DONTWAIT)
            else:
                self.sock.sendto(packet, socket.MSG_DONTWAIT, self.peer)
        except BlockingIOError:
            self.stats.send_blocked += 1
            return True
        except OSError as error:
            log.warning("RTP send failed: %s", error)
            return False
        self.stats.sent += 1
        return True

    def cancel(self) -> None:
        """Take the entry off the loop: once this returns its callbacks are not running and never run again
        (called from one of them, that one simply finishes) and its socket is out of the selector. The socket
        stays open: it is the caller's to close. Idempotent."""
        self._loop._remove(self)


TimerCallback = Callable[[float], float | None]
"""``(now) -> next deadline``: a timer's callback, on the loop; it returns when to run again (the loop's clock), or
None to stop."""


class LoopTimer:
    """A callback on the loop's deadline heap (``MediaLoop.call_at``), until it returns None or is cancelled."""

    __slots__ = ("_callback", "_context", "_loop", "cancelled")

    def __init__(self, loop: MediaLoop, callback: TimerCallback) -> None:
        self._loop = loop
        self._callback = callback
        self._context = contextvars.copy_context()  # the scheduling thread's: the call's id on its log lines
        self.cancelled = False

    def cancel(self) -> None:
        """Never run again (a run in progress on the loop finishes first when cancelled from another thread)."""
        with self._loop._lock:
            self.cancelled = True


class StreamEntry:
    """A byte stream on the loop (``MediaLoop.add_stream``): ``on_readable`` when it is readable (or said to hold
    data the kernel cannot see, ``mark_ready``), ``on_writable`` only while ``want_write(True)``."""

    __slots__ = ("_context", "_loop", "_on_readable", "_on_writable", "_writing", "cancelled", "sock")

    def __init__(
        self,
        loop: MediaLoop,
        sock: socket.socket,
        on_readable: Callable[[float], None],
        on_writable: Callable[[float], None],
    ) -> None:
        self._loop = loop
        self.sock = sock
        self._on_readable = on_readable
        self._on_writable = on_writable
        self._context = contextvars.copy_context()
        self._writing = False
        self.cancelled = False

    def want_write(self, writing: bool) -> None:
        """Ask for ``on_writable`` (EPOLLOUT) or stop asking. On the loop's thread (or holding its lock)."""
        with self._loop._lock:
            if writing == self._writing or self.cancelled or self._loop._closed:
                return
            self._writing = writing
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if writing else 0)
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._loop._selector.modify(self.sock, events, self)

    def mark_ready(self) -> None:
        """The stream holds data that epoll cannot see (TLS records already decrypted, or a read budget used
        up): ``on_readable`` runs again next round, without waiting. On the loop's thread."""
        with self._loop._lock:
            if not self.cancelled:
                self._loop._ready.add(self)

    def cancel(self) -> None:
        """Off the loop: once this returns its callbacks are not running and never run again. The socket stays
        open (its owner closes it). Idempotent."""
        loop = self._loop
        with loop._lock:
            if self.cancelled:
                return
            self.cancelled = True
            loop._ready.discard(self)
            loop._streams.discard(self)
            if not loop._closed:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    loop._selector.unregister(self.sock)


class MediaLoop:
    """The RTP sockets and the 20 ms slots of many calls on one ``selectors`` loop (see the module's doc)."""

    def __init__(
        self,
        *,
        name: str = "media-loop",
        clock: Callable[[], float] = time.monotonic,
        tick_seconds: float = 0.001,
        frame_seconds: float = FRAME_SECONDS,
        max_lag_frames: int = 3,
        batch: int = 16,
        selector: selectors.BaseSelector | None = None,
    ) -> None:
        """``batch`` bounds the datagrams read from one socket per round; ``selector`` defaults to the
        platform's best (epoll on Linux)."""
        if not 0 < tick_seconds <= frame_seconds:
            raise ValueError(f"tick_seconds must be greater than 0 and at most frame_seconds, not {tick_seconds}")
        if batch < 1:
            raise ValueError(f"batch must be 1 or more, not {batch}")
        Pacer(clock, frame_seconds=frame_seconds, max_lag_frames=max_lag_frames)  # the same checks as a Pacer's
        self._name = name
        self._clock = clock
        self._tick = tick_seconds
        self._frame_seconds = frame_seconds
        self._max_lag_frames = max_lag_frames
        self._batch = batch
        self._selector = selector or selectors.DefaultSelector()
        # The loop holds this lock for a whole round of callbacks: ``cancel`` from another thread waits for it,
        # which is what lets the call close its socket afterwards. Re-entrant: a callback may cancel.
        self._lock = threading.RLock()
        self._due: list[tuple[float, int, MediaEntry | LoopTimer]] = []  # a heap of (deadline, order added, entry)
        self._order = itertools.count()
        self._entries: set[MediaEntry] = set()
        self._streams: set[StreamEntry] = set()
        self._ready: set[StreamEntry] = set()  # streams to read again without waiting (see ``mark_ready``)
        self._soon: collections.deque[tuple[contextvars.Context, Callable[[], None]]] = collections.deque()
        self._round_owner: int | None = None  # the thread running a round (``in_loop``)
        self._waker, self._wake_end = socket.socketpair()
        self._waker.setblocking(False)
        self._wake_end.setblocking(False)
        self._selector.register(self._wake_end, selectors.EVENT_READ, None)
        # The precise timer serves the real clock only: a test's fake clock is driven round by round.
        self._timer = _precise_timer() if clock is time.monotonic else None
        if self._timer is not None:
            self._selector.register(self._timer.fd, selectors.EVENT_READ, _TIMER)
        self._thread: threading.Thread | None = None
        self._autostart = True  # False once a test drives the loop with ``run_once``
        self._closed = False

    @property
    def clock(self) -> Callable[[], float]:
        """The loop's clock (the deadlines of ``call_at`` are on it)."""
        return self._clock

    @property
    def closed(self) -> bool:
        """Whether ``close`` ran: nothing runs on the loop any more."""
        return self._closed

    @property
    def entries(self) -> int:
        """Entries on the loop."""
        with self._lock:
            return len(self._entries)

    @property
    def streams(self) -> int:
        """Entries on the loop that still have 20 ms slots."""
        with self._lock:
            return sum(1 for entry in self._entries if entry.pacing)

    def add(
        self,
        sock: socket.socket,
        on_datagrams: DatagramsCallback,
        on_slot: SlotCallback | None = None,
        *,
        peer: Any = None,
        start_thread: bool = True,
    ) -> MediaEntry:
        """Serve ``sock`` (made non-blocking): its datagrams go to ``on_datagrams`` in batches and, given
        ``on_slot``, a 20 ms slot runs ``on_slot(skipped)`` (``skipped`` as from ``Pacer.claim``; False ends the
        slots, not the reading) from the next tick on. ``peer`` is where ``MediaEntry.send`` sends (None: the
        socket's connected peer). ``start_thread`` False leaves the loop to ``run_once`` (tests). RuntimeError
        once closed."""
        sock.setblocking(False)
        with self._lock:
            if self._closed:
                raise RuntimeError("the MediaLoop is closed")
            pacer = None
            if on_slot is not None:
                start = math.ceil(self._clock() / self._tick) * self._tick
                pacer = Pacer(
                    self._clock, frame_seconds=self._frame_seconds, max_lag_frames=self._max_lag_frames, start=start
                )
            entry = MediaEntry(self, sock, peer, on_datagrams, on_slot, pacer)
            self._selector.register(sock, selectors.EVENT_READ, entry)
            self._entries.add(entry)
            if pacer is not None:
                heapq.heappush(self._due, (pacer.next_deadline or 0.0, next(self._order), entry))
            self._start(start_thread)
        self._wake()  # the loop may be waiting for a later deadline than this entry's first slot
        return entry

    def add_stream(
        self,
        sock: socket.socket,
        on_readable: Callable[[float], None],
        on_writable: Callable[[float], None],
        *,
        start_thread: bool = True,
    ) -> StreamEntry:
        """Serve the byte stream ``sock`` (made non-blocking): ``on_readable(now)`` when it is readable,
        ``on_writable(now)`` while the entry wants to write (``StreamEntry.want_write``). The callbacks run on the
        loop and must never block: they read and write until the socket would block."""
        sock.setblocking(False)
        with self._lock:
            if self._closed:
                raise RuntimeError("the MediaLoop is closed")
            entry = StreamEntry(self, sock, on_readable, on_writable)
            self._selector.register(sock, selectors.EVENT_READ, entry)
            self._streams.add(entry)
            self._start(start_thread)
        self._wake()
        return entry

    def call_at(self, deadline: float, callback: TimerCallback, *, start_thread: bool = True) -> LoopTimer:
        """Run ``callback(now)`` on the loop at ``deadline`` (the loop's clock), and again at whatever deadline it
        returns, until it returns None or the timer is cancelled. From any thread."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the MediaLoop is closed")
            timer = LoopTimer(self, callback)
            heapq.heappush(self._due, (deadline, next(self._order), timer))
            self._start(start_thread)
        self._wake()
        return timer

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Run ``callback()`` on the loop, at the start of its next round, in the order given. From any thread
        (what another thread wants done with a socket of the loop's goes through here). Dropped once closed."""
        self._soon.append((contextvars.copy_context(), callback))
        if self._thread is None and self._autostart:
            with self._lock:
                if not self._closed:
                    self._start(True)
        self._wake()

    def in_loop(self) -> bool:
        """Whether the calling thread is running a round of the loop (a callback of the loop's)."""
        return self._round_owner == threading.get_ident()

    def run_once(self, timeout: float | None = 0.0) -> None:
        """One round: wait up to ``timeout`` seconds (None: until something happens) for readable sockets,
        read them, then run every slot that is due."""
        if self._ready or self._soon:
            timeout = 0.0
        events = self._selector.select(timeout)
        with self._lock:
            if self._closed:
                return
            self._round_owner = threading.get_ident()
            try:
                self._round(events)
            finally:
                self._round_owner = None

    def _round(self, events: list[tuple[selectors.SelectorKey, int]]) -> None:
        now = self._clock()
        soon = self._soon
        for _ in range(len(soon)):  # only those already there: a callback that hands on more waits a round
            context, callback = soon.popleft()
            self._guarded(context, callback)
        ready, self._ready = self._ready, set()
        for key, mask in events:
            entry = key.data
            if entry is None:
                self._drain_wakes()
            elif entry is _TIMER:
                if self._timer is not None:
                    self._timer.fired()
            elif isinstance(entry, StreamEntry):
                if mask & selectors.EVENT_WRITE and not entry.cancelled:
                    self._guarded(entry._context, entry._on_writable, now)
                if mask & selectors.EVENT_READ and not entry.cancelled:
                    ready.discard(entry)
                    self._guarded(entry._context, entry._on_readable, now)
            elif not entry.cancelled:
                self._read(entry, now)
        for entry in ready:
            if not entry.cancelled:
                self._guarded(entry._context, entry._on_readable, now)
        self._run_due(self._clock())

    @staticmethod
    def _guarded(context: contextvars.Context, callback: Callable[..., None], *args: Any) -> None:
        try:
            context.run(callback, *args)
        except Exception:  # a bug in one call's callback must not stop the loop of every call
            log.exception("a callback on the media loop failed")

    def _start(self, start_thread: bool) -> None:
        if not start_thread:
            self._autostart = False
        elif self._thread is None and self._autostart:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def next_timeout(self) -> float | None:
        """Seconds until the next slot is due (0 if one is late), None when no entry has slots."""
        with self._lock:
            while self._due and self._due[0][2].cancelled:
                heapq.heappop(self._due)
            if not self._due:
                return None
            return max(0.0, self._due[0][0] - _DUE_AHEAD - self._clock())

    def close(self, timeout: float = 2.0) -> None:
        """Drop every entry and stop the loop (waiting up to ``timeout`` for its thread). The entries' sockets
        stay open (their owners close them). Idempotent. A callback stuck on the loop (a bug: nothing there may
        block) does not hold the shutdown up beyond ``timeout``."""
        locked = self._lock.acquire(timeout=timeout)
        if not locked:
            log.error("closing the media loop although a callback has held it for over %g s", timeout)
        try:
            if self._closed:
                return
            self._closed = True
            items: list[MediaEntry | StreamEntry] = [*self._entries, *self._streams]
            for item in items:
                item.cancelled = True
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self._selector.unregister(item.sock)
            self._entries.clear()
            self._streams.clear()
            self._ready.clear()
            self._soon.clear()
            for _, _, due in self._due:
                due.cancelled = True
            self._due.clear()
            thread = self._thread
        finally:
            if locked:
                self._lock.release()
        self._wake()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._selector.close()
        self._waker.close()
        self._wake_end.close()
        if self._timer is not None:
            self._timer.close()

    # -- the loop ------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
            try:
                self.run_once(self._wait())
            except Exception:  # a bug must not stop the media of every call
                log.exception("the media loop failed a round; it goes on")

    def _wait(self) -> float | None:
        """How long the next round may wait for I/O: with the timerfd armed at the next slot, until something
        happens; without it, the time to the next slot (epoll rounds it up to a whole millisecond)."""
        if self._ready or self._soon:
            return 0.0
        timeout = self.next_timeout()
        timer = self._timer
        if timer is None or timeout is None:
            return timeout
        with self._lock:
            if not self._due:
                return None
            timer.arm(self._due[0][0] - _DUE_AHEAD)
        return None

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):  # a full wake buffer wakes the loop all the same
            self._waker.send(b"\0")

    def _drain_wakes(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while self._wake_end.recv(4096):
                pass

    def _read(self, entry: MediaEntry, now: float) -> None:
        batch: list[tuple[bytes, Any]] = []
        recvfrom = entry.sock.recvfrom
        for _ in range(self._batch):
            try:
                batch.append(recvfrom(_MAX_DATAGRAM))
            except BlockingIOError:
                break
            except OSError as error:  # e.g. an ICMP error queued on the socket: reported once, the socket goes on
                log.debug("RTP read: %s", error)
                break
        if not batch:
            return
        entry.stats.datagrams += len(batch)
        entry.stats.batches += 1
        try:
            entry._context.run(entry._on_datagrams, batch, now)
        except Exception:
            log.exception("the media of a call failed on its incoming RTP and was stopped")
            self._remove(entry)

    def _run_due(self, now: float) -> None:
        due = self._due
        while due and due[0][0] <= now + _DUE_AHEAD:
            entry = heapq.heappop(due)[2]
            if isinstance(entry, LoopTimer):
                self._run_timer(entry, now)
                continue
            pacer = entry.pacer
            if entry.cancelled or pacer is None or entry._on_slot is None:
                continue
            keep = False
            try:
                keep = entry._context.run(entry._on_slot, pacer.claim(now))
                entry.stats.slots += 1
            except Exception:
                log.exception("a call's outgoing RTP failed and was stopped")
            deadline = pacer.next_deadline
            if keep and not entry.cancelled and deadline is not None:
                heapq.heappush(due, (deadline, next(self._order), entry))
            else:
                entry.pacer = None

    def _run_timer(self, timer: LoopTimer, now: float) -> None:
        if timer.cancelled:
            return
        again: float | None = None
        try:
            again = timer._context.run(timer._callback, now)
        except Exception:
            log.exception("a timer on the media loop failed and was stopped")
        if again is not None and not timer.cancelled:
            heapq.heappush(self._due, (again, next(self._order), timer))
        else:
            timer.cancelled = True

    def _remove(self, entry: MediaEntry) -> None:
        with self._lock:
            if entry.cancelled and entry not in self._entries:
                return
            entry.cancelled = True
            entry.pacer = None
            self._entries.discard(entry)
            if not self._closed:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self._selector.unregister(entry.sock)
