"""When the dialer may call a customer: pure functions of the moment, the rules and the customer's history.

Nothing here reads a clock, a file or the database: the caller passes ``now`` (an aware datetime) and what
it knows, so every rule can be tested at any instant in any time zone.

The rules, checked together (a call is allowed only when all of them allow it):

* **Calling windows** (``Window``): weekdays and local times, e.g. ``mon-fri 08:00-19:00; sat 08:00-15:00``.
  Local means the wall clock of every zone given to ``evaluate``: the campaign's, and the customer's own when
  the import gave one, else every zone the phone number may be in (the runner asks ``phones.time_zones``; a
  Spanish mobile may be in Madrid or in the Canaries). The call must be inside a window in all of them, and
  the next allowed moment is the first one inside a window in all of them. No call starts in the last
  ``end_margin`` of a window, so the conversation ends inside it. Days not listed (Sunday by default) have no
  window.
* **Holidays**: no call on a listed date (a full date, or a month and day that repeats every year).
* **Daily cap**: at most ``max_per_day`` dials per local calendar day.
* **Weekly cap**: at most ``max_per_week`` dials in any 7 consecutive days (a rolling 168 hours).
* **Attempts cap**: at most ``max_attempts`` dials of one customer in one campaign; then the customer is
  exhausted and never called again by that campaign.
* **Retry interval**: at least ``retry_interval`` between two attempts (busy, no answer, machine, failure),
  including attempts the phone system refused, so a failing number is not retried in a loop.
* **Cooldown**: no call for ``cooldown`` after a conversation with the customer (answered, promise, dispute).
* **Promise to pay**: no call before the day after the promised date.
* **Unresolved attempt**: after an attempt whose result is unknown (the dialer crashed while it was open) no
  other call the same local day, whatever the daily cap says.
* **Opt-out**: a number on the opt-out list is never called.

Caps count dials of the same customer *and* of the same phone number, in every campaign: the history given
to ``evaluate`` is all of them. Dials refused before anything left the box (``counts=False``) do not count.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo

from centralita.dialer.outcomes import CONVERSATIONS, Outcome

__all__ = [
    "CallingPolicy",
    "Holidays",
    "PastAttempt",
    "Reason",
    "Verdict",
    "Window",
    "evaluate",
    "format_windows",
    "in_window",
    "local_day_start",
    "next_window_start",
    "parse_duration",
    "parse_holidays",
    "parse_windows",
]

WEEK: Final = timedelta(days=7)
DAY_MINUTES: Final = 24 * 60
# How far ahead to look for the next window: a year and a bit, so yearly holidays cannot hide it.
_HORIZON_DAYS: Final = 400
_MAX_STEPS: Final = 64

_DAY_NAMES: Final = {
    "mon": 0,
    "monday": 0,
    "lun": 0,
    "lunes": 0,
    "tue": 1,
    "tuesday": 1,
    "mar": 1,
    "martes": 1,
    "wed": 2,
    "wednesday": 2,
    "mie": 2,
    "miercoles": 2,
    "thu": 3,
    "thursday": 3,
    "jue": 3,
    "jueves": 3,
    "fri": 4,
    "friday": 4,
    "vie": 4,
    "viernes": 4,
    "sat": 5,
    "saturday": 5,
    "sab": 5,
    "sabado": 5,
    "sun": 6,
    "sunday": 6,
    "dom": 6,
    "domingo": 6,
}
_SHORT_NAMES: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")
_DURATION = re.compile(r"(\d+)\s*([smhd])", re.IGNORECASE)
_DURATION_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Reason(StrEnum):
    """Why a call is not allowed now (the first rule that stops it)."""

    OPTED_OUT = "opted-out"
    CALL_OPEN = "call-open"
    EXHAUSTED = "attempts-exhausted"
    OUTSIDE_WINDOW = "outside-window"
    HOLIDAY = "holiday"
    DAILY_CAP = "daily-cap"
    WEEKLY_CAP = "weekly-cap"
    RETRY_INTERVAL = "retry-interval"
    COOLDOWN = "cooldown"
    PROMISE = "promise-to-pay"
    UNRESOLVED = "unresolved-attempt"
    NO_WINDOW = "no-window"


@dataclass(frozen=True, slots=True)
class Window:
    """Calls may start on ``days`` (0 = Monday) from ``start`` to ``end``, in minutes after local midnight."""

    days: frozenset[int]
    start: int
    end: int

    def __post_init__(self) -> None:
        if not self.days or not self.days <= frozenset(range(7)):
            raise ValueError(f"window days must be weekday numbers 0-6, got {sorted(self.days)}")
        if not 0 <= self.start < self.end <= DAY_MINUTES:
            raise ValueError(f"a window must start before it ends, within the day: {self.start}-{self.end} minutes")

    def __str__(self) -> str:
        days = ",".join(_SHORT_NAMES[day] for day in sorted(self.days))
        return f"{days} {_clock(self.start)}-{_clock(self.end)}"


@dataclass(frozen=True, slots=True)
class Holidays:
    """Days without calls: full dates, and (month, day) pairs that repeat every year."""

    dates: frozenset[date] = frozenset()
    yearly: frozenset[tuple[int, int]] = frozenset()

    def __contains__(self, day: object) -> bool:
        if not isinstance(day, date):
            return False
        return day in self.dates or (day.month, day.day) in self.yearly

    def __bool__(self) -> bool:
        return bool(self.dates or self.yearly)


@dataclass(frozen=True, slots=True)
class CallingPolicy:
    """The rules; the defaults are the strict ones described in docs/DIALER.md."""

    windows: tuple[Window, ...]
    holidays: Holidays = field(default_factory=Holidays)
    max_per_day: int = 1
    max_per_week: int = 7
    max_attempts: int = 10
    retry_interval: timedelta = timedelta(hours=4)
    cooldown: timedelta = timedelta(days=7)
    end_margin: timedelta = timedelta(minutes=10)

    def __post_init__(self) -> None:
        if not self.windows:
            raise ValueError("a calling policy needs at least one window")
        for name in ("max_per_day", "max_per_week", "max_attempts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("retry_interval", "cooldown", "end_margin"):
            if getattr(self, name) < timedelta(0):
                raise ValueError(f"{name} must not be negative")
        shortest = min(window.end - window.start for window in self.windows)
        if self.end_margin >= timedelta(minutes=shortest):
            raise ValueError(
                f"the end margin ({self.end_margin}) leaves no time in the shortest window ({shortest} minutes)"
            )


@dataclass(frozen=True, slots=True)
class PastAttempt:
    """One earlier dial of the customer or of the number: when, how it ended (None: still open)."""

    at: datetime
    outcome: Outcome | None = None
    ended_at: datetime | None = None
    counts: bool = True  # False when nothing was dialled (ARI refused it): not counted by the caps


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a call may start now; if not, why, and the first moment it may (None: never)."""

    allowed: bool
    reason: Reason | None = None
    next_at: datetime | None = None

    @property
    def never(self) -> bool:
        return not self.allowed and self.next_at is None

    def __str__(self) -> str:
        if self.allowed:
            return "allowed now"
        if self.next_at is None:
            return f"never ({self.reason})"
        return f"not before {self.next_at.astimezone(UTC).isoformat(timespec='seconds')} ({self.reason})"


# ---- parsing ---------------------------------------------------------------------------------------------


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _fold(text: str) -> str:
    """Lower case without accents: ``Miércoles`` -> ``miercoles``."""
    decomposed = unicodedata.normalize("NFKD", text.strip().lower())
    return "".join(character for character in decomposed if not unicodedata.combining(character))


def _day(name: str) -> int:
    day = _DAY_NAMES.get(_fold(name))
    if day is None:
        raise ValueError(f"{name!r} is not a day: use mon, tue, wed, thu, fri, sat, sun (or lun ... dom)")
    return day


def _days(spec: str) -> frozenset[int]:
    days: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            raise ValueError(f"empty day in {spec!r}")
        if "-" in part:
            first_name, _, last_name = part.partition("-")
            first, last = _day(first_name), _day(last_name)
            day = first
            days.add(day)
            while day != last:  # a range may wrap around the week: fri-mon
                day = (day + 1) % 7
                days.add(day)
        else:
            days.add(_day(part))
    return frozenset(days)


def _minutes(text: str) -> int:
    match = _CLOCK.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a time: use HH:MM, e.g. 08:00")
    hours, minutes = int(match.group(1)), int(match.group(2))
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise ValueError(f"{text!r} is not a time of day (00:00 to 24:00)")
    return hours * 60 + minutes


def parse_windows(text: str) -> tuple[Window, ...]:
    """Parse ``mon-fri 08:00-19:00; sat 08:00-15:00`` (several ranges per entry: ``08:00-13:00,15:00-19:00``)."""
    windows: list[Window] = []
    for entry in text.split(";"):
        entry = entry.strip()
        if not entry:
            continue
        parts = entry.split(None, 1)
        if len(parts) != 2:
            raise ValueError(f"{entry!r} needs days and hours, e.g. 'mon-fri 08:00-19:00'")
        days = _days(parts[0])
        for span in parts[1].split(","):
            start_text, dash, end_text = span.strip().partition("-")
            if not dash:
                raise ValueError(f"{span.strip()!r} is not a range of hours: use e.g. 08:00-19:00")
            start, end = _minutes(start_text), _minutes(end_text)
            if start >= end:
                raise ValueError(f"{span.strip()!r} ends before it starts (windows cannot cross midnight)")
            windows.append(Window(days, start, end))
    if not windows:
        raise ValueError("no window given: e.g. 'mon-fri 08:00-19:00; sat 08:00-15:00'")
    return tuple(windows)


def format_windows(windows: Iterable[Window]) -> str:
    return "; ".join(str(window) for window in windows)


def parse_holidays(text: str) -> Holidays:
    """Dates separated by commas, semicolons or spaces: ``2026-12-25`` (that day) or ``12-25`` (every year)."""
    dates: set[date] = set()
    yearly: set[tuple[int, int]] = set()
    for item in re.split(r"[\s,;]+", text.strip()):
        if not item:
            continue
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", item):
            try:
                dates.add(date.fromisoformat(item))
            except ValueError:
                raise ValueError(f"{item!r} is not a real date") from None
        elif re.fullmatch(r"\d{2}-\d{2}", item):
            month, day = int(item[:2]), int(item[3:])
            try:
                date(2000, month, day)  # a leap year, so 02-29 is accepted
            except ValueError:
                raise ValueError(f"{item!r} is not a real month and day") from None
            yearly.add((month, day))
        else:
            raise ValueError(f"{item!r} is not a date: use YYYY-MM-DD, or MM-DD for every year")
    return Holidays(frozenset(dates), frozenset(yearly))


def parse_duration(text: str) -> timedelta:
    """``30s``, ``90m``, ``4h``, ``7d`` or combinations (``1h30m``); a unit is required."""
    compact = text.strip().replace(" ", "")
    if not compact or _DURATION.sub("", compact):
        raise ValueError(f"{text!r} is not a duration: use a number with a unit s, m, h or d, e.g. 4h")
    seconds = sum(int(number) * _DURATION_UNITS[unit.lower()] for number, unit in _DURATION.findall(compact))
    return timedelta(seconds=seconds)


# ---- time arithmetic -------------------------------------------------------------------------------------


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"the policy needs timezone-aware datetimes, got {moment.isoformat()}")
    return moment.astimezone(UTC)


def local_day_start(day: date, zone: ZoneInfo) -> datetime:
    """The first instant (UTC) of ``day`` in ``zone``; on a day whose midnight is skipped by DST, its 01:00."""
    return _instant(day, 0, zone)


def _instant(day: date, minutes: int, zone: ZoneInfo) -> datetime:
    if minutes >= DAY_MINUTES:
        return local_day_start(day + timedelta(days=1), zone)
    local = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=zone)
    # A wall time skipped by DST (fold=0) resolves to the instant after the gap; UTC arithmetic from here on.
    return local.astimezone(UTC)


def _seconds_of_day(local: datetime) -> float:
    return local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6


def in_window(moment: datetime, zone: ZoneInfo, policy: CallingPolicy) -> bool:
    """Whether a call may start at ``moment`` by the windows and holidays of ``zone`` alone."""
    local = _aware(moment).astimezone(zone)
    if local.date() in policy.holidays:
        return False
    seconds = _seconds_of_day(local)
    margin = policy.end_margin.total_seconds()
    return any(
        local.weekday() in window.days and window.start * 60 <= seconds < window.end * 60 - margin
        for window in policy.windows
    )


def next_window_start(moment: datetime, zone: ZoneInfo, policy: CallingPolicy) -> datetime | None:
    """``moment`` if it is inside a window of ``zone``, else the next window start; None if none within a year."""
    moment = _aware(moment)
    if in_window(moment, zone, policy):
        return moment
    today = moment.astimezone(zone).date()
    for offset in range(_HORIZON_DAYS):
        day = today + timedelta(days=offset)
        if day in policy.holidays:
            continue
        starts = sorted(window.start for window in policy.windows if day.weekday() in window.days)
        for start in starts:
            candidate = _instant(day, start, zone)
            if candidate > moment and in_window(candidate, zone, policy):
                return candidate
    return None


def _next_window_all(moment: datetime, zones: Sequence[ZoneInfo], policy: CallingPolicy) -> datetime | None:
    """The first moment from ``moment`` that is inside a window in every zone (None: not within the horizon)."""
    for _ in range(_MAX_STEPS):
        later = moment
        for zone in zones:
            start = next_window_start(later, zone, policy)
            if start is None:
                return None
            later = max(later, start)
        if later == moment:
            return moment
        moment = later
    return None


def _local_date(moment: datetime, zone: ZoneInfo) -> date:
    return moment.astimezone(zone).date()


def _bounds(
    moment: datetime,
    zones: Sequence[ZoneInfo],
    policy: CallingPolicy,
    history: Sequence[PastAttempt],
    promise_date: date | None,
) -> tuple[datetime, Reason | None]:
    """The latest lower bound the history puts on a call at ``moment``, and the rule that sets it."""
    best: tuple[datetime, Reason | None] = (moment, None)

    def raise_to(candidate: datetime, reason: Reason) -> None:
        nonlocal best
        if candidate > best[0]:
            best = (candidate, reason)

    if history:  # every attempt, counted or not, so a call that keeps failing is not retried at once
        raise_to(max(_aware(attempt.at) for attempt in history) + policy.retry_interval, Reason.RETRY_INTERVAL)
    counted = sorted((attempt for attempt in history if attempt.counts), key=lambda attempt: attempt.at)
    for attempt in counted:
        if attempt.outcome in CONVERSATIONS:
            raise_to(_aware(attempt.ended_at or attempt.at) + policy.cooldown, Reason.COOLDOWN)
    if promise_date is not None:
        raise_to(local_day_start(promise_date + timedelta(days=1), zones[0]), Reason.PROMISE)
    for zone in zones:
        today = _local_date(moment, zone)
        tomorrow = local_day_start(today + timedelta(days=1), zone)
        same_day = [attempt for attempt in counted if _local_date(attempt.at, zone) == today]
        if any(attempt.outcome is Outcome.UNKNOWN for attempt in same_day):
            raise_to(tomorrow, Reason.UNRESOLVED)
        if len(same_day) >= policy.max_per_day:
            raise_to(tomorrow, Reason.DAILY_CAP)
    recent = [attempt.at for attempt in counted if moment - WEEK < _aware(attempt.at) <= moment]
    if len(recent) >= policy.max_per_week:
        # The week frees up when enough of the oldest dials are more than 7 days old.
        raise_to(_aware(recent[len(recent) - policy.max_per_week]) + WEEK, Reason.WEEKLY_CAP)
    return best


def evaluate(
    now: datetime,
    policy: CallingPolicy,
    zones: Sequence[ZoneInfo],
    history: Sequence[PastAttempt] = (),
    *,
    attempts_in_campaign: int = 0,
    opted_out: bool = False,
    promise_date: date | None = None,
) -> Verdict:
    """May the customer be called at ``now``? ``zones``: the campaign's zone first, then the customer's (their own,
    or those of their number); a call must be inside a window in every one.

    ``history`` is every earlier dial of the customer or of the number, in any campaign;
    ``attempts_in_campaign`` how many of them this campaign made (for ``max_attempts``).
    """
    now = _aware(now)
    if not zones:
        raise ValueError("evaluate needs at least one time zone")
    if opted_out:
        return Verdict(False, Reason.OPTED_OUT, None)
    if any(attempt.outcome is None for attempt in history):
        return Verdict(False, Reason.CALL_OPEN, None)
    if attempts_in_campaign >= policy.max_attempts:
        return Verdict(False, Reason.EXHAUSTED, None)
    moment = now
    first_reason: Reason | None = None
    for _ in range(_MAX_STEPS):
        later, reason = _bounds(moment, zones, policy, history, promise_date)
        if later == moment:
            start = _next_window_all(moment, zones, policy)
            if start is None:
                return Verdict(False, first_reason or Reason.NO_WINDOW, None)
            if start == moment:
                break
            later = start
            reason = Reason.HOLIDAY if any(_local_date(moment, zone) in policy.holidays for zone in zones) else None
            reason = reason or Reason.OUTSIDE_WINDOW
        first_reason = first_reason or reason
        moment = later
    else:
        return Verdict(False, first_reason or Reason.NO_WINDOW, None)
    if moment == now:
        return Verdict(True)
    return Verdict(False, first_reason, moment)
