"""What the network tool tests share: the service as the bridge builds it, calls with their own identity, the
fake router, and reading back what the router holds over a separate librouteros connection."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import librouteros

from centralita.config.network import NetworkSettings
from centralita.isp.routeros.pool import RouterPool
from centralita.storage.records import CallRecords
from centralita.tools.identity import CallIdentity
from centralita.tools.network import network_tools
from centralita.tools.registry import ToolContext, ToolRegistry, ToolResult
from centralita_testing.fake_routeros.server import FakeRouterOS

USER = "centralita"
PASSWORD = "Api-Cl4ve-Router"
CALL_ID = "1732543387.12"
MARIA_PHONE = "5550001111"  # María Peña's line, as Asterisk may show it (no +52 1)
LUIS_PHONE = "5215550004444"  # Luis Hernández, cut for debt in the demo ISP
STRANGER = "5215550009999"  # a valid number that is no customer's
TIMEOUT = 0.5
DEBTORS = "morosos"
EXCEPTIONS = "promesa-pago"
ADDRESS_LIST = "/ip/firewall/address-list"
SECRETS = ("Mp-7731", "Jm-4410", "Ag-9902", "Lh-1187", "Cn-5523", "Ps-3064", PASSWORD)
LUIS_VERIFY = {"dni": "45678901", "numero_cliente": "10004"}
# Everything that would tell a caller who Luis is or how his service is set up.
LUIS_PERSONAL = (
    "Luis",
    "Hernández",
    "luis.hernandez",
    "45678901",
    "10004",
    "5550004444",
    "10.20.0.14",
    "AA:BB:CC:00:00:14",
    "512k",
    "Lh-1187",
)
# Output keys that only a verified caller's own service may carry.
SERVICE_KEYS = (
    "nombre",
    "plan",
    "servicios",
    "direccion_ip",
    "mac_equipo",
    "conectado",
    "tiempo_conectado",
    "suspendido_por_adeudo",
    "en_lista_morosos",
    "prorroga_vigente",
    "velocidad_maxima",
    "cuenta_deshabilitada",
    "router",
)

_call_numbers = itertools.count(100)


def router_values(name: str, host: str, port: int, **extra: str) -> dict[str, str]:
    prefix = f"ROUTEROS_{name.upper()}_"
    values = {f"{prefix}HOST": host, f"{prefix}PORT": str(port), f"{prefix}USER": USER, f"{prefix}PASSWORD": PASSWORD}
    values.update({prefix + key: value for key, value in extra.items()})
    return values


def settings_for(*routers: tuple[str, FakeRouterOS | int], **values: str) -> NetworkSettings:
    """Settings for the given (name, fake router or port) pairs, plus other variables."""
    raw: dict[str, str] = {
        "ROUTEROS_ROUTERS": ",".join(name for name, _ in routers),
        "ROUTEROS_TIMEOUT": str(TIMEOUT),
        "DIALER_COUNTRY_CODE": "52",
    }
    for name, target in routers:
        port = target.port if isinstance(target, FakeRouterOS) else target
        raw.update(router_values(name, "127.0.0.1", port))
    raw.update(values)
    return NetworkSettings.from_values(raw)


class Call:
    """One call as the bridge runs its tools: one ToolContext per tool run, one CallIdentity for the call."""

    def __init__(self, service: Service, caller: str, call_id: str, *, inbound: bool = True) -> None:
        self.service = service
        self.call_id = call_id
        self.caller = caller
        self.identity = CallIdentity(caller_id_usable=inbound)

    def run(self, name: str, arguments: Mapping[str, Any] | str = "{}") -> ToolResult:
        text = arguments if isinstance(arguments, str) else json.dumps(arguments)
        context = ToolContext(self.call_id, self.caller, "8005550100", identity=self.identity)
        return self.service.registry.run(name, text, context)


class Service:
    """The tools as the service builds them: settings, records, pool, registry."""

    def __init__(self, settings: NetworkSettings, db: Path, clock: Callable[[], datetime] | None = None) -> None:
        self.settings = settings
        self.records = CallRecords(db, clock=clock) if clock is not None else CallRecords(db)
        self.pool = RouterPool(settings)
        self.registry = ToolRegistry()
        for tool in network_tools(settings, self.records, self.pool):
            self.registry.register(tool)
        self._calls: dict[str, Call] = {}

    def call(self, caller: str = MARIA_PHONE, call_id: str | None = None, *, inbound: bool = True) -> Call:
        """A new call (its own identity); the same ``call_id`` again is the same call."""
        call_id = call_id or f"1732543400.{next(_call_numbers)}"
        if call_id not in self._calls:
            self._calls[call_id] = Call(self, caller, call_id, inbound=inbound)
        return self._calls[call_id]

    def run(
        self, name: str, arguments: Mapping[str, Any] | str = "{}", *, caller: str = MARIA_PHONE, call_id: str = CALL_ID
    ) -> ToolResult:
        """Run a tool in call ``call_id`` (created from ``caller`` the first time it is named)."""
        return self.call(caller, call_id).run(name, arguments)

    def close(self) -> None:
        self.pool.close()
        self.records.close()


class SettableClock:
    """A wall clock for the records that the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


class ServiceFactory:
    """Builds services on databases in ``directory`` and closes them all at the end of the test."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._services: list[Service] = []

    def __call__(self, settings: NetworkSettings, clock: Callable[[], datetime] | None = None) -> Service:
        service = Service(settings, self._directory / f"centralita-{len(self._services)}.db", clock)
        self._services.append(service)
        return service

    def close(self) -> None:
        for service in self._services:
            service.close()


def read_back(router: FakeRouterOS, path: str) -> list[dict[str, Any]]:
    """A table as a separate librouteros client sees it."""
    api = librouteros.connect(router.host, USER, PASSWORD, port=router.port, timeout=5, encoding="utf-8")
    try:
        return [dict(row) for row in api(f"{path}/print")]
    finally:
        api.close()


def address_lists(router: FakeRouterOS) -> list[tuple[str, str, str, bool]]:
    """Every address-list entry as (list, address, comment, disabled): what a write would change."""
    rows = read_back(router, ADDRESS_LIST)
    return sorted((row["list"], row["address"], row.get("comment", ""), bool(row["disabled"])) for row in rows)


def exception_entries(router: FakeRouterOS) -> list[dict[str, Any]]:
    return [row for row in read_back(router, ADDRESS_LIST) if row["list"] == EXCEPTIONS]


def writes(router: FakeRouterOS) -> list[list[str]]:
    """Every add/set/remove the router received."""
    return [words for words in router.received() if words[0].rsplit("/", 1)[-1] in ("add", "set", "remove")]


def output_text(result: ToolResult) -> str:
    return json.dumps(result.output, ensure_ascii=False)


def assert_nothing_personal(result: ToolResult, personal: tuple[str, ...] = LUIS_PERSONAL) -> None:
    """No word that identifies a customer or their service, and none of the keys only a verified caller gets."""
    text = output_text(result)
    for word in (*personal, *SECRETS):
        assert word not in text, (word, text)
    for key in SERVICE_KEYS:
        assert key not in result.output, (key, text)
