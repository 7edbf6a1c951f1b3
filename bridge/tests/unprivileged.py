"""Run a callable where file permissions apply, even when the tests run as root."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

NOBODY = 65534


def error_as_unprivileged(attempt: Callable[[], object], error_type: type[Exception]) -> str:
    """The message of the ``error_type`` that ``attempt`` raises, run where permissions apply.

    Root ignores file modes, so as root it runs in a forked child that gave up root first (the child
    reports through a pipe and never returns into pytest).
    """
    if os.geteuid() != 0:
        with pytest.raises(error_type) as caught:
            attempt()
        return str(caught.value)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                attempt()
            except error_type as error:
                os.write(write_end, str(error).encode())
                status = 3
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 3, f"the child did not get a {error_type.__name__}"
    return message
