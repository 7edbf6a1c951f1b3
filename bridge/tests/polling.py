"""Waiting in tests: poll until a condition holds, with a generous deadline (never a fixed sleep), and free ports.

CI runs on a shared, noisy 2-core machine: the deadline is an upper bound that a passing test never reaches, so
it is generous; the interval is short, so a passing test waits no longer than it must.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")

TIMEOUT = 10.0


def wait_for(
    read: Callable[[], T | None], what: str = "the condition", timeout: float = TIMEOUT, interval: float = 0.01
) -> T:
    """Call ``read`` until it returns something truthy, and return that; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on ``host`` now (the kernel's pick; another process may take it before the test binds it)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port
