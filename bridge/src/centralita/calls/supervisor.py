"""The supervisor of openai-inbound-calls' workers (``WORKERS`` above 1; ``calls/workers.py``).

systemd starts one process, as with one worker; with several it is this supervisor, and the workers are its
children, in the unit's control group (``systemctl status openai-inbound-calls`` lists each one with its
``--worker`` number). It:

* starts every worker, each the same program with ``--worker <k>``;
* restarts a worker that dies at once, and then, if it keeps dying (each time less than ``stable_after``
  seconds after its start), after 1, 2, 4, ... up to 30 s; a worker that ran long enough is restarted at
  once again. A dead worker's callers are still in its Stasis app: the restarted worker's reconciliation
  sends them to the failover context (the notice, then the operator; docs/RELIABILITY.md), as a restarted
  service does, while the other workers' calls go on untouched;
* gives up when every worker has died ``give_up_after`` times in a row, each soon after its start, and none
  runs: the workers cannot start (a file they need, a port, a setting), which is the service failing. The
  supervisor then exits with 1, as the one process does when it cannot start, so that systemd shows the
  failure and ``Restart=on-failure`` tries again, instead of a unit that stays "active" with no worker;
* on SIGTERM (``systemctl stop``), sends SIGTERM to every worker, each of which hands its callers to the
  operator as the one process does, waits for them, and kills (SIGKILL) any still running after
  ``stop_timeout`` seconds; the unit's ``KillMode=mixed`` lets it do so (systemd signals the supervisor only);
* merges the workers' health snapshots into ``STATUS_FILE`` and serves the sum of their metrics at
  ``METRICS_PORT`` (``calls/merge.py``).

Each worker asks the kernel to kill it when the supervisor dies (``PR_SET_PDEATHSIG``): a supervisor killed
with SIGKILL takes its workers with it, as the one process dies whole, and systemd restarts the service.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from centralita.calls.merge import WorkersCollector, WorkerState, merge_snapshots
from centralita.calls.status import StatusReporter, read_status
from centralita.calls.workers import Worker, admission_file
from centralita.config.bridge import Settings
from centralita.metrics_endpoint import MetricsEndpoint
from centralita.stopping import stop_on_signals

__all__ = ["Supervisor", "die_with_parent", "supervise"]

log = logging.getLogger(__name__)

BACKOFF_FIRST: Final = 1.0  # seconds before the second quick restart in a row; doubled each time after
BACKOFF_MAX: Final = 30.0
STABLE_AFTER: Final = 30.0  # a worker that ran this long before it died is restarted at once
GIVE_UP_AFTER: Final = 5  # quick deaths in a row of every worker, none running: the service cannot start
STOP_TIMEOUT: Final = 30.0  # seconds the workers get to hand their callers over and stop (each takes ~10 s)
POLL_INTERVAL: Final = 0.2
_PR_SET_PDEATHSIG: Final = 1

Spawn = Callable[[Sequence[str]], "subprocess.Popen[bytes]"]


def _spawn(command: Sequence[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, close_fds=True)


def die_with_parent(parent: int) -> None:
    """In a worker: be killed (SIGKILL) when the supervisor ``parent`` dies; exit now if it already has."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        refused = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0
    except (OSError, AttributeError) as error:  # no prctl here: the unit's stop still ends every worker
        log.warning("cannot ask to die with the supervisor (%s)", error)
    else:
        if refused:
            log.warning("cannot ask to die with the supervisor (errno %d)", ctypes.get_errno())
    if os.getppid() != parent:  # it died before the request was made
        os._exit(1)


@dataclass(slots=True)
class _Child:
    worker: Worker
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    next_start: float = 0.0  # when a dead worker is started again
    quick_deaths: int = 0  # deaths in a row, each less than STABLE_AFTER after its start
    restarts: int = 0


class Supervisor:
    """Keeps one process per worker running. ``command(worker)`` is the worker's command line."""

    def __init__(
        self,
        workers: Sequence[Worker],
        command: Callable[[Worker], Sequence[str]],
        *,
        spawn: Spawn = _spawn,
        clock: Callable[[], float] = time.monotonic,
        backoff_first: float = BACKOFF_FIRST,
        backoff_max: float = BACKOFF_MAX,
        stable_after: float = STABLE_AFTER,
        give_up_after: int = GIVE_UP_AFTER,
    ) -> None:
        self._children = [_Child(worker) for worker in workers]
        self._command = command
        self._spawn = spawn
        self._clock = clock
        self._backoff_first = backoff_first
        self._backoff_max = backoff_max
        self._stable_after = stable_after
        self._give_up_after = give_up_after
        self._lock = threading.Lock()  # the state the status and metrics threads read
        self._stopping = False

    def states(self) -> list[WorkerState]:
        with self._lock:
            return [
                WorkerState(
                    child.worker.name,
                    child.process.pid if child.process is not None and child.process.poll() is None else None,
                    child.restarts,
                )
                for child in self._children
            ]

    @property
    def workers(self) -> list[Worker]:
        return [child.worker for child in self._children]

    def start(self) -> None:
        for child in self._children:
            self._start(child)

    def poll(self) -> None:
        """Notice the workers that died and start those whose time has come (call it often)."""
        now = self._clock()
        for child in self._children:
            process = child.process
            if process is not None:
                code = process.poll()
                if code is None:
                    continue
                self._died(child, code, now)
            if not self._stopping and child.process is None and now >= child.next_start:
                with self._lock:
                    child.restarts += 1
                self._start(child)

    @property
    def cannot_start(self) -> bool:
        """Every worker has died ``give_up_after`` times in a row, each soon after its start, and none runs."""
        return all(child.process is None and child.quick_deaths >= self._give_up_after for child in self._children)

    def run(self, stop: threading.Event, stop_timeout: float = STOP_TIMEOUT, every: float = POLL_INTERVAL) -> int:
        """Start the workers, keep them running until ``stop`` is set, then stop them: 0. Or 1 as soon as none of
        them can start (``cannot_start``)."""
        self.start()
        while not stop.wait(every):
            self.poll()
            if self.cannot_start:
                log.error(
                    "no worker can start: each died %d times in a row within %g s of its start (their errors are "
                    "above); the service exits so that systemd shows it failed and starts it again",
                    self._give_up_after,
                    self._stable_after,
                )
                self.stop(stop_timeout)
                return 1
        self.stop(stop_timeout)
        return 0

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM to every worker; SIGKILL to those still running after ``timeout`` seconds."""
        self._stopping = True
        running = [child for child in self._children if child.process is not None and child.process.poll() is None]
        for child in running:
            assert child.process is not None
            log.info("stopping worker %s (pid %d)", child.worker.name, child.process.pid)
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
        deadline = self._clock() + timeout
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(max(deadline - self._clock(), 0.0))
            except subprocess.TimeoutExpired:
                name, pid = child.worker.name, child.process.pid
                log.error("worker %s (pid %d) still running after %g s: killed", name, pid, timeout)
                child.process.kill()
                child.process.wait()
        log.info("workers stopped")

    def _start(self, child: _Child) -> None:
        command = list(self._command(child.worker))
        try:
            process = self._spawn(command)
        except OSError as error:
            log.error("cannot start worker %s (%s); trying again", child.worker.name, error)
            self._schedule(child, self._clock(), quick=True)
            return
        with self._lock:
            child.process = process
        child.started_at = self._clock()
        log.info("worker %s started (pid %d)", child.worker.name, process.pid)

    def _died(self, child: _Child, code: int, now: float) -> None:
        process = child.process
        assert process is not None
        with self._lock:
            child.process = None
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        delay = self._schedule(child, now, quick=now - child.started_at < self._stable_after)
        if self._stopping:
            return
        log.warning(
            "worker %s (pid %d) died (%s): its callers go to the failover context when it is back; restarting %s",
            child.worker.name,
            process.pid,
            how,
            "now" if delay == 0 else f"in {delay:g} s (it keeps dying: {child.quick_deaths} times in a row)",
        )

    def _schedule(self, child: _Child, now: float, *, quick: bool) -> float:
        child.quick_deaths = child.quick_deaths + 1 if quick else 0
        backoff = self._backoff_first * 2 ** (child.quick_deaths - 2)
        delay = 0.0 if child.quick_deaths <= 1 else min(self._backoff_max, backoff)
        child.next_start = now + delay
        return delay


class _SupervisorCollector(Collector):
    """The supervisor's own figures: workers running, and restarts."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor

    def collect(self) -> list[Metric]:
        states = self._supervisor.states()
        running = GaugeMetricFamily("centralita_workers_running", "Worker processes running now.")
        running.add_metric([], sum(1 for state in states if state.pid is not None))
        restarts = CounterMetricFamily(
            "centralita_worker_restarts", "Times a dead worker was started again, by worker.", labels=["worker"]
        )
        for state in states:
            restarts.add_metric([state.name], state.restarts)
        return [running, restarts]


def _merged_snapshot(supervisor: Supervisor) -> dict[str, Any]:
    states = supervisor.states()
    snapshots = []
    for state, worker in zip(states, supervisor.workers, strict=True):
        snapshot = read_status(worker.status_file)
        if snapshot is not None and snapshot.get("pid") != state.pid:
            snapshot = None  # a dead worker's last file
        snapshots.append((state, snapshot))
    return merge_snapshots(snapshots)


def _remove(path: Path) -> None:
    for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()


def supervise(settings: Settings, workers: Sequence[Worker], command: Callable[[Worker], Sequence[str]]) -> int:
    """The supervisor's main: run ``workers`` until SIGTERM or SIGINT."""
    stop = stop_on_signals(log, "stopping the workers")
    _remove(admission_file(settings))  # the counts of a previous run: its calls are gone
    for worker in workers:
        _remove(worker.status_file)
    supervisor = Supervisor(workers, command)
    registry = CollectorRegistry(auto_describe=False)
    ports = [worker.metrics_port for worker in workers if worker.metrics_port]
    registry.register(WorkersCollector(lambda: ports))
    registry.register(_SupervisorCollector(supervisor))
    metrics = MetricsEndpoint(registry, "METRICS_PORT")
    status = StatusReporter(settings.status_file, lambda: _merged_snapshot(supervisor))
    log.info("starting %d workers: %s", len(workers), ", ".join(worker.name for worker in workers))
    metrics.serve(settings.metrics_port)
    status.start()
    try:
        return supervisor.run(stop)
    finally:
        status.close()
        metrics.close()
