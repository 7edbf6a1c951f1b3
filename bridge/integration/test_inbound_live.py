"""A whole inbound call through the real Asterisk, the bridge service and the fake Realtime server.

The caller is a Local channel dialled into the box's from-voip context, exactly where the provider's calls
land: the dialplan hands it to the Stasis app, the service answers it, and the test plays the caller through
its own ExternalMedia leg (sending speech, recording what the assistant says back). Same configuration as
test_ari_live.py.
"""

from __future__ import annotations

import contextlib
import queue
import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_ari_live import box_command, wait_for
from test_ari_live import endpoint as endpoint  # the same ARI credentials fixture

from centralita.calls.service import InboundService, default_instructions
from centralita.config.bridge import Settings
from centralita.media.rtp import FRAME_BYTES, RtpSender, parse
from centralita.storage.records import CallRecords
from centralita.telephony.ari import AriEndpoint, AriError, AriEvents, AriRest
from centralita.tools.call_control import builtin_tools
from centralita.tools.registry import ToolRegistry
from centralita_testing.fake_realtime import AudioTurn, FakeRealtimeServer, default_audio_dir

CALLER_APP = "centralita-itest-caller"
GREETING = (default_audio_dir() / "asistente_saludo.ulaw").read_bytes()


class CallerLeg:
    """The far end of the call: an ExternalMedia channel in a bridge with the caller's Local channel."""

    def __init__(self, rest: AriRest, channel_id: str, events: queue.Queue[dict[str, Any]]) -> None:
        self.rest = rest
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.bridge_id = rest.create_bridge()
        host, port = self.sock.getsockname()
        media = rest.external_media(CALLER_APP, f"{host}:{port}")
        self.media_id = media["id"]
        wait_for(events, "StasisStart", id=self.media_id)
        rest.add_to_bridge(self.bridge_id, channel_id)
        rest.add_to_bridge(self.bridge_id, self.media_id)
        self.asterisk = (
            media["channelvars"]["UNICASTRTP_LOCAL_ADDRESS"],
            int(media["channelvars"]["UNICASTRTP_LOCAL_PORT"]),
        )
        self.heard = bytearray()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                datagram = self.sock.recv(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            packet = parse(datagram)
            if packet is not None and packet.payload_type == 0:
                self.heard += packet.payload

    def say(self, audio: bytes) -> None:
        sender = RtpSender(random.Random(3))
        start = time.monotonic()
        for n, offset in enumerate(range(0, len(audio) - FRAME_BYTES + 1, FRAME_BYTES)):
            self.sock.sendto(sender.build(audio[offset : offset + FRAME_BYTES]), self.asterisk)
            time.sleep(max(0.0, start + (n + 1) * 0.02 - time.monotonic()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        with contextlib.suppress(AriError):
            self.rest.hangup(self.media_id)
        with contextlib.suppress(AriError):
            self.rest.destroy_bridge(self.bridge_id)


@pytest.fixture
def fake() -> Iterator[FakeRealtimeServer]:
    with FakeRealtimeServer(script=[AudioTurn(GREETING, "Hola, soy el asistente.")], pace=1.0) as server:
        yield server


@contextlib.contextmanager
def running_service(
    endpoint: AriEndpoint, fake: FakeRealtimeServer, tmp_path: Path, *, tools: ToolRegistry | None = None, **extra: str
) -> Iterator[tuple[InboundService, CallRecords]]:
    """The bridge service in this process, on the dialplan's Stasis app; ``extra``: more .env values (e.g. a
    watchdog shortened for one test); ``tools``: the assistant's tools (the built-in ones by default)."""
    settings = Settings.from_values(
        {
            "OPENAI_API_KEY": fake.api_key,
            "OPENAI_BASE_URL": fake.base_url,
            "ARI_URL": endpoint.url,
            "ARI_USER": endpoint.user,
            "ARI_PASSWORD": endpoint.password,
            "ARI_APP": "centralita",
            "WS_PING_INTERVAL": "5",
            "WS_PING_TIMEOUT": "2",
            "LOG_FILE": str(tmp_path / "inbound_openai.log"),
            "DB_PATH": str(tmp_path / "centralita.db"),
            "STATUS_FILE": str(tmp_path / "status.json"),  # not the deployed service's snapshot
            **extra,
        }
    )
    # The app name is the one the dialplan uses: the deployed service, if any, steps aside meanwhile.
    deployed = box_command("systemctl is-active openai-inbound-calls", check=False).stdout.strip() == "active"
    if deployed:
        box_command("systemctl stop openai-inbound-calls")
    records = CallRecords(settings.db_path)
    svc = InboundService(settings, records, tools or builtin_tools(), default_instructions())
    try:
        svc.start()
        assert svc.wait_connected(10)
        yield svc, records
    finally:
        svc.stop()
        records.close()
        if deployed:
            box_command("systemctl start openai-inbound-calls")


@pytest.fixture
def service(
    endpoint: AriEndpoint, fake: FakeRealtimeServer, tmp_path: Path
) -> Iterator[tuple[InboundService, CallRecords]]:
    with running_service(endpoint, fake, tmp_path) as running:
        yield running


def test_a_caller_talks_with_the_assistant_and_everything_is_released(endpoint, fake, service) -> None:
    svc, records = service
    rest = AriRest(endpoint)
    threads_before = {t.name for t in threading.enumerate()}
    caller_events: queue.Queue[dict[str, Any]] = queue.Queue()
    caller_app = AriEvents(AriEndpoint(endpoint.url, endpoint.user, endpoint.password, CALLER_APP), caller_events.put)
    caller_app.start()
    assert caller_app.wait_connected(10)
    leg: CallerLeg | None = None
    try:
        local = rest.request(
            "POST",
            "/channels",
            {"endpoint": "Local/5215550002222@from-voip", "app": CALLER_APP, "callerId": "5215550001111"},
        )
        wait_for(caller_events, "StasisStart", id=local["id"], timeout=15)
        leg = CallerLeg(rest, local["id"], caller_events)

        session = fake.wait_for_session(0, timeout=10)
        # The assistant greets first: its audio reaches the caller, non-silent and at least most of it.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(leg.heard) < len(GREETING) * 0.8:
            time.sleep(0.1)
        heard_frames = [leg.heard[i : i + FRAME_BYTES] for i in range(0, len(leg.heard), FRAME_BYTES)]
        speech_frames = [f for f in heard_frames if len(set(f)) > 4]
        assert len(speech_frames) >= 0.6 * len(GREETING) / FRAME_BYTES, len(speech_frames)

        # The caller speaks: the Realtime server receives that audio through the bridge.
        leg.say(GREETING[: 8000 * 2])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(session.audio) < 8000 * 1.5:
            time.sleep(0.1)
        received = session.audio
        assert len(received) >= 8000 * 1.5
        assert sum(1 for b in received if b not in (0xFF, 0x7F)) > 8000

        call_id = next(iter(svc._calls))
        rest.hangup(local["id"])
        leg.close()
        leg = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and svc.active_calls:
            time.sleep(0.1)
        assert svc.active_calls == 0
        record = records.get_call(call_id)
        assert record is not None
        assert record["outcome"] == "hung_up_by_caller"
        assert record["answered_at"]
        session.wait_closed(5)
        assert session.closed  # the call closed its Realtime connection
        leftovers = [b for b in rest.list_bridges() if b.get("name", "").startswith("centralita-")]
        assert leftovers == []
        assert not [c for c in rest.list_channels() if c["id"].startswith(call_id)]
        time.sleep(0.5)
        new_threads = {t.name for t in threading.enumerate()} - threads_before
        assert not [name for name in new_threads if call_id in name or name.startswith("realtime")], new_threads
    finally:
        if leg is not None:
            leg.close()
        caller_app.stop()
