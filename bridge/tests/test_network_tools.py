"""The network tools against the fake RouterOS over TCP, through the real librouteros, as the call runs them.

Every tool is run the way ``Call`` runs it: ``ToolRegistry.run(name, <JSON text>, ToolContext)``, with
one ``CallIdentity`` per call, so argument checks, errors and results are what the model would get. What the
router holds afterwards is read back over a separate librouteros connection, and what reached it from
``FakeRouterOS.received``. The hostile caller's side (forged arguments, limits) is test_hostile_caller.py.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from certs import self_signed
from network_support import (
    ADDRESS_LIST,
    CALL_ID,
    DEBTORS,
    EXCEPTIONS,
    LUIS_PHONE,
    LUIS_VERIFY,
    MARIA_PHONE,
    PASSWORD,
    SECRETS,
    STRANGER,
    TIMEOUT,
    USER,
    Service,
    ServiceFactory,
    SettableClock,
    exception_entries,
    output_text,
    read_back,
    router_values,
    settings_for,
    writes,
)
from polling import free_port, wait_for

from centralita.calls.service import log_secrets, service_tools
from centralita.config.box import load_all
from centralita.config.bridge import Settings
from centralita.config.env import ConfigError
from centralita.config.network import Factor, NetworkSettings, Requirement
from centralita.isp.routeros.client import RouterClient
from centralita.isp.routeros.pool import MAX_QUEUED_PER_OWNER, Deadline, RouterBusy, RouterLate, RouterPool
from centralita.logs import RedactingFilter
from centralita.storage.records import CallRecords
from centralita.tools.identity import CallIdentity, Method
from centralita.tools.network import (
    CONSULTAR_CLIENTE,
    DIRECTORY_DOWN,
    ESTADO_CONEXION,
    REACTIVAR_SERVICIO,
    REPORTAR_FALLA,
    ROUTER_DOWN,
    ROUTER_REFUSED,
    VERIFICAR_IDENTIDAD,
)
from centralita.tools.registry import ToolContext
from centralita_testing.fake_routeros.server import FakeRouterOS
from centralita_testing.fake_routeros.state import load_fixture


@pytest.fixture
def router() -> Iterator[FakeRouterOS]:
    with FakeRouterOS(None, USER, PASSWORD) as fake:
        yield fake


@pytest.fixture
def make_service(tmp_path: Path) -> Iterator[ServiceFactory]:
    factory = ServiceFactory(tmp_path)
    yield factory
    factory.close()


@pytest.fixture
def service(router: FakeRouterOS, make_service: ServiceFactory) -> Service:
    return make_service(settings_for(("nucleo", router), ROUTEROS_WRITES="true"))


def no_secrets_in(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def verified_luis(service: Service, caller: str = LUIS_PHONE) -> Any:
    """A call from ``caller`` verified as Luis Hernández with his DNI and customer number."""
    call = service.call(caller)
    result = call.run(VERIFICAR_IDENTIDAD, LUIS_VERIFY)
    assert result.output["verificado"] is True, result.output
    return call


# -- which tools, and their schemas --------------------------------------------------------------------------


def test_tools_follow_the_configuration(router: FakeRouterOS, make_service: ServiceFactory, tmp_path: Path) -> None:
    nothing = make_service(NetworkSettings.from_values({}))
    assert list(nothing.registry.tools) == [REPORTAR_FALLA]
    directory = tmp_path / "clientes.csv"
    directory.write_text("usuario,nombre,dni,telefono\n", encoding="utf-8")
    only_directory = make_service(NetworkSettings.from_values({"CUSTOMER_DIRECTORY": str(directory)}))
    assert list(only_directory.registry.tools) == [CONSULTAR_CLIENTE, VERIFICAR_IDENTIDAD, REPORTAR_FALLA]
    routers = make_service(settings_for(("nucleo", router)))
    assert list(routers.registry.tools) == [
        CONSULTAR_CLIENTE,
        VERIFICAR_IDENTIDAD,
        ESTADO_CONEXION,
        REACTIVAR_SERVICIO,
        REPORTAR_FALLA,
    ]
    for schema in routers.registry.schemas():
        assert schema["type"] == "function"
        assert schema["parameters"]["additionalProperties"] is False
        assert schema["description"]
    tools = routers.registry.tools
    # Acting tools take no identity: they act on the call's verified customer.
    for name in (ESTADO_CONEXION, REACTIVAR_SERVICIO, REPORTAR_FALLA):
        assert not {"dni", "nombre", "telefono", "usuario"} & set(tools[name].parameters["properties"]), name
    assert tools[REACTIVAR_SERVICIO].parameters["required"] == ["confirmado"]
    assert set(tools[VERIFICAR_IDENTIDAD].parameters["properties"]) == {"dni", "numero_cliente"}  # the default
    assert "nombre" not in json.dumps(tools[VERIFICAR_IDENTIDAD].parameters)
    assert router.accepted_connections == 0  # building the tools touches no router


def test_the_verification_schema_follows_the_factors(router: FakeRouterOS, make_service: ServiceFactory) -> None:
    service = make_service(settings_for(("nucleo", router), IDENTITY_FACTORS="usuario,telefono"))
    schema = service.registry.tools[VERIFICAR_IDENTIDAD].parameters
    assert set(schema["properties"]) == {"dni", "usuario", "ultimos_digitos"}
    assert "4 dígitos" in schema["properties"]["ultimos_digitos"]["description"]


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
            VERIFICAR_IDENTIDAD,
            ESTADO_CONEXION,
            REACTIVAR_SERVICIO,
            REPORTAR_FALLA,
        ]
        result = registry.run(CONSULTAR_CLIENTE, "{}", ToolContext(CALL_ID, MARIA_PHONE, ""))
        assert result.output["verificado"] is True
    empty = tmp_path / "empty.env"
    empty.write_text("\n".join(required) + "\n", encoding="utf-8")
    with CallRecords(tmp_path / "db2.sqlite") as records:
        network = load_all(empty).network
        with RouterPool(network) as pool:
            assert list(service_tools(network, records, pool).tools)[2:] == [REPORTAR_FALLA]


def test_identity_settings_and_their_problems() -> None:
    policy = NetworkSettings.from_values({}).identity
    assert (policy.caller_id, policy.factors, policy.read_requires, policy.write_requires) == (
        True,
        (Factor.CLIENTE,),
        Requirement.ANY,
        Requirement.DNI,
    )
    assert (policy.max_failures, policy.failure_window) == (3, timedelta(hours=24))
    settings = NetworkSettings.from_values(
        {"ROUTEROS_REACTIVATION_PERIOD": "15d", "IDENTITY_FACTORS": "Usuario, cliente"}
    )
    assert settings.reactivation_period == timedelta(days=15)
    assert settings.identity.factors == (Factor.USUARIO, Factor.CLIENTE)
    with pytest.raises(ConfigError) as raised:
        NetworkSettings.from_values(
            {
                "IDENTITY_FACTORS": "nombre",
                "IDENTITY_READ_REQUIRES": "siempre",
                "IDENTITY_FAILURE_WINDOW": "1m",
                "ROUTEROS_REACTIVATION_LIMIT": "-1",
                "LOOKUP_MAX_PER_CALL": "0",
            }
        )
    text = str(raised.value)
    assert "IDENTITY_FACTORS is 'nombre', which names 'nombre'" in text
    assert "a name is public" in text
    assert "IDENTITY_READ_REQUIRES is 'siempre', not one of any, dni, both" in text
    assert "IDENTITY_FAILURE_WINDOW is '1m', not between 10m and 366d" in text
    assert "ROUTEROS_REACTIVATION_LIMIT is '-1'" in text
    assert "LOOKUP_MAX_PER_CALL is '0'" in text
    with pytest.raises(ConfigError, match=r"IDENTITY_WRITE_REQUIRES is 'dni'.*IDENTITY_FACTORS names none"):
        NetworkSettings.from_values({"IDENTITY_FACTORS": "none"})
    with pytest.raises(ConfigError, match=r"IDENTITY_WRITE_REQUIRES is 'both'.*IDENTITY_CALLER_ID is false"):
        NetworkSettings.from_values({"IDENTITY_WRITE_REQUIRES": "both", "IDENTITY_CALLER_ID": "false"})
    with pytest.raises(ConfigError, match="no caller could ever be verified"):
        NetworkSettings.from_values(
            {"IDENTITY_FACTORS": "none", "IDENTITY_CALLER_ID": "no", "IDENTITY_WRITE_REQUIRES": "any"}
        )


# -- who is calling: the caller ID ---------------------------------------------------------------------------


def test_the_callers_number_verifies_the_call_for_reading(service: Service, router: FakeRouterOS) -> None:
    call = service.call(MARIA_PHONE)
    result = call.run(CONSULTAR_CLIENTE)
    assert result.ok
    assert result.output == {
        "ok": True,
        "encontrado": True,
        "verificado": True,
        "servicios": [{"servicio": "1", "plan": "20M"}],
        "puede_consultar_estado": True,
        "puede_reactivar": False,  # a caller ID alone is not enough to change anything (IDENTITY_WRITE_REQUIRES=dni)
        "mensaje": result.output["mensaje"],
    }
    assert "número de cliente" in result.output["mensaje"]
    text = output_text(result)
    for word in ("María", "Peña", "maria.pena", "12345678", "10001", "5550001111", "10.20.0.11", "nucleo"):
        assert word not in text
    assert call.identity.verified is not None
    assert call.identity.verified.methods == {Method.CALLER_ID}
    # The PPP secrets were read with a .proplist that leaves the password out.
    secret_prints = [words for words in router.received() if words[0] == "/ppp/secret/print"]
    assert secret_prints
    for words in secret_prints:
        proplist = next(word for word in words if word.startswith("=.proplist="))
        assert "password" not in proplist
    [audit] = service.records.audit_entries(call.call_id)
    assert (audit["tool"], audit["result"], audit["customer_id"]) == (VERIFICAR_IDENTIDAD, "done", "12345678")


@pytest.mark.parametrize("caller", ["5550001111", "+52 1 55 5000 1111", "525550001111", "044 55 5000 1111"])
def test_the_callers_number_in_any_format(service: Service, caller: str) -> None:
    assert service.call(caller).run(CONSULTAR_CLIENTE).output["verificado"] is True


@pytest.mark.parametrize("caller", ["", "anonymous", "123", "50001111", "+52 55 5000 111", STRANGER])
def test_an_unknown_or_unreadable_caller_is_not_verified(service: Service, caller: str) -> None:
    # "50001111" once matched María (the last 8 digits of her number): a stranger must not be taken for her.
    result = service.call(caller).run(CONSULTAR_CLIENTE)
    assert result.ok
    assert (result.output["encontrado"], result.output["verificado"]) == (False, False)
    assert "DNI" in result.output["mensaje"]
    assert "verificar_identidad" in result.output["mensaje"]


def test_caller_id_verification_can_be_turned_off(router: FakeRouterOS, make_service: ServiceFactory) -> None:
    service = make_service(settings_for(("nucleo", router), IDENTITY_CALLER_ID="false"))
    result = service.call(MARIA_PHONE).run(CONSULTAR_CLIENTE)
    assert result.output["verificado"] is False


def test_the_dialers_calls_never_verify_by_the_number_dialled(service: Service) -> None:
    call = service.call(MARIA_PHONE, inbound=False)
    assert call.run(CONSULTAR_CLIENTE).output["verificado"] is False
    assert not call.run(ESTADO_CONEXION).ok


def test_a_number_on_file_for_two_customers_verifies_nobody(service: Service, router: FakeRouterOS) -> None:
    with RouterClient(router.host, USER, PASSWORD, port=router.port) as client:
        client.add("/ppp/secret", name="hijo.pena", password="x1", comment="tel=5550001111;dni=99887766;cliente=20001")
    result = service.call(MARIA_PHONE).run(CONSULTAR_CLIENTE)
    assert (result.output["encontrado"], result.output["verificado"]) == (True, False)
    assert "no basta" in result.output["mensaje"]


def test_one_customer_with_two_services(service: Service, router: FakeRouterOS) -> None:
    with RouterClient(router.host, USER, PASSWORD, port=router.port) as client:
        client.add(
            "/ppp/secret",
            name="maria.pena.local",
            password="x1",
            profile="plan-10M",
            comment="tel=+5215550001111;dni=12345678;cliente=10001;nombre=María Peña;plan=10M",
        )
    call = service.call(MARIA_PHONE)
    result = call.run(CONSULTAR_CLIENTE)
    assert result.output["verificado"] is True
    assert result.output["servicios"] == [{"servicio": "1", "plan": "20M"}, {"servicio": "2", "plan": "10M"}]
    assert "varios servicios" in result.output["mensaje"]
    asked = call.run(ESTADO_CONEXION)
    assert not asked.ok
    assert "servicio 2: plan 10M" in asked.output["error"]
    assert call.run(ESTADO_CONEXION, {"servicio": "1"}).output["conectado"] is True
    assert call.run(ESTADO_CONEXION, {"servicio": "2"}).output["conectado"] is False
    assert "no tiene un servicio 3" in call.run(ESTADO_CONEXION, {"servicio": "3"}).output["error"]


# -- consultar_cliente by what the caller said ----------------------------------------------------------------


def test_a_lookup_by_dni_or_phone_says_found_and_what_to_ask(service: Service) -> None:
    call = service.call(STRANGER)
    found = call.run(CONSULTAR_CLIENTE, {"dni": "45.678.901"})
    assert found.output == {
        "ok": True,
        "encontrado": True,
        "verificado": False,
        "mensaje": found.output["mensaje"],
    }
    assert "número de cliente" in found.output["mensaje"]
    for word in ("Luis", "Hernández", "luis.hernandez", "10M", "10.20.0.14"):
        assert word not in output_text(found)
    by_phone = call.run(CONSULTAR_CLIENTE, {"telefono": "+52 1 555 000 2222"})
    assert by_phone.output["encontrado"] is True
    missing = call.run(CONSULTAR_CLIENTE, {"dni": "99999999"})
    assert (missing.ok, missing.output["encontrado"]) == (True, False)
    assert call.identity.verified is None  # a lookup verifies nothing


def test_a_verified_caller_learns_nothing_about_other_accounts(service: Service) -> None:
    call = service.call(MARIA_PHONE)
    assert call.run(CONSULTAR_CLIENTE).output["verificado"] is True
    other = call.run(CONSULTAR_CLIENTE, {"dni": "45678901"})
    assert other.output["encontrado"] is True
    assert "no es del titular verificado" in other.output["mensaje"]
    assert "servicios" not in other.output
    own = call.run(CONSULTAR_CLIENTE, {"dni": "12345678"})
    assert own.output["servicios"] == [{"servicio": "1", "plan": "20M"}]


def test_customer_without_pppoe_from_address_list_comments(make_service: ServiceFactory) -> None:
    fixture = load_fixture(None)
    fixture["tables"][ADDRESS_LIST].append(
        {
            "list": DEBTORS,
            "address": "10.30.0.7",
            "comment": "tel=+5215550007777;dni=77001122;cliente=30007;nombre=Ramón Íñiguez",
        }
    )
    with FakeRouterOS(fixture, USER, PASSWORD) as fake:
        service = make_service(settings_for(("nucleo", fake), ROUTEROS_WRITES="true"))
        call = service.call("555 000 7777")
        assert call.run(CONSULTAR_CLIENTE).output["verificado"] is True
        status = call.run(ESTADO_CONEXION).output
        assert status["suspendido_por_adeudo"] is True
        assert "direccion_ip" not in status
        assert call.run(VERIFICAR_IDENTIDAD, {"dni": "77001122", "numero_cliente": "30007"}).output["puede_reactivar"]
        assert call.run(REACTIVAR_SERVICIO, {"confirmado": True}).output["reactivado"] is True
        [entry] = [row for row in exception_entries(fake) if row["address"] == "10.30.0.7"]
        assert "usuario=10.30.0.7" in entry["comment"]
        # A PPPoE customer's address-list entry (dni=45678901 only) is not taken for another customer.
        luis = verified_luis(service)
        assert luis.identity.verified.services[0].service == "luis.hernandez"


def test_several_routers_and_one_of_them_down(router: FakeRouterOS, make_service: ServiceFactory) -> None:
    fixture = {
        "tables": {
            "/ppp/secret": [
                {
                    "name": "ines.nunez",
                    "password": "In-1",
                    "comment": "tel=+5215559990000;dni=88112233;cliente=40001;nombre=Inés Núñez",
                }
            ]
        }
    }
    with FakeRouterOS(fixture, USER, PASSWORD) as norte:
        down = free_port()
        service = make_service(settings_for(("nucleo", router), ("norte", norte), ("sur", down)))
        started = time.monotonic()
        call = service.call(STRANGER)
        found = call.run(VERIFICAR_IDENTIDAD, {"dni": "88112233", "numero_cliente": "40001"})
        assert found.output["verificado"] is True
        assert call.identity.verified is not None
        assert call.identity.verified.services[0].router == "norte"
        missing = service.call(STRANGER).run(CONSULTAR_CLIENTE, {"dni": "10101010"})
        assert time.monotonic() - started < 4 * TIMEOUT
        # Not found anywhere it could look, and one router unreachable: that is not "no such customer".
        assert not missing.ok
        assert missing.output["error"] == ROUTER_DOWN


# -- the customer directory ----------------------------------------------------------------------------------


def write_directory(path: Path, rows: str) -> Path:
    path.write_text("usuario;nombre;dni;telefono;cliente;plan;router\n" + rows, encoding="utf-8")
    return path


def test_directory_lookup_needs_no_router(router: FakeRouterOS, make_service: ServiceFactory, tmp_path: Path) -> None:
    directory = write_directory(
        tmp_path / "clientes.csv",
        "carmen.nunez;Carmen Núñez Ortiz;56789012;+52 1 555 000 5555;C-5;Plan Hogar 20;nucleo\n"
        "ana.garcia;Ana García;34567890;5550003333;C-3;Plan 50;\n",
    )
    service = make_service(settings_for(("nucleo", router), CUSTOMER_DIRECTORY=str(directory)))
    result = service.call("+5215550005555").run(CONSULTAR_CLIENTE)
    assert result.output["servicios"] == [{"servicio": "1", "plan": "Plan Hogar 20"}]
    assert router.received() == []
    # With one router, a row without one is on it; the connection state comes from the router.
    call = service.call(STRANGER)
    assert call.run(VERIFICAR_IDENTIDAD, {"dni": "34567890", "numero_cliente": "c3"}).output["verificado"] is True
    status = call.run(ESTADO_CONEXION)
    assert status.output["conectado"] is True


def test_directory_rows_without_a_router_are_located(
    router: FakeRouterOS, make_service: ServiceFactory, tmp_path: Path
) -> None:
    with FakeRouterOS({"tables": {}}, USER, PASSWORD) as empty:
        directory = write_directory(
            tmp_path / "clientes.csv", "luis.hernandez;Luis Hernández;45678901;5550004444;10004;;\n"
        )
        settings = settings_for(("vacio", empty), ("nucleo", router), CUSTOMER_DIRECTORY=str(directory))
        service = make_service(settings)
        call = service.call(LUIS_PHONE)
        status = call.run(ESTADO_CONEXION)
        assert status.output["suspendido_por_adeudo"] is True


def test_directory_unreadable(router: FakeRouterOS, make_service: ServiceFactory, tmp_path: Path) -> None:
    service = make_service(settings_for(("nucleo", router), CUSTOMER_DIRECTORY=str(tmp_path / "no.csv")))
    result = service.call(STRANGER).run(CONSULTAR_CLIENTE, {"dni": "45678901"})
    assert not result.ok
    assert result.output["error"] == DIRECTORY_DOWN
    ticket = service.call(MARIA_PHONE).run(REPORTAR_FALLA, {"sintoma": "sin internet"})
    assert ticket.ok
    stored = service.records.get_ticket(ticket.output["numero_ticket"])
    assert stored is not None
    assert stored["connection"] == {"identidad": "sin verificar"}


# -- estado_conexion -----------------------------------------------------------------------------------------


def test_status_of_the_callers_own_active_service(service: Service) -> None:
    result = service.call(MARIA_PHONE).run(ESTADO_CONEXION)
    output = result.output
    assert output == {
        "ok": True,
        "conectado": True,
        "tiempo_conectado": "3d4h12m5s",
        "cuenta_encontrada": True,
        "cuenta_deshabilitada": False,
        "suspendido_por_adeudo": False,
        "prorroga_vigente": False,
        "prorroga_restante": None,
        "velocidad_maxima": {"subida": "10M", "bajada": "20M"},
        "resumen": output["resumen"],
    }
    assert "activa" in output["resumen"]
    text = output_text(result)
    for word in ("10.20.0.11", "AA:BB:CC:00:00:11", "maria.pena", "María"):  # what the caller does not need
        assert word not in text
    no_secrets_in(text)


def test_status_of_an_offline_customer_verified_by_dni(service: Service) -> None:
    call = service.call(STRANGER)
    assert call.run(VERIFICAR_IDENTIDAD, {"dni": "67890123", "numero_cliente": "10006"}).output["verificado"]
    output = call.run(ESTADO_CONEXION).output
    assert (output["conectado"], output["tiempo_conectado"]) == (False, None)
    assert output["suspendido_por_adeudo"] is False
    assert "No hay una sesión" in output["resumen"]


def test_status_of_debtors(service: Service) -> None:
    luis = service.call(LUIS_PHONE).run(ESTADO_CONEXION).output
    assert (luis["conectado"], luis["suspendido_por_adeudo"], luis["prorroga_vigente"]) == (True, True, False)
    assert luis["velocidad_maxima"] == {"subida": "512k", "bajada": "512k"}
    assert "adeudo" in luis["resumen"]
    carmen = service.call("5550005555").run(ESTADO_CONEXION).output
    assert (carmen["conectado"], carmen["cuenta_deshabilitada"], carmen["suspendido_por_adeudo"]) == (
        False,
        True,
        True,
    )
    assert carmen["velocidad_maxima"] is None  # her queue is disabled


def test_status_reads_are_queries_on_the_one_account(service: Service, router: FakeRouterOS) -> None:
    service.call(LUIS_PHONE).run(CONSULTAR_CLIENTE)
    before = len(router.received())
    service.call(LUIS_PHONE, "1732543400.9").run(ESTADO_CONEXION)
    sent = router.received()[before:]
    queue_reads = [words for words in sent if words[0] == "/queue/simple/print"]
    assert queue_reads == [
        ["/queue/simple/print", "=.proplist=name,target,max-limit,comment,disabled", "?=target=10.20.0.14/32"]
    ]
    assert ["/ppp/active/print", "=.proplist=name,address,uptime,caller-id", "?=name=luis.hernandez"] in sent


def test_status_needs_a_verified_caller(service: Service, router: FakeRouterOS) -> None:
    call = service.call(STRANGER)
    result = call.run(ESTADO_CONEXION)
    assert not result.ok
    assert "verificar la identidad" in result.output["error"]
    assert not any(words[0] == "/ppp/active/print" for words in router.received())
    [audit] = service.records.audit_entries(call.call_id)
    assert (audit["tool"], audit["result"]) == (ESTADO_CONEXION, "refused")
    assert "not verified" in audit["reason"]


def test_reading_can_require_the_dni(router: FakeRouterOS, make_service: ServiceFactory) -> None:
    service = make_service(settings_for(("nucleo", router), IDENTITY_READ_REQUIRES="dni"))
    call = service.call(LUIS_PHONE)
    assert call.run(CONSULTAR_CLIENTE).output["puede_consultar_estado"] is False
    assert not call.run(ESTADO_CONEXION).ok
    assert call.run(VERIFICAR_IDENTIDAD, LUIS_VERIFY).output["puede_consultar_estado"] is True
    assert call.run(ESTADO_CONEXION).output["suspendido_por_adeudo"] is True


# -- verificar_identidad -------------------------------------------------------------------------------------


def test_the_dni_with_the_customer_number_verifies(service: Service) -> None:
    call = service.call(LUIS_PHONE)
    result = call.run(VERIFICAR_IDENTIDAD, {"dni": "45.678.901", "numero_cliente": " 10 004 "})
    assert result.output["verificado"] is True
    assert (result.output["puede_consultar_estado"], result.output["puede_reactivar"]) == (True, True)
    assert call.identity.verified is not None
    assert call.identity.verified.methods == {Method.CALLER_ID, Method.DNI}  # his own number too
    stranger = verified_luis(service, STRANGER)
    assert stranger.identity.verified.methods == {Method.DNI}
    audits = [row for row in service.records.audit_entries() if row["result"] == "done"]
    assert [row["action"] for row in audits][-1] == "verify identity by dni+cliente"


def test_half_the_data_is_not_an_attempt(service: Service) -> None:
    call = service.call(STRANGER)
    only_dni = call.run(VERIFICAR_IDENTIDAD, {"dni": "45678901"})
    assert not only_dni.ok
    assert "El DNI solo no basta" in only_dni.output["error"]
    only_number = call.run(VERIFICAR_IDENTIDAD, {"numero_cliente": "10004"})
    assert "Falta el DNI" in only_number.output["error"]
    assert service.records.caller_events(call.call_id) == []  # nothing looked up, no failure counted
    state = call.run(VERIFICAR_IDENTIDAD)
    assert state.output["verificado"] is False
    assert [row["kind"] for row in service.records.caller_events(call.call_id)] == ["lookup"]


@pytest.mark.parametrize(
    ("factors", "arguments", "verified"),
    [
        ("usuario", {"dni": "45678901", "usuario": "luis.hernandez"}, True),
        ("usuario", {"dni": "45678901", "usuario": "Luis Hernández"}, False),
        ("telefono", {"dni": "45678901", "ultimos_digitos": "4444"}, True),
        ("telefono", {"dni": "45678901", "ultimos_digitos": "44 44"}, True),
        ("telefono", {"dni": "45678901", "ultimos_digitos": "444"}, False),  # exactly IDENTITY_PHONE_DIGITS digits
        ("telefono", {"dni": "45678901", "ultimos_digitos": "1111"}, False),
        ("cliente,telefono", {"dni": "45678901", "numero_cliente": "10004", "ultimos_digitos": "1111"}, False),
    ],
)
def test_each_factor(
    router: FakeRouterOS, make_service: ServiceFactory, factors: str, arguments: dict[str, str], verified: bool
) -> None:
    service = make_service(settings_for(("nucleo", router), IDENTITY_FACTORS=factors))
    result = service.call(STRANGER).run(VERIFICAR_IDENTIDAD, arguments)
    assert result.ok is verified
    if not verified:
        assert "no coinciden" in result.output["error"]


def test_a_factor_not_on_file_is_not_the_callers_failure(router: FakeRouterOS, make_service: ServiceFactory) -> None:
    fixture = load_fixture(None)
    for row in fixture["tables"]["/ppp/secret"]:
        row["comment"] = row["comment"].replace(";cliente=10004", "")
    with FakeRouterOS(fixture, USER, PASSWORD) as fake:
        service = make_service(settings_for(("nucleo", fake)))
        call = service.call(STRANGER)
        result = call.run(VERIFICAR_IDENTIDAD, LUIS_VERIFY)
        assert not result.ok
        assert "no tiene registrado" in result.output["error"]
        assert [row["kind"] for row in service.records.caller_events(call.call_id)] == ["lookup"]


def test_a_call_is_never_switched_to_another_customer(service: Service) -> None:
    call = service.call(MARIA_PHONE)
    assert call.run(CONSULTAR_CLIENTE).output["verificado"] is True
    result = call.run(VERIFICAR_IDENTIDAD, LUIS_VERIFY)  # right data, another holder
    assert not result.ok
    assert "otro titular" in result.output["error"]
    assert call.identity.verified is not None
    assert call.identity.verified.customer_id == "12345678"


# -- reactivar_servicio ----------------------------------------------------------------------------------------


def test_refused_when_writes_are_disabled(router: FakeRouterOS, make_service: ServiceFactory) -> None:
    service = make_service(settings_for(("nucleo", router)))  # ROUTEROS_WRITES defaults to false
    result = service.run(REACTIVAR_SERVICIO, {"confirmado": True}, caller=LUIS_PHONE)
    assert not result.ok
    assert "operador" in result.output["error"]
    assert router.received() == []  # refused before any router traffic
    [audit] = service.records.audit_entries(CALL_ID)
    assert (audit["result"], audit["tool"], audit["caller"]) == ("refused", REACTIVAR_SERVICIO, LUIS_PHONE)
    assert "ROUTEROS_WRITES" in audit["reason"]
    assert exception_entries(router) == []


def test_the_callers_number_alone_cannot_reactivate(service: Service, router: FakeRouterOS) -> None:
    call = service.call(LUIS_PHONE)
    result = call.run(REACTIVAR_SERVICIO, {"confirmado": True})
    assert not result.ok
    assert "número de cliente" in result.output["error"]
    assert writes(router) == []
    refusal = service.records.audit_entries(call.call_id)[-1]
    assert (refusal["result"], refusal["customer_id"]) == ("refused", "45678901")
    assert "IDENTITY_WRITE_REQUIRES=dni" in refusal["reason"]


def test_refused_when_not_confirmed(service: Service, router: FakeRouterOS) -> None:
    call = verified_luis(service)
    result = call.run(REACTIVAR_SERVICIO, {"confirmado": False})
    assert not result.ok
    assert "confirmado=true" in result.output["error"]
    assert writes(router) == []
    refusal = service.records.audit_entries(call.call_id)[-1]
    assert refusal["result"] == "refused"
    assert "confirmed" in refusal["reason"]


def test_allowed_write_adds_a_timed_exception_tied_to_the_account(service: Service, router: FakeRouterOS) -> None:
    call = verified_luis(service)
    result = call.run(REACTIVAR_SERVICIO, {"confirmado": True})
    assert result.ok, result.output
    assert (result.output["reactivado"], result.output["dias"]) == (True, 3)
    assert "10.20.0.14" not in output_text(result)

    [entry] = exception_entries(router)
    assert entry["address"] == "10.20.0.14"
    assert entry["dynamic"] is True
    assert entry["timeout"] in ("3d", "2d23h59m59s")
    assert entry["comment"] == f"usuario=luis.hernandez;dni=45678901;centralita={call.call_id};motivo=promesa de pago"
    # The debtors entry stays: the router's firewall lets the exception list through first.
    assert any(row["list"] == DEBTORS and row["address"] == "10.20.0.14" for row in read_back(router, ADDRESS_LIST))
    # Just before the add, the address was checked to be the account's session's.
    sent = router.received()
    add = next(index for index, words in enumerate(sent) if words[0] == f"{ADDRESS_LIST}/add")
    assert ["/ppp/active/print", "=.proplist=name,address", "?=address=10.20.0.14"] in sent[add - 2 : add]

    audit = service.records.audit_entries(call.call_id)[-1]
    assert (audit["result"], audit["router"], audit["customer"], audit["customer_id"]) == (
        "done",
        "nucleo",
        "luis.hernandez",
        "45678901",
    )
    assert audit["action"] == f"address-list add list={EXCEPTIONS} address=10.20.0.14 timeout=3d"
    assert audit["reason"] == f"entry {entry['.id']}"

    status = call.run(ESTADO_CONEXION).output
    assert (status["suspendido_por_adeudo"], status["prorroga_vigente"]) == (False, True)


def test_an_exception_in_force_is_not_given_twice(router: FakeRouterOS, make_service: ServiceFactory) -> None:
    service = make_service(settings_for(("nucleo", router), ROUTEROS_WRITES="true", ROUTEROS_REACTIVATION_LIMIT="3"))
    call = verified_luis(service)
    assert call.run(REACTIVAR_SERVICIO, {"confirmado": True}).output["reactivado"] is True
    again = call.run(REACTIVAR_SERVICIO, {"confirmado": True})
    assert again.ok
    assert again.output["reactivado"] is False
    assert "prórroga" in again.output["mensaje"]
    assert len(exception_entries(router)) == 1
    assert service.records.audit_entries(call.call_id)[-1]["reason"] == "an exception is already in force"


def test_the_limit_holds_across_calls_and_periods(router: FakeRouterOS, make_service: ServiceFactory) -> None:
    clock = SettableClock()
    service = make_service(settings_for(("nucleo", router), ROUTEROS_WRITES="true", ROUTEROS_EXCEPTION_DAYS="3"), clock)
    first = verified_luis(service)
    assert first.run(REACTIVAR_SERVICIO, {"confirmado": True}).output["reactivado"] is True
    # Three days later the exception has run out on the router; a new call, a new identity, the same holder.
    with RouterClient(router.host, USER, PASSWORD, port=router.port) as client:
        client.remove(ADDRESS_LIST, [str(row[".id"]) for row in exception_entries(router)])
    clock.now += timedelta(days=3)
    second = verified_luis(service)
    refused = second.run(REACTIVAR_SERVICIO, {"confirmado": True})
    assert not refused.ok
    assert "30 días" in refused.output["error"]
    assert exception_entries(router) == []
    audit = service.records.audit_entries(second.call_id)[-1]
    assert (audit["result"], audit["customer_id"]) == ("refused", "45678901")
    assert "reactivation limit reached: 1 per 30d" in audit["reason"]
    # A new period.
    clock.now += timedelta(days=28)
    third = verified_luis(service)
    assert third.run(REACTIVAR_SERVICIO, {"confirmado": True}).output["reactivado"] is True


def test_nothing_to_do_for_a_customer_in_good_standing(service: Service, router: FakeRouterOS) -> None:
    call = service.call(MARIA_PHONE)
    assert call.run(VERIFICAR_IDENTIDAD, {"dni": "12345678", "numero_cliente": "10001"}).output["puede_reactivar"]
    result = call.run(REACTIVAR_SERVICIO, {"confirmado": True})
    assert result.ok
    assert result.output["reactivado"] is False
    assert service.records.audit_entries(call.call_id)[-1]["reason"] == "not in the debtors list: nothing to do"
    assert exception_entries(router) == []


def test_a_disabled_account_needs_a_person(service: Service, router: FakeRouterOS) -> None:
    call = service.call("5550005555")
    assert call.run(VERIFICAR_IDENTIDAD, {"dni": "56789012", "numero_cliente": "10005"}).output["verificado"]
    result = call.run(REACTIVAR_SERVICIO, {"confirmado": True})
    assert not result.ok
    assert "operador" in result.output["error"]
    audit = service.records.audit_entries(call.call_id)[-1]
    assert (audit["result"], audit["customer"]) == ("refused", "carmen.nunez")
    assert exception_entries(router) == []


def test_a_write_the_router_refuses_is_audited_as_failed(service: Service, router: FakeRouterOS) -> None:
    # A disabled exception entry does not count as one in force, but the router refuses a duplicate.
    with RouterClient(router.host, USER, PASSWORD, port=router.port) as client:
        client.add(ADDRESS_LIST, list=EXCEPTIONS, address="10.20.0.14", disabled=True, comment="vieja")
    call = verified_luis(service)
    result = call.run(REACTIVAR_SERVICIO, {"confirmado": True})
    assert not result.ok
    assert result.output["error"] == ROUTER_REFUSED
    audit = service.records.audit_entries(call.call_id)[-1]
    assert audit["result"] == "failed"
    assert "already have such entry" in audit["reason"]
    # A failed write does not use up the customer's reactivation.
    with RouterClient(router.host, USER, PASSWORD, port=router.port) as client:
        client.remove(ADDRESS_LIST, [str(row[".id"]) for row in exception_entries(router)])
    assert call.run(REACTIVAR_SERVICIO, {"confirmado": True}).output["reactivado"] is True


# -- the exception follows the subscriber, not a pool address ---------------------------------------------------


def reassigned_fixture() -> dict[str, Any]:
    """Luis offline, his secret's remote-address 10.20.0.14, and José's session now holding that address."""
    fixture = load_fixture(None)
    active = fixture["tables"]["/ppp/active"]
    fixture["tables"]["/ppp/active"] = [row for row in active if row["name"] != "luis.hernandez"]
    for row in fixture["tables"]["/ppp/active"]:
        if row["name"] == "jose.munoz":
            row["address"] = "10.20.0.14"
    return fixture


def test_an_address_now_held_by_another_account_is_refused(make_service: ServiceFactory) -> None:
    with FakeRouterOS(reassigned_fixture(), USER, PASSWORD) as fake:
        service = make_service(settings_for(("nucleo", fake), ROUTEROS_WRITES="true"))
        call = verified_luis(service)
        result = call.run(REACTIVAR_SERVICIO, {"confirmado": True})
        assert not result.ok
        assert "operador" in result.output["error"]
        assert exception_entries(fake) == []
        assert not any(words[0] == f"{ADDRESS_LIST}/add" for words in fake.received())
        audit = service.records.audit_entries(call.call_id)[-1]
        assert (audit["result"], audit["customer"]) == ("refused", "luis.hernandez")
        assert audit["reason"] == "the address is now held by another account's session"
        # Refused at write time: it did not use up his reactivation.
        assert service.records.count_audit(REACTIVAR_SERVICIO, "45678901", timedelta(days=30)) == 0


def test_an_address_the_account_does_not_hold_is_refused(make_service: ServiceFactory, tmp_path: Path) -> None:
    """A directory's address with no session and no static remote-address: nothing ties it to the account."""
    fixture = load_fixture(None)
    fixture["tables"]["/ppp/active"] = [
        row for row in fixture["tables"]["/ppp/active"] if row["name"] != "luis.hernandez"
    ]
    for row in fixture["tables"]["/ppp/secret"]:
        if row["name"] == "luis.hernandez":
            del row["remote-address"]
    directory = tmp_path / "clientes.csv"
    directory.write_text(
        "usuario,nombre,dni,telefono,cliente,ip\nluis.hernandez,Luis Hernández,45678901,5550004444,10004,10.20.0.14\n",
        encoding="utf-8",
    )
    with FakeRouterOS(fixture, USER, PASSWORD) as fake:
        service = make_service(
            settings_for(("nucleo", fake), ROUTEROS_WRITES="true", CUSTOMER_DIRECTORY=str(directory))
        )
        call = verified_luis(service)
        result = call.run(REACTIVAR_SERVICIO, {"confirmado": True})
        assert not result.ok
        assert exception_entries(fake) == []
        assert "not its static one" in service.records.audit_entries(call.call_id)[-1]["reason"]


def test_an_exception_left_on_an_old_address_is_not_in_force(service: Service, router: FakeRouterOS) -> None:
    with RouterClient(router.host, USER, PASSWORD, port=router.port) as client:
        client.add(ADDRESS_LIST, list=EXCEPTIONS, address="10.20.0.99", comment="usuario=luis.hernandez;dni=45678901")
    status = service.call(LUIS_PHONE).run(ESTADO_CONEXION).output
    assert (status["suspendido_por_adeudo"], status["prorroga_vigente"]) == (True, False)
    # And José, whatever address he has, never gets Luis's promise to pay.
    jose = service.call("5550002222").run(ESTADO_CONEXION).output
    assert jose["prorroga_vigente"] is False


# -- reportar_falla ------------------------------------------------------------------------------------------


def test_a_verified_callers_ticket_carries_a_snapshot_for_staff(service: Service) -> None:
    call = service.call(STRANGER)
    assert call.run(VERIFICAR_IDENTIDAD, {"dni": "67890123", "numero_cliente": "10006"}).output["verificado"]
    result = call.run(REPORTAR_FALLA, {"sintoma": "No tengo internet desde la mañana"})
    assert result.ok
    number = result.output["numero_ticket"]
    assert set(result.output) == {"ok", "numero_ticket", "mensaje", "estado_conexion"}
    assert str(number) in result.output["mensaje"]
    assert "No hay una sesión" in result.output["estado_conexion"]
    ticket = service.records.get_ticket(number)
    assert ticket is not None
    assert (ticket["call_id"], ticket["customer"], ticket["customer_name"], ticket["router"], ticket["caller"]) == (
        call.call_id,
        "pedro.sanchez",
        "Pedro Sánchez",
        "nucleo",
        STRANGER,
    )
    assert ticket["symptom"] == "No tengo internet desde la mañana"
    assert ticket["connection"]["conectado"] is False
    assert ticket["connection"]["direccion_ip"] == "10.20.0.16"  # for staff, never for the model


def test_an_unverified_callers_ticket_reveals_nothing(service: Service, router: FakeRouterOS) -> None:
    call = service.call(STRANGER)
    result = call.run(REPORTAR_FALLA, {"sintoma": "lento", "servicio": "1"})
    assert set(result.output) == {"ok", "numero_ticket", "mensaje"}
    ticket = service.records.get_ticket(result.output["numero_ticket"])
    assert ticket is not None
    assert (ticket["customer"], ticket["caller"], ticket["connection"]) == (
        None,
        STRANGER,
        {"identidad": "sin verificar"},
    )
    assert not any(words[0] in ("/ppp/active/print", "/queue/simple/print") for words in router.received())


def test_a_ticket_needs_no_router(make_service: ServiceFactory) -> None:
    service = make_service(NetworkSettings.from_values({}))
    result = service.run(REPORTAR_FALLA, {"sintoma": "se corta cada rato"})
    assert result.ok
    [ticket] = service.records.tickets(CALL_ID)
    assert (ticket["customer"], ticket["caller"], ticket["connection"]) == (None, MARIA_PHONE, {})


# -- the customer copy per router ---------------------------------------------------------------------------


def full_secret_reads(router: FakeRouterOS) -> int:
    return sum(1 for words in router.received() if words[0] == "/ppp/secret/print" and not words[-1].startswith("?"))


def test_phone_and_dni_lookups_share_one_read_per_router_and_ttl(
    router: FakeRouterOS, make_service: ServiceFactory
) -> None:
    cached = make_service(settings_for(("nucleo", router)))
    for caller in (MARIA_PHONE, LUIS_PHONE, STRANGER):
        cached.call(caller).run(CONSULTAR_CLIENTE, {"dni": "34567890"})
    assert full_secret_reads(router) == 1
    address_reads = [words for words in router.received() if words[0] == f"{ADDRESS_LIST}/print"]
    assert address_reads == [[f"{ADDRESS_LIST}/print", "=.proplist=address,comment,disabled", "?>comment="]]


def test_without_a_ttl_every_lookup_reads_the_router(router: FakeRouterOS, make_service: ServiceFactory) -> None:
    uncached = make_service(settings_for(("nucleo", router), ROUTEROS_DIRECTORY_TTL="0"))
    uncached.call(STRANGER).run(CONSULTAR_CLIENTE, {"dni": "34567890"})
    uncached.call(STRANGER).run(CONSULTAR_CLIENTE, {"dni": "34567890"})
    assert full_secret_reads(router) == 4  # per call: the caller ID check, then the lookup


# -- routers down or slow ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        (CONSULTAR_CLIENTE, {}),
        (CONSULTAR_CLIENTE, {"dni": "45678901"}),
        (VERIFICAR_IDENTIDAD, LUIS_VERIFY),
        (ESTADO_CONEXION, {}),
        (REACTIVAR_SERVICIO, {"confirmado": True}),
    ],
)
def test_router_down_answers_at_once(make_service: ServiceFactory, tool: str, arguments: dict[str, Any]) -> None:
    service = make_service(settings_for(("nucleo", free_port()), ROUTEROS_WRITES="true"))
    started = time.monotonic()
    result = service.run(tool, arguments, caller=LUIS_PHONE)
    assert time.monotonic() - started < TIMEOUT
    assert not result.ok
    assert result.output == {"ok": False, "error": ROUTER_DOWN}


def test_slow_router_answers_within_the_timeout(service: Service, router: FakeRouterOS) -> None:
    call = verified_luis(service)
    router.faults.set_delay(int(TIMEOUT * 1000) + 700)
    for tool in (ESTADO_CONEXION, REACTIVAR_SERVICIO):
        started = time.monotonic()
        result = call.run(tool, {"confirmado": True} if tool == REACTIVAR_SERVICIO else {})
        elapsed = time.monotonic() - started
        assert elapsed < TIMEOUT + 0.3, elapsed
        assert not result.ok
        assert result.output["error"] == ROUTER_DOWN
    router.faults.clear()
    assert exception_entries(router) == []
    audit = service.records.audit_entries(call.call_id)[-1]
    assert audit["result"] == "failed"  # the reads never finished: nothing was sent


def test_a_slow_router_does_not_hold_up_the_others(router: FakeRouterOS, make_service: ServiceFactory) -> None:
    with FakeRouterOS({"tables": {}}, USER, PASSWORD) as slow:
        slow.faults.set_delay(int(TIMEOUT * 1000) + 700)
        service = make_service(settings_for(("lento", slow), ("nucleo", router)))
        started = time.monotonic()
        result = service.call(STRANGER).run(VERIFICAR_IDENTIDAD, {"dni": "34567890", "numero_cliente": "10003"})
        assert time.monotonic() - started < TIMEOUT + 0.2
        assert result.output["verificado"] is True


def test_router_down_still_files_the_ticket(make_service: ServiceFactory) -> None:
    service = make_service(settings_for(("nucleo", free_port())))
    result = service.run(REPORTAR_FALLA, {"sintoma": "sin servicio"})
    assert result.ok
    ticket = service.records.get_ticket(result.output["numero_ticket"])
    assert ticket is not None
    assert ticket["connection"] == {"identidad": "sin verificar"}


def test_the_router_comes_back(make_service: ServiceFactory) -> None:
    port = free_port()
    service = make_service(settings_for(("nucleo", port)))
    call = service.call(MARIA_PHONE)
    assert call.run(CONSULTAR_CLIENTE).output == {"ok": False, "error": ROUTER_DOWN}  # not "you are nobody"
    assert call.run(ESTADO_CONEXION).output == {"ok": False, "error": ROUTER_DOWN}
    with FakeRouterOS(None, USER, PASSWORD, port=port):
        assert call.run(CONSULTAR_CLIENTE).output["verificado"] is True  # checked at the next tool


def test_wrong_password_is_a_speakable_error_and_a_logged_one(
    router: FakeRouterOS, make_service: ServiceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    settings = NetworkSettings.from_values(
        {
            "ROUTEROS_ROUTERS": "nucleo",
            **router_values("nucleo", router.host, router.port, PASSWORD="mala-clave-123"),
            "ROUTEROS_TIMEOUT": str(TIMEOUT),
            "DIALER_COUNTRY_CODE": "52",
        }
    )
    service = make_service(settings)
    with caplog.at_level(logging.INFO, logger="centralita"):
        result = service.call(STRANGER).run(CONSULTAR_CLIENTE, {"dni": "45678901"})
    assert result.output["error"] == ROUTER_DOWN
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors
    assert "refused the login" in errors[0].getMessage()
    assert "mala-clave-123" not in caplog.text


# -- the pool: deadlines and fairness ------------------------------------------------------------------------


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


def test_one_call_hammering_a_router_does_not_starve_another(router: FakeRouterOS) -> None:
    """Owners take turns on a router's worker, and one owner may queue only a few jobs."""
    release = threading.Event()
    running = threading.Event()
    order: list[str] = []

    def blocking(name: str, client: RouterClient, deadline: Deadline) -> str:
        running.set()
        release.wait(5)
        return "first"

    def job(tag: str) -> Any:
        def run(name: str, client: RouterClient, deadline: Deadline) -> str:
            order.append(tag)
            return tag

        return run

    with RouterPool(settings_for(("nucleo", router))) as pool:
        results: dict[str, Any] = {}

        def submit(owner: str, tag: str) -> None:
            try:
                results[tag] = pool.run("nucleo", job(tag), Deadline.after(10), owner=owner)
            except RouterBusy as busy:
                results[tag] = busy

        first = threading.Thread(target=pool.run, args=("nucleo", blocking, Deadline.after(10)), kwargs={"owner": "a"})
        first.start()
        wait_for(running.is_set)  # the worker is busy with "a"'s first job
        threads = [first]
        for index in range(MAX_QUEUED_PER_OWNER):  # "a" fills its share of the queue
            thread = threading.Thread(target=submit, args=("a", f"a{index}"))
            threads.append(thread)
            thread.start()
            wait_for(lambda count=index + 1: pool.waiting("nucleo", "a") == count)
        submit("a", "a-over")  # one more is refused at once, not queued
        assert isinstance(results["a-over"], RouterBusy)
        other = threading.Thread(target=submit, args=("b", "b0"))
        threads.append(other)
        other.start()
        wait_for(lambda: pool.waiting("nucleo", "b") == 1)
        release.set()
        for thread in threads:
            thread.join(10)
        # "b" arrived last but went second: owners take turns, it did not wait behind all of "a".
        assert order == ["a0", "b0", *(f"a{index}" for index in range(1, MAX_QUEUED_PER_OWNER))]


def test_a_ca_file_that_cannot_be_read_stops_the_start(tmp_path: Path) -> None:
    settings = NetworkSettings.from_values(
        {
            "ROUTEROS_ROUTERS": "nucleo",
            **router_values("nucleo", "127.0.0.1", 8729, TLS="true", CA_FILE=str(tmp_path / "no-ca.pem")),
        }
    )
    with pytest.raises(ConfigError, match="ROUTEROS_NUCLEO_CA_FILE"):
        RouterPool(settings)


def test_tools_over_api_ssl_with_a_ca_file(make_service: ServiceFactory, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    other_ca, _ = self_signed(tmp_path, name="otra")
    with FakeRouterOS(None, USER, PASSWORD, tls_cert=cert, tls_key=key) as secure:
        trusted = make_service(
            NetworkSettings.from_values(
                {
                    "ROUTEROS_ROUTERS": "nucleo",
                    **router_values("nucleo", "127.0.0.1", secure.port, TLS="true", CA_FILE=str(cert)),
                    "DIALER_COUNTRY_CODE": "52",
                }
            )
        )
        assert trusted.call(MARIA_PHONE).run(CONSULTAR_CLIENTE).output["verificado"] is True
        untrusted = make_service(
            NetworkSettings.from_values(
                {
                    "ROUTEROS_ROUTERS": "nucleo",
                    **router_values("nucleo", "127.0.0.1", secure.port, TLS="true", CA_FILE=str(other_ca)),
                    "DIALER_COUNTRY_CODE": "52",
                }
            )
        )
        assert untrusted.call(STRANGER).run(CONSULTAR_CLIENTE, {"dni": "1234"}).output["error"] == ROUTER_DOWN
        assert secure.logins == 1


# -- bad arguments never reach a router ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        (CONSULTAR_CLIENTE, {"dni": 45678901}, "debe ser texto"),
        (CONSULTAR_CLIENTE, {"cedula": "45678901"}, "no se reconoce"),
        (CONSULTAR_CLIENTE, {"usuario": "luis.hernandez"}, "no se reconoce"),
        (CONSULTAR_CLIENTE, {"telefono": "12"}, "no es válido"),
        (CONSULTAR_CLIENTE, {"dni": "9" * 21}, "demasiado largo"),
        (CONSULTAR_CLIENTE, "[1, 2]", "objeto"),
        (CONSULTAR_CLIENTE, "{no es json", "JSON"),
        (ESTADO_CONEXION, {"dni": "45678901"}, "no se reconoce"),
        (VERIFICAR_IDENTIDAD, {"dni": "45678901", "nombre": "Luis Hernández"}, "no se reconoce"),
        (REACTIVAR_SERVICIO, {"dni": "45678901", "nombre": "Luis Hernández", "confirmado": True}, "no se reconoce"),
        (REACTIVAR_SERVICIO, {}, "Falta el dato confirmado"),
        (REACTIVAR_SERVICIO, {"confirmado": "sí"}, "verdadero o falso"),
        (REPORTAR_FALLA, {}, "Falta el dato sintoma"),
        (REPORTAR_FALLA, {"sintoma": "lento", "telefono": "5550004444"}, "no se reconoce"),
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


def test_a_bad_dni_is_refused_before_any_lookup(service: Service, router: FakeRouterOS) -> None:
    result = service.call(STRANGER).run(VERIFICAR_IDENTIDAD, {"dni": "1", "numero_cliente": "10004"})
    assert "entre 4 y 20" in result.output["error"]
    assert not any(words[0] == "/ppp/secret/print" for words in router.received())


def test_without_a_country_code_only_international_caller_ids_match(
    router: FakeRouterOS, make_service: ServiceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """National caller IDs cannot be read without DIALER_COUNTRY_CODE: they find nobody, and the log says why."""
    with caplog.at_level(logging.WARNING, logger="centralita"):
        service = make_service(settings_for(("nucleo", router), DIALER_COUNTRY_CODE=""))
    assert "DIALER_COUNTRY_CODE is not set" in caplog.text
    assert service.call("5550001111").run(CONSULTAR_CLIENTE).output["verificado"] is False
    assert service.call("+52 55 5000 1111").run(CONSULTAR_CLIENTE).output["verificado"] is True
    refused = service.call(STRANGER).run(CONSULTAR_CLIENTE, {"telefono": "55 5000 1111"})
    assert "código de país" in refused.output["error"]


def test_a_bad_country_code_stops_the_start() -> None:
    with pytest.raises(ConfigError, match="DIALER_COUNTRY_CODE is '999', not the country calling code of any country"):
        NetworkSettings.from_values({"DIALER_COUNTRY_CODE": "999"})


# -- logs ----------------------------------------------------------------------------------------------------


def test_log_lines_carry_the_call_and_no_password(service: Service, caplog: pytest.LogCaptureFixture) -> None:
    call = service.call(LUIS_PHONE, CALL_ID)
    with caplog.at_level(logging.DEBUG):
        call.run(CONSULTAR_CLIENTE)
        call.run(VERIFICAR_IDENTIDAD, LUIS_VERIFY)
        call.run(ESTADO_CONEXION)
        call.run(REACTIVAR_SERVICIO, {"confirmado": True})
    ours = [record for record in caplog.records if record.name.startswith("centralita")]
    assert len(ours) >= 4
    assert all(getattr(record, "call_id", None) == CALL_ID for record in ours)
    text = "\n".join(record.getMessage() for record in ours)
    assert "identity verified by caller_id+dni" in text
    assert "added to promesa-pago" in text
    for secret in SECRETS:
        assert secret not in text
    assert "45678901" not in text  # IDs stay out of our lines
    assert "10004" not in text
    # librouteros itself, at DEBUG, logs the login word with the password: the service hides it.
    login_lines = [record for record in caplog.records if "=password=" in record.getMessage()]
    assert login_lines
    settings = Settings.from_values({"OPENAI_API_KEY": "sk-test-0123456789", "ARI_PASSWORD": "ari-secreto"})
    redacting = RedactingFilter(log_secrets(settings, service.settings))
    for record in login_lines:
        redacting.filter(record)
        assert PASSWORD not in record.getMessage()
        assert "***" in record.getMessage()


def test_a_context_without_an_identity_is_never_verified_by_accident(service: Service) -> None:
    """A tool run whose context carries no identity gets a fresh one: verification does not carry over."""
    registry = service.registry
    text = json.dumps(LUIS_VERIFY)
    assert registry.run(VERIFICAR_IDENTIDAD, text, ToolContext("x", STRANGER, "")).output["verificado"] is True
    refused = registry.run(REACTIVAR_SERVICIO, '{"confirmado": true}', ToolContext("x", STRANGER, ""))
    assert not refused.ok
    assert isinstance(ToolContext("x", "", "").identity, CallIdentity)
