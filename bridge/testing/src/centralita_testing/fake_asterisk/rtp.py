"""The media side of the fake Asterisk: one RTP leg per ExternalMedia channel, and the thread pair that runs them.

A leg is Asterisk's end of an ExternalMedia channel: its own UDP port (what ARI returns as
``UNICASTRTP_LOCAL_ADDRESS``/``PORT``), from which it sends the customer's audio to the external host as RTP
(PCMU, payload type 0, one 160-byte frame every 20 ms, random SSRC, sequence and timestamp) and on which it
receives what the bridge sends, each packet kept with its arrival time (the kernel's receive timestamp, on
the monotonic clock). Silence is sent when the customer says nothing, as a real channel does.

One thread sends for every leg, each at its own phase of a common 20 ms clock (phases spread evenly, as real
callers' are), and one thread receives for every leg (epoll), so a hundred legs cost two threads. What a leg
sends and what becomes of what it receives go through ``LegHooks``: the defaults play ``say()``'s audio and
record ``Heard`` packets; a benchmark swaps in its own stamped frames and columns.

This module has its own small RTP packer and parser: the fake must not share the code it tests.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from centralita_testing.fake_asterisk.schedule import SendSchedule

__all__ = [
    "FRAME_BYTES",
    "FRAME_NS",
    "SILENCE",
    "Heard",
    "LegHooks",
    "LoopMedia",
    "Media",
    "RtpLeg",
    "monotonic_offset_ns",
    "parse_rtp",
]

FRAME_BYTES: Final = 160  # 20 ms of PCMU at 8000 samples/s
FRAME_NS: Final = 20_000_000
SILENCE: Final = b"\xff" * FRAME_BYTES  # μ-law 0xFF is linear 0
_HEADER: Final = struct.Struct("!BBHII")
_GOLDEN: Final = 0.6180339887498949  # leg phases frac(i x golden): evenly spread for any number of legs
_SO_TIMESTAMPNS: Final = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; the socket module does not export it
_TIMESPEC: Final = struct.Struct("@qq")
_ANCILLARY: Final = socket.CMSG_SPACE(_TIMESPEC.size)
_MAX_BEHIND_NS: Final = 3 * FRAME_NS  # a send loop further behind than this skips ahead instead of bursting


@dataclass(frozen=True, slots=True)
class Heard:
    """One RTP packet a leg received: when (monotonic seconds, from the kernel's timestamp) and what."""

    arrival: float
    payload_type: int
    marker: bool
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes


def parse_rtp(datagram: bytes, arrival: float) -> Heard | None:
    """An RTP version 2 packet as ``Heard``; None for anything else."""
    if len(datagram) < _HEADER.size:
        return None
    first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(datagram)
    if first >> 6 != 2:
        return None
    offset = _HEADER.size + 4 * (first & 0x0F)
    if first & 0x10:  # header extension: 4 bytes, then its length in 32-bit words
        if len(datagram) < offset + 4:
            return None
        offset += 4 + 4 * struct.unpack_from("!H", datagram, offset + 2)[0]
    end = len(datagram) - (datagram[-1] if first & 0x20 else 0)
    if end < offset:
        return None
    return Heard(arrival, second & 0x7F, bool(second & 0x80), sequence, timestamp, ssrc, bytes(datagram[offset:end]))


def monotonic_offset_ns() -> int:
    """CLOCK_REALTIME - CLOCK_MONOTONIC: kernel receive timestamps are wall-clock time, ours are monotonic.

    Read between two monotonic readings, the closest pair of a few tries: a thread preempted between the two
    clock reads (a busy machine) would otherwise shift every later arrival by the time it waited.
    """
    best_spread, best_offset = -1, 0
    for _ in range(5):
        before = time.monotonic_ns()
        real = time.clock_gettime_ns(time.CLOCK_REALTIME)
        after = time.monotonic_ns()
        if best_spread < 0 or after - before < best_spread:
            best_spread, best_offset = after - before, real - (before + after) // 2
        if best_spread < 20_000:
            break
    return best_offset


class _Arrivals:
    """What one media thread reads: every datagram waiting on a leg, with its kernel arrival time on the monotonic
    clock (the offset between the clocks read again every 1000 reads: they drift apart slowly, NTP)."""

    def __init__(self, hooks: LegHooks) -> None:
        self._hooks = hooks
        self._offset = monotonic_offset_ns()
        self._reads = 0

    def drain(self, leg: RtpLeg) -> None:
        while True:
            try:
                datagram, ancillary, _flags, _address = leg.socket.recvmsg(2048, _ANCILLARY)
            except OSError:  # BlockingIOError: the leg is empty
                return
            self._reads += 1
            if self._reads % 1000 == 0:
                self._offset = monotonic_offset_ns()
            arrival = _kernel_arrival_ns(ancillary, self._offset)
            if arrival is None:
                self._hooks.received(leg, datagram, time.monotonic_ns(), False)
            else:
                self._hooks.received(leg, datagram, arrival, True)


def _kernel_arrival_ns(ancillary: list[tuple[int, int, bytes]], offset: int) -> int | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            return seconds * 1_000_000_000 + nanoseconds - offset
    return None


class RtpLeg:
    """Asterisk's end of one ExternalMedia channel: a UDP port, the RTP sent from it, and what it heard.

    ``say(audio)`` queues the customer's words (μ-law, any length: played from the next slot on, then
    silence); ``heard`` lists every packet received; ``wait_heard`` waits for a condition on them.
    """

    def __init__(self, index: int, channel_id: str, remote: tuple[str, int], rng: random.Random) -> None:
        self.index = index
        self.channel_id = channel_id
        self.remote = remote  # the external host: where the bridge listens
        self.phase_ns = int((index * _GOLDEN) % 1.0 * FRAME_NS)
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.socket.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.setblocking(False)
        self.address: tuple[str, int] = self.socket.getsockname()[:2]
        self.ssrc = rng.getrandbits(32)
        self.sequence = rng.getrandbits(16)
        self.timestamp = rng.getrandbits(32)
        self.frames_sent = 0
        self._marker = True
        self._speech: deque[bytes] = deque()
        self._heard: list[Heard] = []
        self._changed = threading.Condition()
        self.closed = False

    # -- the customer's side --

    def say(self, audio: bytes) -> None:
        """Send ``audio`` as the customer's words, from the next 20 ms slot on (the last frame padded)."""
        frames = [audio[start : start + FRAME_BYTES] for start in range(0, len(audio), FRAME_BYTES)]
        if frames and len(frames[-1]) < FRAME_BYTES:
            frames[-1] += SILENCE[len(frames[-1]) :]
        with self._changed:
            self._speech.extend(frames)

    @property
    def saying(self) -> bool:
        """Whether words queued by ``say`` are still being sent."""
        with self._changed:
            return bool(self._speech)

    def next_words(self) -> bytes:
        """The payload of the next frame: the customer's words, or silence."""
        with self._changed:
            return self._speech.popleft() if self._speech else SILENCE

    def packet(self, payload: bytes) -> bytes:
        """The next RTP packet from this leg, carrying ``payload``."""
        header = _HEADER.pack(0x80, 0x80 if self._marker else 0, self.sequence, self.timestamp, self.ssrc)
        self._marker = False
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + FRAME_BYTES) & 0xFFFFFFFF
        self.frames_sent += 1
        return header + payload

    # -- what it received --

    def record(self, heard: Heard) -> None:
        with self._changed:
            self._heard.append(heard)
            self._changed.notify_all()

    @property
    def heard(self) -> list[Heard]:
        """Every RTP packet received, in arrival order."""
        with self._changed:
            return list(self._heard)

    def heard_audio(self) -> bytes:
        """The payloads of the PCMU packets received, joined in arrival order."""
        return b"".join(packet.payload for packet in self.heard if packet.payload_type == 0)

    def wait_heard(self, condition: Callable[[list[Heard]], bool], timeout: float = 5.0) -> list[Heard]:
        """Wait until ``condition(heard)`` holds; the packets heard then. TimeoutError otherwise."""
        with self._changed:
            if not self._changed.wait_for(lambda: condition(list(self._heard)), timeout):
                raise TimeoutError(f"leg {self.channel_id}: not heard within {timeout} s ({len(self._heard)} packets)")
            return list(self._heard)

    def wait_silent(self, quiet: float, timeout: float = 5.0) -> list[Heard]:
        """Wait until nothing has arrived for ``quiet`` seconds; the packets heard then."""
        deadline = time.monotonic() + timeout
        while True:
            heard = self.heard
            last = heard[-1].arrival if heard else 0.0
            now = time.monotonic()
            if now - last >= quiet:
                return heard
            if now >= deadline:
                raise TimeoutError(f"leg {self.channel_id}: still hearing packets after {timeout} s")
            time.sleep(min(quiet - (now - last), deadline - now) + 0.001)


class LegHooks:
    """What a leg sends in each slot and what becomes of a packet it receives; subclass to measure.

    Both run on the media threads, for every packet: keep them cheap.
    """

    def payload(self, leg: RtpLeg, now_ns: int) -> bytes:
        """The 160 bytes the leg sends now (``now_ns`` on the monotonic clock)."""
        return leg.next_words()

    def received(self, leg: RtpLeg, datagram: bytes, arrival_ns: int, kernel_stamped: bool) -> None:
        """A datagram arrived on the leg's port at ``arrival_ns`` (monotonic): the kernel's receive timestamp,
        or (``kernel_stamped`` False, when the kernel gave none) the time it was read."""
        heard = parse_rtp(datagram, arrival_ns / 1e9)
        if heard is not None:
            leg.record(heard)


class Media:
    """Runs every leg: one thread sends on the 20 ms clock, one receives (epoll); ``start()`` starts them,
    ``close()`` stops them and frees every leg's port."""

    def __init__(self, hooks: LegHooks | None = None, *, hold: bool = False) -> None:
        """``hold``: legs added stay silent until ``release()`` (a benchmark starts all its calls' media at once)."""
        self.hooks = hooks or LegHooks()
        self._lock = threading.Lock()
        self._playing: list[RtpLeg] = []  # sorted by phase; replaced, never changed in place
        self._held: list[RtpLeg] = []
        self._holding = hold
        self._by_fd: dict[int, RtpLeg] = {}
        self._closing: list[socket.socket] = []  # closed by the send thread between two periods
        self._poll = select.epoll()
        self._wake_read, self._wake_write = os.pipe()  # close() wakes the receive thread at once
        self._poll.register(self._wake_read, select.EPOLLIN)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._send_loop, name="fake-asterisk-rtp-send", daemon=True),
            threading.Thread(target=self._receive_loop, name="fake-asterisk-rtp-receive", daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def open(self, leg: RtpLeg) -> None:
        """Start receiving on the leg's port (before anything is sent to it)."""
        with self._lock:
            self._by_fd[leg.socket.fileno()] = leg
            self._poll.register(leg.socket.fileno(), select.EPOLLIN)

    def play(self, leg: RtpLeg) -> None:
        """Start sending from the leg (its channel joined a bridge)."""
        with self._lock:
            if leg.closed or leg in self._playing or leg in self._held:
                return
            if self._holding:
                self._held = [*self._held, leg]
            else:
                self._playing = sorted([*self._playing, leg], key=lambda playing: playing.phase_ns)

    def pause(self, leg: RtpLeg) -> None:
        """Stop sending from the leg (its channel left its bridge)."""
        with self._lock:
            self._playing = [playing for playing in self._playing if playing is not leg]
            self._held = [held for held in self._held if held is not leg]

    def release(self) -> None:
        """Let held legs (and every leg from now on) send."""
        with self._lock:
            self._holding = False
            self._playing = sorted([*self._playing, *self._held], key=lambda playing: playing.phase_ns)
            self._held = []

    def close_leg(self, leg: RtpLeg) -> None:
        """Stop the leg and free its port (within one 20 ms period: the send thread may hold it till then, and
        closing it under that thread could let its number go to another socket before a last send)."""
        self.pause(leg)
        with self._lock:
            if leg.closed:
                return
            leg.closed = True
            fd = leg.socket.fileno()
            self._by_fd.pop(fd, None)
            with contextlib.suppress(OSError, ValueError):
                self._poll.unregister(fd)
            if self._stop.is_set():
                leg.socket.close()
            else:
                self._closing.append(leg.socket)

    def close(self) -> None:
        """Stop both threads and free every leg's port. Idempotent."""
        with self._lock:
            if self._stop.is_set():
                return
            self._stop.set()
        os.write(self._wake_write, b"x")
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(2)
        with self._lock:
            legs = list(self._by_fd.values())
        for leg in legs:
            self.close_leg(leg)
        self._close_pending()
        self._poll.close()
        os.close(self._wake_read)
        os.close(self._wake_write)

    def _close_pending(self) -> None:
        with self._lock:
            closing, self._closing = self._closing, []
        for sock in closing:
            sock.close()

    def _send_loop(self) -> None:
        """Each leg sends at its own phase of a common 20 ms clock, so the load is spread as real callers'."""
        epoch = time.monotonic_ns()
        period = 0
        hooks = self.hooks
        while not self._stop.is_set():
            if self._closing:
                self._close_pending()
            base = epoch + period * FRAME_NS
            for leg in self._playing:
                delay = base + leg.phase_ns - time.monotonic_ns()
                if delay > 0:
                    time.sleep(delay / 1e9)
                if leg.closed:
                    continue
                now = time.monotonic_ns()
                with contextlib.suppress(OSError):
                    leg.socket.sendto(leg.packet(hooks.payload(leg, now)), leg.remote)
            period += 1
            behind = time.monotonic_ns() - (epoch + period * FRAME_NS)
            if behind > _MAX_BEHIND_NS:  # stalled: carry on from now rather than burst
                period += behind // FRAME_NS
            elif behind < 0:
                time.sleep(-behind / 1e9)

    def _receive_loop(self) -> None:
        arrivals = _Arrivals(self.hooks)
        while not self._stop.is_set():
            try:
                ready = self._poll.poll(0.2)
            except OSError:
                return
            for fd, _events in ready:
                with self._lock:
                    leg = self._by_fd.get(fd)
                    if leg is None:
                        continue
                    arrivals.drain(leg)


class LoopMedia(Media):
    """``Media`` on one thread: one epoll loop sends every leg's frames and receives every leg's packets.

    For load: the two threads of ``Media`` hand the GIL to each other hundreds of times per period, and each
    of its sends is a sleep of its own. Here the legs' deadlines share one ``SendSchedule``: each wake-up sends
    every leg due by then (legs 0.1 ms apart are served together, each frame timed when it is really sent),
    then the loop waits in ``epoll`` until the next deadline, reading each ready leg until it is empty
    (kernel receive timestamps kept per packet). The hooks, legs and the add/hold/close interface are
    ``Media``'s.
    """

    def __init__(self, hooks: LegHooks | None = None, *, hold: bool = False) -> None:
        super().__init__(hooks, hold=hold)
        self.skipped = 0  # slots given up because the loop was more than 3 frames behind
        self._threads = [threading.Thread(target=self._loop, name="fake-asterisk-rtp", daemon=True)]

    def _loop(self) -> None:
        schedule: SendSchedule[RtpLeg] = SendSchedule(FRAME_NS, time.monotonic_ns(), _MAX_BEHIND_NS)
        scheduled: list[RtpLeg] | None = None
        hooks = self.hooks
        arrivals = _Arrivals(hooks)
        by_fd = self._by_fd
        poll = self._poll
        while not self._stop.is_set():
            if self._closing:
                self._close_pending()
            playing = self._playing  # replaced, never changed in place: a new list is a new set of legs
            if playing is not scheduled:
                schedule.set_items(((leg.phase_ns, leg) for leg in playing), time.monotonic_ns())
                scheduled = playing
            for leg in schedule.due(time.monotonic_ns()):
                if leg.closed:
                    continue
                with contextlib.suppress(OSError):
                    leg.socket.sendto(leg.packet(hooks.payload(leg, time.monotonic_ns())), leg.remote)
            self.skipped = schedule.skipped
            deadline = schedule.next_deadline()
            timeout = 0.2 if deadline is None else max(0.0, (deadline - time.monotonic_ns()) / 1e9)
            try:
                ready = poll.poll(timeout)
            except OSError:
                return
            for fd, _events in ready:
                heard_on = by_fd.get(fd)  # a leg closed meanwhile keeps its socket until _close_pending, here
                if heard_on is None:
                    continue
                arrivals.drain(heard_on)
