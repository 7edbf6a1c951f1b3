"""What the service counts for its health snapshot: calls by outcome, watchdogs fired, media dropped, what the
reconciliation found. One ``ServiceStats`` per service, shared by its calls, thread-safe; counts since start.

Calls report into it, and the status file (``calls/status.py``) reads ``snapshot()``: nothing here decides
anything, so a call works the same without one (the benchmark runs calls bare).
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime
from typing import Any

__all__ = ["ServiceStats"]


class ServiceStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outcomes: Counter[str] = Counter()
        self._alarms: Counter[str] = Counter()
        self._media: Counter[str] = Counter()
        self._reconciled: Counter[str] = Counter()
        self._last_reconciled = ""
        self._started = 0

    def call_started(self) -> None:
        with self._lock:
            self._started += 1

    def call_ended(self, outcome: str) -> None:
        with self._lock:
            self._outcomes[outcome] += 1

    def alarm(self, name: str) -> None:
        """A watchdog fired (``calls.watchdog.Alarm`` value)."""
        with self._lock:
            self._alarms[name] += 1

    def media(self, **counts: int) -> None:
        """Media a call dropped: ``rtp_foreign`` (datagrams from another source than its Asterisk channel),
        ``rtp_wrong_payload`` (not PCMU), ``rtp_malformed``, ``playout_overflow_ms`` (assistant audio over the
        queue's cap)."""
        with self._lock:
            for name, count in counts.items():
                if count:
                    self._media[name] += count

    def reconciled(self, **counts: int) -> None:
        """One reconciliation's findings (``orphan_callers``, ``orphan_media``, ``orphan_bridges``,
        ``gone_calls``, ``stale_records``)."""
        with self._lock:
            for name, count in counts.items():
                self._reconciled[name] += count
            self._last_reconciled = datetime.now(UTC).isoformat(timespec="seconds")

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls_started": self._started,
                "outcomes": dict(self._outcomes),
                "watchdogs": dict(self._alarms),
                "media_dropped": dict(self._media),
                "reconciled": dict(self._reconciled),
                "last_reconciled_at": self._last_reconciled,
            }
