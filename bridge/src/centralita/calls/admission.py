"""Which calls the assistant takes: a limit per box, per caller number, and the spending budget.

Every call the assistant takes opens a Realtime session that is billed from the greeting on, and uses a share
of the box's CPU for its audio. Past what the box carries, every call degrades together; a flood of calls
from one number (or a trunk that lets anyone through) would open as many billed sessions. So a call is
admitted before anything is opened for it, and one that is refused goes straight to the failover context
with the reason: the caller hears a Spanish notice and reaches a person, or is told to try later.

Limits, each off when 0:

* ``max_calls``: calls the assistant carries at once on this box, inbound and outbound together (the dialer's
  answered calls run through the same service). The dialplan holds a second, coarser copy of this limit
  (``GROUP_COUNT`` on the trunk), so it holds even when the service is down or slow.
* ``max_per_caller``: calls from one number at once. Calls without a number (withheld, anonymous) share one
  count, so hiding the number does not lift the limit.
* ``max_per_caller_per_minute``: calls from one number started in any 60 s; refused calls count too, so a
  caller who keeps redialling stays refused until they pause.

Outbound calls (the dialer's) count against ``max_calls`` only: the number is ours to call. Admission is
in-memory state of the one service process; the refusals are counted per reason for the health report. With
several worker processes (``WORKERS``) ``calls/shared_admission.py`` holds the same limits across them.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol

__all__ = ["Admission", "AdmissionGate", "AdmissionLimits", "Refusal", "caller_key", "decide"]

_WINDOW_SECONDS: Final = 60.0


class Refusal(StrEnum):
    """Why a call was not given to the assistant; the value is what the dialplan and the records see."""

    BOX_FULL = "box_full"
    CALLER_BUSY = "caller_busy"
    CALLER_RATE = "caller_rate"
    BUDGET_SPENT = "budget_spent"
    STOPPING = "service_stopping"


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    max_calls: int = 0
    max_per_caller: int = 0
    max_per_caller_per_minute: int = 0

    def __post_init__(self) -> None:
        for name in ("max_calls", "max_per_caller", "max_per_caller_per_minute"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (no limit) or more, not {getattr(self, name)}")


def decide(
    limits: AdmissionLimits,
    total: int,
    outbound: bool,
    caller_counts: Callable[[], tuple[int, int]],
    budget_spent: Callable[[], bool],
) -> Refusal | None:
    """The admission rule, on counts kept elsewhere (one process's memory, or the workers' shared file): ``total``
    calls in progress; ``caller_counts()`` records this start and gives the caller's calls in progress and starts in
    the last minute (asked only for an inbound call the box has room for: refused attempts count, so a caller
    redialling in a loop stays refused); the budget is asked last."""
    if limits.max_calls and total >= limits.max_calls:
        return Refusal.BOX_FULL
    if outbound:
        return None
    same, started = caller_counts()
    if limits.max_per_caller and same >= limits.max_per_caller:
        return Refusal.CALLER_BUSY
    if limits.max_per_caller_per_minute and started > limits.max_per_caller_per_minute:
        return Refusal.CALLER_RATE
    return Refusal.BUDGET_SPENT if budget_spent() else None


class AdmissionGate(Protocol):
    """What the service asks of admission: ``Admission`` in one process, ``SharedAdmission`` across workers."""

    refused: Counter[Refusal]

    @property
    def limits(self) -> AdmissionLimits: ...

    @property
    def active(self) -> int: ...

    def admit(self, call_id: str, caller: str, *, outbound: bool = False) -> Refusal | None: ...

    def refuse(self, reason: Refusal) -> None: ...

    def release(self, call_id: str) -> None: ...

    def close(self) -> None: ...


class Admission:
    """Counts the calls in progress and decides on each new one. Thread-safe.

    ``budget_spent`` is asked on every inbound call; it answers whether the spending budget is used up.
    """

    def __init__(
        self,
        limits: AdmissionLimits,
        *,
        budget_spent: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = limits
        self._budget_spent = budget_spent
        self._clock = clock
        self._lock = threading.Lock()
        self._calls: dict[str, str | None] = {}  # call id -> caller number (None: an outbound call)
        self._starts: dict[str, deque[float]] = {}  # caller -> start times in the last window
        self.refused: Counter[Refusal] = Counter()

    @property
    def limits(self) -> AdmissionLimits:
        return self._limits

    @property
    def active(self) -> int:
        with self._lock:
            return len(self._calls)

    def admit(self, call_id: str, caller: str, *, outbound: bool = False) -> Refusal | None:
        """Take the call (None) or say why not. A call admitted holds its place until ``release(call_id)``."""
        limits = self._limits
        key = caller_key(caller)
        with self._lock:
            if call_id in self._calls:
                return None
            now = self._clock()

            def caller_counts() -> tuple[int, int]:
                starts = self._recent_starts(key, now)
                starts.append(now)
                return sum(1 for other in self._calls.values() if other == key), len(starts)

            refusal = decide(limits, len(self._calls), outbound, caller_counts, self._budget_spent)
            if refusal is not None:
                self.refused[refusal] += 1
                return refusal
            self._calls[call_id] = None if outbound else key
            return None

    def refuse(self, reason: Refusal) -> None:
        """Count a refusal decided elsewhere (e.g. the service is stopping)."""
        with self._lock:
            self.refused[reason] += 1

    def release(self, call_id: str) -> None:
        """The call ended: its place is free. Releasing an unknown call does nothing."""
        with self._lock:
            self._calls.pop(call_id, None)

    def close(self) -> None:
        """Nothing to free: the counts are this process's memory."""

    def _recent_starts(self, key: str, now: float) -> deque[float]:
        # Forget callers with no start in the window, so the table does not grow with every number ever seen.
        for other in [caller for caller, times in self._starts.items() if times and now - times[-1] >= _WINDOW_SECONDS]:
            del self._starts[other]
        starts = self._starts.setdefault(key, deque())
        while starts and now - starts[0] >= _WINDOW_SECONDS:
            starts.popleft()
        return starts


def caller_key(caller: str) -> str:
    """The number as the limits count it: digits and a leading +; withheld numbers share one key."""
    text = caller.strip()
    kept = "".join(character for character in text if character.isdigit())
    return ("+" + kept if text.startswith("+") else kept) or "anonymous"
