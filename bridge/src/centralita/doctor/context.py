"""The inputs of one doctor run (paths, timeouts, the probes) and what every check shares: the ``.env``
as read, the SIP driver, whether Asterisk answers.

Everything the checks touch comes from ``Options``, so a test points them at temporary directories, a
recorded ``asterisk -rx`` and local servers. A ``Context`` lives for one run: ``--fix`` builds a fresh one
to check again after repairing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path

from centralita.config.box import EnvCheck, check
from centralita.config.bridge import Settings
from centralita.config.env import DEFAULT_ENV_FILE as ENV_FILE
from centralita.config.env import ConfigError, read_env_file
from centralita.doctor.commands import (
    CommandResult,
    CommandRunner,
    SubprocessRunner,
    UnitState,
    asterisk_down,
    asterisk_rx,
    unit_state,
)
from centralita.doctor.probes import (
    FilesystemProbe,
    Resolver,
    RouteLookup,
    filesystem_of,
    kernel_route,
    system_resolve,
)
from centralita.doctor.sipconf import Driver, SipSetup, Trunk, detect_driver, read_trunk

DEFAULT_ENV_FILE = Path(ENV_FILE)
DEFAULT_APP_DIR = DEFAULT_ENV_FILE.parent  # the role keeps the .env in the app directory
DEFAULT_ASTERISK_DIR = Path("/etc/asterisk")
DEFAULT_LOG_FILE = Path("/var/log/asterisk/inbound_openai.log")
DEFAULT_ARI_SECRET_FILE = Path("/etc/centralita/ari-password")
DEFAULT_INBOUND_CONTEXT = "from-voip"
INBOUND_UNIT = "openai-inbound-calls"
OUTBOUND_UNIT = "openai-outbound-calls"
ASTERISK_UNIT = "asterisk"
# Where Asterisk and the box write besides the paths the .env names: Asterisk's logs, spool (voicemail, call
# files, monitor) and state, the call recordings and the campaign requests, the journal.
DEFAULT_DISK_PATHS = (
    Path("/var/log/asterisk"),
    Path("/var/spool/asterisk"),
    Path("/var/lib/asterisk"),
    Path("/var/spool/centralita"),
    Path("/var/log/journal"),
)


@dataclass(frozen=True, slots=True)
class Options:
    """Where everything is and how to reach it; the defaults are the box's real paths and commands."""

    env_file: Path = DEFAULT_ENV_FILE
    asterisk_dir: Path = DEFAULT_ASTERISK_DIR
    app_dir: Path = DEFAULT_APP_DIR
    log_file: Path | None = None  # None: LOG_FILE from the .env, else DEFAULT_LOG_FILE
    log_hours: float = 24.0  # how far back bridge.log counts errors
    timeout: float = 5.0  # per command, HTTP request and router login
    asterisk_user: str = "asterisk"
    asterisk_group: str = "asterisk"
    config_mode: int = 0o640  # what the role gives the files it renders under asterisk_dir
    ari_secret_file: Path = DEFAULT_ARI_SECRET_FILE  # named in the ARI fix; never read
    settle_seconds: float = 15.0  # how long --fix waits for a service it started to come up
    runner: CommandRunner = field(default_factory=SubprocessRunner)
    resolve: Resolver = system_resolve
    route: RouteLookup = kernel_route
    now: Callable[[], datetime] = datetime.now
    disk_paths: tuple[Path, ...] = DEFAULT_DISK_PATHS  # besides the log file's and the databases' directories
    filesystem: FilesystemProbe = filesystem_of


@dataclass(frozen=True, slots=True)
class EnvState:
    """The ``.env`` as read once: its raw values (even when they do not validate) and what validated."""

    path: Path
    values: Mapping[str, str]
    check: EnvCheck | None  # None when the file could not be read
    read_error: str = ""  # why the file could not be read (missing, unreadable, not UTF-8)

    @property
    def settings(self) -> Settings | None:
        """The bridge's settings, when they validate."""
        return self.check.bridge if self.check is not None else None

    @property
    def secrets(self) -> list[str]:
        """Every secret value in the file, for the report to hide wherever a check might echo one."""
        names = ["OPENAI_API_KEY", "ARI_PASSWORD"]
        names += [name for name in self.values if name.startswith("ROUTEROS_") and name.endswith("_PASSWORD")]
        return [value for name in names if (value := self.get(name))]

    def get(self, name: str, default: str = "") -> str:
        """The stripped raw value, or ``default`` when unset or blank (as the settings treat blanks)."""
        value = self.values.get(name, "").strip()
        return value or default


def load_env(path: Path) -> EnvState:
    """Read the file once: its raw values, so every check has them, and what of them validates."""
    try:
        env = read_env_file(path)
    except ConfigError as error:
        return EnvState(path, {}, None, error.problems[0])
    values = {name: value for name, value in env.values.items() if value is not None}
    return EnvState(path, values, check(env))


class Context:
    """One run's shared, lazily computed facts. Not shared between runs or threads."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.env = load_env(options.env_file)
        self._units: dict[str, UnitState | str] = {}

    def rx(self, command: str) -> CommandResult:
        """``asterisk -rx <command>`` with the run's timeout."""
        return asterisk_rx(self.options.runner, command, self.options.timeout)

    def unit(self, name: str) -> UnitState | str:
        """``systemctl show`` of ``name``.service (cached for the run), or why it could not be read."""
        if name not in self._units:
            self._units[name] = unit_state(self.options.runner, name, self.options.timeout)
        return self._units[name]

    @cached_property
    def asterisk_version(self) -> CommandResult:
        """``asterisk -rx 'core show version'``: the running daemon's answer, or why it did not answer."""
        return self.rx("core show version")

    @property
    def asterisk_running(self) -> bool:
        return not asterisk_down(self.asterisk_version)

    @cached_property
    def sip(self) -> SipSetup:
        def binary_version() -> str | None:
            if self.asterisk_running:
                return self.asterisk_version.stdout
            result = self.options.runner(["asterisk", "-V"], self.options.timeout)
            return result.stdout if result.ok else None

        return detect_driver(self.options.asterisk_dir, binary_version)

    @cached_property
    def trunk(self) -> Trunk | str:
        """The trunk from the driver's file, or why it could not be read."""
        driver: Driver = self.sip.driver
        try:
            return read_trunk(self.options.asterisk_dir, driver)
        except FileNotFoundError:
            return f"{self.options.asterisk_dir / driver.trunk_file} does not exist"
        except OSError as error:
            return f"{self.options.asterisk_dir / driver.trunk_file} cannot be read ({error.strerror})"
        except UnicodeDecodeError:
            return f"{self.options.asterisk_dir / driver.trunk_file} is not valid UTF-8"

    @property
    def inbound_context(self) -> str:
        trunk = self.trunk
        if isinstance(trunk, Trunk) and trunk.context:
            return trunk.context
        return DEFAULT_INBOUND_CONTEXT

    @property
    def log_file(self) -> Path:
        if self.options.log_file is not None:
            return self.options.log_file
        raw = self.env.get("LOG_FILE")
        return Path(raw) if raw and os.path.isabs(raw) else DEFAULT_LOG_FILE
