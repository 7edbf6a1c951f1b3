"""Running the box's commands (``asterisk -rx``, ``systemctl``, ``git``) behind one replaceable interface.

The checks never call ``subprocess`` themselves: they get a ``CommandRunner``, so the tests hand them recorded
output of the real commands instead of needing Asterisk and systemd.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

NOT_FOUND = 127  # what a shell returns for a command that does not exist
TIMED_OUT = 124  # what timeout(1) returns

# asterisk -rx prints this (exit code 1) when no Asterisk daemon listens on its control socket.
ASTERISK_DOWN_MARKER = "Unable to connect to remote asterisk"


@dataclass(frozen=True, slots=True)
class CommandResult:
    """A finished command: exit code and output (stdout and stderr as text)."""

    rc: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def text(self) -> str:
        """stdout, or stderr when stdout is empty: what to show the operator."""
        return (self.stdout.strip() or self.stderr.strip()).strip()


class CommandRunner(Protocol):
    """Runs ``argv`` (no shell) for at most ``timeout`` seconds."""

    def __call__(self, argv: Sequence[str], timeout: float) -> CommandResult: ...


class SubprocessRunner:
    """The real runner: ``subprocess.run`` with the C locale, so the output is the English the parsers expect.

    A missing program gives exit code 127 and a timeout 124, as a shell would; neither raises.
    """

    def __init__(self, extra_env: Mapping[str, str] | None = None) -> None:
        self._extra_env = dict(extra_env or {})

    def __call__(self, argv: Sequence[str], timeout: float) -> CommandResult:
        env = {**os.environ, "LC_ALL": "C", "LANG": "C", "SYSTEMD_PAGER": "", "PAGER": "cat", **self._extra_env}
        try:
            done = subprocess.run(
                list(argv), capture_output=True, text=True, errors="replace", timeout=timeout, check=False, env=env
            )
        except FileNotFoundError:
            return CommandResult(NOT_FOUND, "", f"{argv[0]}: command not found")
        except PermissionError as error:
            return CommandResult(NOT_FOUND, "", f"{argv[0]}: {error.strerror}")
        except subprocess.TimeoutExpired:
            return CommandResult(TIMED_OUT, "", f"{' '.join(argv)}: no answer within {timeout:g} s")
        return CommandResult(done.returncode, done.stdout, done.stderr)


def asterisk_rx(runner: CommandRunner, command: str, timeout: float) -> CommandResult:
    """``asterisk -rx <command>``: one Asterisk CLI command against the running daemon."""
    return runner(["asterisk", "-rx", command], timeout)


def asterisk_down(result: CommandResult) -> bool:
    """Whether an ``asterisk -rx`` result means no daemon answered (not running, or no binary)."""
    return result.rc != 0 or ASTERISK_DOWN_MARKER in result.stdout or ASTERISK_DOWN_MARKER in result.stderr


@dataclass(frozen=True, slots=True)
class UnitState:
    """A systemd unit as ``systemctl show`` describes it."""

    unit: str
    load_state: str  # loaded, not-found, masked, error
    active_state: str  # active, inactive, failed, activating, deactivating, reloading
    sub_state: str  # running, dead, exited, auto-restart...
    user: str = ""
    exec_start: str = ""  # systemd's description of ExecStart, argv included

    @property
    def installed(self) -> bool:
        return self.load_state not in ("not-found", "")

    @property
    def active(self) -> bool:
        return self.active_state == "active"


def unit_state(runner: CommandRunner, unit: str, timeout: float) -> UnitState | str:
    """The unit's state, or the reason it could not be read (systemctl missing, or not answering)."""
    result = runner(
        ["systemctl", "show", "--property=LoadState,ActiveState,SubState,User,ExecStart", "--", f"{unit}.service"],
        timeout,
    )
    if not result.ok:
        return result.text or f"systemctl exited with code {result.rc}"
    values: dict[str, str] = {}
    for line in result.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    if "LoadState" not in values or "ActiveState" not in values:
        return f"unexpected output from systemctl show: {result.text[:200]!r}"
    return UnitState(
        unit,
        values["LoadState"],
        values["ActiveState"],
        values.get("SubState", ""),
        values.get("User", ""),
        values.get("ExecStart", ""),
    )
