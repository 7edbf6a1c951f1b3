"""The dialer's Prometheus metrics after a real dialer run (``openai-outbound-calls`` against the fake Asterisk),
scraped from its loopback endpoint; and what a scrape says when the campaign database cannot be read."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from dialer_helpers import target
from polling import free_port
from prometheus_client.parser import text_string_to_metric_families
from test_dialer_service import attempts, start, stop, wait

from centralita.dialer.metrics import DialerMetrics
from centralita.dialer.outcomes import Outcome
from centralita.dialer.store import CampaignState, CampaignStore
from centralita.metrics_endpoint import METRICS_HOST
from centralita_testing.fake_asterisk import FakeAsterisk

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://{METRICS_HOST}:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def attempts_by_result(samples: Samples) -> dict[str, float]:
    return {
        dict(labels)["result"]: count
        for (name, labels), count in samples.items()
        if name == "centralita_dialer_attempts_total"
    }


@pytest.fixture
def ari() -> Iterator[FakeAsterisk]:
    with FakeAsterisk("centralita", "secreto") as fake:
        yield fake


def test_a_dialer_run_is_counted_from_the_campaign_database(ari: FakeAsterisk, tmp_path: Path) -> None:
    port = free_port(METRICS_HOST)
    database = tmp_path / "dialer.db"
    env = tmp_path / ".env"
    env.write_text(
        "DIALER_TIMEZONE=America/Mexico_City\n"
        "DIALER_WINDOWS=mon-sun 00:00-24:00\n"
        "DIALER_WINDOW_END_MARGIN=0s\n"
        "DIALER_MAX_CONCURRENT=3\n"
        "DIALER_CALLS_PER_MINUTE=120\n"
        f"DIALER_METRICS_PORT={port}\n"
        "METRICS_PORT=0\n"
        f"DIALER_DB_PATH={database}\n"
        f"DIALER_LOG_FILE={tmp_path / 'outbound.log'}\n"
        f"ARI_URL={ari.url}\nARI_USER=centralita\nARI_PASSWORD=secreto\n"
        "OPENAI_API_KEY=sk-not-used-by-the-dialer\n"
    )
    with CampaignStore(database) as store:
        store.ensure_campaign("marzo")
        store.upsert_targets("marzo", [target(1), target(2), target(3)])
        store.start_campaign("marzo")
        store.ensure_campaign("abril")  # a draft: counted, never dialled
    process = start(env)
    try:
        wait(lambda: len(ari.channels) == 3 and "centralita-dialer" in ari.connected_apps())
        wait(lambda: [state for _channel, state, _outcome in attempts(database)] == ["dialing"] * 3)
        during = scrape(port)
        assert during[("centralita_dialer_active_calls", ())] == 3
        assert set(attempts_by_result(during).values()) == {0}
        # What the customers said, as the assistant's tools record it during the call (another process).
        first, second, third = [channel for channel, _state, _outcome in attempts(database)]
        for channel in (first, second):
            ari.answer(channel)
        wait(lambda: [state for _c, state, _o in attempts(database)] == ["answered", "answered", "dialing"])
        with CampaignStore(database) as assistant:
            assistant.record_outcome(first, Outcome.PROMISE_TO_PAY, promise_date=date(2031, 1, 15))
            assistant.record_outcome(second, Outcome.OPT_OUT)
        for channel in (first, second):
            ari.hang_up(channel, 16, "Normal Clearing")
        ari.hang_up(third, 17, "User busy")
        wait(lambda: all(state == "ended" for _c, state, _o in attempts(database)))
        after = scrape(port)
    finally:
        assert stop(process) == 0
    by_result = attempts_by_result(after)
    assert set(by_result) == {str(outcome) for outcome in Outcome}, "every result present, 0 included"
    assert {result: count for result, count in by_result.items() if count} == {
        "promise-to-pay": 1,
        "opt-out": 1,
        "busy": 1,
    }
    assert after[("centralita_dialer_active_calls", ())] == 0
    assert after[("centralita_dialer_promises_to_pay_total", ())] == 1
    assert after[("centralita_dialer_optouts", ())] == 1
    campaigns = {
        dict(labels)["state"]: count for (name, labels), count in after.items() if name == "centralita_dialer_campaigns"
    }
    assert campaigns == {"draft": 1, "running": 1, "paused": 0, "finished": 0}
    assert after[("centralita_dialer_database_up", ())] == 1
    assert after[("process_resident_memory_bytes", ())] > 0  # the dialer's own process
    # Stopped: the port is released.
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((METRICS_HOST, port))
        probe.listen()


def test_a_database_it_cannot_read_is_said_and_the_figures_left_out(tmp_path: Path) -> None:
    store = CampaignStore(tmp_path / "dialer.db")
    metrics = DialerMetrics(store)
    assert metrics.registry.get_sample_value("centralita_dialer_database_up") == 1
    assert metrics.registry.get_sample_value("centralita_dialer_campaigns", {"state": str(CampaignState.DRAFT)}) == 0
    store.close()
    assert metrics.registry.get_sample_value("centralita_dialer_database_up") == 0
    assert metrics.registry.get_sample_value("centralita_dialer_active_calls") is None
    assert metrics.registry.get_sample_value("centralita_dialer_attempts_total", {"result": "busy"}) is None


def test_each_dialer_counts_in_its_own_registry(tmp_path: Path) -> None:
    with CampaignStore(tmp_path / "a.db") as one, CampaignStore(tmp_path / "b.db") as two:
        one.ensure_campaign("marzo")
        first, second = DialerMetrics(one), DialerMetrics(two)
        draft = {"state": "draft"}
        assert first.registry.get_sample_value("centralita_dialer_campaigns", draft) == 1
        assert second.registry.get_sample_value("centralita_dialer_campaigns", draft) == 0
