"""The limits on what a caller can make the service do, counted where a new call cannot reset them.

* **Lookups**: every network tool run that looks customers up or reads a router is one lookup. A call may make
  ``LOOKUP_MAX_PER_CALL`` (counted in the call's ``CallIdentity``), and a caller number
  ``LOOKUP_MAX_PER_CALLER_HOUR`` in any hour, across calls (``caller_events`` in SQLite).
* **Failed identity checks**: data that did not match is counted per caller number and per customer, across
  calls, within ``IDENTITY_FAILURE_WINDOW``; at ``IDENTITY_MAX_FAILURES`` of either, verification is refused
  for that number, or for that customer from any number, until the window has passed. A caller who guesses
  from many numbers still meets the customer's count; one number trying many DNIs meets its own.

A caller without a usable caller ID is counted as ``anonymous``: all of them share one count. Reaching a limit
is logged (``limit reached``), counted (``caller_events``, kind ``limit``) and audited (``audit_log``), and the
model is told to offer the operator. Events older than any window are pruned once an hour.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Final

from centralita.config.network import IdentityPolicy, LookupLimits
from centralita.isp.customers import Customer
from centralita.isp.phones import e164_or_none
from centralita.logs import call_logger
from centralita.storage.records import AuditResult, CallerEvent, CallRecords
from centralita.tools.network import messages
from centralita.tools.registry import ToolContext

__all__ = ["ANONYMOUS", "CallerGuard", "caller_key"]

log = logging.getLogger(__name__)

ANONYMOUS: Final = "anonymous"
_HOUR: Final = timedelta(hours=1)
_PRUNE_EVERY: Final = 3600.0  # seconds between prunes of old caller events
_KEY_LENGTH: Final = 64


def caller_key(caller: str, region: str | None) -> str:
    """Who a limit is counted for: the caller ID in E.164, else the text Asterisk gave, else ``anonymous``."""
    number = e164_or_none(caller, region)
    if number is not None:
        return number
    text = "".join(character for character in caller.strip() if character.isprintable())[:_KEY_LENGTH]
    return text or ANONYMOUS


class CallerGuard:
    """Counts and checks the limits above; audits what it refuses. Thread-safe, shared by every call."""

    def __init__(self, records: CallRecords, policy: IdentityPolicy, limits: LookupLimits, region: str | None) -> None:
        self._records = records
        self._policy = policy
        self._limits = limits
        self._region = region
        self._last_prune = time.monotonic()
        self._prune_lock = threading.Lock()

    def key(self, context: ToolContext) -> str:
        return caller_key(context.caller, self._region)

    def take_lookup(self, context: ToolContext, tool: str) -> str | None:
        """Count one lookup for the call and its caller; the Spanish refusal when a limit is reached, else None."""
        key = self.key(context)
        limits = self._limits
        if not context.identity.take_lookup(limits.per_call):
            return self._limit(context, tool, key, f"{limits.per_call} lookups in this call", messages.LOOKUPS_CALL)
        recent = self._records.count_caller_events(CallerEvent.LOOKUP, _HOUR, caller=key)
        if recent >= limits.per_caller_hour:
            why = f"{limits.per_caller_hour} lookups from this number in the last hour"
            return self._limit(context, tool, key, why, messages.LOOKUPS_CALLER)
        self._records.add_caller_event(context.call_id, CallerEvent.LOOKUP, key, detail=tool)
        self._prune()
        return None

    def identity_locked(self, context: ToolContext, customer_id: str | None) -> str:
        """Why verification is refused for this caller (or this customer, when given) now; "" when it is not."""
        policy = self._policy
        window = policy.failure_window
        key = self.key(context)
        if self._records.count_caller_events(CallerEvent.IDENTITY_FAILURE, window, caller=key) >= policy.max_failures:
            return f"{policy.max_failures} failed identity checks from this number within {_shown(window)}"
        if customer_id and (
            self._records.count_caller_events(CallerEvent.IDENTITY_FAILURE, window, customer=customer_id)
            >= policy.max_failures
        ):
            return f"{policy.max_failures} failed identity checks for this customer within {_shown(window)}"
        return ""

    def identity_failed(self, context: ToolContext, customer_id: str | None, detail: str) -> None:
        """Count a failed identity check for the caller and (when known) the customer it was for."""
        self._records.add_caller_event(
            context.call_id, CallerEvent.IDENTITY_FAILURE, self.key(context), customer=customer_id, detail=detail
        )

    def refused_lock(self, context: ToolContext, tool: str, customer_id: str | None, why: str) -> None:
        """Count, log and audit a verification refused because of the failures above."""
        key = self.key(context)
        self._records.add_caller_event(context.call_id, CallerEvent.LIMIT, key, customer=customer_id, detail=why)
        call_logger(context.call_id, log).warning("%s: limit reached: %s; operator offered", tool, why)
        audit(self._records, context, tool, "verify identity", AuditResult.REFUSED, why, customer_id=customer_id)

    def _limit(self, context: ToolContext, tool: str, key: str, why: str, message: str) -> str:
        self._records.add_caller_event(context.call_id, CallerEvent.LIMIT, key, detail=f"{tool}: {why}")
        call_logger(context.call_id, log).warning("%s: limit reached: %s; operator offered", tool, why)
        audit(self._records, context, tool, "lookup", AuditResult.REFUSED, f"limit reached: {why}")
        return message

    def _prune(self) -> None:
        now = time.monotonic()
        with self._prune_lock:
            if now - self._last_prune < _PRUNE_EVERY:
                return
            self._last_prune = now
        oldest = max(self._policy.failure_window, _HOUR) + timedelta(days=1)
        removed = self._records.prune_caller_events(oldest)
        if removed:
            log.info("caller events: %d older than %s pruned", removed, _shown(oldest))


def audit(
    records: CallRecords,
    context: ToolContext,
    tool: str,
    action: str,
    result: AuditResult,
    reason: str,
    customer: Customer | None = None,
    *,
    customer_id: str | None = None,
) -> int:
    """One ``audit_log`` row for a tool's decision: who called, what was asked, for whom, and why."""
    return records.add_audit(
        context.call_id,
        tool,
        action,
        result,
        reason,
        caller=context.caller or None,
        router=customer.router if customer else None,
        customer=customer.service if customer else None,
        customer_id=customer_id or (customer.customer_id if customer else None),
    )


def _shown(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    if seconds % 86400 == 0 and seconds >= 2 * 86400:
        return f"{seconds // 86400}d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    return f"{seconds // 60}m"
