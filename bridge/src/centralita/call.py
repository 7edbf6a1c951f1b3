"""One inbound call: the caller's channel, a mixing bridge, an ExternalMedia RTP leg and a Realtime session.

Audio path, μ-law end to end: Asterisk sends the caller's audio as RTP (PT 0, 20 ms) to this call's own UDP
socket; each frame goes to the Realtime API as ``input_audio_buffer.append``. The assistant's audio arrives
in bursts as ``response.output_audio.delta``, is cut into 20 ms frames by a playout queue and sent back on a
deadline-based 20 ms clock. Everything the call opens (threads, socket, port, bridge, channels, WebSocket) is
released by ``end()``, which is idempotent and runs whoever ends the call.
"""

from __future__ import annotations

import base64
import contextvars
import json
import logging
import random
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from centralita.ari import AriError, AriRest
from centralita.config import FailureAction, Settings
from centralita.logs import call_context, call_logger
from centralita.pacer import Pacer, PlayoutQueue
from centralita.realtime import (
    CloseInfo,
    RealtimeConnection,
    RealtimeError,
    ToolCall,
    ToolCallAssembler,
    audio_append,
    realtime_url,
    response_cancel,
    response_create,
    session_update,
    truncate,
)
from centralita.records import CallRecords
from centralita.rtp import FRAME_BYTES, RtpReceiver, RtpSender
from centralita.tools import ToolContext, ToolRegistry

log = logging.getLogger(__name__)


@dataclass
class _AssistantItem:
    """The assistant audio item being played, for barge-in truncation."""

    item_id: str
    received_ms: float = 0.0
    played_ms_at_start: int = 0


@dataclass
class CallState:
    """What the rest of the service may read about a call."""

    call_id: str
    caller: str
    did: str
    media_channel_id: str = ""
    bridge_id: str = ""
    ended: threading.Event = field(default_factory=threading.Event)
    outcome: str = ""


class InboundCall:
    """Runs one call from StasisStart to hangup. ``start()`` returns once the call is set up (or failed)."""

    def __init__(
        self,
        *,
        channel_id: str,
        caller: str,
        did: str,
        settings: Settings,
        rest: AriRest,
        records: CallRecords,
        tools: ToolRegistry,
        instructions: str,
        rng: random.Random | None = None,
        on_end: Callable[[InboundCall], None] | None = None,
    ) -> None:
        self.state = CallState(call_id=channel_id, caller=caller, did=did)
        self._settings = settings
        self._rest = rest
        self._records = records
        self._tools = tools
        self._instructions = instructions
        self._rng = rng or random.Random()
        self._on_end = on_end
        self._log = call_logger(channel_id, log)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socket: socket.socket | None = None
        self._asterisk_rtp: tuple[str, int] | None = None
        self._realtime: RealtimeConnection | None = None
        self._queue = PlayoutQueue()
        self._queue_lock = threading.Lock()
        self._assembler = ToolCallAssembler()
        self._tool_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"tools-{channel_id}")
        self._threads: list[threading.Thread] = []
        self._response_active = False
        self._item: _AssistantItem | None = None
        self._after_speech: str = ""  # "transfer" or "hangup" once the assistant's last words are played

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def call_id(self) -> str:
        return self.state.call_id

    def start(self) -> None:
        with call_context(self.call_id):
            self._start()

    def _start(self) -> None:
        state = self.state
        self._log.info("call started: caller=%s did=%s", state.caller or "-", state.did or "-")
        self._records.start_call(state.call_id, "inbound", state.caller, state.did)
        try:
            self._rest.answer(state.call_id)
            self._records.mark_answered(state.call_id)
            self._log.info("ARI answered")
            self._setup_media()
        except (AriError, OSError) as error:
            self._log.error("call setup failed: %s", error)
            self.end("error", str(error), hangup=True)
            return
        try:
            self._connect_realtime()
        except (RealtimeError, OSError) as error:
            self._log.error("Realtime error: cannot start the session: %s", error)
            self._fail_to_operator(f"Realtime unavailable: {error}")
            return
        for target, name in ((self._receive_rtp, "rtp-in"), (self._send_rtp, "rtp-out")):
            context = contextvars.copy_context()  # the call's id on every log line of its threads
            thread = threading.Thread(target=context.run, args=(target,), name=f"{name}-{state.call_id}", daemon=True)
            self._threads.append(thread)
            thread.start()
        self._send(response_create())  # the assistant greets first

    def end(self, outcome: str, detail: str = "", *, hangup: bool = False) -> None:
        """Release everything this call holds. Safe to call more than once and from any thread."""
        with self._lock:
            if self.state.ended.is_set():
                return
            self.state.ended.set()
            self.state.outcome = outcome
        self._stop.set()
        realtime = self._realtime
        if realtime is not None:
            realtime.close()
        current = threading.current_thread()
        for thread in self._threads:
            if thread is not current:
                thread.join(2)
        self._tool_pool.shutdown(wait=False, cancel_futures=True)
        if self._socket is not None:
            self._socket.close()
        for channel in (self.state.media_channel_id, self.state.call_id if hangup else ""):
            if channel:
                self._quietly(self._rest.hangup, channel)
        if self.state.bridge_id:
            self._quietly(self._rest.destroy_bridge, self.state.bridge_id)
        self._records.end_call(self.state.call_id, outcome, detail)
        self._log.info("call ended: outcome=%s%s", outcome, f" ({detail})" if detail else "")
        if self._on_end is not None:
            self._on_end(self)

    def caller_hung_up(self) -> None:
        self.end("hung_up_by_caller")

    def hand_over(self, reason: str) -> None:
        """Give the caller to a person now (the service is stopping): never drop a caller on the floor."""
        if not self.state.ended.is_set():
            self._transfer("service_stopped", reason)

    # -- setup -------------------------------------------------------------------------------------

    def _setup_media(self) -> None:
        state = self.state
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket = sock
        sock.bind((self._settings.rtp_bind_address, 0))
        sock.settimeout(0.2)
        host, port = sock.getsockname()[:2]
        state.bridge_id = self._rest.create_bridge(name=f"centralita-{state.call_id}")
        media = self._rest.external_media(self._settings.ari_app, f"{host}:{port}", channel_id=f"{state.call_id}-media")
        state.media_channel_id = str(media["id"])
        variables = media.get("channelvars", {})
        self._asterisk_rtp = (str(variables["UNICASTRTP_LOCAL_ADDRESS"]), int(variables["UNICASTRTP_LOCAL_PORT"]))
        self._rest.add_to_bridge(state.bridge_id, state.call_id)
        self._rest.add_to_bridge(state.bridge_id, state.media_channel_id)
        self._log.info("media ready: rtp %s:%s <-> asterisk %s:%s", host, port, *self._asterisk_rtp)

    def _connect_realtime(self) -> None:
        settings = self._settings
        url = realtime_url(settings.openai_base_url, settings.openai_model)
        self._log.info("Iniciando conexión WebSocket con OpenAI (%s)", url)
        connection = RealtimeConnection(
            url,
            settings.openai_api_key,
            on_event=self._on_realtime_event,
            on_close=self._on_realtime_close,
            ping_interval=settings.ws_ping_interval,
            ping_timeout=settings.ws_ping_timeout,
        )
        update = session_update(
            instructions=self._instructions, voice=settings.openai_voice, tools=self._tools.schemas()
        )
        self._log.info("session.update sent")
        info = connection.connect(update)
        self._realtime = connection
        self._log.info("session.updated received: output %s", info.output_format)
        if not info.output_format_honoured:
            connection.close()
            raise RealtimeError(f"the server sends {info.output_format} instead of audio/pcmu")

    # -- audio -------------------------------------------------------------------------------------

    def _receive_rtp(self) -> None:
        sock = self._socket
        assert sock is not None
        receiver = RtpReceiver()
        while not self._stop.is_set():
            try:
                datagram = sock.recv(2048)
            except TimeoutError:
                continue
            except OSError:
                break
            for packet in receiver.receive(datagram):
                if not self._send(audio_append(packet.payload)):
                    return

    def _send_rtp(self) -> None:
        sock = self._socket
        assert sock is not None
        assert self._asterisk_rtp is not None
        sender = RtpSender(self._rng)
        pacer = Pacer()
        idle = 0
        while not self._stop.is_set():
            skipped = pacer.wait()
            idle += skipped
            with self._queue_lock:
                frame = self._queue.pop()
                drained = frame is None and self._queue.queued_frames == 0
            if frame is None:
                idle += 1
                if drained and self._after_speech and not self._response_active:
                    self._finish_after_speech()
                    return
                continue
            if idle:
                sender.start_talkspurt(idle)
                idle = 0
            try:
                sock.sendto(sender.build(frame), self._asterisk_rtp)
            except OSError:
                break

    # -- Realtime events ---------------------------------------------------------------------------

    def _send(self, event: Mapping[str, Any]) -> bool:
        connection = self._realtime
        if connection is None or self._stop.is_set():
            return False
        try:
            connection.send(event)
        except RealtimeError as error:
            self._log.warning("Realtime error: %s", error)
            return False
        return True

    def _on_realtime_event(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        if kind == "response.output_audio.delta":
            audio = base64.b64decode(event.get("delta", ""))
            with self._queue_lock:
                item_id = str(event.get("item_id", ""))
                if self._item is None or self._item.item_id != item_id:
                    self._item = _AssistantItem(item_id, played_ms_at_start=self._queue.played_ms)
                self._item.received_ms += len(audio) / 8
                self._queue.push(audio)
        elif kind == "response.output_audio.done":
            with self._queue_lock:
                self._queue.pad_remainder()
        elif kind == "input_audio_buffer.speech_started":
            self._barge_in()
        elif kind == "response.created":
            self._response_active = True
        elif kind == "response.done":
            self._response_active = False
        elif kind == "response.output_audio_transcript.done":
            self._records.add_transcript(self.call_id, "assistant", str(event.get("transcript", "")))
        elif kind == "conversation.item.input_audio_transcription.completed":
            self._records.add_transcript(self.call_id, "caller", str(event.get("transcript", "")))
        elif kind == "error":
            error = event.get("error") or {}
            if error.get("code") == "response_cancel_not_active":
                # Server VAD already cancelled the response it interrupted: our cancel crossed it.
                self._log.debug("response.cancel crossed the server's own cancellation")
            else:
                self._log.warning("Realtime error event: %s %s", error.get("code"), error.get("message"))
        update = self._assembler.feed(event)
        for call in update.completed:
            self._tool_pool.submit(self._run_tool, call)
        self._send_ready(update.ready)

    def _barge_in(self) -> None:
        with self._queue_lock:
            dropped = self._queue.flush()
            item = self._item
            played = self._queue.played_ms - item.played_ms_at_start if item else 0
        self._log.info("barge-in: caller spoke, %.0f ms of assistant audio dropped", dropped)
        if self._response_active:
            self._send(response_cancel())
        if item is not None and dropped > 0:
            self._send(truncate(item.item_id, int(min(played, item.received_ms))))

    def _run_tool(self, call: ToolCall) -> None:
        context = ToolContext(call_id=self.call_id, caller=self.state.caller, did=self.state.did)
        result = self._tools.run(call.name, call.arguments, context)
        self._records.add_tool_call(
            self.call_id, call.call_id, call.name, _json_or_text(call.arguments), result.output, result.ok
        )
        self._log.info("tool %s -> %s", call.name, "ok" if result.ok else "error")
        if result.action:
            self._after_speech = result.action
        self._send_ready(self._assembler.submit(call.call_id, json.dumps(result.output, ensure_ascii=False)))

    def _send_ready(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Send tool outputs and the response.create that follows them.

        The reply is counted as active from the moment it is asked for: a transfer or hang-up waiting for
        the assistant's last words must not fire in the gap before the server's response.created.
        """
        for event in events:
            if event.get("type") == "response.create":
                self._response_active = True
            self._send(event)

    def _on_realtime_close(self, close: CloseInfo) -> None:
        if self._stop.is_set():
            return
        self._log.error("Realtime error: the connection ended mid-call (%s)", close)
        threading.Thread(target=self._fail_to_operator, args=(f"Realtime closed: {close}",), daemon=True).start()

    # -- endings -----------------------------------------------------------------------------------

    def _finish_after_speech(self) -> None:
        action, self._after_speech = self._after_speech, ""
        if action == "transfer":
            self._transfer("transferred")
        else:
            self.end("completed", "the assistant ended the call", hangup=True)

    def _fail_to_operator(self, detail: str) -> None:
        if self._settings.on_realtime_failure is FailureAction.TRANSFER:
            self._transfer("realtime_failed", detail)
        else:
            self.end("realtime_failed", detail, hangup=True)

    def _transfer(self, outcome: str, detail: str = "") -> None:
        self._log.info("transferring to operator (%s)", self._settings.operator_context)
        # Leave the bridge first: the caller's channel goes back to the dialplan while we release the rest.
        self._stop.set()
        try:
            self._rest.continue_in_dialplan(self.call_id, self._settings.operator_context)
        except AriError as error:
            self._log.error("transfer failed: %s", error)
            self.end("error", f"transfer failed: {error}", hangup=True)
            return
        self.end(outcome, detail)

    @staticmethod
    def _quietly(action: Callable[[str], None], target: str) -> None:
        try:
            action(target)
        except AriError as error:
            if error.status != 404:  # already gone: fine
                log.debug("cleanup of %s: %s", target, error)


def _json_or_text(arguments: str) -> dict[str, Any]:
    try:
        parsed = json.loads(arguments or "{}")
    except ValueError:
        return {"raw": arguments}
    return parsed if isinstance(parsed, dict) else {"value": parsed}


__all__ = ["FRAME_BYTES", "CallState", "InboundCall"]
