"""A hostile caller steering the model: forged tool arguments, guessing, and hammering, against real sockets.

The model is client input: whatever a caller talks it into ends up in the tool arguments. So every tool is run
here with what a hostile caller would make the model pass (another customer's DNI, the name it heard,
``confirmado: true``, another ``servicio``), through ``ToolRegistry.run`` against the fake RouterOS over TCP,
and what comes back, what the router holds and what the audit log says are checked:

* an unverified call gets no personal field and causes no write;
* a verified call acts only on its own customer, whatever it passes;
* failed identity checks and lookups are counted across calls (separate identities, one records database);
* every refusal is in the audit log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from network_support import (
    LUIS_PERSONAL,
    LUIS_PHONE,
    LUIS_VERIFY,
    MARIA_PHONE,
    PASSWORD,
    STRANGER,
    USER,
    Service,
    ServiceFactory,
    SettableClock,
    address_lists,
    assert_nothing_personal,
    exception_entries,
    output_text,
    settings_for,
    writes,
)

from centralita.storage.records import CallerEvent
from centralita.tools.network import (
    CONSULTAR_CLIENTE,
    ESTADO_CONEXION,
    LOCKED,
    LOOKUPS_CALL,
    LOOKUPS_CALLER,
    NOT_VERIFIED,
    REACTIVAR_SERVICIO,
    REPORTAR_FALLA,
    VERIFICAR_IDENTIDAD,
)
from centralita.tools.registry import check_arguments
from centralita_testing.fake_routeros.server import FakeRouterOS

# What a hostile caller makes the model pass, per tool: Luis's DNI, the name the tool once gave away, the
# PPPoE user, "confirmed", another service label. Some of these the schema refuses, the rest the service.
FORGED: dict[str, list[dict[str, Any]]] = {
    CONSULTAR_CLIENTE: [
        {},
        {"dni": "45678901"},
        {"telefono": "+52 1 555 000 4444"},
        {"dni": "45678901", "nombre": "Luis Hernández"},
        {"usuario": "luis.hernandez"},
    ],
    VERIFICAR_IDENTIDAD: [
        {},
        {"dni": "45678901"},
        {"dni": "45678901", "numero_cliente": "Luis Hernández"},
        {"dni": "45678901", "nombre": "Luis Hernández"},
        {"dni": "45678901", "numero_cliente": "luis.hernandez"},
        {"dni": "45678901", "confirmado": True},
    ],
    ESTADO_CONEXION: [
        {},
        {"servicio": "1"},
        {"servicio": "luis.hernandez"},
        {"dni": "45678901"},
        {"nombre": "Luis Hernández"},
    ],
    REACTIVAR_SERVICIO: [
        {"confirmado": True},
        {"confirmado": True, "servicio": "1"},
        {"confirmado": True, "servicio": "luis.hernandez"},
        {"dni": "45678901", "nombre": "Luis Hernández", "confirmado": True},
        {"dni": "45678901", "telefono": "5550004444", "confirmado": True},
    ],
    REPORTAR_FALLA: [
        {"sintoma": "sin internet"},
        {"sintoma": "sin internet", "servicio": "1"},
        {"sintoma": "sin internet", "dni": "45678901"},
        {"sintoma": "sin internet", "usuario": "luis.hernandez"},
    ],
}
CASES = [(tool, arguments) for tool, forged in FORGED.items() for arguments in forged]
CASE_IDS = [f"{tool}-{json.dumps(arguments, ensure_ascii=False)}" for tool, arguments in CASES]
MARIA_PERSONAL = ("María", "Peña", "maria.pena", "12345678", "10001", "5550001111", "10.20.0.11", "AA:BB:CC:00:00:11")


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


# -- forged arguments ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("tool", "arguments"), CASES, ids=CASE_IDS)
def test_an_unverified_call_gets_nothing_personal_and_writes_nothing(
    service: Service, router: FakeRouterOS, tool: str, arguments: dict[str, Any]
) -> None:
    lists = address_lists(router)
    call = service.call(STRANGER)
    result = call.run(tool, arguments)
    assert_nothing_personal(result)
    assert call.identity.verified is None
    assert writes(router) == []
    assert address_lists(router) == lists
    assert not any(words[0] in ("/ppp/active/print", "/queue/simple/print") for words in router.received())
    if tool == REPORTAR_FALLA and result.ok:
        [ticket] = service.records.tickets(call.call_id)
        assert (ticket["customer"], ticket["customer_name"], ticket["caller"]) == (None, None, STRANGER)
    schema_problem = check_arguments(service.registry.tools[tool].parameters, arguments)
    if schema_problem:  # the old identity arguments: refused before the tool runs, with the schema's reason
        assert result.output == {"ok": False, "error": schema_problem}
        assert service.records.audit_entries(call.call_id) == []
    elif tool in (ESTADO_CONEXION, REACTIVAR_SERVICIO):
        # Arguments that fit the schema: refused by the service itself for want of a verified caller, and
        # audited with the caller and the reason (not an error that happened to leak nothing).
        assert result.output["error"].startswith(("Antes", "Para")), result.output
        [refusal] = service.records.audit_entries(call.call_id)
        assert (refusal["tool"], refusal["result"], refusal["caller"]) == (tool, "refused", STRANGER)
        assert "not verified" in refusal["reason"]


@pytest.mark.parametrize(("tool", "arguments"), CASES, ids=CASE_IDS)
def test_a_verified_call_acts_only_on_its_own_customer(
    service: Service, router: FakeRouterOS, tool: str, arguments: dict[str, Any]
) -> None:
    """María's call, verified by her DNI and customer number, forging Luis's data: nothing of Luis comes back
    and nothing is done to his service."""
    lists = address_lists(router)
    call = service.call(MARIA_PHONE)
    assert call.run(VERIFICAR_IDENTIDAD, {"dni": "12345678", "numero_cliente": "10001"}).output["puede_reactivar"]
    result = call.run(tool, arguments)
    text = output_text(result)
    for word in LUIS_PERSONAL:
        assert word not in text, (word, text)
    assert call.identity.verified is not None
    assert call.identity.verified.customer_id == "12345678"  # never switched to Luis
    assert address_lists(router) == lists  # María is no debtor: nothing to add, and nothing of Luis's
    if tool == ESTADO_CONEXION and result.ok:
        assert result.output["suspendido_por_adeudo"] is False  # María's state, not Luis's
    if tool == REPORTAR_FALLA and result.ok:
        [ticket] = service.records.tickets(call.call_id)
        assert ticket["customer"] in ("maria.pena", None)
    for row in service.records.audit_entries(call.call_id):
        assert row["customer"] in (None, "maria.pena")
        if row["customer_id"] == "45678901":  # an attempt to verify as Luis: recorded against him, refused
            assert (row["tool"], row["result"]) == (VERIFICAR_IDENTIDAD, "refused")
        else:
            assert row["customer_id"] in (None, "12345678")


def test_a_caller_id_verified_call_gets_only_its_own_status(service: Service, router: FakeRouterOS) -> None:
    call = service.call(MARIA_PHONE)
    status = call.run(ESTADO_CONEXION, {"servicio": "1"})
    assert status.output["conectado"] is True
    assert_nothing_personal(call.run(ESTADO_CONEXION, {"servicio": "2"}), personal=(*LUIS_PERSONAL, *MARIA_PERSONAL))
    refused = call.run(REACTIVAR_SERVICIO, {"confirmado": True, "servicio": "1"})
    assert not refused.ok  # a caller ID is enough to read, never to write (IDENTITY_WRITE_REQUIRES=dni)
    assert writes(router) == []


def test_the_debtor_himself_can_reactivate_once_and_a_stranger_never(service: Service, router: FakeRouterOS) -> None:
    stranger = service.call(STRANGER)
    for arguments in FORGED[REACTIVAR_SERVICIO]:
        assert not stranger.run(REACTIVAR_SERVICIO, arguments).ok
    assert exception_entries(router) == []
    luis = service.call(LUIS_PHONE)
    assert luis.run(VERIFICAR_IDENTIDAD, LUIS_VERIFY).output["puede_reactivar"] is True
    assert luis.run(REACTIVAR_SERVICIO, {"confirmado": True}).output["reactivado"] is True
    assert [row["address"] for row in exception_entries(router)] == ["10.20.0.14"]
    refused = [row for row in service.records.audit_entries() if row["result"] == "refused"]
    assert {row["call_id"] for row in refused if row["tool"] == REACTIVAR_SERVICIO} == {stranger.call_id}


# -- guessing: failed identity checks across calls -----------------------------------------------------------


def test_failures_from_one_number_are_counted_across_calls(service: Service, router: FakeRouterOS) -> None:
    for guess in ("10001", "10002", "10003"):  # three calls, three guesses at Luis's customer number
        call = service.call(STRANGER)
        result = call.run(VERIFICAR_IDENTIDAD, {"dni": "45678901", "numero_cliente": guess})
        assert result.output["error"] == NOT_VERIFIED
    fourth = service.call(STRANGER)
    locked = fourth.run(VERIFICAR_IDENTIDAD, LUIS_VERIFY)  # right this time, and too late
    assert locked.output["error"] == LOCKED
    assert fourth.identity.verified is None
    # Another DNI from the same number: the number is locked, not only the customer.
    assert (
        service.call(STRANGER).run(VERIFICAR_IDENTIDAD, {"dni": "12345678", "numero_cliente": "10001"}).output["error"]
        == LOCKED
    )
    refusals = [row for row in service.records.audit_entries() if row["tool"] == VERIFICAR_IDENTIDAD]
    assert [row["result"] for row in refusals] == ["refused"] * 5
    assert "3 failed identity checks from this number within 24h" in refusals[-1]["reason"]
    limits = [row for row in service.records.caller_events() if row["kind"] == CallerEvent.LIMIT]
    assert len(limits) == 2


def test_failures_against_one_customer_are_counted_from_any_number(service: Service) -> None:
    for number in ("5215550009991", "5215550009992", "5215550009993"):
        result = service.call(number).run(VERIFICAR_IDENTIDAD, {"dni": "45678901", "numero_cliente": "99999"})
        assert result.output["error"] == NOT_VERIFIED
    fresh = service.call("5215550009994").run(VERIFICAR_IDENTIDAD, LUIS_VERIFY)
    assert fresh.output["error"] == LOCKED
    refusal = service.records.audit_entries()[-1]
    assert (refusal["customer_id"], refusal["result"]) == ("45678901", "refused")
    assert "for this customer" in refusal["reason"]
    # Luis's own caller ID still lets him read his status (it is not a guess), but not verify by DNI now.
    luis = service.call(LUIS_PHONE)
    assert luis.run(ESTADO_CONEXION).output["suspendido_por_adeudo"] is True
    assert luis.run(VERIFICAR_IDENTIDAD, LUIS_VERIFY).output["error"] == LOCKED
    # Other customers are not affected.
    maria = service.call("5215550009995").run(VERIFICAR_IDENTIDAD, {"dni": "12345678", "numero_cliente": "10001"})
    assert maria.output["verificado"] is True


def test_failures_age_out_of_the_window(router: FakeRouterOS, make_service: ServiceFactory) -> None:
    clock = SettableClock()
    service = make_service(settings_for(("nucleo", router), IDENTITY_FAILURE_WINDOW="1h"), clock)
    for _ in range(3):
        service.call(STRANGER).run(VERIFICAR_IDENTIDAD, {"dni": "45678901", "numero_cliente": "1"})
    assert service.call(STRANGER).run(VERIFICAR_IDENTIDAD, LUIS_VERIFY).output["error"] == LOCKED
    clock.now += timedelta(minutes=61)
    assert service.call(STRANGER).run(VERIFICAR_IDENTIDAD, LUIS_VERIFY).output["verificado"] is True


def test_unknown_dnis_count_against_the_number(service: Service) -> None:
    for dni in ("11111111", "22222222", "33333333"):
        assert (
            service.call(STRANGER).run(VERIFICAR_IDENTIDAD, {"dni": dni, "numero_cliente": "1"}).output["error"]
            == NOT_VERIFIED
        )
    assert service.call(STRANGER).run(VERIFICAR_IDENTIDAD, LUIS_VERIFY).output["error"] == LOCKED


# -- hammering: lookup limits --------------------------------------------------------------------------------


def test_lookups_per_call_are_bounded(router: FakeRouterOS, make_service: ServiceFactory) -> None:
    service = make_service(settings_for(("nucleo", router), LOOKUP_MAX_PER_CALL="3"))
    call = service.call(STRANGER)
    for dni in ("11111111", "22222222", "33333333"):
        assert call.run(CONSULTAR_CLIENTE, {"dni": dni}).ok
    before = len(router.received())
    refused = call.run(CONSULTAR_CLIENTE, {"dni": "45678901"})
    assert refused.output["error"] == LOOKUPS_CALL
    assert len(router.received()) == before  # refused before the router
    assert call.run(ESTADO_CONEXION).output["error"] == LOOKUPS_CALL
    assert call.run(REPORTAR_FALLA, {"sintoma": "x"}).output["error"] == LOOKUPS_CALL
    [limit, *_] = [row for row in service.records.caller_events(call.call_id) if row["kind"] == CallerEvent.LIMIT]
    assert "3 lookups in this call" in limit["detail"]
    audit = service.records.audit_entries(call.call_id)[-1]
    assert (audit["result"], audit["action"]) == ("refused", "lookup")
    # A new call from another number is not affected.
    assert service.call(MARIA_PHONE).run(CONSULTAR_CLIENTE).output["verificado"] is True


def test_lookups_per_caller_number_hold_across_calls(router: FakeRouterOS, make_service: ServiceFactory) -> None:
    clock = SettableClock()
    service = make_service(settings_for(("nucleo", router), LOOKUP_MAX_PER_CALLER_HOUR="4"), clock)
    for _ in range(2):  # two calls, two lookups each
        call = service.call(STRANGER)
        assert call.run(CONSULTAR_CLIENTE, {"dni": "11111111"}).ok
        assert call.run(CONSULTAR_CLIENTE, {"dni": "22222222"}).ok
    third = service.call("+52 55 5000 9999")  # the same number, written another way
    assert third.run(CONSULTAR_CLIENTE, {"dni": "45678901"}).output["error"] == LOOKUPS_CALLER
    assert service.call(MARIA_PHONE).run(CONSULTAR_CLIENTE).ok  # another number
    anonymous = [service.call("anonymous") for _ in range(5)]
    results = [call.run(CONSULTAR_CLIENTE, {"dni": "11111111"}) for call in anonymous]
    assert [result.ok for result in results] == [True] * 4 + [False]  # callers without a number share one count
    clock.now += timedelta(minutes=61)
    assert service.call(STRANGER).run(CONSULTAR_CLIENTE, {"dni": "45678901"}).ok
