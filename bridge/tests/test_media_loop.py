"""The media loop (``media/loop.py``): behaviour, on a fake clock.

The loop is driven round by round (``run_once``) with an injected clock, so what is asserted is which slot ran
when on that clock, what each peer received and in which order, never how fast the machine is: the speed is
the benchmark's business (docs/PERFORMANCE.md). Where a wrong implementation would block rather than fail,
the rounds run on a thread with a deadline, so the test fails instead of hanging.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from centralita.media.loop import MediaEntry, MediaLoop
from centralita.media.pacer import FRAME_SECONDS

START = 7000.0  # monotonic clocks start anywhere
MS = 0.001
DEADLINE = 20.0  # seconds a thread of rounds may take on a shared, busy machine before the test gives up


class FakeClock:
    """A clock that moves only when advanced, in whole milliseconds (no float drift between the two sides)."""

    def __init__(self, now_ms: int = int(START * 1000)) -> None:
        self.now_ms = now_ms

    def __call__(self) -> float:
        return self.now_ms / 1000

    def advance_ms(self, ms: int) -> None:
        self.now_ms += ms


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def within(seconds: float, work: Callable[[], None]) -> None:
    """Run ``work`` on a thread; fail (not hang) when it has not finished in ``seconds``."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as error:
            failure.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"the loop's rounds did not finish within {seconds} s: something on the loop blocked")
    if failure:
        raise failure[0]


def frame(stream: int, number: int) -> bytes:
    """A 172-byte packet that says which stream and which slot it belongs to."""
    return struct.pack("!II", stream, number) + bytes(164)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def loop(clock: FakeClock) -> Iterator[MediaLoop]:
    media = MediaLoop(clock=clock)
    yield media
    media.close()


def rounds(loop: MediaLoop, clock: FakeClock, ms: int) -> None:
    """``ms`` milliseconds of the fake clock, one round of the loop per millisecond."""
    for _ in range(ms):
        clock.advance_ms(1)
        loop.run_once(0)


def ignore(_datagrams: list[tuple[bytes, Any]], _now: float) -> None:
    pass


# --- Pacing --------------------------------------------------------------------------------------------------


def test_200_streams_each_get_every_slot_at_its_deadline_in_deadline_order(loop: MediaLoop, clock: FakeClock) -> None:
    played: list[tuple[float, int, float, int]] = []  # (clock, stream, its deadline, skipped)
    added: list[float] = []
    sockets: list[socket.socket] = []
    entries: list[MediaEntry] = []
    try:
        for stream in range(200):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
            holder: list[MediaEntry] = []

            def on_slot(skipped: int, stream: int = stream, holder: list[MediaEntry] = holder) -> bool:
                pacer = holder[0].pacer
                assert pacer is not None
                # claim() has moved the deadline on by one frame: the one just claimed is one frame before it.
                deadline = (pacer.next_deadline or 0.0) - FRAME_SECONDS
                played.append((clock(), stream, deadline, skipped))
                return True

            if stream and stream % 10 == 0:
                clock.advance_ms(1)  # the calls arrive over 20 ms: their grids start on different ticks
            added.append(clock())
            entry = loop.add(sock, ignore, on_slot, start_thread=False)
            holder.append(entry)
            entries.append(entry)
            loop.run_once(0)  # what the loop does when an entry wakes it
        assert loop.streams == 200
        rounds(loop, clock, 1000)

        by_stream: dict[int, list[tuple[float, float, int]]] = {}
        for now, stream, deadline, skipped in played:
            by_stream.setdefault(stream, []).append((now, deadline, skipped))
        assert sorted(by_stream) == list(range(200))
        for stream, slots in by_stream.items():
            first = slots[0][1]
            assert first == pytest.approx(added[stream], abs=1e-6)  # added on a tick (a whole ms): its first slot
            # Every 20 ms slot up to the end, none skipped, each run on the round of its own deadline.
            assert len(slots) == int((clock() - first) / FRAME_SECONDS + 1e-9) + 1, stream
            for n, (now, deadline, skipped) in enumerate(slots):
                assert deadline == pytest.approx(first + n * FRAME_SECONDS, abs=1e-6)
                assert now == pytest.approx(deadline, abs=1e-6)
                assert skipped == 0
        # One loop serves them all in the order of their deadlines.
        assert [deadline for _, _, deadline, _ in played] == sorted(deadline for _, _, deadline, _ in played)
    finally:
        for entry in entries:
            entry.cancel()
        for sock in sockets:
            sock.close()


def test_a_stalled_loop_skips_the_missed_slots_and_keeps_each_streams_grid(loop: MediaLoop, clock: FakeClock) -> None:
    played: list[tuple[float, int]] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))

        def on_slot(skipped: int) -> bool:
            played.append((clock(), skipped))
            return True

        entry = loop.add(sock, ignore, on_slot, start_thread=False)
        loop.run_once(0)
        first = played[0][0]
        assert first == START
        rounds(loop, clock, 100)  # slots 0..5 on time
        assert played == [(START + n * FRAME_SECONDS, 0) for n in range(6)]
        clock.advance_ms(150)  # the loop is held up for 150 ms (a stalled machine)
        loop.run_once(0)
        # 250 ms after the first slot: slots 6..12 were due; more than 3 frames behind, the pacer skips to the
        # slot that contains "now" (12) rather than bursting them: 6 skipped.
        assert played[-1] == (START + 0.250, 6)
        rounds(loop, clock, 40)
        # Back on the stream's own grid: slots 13 and 14.
        assert played[-2:] == [(pytest.approx(START + 0.260, abs=1e-6), 0), (pytest.approx(START + 0.280, abs=1e-6), 0)]
        entry.cancel()


def test_a_stream_whose_slot_returns_false_stops_but_its_socket_is_still_read(
    loop: MediaLoop, clock: FakeClock
) -> None:
    got: list[bytes] = []
    slots: list[int] = []
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
    ):
        sock.bind(("127.0.0.1", 0))

        def on_slot(skipped: int) -> bool:
            slots.append(skipped)
            return len(slots) < 3

        entry = loop.add(
            sock, lambda datagrams, _now: got.extend(data for data, _ in datagrams), on_slot, start_thread=False
        )
        rounds(loop, clock, 200)
        assert len(slots) == 3
        assert loop.streams == 0
        assert loop.entries == 1
        sender.sendto(b"still here", sock.getsockname())
        within(DEADLINE, lambda: _read_until(loop, lambda: bool(got)))
        assert got == [b"still here"]
        entry.cancel()


def _read_until(loop: MediaLoop, done: Callable[[], bool]) -> None:
    while not done():
        loop.run_once(0.05)


# --- A peer that stops reading --------------------------------------------------------------------------------


def test_a_call_whose_send_buffer_is_full_does_not_delay_another_calls_frames(
    loop: MediaLoop, clock: FakeClock
) -> None:
    # Unix datagram sockets push back: once the peer's queue is full a non-blocking send fails with EAGAIN,
    # which is what a full send buffer does to a call's RTP socket. Call A's peer never reads; call B's does.
    stuck_sock, stuck_peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    live_sock, live_peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    stuck_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    live_peer.setblocking(False)
    entries: dict[str, MediaEntry] = {}
    slot_times: dict[str, list[float]] = {"stuck": [], "live": []}
    numbers = {"stuck": 0, "live": 0}

    def slot_of(name: str, stream: int) -> Callable[[int], bool]:
        def on_slot(_skipped: int) -> bool:
            slot_times[name].append(clock())
            packet = frame(stream, numbers[name])
            numbers[name] += 1
            return entries[name].send(packet)

        return on_slot

    heard: list[tuple[int, int, float]] = []  # what B's peer received: (stream, frame, when), read every round

    def drain_live() -> None:
        while True:
            try:
                data = live_peer.recv(2048)
            except BlockingIOError:
                return
            heard.append((*struct.unpack_from("!II", data), clock()))

    try:
        entries["stuck"] = loop.add(stuck_sock, ignore, slot_of("stuck", 1), start_thread=False)
        entries["live"] = loop.add(live_sock, ignore, slot_of("live", 2), start_thread=False)

        def run() -> None:
            loop.run_once(0)  # the first slots, on the tick they were added on
            drain_live()
            for _ in range(3999):  # 4 s in all: 200 slots of each
                clock.advance_ms(1)
                loop.run_once(0)
                drain_live()

        within(DEADLINE, run)
        stuck = entries["stuck"].stats
        assert stuck.send_blocked > 0  # A's buffer really was full: its frames were dropped, not waited for
        assert stuck.sent + stuck.send_blocked == stuck.slots == 200
        # B got every frame, in order, each in the round of its own slot.
        assert [number for _, number, _ in heard] == list(range(200))
        assert {stream for stream, _, _ in heard} == {2}
        assert [when for _, _, when in heard] == slot_times["live"]
        assert entries["live"].stats.send_blocked == 0
        for entry in entries.values():
            entry.cancel()
    finally:  # (not cancel: on a loop stuck in a send it would wait for ever; closing the loop is bounded)
        for sock in (stuck_sock, stuck_peer, live_sock, live_peer):
            sock.close()


def test_a_flooded_socket_is_read_in_batches_and_does_not_starve_another(clock: FakeClock) -> None:
    loop = MediaLoop(clock=clock, batch=8)
    batches: dict[str, list[int]] = {"flood": [], "quiet": []}
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as flood,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as quiet,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
    ):
        for sock in (flood, quiet):
            sock.bind(("127.0.0.1", 0))
        try:
            loop.add(flood, lambda datagrams, _now: batches["flood"].append(len(datagrams)), start_thread=False)
            loop.add(quiet, lambda datagrams, _now: batches["quiet"].append(len(datagrams)), start_thread=False)
            for n in range(50):
                sender.sendto(frame(1, n), flood.getsockname())
            for n in range(3):
                sender.sendto(frame(2, n), quiet.getsockname())

            def first_round() -> None:
                while not batches["quiet"]:
                    loop.run_once(0.05)

            within(DEADLINE, first_round)
            # The round that served the quiet socket read at most one batch of the flood.
            assert batches["quiet"] == [3]
            assert len(batches["flood"]) <= 1
            within(DEADLINE, lambda: _read_until(loop, lambda: sum(batches["flood"]) == 50))
            assert batches["flood"] == [8] * 6 + [2]
        finally:
            loop.close()


def test_a_callback_that_fails_stops_its_own_entry_only(loop: MediaLoop, clock: FakeClock) -> None:
    healthy: list[int] = []
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as bad,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as good,
    ):
        bad.bind(("127.0.0.1", 0))
        good.bind(("127.0.0.1", 0))

        def broken(_skipped: int) -> bool:
            raise RuntimeError("a bug in one call")

        def fine(skipped: int) -> bool:
            healthy.append(skipped)
            return True

        loop.add(bad, ignore, broken, start_thread=False)
        entry = loop.add(good, ignore, fine, start_thread=False)
        rounds(loop, clock, 100)
        assert len(healthy) == 6  # its slots at +0 (run 1 ms late, on the first round), +20, ... +100 ms
        assert loop.streams == 1
        entry.cancel()


# --- Registration ---------------------------------------------------------------------------------------------


def test_cancel_releases_the_socket_and_the_loop_releases_its_own(clock: FakeClock) -> None:
    before = open_fds()
    loop = MediaLoop(clock=clock)
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(20)]
    entries = [loop.add(sock, ignore, lambda _skipped: True, start_thread=False) for sock in socks]
    assert loop.entries == 20
    assert loop.streams == 20
    for entry, sock in zip(entries, socks, strict=True):
        entry.cancel()
        sock.close()  # after cancel the socket is the caller's to close: the selector no longer holds it
    assert loop.entries == 0
    assert loop.streams == 0
    assert loop.next_timeout() is None  # no slot of theirs is left on the heap
    rounds(loop, clock, 40)  # and no round trips on the closed sockets
    loop.close()
    assert open_fds() == before


def test_once_cancel_returns_the_callbacks_never_run_again_on_the_running_loop() -> None:
    loop = MediaLoop()  # the real clock and the loop's own thread: what the service runs
    counts = {"leaving": 0, "witness": 0}
    witness_slots = threading.Semaphore(0)

    def leaving(_skipped: int) -> bool:
        counts["leaving"] += 1
        return True

    def witness(_skipped: int) -> bool:
        counts["witness"] += 1
        witness_slots.release()
        return True

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
        try:
            if sys.platform.startswith("linux"):  # the slots below are woken by its timerfd, no timeout
                assert loop._timer is not None
            entry = loop.add(a, ignore, leaving)
            loop.add(b, ignore, witness)
            for _ in range(3):
                assert witness_slots.acquire(timeout=DEADLINE)
            entry.cancel()
            after_cancel = counts["leaving"]
            assert after_cancel >= 1
            for _ in range(5):  # five more slots of the other stream: the loop went on without it
                assert witness_slots.acquire(timeout=DEADLINE)
            assert counts["leaving"] == after_cancel
            assert loop.entries == 1
        finally:
            loop.close()


def test_a_closed_loop_takes_no_entries(clock: FakeClock) -> None:
    loop = MediaLoop(clock=clock)
    loop.close()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, pytest.raises(RuntimeError, match="closed"):
        loop.add(sock, ignore, start_thread=False)


def test_bad_loop_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="batch"):
        MediaLoop(batch=0)
    with pytest.raises(ValueError, match="tick_seconds"):
        MediaLoop(tick_seconds=0.05)
