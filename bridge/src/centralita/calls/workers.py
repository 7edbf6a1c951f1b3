"""What each worker process of openai-inbound-calls is called, and what it owns (``WORKERS``).

With ``WORKERS=1`` (the default) the service is one process, as it always was: Stasis app ``ARI_APP``, metrics
at ``METRICS_PORT``, health snapshot at ``STATUS_FILE``. With more, the process systemd starts is a supervisor
(``calls/supervisor.py``) and each worker ``k`` (1 to N) is a child running the same service with:

* the Stasis app ``ARI_APP`` for worker 1 and ``ARI_APP-k`` for the others (``centralita``, ``centralita-2``, ...):
  the dialplan spreads the calls over them, least busy first (``extensions.conf``); worker 1 keeps the plain
  name, so a box with one worker and a box with several answer to the same ``Stasis(centralita,...)`` first;
* its name, the same as its app: in each of its log lines (``worker=centralita-2``) and in the web console's
  list of calls in progress;
* its own metrics port, ``WORKER_METRICS_PORT + k - 1`` (the supervisor serves the sum of them at
  ``METRICS_PORT``) and its own health snapshot beside ``STATUS_FILE`` (the supervisor merges them into
  ``STATUS_FILE``, which ``centralita doctor`` and the console read);
* a share of the admission limits: the per-box and per-caller counts live in one small SQLite file beside
  ``STATUS_FILE`` (``calls/shared_admission.py``) so that they hold across workers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from centralita.config.bridge import Settings

__all__ = ["Worker", "admission_file", "plan_workers", "worker_settings"]


@dataclass(frozen=True, slots=True)
class Worker:
    """Worker ``number`` (1 to N) of the service."""

    number: int
    app: str  # its Stasis app
    status_file: Path  # its own health snapshot
    metrics_port: int  # 0: no metrics

    @property
    def name(self) -> str:
        """What the log, the live list and the supervisor call it: its Stasis app."""
        return self.app


def worker_app(app: str, number: int) -> str:
    return app if number == 1 else f"{app}-{number}"


def plan_workers(settings: Settings) -> list[Worker]:
    """The workers ``settings`` asks for (``WORKERS``), in order; empty with one worker (no supervisor)."""
    if settings.workers <= 1:
        return []
    status = settings.status_file
    return [
        Worker(
            number=number,
            app=worker_app(settings.ari_app, number),
            status_file=status.with_name(f"{status.stem}.{worker_app(settings.ari_app, number)}{status.suffix}"),
            metrics_port=settings.worker_metrics_port + number - 1
            if settings.metrics_port and settings.worker_metrics_port
            else 0,
        )
        for number in range(1, settings.workers + 1)
    ]


def admission_file(settings: Settings) -> Path:
    """The workers' shared admission counts: beside the health snapshot, on /run's tmpfs."""
    status = settings.status_file
    return status.with_name(f"{status.stem}.admission.db")


def worker_settings(settings: Settings, number: int) -> tuple[Settings, Worker]:
    """The settings worker ``number`` runs with: its own app, metrics port and status file."""
    workers = plan_workers(settings)
    if not 1 <= number <= len(workers):
        raise ValueError(f"worker {number} does not exist: WORKERS is {settings.workers}")
    worker = workers[number - 1]
    own = dataclasses.replace(
        settings, ari_app=worker.app, metrics_port=worker.metrics_port, status_file=worker.status_file
    )
    return own, worker
