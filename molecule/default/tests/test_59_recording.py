"""Call recording on the box: a live call recorded with its notice, played back in the console, then purged.

asterisk_recording_enabled renders one dialplan global, CENTRALITA_RECORDING (the template tests prove it); the
directory, its group and the purge timer are on every box. This test turns the global on in the running Asterisk
(what the role's setting does, without a playbook run), places a provider call that talks to the assistant, and
turns it off again whatever happens.
"""

from __future__ import annotations

import base64
import math
import struct

import pytest
from conftest import BOX, PROJECT, call_record, place_speaking_call, wait_until
from test_57_console import SUPERVISOR, VIEWER, Browser

testinfra_hosts = [f"podman://{BOX}"]

RECORDINGS = "/var/spool/centralita/recordings"  # asterisk_recording_dir's default
NOTICE = PROJECT / "roles/asterisk/files/sounds/aviso-grabacion.ulaw"
FRAME = 160  # 20 ms at 8 kHz


def set_recording(host, value: str) -> None:
    host.run_expect([0], f"asterisk -rx 'dialplan set global CENTRALITA_RECORDING {value}'")
    shown = host.check_output("asterisk -rx 'dialplan show globals'")
    assert f"CENTRALITA_RECORDING={value}" in shown, shown


@pytest.fixture(scope="module")
def recorded_call(host) -> str:
    set_recording(host, "yes")
    try:
        call_id, _log = place_speaking_call(host)
    finally:
        set_recording(host, "no")
    assert wait_until(lambda: call_record(host, call_id).get("ended_at") is not None, 30, 0.5)
    # MixMonitor closes the file once the channel is gone.
    assert wait_until(lambda: host.file(f"{RECORDINGS}/{call_id}.wav").exists, 30, 0.5)
    return call_id


def ulaw_to_linear(byte: int) -> int:
    byte = ~byte & 0xFF
    magnitude = ((byte & 0x0F) << 3 | 0x84) << ((byte & 0x70) >> 4)
    return (0x84 - magnitude) if byte & 0x80 else (magnitude - 0x84)


def envelope(samples: list[int]) -> list[float]:
    """Loudness of each 20 ms frame."""
    frames = len(samples) // FRAME
    return [math.sqrt(sum(s * s for s in samples[i * FRAME : (i + 1) * FRAME]) / FRAME) for i in range(frames)]


def correlation(a: list[float], b: list[float]) -> float:
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    cov = sum((x - mean_a) * (y - mean_b) for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum((x - mean_a) ** 2 for x in a) * sum((y - mean_b) ** 2 for y in b))
    return cov / norm if norm else 0.0


def wav_samples(data: bytes) -> list[int]:
    assert data[:4] == b"RIFF", data[:16]
    assert data[8:12] == b"WAVE", data[:16]
    # Asterisk's WAV: 16-bit signed linear, 8 kHz, mono; the samples follow the "data" chunk header.
    channels, rate = struct.unpack("<HI", data[22:28])
    bits = struct.unpack("<H", data[34:36])[0]
    assert (channels, rate, bits) == (1, 8000, 16)
    start = data.index(b"data") + 8
    body = data[start : start + (len(data) - start) // 2 * 2]
    return list(struct.unpack(f"<{len(body) // 2}h", body))


def test_the_call_is_recorded_with_its_notice_and_the_assistant_still_answers(host, recorded_call):
    record = call_record(host, recorded_call)
    assert record["answered_at"] is not None, record  # the notice came before the answer, and the call went on
    assert record["outcome"] == "hung_up_by_caller", record
    wav = host.file(f"{RECORDINGS}/{recorded_call}.wav")
    assert (wav.user, wav.group, oct(wav.mode)) == ("asterisk", "centralita-recordings", "0o640")
    samples = wav_samples(base64.b64decode(host.check_output(f"base64 -w0 {wav.path}")))
    notice = envelope([ulaw_to_linear(b) for b in NOTICE.read_bytes()])
    recorded = envelope(samples)
    assert len(recorded) > len(notice) + 5 * 50, "the recording should hold the notice and seconds of the call"
    # The notice is the first thing in the recording: find it within the first second.
    best = max(correlation(notice, recorded[lag : lag + len(notice)]) for lag in range(0, 50))
    assert best > 0.9, f"the notice was not found at the start of the recording (best correlation {best:.2f})"


def test_a_supervisor_plays_the_recording_and_a_viewer_cannot(host, recorded_call):
    size = host.file(f"{RECORDINGS}/{recorded_call}.wav").size
    supervisor = Browser(host, "recording-supervisor")
    assert supervisor.log_in(*SUPERVISOR) == 302
    code, page = supervisor.get(f"/historial/{recorded_call}")
    assert code == 200, page
    assert f'src="/historial/{recorded_call}/grabacion"' in page
    played = host.run(
        f"curl -s -m 20 -b {supervisor.jar} -o /dev/null -w '%{{http_code}} %{{size_download}} %{{content_type}}'"
        f" http://127.0.0.1:8090/historial/{recorded_call}/grabacion"
    )
    assert played.stdout.split() == ["200", str(size), "audio/wav"], played.stdout
    viewer = Browser(host, "recording-viewer")
    assert viewer.log_in(*VIEWER) == 302
    assert "<audio" not in viewer.get(f"/historial/{recorded_call}")[1]
    assert viewer.get(f"/historial/{recorded_call}/grabacion")[0] == 403


def test_the_daily_purge_deletes_only_recordings_past_the_retention(host, recorded_call):
    old = f"{RECORDINGS}/purge-test-old.wav"
    host.run_expect([0], f"runuser -u asterisk -- cp {RECORDINGS}/{recorded_call}.wav {old}")
    host.run_expect([0], f"touch -d '31 days ago' {old}")  # asterisk_recording_retention_days: 30
    assert host.service("centralita-recordings-purge.timer").is_enabled
    started = host.run_expect([0], "systemctl start centralita-recordings-purge.service")
    assert started.rc == 0
    assert not host.file(old).exists
    assert host.file(f"{RECORDINGS}/{recorded_call}.wav").exists
    journal = host.check_output("journalctl -u centralita-recordings-purge.service --no-pager -o cat")
    assert "deleted recording purge-test-old.wav (older than 30 days)" in journal
