"""The workers' figures as one service's: their health snapshots merged into ``STATUS_FILE``, their Prometheus
metrics summed at ``METRICS_PORT``.

With several workers (``calls/workers.py``) each writes its own snapshot and serves its own metrics; the
supervisor (``calls/supervisor.py``) serves what an operator reads of the service as a whole, in the shape a
single process gives, so ``centralita doctor``, the web console and a Prometheus scraper read one service:

* ``merge_snapshots``: counts summed (calls, refusals, records, outcomes, watchdogs, ...), the calls in
  progress listed together (each with its worker's name), ``ari_connected`` only when every worker is, the
  budget from a worker that knows it (they read the same records), and ``workers``: each worker's name, pid,
  whether it runs, its calls, whether its ARI app is connected and how many times it was restarted;
* ``WorkersCollector``: every worker's samples with the same name and labels summed (the earliest of them for
  the ``_created`` and ``process_start_time_seconds`` timestamps). A worker restarted starts its counters from
  0 again, so a summed counter may go down: Prometheus' ``rate()`` and ``increase()`` read that as a reset.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from centralita.metrics_endpoint import METRICS_HOST

__all__ = ["WorkerState", "WorkersCollector", "merge_snapshots"]

# The calls in progress the merged snapshot lists (as one process lists, calls/service.py).
MAX_LISTED_CALLS: Final = 100
_SUMMED_DICTS: Final = ("refused", "outcomes", "watchdogs", "media_dropped", "reconciled")
_SUMMED: Final = ("active_calls", "ari_connections", "calls_started")
_EARLIEST: Final = ("process_start_time_seconds",)
FETCH_TIMEOUT: Final = 2.0


@dataclass(frozen=True, slots=True)
class WorkerState:
    """What the supervisor knows of one worker."""

    name: str
    pid: int | None  # None: not running now (dead, waiting for its restart)
    restarts: int


def _counts(values: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for counts in values:
        for key, count in counts.items():
            if isinstance(count, int | float):
                total[str(key)] = total.get(str(key), 0) + int(count)
    return total


def merge_snapshots(workers: Sequence[tuple[WorkerState, Mapping[str, Any] | None]]) -> dict[str, Any]:
    """One snapshot of the service from its workers' (None: a worker that has none, or one of a dead process)."""
    live = [snapshot for state, snapshot in workers if snapshot is not None and state.pid is not None]
    merged: dict[str, Any] = {"service": "openai-inbound-calls", "worker": "supervisor"}
    for key in _SUMMED:
        merged[key] = sum(int(snapshot.get(key) or 0) for snapshot in live)
    for key in _SUMMED_DICTS:
        merged[key] = _counts(snapshot.get(key) or {} for snapshot in live)
    merged["ari_connected"] = bool(live) and len(live) == len(workers) and all(s.get("ari_connected") for s in live)
    calls = [call for snapshot in live for call in snapshot.get("calls") or [] if isinstance(call, dict)]
    merged["calls"] = sorted(calls, key=lambda call: str(call.get("started_at", "")))[:MAX_LISTED_CALLS]
    records = [snapshot.get("records") or {} for snapshot in live]
    merged["records"] = {
        **{key: sum(int(part.get(key) or 0) for part in records) for key in ("written", "queued", "lost")},
        "failing": any(part.get("failing") for part in records),
        "last_error": next((part["last_error"] for part in records if part.get("last_error")), ""),
    }
    budgets = [snapshot.get("budget") or {} for snapshot in live]
    merged["budget"] = next((budget for budget in budgets if budget.get("known")), budgets[0] if budgets else {})
    merged["limits"] = next((snapshot["limits"] for snapshot in live if snapshot.get("limits")), {})
    merged["last_reconciled_at"] = max((str(s.get("last_reconciled_at") or "") for s in live), default="")
    merged["workers"] = [
        {
            "name": state.name,
            "pid": state.pid,
            "running": state.pid is not None,
            "restarts": state.restarts,
            "active_calls": int((snapshot or {}).get("active_calls") or 0) if state.pid is not None else 0,
            "ari_connected": bool(snapshot and state.pid is not None and snapshot.get("ari_connected")),
        }
        for state, snapshot in workers
    ]
    return merged


def fetch_metrics(port: int) -> str:
    """A worker's exposition text (``OSError`` when it does not answer)."""
    with urllib.request.urlopen(f"http://{METRICS_HOST}:{port}/metrics", timeout=FETCH_TIMEOUT) as response:
        return str(response.read().decode("utf-8"))


class WorkersCollector(Collector):
    """The sum of the workers' metrics, fetched from ``ports()`` at every scrape (a worker that does not answer
    is left out of that scrape)."""

    def __init__(self, ports: Callable[[], Sequence[int]], fetch: Callable[[int], str] = fetch_metrics) -> None:
        self._ports = ports
        self._fetch = fetch

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
        for port in self._ports():
            try:
                text = self._fetch(port)
            except (OSError, ValueError):
                continue
            for family in text_string_to_metric_families(text):
                if family.name not in families:
                    families[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
                    values[family.name] = {}
                samples = values[family.name]
                for sample in family.samples:
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    earliest = sample.name.endswith("_created") or sample.name in _EARLIEST
                    if key not in samples:
                        samples[key] = sample.value
                    elif earliest:
                        samples[key] = min(samples[key], sample.value)
                    else:
                        samples[key] += sample.value
        for name, family in families.items():
            for (sample_name, labels), value in values[name].items():
                family.add_sample(sample_name, dict(labels), value)
            yield family
