"""The scheduler: who to call next, within the calling rules, the concurrency cap and the calls-per-minute rate.

Each ``tick``:

1. renews the leases of the calls this dialer follows;
2. records what the originator reports (answered, machine, ended with an outcome);
3. resolves open attempts whose lease expired (a dialer that died or stopped): a channel that still exists is
   adopted and followed, one that is gone closes the attempt as ``unknown`` (see ``store``);
4. while fewer than ``max_concurrent`` calls are open (counting every dialer's) and the rate allows, leases
   the next target the rules allow and places the call;
5. marks finished the running campaigns nobody is left to call in.

``run`` ticks until its stop event is set, then stops placing calls, keeps following the open ones for up to
``drain_timeout`` seconds, and lets the leases of those still open expire at once, so the next start adopts them
without waiting. A dialer killed outright loses nothing either: its leases simply expire.

Every log line about a call carries ``call=<channel id>`` and ``attempt=<id>``.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from centralita.dialer.originator import (
    CallEvent,
    ChannelExists,
    DialRefused,
    DialRequest,
    DialUncertain,
    EventKind,
    Originator,
    Presence,
)
from centralita.dialer.outcomes import Outcome
from centralita.dialer.policy import CallingPolicy, Verdict, evaluate
from centralita.dialer.store import CampaignStore, Candidate, Lease
from centralita.isp.phones import time_zones
from centralita.logs import call_logger

__all__ = ["Runner", "RunnerConfig", "TickReport"]

log = logging.getLogger(__name__)
MINUTE: Final = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    policy: CallingPolicy
    timezone: ZoneInfo
    max_concurrent: int = 2
    calls_per_minute: int = 4
    on_machine: str = "nothing"
    lease_for: timedelta = timedelta(minutes=2)
    backoff_min: timedelta = timedelta(seconds=30)
    backoff_max: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if self.max_concurrent < 1 or self.calls_per_minute < 1:
            raise ValueError("max_concurrent and calls_per_minute must be at least 1")
        if self.lease_for < timedelta(seconds=10):
            raise ValueError("lease_for must be at least 10 seconds")


@dataclass(slots=True)
class TickReport:
    """What one tick did (attempt ids)."""

    placed: list[int] = field(default_factory=list)
    ended: list[int] = field(default_factory=list)
    adopted: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    finished_campaigns: list[str] = field(default_factory=list)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Runner:
    """Runs the campaigns in ``store`` through ``originator``. Not thread-safe: one thread ticks it."""

    def __init__(
        self,
        store: CampaignStore,
        originator: Originator,
        config: RunnerConfig,
        *,
        clock: Callable[[], datetime] = _utc_now,
        owner: str | None = None,
    ) -> None:
        self._store = store
        self._originator = originator
        self._config = config
        self._clock = clock
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._calls: dict[str, int] = {}  # channel id -> attempt id, the calls this runner follows
        self._draining = False
        self._hold_until: datetime | None = None
        self._backoff = config.backoff_min
        self._recover_after: datetime | None = None
        self._unhandled: list[CallEvent] = []

    @property
    def following(self) -> dict[str, int]:
        """The calls this runner follows: channel id -> attempt id."""
        return dict(self._calls)

    # ---- the rules ---------------------------------------------------------------------------------------

    def zones(self, candidate: Candidate) -> tuple[ZoneInfo, ...]:
        """Where the calling windows are checked: the campaign's zone, and the customer's own zone if the import
        gave one, else every zone the number may be in (``phones.time_zones``: a country or an area code can span
        several). A zone name this system's time zone database does not know is left out, with a warning."""
        own = (candidate.timezone,) if candidate.timezone else time_zones(candidate.phone)
        zones = [self._config.timezone]
        for name in own:
            try:
                zone = ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                log.warning(
                    "customer %s: time zone %r is unknown to this system's time zone database; not checked "
                    "(install or update the tzdata package)",
                    candidate.customer_id,
                    name,
                )
                continue
            if all(zone.key != known.key for known in zones):
                zones.append(zone)
        return tuple(zones)

    def decide(self, candidate: Candidate, now: datetime) -> Verdict:
        return evaluate(
            now,
            self._config.policy,
            self.zones(candidate),
            candidate.history,
            attempts_in_campaign=candidate.attempts_in_campaign,
            opted_out=candidate.opted_out,
            promise_date=candidate.promise_date,
        )

    # ---- one pass --------------------------------------------------------------------------------------

    def tick(self) -> TickReport:
        report = TickReport()
        now = self._clock()
        if self._calls:
            self._store.renew_leases(self.owner, now + self._config.lease_for)
        events = self._unhandled + self._originator.poll()
        self._unhandled = []
        for index, event in enumerate(events):
            try:
                self._handle(event, now, report)
            except Exception:
                self._unhandled = events[index:]  # a failing database must not lose the end of a call
                raise
        self._recover(now, report)
        if not self._draining:
            self._place_calls(now, report)
        report.finished_campaigns = self._store.finish_completed(now=now)
        for name in report.finished_campaigns:
            log.info("campaign %s finished: nobody left to call", name)
        return report

    def _handle(self, event: CallEvent, now: datetime, report: TickReport) -> None:
        attempt_id = self._calls.get(event.channel_id)
        if attempt_id is None:
            return  # not a call this runner follows (another dialer adopted it, or it was closed already)
        calls = call_logger(event.channel_id, "centralita.dialer")
        if event.kind is EventKind.ANSWERED:
            if self._store.mark_answered(attempt_id, now=now):
                calls.info("answered attempt=%d", attempt_id)
        elif event.kind is EventKind.MACHINE:
            self._store.set_amd(attempt_id, "MACHINE", event.detail)
            calls.info("answering machine attempt=%d", attempt_id)
        elif event.kind is EventKind.ENDED:
            outcome = event.outcome or Outcome.UNKNOWN
            self._store.finish_attempt(attempt_id, outcome, now=now, cause=event.cause, detail=event.detail)
            del self._calls[event.channel_id]
            self._originator.forget(event.channel_id)
            report.ended.append(attempt_id)
            calls.info("attempt=%d ended: %s (cause %s) %s", attempt_id, outcome, event.cause, event.detail)

    def _recover(self, now: datetime, report: TickReport) -> None:
        if self._recover_after is not None and now < self._recover_after:
            return
        self._recover_after = None
        for attempt in self._store.expired_attempts(now):
            if attempt.channel_id in self._calls:
                continue  # ours; the lease is renewed at the next tick
            calls = call_logger(attempt.channel_id, "centralita.dialer")
            presence = self._originator.presence(attempt.channel_id)
            if presence is Presence.UNKNOWN:
                calls.warning(
                    "attempt=%d has no live dialer and Asterisk cannot say whether its channel exists: "
                    "left open, the customer is not called until it is resolved",
                    attempt.attempt_id,
                )
                self._recover_after = now + self._config.backoff_min
                return
            if presence is Presence.EXISTS:
                if self._store.adopt(attempt.attempt_id, self.owner, now + self._config.lease_for, now):
                    self._calls[attempt.channel_id] = attempt.attempt_id
                    self._originator.watch(attempt.channel_id)
                    report.adopted.append(attempt.attempt_id)
                    calls.info(
                        "attempt=%d adopted: its call is still up (lease of %s had expired)",
                        attempt.attempt_id,
                        attempt.lease_owner,
                    )
                continue
            detail = (
                f"the dialer that placed it ({attempt.lease_owner}) stopped before its result was known; "
                "the channel is gone"
            )
            if self._store.finish_attempt(
                attempt.attempt_id, Outcome.UNKNOWN, now=now, counted=True, detail=detail, source="recovery"
            ):
                report.resolved.append(attempt.attempt_id)
                calls.warning(
                    "attempt=%d resolved as unknown: %s; no other call to this customer today",
                    attempt.attempt_id,
                    detail,
                )

    def _rate_allows(self, now: datetime) -> bool:
        per_minute = self._config.calls_per_minute
        if self._store.started_since(now - MINUTE) >= per_minute:
            return False
        last = self._store.last_started_at()
        return last is None or now - last >= MINUTE / per_minute

    def _place_calls(self, now: datetime, report: TickReport) -> None:
        if self._hold_until is not None and now < self._hold_until:
            return
        while self._store.open_count() < self._config.max_concurrent and self._rate_allows(now):
            lease = self._store.lease_next(
                now, self.owner, self._config.lease_for, lambda candidate: self.decide(candidate, now)
            )
            if lease is None:
                return
            if not self._place(lease, now):
                return
            report.placed.append(lease.attempt_id)

    def _place(self, lease: Lease, now: datetime) -> bool:
        """Place one leased call; False when the phone system is failing and no more calls should go now."""
        calls = call_logger(lease.channel_id, "centralita.dialer")
        request = DialRequest(
            attempt_id=lease.attempt_id,
            channel_id=lease.channel_id,
            number=lease.phone,
            campaign=lease.campaign,
            customer_id=lease.customer_id,
            variables={
                "CENTRALITA_ATTEMPT": str(lease.attempt_id),
                "CENTRALITA_CAMPAIGN": lease.campaign,
                "CENTRALITA_NUMBER": lease.phone,
                "CENTRALITA_ON_MACHINE": self._config.on_machine,
            },
        )
        calls.info(
            "dialing attempt=%d campaign=%s customer=%s number=%s",
            lease.attempt_id,
            lease.campaign,
            lease.customer_id,
            lease.phone,
        )
        try:
            self._originator.originate(request)
        except ChannelExists:
            self._store.mark_dialing(lease.attempt_id, now=now, detail="the channel already existed")
            self._calls[lease.channel_id] = lease.attempt_id
            self._originator.watch(lease.channel_id)
            calls.warning(
                "attempt=%d: Asterisk already has this channel; following it, not dialing again", lease.attempt_id
            )
            return True
        except DialUncertain as error:
            self._store.mark_dialing(lease.attempt_id, now=now, detail=f"originate uncertain: {error}")
            self._calls[lease.channel_id] = lease.attempt_id
            self._originator.watch(lease.channel_id)
            calls.warning(
                "attempt=%d may or may not be ringing (%s): following it, no new calls for now", lease.attempt_id, error
            )
            self._back_off(now)
            return False
        except DialRefused as error:
            self._store.finish_attempt(
                lease.attempt_id, Outcome.FAILED, now=now, counted=False, detail=str(error), source="dialer"
            )
            calls.error("attempt=%d not placed: %s", lease.attempt_id, error)
            # Whatever refused this call (a bad trunk setting, Asterisk down) would likely refuse the next.
            self._back_off(now)
            return False
        self._backoff = self._config.backoff_min
        self._calls[lease.channel_id] = lease.attempt_id  # followed first: the call is real whatever comes next
        self._store.mark_dialing(lease.attempt_id, now=now)
        return True

    def _back_off(self, now: datetime) -> None:
        self._hold_until = now + self._backoff
        log.warning("Asterisk is not answering: no new calls until %s", self._hold_until.isoformat(timespec="seconds"))
        self._backoff = min(self._backoff * 2, self._config.backoff_max)

    # ---- the loop ----------------------------------------------------------------------------------------

    def run(
        self,
        stop: threading.Event,
        *,
        interval: float = 1.0,
        drain_timeout: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
        chores: Sequence[Callable[[], object]] = (),
    ) -> None:
        """Tick every ``interval`` seconds until ``stop`` is set, then drain (see the module's description).

        ``chores`` run before each tick (the web console's campaign requests), so a pause asked while the dialer
        was stopped is applied before its first call is placed."""
        log.info("dialer %s running", self.owner)
        while not stop.is_set():
            for chore in chores:
                try:
                    chore()
                except Exception:
                    log.exception("dialer chore failed")
            self._safe_tick()
            stop.wait(interval)
        self._draining = True
        deadline = time.monotonic() + drain_timeout
        if self._calls:
            log.info(
                "stopping: no new calls; waiting up to %.0f s for %d open call(s)", drain_timeout, len(self._calls)
            )
        while self._calls and time.monotonic() < deadline:
            self._safe_tick()
            if self._calls:
                sleep(interval)
        released = self._store.release_leases(self.owner, self._clock())
        if released:
            log.info("stopped with %d call(s) still open: the next start follows them", released)
        else:
            log.info("stopped")

    def _safe_tick(self) -> None:
        try:
            self.tick()
        except Exception:  # a locked or failing database, a bug: log it and try again at the next tick
            log.exception("dialer tick failed")
