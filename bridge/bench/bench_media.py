"""Media-path benchmark: N concurrent calls through the bridge's real ``Call``; ends with one JSON line.

Run it with ``make bench`` (options: ``make bench BENCH_ARGS=-h``);
docs/PERFORMANCE.md has the method, the figures and what they mean. Three processes, so that only the
bridge's own work is counted as the bridge's:

* this one, the bridge: N real ``Call`` objects, each with its real ``AriRest``, UDP socket, ``RtpReceiver``,
  ``Playout``, ``RealtimeConnection`` and paced stream (on one ``MediaLoop`` that also reads every call's RTP
  and serves its WebSocket, as the service's default MEDIA_ENGINE=loop runs them; with ``--engine threads`` on
  one shared ``PacerThread``, or ``--pacer per-call``), started and ended as the service does;
* the fake Asterisk (``centralita_testing.fake_asterisk``, the one the unit tests use) in a child process
  (``_asterisk_main``): it answers the ARI REST calls a call makes over HTTP and plays each call's
  ExternalMedia leg, real RTP (PCMU, 160-byte frames) every 20 ms from the leg's own port to the call's
  socket, the legs spread evenly over the 20 ms period, all of them on one epoll loop (``LoopMedia``: one
  deadline-based ``SendSchedule`` for every leg's sends, each ready leg read to the end with its kernel
  receive timestamps); its legs here are ``StampedLegs``, which stamp what they send and time what they
  receive; the child also times the measured window and takes the CPU figures (of all three processes and of
  the machine), so an overloaded bridge cannot distort them;
* the echo peer of the Realtime API (``python -m centralita_testing.echo_realtime``, one ``selectors`` loop):
  every appended frame comes straight back as a ``response.output_audio.delta`` (``--deltas worst``), or the
  caller's audio goes back in deltas of 100-300 ms, each sent at once (``--deltas realistic``, as the real
  API sends a reply); with ``--vad`` (on unless ``--barge-in-every 0``) it plays the server's turn detection.

Callers barge in: every ``--barge-in-every`` seconds (default 3) each leg sends 200 ms of loud frames
(``SpeechPlan``); the echo peer answers the first with ``input_audio_buffer.speech_started`` and ends its
reply, and the bench times how long the bridge went on playing that reply (``barge_in_latencies``).

``--harness threads`` runs the unit tests' fakes instead (the fake Asterisk's two media threads, and
``fake_realtime --echo`` on asyncio and websockets), to compare: they take about twice the harness's CPU
per call, the echo server four times (see docs/PERFORMANCE.md). The harness is ``saturated`` when its
processes (which share one CPU when pinned) take over 85 % of it (``--harness-max-pct``), or when the media
loop gives up over 1 % of its 20 ms slots (``skipped_slots``) or sends over 1 % of its frames more than
``--late-ms`` after their slot (``harness_late_sends``): it could not keep its schedule, its CPU taken by
its own work or by other programs.

The first 20 bytes of every frame the fake Asterisk sends are a stamp (leg, frame number, send time);
the echo returns the audio byte for byte, so each frame is followed from socket to socket:

* latency in: RTP sent to the bridge's socket (on loopback the packet is in that socket when ``sendto``
  returns) -> the WebSocket frame carrying its ``input_audio_buffer.append`` handed to the kernel;
* latency out: the delta's last bytes in the bridge's TCP socket (kernel receive timestamp of the read that
  completed it; a realistic delta carries many frames, each matched by its stamp) -> the RTP frame in
  the fake Asterisk's leg (kernel receive timestamp; loopback delivers it during the bridge's
  ``sendto``), less the wait for the frame's own 20 ms slot: ``sent - max(delta received, slot deadline)``;
* jitter: each call's RTP is put on its 20 ms grid by its RTP timestamps (the pacer's slot numbers); the
  deviation is ``|offset - median offset|`` and a frame is late when it left more than ``--late-ms`` after
  its slot (measured from the earliest send of that call, so a delay common to all its frames is not seen).

The WebSocket timestamps come from a probe on the bridge's TCP sockets (websocket-client's ``_http`` module
creates them as a socket subclass that records bytes and times, and changes nothing else); a ``gc`` callback
records the collector's pauses. By default the bridge is pinned to the first CPU and the harness to the
others, and ``gc.freeze()`` runs after start-up, as the service should (``--no-pin``, ``--no-gc-freeze``).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import bisect
import contextlib
import gc
import itertools
import json
import logging
import multiprocessing
import os
import random
import resource
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import types
from array import array
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import websocket._http as websocket_http

from centralita.calls.call import Call
from centralita.config.bridge import APPEND_MS_DEFAULT, Settings
from centralita.media import collector
from centralita.media.loop import MediaLoop
from centralita.media.pacer import PacerThread
from centralita.media.rtp import FRAME_BYTES
from centralita.storage.queued import QueuedRecords
from centralita.storage.records import CallRecords, Direction, Outcome
from centralita.storage.writer import RecordWriter
from centralita.telephony.ari import AriEndpoint, AriRest
from centralita.tools.registry import ToolRegistry
from centralita_testing.fake_asterisk import FakeAsterisk, LegHooks, RtpLeg
from centralita_testing.fake_asterisk.rtp import monotonic_offset_ns

log = logging.getLogger("bench")

FRAME_NS: Final = 20_000_000
STAMP: Final = struct.Struct("!4sIIQ")  # magic, leg, frame number, send time (CLOCK_MONOTONIC, ns)
MAGIC: Final = b"CBNC"
RTP_HEADER: Final = struct.Struct("!BBHII")
FILL: Final = b"\xff" * (FRAME_BYTES - STAMP.size)  # μ-law silence after the stamp
SPEECH_FILL: Final = b"\x80\x00" * ((FRAME_BYTES - STAMP.size) // 2)  # loud: the echo peer's VAD hears speech
SPEECH_FRAMES: Final = 10  # a caller's barge-in lasts 200 ms
GOLDEN: Final = 0.6180339887498949  # legs' speech phases frac(i x golden): spread over the period
NOT_PLAYED_FRAMES: Final = 32  # before a barge-in, frames of the reply that may never play (queued, gathering)
SO_TIMESTAMPNS: Final = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; the socket module does not export it
TIMESPEC: Final = struct.Struct("@qq")
ANC_SIZE: Final = socket.CMSG_SPACE(TIMESPEC.size)
APPEND_KEY: Final = b'"audio": "'
DELTA_KEY: Final = b'"delta": "'
SRC: Final = Path(__file__).resolve().parents[1] / "src"
TESTING_SRC: Final = Path(__file__).resolve().parents[1] / "testing" / "src"
API_KEY: Final = "sk-centralita-bench"
ARI_USER: Final = "centralita"
CALLER: Final = "600100200"
CALLEE: Final = "910000000"
ARI_PASSWORD: Final = "bench"

I64 = npt.NDArray[np.int64]


def kernel_time_ns(ancdata: list[tuple[int, int, bytes]], offset: int) -> int | None:
    """The SO_TIMESTAMPNS receive time of a recvmsg, on the monotonic clock; None when the kernel gave none."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= TIMESPEC.size:
            seconds, nanoseconds = TIMESPEC.unpack_from(data)
            return seconds * 1_000_000_000 + nanoseconds - offset
    return None


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of another process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_sched_seconds(pid: int) -> tuple[float, float] | None:
    """(CPU time, time runnable but waiting for a CPU) of a process's live threads, from schedstat; None when
    the kernel has no schedstat.

    Exact, unlike /proc/PID/stat's tick-sampled times, which miss much of a loop that runs in short bursts; the
    wait says how long the process was kept from its CPU by others (the machine's other programs included).
    """
    run = wait = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return None
    for task in tasks:
        try:
            fields = (task / "schedstat").read_text().split()
        except OSError:
            continue
        run += int(fields[0])
        wait += int(fields[1])
    return (run / 1e9, wait / 1e9) if run else None


def thread_cpu_seconds() -> dict[str, float]:
    """CPU seconds of this process's threads by kind (the first two dash-separated words of the name)."""
    tick = os.sysconf("SC_CLK_TCK")
    by_kind: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread.native_id is None:
            continue
        try:
            fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kind = "-".join(thread.name.split("-")[:2])
        by_kind[kind] = by_kind.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return by_kind


def timer_noise(seconds: float) -> dict[str, float]:
    """How late a lone thread wakes for 20 ms deadlines on this machine, now: the floor under every figure.

    Run before anything else starts, on the bridge's CPU: lateness here comes from the kernel, the hypervisor
    and whatever else the machine runs, and no pacer can do better than this.
    """
    start = time.monotonic_ns()
    late: list[int] = []
    for slot in range(1, int(seconds * 1e9 / FRAME_NS) + 1):
        deadline = start + slot * FRAME_NS
        delay = deadline - time.monotonic_ns()
        if delay > 0:
            time.sleep(delay / 1e9)
        late.append(time.monotonic_ns() - deadline)
    values = np.array(late, dtype=np.int64)
    return {"noise_p50_ms": _ms(values, 50), "noise_p99_ms": _ms(values, 99), "noise_max_ms": _ms(values, 100)}


def rss_bytes() -> int:
    """This process's resident set size, from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, all cores, from /proc/stat."""
    values = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(values[:8])
    idle = values[3] + values[4]
    tick = os.sysconf("SC_CLK_TCK")
    return (total - idle) / tick, total / tick


def other_cpu(machine_pct: float, own_pct: float) -> float:
    """What other programs took: the machine's CPU less the bench's own processes'; NaN when the machine's figure
    is less than the bench's own (some VMs' /proc/stat does not count every process: then nothing can be said of
    other programs, and 0 would claim a quiet machine)."""
    if machine_pct < 0.9 * own_pct - 2.0:
        return float("nan")
    return max(0.0, machine_pct - own_pct)


# --- The callers' barge-ins -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpeechPlan:
    """When each simulated caller speaks over the assistant: ``length`` frames every ``period`` frames.

    A leg's speech starts at the frames ``f >= period`` with ``(f - offset(leg)) % period == 0`` (legs' offsets
    spread over the period), so the assistant's reply, the echo of the caller's silence since the last speech,
    has been playing for ``period - length`` frames when the caller interrupts it. The fake Asterisk sends
    those frames loud (``SPEECH_FILL``); the echo peer's VAD hears them.
    """

    period: int
    length: int = SPEECH_FRAMES

    def offset(self, leg: int) -> int:
        return int((leg * GOLDEN) % 1.0 * self.period)

    def speaking(self, leg: int, frame: int) -> bool:
        return frame >= self.period and (frame - self.offset(leg)) % self.period < self.length

    def phases(self, legs: I64, frames: I64) -> I64:
        """Each frame's place in its leg's period: 0 is the first frame of a speech (numpy, vectorised)."""
        offsets = ((legs * GOLDEN) % 1.0 * self.period).astype(np.int64)
        return np.asarray((frames - offsets) % self.period, dtype=np.int64)

    def expected(self, legs: I64, frames: I64) -> npt.NDArray[np.bool_]:
        """Frames whose echo must come back: not speech (never echoed) nor the reply's last frames before a
        speech (the bridge drops what it queued, the peer what it was still gathering)."""
        phases = self.phases(legs, frames)
        near = (phases < self.length) | (phases >= self.period - NOT_PLAYED_FRAMES)
        return np.asarray(~(near & (frames >= self.period - NOT_PLAYED_FRAMES)), dtype=np.bool_)


def barge_in_latencies(
    plan: SpeechPlan,
    sent: dict[str, I64],
    received: dict[str, I64],
    until_ns: int,
    at_bridge: dict[int, int] | None = None,
    since_ns: int = 0,
) -> tuple[I64, npt.NDArray[np.bool_]]:
    """For each speech start sent before ``until_ns``: from its frame leaving the caller to the last frame of the
    interrupted reply reaching the caller (0 when that reply had already finished playing), in ns; and whether
    the bridge had to cut that reply (frames of it reached the bridge after ``since_ns``, ``at_bridge``: ``(leg
    << 32) | frame`` -> arrival, but never the caller: its playout queue was not empty when the caller spoke).
    ``since_ns`` is when the caller's side began recording: a frame played before it was not seen played.

    ``sent``: the caller's frames (``leg``, ``frame``, ``t_in``); ``received``: the assistant's frames at the
    caller (``leg``, ``frame`` (the caller frame it echoes), ``t_out``). The interrupted reply echoes the
    caller's frames since the last speech ended; a start whose reply never reached the caller in the window
    has no figure.
    """
    legs, frames, t_in = sent["leg"], sent["frame"], sent["t_in"]
    starts = np.flatnonzero((plan.phases(legs, frames) == 0) & (frames >= plan.period) & (t_in < until_ns))
    latencies: list[int] = []
    cut: list[bool] = []
    by_leg: dict[int, tuple[I64, I64]] = {}
    for row in starts:
        leg, start, spoke = int(legs[row]), int(frames[row]), int(t_in[row])
        if leg not in by_leg:
            rows = np.flatnonzero(received["leg"] == leg)
            by_leg[leg] = received["frame"][rows], received["t_out"][rows]
        echoed, t_out = by_leg[leg]
        reply = (echoed >= start - plan.period + plan.length) & (echoed < start)
        if not reply.any():
            continue
        latencies.append(max(0, int(t_out[reply].max()) - spoke))
        played = {int(frame) for frame in echoed[reply]}
        first = start - plan.period + plan.length
        cut.append(
            at_bridge is not None
            and any(
                at_bridge.get((leg << 32) | frame, -1) >= since_ns and frame not in played
                for frame in range(first, start)
            )
        )
    return np.array(latencies, dtype=np.int64), np.array(cut, dtype=np.bool_)


def send_lateness(sent: dict[str, I64]) -> I64:
    """How late the fake Asterisk sent each frame after its 20 ms slot, in ns.

    Each leg's grid is anchored on its earliest send (frame ``n`` is due ``n`` periods after frame 0), as the
    bridge's own lateness is: a harness that cannot keep its schedule is behind the load it claims to offer.
    """
    parts: list[I64] = []
    legs = sent["leg"]
    for leg in np.unique(legs):
        rows = np.flatnonzero(legs == leg)
        offsets = sent["t_in"][rows] - sent["frame"][rows] * FRAME_NS
        parts.append(offsets - offsets.min())
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


# --- The fake Asterisk (a child process), with stamped and timed legs --------------------------------------


class StampedLegs(LegHooks):
    """The fake Asterisk's legs, measured: each frame sent carries a stamp, each frame received is timed.

    Every frame a leg sends starts with (magic, leg, frame number, send time); while ``recording``, the frames
    sent and the stamped frames received (kernel receive time, leg, frame, send time, RTP timestamp) go into
    columns, so the analysis can follow each frame from socket to socket.
    """

    def __init__(self, speech: SpeechPlan | None = None) -> None:
        self.recording = False
        self.speech = speech
        self._reset_columns()

    def payload(self, leg: RtpLeg, now_ns: int) -> bytes:
        frame = leg.frames_sent
        if self.recording:
            self.sent["leg"].append(leg.index)
            self.sent["frame"].append(frame)
            self.sent["t_in"].append(now_ns)
        speech = self.speech
        fill = SPEECH_FILL if speech is not None and speech.speaking(leg.index, frame) else FILL
        return STAMP.pack(MAGIC, leg.index, frame, now_ns) + fill

    def received(self, leg: RtpLeg, datagram: bytes, arrival_ns: int, kernel_stamped: bool) -> None:
        if not self.recording:
            return
        if kernel_stamped:
            self.kernel_stamped += 1
        if len(datagram) < RTP_HEADER.size + STAMP.size:
            self.unstamped += 1
            return
        _first, _second, _sequence, rtp_ts, _ssrc = RTP_HEADER.unpack_from(datagram)
        magic, index, frame, t_in = STAMP.unpack_from(datagram, RTP_HEADER.size)
        if magic != MAGIC:
            self.unstamped += 1
            return
        columns = self.received_columns
        columns["t_out"].append(arrival_ns)
        columns["leg"].append(index)
        columns["frame"].append(frame)
        columns["t_in"].append(t_in)
        columns["rtp_ts"].append(rtp_ts)

    def record(self, seconds: float, pids: dict[str, int]) -> dict[str, Any]:
        """Measure for ``seconds``: the frames, and the CPU time of ``pids`` and of the machine.

        Timed here rather than in the bridge's process, whose main thread may wait long for the GIL when the
        bridge is overloaded: the window and the CPU figures stay exact whatever the bridge's state.
        """
        pids = {**pids, "asterisk": os.getpid()}
        self._reset_columns()
        sched_start = {name: process_sched_seconds(pid) for name, pid in pids.items()}
        start = time.monotonic_ns(), {name: process_cpu_seconds(pid) for name, pid in pids.items()}
        machine_start = machine_cpu_seconds()
        self.recording = True
        time.sleep(seconds)
        self.recording = False
        end = time.monotonic_ns(), {name: process_cpu_seconds(pid) for name, pid in pids.items()}
        sched_end = {name: process_sched_seconds(pid) for name, pid in pids.items()}
        machine_end = machine_cpu_seconds()
        time.sleep(0.05)  # let the media threads finish the frame in hand
        wall = (end[0] - start[0]) / 1e9
        cpu = {f"{name}_cpu_pct": 100 * (end[1][name] - start[1][name]) / wall for name in pids}
        for name in pids:  # schedstat's exact figures where the kernel has them
            before, after = sched_start[name], sched_end[name]
            if before is not None and after is not None:
                cpu[f"{name}_cpu_pct"] = 100 * (after[0] - before[0]) / wall
                cpu[f"{name}_wait_pct"] = 100 * (after[1] - before[1]) / wall
        cpu["machine_cpu_pct"] = 100 * (machine_end[0] - machine_start[0]) / wall
        return {
            "window": (start[0], end[0]),
            "cpu": cpu,
            "sent": {name: column.tobytes() for name, column in self.sent.items()},
            "received": {name: column.tobytes() for name, column in self.received_columns.items()},
            "unstamped": self.unstamped,
            "kernel_stamped": self.kernel_stamped,
        }

    def _reset_columns(self) -> None:
        # Frames sent (leg, frame, send time) and frames received (arrival, leg, frame, send time, RTP timestamp).
        self.sent = {name: array("q") for name in ("leg", "frame", "t_in")}
        self.received_columns = {name: array("q") for name in ("t_out", "leg", "frame", "t_in", "rtp_ts")}
        self.unstamped = 0
        self.kernel_stamped = 0


def _asterisk_main(
    control: Connection, cpus: set[int] | None, user: str, password: str, media_loop: bool, speech: SpeechPlan | None
) -> None:
    """The child process: the fake Asterisk until told to stop; commands come over ``control``.

    Its legs hold their media until "play", so the load starts once every call is up. With ``media_loop`` all
    legs run on one epoll loop (``LoopMedia``), else on a sending and a receiving thread.
    """
    _pin(0, cpus)  # before its threads start: they inherit it
    legs = StampedLegs(speech)
    asterisk = FakeAsterisk(user, password, hooks=legs, hold_media=True, media_loop=media_loop).start()
    control.send({"ari_url": asterisk.url})
    try:
        while True:
            command = control.recv()
            if command == "play":
                asterisk.release_media()
                control.send("playing")
            elif isinstance(command, dict) and command.get("calls"):
                for channel_id in command["calls"]:  # callers in the Stasis app, as the dialplan sends them
                    asterisk.incoming_call(command["app"], ("inbound", CALLEE), caller=CALLER, channel_id=channel_id)
                control.send("ringing")
            elif isinstance(command, dict) and command.get("record"):
                skipped = asterisk.media_skipped
                collected = legs.record(command["record"], command["pids"])
                collected["skipped"] = asterisk.media_skipped - skipped
                control.send(collected)
            else:
                break
    except EOFError:
        pass
    finally:
        asterisk.stop()


# --- The probe on the bridge's WebSocket I/O -------------------------------------------------------------


class GcProbe:
    """The bridge process's garbage-collector pauses: a full collection stops every thread for its duration."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, int, int, int]] = []  # (generation, start, end, CPU ns), monotonic ns
        self._started = (0, 0)
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.monotonic_ns(), time.thread_time_ns()
        else:
            begin, cpu = self._started
            self.pauses.append((info["generation"], begin, time.monotonic_ns(), time.thread_time_ns() - cpu))

    def window(self, start: int, end: int) -> tuple[int, float, float, int]:
        """(collections, longest pause in ms, CPU ms of that pause, full collections) between ``start`` and ``end``.

        A pause much longer than its CPU time is the thread being preempted while it held the GIL. A full
        collection (the oldest generation) walks every object the collector tracks, so its pause grows with the
        calls' objects (the bench counts them at the window's end: ``gc_tracked_objects``)."""
        inside = [(stop - begin, cpu) for _, begin, stop, cpu in self.pauses if start <= begin <= end]
        full = sum(1 for generation, begin, _, _ in self.pauses if generation == 2 and start <= begin <= end)
        longest, cpu = max(inside, default=(0, 0))
        return len(inside), longest / 1e6, cpu / 1e6, full


class WsProbe:
    """Times each WebSocket frame the bridge hands to the kernel, and each read of the kernel's bytes.

    Installed before any connection exists: websocket-client's ``_http`` module then creates its TCP sockets
    as ``_ProbedSocket``s, which behave as plain sockets and, while ``recording``, keep (time, bytes) of every
    send and read. Reads use ``recvmsg`` with SO_TIMESTAMPNS, so a read's time is when its bytes reached the
    socket, not when a thread got round to reading them. The bridge's code is not touched.
    """

    def __init__(self) -> None:
        self.recording = False
        self.sent: list[tuple[int, bytes]] = []
        self.received: list[tuple[int, int, bytes]] = []  # (arrival, socket, bytes read)
        self.kernel_stamped = 0
        self.offset = monotonic_offset_ns()

    def start(self) -> None:
        self.sent, self.received = [], []
        self.kernel_stamped = 0
        self.offset = monotonic_offset_ns()
        self.recording = True

    def stop(self) -> None:
        self.recording = False

    def install(self) -> None:
        probe = self

        class _ProbedSocket(socket.socket):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                if self.type == socket.SOCK_STREAM:
                    self.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)

            def send(self, data: Any, flags: int = 0) -> int:
                sent = super().send(data, flags)
                if probe.recording:
                    probe.sent.append((time.monotonic_ns(), bytes(data[:sent])))
                return sent

            def sendall(self, data: Any, flags: int = 0) -> None:
                super().sendall(data, flags)
                if probe.recording:
                    probe.sent.append((time.monotonic_ns(), bytes(data)))

            def recv(self, bufsize: int, flags: int = 0) -> bytes:
                if not probe.recording:
                    return super().recv(bufsize, flags)
                data, ancdata, _flags, _address = self.recvmsg(bufsize, ANC_SIZE, flags)
                arrival = kernel_time_ns(ancdata, probe.offset)
                if arrival is None:
                    arrival = time.monotonic_ns()
                else:
                    probe.kernel_stamped += 1
                probe.received.append((arrival, id(self), data))
                return data

        module = types.ModuleType("socket", "the socket module, but for its socket class: the bench's probe")
        setattr(module, "__getattr__", lambda name: getattr(socket, name))  # noqa: B010 - PEP 562 module hook
        setattr(module, "socket", _ProbedSocket)  # noqa: B010
        setattr(websocket_http, "socket", module)  # noqa: B010


def _unmask_client_frame(chunk: bytes) -> bytes | None:
    """The payload of a masked text frame at the start of ``chunk``; None for anything else."""
    if len(chunk) < 6 or chunk[0] & 0x0F != 0x1 or not chunk[1] & 0x80:
        return None
    length, offset = chunk[1] & 0x7F, 2
    if length == 126:
        length, offset = int.from_bytes(chunk[2:4], "big"), 4
    elif length == 127:
        length, offset = int.from_bytes(chunk[2:10], "big"), 10
    mask = chunk[offset : offset + 4]
    payload = chunk[offset + 4 : offset + 4 + length]
    if len(mask) != 4 or len(payload) != length:
        return None
    key = (mask * (length // 4 + 1))[:length]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(length, "little")


def delta_arrivals(reads: Sequence[tuple[int, int, bytes]]) -> dict[int, int]:
    """``(leg << 32) | frame`` -> when the delta carrying that frame was whole in the bridge's socket.

    ``reads`` are the probe's (arrival, socket, bytes) reads. A delta may span reads and carry many frames
    (``--deltas realistic``): each socket's reads are joined, every delta's base64 decoded, and each 160-byte
    frame in it matched by its stamp; the delta's time is that of the read holding its last byte.
    """
    streams: dict[int, list[tuple[int, bytes]]] = {}
    for arrival, sock, data in reads:
        streams.setdefault(sock, []).append((arrival, data))
    found: dict[int, int] = {}
    for chunks in streams.values():
        text = b"".join(data for _, data in chunks)
        ends = list(itertools.accumulate(len(data) for _, data in chunks))
        position = text.find(DELTA_KEY)
        while position >= 0:
            start = position + len(DELTA_KEY)
            end = text.find(b'"', start)
            if end < 0:
                break
            arrival = chunks[bisect.bisect_right(ends, end)][0]
            try:
                audio = base64.b64decode(text[start:end], validate=True)
            except (binascii.Error, ValueError):
                audio = b""
            for offset in range(0, len(audio) - STAMP.size + 1, FRAME_BYTES):
                magic, leg, frame, _t_in = STAMP.unpack_from(audio, offset)
                if magic == MAGIC:
                    found.setdefault((leg << 32) | frame, arrival)
            position = text.find(DELTA_KEY, end)
    return found


def _stamps_after(text: bytes, key: bytes) -> list[tuple[int, int, int]]:
    """(leg, frame, send time) of every frame in the base64 audio that follows ``key`` in a JSON event.

    An append carries APPEND_MS of the caller's audio: one 160-byte frame, or several back to back, each
    starting with its stamp. Every frame is counted, so an append of 40 ms gives two rows, the first of which
    waited 20 ms for the second (that wait is the batching's cost, and is in ``latency_in``)."""
    start = text.find(key)
    if start < 0:
        return []
    start += len(key)
    end = text.find(b'"', start)
    try:
        raw = base64.b64decode(text[start : end if end >= 0 else None])
    except (binascii.Error, ValueError):
        return []
    stamps = []
    for offset in range(0, len(raw) - STAMP.size + 1, FRAME_BYTES):
        magic, leg, frame, t_in = STAMP.unpack_from(raw, offset)
        if magic == MAGIC:
            stamps.append((leg, frame, t_in))
    return stamps


# --- The processes around the bridge ---------------------------------------------------------------------


def _pin(pid: int, cpus: set[int] | None) -> None:
    if cpus:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, cpus)


class AsteriskProcess:
    def __init__(self, cpus: set[int] | None, media_loop: bool, speech: SpeechPlan | None) -> None:
        context = multiprocessing.get_context("spawn")
        self._control, child = context.Pipe()
        self._process = context.Process(
            target=_asterisk_main,
            args=(child, cpus, ARI_USER, ARI_PASSWORD, media_loop, speech),
            name="asterisk-sim",
            daemon=True,
        )
        self._process.start()
        child.close()
        assert self._process.pid is not None
        self.pid: int = self._process.pid
        ready = self._control.recv()
        self.ari_url: str = ready["ari_url"]

    def incoming_calls(self, app: str, channel_ids: list[str]) -> None:
        """Callers for the calls to answer: channels in Stasis ``app``."""
        self._control.send({"calls": channel_ids, "app": app})
        self._control.recv()

    def play(self) -> None:
        self._control.send("play")
        self._control.recv()

    def record(self, seconds: float, pids: dict[str, int]) -> dict[str, Any]:
        self._control.send({"record": seconds, "pids": pids})
        result: dict[str, Any] = self._control.recv()
        return result

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._control.send("stop")
        self._process.join(5)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)
        self._control.close()


class FakeRealtimeProcess:
    """The Realtime side in echo mode: the lean ``echo_realtime`` peer (``harness="loop"``), or the full
    ``fake_realtime`` server (asyncio and websockets, ``harness="threads"``, worst-case deltas only)."""

    def __init__(self, cpus: set[int] | None, harness: str, deltas: str, vad: bool) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), str(TESTING_SRC), os.environ.get("PYTHONPATH")])),
        }
        if harness == "loop":
            command = [sys.executable, "-m", "centralita_testing.echo_realtime", "--deltas", deltas]
            if vad:
                command.append("--vad")
        else:
            command = [sys.executable, "-m", "centralita_testing.fake_realtime", "--echo"]
        command += ["--port", "0", "--api-key", API_KEY]
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        self.pid = self._process.pid
        _pin(self.pid, cpus)
        assert self._process.stdout is not None
        line = self._process.stdout.readline()  # "... listening on ws://HOST:PORT/v1/realtime"
        if "listening on" not in line:
            self.stop()
            raise RuntimeError(f"the fake Realtime server did not start: {line!r}")
        self.base_url = line.split()[-1]

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()


# --- One step of the ramp --------------------------------------------------------------------------------


@dataclass
class Options:
    steps: list[int]
    duration: float
    warmup: float
    late_ms: float
    all_steps: bool
    gc_freeze: bool
    gc_full_every: int
    shared_pacer: bool
    bridge_cpus: set[int] | None  # None: not pinned
    harness_cpus: set[int] | None
    harness: str = "loop"  # "loop": one epoll loop per harness process; "threads": the fakes of the unit tests
    deltas: str = "worst"  # "worst": a delta per 20 ms frame; "realistic": 100-300 ms each
    engine: str = "loop"  # the bridge's MEDIA_ENGINE: "loop" (the service's default) or "threads" (a thread per call)
    append_ms: int = APPEND_MS_DEFAULT  # the bridge's APPEND_MS (the loop engine batches the caller's audio)
    speech: SpeechPlan | None = None  # the callers' barge-ins; None: the callers never speak over the assistant
    harness_max_pct: float = 85.0  # the harness is saturated above this share of its core


@dataclass
class StepResult:
    calls: int
    calls_failed: int
    duration_s: float
    frames_sent: int
    frames_in: int
    frames_out: int
    frames_lost: int
    late_frames: int
    jitter_p50_ms: float
    jitter_p99_ms: float
    jitter_max_ms: float
    lateness_p99_ms: float
    lateness_max_ms: float
    latency_in_p50_ms: float
    latency_in_p99_ms: float
    latency_in_max_ms: float
    latency_out_p50_ms: float
    latency_out_p99_ms: float
    latency_out_max_ms: float
    slot_wait_p50_ms: float
    round_trip_p50_ms: float
    underrun_slots: int
    bridge_cpu_pct: float
    cpu_per_call_pct: float
    cpu_per_call_served_pct: float
    fake_cpu_pct: float
    asterisk_cpu_pct: float
    harness_cpu_pct: float
    harness_cpu_per_call_pct: float
    fake_wait_pct: float
    asterisk_wait_pct: float
    machine_cpu_pct: float
    other_cpu_pct: float
    saturated: bool
    harness_saturated: bool
    bridge_rss_mb: float
    bridge_rss_per_call_kb: float
    skipped_slots: int
    gc_collections: int
    gc_max_pause_ms: float
    gc_max_pause_cpu_ms: float
    gc_full_collections: int
    gc_tracked_objects: int
    kernel_stamped_pct: float
    barge_ins: int = 0
    barge_in_p50_ms: float = float("nan")
    barge_in_p99_ms: float = float("nan")
    barge_in_max_ms: float = float("nan")
    barge_ins_cut: int = 0
    barge_in_cut_p50_ms: float = float("nan")
    barge_in_cut_p99_ms: float = float("nan")
    harness_late_sends: int = 0
    harness_send_late_p99_ms: float = float("nan")


def _cpus(pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """(bridge CPUs, harness CPUs): the bridge alone on the first CPU, the fake servers on the rest."""
    available = sorted(os.sched_getaffinity(0))
    if not pin or len(available) < 2:
        return None, None
    return {available[0]}, set(available[1:])


def _settings(fake: FakeRealtimeProcess, asterisk: AsteriskProcess, workdir: Path, append_ms: int) -> Settings:
    return Settings.from_values(
        {
            "OPENAI_API_KEY": API_KEY,
            "OPENAI_BASE_URL": fake.base_url,
            "ARI_URL": asterisk.ari_url,
            "ARI_USER": ARI_USER,
            "ARI_PASSWORD": ARI_PASSWORD,
            "RTP_BIND_ADDRESS": "127.0.0.1",
            "LOG_FILE": str(workdir / "bridge.log"),
            "DB_PATH": str(workdir / "centralita.db"),
            # Media starts once every call of the step is up, which takes a while at 200 calls: the watchdogs
            # must not give those calls up meanwhile (they are not what is measured).
            "RTP_TIMEOUT": "600",
            "REPLY_TIMEOUT": "300",
            "APPEND_MS": str(append_ms),
        }
    )


def run_step(calls: int, options: Options, probe: WsProbe, gc_probe: GcProbe, rss_before: int) -> StepResult:
    """One step of ``calls`` calls; ``rss_before`` is the bridge's RSS before the ramp's first call."""
    harness_cpus = options.harness_cpus
    speech = options.speech
    asterisk = AsteriskProcess(harness_cpus, options.harness == "loop", speech)
    fake: FakeRealtimeProcess | None = None
    started: list[Call] = []
    failed = 0
    media_loop = MediaLoop() if options.engine == "loop" else None
    pacer = PacerThread() if options.shared_pacer and media_loop is None else None
    with tempfile.TemporaryDirectory(prefix="centralita-bench-") as tmp:
        records: CallRecords | None = None
        writer: RecordWriter | None = None
        try:
            fake = FakeRealtimeProcess(harness_cpus, options.harness, options.deltas, speech is not None)
            settings = _settings(fake, asterisk, Path(tmp), options.append_ms)
            records = CallRecords(settings.db_path)
            writer = RecordWriter("bench")
            queued = QueuedRecords(records, writer)
            password = settings.ari_password.reveal()
            rest = AriRest(AriEndpoint(settings.ari_url, settings.ari_user, password, settings.ari_app))
            tools = ToolRegistry()
            channel_ids = [f"bench-{calls}-{index}" for index in range(calls)]
            asterisk.incoming_calls(settings.ari_app, channel_ids)
            started = [
                Call(
                    channel_id=channel_id,
                    direction=Direction.INBOUND,
                    caller=CALLER,
                    callee=CALLEE,
                    settings=settings,
                    rest=rest,
                    records=queued,
                    tools=tools,
                    instructions="Repite lo que oyes.",
                    rng=random.Random(index),
                    pacer=pacer,
                    media_loop=media_loop,
                )
                for index, channel_id in enumerate(channel_ids)
            ]
            began = time.monotonic()
            with ThreadPoolExecutor(max_workers=16) as pool:
                list(pool.map(Call.start, started))
            failed = sum(call.state.ended.is_set() for call in started)
            if failed:
                log.warning("%d of %d calls failed to start: measuring the others", failed, calls)
            log.info(
                "%d calls up in %.1f s; warming up %.0f s", calls - failed, time.monotonic() - began, options.warmup
            )
            asterisk.play()
            time.sleep(options.warmup)

            rss_running = rss_bytes()  # before the probe records anything: the calls' memory, not the bench's
            threads_start = thread_cpu_seconds()
            probe.start()
            collected = asterisk.record(options.duration, {"bridge": os.getpid(), "fake": fake.pid})
            probe.stop()
            collected["rss"] = (rss_running, rss_before)
            collected["gc_tracked"] = len(gc.get_objects())  # with the calls up (frozen objects left out)
            threads_end = thread_cpu_seconds()
        finally:
            with ThreadPoolExecutor(max_workers=32) as pool:
                list(pool.map(lambda call: call.end(Outcome.HUNG_UP_BY_CALLER), started))
            if pacer is not None:
                pacer.close()
            if media_loop is not None:
                media_loop.close()
            if writer is not None:
                writer.close()
            if records is not None:
                records.close()
            if fake is not None:
                fake.stop()
            asterisk.stop()

    window_start, window_end = collected["window"]
    wall = (window_end - window_start) / 1e9
    cpu: dict[str, float] = collected["cpu"]
    split = {kind: threads_end[kind] - threads_start.get(kind, 0.0) for kind in threads_end}
    total = sum(split.values()) or 1.0
    log.info(
        "bridge CPU by thread kind (share of the bridge's): %s",
        ", ".join(f"{kind} {100 * seconds / total:.0f}%" for kind, seconds in sorted(split.items()) if seconds),
    )
    collections, longest, longest_cpu, full = gc_probe.window(window_start, window_end)
    gc_probe.pauses.clear()
    cpu["gc_collections"], cpu["gc_max_pause_ms"], cpu["gc_max_pause_cpu_ms"] = collections, longest, longest_cpu
    cpu["gc_full_collections"], cpu["gc_tracked_objects"] = full, collected["gc_tracked"]
    result = analyse(calls, failed, wall, options, probe, collected, cpu)
    probe.sent, probe.received = [], []
    return result


# --- Analysis --------------------------------------------------------------------------------------------


def rtp_slots(rtp_ts: I64) -> I64:
    """Each packet's 20 ms slot, counted from the first packet's, by its RTP timestamp (packets in arrival order).

    Signed 32-bit steps: a packet read out of order (or a clock step between two reads' timestamps) moves the
    grid back by its slots, instead of 2**32 samples forward (a jitter of days).
    """
    steps = (np.diff(rtp_ts) + (1 << 31)) % (1 << 32) - (1 << 31)
    return np.cumsum(np.concatenate(([0], steps // FRAME_BYTES)))


def leg_grids(t_out: I64, legs: I64, rtp_ts: I64) -> Iterator[tuple[I64, I64, I64]]:
    """Per leg with two frames or more: its rows in arrival order, their 20 ms slots (``rtp_slots``), and each
    frame's offset from its slot (arrival less slot time; a frame late on its grid has a larger offset)."""
    for leg in np.unique(legs):
        rows = np.flatnonzero(legs == leg)
        rows = rows[np.argsort(t_out[rows], kind="stable")]
        if len(rows) < 2:
            continue
        slots = rtp_slots(rtp_ts[rows])
        yield rows, slots, t_out[rows] - slots * FRAME_NS


def _percentile(values: npt.NDArray[Any], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def _ms(values: npt.NDArray[Any], q: float) -> float:
    return round(_percentile(values, q) / 1e6, 3)


def _column(raw: bytes) -> I64:
    return np.frombuffer(raw, dtype=np.int64).copy()


def analyse(
    calls: int,
    failed: int,
    wall: float,
    options: Options,
    probe: WsProbe,
    collected: dict[str, Any],
    cpu: dict[str, float],
) -> StepResult:
    # In: each append on the WebSocket, matched to its RTP packet's send time by the stamp.
    window_start, window_end = collected["window"]
    appends: list[tuple[int, int, int, int]] = []
    for t_ws, chunk in probe.sent:
        if not window_start <= t_ws <= window_end:
            continue
        payload = _unmask_client_frame(chunk)
        for stamp in _stamps_after(payload, APPEND_KEY) if payload is not None else []:
            appends.append((t_ws, *stamp))
    in_rows = np.array(appends, dtype=np.int64).reshape(-1, 4)
    latency_in = in_rows[:, 0] - in_rows[:, 3]

    # Out: when each echoed frame, in whichever delta, reached the bridge's socket.
    deltas = delta_arrivals(probe.received)

    received = {name: _column(raw) for name, raw in collected["received"].items()}
    t_out, legs, frames, rtp_ts = received["t_out"], received["leg"], received["frame"], received["rtp_ts"]
    deviation_parts: list[I64] = []
    lateness_parts: list[I64] = []
    latency_out_parts: list[I64] = []
    slot_wait_parts: list[I64] = []
    underruns = 0
    for rows, slots, offsets in leg_grids(t_out, legs, rtp_ts):
        underruns += int(np.sum(np.maximum(np.diff(slots) - 1, 0)))
        deviation_parts.append(np.abs(offsets - np.int64(np.median(offsets))))
        anchor = offsets.min()
        lateness = offsets - anchor
        lateness_parts.append(lateness)
        deadlines = anchor + slots * FRAME_NS
        keys = (legs[rows] << 32) | frames[rows]
        t_delta = np.array([deltas.get(int(key), -1) for key in keys], dtype=np.int64)
        known = t_delta >= 0
        ready = np.maximum(t_delta[known], deadlines[known])
        latency_out_parts.append(t_out[rows][known] - ready)
        slot_wait_parts.append(np.maximum(deadlines[known] - t_delta[known], 0))
    deviation = np.concatenate(deviation_parts) if deviation_parts else np.zeros(0, np.int64)
    lateness_all = np.concatenate(lateness_parts) if lateness_parts else np.zeros(0, np.int64)
    latency_out = np.concatenate(latency_out_parts) if latency_out_parts else np.zeros(0, np.int64)
    slot_wait = np.concatenate(slot_wait_parts) if slot_wait_parts else np.zeros(0, np.int64)

    # Lost: frames sent in the window (but for its last 200 ms, still in flight) that never came back.
    sent = {name: _column(raw) for name, raw in collected["sent"].items()}
    cutoff = sent["t_in"].max() - 200_000_000 if len(sent["t_in"]) else 0
    # With barge-ins, the speech and the interrupted replies' unplayed ends are not expected back.
    due = sent["t_in"] < cutoff
    if options.speech is not None:
        due &= options.speech.expected(sent["leg"], sent["frame"])
    expected = (sent["leg"][due] << 32) | sent["frame"][due]
    lost = int(np.sum(~np.isin(expected, (legs << 32) | frames)))

    # Barge-in: speech starts at least 500 ms before the window's end (the reply's last frames are then in it).
    barge_in, barge_in_cut = (
        barge_in_latencies(options.speech, sent, received, window_end - 500_000_000, deltas, window_start)
        if options.speech is not None
        else (np.zeros(0, np.int64), np.zeros(0, np.bool_))
    )
    # The harness's own pacing: how late the fake Asterisk sent each caller frame after its slot.
    sends_late = send_lateness(sent)
    harness_late = int(np.sum(sends_late > options.late_ms * 1e6))

    # The harness: its two processes share the harness CPU when pinned to one (this machine's 2 cores), so
    # their sum is what saturates it; unpinned, each process is one Python thread of work at most. A harness
    # that cannot keep its 20 ms schedule (over 1 % of the slots given up, or of its frames sent late: its CPU
    # taken by the machine's other programs, or by its own work) is saturated too, whatever its CPU figure.
    harness_cpu = cpu["fake_cpu_pct"] + cpu["asterisk_cpu_pct"]
    shared_core = options.harness_cpus is not None and len(options.harness_cpus) == 1
    skipped = int(collected.get("skipped", 0))
    slots_due = (calls - failed) * wall * 1e9 / FRAME_NS
    harness_saturated = bool(
        (harness_cpu if shared_core else max(cpu["fake_cpu_pct"], cpu["asterisk_cpu_pct"])) > options.harness_max_pct
        or skipped > 0.01 * slots_due
        or harness_late > 0.01 * max(len(sends_late), 1)
    )
    rss_now, rss_before = collected["rss"]

    kernel = probe.kernel_stamped + int(collected["kernel_stamped"])
    total_reads = len(probe.received) + len(t_out) + int(collected["unstamped"])
    return StepResult(
        calls=calls,
        calls_failed=failed,
        duration_s=round(wall, 2),
        frames_sent=len(sent["t_in"]),
        frames_in=len(in_rows),
        frames_out=len(t_out),
        frames_lost=lost,
        late_frames=int(np.sum(lateness_all > options.late_ms * 1e6)),
        jitter_p50_ms=_ms(deviation, 50),
        jitter_p99_ms=_ms(deviation, 99),
        jitter_max_ms=_ms(deviation, 100),
        lateness_p99_ms=_ms(lateness_all, 99),
        lateness_max_ms=_ms(lateness_all, 100),
        latency_in_p50_ms=_ms(latency_in, 50),
        latency_in_p99_ms=_ms(latency_in, 99),
        latency_in_max_ms=_ms(latency_in, 100),
        latency_out_p50_ms=_ms(latency_out, 50),
        latency_out_p99_ms=_ms(latency_out, 99),
        latency_out_max_ms=_ms(latency_out, 100),
        slot_wait_p50_ms=_ms(slot_wait, 50),
        round_trip_p50_ms=_ms(t_out - received["t_in"], 50),
        underrun_slots=underruns,
        bridge_cpu_pct=round(cpu["bridge_cpu_pct"], 1),
        cpu_per_call_pct=round(cpu["bridge_cpu_pct"] / max(calls - failed, 1), 3),
        # Per call actually offered: a starved harness sends fewer frames than its calls should.
        cpu_per_call_served_pct=round(
            cpu["bridge_cpu_pct"] / max(len(sent["t_in"]) / (wall * 1e9 / FRAME_NS), 1e-9), 3
        ),
        fake_cpu_pct=round(cpu["fake_cpu_pct"], 1),
        asterisk_cpu_pct=round(cpu["asterisk_cpu_pct"], 1),
        harness_cpu_pct=round(harness_cpu, 1),
        # Per call actually served: a starved harness sends fewer frames than its calls should, and its CPU
        # per frame is what says how many calls it could carry given its core.
        harness_cpu_per_call_pct=round(harness_cpu / max(len(sent["t_in"]) / (wall * 1e9 / FRAME_NS), 1e-9), 3),
        fake_wait_pct=round(cpu.get("fake_wait_pct", float("nan")), 1),
        asterisk_wait_pct=round(cpu.get("asterisk_wait_pct", float("nan")), 1),
        machine_cpu_pct=round(cpu["machine_cpu_pct"], 1),
        other_cpu_pct=round(
            other_cpu(cpu["machine_cpu_pct"], cpu["bridge_cpu_pct"] + cpu["fake_cpu_pct"] + cpu["asterisk_cpu_pct"]), 1
        ),
        # The harness or the whole machine at its limit: the harness, not only the bridge, is then behind.
        saturated=harness_saturated or cpu["machine_cpu_pct"] > 95 * (os.cpu_count() or 1),
        harness_saturated=harness_saturated,
        bridge_rss_mb=round(rss_now / 2**20, 1),
        bridge_rss_per_call_kb=round((rss_now - rss_before) / 1024 / max(calls - failed, 1), 1),
        skipped_slots=skipped,
        gc_collections=int(cpu["gc_collections"]),
        gc_max_pause_ms=round(cpu["gc_max_pause_ms"], 2),
        gc_max_pause_cpu_ms=round(cpu["gc_max_pause_cpu_ms"], 2),
        gc_full_collections=int(cpu["gc_full_collections"]),
        gc_tracked_objects=int(cpu["gc_tracked_objects"]),
        kernel_stamped_pct=round(100 * kernel / total_reads, 1) if total_reads else 0.0,
        barge_ins=len(barge_in),
        barge_in_p50_ms=_ms(barge_in, 50),
        barge_in_p99_ms=_ms(barge_in, 99),
        barge_in_max_ms=_ms(barge_in, 100),
        barge_ins_cut=int(np.sum(barge_in_cut)),
        barge_in_cut_p50_ms=_ms(barge_in[barge_in_cut], 50),
        barge_in_cut_p99_ms=_ms(barge_in[barge_in_cut], 99),
        harness_late_sends=harness_late,
        harness_send_late_p99_ms=_ms(sends_late, 99),
    )


# --- The ramp --------------------------------------------------------------------------------------------

_TABLE = (
    ("calls", "calls", "{:>5}"),
    ("late", "late_frames", "{:>5}"),
    ("lost", "frames_lost", "{:>5}"),
    ("jit50", "jitter_p50_ms", "{:>6.3f}"),
    ("jit99", "jitter_p99_ms", "{:>6.3f}"),
    ("in50", "latency_in_p50_ms", "{:>6.3f}"),
    ("in99", "latency_in_p99_ms", "{:>6.3f}"),
    ("out50", "latency_out_p50_ms", "{:>6.3f}"),
    ("out99", "latency_out_p99_ms", "{:>6.3f}"),
    ("lat.max", "lateness_max_ms", "{:>7.2f}"),
    ("cpu/call", "cpu_per_call_pct", "{:>8.3f}"),
    ("c/served", "cpu_per_call_served_pct", "{:>8.3f}"),
    ("bridge%", "bridge_cpu_pct", "{:>7.1f}"),
    ("fake%", "fake_cpu_pct", "{:>6.1f}"),
    ("ast%", "asterisk_cpu_pct", "{:>5.1f}"),
    ("harn%", "harness_cpu_pct", "{:>5.1f}"),
    ("h/call", "harness_cpu_per_call_pct", "{:>6.3f}"),
    ("h.wait%", "asterisk_wait_pct", "{:>7.1f}"),
    ("machine%", "machine_cpu_pct", "{:>8.1f}"),
    ("other%", "other_cpu_pct", "{:>6.1f}"),
    ("gc.max", "gc_max_pause_ms", "{:>6.2f}"),
    ("gc.full", "gc_full_collections", "{:>7d}"),
    ("kB/call", "bridge_rss_per_call_kb", "{:>7.0f}"),
    ("bi", "barge_ins", "{:>5}"),
    ("bi50", "barge_in_p50_ms", "{:>6.1f}"),
    ("bi99", "barge_in_p99_ms", "{:>6.1f}"),
    ("cut", "barge_ins_cut", "{:>5}"),
    ("cut99", "barge_in_cut_p99_ms", "{:>6.1f}"),
    ("skip", "skipped_slots", "{:>6}"),
    ("h.late", "harness_late_sends", "{:>6}"),
    ("h.sat", "harness_saturated", "{!s:>5}"),
    ("sat", "saturated", "{!s:>5}"),
)


def _row(result: StepResult | None) -> str:
    if result is None:
        return " ".join(f"{title:>{max(5, len(title))}}" for title, _, _ in _TABLE)
    values = vars(result)
    return " ".join(spec.format(values[name]).rjust(max(5, len(title))) for title, name, spec in _TABLE)


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--steps", default="25,50,100,150,200", help="call counts of the ramp, comma-separated (default %(default)s)"
    )
    parser.add_argument("--duration", type=float, default=8.0, help="seconds measured per step (default %(default)s)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring (default %(default)s)")
    parser.add_argument(
        "--late-ms", type=float, default=5.0, help="a frame sent later than this after its slot is late (default 5)"
    )
    parser.add_argument(
        "--all-steps",
        action="store_true",
        help="run every step; by default the ramp stops after a step with over 1%% of its frames late or lost",
    )
    parser.add_argument(
        "--pacer",
        choices=("shared", "per-call"),
        default="shared",
        help="one PacerThread for all calls, as the service should run them, or one per call (default shared)",
    )
    parser.add_argument(
        "--append-ms",
        type=int,
        choices=range(20, 101, 20),
        default=APPEND_MS_DEFAULT,
        metavar="{20,40,60,80,100}",
        help="the bridge's APPEND_MS: caller audio per input_audio_buffer.append with --engine loop (the threads "
        "engine appends every 20 ms frame); 20 disables batching (default %(default)s)",
    )
    parser.add_argument(
        "--engine",
        choices=("threads", "loop"),
        default="loop",
        help="the bridge's MEDIA_ENGINE: loop (one event loop reads, paces and sends every call's RTP and serves its "
        "WebSocket, as the service runs by default; --pacer is then ignored) or threads (a thread per call reads "
        "its RTP, --pacer paces) (default loop)",
    )
    parser.add_argument(
        "--gc-full-every",
        type=int,
        default=collector.FULL_EVERY,
        metavar="N",
        help="with gc.freeze(): a full collection after N generation-1 collections, as the service does "
        "(default %(default)s; CPython's own is 10)",
    )
    parser.add_argument(
        "--no-gc-freeze",
        dest="gc_freeze",
        action="store_false",
        help="do not gc.freeze() after start-up (the service should: see docs/PERFORMANCE.md)",
    )
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not pin the bridge to one CPU and the fake Realtime server and the fake Asterisk to the others",
    )
    parser.add_argument(
        "--harness",
        choices=("loop", "threads"),
        default="loop",
        help="loop: the fake Asterisk's legs on one epoll loop and the lean echo peer (echo_realtime); threads: "
        "the unit tests' fakes (two media threads, fake_realtime on asyncio/websockets), to compare (default loop)",
    )
    parser.add_argument(
        "--deltas",
        choices=("worst", "realistic"),
        default="worst",
        help="worst: the echo sends one delta per 20 ms frame; realistic: deltas of 100-300 ms, each at once, as "
        "the real API sends them (--harness loop only; default worst)",
    )
    parser.add_argument(
        "--barge-in-every",
        type=float,
        default=None,
        metavar="SECONDS",
        help="each caller speaks over the assistant for 200 ms every SECONDS (the echo peer's VAD then sends "
        "speech_started and cancels the reply; the bench times the bridge stopping its playout); 0: never "
        "(default 3; --harness threads: 0, fake_realtime has no VAD)",
    )
    parser.add_argument(
        "--harness-max-pct",
        type=float,
        default=85.0,
        help="the harness is saturated above this %% of its core (default %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.deltas == "realistic" and args.harness != "loop":
        parser.error("--deltas realistic needs --harness loop (fake_realtime's echo sends a delta per frame)")
    if args.barge_in_every is None:
        args.barge_in_every = 3.0 if args.harness == "loop" else 0.0
    if args.barge_in_every and args.harness != "loop":
        parser.error("--barge-in-every needs --harness loop (fake_realtime's echo has no VAD): give 0")
    period = round(args.barge_in_every * 1e9 / FRAME_NS)
    if args.barge_in_every and period < SPEECH_FRAMES + NOT_PLAYED_FRAMES + 10:
        parser.error(
            f"--barge-in-every {args.barge_in_every} is too short: the reply between two barge-ins needs "
            f"{(SPEECH_FRAMES + NOT_PLAYED_FRAMES + 10) * FRAME_NS / 1e9:g} s or more (or 0: none)"
        )
    steps = sorted({int(step) for step in args.steps.split(",") if step.strip()})
    if not steps or steps[0] < 1:
        parser.error("--steps needs call counts of 1 or more")
    bridge_cpus, harness_cpus = _cpus(args.pin)
    return Options(
        steps=steps,
        duration=args.duration,
        warmup=args.warmup,
        late_ms=args.late_ms,
        all_steps=args.all_steps,
        gc_freeze=args.gc_freeze,
        gc_full_every=args.gc_full_every,
        shared_pacer=args.pacer == "shared",
        bridge_cpus=bridge_cpus,
        harness_cpus=harness_cpus,
        harness=args.harness,
        deltas=args.deltas,
        engine=args.engine,
        append_ms=args.append_ms,
        speech=SpeechPlan(period) if period else None,
        harness_max_pct=args.harness_max_pct,
    )


def no_nan(value: Any) -> Any:
    """NaN (a percentile of nothing, e.g. no echo came back in the window) as null: JSON has no NaN."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {key: no_nan(item) for key, item in value.items()}
    if isinstance(value, list):
        return [no_nan(item) for item in value]
    return value


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    began = time.monotonic()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("centralita").setLevel(logging.WARNING)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    _pin(0, options.bridge_cpus)  # before any thread starts: threads inherit it
    probe = WsProbe()
    probe.install()
    noise = timer_noise(3.0)
    log.info("timer noise on the bridge's CPU: %s", noise)
    gc_probe = GcProbe()
    if options.gc_freeze:  # what the service does once started (media/collector.py)
        collector.settle(options.gc_full_every)
    results: list[StepResult] = []
    # Measured from before the ramp, not before each step: a step reuses the memory the one before freed.
    rss_before = rss_bytes()
    for calls in options.steps:
        log.info("step: %d calls", calls)
        result = run_step(calls, options, probe, gc_probe, rss_before)
        results.append(result)
        if len(results) == 1:
            print(_row(None), file=sys.stderr)
        print(_row(result), file=sys.stderr, flush=True)
        overloaded = max(result.late_frames, result.frames_lost) > 0.01 * max(result.frames_sent, 1)
        if overloaded and not options.all_steps and calls != options.steps[-1]:
            log.info("over 1%% of the frames late or lost at %d calls: the ramp stops here", calls)
            break
    best: StepResult | None = None
    for result in results:  # the ramp stops counting at the first step with a late frame
        if result.late_frames:
            break
        best = result
    final = results[-1]
    headline = ("calls", "late_frames", "jitter_p99_ms", "latency_in_p99_ms", "latency_out_p99_ms", "cpu_per_call_pct")
    summary = {
        **vars(final),
        "max_calls_no_late": best.calls if best else 0,
        "at_max_calls_no_late": {name: vars(best)[name] for name in headline} if best else None,
        "steps": [result.calls for result in results],
        "steps_planned": options.steps,
        "late_frames_per_step": [result.late_frames for result in results],
        **noise,
        "wall_s": round(time.monotonic() - began, 1),
        "pinned": options.bridge_cpus is not None,
        "pacer": "loop" if options.engine == "loop" else "shared" if options.shared_pacer else "per-call",
        "engine": options.engine,
        "append_ms": options.append_ms if options.engine == "loop" else 20,
        "gc_freeze": options.gc_freeze,
        "gc_full_every": options.gc_full_every if options.gc_freeze else 10,
        "harness": options.harness,
        "deltas": options.deltas,
        "barge_in_every_s": options.speech.period * FRAME_NS / 1e9 if options.speech else 0.0,
        "barge_in_p99_ms_per_step": [result.barge_in_p99_ms for result in results],
        "harness_max_pct": options.harness_max_pct,
        "harness_cpu_pct_per_step": [result.harness_cpu_pct for result in results],
        "harness_cpu_per_call_pct_per_step": [result.harness_cpu_per_call_pct for result in results],
        "harness_saturated_per_step": [result.harness_saturated for result in results],
        "bridge_rss_per_call_kb_per_step": [result.bridge_rss_per_call_kb for result in results],
        "load_average": list(os.getloadavg()),
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": sys.version.split()[0],
    }
    print(json.dumps(no_nan(summary), allow_nan=False), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
