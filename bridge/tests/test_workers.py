"""The workers of openai-inbound-calls (``WORKERS``): their names and what each owns, the supervisor's restarts,
backoff and stop, a worker dying with its supervisor, the merged health snapshot and metrics, and the admission
limits shared across workers. (The supervisor with real workers against the fake Asterisk: test_workers_service.)"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import pytest
from paths import PYTHONPATH
from polling import wait_for
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from centralita.calls.admission import AdmissionLimits, Refusal
from centralita.calls.merge import WorkersCollector, WorkerState, merge_snapshots
from centralita.calls.metrics import ServiceMetrics
from centralita.calls.shared_admission import SharedAdmission
from centralita.calls.supervisor import Supervisor
from centralita.calls.workers import Worker, admission_file, plan_workers, worker_settings
from centralita.config.bridge import Settings
from centralita.config.env import ConfigError
from centralita.storage.records import Direction, Outcome

T = TypeVar("T")
BASE = {
    "OPENAI_API_KEY": "sk-test",
    "ARI_PASSWORD": "secreto",
    "STATUS_FILE": "/run/centralita/openai-inbound-calls.json",
    "METRICS_PORT": "9464",
}


def settings(**values: str) -> Settings:
    return Settings.from_values({**BASE, **values})


# --- names and what each worker owns -------------------------------------------------------------------------


def test_one_worker_is_the_one_process_as_always() -> None:
    one = settings()
    assert one.workers == 1
    assert plan_workers(one) == []
    with pytest.raises(ValueError, match="worker 1 does not exist"):
        worker_settings(one, 1)


def test_each_worker_has_its_app_status_file_and_metrics_port() -> None:
    three = settings(WORKERS="3", WORKER_METRICS_PORT="9470")
    workers = plan_workers(three)
    assert [(w.number, w.app, w.name, w.metrics_port) for w in workers] == [
        (1, "centralita", "centralita", 9470),
        (2, "centralita-2", "centralita-2", 9471),
        (3, "centralita-3", "centralita-3", 9472),
    ]
    assert [str(w.status_file) for w in workers] == [
        "/run/centralita/openai-inbound-calls.centralita.json",
        "/run/centralita/openai-inbound-calls.centralita-2.json",
        "/run/centralita/openai-inbound-calls.centralita-3.json",
    ]
    own, worker = worker_settings(three, 2)
    assert (own.ari_app, own.metrics_port, own.status_file) == ("centralita-2", 9471, worker.status_file)
    assert own.db_path == three.db_path
    assert own.log_file == three.log_file
    assert admission_file(three) == Path("/run/centralita/openai-inbound-calls.admission.db")
    # Without metrics, no worker serves any.
    assert {w.metrics_port for w in plan_workers(settings(WORKERS="2", METRICS_PORT="0"))} == {0}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"WORKERS": "0"}, "WORKERS"),
        ({"WORKERS": "65"}, "WORKERS"),
        ({"WORKERS": "2"}, "WORKER_METRICS_PORT is not set, but WORKERS is 2 and METRICS_PORT 9464"),
        ({"WORKERS": "3", "WORKER_METRICS_PORT": "9463"}, "gives the 3 workers the ports 9463-9465"),
        ({"WORKERS": "2", "WORKER_METRICS_PORT": "65535"}, "65535 or below"),
    ],
)
def test_a_bad_worker_setting_is_refused_with_its_fix(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(**values)


# --- the supervisor ------------------------------------------------------------------------------------------


class FakeProcess:
    """A worker process the test kills and lets stop."""

    pids = iter(range(1000, 100000))

    def __init__(self, command: Sequence[str], *, obeys_sigterm: bool = True) -> None:
        self.command = list(command)
        self.pid = next(self.pids)
        self.returncode: int | None = None
        self.signals: list[int] = []
        self.obeys_sigterm = obeys_sigterm

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, signum: int) -> None:
        self.signals.append(signum)
        if signum == signal.SIGTERM and self.obeys_sigterm:
            self.returncode = 0

    def kill(self) -> None:
        self.signals.append(signal.SIGKILL)
        self.returncode = -signal.SIGKILL

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            raise subprocess.TimeoutExpired(self.command, timeout or 0)
        return self.returncode


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def two_workers() -> list[Worker]:
    return plan_workers(settings(WORKERS="2", WORKER_METRICS_PORT="9470"))


def supervised(**options: bool) -> tuple[Supervisor, list[FakeProcess], Clock]:
    started: list[FakeProcess] = []
    clock = Clock()

    def spawn(command: Sequence[str]) -> FakeProcess:
        process = FakeProcess(command, **options)
        started.append(process)
        return process

    supervisor = Supervisor(
        two_workers(),
        lambda worker: ["openai-inbound-calls", "--worker", str(worker.number)],
        spawn=spawn,  # type: ignore[arg-type]
        clock=clock,
        backoff_first=1.0,
        backoff_max=8.0,
        stable_after=30.0,
    )
    return supervisor, started, clock


def test_the_supervisor_starts_every_worker_with_its_number() -> None:
    supervisor, started, _clock = supervised()
    supervisor.start()
    assert [process.command for process in started] == [
        ["openai-inbound-calls", "--worker", "1"],
        ["openai-inbound-calls", "--worker", "2"],
    ]
    assert [(state.name, state.pid, state.restarts) for state in supervisor.states()] == [
        ("centralita", started[0].pid, 0),
        ("centralita-2", started[1].pid, 0),
    ]


def test_a_dead_worker_is_restarted_at_once_and_the_other_is_left_alone(caplog: pytest.LogCaptureFixture) -> None:
    supervisor, started, clock = supervised()
    supervisor.start()
    clock.now += 120  # it ran a while
    started[1].returncode = -signal.SIGKILL
    supervisor.poll()
    assert len(started) == 3
    assert started[2].command[-1] == "2"
    assert [state.pid for state in supervisor.states()] == [started[0].pid, started[2].pid]
    assert supervisor.states()[1].restarts == 1
    assert started[0].signals == []  # worker 1 and its calls untouched
    assert "worker centralita-2 (pid" in caplog.text
    assert "died (killed by SIGKILL)" in caplog.text
    assert "restarting now" in caplog.text


def test_a_worker_that_keeps_dying_is_restarted_with_a_growing_backoff_then_at_once_once_it_ran() -> None:
    supervisor, started, clock = supervised()
    supervisor.start()
    delays: list[float] = []
    for _ in range(6):  # each dies a second after it started
        clock.now += 1
        started[-1].returncode = 1
        supervisor.poll()
        waited = 0.0
        while started[-1].returncode is not None:  # not restarted yet
            clock.now += 0.5
            waited += 0.5
            supervisor.poll()
        delays.append(waited)
    # The first death: at once (the poll that saw it); then 1, 2, 4, 8 s, capped at backoff_max.
    assert delays == [0.0, 1.0, 2.0, 4.0, 8.0, 8.0]
    # One that ran past stable_after is restarted at once again.
    clock.now += 60
    started[-1].returncode = 1
    supervisor.poll()
    assert started[-1].returncode is None
    assert supervisor.states()[1].restarts == 7


def die_soon_after_start(supervisor: Supervisor, started: list[FakeProcess], clock: Clock, worker: int) -> None:
    """Worker ``worker`` (1 or 2) dies a second after its start; poll until it has been started again."""
    process = next(p for p in reversed(started) if p.command[-1] == str(worker))
    clock.now += 1
    process.returncode = 1
    supervisor.poll()
    while supervisor.states()[worker - 1].pid is None:
        clock.now += 0.5
        supervisor.poll()


class Ticks:
    """The supervisor's stop event, which fires only after ``limit`` waits; each wait moves the fake clock on
    half a second, so the backoffs pass without real time and without a second thread."""

    def __init__(self, clock: Clock, limit: int = 1000) -> None:
        self.clock, self.limit, self.waits = clock, limit, 0

    def wait(self, timeout: float | None = None) -> bool:
        self.waits += 1
        self.clock.now += 0.5
        return self.waits > self.limit


def test_the_supervisor_gives_up_when_no_worker_can_start(caplog: pytest.LogCaptureFixture) -> None:
    """Every worker dies soon after each start, 5 times in a row: the service cannot start, and the supervisor
    exits with 1 (systemd shows the failure and starts it again) rather than stay "active" with no worker."""
    supervisor, started, clock = supervised()

    def spawn_dying(command: Sequence[str]) -> FakeProcess:
        process = FakeProcess(command)
        process.returncode = 1  # a missing file: it exits at once
        started.append(process)
        return process

    supervisor._spawn = spawn_dying  # type: ignore[assignment]
    ticks = Ticks(clock)
    assert supervisor.run(ticks, stop_timeout=1) == 1  # type: ignore[arg-type]
    assert ticks.waits < ticks.limit  # it gave up by itself
    assert len(started) == 10  # 5 starts of each of the 2 workers
    assert "no worker can start: each died 5 times in a row within 30 s of its start" in caplog.text


def test_the_supervisor_runs_until_stopped_while_its_workers_live() -> None:
    supervisor, started, clock = supervised()
    assert supervisor.run(Ticks(clock, limit=200), stop_timeout=1) == 0  # type: ignore[arg-type]
    assert len(started) == 2
    assert [process.signals for process in started] == [[signal.SIGTERM], [signal.SIGTERM]]


def test_the_supervisor_does_not_give_up_while_one_worker_runs() -> None:
    supervisor, started, clock = supervised()
    supervisor.start()
    for _ in range(8):
        die_soon_after_start(supervisor, started, clock, 2)
    assert not supervisor.cannot_start
    assert supervisor.states()[0].pid == started[0].pid  # worker 1 was never touched


def test_a_worker_that_ran_long_enough_starts_its_count_again() -> None:
    supervisor, started, clock = supervised()
    supervisor.start()
    for _ in range(4):
        die_soon_after_start(supervisor, started, clock, 1)
        die_soon_after_start(supervisor, started, clock, 2)
    clock.now += 60  # both ran a minute, then die again
    for process in started[-2:]:
        process.returncode = 1
    supervisor.poll()
    assert not supervisor.cannot_start
    assert all(state.pid is not None for state in supervisor.states())


def test_stop_sends_sigterm_to_every_worker_and_restarts_none() -> None:
    supervisor, started, _clock = supervised()
    supervisor.start()
    supervisor.stop(timeout=1)
    assert [process.signals for process in started] == [[signal.SIGTERM], [signal.SIGTERM]]
    supervisor.poll()
    assert len(started) == 2  # nothing restarted while stopping
    assert [state.pid for state in supervisor.states()] == [None, None]


def test_a_worker_that_ignores_sigterm_is_killed_at_the_timeout() -> None:
    supervisor, started, _clock = supervised(obeys_sigterm=False)
    supervisor.start()
    supervisor.stop(timeout=5)
    assert [process.signals for process in started] == [[signal.SIGTERM, signal.SIGKILL]] * 2


def test_the_supervisor_keeps_real_workers_running_and_stops_them(tmp_path: Path) -> None:
    """Real processes: a worker killed with SIGKILL is replaced by a new process; SIGTERM on stop ends both."""
    script = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); time.sleep(120)"
    supervisor = Supervisor(two_workers(), lambda worker: [sys.executable, "-c", script])
    stop = threading.Event()
    runner = threading.Thread(target=supervisor.run, args=(stop,), kwargs={"stop_timeout": 30, "every": 0.05})
    runner.start()
    try:

        def running(not_pid: int | None = None) -> list[WorkerState] | None:
            states = supervisor.states()
            return states if all(s.pid for s in states) and states[1].pid != not_pid else None

        first = wait_for(running, "both running", timeout=60.0)
        os.kill(first[1].pid or 0, signal.SIGKILL)
        again = wait_for(lambda: running(first[1].pid), "worker 2 back", timeout=60.0)
        assert again[0].pid == first[0].pid  # worker 1 never stopped
        assert again[1].restarts == 1
    finally:
        stop.set()
        runner.join(60)
    assert not runner.is_alive()
    for state in again:
        with pytest.raises(ProcessLookupError):
            os.kill(state.pid or 0, 0)


def test_the_supervisor_of_real_workers_that_cannot_start_exits_with_1() -> None:
    """Real processes that exit at once (what a worker does when a file it needs is missing): run() returns 1."""
    supervisor = Supervisor(
        two_workers(),
        lambda worker: [sys.executable, "-c", "raise SystemExit(3)"],
        backoff_first=0.01,
        backoff_max=0.05,
    )
    outcome: list[int] = []
    runner = threading.Thread(target=lambda: outcome.append(supervisor.run(threading.Event(), every=0.01)))
    runner.start()
    runner.join(120)
    assert not runner.is_alive(), "the supervisor kept restarting workers that cannot start"
    assert outcome == [1]
    assert [state.restarts for state in supervisor.states()] == [4, 4]


def test_a_worker_dies_with_its_supervisor(tmp_path: Path) -> None:
    """die_with_parent: a supervisor killed with SIGKILL takes its workers with it (as the one process dies whole)."""
    pid_file = tmp_path / "worker.pid"
    worker = (
        "import os, sys, time; from centralita.calls.supervisor import die_with_parent; "
        f"die_with_parent(os.getppid()); open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    )
    parent = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {worker!r}]); time.sleep(120)"
    process = subprocess.Popen([sys.executable, "-c", parent], env={**os.environ, "PYTHONPATH": PYTHONPATH})
    try:
        worker_pid = int(
            wait_for(lambda: pid_file.read_text() if pid_file.exists() else None, "the worker's pid", timeout=60.0)
        )
        os.kill(worker_pid, 0)  # alive
        process.kill()
        process.wait(30)
        wait_for(lambda: not alive(worker_pid), "the worker to die with its supervisor", timeout=60.0)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (dead, not yet reaped by init) is dead too.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


# --- the merged snapshot and metrics -------------------------------------------------------------------------


def snapshot(worker: str, pid: int, calls: int, **extra: object) -> dict[str, object]:
    return {
        "pid": pid,
        "worker": worker,
        "service": "openai-inbound-calls",
        "active_calls": calls,
        "ari_connected": True,
        "ari_connections": 1,
        "calls_started": calls + 3,
        "calls": [
            {"call_id": f"{worker}.{index}", "worker": worker, "started_at": f"2026-12-04T10:0{index}:{pid % 10}"}
            for index in range(calls)
        ],
        "limits": {"max_calls": 20, "max_per_caller": 2, "max_per_caller_per_minute": 6},
        "refused": {"box_full": 1},
        "records": {"written": 10, "queued": 1, "lost": 0, "failing": False, "last_error": ""},
        "budget": {"limited": True, "known": True, "day_spent": "1.50"},
        "outcomes": {"hung_up_by_caller": 3},
        "watchdogs": {},
        "media_dropped": {"rtp_foreign": 2},
        "reconciled": {"orphan_callers": 1},
        "last_reconciled_at": f"2026-12-04T10:00:0{pid % 10}+00:00",
        **extra,
    }


def test_the_merged_snapshot_is_the_service_as_a_whole() -> None:
    merged = merge_snapshots(
        [
            (WorkerState("centralita", 11, 0), snapshot("centralita", 11, 2)),
            (WorkerState("centralita-2", 22, 3), snapshot("centralita-2", 22, 1, records={"written": 5, "lost": 2})),
        ]
    )
    assert merged["active_calls"] == 3
    assert merged["calls_started"] == (2 + 3) + (1 + 3)
    assert [call["worker"] for call in merged["calls"]] == ["centralita", "centralita-2", "centralita"]  # by start
    assert merged["refused"] == {"box_full": 2}
    assert merged["outcomes"] == {"hung_up_by_caller": 6}
    assert merged["media_dropped"] == {"rtp_foreign": 4}
    assert merged["records"] == {"written": 15, "queued": 1, "lost": 2, "failing": False, "last_error": ""}
    assert merged["limits"]["max_calls"] == 20
    assert merged["budget"]["day_spent"] == "1.50"
    assert merged["ari_connected"] is True
    assert merged["last_reconciled_at"] == "2026-12-04T10:00:02+00:00"
    assert merged["workers"] == [
        {"name": "centralita", "pid": 11, "running": True, "restarts": 0, "active_calls": 2, "ari_connected": True},
        {"name": "centralita-2", "pid": 22, "running": True, "restarts": 3, "active_calls": 1, "ari_connected": True},
    ]


def test_a_dead_worker_counts_nothing_and_the_service_is_not_all_connected() -> None:
    merged = merge_snapshots(
        [
            (WorkerState("centralita", 11, 0), snapshot("centralita", 11, 2)),
            (WorkerState("centralita-2", None, 1), None),
        ]
    )
    assert merged["active_calls"] == 2
    assert merged["ari_connected"] is False
    assert merged["workers"][1] == {
        "name": "centralita-2",
        "pid": None,
        "running": False,
        "restarts": 1,
        "active_calls": 0,
        "ari_connected": False,
    }


def exposition(calls: int, active: int, connect_seconds: float) -> str:
    metrics = ServiceMetrics()
    for _ in range(calls):
        metrics.call_ended(Direction.INBOUND, Outcome.HUNG_UP_BY_CALLER)
    metrics.track_active_calls(lambda: active)
    metrics.realtime_connect_seconds.observe(connect_seconds)
    return generate_latest(metrics.registry).decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_supervisor_serves_the_sum_of_the_workers_metrics() -> None:
    texts = {9470: exposition(3, 2, 0.2), 9471: exposition(1, 1, 4.0), 9472: ""}

    def fetch(port: int) -> str:
        if port == 9473:
            raise OSError("connection refused")  # a worker restarting: left out of this scrape
        return texts[port]

    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkersCollector(lambda: [9470, 9471, 9472, 9473], fetch))
    merged = samples(generate_latest(registry).decode())
    calls = ("centralita_calls_total", (("direction", "inbound"), ("outcome", "hung_up_by_caller")))
    assert merged[calls] == 4
    assert merged[("centralita_active_calls", ())] == 3
    assert merged[("centralita_realtime_connect_seconds_count", ())] == 2
    assert merged[("centralita_realtime_connect_seconds_bucket", (("le", "0.25"),))] == 1
    assert merged[("centralita_realtime_connect_seconds_bucket", (("le", "5.0"),))] == 2
    first, second = samples(texts[9470]), samples(texts[9471])
    created = ("centralita_calls_created", calls[1])
    assert merged[created] == min(first[created], second[created])  # a timestamp: the earliest, never a sum


# --- admission across workers --------------------------------------------------------------------------------


def shared(tmp_path: Path, worker: str, clock: Clock, **limits: int) -> SharedAdmission:
    return SharedAdmission(tmp_path / "admission.db", worker, AdmissionLimits(**limits), clock=clock)


def test_a_callers_limits_hold_across_workers(tmp_path: Path) -> None:
    clock = Clock()
    one = shared(tmp_path, "centralita", clock, max_per_caller=2, max_per_caller_per_minute=3)
    two = shared(tmp_path, "centralita-2", clock, max_per_caller=2, max_per_caller_per_minute=3)
    try:
        assert one.admit("a", "5215550001111") is None
        assert two.admit("b", "5215550001111") is None  # the same number on the other worker
        assert two.admit("c", "5215550001111") is Refusal.CALLER_BUSY  # 2 up, one on each worker
        one.release("a")
        assert one.admit("d", "5215550001111") is Refusal.CALLER_RATE  # the 4th start within a minute
        clock.now += 61
        assert one.admit("e", "5215550001111") is None
        assert (one.refused, two.refused) == ({Refusal.CALLER_RATE: 1}, {Refusal.CALLER_BUSY: 1})
        assert (one.active, two.active) == (1, 1)
    finally:
        one.close()
        two.close()


def test_the_box_limit_holds_across_workers_and_a_restarted_worker_forgets_its_dead_calls(tmp_path: Path) -> None:
    clock = Clock()
    one = shared(tmp_path, "centralita", clock, max_calls=2)
    two = shared(tmp_path, "centralita-2", clock, max_calls=2)
    try:
        assert one.admit("a", "1") is None
        assert two.admit("b", "2", outbound=True) is None
        assert one.admit("c", "3") is Refusal.BOX_FULL
        two.close()  # worker 2 dies with its call; its restart forgets it
        two = shared(tmp_path, "centralita-2", clock, max_calls=2)
        assert two.admit("c", "3") is None
    finally:
        one.close()
        two.close()


def test_an_unusable_shared_file_leaves_each_worker_its_own_limits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "admission.db").write_bytes(b"not a database" * 100)
    clock = Clock()
    one = shared(tmp_path, "centralita", clock, max_per_caller=1)
    try:
        assert one.admit("a", "5215550001111") is None
        assert one.admit("b", "5215550001111") is Refusal.CALLER_BUSY  # its own count still holds
        assert caplog.text.count("the shared counts in") == 1  # said once, not at every call
    finally:
        one.close()
    with pytest.raises(sqlite3.DatabaseError):
        sqlite3.connect(tmp_path / "admission.db").execute("SELECT * FROM calls").fetchall()
