"""Shared pieces of the dialer tests: a settable clock, a recording originator and targets to import."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from centralita.dialer.originator import CallEvent, DialRefused, DialRequest, DialUncertain, EventKind, Presence
from centralita.dialer.outcomes import Outcome
from centralita.dialer.policy import CallingPolicy, parse_windows
from centralita.dialer.runner import RunnerConfig
from centralita.dialer.store import TargetData

MEXICO = ZoneInfo("America/Mexico_City")
# Tuesday 2026-03-10, 10:00 in Mexico City (UTC-6, no DST since 2022).
TUESDAY_10 = datetime(2026, 3, 10, 16, 0, tzinfo=UTC)


class Clock:
    """A clock the test sets and moves; every reading returns the same moment until moved."""

    def __init__(self, start: datetime = TUESDAY_10) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def policy(**overrides: object) -> CallingPolicy:
    values: dict[str, object] = {"windows": parse_windows("mon-fri 08:00-19:00; sat 08:00-15:00")}
    values.update(overrides)
    return CallingPolicy(**values)  # type: ignore[arg-type]


def config(**overrides: object) -> RunnerConfig:
    values: dict[str, object] = {"policy": policy(), "timezone": MEXICO, "max_concurrent": 2, "calls_per_minute": 60}
    values.update(overrides)
    return RunnerConfig(**values)  # type: ignore[arg-type]


def target(number: int, **overrides: object) -> TargetData:
    values: dict[str, object] = {
        "customer_id": f"C{number:03d}",
        "name": f"Cliente {number}",
        "phone": f"+5255500{number:05d}",
        "amount_due": Decimal("350.00"),
        "due_date": date(2026, 2, 28),
        "router_user": None,
        "timezone": None,
        "source": "test",
    }
    values.update(overrides)
    return TargetData(**values)  # type: ignore[arg-type]


class RecordingOriginator:
    """Records what the runner asks for; the test decides how each call goes."""

    def __init__(self) -> None:
        self.placed: list[DialRequest] = []
        self.live: set[str] = set()
        self.watched: list[str] = []
        self.forgotten: list[str] = []
        self.presences: dict[str, Presence] = {}
        self.fail_with: Exception | None = None
        self._events: list[CallEvent] = []

    def originate(self, request: DialRequest) -> None:
        if self.fail_with is not None:
            error, self.fail_with = self.fail_with, None
            if isinstance(error, DialUncertain):
                self.placed.append(request)
                self.live.add(request.channel_id)
            raise error
        self.placed.append(request)
        self.live.add(request.channel_id)

    def watch(self, channel_id: str) -> None:
        self.watched.append(channel_id)

    def forget(self, channel_id: str) -> None:
        self.forgotten.append(channel_id)

    def poll(self) -> list[CallEvent]:
        events, self._events = self._events, []
        return events

    def presence(self, channel_id: str) -> Presence:
        if channel_id in self.presences:
            return self.presences[channel_id]
        return Presence.EXISTS if channel_id in self.live else Presence.GONE

    # ---- the test's side -------------------------------------------------------------------------------

    def answer(self, channel_id: str) -> None:
        self._events.append(CallEvent(EventKind.ANSWERED, channel_id))

    def end(self, channel_id: str, outcome: Outcome, cause: int | None = None) -> None:
        self.live.discard(channel_id)
        self._events.append(CallEvent(EventKind.ENDED, channel_id, outcome, cause, "test"))

    def refuse_next(self, message: str = "Invalid parameters", unreachable: bool = False) -> None:
        self.fail_with = DialRefused(message, unreachable=unreachable)

    @property
    def numbers(self) -> list[str]:
        return [request.number for request in self.placed]
