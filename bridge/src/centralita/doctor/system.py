"""Checks of the box around Asterisk: the bridge's services, its recent log errors, who owns the code root runs
and the operator's files in the app directory, and that root's git does not trust the operator's checkouts."""

from __future__ import annotations

import errno
import functools
import os
import pwd
import re
import stat
from datetime import datetime, timedelta
from pathlib import Path

from centralita.doctor.asterisk import app_registered
from centralita.doctor.commands import NOT_FOUND, UnitState, asterisk_down, asterisk_rx, unit_state
from centralita.doctor.context import INBOUND_UNIT, OUTBOUND_UNIT, Context
from centralita.doctor.fixes import chown_tree, misowned, owner_of, start_service, user_name, walk
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
    apps = _worker_apps(app, ctx.env.get("WORKERS", "1"))
    listed = ctx.rx("ari show apps").stdout if ctx.asterisk_running and len(apps) > 1 else ""
    missing = [worker for worker in apps if not app_registered(listed, worker)] if listed else []
    if missing and len(missing) < len(apps):
        return [
            Result.warn(
                name,
                f"{INBOUND_UNIT} is active but the Stasis app of {len(missing)} of its {len(apps)} workers is not "
                f"registered in Asterisk ({', '.join(missing)}): the dialplan sends their share of the calls to the "
                "other workers",
                f"the supervisor restarts a dead worker at once: grep -E 'worker .* (died|started)' {ctx.log_file}; "
                f"if it keeps dying, read why: grep 'worker={missing[0]} ' {ctx.log_file} | tail -n 50",
            )
        ]
    if len(apps) > 1 and listed and not missing:
        return [
            Result.ok(
                name,
                f"{INBOUND_UNIT} is active ({unit.sub_state}), {len(apps)} workers, Stasis apps "
                f"{', '.join(apps)} registered",
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


def _worker_apps(app: str, workers: str) -> list[str]:
    """The Stasis apps of the service's workers (WORKERS; calls/workers.py): ``app``, then ``app-2`` ..."""
    count = int(workers) if workers.strip().isdigit() else 1
    return [app] + [f"{app}-{number}" for number in range(2, min(count, 64) + 1)]


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
        # Root reads a file in a directory the service's user writes: never through a link it may have put there.
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(descriptor, encoding="utf-8", errors="replace") as log:
            if not stat.S_ISREG(os.fstat(log.fileno()).st_mode):
                return [
                    Result.warn(name, f"{path} is not a regular file", f"move it aside: {INBOUND_UNIT} makes a new one")
                ]
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
        if error.errno == errno.ELOOP:
            return [
                Result.warn(
                    name,
                    f"{path} is a symbolic link, which the doctor does not follow",
                    f"move it aside: {INBOUND_UNIT} writes a new log file",
                )
            ]
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


def check_code(ctx: Context) -> list[Result]:
    """Root runs the code in the app directory (the venv behind /usr/local/bin/centralita, and the role's pip
    installs from the wheelhouse): the directory, the venv and the wheelhouse are root's, writable by root alone."""
    name = "bridge.code"
    app = ctx.options.app_dir
    rebuild = (
        "rebuild them as root's with the playbook, which removes a venv or wheelhouse someone else could have "
        "changed and installs it again: ansible-playbook site.yml --tags bridge"
    )
    if not (app / "venv").is_dir():
        return [Result.fail(name, f"{app}/venv does not exist", f"install the bridge: {rebuild}")]
    unsafe: list[tuple[Path, os.stat_result]] = []
    app_info = os.lstat(app)
    if app_info.st_uid != 0 or app_info.st_mode & 0o022:
        unsafe.append((app, app_info))
    for tree in (app / "venv", app / "wheels"):
        if tree.exists():
            unsafe.extend((path, info) for path, info in walk(tree) if info.st_uid != 0 or info.st_mode & 0o022)
    if not unsafe:
        return [Result.ok(name, f"{app}, its venv and wheelhouse are root's and writable by root alone")]
    shown = [
        f"{path.relative_to(app) if path != app else app} ({owner_of(info)} {stat.S_IMODE(info.st_mode):04o})"
        for path, info in unsafe
    ]
    # No automatic repair: giving root a venv someone else could change would make root run what they put in it.
    return [
        Result.fail(
            name,
            f"root runs {app}/venv/bin/centralita, but {len(unsafe)} path(s) there are not root's or others may "
            f"write them: {join(shown)}; whoever can change them can run code as root",
            rebuild,
        )
    ]


def check_app_dir(ctx: Context) -> list[Result]:
    """prompts/ in the app directory, and everything in it, belong to APP_OWNER, the operator who edits them."""
    name = "bridge.app_dir"
    app = ctx.options.app_dir
    prompts = app / "prompts"
    env = ctx.env
    if not prompts.is_dir():
        return [
            Result.fail(
                name, f"{prompts} does not exist", "install the bridge: ansible-playbook site.yml --tags bridge"
            )
        ]
    owner = env.get("APP_OWNER")
    if not owner:
        return [
            Result.warn(
                name,
                f"APP_OWNER is not set in {env.path}, so the doctor cannot tell who should own {prompts} "
                f"(now {owner_of(os.lstat(prompts))})",
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
    wrong = misowned(prompts, uid)
    if not wrong:
        return [Result.ok(name, f"{prompts} and everything under it belong to {owner}")]
    owners = sorted({user_name(os.lstat(path).st_uid) for path in wrong})
    shown = [str(path.relative_to(prompts)) if path != prompts else str(prompts) for path in wrong]
    return [
        Result.fail(
            name,
            f"{len(wrong)} path(s) in {prompts} not owned by {owner} (owned by {', '.join(owners)}): {join(shown)}; "
            f"{owner} cannot edit or commit them",
            f"centralita doctor --fix gives them back without following links; by hand: chown -R -h {owner} {prompts}",
            functools.partial(chown_tree, prompts, uid),
        )
    ]


def check_git(ctx: Context) -> list[Result]:
    """A git checkout in the app directory that another user owns must not be trusted by root's git
    (safe.directory): git would run that user's hooks and configuration as root."""
    name = "bridge.git"
    app = ctx.options.app_dir
    checkouts: list[tuple[Path, int]] = []
    for directory in (app, app / "prompts"):
        try:
            checkouts.append((directory, os.lstat(directory / ".git").st_uid))
        except OSError:
            continue
    if not checkouts:
        return [Result.ok(name, f"no git checkout in {app} or its prompts/")]
    me = os.geteuid()
    foreign = [(directory, uid) for directory, uid in checkouts if uid != me]
    if not foreign:
        return [Result.ok(name, f"{', '.join(str(d) for d, _ in checkouts)}: git checkout(s) of {user_name(me)}")]
    listed = ctx.options.runner(["git", "-C", "/", "config", "--get-all", "safe.directory"], ctx.options.timeout)
    if listed.rc == NOT_FOUND:
        return [Result.ok(name, f"git checkout(s) of {user_name(foreign[0][1])}; git is not installed here")]
    entries = {line.strip().rstrip("/") for line in listed.stdout.splitlines() if line.strip()}
    trusted = [(d, uid) for d, uid in foreign if str(d).rstrip("/") in entries or "*" in entries]
    whoami = user_name(me)
    if not trusted:
        directory, uid = foreign[0]
        return [
            Result.ok(
                name,
                f"{directory} is {user_name(uid)}'s git checkout; {whoami}'s git does not trust it, as it should "
                f"not (run git there as its owner: sudo -u {user_name(uid)} git -C {directory} status)",
            )
        ]
    directory, uid = trusted[0]
    entry = "*" if "*" in entries else str(directory)
    return [
        Result.fail(
            name,
            f"{whoami}'s git trusts {directory} (safe.directory={entry}), a checkout owned by {user_name(uid)}: "
            f"git run there by {whoami} runs {user_name(uid)}'s hooks and configuration as {whoami}",
            f"remove the entry (git config --global --unset-all safe.directory '^{entry}$', or --system for "
            f"/etc/gitconfig) and run git there as its owner: sudo -u {user_name(uid)} git -C {directory} status",
        )
    ]
