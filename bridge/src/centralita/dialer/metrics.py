"""The dialer's Prometheus metrics (``prometheus_client``), served on 127.0.0.1 at ``DIALER_METRICS_PORT``.

The figures are read from the campaign database at each scrape, not counted in this process: they are the same
whichever dialer placed the calls, survive a restart (a take-over included), and cannot drift from what
``centralita campaign status`` shows. The registry is this object's own, never the library's process-wide one.
Label values are bounded: results are the ``Outcome`` enum, states the ``CampaignState`` one; every value is
present (0 included), so a scraper sees each series from the first scrape.

Metrics (the ``_total`` suffix is added by the client library to counters)::

    centralita_dialer_attempts_total{result}          attempts ended, by result (busy, no-answer, answered-human,
                                                      promise-to-pay, opt-out, ...), every campaign together
    centralita_dialer_active_calls                    attempts placed and not ended yet (every dialer's)
    centralita_dialer_promises_to_pay_total           attempts that ended with a promise to pay
    centralita_dialer_optouts                         numbers on the do-not-call list
    centralita_dialer_campaigns{state}                campaigns by state (draft, running, paused, finished)
    centralita_dialer_database_up                     1 when the scrape could read the campaign database; 0: the
                                                      other dialer figures are missing from that scrape
    process_*                                         the dialer's CPU, memory, open files, start time
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from centralita.dialer.outcomes import Outcome
from centralita.dialer.store import CampaignStore, DialerCounts
from centralita.metrics_endpoint import MetricsEndpoint, SandboxedProcessCollector

__all__ = ["DialerMetrics"]

log = logging.getLogger(__name__)


def _families(counts: DialerCounts | None) -> list[Metric]:
    """The dialer's metric families, with ``counts``' samples (none when the database could not be read)."""
    up = GaugeMetricFamily(
        "centralita_dialer_database_up", "1 when this scrape could read the campaign database, else 0."
    )
    attempts = CounterMetricFamily(
        "centralita_dialer_attempts", "Attempts ended, by result, every campaign together.", labels=["result"]
    )
    active = GaugeMetricFamily("centralita_dialer_active_calls", "Attempts placed and not ended yet (every dialer's).")
    promises = CounterMetricFamily("centralita_dialer_promises_to_pay", "Attempts that ended with a promise to pay.")
    optouts = GaugeMetricFamily("centralita_dialer_optouts", "Numbers on the do-not-call list.")
    campaigns = GaugeMetricFamily("centralita_dialer_campaigns", "Campaigns by state.", labels=["state"])
    if counts is not None:
        for outcome, count in counts.attempts.items():
            attempts.add_metric([str(outcome)], count)
        active.add_metric([], counts.open_attempts)
        promises.add_metric([], counts.attempts.get(Outcome.PROMISE_TO_PAY, 0))
        optouts.add_metric([], counts.optouts)
        for state, count in counts.campaigns.items():
            campaigns.add_metric([str(state)], count)
    up.add_metric([], 1 if counts is not None else 0)
    return [up, attempts, active, promises, optouts, campaigns]


class _StoreCollector(Collector):
    """Reads the campaign store at each scrape."""

    def __init__(self, store: CampaignStore) -> None:
        self._store = store

    def describe(self) -> Iterable[Metric]:
        return _families(None)  # the names only: registering reads no database

    def collect(self) -> Iterable[Metric]:
        try:
            counts: DialerCounts | None = self._store.counts()
        except (sqlite3.Error, OSError) as error:  # locked past the busy wait, closed, a broken file
            log.warning("metrics: cannot read the campaign database %s: %s", self._store.path, error)
            counts = None
        return _families(counts)


class DialerMetrics(MetricsEndpoint):
    """The metrics of one dialer over ``store``; served with ``serve(port)``, stopped with ``close()``."""

    def __init__(self, store: CampaignStore) -> None:
        registry = CollectorRegistry(auto_describe=True)
        super().__init__(registry, "DIALER_METRICS_PORT")
        SandboxedProcessCollector(registry=registry)
        registry.register(_StoreCollector(store))
