"""Asterisk's own Prometheus metrics (res_prometheus) and the dialer's, as deployed: both on loopback only,
Asterisk's behind Basic authentication, and a live call counted by Asterisk. The Grafana dashboard's queries name
only metrics that the box's three endpoints really serve. (The service's own /metrics and its counts of a call:
test_50; the dialer's counts after a campaign: test_70.)"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from conftest import BOX, PROJECT, place_speaking_call
from prometheus_client.parser import text_string_to_metric_families

testinfra_hosts = [f"podman://{BOX}"]

ASTERISK_URL = "http://127.0.0.1:8088/metrics"  # asterisk_ari_port and asterisk_prometheus_uri's defaults
SERVICE_URL = "http://127.0.0.1:9464/metrics"  # bridge_metrics_port
DIALER_URL = "http://127.0.0.1:9465/metrics"  # bridge_dialer_metrics_port
SECRET_FILE = "/etc/centralita/asterisk-metrics-password"  # asterisk_prometheus_secret_file
DASHBOARD = PROJECT / "files" / "grafana" / "centralita.json"


def status(host, url: str, *curl: str) -> str:
    return host.check_output(f"curl -s -m 10 -o /dev/null -w '%{{http_code}}' {' '.join(curl)} {url}")


@pytest.fixture(scope="module")
def password(host) -> str:
    secret = host.file(SECRET_FILE)
    assert (secret.user, secret.group, secret.mode) == ("root", "root", 0o600)
    return host.check_output(f"cat {SECRET_FILE}").strip()


def asterisk_metrics(host, password: str) -> dict[str, float]:
    """Asterisk's metrics: each name's samples summed (res_prometheus labels each with the system's ``eid``)."""
    # The password goes to curl on its standard input (a config line), never on a command line.
    text = host.check_output(
        f'printf \'user = "prometheus:%s"\\n\' "$(cat {SECRET_FILE})" | curl -sf -m 10 -K - {ASTERISK_URL}'
    )
    assert password not in text
    # Read line by line: prometheus_client's parser drops res_prometheus's counters, whose names lack "_total".
    totals: dict[str, float] = {}
    for line in text.splitlines():
        found = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{.*\})?\s+(\S+)(?:\s+\d+)?", line.strip())
        if found and not line.startswith("#"):
            totals[found[1]] = totals.get(found[1], 0.0) + float(found[2])
    return totals


def total(metrics: dict[str, float], name: str) -> float:
    assert name in metrics, f"{name} is not in the scrape"
    return metrics[name]


def listening(host, port: int) -> list[str]:
    return [line.split()[3] for line in host.check_output(f"ss -Hltn 'sport = :{port}'").splitlines()]


def test_asterisk_loads_res_prometheus_from_its_configuration(host):
    assert "res_prometheus.so" in host.check_output("asterisk -rx 'module show like res_prometheus'")
    conf = host.file("/etc/asterisk/prometheus.conf")
    assert (conf.user, conf.group, conf.mode) == ("asterisk", "asterisk", 0o640)
    assert conf.contains("^enabled = yes$")


def test_asterisk_metrics_refuse_a_scraper_without_the_password(host, password):
    assert status(host, ASTERISK_URL) == "401"
    assert status(host, ASTERISK_URL, "-u", "prometheus:not-the-password") == "401"
    assert status(host, ASTERISK_URL, "-u", f"someone-else:{password}") == "401"


def test_the_metrics_endpoints_listen_on_loopback_only(host):
    # Asterisk's HTTP server (ARI and res_prometheus), the service's and the dialer's endpoints.
    for port in (8088, 9464, 9465):
        assert listening(host, port) == [f"127.0.0.1:{port}"], port


def test_asterisk_counts_a_live_call(host, password):
    before = asterisk_metrics(host, password)
    assert total(before, "asterisk_core_uptime_seconds") > 0
    call_id, _log = place_speaking_call(host)
    assert call_id
    # The call is over for SIPp; Asterisk's channels go a moment later: wait for none to be left.
    deadline = time.monotonic() + 30
    after = asterisk_metrics(host, password)
    while total(after, "asterisk_channels_count") != 0 and time.monotonic() < deadline:
        time.sleep(0.5)
        after = asterisk_metrics(host, password)
    calls = (total(before, "asterisk_calls_sum"), total(after, "asterisk_calls_sum"))
    assert calls[1] >= calls[0] + 1, calls
    assert total(after, "asterisk_channels_count") == 0
    assert total(after, "asterisk_calls_count") == 0


def test_every_metric_the_dashboard_queries_is_served_by_the_box(host, password):
    dashboard = json.loads(Path(DASHBOARD).read_text(encoding="utf-8"))
    queried = {
        name
        for expr in re.findall(r'"expr":\s*"((?:[^"\\]|\\.)*)"', json.dumps(dashboard))
        for name in re.findall(r"\b((?:centralita|asterisk|process)_[a-z0-9_]+)\b(?!\s*(?:\(|=|!=|=~|!~))", expr)
    }
    assert queried
    served = set()
    for text in (host.check_output(f"curl -sf -m 10 {SERVICE_URL}"), host.check_output(f"curl -sf -m 10 {DIALER_URL}")):
        for family in text_string_to_metric_families(text):
            served.add(family.name)
            served.update(sample.name for sample in family.samples)
    asterisk = set(asterisk_metrics(host, password))
    served |= asterisk
    # A labelled counter with no sample yet (no router error so far) is still described in the exposition text
    # (its HELP and TYPE lines): the parser gives its family, named without the suffixes a query adds.
    missing = {
        name for name in queried if name not in served and re.sub(r"_(total|bucket|sum|count)$", "", name) not in served
    }
    assert not missing, f"the dashboard queries metrics the box does not serve: {sorted(missing)}"
