"""The network tools against the fake RouterOS over TCP, through the real librouteros, as the call runs them.

Every tool is run the way ``Call`` runs it: ``ToolRegistry.run(name, <JSON text>, ToolContext)``, so
argument checks, errors and results are what the model would get. What the router holds afterwards is read
back over a separate librouteros connection, and what reached it from ``FakeRouterOS.received``.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import librouteros
import pytest
from certs import self_signed

from centralita.calls.service import log_secrets, service_tools
from centralita.config.box import load_all
from centralita.config.bridge import Settings
from centralita.config.env import ConfigError
from centralita.config.network import NetworkSettings
from centralita.isp.routeros.client import RouterClient
from centralita.isp.routeros.pool import Deadline, RouterLate, RouterPool
from centralita.logs import RedactingFilter
from centralita.storage.records import CallRecords
from centralita.tools.network import (
    CONSULTAR_CLIENTE,
    DIRECTORY_DOWN,
    ESTADO_CONEXION,
    MAX_IDENTITY_FAILURES,
    NO_CALLER,
    NOT_VERIFIED,
    REACTIVAR_SERVICIO,
    REPORTAR_FALLA,
    ROUTER_DOWN,
    ROUTER_REFUSED,
    SEVERAL,
    network_tools,
)
from centralita.tools.registry import ToolContext, ToolRegistry, ToolResult
from centralita_testing.fake_routeros.server import FakeRouterOS
from centralita_testing.fake_routeros.state import load_fixture

USER = "centralita"
PASSWORD = "Api-Cl4ve-Router"
CALL_ID = "1732543387.12"
MARIA_PHONE = "5550001111"  # María Peña's line, as Asterisk may show it (no +52 1)
TIMEOUT = 0.5
DEBTORS = "morosos"
EXCEPTIONS = "promesa-pago"
ADDRESS_LIST = "/ip/firewall/address-list"
SECRETS = ("Mp-7731", "Jm-4410", "Ag-9902", "Lh-1187", "Cn-5523", "Ps-3064", PASSWORD)


# -- fixtures and helpers ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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


class Service:
    """The tools as the service builds them: settings, records, pool, registry."""

    def __init__(self, settings: NetworkSettings, db: Path) -> None:
        self.settings = settings
        self.records = CallRecords(db)
        self.pool = RouterPool(settings)
        self.registry = ToolRegistry()
        for tool in network_tools(settings, self.records, self.pool):
            self.registry.register(tool)

    def run(
        self, name: str, arguments: Mapping[str, Any] | str, *, caller: str = MARIA_PHONE, call_id: str = CALL_ID
    ) -> ToolResult:
        text = arguments if isinstance(arguments, str) else json.dumps(arguments)
        return self.registry.run(name, text, ToolContext(call_id=call_id, caller=caller, did="8005550100"))

    def close(self) -> None:
        self.pool.close()
        self.records.close()


@pytest.fixture
def router() -> Iterator[FakeRouterOS]:
    with FakeRouterOS(None, USER, PASSWORD) as fake:
        yield fake


@pytest.fixture
def make_service(tmp_path: Path) -> Iterator[Any]:
    services: list[Service] = []

    def make(settings: NetworkSettings) -> Service:
        service = Service(settings, tmp_path / f"centralita-{len(services)}.db")
        services.append(service)
        return service

    yield make
    for service in services:
        service.close()


@pytest.fixture
def service(router: FakeRouterOS, make_service: Any) -> Service:
    built: Service = make_service(settings_for(("nucleo", router), ROUTEROS_WRITES="true"))
    return built


def read_back(router: FakeRouterOS, path: str) -> list[dict[str, Any]]:
    """A table as a separate librouteros client sees it."""
    api = librouteros.connect(router.host, USER, PASSWORD, port=router.port, timeout=5, encoding="utf-8")
    try:
        return [dict(row) for row in api(f"{path}/print")]
    finally:
        api.close()


def no_secrets_in(result: ToolResult) -> None:
    text = json.dumps(result.output, ensure_ascii=False)
    for secret in SECRETS:
        assert secret not in text


# -- which tools, and their schemas --------------------------------------------------------------------------


def test_tools_follow_the_configuration(router: FakeRouterOS, make_service: Any, tmp_path: Path) -> None:
    nothing: Service = make_service(NetworkSettings.from_values({}))
    assert list(nothing.registry.tools) == [REPORTAR_FALLA]
    directory = tmp_path / "clientes.csv"
    directory.write_text("usuario,nombre,dni,telefono\n", encoding="utf-8")
    only_directory: Service = make_service(NetworkSettings.from_values({"CUSTOMER_DIRECTORY": str(directory)}))
    assert list(only_directory.registry.tools) == [CONSULTAR_CLIENTE, REPORTAR_FALLA]
    routers: Service = make_service(settings_for(("nucleo", router)))
    assert list(routers.registry.tools) == [CONSULTAR_CLIENTE, ESTADO_CONEXION, REACTIVAR_SERVICIO, REPORTAR_FALLA]
    for schema in routers.registry.schemas():
        assert schema["type"] == "function"
        assert schema["parameters"]["additionalProperties"] is False
        assert schema["description"]
    reactivar = routers.registry.tools[REACTIVAR_SERVICIO].parameters
    assert reactivar["required"] == ["dni", "confirmado"]
    assert reactivar["properties"]["confirmado"]["type"] == "boolean"
    assert router.accepted_connections == 0  # building the tools touches no router


def test_the_service_wires_network_tools_beside_the_builtin_ones(router: FakeRouterOS, tmp_path: Path) -> None:
    env = tmp_path / ".env"
    lines = [f"{key}={value}" for key, value in router_values("nucleo", router.host, router.port).items()]
    required = ["OPENAI_API_KEY=sk-test", "ARI_PASSWORD=ari-test", "DIALER_COUNTRY_CODE=52"]
    env.write_text("\n".join([*required, "ROUTEROS_ROUTERS=nucleo", *lines]) + "\n", encoding="utf-8")
    network = load_all(env).network
    assert network.router("nucleo").password.reveal() == PASSWORD
    assert not network.writes_enabled
    with CallRecords(tmp_path / "db.sqlite") as records, RouterPool(network) as pool:
        registry = service_tools(network, records, pool)
        assert list(registry.tools) == [
            "transferir_a_operador",
            "finalizar_llamada",
            CONSULTAR_CLIENTE,
            ESTADO_CONEXION,
            REACTIVAR_SERVICIO,
            REPORTAR_FALLA,
        ]
        result = registry.run(CONSULTAR_CLIENTE, "{}", ToolContext(CALL_ID, MARIA_PHONE, ""))
        assert result.output["nombre"] == "María Peña"
    empty = tmp_path / "empty.env"
    empty.write_text("\n".join(required) + "\n", encoding="utf-8")
    with CallRecords(tmp_path / "db2.sqlite") as records:
        network = load_all(empty).network
        with RouterPool(network) as pool:
            assert list(service_tools(network, records, pool).tools)[2:] == [REPORTAR_FALLA]


# -- consultar_cliente ---------------------------------------------------------------------------------------


def test_lookup_by_the_callers_number(service: Service, router: FakeRouterOS) -> None:
    result = service.run(CONSULTAR_CLIENTE, {})
    assert result.ok
    assert result.output == {
        "ok": True,
        "encontrado": True,
        "nombre": "María Peña",
        "plan": "20M",
        "servicio": "maria.pena",
        "router": "nucleo",
    }
    no_secrets_in(result)
    text = json.dumps(result.output)
    assert "12345678" not in text  # the DNI on file is never told
    assert "5550001111" not in text  # nor the phone on file
    # The PPP secrets were read with a .proplist that leaves the password out.
    secret_prints = [words for words in router.received() if words[0] == "/ppp/secret/print"]
    assert secret_prints
    for words in secret_prints:
        proplist = next(word for word in words if word.startswith("=.proplist="))
        assert "password" not in proplist


@pytest.mark.parametrize("phone", ["+52 1 555 000 2222", "555-000-2222", "5215550002222", "(555) 000 2222"])
def test_lookup_by_phone_in_any_format(service: Service, phone: str) -> None:
    result = service.run(CONSULTAR_CLIENTE, {"telefono": phone})
    assert (result.output["servicio"], result.output["nombre"]) == ("jose.munoz", "José Muñoz")


def test_lookup_by_dni_and_by_user(service: Service, router: FakeRouterOS) -> None:
    by_dni = service.run(CONSULTAR_CLIENTE, {"dni": "56.789.012"})
    assert (by_dni.output["servicio"], by_dni.output["nombre"]) == ("carmen.nunez", "Carmen Núñez Ortiz")
    by_user = service.run(CONSULTAR_CLIENTE, {"usuario": "pedro.sanchez"})
    assert (by_user.output["nombre"], by_user.output["plan"]) == ("Pedro Sánchez", "100M")
    # A user lookup is a query on the router, not a scan.
    assert ["/ppp/secret/print", "=.proplist=name,profile,remote-address,disabled,comment", "?=name=pedro.sanchez"] in (
        router.received()
    )
    assert router.logins == 1  # one connection, reused by every lookup


def test_not_found_is_an_answer_not_an_error(service: Service) -> None:
    result = service.run(CONSULTAR_CLIENTE, {"dni": "99999999"})
    assert result.ok
    assert result.output["encontrado"] is False
    assert "DNI" in result.output["mensaje"]


def test_several_services_on_one_phone(service: Service, router: FakeRouterOS) -> None:
    with RouterClient(router.host, USER, PASSWORD, port=router.port) as client:
        client.add(
            "/ppp/secret",
            name="maria.pena.local",
            password="x1",
            profile="plan-10M",
            comment="tel=+5215550001111;dni=12345678;nombre=María Peña;plan=10M",
        )
    result = service.run(CONSULTAR_CLIENTE, {})
    assert result.output["varios"] is True
    assert sorted(c["servicio"] for c in result.output["clientes"]) == ["maria.pena", "maria.pena.local"]
    assert result.output["mensaje"] == SEVERAL
    status = service.run(ESTADO_CONEXION, {})
    assert status.output["mensaje"] == SEVERAL
    assert service.run(ESTADO_CONEXION, {"usuario": "maria.pena.local"}).output["conectado"] is False


def test_customer_without_pppoe_from_address_list_comments(make_service: Any) -> None:
    fixture = load_fixture(None)
    fixture["tables"][ADDRESS_LIST].append(
        {"list": DEBTORS, "address": "10.30.0.7", "comment": "tel=+5215550007777;dni=77001122;nombre=Ramón Íñiguez"}
    )
    with FakeRouterOS(fixture, USER, PASSWORD) as fake:
        service: Service = make_service(settings_for(("nucleo", fake)))
        found = service.run(CONSULTAR_CLIENTE, {"telefono": "555 000 7777"})
        assert (found.output["nombre"], found.output["servicio"]) == ("Ramón Íñiguez", "10.30.0.7")
        status = service.run(ESTADO_CONEXION, {"dni": "77001122"})
        assert status.output["suspendido_por_adeudo"] is True
        assert status.output["direccion_ip"] == "10.30.0.7"
        # A PPPoE customer's address-list entry (dni=45678901 only) is not taken for another customer.
        assert service.run(CONSULTAR_CLIENTE, {"dni": "45678901"}).output["servicio"] == "luis.hernandez"


def test_several_routers_and_one_of_them_down(router: FakeRouterOS, make_service: Any) -> None:
    fixture = {
        "tables": {
            "/ppp/secret": [
                {
                    "name": "ines.nunez",
                    "password": "In-1",
                    "comment": "tel=+5215559990000;dni=88112233;nombre=Inés Núñez",
                }
            ]
        }
    }
    with FakeRouterOS(fixture, USER, PASSWORD) as norte:
        down = free_port()
        service: Service = make_service(settings_for(("nucleo", router), ("norte", norte), ("sur", down)))
        started = time.monotonic()
        found = service.run(CONSULTAR_CLIENTE, {"dni": "88112233"})
        assert (found.output["nombre"], found.output["router"]) == ("Inés Núñez", "norte")
        missing = service.run(CONSULTAR_CLIENTE, {"dni": "10101010"})
        assert time.monotonic() - started < 2 * TIMEOUT
        # Not found anywhere it could look, and one router unreachable: that is not "no such customer".
        assert not missing.ok
        assert missing.output["error"] == ROUTER_DOWN


# -- the customer directory ----------------------------------------------------------------------------------


def write_directory(path: Path, rows: str) -> Path:
    path.write_text("usuario;nombre;dni;telefono;plan;router\n" + rows, encoding="utf-8")
    return path


def test_directory_lookup_needs_no_router(router: FakeRouterOS, make_service: Any, tmp_path: Path) -> None:
    directory = write_directory(
        tmp_path / "clientes.csv",
        "carmen.nunez;Carmen Núñez Ortiz;56789012;+52 1 555 000 5555;Plan Hogar 20;nucleo\n"
        "ana.garcia;Ana García;34567890;5550003333;Plan 50;\n",
    )
    service: Service = make_service(settings_for(("nucleo", router), CUSTOMER_DIRECTORY=str(directory)))
    result = service.run(CONSULTAR_CLIENTE, {}, caller="+5215550005555")
    assert result.output == {
        "ok": True,
        "encontrado": True,
        "nombre": "Carmen Núñez Ortiz",
        "plan": "Plan Hogar 20",
        "servicio": "carmen.nunez",
        "router": "nucleo",
    }
    assert router.received() == []
    # With one router, a row without one is on it; the connection state comes from the router.
    status = service.run(ESTADO_CONEXION, {"dni": "34567890"})
    assert (status.output["router"], status.output["conectado"]) == ("nucleo", True)


def test_directory_rows_without_a_router_are_located(router: FakeRouterOS, make_service: Any, tmp_path: Path) -> None:
    with FakeRouterOS({"tables": {}}, USER, PASSWORD) as empty:
        directory = write_directory(tmp_path / "clientes.csv", "luis.hernandez;Luis Hernández;45678901;5550004444;;\n")
        settings = settings_for(("vacio", empty), ("nucleo", router), CUSTOMER_DIRECTORY=str(directory))
        service: Service = make_service(settings)
        assert service.run(CONSULTAR_CLIENTE, {"dni": "45678901"}).output["router"] is None
        status = service.run(ESTADO_CONEXION, {"dni": "45678901"})
        assert (status.output["router"], status.output["suspendido_por_adeudo"]) == ("nucleo", True)


def test_directory_unreadable(router: FakeRouterOS, make_service: Any, tmp_path: Path) -> None:
    service: Service = make_service(settings_for(("nucleo", router), CUSTOMER_DIRECTORY=str(tmp_path / "no.csv")))
    result = service.run(CONSULTAR_CLIENTE, {})
    assert not result.ok
    assert result.output["error"] == DIRECTORY_DOWN
    ticket = service.run(REPORTAR_FALLA, {"sintoma": "sin internet"})
    assert ticket.ok
    assert service.records.get_ticket(ticket.output["numero_ticket"])["connection"] == {  # type: ignore[index]
        "error": "directorio de clientes no disponible"
    }


# -- estado_conexion -----------------------------------------------------------------------------------------


def test_status_of_an_active_customer(service: Service) -> None:
    result = service.run(ESTADO_CONEXION, {})
    output = result.output
    assert output["servicio"] == "maria.pena"
    assert output["conectado"] is True
    assert output["tiempo_conectado"] == "3d4h12m5s"
    assert output["direccion_ip"] == "10.20.0.11"
    assert output["mac_equipo"] == "AA:BB:CC:00:00:11"
    assert output["cuenta_deshabilitada"] is False
    assert output["suspendido_por_adeudo"] is False
    assert output["velocidad_maxima"] == {"subida": "10M", "bajada": "20M"}
    assert "activa" in output["resumen"]
    no_secrets_in(result)


def test_status_of_an_offline_customer(service: Service) -> None:
    output = service.run(ESTADO_CONEXION, {"usuario": "pedro.sanchez"}).output
    assert (output["conectado"], output["tiempo_conectado"], output["mac_equipo"]) == (False, None, None)
    assert output["direccion_ip"] == "10.20.0.16"  # from the secret's remote-address
    assert output["suspendido_por_adeudo"] is False
    assert "No hay una sesión" in output["resumen"]


def test_status_of_debtors(service: Service) -> None:
    luis = service.run(ESTADO_CONEXION, {"dni": "45678901"}).output
    assert (luis["conectado"], luis["suspendido_por_adeudo"], luis["prorroga_vigente"]) == (True, True, False)
    assert luis["velocidad_maxima"] == {"subida": "512k", "bajada": "512k"}
    assert "adeudo" in luis["resumen"]
    carmen = service.run(ESTADO_CONEXION, {"telefono": "5550005555"}).output
    assert (carmen["conectado"], carmen["cuenta_deshabilitada"], carmen["en_lista_morosos"]) == (False, True, True)
    assert carmen["velocidad_maxima"] is None  # her queue is disabled


def test_status_of_an_unknown_caller(service: Service) -> None:
    result = service.run(ESTADO_CONEXION, {}, caller="+5215551234567")
    assert result.ok
    assert result.output["encontrado"] is False


# -- reactivar_servicio: refusals ----------------------------------------------------------------------------

GOOD = {"dni": "45678901", "nombre": "luis hernandez", "confirmado": True}


def exception_entries(router: FakeRouterOS) -> list[dict[str, Any]]:
    return [row for row in read_back(router, ADDRESS_LIST) if row["list"] == EXCEPTIONS]


def test_refused_when_writes_are_disabled(router: FakeRouterOS, make_service: Any) -> None:
    service: Service = make_service(settings_for(("nucleo", router)))  # ROUTEROS_WRITES defaults to false
    result = service.run(REACTIVAR_SERVICIO, GOOD)
    assert not result.ok
    assert "operador" in result.output["error"]
    assert router.received() == []  # refused before any router traffic
    [audit] = service.records.audit_entries(CALL_ID)
    assert (audit["result"], audit["tool"], audit["caller"]) == ("refused", REACTIVAR_SERVICIO, MARIA_PHONE)
    assert "ROUTEROS_WRITES" in audit["reason"]
    assert exception_entries(router) == []


def test_refused_when_not_confirmed(service: Service, router: FakeRouterOS) -> None:
    result = service.run(REACTIVAR_SERVICIO, {**GOOD, "confirmado": False})
    assert not result.ok
    assert "confirmado=true" in result.output["error"]
    assert router.received() == []
    [audit] = service.records.audit_entries(CALL_ID)
    assert audit["result"] == "refused"
    assert "confirmed" in audit["reason"]


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        ({"dni": "45678901", "nombre": "Luis Pérez", "confirmado": True}, "name does not match"),
        ({"dni": "45678901", "telefono": "5550009999", "confirmado": True}, "phone does not match"),
        ({"dni": "45678901", "nombre": "Luis Hernández", "telefono": "5550001111", "confirmado": True}, "phone"),
        ({"dni": "12121212", "nombre": "Luis Hernández", "confirmado": True}, "no customer with that DNI"),
        ({"dni": "45678901", "confirmado": True}, "only the DNI"),
    ],
)
def test_refused_when_identity_is_not_verified(
    service: Service, router: FakeRouterOS, arguments: dict[str, Any], reason: str
) -> None:
    result = service.run(REACTIVAR_SERVICIO, arguments)
    assert not result.ok
    [audit] = service.records.audit_entries(CALL_ID)
    assert audit["result"] == "refused"
    assert reason in audit["reason"]
    assert exception_entries(router) == []
    assert not any(words[0].endswith("/add") for words in router.received())


def test_repeated_identity_failures_end_the_attempts(service: Service, router: FakeRouterOS) -> None:
    for _ in range(MAX_IDENTITY_FAILURES):
        assert service.run(REACTIVAR_SERVICIO, {**GOOD, "nombre": "Otra Persona"}).output["error"] == NOT_VERIFIED
    result = service.run(REACTIVAR_SERVICIO, GOOD)  # right data, too late in this call
    assert not result.ok
    assert "failed identity checks" in service.records.audit_entries(CALL_ID)[-1]["reason"]
    assert exception_entries(router) == []
    # Another call starts afresh.
    assert service.run(REACTIVAR_SERVICIO, GOOD, call_id="1732543399.20").output["reactivado"] is True


def test_nothing_to_do_for_a_customer_in_good_standing(service: Service, router: FakeRouterOS) -> None:
    result = service.run(REACTIVAR_SERVICIO, {"dni": "12345678", "nombre": "María Peña", "confirmado": True})
    assert result.ok
    assert result.output["reactivado"] is False
    assert service.records.audit_entries(CALL_ID)[0]["reason"] == "not in the debtors list: nothing to do"
    assert exception_entries(router) == []


def test_a_disabled_account_needs_a_person(service: Service, router: FakeRouterOS) -> None:
    result = service.run(REACTIVAR_SERVICIO, {"dni": "56789012", "nombre": "Carmen Núñez", "confirmado": True})
    assert not result.ok
    assert "operador" in result.output["error"]
    [audit] = service.records.audit_entries(CALL_ID)
    assert (audit["result"], audit["customer"]) == ("refused", "carmen.nunez")
    assert exception_entries(router) == []


# -- reactivar_servicio: the write ---------------------------------------------------------------------------


def test_allowed_write_adds_a_timed_exception_and_is_audited(service: Service, router: FakeRouterOS) -> None:
    result = service.run(REACTIVAR_SERVICIO, GOOD)
    assert result.ok, result.output
    assert (result.output["reactivado"], result.output["dias"]) == (True, 3)

    [entry] = exception_entries(router)
    assert entry["address"] == "10.20.0.14"
    assert entry["dynamic"] is True
    assert entry["timeout"] in ("3d", "2d23h59m59s")
    assert f"centralita={CALL_ID}" in entry["comment"]
    assert "dni=45678901" in entry["comment"]
    # The debtors entry stays: the router's firewall lets the exception list through first.
    assert any(row["list"] == DEBTORS and row["address"] == "10.20.0.14" for row in read_back(router, ADDRESS_LIST))

    [audit] = service.records.audit_entries(CALL_ID)
    assert audit["call_id"] == CALL_ID
    assert (audit["result"], audit["router"], audit["customer"]) == ("done", "nucleo", "luis.hernandez")
    assert audit["action"] == f"address-list add list={EXCEPTIONS} address=10.20.0.14 timeout=3d"
    assert audit["reason"] == f"entry {entry['.id']}"

    status = service.run(ESTADO_CONEXION, {"dni": "45678901"}).output
    assert (status["suspendido_por_adeudo"], status["prorroga_vigente"], status["en_lista_morosos"]) == (
        False,
        True,
        True,
    )

    again = service.run(REACTIVAR_SERVICIO, GOOD)
    assert again.ok
    assert again.output["reactivado"] is False
    assert "prórroga" in again.output["mensaje"]
    assert len(exception_entries(router)) == 1
    assert service.records.audit_entries(CALL_ID)[-1]["reason"] == "an exception is already in force"


def test_the_phone_is_a_second_data_point_too(router: FakeRouterOS, make_service: Any) -> None:
    service: Service = make_service(
        settings_for(("nucleo", router), ROUTEROS_WRITES="yes", ROUTEROS_EXCEPTION_DAYS="5")
    )
    result = service.run(REACTIVAR_SERVICIO, {"dni": "45678901", "telefono": "+52 1 555 000 4444", "confirmado": True})
    assert result.output["dias"] == 5
    [entry] = exception_entries(router)
    assert entry["timeout"] in ("5d", "4d23h59m59s")


def test_a_write_the_router_refuses_is_audited_as_failed(service: Service, router: FakeRouterOS) -> None:
    # A disabled exception entry does not count as one in force, but the router refuses a duplicate.
    with RouterClient(router.host, USER, PASSWORD, port=router.port) as client:
        client.add(ADDRESS_LIST, list=EXCEPTIONS, address="10.20.0.14", disabled=True, comment="vieja")
    result = service.run(REACTIVAR_SERVICIO, GOOD)
    assert not result.ok
    assert result.output["error"] == ROUTER_REFUSED
    [audit] = service.records.audit_entries(CALL_ID)
    assert audit["result"] == "failed"
    assert "already have such entry" in audit["reason"]


# -- reportar_falla ------------------------------------------------------------------------------------------


def test_ticket_with_the_connection_snapshot(service: Service) -> None:
    result = service.run(REPORTAR_FALLA, {"sintoma": "No tengo internet desde la mañana", "usuario": "pedro.sanchez"})
    assert result.ok
    number = result.output["numero_ticket"]
    assert str(number) in result.output["mensaje"]
    assert result.output["cliente"]["nombre"] == "Pedro Sánchez"
    assert "No hay una sesión" in result.output["estado_conexion"]
    ticket = service.records.get_ticket(number)
    assert ticket is not None
    assert (ticket["call_id"], ticket["customer"], ticket["customer_name"], ticket["router"]) == (
        CALL_ID,
        "pedro.sanchez",
        "Pedro Sánchez",
        "nucleo",
    )
    assert ticket["symptom"] == "No tengo internet desde la mañana"
    assert ticket["connection"]["conectado"] is False
    assert ticket["connection"]["direccion_ip"] == "10.20.0.16"
    second = service.run(REPORTAR_FALLA, {"sintoma": "lento"}, caller="anonymous")
    assert second.output["numero_ticket"] == number + 1
    assert second.output["cliente"] is None
    assert service.records.get_ticket(number + 1)["caller"] == "anonymous"  # type: ignore[index]


def test_a_ticket_needs_no_router(make_service: Any) -> None:
    service: Service = make_service(NetworkSettings.from_values({}))
    result = service.run(REPORTAR_FALLA, {"sintoma": "se corta cada rato"})
    assert result.ok
    [ticket] = service.records.tickets(CALL_ID)
    assert (ticket["customer"], ticket["caller"], ticket["connection"]) == (None, MARIA_PHONE, {})


# -- routers down or slow ------------------------------------------------------------------------------------

ROUTER_TOOLS = [
    (CONSULTAR_CLIENTE, {}),
    (ESTADO_CONEXION, {"dni": "45678901"}),
    (REACTIVAR_SERVICIO, GOOD),
]


@pytest.mark.parametrize(("tool", "arguments"), ROUTER_TOOLS)
def test_router_down_answers_at_once(make_service: Any, tool: str, arguments: dict[str, Any]) -> None:
    service: Service = make_service(settings_for(("nucleo", free_port()), ROUTEROS_WRITES="true"))
    started = time.monotonic()
    result = service.run(tool, arguments)
    assert time.monotonic() - started < TIMEOUT
    assert not result.ok
    assert result.output == {"ok": False, "error": ROUTER_DOWN}


@pytest.mark.parametrize(("tool", "arguments"), ROUTER_TOOLS)
def test_slow_router_answers_within_the_timeout(
    service: Service, router: FakeRouterOS, tool: str, arguments: dict[str, Any]
) -> None:
    router.faults.set_delay(int(TIMEOUT * 1000) + 700)
    started = time.monotonic()
    result = service.run(tool, arguments)
    elapsed = time.monotonic() - started
    assert elapsed < TIMEOUT + 0.2, elapsed
    assert not result.ok
    assert result.output["error"] == ROUTER_DOWN
    router.faults.clear()
    assert exception_entries(router) == []
    if tool == REACTIVAR_SERVICIO:
        [audit] = service.records.audit_entries(CALL_ID)
        assert audit["result"] == "failed"  # the lookup never finished: nothing was sent


def test_a_slow_router_does_not_hold_up_the_others(router: FakeRouterOS, make_service: Any) -> None:
    with FakeRouterOS({"tables": {}}, USER, PASSWORD) as slow:
        slow.faults.set_delay(int(TIMEOUT * 1000) + 700)
        service: Service = make_service(settings_for(("lento", slow), ("nucleo", router)))
        started = time.monotonic()
        result = service.run(CONSULTAR_CLIENTE, {"dni": "34567890"})
        assert time.monotonic() - started < TIMEOUT + 0.2
        assert result.output["nombre"] == "Ana García"


def test_router_down_still_files_the_ticket(make_service: Any) -> None:
    service: Service = make_service(settings_for(("nucleo", free_port())))
    result = service.run(REPORTAR_FALLA, {"sintoma": "sin servicio"})
    assert result.ok
    ticket = service.records.get_ticket(result.output["numero_ticket"])
    assert ticket is not None
    assert ticket["connection"] == {"error": "no se pudo consultar el router"}


def test_the_router_comes_back(make_service: Any) -> None:
    port = free_port()
    service: Service = make_service(settings_for(("nucleo", port)))
    assert service.run(CONSULTAR_CLIENTE, {}).output["error"] == ROUTER_DOWN
    with FakeRouterOS(None, USER, PASSWORD, port=port):
        assert service.run(CONSULTAR_CLIENTE, {}).output["nombre"] == "María Peña"


def test_wrong_password_is_a_speakable_error_and_a_logged_one(
    router: FakeRouterOS, make_service: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings = NetworkSettings.from_values(
        {
            "ROUTEROS_ROUTERS": "nucleo",
            **router_values("nucleo", router.host, router.port, PASSWORD="mala-clave-123"),
            "ROUTEROS_TIMEOUT": str(TIMEOUT),
            "DIALER_COUNTRY_CODE": "52",
        }
    )
    service: Service = make_service(settings)
    with caplog.at_level(logging.INFO, logger="centralita"):
        result = service.run(ESTADO_CONEXION, {})
    assert result.output["error"] == ROUTER_DOWN
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors
    assert "refused the login" in errors[0].getMessage()
    assert "mala-clave-123" not in caplog.text


# -- the pool's deadline, directly ---------------------------------------------------------------------------


def test_pool_reports_whether_late_work_had_started(router: FakeRouterOS) -> None:
    release = threading.Event()
    running = threading.Event()

    def blocking(name: str, client: RouterClient, deadline: Deadline) -> str:
        running.set()
        release.wait(5)
        return name

    def quick(name: str, client: RouterClient, deadline: Deadline) -> str:
        return "quick"

    with RouterPool(settings_for(("nucleo", router))) as pool:
        with pytest.raises(RouterLate) as first:
            pool.run("nucleo", blocking, Deadline.after(0.2))
        assert first.value.started is True
        assert running.is_set()
        with pytest.raises(RouterLate) as second:  # queued behind the first: dropped, never run
            pool.run("nucleo", quick, Deadline.after(0.1))
        assert second.value.started is False
        release.set()
        assert pool.run("nucleo", quick, Deadline.after(1)) == "quick"
        with pytest.raises(KeyError):
            pool.run("otro", quick, Deadline.after(1))


def test_a_ca_file_that_cannot_be_read_stops_the_start(tmp_path: Path) -> None:
    settings = NetworkSettings.from_values(
        {
            "ROUTEROS_ROUTERS": "nucleo",
            **router_values("nucleo", "127.0.0.1", 8729, TLS="true", CA_FILE=str(tmp_path / "no-ca.pem")),
        }
    )
    with pytest.raises(ConfigError, match="ROUTEROS_NUCLEO_CA_FILE"):
        RouterPool(settings)


def test_tools_over_api_ssl_with_a_ca_file(make_service: Any, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    other_ca, _ = self_signed(tmp_path, name="otra")
    with FakeRouterOS(None, USER, PASSWORD, tls_cert=cert, tls_key=key) as secure:
        trusted: Service = make_service(
            NetworkSettings.from_values(
                {
                    "ROUTEROS_ROUTERS": "nucleo",
                    **router_values("nucleo", "127.0.0.1", secure.port, TLS="true", CA_FILE=str(cert)),
                    "DIALER_COUNTRY_CODE": "52",
                }
            )
        )
        assert trusted.run(CONSULTAR_CLIENTE, {}).output["nombre"] == "María Peña"
        untrusted: Service = make_service(
            NetworkSettings.from_values(
                {
                    "ROUTEROS_ROUTERS": "nucleo",
                    **router_values("nucleo", "127.0.0.1", secure.port, TLS="true", CA_FILE=str(other_ca)),
                    "DIALER_COUNTRY_CODE": "52",
                }
            )
        )
        assert untrusted.run(CONSULTAR_CLIENTE, {}).output["error"] == ROUTER_DOWN
        assert secure.logins == 1


# -- bad arguments never reach a router ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        (CONSULTAR_CLIENTE, {"dni": 45678901}, "debe ser texto"),
        (CONSULTAR_CLIENTE, {"cedula": "45678901"}, "no se reconoce"),
        (CONSULTAR_CLIENTE, {"telefono": "12"}, "no es válido"),
        (CONSULTAR_CLIENTE, {"usuario": "luis hernandez"}, "espacios"),
        (CONSULTAR_CLIENTE, {"dni": "9" * 21}, "demasiado largo"),
        (CONSULTAR_CLIENTE, "[1, 2]", "objeto"),
        (CONSULTAR_CLIENTE, "{no es json", "JSON"),
        (ESTADO_CONEXION, {"telefono": "llámame"}, "solo puede tener dígitos"),
        (REACTIVAR_SERVICIO, {"dni": "45678901", "nombre": "Luis Hernández"}, "Falta el dato confirmado"),
        (REACTIVAR_SERVICIO, {**GOOD, "confirmado": "sí"}, "verdadero o falso"),
        (REACTIVAR_SERVICIO, {**GOOD, "dni": "1"}, "entre 4 y 20"),
        (REACTIVAR_SERVICIO, {**GOOD, "telefono": "555"}, "no es válido"),
        (REPORTAR_FALLA, {}, "Falta el dato sintoma"),
        (REPORTAR_FALLA, {"sintoma": "  "}, "Describa la falla"),
        (REPORTAR_FALLA, {"sintoma": "lento", "telefono": "123"}, "no es válido"),
    ],
)
def test_bad_arguments_are_refused_before_any_router_traffic(
    service: Service, router: FakeRouterOS, tool: str, arguments: dict[str, Any] | str, message: str
) -> None:
    result = service.run(tool, arguments)
    assert not result.ok
    assert message in result.output["error"]
    assert router.received() == []
    assert router.accepted_connections == 0
    assert service.records.tickets() == []


def test_no_caller_number_asks_for_another_key(service: Service, router: FakeRouterOS) -> None:
    # "50001111" once matched María (the last 8 digits of her number): a stranger must not be taken for her.
    for caller in ("", "anonymous", "123", "50001111", "+52 55 5000 111"):
        result = service.run(CONSULTAR_CLIENTE, {}, caller=caller)
        assert result.output == {"ok": False, "error": NO_CALLER}
    assert router.received() == []


@pytest.mark.parametrize("caller", ["5550001111", "+52 1 55 5000 1111", "525550001111", "044 55 5000 1111"])
def test_the_callers_number_in_any_format(service: Service, caller: str) -> None:
    assert service.run(CONSULTAR_CLIENTE, {}, caller=caller).output["servicio"] == "maria.pena"


def test_without_a_country_code_only_international_caller_ids_match(
    router: FakeRouterOS, make_service: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """National caller IDs cannot be read without DIALER_COUNTRY_CODE: they find nobody, and the log says why."""
    with caplog.at_level(logging.WARNING, logger="centralita"):
        service: Service = make_service(settings_for(("nucleo", router), DIALER_COUNTRY_CODE=""))
    assert "DIALER_COUNTRY_CODE is not set" in caplog.text
    assert service.run(CONSULTAR_CLIENTE, {}, caller="5550001111").output == {"ok": False, "error": NO_CALLER}
    assert service.run(CONSULTAR_CLIENTE, {}, caller="+52 55 5000 1111").output["servicio"] == "maria.pena"
    refused = service.run(CONSULTAR_CLIENTE, {"telefono": "55 5000 1111"})
    assert "código de país" in refused.output["error"]


def test_a_bad_country_code_stops_the_start() -> None:
    with pytest.raises(ConfigError, match="DIALER_COUNTRY_CODE is '999', not the country calling code of any country"):
        NetworkSettings.from_values({"DIALER_COUNTRY_CODE": "999"})


# -- logs ----------------------------------------------------------------------------------------------------


def test_log_lines_carry_the_call_and_no_password(service: Service, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        service.run(CONSULTAR_CLIENTE, {})
        service.run(ESTADO_CONEXION, {"dni": "45678901"})
        service.run(REACTIVAR_SERVICIO, GOOD)
    ours = [record for record in caplog.records if record.name.startswith("centralita")]
    assert len(ours) >= 3
    assert all(getattr(record, "call_id", None) == CALL_ID for record in ours)
    assert any("added to promesa-pago" in record.getMessage() for record in ours)
    text = "\n".join(record.getMessage() for record in ours)
    for secret in SECRETS:
        assert secret not in text
    assert "45678901" not in text  # IDs stay out of our lines
    # librouteros itself, at DEBUG, logs the login word with the password: the service hides it.
    login_lines = [record for record in caplog.records if "=password=" in record.getMessage()]
    assert login_lines
    settings = Settings.from_values({"OPENAI_API_KEY": "sk-test-0123456789", "ARI_PASSWORD": "ari-secreto"})
    redacting = RedactingFilter(log_secrets(settings, service.settings))
    for record in login_lines:
        redacting.filter(record)
        assert PASSWORD not in record.getMessage()
        assert "***" in record.getMessage()
