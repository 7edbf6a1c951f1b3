"""Call recordings in the console: a supervisor or an admin plays a call's recording; a viewer never gets it.

Asterisk writes each recording as ``<channel id>.wav`` in the recording directory (``asterisk_recording_*``), a
directory whose group the console's user is in. The channel id is the call's id in the records, so a call's
recording is found by name alone; an id that could name anything else (a ``/``, ``..``, a leading dot) finds
nothing. The file is opened without following links and must be a regular file: the directory is Asterisk's, and a
link planted there must not make the console hand out one of its own files. Every playback goes into the web audit
log.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Final

from flask import Blueprint, Response, abort, g, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.wsgi import wrap_file

from centralita.web.auth import client_address, requires
from centralita.web.context import current
from centralita.web.store import Role, User

__all__ = ["open_recording", "recordings"]

log = logging.getLogger(__name__)

CALL_ID: Final = re.compile(r"[0-9A-Za-z_-][0-9A-Za-z._-]{0,127}")

recordings = Blueprint("recordings", __name__)


def open_recording(directory: Path, call_id: str) -> tuple[BinaryIO, int] | None:
    """The call's recording opened for reading, and its size; None when there is none (or the id names nothing)."""
    if not CALL_ID.fullmatch(call_id):
        return None
    try:
        fd = os.open(directory / f"{call_id}.wav", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as problem:
        if problem.errno not in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
            log.error("console cannot open the recording of call %s: %s", call_id, problem)
        return None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "rb"), info.st_size


def _may_play() -> bool:
    user: User | None = g.get("user")
    return user is not None and user.role.at_least(Role.SUPERVISOR)


@recordings.app_context_processor
def recording_helpers() -> dict[str, Callable[[str], str | None]]:
    """``recording_url(call_id)`` for the call page: the player's address, for a user who may play an existing one."""

    def recording_url(call_id: str) -> str | None:
        if not _may_play():
            return None
        found = open_recording(current().settings.recordings_dir, call_id)
        if found is None:
            return None
        found[0].close()
        return url_for("recordings.play", call_id=call_id)

    return {"recording_url": recording_url}


@recordings.route("/historial/<call_id>/grabacion")
@requires(Role.SUPERVISOR)
def play(call_id: str) -> ResponseReturnValue:
    user: User = g.user
    found = open_recording(current().settings.recordings_dir, call_id)
    if found is None:
        abort(404)
    file, size = found
    current().store.audit(
        user.name, "recording_played", target=call_id, detail=f"{size} bytes", client=client_address()
    )
    log.info("console user %s: played the recording of call %s", user.name, call_id)
    response = Response(wrap_file(request.environ, file), mimetype="audio/wav", direct_passthrough=True)
    response.content_length = size
    response.headers["Content-Disposition"] = f'inline; filename="{call_id}.wav"'
    response.headers["Accept-Ranges"] = "none"
    response.headers["Cache-Control"] = "no-store"
    return response
