"""The Grafana dashboard (files/grafana/centralita.json) queries only metrics the box exports: the names are taken
from the services' own registries (``ServiceMetrics``, ``DialerMetrics``) and from Asterisk's res_prometheus, so a
renamed or removed metric fails here instead of leaving an empty panel. The box test (test_58_metrics.py) checks
the same names against live scrapes of the three endpoints."""

from __future__ import annotations

import json
import os
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest
from paths import REPO
from prometheus_client import CollectorRegistry

from centralita.calls.metrics import ServiceMetrics
from centralita.dialer.metrics import DialerMetrics
from centralita.dialer.store import CampaignStore

DASHBOARD: Final = REPO / "files" / "grafana" / "centralita.json"
# What res_prometheus exports with core, channel, bridge and endpoint metrics on (Asterisk 20 and 22; the
# PJSIP outbound registration gauge only where PJSIP is built). Checked against the module's source by
# test_the_asterisk_names_are_res_prometheus_s_own when the Asterisk source tarball is at hand, and against a
# live Asterisk by the box test.
ASTERISK_METRICS: Final = frozenset(
    {
        "asterisk_core_scrape_time_ms",
        "asterisk_core_properties",
        "asterisk_core_uptime_seconds",
        "asterisk_core_last_reload_seconds",
        "asterisk_calls_sum",
        "asterisk_calls_count",
        "asterisk_channels_count",
        "asterisk_channels_state",
        "asterisk_channels_duration_seconds",
        "asterisk_bridges_count",
        "asterisk_bridges_channels_count",
        "asterisk_endpoints_count",
        "asterisk_endpoints_state",
        "asterisk_endpoints_channels_count",
        "asterisk_pjsip_outbound_registration_status",
    }
)
_SUFFIXES: Final = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}
# A metric name in PromQL: not a function (followed by "("), a label (followed by "=", "!=", "=~") or a keyword.
_NAME = re.compile(r"\b((?:centralita|asterisk|process)_[a-z0-9_]+)\b(?!\s*(?:\(|=|!=|=~|!~))")


def exported_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name ``registry`` can produce, by each family's type (a labelled counter with no sample yet
    still counts: its family is there)."""
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def service_names(tmp_path: Path) -> set[str]:
    with CampaignStore(tmp_path / "dialer.db") as store:
        return exported_names(ServiceMetrics().registry) | exported_names(DialerMetrics(store).registry)


def expressions(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item)


def queried_names() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return {name for expr in expressions(dashboard) for name in _NAME.findall(expr)}


def test_the_dashboard_is_a_grafana_dashboard_with_a_query_in_every_panel() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] == "centralita-box"
    assert dashboard["title"]
    assert dashboard["schemaVersion"] >= 36
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert len(panels) >= 10
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert all(target["expr"].strip() for target in panel["targets"]), panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", "the data source is chosen on import"


def test_every_metric_the_dashboard_queries_is_exported(tmp_path: Path) -> None:
    queried = queried_names()
    known = service_names(tmp_path) | ASTERISK_METRICS
    assert not queried - known, f"the dashboard queries metrics nobody exports: {sorted(queried - known)}"


def test_the_dashboard_shows_the_main_metrics(tmp_path: Path) -> None:
    queried = queried_names()
    for name in (
        "centralita_calls_total",
        "centralita_active_calls",
        "centralita_reply_latency_seconds_bucket",
        "centralita_late_frames_total",
        "centralita_barge_ins_total",
        "centralita_tool_calls_total",
        "centralita_router_errors_total",
        "centralita_dialer_attempts_total",
        "centralita_tokens_total",
        "centralita_cost_total",
        "asterisk_channels_count",
    ):
        assert name in queried, f"no panel shows {name}"


def test_the_name_check_catches_a_misspelt_metric(tmp_path: Path) -> None:
    # The check above would pass on a dashboard whose names the pattern never finds: it must see a wrong one.
    found = set(_NAME.findall('sum by (kind) (rate(centralita_tokenz_total{kind="input_audio"}[5m]))'))
    assert found == {"centralita_tokenz_total"}
    assert "centralita_tokenz_total" not in service_names(tmp_path)


def test_the_asterisk_names_are_res_prometheus_s_own() -> None:
    # As files/host/test.sh finds it for the chan_sip scenario: named, or CI's ../shared/asterisk copy.
    source = os.environ.get("CENTRALITA_ASTERISK_SOURCE") or str(
        REPO.parent / "shared" / "asterisk" / "asterisk-20.20.1.tar.xz"
    )
    if not Path(source).is_file():
        pytest.skip(f"no Asterisk source tarball at {source} (set CENTRALITA_ASTERISK_SOURCE to check the names)")
    found: set[str] = set()
    with tarfile.open(source) as tar:
        for member in tar:
            if re.search(r"/res/(res_prometheus\.c|prometheus/[a-z_]+\.c)$", member.name):
                handle = tar.extractfile(member)
                assert handle is not None
                found.update(re.findall(r'"(asterisk_[a-z_]+)"', handle.read().decode()))
    assert found == ASTERISK_METRICS
