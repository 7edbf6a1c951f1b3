"""Daily and monthly spending limits on the OpenAI sessions.

When the day's (or the month's) spending has reached its limit, new inbound calls go to a person instead of
the assistant; calls in progress finish. Days and months are those of the box's time zone (``zone``), and
the spending is what the call records hold (``spent_since``): calls of every service on the box, recorded
per response. Asking the database on every call would put a query on the path of each new call, so the
answer is kept for ``cache_seconds``; the limit may thus be passed by what the calls in progress spend
meanwhile, which is the intent (they finish).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from decimal import Decimal

__all__ = ["Budget", "BudgetState"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BudgetState:
    day_spent: Decimal
    month_spent: Decimal
    daily_limit: Decimal  # 0: no limit
    monthly_limit: Decimal  # 0: no limit
    currency: str

    @property
    def spent(self) -> bool:
        return (bool(self.daily_limit) and self.day_spent >= self.daily_limit) or (
            bool(self.monthly_limit) and self.month_spent >= self.monthly_limit
        )

    def describe(self) -> str:
        def part(spent: Decimal, limit: Decimal, what: str) -> str:
            cap = f" of {limit:.2f}" if limit else " (no limit)"
            return f"{what} {spent:.2f}{cap}"

        return (
            f"{part(self.day_spent, self.daily_limit, 'today')}, "
            f"{part(self.month_spent, self.monthly_limit, 'this month')} {self.currency}"
        )


class Budget:
    """Answers "is the budget spent?" from the recorded spending; thread-safe."""

    def __init__(
        self,
        *,
        daily: Decimal,
        monthly: Decimal,
        currency: str,
        spent_since: Callable[[datetime], Decimal],
        zone: tzinfo | None = None,
        cache_seconds: float = 5.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if daily < 0 or monthly < 0:
            raise ValueError("budget limits must be 0 (no limit) or more")
        self._daily = daily
        self._monthly = monthly
        self._currency = currency
        self._spent_since = spent_since
        self._zone = zone
        self._cache_seconds = cache_seconds
        self._now = now
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._state: BudgetState | None = None
        self._checked = 0.0
        self._was_spent = False

    @property
    def limited(self) -> bool:
        return bool(self._daily or self._monthly)

    def state(self) -> BudgetState:
        """The spending now (from the database, at most ``cache_seconds`` old)."""
        with self._lock:
            if self._state is not None and self._monotonic() - self._checked < self._cache_seconds:
                return self._state
            local = self._now().astimezone(self._zone) if self._zone else self._now().astimezone()
            day_start = local.replace(hour=0, minute=0, second=0, microsecond=0)
            month_start = day_start.replace(day=1)
            state = BudgetState(
                day_spent=self._spent_since(day_start),
                month_spent=self._spent_since(month_start),
                daily_limit=self._daily,
                monthly_limit=self._monthly,
                currency=self._currency,
            )
            self._state, self._checked = state, self._monotonic()
            changed, self._was_spent = state.spent != self._was_spent, state.spent
        if changed:
            if state.spent:
                log.error("budget spent: %s; new calls go to the operator until it resets", state.describe())
            else:
                log.warning("budget available again: %s", state.describe())
        return state

    def spent(self) -> bool:
        """Whether new calls must go to a person. Never raises: an unreadable ledger means not spent."""
        if not self.limited:
            return False
        try:
            return self.state().spent
        except Exception as error:  # the budget must not take calls down with it
            log.warning("budget unknown (%s): calls are taken", error)
            return False
