"""Giving up root before touching state another user owns.

The operator's commands (``centralita campaign ...``, ``centralita records ...``) are often run with sudo: the
settings file they read is private to root and the service user. Their state, though, lives in the service
user's directory (``/var/lib/centralita``), where that user may put anything, a symbolic link included: root
opening, creating or changing files there would follow it wherever it points (``dialer.db-shm`` linked to
``/etc/shadow``, and root's SQLite writes it or a chown hands it over). So before opening its database such a
command becomes the owner of the database's directory, for good: after that it can do nothing that user could
not do on their own.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

__all__ = ["become_owner_of", "running_as_root"]


def running_as_root() -> bool:
    return os.geteuid() == 0


def become_owner_of(directory: Path) -> str | None:
    """When running as root, switch this process to the owner of ``directory`` for the rest of its life.

    The group becomes the directory owner's primary group and the supplementary groups are dropped. Returns the
    user name switched to, or None when nothing changed: not root, the directory is root's (nobody else can
    plant anything in it), or it does not exist (opening the database then fails with its own message).
    """
    if not running_as_root():
        return None
    try:
        owner = os.stat(directory).st_uid
    except OSError:
        return None
    if owner == 0:
        return None
    try:
        account = pwd.getpwuid(owner)
        name, gid = account.pw_name, account.pw_gid
    except KeyError:
        name, gid = str(owner), os.stat(directory).st_gid
    # Groups first: once the user id is not root, they can no longer be changed.
    os.setgroups([])
    os.setgid(gid)
    os.setuid(owner)
    if os.geteuid() == 0 or os.getegid() != gid:
        raise PermissionError(f"could not give up root for {name} (uid {owner})")
    return name
