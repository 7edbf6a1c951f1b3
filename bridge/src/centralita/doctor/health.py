"""bridge.budget, bridge.records, bridge.admission: what the running service counts, from its health snapshot.

The service writes ``STATUS_FILE`` (``/run/centralita/openai-inbound-calls.json``) every few seconds
(``calls/status.py``): the spending budget, the records writer (written, waiting, lost, failing) and the calls
refused by reason since it started. The doctor cannot ask the service's memory, so it reads that file. Without
it (the service is stopped) the three lines say they could not be checked; ``bridge.inbound_service`` says why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from centralita.calls.status import read_status
from centralita.config.limits import DEFAULT_STATUS_FILE
from centralita.doctor.context import INBOUND_UNIT, Context
from centralita.doctor.model import Result

__all__ = ["check_health"]

_NAMES = ("bridge.budget", "bridge.records", "bridge.admission")

# What each refusal means to the operator, and what to do about it.
_REFUSALS = {
    "box_full": "the box carried MAX_CALLS calls already (raise bridge_max_calls and asterisk_max_calls only if "
    "docs/PERFORMANCE.md says this box takes more)",
    "caller_busy": "a number had MAX_CALLS_PER_CALLER calls up already",
    "caller_rate": "a number called more than MAX_CALLS_PER_CALLER_PER_MINUTE times in a minute",
    "budget_spent": "the spending budget was used up (see bridge.budget)",
    "service_stopping": "the service was stopping",
}


def check_health(ctx: Context) -> list[Result]:
    if ctx.env.check is None:
        return [Result.skipped(name, "the .env cannot be read", "env.settings") for name in _NAMES]
    path = Path(ctx.env.get("STATUS_FILE", DEFAULT_STATUS_FILE))
    status = read_status(path)
    if status is None:
        reason = f"{INBOUND_UNIT} writes no health snapshot at {path} (not running?)"
        return [Result.skipped(name, reason, "bridge.inbound_service") for name in _NAMES]
    return [_budget(status.get("budget") or {}), _records(status.get("records") or {}), _admission(status)]


def _budget(budget: dict[str, Any]) -> Result:
    name = "bridge.budget"
    if not budget.get("limited"):
        return Result.ok(name, "no spending limit (BUDGET_DAILY and BUDGET_MONTHLY are 0)")
    currency = budget.get("currency", "")
    if not budget.get("known"):
        return Result.warn(
            name,
            "the service could not read what was spent yet (the records database did not answer)",
            "see bridge.records; the budget is checked again every few seconds",
        )
    spent = (
        f"spent today {budget.get('day_spent')} of {budget.get('daily_limit')} {currency}, this month "
        f"{budget.get('month_spent')} of {budget.get('monthly_limit')} {currency} (prices as of "
        f"{budget.get('prices_as_of')})"
    )
    if budget.get("spent"):
        return Result.fail(
            name,
            f"the spending budget is used up: {spent}; new calls go to the operator, calls in progress finish",
            "raise bridge_budget_daily / bridge_budget_monthly (BUDGET_DAILY / BUDGET_MONTHLY) in the inventory "
            "and run the playbook again, or wait for the day or month to turn",
        )
    return Result.ok(name, spent)


def _records(records: dict[str, Any]) -> Result:
    name = "bridge.records"
    written, queued, lost = (int(records.get(key) or 0) for key in ("written", "queued", "lost"))
    if records.get("failing"):
        return Result.fail(
            name,
            f"the call records cannot be written: {records.get('last_error') or 'unknown error'}; {queued} "
            f"waiting, {lost} lost since the service started (calls go on)",
            "free space (df -h /var/lib/centralita) or give the database back to the service user "
            "(ls -l /var/lib/centralita); the waiting records are written once it is writable; "
            "grep -E 'records (failing|lost|resumed)' /var/log/asterisk/inbound_openai.log",
        )
    if lost:
        return Result.warn(
            name,
            f"{lost} record(s) could not be written since the service started ({written} written)",
            "grep -E 'records (failing|lost)' /var/log/asterisk/inbound_openai.log says which and why",
        )
    return Result.ok(name, f"{written} record(s) written since the service started, none lost")


def _admission(status: dict[str, Any]) -> Result:
    name = "bridge.admission"
    limits = status.get("limits") or {}
    refused = {str(reason): int(count) for reason, count in (status.get("refused") or {}).items() if count}
    active = int(status.get("active_calls") or 0)
    now = (
        f"{active} call(s) up; limits MAX_CALLS {limits.get('max_calls')}, MAX_CALLS_PER_CALLER "
        f"{limits.get('max_per_caller')}, MAX_CALLS_PER_CALLER_PER_MINUTE {limits.get('max_per_caller_per_minute')}"
    )
    if not refused:
        return Result.ok(name, f"no call refused since the service started; {now}")
    counts = ", ".join(f"{reason} {count}" for reason, count in sorted(refused.items()))
    why = "; ".join(f"{reason}: {_REFUSALS.get(reason, reason)}" for reason in sorted(refused))
    return Result.warn(
        name,
        f"calls refused since the service started: {counts}; {now}",
        f"{why}; grep 'call refused' /var/log/asterisk/inbound_openai.log",
    )
