"""``centralita calls``: what the calls were and what they cost.

    centralita calls report [--since DATE] [--until DATE] [--csv] [--timezone ZONE] [--db PATH]

``report`` prints, per day of the period (the last 30 days by default), the calls by direction, how many were
answered, the minutes the assistant talked, how they ended, the tokens the Realtime sessions used and what they
cost, with the date of the price table every cost was reckoned with (``centralita.storage.report``); ``--csv``
prints the same, every token kind and outcome in its own column, for a spreadsheet. It needs no secret: run by
root, it becomes the owner of the database's directory (the service user) before opening the database
(``centralita.privileges``). Exit codes: 0 printed, 2 nothing printed (the message says why).
"""

from __future__ import annotations

import argparse
import csv
import sys
from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from centralita.privileges import become_owner_of
from centralita.storage.records import CallRecords, CallRecordsError
from centralita.storage.report import Day, Report, build_report, outcome_names

__all__ = ["DEFAULT_DB", "register"]

DEFAULT_DB: Final = Path("/var/lib/centralita/centralita.db")
DEFAULT_DAYS: Final = 30
OK: Final = 0
FAILED: Final = 2
_TOKEN_KINDS: Final = ("input_text", "input_audio", "cached_text", "cached_audio", "output_text", "output_audio")


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: write it as YYYY-MM-DD, e.g. 2026-11-01") from None


def _zone(text: str) -> tzinfo:
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time zone: use an IANA name, e.g. America/Mexico_City"
        ) from None


def register(subparsers: Any) -> None:
    """Add ``calls`` and its subcommands to the ``centralita`` parser."""
    parser = subparsers.add_parser(
        "calls",
        help="what the calls were and what they cost",
        description="The call records, summed up. Needs no secret; run as root, it works as the owner of the "
        "database's directory (the service user).",
    )
    commands = parser.add_subparsers(dest="calls_command", metavar="SUBCOMMAND", required=True)
    report = commands.add_parser(
        "report",
        help="calls per day: directions, outcomes, minutes, tokens and cost",
        description="Per day of the period: the calls by direction, how many were answered, the minutes the "
        "assistant talked, how they ended, the tokens used and what they cost, with the date of the price table "
        "each cost was reckoned with (PRICE_AS_OF when it was recorded). A call counts on the day it started.",
    )
    report.add_argument("--since", type=_date, metavar="DATE", help="first day, YYYY-MM-DD (default: 29 days ago)")
    report.add_argument("--until", type=_date, metavar="DATE", help="last day, YYYY-MM-DD (default: today)")
    report.add_argument("--csv", action="store_true", help="CSV for a spreadsheet instead of a table")
    report.add_argument(
        "--timezone", type=_zone, metavar="ZONE", help="where days start, an IANA name (default: the box's own zone)"
    )
    report.add_argument("--db", type=Path, default=DEFAULT_DB, help="the call records database (default: %(default)s)")
    report.set_defaults(handler=_report)


def _local_zone() -> tzinfo:
    zone = datetime.now().astimezone().tzinfo
    assert zone is not None
    return zone


def _today(zone: tzinfo) -> date:
    return datetime.now(zone).date()


def _report(args: argparse.Namespace) -> int:
    db: Path = args.db
    zone: tzinfo = args.timezone or _local_zone()
    last: date = args.until or _today(zone)
    first: date = args.since or last - timedelta(days=DEFAULT_DAYS - 1)
    if last < first:
        print(f"centralita calls: --until {last} is before --since {first}: swap them.", file=sys.stderr)
        return FAILED
    try:
        db.stat()
    except FileNotFoundError:
        print(f"centralita calls: {db} does not exist (is --db the call records database?)", file=sys.stderr)
        return FAILED
    except PermissionError:
        print(
            f"centralita calls: {db} is the service user's: run the command with sudo, or as that user.",
            file=sys.stderr,
        )
        return FAILED
    become_owner_of(db.parent)
    try:
        with CallRecords(db) as records:
            report = build_report(records, first, last, zone)
    except CallRecordsError as error:
        print(f"centralita calls: {error}", file=sys.stderr)
        return FAILED
    if args.csv:
        write_csv(report, sys.stdout)
    else:
        write_table(report, sys.stdout)
    return OK


# -- output -----------------------------------------------------------------------------------------------


def _prices(day: Day) -> str:
    return ", ".join(sorted(day.prices_as_of)) or "-"


def _money(value: Decimal, places: int) -> str:
    return f"{value:.{places}f}"


def write_table(report: Report, out: TextIO) -> None:
    """The report as a table for a terminal."""
    period = f"{report.first} to {report.last} ({report.zone})"
    if not report.days:
        out.write(f"No calls and no usage recorded from {period}.\n")
        return
    currencies = report.currencies
    header = ["date", "calls", "in", "out", "answered", "minutes", "tokens", *(f"cost {c}" for c in currencies)]
    header.append("prices as of")
    rows = [_table_row(day, currencies) for day in report.days]
    rows.append(_table_row(report.total, currencies))
    widths = [max(len(str(row[index])) for row in [header, *rows]) for index in range(len(header))]

    def line(cells: list[str]) -> str:
        texts = [
            cell.ljust(width) if index in (0, len(cells) - 1) else cell.rjust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(texts).rstrip() + "\n"

    out.write(f"Calls from {period}\n\n")
    out.write(line(header))
    for row in rows[:-1]:
        out.write(line(row))
    out.write(line(["-" * width for width in widths]))
    out.write(line(rows[-1]))
    outcomes = ", ".join(
        f"{name} {report.total.outcomes[name]}" for name in outcome_names([report.total]) if report.total.outcomes[name]
    )
    out.write(f"\nOutcomes: {outcomes}\n")
    out.write(
        "Costs are what the Realtime sessions' tokens cost at the price table of the date shown beside them "
        "(PRICE_AS_OF when they were recorded; 'unknown': recorded before the date was kept). Minutes: from answer "
        "to end. --csv gives every token kind and outcome per day.\n"
    )


def _table_row(day: Day, currencies: tuple[str, ...]) -> list[str]:
    return [
        str(day.day) if day.day is not None else "total",
        str(day.calls),
        str(day.inbound),
        str(day.outbound),
        str(day.answered),
        str(day.minutes),
        str(day.usage.total),
        *(_money(day.cost(currency), 4) for currency in currencies),
        _prices(day),
    ]


def write_csv(report: Report, out: TextIO) -> None:
    """The report as CSV: one row per day, then a ``total`` row; costs exact to the millionth."""
    currencies = report.currencies
    outcomes = outcome_names([report.total])
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "date",
            "calls",
            "inbound",
            "outbound",
            "answered",
            "minutes",
            *_TOKEN_KINDS,
            "tokens",
            *(f"cost_{currency}" for currency in currencies),
            "prices_as_of",
            *(f"outcome_{name}" for name in outcomes),
        ]
    )
    for day in [*report.days, report.total]:
        writer.writerow(
            [
                str(day.day) if day.day is not None else "total",
                day.calls,
                day.inbound,
                day.outbound,
                day.answered,
                day.minutes,
                *(getattr(day.usage, kind) for kind in _TOKEN_KINDS),
                day.usage.total,
                *(_money(day.cost(currency), 6) for currency in currencies),
                " ".join(sorted(day.prices_as_of)),
                *(day.outcomes[name] for name in outcomes),
            ]
        )
