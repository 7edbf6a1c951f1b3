#!/usr/bin/env python3
"""Whole-box benchmark (``make bench-box``; a benchmark, not a test): SIPp calls with RTP into the lab box.

``make bench-box`` provisions the lab box (the ``centralita-lab`` container of ``make demo``: host networking,
real Asterisk on 127.0.0.1:5060, the service with ``BENCH_WORKERS`` workers) with ``inventory/lab/bench.yml``,
then runs this script, which ramps concurrent calls until the quality drops. Per step:

* SIPp plays the provider: it places the step's calls (``--rate`` a second, each from a number of its own)
  and keeps them up until the step is measured, then hangs them up (``files/sipp/bench_call.xml``);
* the callers' media is this script's: one RTP leg per call (the bench's fake-Asterisk legs, on one epoll
  loop), named in SIPp's SDP offer. Once a call is answered, SIPp tells the script Asterisk's RTP port and the
  leg starts talking: a PCMU frame every 20 ms, each stamped (leg, frame number, send time);
* the assistant is the echo Realtime peer (``centralita_testing.echo_realtime``) on this machine, outside the
  box: every frame the service appends comes straight back as audio (``--deltas worst``, the default), or
  in 100-300 ms deltas sent at once as the real API sends them (``--deltas realistic``);
* so each caller frame goes the whole way, caller -> Asterisk -> the service -> the Realtime peer -> the
  service -> Asterisk -> caller, and comes back to its leg with its stamp.

Measured over ``--duration`` seconds once every call of the step is up and ``--warmup`` seconds have passed:

* calls: placed, answered and ended cleanly (SIPp's counts);
* RTP at the caller: frames lost (sent, never back), late frames (more than ``--late-ms`` after their 20 ms
  slot on the RTP timestamps Asterisk put on them), jitter p50/p99 (deviation from the stream's median
  offset), and the round trip (a frame's send -> its echo's arrival: the box twice, the Realtime peer, the
  service's batching of the caller's audio and its playout pacing);
* the box's CPU (the container's cgroup, and within it Asterisk's and the service's units), the service's
  memory, and the harness's CPU (SIPp, the legs, the echo peer: they run on this machine beside the box).

A step is good when every call was answered and ended cleanly, and at most ``--max-loss-pct`` of the frames
were lost and ``--max-late-pct`` late. The ramp stops after the first step that is not (``--all-steps``: it
goes on). It prints a table row per step and one JSON line: ``max_calls_good`` is what this box carries.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from bench_media import I64, StampedLegs, leg_grids, no_nan
from soak import SERVICE, Box, left_in_asterisk, service_apps, sipp_figures, wait_for

from centralita_testing.fake_asterisk.rtp import LoopMedia, RtpLeg

HERE = Path(__file__).resolve().parent
SCENARIO = HERE.parent / "sipp" / "bench_call.xml"
ECHO_PORT = 8766  # inventory/lab/bench.yml points the service here
ECHO_KEY = "centralita-bench-key"
SIPP_PORT = 5097
CALLER_PREFIX = "52155503"
UNITS = {"asterisk": "asterisk.service", "service": f"{SERVICE}.service"}


@dataclass
class Options:
    box: str
    steps: list[int]
    rate: float
    warmup: float
    duration: float
    late_ms: float
    max_loss_pct: float
    max_late_pct: float
    deltas: str
    did: str
    all_steps: bool
    setup_timeout: float


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--box", default="centralita-lab", help="the lab box's container (default %(default)s)")
    parser.add_argument(
        "--steps", default="25,50,100,150,200,250,300", help="concurrent calls per step (default %(default)s)"
    )
    parser.add_argument("--rate", type=float, default=20.0, help="calls placed a second (default %(default)s)")
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="seconds after the last call is up (default %(default)s)"
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per step (default %(default)s)")
    parser.add_argument(
        "--late-ms", type=float, default=5.0, help="a frame this late after its slot is late (default 5)"
    )
    parser.add_argument("--max-loss-pct", type=float, default=0.1, help="good step: frames lost at most (default 0.1)")
    parser.add_argument("--max-late-pct", type=float, default=1.0, help="good step: frames late at most (default 1.0)")
    parser.add_argument(
        "--deltas", choices=("worst", "realistic"), default="worst", help="the echo peer's deltas (default worst)"
    )
    parser.add_argument("--did", default="5215550002222", help="the number called (default %(default)s)")
    parser.add_argument("--all-steps", action="store_true", help="run every step, even after quality dropped")
    parser.add_argument(
        "--setup-timeout", type=float, default=60.0, help="seconds for a step's calls to come up, beyond the ramp"
    )
    args = parser.parse_args(argv)
    try:
        steps = [int(step) for step in args.steps.split(",")]
    except ValueError:
        parser.error(f"--steps takes whole numbers separated by commas, e.g. 25,50,100; not {args.steps!r}")
    if not steps or min(steps) < 1:
        parser.error("--steps: every step needs at least one call")
    for name in ("rate", "duration", "late_ms", "setup_timeout"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be more than 0")
    if args.warmup < 0 or args.max_loss_pct < 0 or args.max_late_pct < 0:
        parser.error("--warmup, --max-loss-pct and --max-late-pct cannot be negative")
    return Options(
        box=args.box,
        steps=steps,
        rate=args.rate,
        warmup=args.warmup,
        duration=args.duration,
        late_ms=args.late_ms,
        max_loss_pct=args.max_loss_pct,
        max_late_pct=args.max_late_pct,
        deltas=args.deltas,
        did=args.did,
        all_steps=args.all_steps,
        setup_timeout=args.setup_timeout,
    )


# -- the box's CPU and memory, from its cgroups on this machine ----------------------------------------------


def cgroup2_mount() -> Path:
    """Where this machine mounts the cgroup v2 hierarchy (/sys/fs/cgroup, or /sys/fs/cgroup/unified when hybrid)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if " - cgroup2 " in line:
            return Path(fields[4])
    raise RuntimeError("no cgroup v2 hierarchy on this machine: the box's CPU cannot be measured")


def box_cgroup(box: Box) -> Path:
    """The container's cgroup v2 directory on this machine: its systemd's (init.scope's) parent."""
    result = subprocess.run(
        ["podman", "container", "inspect", "-f", "{{.State.Pid}}", box.name], capture_output=True, text=True, check=True
    )
    for line in Path(f"/proc/{result.stdout.strip()}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            path = cgroup2_mount() / line[3:].strip().lstrip("/")
            path = path.parent if path.name == "init.scope" else path
            if (path / "cpu.stat").is_file():
                return path
    raise RuntimeError(f"no cgroup v2 CPU figures for {box.name}: the box's CPU cannot be measured")


def unit_cgroups(root: Path) -> dict[str, Path]:
    """The units' cgroups inside the container (its systemd's system.slice)."""
    return {
        name: root / "system.slice" / unit for name, unit in UNITS.items() if (root / "system.slice" / unit).is_dir()
    }


def cpu_seconds(cgroup: Path) -> float:
    for line in (cgroup / "cpu.stat").read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) / 1e6
    raise RuntimeError(f"{cgroup}/cpu.stat has no usage_usec")


def memory_bytes(cgroup: Path) -> int:
    """The resident memory of every process in ``cgroup`` and below (the workers too)."""
    total = 0
    for procs in cgroup.glob("**/cgroup.procs"):  # the directory itself and every one below it
        with contextlib.suppress(OSError):
            for pid in procs.read_text().split():
                with contextlib.suppress(OSError):
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1]) * 1024
    return total


# -- one step -------------------------------------------------------------------------------------------------


@dataclass
class Step:
    calls: int
    answered: int
    completed: int
    failed: int
    frames_sent: int
    frames_back: int
    lost: int
    lost_pct: float
    late: int
    late_pct: float
    unstamped: int
    jitter_p50_ms: float
    jitter_p99_ms: float
    round_trip_p50_ms: float
    round_trip_p99_ms: float
    round_trip_max_ms: float
    box_cpu_pct: float
    asterisk_cpu_pct: float
    service_cpu_pct: float
    box_cpu_per_call_pct: float
    service_memory_mb: float
    harness_cpu_pct: float
    left_channels: int
    left_bridges: int
    good: bool


def _ms(values: I64, q: float) -> float:
    return round(float(np.percentile(values, q)) / 1e6, 3) if len(values) else float("nan")


def analyse_frames(collected: dict[str, Any], late_ms: float) -> dict[str, Any]:
    """Loss, lateness, jitter and round trip from the legs' columns (``StampedLegs.record``)."""
    columns = {name: np.frombuffer(raw, dtype=np.int64) for name, raw in collected["received"].items()}
    sent = {name: np.frombuffer(raw, dtype=np.int64) for name, raw in collected["sent"].items()}
    t_out, legs, frames, t_in, rtp_ts = (columns[key] for key in ("t_out", "leg", "frame", "t_in", "rtp_ts"))
    deviation: list[I64] = []
    late = 0
    for _rows, _slots, offsets in leg_grids(t_out, legs, rtp_ts):
        deviation.append(np.abs(offsets - np.int64(np.median(offsets))))
        late += int(np.sum(offsets - offsets.min() > late_ms * 1e6))
    jitter = np.concatenate(deviation) if deviation else np.zeros(0, np.int64)
    round_trip = t_out - t_in
    # Lost: frames sent in the window but for its last second (a round trip may still be under way) never back.
    window_end = collected["window"][1]
    due = sent["t_in"] < window_end - 1_000_000_000
    expected = (sent["leg"][due] << 32) | sent["frame"][due]
    lost = int(np.sum(~np.isin(expected, (legs << 32) | frames)))
    return {
        "frames_sent": len(sent["t_in"]),
        "frames_back": len(t_out),
        "lost": lost,
        "lost_pct": round(100 * lost / max(len(expected), 1), 3),
        "late": late,
        "late_pct": round(100 * late / max(len(t_out), 1), 3),
        "unstamped": int(collected["unstamped"]),
        "jitter_p50_ms": _ms(jitter, 50),
        "jitter_p99_ms": _ms(jitter, 99),
        "round_trip_p50_ms": _ms(round_trip, 50),
        "round_trip_p99_ms": _ms(round_trip, 99),
        "round_trip_max_ms": round(float(round_trip.max()) / 1e6, 3) if len(round_trip) else float("nan"),
    }


def follow_answers(portfile: Path, by_port: dict[int, RtpLeg], media: LoopMedia, read: int) -> tuple[int, int]:
    """Start the legs whose calls SIPp reported answered since offset ``read``; (legs started, new offset)."""
    text = portfile.read_text(encoding="ascii")
    end = text.rfind("\n") + 1  # a line still being written waits for the next look
    started = 0
    for line in text[read:end].splitlines():
        found = re.fullmatch(r"(\d+) (\d+)", line.strip())
        leg = by_port.get(int(found[1])) if found else None
        if found is None or leg is None:
            continue
        leg.remote = ("127.0.0.1", int(found[2]))
        media.play(leg)
        started += 1
    return started, end


def run_step(
    calls: int, options: Options, box: Box, media: LoopMedia, hooks: StampedLegs, work: Path, echo_pid: int
) -> Step:
    cgroup = box_cgroup(box)
    units = unit_cgroups(cgroup)
    rng = random.Random(calls)
    legs = [RtpLeg(index, f"bench-{index}", ("127.0.0.1", 9), rng) for index in range(calls)]
    for leg in legs:
        media.open(leg)
    by_port = {leg.address[1]: leg for leg in legs}
    step_dir = work / f"step-{calls}"
    step_dir.mkdir()
    callers = "".join(f"{leg.address[1]};{CALLER_PREFIX}{leg.index:05d};\n" for leg in legs)
    (step_dir / "calls.csv").write_text("SEQUENTIAL\n" + callers, encoding="ascii")
    portfile = step_dir / "answered"
    portfile.touch()
    # Each call stays up long enough for the last one to come up and the step to be measured (with room for a
    # slow ramp): the calls then end by themselves, with SIPp's BYE, as customers hang up.
    ramp_s = calls / options.rate
    hold_s = 1.5 * ramp_s + 5 + options.warmup + options.duration
    command = [
        "sipp", "-sf", str(SCENARIO), "-inf", "calls.csv", "-key", "portfile", str(portfile),
        "-s", options.did, "127.0.0.1:5060", "-i", "127.0.0.1", "-p", str(SIPP_PORT),
        "-l", str(calls), "-m", str(calls), "-r", f"{options.rate:g}", "-rp", "1000", "-d", str(int(hold_s * 1000)),
        "-recv_timeout", "60000", "-timeout", f"{int(2 * hold_s + 180)}s", "-nostdin",
    ]  # fmt: skip
    answered = 0
    with (step_dir / "sipp.out").open("w", encoding="utf-8") as screen:
        sipp = subprocess.Popen(command, cwd=step_dir, stdout=screen, stderr=subprocess.STDOUT)
        try:
            read = 0
            deadline = time.monotonic() + ramp_s + options.setup_timeout
            while answered < calls and time.monotonic() < deadline and sipp.poll() is None:
                started, read = follow_answers(portfile, by_port, media, read)
                answered += started
                time.sleep(0.05)
            time.sleep(options.warmup)  # the last calls' first seconds (greeting, session set-up) are not measured
            if sipp.poll() is not None:
                raise RuntimeError(
                    f"SIPp stopped before the step was measured (exit {sipp.returncode}; {answered} of {calls} calls "
                    f"answered): see {step_dir}/sipp.out"
                )
            cpu_before = {name: cpu_seconds(path) for name, path in {"box": cgroup, **units}.items()}
            wall_before = time.monotonic()
            collected = hooks.record(options.duration, {"sipp": sipp.pid, "echo": echo_pid})
            wall = time.monotonic() - wall_before
            cpu = {
                name: 100 * (cpu_seconds(path) - cpu_before[name]) / wall
                for name, path in {"box": cgroup, **units}.items()
            }
            memory = memory_bytes(units["service"]) if "service" in units else 0
            sipp.wait(timeout=2 * hold_s + 240)  # the calls end by themselves (SIPp's -timeout ends it before this)
        finally:
            if sipp.poll() is None:
                sipp.kill()
                sipp.wait()
    for leg in legs:
        media.close_leg(leg)
    figures = sipp_figures((step_dir / "sipp.out").read_text(encoding="utf-8", errors="replace"))
    wait_for(lambda: left_in_asterisk(box) == (0, 0), 60)
    channels, bridges = left_in_asterisk(box)
    frames = analyse_frames(collected, options.late_ms)
    harness = collected["cpu"]
    harness_pct = (
        harness.get("sipp_cpu_pct", 0.0) + harness.get("echo_cpu_pct", 0.0) + harness.get("asterisk_cpu_pct", 0.0)
    )
    failed = calls - figures.get("completed", 0)
    good = (
        failed == 0
        and frames["frames_back"] > 0
        and frames["lost_pct"] <= options.max_loss_pct
        and frames["late_pct"] <= options.max_late_pct
    )
    return Step(
        calls=calls,
        answered=answered,
        completed=figures.get("completed", 0),
        failed=failed,
        **frames,
        box_cpu_pct=round(cpu["box"], 1),
        asterisk_cpu_pct=round(cpu.get("asterisk", float("nan")), 1),
        service_cpu_pct=round(cpu.get("service", float("nan")), 1),
        box_cpu_per_call_pct=round(cpu["box"] / calls, 3),
        service_memory_mb=round(memory / 2**20, 1),
        harness_cpu_pct=round(harness_pct, 1),
        left_channels=channels,
        left_bridges=bridges,
        good=good,
    )


# -- the ramp -------------------------------------------------------------------------------------------------

_COLUMNS = (
    ("calls", "calls"),
    ("completed", "ok"),
    ("failed", "failed"),
    ("lost_pct", "lost%"),
    ("late_pct", "late%"),
    ("jitter_p50_ms", "jit50"),
    ("jitter_p99_ms", "jit99"),
    ("round_trip_p50_ms", "rtt50"),
    ("round_trip_p99_ms", "rtt99"),
    ("box_cpu_pct", "box%"),
    ("asterisk_cpu_pct", "ast%"),
    ("service_cpu_pct", "svc%"),
    ("box_cpu_per_call_pct", "box/call"),
    ("service_memory_mb", "svcMB"),
    ("harness_cpu_pct", "harn%"),
    ("good", "good"),
)


def row(step: Step | None) -> str:
    if step is None:
        return " ".join(f"{title:>8}" for _, title in _COLUMNS)
    return " ".join(f"{getattr(step, name)!s:>8}" for name, _ in _COLUMNS)


class EchoPeer:
    """The echo Realtime peer on this machine, where inventory/lab/bench.yml points the service."""

    def __init__(self, deltas: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "centralita_testing.echo_realtime", "--port", str(ECHO_PORT), "--api-key", ECHO_KEY,
             "--deltas", deltas],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if "listening" not in line:
            self.close()
            raise RuntimeError(f"the echo Realtime peer did not start on port {ECHO_PORT}: {line.strip()}")

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    if shutil.which("sipp") is None:
        print("sipp is not installed here: run 'make host' (it installs sip-tester).", file=sys.stderr)
        return 2
    box = Box(options.box)
    if not box.running():
        print(f"The lab box {box.name} is not running: run 'make bench-box' (it creates and provisions it).")
        return 2
    url = box.run("grep -h '^OPENAI_BASE_URL=' /usr/local/asterisk/.env", check=False)
    if f"127.0.0.1:{ECHO_PORT}/" not in url:
        print(
            f"The lab box {box.name} is not provisioned for the bench (its service does not talk to the echo peer on "
            f"port {ECHO_PORT}): run 'make bench-box', which provisions it with inventory/lab/bench.yml.",
            file=sys.stderr,
        )
        return 2
    if not wait_for(lambda: bool(service_apps(box)), 60):
        print(
            f"{SERVICE} is not ready in {box.name}: no centralita app in Asterisk ('ari show apps').", file=sys.stderr
        )
        return 2
    began = time.monotonic()
    echo = EchoPeer(options.deltas)
    hooks = StampedLegs()
    media = LoopMedia(hooks)
    media.start()
    work = Path(tempfile.mkdtemp(prefix="centralita-bench-box."))
    steps: list[Step] = []
    kept = False  # a step that went wrong keeps its SIPp output for the operator
    try:
        workers = len(service_apps(box))
        print(
            f"Whole-box bench of {box.name}: {workers} worker(s), steps {options.steps}, {options.rate:g} calls/s, "
            f"{options.duration:g} s measured per step, deltas {options.deltas}",
            file=sys.stderr,
            flush=True,
        )
        print(row(None), file=sys.stderr, flush=True)
        for calls in options.steps:
            step = run_step(calls, options, box, media, hooks, work, echo.process.pid)
            steps.append(step)
            print(row(step), file=sys.stderr, flush=True)
            if step.left_channels or step.left_bridges:
                print(
                    f"after the step, Asterisk still holds {step.left_channels} channel(s) and {step.left_bridges} "
                    "bridge(s): the box did not clean up",
                    file=sys.stderr,
                )
            if not step.good and not options.all_steps:
                break
    except RuntimeError as error:
        print(f"the ramp stopped: {error}", file=sys.stderr)
        kept = True
    finally:
        media.close()
        echo.close()
        if not kept:
            shutil.rmtree(work, ignore_errors=True)
    best = None
    for step in steps:
        if not step.good:
            break
        best = step
    summary = {
        "max_calls_good": best.calls if best else 0,
        "at_max_calls_good": vars(best) if best else None,
        "steps": [vars(step) for step in steps],
        "workers": workers,
        "deltas": options.deltas,
        "rate_calls_per_s": options.rate,
        "duration_s": options.duration,
        "late_ms": options.late_ms,
        "max_loss_pct": options.max_loss_pct,
        "max_late_pct": options.max_late_pct,
        "wall_s": round(time.monotonic() - began, 1),
        "nproc": os.cpu_count(),
        "load_average": list(os.getloadavg()),
    }
    print(json.dumps(no_nan(summary), allow_nan=False), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
