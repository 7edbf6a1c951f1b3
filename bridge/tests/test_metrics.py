"""The service's Prometheus metrics after real calls (fake Asterisk, fake Realtime), read from the service's own
registry and from its loopback endpoint."""

from __future__ import annotations

import os
import socket
import time
import urllib.request
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from polling import free_port
from prometheus_client import REGISTRY, ProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from test_call import APP, CALLER_WORDS, DID, FAILOVER, GREETING, REPLY, TIMEOUT, Box, wait_for
from test_call import asterisk as asterisk  # the fixtures, under their own names
from test_call import boxes as boxes
from test_call import media_engine as media_engine

from centralita.billing.usage import Usage
from centralita.calls.metrics import METRICS_HOST, SandboxedProcessCollector, ServiceMetrics
from centralita.storage.records import Outcome
from centralita_testing.fake_realtime import AudioTurn, Faults, ToolCallTurn


def value(box: Box, name: str, **labels: str) -> float:
    """A sample of the service's registry (0 when it has none yet)."""
    sample = box.service.metrics.registry.get_sample_value(name, labels)
    return sample if sample is not None else 0.0


def test_a_call_with_a_tool_and_a_barge_in_is_counted(boxes: Callable[..., Box]) -> None:
    script = [
        AudioTurn(GREETING, "Hola."),
        ToolCallTurn("transferir_a_operador", '{"motivo": "pide una persona"}', pieces=2),
        AudioTurn(REPLY, "Le transfiero."),
    ]
    box = boxes(script)
    assert value(box, "centralita_active_calls") == 0
    channel_id, _call, leg = box.call_in()
    session = box.session()
    session.wait_for_server_event("response.done", timeout=TIMEOUT)
    assert value(box, "centralita_active_calls") == 1
    leg.say(CALLER_WORDS)  # the caller speaks: the tool call comes as the reply
    record = box.ended(channel_id)
    assert record["outcome"] == Outcome.TRANSFERRED
    wait_for(lambda: box.service.active_calls == 0, "the call forgotten")

    assert value(box, "centralita_calls_total", direction="inbound", outcome="transferred") == 1
    assert value(box, "centralita_calls_total", direction="inbound", outcome="completed") == 0
    assert value(box, "centralita_active_calls") == 0
    assert value(box, "centralita_realtime_connect_seconds_count") == 1
    assert 0 < value(box, "centralita_realtime_connect_seconds_sum") < TIMEOUT
    assert value(box, "centralita_realtime_connect_failures_total") == 0
    assert value(box, "centralita_tool_calls_total", tool="transferir_a_operador", result="ok") == 1
    # One answer to the caller's words (the greeting answered nobody), its audio after the tool ran.
    assert value(box, "centralita_reply_latency_seconds_count") == 1
    assert 0 < value(box, "centralita_reply_latency_seconds_sum") < TIMEOUT
    # The tokens and cost of every response.done of the session, at the price table's date.
    done = session.server_events("response.done")
    used = Usage()
    for event in done:
        used += Usage.from_response_done(event) or Usage()
    for kind, count in used.as_dict().items():
        assert value(box, "centralita_tokens_total", kind=kind) == count
    prices = box.service._settings.spending.prices
    cost = value(box, "centralita_cost_total", currency=prices.currency, prices_as_of=prices.as_of)
    assert abs(Decimal(str(cost)) - prices.cost(used)) < Decimal("0.000001")
    assert cost > 0


def test_barge_ins_refusals_and_connect_failures_are_counted(boxes: Callable[..., Box]) -> None:
    box = boxes([AudioTurn(GREETING * 6, "Un saludo largo.")], pace=1.0, MAX_CALLS="1")
    first, _call, leg = box.call_in()
    leg.wait_heard(lambda heard: len(heard) >= 10, TIMEOUT)
    leg.say(CALLER_WORDS)  # over the greeting
    box.session().wait_for_server_event("input_audio_buffer.speech_started", timeout=TIMEOUT)
    wait_for(lambda: value(box, "centralita_barge_ins_total") == 1, "the barge-in counted")
    refused = box.asterisk.incoming_call(APP, ("inbound", DID), caller="5215550000009")
    assert box.ended(refused)["outcome"] == Outcome.REFUSED
    assert value(box, "centralita_refusals_total", reason="box_full") == 1
    assert value(box, "centralita_calls_total", direction="inbound", outcome="refused") == 1
    box.asterisk.hang_up(first)
    box.ended(first)
    wait_for(lambda: box.service.active_calls == 0, "the call forgotten")

    box.realtime.faults = Faults(refuse=True)  # the next session cannot open
    third = box.asterisk.incoming_call(APP, ("inbound", DID), caller="5215550000008")
    assert box.ended(third)["outcome"] == Outcome.REALTIME_FAILED
    assert box.continues(third) == [(FAILOVER, "s", 1)]
    assert value(box, "centralita_realtime_connect_failures_total") == 1
    assert value(box, "centralita_realtime_connect_seconds_count") == 1  # only the session that opened
    assert value(box, "centralita_calls_total", direction="inbound", outcome="realtime_failed") == 1


def test_slots_the_pacer_skips_are_counted_as_late_frames(boxes: Callable[..., Box]) -> None:
    box = boxes([AudioTurn(GREETING * 6, "Un saludo largo.")], pace=1.0)
    channel_id, _call, leg = box.call_in()
    leg.wait_heard(lambda heard: len(heard) >= 5, TIMEOUT)
    assert value(box, "centralita_late_frames_total") == 0

    def stall(_skipped: int) -> bool:  # another stream holds the shared pacer thread (or loop) for 0.3 s, once
        time.sleep(0.3)
        return False

    loop = box.service._media_loop
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        if loop is not None:
            entry = loop.add(holder, lambda _datagrams, _now: None, stall)
        else:
            assert box.service._pacer is not None
            box.service._pacer.add(stall)
        wait_for(lambda: value(box, "centralita_late_frames_total") >= 5, "the skipped slots counted")
        if loop is not None:
            entry.cancel()
    box.asterisk.hang_up(channel_id)
    box.ended(channel_id)


def test_the_endpoint_answers_on_loopback_with_the_services_metrics(boxes: Callable[..., Box]) -> None:
    port = free_port(METRICS_HOST)
    box = boxes([AudioTurn(GREETING, "Hola.")], METRICS_PORT=str(port))
    assert box.service.metrics.port == port
    channel_id, _call, _leg = box.call_in()
    box.session().wait_for_server_event("response.done", timeout=TIMEOUT)
    box.asterisk.hang_up(channel_id)
    box.ended(channel_id)
    wait_for(lambda: box.service.active_calls == 0, "the call forgotten")
    with urllib.request.urlopen(f"http://{METRICS_HOST}:{port}/metrics", timeout=TIMEOUT) as answer:
        text = answer.read().decode()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    key = ("centralita_calls_total", (("direction", "inbound"), ("outcome", "hung_up_by_caller")))
    assert samples[key] == 1
    assert samples[("centralita_active_calls", ())] == 0
    assert any(name == "centralita_tokens_total" and count > 0 for (name, _labels), count in samples.items())
    assert samples[("process_resident_memory_bytes", ())] > 0  # the service's own process
    # Bound to the loopback address only.
    server = box.service.metrics._server
    assert server is not None
    assert server.server_address[0] == METRICS_HOST
    box.service.stop()
    with socket.socket() as probe:
        # The port is free again once the service stopped (SO_REUSEADDR: the scrape's own connection may linger
        # in TIME_WAIT, but a socket still listening would refuse the bind).
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((METRICS_HOST, port))
        probe.listen()


def test_a_port_in_use_leaves_the_service_running_without_metrics(boxes: Callable[..., Box]) -> None:
    with socket.socket() as taken:
        taken.bind((METRICS_HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        box = boxes([AudioTurn(GREETING, "Hola.")], METRICS_PORT=str(port))
        assert box.service.metrics.port is None
        channel_id, _call, leg = box.call_in()  # calls go on
        leg.wait_heard(lambda heard: len(heard) >= 5, TIMEOUT)
        box.asterisk.hang_up(channel_id)
        box.ended(channel_id)


def test_every_service_counts_in_its_own_registry() -> None:
    one, two = ServiceMetrics(), ServiceMetrics()
    one.call_ended("inbound", "completed")
    one.tool_ran("inventada", "error", known=False)
    assert (
        one.registry.get_sample_value("centralita_calls_total", {"direction": "inbound", "outcome": "completed"}) == 1
    )
    assert (
        two.registry.get_sample_value("centralita_calls_total", {"direction": "inbound", "outcome": "completed"})
        is None
    )
    assert one.registry.get_sample_value("centralita_tool_calls_total", {"tool": "unknown", "result": "error"}) == 1
    assert REGISTRY.get_sample_value("centralita_calls_total", {"direction": "inbound", "outcome": "completed"}) is None


def test_the_process_figures_need_no_proc_stat(tmp_path: Path) -> None:
    # The service's sandbox (ProcSubset=pid) shows /proc/self but hides /proc/stat: a /proc with only "self" in it.
    (tmp_path / "self").symlink_to(f"/proc/{os.getpid()}")
    names = {family.name for family in SandboxedProcessCollector(proc=str(tmp_path), registry=None).collect()}
    assert {"process_resident_memory_bytes", "process_start_time_seconds", "process_open_fds"} <= names
    assert list(ProcessCollector(proc=str(tmp_path), registry=None).collect()) == []  # the library's gives nothing
    start = next(
        family.samples[0].value
        for family in SandboxedProcessCollector(proc=str(tmp_path), registry=None).collect()
        if family.name == "process_start_time_seconds"
    )
    assert time.time() - 24 * 3600 * 365 < start <= time.time()  # a real moment, not seconds since boot
