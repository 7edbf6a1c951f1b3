"""The assistant answers a provider call on chan_sip: openai-inbound-calls (with the fake Realtime and RouterOS
servers) takes it through ARI, ExternalMedia and a mixing bridge, talks, uses the router tools, records it."""

from __future__ import annotations

import pytest
from conftest import BOX, LIFECYCLE, call_record, lifecycle_positions, place_speaking_call

testinfra_hosts = [f"podman://{BOX}"]


@pytest.fixture(scope="module")
def speaking_call(host):
    return place_speaking_call(host)


def test_the_call_walks_through_every_lifecycle_event(speaking_call):
    call_id, log = speaking_call
    positions = lifecycle_positions(log, call_id)
    assert positions == sorted(positions), list(zip(LIFECYCLE, positions, strict=True))


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
