"""One inbound call: the caller's channel, a mixing bridge, an ExternalMedia RTP leg and a Realtime session.

Audio path, μ-law end to end: Asterisk sends the caller's audio as RTP (PT 0, 20 ms) to this call's own UDP
socket; each frame goes to the Realtime API as ``input_audio_buffer.append``. The assistant's audio arrives
in bursts as ``response.output_audio.delta``, is cut into 20 ms frames by a playout queue and sent back on a
deadline-based 20 ms clock, run by a ``PacerThread`` (the service's, shared by its calls, or the call's own).
Everything the call opens (threads, socket, port, pacer stream, bridge, channels, WebSocket) is released by
``end()``, which is idempotent and runs whoever ends the call.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import json
import logging
import random
import select
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from centralita.config.bridge import FailureAction, Settings
from centralita.logs import call_context, call_logger
from centralita.media.pacer import PacedStream, PacerThread, PlayoutQueue
from centralita.media.rtp import FRAME_BYTES, RtpReceiver, RtpSender
from centralita.realtime.connection import CloseInfo, RealtimeConnection, RealtimeError
from centralita.realtime.events import realtime_url, response_cancel, response_create, session_update, truncate
from centralita.realtime.tool_calls import ToolCall, ToolCallAssembler
from centralita.storage.records import CallRecords
from centralita.telephony.ari import AriError, AriRest
from centralita.tools.identity import CallIdentity
from centralita.tools.registry import ToolContext, ToolRegistry

if TYPE_CHECKING:
    from centralita.media.resample import Pcm24kToUlaw

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
        pacer: PacerThread | None = None,
        direction: str = "inbound",
    ) -> None:
        """``pacer`` paces the outgoing audio; the service should share one by all its calls (one thread for
        all instead of one each). Without it the call runs a PacerThread of its own."""
        self.state = CallState(call_id=channel_id, caller=caller, did=did)
        self._direction = direction  # "outbound": a dialer call; caller is then the number called
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
        self._pacer = pacer
        self._own_pacer: PacerThread | None = None
        self._paced: PacedStream | None = None
        self._rtp_sender = RtpSender(self._rng)
        self._idle_slots = 0  # 20 ms slots since the last frame sent, for the RTP timestamp
        self._failing = False
        self._transfer_outcome: tuple[str, str] | None = None
        self._converter: Pcm24kToUlaw | None = None  # only when the server ignores audio/pcmu output
        self._identity = CallIdentity(caller_id_usable=direction == "inbound")  # who the caller proved to be

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
        self._records.start_call(state.call_id, self._direction, state.caller, state.did)
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
            self._fail_to_operator("realtime_unreachable", f"Realtime unavailable: {error}")
            return
        context = contextvars.copy_context()  # the call's id on every log line of its thread
        thread = threading.Thread(
            target=context.run, args=(self._receive_rtp,), name=f"rtp-in-{state.call_id}", daemon=True
        )
        self._threads.append(thread)
        thread.start()
        with self._lock:  # end() either ran already, or finds the stream (and the call's own pacer) to release
            if not state.ended.is_set():
                if self._pacer is None:
                    self._pacer = self._own_pacer = PacerThread(name=f"rtp-out-{state.call_id}")
                self._paced = self._pacer.add(self._play_slot)
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
        if self._paced is not None:
            self._paced.cancel()  # waits for a slot being played: the socket is closed below
        if self._own_pacer is not None:
            self._own_pacer.close()
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
        """The caller's channel left the app: hung up, or handed back to the dialplan by a transfer of ours."""
        pending = self._transfer_outcome
        if pending is not None:
            self.end(*pending)
        else:
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
        sock.setblocking(False)  # the pacer's thread must never wait on it; the receiver polls
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
            self._converter = self._output_converter(info.output_format.type, info.output_format.rate)
            if self._converter is None:
                connection.close()
                raise RealtimeError(f"the server sends {info.output_format} instead of audio/pcmu")

    def _output_converter(self, kind: str, rate: int | None) -> Pcm24kToUlaw | None:
        """A resampler for a server that answers in 24 kHz PCM although the session asked for audio/pcmu."""
        if kind != "audio/pcm" or rate != 24_000:
            self._log.error("Realtime error: output format %s at %s Hz cannot be played to a phone", kind, rate)
            return None
        try:
            from centralita.media.resample import Pcm24kToUlaw  # numpy and soxr: only when needed
        except ImportError as error:
            self._log.error("Realtime error: the server ignores audio/pcmu and %s", error)
            return None
        self._log.warning(
            "Realtime sends audio/pcm 24 kHz although audio/pcmu was asked for: resampling to 8 kHz μ-law "
            "on this call (costs CPU; use a model that honours audio/pcmu)"
        )
        return Pcm24kToUlaw()

    # -- audio -------------------------------------------------------------------------------------

    def _receive_rtp(self) -> None:
        sock = self._socket
        assert sock is not None
        receiver = RtpReceiver()
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        while not self._stop.is_set():
            try:
                if not poller.poll(200):
                    continue
                datagram = sock.recv(2048)
            except BlockingIOError:
                continue
            except OSError:
                break
            for packet in receiver.receive(datagram):
                if not self._send_audio(packet.payload):
                    return

    def _play_slot(self, skipped: int) -> bool:
        """Send the next frame in this 20 ms slot, if one is ready; False ends the call's stream.

        It runs on the pacer's thread, which serves every call: it must never block.
        """
        sock = self._socket
        assert sock is not None
        assert self._asterisk_rtp is not None
        if self._stop.is_set():
            return False
        self._idle_slots += skipped
        with self._queue_lock:
            frame = self._queue.pop()
            drained = frame is None and self._queue.queued_frames == 0
        if frame is None:
            self._idle_slots += 1
            if drained and self._after_speech and not self._response_active:
                context = contextvars.copy_context()  # ending the call blocks (ARI): not on the pacer's thread
                name = f"after-speech-{self.call_id}"
                threading.Thread(target=context.run, args=(self._finish_after_speech,), name=name, daemon=True).start()
                return False
            return True
        if self._idle_slots:
            self._rtp_sender.start_talkspurt(self._idle_slots)
            self._idle_slots = 0
        try:
            sock.sendto(self._rtp_sender.build(frame), self._asterisk_rtp)
        except BlockingIOError:
            pass  # the socket's buffer is full: this frame is lost, the next slot goes on
        except OSError:
            return False
        return True

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

    def _send_audio(self, audio: bytes) -> bool:
        """``_send(audio_append(audio))``, for less: see ``RealtimeConnection.send_audio``."""
        connection = self._realtime
        if connection is None or self._stop.is_set():
            return False
        try:
            connection.send_audio(audio)
        except RealtimeError as error:
            self._log.warning("Realtime error: %s", error)
            return False
        return True

    def _on_realtime_event(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        if kind == "response.output_audio.delta":
            audio = base64.b64decode(event.get("delta", ""))
            if self._converter is not None:
                audio = self._converter.convert(audio)
            with self._queue_lock:
                item_id = str(event.get("item_id", ""))
                if self._item is None or self._item.item_id != item_id:
                    self._item = _AssistantItem(item_id, played_ms_at_start=self._queue.played_ms)
                self._item.received_ms += len(audio) / 8
                self._queue.push(audio)
        elif kind == "response.output_audio.done":
            tail = self._converter.flush() if self._converter is not None else b""
            with self._queue_lock:
                if tail:
                    self._queue.push(tail)
                    if self._item is not None:
                        self._item.received_ms += len(tail) / 8
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
            elif error.get("type") == "server_error":
                # A failure on OpenAI's side: the reply in progress is lost and the session's state unknown.
                self._log.error("Realtime error event: %s %s", error.get("code"), error.get("message"))
                threading.Thread(
                    target=self._fail_to_operator,
                    args=("realtime_error", f"Realtime error: {error.get('code')}"),
                    daemon=True,
                ).start()
            else:  # a request of ours the server refused: the session goes on
                self._log.warning("Realtime error event: %s %s", error.get("code"), error.get("message"))
        update = self._assembler.feed(event)
        for call in update.completed:
            self._tool_pool.submit(self._run_tool, call)
        self._send_ready(update.ready)

    def _barge_in(self) -> None:
        if self._converter is not None:
            self._converter.reset()
        with self._queue_lock:
            dropped = self._queue.flush()
            item, self._item = self._item, None
            played = self._queue.played_ms - item.played_ms_at_start if item else 0
        active = self._response_active
        self._log.info("barge-in: caller spoke, %.0f ms of assistant audio dropped", dropped)
        if active:
            self._send(response_cancel())
        # The server's copy of the item keeps only what the caller heard: audio still queued, or audio the
        # server had yet to send (the reply still running), was never heard.
        if item is not None and (dropped > 0 or active):
            self._send(truncate(item.item_id, int(min(played, item.received_ms))))

    def _run_tool(self, call: ToolCall) -> None:
        context = ToolContext(self.call_id, self.state.caller, self.state.did, identity=self._identity)
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
        reason = "realtime_session_expired" if close.code == 1001 else "realtime_dropped"
        self._log.error("Realtime error: the connection ended mid-call (%s)", close)
        threading.Thread(target=self._fail_to_operator, args=(reason, f"Realtime closed: {close}"), daemon=True).start()

    # -- endings -----------------------------------------------------------------------------------

    def _finish_after_speech(self) -> None:
        action, self._after_speech = self._after_speech, ""
        if action == "transfer":
            self._transfer("transferred")
        else:
            self.end("completed", "the assistant ended the call", hangup=True)

    def _fail_to_operator(self, reason: str, detail: str) -> None:
        """The assistant cannot go on: the caller hears why (failover context) and reaches a person, or is hung up."""
        with self._lock:  # an error event and the close that follows it both land here: act once
            if self._failing or self.state.ended.is_set():
                return
            self._failing = True
        if self._settings.on_realtime_failure is FailureAction.TRANSFER:
            with contextlib.suppress(AriError):  # only feeds the dialplan's log line
                self._rest.set_channel_var(self.call_id, "CENTRALITA_FAILOVER_REASON", reason)
            self._transfer("realtime_failed", detail, context=self._settings.failover_context)
        else:
            self.end("realtime_failed", detail, hangup=True)

    def _transfer(self, outcome: str, detail: str = "", *, context: str = "") -> None:
        context = context or self._settings.operator_context
        self._log.info("transferring to operator (%s)", context)
        # Leave the bridge first: the caller's channel goes back to the dialplan while we release the rest.
        self._stop.set()
        # The StasisEnd this causes may be handled before continue_in_dialplan returns: it is not a hang-up.
        self._transfer_outcome = (outcome, detail)
        try:
            self._rest.continue_in_dialplan(self.call_id, context)
        except AriError as error:
            self._transfer_outcome = None
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
