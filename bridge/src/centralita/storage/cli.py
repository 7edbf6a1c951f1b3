"""``centralita records``: the call records' upkeep.

    centralita records purge --older-than-days N [--db PATH]

``purge`` deletes the transcripts and the tools' arguments and results of calls older than N days and masks
those calls' numbers (``centralita.storage.retention``). The role runs it every day as the service user from
``centralita-records-purge.timer``. It needs no secret: run by root, it becomes the owner of the database's
directory (the service user) before opening the database (``centralita.privileges``). Exit codes: 0 done, 2
nothing done (the message says why).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from centralita.privileges import become_owner_of
from centralita.storage.records import CallRecords, CallRecordsError

__all__ = ["DEFAULT_DB", "register"]

DEFAULT_DB: Final = Path("/var/lib/centralita/centralita.db")
OK: Final = 0
FAILED: Final = 2


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be 1 or more: records younger than a day are never purged")
    return value


def register(subparsers: Any) -> None:
    """Add ``records`` and its subcommands to the ``centralita`` parser."""
    parser = subparsers.add_parser(
        "records",
        help="call records upkeep: purge old personal data",
        description="The call records (transcripts, tool calls). Needs no secret; run as root, it works as the "
        "owner of the database's directory (the service user).",
    )
    commands = parser.add_subparsers(dest="records_command", metavar="SUBCOMMAND", required=True)
    purge = commands.add_parser(
        "purge",
        help="delete transcripts and tool data of calls older than N days, and mask those calls' numbers",
        description="Delete the transcripts and the tools' arguments and results of the calls that started more "
        "than N days ago, and mask their phone numbers but for the last digits. The calls themselves (when, how "
        "long, how they ended), the audit log of router changes and the tickets stay.",
    )
    purge.add_argument("--older-than-days", type=_days, required=True, metavar="N", help="keep the last N days")
    purge.add_argument("--db", type=Path, default=DEFAULT_DB, help="the call records database (default: %(default)s)")
    purge.set_defaults(handler=_purge)


def _now() -> datetime:
    return datetime.now(UTC)


def _purge(args: argparse.Namespace) -> int:
    db: Path = args.db
    try:
        db.stat()
    except FileNotFoundError:
        print(f"centralita records: {db} does not exist: nothing to purge (is --db the records database?)")
        return OK
    except PermissionError:
        print(
            f"centralita records: {db} is the service user's: run the command with sudo, or as that user.",
            file=sys.stderr,
        )
        return FAILED
    become_owner_of(db.parent)
    before = _now() - timedelta(days=args.older_than_days)
    try:
        with CallRecords(db) as records:
            counts = records.purge(before)
    except CallRecordsError as error:
        print(f"centralita records: {error}", file=sys.stderr)
        return FAILED
    print(
        f"Purged the calls that started before {before.isoformat(timespec='seconds')} "
        f"({args.older_than_days} days): {counts.transcript_lines} transcript line(s) and {counts.tool_calls} "
        f"tool call(s) deleted, {counts.calls} call(s) affected, their numbers masked."
    )
    return OK
