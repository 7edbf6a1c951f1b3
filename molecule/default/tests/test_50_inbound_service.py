"""openai-inbound-calls as deployed: the unit, its sandbox, its files, and a real SIPp call through it.

Runs after test_40, whose suite restarted Asterisk: the call here also proves the service reconnected.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from conftest import BOX, LIFECYCLE, call_record, lifecycle_positions, place_speaking_call, sipp

testinfra_hosts = [f"podman://{BOX}"]

LOG = "/var/log/asterisk/inbound_openai.log"


def test_service_is_enabled_running_and_sandboxed(host):
    svc = host.service("openai-inbound-calls")
    assert svc.is_enabled
    assert svc.is_running
    props = svc.systemd_properties
    assert props["User"] == "centralita"
    assert props["NoNewPrivileges"] == "yes"
    assert props["ProtectSystem"] == "strict"
    assert props["ProtectHome"] == "yes"
    assert props["PrivateTmp"] == "yes"
    assert props["Restart"] == "on-failure"
    assert "asterisk.service" in props["After"]


def test_env_is_readable_only_by_the_service_user(host):
    env = host.file("/usr/local/asterisk/.env")
    assert (env.user, env.group, env.mode) == ("centralita", "centralita", 0o600)
    assert env.contains('^WS_PING_INTERVAL="20"$')  # every value quoted (roles/bridge/tests/test_env_template.py)
    assert env.contains('^WS_PING_TIMEOUT="10"$')


def test_the_code_root_runs_is_roots_alone(host):
    """Root runs the venv (sudo centralita ..., the role's pip): nobody else may change it or its directory."""
    app = host.file("/usr/local/asterisk")
    assert (app.user, app.group, app.mode) == ("root", "root", 0o755)
    link = host.file("/usr/local/bin/centralita")
    assert link.is_symlink
    assert link.linked_to == "/usr/local/asterisk/venv/bin/centralita"
    assert host.check_output("stat -c %U /usr/local/bin/centralita") == "root"
    for tree in ("/usr/local/asterisk/venv", "/usr/local/asterisk/wheels"):
        stray = host.check_output(
            f"find {tree} \\( ! -user root -o ! -group root -o \\( ! -type l -perm /022 \\) \\) -print"
        )
        assert stray == "", tree


def test_the_prompts_are_the_operators(host):
    prompts = host.file("/usr/local/asterisk/prompts")
    assert (prompts.user, prompts.group, prompts.mode) == ("soporte", "centralita", 0o2750)
    for name in ("asistente_entrante.es.txt", "asistente_cobranza.es.txt"):
        prompt = host.file(f"/usr/local/asterisk/prompts/{name}")
        assert (prompt.user, prompt.group, prompt.mode) == ("soporte", "centralita", 0o640), name


def test_logrotate_rotates_the_logs_once_without_errors(host):
    """Debian's asterisk package rotates /var/log/asterisk/*.log: logrotate refuses a file named twice, so the
    bridge's own configuration must not name them again."""
    out = host.run("logrotate --debug /etc/logrotate.conf")
    assert out.rc == 0, out.stderr
    text = out.stdout + out.stderr
    assert "error" not in text.lower(), text
    for log in (LOG, "/var/log/asterisk/outbound_openai.log"):
        assert text.count(f"considering log {log}\n") == 1, log


def test_service_registered_its_ari_app(host):
    assert "centralita" in host.check_output("asterisk -rx 'ari show apps'").split()


def router_rows(host, path):
    """Rows of the fake router's table, read with librouteros as any API client would."""
    script = (
        "import json,sys,librouteros; api=librouteros.connect('127.0.0.1','centralita','centralita-fake-router',"
        "port=8728,encoding='utf-8'); print(json.dumps(list(api.path(*sys.argv[1].split('/')[1:]))))"
    )
    return json.loads(host.check_output(f'/usr/local/asterisk/venv/bin/python -c "{script}" {path}'))


@pytest.fixture(scope="module")
def speaking_call(host):
    return place_speaking_call(host)


def test_the_call_walks_through_every_lifecycle_event(speaking_call):
    call_id, log = speaking_call
    positions = lifecycle_positions(log, call_id)
    assert positions == sorted(positions), list(zip(LIFECYCLE, positions, strict=True))


def test_the_log_and_journal_never_show_secrets(host, speaking_call):
    secret = host.check_output("cat /etc/centralita/ari-password")
    log = host.check_output(f"cat {LOG}")
    journal = host.check_output("journalctl -u openai-inbound-calls --no-pager -o cat")
    for text in (log, journal):
        assert "centralita-fake-key" not in text
        assert secret not in text
    assert "session.updated received" in journal


def test_the_call_is_recorded_with_the_assistant_transcript(host, speaking_call):
    call_id, _log = speaking_call
    script = (
        "import json,sys; from centralita.storage.records import CallRecords; "
        "r=CallRecords('/var/lib/centralita/centralita.db'); print(json.dumps(r.get_call(sys.argv[1])))"
    )
    record = host.check_output(f'/usr/local/asterisk/venv/bin/python -c "{script}" {call_id}')
    assert '"outcome": "hung_up_by_caller"' in record
    assert '"speaker": "assistant"' in record
    assert '"caller": "5215550004444"' in record


def test_nothing_is_left_behind_after_the_call(host, speaking_call):
    assert "0 active channels" in host.check_output("asterisk -rx 'core show channels count'")
    bridges = host.check_output("asterisk -rx 'bridge show all'")
    assert "centralita-" not in bridges


def test_the_caller_id_lets_the_caller_read_their_service_but_not_reactivate_it(host, speaking_call):
    # The fake Realtime server's default script calls consultar_cliente and estado_conexion, then
    # reactivar_servicio, from 5215550004444: Luis Hernández, cut for debt in the demo ISP. His number on file
    # verifies the call for reading (IDENTITY_READ_REQUIRES=any); a caller ID can be forged on a SIP trunk, so
    # changing anything needs his DNI and customer number too (IDENTITY_WRITE_REQUIRES=dni), which this script
    # never gives. The bridge ran the tools against the fake RouterOS server over TCP.
    call_id, _log = speaking_call
    tools = {call["name"]: call for call in call_record(host, call_id)["tool_calls"]}
    assert set(tools) == {"consultar_cliente", "estado_conexion", "reactivar_servicio"}, tools
    found = tools["consultar_cliente"]["result"]
    assert (found["verificado"], found["puede_consultar_estado"], found["puede_reactivar"]) == (True, True, False)
    state = tools["estado_conexion"]["result"]
    assert (state["ok"], state["suspendido_por_adeudo"], state["velocidad_maxima"]["bajada"]) == (True, True, "512k")
    said = json.dumps([call["result"] for call in tools.values()], ensure_ascii=False)
    for personal in ("Luis Hernández", "luis.hernandez", "10.20.0.14", "AA:BB:CC:00:00:14", "45678901", "Lh-1187"):
        assert personal not in said  # the model hears the state of the service, never who or where it is
    refused = tools["reactivar_servicio"]
    assert not refused["ok"]
    assert "número de cliente" in refused["result"]["error"]
    # Nothing was written to the router, seen through librouteros; the refusal is in the audit log.
    exceptions = [row for row in router_rows(host, "/ip/firewall/address-list") if row["list"] == "promesa-pago"]
    assert exceptions == []
    script = (
        "import json; from centralita.storage.records import CallRecords; "
        "print(json.dumps(CallRecords('/var/lib/centralita/centralita.db').audit_entries()))"
    )
    audit = json.loads(host.check_output(f'/usr/local/asterisk/venv/bin/python -c "{script}"'))
    ours = [entry for entry in audit if entry["call_id"] == call_id]
    assert [(entry["tool"], entry["result"]) for entry in ours] == [
        ("verificar_identidad", "done"),
        ("reactivar_servicio", "refused"),
    ]
    assert "IDENTITY_WRITE_REQUIRES=dni" in ours[-1]["reason"]


@pytest.fixture
def router_down(host):
    host.check_output("systemctl stop centralita-fake-routeros")
    yield
    host.check_output("systemctl start centralita-fake-routeros")


@pytest.mark.usefixtures("router_down")
def test_with_the_router_down_the_tools_answer_an_error_in_time_and_the_call_goes_on(host, speaking_call):
    before = int(host.check_output(f"stat -c %s {LOG}"))
    started = time.monotonic()
    result = sipp(host, "provider_call_speaking.xml", "5215550002222", extra="-d 10000", timeout_s=40)
    assert result.rc == 0, result.output
    log = host.check_output(f"tail -c +{before + 1} {LOG}")
    call_id = sorted(set(re.findall(r"call=([0-9.]+)", log)))[0]
    record = call_record(host, call_id)
    assert record["outcome"] == "hung_up_by_caller"  # the caller stayed with the assistant to the end
    tools = {call["name"]: call for call in record["tool_calls"]}
    assert set(tools) == {"consultar_cliente", "estado_conexion", "reactivar_servicio"}, tools
    # What needs the router now answered an error the assistant can say. (consultar_cliente may still answer:
    # who the caller is comes from the customer records read less than ROUTEROS_DIRECTORY_TTL ago.)
    assert not tools["estado_conexion"]["ok"]
    assert "No pude consultar el equipo de red" in tools["estado_conexion"]["result"]["error"]
    assert not tools["reactivar_servicio"]["ok"]
    assert time.monotonic() - started < 40
    # Each tool gave up within ROUTEROS_TIMEOUT (5 s): their log lines are there, none of them late.
    assert "tool estado_conexion -> error" in log


def test_a_crashed_service_is_restarted_by_systemd_and_takes_calls_again(host):
    old_pid = host.service("openai-inbound-calls").systemd_properties["MainPID"]
    host.check_output("systemctl kill --signal=SIGKILL openai-inbound-calls")
    deadline = time.monotonic() + 30
    new_pid = old_pid
    while time.monotonic() < deadline:
        props = host.service("openai-inbound-calls").systemd_properties
        if props["ActiveState"] == "active" and props["MainPID"] not in (old_pid, "0"):
            new_pid = props["MainPID"]
            if "centralita" in host.check_output("asterisk -rx 'ari show apps'").split():
                break
        time.sleep(0.5)
    assert new_pid != old_pid
    assert "centralita" in host.check_output("asterisk -rx 'ari show apps'").split()
    result = sipp(host, "provider_call.xml", "5215550002222", extra="-d 3000")
    assert result.rc == 0, result.output
    assert result.successful_calls == 1
