"""The calling rules with a frozen clock: windows in several time zones, DST, weekends, holidays, caps, cooldown."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from dialer_helpers import policy

from centralita.dialer.outcomes import Outcome
from centralita.dialer.policy import (
    CallingPolicy,
    PastAttempt,
    Reason,
    Verdict,
    Window,
    evaluate,
    format_windows,
    in_window,
    local_day_start,
    next_window_start,
    parse_duration,
    parse_holidays,
    parse_windows,
)

MEXICO = ZoneInfo("America/Mexico_City")
BOGOTA = ZoneInfo("America/Bogota")
NEW_YORK = ZoneInfo("America/New_York")
SANTIAGO = ZoneInfo("America/Santiago")
TIJUANA = ZoneInfo("America/Tijuana")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def attempt(at: datetime, outcome: Outcome = Outcome.NO_ANSWER, counts: bool = True) -> PastAttempt:
    return PastAttempt(at=at, outcome=outcome, ended_at=at + timedelta(minutes=1), counts=counts)


# ---- parsing ----------------------------------------------------------------------------------------


def test_parse_windows_default() -> None:
    windows = parse_windows("mon-fri 08:00-19:00; sat 08:00-15:00")
    assert windows == (Window(frozenset(range(5)), 480, 1140), Window(frozenset({5}), 480, 900))
    assert format_windows(windows) == "mon,tue,wed,thu,fri 08:00-19:00; sat 08:00-15:00"


def test_parse_windows_spanish_ranges_and_wrap() -> None:
    windows = parse_windows("Lun,Miércoles 09:00-13:00,15:00-18:30; vie-lun 10:00-24:00")
    assert windows[0] == Window(frozenset({0, 2}), 540, 780)
    assert windows[1] == Window(frozenset({0, 2}), 900, 1110)
    assert windows[2] == Window(frozenset({4, 5, 6, 0}), 600, 1440)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no window"),
        ("mon-fri", "needs days and hours"),
        ("funday 08:00-10:00", "not a day"),
        ("mon 8-19", "not a range of hours|not a time"),
        ("mon 19:00-08:00", "ends before it starts"),
        ("mon 08:00-25:00", "not a time of day"),
        ("mon 08:61-09:00", "not a time of day"),
    ],
)
def test_parse_windows_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_windows(text)


def test_parse_holidays_and_durations() -> None:
    holidays = parse_holidays("2026-03-16, 12-25;01-01 2026-09-16")
    assert date(2026, 3, 16) in holidays
    assert date(2031, 12, 25) in holidays
    assert date(2026, 3, 17) not in holidays
    with pytest.raises(ValueError, match="not a real date"):
        parse_holidays("2026-02-30")
    with pytest.raises(ValueError, match="not a date"):
        parse_holidays("25/12")
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("7d") == timedelta(days=7)
    for bad in ("7", "", "4 hours", "-1h"):
        with pytest.raises(ValueError, match="unit"):
            parse_duration(bad)


def test_policy_refuses_an_end_margin_that_leaves_no_time() -> None:
    with pytest.raises(ValueError, match="end margin"):
        CallingPolicy(parse_windows("mon 08:00-08:10"), end_margin=timedelta(minutes=10))


# ---- windows and time zones -------------------------------------------------------------------------


def test_the_same_instant_is_inside_in_mexico_and_outside_in_utc() -> None:
    rules = policy()
    moment = utc(2026, 3, 10, 1, 30)  # Tuesday 01:30 UTC = Monday 19:30 in Mexico City
    assert not in_window(moment, MEXICO, rules)
    moment = utc(2026, 3, 10, 14, 30)  # 08:30 in Mexico City, 14:30 UTC
    assert in_window(moment, MEXICO, rules)
    assert in_window(moment, ZoneInfo("UTC"), rules)
    early = utc(2026, 3, 10, 13, 30)  # 07:30 in Mexico City but 13:30 UTC
    assert in_window(early, ZoneInfo("UTC"), rules)
    assert not in_window(early, MEXICO, rules)


def test_window_edges_and_the_end_margin() -> None:
    rules = policy()
    assert in_window(utc(2026, 3, 10, 14, 0), MEXICO, rules)  # 08:00 exactly
    assert not in_window(utc(2026, 3, 10, 13, 59, 59), MEXICO, rules)
    assert in_window(utc(2026, 3, 11, 0, 49, 59), MEXICO, rules)  # 18:49:59
    assert not in_window(utc(2026, 3, 11, 0, 50), MEXICO, rules)  # 18:50: the last 10 minutes are kept free
    no_margin = policy(end_margin=timedelta(0))
    assert in_window(utc(2026, 3, 11, 0, 59), MEXICO, no_margin)


def test_weekends() -> None:
    rules = policy()
    assert in_window(utc(2026, 3, 14, 20, 0), MEXICO, rules)  # Saturday 14:00
    assert not in_window(utc(2026, 3, 14, 21, 0), MEXICO, rules)  # Saturday 15:00
    assert not in_window(utc(2026, 3, 15, 17, 0), MEXICO, rules)  # Sunday 11:00
    verdict = evaluate(utc(2026, 3, 14, 21, 0), rules, (MEXICO,))
    assert verdict == Verdict(False, Reason.OUTSIDE_WINDOW, utc(2026, 3, 16, 14, 0))  # Monday 08:00


def test_holidays_skip_the_day() -> None:
    rules = policy(holidays=parse_holidays("2026-03-16"))  # Mexico's Benito Juárez day, 2026
    verdict = evaluate(utc(2026, 3, 16, 17, 0), rules, (MEXICO,))
    assert verdict == Verdict(False, Reason.HOLIDAY, utc(2026, 3, 17, 14, 0))
    friday_evening = evaluate(utc(2026, 3, 14, 1, 0), rules, (MEXICO,))  # Friday 19:00
    assert friday_evening.next_at == utc(2026, 3, 14, 14, 0)  # Saturday 08:00


def test_a_holiday_is_the_local_date_not_the_utc_date() -> None:
    rules = policy(holidays=parse_holidays("12-25"))
    moment = utc(2026, 12, 25, 2, 0)  # Thursday 20:00 on the 24th in Mexico City: not the holiday there
    assert moment.date() == date(2026, 12, 25)
    assert next_window_start(moment, MEXICO, rules) == utc(2026, 12, 26, 14, 0)  # the 25th skipped, Sat 08:00


def test_dst_shifts_the_window_in_utc() -> None:
    rules = policy()
    # New York: EST (UTC-5) until 2026-03-08 02:00, then EDT (UTC-4).
    assert not in_window(utc(2026, 3, 6, 12, 30), NEW_YORK, rules)  # Friday 07:30 EST
    assert in_window(utc(2026, 3, 9, 12, 30), NEW_YORK, rules)  # Monday 08:30 EDT
    assert next_window_start(utc(2026, 3, 6, 0, 0), NEW_YORK, rules) == utc(2026, 3, 6, 13, 0)
    assert next_window_start(utc(2026, 3, 9, 0, 0), NEW_YORK, rules) == utc(2026, 3, 9, 12, 0)


def test_a_window_starting_inside_the_dst_gap() -> None:
    rules = policy(windows=parse_windows("sun 02:30-05:00"))
    # 2026-03-08 02:30 does not exist in New York: the window opens when the clocks jump to 03:00 EDT.
    start = next_window_start(utc(2026, 3, 8, 0, 0), NEW_YORK, rules)
    assert start is not None
    assert start.astimezone(NEW_YORK).hour == 3
    assert in_window(start, NEW_YORK, rules)


def test_mexico_city_has_had_no_dst_since_2022() -> None:
    rules = policy()
    summer = next_window_start(utc(2026, 7, 7, 6, 0), MEXICO, rules)  # Tuesday 00:00 CST (UTC-6)
    assert summer == utc(2026, 7, 7, 14, 0)
    summer_2022 = next_window_start(utc(2022, 7, 5, 6, 0), MEXICO, rules)  # 01:00 CDT (UTC-5), still in 2022
    assert summer_2022 == utc(2022, 7, 5, 13, 0)


def test_local_day_start_when_midnight_does_not_exist() -> None:
    # Chile moves its clocks from 00:00 to 01:00 on 2026-09-06: the day starts at 01:00 local.
    start = local_day_start(date(2026, 9, 6), SANTIAGO)
    assert start.astimezone(SANTIAGO).date() == date(2026, 9, 6)
    assert start.astimezone(SANTIAGO).hour == 1
    assert start - timedelta(seconds=1) < start
    assert (start - timedelta(seconds=1)).astimezone(SANTIAGO).date() == date(2026, 9, 5)


def test_a_customer_in_another_zone_must_be_inside_both_windows() -> None:
    rules = policy()
    zones = (MEXICO, TIJUANA)  # Tijuana follows US DST: one hour behind Mexico City after 8 March
    moment = utc(2026, 3, 10, 14, 30)  # 08:30 in Mexico City, 07:30 in Tijuana
    verdict = evaluate(moment, rules, zones)
    assert verdict == Verdict(False, Reason.OUTSIDE_WINDOW, utc(2026, 3, 10, 15, 0))  # 08:00 in Tijuana
    assert evaluate(utc(2026, 3, 11, 0, 30), rules, zones).allowed  # 18:30 and 17:30: inside both
    late = utc(2026, 3, 11, 0, 55)  # 18:55 in Mexico City (in the end margin), 17:55 in Tijuana
    assert evaluate(late, rules, zones) == Verdict(False, Reason.OUTSIDE_WINDOW, utc(2026, 3, 11, 15, 0))


# ---- caps and intervals -----------------------------------------------------------------------------


def test_daily_cap_is_per_local_day() -> None:
    rules = policy()
    earlier = attempt(utc(2026, 3, 10, 14, 5))  # Tuesday 08:05 local
    verdict = evaluate(utc(2026, 3, 10, 22, 0), rules, (MEXICO,), [earlier])
    assert verdict == Verdict(False, Reason.DAILY_CAP, utc(2026, 3, 11, 14, 0))
    # 01:00 UTC on Wednesday is still Tuesday 19:00 in Mexico: the same day there.
    assert evaluate(utc(2026, 3, 11, 1, 0), rules, (MEXICO,), [earlier]).reason is Reason.DAILY_CAP
    two_a_day = policy(max_per_day=2, retry_interval=timedelta(hours=1))
    assert evaluate(utc(2026, 3, 10, 22, 0), two_a_day, (MEXICO,), [earlier]).allowed


def test_refused_attempts_do_not_count_but_still_wait_the_retry_interval() -> None:
    rules = policy()
    refused = attempt(utc(2026, 3, 10, 14, 5), Outcome.FAILED, counts=False)
    verdict = evaluate(utc(2026, 3, 10, 15, 0), rules, (MEXICO,), [refused])
    assert verdict == Verdict(False, Reason.RETRY_INTERVAL, utc(2026, 3, 10, 18, 5))
    assert evaluate(utc(2026, 3, 10, 18, 5), rules, (MEXICO,), [refused]).allowed


def test_weekly_cap_is_a_rolling_seven_days() -> None:
    rules = policy(max_per_day=2, max_per_week=3, retry_interval=timedelta(minutes=30))
    history = [
        attempt(utc(2026, 3, 2, 15, 0)),  # Monday
        attempt(utc(2026, 3, 4, 15, 0)),  # Wednesday
        attempt(utc(2026, 3, 6, 15, 0)),  # Friday
    ]
    verdict = evaluate(utc(2026, 3, 7, 15, 0), rules, (MEXICO,), history)
    assert verdict == Verdict(False, Reason.WEEKLY_CAP, utc(2026, 3, 9, 15, 0))  # when Monday's dial is 7 days old
    assert evaluate(utc(2026, 3, 9, 15, 0), rules, (MEXICO,), history).allowed


def test_seven_in_seven_days_by_default() -> None:
    rules = policy()
    history = [attempt(utc(2026, 3, 2, 15, 0) + timedelta(days=day)) for day in range(6)]  # Mon .. Sat
    history.append(attempt(utc(2026, 3, 9, 14, 30)))  # the next Monday: the seventh in seven days
    verdict = evaluate(utc(2026, 3, 9, 20, 0), rules, (MEXICO,), history)
    assert verdict.reason is Reason.DAILY_CAP
    tuesday = evaluate(utc(2026, 3, 10, 14, 0), rules, (MEXICO,), history)
    assert tuesday.allowed, "the oldest dial left the 7 days on Monday at 15:00 UTC"


def test_cooldown_after_a_conversation() -> None:
    rules = policy()
    talk = PastAttempt(utc(2026, 3, 10, 15, 0), Outcome.ANSWERED_HUMAN, utc(2026, 3, 10, 15, 6))
    verdict = evaluate(utc(2026, 3, 12, 15, 0), rules, (MEXICO,), [talk])
    assert verdict == Verdict(False, Reason.COOLDOWN, utc(2026, 3, 17, 15, 6))


def test_promise_to_pay_waits_for_the_day_after() -> None:
    rules = policy(cooldown=timedelta(days=1))
    promise = PastAttempt(utc(2026, 3, 10, 15, 0), Outcome.PROMISE_TO_PAY, utc(2026, 3, 10, 15, 5))
    verdict = evaluate(utc(2026, 3, 12, 15, 0), rules, (MEXICO,), [promise], promise_date=date(2026, 3, 20))
    assert verdict == Verdict(False, Reason.PROMISE, utc(2026, 3, 21, 14, 0))  # Saturday 08:00


def test_an_unknown_attempt_blocks_the_rest_of_the_day_even_with_a_higher_cap() -> None:
    rules = policy(max_per_day=3, retry_interval=timedelta(minutes=30))
    lost = attempt(utc(2026, 3, 10, 15, 0), Outcome.UNKNOWN)
    verdict = evaluate(utc(2026, 3, 10, 20, 0), rules, (MEXICO,), [lost])
    assert verdict == Verdict(False, Reason.UNRESOLVED, utc(2026, 3, 11, 14, 0))


def test_final_states() -> None:
    rules = policy(max_attempts=3)
    now = utc(2026, 3, 10, 16, 0)
    assert evaluate(now, rules, (MEXICO,), opted_out=True) == Verdict(False, Reason.OPTED_OUT, None)
    assert evaluate(now, rules, (MEXICO,), attempts_in_campaign=3).reason is Reason.EXHAUSTED
    open_call = PastAttempt(utc(2026, 3, 10, 15, 59), None)
    assert evaluate(now, rules, (MEXICO,), [open_call]) == Verdict(False, Reason.CALL_OPEN, None)
    assert evaluate(now, rules, (MEXICO,)).allowed


def test_windows_that_never_overlap_in_both_zones() -> None:
    mondays = policy(windows=parse_windows("mon 08:00-09:00"))
    assert evaluate(utc(2026, 3, 10, 16, 0), mondays, (MEXICO,)).next_at == utc(2026, 3, 16, 14, 0)
    # Bogotá is an hour ahead of Mexico City: 08:00-08:50 there and here never meet.
    verdict = evaluate(utc(2026, 3, 10, 16, 0), mondays, (MEXICO, BOGOTA))
    assert verdict == Verdict(False, Reason.NO_WINDOW, None)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate(datetime(2026, 3, 10, 16, 0), policy(), (MEXICO,))
