"""The repairs ``--fix`` may run unattended: owners and modes of files, and starting a stopped service.

Each repair looks again at the current state before changing anything (the box may have changed since the
check ran), changes only what is wrong, and returns one line per change, written as the equivalent
command so the operator can see exactly what happened. Nothing here restarts a running service: that would
drop calls in progress, so it stays a fix for the operator to run.

The doctor runs as root, and the directories it repairs belong to other users (``/etc/asterisk`` to Asterisk,
``prompts/`` to the operator), who can rename, replace or link anything in them while the doctor works. So a
repair never goes by path: it opens every directory on the way with ``O_NOFOLLOW`` relative to the one before
(following a symbolic link only where root alone could have made it), opens the file itself the same way,
checks that what it opened is what it looked at, and changes owner and mode through that descriptor
(``fchown``/``fchmod``). Symbolic links are never followed nor changed; devices, pipes and sockets are left
alone; so is a file with more than one hard link, which could be another name for a file elsewhere.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from centralita.doctor.commands import CommandRunner
from centralita.doctor.model import RepairError, join

_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_MAX_LINKS_FOLLOWED = 40


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


@dataclass(frozen=True, slots=True)
class Target:
    """What a path should be: owner ``uid``, group ``gid`` (-1: either left as it is) and permission bits: ``mode``
    exactly, or else (``clear``) these bits removed. Modes apply to regular files and directories alike."""

    uid: int = -1
    gid: int = -1
    mode: int | None = None
    clear: int = 0


def _trusted_dir(info: os.stat_result) -> bool:
    """A directory only root can add entries to: a symbolic link found in it was made by root."""
    return info.st_uid == 0 and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def open_directory(path: Path) -> int:
    """A descriptor of the directory ``path``, reached component by component from ``/`` without following a
    symbolic link another user could have made. Raises RepairError when the path cannot be trusted or opened."""
    if not path.is_absolute():
        raise RepairError(f"{path}: not an absolute path")
    parts = list(path.parts[1:])
    fd = os.open("/", _OPEN_DIR)
    followed = 0
    try:
        while parts:
            name = parts.pop(0)
            if name in ("", "."):
                continue
            try:
                child = os.open(name, _OPEN_DIR, dir_fd=fd)
            except OSError as error:
                if error.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise RepairError(f"{path}: {error.strerror} at {name!r}") from None
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISLNK(info.st_mode):
                    raise RepairError(f"{path}: {name!r} is not a directory") from None
                if not _trusted_dir(os.fstat(fd)) or info.st_uid != 0 or followed >= _MAX_LINKS_FOLLOWED:
                    raise RepairError(
                        f"{path}: {name!r} is a symbolic link in a directory another user can change; "
                        "not followed, nothing changed there"
                    ) from None
                followed += 1
                target = os.readlink(name, dir_fd=fd)
                parts = [part for part in Path(target).parts if part != "/"] + parts
                if target.startswith("/"):
                    os.close(fd)
                    fd = os.open("/", _OPEN_DIR)
                continue
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def _fix_open(fd: int, shown: Path, target: Target) -> list[str]:
    """Give the open file or directory ``fd`` (shown as ``shown``) its target owner and mode; the change lines."""
    info = os.fstat(fd)
    changes: list[str] = []
    uid = info.st_uid if target.uid == -1 else target.uid
    gid = info.st_gid if target.gid == -1 else target.gid
    if (uid, gid) != (info.st_uid, info.st_gid):
        os.fchown(fd, uid, gid)
        if target.gid == -1:
            changes.append(f"chown -h {user_name(uid)} {shown} (was {owner_of(info)})")
        else:
            changes.append(f"chown -h {user_name(uid)}:{group_name(gid)} {shown} (was {owner_of(info)})")
    if target.mode is None and not target.clear:
        return changes
    old_mode = stat.S_IMODE(info.st_mode)
    # chown clears the setuid and setgid bits of a file: start from what it has now.
    now_mode = stat.S_IMODE(os.fstat(fd).st_mode)
    mode = target.mode if target.mode is not None else now_mode & ~target.clear
    if mode != now_mode:
        os.fchmod(fd, mode)
        changes.append(f"chmod {mode:04o} {shown} (was {old_mode:04o})")
    return changes


def _open_entry(dir_fd: int, name: str, shown: Path) -> tuple[int | None, str]:
    """Open ``name`` in ``dir_fd`` if it is a regular file with one link or a directory, and still the entry that
    was looked at; (descriptor, "") or (None, why it was left alone, "" when not worth saying)."""
    try:
        before = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None, ""
    is_dir = stat.S_ISDIR(before.st_mode)
    if not (is_dir or stat.S_ISREG(before.st_mode)):
        return None, ""  # links, devices, pipes, sockets: never changed
    if not is_dir and before.st_nlink > 1:
        return None, f"left {shown} alone: it has {before.st_nlink} hard links (another name for a file elsewhere?)"
    try:
        fd = os.open(name, _OPEN_DIR if is_dir else _OPEN_FILE, dir_fd=dir_fd)
    except OSError:
        return None, f"left {shown} alone: it changed while the doctor looked at it"
    after = os.fstat(fd)
    if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino) or (not is_dir and after.st_nlink > 1):
        os.close(fd)
        return None, f"left {shown} alone: it changed while the doctor looked at it"
    return fd, ""


def set_owner_and_mode(paths: Iterable[Path], uid: int, gid: int, mode: int | None) -> list[str]:
    """Give each path owner ``uid:gid`` and (unless None) permission bits ``mode``, safely (see the module)."""
    changes: list[str] = []
    for path in paths:
        parent = open_directory(path.parent)
        try:
            fd, why = _open_entry(parent, path.name, path)
            if fd is None:
                changes.extend([why] if why else [])
                continue
            try:
                changes.extend(_fix_open(fd, path, Target(uid, gid, mode)))
            finally:
                os.close(fd)
        finally:
            os.close(parent)
    return changes


def repair_tree(
    root: Path, decide: Callable[[Path, os.stat_result], Target | None], skip: Iterable[Path] = ()
) -> list[str]:
    """Walk ``root`` (itself included) safely and give every regular file and directory what ``decide`` (given
    its path and its status) asks for (None: nothing). ``skip`` paths, and what is below them, are left out."""
    skipped = {Path(path) for path in skip}
    if root in skipped:
        return []
    changes: list[str] = []
    parent = open_directory(root.parent)
    try:
        fd, why = _open_entry(parent, root.name, root)
    finally:
        os.close(parent)
    if fd is None:
        return [why] if why else []
    _repair_open(fd, root, decide, skipped, changes)
    return changes


def _repair_open(
    fd: int, path: Path, decide: Callable[[Path, os.stat_result], Target | None], skip: set[Path], changes: list[str]
) -> None:
    """Repair the open ``fd`` (at ``path``) and, for a directory, everything below it; closes ``fd``."""
    try:
        wanted = decide(path, os.fstat(fd))
        if wanted is not None:
            changes.extend(_fix_open(fd, path, wanted))
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            return
        with os.scandir(fd) as entries:
            names = sorted(entry.name for entry in entries)
        for name in names:
            child_path = path / name
            if child_path in skip:
                continue
            child, why = _open_entry(fd, name, child_path)
            if child is None:
                changes.extend([why] if why else [])
                continue
            _repair_open(child, child_path, decide, skip, changes)
    finally:
        os.close(fd)


def walk(root: Path, skip: Iterable[Path] = ()) -> Iterator[tuple[Path, os.stat_result]]:
    """``root`` and every regular file and directory under it, never following symlinks; ``skip`` paths (and
    below) left out. For the checks, which only look: symbolic links, devices and the like are not listed, since
    a repair would not change them."""
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
                info = os.lstat(path)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode):
                yield path, info


def misowned(root: Path, uid: int, skip: Iterable[Path] = ()) -> list[Path]:
    """The paths under ``root`` (itself included) whose owner is not ``uid``."""
    return [path for path, info in walk(root, skip) if info.st_uid != uid]


def chown_tree(root: Path, uid: int, skip: Iterable[Path] = ()) -> list[str]:
    """Give every file and directory under ``root`` not owned by ``uid`` to ``uid`` (groups unchanged); one summary
    line (and one per path left alone)."""
    lines = repair_tree(root, lambda _path, info: Target(uid=uid) if info.st_uid != uid else None, skip)
    changed = [line for line in lines if line.startswith("chown")]
    if not changed:
        return lines
    names = [_changed_path(line, root) for line in changed]
    kept = [line for line in lines if not line.startswith("chown")]
    return [f"chown -h {user_name(uid)} on {len(names)} path(s) under {root}: {join(names)}", *kept]


def _changed_path(line: str, root: Path) -> str:
    """The path of a ``chown -h USER PATH (was ...)`` line, relative to ``root``."""
    path = Path(line.split(" ", 3)[3].rsplit(" (was ", 1)[0])
    return str(path.relative_to(root)) if path != root else str(root)


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
