"""The dialer's settings: the ``DIALER_*`` variables of the box's ``.env`` (and the ARI ones it shares).

Variables, with their defaults (docs/DIALER.md explains each rule)::

    DIALER_TIMEZONE=America/Mexico_City     required: the customers' time zone (IANA name)
    DIALER_WINDOWS=mon-fri 08:00-19:00; sat 08:00-15:00
    DIALER_WINDOW_END_MARGIN=10m            no call starts this close to the end of a window
    DIALER_HOLIDAYS=                        YYYY-MM-DD (that day) or MM-DD (every year), comma separated
    DIALER_MAX_PER_DAY=1                    dials per customer (and per number) per local day
    DIALER_MAX_PER_WEEK=7                   dials per customer in any 7 consecutive days
    DIALER_MAX_ATTEMPTS=10                  dials per customer per campaign, then the customer is exhausted
    DIALER_RETRY_INTERVAL=4h                after busy, no answer, machine or failure
    DIALER_COOLDOWN=7d                      after a conversation or a promise to pay
    DIALER_MAX_CONCURRENT=2                 calls at once, all campaigns together
    DIALER_CALLS_PER_MINUTE=4               new calls per minute, all campaigns together
    DIALER_CALLER_ID=                       e.g. "ISP Demo" <+525550000000>; empty: the trunk's own number
    DIALER_COUNTRY_CODE=                    e.g. 52: national numbers (imports, opt-outs, caller IDs) are +52...
    DIALER_DB_PATH=/var/lib/centralita/dialer.db
    DIALER_LOG_FILE=/var/log/asterisk/outbound_openai.log
    DIALER_ON_MACHINE=nothing               nothing | message (a short message without any debt detail)
    DIALER_TRUNK=provider                   the PJSIP endpoint of the SIP trunk
    DIALER_ENDPOINT=PJSIP/{number}@{trunk}  what ARI dials ({number}: E.164 with +, {digits}: without it;
                                            {trunk}: DIALER_TRUNK)
    DIALER_CONTEXT=                         empty: answered calls go straight to the Stasis app ARI_APP;
                                            set: they run this dialplan context first (AMD, see DIALER.md)
    DIALER_EXTENSION=s                      the extension in DIALER_CONTEXT
    DIALER_RING_TIMEOUT=30                  seconds the phone rings before the attempt is "no-answer"
    DIALER_EVENTS_APP=centralita-dialer     the ARI application the dialer follows its calls with
    ARI_URL, ARI_USER, ARI_PASSWORD, ARI_APP  as for openai-inbound-calls (ARI_PASSWORD only for the service)

The file is read with ``dotenv_values`` (never into ``os.environ``), like the bridge's own settings.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Final, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values

from centralita.config.bridge import ConfigError, Secret
from centralita.dialer.policy import CallingPolicy, Window, parse_duration, parse_holidays, parse_windows
from centralita.isp.phones import region_for_country_code

__all__ = ["DEFAULT_ENV_FILE", "DEFAULT_WINDOWS", "DialerSettings", "MachinePolicy", "read_env_file"]

DEFAULT_ENV_FILE: Final = "/usr/local/asterisk/.env"
DEFAULT_WINDOWS: Final = "mon-fri 08:00-19:00; sat 08:00-15:00"
_HIDDEN_CALLER_IDS: Final = frozenset({"anonymous", "private", "privado", "restricted", "unknown", "unavailable"})
_CALLER_ID = re.compile(r'^(?:"?(?P<name>[^"<>]{1,40})"?\s*)?<?(?P<number>\+?[0-9]{3,15})>?$')
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,80}$")
T = TypeVar("T")


def _is_country_code(code: str) -> bool:
    try:
        return region_for_country_code(code) is not None
    except ValueError:
        return False


class MachinePolicy(StrEnum):
    """What to do when an answering machine picks up."""

    NOTHING = "nothing"  # hang up, leave no message
    MESSAGE = "message"  # leave a short message that names the company and says nothing about a debt


@dataclass(frozen=True, slots=True)
class DialerSettings:
    """Validated dialer settings. Build with ``load`` or ``from_values``; the constructor checks nothing."""

    timezone: ZoneInfo
    policy: CallingPolicy
    max_concurrent: int
    calls_per_minute: int
    caller_id: str
    country_code: str
    db_path: Path
    log_file: Path
    on_machine: MachinePolicy
    trunk: str
    endpoint: str
    context: str
    extension: str
    ring_timeout: int
    events_app: str
    ari_url: str
    ari_user: str
    ari_password: Secret
    ari_app: str

    def dial_string(self, number: str) -> str:
        """The ARI ``endpoint`` for an E.164 number, e.g. ``PJSIP/+5215550001111@provider``."""
        return self.endpoint.format(number=number, digits=number.lstrip("+"), trunk=self.trunk)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, require_ari: bool = False) -> DialerSettings:
        """Read the .env file at ``path``; ``require_ari``: the service needs ARI_PASSWORD, the CLI does not."""
        return cls.from_values(read_env_file(path), source=str(path), require_ari=require_ari)

    @classmethod
    def from_values(
        cls, values: Mapping[str, str | None], *, source: str | None = None, require_ari: bool = False
    ) -> DialerSettings:
        """Validate raw values (name -> text); every problem goes into one ``ConfigError``."""
        read = _Reader(values)
        timezone = read.timezone("DIALER_TIMEZONE")
        windows = read.parsed(
            "DIALER_WINDOWS", DEFAULT_WINDOWS, parse_windows, "e.g. DIALER_WINDOWS=" + DEFAULT_WINDOWS
        )
        holidays = read.parsed("DIALER_HOLIDAYS", "", parse_holidays, "e.g. DIALER_HOLIDAYS=2026-12-25,01-01")
        max_per_day = read.integer("DIALER_MAX_PER_DAY", 1, 1, 10)
        max_per_week = read.integer("DIALER_MAX_PER_WEEK", 7, 1, 70)
        max_attempts = read.integer("DIALER_MAX_ATTEMPTS", 10, 1, 1000)
        retry = read.duration("DIALER_RETRY_INTERVAL", "4h", timedelta(minutes=5))
        cooldown = read.duration("DIALER_COOLDOWN", "7d", timedelta(0))
        margin = read.duration("DIALER_WINDOW_END_MARGIN", "10m", timedelta(0))
        if max_per_week < max_per_day and read.valid("DIALER_MAX_PER_DAY", "DIALER_MAX_PER_WEEK"):
            read.fail(
                "DIALER_MAX_PER_WEEK",
                f"DIALER_MAX_PER_WEEK ({max_per_week}) is below DIALER_MAX_PER_DAY ({max_per_day}): "
                "raise DIALER_MAX_PER_WEEK or lower DIALER_MAX_PER_DAY.",
            )
        policy = CallingPolicy((Window(frozenset({0}), 0, 60),))
        if read.valid("DIALER_WINDOWS", "DIALER_WINDOW_END_MARGIN"):
            try:
                policy = CallingPolicy(
                    windows=windows,
                    holidays=holidays,
                    max_per_day=max_per_day,
                    max_per_week=max_per_week,
                    max_attempts=max_attempts,
                    retry_interval=retry,
                    cooldown=cooldown,
                    end_margin=margin,
                )
            except ValueError as error:
                read.fail(
                    "DIALER_WINDOW_END_MARGIN",
                    f"DIALER_WINDOW_END_MARGIN does not fit DIALER_WINDOWS ({error}): lower the margin, "
                    "e.g. DIALER_WINDOW_END_MARGIN=10m, or widen the windows.",
                )
        endpoint = read.text("DIALER_ENDPOINT", "PJSIP/{number}@{trunk}")
        if "{number}" not in endpoint and "{digits}" not in endpoint:
            read.fail(
                "DIALER_ENDPOINT",
                f"DIALER_ENDPOINT is {endpoint!r}, without {{number}} or {{digits}}: "
                "set e.g. DIALER_ENDPOINT=PJSIP/{number}@{trunk}.",
            )
        else:
            try:
                endpoint.format(number="+10000000", digits="10000000", trunk="provider")
            except (KeyError, IndexError, ValueError):
                read.fail(
                    "DIALER_ENDPOINT",
                    f"DIALER_ENDPOINT is {endpoint!r}: only {{number}}, {{digits}} and {{trunk}} may appear in braces, "
                    "e.g. DIALER_ENDPOINT=PJSIP/{number}@{trunk}.",
                )
        settings = cls(
            timezone=timezone,
            policy=policy,
            max_concurrent=read.integer("DIALER_MAX_CONCURRENT", 2, 1, 50),
            calls_per_minute=read.integer("DIALER_CALLS_PER_MINUTE", 4, 1, 120),
            caller_id=read.caller_id("DIALER_CALLER_ID"),
            country_code=read.country_code("DIALER_COUNTRY_CODE"),
            db_path=read.path("DIALER_DB_PATH", "/var/lib/centralita/dialer.db"),
            log_file=read.path("DIALER_LOG_FILE", "/var/log/asterisk/outbound_openai.log"),
            on_machine=read.machine("DIALER_ON_MACHINE"),
            trunk=read.name("DIALER_TRUNK", "provider"),
            endpoint=endpoint,
            context=read.name("DIALER_CONTEXT", ""),
            extension=read.name("DIALER_EXTENSION", "s"),
            ring_timeout=read.integer("DIALER_RING_TIMEOUT", 30, 5, 120),
            events_app=read.name("DIALER_EVENTS_APP", "centralita-dialer"),
            ari_url=read.url("ARI_URL", "http://127.0.0.1:8088"),
            ari_user=read.text("ARI_USER", "centralita"),
            ari_password=read.secret("ARI_PASSWORD", required=require_ari),
            ari_app=read.name("ARI_APP", "centralita"),
        )
        if settings.events_app == settings.ari_app and read.valid("DIALER_EVENTS_APP", "ARI_APP"):
            read.fail(
                "DIALER_EVENTS_APP",
                f"DIALER_EVENTS_APP is {settings.events_app!r}, the same as ARI_APP: the dialer needs an ARI "
                "application of its own (a second connection would take the calls from openai-inbound-calls). "
                "Set DIALER_EVENTS_APP=centralita-dialer.",
            )
        if read.problems:
            raise ConfigError(read.problems, source)
        return settings


def read_env_file(path: str | os.PathLike[str]) -> dict[str, str | None]:
    """The variables of a .env file, without interpolation; a missing or unreadable file is a ``ConfigError``."""
    env_path = Path(path)
    if not env_path.is_file():
        what = "is a directory" if env_path.is_dir() else "does not exist"
        raise ConfigError(
            [f"The configuration file {env_path} {what}: give the path of the box's .env file (--env-file)."]
        )
    try:
        return dict(dotenv_values(env_path, interpolate=False))
    except OSError as error:
        raise ConfigError(
            [f"The configuration file {env_path} cannot be read ({error.strerror}): check its owner and mode."]
        ) from None
    except UnicodeDecodeError:
        raise ConfigError([f"The configuration file {env_path} is not valid UTF-8: save it as UTF-8 text."]) from None


class _Reader:
    """Reads one variable at a time and records every problem; each reader returns a usable stand-in."""

    def __init__(self, values: Mapping[str, str | None]) -> None:
        self._values = values
        self._invalid: set[str] = set()
        self.problems: list[str] = []

    def valid(self, *names: str) -> bool:
        return self._invalid.isdisjoint(names)

    def fail(self, name: str, message: str) -> None:
        self._invalid.add(name)
        self.problems.append(message)

    def raw(self, name: str) -> str | None:
        value = self._values.get(name)
        if value is None or not value.strip():
            return None
        return value.strip()

    def text(self, name: str, default: str) -> str:
        return self.raw(name) or default

    def timezone(self, name: str) -> ZoneInfo:
        raw = self.raw(name)
        if raw is None:
            self.fail(
                name,
                f"{name} is missing: set the customers' time zone, e.g. {name}=America/Mexico_City "
                "(calling windows are local times; the dialer does not guess them from the server's clock).",
            )
            return ZoneInfo("UTC")
        try:
            return ZoneInfo(raw)
        except (ZoneInfoNotFoundError, ValueError):
            self.fail(
                name,
                f"{name} is {raw!r}, which is not a time zone name: use an IANA name such as America/Mexico_City, "
                "America/Bogota or America/Lima (and install the tzdata package if it is missing).",
            )
            return ZoneInfo("UTC")

    def parsed(self, name: str, default: str, parse: Callable[[str], T], example: str) -> T:
        raw = self.raw(name) or default
        try:
            return parse(raw)
        except ValueError as error:
            self.fail(name, f"{name} is {raw!r}: {error}; {example}.")
            return parse(default)

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            self.fail(
                name, f"{name} is {raw!r}: it must be a whole number from {low} to {high}, e.g. {name}={default}."
            )
            return default
        return value

    def duration(self, name: str, default: str, minimum: timedelta) -> timedelta:
        raw = self.raw(name) or default
        try:
            value = parse_duration(raw)
        except ValueError as error:
            self.fail(name, f"{name}: {error} (e.g. {name}={default}).")
            return parse_duration(default)
        if value < minimum:
            self.fail(name, f"{name} is {raw!r}: it must be at least {minimum}, e.g. {name}={default}.")
            return parse_duration(default)
        return value

    def caller_id(self, name: str) -> str:
        raw = self.raw(name)
        if raw is None:
            return ""
        match = _CALLER_ID.match(raw)
        if raw.strip('"<> ').lower() in _HIDDEN_CALLER_IDS or match is None:
            self.fail(
                name,
                f"{name} is {raw!r}: it must show a number the customer can call back, e.g. "
                f'{name}="ISP Demo" <+525550000000>, or be empty to use the trunk\'s number. '
                "A hidden or private caller ID is not allowed for collection calls.",
            )
            return ""
        number = match.group("number")
        caller_name = (match.group("name") or "").strip()
        return f'"{caller_name}" <{number}>' if caller_name else number

    def country_code(self, name: str) -> str:
        raw = self.raw(name)
        if raw is None:
            return ""
        code = raw.lstrip("+")
        if not re.fullmatch(r"[1-9][0-9]{0,2}", code) or not _is_country_code(code):
            self.fail(name, f"{name} is {raw!r}: give the country calling code, 1 to 3 digits, e.g. {name}=52.")
            return ""
        return code

    def path(self, name: str, default: str) -> Path:
        raw = self.raw(name)
        if raw is None:
            return Path(default)
        if not os.path.isabs(raw):
            self.fail(name, f"{name} is {raw!r}, a relative path: set an absolute path, e.g. {name}={default}.")
            return Path(default)
        return Path(raw)

    def machine(self, name: str) -> MachinePolicy:
        raw = self.raw(name)
        if raw is None:
            return MachinePolicy.NOTHING
        try:
            return MachinePolicy(raw.lower())
        except ValueError:
            self.fail(name, f"{name} is {raw!r}: it must be nothing or message, e.g. {name}=nothing.")
            return MachinePolicy.NOTHING

    def name(self, name: str, default: str) -> str:
        raw = self.raw(name)
        if raw is None:
            return default
        if not _NAME.match(raw):
            self.fail(
                name,
                f"{name} is {raw!r}: use letters, digits, '.', '_' or '-' only"
                + (f", e.g. {name}={default}." if default else "."),
            )
            return default
        return raw

    def url(self, name: str, default: str) -> str:
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            parts = urlsplit(raw)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            self.fail(name, f"{name} is {raw!r}, which is not an http:// URL with a host: set e.g. {name}={default}.")
            return default
        return raw

    def secret(self, name: str, *, required: bool) -> Secret:
        raw = self.raw(name)
        if raw is None:
            if required:
                self.fail(name, f"{name} is missing: set {name}=<the password of ARI_USER in Asterisk's ari.conf>.")
            return Secret("")
        return Secret(raw)
