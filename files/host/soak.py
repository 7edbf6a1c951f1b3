#!/usr/bin/env python3
"""Soak run of the lab box (``make soak``; not part of ``make test``): calls for minutes, faults at random.

SIPp on this machine plays the provider and keeps ``--calls`` customer calls up against the lab box (the
``centralita-lab`` container that ``make demo`` provisions, host networking, Asterisk on 127.0.0.1:5060), each
caller with a number of its own, for ``--minutes``. Meanwhile one fault at a time is injected in the box at
random moments (``--fault-every`` seconds apart on average), every kind once in each round of four:

* ``realtime-drop``: the Realtime server restarts, every session in progress loses its WebSocket;
* ``router-down``: the RouterOS API server stops for ``--router-down`` seconds;
* ``asterisk-restart``: ``systemctl restart asterisk`` with calls up;
* ``service-kill``: ``systemctl kill --signal=SIGKILL openai-inbound-calls`` with calls up.

Then SIPp stops placing calls, the calls in progress end, and the run checks what the box kept:

* stuck (must be 0): channels or Centralita bridges left in Asterisk, and calls recorded as started that
  never ended, once the box had ``--drain`` seconds to settle;
* leaked (must be 0): threads and file descriptors the service holds at rest after the run, against the
  same service freshly restarted and warmed up by one call (the reference for "at rest": a service killed
  during the run is a new process, so its start-up figures cannot be the reference, and what the service
  starts once with its first call and keeps for all the next, such as the outgoing audio's pacer thread, is
  not a leak);
* the service's memory (RSS) at the start and at the end, and how many times systemd restarted it.

It prints a line per fault and a summary, then one JSON line; the exit code is 1 when anything is stuck or
leaked, 2 when the lab box is not there or not ready. Failed SIPp calls are expected (a call up when Asterisk
restarts is dropped without a BYE) and are reported, not failed on.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIPP_DIR = HERE.parent / "sipp"
SPEECH = HERE.parent / "audio" / "cliente_sin_internet.wav"
SERVICE = "openai-inbound-calls"
DB = "/var/lib/centralita/centralita.db"
BOX_PYTHON = "/usr/local/asterisk/venv/bin/python"
FAULTS = ("realtime-drop", "router-down", "asterisk-restart", "service-kill")
# The recorded outcomes of a call handed to the operator because something failed (records.Outcome).
FAILED_OVER = {"realtime_failed", "service_stopped", "refused", "no_caller_audio", "no_reply", "interrupted"}


@dataclass
class Box:
    """The lab box, reached with ``podman exec`` as an operator would."""

    name: str

    def run(self, command: str, *, check: bool = True, timeout: float = 120, privileged: bool = False) -> str:
        """``command`` in the box; ``privileged`` for reading another user's /proc entries (see service_process)."""
        result = subprocess.run(
            ["podman", "exec", *(["--privileged"] if privileged else []), self.name, "sh", "-c", command],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"in {self.name}: {command!r} exited {result.returncode}: {result.stderr.strip()}")
        return result.stdout

    def sql(self, query: str) -> list[list[object]]:
        script = (
            "import json,sqlite3,sys; c=sqlite3.connect('file:" + DB + "?mode=ro', uri=True, timeout=30); "
            "print(json.dumps([list(r) for r in c.execute(sys.argv[1])]))"
        )
        return json.loads(self.run(f"{BOX_PYTHON} -c {_quote(script)} {_quote(query)}"))

    def running(self) -> bool:
        result = subprocess.run(
            ["podman", "container", "inspect", "-f", "{{.State.Running}}", self.name],
            capture_output=True,
            text=True,
            check=False,
        )
        return result.stdout.strip() == "true"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


@dataclass
class Process:
    """What the service holds, read from /proc in the box: its main process and, with workers (bridge_workers > 1),
    every worker, summed."""

    pid: int  # the main process (the supervisor with workers): a new one means systemd restarted the service
    threads: int
    fds: int
    sockets: int
    rss_kib: int
    processes: int = 1


def _one_process(box: Box, pid: int) -> Process | None:
    status = box.run(f"cat /proc/{pid}/status", check=False)
    # The service runs as its own user and the container's root has no CAP_SYS_PTRACE: without --privileged
    # the descriptors are listed but their links cannot be read, and every one of them would be missed.
    links = box.run(f"ls -l /proc/{pid}/fd 2>/dev/null", check=False, privileged=True).splitlines()
    threads = re.search(r"^Threads:\s+(\d+)", status, re.M)
    rss = re.search(r"^VmRSS:\s+(\d+)", status, re.M)
    fds = [line for line in links if "->" in line]
    if threads is None or rss is None or not fds:  # a live process has at least its standard streams
        return None
    sockets = sum(1 for line in fds if "socket:" in line)
    return Process(pid, int(threads[1]), len(fds), sockets, int(rss[1]))


def service_process(box: Box) -> Process | None:
    """The service's figures: its main process and its workers (the main process's children), summed."""
    pid = int(box.run(f"systemctl show -p MainPID --value {SERVICE}").strip() or 0)
    if pid == 0:
        return None
    main = _one_process(box, pid)
    if main is None:
        return None
    total = main
    for child in box.run(f"ps -o pid= --ppid {pid}", check=False).split():
        worker = _one_process(box, int(child))
        if worker is None:  # a worker that died between the two readings: the next reading will count it again
            continue
        total = Process(
            pid,
            total.threads + worker.threads,
            total.fds + worker.fds,
            total.sockets + worker.sockets,
            total.rss_kib + worker.rss_kib,
            total.processes + 1,
        )
    return total


def ready(box: Box) -> bool:
    apps = box.run("asterisk -rx 'ari show apps'", check=False).split()
    return "centralita" in apps and service_process(box) is not None


def channel_count(output: str) -> int:
    """The channels up in ``core show channels count``'s output, -1 when it says nothing readable."""
    found = re.search(r"^\s*(\d+) active channels?\b", output, re.M)
    return int(found[1]) if found else -1


def left_in_asterisk(box: Box) -> tuple[int, int]:
    """Channels up (-1: unreadable, Asterisk down), and Centralita's bridges, in the box's Asterisk."""
    channels = box.run("asterisk -rx 'core show channels count'", check=False)
    bridges = box.run("asterisk -rx 'bridge show all'", check=False)
    return channel_count(channels), bridges.count("centralita-")


def wait_for(condition: Callable[[], bool], timeout_s: float, interval_s: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_s)
    return condition()


def at_rest(box: Box, timeout_s: float) -> Process | None:
    """The service's figures once two readings a few seconds apart agree (threads of ended calls are gone)."""
    previous: Process | None = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        current = service_process(box)
        if (
            current is not None
            and previous is not None
            and (current.pid, current.processes, current.threads, current.fds)
            == (previous.pid, previous.processes, previous.threads, previous.fds)
        ):
            return current
        previous = current
        time.sleep(3)
    return previous


@dataclass
class FaultLog:
    injected: list[tuple[float, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def inject(box: Box, fault: str, router_down_s: float) -> None:
    if fault == "realtime-drop":
        box.run("systemctl restart centralita-fake-realtime")
    elif fault == "router-down":
        box.run("systemctl stop centralita-fake-routeros")
        time.sleep(router_down_s)  # the outage itself
        box.run("systemctl start centralita-fake-routeros")
    elif fault == "asterisk-restart":
        box.run("systemctl restart asterisk", timeout=300)
    elif fault == "service-kill":
        box.run(f"systemctl kill --signal=SIGKILL {SERVICE}")
    else:  # pragma: no cover - the choices come from FAULTS
        raise ValueError(fault)


def parse_faults(text: str) -> tuple[str, ...]:
    """The fault kinds named in ``--faults`` (comma-separated), in FAULTS' order; ValueError naming the problem."""
    named = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in named if name not in FAULTS]
    if unknown:
        raise ValueError(f"--faults: unknown fault {', '.join(unknown)}; the kinds are {','.join(FAULTS)}")
    if not named:
        raise ValueError(f"--faults names no fault; give one or more of {','.join(FAULTS)}")
    return tuple(name for name in FAULTS if name in named)


def fault_schedule(rng: random.Random, kinds: tuple[str, ...] = FAULTS) -> Iterator[str]:
    """The faults in the order they are injected: every kind once in each round, in a random order.

    A plain random choice can leave a kind out of a short run; the rounds make a run of as many faults as kinds
    exercise every kind, and the seed still decides the order.
    """
    while True:
        round_ = list(kinds)
        rng.shuffle(round_)
        yield from round_


def fault_loop(
    box: Box,
    rng: random.Random,
    kinds: tuple[str, ...],
    every_s: float,
    router_down_s: float,
    stop: threading.Event,
    log: FaultLog,
) -> None:
    started = time.monotonic()
    schedule = fault_schedule(rng, kinds)
    while not stop.wait(rng.expovariate(1 / every_s)):
        fault = next(schedule)
        moment = time.monotonic() - started
        print(f"  {moment:7.1f} s  fault: {fault}", flush=True)
        try:
            inject(box, fault, router_down_s)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            log.errors.append(f"{fault}: {error}")
            print(f"  {moment:7.1f} s  the fault could not be injected: {error}", flush=True)
        log.injected.append((moment, fault))
        # Let the box settle before the next fault: each is meant to be recovered from, not piled up.
        wait_for(lambda: ready(box), 120)


def sample_memory(box: Box, every_s: float, stop: threading.Event, samples: list[tuple[float, int, int]]) -> None:
    """The service's (seconds into the run, pid, RSS in KiB) every ``every_s`` until ``stop``: one reading at each
    end cannot tell memory that levels off from memory that keeps growing."""
    started = time.monotonic()
    while not stop.wait(every_s):
        try:
            process = service_process(box)
        except (RuntimeError, subprocess.TimeoutExpired, ValueError):
            continue  # the box is busy with a fault; the next reading will do
        if process is not None:
            samples.append((round(time.monotonic() - started, 1), process.pid, process.rss_kib))


def sipp_figures(output: str) -> dict[str, int]:
    """SIPp's final counts (the cumulative column of its last statistics screen)."""
    figures = {}
    for name, key in (
        ("Outgoing calls created", "placed"),
        ("Successful call", "completed"),
        ("Failed call", "failed"),
    ):
        for line in output.splitlines():
            if line.strip().startswith(name):
                figures[key] = int(line.split("|")[-1].strip())
    return figures


def write_scenario(work: Path, name: str, talk_s: float) -> None:
    """The soak call's scenario in ``work`` as ``name``, the caller staying ``talk_s`` after it spoke."""
    scenario = (SIPP_DIR / "soak_call.xml").read_text(encoding="iso-8859-1")
    (work / name).write_text(scenario.replace("SOAK_TALK_MS", str(int(talk_s * 1000))), encoding="iso-8859-1")


def warm_up(work: Path, did: str, talk_s: float, workers: int = 1) -> None:
    """A call on each worker of the freshly restarted service, so that its reference figures include what a first
    call starts in each (a worker keeps, e.g., its outgoing audio's pacer thread once it had a call). The calls
    start 2 s apart and overlap: the dialplan gives each to the least busy worker, so each worker gets one."""
    write_scenario(work, "warm_up.xml", talk_s)
    callers = "".join(f"52155502{n:05d};\n" for n in range(workers))
    (work / "warm_up.csv").write_text("SEQUENTIAL\n" + callers, encoding="ascii")
    command = (
        f"sipp -sf warm_up.xml -inf warm_up.csv -s {did} 127.0.0.1:5060 -i 127.0.0.1 -p 5096 -m {workers} "
        f"-l {workers} -r 1 -rp 2000 -recv_timeout 60000 -timeout {120 + 2 * workers}s -nostdin"
    )
    result = subprocess.run(command.split(), cwd=work, capture_output=True, text=True, check=False, timeout=240)
    if result.returncode != 0:
        print(f"The warm-up calls failed (SIPp exit {result.returncode}): the reference may miss what a call starts.")


def service_apps(box: Box) -> list[str]:
    """The Stasis apps the service's workers registered in Asterisk (centralita, centralita-2, ...)."""
    words = box.run("asterisk -rx 'ari show apps'", check=False).split()
    return [word for word in words if re.fullmatch(r"centralita(-\d+)?", word)]


def worker_count(box: Box) -> int:
    return max(1, len(service_apps(box)))


def stuck_count(channels: int, bridges: int, open_records: int) -> int:
    """What the run left behind; channels that could not be counted (-1) count as one stuck, never as none."""
    return (channels if channels >= 0 else 1) + bridges + open_records


def failed(stuck: int, settled: bool, leaked_threads: int | None, leaked_fds: int | None) -> bool:
    """The run's verdict: anything stuck or leaked, a box that never settled, or figures that could not be read."""
    if stuck > 0 or not settled or leaked_threads is None or leaked_fds is None:
        return True
    return leaked_threads > 0 or leaked_fds > 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--box", default="centralita-lab", help="the lab box's container (default centralita-lab)")
    parser.add_argument("--calls", type=int, default=6, help="calls kept up at once (default 6)")
    parser.add_argument("--minutes", type=float, default=10.0, help="how long calls are placed (default 10)")
    parser.add_argument("--talk", type=float, default=20.0, help="seconds a caller stays after speaking (default 20)")
    parser.add_argument("--fault-every", type=float, default=60.0, help="mean seconds between faults (default 60)")
    parser.add_argument("--router-down", type=float, default=20.0, help="seconds the router stays down (default 20)")
    parser.add_argument("--drain", type=float, default=180.0, help="seconds the box has to settle (default 180)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the fault schedule (default: random)")
    parser.add_argument(
        "--faults",
        default=",".join(FAULTS),
        help=f"the fault kinds to inject, comma-separated (default {','.join(FAULTS)})",
    )
    parser.add_argument(
        "--memory-every", type=float, default=30.0, help="seconds between readings of the service's RSS (default 30)"
    )
    parser.add_argument("--did", default="5215550002222", help="the number called (default 5215550002222)")
    args = parser.parse_args(argv)
    for name in ("calls", "minutes", "talk", "fault_every", "router_down", "drain", "memory_every"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be more than 0")
    try:
        kinds = parse_faults(args.faults)
    except ValueError as error:
        parser.error(str(error))
    if shutil.which("sipp") is None:
        print("sipp is not installed here: run 'make host' (it installs sip-tester).", file=sys.stderr)
        return 2
    box = Box(args.box)
    if not box.running():
        print(f"The lab box {box.name} is not running: run 'make demo' first (it creates and provisions it).")
        return 2
    if not wait_for(lambda: ready(box), 60):
        print(f"{SERVICE} is not ready in {box.name} (no process, or no 'centralita' app in Asterisk).")
        return 2
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)

    start = service_process(box)
    assert start is not None
    restarts_before = int(box.run(f"systemctl show -p NRestarts --value {SERVICE}").strip() or 0)
    last_row = box.sql("SELECT coalesce(max(rowid), 0) FROM calls")[0][0]
    print(
        f"Soak of {box.name}: {args.calls} calls at a time for {args.minutes:g} min, a fault every "
        f"~{args.fault_every:g} s ({','.join(kinds)}; seed {seed}); service pid {start.pid} ({start.processes} "
        f"process(es)), {start.threads} threads, "
        f"{start.fds} fds, {start.rss_kib} KiB",
        flush=True,
    )

    work = Path(tempfile.mkdtemp(prefix="centralita-soak."))
    try:
        shutil.copy(SPEECH, work)
        write_scenario(work, "soak_call.xml", args.talk)
        callers = ["SEQUENTIAL"] + [f"52155501{n:05d};" for n in range(100000)]
        (work / "callers.csv").write_text("\n".join(callers) + "\n", encoding="ascii")
        rate = max(args.calls / (args.talk + 8.0), 0.05)  # enough to keep --calls up, each lasting ~talk + greeting
        command = (
            f"sipp -sf soak_call.xml -inf callers.csv -s {args.did} 127.0.0.1:5060 -i 127.0.0.1 -p 5095 "
            f"-l {args.calls} -r {rate:.3f} -rp 1000 -recv_timeout 60000 -nostdin"
        )
        sipp = subprocess.Popen(
            command.split(),
            cwd=work,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        faults = FaultLog()
        stop = threading.Event()
        injector = threading.Thread(
            target=fault_loop, args=(box, rng, kinds, args.fault_every, args.router_down, stop, faults), daemon=True
        )
        injector.start()
        memory: list[tuple[float, int, int]] = []
        sampler = threading.Thread(target=sample_memory, args=(box, args.memory_every, stop, memory), daemon=True)
        sampler.start()
        try:
            output, _ = sipp.communicate(timeout=args.minutes * 60)  # the soak itself
        except subprocess.TimeoutExpired:
            pass  # SIPp still placing calls, as it should
        else:
            stop.set()
            print(f"SIPp stopped before the end of the run (exit {sipp.returncode}):\n{output}", file=sys.stderr)
            return 2
        stop.set()
        injector.join()
        sampler.join()
        sipp.send_signal(signal.SIGUSR1)  # no new calls; SIPp exits once the calls in progress end
        try:
            output, _ = sipp.communicate(timeout=args.talk + 120)
        except subprocess.TimeoutExpired:
            sipp.kill()
            output, _ = sipp.communicate()
        calls = sipp_figures(output)

        settled = wait_for(lambda: ready(box) and left_in_asterisk(box) == (0, 0), args.drain)
        channels, bridges = left_in_asterisk(box)
        open_calls = box.sql(f"SELECT count(*) FROM calls WHERE rowid > {last_row} AND ended_at IS NULL")[0][0]
        rows = box.sql(f"SELECT coalesce(outcome, 'open'), count(*) FROM calls WHERE rowid > {last_row} GROUP BY 1")
        outcomes = {str(outcome): int(str(count)) for outcome, count in rows}
        end = at_rest(box, args.drain)
        restarts = int(box.run(f"systemctl show -p NRestarts --value {SERVICE}").strip() or 0) - restarts_before
        box.run(f"systemctl restart {SERVICE}")
        wait_for(lambda: ready(box), 120)
        warm_up(work, args.did, min(args.talk, 10.0), worker_count(box))
        fresh = at_rest(box, args.drain)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    stuck = stuck_count(channels, bridges, int(str(open_calls)))
    leaked_threads = end.threads - fresh.threads if end and fresh else None
    leaked_fds = end.fds - fresh.fds if end and fresh else None
    failed_over = sum(count for outcome, count in outcomes.items() if outcome in FAILED_OVER)
    summary = {
        "seed": seed,
        "minutes": args.minutes,
        "concurrent_calls": args.calls,
        "faults": [fault for _, fault in faults.injected],
        "fault_errors": faults.errors,
        "calls_placed": calls.get("placed", calls.get("completed", 0) + calls.get("failed", 0)),
        "calls_completed": calls.get("completed", 0),
        "calls_failed": calls.get("failed", 0),
        "recorded_outcomes": outcomes,
        "failed_over": failed_over,
        "stuck": stuck,
        "stuck_channels": channels,
        "stuck_bridges": bridges,
        "stuck_records": open_calls,
        "settled": settled,
        "leaked_threads": leaked_threads,
        "leaked_fds": leaked_fds,
        "leaked_sockets": end.sockets - fresh.sockets if end and fresh else None,
        "service_restarts": restarts,
        "rss_kib_start": start.rss_kib,
        "rss_kib_end": end.rss_kib if end else None,
        "rss_kib_fresh": fresh.rss_kib if fresh else None,
        "rss_kib_samples": memory,
    }
    print(
        f"Calls placed {summary['calls_placed']}, completed {summary['calls_completed']}, failed "
        f"{summary['calls_failed']}; recorded {outcomes}\n"
        f"Faults {len(faults.injected)}: {', '.join(summary['faults']) or 'none'}\n"
        f"Stuck {stuck} (channels {channels}, bridges {bridges}, open records {open_calls}); leaked threads "
        f"{leaked_threads}, fds {leaked_fds}; service restarted {restarts} times; RSS {start.rss_kib} KiB at the "
        f"start, {summary['rss_kib_end']} KiB at the end ({summary['rss_kib_fresh']} KiB restarted and warmed up)"
    )
    print(json.dumps(summary))
    return 1 if failed(stuck, settled, leaked_threads, leaked_fds) else 0


if __name__ == "__main__":
    sys.exit(main())
