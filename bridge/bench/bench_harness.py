"""The media bench's harness alone: what each fake costs per call, without a bridge; ends with one JSON line.

``make bench`` can only measure the bridge up to the calls its harness carries on the other core. This
measures the two harness pieces each on its own, driven by a minimal load in this process:

* the Realtime echo peer (``echo_realtime``, or ``fake_realtime --echo`` with ``--harness threads``) in a
  subprocess, ``--calls`` sessions each sent one ``input_audio_buffer.append`` of 20 ms every 20 ms (the
  bridge's own framing), its deltas read back;
* the fake Asterisk's media (``LoopMedia``, or ``Media``'s two threads) with ``--calls`` legs sending to one
  UDP socket here that sends every packet back to its leg (so each leg sends and receives 50 frames a
  second, as in the bench).

CPU time comes from schedstat (the echo process; the media threads), exact however busy the machine is, so
the figures hold on a shared machine even when the load itself is late. Run with
``PYTHONPATH=bridge/src:bridge/testing/src .venv/bin/python bridge/bench/bench_harness.py --calls 200``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import websocket

from centralita.realtime.events import audio_append_text, response_create, session_update
from centralita.realtime.wire import client_frame
from centralita_testing.fake_asterisk.rtp import FRAME_NS, LegHooks, LoopMedia, Media, RtpLeg
from centralita_testing.fake_asterisk.schedule import SendSchedule

API_KEY = "sk-centralita-bench"
SRC = Path(__file__).resolve().parents[1] / "src"
TESTING_SRC = Path(__file__).resolve().parents[1] / "testing" / "src"
_GOLDEN = 0.6180339887498949  # phases frac(i x golden), as the fake Asterisk's legs


def sched_ns(path: Path) -> tuple[int, int]:
    """(CPU ns, run-queue wait ns) from a schedstat file."""
    fields = path.read_text().split()
    return int(fields[0]), int(fields[1])


def process_sched_ns(pid: int) -> tuple[int, int]:
    run = wait = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with_task = sched_ns(task / "schedstat")
        run, wait = run + with_task[0], wait + with_task[1]
    return run, wait


def echo_cost(harness: str, calls: int, seconds: float) -> dict[str, Any]:
    module = ["centralita_testing.echo_realtime"]
    if harness == "threads":
        module = ["centralita_testing.fake_realtime", "--echo"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), str(TESTING_SRC)]))}
    process = subprocess.Popen(
        [sys.executable, "-m", *module, "--port", "0", "--api-key", API_KEY], stdout=subprocess.PIPE, text=True, env=env
    )
    sockets: list[socket.socket] = []
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().split()[-1]
        for _ in range(calls):
            ws = websocket.create_connection(
                f"{base_url}?model=gpt-realtime", header=[f"Authorization: Bearer {API_KEY}"], suppress_origin=True
            )
            ws.recv()  # session.created
            ws.send(json.dumps(session_update(instructions="Repite.", voice="marin", tools=[])))
            ws.recv()  # session.updated
            ws.send(json.dumps(response_create()))
            assert ws.sock is not None
            sockets.append(ws.sock)
        frame = client_frame(audio_append_text(b"\xff" * 160, "evt_bench"))
        poll = select.epoll()
        by_fd = {sock.fileno(): sock for sock in sockets}
        for sock in sockets:
            sock.setblocking(False)
            poll.register(sock.fileno(), select.EPOLLIN)

        # Each session appends at its own phase of the 20 ms period, spread as the bridge's calls are (their
        # callers' RTP arrives spread), not all at once: the echo peer sees as many wake-ups as with a bridge.
        schedule: SendSchedule[socket.socket] = SendSchedule(FRAME_NS, time.monotonic_ns())
        schedule.set_items(
            ((int((index * _GOLDEN) % 1.0 * FRAME_NS), sock) for index, sock in enumerate(sockets)), time.monotonic_ns()
        )

        def drive(duration: float) -> tuple[int, int]:
            sent = echoed = 0
            end = time.monotonic_ns() + int(duration * 1e9)
            while time.monotonic_ns() < end:
                for sock in schedule.due(time.monotonic_ns()):
                    with contextlib.suppress(BlockingIOError):
                        sock.send(frame)
                        sent += 1
                deadline = schedule.next_deadline() or end
                for fd, _events in poll.poll(max(0.0, (deadline - time.monotonic_ns()) / 1e9)):
                    with contextlib.suppress(BlockingIOError):
                        echoed += by_fd[fd].recv(1 << 16).count(b"output_audio.delta")
            return sent, echoed

        drive(1.0)  # warm up
        before, began = process_sched_ns(process.pid), time.monotonic()
        sent, echoed = drive(seconds)
        after, wall = process_sched_ns(process.pid), time.monotonic() - began
        poll.close()
    finally:
        for sock in sockets:
            sock.close()
        process.terminate()
        process.wait(5)
    cpu = (after[0] - before[0]) / 1e9
    return {
        "echo_frames_sent": sent,
        "echo_frames_echoed": echoed,
        "echo_cpu_pct": round(100 * cpu / wall, 1),
        "echo_wait_pct": round(100 * (after[1] - before[1]) / 1e9 / wall, 1),
        "echo_us_per_frame": round(cpu * 1e6 / max(sent, 1), 1),
        "echo_cpu_per_call_pct": round(100 * cpu / wall / calls, 3),
    }


class _Silence(LegHooks):
    def __init__(self) -> None:
        self.sent = 0

    def payload(self, leg: RtpLeg, now_ns: int) -> bytes:
        self.sent += 1
        return b"\xff" * 160

    def received(self, leg: RtpLeg, datagram: bytes, arrival_ns: int, kernel_stamped: bool) -> None:
        pass


def media_cost(harness: str, calls: int, seconds: float) -> dict[str, Any]:
    reflector = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    reflector.bind(("127.0.0.1", 0))
    reflector.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    reflector.settimeout(0.2)
    stop = threading.Event()

    def reflect() -> None:
        while not stop.is_set():
            try:
                datagram, source = reflector.recvfrom(2048)
                reflector.sendto(datagram, source)
            except OSError:
                pass

    hooks = _Silence()
    media = (LoopMedia if harness == "loop" else Media)(hooks, hold=True)
    legs = [RtpLeg(index, f"m{index}", reflector.getsockname(), random.Random(index)) for index in range(calls)]
    thread = threading.Thread(target=reflect, daemon=True)
    thread.start()
    media.start()
    try:
        for leg in legs:
            media.open(leg)
            media.play(leg)
        media.release()
        time.sleep(1.0)

        def media_ns() -> int:
            return sum(
                sched_ns(Path(f"/proc/self/task/{thread.native_id}/schedstat"))[0]
                for thread in threading.enumerate()
                if thread.name.startswith("fake-asterisk-rtp") and thread.native_id is not None
            )

        before, sent_before, began = media_ns(), hooks.sent, time.monotonic()
        time.sleep(seconds)
        after, sent, wall = media_ns(), hooks.sent - sent_before, time.monotonic() - began
    finally:
        media.close()
        stop.set()
        thread.join(1)
        reflector.close()
    cpu = (after - before) / 1e9
    return {
        "media_frames_sent": sent,
        "media_frames_due": int(calls * wall * 50),
        "media_cpu_pct": round(100 * cpu / wall, 1),
        "media_us_per_frame": round(cpu * 1e6 / max(sent, 1), 1),
        "media_cpu_per_call_pct": round(100 * cpu / wall / calls, 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=200, help="sessions and legs (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds measured (default %(default)s)")
    parser.add_argument("--harness", choices=("loop", "threads"), default="loop", help="as make bench's option")
    args = parser.parse_args(argv)
    if args.calls < 1:
        parser.error("--calls needs 1 or more")
    result: dict[str, Any] = {"harness": args.harness, "calls": args.calls, "load_average": list(os.getloadavg())}
    result |= echo_cost(args.harness, args.calls, args.seconds)
    result |= media_cost(args.harness, args.calls, args.seconds)
    result["harness_cpu_per_call_pct"] = round(result["echo_cpu_per_call_pct"] + result["media_cpu_per_call_pct"], 3)
    result["harness_cpu_pct_projected"] = round(result["harness_cpu_per_call_pct"] * args.calls, 1)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
