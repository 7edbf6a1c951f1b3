"""A service's stop request: SIGTERM (systemctl stop) or SIGINT sets an event its main loop waits on, and says so."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

__all__ = ["stop_on_signals"]


def stop_on_signals(log: logging.Logger, stopping: str) -> threading.Event:
    """An event set by SIGTERM or SIGINT, each logged on ``log`` as ``signal SIGTERM received: <stopping>``.

    Call it from the main thread (only it may set signal handlers)."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s received: %s", signal.Signals(signum).name, stopping)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop
