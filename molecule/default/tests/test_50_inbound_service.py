"""openai-inbound-calls as deployed: the unit, its sandbox, its files, and a real SIPp call through it.

Runs after test_40, whose suite restarted Asterisk: the call here also proves the service reconnected. The
same call proves what the operator sees of it: the Prometheus metrics the service serves on loopback, the
caller's transcribed words in the record, and ``centralita calls report``.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from dataclasses import dataclass

import pytest
from conftest import BOX, LIFECYCLE, call_record, lifecycle_positions, place_speaking_call, sipp
from prometheus_client.parser import text_string_to_metric_families

testinfra_hosts = [f"podman://{BOX}"]

LOG = "/var/log/asterisk/inbound_openai.log"
METRICS_URL = "http://127.0.0.1:9464/metrics"  # bridge_metrics_port's default
# The fake Realtime server's default script: what its caller says, turn by turn, as the caller's transcription.
CALLER_LINES = [
    "Hola, buenas tardes. No tengo internet desde ayer.",
    "Sí, el servicio está a mi nombre.",
    "¿Me lo pueden reactivar, por favor?",
    "Sí, confirmo.",
    "Muchas gracias, hasta luego.",
]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


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


def metrics(host) -> Samples:
    """The service's metrics as scraped from inside the box: {(sample name, sorted labels): value}."""
    text = host.check_output(f"curl -sf -m 10 {METRICS_URL}")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def calls_report_csv(host) -> dict[str, dict[str, str]]:
    """``centralita calls report --csv`` run by root in the box, in UTC: its rows by date (and ``total``)."""
    out = host.run("centralita calls report --csv --timezone UTC")
    assert out.rc == 0, out.stdout + out.stderr
    return {row["date"]: row for row in csv.DictReader(io.StringIO(out.stdout))}


@dataclass(frozen=True)
class BeforeTheCall:
    metrics: Samples
    report: dict[str, dict[str, str]]


@pytest.fixture(scope="module")
def before_the_call(host) -> BeforeTheCall:
    """The metrics and the calls report just before the speaking call (the service has been up since converge)."""
    deadline = time.monotonic() + 30
    while host.run(f"curl -sf -m 5 -o /dev/null {METRICS_URL}").rc != 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    return BeforeTheCall(metrics(host), calls_report_csv(host))


@pytest.fixture(scope="module")
def speaking_call(host, before_the_call):
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


def test_the_callers_transcribed_words_are_stored_in_order_with_the_assistants(host, speaking_call):
    # The box asks the Realtime session for input transcription (bridge_transcription_model: whisper-1); the fake
    # server transcribes each caller turn as its script's next caller line. The caller speaks after the greeting:
    # the record holds the greeting, then the caller's words. (The answer to them may still be playing when SIPp
    # hangs up; its ordering behind late caller text is proven by the unit tests of TranscriptOrder.)
    call_id, _log = speaking_call
    transcript = call_record(host, call_id)["transcript"]
    caller = [line["text"] for line in transcript if line["speaker"] == "caller"]
    assert caller, transcript
    assert caller == CALLER_LINES[: len(caller)], transcript  # the script's lines, in the order they were said
    assert [line["speaker"] for line in transcript[:2]] == ["assistant", "caller"], transcript
    assert transcript[0]["text"].startswith("Hola, soy el asistente"), transcript
    assert transcript[1]["text"] == CALLER_LINES[0], transcript
    stamps = [line["at"] for line in transcript]
    assert stamps == sorted(stamps), transcript  # the rows' order is the order the words were said


def test_the_metrics_endpoint_counts_the_call(host, before_the_call, speaking_call):
    # Served on loopback only, by the service itself.
    listening = [line.split()[3] for line in host.check_output("ss -Hltn 'sport = :9464'").splitlines()]
    assert listening == ["127.0.0.1:9464"], listening  # the local address column: loopback, and nothing else
    key = ("centralita_calls_total", (("direction", "inbound"), ("outcome", "hung_up_by_caller")))
    old = before_the_call.metrics
    active = ("centralita_active_calls", ())
    # The counter moves, and the call leaves the active ones, as it ends, a moment after its log line: wait.
    deadline = time.monotonic() + 30
    new = metrics(host)
    while (new.get(key, 0) == old.get(key, 0) or new[active] != 0) and time.monotonic() < deadline:
        time.sleep(0.5)
        new = metrics(host)
    assert new.get(key, 0) == old.get(key, 0) + 1
    assert new[active] == 0
    for tool, result in (("consultar_cliente", "ok"), ("estado_conexion", "ok"), ("reactivar_servicio", "error")):
        tool_key = ("centralita_tool_calls_total", (("result", result), ("tool", tool)))
        assert new.get(tool_key, 0) == old.get(tool_key, 0) + 1, tool
    connects = ("centralita_realtime_connect_seconds_count", ())
    assert new[connects] >= old.get(connects, 0) + 1  # (a dialer call through the service would add its own)
    tokens = sum(v for (name, _labels), v in new.items() if name == "centralita_tokens_total")
    tokens_before = sum(v for (name, _labels), v in old.items() if name == "centralita_tokens_total")
    assert tokens > tokens_before
    assert new[("process_resident_memory_bytes", ())] > 0  # the service's own process figures


def test_calls_report_prints_the_call(host, before_the_call, speaking_call):
    call_id, _log = speaking_call
    day = call_record(host, call_id)["started_at"][:10]  # stored in UTC, as the report is asked for
    old = before_the_call.report.get(day, {})
    new = calls_report_csv(host)[day]
    assert int(new["inbound"]) == int(old.get("inbound", 0)) + 1, new
    assert int(new["answered"]) >= int(old.get("answered", 0)) + 1, new
    assert int(new["outcome_hung_up_by_caller"]) >= int(old.get("outcome_hung_up_by_caller", 0)) + 1, new
    assert int(new["tokens"]) > int(old.get("tokens", 0)), new
    # Every cost carries the date of its price table (records schema 6): none recorded here is 'unknown'.
    assert new["prices_as_of"], new
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", d) for d in new["prices_as_of"].split()), new
    # The table an operator reads names the day, the call count and the outcome.
    table = host.run("centralita calls report --timezone UTC")
    assert table.rc == 0, table.stdout + table.stderr
    row = next(line.split() for line in table.stdout.splitlines() if line.startswith(day))
    assert row[1] == new["calls"], table.stdout
    assert "hung_up_by_caller" in table.stdout.split("Outcomes:")[1], table.stdout


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
