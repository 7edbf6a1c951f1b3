"""The whole-box bench's own arithmetic (files/host/bench_box.py): loss, lateness, jitter and round trip from
the legs' columns, and how it learns where each answered call's audio goes.

The bench is a script, not a package: it is loaded from its file, with the two it builds on (the media bench's
legs and the soak run's box helpers). Columns are built here by hand on a fake clock, as ``StampedLegs``
records them, so each figure can be checked against what it must be.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
from paths import REPO
from test_bench_deltas import bench

FRAME_NS = 20_000_000
MS = 1_000_000


def load(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


assert bench.StampedLegs  # bench_media is loaded (and registered) before bench_box imports it
load("soak", REPO / "files" / "host" / "soak.py")
box = load("bench_box", REPO / "files" / "host" / "bench_box.py")


def collected(rows: list[tuple[int, int, int, int]], sent: list[tuple[int, int, int]], window_end: int) -> dict:
    """``StampedLegs.record``'s result: received rows (arrival, leg, frame, send time), sent rows (leg, frame,
    send time); the RTP timestamp is the frame's own slot, as a pacer that keeps its grid stamps it."""
    received = {
        "t_out": [row[0] for row in rows],
        "leg": [row[1] for row in rows],
        "frame": [row[2] for row in rows],
        "t_in": [row[3] for row in rows],
        "rtp_ts": [(5000 + row[2] * 160) % (1 << 32) for row in rows],
    }
    sent_columns = {
        "leg": [row[0] for row in sent],
        "frame": [row[1] for row in sent],
        "t_in": [row[2] for row in sent],
    }
    return {
        "window": (0, window_end),
        "received": {name: np.array(column, dtype=np.int64).tobytes() for name, column in received.items()},
        "sent": {name: np.array(column, dtype=np.int64).tobytes() for name, column in sent_columns.items()},
        "unstamped": 3,
    }


def test_loss_lateness_jitter_and_round_trip_are_counted_frame_by_frame() -> None:
    sent = [(leg, frame, frame * FRAME_NS + leg * MS) for leg in (0, 1) for frame in range(200)]
    rows = []
    for leg, frame, t_in in sent:
        if (leg, frame) == (1, 50):
            continue  # lost
        delay = 60 * MS + (8 * MS if (leg, frame) == (0, 120) else 0)  # one frame 8 ms late
        rows.append((t_in + delay, leg, frame, t_in))
    figures = box.analyse_frames(collected(rows, sent, window_end=200 * FRAME_NS), late_ms=5.0)
    assert figures["frames_sent"] == 400
    assert figures["frames_back"] == 399
    assert figures["lost"] == 1
    assert figures["late"] == 1
    assert figures["unstamped"] == 3
    assert figures["round_trip_p50_ms"] == 60.0
    assert figures["round_trip_max_ms"] == 68.0
    assert figures["jitter_p50_ms"] == 0.0
    # Frames sent in the window's last second may still be on their way back: not counted as lost.
    assert figures["lost_pct"] == round(100 / (2 * 150), 3)


def test_a_frame_late_by_less_than_the_limit_is_jitter_not_late() -> None:
    sent = [(0, frame, frame * FRAME_NS) for frame in range(100)]
    rows = [(t_in + 40 * MS + (3 * MS if frame % 10 == 0 else 0), 0, frame, t_in) for _, frame, t_in in sent]
    figures = box.analyse_frames(collected(rows, sent, window_end=100 * FRAME_NS), late_ms=5.0)
    assert figures["late"] == 0
    assert figures["lost"] == 0
    assert figures["jitter_p99_ms"] == 3.0


def test_answered_calls_start_their_legs_and_a_half_written_line_waits(tmp_path: Path) -> None:
    class Media:
        def __init__(self) -> None:
            self.playing: list[object] = []

        def play(self, leg: object) -> None:
            self.playing.append(leg)

    legs = {port: types.SimpleNamespace(remote=("127.0.0.1", 9)) for port in (40000, 40002)}
    answered = tmp_path / "answered"
    answered.write_text("40000 12000\n99999 12002\n40002 120", encoding="ascii")
    media = Media()
    started, read = box.follow_answers(answered, legs, media, 0)
    assert started == 1  # the unknown leg is ignored, the half-written line left for later
    assert legs[40000].remote == ("127.0.0.1", 12000)
    assert media.playing == [legs[40000]]
    with answered.open("a", encoding="ascii") as file:
        file.write("04\n")
    started, read = box.follow_answers(answered, legs, media, read)
    assert started == 1
    assert legs[40002].remote == ("127.0.0.1", 12004)
    assert box.follow_answers(answered, legs, media, read) == (0, read)
