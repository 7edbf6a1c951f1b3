"""``centralita config check [--dialer] [FILE]``: whether a .env is one the services will start with.

The playbook runs it on the rendered file before installing it (the template task's ``validate:``), so a bad
setting stops the play with the product's own message and the box keeps its working .env. It reads the file
as the services do (``config.box.load_all``) and prints either one OK line or every problem, each naming its
variable and the fix; never the value of a secret. Exit codes: 0 valid, 1 not (or unreadable).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from centralita.config.box import load_all
from centralita.config.env import DEFAULT_ENV_FILE, ConfigError

__all__ = ["register"]

VALID = 0
INVALID = 1
# The playbook renders each variable from the role variable of the same name in lower case.
_INVENTORY_HINT = (
    "The playbook renders each VARIABLE from the bridge role's bridge_<variable in lower case> "
    "(e.g. DIALER_WINDOWS from bridge_dialer_windows; ROUTEROS_<NAME>_* from the entry of bridge_routers)."
)


def register(subparsers: Any) -> None:
    """Add ``config`` and its ``check`` subcommand to the ``centralita`` parser."""
    parser = subparsers.add_parser(
        "config",
        help="check a .env file before the services use it",
        description="The box's settings file (.env).",
    )
    commands = parser.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    check = commands.add_parser(
        "check",
        help="validate every setting of a .env file (bridge, routers, dialer) as the services would",
        description="Validate every setting of a .env file as openai-inbound-calls and openai-outbound-calls "
        "would at start. Prints one OK line, or every problem with its fix (exit code 1).",
    )
    check.add_argument(
        "file", nargs="?", type=Path, default=Path(DEFAULT_ENV_FILE), help=f"the .env file (default {DEFAULT_ENV_FILE})"
    )
    check.add_argument(
        "--dialer",
        action="store_true",
        help="the dialer runs on this box: DIALER_TIMEZONE must be set (without it, no dialer is configured)",
    )
    check.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    try:
        box = load_all(args.file, dialer_required=args.dialer)
    except ConfigError as error:
        print(f"centralita config check: {error}", file=sys.stderr)
        if error.variables and any(error.variables):
            print(_INVENTORY_HINT, file=sys.stderr)
        return INVALID
    routers = len(box.network.routers)
    dialer = "dialer" if box.dialer is not None else "no dialer (DIALER_TIMEZONE unset)"
    print(f"OK {args.file}: bridge, {routers} router{'' if routers == 1 else 's'}, {dialer}")
    return VALID
