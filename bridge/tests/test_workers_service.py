"""openai-inbound-calls with two workers, as processes, against the fake Asterisk and the fake Realtime server: a
call on each worker, one worker killed (SIGKILL), only its caller sent to the failover context when it is back, the
other call untouched; the merged health snapshot and metrics; a clean stop of both (``calls/supervisor.py``)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import polling
import pytest
from paths import PYTHONPATH
from prometheus_client.parser import text_string_to_metric_families

from centralita.calls.call import FAILOVER_REASON_VARIABLE
from centralita.calls.status import read_status
from centralita.storage.records import CallRecords, Outcome
from centralita_testing.fake_asterisk import FakeAsterisk, RtpLeg
from centralita_testing.fake_realtime import AudioTurn, FakeRealtimeServer
from centralita_testing.fake_realtime import default_audio_dir as realtime_audio

TIMEOUT = 60.0  # generous: two Python processes start on a shared 2-core machine
GREETING = (realtime_audio() / "asistente_saludo.ulaw").read_bytes()
DID = "8005550100"
FAILOVER = "centralita-unavailable"
OPERATOR = "centralita-operator"
T = TypeVar("T")


def wait_for(read: Callable[[], T | None], what: str) -> T:
    return polling.wait_for(read, what, timeout=TIMEOUT, interval=0.05)


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive ports free on the loopback now."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = probe.getsockname()[1]
        if first + count > 65535:
            continue
        sockets = []
        try:
            for port in range(first, first + count):
                held = socket.socket()
                sockets.append(held)
                held.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for held in sockets:
                held.close()
        return first
    raise AssertionError("no free ports")


@pytest.fixture
def asterisk() -> Iterator[FakeAsterisk]:
    with FakeAsterisk() as fake:
        yield fake


@pytest.fixture
def realtime() -> Iterator[FakeRealtimeServer]:
    # A long greeting at the real pace: a call talks for the whole test.
    with FakeRealtimeServer(script=[AudioTurn(GREETING * 20, "Hola.")], pace=1.0) as server:
        yield server


class Service:
    """The supervisor started as systemd starts it, and what the test reads of it."""

    def __init__(self, tmp_path: Path, asterisk: FakeAsterisk, realtime: FakeRealtimeServer) -> None:
        self.metrics_port = free_ports(1)
        worker_ports = free_ports(2)
        self.status = tmp_path / "openai-inbound-calls.json"
        self.log = tmp_path / "inbound_openai.log"
        self.db = tmp_path / "centralita.db"
        env = tmp_path / ".env"
        env.write_text(
            f"OPENAI_API_KEY={realtime.api_key}\nOPENAI_BASE_URL={realtime.base_url}\n"
            f"ARI_URL={asterisk.url}\nARI_USER={asterisk.user}\nARI_PASSWORD={asterisk.password}\n"
            "ARI_APP=centralita\nWS_PING_INTERVAL=5\nWS_PING_TIMEOUT=3\n"
            f"LOG_FILE={self.log}\nDB_PATH={self.db}\nSTATUS_FILE={self.status}\n"
            f"METRICS_PORT={self.metrics_port}\nWORKERS=2\nWORKER_METRICS_PORT={worker_ports}\n"
            "MAX_CALLS_PER_CALLER=1\n"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "centralita.calls.service", "--env-file", str(env)],
            env={**os.environ, "PYTHONPATH": PYTHONPATH},
            stdin=subprocess.DEVNULL,
        )

    def snapshot(self) -> dict[str, Any] | None:
        return read_status(self.status)

    def workers(self) -> list[dict[str, Any]]:
        return list((self.snapshot() or {}).get("workers") or [])

    def with_calls(self, count: int) -> dict[str, Any] | None:
        """The merged snapshot once it counts ``count`` calls up."""
        snapshot = self.snapshot()
        return snapshot if snapshot is not None and snapshot.get("active_calls") == count else None

    def connected(self) -> list[dict[str, Any]] | None:
        """Each worker, once every one is running and connected to ARI."""
        workers = self.workers()
        return workers if workers and all(worker["ari_connected"] for worker in workers) else None

    def restarted(self, number: int, old_pid: int) -> list[dict[str, Any]] | None:
        """Each worker, once worker ``number`` runs again in a process other than ``old_pid``."""
        workers = self.workers()
        return workers if workers and workers[number - 1]["pid"] not in (None, old_pid) else None

    def metrics(self) -> dict[str, float]:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        return {
            sample.name: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if not sample.labels
        }

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


@pytest.fixture
def service(tmp_path: Path, asterisk: FakeAsterisk, realtime: FakeRealtimeServer) -> Iterator[Service]:
    running = Service(tmp_path, asterisk, realtime)
    try:
        yield running
    finally:
        running.stop()


def talking(asterisk: FakeAsterisk, app: str, caller: str) -> tuple[str, RtpLeg]:
    """A caller dialled into ``app`` and hearing the assistant."""
    channel_id = asterisk.incoming_call(app, ("inbound", DID), caller=caller)
    leg = asterisk.leg_of(channel_id, TIMEOUT)
    leg.wait_heard(lambda heard: len(heard) >= 10, TIMEOUT)
    return channel_id, leg


def record(database: Path, call_id: str) -> dict[str, Any] | None:
    with CallRecords(database) as records:
        return records.get_call(call_id)


def ended(database: Path, call_id: str) -> dict[str, Any] | None:
    found = record(database, call_id)
    return found if found is not None and found["ended_at"] else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_killed_worker_loses_only_its_calls_and_is_back_for_new_ones(
    service: Service, asterisk: FakeAsterisk
) -> None:
    wait_for(lambda: {"centralita", "centralita-2"} <= set(asterisk.connected_apps()), "both workers' apps")
    workers = wait_for(service.connected, "the merged snapshot of two connected workers")
    assert [(w["name"], w["running"], w["restarts"]) for w in workers] == [
        ("centralita", True, 0),
        ("centralita-2", True, 0),
    ]
    supervisor = service.process.pid
    assert supervisor not in {w["pid"] for w in workers}

    staying, staying_leg = talking(asterisk, "centralita", "5215550001111")
    killed, _killed_leg = talking(asterisk, "centralita-2", "5215550002222")
    snapshot = wait_for(lambda: service.with_calls(2), "2 calls up")
    assert {(call["call_id"], call["worker"]) for call in snapshot["calls"]} == {
        (staying, "centralita"),
        (killed, "centralita-2"),
    }
    assert wait_for(lambda: service.metrics().get("centralita_active_calls") == 2, "the summed metrics")
    # The per-caller limit (1 here) holds across workers: the staying caller's second call, on worker 2, is refused.
    again = asterisk.incoming_call("centralita-2", ("inbound", DID), caller="5215550001111")
    wait_for(lambda: asterisk.channels[again].continued, "the second call of one number refused")
    assert asterisk.channels[again].variables[FAILOVER_REASON_VARIABLE] == "caller_busy"

    os.kill(workers[1]["pid"], signal.SIGKILL)
    wait_for(lambda: asterisk.channels[killed].continued, "the killed worker's caller sent on")
    assert asterisk.channels[killed].continued == [(FAILOVER, "s", 1)]
    assert asterisk.channels[killed].variables[FAILOVER_REASON_VARIABLE] == "service_restarted"
    back = wait_for(lambda: service.restarted(2, workers[1]["pid"]), "worker 2 restarted")
    assert back[1]["restarts"] == 1
    assert back[0]["pid"] == workers[0]["pid"]  # worker 1 never stopped
    interrupted = wait_for(lambda: ended(service.db, killed), "its record closed")
    assert interrupted["outcome"] == Outcome.INTERRUPTED

    # The other worker's call is untouched: never sent anywhere, its record open, its caller still hearing audio.
    assert not asterisk.channels[staying].continued
    assert (record(service.db, staying) or {}).get("ended_at") is None
    heard = len(staying_leg.heard)
    staying_leg.wait_heard(lambda frames: len(frames) >= heard + 25, TIMEOUT)

    # The restarted worker takes new calls.
    wait_for(lambda: "centralita-2" in asterisk.connected_apps(), "worker 2's app connected again")
    fresh, _fresh_leg = talking(asterisk, "centralita-2", "5215550003333")
    listed = wait_for(lambda: service.with_calls(2), "2 calls up again")["calls"]
    assert {(call["call_id"], call["worker"]) for call in listed} == {(staying, "centralita"), (fresh, "centralita-2")}

    pids = [w["pid"] for w in service.workers()]
    assert service.stop() == 0
    # A clean stop: each worker hands its caller to the operator, and no process is left.
    for channel_id in (staying, fresh):
        assert asterisk.channels[channel_id].continued == [(OPERATOR, "s", 1)], channel_id
    assert not [pid for pid in pids if alive(pid)]
    log = service.log.read_text()
    assert re.search(
        r"WARNING worker=supervisor call=- worker centralita-2 \(pid \d+\) died \(killed by SIGKILL\)", log
    )
    assert f"worker=centralita-2 call={killed} recovered call: found in Stasis(centralita-2,inbound," in log
    assert f"worker=centralita call={staying} " in log
    assert "secreto" not in log
