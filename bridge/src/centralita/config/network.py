"""The provider's MikroTik routers and what the assistant may do on them, read from the box's ``.env``.

Variables (the role renders them from the inventory; passwords come from the vault)::

    ROUTEROS_ROUTERS=nucleo,norte          names of the routers, comma separated (empty: no routers)
    ROUTEROS_NUCLEO_HOST=10.0.0.1           per router, the name in capitals
    ROUTEROS_NUCLEO_PORT=8728               default 8728, or 8729 with TLS
    ROUTEROS_NUCLEO_USER=centralita
    ROUTEROS_NUCLEO_PASSWORD=...            secret
    ROUTEROS_NUCLEO_TLS=false               API-SSL (8729), certificate checked against the system CAs
    ROUTEROS_NUCLEO_CA_FILE=/path/ca.pem    optional CA bundle for a self-signed router certificate
    ROUTEROS_TIMEOUT=5                      seconds to connect and per command
    ROUTEROS_DEBTORS_LIST=morosos           firewall address-list of customers cut for debt
    ROUTEROS_EXCEPTION_LIST=promesa-pago    address-list of temporary exceptions (entries with a timeout)
    ROUTEROS_WRITES=false                   whether reactivar_servicio may change a router
    ROUTEROS_EXCEPTION_DAYS=3               days a promise to pay keeps the service on
    ROUTEROS_REACTIVATION_LIMIT=1           promise-to-pay reactivations per customer per period (0: none)
    ROUTEROS_REACTIVATION_PERIOD=30d        the period those are counted over (from the audit log)
    ROUTEROS_DIRECTORY_TTL=30               seconds a router's customer list is reused for phone/DNI lookups
                                            (0: read it for every lookup)
    CUSTOMER_DIRECTORY=/path/clientes.csv   optional customer directory (instead of router comments)
    DIALER_COUNTRY_CODE=52                  shared with the dialer: the country whose national numbers the
                                            caller ID and the phones on file are read in (empty: only +numbers)

How a caller proves who they are (``IdentityPolicy``; see ``centralita.tools.identity``)::

    IDENTITY_CALLER_ID=true                 a caller ID on file for exactly one customer verifies the call
    IDENTITY_FACTORS=cliente                what may go with the DNI: cliente (the customer number on the bill),
                                            usuario (the PPPoE user), telefono (last digits of the phone on file)
    IDENTITY_PHONE_DIGITS=4                 how many last digits the telefono factor asks for (3 to 6)
    IDENTITY_READ_REQUIRES=any              what reading one's own service needs: any, dni or both
    IDENTITY_WRITE_REQUIRES=dni             what a reactivation needs: any, dni or both
    IDENTITY_MAX_FAILURES=3                 failed checks per caller number, and per customer, within...
    IDENTITY_FAILURE_WINDOW=24h             ...this window, before verification is refused
    LOOKUP_MAX_PER_CALL=12                  customer lookups and connection reads one call may make
    LOOKUP_MAX_PER_CALLER_HOUR=40           the same per caller number per hour, across calls

``any``: the caller ID or the DNI with a second factor; ``dni``: the DNI with a second factor; ``both``: both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Final

from centralita.config.env import EnvReader, Secret, validated
from centralita.dialer.policy import parse_duration
from centralita.isp.phones import region_for_country_code
from centralita.isp.routeros.client import API_PORT, API_SSL_PORT

_NAME: Final = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_LIST: Final = re.compile(r"^[A-Za-z0-9_.\-]{1,63}$")


@dataclass(frozen=True, slots=True)
class RouterConfig:
    """How to reach one router's API."""

    name: str
    host: str
    port: int
    user: str
    password: Secret
    tls: bool
    ca_file: Path | None


class Requirement(StrEnum):
    """What an action needs the call to be verified by."""

    ANY = "any"  # the caller ID, or the DNI with a second factor
    DNI = "dni"  # the DNI with a second factor (a caller ID alone is not enough)
    BOTH = "both"  # the caller ID and the DNI with a second factor


class Factor(StrEnum):
    """What may go with the DNI: something the ISP issued or holds that an impostor lacks."""

    CLIENTE = "cliente"  # the customer number printed on the bill (cliente= in the comment, column cliente)
    USUARIO = "usuario"  # the PPPoE user name (weak where user names are made from the holder's name)
    TELEFONO = "telefono"  # the last IDENTITY_PHONE_DIGITS digits of a phone on file (the weakest)


@dataclass(frozen=True, slots=True)
class IdentityPolicy:
    """How a caller proves who they are, and what each kind of action needs (see ``centralita.tools.identity``)."""

    caller_id: bool = True
    factors: tuple[Factor, ...] = (Factor.CLIENTE,)
    phone_digits: int = 4
    read_requires: Requirement = Requirement.ANY
    write_requires: Requirement = Requirement.DNI
    max_failures: int = 3
    failure_window: timedelta = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class LookupLimits:
    """How much one call, and one caller number, may make the service look up."""

    per_call: int = 12
    per_caller_hour: int = 40
    directory_ttl: float = 30.0  # seconds a router's customer list is reused (0: never)


@dataclass(frozen=True, slots=True)
class NetworkSettings:
    """Every router and the rules for acting on them."""

    routers: tuple[RouterConfig, ...]
    timeout: float
    debtors_list: str
    exception_list: str
    writes_enabled: bool
    exception_days: int
    customer_directory: Path | None
    phone_region: str | None = None  # from DIALER_COUNTRY_CODE: the region national numbers are read in
    identity: IdentityPolicy = field(default_factory=IdentityPolicy)
    lookups: LookupLimits = field(default_factory=LookupLimits)
    reactivation_limit: int = 1  # promise-to-pay reactivations per customer per period
    reactivation_period: timedelta = timedelta(days=30)

    def router(self, name: str) -> RouterConfig:
        for router in self.routers:
            if router.name == name:
                return router
        raise KeyError(name)

    @classmethod
    def read(cls, reader: EnvReader) -> NetworkSettings:
        """Read every variable with ``reader``, which records the problems; use the result only if none."""
        routers: list[RouterConfig] = []
        names = [part.strip() for part in (reader.raw("ROUTEROS_ROUTERS") or "").split(",") if part.strip()]
        for name in names:
            if not _NAME.match(name):
                reader.fail(
                    "ROUTEROS_ROUTERS",
                    f"ROUTEROS_ROUTERS names {name!r}, not a router name (lower-case letters, digits and '_', "
                    "starting with a letter): set e.g. ROUTEROS_ROUTERS=nucleo,norte.",
                )
                continue
            if name in {router.name for router in routers}:
                reader.fail(
                    "ROUTEROS_ROUTERS",
                    f"ROUTEROS_ROUTERS names {name!r} twice: give each router one name, "
                    "e.g. ROUTEROS_ROUTERS=nucleo,norte.",
                )
                continue
            routers.append(_read_router(reader, name))
        return cls(
            routers=tuple(routers),
            timeout=reader.seconds("ROUTEROS_TIMEOUT", 5.0, maximum=120),
            debtors_list=reader.identifier("ROUTEROS_DEBTORS_LIST", "morosos", pattern=_LIST),
            exception_list=reader.identifier("ROUTEROS_EXCEPTION_LIST", "promesa-pago", pattern=_LIST),
            writes_enabled=reader.flag("ROUTEROS_WRITES", False),
            exception_days=reader.integer("ROUTEROS_EXCEPTION_DAYS", 3, 1, 60),
            customer_directory=reader.optional_path("CUSTOMER_DIRECTORY", "/etc/centralita/clientes.csv"),
            phone_region=_read_phone_region(reader),
            identity=_read_identity(reader),
            lookups=LookupLimits(
                per_call=reader.integer("LOOKUP_MAX_PER_CALL", 12, 1, 100),
                per_caller_hour=reader.integer("LOOKUP_MAX_PER_CALLER_HOUR", 40, 1, 1000),
                directory_ttl=float(reader.integer("ROUTEROS_DIRECTORY_TTL", 30, 0, 600)),
            ),
            reactivation_limit=reader.integer("ROUTEROS_REACTIVATION_LIMIT", 1, 0, 10),
            reactivation_period=_read_duration(reader, "ROUTEROS_REACTIVATION_PERIOD", "30d", "1d"),
        )

    @classmethod
    def from_values(cls, values: Mapping[str, str | None], *, source: str | None = None) -> NetworkSettings:
        """Validate raw values (variable name -> text); every problem is reported at once in a ``ConfigError``."""
        return validated(values, cls.read, source)


def _read_router(reader: EnvReader, name: str) -> RouterConfig:
    prefix = f"ROUTEROS_{name.upper()}_"
    host = reader.raw(prefix + "HOST")
    if host is None:
        reader.missing(prefix + "HOST", f"the address of the API of router {name}")
    user = reader.raw(prefix + "USER")
    if user is None:
        reader.missing(prefix + "USER", f"the API user Centralita logs in as on router {name}")
    password = reader.secret(prefix + "PASSWORD", "the API user's password, from the vault")
    tls = reader.flag(prefix + "TLS", False)
    port = reader.integer(prefix + "PORT", API_SSL_PORT if tls else API_PORT, 1, 65535)
    ca_file = reader.optional_path(prefix + "CA_FILE", "/etc/centralita/router-ca.pem")
    return RouterConfig(name, host or "", port, user or "", password, tls, ca_file)


def _read_phone_region(reader: EnvReader) -> str | None:
    """The region national caller IDs are read in, from the dialer's country code (None: not set)."""
    raw = reader.raw("DIALER_COUNTRY_CODE") or ""
    try:
        return region_for_country_code(raw)
    except ValueError:
        reader.invalid("DIALER_COUNTRY_CODE", raw, "not the country calling code of any country (1 to 3 digits)", "52")
        return None


def _read_duration(reader: EnvReader, name: str, default: str, minimum: str) -> timedelta:
    """A duration such as ``30d``, ``24h`` or ``90m``, at least ``minimum`` and at most 366 days."""
    value = reader.parsed(name, default, parse_duration, default)
    if reader.valid(name) and not parse_duration(minimum) <= value <= timedelta(days=366):
        reader.invalid(name, reader.raw(name) or default, f"not between {minimum} and 366d", default)
        return parse_duration(default)
    return value


def _read_identity(reader: EnvReader) -> IdentityPolicy:
    """The IDENTITY_* variables; a policy that nobody could ever satisfy is a problem, not a silent lock-out."""
    caller_id = reader.flag("IDENTITY_CALLER_ID", True)
    factors: list[Factor] = []
    raw = reader.raw("IDENTITY_FACTORS")
    for part in (raw if raw is not None else Factor.CLIENTE.value).split(","):
        name = part.strip().lower()
        if not name or name == "none":
            continue
        try:
            factor = Factor(name)
        except ValueError:
            public = " (a name is public: it is never a factor)" if name in ("nombre", "name") else ""
            reader.invalid(
                "IDENTITY_FACTORS",
                raw or "",
                f"which names {name!r}, not one of {', '.join(f.value for f in Factor)} or none{public}",
                "cliente",
            )
            continue
        if factor not in factors:
            factors.append(factor)
    read_requires = reader.choice("IDENTITY_READ_REQUIRES", Requirement.ANY)
    write_requires = reader.choice("IDENTITY_WRITE_REQUIRES", Requirement.DNI)
    for name, requirement in (("IDENTITY_READ_REQUIRES", read_requires), ("IDENTITY_WRITE_REQUIRES", write_requires)):
        if not reader.valid(name, "IDENTITY_FACTORS", "IDENTITY_CALLER_ID"):
            continue
        if requirement is not Requirement.ANY and not factors:
            reader.fail(
                name,
                f"{name} is {requirement.value!r}, which needs the DNI and a second factor, but IDENTITY_FACTORS "
                f"names none: set e.g. IDENTITY_FACTORS=cliente, or {name}=any.",
            )
        elif requirement is Requirement.BOTH and not caller_id:
            reader.fail(
                name,
                f"{name} is 'both', which needs the caller ID, but IDENTITY_CALLER_ID is false: set e.g. "
                f"{name}=dni, or IDENTITY_CALLER_ID=true.",
            )
        elif requirement is Requirement.ANY and not caller_id and not factors:
            reader.fail(
                name,
                f"{name} is 'any', but IDENTITY_CALLER_ID is false and IDENTITY_FACTORS names none, so no caller "
                "could ever be verified: set e.g. IDENTITY_FACTORS=cliente.",
            )
    return IdentityPolicy(
        caller_id=caller_id,
        factors=tuple(factors),
        phone_digits=reader.integer("IDENTITY_PHONE_DIGITS", 4, 3, 6),
        read_requires=read_requires,
        write_requires=write_requires,
        max_failures=reader.integer("IDENTITY_MAX_FAILURES", 3, 1, 20),
        failure_window=_read_duration(reader, "IDENTITY_FAILURE_WINDOW", "24h", "10m"),
    )
