"""What the calls of a period were, day by day: how many, in which direction, how they ended, how many minutes
the assistant talked, the tokens the Realtime sessions used and what they cost.

Days are those of a time zone (the box's own by default), and a call belongs to the day it started on, its
usage with it (a call that runs past midnight is reckoned whole on its first day); usage whose call row is
missing goes by the moment it was recorded. Minutes are the time from answer to end (a call refused or given
up before it was answered counts none). Costs are summed exactly per currency, and each day says the dates of
the price tables its costs were reckoned with: a cost is never shown without that date (rows recorded before the
date was kept show ``unknown``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from typing import Any, Final, Protocol

from centralita.billing.usage import Usage
from centralita.storage.records import Direction, Outcome

__all__ = ["IN_PROGRESS", "UNKNOWN_PRICES", "Day", "Report", "build_report", "outcome_names"]

IN_PROGRESS: Final = "in_progress"  # a call with no end recorded (still up, or its end was lost)
UNKNOWN_PRICES: Final = "unknown"  # the date of a price table nobody recorded (usage before schema 6)
_MICROS: Final = Decimal(1_000_000)
_USAGE_FIELDS: Final = ("input_text", "input_audio", "cached_text", "cached_audio", "output_text", "output_audio")
# A call's usage is recorded while it runs: usage rows this long after a period's end may belong to its calls.
_LONGEST_CALL: Final = timedelta(hours=2)


@dataclass(slots=True)
class Day:
    """One day's figures (or a period's, for the total)."""

    day: date | None  # None: the total
    calls: int = 0
    inbound: int = 0
    outbound: int = 0
    answered: int = 0
    seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    usage: Usage = field(default_factory=Usage)
    cost_micros: Counter[str] = field(default_factory=Counter)  # per currency
    prices_as_of: set[str] = field(default_factory=set)

    @property
    def minutes(self) -> Decimal:
        return (Decimal(str(self.seconds)) / 60).quantize(Decimal("0.1"))

    def cost(self, currency: str) -> Decimal:
        return Decimal(self.cost_micros[currency]) / _MICROS

    def add(self, other: Day) -> None:
        self.calls += other.calls
        self.inbound += other.inbound
        self.outbound += other.outbound
        self.answered += other.answered
        self.seconds += other.seconds
        self.outcomes.update(other.outcomes)
        self.usage += other.usage
        self.cost_micros.update(other.cost_micros)
        self.prices_as_of |= other.prices_as_of


@dataclass(frozen=True, slots=True)
class Report:
    first: date
    last: date
    zone: tzinfo
    days: tuple[Day, ...]  # only days with calls or usage, in order
    total: Day

    @property
    def currencies(self) -> tuple[str, ...]:
        return tuple(sorted(self.total.cost_micros))


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


class ReportSource(Protocol):
    """What the report reads: ``CallRecords`` (the CLI) or the console's read-only ``ReadOnlyRecords``."""

    def calls_started_between(self, start: datetime, end: datetime) -> list[dict[str, Any]]: ...

    def usage_between(self, start: datetime, end: datetime) -> list[dict[str, Any]]: ...


def build_report(records: ReportSource, first: date, last: date, zone: tzinfo) -> Report:
    """The figures of the days ``first`` to ``last`` (both included) of time zone ``zone``."""
    if last < first:
        raise ValueError(f"the period ends ({last}) before it starts ({first})")
    start = datetime.combine(first, time(), zone)
    end = datetime.combine(last + timedelta(days=1), time(), zone)
    days: dict[date, Day] = {}

    def day_of(moment: datetime) -> Day:
        local = moment.astimezone(zone).date()
        return days.setdefault(local, Day(local))

    for call in records.calls_started_between(start, end):
        _count_call(day_of(_parse(call["started_at"])), call)
    for row in records.usage_between(start, end + _LONGEST_CALL):
        moment = _parse(row["started_at"] or row["at"])
        if start <= moment < end:
            _count_usage(day_of(moment), row)
    ordered = tuple(days[key] for key in sorted(days))
    total = Day(None)
    for day in ordered:
        total.add(day)
    return Report(first, last, zone, ordered, total)


def _count_call(day: Day, call: dict[str, Any]) -> None:
    day.calls += 1
    if call["direction"] == Direction.INBOUND:
        day.inbound += 1
    else:
        day.outbound += 1
    day.outcomes[call["outcome"] or IN_PROGRESS] += 1
    if call["answered_at"]:
        day.answered += 1
        if call["ended_at"]:
            day.seconds += max((_parse(call["ended_at"]) - _parse(call["answered_at"])).total_seconds(), 0.0)


def _count_usage(day: Day, row: dict[str, Any]) -> None:
    day.usage += Usage(**{name: int(row[name]) for name in _USAGE_FIELDS})
    day.cost_micros[str(row["currency"])] += int(row["cost_micros"])
    day.prices_as_of.add(str(row["prices_as_of"] or UNKNOWN_PRICES))


def outcome_names(days: Iterable[Day]) -> list[str]:
    """Every outcome, in the order the records define them, then any other value found (in progress last)."""
    found: set[str] = set()
    for day in days:
        found |= set(day.outcomes)
    known = [str(outcome) for outcome in Outcome]
    return [*known, *sorted(found - set(known) - {IN_PROGRESS}), IN_PROGRESS]
