"""The assistant answers a provider call on chan_sip: openai-inbound-calls (with the fake Realtime and RouterOS
servers) takes it through ARI, ExternalMedia and a mixing bridge, talks, uses the router tools, records it."""

from __future__ import annotations

import json
import re

import pytest
from conftest import BOX, BRIDGE_LOG, log_since, log_size, sipp

testinfra_hosts = [f"podman://{BOX}"]


def call_record(host, call_id):
    script = (
        "import json,sys; from centralita.storage.records import CallRecords; "
        "r=CallRecords('/var/lib/centralita/centralita.db'); print(json.dumps(r.get_call(sys.argv[1])))"
    )
    return json.loads(host.check_output(f'/usr/local/asterisk/venv/bin/python -c "{script}" {call_id}'))


@pytest.fixture(scope="module")
def speaking_call(host):
    before = log_size(host, BRIDGE_LOG)
    result = sipp(host, "provider_call_speaking.xml", "5215550002222", extra="-d 10000", timeout_s=40)
    assert result.rc == 0, result.output
    log = log_since(host, before, BRIDGE_LOG)
    ids = sorted(set(re.findall(r"call=([0-9.]+)", log)))
    assert len(ids) == 1, log
    return ids[0], log


def test_the_call_walks_through_every_lifecycle_event(speaking_call):
    call_id, log = speaking_call
    lines = [line for line in log.splitlines() if f"call={call_id}" in line]
    # The session opens while the phone rings; the call is answered only once it is live.
    events = [
        "call started",
        "ringing",
        "Iniciando conexión WebSocket con OpenAI",
        "session.update sent",
        "session.updated received",
        "ARI answered",
        "media ready",
        "call ended: outcome=hung_up_by_caller",
    ]
    positions = [next(i for i, line in enumerate(lines) if event in line) for event in events]
    assert positions == sorted(positions)


def test_the_call_is_recorded_with_the_transcript_and_the_router_tools(host, speaking_call):
    call_id, _log = speaking_call
    record = call_record(host, call_id)
    assert record["outcome"] == "hung_up_by_caller"
    assert record["caller"] == "5215550004444"
    assert any(turn["speaker"] == "assistant" for turn in record["transcript"])
    tools = {call["name"]: call for call in record["tool_calls"]}
    assert {"consultar_cliente", "estado_conexion"} <= set(tools), tools
    # His number on file verifies the call for reading; a caller ID alone never changes anything (the default
    # script's reactivar_servicio is refused: IDENTITY_WRITE_REQUIRES=dni).
    assert tools["consultar_cliente"]["result"]["verificado"] is True, tools
    assert tools["estado_conexion"]["ok"], tools
    assert tools["estado_conexion"]["result"]["suspendido_por_adeudo"] is True, tools
    assert not tools.get("reactivar_servicio", {"ok": False})["ok"], tools


def test_nothing_is_left_behind_after_the_call(host, speaking_call):
    assert "0 active channels" in host.check_output("asterisk -rx 'core show channels count'")
    assert "centralita-" not in host.check_output("asterisk -rx 'bridge show all'")
