"""``centralita doctor --output FILE``: the JSON report kept in a file for the web console's Salud page.

The doctor runs as root (a systemd timer, ``centralita-doctor.timer``); the console, a less trusted user, only
reads what it wrote. So root writes only where nobody else can: the file's directory must be root's and not
writable by group or others (the role makes it ``root:<service group>`` 2750, so the file is readable by the
group and by nobody else), the directory is opened without following links and the file is written beside its
final name and renamed over it, so a reader never sees half a report.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["PublishError", "publish"]


class PublishError(OSError):
    """The report cannot be written where asked; the message says why and the fix."""


def publish(report: dict[str, Any], path: Path, now: datetime | None = None) -> None:
    """Write ``report`` with its ``generated_at`` time into ``path`` (see the module's description)."""
    directory = path.parent
    try:
        info = os.lstat(directory)
    except OSError as error:
        raise PublishError(
            f"{directory} cannot be used for the doctor's report ({error.strerror}): create it "
            "as root's (install -d -o root -g centralita -m 2750 DIR) or run site.yml"
        ) from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o022:
        raise PublishError(
            f"{directory} is not a directory of root's that only root may write (owner uid {info.st_uid}, mode "
            f"{stat.S_IMODE(info.st_mode):o}): root writes the doctor's report only there. Fix it: chown root "
            f"{directory}; chmod go-w {directory} (the role makes it root:centralita 2750)."
        )
    data = json.dumps(
        {**report, "generated_at": (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")},
        indent=2,
        ensure_ascii=False,
    ).encode()
    directory_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    temporary = f".{path.name}.{os.getpid()}.tmp"
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary, dir_fd=directory_fd)
        fd = os.open(
            temporary,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o640,
            dir_fd=directory_fd,
        )
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o640)  # whatever the umask
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(temporary, path.name, src_dir_fd=directory_fd, dst_dir_fd=directory_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=directory_fd)
        raise
    finally:
        os.close(directory_fd)
