"""The repairs ``--fix`` may run unattended: owners and modes of files, and starting a stopped service.

Each repair looks again at the current state before changing anything (the box may have changed since the
check ran), changes only what is wrong, and returns one line per change, written as the equivalent
command so the operator can see exactly what happened. Nothing here restarts a running service: that would
drop calls in progress, so it stays a fix for the operator to run.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from centralita.doctor.commands import CommandRunner
from centralita.doctor.model import RepairError, join


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def owner_of(info: os.stat_result) -> str:
    return f"{user_name(info.st_uid)}:{group_name(info.st_gid)}"


def set_owner_and_mode(paths: Iterable[Path], uid: int, gid: int, mode: int | None) -> list[str]:
    """Give each path owner ``uid:gid`` and (unless None, and not for symlinks) permission bits ``mode``."""
    changes: list[str] = []
    for path in paths:
        info = os.lstat(path)
        if (info.st_uid, info.st_gid) != (uid, gid):
            os.chown(path, uid, gid, follow_symlinks=False)
            changes.append(f"chown -h {user_name(uid)}:{group_name(gid)} {path} (was {owner_of(info)})")
        if mode is not None and not stat.S_ISLNK(info.st_mode) and stat.S_IMODE(info.st_mode) != mode:
            os.chmod(path, mode)
            changes.append(f"chmod {mode:04o} {path} (was {stat.S_IMODE(info.st_mode):04o})")
    return changes


def walk(root: Path, skip: Iterable[Path] = ()) -> Iterator[tuple[Path, os.stat_result]]:
    """``root`` and everything under it, never following symlinks; ``skip`` paths (and below) left out."""
    skipped = {Path(path) for path in skip}
    if root in skipped:
        return
    yield root, os.lstat(root)
    for directory, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(directory)
        dirnames[:] = sorted(name for name in dirnames if here / name not in skipped)
        for name in sorted(dirnames) + sorted(filenames):
            path = here / name
            if path in skipped:
                continue
            try:
                yield path, os.lstat(path)
            except FileNotFoundError:
                continue


def misowned(root: Path, uid: int, skip: Iterable[Path] = ()) -> list[Path]:
    """The paths under ``root`` (itself included) whose owner is not ``uid``."""
    return [path for path, info in walk(root, skip) if info.st_uid != uid]


def chown_tree(root: Path, uid: int, skip: Iterable[Path] = ()) -> list[str]:
    """Give every path under ``root`` not owned by ``uid`` to ``uid`` (groups unchanged); one summary line."""
    changed: list[str] = []
    for path, info in walk(root, skip):
        if info.st_uid != uid:
            os.chown(path, uid, -1, follow_symlinks=False)
            changed.append(str(path.relative_to(root)) if path != root else str(root))
    if not changed:
        return []
    return [f"chown -h {user_name(uid)} on {len(changed)} path(s) under {root}: {join(changed)}"]


def start_service(
    runner: CommandRunner,
    unit: str,
    timeout: float,
    ready: Callable[[], bool] | None = None,
    settle_seconds: float = 15.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[str]:
    """``systemctl start <unit>``, then wait up to ``settle_seconds`` for ``ready()`` (when given)."""
    result = runner(["systemctl", "start", f"{unit}.service"], max(timeout, 30.0))
    if not result.ok:
        raise RepairError(
            f"systemctl start {unit} failed ({result.text or f'exit code {result.rc}'}): "
            f"read why with: journalctl -u {unit} -n 50 --no-pager"
        )
    change = f"systemctl start {unit}"
    if ready is None:
        return [change]
    deadline = clock() + settle_seconds
    while not ready():
        if clock() >= deadline:
            raise RepairError(
                f"{change} ran, but {unit} was not ready within {settle_seconds:g} s: "
                f"journalctl -u {unit} -n 50 --no-pager"
            )
        sleep(0.5)
    return [change]
