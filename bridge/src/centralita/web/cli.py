"""``centralita web``: the console's users, from the operator's shell or from the role.

    centralita web adduser NAME --role ROLE [--db PATH]
    centralita web disable NAME [--db PATH]
    centralita web users [--db PATH]
    centralita web sync-users [--db PATH] < users.json
    centralita web check-tls CERT KEY

``adduser`` asks the password twice on the terminal and never takes it from the command line (it would show in
``ps`` and the shell's history); a user that exists gets the new role and password. ``sync-users`` is what the
role runs: a JSON list of ``{"name", "role", "password"}`` on standard input, applied only where the role
differs or the password does not match, so a second run changes nothing (it prints ``changed: N``). Run as root,
these commands become the owner of the database's directory (the console's user) before opening it.
``check-tls`` loads a certificate and key as the console would to serve HTTPS (what the role runs on the files it
writes from bridge_web_tls_certificate and bridge_web_tls_key): exit 0 when they serve, 2 with the reason.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Final

from centralita.privileges import become_owner_of
from centralita.web.passwords_rules import PasswordError, check_password_rules
from centralita.web.store import DEFAULT_WEB_DB, Role, UserError, WebStore, WebStoreError, check_role, check_user_name

__all__ = ["register"]

OK: Final = 0
FAILED: Final = 2
MAX_SYNC_BYTES: Final = 1024 * 1024


def register(subparsers: Any) -> None:
    """Add ``web`` and its subcommands to the ``centralita`` parser."""
    parser = subparsers.add_parser(
        "web",
        help="the web console's users",
        description="The users of the web console (centralita-web). Run as root, the commands work as the owner of "
        "the console's database directory.",
    )
    commands = parser.add_subparsers(dest="web_command", metavar="SUBCOMMAND", required=True)
    roles = ", ".join(Role)

    def with_db(command: argparse.ArgumentParser) -> argparse.ArgumentParser:
        command.add_argument(
            "--db", type=Path, default=DEFAULT_WEB_DB, help="the console's database (default: %(default)s)"
        )
        return command

    add = with_db(
        commands.add_parser(
            "adduser",
            help="add a user, or change a user's role and password (asked on the terminal)",
            description=f"Add a console user, or give an existing one a new role and password. Roles: {roles} "
            "(viewer sees DNI and phone numbers masked; supervisor sees them and acts on campaigns; admin also "
            "reads the console's audit log). The password is asked twice on the terminal.",
        )
    )
    add.add_argument("name", help="the user name (lower case letters, digits, '.', '_', '-')")
    add.add_argument("--role", required=True, choices=list(Role), help="what the user may do")
    add.set_defaults(handler=_adduser)

    check_tls = commands.add_parser(
        "check-tls",
        help="check that a certificate and its key can serve the console over HTTPS (what the role runs)",
    )
    check_tls.add_argument("cert", type=Path, help="the PEM certificate, its chain after it")
    check_tls.add_argument("key", type=Path, help="the PEM private key (not encrypted)")
    check_tls.set_defaults(handler=_check_tls)

    disable = with_db(commands.add_parser("disable", help="disable a user and end its sessions"))
    disable.add_argument("name")
    disable.set_defaults(handler=_disable)

    users = with_db(commands.add_parser("users", help="list the users and their roles"))
    users.set_defaults(handler=_users)

    sync = with_db(
        commands.add_parser(
            "sync-users",
            help="apply a JSON list of users read from standard input (what the role runs)",
            description='Read [{"name": ..., "role": ..., "password": ...}, ...] from standard input and create or '
            "update those users; users not in the list are left alone. Prints changed: N.",
        )
    )
    sync.set_defaults(handler=_sync)


def _passwords() -> ModuleType:
    """The hashing module, imported when a command needs it: argon2 is the console's dependency, and
    ``centralita --help`` must work on a box without it."""
    from centralita.web import passwords

    return passwords


def _open(db: Path) -> WebStore:
    become_owner_of(db.parent)
    return WebStore(db)


def _ask_password(name: str) -> str:
    if not sys.stdin.isatty():
        raise UserError(
            "The password is read from the terminal, and standard input is not one: run the command in a terminal, "
            "or give users to 'centralita web sync-users' as JSON on standard input."
        )
    first = getpass.getpass(f"Password for {name}: ")
    check_password_rules(first)
    if getpass.getpass("The same password again: ") != first:
        raise UserError("The two passwords differ: nothing was changed. Run the command again.")
    return first


def _adduser(args: argparse.Namespace) -> int:
    try:
        name = check_user_name(args.name)
        password = _ask_password(name)
        with _open(args.db) as store:
            new = store.set_user(name, args.role, _passwords().hash_password(password))
            store.audit("cli", "user_add" if new else "user_change", target=name, detail=f"role {args.role}")
    except (UserError, PasswordError, WebStoreError) as error:
        print(f"centralita web: {error}", file=sys.stderr)
        return FAILED
    print(f"User {name} {'added' if new else 'updated'} with role {args.role}.")
    return OK


def _disable(args: argparse.Namespace) -> int:
    try:
        with _open(args.db) as store:
            if not store.disable_user(args.name):
                print(f"centralita web: there is no user {args.name!r} (see centralita web users).", file=sys.stderr)
                return FAILED
            store.audit("cli", "user_disable", target=args.name)
    except WebStoreError as error:
        print(f"centralita web: {error}", file=sys.stderr)
        return FAILED
    print(f"User {args.name} disabled; its sessions are closed.")
    return OK


def _users(args: argparse.Namespace) -> int:
    try:
        with _open(args.db) as store:
            rows = store.users()
    except WebStoreError as error:
        print(f"centralita web: {error}", file=sys.stderr)
        return FAILED
    for user in rows:
        state = "\tdisabled" if user.disabled else ""
        print(f"{user.name}\t{user.role}{state}")
    if not rows:
        print("No users yet: add one with centralita web adduser NAME --role admin.")
    return OK


def _parse_users(text: str) -> list[tuple[str, Role, str]]:
    try:
        data = json.loads(text)
    except ValueError as error:
        raise UserError(f"Standard input is not JSON ({error.__class__.__name__}): give a list of users.") from None
    if not isinstance(data, list):
        raise UserError('Standard input must be a JSON list: [{"name": ..., "role": ..., "password": ...}].')
    users: list[tuple[str, Role, str]] = []
    for index, item in enumerate(data, 1):
        if not isinstance(item, dict) or not all(
            isinstance(item.get(key), str) for key in ("name", "role", "password")
        ):
            raise UserError(f"User {index} of the list needs text fields name, role and password.")
        name = check_user_name(item["name"])
        check_password_rules(item["password"])
        users.append((name, check_role(item["role"]), item["password"]))
    return users


def _sync(args: argparse.Namespace) -> int:
    try:
        text = sys.stdin.read(MAX_SYNC_BYTES + 1)
        if len(text) > MAX_SYNC_BYTES:
            raise UserError(f"Standard input is longer than {MAX_SYNC_BYTES} characters: is it the list of users?")
        users = _parse_users(text)
        changed = 0
        with _open(args.db) as store:
            for name, role, password in users:
                existing = store.user(name)
                if (
                    existing is not None
                    and existing.role is role
                    and not existing.disabled
                    and _passwords().verify(existing.password_hash, password)
                ):
                    continue
                store.set_user(name, role, _passwords().hash_password(password))
                store.audit(
                    "provisioning",
                    "user_add" if existing is None else "user_change",
                    target=name,
                    detail=f"role {role}",
                )
                changed += 1
    except (UserError, PasswordError, WebStoreError) as error:
        # The messages name users and fields, never a password.
        print(f"centralita web: {error}", file=sys.stderr)
        return FAILED
    print(f"changed: {changed}")
    return OK


def _check_tls(args: argparse.Namespace) -> int:
    from centralita.web.settings import WebSettings
    from centralita.web.tls import TlsError, tls_context

    try:
        tls_context(WebSettings(tls_cert=args.cert, tls_key=args.key))
    except TlsError as error:
        print(f"centralita web check-tls: {error}", file=sys.stderr)
        return FAILED
    print(f"ok: {args.cert} and {args.key} serve HTTPS (TLS 1.2 or newer)")
    return OK
