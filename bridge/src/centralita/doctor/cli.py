"""``centralita doctor``: the subcommand's options, and the run that prints the report."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TextIO

from centralita.doctor.context import (
    DEFAULT_APP_DIR,
    DEFAULT_ARI_SECRET_FILE,
    DEFAULT_ASTERISK_DIR,
    DEFAULT_ENV_FILE,
    Options,
)
from centralita.doctor.published import publish
from centralita.doctor.report import as_json as as_json_report
from centralita.doctor.report import render_json, render_text
from centralita.doctor.runner import diagnose

DESCRIPTION = """\
Check the box end to end: the bridge's .env, Asterisk (files, SIP driver, trunk registration, inbound
context, ARI), the services, the bridge's recent errors, the OpenAI key, the MikroTik routers, and the
routes to every remote host. One line per check: OK, WARN or FAIL, what was seen, and the fix.
Run it as root (sudo centralita doctor): it reads the secrets in the .env and Asterisk's private files, and asks
systemd and Asterisk (asterisk -rx). The exit code is 1 when any check FAILs, 2 when it could not run, 0
otherwise.
"""


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be greater than 0")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="diagnose the box and print the fix for each problem",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--output",
        type=Path,
        metavar="FILE",
        help="write the JSON report into FILE instead of printing it (for the web console's health page; FILE's "
        "directory must be root's and writable by root alone)",
    )
    parser.add_argument(
        "--fix",
        action="store_true",
        help="repair what is safe (owners and modes under the Asterisk and app directories, a stopped service), "
        "report the changes, then check again",
    )
    parser.add_argument(
        "--env-file", type=Path, default=DEFAULT_ENV_FILE, help="the bridge's settings (default: %(default)s)"
    )
    parser.add_argument(
        "--asterisk-dir", type=Path, default=DEFAULT_ASTERISK_DIR, help="Asterisk's files (default: %(default)s)"
    )
    parser.add_argument("--app-dir", type=Path, default=DEFAULT_APP_DIR, help="the app's home (default: %(default)s)")
    parser.add_argument("--log-file", type=Path, help="the bridge's log (default: LOG_FILE from the .env)")
    parser.add_argument(
        "--ari-secret-file",
        type=Path,
        default=DEFAULT_ARI_SECRET_FILE,
        help="where the role keeps the ARI secret, named in fixes (default: %(default)s)",
    )
    parser.add_argument(
        "--hours", type=_positive, default=24.0, help="count log errors this many hours back (default: 24)"
    )
    parser.add_argument(
        "--timeout", type=_positive, default=5.0, help="seconds per command, request or login (default: 5)"
    )
    parser.add_argument("--asterisk-user", default="asterisk", help="owner of Asterisk's files (default: asterisk)")
    parser.add_argument("--asterisk-group", default="asterisk", help="their group (default: asterisk)")
    parser.set_defaults(handler=run)


def options_from_args(args: argparse.Namespace) -> Options:
    return Options(
        env_file=args.env_file,
        asterisk_dir=args.asterisk_dir,
        app_dir=args.app_dir,
        log_file=args.log_file,
        log_hours=args.hours,
        timeout=args.timeout,
        asterisk_user=args.asterisk_user,
        asterisk_group=args.asterisk_group,
        ari_secret_file=args.ari_secret_file,
    )


def execute(options: Options, *, as_json: bool = False, fix: bool = False, out: TextIO | None = None) -> int:
    """Run the doctor with ``options`` and print the report; 1 when any check FAILs, else 0."""
    report = diagnose(options, fix=fix)
    stream = out if out is not None else sys.stdout
    stream.write(render_json(report, str(options.env_file)) if as_json else render_text(report))
    stream.flush()
    return 1 if report.failed else 0


def execute_into(options: Options, output: Path, *, fix: bool = False) -> int:
    """Run the doctor and publish its JSON report into ``output`` (``doctor.published``); 1 when any check
    FAILs, 2 when the report cannot be written, else 0."""
    report = diagnose(options, fix=fix)
    try:
        publish(as_json_report(report, str(options.env_file)), output)
    except OSError as error:
        print(f"centralita doctor: {error}", file=sys.stderr)
        return 2
    return 1 if report.failed else 0


def run(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print(
            "centralita doctor reads the secrets in the .env and Asterisk's private files and asks systemd and "
            "Asterisk: run it as root: sudo centralita doctor",
            file=sys.stderr,
        )
        return 2
    if args.output is not None:
        return execute_into(options_from_args(args), args.output, fix=args.fix)
    return execute(options_from_args(args), as_json=args.json, fix=args.fix)
