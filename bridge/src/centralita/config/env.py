"""The box's one ``.env`` file: how it is read, and the typed reader every part's settings are read with.

The file is read once per program, with python-dotenv's parser and without interpolation (what
``dotenv_values(path, interpolate=False)`` does), never into ``os.environ``: the secrets it holds would
otherwise reach every child process and ``/proc/<pid>/environ``, and ``${VAR}`` would pull values from the
process environment. Lines the parser cannot read are reported by number, never by content (a broken line
may hold a secret).

``EnvReader`` reads one variable at a time and records a problem instead of raising, so one failed start
lists everything that needs fixing. Every message has the same shape, ``<VAR> is '<value>', <what is
wrong>: set e.g. <VAR>=<example>.``, and never shows the value of a secret (nor the password of a URL).
"""

from __future__ import annotations

import hmac
import io
import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final, NoReturn, Self, TypeVar
from urllib.parse import SplitResult, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv.parser import parse_stream

__all__ = [
    "DEFAULT_ENV_FILE",
    "ConfigError",
    "EnvFile",
    "EnvReader",
    "Secret",
    "is_loopback_host",
    "read_env_file",
    "redact_url",
    "redact_urls",
]

DEFAULT_ENV_FILE: Final = "/usr/local/asterisk/.env"
_MASK: Final = "**********"
_NAME: Final = re.compile(r"^[A-Za-z0-9_.\-]{1,80}$")
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})
# scheme://userinfo@ in free text: what redact_urls hides.
_URL_USERINFO: Final = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s/@'\"<>]+)@")
E = TypeVar("E", bound=StrEnum)
T = TypeVar("T")


class ConfigError(ValueError):
    """The configuration is unusable; ``problems`` holds one message per problem, each naming its fix.

    ``variables`` names the variable of each problem (empty for a problem of the file itself), so a caller
    can sort them, as ``centralita doctor`` does with the keepalive.
    """

    def __init__(self, problems: Sequence[str], source: str | None = None, variables: Sequence[str] = ()) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        self.variables: tuple[str, ...] = tuple(variables) or ("",) * len(self.problems)
        self.source = source
        where = f" in {source}" if source else ""
        count = len(self.problems)
        header = f"Invalid Centralita configuration{where} ({count} problem{'' if count == 1 else 's'}):"
        super().__init__("\n".join([header, *(f"  - {problem}" for problem in self.problems)]))


class Secret:
    """A string that hides itself from repr(), str() and f-strings, so logging a settings object is safe.

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


@dataclass(frozen=True, slots=True)
class EnvFile:
    """One read of a .env file: its variables (``None`` for a name without ``=``) and the lines that did not
    parse (numbers only)."""

    values: Mapping[str, str | None]
    source: str | None = None
    unparsed_lines: tuple[int, ...] = ()

    @classmethod
    def from_text(cls, text: str, source: str | None = None) -> EnvFile:
        """Parse ``text`` as python-dotenv does: later assignments win, nothing is interpolated."""
        values: dict[str, str | None] = {}
        unparsed: list[int] = []
        for binding in parse_stream(io.StringIO(text)):
            if binding.error:
                unparsed.append(binding.original.line)
            elif binding.key is not None:
                values[binding.key] = binding.value
        return cls(values, source, tuple(unparsed))

    def problems(self) -> list[str]:
        """One message per line the parser skipped: the setting on it is lost."""
        return [
            f"line {line} of {self.source or 'the .env file'} is not NAME=value and is ignored (an unclosed "
            'quote?): quote the value as NAME="...", with \\" for a double quote and \\\\ for a backslash.'
            for line in self.unparsed_lines
        ]


def read_env_file(path: str | os.PathLike[str]) -> EnvFile:
    """Read the .env at ``path`` once; a missing, unreadable or non-UTF-8 file is a ``ConfigError``."""
    env_path = Path(path)
    try:
        with env_path.open(encoding="utf-8") as stream:
            text = stream.read()
    except FileNotFoundError:
        problem = (
            f"The configuration file {env_path} does not exist: give the path of the box's .env file "
            "(--env-file), or create it with the playbook (ansible-playbook site.yml --tags bridge)."
        )
    except IsADirectoryError:
        problem = f"The configuration file {env_path} is a directory: give the path of the .env file (--env-file)."
    except OSError as error:
        problem = (
            f"The configuration file {env_path} cannot be read ({error.strerror}): check its owner and mode "
            "(it holds secrets: mode 0600, owned by the service user; run the command as root)."
        )
    except UnicodeDecodeError:
        problem = f"The configuration file {env_path} is not valid UTF-8: save it as UTF-8 text."
    else:
        return EnvFile.from_text(text, str(env_path))
    raise ConfigError([problem])


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` is this machine: ``localhost``, 127.0.0.0/8 or ::1."""
    if host.rstrip(".").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def redact_url(url: str) -> str:
    """``url`` with the password of its ``user:password@`` hidden (a bare ``token@`` entirely), as pip does."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_urls(url)
    if "@" not in parts.netloc:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    shown = f"{user}:{_MASK}" if colon else _MASK
    return urlunsplit(parts._replace(netloc=f"{shown}@{hostport}"))


def redact_urls(text: str) -> str:
    """Every ``scheme://user:password@`` in free text with its password hidden."""

    def hide(match: re.Match[str]) -> str:
        user, colon, _password = match["userinfo"].partition(":")
        return f"{match['scheme']}{user}:{_MASK}@" if colon else f"{match['scheme']}{_MASK}@"

    return _URL_USERINFO.sub(hide, text)


class EnvReader:
    """Reads one variable at a time, recording problems instead of raising, so all are reported together.

    On a problem each reader returns a stand-in of the right type (the default); the settings classes raise
    (or return nothing) before any stand-in can be used. A blank value means "use the default".
    """

    def __init__(self, values: Mapping[str, str | None]) -> None:
        self._values = values
        self._invalid: set[str] = set()
        self.problems: list[str] = []
        self.variables: list[str] = []

    # ---- bookkeeping ------------------------------------------------------------------------------------

    def valid(self, *names: str) -> bool:
        """Whether every one of ``names`` was read without a problem."""
        return self._invalid.isdisjoint(names)

    def fail(self, name: str, message: str) -> None:
        """Record a problem of variable ``name``; the message must start with the name and end with the fix."""
        self._invalid.add(name)
        self.problems.append(message)
        self.variables.append(name)

    def invalid(self, name: str, shown: str, why: str, example: str) -> None:
        """Record ``<name> is '<shown>', <why>: set e.g. <name>=<example>.`` (``shown`` is never a secret)."""
        self.fail(name, f"{name} is {shown!r}, {why}: set e.g. {name}={example}.")

    def missing(self, name: str, what: str) -> None:
        self.fail(name, f"{name} is missing: set {name}=<{what}>.")

    def error(self, source: str | None = None) -> ConfigError | None:
        """The problems so far as one ``ConfigError``, or None when there are none."""
        return ConfigError(self.problems, source, self.variables) if self.problems else None

    def raw(self, name: str) -> str | None:
        """The stripped value, or None when unset or blank."""
        value = self._values.get(name)
        if value is None or not value.strip():
            return None
        return value.strip()

    # ---- typed readers ----------------------------------------------------------------------------------

    def text(self, name: str, default: str) -> str:
        return self.raw(name) or default

    def secret(self, name: str, what: str, *, required: bool = True) -> Secret:
        """A secret; its value never appears in a message, only whether it is there."""
        raw = self.raw(name)
        if raw is None:
            if required:
                self.missing(name, what)
            return Secret("")
        return Secret(raw)

    def url(self, name: str, default: str, *, secure: str, plain: str, carries: str) -> str:
        """A ``secure://`` URL, or a ``plain://`` one to this machine only: ``carries`` (a credential) would
        otherwise cross the network unencrypted."""
        raw = self.raw(name)
        if raw is None:
            return default
        shown = redact_url(raw)
        parts = _split_url(raw)
        if parts is None or parts.scheme not in (secure, plain) or not parts.hostname:
            self.invalid(name, shown, f"not a {secure}:// or {plain}:// URL with a host", default)
            return default
        if parts.scheme == plain and not is_loopback_host(parts.hostname):
            self.fail(
                name,
                f"{name} is {shown!r}, plain {plain}:// to another machine, so {carries} would cross the network "
                f"unencrypted: set e.g. {name}={default} ({secure}://; {plain}:// only to 127.0.0.1, ::1 or "
                "localhost, e.g. a test server on this box).",
            )
            return default
        return raw

    def seconds(self, name: str, default: float, *, maximum: float | None = None) -> float:
        """A number of seconds above 0 (and at most ``maximum``)."""
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            self.invalid(name, raw, "not a number of seconds", f"{default:g}")
            return default
        if value <= 0 or (maximum is not None and value > maximum):
            limit = f" and at most {maximum:g}" if maximum is not None else ""
            self.invalid(name, raw, f"but it must be above 0 seconds{limit}", f"{default:g}")
            return default
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        """A whole number from ``low`` to ``high``."""
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            self.invalid(name, raw, f"not a whole number from {low} to {high}", str(default))
            return default
        return value

    def flag(self, name: str, default: bool) -> bool:
        """true/false (also yes/no, on/off, 1/0)."""
        raw = self.raw(name)
        if raw is None:
            return default
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        self.invalid(name, raw, "neither true nor false", str(default).lower())
        return default

    def path(self, name: str, default: str) -> Path:
        """An absolute path (a relative one would depend on the working directory)."""
        return self.optional_path(name, default) or Path(default)

    def optional_path(self, name: str, example: str) -> Path | None:
        """An absolute path, or None when unset."""
        raw = self.raw(name)
        if raw is None:
            return None
        if not os.path.isabs(raw):
            self.invalid(name, raw, "a relative path (it would depend on the working directory)", example)
            return None
        return Path(raw)

    def choice(self, name: str, default: E) -> E:
        """One of the values of ``default``'s enum, in any case."""
        raw = self.raw(name)
        if raw is None:
            return default
        kind = type(default)
        try:
            return kind(raw.lower())
        except ValueError:
            choices = ", ".join(member.value for member in kind)
            self.invalid(name, raw, f"not one of {choices}", default.value)
            return default

    def ip_address(self, name: str, default: str) -> str:
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            return str(ipaddress.ip_address(raw))
        except ValueError:
            self.invalid(name, raw, "not an IP address", default)
            return default

    def identifier(self, name: str, default: str, *, example: str = "", pattern: re.Pattern[str] = _NAME) -> str:
        """A name of letters, digits, '.', '_' and '-' (an ARI application, a dialplan context, an address-list)."""
        raw = self.raw(name)
        if raw is None:
            return default
        if not pattern.match(raw):
            self.invalid(name, raw, "not a name of letters, digits, '.', '_' or '-'", example or default)
            return default
        return raw

    def timezone(self, name: str, *, required: bool, what: str, example: str) -> ZoneInfo | None:
        """An IANA time zone; None when unset (a problem too when ``required``)."""
        raw = self.raw(name)
        if raw is None:
            if required:
                self.missing(name, what)
            return None
        try:
            return ZoneInfo(raw)
        except (ZoneInfoNotFoundError, ValueError):
            self.invalid(name, raw, "not a time zone name (install the tzdata package if it is missing)", example)
            return None

    def parsed(self, name: str, default: str, parse: Callable[[str], T], example: str) -> T:
        """``parse(value)`` (``parse(default)`` when unset); the parser's ValueError says what is wrong."""
        raw = self.raw(name) or default
        try:
            return parse(raw)
        except ValueError as error:
            self.invalid(name, raw, f"which is wrong ({error})", example)
            return parse(default)


def _split_url(text: str) -> SplitResult | None:
    """``text`` split as a URL, or None when it is not one (a port that is not a number in range, say)."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - the property raises ValueError for a port that is not a number in range
    except ValueError:
        return None
    return parts


def validated(values: Mapping[str, str | None], read: Callable[[EnvReader], T], source: str | None = None) -> T:
    """Settings read by ``read`` from raw values (variable name -> text), or every problem at once in one
    ``ConfigError`` naming ``source``: what each settings class's ``from_values`` does."""
    reader = EnvReader(values)
    settings = read(reader)
    error = reader.error(source)
    if error is not None:
        raise error
    return settings
