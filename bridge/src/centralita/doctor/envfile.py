"""Checks of the bridge's ``.env``: it validates, the WebSocket keepalive is sane, and the file is private."""

from __future__ import annotations

import functools
import os
import pwd
import re
import stat
from pathlib import Path
from types import MappingProxyType

from centralita.config.bridge import ConfigError, Settings
from centralita.doctor.context import INBOUND_UNIT, Context
from centralita.doctor.fixes import owner_of, set_owner_and_mode
from centralita.doctor.model import Result

_PING = ("WS_PING_INTERVAL", "WS_PING_TIMEOUT")
# Stand-ins for the two required secrets when only the keepalive is validated: never sent anywhere.
_PLACEHOLDERS = MappingProxyType({"OPENAI_API_KEY": "placeholder", "ARI_PASSWORD": "placeholder"})
RESTART = f"systemctl restart {INBOUND_UNIT}"


def check_settings(ctx: Context) -> list[Result]:
    """``Settings.load`` accepts the file (the keepalive pair is left to ``env.ws_ping``)."""
    name = "env.settings"
    env = ctx.env
    path = env.path
    if env.settings is not None:
        return [Result.ok(name, f"{path} loads: model {env.settings.openai_model}, ARI user {env.settings.ari_user}")]
    if env.read_error:
        problems = env.error.problems if env.error else (f"{path}: {env.read_error}",)
        hint = (
            "run the doctor as root (sudo centralita doctor), or "
            if "Permission denied" in env.read_error and os.geteuid() != 0
            else ""
        )
        return [
            Result.fail(
                name,
                "; ".join(problems),
                f"{hint}point --env-file at the bridge's .env, or re-create it with the playbook "
                "(ansible-playbook site.yml --tags bridge)",
            )
        ]
    # Validate everything but the keepalive, which has its own check (and its own fix).
    values = {key: value for key, value in env.values.items() if key not in _PING}
    try:
        settings = Settings.from_values(values, source=str(path))
    except ConfigError as error:
        return [
            Result.fail(
                name,
                f"{path}: " + " ".join(error.problems),
                f"edit {path} as each problem says (or fix the inventory and run the playbook again), then: {RESTART}",
            )
        ]
    return [Result.ok(name, f"{path} loads apart from the keepalive: model {settings.openai_model}")]


def check_ws_ping(ctx: Context) -> list[Result]:
    """WS_PING_INTERVAL > WS_PING_TIMEOUT, both positive numbers; websocket-client refuses to start otherwise."""
    name = "env.ws_ping"
    env = ctx.env
    if env.read_error:
        return [Result.skipped(name, f"{env.path}: {env.read_error}", "env.settings")]
    values = {**_PLACEHOLDERS, **{key: env.values[key] for key in _PING if key in env.values}}
    try:
        settings = Settings.from_values(values)
    except ConfigError as error:
        interval, timeout = env.get("WS_PING_INTERVAL", "20 (default)"), env.get("WS_PING_TIMEOUT", "10 (default)")
        if len(error.problems) == 1 and "must be greater than WS_PING_TIMEOUT" in error.problems[0]:
            why = "the interval must be greater, or websocket-client refuses to start"
            why += ' ("Ensure ping_interval > ping_timeout")'
        else:
            why = " ".join(error.problems)
        return [
            Result.fail(
                name,
                f"WS_PING_INTERVAL={interval}, WS_PING_TIMEOUT={timeout}: {why}",
                f"set WS_PING_INTERVAL=20 and WS_PING_TIMEOUT=10 in {env.path} (the interval must be greater; "
                f"in the inventory: bridge_ws_ping_interval, bridge_ws_ping_timeout), then: {RESTART}",
            )
        ]
    return [
        Result.ok(
            name,
            f"ping every {settings.ws_ping_interval:g} s, timeout {settings.ws_ping_timeout:g} s (interval > timeout)",
        )
    ]


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
