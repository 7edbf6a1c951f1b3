"""Checks of the box around Asterisk: the bridge's services, its recent log errors, who owns the app
directory, and whether root can run git there."""

from __future__ import annotations

import functools
import os
import pwd
import re
from datetime import datetime, timedelta

from centralita.doctor.asterisk import app_registered
from centralita.doctor.commands import NOT_FOUND, UnitState, asterisk_down, asterisk_rx, unit_state
from centralita.doctor.context import INBOUND_UNIT, OUTBOUND_UNIT, Context
from centralita.doctor.fixes import chown_tree, misowned, owner_of, start_service, user_name
from centralita.doctor.model import Repair, Result, join

# The bridge's file log (centralita.logs.FILE_FORMAT): "2026-11-25 14:03:07,123 ERROR call=... message".
_LOG_LINE = re.compile(r"^(?P<when>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}),\d{3} (?P<level>[A-Z]+) ")
_ERROR_LEVELS = ("ERROR", "CRITICAL")


def _journal(unit: str) -> str:
    return f"journalctl -u {unit} -n 50 --no-pager"


def _unit_problem(name: str, unit: UnitState | str, *, optional: bool) -> Result | None:
    """The result when the unit cannot be read or is not installed; None when it is installed."""
    if isinstance(unit, str):
        return Result.fail(
            name,
            f"systemctl cannot tell the state: {unit}",
            "run the doctor as root on the box itself, where systemd runs: systemctl status openai-inbound-calls",
        )
    if unit.installed:
        return None
    if optional:
        return Result.warn(
            name,
            f"{unit.unit}.service is not installed (the outbound dialer is not deployed on this box)",
            "nothing to do unless this box should call customers: then deploy it with the playbook",
        )
    return Result.fail(
        name,
        f"{unit.unit}.service is {unit.load_state}",
        "install it with the playbook: ansible-playbook site.yml --tags bridge",
    )


def check_inbound_service(ctx: Context) -> list[Result]:
    """openai-inbound-calls is active and its Stasis app is registered in Asterisk."""
    name = "bridge.inbound_service"
    unit = ctx.unit(INBOUND_UNIT)
    problem = _unit_problem(name, unit, optional=False)
    if problem is not None or isinstance(unit, str):
        return [problem] if problem else []
    app = ctx.env.get("ARI_APP", "centralita")
    runner, timeout = ctx.options.runner, ctx.options.timeout
    if not unit.active:

        def ready() -> bool:
            listed = asterisk_rx(runner, "ari show apps", timeout)
            if not asterisk_down(listed):
                return app_registered(listed.stdout, app)
            state = unit_state(runner, INBOUND_UNIT, timeout)
            return isinstance(state, UnitState) and state.active

        repair: Repair = functools.partial(
            start_service, runner, INBOUND_UNIT, timeout, ready, ctx.options.settle_seconds
        )
        return [
            Result.fail(
                name,
                f"{INBOUND_UNIT} is {unit.active_state} ({unit.sub_state}): "
                "calls go to the operator context instead of the assistant",
                f"systemctl start {INBOUND_UNIT}; if it stops again, read why: {_journal(INBOUND_UNIT)}; "
                f"tail -n 50 {ctx.log_file}",
                repair,
            )
        ]
    if ctx.asterisk_running and not app_registered(ctx.rx("ari show apps").stdout, app):
        return [
            Result.fail(
                name,
                f"{INBOUND_UNIT} is active but Stasis app {app} is not registered in Asterisk (ari show apps): "
                "calls go to the operator context",
                f"read why it cannot connect to ARI (see asterisk.ari): {_journal(INBOUND_UNIT)}; "
                f"then: systemctl restart {INBOUND_UNIT}",
            )
        ]
    registered = f", Stasis app {app} registered" if ctx.asterisk_running else ""
    return [Result.ok(name, f"{INBOUND_UNIT} is active ({unit.sub_state}){registered}")]


def check_outbound_service(ctx: Context) -> list[Result]:
    """openai-outbound-calls is active when installed (WARN when it is not installed)."""
    name = "bridge.outbound_service"
    unit = ctx.unit(OUTBOUND_UNIT)
    problem = _unit_problem(name, unit, optional=True)
    if problem is not None or isinstance(unit, str):
        return [problem] if problem else []
    if unit.active:
        return [Result.ok(name, f"{OUTBOUND_UNIT} is active ({unit.sub_state})")]
    repair: Repair = functools.partial(
        start_service, ctx.options.runner, OUTBOUND_UNIT, ctx.options.timeout, None, ctx.options.settle_seconds
    )
    return [
        Result.fail(
            name,
            f"{OUTBOUND_UNIT} is installed but {unit.active_state} ({unit.sub_state})",
            f"systemctl start {OUTBOUND_UNIT}; if it stops again, read why: {_journal(OUTBOUND_UNIT)}",
            repair,
        )
    ]


def check_log(ctx: Context) -> list[Result]:
    """ERROR and CRITICAL lines of the bridge's log in the last ``log_hours`` hours: count and the last one."""
    name = "bridge.log"
    path = ctx.log_file
    hours = ctx.options.log_hours
    since = ctx.options.now() - timedelta(hours=hours)
    count = 0
    last = ""
    try:
        with path.open(encoding="utf-8", errors="replace") as log:
            for line in log:
                match = _LOG_LINE.match(line)
                if match is None or match.group("level") not in _ERROR_LEVELS:
                    continue
                try:
                    when = datetime.strptime(match.group("when"), "%Y-%m-%d %H:%M:%S")
                except ValueError:
                    continue
                if when >= since:
                    count += 1
                    last = line.strip()
    except FileNotFoundError:
        return [
            Result.warn(
                name,
                f"{path} does not exist yet",
                f"{INBOUND_UNIT} creates it when it starts: systemctl status {INBOUND_UNIT}; {_journal(INBOUND_UNIT)}",
            )
        ]
    except OSError as error:
        return [Result.warn(name, f"{path} cannot be read ({error.strerror})", "run the doctor as root")]
    if count == 0:
        return [Result.ok(name, f"no ERROR lines in the last {hours:g} h in {path}")]
    shown = last if len(last) <= 240 else last[:237] + "..."
    return [
        Result.warn(
            name,
            f"{count} ERROR line(s) in the last {hours:g} h in {path}; last: {shown}",
            f"read them in context: grep -nE ' (ERROR|CRITICAL) ' {path} | tail -n 20; "
            f"journalctl -u {INBOUND_UNIT} --since '{hours:g}h ago' --no-pager | grep -iE 'error|traceback'",
        )
    ]


def check_app_dir(ctx: Context) -> list[Result]:
    """The app directory and everything in it (but the .env) belong to APP_OWNER, the operator."""
    name = "bridge.app_dir"
    app = ctx.options.app_dir
    env = ctx.env
    if not app.is_dir():
        return [
            Result.fail(name, f"{app} does not exist", "install the bridge: ansible-playbook site.yml --tags bridge")
        ]
    owner = env.get("APP_OWNER")
    if not owner:
        return [
            Result.warn(
                name,
                f"APP_OWNER is not set in {env.path}, so the doctor cannot tell who should own {app} "
                f"(now {owner_of(os.lstat(app))})",
                f"add APP_OWNER=<the operator's user> to {env.path} (the bridge role writes it from "
                "bridge_operator_user; root when that is empty)",
            )
        ]
    try:
        uid = pwd.getpwnam(owner).pw_uid
    except KeyError:
        return [
            Result.fail(
                name,
                f"APP_OWNER={owner} is not a user on this box",
                f"create the user (adduser {owner}) or correct APP_OWNER in {env.path}",
            )
        ]
    skip = [app / ".env"]  # the service user's, on purpose (mode 0600)
    wrong = misowned(app, uid, skip)
    if not wrong:
        return [Result.ok(name, f"{app} and everything under it (but .env) belong to {owner}")]
    owners = sorted({user_name(os.lstat(path).st_uid) for path in wrong})
    shown = [str(path.relative_to(app)) if path != app else str(app) for path in wrong]
    return [
        Result.fail(
            name,
            f"{len(wrong)} path(s) in {app} not owned by {owner} (owned by {', '.join(owners)}): {join(shown)}; "
            f"{owner} cannot commit, pull or edit them",
            f"find {app} -path {app}/.env -prune -o ! -user {owner} -print0 | xargs -0 -r chown -h {owner}",
            functools.partial(chown_tree, app, uid, skip),
        )
    ]


def check_git(ctx: Context) -> list[Result]:
    """When the app directory is a git checkout owned by someone else, root's git needs a safe.directory."""
    name = "bridge.git"
    app = ctx.options.app_dir
    if not (app / ".git").exists():
        return [Result.ok(name, f"{app} is not a git checkout")]
    try:
        info = os.stat(app)
    except OSError as error:
        return [Result.warn(name, f"{app}: {error.strerror}")]
    owner = user_name(info.st_uid)
    if info.st_uid == os.geteuid():
        return [Result.ok(name, f"{app} is a git checkout owned by {owner}, who runs the doctor")]
    listed = ctx.options.runner(["git", "-C", "/", "config", "--get-all", "safe.directory"], ctx.options.timeout)
    if listed.rc == NOT_FOUND:
        return [Result.ok(name, f"{app} is a git checkout owned by {owner}; git is not installed here")]
    entries = {line.strip().rstrip("/") for line in listed.stdout.splitlines() if line.strip()}
    me = user_name(os.geteuid())
    if str(app).rstrip("/") in entries or "*" in entries:
        return [Result.ok(name, f"{app} is a git checkout owned by {owner}; {me}'s git trusts it (safe.directory)")]
    return [
        Result.warn(
            name,
            f"{app} is a git checkout owned by {owner}: git run by {me} there stops with 'detected dubious ownership'",
            f"commit as the owner: sudo -u {owner} git -C {app} status; to let {me} run git there too: "
            f"git config --global --add safe.directory {app}",
        )
    ]
