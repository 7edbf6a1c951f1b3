"""The send schedule of the fake Asterisk's media loop, driven by a fake clock (no sleeps, no real time)."""

from __future__ import annotations

import pytest

from centralita_testing.fake_asterisk.schedule import SendSchedule

MS = 1_000_000
PERIOD = 20 * MS
START = 1_000 * MS  # an arbitrary origin of the monotonic clock


def four_legs() -> SendSchedule[str]:
    schedule: SendSchedule[str] = SendSchedule(PERIOD, START)
    schedule.set_items([(15 * MS, "d"), (0, "a"), (10 * MS, "c"), (5 * MS, "b")], START)
    return schedule


def test_each_leg_is_due_at_its_phase_once_per_period() -> None:
    schedule = four_legs()
    assert schedule.next_deadline() == START
    assert schedule.due(START - 1) == []
    assert schedule.due(START) == ["a"]
    assert schedule.next_deadline() == START + 5 * MS
    assert schedule.due(START + 12 * MS) == ["b", "c"]  # one wake-up serves every leg due by then
    assert schedule.due(START + 12 * MS) == []  # never twice
    assert schedule.due(START + 20 * MS) == ["d", "a"]  # across the period's end, in deadline order
    assert schedule.next_deadline() == START + 25 * MS


def test_every_leg_sends_exactly_once_per_period_whatever_the_wake_ups() -> None:
    schedule = four_legs()
    sent: list[str] = []
    now = START
    while now < START + 10 * PERIOD:  # wake-ups at odd moments: 3.7 ms apart
        sent += schedule.due(now)
        now += 3_700_000
    assert sorted(sent) == sorted(["a", "b", "c", "d"] * 10)
    assert schedule.skipped == 0


def test_a_stalled_loop_skips_the_stale_slots_instead_of_bursting() -> None:
    schedule: SendSchedule[str] = SendSchedule(PERIOD, START, max_behind_ns=3 * PERIOD)
    schedule.set_items([(0, "a"), (10 * MS, "b")], START)
    assert schedule.due(START) == ["a"]
    # Stalled for 10 periods: only the slots of the last 60 ms are still sent (140, 150, ... 200 ms).
    now = START + 200 * MS
    assert schedule.due(now) == ["a", "b", "a", "b", "a", "b", "a"]
    assert schedule.skipped == 13  # the slots from 10 ms to 130 ms, one every 10 ms
    assert schedule.next_deadline() == START + 210 * MS  # back on the same grid


def test_legs_added_mid_period_wait_for_their_phase_and_removed_ones_stop() -> None:
    schedule = four_legs()
    assert schedule.due(START + 7 * MS) == ["a", "b"]
    # "e" at 2 ms has passed in this period: it starts in the next; "f" at 8 ms is still to come.
    schedule.set_items([(0, "a"), (2 * MS, "e"), (5 * MS, "b"), (8 * MS, "f"), (15 * MS, "d")], START + 7 * MS)
    assert schedule.due(START + 19 * MS) == ["f", "d"]  # "c" is gone
    assert schedule.due(START + 22 * MS) == ["a", "e"]
    schedule.set_items([], START + 22 * MS)
    assert schedule.next_deadline() is None
    assert schedule.due(START + 100 * MS) == []


def test_a_schedule_that_had_no_legs_starts_now_owing_nothing() -> None:
    schedule: SendSchedule[str] = SendSchedule(PERIOD, START)
    later = START + 10_007 * MS  # 7 ms into a period, long after the origin
    schedule.set_items([(0, "a"), (10 * MS, "b")], later)
    assert schedule.due(later) == []  # a's slot in this period has passed: no catching up
    assert schedule.next_deadline() == START + 10_010 * MS
    assert schedule.due(START + 10_020 * MS) == ["b", "a"]
    assert schedule.skipped == 0


def test_bad_phases_and_periods_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="period_ns must be positive"):
        SendSchedule(0, START)
    schedule: SendSchedule[str] = SendSchedule(PERIOD, START)
    with pytest.raises(ValueError, match="outside the period"):
        schedule.set_items([(PERIOD, "late")], START)
