"""The frame clock (with a fake clock: exact, no real sleeping) and the pacer thread."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Iterator

import pytest

from centralita.media.pacer import FRAME_SECONDS, PacedStream, Pacer, PacerThread

START = 5000.0  # monotonic clocks start anywhere


class FakeClock:
    """A monotonic clock that only moves when slept on or advanced; sleeps may overshoot, like real ones."""

    def __init__(self, now: float = START, oversleep: float = 0.0) -> None:
        self.now = now
        self.oversleep = oversleep
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds + self.oversleep

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_first_wait_starts_the_clock_without_sleeping() -> None:
    clock = FakeClock()
    pacer = Pacer(clock, clock.sleep)
    assert pacer.next_deadline is None
    assert pacer.wait() == 0
    assert clock.sleeps == []
    assert pacer.next_deadline == START + FRAME_SECONDS
    assert pacer.wait() == 0
    assert clock.sleeps == [pytest.approx(FRAME_SECONDS)]
    assert clock.now == pytest.approx(START + FRAME_SECONDS)


def test_deadlines_are_start_plus_n_frames() -> None:
    clock = FakeClock()
    pacer = Pacer(clock, clock.sleep)
    for n in range(1, 501):
        pacer.wait()
        assert pacer.frames == n
        assert pacer.next_deadline == START + n * 0.020


def test_no_drift_over_10000_frames() -> None:
    # Every sleep overshoots by 1 ms and sending each frame takes 3 ms: scheduling from "now" would drift by
    # 40 s over 10,000 frames; scheduling from the start keeps every frame within the 1 ms overshoot.
    clock = FakeClock(oversleep=0.001)
    pacer = Pacer(clock, clock.sleep)
    for n in range(10_000):
        assert pacer.wait() == 0
        assert clock.now - (START + n * 0.020) == pytest.approx(0.0 if n == 0 else 0.001, abs=1e-6)
        clock.advance(0.003)
    assert pacer.next_deadline == pytest.approx(START + 10_000 * 0.020, abs=1e-9)
    assert pacer.late_frames == 0
    assert pacer.resyncs == 0
    # Frame 1 sleeps 17 ms (frame 0 was on time); every later frame sleeps 20 - 1 (overshoot) - 3 (work) ms.
    assert sum(clock.sleeps) == pytest.approx(0.017 + 9_998 * 0.016, rel=1e-9)


def test_small_lag_is_caught_up_without_skipping() -> None:
    clock = FakeClock()
    pacer = Pacer(clock, clock.sleep, max_lag_frames=3)
    pacer.wait()  # frame 0 at START
    clock.advance(0.020 + 0.050)  # frame 1 was due at START + 0.020: 2.5 frames late
    sleeps_before = len(clock.sleeps)
    assert [pacer.wait() for _ in range(3)] == [0, 0, 0]  # frames 1, 2, 3 go out back to back
    assert len(clock.sleeps) == sleeps_before
    pacer.wait()  # frame 4 is due at START + 0.080: back on schedule
    assert clock.now == pytest.approx(START + 0.080)
    assert pacer.late_frames == 0
    assert pacer.resyncs == 0


def test_resync_after_a_stall() -> None:
    clock = FakeClock()
    pacer = Pacer(clock, clock.sleep, max_lag_frames=3)
    pacer.wait()  # frame 0 at START
    clock.advance(1.005)  # a one-second stall: frame 1 was due at START + 0.020
    assert pacer.wait() == 49  # frames 1-49 skipped; frame 50 (due START + 1.000) claimed at once
    assert pacer.late_frames == 49
    assert pacer.resyncs == 1
    assert pacer.frames == 51
    assert pacer.next_deadline == pytest.approx(START + 1.020)
    assert pacer.wait() == 0
    assert clock.now == pytest.approx(START + 1.020)  # still on the grid anchored at START
    assert clock.sleeps[-1] == pytest.approx(0.015)


def test_lag_just_over_the_limit_resyncs() -> None:
    clock = FakeClock()
    pacer = Pacer(clock, clock.sleep, max_lag_frames=3)
    pacer.wait()
    clock.advance(0.020 + 0.070)  # 3.5 frames late
    assert pacer.wait() == 3
    assert pacer.late_frames == 3
    pacer.wait()
    assert clock.now == pytest.approx(START + 0.100)


def test_counts_accumulate_over_several_stalls() -> None:
    clock = FakeClock()
    pacer = Pacer(clock, clock.sleep, max_lag_frames=1)
    pacer.wait()
    clock.advance(0.125)
    skipped_first = pacer.wait()
    clock.advance(0.205)
    skipped_second = pacer.wait()
    assert skipped_first > 0
    assert skipped_second > 0
    assert pacer.late_frames == skipped_first + skipped_second
    assert pacer.resyncs == 2
    assert pacer.next_deadline == pytest.approx(START + pacer.frames * 0.020)


@pytest.mark.parametrize(("frame_seconds", "max_lag_frames"), [(0.0, 3), (-0.02, 3), (0.02, -1)])
def test_invalid_pacer_settings(frame_seconds: float, max_lag_frames: int) -> None:
    clock = FakeClock()
    with pytest.raises(ValueError, match="must be"):
        Pacer(clock, clock.sleep, frame_seconds=frame_seconds, max_lag_frames=max_lag_frames)


def test_claim_takes_slots_without_sleeping_and_a_start_time_anchors_the_grid() -> None:
    clock = FakeClock()
    pacer = Pacer(clock, clock.sleep, start=START + 0.005)
    assert pacer.next_deadline == pytest.approx(START + 0.005)
    assert pacer.claim(START + 0.0051) == 0
    assert pacer.next_deadline == pytest.approx(START + 0.025)
    assert pacer.claim(START + 0.0252) == 0
    assert pacer.claim(START + 1.005) == 48  # far behind: skips to the slot of "now", as wait() does
    assert (pacer.late_frames, pacer.resyncs) == (48, 1)
    assert pacer.next_deadline == pytest.approx(START + 1.025)
    assert clock.sleeps == []


# The pacer thread (real time, short runs: it exists to wait for real deadlines).

FRAME = 0.010  # shorter frames than 20 ms keep these tests fast
TICK = 0.002


class Recorder:
    """A stream's callback: the clock time and ``skipped`` of every slot, until ``slots`` were played."""

    def __init__(self, slots: int = 10**6) -> None:
        self.slots = slots
        self.played: list[tuple[float, int]] = []
        self.done = threading.Event()

    def __call__(self, skipped: int) -> bool:
        self.played.append((time.monotonic(), skipped))
        if len(self.played) >= self.slots:
            self.done.set()
            return False
        return True


@pytest.fixture
def pacer_thread() -> Iterator[PacerThread]:
    pacer = PacerThread(name="test-pacer", tick_seconds=TICK, frame_seconds=FRAME)
    yield pacer
    pacer.close()


class GridRecorder:
    """A stream's callback that also reads its own pacer: when each slot was played, how many slots were skipped
    before it, and the deadline the pacer set next (start + slots claimed so far x FRAME)."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.played: list[tuple[float, int, float]] = []
        self.done = threading.Event()
        self.added = threading.Event()
        self.stream: PacedStream | None = None

    def __call__(self, skipped: int) -> bool:
        assert self.added.wait(5)  # add() returns at once; the first slot can come before it does
        assert self.stream is not None
        deadline = self.stream.pacer.next_deadline
        assert deadline is not None
        self.played.append((time.monotonic(), skipped, deadline))
        if len(self.played) >= self.slots:
            self.done.set()
            return False
        return True


def test_each_stream_keeps_its_own_grid_on_the_ticks(pacer_thread: PacerThread) -> None:
    # What is checked is the grid, not the machine's punctuality: a loaded machine may play a slot late or skip
    # some (counted in `skipped`), but every deadline stays on the stream's own grid, which starts on a tick, and
    # no slot is ever played before it is due.
    recorders = [GridRecorder(slots=12) for _ in range(3)]
    for recorder in recorders:
        recorder.stream = pacer_thread.add(recorder)
        recorder.added.set()
        time.sleep(0.0033)  # start the streams at different phases
    for recorder in recorders:
        assert recorder.done.wait(30)
    starts = []
    for recorder in recorders:
        first_skipped, first_deadline = recorder.played[0][1], recorder.played[0][2]
        start = first_deadline - (1 + first_skipped) * FRAME
        assert start / TICK == pytest.approx(round(start / TICK), abs=1e-6)  # the grid starts on a tick
        claimed = 0
        for moment, skipped, deadline in recorder.played:
            claimed += 1 + skipped
            assert deadline == pytest.approx(start + claimed * FRAME, abs=1e-9)  # on its own grid, whatever the lag
            assert moment >= deadline - FRAME - 1e-6  # the slot it played was due: never early
        starts.append(start)
    assert starts == sorted(starts)  # each stream's grid starts where it was added, not on another's
    assert pacer_thread.streams == 0  # every callback returned False at its 12th slot


def test_the_callback_runs_in_the_context_of_the_thread_that_added_it(pacer_thread: PacerThread) -> None:
    variable: contextvars.ContextVar[str] = contextvars.ContextVar("variable", default="none")
    seen: list[str] = []
    done = threading.Event()

    def on_slot(skipped: int) -> bool:
        seen.append(variable.get())
        done.set()
        return False

    token = variable.set("call-1")
    pacer_thread.add(on_slot)
    variable.reset(token)
    assert done.wait(2)
    assert seen == ["call-1"]


def test_cancel_waits_for_a_slot_being_played_then_the_stream_is_gone(pacer_thread: PacerThread) -> None:
    entered, finished = threading.Event(), threading.Event()
    calls = 0

    def slow(skipped: int) -> bool:
        nonlocal calls
        calls += 1
        entered.set()
        time.sleep(0.05)
        finished.set()
        return True

    stream = pacer_thread.add(slow)
    assert entered.wait(2)
    stream.cancel()
    assert finished.is_set()  # cancel() returned only once the callback had
    played = calls
    time.sleep(5 * FRAME)
    assert calls == played
    assert pacer_thread.streams == 0


def test_a_failing_stream_is_dropped_and_the_others_go_on(
    pacer_thread: PacerThread, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(skipped: int) -> bool:
        raise RuntimeError("boom")

    good = Recorder(slots=5)
    pacer_thread.add(broken)
    pacer_thread.add(good)
    assert good.done.wait(2)
    assert "a paced stream failed" in caplog.text


def test_close_stops_the_thread_and_refuses_new_streams() -> None:
    pacer = PacerThread(name="test-pacer-close", tick_seconds=TICK, frame_seconds=FRAME)
    recorder = Recorder()
    pacer.add(recorder)
    time.sleep(3 * FRAME)
    pacer.close()
    assert not any(thread.name == "test-pacer-close" for thread in threading.enumerate())
    played = len(recorder.played)
    time.sleep(3 * FRAME)
    assert len(recorder.played) == played
    with pytest.raises(RuntimeError, match="closed"):
        pacer.add(recorder)
    pacer.close()  # idempotent


def test_a_pacer_thread_without_streams_starts_no_thread() -> None:
    pacer = PacerThread(name="test-pacer-idle")
    assert not any(thread.name == "test-pacer-idle" for thread in threading.enumerate())
    pacer.close()


@pytest.mark.parametrize("tick_seconds", [0.0, -0.001, 0.021])
def test_invalid_ticks(tick_seconds: float) -> None:
    with pytest.raises(ValueError, match="tick_seconds"):
        PacerThread(tick_seconds=tick_seconds)
