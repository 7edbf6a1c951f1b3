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
    CUSTOMER_DIRECTORY=/path/clientes.csv   optional customer directory (instead of router comments)
    DIALER_COUNTRY_CODE=52                  shared with the dialer: the country whose national numbers the
                                            caller ID and the phones on file are read in (empty: only +numbers)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from centralita.config.env import EnvReader, Secret
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
        )

    @classmethod
    def from_values(cls, values: Mapping[str, str | None], *, source: str | None = None) -> NetworkSettings:
        """Validate raw values (variable name -> text); every problem is reported at once in a ``ConfigError``."""
        reader = EnvReader(values)
        settings = cls.read(reader)
        error = reader.error(source)
        if error is not None:
            raise error
        return settings


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
