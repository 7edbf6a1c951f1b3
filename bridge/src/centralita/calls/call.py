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

The session comes first: an inbound channel is told to ring (``POST /channels/{id}/ring``) while the Realtime
session opens and ``session.updated`` confirms it, within ``CONNECT_TIMEOUT``; only then is the channel answered
and its media set up. A session that cannot open sends the still-ringing caller to the failover context, whose
notice is the first thing they hear: never an answered call in silence.

While the call runs, its RTP thread also keeps its watchdogs (``calls/watchdog.py``): no audio from Asterisk,
a model that does not reply (a recorded "un momento", then the operator), the call's maximum length (a recorded
warning, then the operator or a goodbye). Records are only queued (``storage/queued.py``): a database that is
locked, read-only or full never stops or silences a call, and a tool's output reaches the model whatever
becomes of its record.

How a call ends (``Outcome``): the customer hangs up; the assistant's tool transfers or hangs up once its last
words have played; the Realtime session fails (or stays silent) and the caller is sent, once, to the failover
context with the reason in ``CENTRALITA_FAILOVER_REASON`` (``FailoverReason``); a watchdog gives up; the service
stops and hands the caller to the operator. Everything the call opens (threads, socket, port, pacer stream,
bridge, channels, WebSocket) is released by ``end()``, which is idempotent and runs whoever ends the call.
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
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from centralita.billing.usage import Usage
from centralita.calls.metrics import ServiceMetrics
from centralita.calls.stats import ServiceStats
from centralita.calls.transcript import TranscriptOrder
from centralita.calls.watchdog import Alarm, CallWatchdog
from centralita.config.bridge import FailureAction, Settings
from centralita.config.limits import CallLimitAction
from centralita.logs import Event, call_context, call_logger
from centralita.media.clips import Clips
from centralita.media.loop import LoopTimer, MediaEntry, MediaLoop
from centralita.media.pacer import PacedStream, PacerThread
from centralita.media.playout import Playout
from centralita.media.rtp import FRAME_BYTES, RtpReceiver
from centralita.realtime.connection import CloseInfo, RealtimeConnection, RealtimeError
from centralita.realtime.events import realtime_url, response_cancel, response_create, session_update, truncate
from centralita.realtime.on_loop import LoopRealtimeConnection
from centralita.realtime.tool_calls import ToolCall, ToolCallAssembler
from centralita.storage.queued import QueuedRecords
from centralita.storage.records import Direction, Outcome
from centralita.telephony.ari import AriError, AriRest
from centralita.tools.identity import CallIdentity
from centralita.tools.registry import ToolAction, ToolContext, ToolRegistry

if TYPE_CHECKING:
    from centralita.media.resample import Pcm24kToUlaw

log = logging.getLogger(__name__)


FAILOVER_REASON_VARIABLE: Final = "CENTRALITA_FAILOVER_REASON"
CLIP_PREFIX: Final = "centralita-"  # the item ids of the bridge's own recordings in a call's playout
_WATCHDOG_EVERY: Final = 0.2  # seconds between two looks at a call's watchdogs (on its RTP thread)
_UNSPECIFIED: Final = frozenset({"0.0.0.0", "::", ""})


# How long a channel refused by the bridge as "not in Stasis" yet is tried again, and how often.
_JOIN_SECONDS: Final = 3.0
_JOIN_RETRY_SECONDS: Final = 0.05


class FailoverReason(StrEnum):
    """Why the assistant could not go on: the value of ``CENTRALITA_FAILOVER_REASON``, which the failover
    context logs before the caller hears the notice (the dialplan's vocabulary: values never change)."""

    REALTIME_UNREACHABLE = "realtime_unreachable"  # the session could not be opened
    REALTIME_DROPPED = "realtime_dropped"  # the connection was lost mid-call
    REALTIME_ERROR = "realtime_error"  # the server reported a failure on its side (server_error)
    REALTIME_SESSION_EXPIRED = "realtime_session_expired"  # the server closed at the session's maximum length
    REALTIME_NO_REPLY = "realtime_no_reply"  # the model stayed silent (REPLY_TIMEOUT, twice)
    NO_CALLER_AUDIO = "no_caller_audio"  # no RTP from Asterisk for RTP_TIMEOUT
    SERVICE_RESTARTED = "service_restarted"  # the service restarted with the call up (reconciliation)
    CALL_SETUP_FAILED = "call_setup_failed"  # Asterisk refused to ring, answer, bridge or give media to the call


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
        records: QueuedRecords,
        tools: ToolRegistry,
        instructions: str,
        rng: random.Random | None = None,
        on_end: Callable[[Call], None] | None = None,
        pacer: PacerThread | None = None,
        clips: Clips | None = None,
        stats: ServiceStats | None = None,
        metrics: ServiceMetrics | None = None,
        media_loop: MediaLoop | None = None,
    ) -> None:
        """``caller`` and ``callee`` as in ``CallState``; an outbound call needs its ``campaign`` and
        ``attempt_id``, an inbound call has neither (ValueError otherwise).

        ``pacer`` paces the outgoing audio; the service should share one by all its calls (one thread for all
        instead of one each). Without it the call runs a PacerThread of its own. ``media_loop`` (MEDIA_ENGINE=loop)
        replaces the pacer, the call's RTP thread and its Realtime receive thread: the call's socket is read, its
        audio paced and sent, its Realtime WebSocket read and written (``realtime/on_loop.py``) and its watchdogs
        checked, all on the process's one loop; the caller's audio goes to the session every APPEND_MS
        (``settings.append_ms``). ``clips`` are the recorded
        phrases the watchdogs play (loaded from the package when not given); ``stats`` hears what the call
        dropped and which watchdogs fired, for the service's health snapshot; ``metrics`` counts what the call
        did for Prometheus (the service's registry).
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
        self._clips = clips or Clips.load()
        self._stats = stats
        self._metrics = metrics
        self._log = call_logger(channel_id, log)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socket: socket.socket | None = None
        self._rtp_port: int | None = None
        self._asterisk_rtp: tuple[str, int] | None = None
        self._realtime: RealtimeConnection | None = None
        self._playout = Playout(self._rng, max_queued_ms=settings.watchdogs.playout_max_seconds * 1000)
        self._overflowing = False
        self._assembler = ToolCallAssembler()
        self._tool_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"tools-{channel_id}")
        self._threads: list[threading.Thread] = []
        self._response_active = False
        self._after_speech: ToolAction | None = None  # what to do once the assistant's last words are played
        # Tools handed to the pool whose output (and the response.create after the last one) is not sent yet: the
        # assistant's last words are still to come, so a transfer or hang-up waiting for them must not fire.
        self._tools_owed = 0
        self._final: tuple[Outcome, str] | None = None  # the bridge's own goodbye is playing: then hang up
        self._pacer = pacer
        self._own_pacer: PacerThread | None = None
        self._paced: PacedStream | None = None
        self._media_loop = media_loop
        self._entry: MediaEntry | None = None  # the call's place on the media loop (MEDIA_ENGINE=loop)
        self._ticker: LoopTimer | None = None  # the call's watchdogs on the media loop
        self._caller_audio = bytearray()  # caller frames not appended yet (MEDIA_ENGINE=loop, APPEND_MS)
        self._caller_audio_since = 0.0  # when the oldest of them arrived
        self._append_bytes = settings.append_ms * FRAME_BYTES // 20
        self._receiver = RtpReceiver()  # the loop's reading of the call's RTP (the threads engine has its own)
        self._foreign = 0
        self._refused_sends = 0  # sends the Realtime connection refused (logged once)
        self._failing = False
        self._transfer_outcome: tuple[Outcome, str] | None = None
        self._converter: Pcm24kToUlaw | None = None  # only when the server ignores audio/pcmu output
        self._identity = CallIdentity(caller_id_usable=direction is Direction.INBOUND)  # who the caller proved to be
        self._watchdog: CallWatchdog | None = None
        self._clips_played = 0
        self._spent = Decimal(0)
        self._tokens = Usage()
        self._rtp_counts: dict[str, int] = {}
        self._caller_stopped: float | None = None  # when the caller last stopped speaking, until the answer's audio
        self._started_at = datetime.now(UTC)
        self._running_tool: str | None = None  # the tool the assistant is running now (for the live view)
        self._handing_over = False  # a transfer to a person (or the failover context) has begun
        # Both sides of the transcript, in the order they were said (the caller's text may come late).
        self._transcript = TranscriptOrder(
            lambda speaker, text, at: self._records.add_transcript(self.call_id, speaker, text, at),
            transcribe_caller=settings.transcription.enabled,
            now=lambda: self._records.now(),
            logger=self._log,
        )

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def call_id(self) -> str:
        return self.state.call_id

    @property
    def rtp_port(self) -> int | None:
        """The local UDP port of the call's RTP (None before the media is set up); kept once the call ended."""
        return self._rtp_port

    @property
    def playout(self) -> Playout:
        """The call's outgoing audio (what tests and reports read)."""
        return self._playout

    @property
    def rtp_counts(self) -> dict[str, int]:
        """What the call's RTP receiver dropped, once the call has ended: foreign, wrong_payload, malformed (and
        with MEDIA_ENGINE=loop uplink_dropped and send_blocked, see ``_report_media``)."""
        return dict(self._rtp_counts)

    def live_view(self) -> dict[str, Any]:
        """What the calls-in-progress list of the status snapshot shows of this call (``calls/status.py``).

        ``activity``: starting (the assistant not connected yet), listening, speaking (a reply running or its
        audio still playing), tool (running ``tool``), transferring (to a person or the failover context) or
        ending. Read from other threads without the call's lock: each value is one attribute read, and a view a
        moment old is all the list promises.
        """
        tool = self._running_tool
        if self._handing_over:
            activity = "transferring"
        elif self.state.ended.is_set() or self._stop.is_set():
            activity = "ending"
        elif tool is not None:
            activity = "tool"
        elif self._realtime is None:
            activity = "starting"
        elif self._response_active or self._playout.queued_ms > 0:
            activity = "speaking"
        else:
            activity = "listening"
        return {
            "call_id": self.call_id,
            "direction": str(self.state.direction),
            "caller": self.state.caller,
            "callee": self.state.callee,
            "did": self.state.did,
            "campaign": self.state.campaign,
            "started_at": self._started_at.isoformat(timespec="seconds"),
            "activity": activity,
            "tool": tool or "",
        }

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
        if self._stats is not None:
            self._stats.call_started()
        campaign = state.campaign if state.direction is Direction.OUTBOUND else None
        self._records.start_call(state.call_id, state.direction, state.caller, state.callee, campaign=campaign)
        if state.direction is Direction.INBOUND:  # the dialer's customer has answered already
            try:
                self._rest.ring(state.call_id)
            except AriError as error:
                self._setup_failed(error)
                return
            self._log.info("%s: opening the Realtime session before answering", Event.RINGING)
        try:
            self._connect_realtime()
        except (RealtimeError, OSError) as error:
            self._log.error("%s: cannot start the session: %s", Event.REALTIME_ERROR, error)
            if self._claim_failover():
                self._fail_over(
                    FailoverReason.REALTIME_UNREACHABLE, Outcome.REALTIME_FAILED, f"Realtime unavailable: {error}"
                )
            return
        if self._stop.is_set():  # the caller hung up while the phone rang
            return
        try:
            self._rest.answer(state.call_id)
            self._records.mark_answered(state.call_id)
            self._log.info("%s", Event.ARI_ANSWERED)
            self._setup_media()
        except (AriError, OSError) as error:
            with self._lock:
                handed_on = self._failing
            if handed_on:  # the session failed meanwhile: the failover already has the caller, never hang up
                self._log.warning("%s: %s; the caller is being handed on already", Event.SETUP_FAILED, error)
                return
            self._setup_failed(error)
            return
        self._watchdog = CallWatchdog(self._settings.watchdogs, time.monotonic())
        if self._media_loop is not None:
            self._start_on_loop(self._media_loop, self._watchdog)
            return
        context = contextvars.copy_context()  # the call's id on every log line of its thread
        thread = threading.Thread(
            target=context.run, args=(self._receive_rtp,), name=f"rtp-in-{state.call_id}", daemon=True
        )
        with self._lock:  # end() either ran already (nothing to start), or joins a thread that was started
            if state.ended.is_set():
                return
            self._threads.append(thread)
            thread.start()
        with self._lock:  # end() either ran already, or finds the stream (and the call's own pacer) to release
            if not state.ended.is_set():
                if self._pacer is None:
                    self._pacer = self._own_pacer = PacerThread(name=f"rtp-out-{state.call_id}")
                self._paced = self._pacer.add(self._play_slot)
        self._request_reply(response_create())  # the assistant greets first

    def _setup_failed(self, error: BaseException) -> None:
        """Asterisk would not set the call up (ring, answer, the bridge or the media channel): not the Realtime
        session's fault, but the caller must not be dropped either. Like a failing session: the notice, then the
        operator (the failover context, ``call_setup_failed``), or a hang-up with ON_REALTIME_FAILURE=hangup.
        What was created for the call is released by ``end()``; a channel that is gone already cannot be handed
        on and is hung up (``_transfer``)."""
        self._log.error("%s: %s", Event.SETUP_FAILED, error)
        if self._claim_failover():
            self._fail_over(FailoverReason.CALL_SETUP_FAILED, Outcome.ERROR, f"call setup failed: {error}")

    def _start_on_loop(self, loop: MediaLoop, watchdog: CallWatchdog) -> None:
        """MEDIA_ENGINE=loop: the call's socket and 20 ms slots go on the process's media loop, and its watchdogs
        on a timer of the loop (the Realtime connection is there already): no thread of the call's own."""
        sock = self._socket
        assert sock is not None

        def tick(now: float) -> float | None:
            if self._stop.is_set():
                return None
            if self._caller_audio and now - self._caller_audio_since >= self._settings.append_ms / 1000:
                self._append_caller_audio()  # RTP paused with part of a batch in: it goes now
            self._check_watchdogs(watchdog, now)
            return now + _WATCHDOG_EVERY

        with self._lock:  # end() either ran already, or finds the entry and the timer to release
            if self.state.ended.is_set():
                return
            self._entry = loop.add(sock, self._on_datagrams, self._play_slot, peer=self._asterisk_rtp)
            self._ticker = loop.call_at(loop.clock() + _WATCHDOG_EVERY, tick)
        self._request_reply(response_create())  # the assistant greets first

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
        if self._ticker is not None:
            self._ticker.cancel()
        if self._entry is not None:
            self._entry.cancel()  # waits for a round of the loop in progress: the socket is closed below
            counts = self._receiver.stats
            self._rtp_counts = {
                "foreign": self._foreign,
                "wrong_payload": counts.wrong_payload_type,
                "malformed": counts.malformed,
                "uplink_dropped": realtime.stats.audio_frames_dropped
                if isinstance(realtime, LoopRealtimeConnection)
                else 0,
            }
        current = threading.current_thread()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            if thread is not current:
                thread.join(2)
        self._tool_pool.shutdown(wait=False, cancel_futures=True)
        self._transcript.flush()  # the Realtime connection is closed: no more words will come
        if self._socket is not None:
            self._socket.close()
        for channel in (self.state.media_channel_id, self.state.call_id if hangup else ""):
            if channel:
                self._quietly(self._rest.hangup, channel)
        if self.state.bridge_id:
            self._quietly(self._rest.destroy_bridge, self.state.bridge_id)
        self._report_media()
        if self._tokens.total:
            prices = self._settings.spending.prices
            self._log.info(
                "usage: %d tokens, %s %s (%s)", self._tokens.total, f"{self._spent:.4f}", prices.currency, prices.as_of
            )
        self._records.end_call(self.state.call_id, outcome, detail)
        if self._stats is not None:
            self._stats.call_ended(outcome)
        if self._metrics is not None:
            self._metrics.call_ended(self.state.direction, outcome)
            self._metrics.transcriptions_failed(self._transcript.failed)
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

    def channel_gone(self, detail: str) -> None:
        """The caller's channel no longer exists and no event said so (Asterisk restarted, events were lost)."""
        self._log.warning("%s: %s", Event.RECOVERED, detail)
        self.end(Outcome.CHANNEL_GONE, detail)

    def hand_over(self, reason: str) -> None:
        """Give the caller to a person now (the service is stopping): never drop a caller on the floor."""
        if not self.state.ended.is_set():
            self._transfer(Outcome.SERVICE_STOPPED, reason)

    def _report_media(self) -> None:
        counts = self._rtp_counts
        overflow = self._playout.overflow_ms
        entry = self._entry
        if entry is not None:
            counts["send_blocked"] = entry.stats.send_blocked
        if counts.get("uplink_dropped") or counts.get("send_blocked"):
            self._log.warning(
                "media dropped: %d caller frames the Realtime connection did not take in time, %d frames to "
                "Asterisk with the socket's send buffer full",
                counts.get("uplink_dropped", 0),
                counts.get("send_blocked", 0),
            )
        if counts.get("foreign") or counts.get("wrong_payload") or overflow:
            self._log.warning(
                "media dropped: %d RTP datagrams from another source, %d not PCMU, %.0f ms of assistant audio "
                "over the %g s queue",
                counts.get("foreign", 0),
                counts.get("wrong_payload", 0),
                overflow,
                self._settings.watchdogs.playout_max_seconds,
            )
        if self._refused_sends:
            self._log.info("%d sends refused by the closed Realtime connection", self._refused_sends)
        if self._stats is not None:
            self._stats.media(
                rtp_foreign=counts.get("foreign", 0),
                rtp_wrong_payload=counts.get("wrong_payload", 0),
                rtp_malformed=counts.get("malformed", 0),
                playout_overflow_ms=round(overflow),
            )

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
        self._join_bridge(state.bridge_id, state.call_id)
        self._join_bridge(state.bridge_id, state.media_channel_id)
        self._log.info("%s: rtp %s:%s <-> asterisk %s:%s", Event.MEDIA_READY, host, port, *self._asterisk_rtp)

    def _join_bridge(self, bridge_id: str, channel_id: str) -> None:
        """Add a channel to the call's bridge. The ExternalMedia channel enters the Stasis app only after the
        request that created it has returned: on a busy Asterisk the add can come first and is refused (422
        "Channel not in Stasis application"), so it is tried again for up to ``_JOIN_SECONDS``. Any other error,
        a caller who hung up meanwhile, or the time running out, raises."""
        deadline = time.monotonic() + _JOIN_SECONDS
        while True:
            try:
                self._rest.add_to_bridge(bridge_id, channel_id)
                return
            except AriError as error:
                if error.status != 422 or self._stop.is_set() or time.monotonic() >= deadline:
                    raise
                self._log.info("%s not in the Stasis app yet; adding it again", channel_id)
            time.sleep(_JOIN_RETRY_SECONDS)

    def _connect_realtime(self) -> None:
        settings = self._settings
        url = realtime_url(settings.openai_base_url, settings.openai_model)
        self._log.info("%s (%s)", Event.CONNECTING, url)
        options: dict[str, Any] = {
            "on_event": self._on_realtime_event,
            "on_close": self._on_realtime_close,
            "ping_interval": settings.ws_ping_interval,
            "ping_timeout": settings.ws_ping_timeout,
        }
        connection: RealtimeConnection
        if self._media_loop is not None:
            connection = LoopRealtimeConnection(url, settings.openai_api_key, loop=self._media_loop, **options)
        else:
            connection = RealtimeConnection(url, settings.openai_api_key, **options)
        update = session_update(
            instructions=self._instructions,
            voice=settings.openai_voice,
            tools=self._tools.schemas(),
            transcription_model=settings.transcription.model,
            transcription_language=settings.transcription.language,
        )
        self._log.info("%s", Event.SESSION_UPDATE_SENT)
        began = time.monotonic()
        try:
            info = connection.connect(update, within=settings.watchdogs.connect_timeout)
        except (RealtimeError, OSError):
            if self._metrics is not None:
                self._metrics.realtime_failed()
            raise
        if self._metrics is not None:
            self._metrics.realtime_connected(time.monotonic() - began)
        with self._lock:  # end() (the caller hung up while it rang) either ran already, or will find it
            ended = self.state.ended.is_set()
            if not ended:
                self._realtime = connection
        if ended:
            connection.close()
            return
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

    def _from_asterisk(self, source: tuple[str, int]) -> bool:
        """Whether a datagram came from the call's own ExternalMedia channel (anything else is dropped)."""
        expected = self._asterisk_rtp
        if expected is None:
            return False
        address, port = expected
        return source[1] == port and (address in _UNSPECIFIED or source[0] == address)

    def _receive_rtp(self) -> None:
        sock = self._socket
        watchdog = self._watchdog
        assert sock is not None
        assert watchdog is not None
        receiver = RtpReceiver()
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        foreign = 0
        next_check = 0.0
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_check:
                    next_check = now + _WATCHDOG_EVERY
                    self._check_watchdogs(watchdog, now)
                try:
                    if not poller.poll(200):
                        continue
                    datagram, source = sock.recvfrom(2048)
                except BlockingIOError:
                    continue
                except OSError:
                    break
                if not self._from_asterisk(source):
                    foreign += 1
                    if foreign == 1:
                        self._log.warning("RTP from %s:%s, not this call's Asterisk channel: dropped", *source[:2])
                    continue
                watchdog.audio_received(now)
                for packet in receiver.receive(datagram):
                    if not self._send_audio(packet.payload):
                        return
        finally:
            counts = receiver.stats
            self._rtp_counts = {
                "foreign": foreign,
                "wrong_payload": counts.wrong_payload_type,
                "malformed": counts.malformed,
            }

    def _on_datagrams(self, datagrams: list[tuple[bytes, Any]], now: float) -> None:
        """A batch of the call's RTP, on the media loop (MEDIA_ENGINE=loop): the caller's frames, in order, go to
        the Realtime session once APPEND_MS of them are in (one append instead of one per 20 ms). It runs on the
        loop, which serves every call: it must never block (the connection only queues)."""
        pending = self._caller_audio
        heard = False
        for datagram, source in datagrams:
            if not self._from_asterisk(source):
                self._foreign += 1
                if self._foreign == 1:
                    self._log.warning("RTP from %s:%s, not this call's Asterisk channel: dropped", *source[:2])
                continue
            heard = True
            for packet in self._receiver.receive(datagram):
                if not pending:
                    self._caller_audio_since = now
                pending += packet.payload
                if len(pending) >= self._append_bytes:
                    self._append_caller_audio()
        watchdog = self._watchdog
        if heard and watchdog is not None:
            watchdog.audio_received(now)

    def _append_caller_audio(self) -> None:
        audio = bytes(self._caller_audio)
        self._caller_audio.clear()
        self._send_audio(audio)

    def _play_slot(self, skipped: int) -> bool:
        """Send this 20 ms slot's packet, if a frame is ready; False ends the call's stream.

        It runs on the pacer's thread or the media loop, which serve every call: it must never block.
        """
        sock = self._socket
        assert sock is not None
        assert self._asterisk_rtp is not None
        if self._stop.is_set():
            return False
        if skipped and self._metrics is not None:
            self._metrics.frames_late(skipped)
        packet = self._playout.next_frame(skipped)
        if packet is None:  # nothing left to play
            if self._final is not None:
                self._spawn("goodbye", self._finish_final)  # ending blocks (ARI): not on this thread
                return False
            if self._after_speech is not None and not self._response_active and not self._tools_owed:
                self._spawn("after-speech", self._finish_after_speech)
                return False
            return True
        entry = self._entry
        if entry is not None:
            return entry.send(packet)  # never blocks; a full buffer drops the frame (counted on the entry)
        try:
            sock.sendto(packet, self._asterisk_rtp)
        except BlockingIOError:
            pass  # the socket's buffer is full: this frame is lost, the next slot goes on
        except OSError:
            return False
        return True

    def _play_clip(self, name: str, audio: bytes) -> None:
        """Queue one of the bridge's own recordings after whatever is queued (an item of its own)."""
        self._clips_played += 1
        item_id = f"{CLIP_PREFIX}{name}-{self._clips_played}"
        self._playout.pad_remainder()
        self._playout.push(item_id, audio)
        self._playout.pad_remainder()

    # -- watchdogs ---------------------------------------------------------------------------------

    def _check_watchdogs(self, watchdog: CallWatchdog, now: float) -> None:
        """Act on the alarms due now; on the RTP thread, so nothing here may block (endings get a thread)."""
        self._transcript.release_due()
        for alarm in watchdog.check(now):
            if self._stop.is_set() or self._failing or self._final is not None:
                return
            if self._stats is not None:
                self._stats.alarm(alarm)
            self._on_alarm(alarm)

    def _on_alarm(self, alarm: Alarm) -> None:
        watchdogs = self._settings.watchdogs
        if alarm is Alarm.NO_CALLER_AUDIO:
            detail = f"no audio from Asterisk for {watchdogs.rtp_timeout:g} s"
            self._log.warning("%s: %s: giving the call up", Event.WATCHDOG, detail)
            self._fail_soon(FailoverReason.NO_CALLER_AUDIO, detail, Outcome.NO_CALLER_AUDIO)
        elif alarm is Alarm.FILLER:
            self._log.warning(
                "%s: no reply from the model for %g s: the caller hears a filler",
                Event.WATCHDOG,
                watchdogs.reply_timeout,
            )
            self._play_clip("filler", self._clips.filler)
        elif alarm is Alarm.NO_REPLY:
            detail = f"no reply from the model for {watchdogs.reply_timeout:g} s after the filler"
            self._log.warning("%s: %s: the caller goes to a person", Event.WATCHDOG, detail)
            self._fail_soon(FailoverReason.REALTIME_NO_REPLY, detail, Outcome.NO_REPLY)
        elif alarm is Alarm.TIME_WARNING:
            transfer = watchdogs.on_call_limit is CallLimitAction.TRANSFER
            self._log.warning(
                "%s: the call ends in %g s (maximum %g s): the caller is warned",
                Event.WATCHDOG,
                watchdogs.warning_lead,
                watchdogs.max_call_seconds,
            )
            self._play_clip("warning", self._clips.warning_transfer if transfer else self._clips.warning_hangup)
        elif alarm is Alarm.TIME_LIMIT:
            detail = f"the call reached its maximum length of {watchdogs.max_call_seconds:g} s"
            if watchdogs.on_call_limit is CallLimitAction.TRANSFER:
                self._log.warning("%s: %s: to the operator", Event.WATCHDOG, detail)
                if self._claim_failover():
                    self._spawn("time-limit", lambda: self._transfer(Outcome.TIME_LIMIT, detail))
            else:
                self._log.warning("%s: %s: goodbye, then hang up", Event.WATCHDOG, detail)
                self._say_goodbye(Outcome.TIME_LIMIT, detail)

    def _say_goodbye(self, outcome: Outcome, detail: str) -> None:
        """Stop the assistant, play the recorded goodbye whole, then hang up (``_finish_final``)."""
        if not self._claim_failover():
            return
        self._playout.barge_in()  # what the assistant was saying stops here
        if self._response_active:
            self._send(response_cancel())
        self._final = (outcome, detail)
        self._play_clip("goodbye", self._clips.goodbye)

    def _finish_final(self) -> None:
        final = self._final
        if final is not None:
            self.end(*final, hangup=True)

    # -- Realtime events ---------------------------------------------------------------------------

    def _send(self, event: Mapping[str, Any]) -> bool:
        connection = self._realtime
        if connection is None or self._stop.is_set():
            return False
        try:
            connection.send(event)
        except RealtimeError as error:
            self._send_failed(error)
            return False
        return True

    def _request_reply(self, event: Mapping[str, Any]) -> None:
        """Send a ``response.create``: the caller now waits for the assistant (the no-reply watchdog runs)."""
        self._response_active = True
        watchdog = self._watchdog
        if watchdog is not None:
            watchdog.expect_reply(time.monotonic())
        self._send(event)

    def _send_audio(self, audio: bytes) -> bool:
        """``_send(audio_append(audio))``, for less: see ``RealtimeConnection.send_audio``."""
        connection = self._realtime
        if connection is None or self._stop.is_set():
            return False
        try:
            connection.send_audio(audio)
        except RealtimeError as error:
            self._send_failed(error)
            return False
        return True

    def _send_failed(self, error: RealtimeError) -> None:
        """A send the connection refused. Logged once per call, and not at all when the call is ending (the send
        raced ``end()`` closing the connection): the lost connection is reported, and acted on, by its close."""
        self._refused_sends += 1
        if self._stop.is_set():
            self._log.debug("%s while the call ends: %s", Event.REALTIME_ERROR, error)
        elif self._refused_sends == 1:
            self._log.warning("%s: %s", Event.REALTIME_ERROR, error)

    def _on_realtime_event(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        watchdog = self._watchdog
        if self._final is not None and kind in ("response.output_audio.delta", "input_audio_buffer.speech_started"):
            return  # the bridge's goodbye is playing: nothing may cut it
        update = self._assembler.feed(event)
        if update.completed:  # at .arguments.done: owed until their outputs and the reply after them are sent
            with self._lock:
                self._tools_owed += len(update.completed)
        if kind == "response.output_audio.delta":
            if watchdog is not None:
                watchdog.reply_heard()
            stopped, self._caller_stopped = self._caller_stopped, None
            if stopped is not None and self._metrics is not None:
                self._metrics.replied(time.monotonic() - stopped)
            audio = base64.b64decode(event.get("delta", ""))
            if self._converter is not None:
                audio = self._converter.convert(audio)
            if not self._playout.push(str(event.get("item_id", "")), audio):
                if self._converter is not None:
                    self._converter.reset()  # the refused audio's filter state must not reach the next reply
                if self._playout.overflow_ms and not self._overflowing:
                    self._overflowing = True
                    self._log.warning(
                        "the model sends audio faster than it plays: over %g s queued, the rest is dropped",
                        self._settings.watchdogs.playout_max_seconds,
                    )
        elif kind == "response.output_audio.done":
            tail = self._converter.flush() if self._converter is not None else b""
            if tail:
                self._playout.push(str(event.get("item_id", "")), tail)
            self._playout.pad_remainder()
        elif kind == "input_audio_buffer.speech_started":
            self._caller_stopped = None
            if watchdog is not None:
                watchdog.caller_speaking()
            self._barge_in()
        elif kind == "input_audio_buffer.speech_stopped":
            self._caller_stopped = time.monotonic()
            if watchdog is not None:
                watchdog.expect_reply(time.monotonic())
        elif kind == "response.created":
            self._response_active = True
        elif kind == "response.done":
            # Outputs held for this response.done go out below with a response.create: the reply stays active
            # through the gap, or a transfer waiting for the last words would fire in it.
            self._response_active = any(ready.get("type") == "response.create" for ready in update.ready)
            self._record_usage(event)
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
        self._transcript.on_event(event)
        for call in update.completed:
            if watchdog is not None:
                # The model did reply (with a tool call); the tool has its own timeouts, and the wait for the
                # model starts again with the response.create that follows its output.
                watchdog.reply_heard()
            try:
                self._tool_pool.submit(self._run_tool, call)
            except RuntimeError:  # the pool is shut down: the call is ending
                with self._lock:
                    self._tools_owed -= 1
        self._send_ready(update.ready)

    def _record_usage(self, event: Mapping[str, Any]) -> None:
        """The tokens of a finished response, and what they cost, go to the records (for the budget)."""
        usage = Usage.from_response_done(event)
        if usage is None or not usage.total:
            return
        prices = self._settings.spending.prices
        cost = prices.cost(usage)
        self._tokens += usage
        self._spent += cost
        if self._metrics is not None:
            self._metrics.spent(usage, cost, prices.currency, prices.as_of)
        response = event.get("response")
        response_id = str(response.get("id", "")) if isinstance(response, Mapping) else ""
        self._records.add_usage(self.call_id, response_id, usage, cost, prices.currency, prices_as_of=prices.as_of)

    def _barge_in(self) -> None:
        if self._converter is not None:
            self._converter.reset()
        barge_in = self._playout.barge_in()
        active = self._response_active
        if self._metrics is not None:
            self._metrics.barge_in()
        self._log.info("%s: caller spoke, %.0f ms of assistant audio dropped", Event.BARGE_IN, barge_in.dropped_ms)
        if active:
            self._send(response_cancel())
        # The server's copy of the item keeps only what the caller heard: audio still queued, or audio the
        # server had yet to send (the reply still running), was never heard. (Not the bridge's own recordings:
        # the server never had them.)
        item_id = barge_in.item_id
        if item_id is not None and not item_id.startswith(CLIP_PREFIX) and (barge_in.dropped_ms > 0 or active):
            self._send(truncate(item_id, barge_in.audio_end_ms))

    def _run_tool(self, call: ToolCall) -> None:
        """Run one tool and send its output to the model, whatever happens to the tool or to its record."""
        output: Mapping[str, Any] = {
            "ok": False,
            "error": "La herramienta falló; ofrezca transferir la llamada a una persona.",
        }
        self._running_tool = call.name
        try:
            context = ToolContext(
                call_id=self.call_id,
                caller=self.state.customer_number,
                did=self.state.did,
                identity=self._identity,
            )
            result = self._tools.run(call.name, call.arguments, context)
            output = result.output
            self._log.info("tool %s -> %s", call.name, "ok" if result.ok else "error")
            if self._metrics is not None:
                self._metrics.tool_ran(call.name, "ok" if result.ok else "error", known=call.name in self._tools.tools)
            if result.action is not None:
                self._after_speech = result.action
            self._records.add_tool_call(
                self.call_id, call.call_id, call.name, _json_or_text(call.arguments), result.output, result.ok
            )
        except Exception:
            self._log.exception("tool %s failed", call.name)
            if self._metrics is not None:
                self._metrics.tool_ran(call.name, "failed", known=call.name in self._tools.tools)
        finally:
            self._running_tool = None
            try:
                self._send_ready(
                    self._assembler.submit(call.call_id, json.dumps(output, ensure_ascii=False, default=str))
                )
            finally:
                # Only now: the response.create after the last output (if this was it) has made the reply active.
                with self._lock:
                    self._tools_owed -= 1

    def _send_ready(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Send tool outputs and the response.create that follows them.

        The reply is counted as active from the moment it is asked for: a transfer or hang-up waiting for
        the assistant's last words must not fire in the gap before the server's response.created.
        """
        for event in events:
            if event.get("type") == "response.create":
                self._request_reply(event)
            else:
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

    def _fail_soon(self, reason: FailoverReason, detail: str, outcome: Outcome = Outcome.REALTIME_FAILED) -> None:
        """The assistant cannot go on (seen on a thread that must not block): fail over once, on a thread of its
        own."""
        if self._claim_failover():
            self._spawn("failover", lambda: self._fail_over(reason, outcome, detail))

    def _fail_over(self, reason: FailoverReason, outcome: Outcome, detail: str) -> None:
        """The assistant cannot go on: the caller hears why (failover context) and reaches a person, or is hung up
        (ON_REALTIME_FAILURE=hangup).

        Only after ``_claim_failover`` returned True.
        """
        if self._settings.on_realtime_failure is FailureAction.TRANSFER:
            with contextlib.suppress(AriError):  # only feeds the dialplan's log line
                self._rest.set_channel_var(self.call_id, FAILOVER_REASON_VARIABLE, reason)
            self._transfer(outcome, detail, context=self._settings.failover_context)
        else:
            self.end(outcome, detail, hangup=True)

    def _transfer(self, outcome: Outcome, detail: str = "", *, context: str = "") -> None:
        context = context or self._settings.operator_context
        self._handing_over = True
        self._log.info("%s (%s)", Event.TRANSFERRING, context)
        # Leave the bridge first: the caller's channel goes back to the dialplan while we release the rest.
        self._stop.set()
        # The StasisEnd this causes may be handled before continue_in_dialplan returns: it is not a hang-up.
        self._transfer_outcome = (outcome, detail)
        try:
            self._rest.continue_in_dialplan(self.call_id, context)
        except AriError as error:
            self._transfer_outcome = None
            self._handing_over = False
            self._log.error("%s: %s", Event.TRANSFER_FAILED, error)
            failed = outcome if outcome in _GIVEN_UP else Outcome.ERROR
            self.end(failed, f"{Event.TRANSFER_FAILED}: {error}", hangup=True)
            return
        self.end(outcome, detail)

    @staticmethod
    def _quietly(action: Callable[[str], None], target: str) -> None:
        try:
            action(target)
        except AriError as error:
            if error.status != 404:  # already gone: fine
                log.debug("cleanup of %s: %s", target, error)


# Endings whose outcome stands even when the transfer that should follow them fails (the caller is hung up
# instead): what the watchdog found is the story of the call, not the transfer.
_GIVEN_UP: Final = frozenset({Outcome.NO_CALLER_AUDIO, Outcome.NO_REPLY, Outcome.TIME_LIMIT})


def _json_or_text(arguments: str) -> dict[str, Any]:
    try:
        parsed = json.loads(arguments or "{}")
    except ValueError:
        return {"raw": arguments}
    return parsed if isinstance(parsed, dict) else {"value": parsed}


__all__ = ["CLIP_PREFIX", "FAILOVER_REASON_VARIABLE", "Call", "CallState", "FailoverReason"]
