"""The media bench's matching of echoed frames to the deltas that carried them (``delta_arrivals``).

The bench is a script, not a package: it is loaded from its file. Reads are built here by hand as the probe
records them (arrival, socket, bytes), deltas split across reads and carrying one or many stamped frames.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import sys
import types

from paths import REPO


def load_bench() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("bench_media", REPO / "bridge" / "bench" / "bench_media.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_media", module)
    spec.loader.exec_module(module)
    return module


bench = load_bench()


def frame(leg: int, number: int) -> bytes:
    return bench.STAMP.pack(bench.MAGIC, leg, number, 123) + bench.FILL


def delta(audio: bytes) -> bytes:
    """A server text frame (unmasked) carrying a delta event, as the echo peer writes it."""
    event = {"type": "response.output_audio.delta", "item_id": "i", "delta": base64.b64encode(audio).decode()}
    payload = json.dumps(event).encode()
    assert len(payload) >= 126
    return bytes([0x81, 126]) + len(payload).to_bytes(2, "big") + payload


def test_every_frame_of_a_delta_takes_the_time_of_the_read_that_completed_it() -> None:
    first = delta(frame(1, 7))
    many = delta(frame(2, 0) + frame(2, 1) + frame(2, 2))
    stream = first + many
    cut = len(first) + 40  # the second delta starts in the first read and ends in the second
    reads = [(1000, 5, stream[:cut]), (2000, 5, stream[cut:])]
    found = bench.delta_arrivals(reads)
    assert found == {(1 << 32) | 7: 1000, (2 << 32) | 0: 2000, (2 << 32) | 1: 2000, (2 << 32) | 2: 2000}


def test_sockets_are_joined_apart_and_partial_or_foreign_deltas_are_ignored() -> None:
    a, b = delta(frame(1, 1)), delta(frame(2, 2))
    reads = [
        (10, 1, a[:30]),  # socket 1 ...
        (20, 2, b),  # ... socket 2, between its reads ...
        (30, 1, a[30:]),  # ... and socket 1 again: still one delta
        (40, 2, delta(b"\xff" * 160)),  # no stamp: not a bench frame
        (50, 2, delta(frame(3, 3))[:-20]),  # cut off before its end: never whole
    ]
    assert bench.delta_arrivals(reads) == {(1 << 32) | 1: 30, (2 << 32) | 2: 20}
