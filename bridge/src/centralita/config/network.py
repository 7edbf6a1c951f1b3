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

from centralita.config.bridge import ConfigError, Secret
from centralita.isp.phones import region_for_country_code
from centralita.isp.routeros.client import API_PORT, API_SSL_PORT

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_LIST = re.compile(r"^[A-Za-z0-9_.\-]{1,63}$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


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
    def from_values(cls, values: Mapping[str, str | None], *, source: str | None = None) -> NetworkSettings:
        """Validate raw values (variable name -> text); every problem is reported at once in a ``ConfigError``."""
        problems: list[str] = []

        def raw(name: str) -> str | None:
            value = values.get(name)
            return value.strip() if value is not None and value.strip() else None

        def flag(name: str, default: bool) -> bool:
            value = raw(name)
            if value is None:
                return default
            if value.lower() in _TRUE:
                return True
            if value.lower() in _FALSE:
                return False
            problems.append(f"{name} is {value!r}: set {name}=true or {name}=false.")
            return default

        def number(name: str, default: float, *, integer: bool = False, low: float = 0, high: float = 1e9) -> float:
            value = raw(name)
            if value is None:
                return default
            try:
                parsed = int(value) if integer else float(value)
            except ValueError:
                parsed = None
            if parsed is None or not low < parsed <= high:
                kind = "a whole number" if integer else "a number"
                problems.append(
                    f"{name} is {value!r}: it must be {kind} above {low:g} and at most {high:g}, "
                    f"e.g. {name}={default:g}."
                )
                return default
            return parsed

        def list_name(name: str, default: str) -> str:
            value = raw(name) or default
            if not _LIST.match(value):
                problems.append(
                    f"{name} is {value!r}: an address-list name is letters, digits, '.', '_' or '-', "
                    f"e.g. {name}={default}."
                )
                return default
            return value

        routers: list[RouterConfig] = []
        names = [part.strip() for part in (raw("ROUTEROS_ROUTERS") or "").split(",") if part.strip()]
        for name in names:
            if not _NAME.match(name):
                problems.append(
                    f"ROUTEROS_ROUTERS names {name!r}: a router name is lower-case letters, digits and "
                    "'_', starting with a letter (e.g. nucleo)."
                )
                continue
            if name in {router.name for router in routers}:
                problems.append(f"ROUTEROS_ROUTERS names {name!r} twice: give each router one name.")
                continue
            prefix = f"ROUTEROS_{name.upper()}_"
            host = raw(prefix + "HOST")
            if host is None:
                problems.append(f"{prefix}HOST is missing: set the address of router {name!r}'s API.")
            user = raw(prefix + "USER")
            if user is None:
                problems.append(f"{prefix}USER is missing: set the API user Centralita logs in as on {name!r}.")
            password = raw(prefix + "PASSWORD")
            if password is None:
                problems.append(f"{prefix}PASSWORD is missing: set the API user's password (from the vault).")
            tls = flag(prefix + "TLS", False)
            port = int(number(prefix + "PORT", API_SSL_PORT if tls else API_PORT, integer=True, high=65535))
            ca_raw = raw(prefix + "CA_FILE")
            ca_file = Path(ca_raw) if ca_raw else None
            if ca_file is not None and not ca_file.is_absolute():
                problems.append(f"{prefix}CA_FILE is {ca_raw!r}, a relative path: give an absolute path.")
            routers.append(RouterConfig(name, host or "", port, user or "", Secret(password or ""), tls, ca_file))

        directory_raw = raw("CUSTOMER_DIRECTORY")
        directory = Path(directory_raw) if directory_raw else None
        if directory is not None and not directory.is_absolute():
            problems.append(f"CUSTOMER_DIRECTORY is {directory_raw!r}, a relative path: give an absolute path.")

        phone_region: str | None = None
        try:
            phone_region = region_for_country_code(raw("DIALER_COUNTRY_CODE") or "")
        except ValueError as error:
            problems.append(f"DIALER_COUNTRY_CODE: {error}.")

        settings = cls(
            routers=tuple(routers),
            timeout=number("ROUTEROS_TIMEOUT", 5.0, high=120),
            debtors_list=list_name("ROUTEROS_DEBTORS_LIST", "morosos"),
            exception_list=list_name("ROUTEROS_EXCEPTION_LIST", "promesa-pago"),
            writes_enabled=flag("ROUTEROS_WRITES", False),
            exception_days=int(number("ROUTEROS_EXCEPTION_DAYS", 3, integer=True, high=60)),
            customer_directory=directory,
            phone_region=phone_region,
        )
        if problems:
            raise ConfigError(problems, source)
        return settings
