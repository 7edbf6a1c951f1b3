"""The service's health, written every few seconds to a small JSON file that ``centralita doctor`` reads.

The doctor runs as another process (often as root, from an operator's shell): it cannot ask the service's
memory what it counts. So the service writes a snapshot (``snapshot()``: calls in progress, refusals by reason,
records lost, the budget, whether ARI is connected) to ``/run/centralita/<name>.json``. ``/run`` is a tmpfs:
a full disk does not stop the snapshot, which is exactly when it matters. The file is replaced atomically
(written beside it, then renamed), so a reader never sees half of it; ``updated_at`` lets the reader tell a
stopped service from a running one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

__all__ = ["MAX_STATUS_BYTES", "StatusReporter", "read_status"]

log = logging.getLogger(__name__)

MAX_STATUS_BYTES: Final = 64 * 1024


class StatusReporter:
    """Writes ``snapshot()`` to ``path`` now and every ``interval`` seconds until ``close()``."""

    def __init__(self, path: Path, snapshot: Callable[[], dict[str, Any]], interval: float = 5.0) -> None:
        self._path = path
        self._snapshot = snapshot
        self._interval = interval
        self._stop = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="status", daemon=True)

    def start(self) -> None:
        self.write()
        self._thread.start()

    def write(self) -> None:
        """Write one snapshot now; a failure is logged once and never raised."""
        try:
            state = {"updated_at": datetime.now(UTC).isoformat(timespec="seconds"), "pid": os.getpid()}
            state.update(self._snapshot())
            data = json.dumps(state, ensure_ascii=False, sort_keys=True).encode()
            temporary = self._path.with_name(f".{self._path.name}.{os.getpid()}")
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o640)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
            os.replace(temporary, self._path)
        except Exception as error:
            if not self._failing:
                log.warning("status file %s cannot be written: %s", self._path, error)
            self._failing = True
        else:
            self._failing = False

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        with contextlib.suppress(OSError):
            self._path.unlink()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.write()


def read_status(path: Path) -> dict[str, Any] | None:
    """The snapshot at ``path``, or None when there is none (service stopped) or it cannot be read."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(descriptor, "rb") as handle:
        data = handle.read(MAX_STATUS_BYTES + 1)
    if len(data) > MAX_STATUS_BYTES:
        return None
    try:
        state = json.loads(data)
    except ValueError:
        return None
    return state if isinstance(state, dict) else None
