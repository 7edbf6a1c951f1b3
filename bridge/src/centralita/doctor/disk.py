"""system.disk: room left on the filesystems the box writes, before a full one stops the log, the records and
Asterisk.

Checked: the directories of the bridge's log file and of its databases (``LOG_FILE``, ``DB_PATH``,
``DIALER_DB_PATH``, ``DIALER_LOG_FILE``), Asterisk's logs, spool and state, the recordings and the journal
(``Options.disk_paths``). A directory that does not exist yet is measured where it would be created (its nearest
existing parent). Each filesystem is reported once, with the directories it holds.

What a full filesystem does is in docs/RELIABILITY.md: the calls go on (the records wait in memory, the log's
lines go to the journal only), but what is not written is lost once the wait is over, and Asterisk's own logs and
recordings fail. The thresholds leave time to act: a WARN below 10 % free (at most 5 GiB asked for on large disks),
a FAIL below 2 % (at least 100 MiB, at most 1 GiB asked for), or a read-only mount; the same for inodes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from centralita.doctor.context import Context
from centralita.doctor.model import Result, Status
from centralita.doctor.probes import Filesystem, FilesystemProbe

__all__ = ["check_disk"]

NAME: Final = "system.disk"
MIB: Final = 1024 * 1024
GIB: Final = 1024 * MIB
WARN_SHARE: Final = 0.10
WARN_MOST: Final = 5 * GIB  # on a large disk, 10 % would warn with weeks of room left
FAIL_SHARE: Final = 0.02
FAIL_LEAST: Final = 100 * MIB
FAIL_MOST: Final = 1 * GIB
INODES_WARN: Final = 0.10
INODES_FAIL: Final = 0.02

# The .env's paths whose directory the services write (their defaults are those of config/).
_ENV_PATHS: Final = (
    ("DB_PATH", "/var/lib/centralita/centralita.db"),
    ("DIALER_DB_PATH", "/var/lib/centralita/dialer.db"),
    ("DIALER_LOG_FILE", "/var/log/asterisk/outbound_openai.log"),
)


@dataclass(frozen=True, slots=True)
class _Measured:
    mount: Path
    holds: list[Path]
    filesystem: Filesystem


def check_disk(ctx: Context) -> list[Result]:
    probe = ctx.options.filesystem
    measured: dict[int, _Measured] = {}
    unreadable: list[str] = []
    for directory in _directories(ctx):
        existing = _existing(directory)
        try:
            filesystem = probe(existing)
        except OSError as error:
            unreadable.append(f"{directory} ({error.strerror or error})")
            continue
        seen = measured.get(filesystem.device)
        if seen is None:
            measured[filesystem.device] = _Measured(
                _mount_point(existing, filesystem.device, probe), [directory], filesystem
            )
        elif directory not in seen.holds:
            seen.holds.append(directory)
    if not measured:
        return [
            Result.warn(NAME, f"no filesystem could be measured: {'; '.join(unreadable)}", "run the doctor as root")
        ]
    judged = [(_judge(item.filesystem), item) for item in measured.values()]
    worst = max((status for (status, _why), _item in judged), key=_rank)
    seen_text = "; ".join(_describe(item, why) for (_status, why), item in judged)
    if unreadable:
        seen_text += f"; not measured: {'; '.join(unreadable)}"
    if worst is Status.OK:
        return [Result.ok(NAME, seen_text)]
    short = [item for (status, _why), item in judged if status is not Status.OK]
    fix = _fix(short)
    if worst is Status.FAIL:
        return [Result.fail(NAME, seen_text, fix)]
    return [Result.warn(NAME, seen_text, fix)]


def _directories(ctx: Context) -> list[Path]:
    wanted = [ctx.log_file.parent]
    for name, default in _ENV_PATHS:
        raw = ctx.env.get(name, default)
        if os.path.isabs(raw):
            wanted.append(Path(raw).parent)
    wanted += ctx.options.disk_paths
    unique: list[Path] = []
    for directory in wanted:
        if directory not in unique:
            unique.append(directory)
    return unique


def _existing(path: Path) -> Path:
    """``path``, or its nearest parent that exists (where it would be created); links are not followed."""
    for candidate in (path, *path.parents):
        try:
            os.lstat(candidate)
        except OSError:
            continue
        return candidate
    return Path("/")


def _mount_point(path: Path, device: int, probe: FilesystemProbe) -> Path:
    mount = path
    for parent in path.parents:
        try:
            if probe(parent).device != device:
                break
        except OSError:
            break
        mount = parent
    return mount


def _thresholds(size: int) -> tuple[int, int]:
    """(fail below, warn below), in bytes available."""
    fail_at = max(FAIL_LEAST, min(int(size * FAIL_SHARE), FAIL_MOST))
    warn_at = max(fail_at, min(int(size * WARN_SHARE), WARN_MOST))
    return fail_at, warn_at


def _judge(filesystem: Filesystem) -> tuple[Status, str]:
    """The status of one filesystem and, when not OK, why."""
    if filesystem.read_only:
        return Status.FAIL, "mounted read-only: nothing can be written there"
    fail_at, warn_at = _thresholds(filesystem.size)
    inodes = filesystem.inodes_available / filesystem.inodes if filesystem.inodes else 1.0
    if filesystem.available < fail_at:
        return Status.FAIL, f"under {_size(fail_at)} free: writes will fail soon"
    if inodes < INODES_FAIL:
        return Status.FAIL, f"under {INODES_FAIL:.0%} of its inodes free: new files will fail soon"
    if filesystem.available < warn_at:
        return Status.WARN, f"under {_size(warn_at)} free"
    if inodes < INODES_WARN:
        return Status.WARN, f"under {INODES_WARN:.0%} of its inodes free (many small files)"
    return Status.OK, ""


def _describe(item: _Measured, why: str) -> str:
    filesystem = item.filesystem
    share = filesystem.available / filesystem.size if filesystem.size else 0.0
    text = (
        f"{item.mount} (holding {', '.join(str(path) for path in item.holds)}): {_size(filesystem.available)} free "
        f"of {_size(filesystem.size)} ({share:.0%})"
    )
    if filesystem.inodes:
        text += f", {filesystem.inodes_available / filesystem.inodes:.0%} of inodes free"
    return f"{text}: {why}" if why else text


def _fix(short: list[_Measured]) -> str:
    mounts = " ".join(str(item.mount) for item in short)
    if all(item.filesystem.read_only for item in short):
        return (
            f"a filesystem remounted read-only after disk errors needs the disk checked: dmesg | grep -iE "
            f"'error|remount'; findmnt {mounts}; then fix it and reboot. The calls go on meanwhile, without records"
        )
    return (
        f"see what fills it: du -xh --max-depth=2 {mounts} 2>/dev/null | sort -h | tail -n 15; then, as needed: "
        "journalctl --vacuum-size=200M; rm /var/log/asterisk/*.[0-9]*.gz (rotated logs); centralita records purge "
        "--older-than-days <days> (the daily timer keeps bridge_records_retention_days); old recordings under "
        "/var/spool/centralita/recordings (kept asterisk_recording_retention_days); or give the filesystem more room"
    )


def _size(size: int) -> str:
    return f"{size / GIB:.1f} GiB" if size >= GIB else f"{size // MIB} MiB"


def _rank(status: Status) -> int:
    return (Status.OK, Status.WARN, Status.FAIL).index(status)
