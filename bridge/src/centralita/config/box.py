"""Every setting of the box from one read of its .env: the bridge's, the routers' and the dialer's.

``load_all`` is how a program starts: it reads the file once and validates all three parts, so a problem in
any of them is found at the first start (and by ``centralita config check`` before the playbook installs
the file), and one ``ConfigError`` lists every problem of every part. ``check`` does the same over values
already read and keeps what did validate, for ``centralita doctor``, which reports each part on its own line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum

from centralita.config.bridge import Settings
from centralita.config.dialer import DialerSettings
from centralita.config.env import DEFAULT_ENV_FILE, ConfigError, EnvFile, EnvReader, read_env_file
from centralita.config.network import NetworkSettings

__all__ = ["BoxSettings", "EnvCheck", "Part", "Problem", "check", "load_all"]


class Part(StrEnum):
    """Which program's settings a problem belongs to."""

    FILE = "file"  # the file itself: a line that does not parse
    BRIDGE = "bridge"  # openai-inbound-calls
    NETWORK = "network"  # the routers and the customer directory
    DIALER = "dialer"  # openai-outbound-calls and centralita campaign


@dataclass(frozen=True, slots=True)
class Problem:
    part: Part
    variable: str  # empty for a problem of the file itself
    message: str


@dataclass(frozen=True, slots=True)
class BoxSettings:
    """The three parts of a valid .env. ``dialer`` is None when DIALER_TIMEZONE is unset: no dialer here."""

    bridge: Settings
    network: NetworkSettings
    dialer: DialerSettings | None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class EnvCheck:
    """What one pass over the values found: each part that validated (None if it did not), every problem."""

    bridge: Settings | None
    network: NetworkSettings | None
    dialer: DialerSettings | None
    problems: tuple[Problem, ...]
    source: str | None = None

    def problems_of(self, *parts: Part) -> tuple[Problem, ...]:
        return tuple(problem for problem in self.problems if problem.part in parts)

    def error(self) -> ConfigError | None:
        """Every problem as one ``ConfigError``, or None when the values are valid."""
        if not self.problems:
            return None
        return ConfigError(
            [problem.message for problem in self.problems],
            self.source,
            [problem.variable for problem in self.problems],
        )

    def settings(self) -> BoxSettings:
        """The valid settings; a ``ConfigError`` with every problem otherwise."""
        error = self.error()
        if error is not None:
            raise error
        if self.bridge is None or self.network is None:  # a part is None only with a problem of its own
            raise ConfigError(["The settings could not be read."], self.source)
        return BoxSettings(self.bridge, self.network, self.dialer, self.source)


def check(env: EnvFile, *, dialer_required: bool = False) -> EnvCheck:
    """Validate the three parts of ``env``; a problem ARI_* gives both the bridge and the dialer is listed once.

    ``dialer_required``: DIALER_TIMEZONE must be set (where the dialer runs); otherwise its absence means
    there is no dialer on this box, and the other DIALER_* variables are still checked.
    """
    problems: list[Problem] = [Problem(Part.FILE, "", message) for message in env.problems()]
    seen: set[tuple[str, str]] = set()

    def collect(part: Part, reader: EnvReader) -> bool:
        for variable, message in zip(reader.variables, reader.problems, strict=True):
            if (variable, message) not in seen:
                seen.add((variable, message))
                problems.append(Problem(part, variable, message))
        return not reader.problems

    reader = EnvReader(env.values)
    bridge = Settings.read(reader)
    bridge_ok = collect(Part.BRIDGE, reader)
    reader = EnvReader(env.values)
    network = NetworkSettings.read(reader)
    network_ok = collect(Part.NETWORK, reader)
    reader = EnvReader(env.values)
    dialer = DialerSettings.read(reader, require_ari=dialer_required, required=dialer_required)
    dialer_ok = collect(Part.DIALER, reader)
    return EnvCheck(
        bridge if bridge_ok else None,
        network if network_ok else None,
        dialer if dialer_ok else None,
        tuple(problems),
        env.source,
    )


def load_all(path: str | os.PathLike[str] = DEFAULT_ENV_FILE, *, dialer_required: bool = False) -> BoxSettings:
    """Read the .env at ``path`` once and validate every part; one ``ConfigError`` lists all the problems."""
    return check(read_env_file(path), dialer_required=dialer_required).settings()
