"""One call with the assistant: the customer's channel, a mixing bridge, an ExternalMedia RTP leg and a
Realtime session, from StasisStart to hang-up, in either direction.

An inbound call is a caller who dialled one of the box's numbers (the DID); an outbound call is a customer the
dialer called, who answered (``calls/outbound.py`` prepares its prompt and tools, and its record names the
campaign). Both run the same way once the channel is in the Stasis app.

Audio path, μ-law end to end: Asterisk sends the customer's audio as RTP (PT 0, 20 ms) to this call's own UDP
socket; each frame goes to the Realtime API as ``input_audio_buffer.append``. The assistant's audio arrives
in bursts as ``response.output_audio.delta`` and goes to the call's ``Playout``, which a deadline-based 20 ms
clock asks for each slot's RTP packet: the clock is a ``PacerThread`` (the service's, shared by its calls, or
the call's own). On a barge-in the ``Playout`` drops what was not played and says what the caller heard, for
``conversation.item.truncate``.

How a call ends (``Outcome``): the customer hangs up; the assistant's tool transfers or hangs up once its last
words have played; the Realtime session fails and the caller is sent, once, to the failover context with the
reason in ``CENTRALITA_FAILOVER_REASON`` (``FailoverReason``); the service stops and hands the caller to the
operator. Everything the call opens (threads, socket, port, pacer stream, bridge, channels, WebSocket) is
released by ``end()``, which is idempotent and runs whoever ends the call.
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
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from centralita.config.bridge import FailureAction, Settings
from centralita.logs import Event, call_context, call_logger
from centralita.media.pacer import PacedStream, PacerThread
from centralita.media.playout import Playout
from centralita.media.rtp import RtpReceiver
from centralita.realtime.connection import CloseInfo, RealtimeConnection, RealtimeError
from centralita.realtime.events import realtime_url, response_cancel, response_create, session_update, truncate
from centralita.realtime.tool_calls import ToolCall, ToolCallAssembler
from centralita.storage.records import CallRecords, Direction, Outcome, Speaker
from centralita.telephony.ari import AriError, AriRest
from centralita.tools.identity import CallIdentity
from centralita.tools.registry import ToolAction, ToolContext, ToolRegistry

if TYPE_CHECKING:
    from centralita.media.resample import Pcm24kToUlaw

log = logging.getLogger(__name__)


FAILOVER_REASON_VARIABLE: Final = "CENTRALITA_FAILOVER_REASON"


class FailoverReason(StrEnum):
    """Why the assistant could not go on: the value of ``CENTRALITA_FAILOVER_REASON``, which the failover
    context logs before the caller hears the notice (the dialplan's vocabulary: values never change)."""

    REALTIME_UNREACHABLE = "realtime_unreachable"  # the session could not be opened
    REALTIME_DROPPED = "realtime_dropped"  # the connection was lost mid-call
    REALTIME_ERROR = "realtime_error"  # the server reported a failure on its side (server_error)
    REALTIME_SESSION_EXPIRED = "realtime_session_expired"  # the server closed at the session's maximum length


@dataclass
class CallState:
    """What the rest of the service may read about a call.

    ``caller`` is who called and ``callee`` who was called, as in the call records: for an inbound call the
    caller's number and the DID, for an outbound call the caller ID the dialer presented (often empty) and the
    customer's number. ``campaign`` and ``attempt_id`` belong to outbound calls only.
    """

    call_id: str
    direction: Direction
    caller: str
    callee: str
    campaign: str = ""
    attempt_id: int | None = None
    media_channel_id: str = ""
    bridge_id: str = ""
    ended: threading.Event = field(default_factory=threading.Event)
    outcome: Outcome | None = None

    @property
    def customer_number(self) -> str:
        """The number of the customer on the line, whichever side dialled."""
        return self.caller if self.direction is Direction.INBOUND else self.callee

    @property
    def did(self) -> str:
        """The number an inbound caller dialled; "" for an outbound call."""
        return self.callee if self.direction is Direction.INBOUND else ""


class Call:
    """Runs one call from StasisStart to hang-up. ``start()`` returns once the call is set up (or failed)."""

    def __init__(
        self,
        *,
        channel_id: str,
        direction: Direction,
        caller: str,
        callee: str,
        campaign: str = "",
        attempt_id: int | None = None,
        settings: Settings,
        rest: AriRest,
        records: CallRecords,
        tools: ToolRegistry,
        instructions: str,
        rng: random.Random | None = None,
        on_end: Callable[[Call], None] | None = None,
        pacer: PacerThread | None = None,
    ) -> None:
        """``caller`` and ``callee`` as in ``CallState``; an outbound call needs its ``campaign`` and
        ``attempt_id``, an inbound call has neither (ValueError otherwise).

        ``pacer`` paces the outgoing audio; the service should share one by all its calls (one thread for all
        instead of one each). Without it the call runs a PacerThread of its own.
        """
        direction = Direction(direction)
        if direction is Direction.OUTBOUND and (not campaign or attempt_id is None):
            raise ValueError(f"outbound call {channel_id}: a campaign and an attempt id are required")
        if direction is Direction.INBOUND and (campaign or attempt_id is not None):
            raise ValueError(f"inbound call {channel_id}: only an outbound call has a campaign and an attempt id")
        self.state = CallState(
            call_id=channel_id,
            direction=direction,
            caller=caller,
            callee=callee,
            campaign=campaign,
            attempt_id=attempt_id,
        )
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
        self._rtp_port: int | None = None
        self._asterisk_rtp: tuple[str, int] | None = None
        self._realtime: RealtimeConnection | None = None
        self._playout = Playout(self._rng)
        self._assembler = ToolCallAssembler()
        self._tool_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"tools-{channel_id}")
        self._threads: list[threading.Thread] = []
        self._response_active = False
        self._after_speech: ToolAction | None = None  # what to do once the assistant's last words are played
        self._pacer = pacer
        self._own_pacer: PacerThread | None = None
        self._paced: PacedStream | None = None
        self._failing = False
        self._transfer_outcome: tuple[Outcome, str] | None = None
        self._converter: Pcm24kToUlaw | None = None  # only when the server ignores audio/pcmu output
        self._identity = CallIdentity(caller_id_usable=direction is Direction.INBOUND)  # who the caller proved to be

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def call_id(self) -> str:
        return self.state.call_id

    @property
    def rtp_port(self) -> int | None:
        """The local UDP port of the call's RTP (None before the media is set up); kept once the call ended."""
        return self._rtp_port

    def start(self) -> None:
        with call_context(self.call_id):
            self._start()

    def _start(self) -> None:
        state = self.state
        if state.direction is Direction.INBOUND:
            self._log.info("%s: caller=%s did=%s", Event.CALL_STARTED, state.caller or "-", state.callee or "-")
        else:
            self._log.info(
                "%s: outbound to=%s campaign=%s attempt=%s",
                Event.CALL_STARTED,
                state.callee or "-",
                state.campaign,
                state.attempt_id,
            )
        campaign = state.campaign if state.direction is Direction.OUTBOUND else None
        self._records.start_call(state.call_id, state.direction, state.caller, state.callee, campaign=campaign)
        try:
            self._rest.answer(state.call_id)
            self._records.mark_answered(state.call_id)
            self._log.info("%s", Event.ARI_ANSWERED)
            self._setup_media()
        except (AriError, OSError) as error:
            self._log.error("%s: %s", Event.SETUP_FAILED, error)
            self.end(Outcome.ERROR, str(error), hangup=True)
            return
        try:
            self._connect_realtime()
        except (RealtimeError, OSError) as error:
            self._log.error("%s: cannot start the session: %s", Event.REALTIME_ERROR, error)
            if self._claim_failover():
                self._fail_to_operator(FailoverReason.REALTIME_UNREACHABLE, f"Realtime unavailable: {error}")
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

    def end(self, outcome: Outcome, detail: str = "", *, hangup: bool = False) -> None:
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
        self._log.info("%s: outcome=%s%s", Event.CALL_ENDED, outcome, f" ({detail})" if detail else "")
        if self._on_end is not None:
            self._on_end(self)

    def caller_hung_up(self) -> None:
        """The caller's channel left the app: hung up, or handed back to the dialplan by a transfer of ours."""
        pending = self._transfer_outcome
        if pending is not None:
            self.end(*pending)
        else:
            self.end(Outcome.HUNG_UP_BY_CALLER)

    def hand_over(self, reason: str) -> None:
        """Give the caller to a person now (the service is stopping): never drop a caller on the floor."""
        if not self.state.ended.is_set():
            self._transfer(Outcome.SERVICE_STOPPED, reason)

    # -- setup -------------------------------------------------------------------------------------

    def _setup_media(self) -> None:
        state = self.state
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket = sock
        sock.bind((self._settings.rtp_bind_address, 0))
        sock.setblocking(False)  # the pacer's thread must never wait on it; the receiver polls
        host, port = sock.getsockname()[:2]
        self._rtp_port = port
        state.bridge_id = self._rest.create_bridge(name=f"centralita-{state.call_id}")
        media = self._rest.external_media(self._settings.ari_app, f"{host}:{port}", channel_id=f"{state.call_id}-media")
        state.media_channel_id = str(media["id"])
        variables = media.get("channelvars", {})
        self._asterisk_rtp = (str(variables["UNICASTRTP_LOCAL_ADDRESS"]), int(variables["UNICASTRTP_LOCAL_PORT"]))
        self._rest.add_to_bridge(state.bridge_id, state.call_id)
        self._rest.add_to_bridge(state.bridge_id, state.media_channel_id)
        self._log.info("%s: rtp %s:%s <-> asterisk %s:%s", Event.MEDIA_READY, host, port, *self._asterisk_rtp)

    def _connect_realtime(self) -> None:
        settings = self._settings
        url = realtime_url(settings.openai_base_url, settings.openai_model)
        self._log.info("%s (%s)", Event.CONNECTING, url)
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
        self._log.info("%s", Event.SESSION_UPDATE_SENT)
        info = connection.connect(update)
        self._realtime = connection
        self._log.info("%s: output %s", Event.SESSION_UPDATED, info.output_format)
        if not info.output_format_honoured:
            self._converter = self._output_converter(info.output_format.type, info.output_format.rate)
            if self._converter is None:
                connection.close()
                raise RealtimeError(f"the server sends {info.output_format} instead of audio/pcmu")

    def _output_converter(self, kind: str, rate: int | None) -> Pcm24kToUlaw | None:
        """A resampler for a server that answers in 24 kHz PCM although the session asked for audio/pcmu."""
        if kind != "audio/pcm" or rate != 24_000:
            self._log.error(
                "%s: output format %s at %s Hz cannot be played to a phone", Event.REALTIME_ERROR, kind, rate
            )
            return None
        try:
            from centralita.media.resample import Pcm24kToUlaw  # numpy and soxr: only when needed
        except ImportError as error:
            self._log.error("%s: the server ignores audio/pcmu and %s", Event.REALTIME_ERROR, error)
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
        """Send this 20 ms slot's packet, if a frame is ready; False ends the call's stream.

        It runs on the pacer's thread, which serves every call: it must never block.
        """
        sock = self._socket
        assert sock is not None
        assert self._asterisk_rtp is not None
        if self._stop.is_set():
            return False
        packet = self._playout.next_frame(skipped)
        if packet is None:  # nothing left to play
            if self._after_speech is not None and not self._response_active:
                self._spawn("after-speech", self._finish_after_speech)  # ending blocks (ARI): not on this thread
                return False
            return True
        try:
            sock.sendto(packet, self._asterisk_rtp)
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
            self._log.warning("%s: %s", Event.REALTIME_ERROR, error)
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
            self._log.warning("%s: %s", Event.REALTIME_ERROR, error)
            return False
        return True

    def _on_realtime_event(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        if kind == "response.output_audio.delta":
            audio = base64.b64decode(event.get("delta", ""))
            if self._converter is not None:
                audio = self._converter.convert(audio)
            if not self._playout.push(str(event.get("item_id", "")), audio) and self._converter is not None:
                self._converter.reset()  # the refused audio's filter state must not reach the next reply
        elif kind == "response.output_audio.done":
            tail = self._converter.flush() if self._converter is not None else b""
            if tail:
                self._playout.push(str(event.get("item_id", "")), tail)
            self._playout.pad_remainder()
        elif kind == "input_audio_buffer.speech_started":
            self._barge_in()
        elif kind == "response.created":
            self._response_active = True
        elif kind == "response.done":
            self._response_active = False
        elif kind == "response.output_audio_transcript.done":
            self._records.add_transcript(self.call_id, Speaker.ASSISTANT, str(event.get("transcript", "")))
        elif kind == "conversation.item.input_audio_transcription.completed":
            self._records.add_transcript(self.call_id, Speaker.CALLER, str(event.get("transcript", "")))
        elif kind == "error":
            error = event.get("error") or {}
            if error.get("code") == "response_cancel_not_active":
                # Server VAD already cancelled the response it interrupted: our cancel crossed it.
                self._log.debug("response.cancel crossed the server's own cancellation")
            elif error.get("type") == "server_error":
                # A failure on OpenAI's side: the reply in progress is lost and the session's state unknown.
                self._log.error("%s event: %s %s", Event.REALTIME_ERROR, error.get("code"), error.get("message"))
                self._fail_soon(FailoverReason.REALTIME_ERROR, f"Realtime error: {error.get('code')}")
            else:  # a request of ours the server refused: the session goes on
                self._log.warning("%s event: %s %s", Event.REALTIME_ERROR, error.get("code"), error.get("message"))
        update = self._assembler.feed(event)
        for call in update.completed:
            self._tool_pool.submit(self._run_tool, call)
        self._send_ready(update.ready)

    def _barge_in(self) -> None:
        if self._converter is not None:
            self._converter.reset()
        barge_in = self._playout.barge_in()
        active = self._response_active
        self._log.info("%s: caller spoke, %.0f ms of assistant audio dropped", Event.BARGE_IN, barge_in.dropped_ms)
        if active:
            self._send(response_cancel())
        # The server's copy of the item keeps only what the caller heard: audio still queued, or audio the
        # server had yet to send (the reply still running), was never heard.
        if barge_in.item_id is not None and (barge_in.dropped_ms > 0 or active):
            self._send(truncate(barge_in.item_id, barge_in.audio_end_ms))

    def _run_tool(self, call: ToolCall) -> None:
        context = ToolContext(self.call_id, self.state.customer_number, self.state.did, identity=self._identity)
        result = self._tools.run(call.name, call.arguments, context)
        self._records.add_tool_call(
            self.call_id, call.call_id, call.name, _json_or_text(call.arguments), result.output, result.ok
        )
        self._log.info("tool %s -> %s", call.name, "ok" if result.ok else "error")
        if result.action is not None:
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
        expired = close.code == 1001  # the session's maximum length
        reason = FailoverReason.REALTIME_SESSION_EXPIRED if expired else FailoverReason.REALTIME_DROPPED
        self._log.error("%s: the connection ended mid-call (%s)", Event.REALTIME_ERROR, close)
        self._fail_soon(reason, f"Realtime closed: {close}")

    # -- endings -----------------------------------------------------------------------------------

    def _spawn(self, kind: str, target: Callable[[], None]) -> None:
        """Run ``target`` on a thread of its own, named after the call, with the call's id on its log lines.

        For the endings, which block on ARI: never on the pacer's thread (it serves every call) nor on the
        Realtime receive thread (``end()`` joins it).
        """
        context = contextvars.copy_context()
        threading.Thread(target=context.run, args=(target,), name=f"{kind}-{self.call_id}", daemon=True).start()

    def _finish_after_speech(self) -> None:
        action, self._after_speech = self._after_speech, None
        if action is ToolAction.TRANSFER:
            self._transfer(Outcome.TRANSFERRED)
        else:
            self.end(Outcome.COMPLETED, "the assistant ended the call", hangup=True)

    def _claim_failover(self) -> bool:
        """True the first time only: an error event and the close that follows it must act once, for the
        first reason (the claim is made on the thread that saw it, in the order the events came)."""
        with self._lock:
            if self._failing or self.state.ended.is_set():
                return False
            self._failing = True
            return True

    def _fail_soon(self, reason: FailoverReason, detail: str) -> None:
        """The Realtime session failed (seen on its receive thread): fail over once, on a thread of its own."""
        if self._claim_failover():
            self._spawn("failover", lambda: self._fail_to_operator(reason, detail))

    def _fail_to_operator(self, reason: FailoverReason, detail: str) -> None:
        """The assistant cannot go on: the caller hears why (failover context) and reaches a person, or is hung up.

        Only after ``_claim_failover`` returned True.
        """
        if self._settings.on_realtime_failure is FailureAction.TRANSFER:
            with contextlib.suppress(AriError):  # only feeds the dialplan's log line
                self._rest.set_channel_var(self.call_id, FAILOVER_REASON_VARIABLE, reason)
            self._transfer(Outcome.REALTIME_FAILED, detail, context=self._settings.failover_context)
        else:
            self.end(Outcome.REALTIME_FAILED, detail, hangup=True)

    def _transfer(self, outcome: Outcome, detail: str = "", *, context: str = "") -> None:
        context = context or self._settings.operator_context
        self._log.info("%s (%s)", Event.TRANSFERRING, context)
        # Leave the bridge first: the caller's channel goes back to the dialplan while we release the rest.
        self._stop.set()
        # The StasisEnd this causes may be handled before continue_in_dialplan returns: it is not a hang-up.
        self._transfer_outcome = (outcome, detail)
        try:
            self._rest.continue_in_dialplan(self.call_id, context)
        except AriError as error:
            self._transfer_outcome = None
            self._log.error("%s: %s", Event.TRANSFER_FAILED, error)
            self.end(Outcome.ERROR, f"{Event.TRANSFER_FAILED}: {error}", hangup=True)
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


__all__ = ["FAILOVER_REASON_VARIABLE", "Call", "CallState", "FailoverReason"]
