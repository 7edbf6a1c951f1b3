"""Checks of the bridge's ``.env``: it validates, the WebSocket keepalive is sane, and the file is private."""

from __future__ import annotations

import functools
import os
import pwd
import re
import stat
from pathlib import Path

from centralita.config.box import Part
from centralita.config.bridge import read_keepalive
from centralita.config.env import EnvReader
from centralita.doctor.context import INBOUND_UNIT, OUTBOUND_UNIT, Context
from centralita.doctor.fixes import owner_of, set_owner_and_mode
from centralita.doctor.model import Result

_PING = ("WS_PING_INTERVAL", "WS_PING_TIMEOUT")
RESTART = f"systemctl restart {INBOUND_UNIT}"


def check_settings(ctx: Context) -> list[Result]:
    """The .env validates as the services read it (the keepalive is ``env.ws_ping``'s, the routers
    ``routeros``'s)."""
    name = "env.settings"
    env = ctx.env
    path = env.path
    if env.check is None:
        hint = (
            "run the doctor as root (sudo centralita doctor), or "
            if "Permission denied" in env.read_error and os.geteuid() != 0
            else ""
        )
        return [
            Result.fail(
                name,
                env.read_error,
                f"{hint}point --env-file at the bridge's .env, or re-create it with the playbook "
                "(ansible-playbook site.yml --tags bridge)",
            )
        ]
    problems = [
        problem
        for problem in env.check.problems_of(Part.FILE, Part.BRIDGE, Part.DIALER)
        if problem.variable not in _PING
    ]
    if problems:
        units = f"{INBOUND_UNIT} {OUTBOUND_UNIT}" if any(p.part is Part.DIALER for p in problems) else INBOUND_UNIT
        return [
            Result.fail(
                name,
                f"{path}: " + " ".join(problem.message for problem in problems),
                f"edit {path} as each problem says (or fix the inventory and run the playbook again); "
                f"centralita config check {path} must say OK; then: systemctl restart {units}",
            )
        ]
    model, user = env.get("OPENAI_MODEL", "gpt-realtime"), env.get("ARI_USER", "centralita")
    dialer = "the dialer's too" if env.check.dialer is not None else "no dialer (DIALER_TIMEZONE unset)"
    if env.settings is None:  # only the keepalive is wrong
        return [Result.ok(name, f"{path} loads apart from the keepalive: model {model}, ARI user {user}; {dialer}")]
    return [Result.ok(name, f"{path} loads: model {model}, ARI user {user}; {dialer}")]


def check_ws_ping(ctx: Context) -> list[Result]:
    """WS_PING_INTERVAL > WS_PING_TIMEOUT, both positive numbers; websocket-client refuses to start otherwise."""
    name = "env.ws_ping"
    env = ctx.env
    if env.check is None:
        return [Result.skipped(name, env.read_error, "env.settings")]
    reader = EnvReader(env.values)
    interval, timeout = read_keepalive(reader)
    if reader.problems:
        shown = f"WS_PING_INTERVAL={env.get('WS_PING_INTERVAL', '20 (default)')}, "
        shown += f"WS_PING_TIMEOUT={env.get('WS_PING_TIMEOUT', '10 (default)')}"
        return [
            Result.fail(
                name,
                f"{shown}: " + " ".join(reader.problems),
                f"set WS_PING_INTERVAL=20 and WS_PING_TIMEOUT=10 in {env.path} (the interval must be greater; "
                f"in the inventory: bridge_ws_ping_interval, bridge_ws_ping_timeout), then: {RESTART}",
            )
        ]
    return [Result.ok(name, f"ping every {interval:g} s, timeout {timeout:g} s (interval > timeout)")]


def _is_service_env(exec_start: str, path: Path) -> bool:
    """Whether ``path`` is the .env the service's ExecStart names (True when it names none: the default).

    A copy given with --env-file (to try a change) need not belong to the service user.
    """
    match = re.search(r"--env-file[= ](\S+)", exec_start)
    if match is None:
        return True
    return os.path.realpath(match.group(1)) == os.path.realpath(path)


def check_permissions(ctx: Context) -> list[Result]:
    """The .env holds the secrets: mode 0600 and, when it is the service's, owned by the user the service runs
    as (so it can read it)."""
    name = "env.permissions"
    path = ctx.env.path
    try:
        info = os.stat(path)
    except OSError as error:
        return [Result.skipped(name, f"{path}: {error.strerror}", "env.settings")]
    mode = stat.S_IMODE(info.st_mode)
    problems: list[str] = []
    commands: list[str] = []
    uid, gid = info.st_uid, info.st_gid
    service_user = ""
    unit = ctx.unit(INBOUND_UNIT)
    if not isinstance(unit, str) and unit.installed and _is_service_env(unit.exec_start, path):
        service_user = unit.user
    if service_user:
        try:
            account = pwd.getpwnam(service_user)
        except KeyError:
            account = None
        if account is not None and info.st_uid != account.pw_uid:
            uid, gid = account.pw_uid, account.pw_gid
            problems.append(f"owned by {owner_of(info)}, but {INBOUND_UNIT} runs as {service_user} and cannot read it")
            commands.append(f"chown {service_user}: {path}")
    if mode & 0o077:
        problems.append(f"mode {mode:04o} lets other users read the API key and the ARI password")
        commands.append(f"chmod 0600 {path}")
    if not problems:
        return [Result.ok(name, f"{path} is {owner_of(info)} {mode:04o}")]
    repair = functools.partial(set_owner_and_mode, [path], uid, gid, 0o600 if mode & 0o077 else None)
    if any("cannot read" in problem for problem in problems):
        commands.append(RESTART)
    return [Result.fail(name, f"{path} is " + "; ".join(problems), "; ".join(commands), repair)]
