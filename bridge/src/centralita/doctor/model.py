"""What a check reports: its status, what it saw, the fix, and the repair ``--fix`` may run for it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# A repair changes the box and returns one line per change it made ("chown asterisk:asterisk /etc/...").
# It raises OSError (or RepairError) when it cannot do its job.
Repair = Callable[[], list[str]]


class RepairError(Exception):
    """A repair could not finish; the message says what is left to do by hand."""


class Status(StrEnum):
    """How bad it is: OK, WARN (works, but look at it) or FAIL (calls are or will be affected)."""

    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class Result:
    """One line of the report.

    ``seen`` is what the check found; ``fix`` the exact commands or edits that repair it (empty when OK);
    ``repair`` what ``--fix`` runs for it, when that is safe to do unattended.
    """

    name: str
    status: Status
    seen: str
    fix: str = ""
    repair: Repair | None = field(default=None, compare=False, repr=False)

    @classmethod
    def ok(cls, name: str, seen: str) -> Result:
        return cls(name, Status.OK, seen)

    @classmethod
    def warn(cls, name: str, seen: str, fix: str = "", repair: Repair | None = None) -> Result:
        return cls(name, Status.WARN, seen, fix, repair)

    @classmethod
    def fail(cls, name: str, seen: str, fix: str, repair: Repair | None = None) -> Result:
        return cls(name, Status.FAIL, seen, fix, repair)

    @classmethod
    def skipped(cls, name: str, reason: str, see: str) -> Result:
        """A check that could not run because something it needs is broken (reported by check ``see``)."""
        return cls(name, Status.WARN, f"not checked: {reason}", f"fix {see} first, then run centralita doctor again")

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.value,
            "seen": self.seen,
            "fix": self.fix,
            "fixable": self.repair is not None and self.status is not Status.OK,
        }


@dataclass(frozen=True, slots=True)
class Change:
    """What ``--fix`` did for one check: the changes made, or the error that stopped the repair."""

    check: str
    changes: tuple[str, ...] = ()
    error: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"check": self.check, "changes": list(self.changes), "error": self.error}


@dataclass(frozen=True, slots=True)
class Report:
    """Every result of one run, in order, and what ``--fix`` changed before it."""

    results: tuple[Result, ...]
    changes: tuple[Change, ...] = ()

    @property
    def failed(self) -> bool:
        return any(result.status is Status.FAIL for result in self.results)

    def count(self, status: Status) -> int:
        return sum(1 for result in self.results if result.status is status)

    def by_name(self) -> dict[str, Result]:
        return {result.name: result for result in self.results}


def join(parts: Sequence[str], limit: int = 5) -> str:
    """``a, b, c`` with at most ``limit`` items, then ``and N more``."""
    shown = list(parts[:limit])
    if len(parts) > limit:
        shown.append(f"and {len(parts) - limit} more")
    return ", ".join(shown)
