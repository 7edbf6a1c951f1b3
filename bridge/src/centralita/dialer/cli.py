"""``centralita campaign``: the operator's side of the dialer.

    centralita campaign import FILE --campaign NAME [--encoding latin-1] [--remove-missing]
    centralita campaign import-routers --campaign NAME [--router NAME] [--remove-missing]
    centralita campaign start NAME
    centralita campaign pause NAME
    centralita campaign status [NAME]
    centralita campaign report NAME --output FILE.csv
    centralita campaign optout PHONE [--note TEXT]

Every subcommand takes ``--env-file`` (default /usr/local/asterisk/.env) for DIALER_* settings, read once per
command; only the dialer's settings (and, for import-routers, the routers') must be valid, so a campaign can
be paused whatever else is wrong in the file. Exit codes: 0 done (warnings, such as a phone number merged into
another customer's, are listed on stderr); 1 done, but some rows were skipped (listed on stderr); 2 nothing
done (the message says why). Phone numbers, in files and on the command line, are read in the region of
DIALER_COUNTRY_CODE (``centralita.isp.phones``).

Who may run them: whoever can read the settings file, that is root (``sudo centralita campaign ...``) or the
service user. Run as root, a subcommand reads the settings, the file to import and the routers as root, opens
the report file it was asked to write, and then becomes the owner of the campaign database's directory before
opening the database (``centralita.privileges``): the service user owns that directory, and root must not follow
what it may have put there.
"""

from __future__ import annotations

import argparse
import csv
import errno
import getpass
import os
import ssl
import stat
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO

from centralita.config.dialer import DialerSettings
from centralita.config.env import DEFAULT_ENV_FILE, ConfigError, EnvFile, read_env_file
from centralita.config.network import NetworkSettings, RouterConfig
from centralita.dialer.importer import ImportFileError, ImportResult, from_router, merge, read_csv
from centralita.dialer.store import CampaignError, CampaignStore, DialerStoreError, UpsertSummary
from centralita.isp.phones import PhoneError, region_for_country_code, to_e164
from centralita.isp.routeros.client import RouterClient, RouterError, tls_wrapper
from centralita.privileges import become_owner_of, running_as_root

__all__ = ["REPORT_COLUMNS", "register"]

OK: Final = 0
PARTIAL: Final = 1
FAILED: Final = 2
REPORT_COLUMNS: Final = (
    "campaign",
    "customer_id",
    "name",
    "phone",
    "amount_due",
    "due_date",
    "attempt_id",
    "channel_id",
    "state",
    "started_at",
    "answered_at",
    "ended_at",
    "outcome",
    "promise_date",
    "hangup_cause",
    "amd_status",
    "counted",
    "detail",
    "customer_status",
)
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


class _Fail(Exception):
    """Stops a subcommand with a message and exit code 2."""


def register(subparsers: Any) -> None:
    """Add ``campaign`` and its subcommands to the ``centralita`` parser."""
    parser = subparsers.add_parser(
        "campaign",
        help="outbound dialer campaigns: import customers, start, pause, status, report, opt-out",
        description="Outbound dialer campaigns for customers with overdue bills (see docs/DIALER.md). The "
        "settings file is readable by root and the service user only: run these with sudo. As root they read "
        "their inputs, then work on the campaign database as its directory's owner (the service user).",
    )
    commands = parser.add_subparsers(dest="campaign_command", metavar="SUBCOMMAND", required=True)

    def add(name: str, help_text: str, handler: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--env-file", default=DEFAULT_ENV_FILE, help=f"settings file (default {DEFAULT_ENV_FILE})")
        sub.set_defaults(handler=_guarded(handler))
        return sub

    sub = add("import", "import customers from a CSV file into a campaign (created as a draft)", _import_csv)
    sub.add_argument("file", type=Path, help="CSV file: customer_id, name, phone, amount_due, due_date, ...")
    sub.add_argument("--campaign", required=True, help="campaign name, e.g. morosos-2026-03")
    sub.add_argument("--encoding", help="the file's encoding when it is not UTF-8, e.g. latin-1 or cp1252")
    sub.add_argument("--remove-missing", action="store_true", help="stop calling pending customers not in the file")

    sub = add("import-routers", "import the customers on the routers' debtors address-list", _import_routers)
    sub.add_argument("--campaign", required=True, help="campaign name")
    sub.add_argument("--router", action="append", help="only this router (repeatable; default: every router)")
    sub.add_argument("--remove-missing", action="store_true", help="stop calling pending customers no longer listed")

    sub = add("start", "start (or resume) a campaign", _start)
    sub.add_argument("name")
    sub = add("pause", "pause a campaign: calls in progress finish, no new ones start", _pause)
    sub.add_argument("name")
    sub = add("status", "show one campaign, or list them all", _status)
    sub.add_argument("name", nargs="?")
    sub = add("report", "write a CSV with every attempt of a campaign and its outcome", _report)
    sub.add_argument("name")
    sub.add_argument("--output", "-o", required=True, type=Path, help="CSV file to write ('-': standard output)")
    sub = add("optout", "never call a phone number again, in any campaign", _optout)
    sub.add_argument("phone")
    sub.add_argument("--note", default="", help="why (e.g. 'asked by e-mail')")


def _guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            _check_readable(args.env_file)
            return handler(args)
        except (ConfigError, ImportFileError, CampaignError, DialerStoreError, RouterError, _Fail) as error:
            print(f"centralita campaign: {error}", file=sys.stderr)
            return FAILED

    return run


def _check_readable(env_file: str) -> None:
    """The settings hold secrets (mode 0600): someone who cannot read them is told to use sudo."""
    if not running_as_root() and os.path.isfile(env_file) and not os.access(env_file, os.R_OK):
        raise _Fail(
            f"{env_file} holds the dialer's settings and secrets, readable only by root and the service user: "
            f"run the command with sudo (sudo centralita campaign ...)."
        )


def _open_store(settings: DialerSettings) -> CampaignStore:
    """The campaign database, opened as the owner of its directory (see the module's docstring)."""
    become_owner_of(settings.db_path.parent)
    return CampaignStore(settings.db_path)


def _env(args: argparse.Namespace) -> EnvFile:
    """The .env, read once for the whole command; a line that does not parse stops it (its setting is lost)."""
    env: EnvFile | None = getattr(args, "loaded_env", None)
    if env is None:
        env = read_env_file(args.env_file)
        if env.unparsed_lines:
            raise ConfigError(env.problems(), env.source)
        args.loaded_env = env
    return env


def _settings(args: argparse.Namespace) -> DialerSettings:
    """The dialer's settings (DIALER_TIMEZONE required), read once per command and kept on ``args``."""
    settings: DialerSettings | None = getattr(args, "dialer_settings", None)
    if settings is None:
        env = _env(args)
        settings = DialerSettings.from_values(env.values, source=env.source)
        args.dialer_settings = settings
    return settings


def _region(settings: DialerSettings) -> str | None:
    """The region national numbers are read in (DIALER_COUNTRY_CODE; the settings checked it)."""
    return region_for_country_code(settings.country_code)


def _now() -> datetime:
    return datetime.now(UTC)


def _print_problems(result: ImportResult, summary: UpsertSummary) -> None:
    for problem in result.problems:
        print(f"  skipped {problem}", file=sys.stderr)
    for warning in result.warnings:
        print(f"  warning {warning}", file=sys.stderr)
    for duplicate in summary.duplicates:
        print(f"  warning {duplicate}", file=sys.stderr)


def _summary(campaign: str, source: str, summary: UpsertSummary, skipped: int) -> str:
    parts = [f"{summary.added} new", f"{summary.updated} updated", f"{summary.unchanged} unchanged"]
    if summary.reopened:
        parts.append(f"{summary.reopened} back to pending")
    if summary.removed:
        parts.append(f"{summary.removed} removed")
    if summary.opted_out:
        parts.append(f"{summary.opted_out} on the opt-out list (not called)")
    if summary.duplicates:
        parts.append(f"{len(summary.duplicates)} with the number of a customer already in the campaign (not added)")
    text = f"Imported {source} into campaign {campaign!r}: {', '.join(parts)}"
    return text + (f"; {skipped} skipped (below)." if skipped else ".")


def _check_owned(settings: DialerSettings, campaign: str) -> None:
    """Refuse a campaign this box was not given (DIALER_CAMPAIGNS): another box of the cluster dials it."""
    if not settings.owns(campaign):
        raise _Fail(
            f"campaign {campaign!r} is not one of this box's: it dials only campaigns whose name starts with "
            f"{', '.join(repr(p) for p in settings.campaigns)} (DIALER_CAMPAIGNS, from bridge_dialer_campaigns), so "
            "two boxes never call the same customers. Import it on the box that owns it, or rename it, or give "
            "this box the prefix in the inventory (bridge_dialer_campaigns) and run site.yml. Nothing was changed."
        )


def _store_rows(
    settings: DialerSettings, campaign: str, result: ImportResult, source: str, remove_missing: bool
) -> int:
    if remove_missing and result.problems:
        raise _Fail(
            f"{len(result.problems)} row(s) of {source} were skipped, so --remove-missing could stop calling "
            "customers only because their row is wrong: fix the rows (listed below) or import without "
            "--remove-missing.\n" + "\n".join(f"  {problem}" for problem in result.problems)
        )
    with _open_store(settings) as store:
        store.ensure_campaign(campaign)
        summary = store.upsert_targets(campaign, result.rows, remove_missing=remove_missing)
    print(_summary(campaign, source, summary, len(result.problems)))
    _print_problems(result, summary)
    return PARTIAL if result.problems else OK


def _import_csv(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _check_owned(settings, args.campaign)
    today = _now().astimezone(settings.timezone).date()
    result = read_csv(args.file, region=_region(settings), today=today, encoding=args.encoding)
    return _store_rows(settings, args.campaign, result, str(args.file), args.remove_missing)


def _router_client(config: RouterConfig, timeout: float) -> RouterClient:
    wrapper = None
    if config.tls:
        try:
            context = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
        except (OSError, ssl.SSLError) as error:
            raise _Fail(f"ROUTEROS_{config.name.upper()}_CA_FILE {config.ca_file} cannot be used: {error}") from None
        wrapper = tls_wrapper(context, server_hostname=config.host)
    return RouterClient(
        config.host, config.user, config.password.reveal(), port=config.port, timeout=timeout, ssl_wrapper=wrapper
    )


def _import_routers(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _check_owned(settings, args.campaign)
    env = _env(args)
    network = NetworkSettings.from_values(env.values, source=env.source)
    routers = list(network.routers)
    if args.router:
        unknown = sorted(set(args.router) - {router.name for router in routers})
        if unknown:
            names = ", ".join(router.name for router in routers) or "none"
            raise _Fail(f"no router named {', '.join(unknown)} in ROUTEROS_ROUTERS (configured: {names}).")
        routers = [router for router in routers if router.name in args.router]
    if not routers:
        raise _Fail("no routers are configured: set ROUTEROS_ROUTERS and the ROUTEROS_<NAME>_* variables.")
    results: list[ImportResult] = []
    for router in routers:
        with _router_client(router, network.timeout) as client:
            try:
                results.append(
                    from_router(
                        client,
                        router.name,
                        debtors_list=network.debtors_list,
                        exception_list=network.exception_list,
                        region=_region(settings),
                    )
                )
            except RouterError as error:
                raise _Fail(f"router {router.name} could not be read, nothing was imported: {error}") from None
    names = ", ".join(router.name for router in routers)
    return _store_rows(settings, args.campaign, merge(results), f"router(s) {names}", args.remove_missing)


def _operator() -> str:
    """Who runs the command, for the audit of campaign actions: the sudo user when there is one."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


def _start(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _check_owned(settings, args.name)
    operator = _operator()
    with _open_store(settings) as store:
        campaign, changed = store.start_campaign(args.name)
        store.record_action(
            campaign=campaign.name,
            action="resume",
            user=operator,
            source="cli",
            result="applied" if changed else "unchanged",
        )
        pending = store.status(args.name).targets.get("pending", 0)
    if not changed:
        print(f"Campaign {campaign.name!r} is already running ({pending} customers pending).")
    else:
        print(
            f"Campaign {campaign.name!r} is running: {pending} customers pending; "
            "openai-outbound-calls places the calls."
        )
    return OK


def _pause(args: argparse.Namespace) -> int:
    settings = _settings(args)
    operator = _operator()
    with _open_store(settings) as store:
        campaign, changed = store.pause_campaign(args.name)
        store.record_action(
            campaign=campaign.name,
            action="pause",
            user=operator,
            source="cli",
            result="applied" if changed else "unchanged",
        )
    print(f"Campaign {campaign.name!r} {'is paused' if changed else 'was already paused'}: no new calls start.")
    return OK


def _local(moment: datetime | None, settings: DialerSettings) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(settings.timezone).strftime("%Y-%m-%d %H:%M %Z")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(counts.items())) or "none"


def _status(args: argparse.Namespace) -> int:
    settings = _settings(args)
    with _open_store(settings) as store:
        if args.name is None:
            campaigns = store.campaigns()
            if not campaigns:
                print("No campaigns yet: centralita campaign import FILE --campaign NAME creates one.")
                return OK
            print(f"{'CAMPAIGN':30} {'STATE':9} {'CUSTOMERS':>9} {'PENDING':>7} {'ATTEMPTS':>8} {'OPEN':>4}")
            for campaign in campaigns:
                status = store.status(campaign.name)
                print(
                    f"{campaign.name:30} {campaign.state:9} {sum(status.targets.values()):9d} "
                    f"{status.targets.get('pending', 0):7d} {status.attempts:8d} {status.open_attempts:4d}"
                )
            return OK
        status = store.status(args.name)
    campaign = status.campaign
    print(f"Campaign {campaign.name!r}: {campaign.state} (created {_local(campaign.created_at, settings)})")
    print(f"  customers: {_counts(status.targets)}")
    print(f"  results:   {_counts(status.results)}")
    print(f"  attempts:  {status.attempts} ({status.open_attempts} in progress)")
    if status.targets.get("pending"):
        print(f"  waiting:   {_counts(status.waiting)}")
        print(
            f"  next call: not before {_local(status.next_at, settings)}" if status.next_at else "  next call: due now"
        )
    return OK


def _cell(value: object) -> str:
    """A report cell that a spreadsheet will not run as a formula (phone numbers and amounts stay as they are)."""
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_START) and not text.lstrip("+-").replace(".", "", 1).isdigit():
        return "'" + text
    return text


def _write_report(rows: Iterable[dict[str, Any]], campaign: str, output: TextIO) -> int:
    writer = csv.writer(output)
    writer.writerow(REPORT_COLUMNS)
    count = 0
    for row in rows:
        row = {**row, "campaign": campaign, "started_at": row.get("created_at")}
        writer.writerow([_cell(row.get(column)) for column in REPORT_COLUMNS])
        count += 1
    return count


def _open_report(path: Path) -> TextIO:
    """The report file, opened for writing before the database (so before root is given up).

    Never through a symbolic link, and never a file with another name elsewhere (a hard link), which root would
    overwrite. A report written through sudo is given to the user who ran sudo; it holds names and phone
    numbers, so only its owner may read it.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as error:
        reason = "it is a symbolic link" if error.errno == errno.ELOOP else error.strerror
        raise _Fail(f"cannot write {path}: {reason}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
            raise _Fail(f"cannot write {path}: it is not a plain file (a device, a pipe or a file with hard links)")
        os.ftruncate(fd, 0)
        sudo_uid, sudo_gid = os.environ.get("SUDO_UID", ""), os.environ.get("SUDO_GID", "")
        if running_as_root() and sudo_uid.isdigit() and sudo_gid.isdigit():
            os.fchown(fd, int(sudo_uid), int(sudo_gid))
        # UTF-8 with a BOM, so spreadsheets in Spanish locales show the accents right.
        return open(fd, "w", encoding="utf-8-sig", newline="", closefd=True)
    except BaseException:
        os.close(fd)
        raise


def _report(args: argparse.Namespace) -> int:
    settings = _settings(args)
    output = None if str(args.output) == "-" else _open_report(args.output)
    try:
        with _open_store(settings) as store:
            rows = store.report(args.name)
        if output is None:
            _write_report(rows, args.name, sys.stdout)
            return OK
        try:
            count = _write_report(rows, args.name, output)
        except OSError as error:
            raise _Fail(f"cannot write {args.output}: {error.strerror}") from None
    finally:
        if output is not None:
            output.close()
    print(f"Wrote {count} attempt(s) of campaign {args.name!r} to {args.output}.")
    return OK


def _optout(args: argparse.Namespace) -> int:
    settings = _settings(args)
    try:
        phone = to_e164(args.phone, _region(settings))
    except PhoneError as error:
        raise _Fail(f"{error}; nothing was added to the opt-out list") from None
    with _open_store(settings) as store:
        already = store.is_opted_out(phone)
        stopped = store.add_optout(phone, source="operator", note=args.note)
    state = "was already" if already else "is now"
    print(f"{phone} {state} on the opt-out list: never called again ({stopped} pending customer(s) stopped).")
    return OK
