"""A hostile caller, live in the box: the fake Realtime server plays a model that a caller talks into trying.

A call from a number that is no customer's tries Luis Hernández's DNI (a debtor of the demo ISP), then his name as
the second factor, a guessed customer number, his status and a reactivation with ``confirmado: true``. The
router's address lists must be unchanged afterwards (read through librouteros), and no tool output in the call
record may carry his name, address, modem MAC or account. Then Luis himself calls from his own number, gives his
DNI and the customer number on his bill, and reactivates once; a third call within the period is refused.

The fake server's reply script is one for the whole server, so this module restarts it with its own scripts
(a systemd drop-in under /run that adds ``--script``), waits until it listens again, and puts the default back
at the end. Each call is placed with SIPp like test_50's, and the records are polled until the call ended.
"""

from __future__ import annotations

import json
import re
import shlex
import time

import pytest
from conftest import BOX, BRIDGE_LOG, RECORDS_DB, VENV_PYTHON, call_record, log_since, log_size, sipp

testinfra_hosts = [f"podman://{BOX}"]

FAKE = "centralita-fake-realtime"
DROP_IN = f"/run/systemd/system/{FAKE}.service.d"
SCRIPTS = "/run/centralita-test"
STRANGER = "5215550009999"  # a valid Mexican number that is no customer's
LUIS = {"dni": "45678901", "numero_cliente": "10004"}
LUIS_PERSONAL = ("Luis", "Hernández", "luis.hernandez", "10.20.0.14", "AA:BB:CC:00:00:14", "10004", "Lh-1187")
CALL_DEADLINE = 90  # seconds to wait for a call's record to end

GREETING = {
    "type": "audio",
    "audio": "asistente_saludo.ulaw",
    "transcript": "Hola, soy el asistente de su proveedor de internet. ¿En qué puedo ayudarle?",
}


def tool(name, arguments):
    return {"type": "tool_call", "name": name, "arguments": arguments, "pieces": 2}


# What a caller who is not Luis talks the model into: his DNI, then his name where a factor goes, a guess,
# his status, a reactivation "confirmed", the old tool arguments (refused by the schema), and a ticket.
HOSTILE = [
    GREETING,
    tool("consultar_cliente", {"dni": LUIS["dni"]}),
    tool("verificar_identidad", {"dni": LUIS["dni"]}),
    tool("verificar_identidad", {"dni": LUIS["dni"], "numero_cliente": "Luis Hernández"}),
    tool("verificar_identidad", {"dni": LUIS["dni"], "numero_cliente": "10001"}),
    tool("estado_conexion", {}),
    tool("estado_conexion", {"servicio": "1"}),
    tool("reactivar_servicio", {"confirmado": True}),
    tool("reactivar_servicio", {"dni": LUIS["dni"], "nombre": "Luis Hernández", "confirmado": True}),
    tool("reportar_falla", {"sintoma": "No tengo internet"}),
    {"type": "audio", "audio": "asistente_pide_datos.ulaw", "transcript": "Necesito verificar su identidad."},
]
# Luis himself: his number, his DNI and the customer number on his bill, then the reactivation.
OWNER = [
    GREETING,
    tool("consultar_cliente", {}),
    tool("verificar_identidad", LUIS),
    tool("estado_conexion", {}),
    tool("reactivar_servicio", {"confirmado": True}),
    {
        "type": "audio",
        "audio": "asistente_reactivado.ulaw",
        "transcript": "Ya revisé su servicio. Lo reactivé por tres días; si el pago no se registra, el corte vuelve.",
    },
]

# The stranger calls again: one more wrong guess (a DNI that is no customer's) is the third failure from his
# number across calls, so even right data (María's DNI and customer number) is refused afterwards.
MARIA = {"dni": "12345678", "numero_cliente": "10001"}
MARIA_PERSONAL = ("María", "Peña", "maria.pena", "10.20.0.11", "AA:BB:CC:00:00:11")
HOSTILE_AGAIN = [
    GREETING,
    tool("verificar_identidad", {"dni": "11223344", "numero_cliente": "10002"}),
    tool("verificar_identidad", MARIA),
    tool("estado_conexion", {}),
    {"type": "audio", "audio": "asistente_pide_datos.ulaw", "transcript": "Necesito verificar su identidad."},
]
LOCKED = "Hubo demasiados intentos fallidos"


def tool_count(turns):
    return sum(1 for turn in turns if turn["type"] == "tool_call")


def run_python(host, script, *args):
    quoted = " ".join(shlex.quote(str(arg)) for arg in args)
    return json.loads(host.check_output(f"{VENV_PYTHON} -c {shlex.quote(script)} {quoted}"))


def records_of(host, call_id):
    """The call's audit rows and caller events."""
    script = (
        "import json,sys; from centralita.storage.records import CallRecords; "
        f"r=CallRecords('{RECORDS_DB}'); "
        "print(json.dumps([r.audit_entries(sys.argv[1]), r.caller_events(sys.argv[1])]))"
    )
    return run_python(host, script, call_id)


def address_lists(host):
    """Every address-list entry of the fake router, through librouteros: (list, address, comment, disabled)."""
    script = (
        "import json,librouteros; api=librouteros.connect('127.0.0.1','centralita','centralita-fake-router',"
        "port=8728,encoding='utf-8'); rows=list(api.path('ip','firewall','address-list')); "
        "print(json.dumps(sorted([r['list'], r['address'], r.get('comment', ''), bool(r['disabled'])] for r in rows)))"
    )
    return run_python(host, script)


def wait_listening(host, port, what):
    probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), 1).close()"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if host.run(f"{VENV_PYTHON} -c {shlex.quote(probe)}").rc == 0:
            return
        time.sleep(0.5)
    journal = host.run(f"journalctl -u {what} --no-pager -n 30 -o cat").stdout
    pytest.fail(f"{what} does not listen on port {port} after a restart:\n{journal}")


def restart_fake(host):
    host.check_output(f"systemctl daemon-reload && systemctl restart {FAKE}")
    wait_listening(host, 8765, FAKE)


def use_script(host, name, turns):
    """Restart the fake Realtime server with ``turns`` as its script."""
    path = f"{SCRIPTS}/{name}.json"
    document = json.dumps({"turns": turns}, ensure_ascii=False)
    host.check_output(f"install -d -m 0755 {SCRIPTS} {DROP_IN}")
    host.check_output(f"printf %s {shlex.quote(document)} > {path} && chmod 0644 {path}")
    unit = host.check_output(f"systemctl show --property=FragmentPath --value {FAKE}")  # the unit, not drop-ins
    [command] = [line for line in host.file(unit).content_string.splitlines() if line.startswith("ExecStart=")]
    host.check_output(
        f"printf '[Service]\\nExecStart=\\n%s --script {path}\\n' {shlex.quote(command)} > {DROP_IN}/50-script.conf"
    )
    restart_fake(host)


@pytest.fixture(scope="module")
def scripted(host):
    yield
    host.run(f"rm -rf {DROP_IN} {SCRIPTS}")
    restart_fake(host)
    # The fake router keeps its tables in memory: a restart gives the next tests the demo ISP as shipped.
    host.check_output("systemctl restart centralita-fake-routeros")
    wait_listening(host, 8728, "centralita-fake-routeros")


def place_call(host, scenario, extra, turns):
    """One SIPp call with speech; the call's record once it ended with every scripted tool run."""
    before = log_size(host, BRIDGE_LOG)
    result = sipp(host, scenario, "5215550002222", extra=f"-d 20000 {extra}", timeout_s=60)
    assert result.rc == 0, result.output
    deadline = time.monotonic() + CALL_DEADLINE
    while True:
        log = log_since(host, before, BRIDGE_LOG)
        ids = sorted(set(re.findall(r"call=([0-9.]+)", log)))
        record = call_record(host, ids[0]) if len(ids) == 1 else None
        if record is not None and record["ended_at"] and len(record["tool_calls"]) >= tool_count(turns):
            return record
        assert time.monotonic() < deadline, (ids, record, log[-3000:])
        time.sleep(1)


@pytest.fixture(scope="module")
def hostile_call(host, scripted):
    lists = address_lists(host)
    use_script(host, "hostile", HOSTILE)
    record = place_call(host, "caller_speaking.xml", f"-key caller {STRANGER}", HOSTILE)
    return record, lists


def test_the_hostile_call_changed_nothing_on_the_router(host, hostile_call):
    record, lists_before = hostile_call
    assert record["caller"] == STRANGER
    assert [call["name"] for call in record["tool_calls"]] == [turn["name"] for turn in HOSTILE[1:-1]]
    assert address_lists(host) == lists_before


def test_no_tool_told_the_hostile_caller_anything_about_the_debtor(hostile_call):
    record, _ = hostile_call
    for call in record["tool_calls"]:
        said = json.dumps(call["result"], ensure_ascii=False)
        for personal in LUIS_PERSONAL:
            assert personal not in said, (call["name"], said)
        for key in ("nombre", "plan", "servicios", "direccion_ip", "mac_equipo", "suspendido_por_adeudo"):
            assert key not in call["result"], (call["name"], said)
    results = {call["name"]: call for call in record["tool_calls"]}
    assert results["consultar_cliente"]["result"]["verificado"] is False
    assert not results["reactivar_servicio"]["ok"]
    assert not results["estado_conexion"]["ok"]


def test_every_refusal_and_failed_guess_of_the_hostile_call_is_recorded(host, hostile_call):
    record, _ = hostile_call
    audit, events = records_of(host, record["call_id"])
    refused = [(row["tool"], row["result"]) for row in audit]
    assert refused.count(("verificar_identidad", "refused")) == 2  # the name, then a guessed number
    assert refused.count(("estado_conexion", "refused")) == 2
    assert ("reactivar_servicio", "refused") in refused  # the one the schema let through
    assert {row["result"] for row in audit} == {"refused"}
    assert all(row["caller"] == STRANGER and row["reason"] for row in audit)
    failures = [event for event in events if event["kind"] == "identity_failure"]
    assert [event["customer"] for event in failures] == [LUIS["dni"], LUIS["dni"]]  # counted for the next calls


@pytest.fixture(scope="module")
def owner_calls(host, hostile_call):
    use_script(host, "owner", OWNER)
    second = place_call(host, "provider_call_speaking.xml", "", OWNER)  # from 5215550004444, Luis's number
    after_second = address_lists(host)
    third = place_call(host, "provider_call_speaking.xml", "", OWNER)
    return second, after_second, third


def test_the_debtor_from_his_own_number_reactivates_once(host, owner_calls):
    second, after_second, _third = owner_calls
    tools = {call["name"]: call for call in second["tool_calls"]}
    assert tools["verificar_identidad"]["result"]["puede_reactivar"] is True
    assert tools["reactivar_servicio"]["result"]["reactivado"] is True, tools["reactivar_servicio"]
    granted = [row for row in after_second if row[0] == "promesa-pago"]
    assert [(row[1], row[2].split(";")[0]) for row in granted] == [("10.20.0.14", "usuario=luis.hernandez")]
    audit, _events = records_of(host, second["call_id"])
    assert ("reactivar_servicio", "done") in [(row["tool"], row["result"]) for row in audit]


def test_a_third_call_within_the_period_is_refused(host, owner_calls):
    _second, after_second, third = owner_calls
    tools = {call["name"]: call for call in third["tool_calls"]}
    assert tools["verificar_identidad"]["result"]["verificado"] is True
    refused = tools["reactivar_servicio"]
    assert not refused["ok"]
    assert "30 días" in refused["result"]["error"]
    assert address_lists(host) == after_second
    audit, _events = records_of(host, third["call_id"])
    [row] = [row for row in audit if row["tool"] == "reactivar_servicio"]
    assert (row["result"], row["customer_id"]) == ("refused", LUIS["dni"])
    assert "reactivation limit reached" in row["reason"]


@pytest.fixture(scope="module")
def hostile_again(host, owner_calls):
    use_script(host, "hostile-again", HOSTILE_AGAIN)
    return place_call(host, "caller_speaking.xml", f"-key caller {STRANGER}", HOSTILE_AGAIN)


def test_the_strangers_failures_count_across_calls_until_his_number_is_refused(host, hostile_again):
    record = hostile_again
    assert record["caller"] == STRANGER
    [guess, right, status] = record["tool_calls"]
    assert (guess["name"], guess["ok"]) == ("verificar_identidad", False)
    assert LOCKED not in guess["result"]["error"]  # the third failure itself is still an ordinary mismatch
    assert (right["name"], right["ok"]) == ("verificar_identidad", False)
    assert right["result"]["error"].startswith(LOCKED), right  # right data, too late: the number is locked
    assert (status["name"], status["ok"]) == ("estado_conexion", False)  # so the call is still unverified
    for call in record["tool_calls"]:
        said = json.dumps(call["result"], ensure_ascii=False)
        for personal in (*MARIA_PERSONAL, *LUIS_PERSONAL):
            assert personal not in said, (call["name"], said)
    audit, events = records_of(host, record["call_id"])
    [locked] = [row for row in audit if row["tool"] == "verificar_identidad" and "failed identity" in row["reason"]]
    assert (locked["result"], locked["caller"]) == ("refused", STRANGER)
    assert "3 failed identity checks from this number" in locked["reason"]
    assert [event["kind"] for event in events if event["kind"] != "lookup"] == ["identity_failure", "limit"]
