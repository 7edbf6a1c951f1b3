"""``centralita``: the operator's command on the box. Each subcommand lives in its own module.

A subcommand module exposes ``register(subparsers)``, which adds its parser and sets ``handler`` (a
function taking the parsed arguments and returning the exit code) as the parser's default.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

# Modules that register subcommands, in the order ``centralita --help`` lists them.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "centralita.doctor.cli",
    "centralita.config.cli",
    "centralita.dialer.cli",
    "centralita.storage.cli",
    "centralita.storage.report_cli",
    "centralita.web.cli",
)

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="centralita",
        description="Operate the Centralita phone assistant: diagnose the box, check its settings, run dialer "
        "campaigns, keep the call records and report on them.",
        epilog="Who runs what: doctor needs root (sudo centralita doctor): it reads the secrets and Asterisk's "
        "files and asks systemd and Asterisk. config check and campaign read the settings file, which only root "
        "and the service user may read (sudo centralita campaign ...). records and calls need no secret, only the "
        "service user's database. Run as root, campaign, records and calls give root up for the service user "
        "before they touch its files.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
