"""The bridge's settings, read from a .env file and validated in one pass.

The file is read with ``dotenv_values`` rather than ``load_dotenv`` so that the secrets it holds never
enter ``os.environ``, where every child process and ``/proc/<pid>/environ`` could see them; ``${VAR}``
interpolation is off for the same reason (it would read the process environment). Every problem is
collected before raising, so one failed start lists everything that needs fixing, and no value of a
secret ever appears in a repr, a str or an error message.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import NoReturn, Self
from urllib.parse import urlsplit

from dotenv import dotenv_values

_MASK = "**********"


class ConfigError(ValueError):
    """The configuration is unusable; ``problems`` holds one message per problem, each naming its fix."""

    def __init__(self, problems: Sequence[str], source: str | None = None) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        self.source = source
        where = f" in {source}" if source else ""
        count = len(self.problems)
        header = f"Invalid Centralita configuration{where} ({count} problem{'' if count == 1 else 's'}):"
        super().__init__("\n".join([header, *(f"  - {problem}" for problem in self.problems)]))


class Secret:
    """A string that hides itself from repr(), str() and f-strings, so logging a Settings is safe.

    Call ``reveal()`` only where the value is really sent (an HTTP header, a login).
    """

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str) -> None:
        object.__setattr__(self, "_value", value)

    def reveal(self) -> str:
        """Return the secret itself."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{_MASK}')"

    def __str__(self) -> str:
        return _MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("Secret is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("Secret is immutable")

    # Immutable, so copies may share it; without these copy/deepcopy (and dataclasses.asdict) would try
    # to set the slot through __setattr__ and fail.
    def __copy__(self) -> Self:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Self:
        return self


class FailureAction(StrEnum):
    """What to do with a call when the Realtime API cannot be reached or drops mid-call."""

    TRANSFER = "transfer"  # send the caller to a human (OPERATOR_CONTEXT)
    HANGUP = "hangup"


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated settings; each field is read from the environment variable of the same name in capitals.

    Build it with ``Settings.load(path)`` (or ``Settings.from_values`` when the values are already at hand):
    those apply the defaults and the validation, the constructor does neither.
    """

    openai_api_key: Secret
    openai_base_url: str
    openai_model: str
    openai_voice: str
    ari_url: str
    ari_user: str
    ari_password: Secret
    ari_app: str
    rtp_bind_address: str
    ws_ping_interval: float
    ws_ping_timeout: float
    log_file: Path
    db_path: Path
    operator_context: str
    failover_context: str
    on_realtime_failure: FailureAction

    @classmethod
    def load(cls, path: str | os.PathLike[str], overrides: Mapping[str, str] | None = None) -> Settings:
        """Read ``path`` (a .env file) and apply ``overrides`` (variable name -> value) on top of it."""
        env_path = Path(path)
        if not env_path.exists():
            raise ConfigError(
                [
                    f"The configuration file {env_path} does not exist: create it (it needs at least "
                    "OPENAI_API_KEY and ARI_PASSWORD) or point the bridge at the right file."
                ]
            )
        if env_path.is_dir():
            raise ConfigError([f"The configuration file {env_path} is a directory: give the path of the .env file."])
        try:
            values: dict[str, str | None] = dotenv_values(env_path, interpolate=False)
        except OSError as error:
            raise ConfigError(
                [f"The configuration file {env_path} cannot be read ({error.strerror}): check its owner and mode."]
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(
                [f"The configuration file {env_path} is not valid UTF-8: save it as UTF-8 text."]
            ) from None
        return cls.from_values({**values, **(overrides or {})}, overrides=overrides or {}, source=str(env_path))

    @classmethod
    def from_values(
        cls,
        values: Mapping[str, str | None],
        *,
        overrides: Mapping[str, str] | None = None,
        source: str | None = None,
    ) -> Settings:
        """Validate raw values (variable name -> text); unknown names are ignored, except in ``overrides``.

        ``overrides`` only serves to report misspelt override names, which would otherwise be silently
        ignored; a .env file may carry variables meant for other programs, so unknown names there are fine.
        """
        reader = _Reader(values)
        known = sorted(field.name.upper() for field in fields(cls))
        for name in sorted(set(overrides or {}) - set(known)):
            reader.problems.append(f"{name} is not a setting (given as an override): use one of {', '.join(known)}.")

        settings = cls(
            openai_api_key=reader.secret("OPENAI_API_KEY", "the API key from https://platform.openai.com/api-keys"),
            openai_base_url=reader.url("OPENAI_BASE_URL", "wss://api.openai.com/v1/realtime", ("ws", "wss")),
            openai_model=reader.text("OPENAI_MODEL", "gpt-realtime"),
            openai_voice=reader.text("OPENAI_VOICE", "marin"),
            ari_url=reader.url("ARI_URL", "http://127.0.0.1:8088", ("http", "https")),
            ari_user=reader.text("ARI_USER", "centralita"),
            ari_password=reader.secret("ARI_PASSWORD", "the password of ARI_USER in Asterisk's ari.conf"),
            ari_app=reader.text("ARI_APP", "centralita"),
            rtp_bind_address=reader.ip_address("RTP_BIND_ADDRESS", "127.0.0.1"),
            ws_ping_interval=reader.seconds("WS_PING_INTERVAL", 20.0),
            ws_ping_timeout=reader.seconds("WS_PING_TIMEOUT", 10.0),
            log_file=reader.path("LOG_FILE", "/var/log/asterisk/inbound_openai.log"),
            db_path=reader.path("DB_PATH", "/var/lib/centralita/centralita.db"),
            operator_context=reader.text("OPERATOR_CONTEXT", "centralita-operator"),
            failover_context=reader.text("FAILOVER_CONTEXT", "centralita-unavailable"),
            on_realtime_failure=reader.choice("ON_REALTIME_FAILURE", FailureAction.TRANSFER),
        )
        interval, timeout = settings.ws_ping_interval, settings.ws_ping_timeout
        if reader.valid("WS_PING_INTERVAL", "WS_PING_TIMEOUT") and interval <= timeout:
            reader.problems.append(
                f"WS_PING_INTERVAL ({interval:g}) must be greater than WS_PING_TIMEOUT ({timeout:g}): "
                'websocket-client refuses to start otherwise ("Ensure ping_interval > ping_timeout"). '
                "Set WS_PING_INTERVAL=20 and WS_PING_TIMEOUT=10, for example."
            )
        if reader.problems:
            raise ConfigError(reader.problems, source)
        return settings


def _is_url(text: str, schemes: tuple[str, ...]) -> bool:
    """Whether ``text`` is a URL with one of ``schemes``, a host and, if any, a valid port."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - the property raises ValueError for a port that is not a number in range
    except ValueError:
        return False
    return parts.scheme in schemes and bool(parts.hostname)


class _Reader:
    """Reads one variable at a time, recording problems instead of raising so all are reported together.

    On a problem each reader returns a stand-in of the right type; ``from_values`` raises before any
    stand-in can escape.
    """

    def __init__(self, values: Mapping[str, str | None]) -> None:
        self._values = values
        self._invalid: set[str] = set()
        self.problems: list[str] = []

    def valid(self, *names: str) -> bool:
        """Whether every one of ``names`` was read without a problem."""
        return self._invalid.isdisjoint(names)

    def _fail(self, name: str, message: str) -> None:
        self._invalid.add(name)
        self.problems.append(message)

    def _raw(self, name: str) -> str | None:
        """The stripped value, or None when unset or blank (blank means "use the default")."""
        value = self._values.get(name)
        if value is None or not value.strip():
            return None
        return value.strip()

    def secret(self, name: str, what: str) -> Secret:
        raw = self._raw(name)
        if raw is None:
            self._fail(name, f"{name} is missing: set {name}=<{what}> in the .env file.")
            return Secret("")
        return Secret(raw)

    def text(self, name: str, default: str) -> str:
        return self._raw(name) or default

    def url(self, name: str, default: str, schemes: tuple[str, ...]) -> str:
        raw = self._raw(name)
        if raw is None:
            return default
        if not _is_url(raw, schemes):
            kinds = " or ".join(f"{scheme}://" for scheme in schemes)
            self._fail(name, f"{name} is {raw!r}, which is not a {kinds} URL with a host: set e.g. {name}={default}.")
            return default
        return raw

    def ip_address(self, name: str, default: str) -> str:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            return str(ipaddress.ip_address(raw))
        except ValueError:
            self._fail(
                name,
                f"{name} is {raw!r}, which is not an IP address: set the address to receive RTP on, "
                f"e.g. {name}={default}.",
            )
            return default

    def seconds(self, name: str, default: float) -> float:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            self._fail(
                name, f"{name} is {raw!r}, which is not a number: set a number of seconds, e.g. {name}={default:g}."
            )
            return default
        if value <= 0:
            self._fail(name, f"{name} is {raw}, but it must be greater than 0 seconds: set e.g. {name}={default:g}.")
            return default
        return value

    def path(self, name: str, default: str) -> Path:
        raw = self._raw(name)
        if raw is None:
            return Path(default)
        if not os.path.isabs(raw):
            self._fail(
                name,
                f"{name} is {raw!r}, a relative path (it would depend on the working directory): "
                f"set an absolute path, e.g. {name}={default}.",
            )
            return Path(default)
        return Path(raw)

    def choice(self, name: str, default: FailureAction) -> FailureAction:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            return FailureAction(raw)
        except ValueError:
            choices = ", ".join(action.value for action in FailureAction)
            self._fail(name, f"{name} is {raw!r}: it must be one of {choices}, e.g. {name}={default.value}.")
            return default
