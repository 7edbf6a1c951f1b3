"""``AriOriginator``: places the dialer's calls with ARI ``POST /channels`` and follows them to their end.

**Placing a call.** ``POST /ari/channels`` with the attempt's preset ``channelId``, ``endpoint`` from
``DIALER_ENDPOINT`` (``PJSIP/<number>@<trunk>``), ``timeout`` (ring seconds), ``callerId`` if set, the channel
variables ``CENTRALITA_ATTEMPT``, ``CENTRALITA_CAMPAIGN``, ``CENTRALITA_NUMBER`` and ``CENTRALITA_ON_MACHINE``
in the body, and where the answered call goes:

* ``app=<ARI_APP>`` and ``appArgs=outbound,<attempt id>``: straight into the bridge's Stasis application; or
* ``context=<DIALER_CONTEXT>``, ``extension=<DIALER_EXTENSION>``, ``priority=1``: through the dialplan first
  (answering-machine detection), which then sends the call to ``Stasis(<ARI_APP>,outbound,<attempt id>,...)``.

Answers: 200 the call is ringing; **409** the channel id exists, so this attempt was already placed: it is
followed, never placed again; 400 and other errors: nothing was dialled. No answer at all: a refused
connection means nothing was dialled; a timeout means the call may be ringing, and it is followed like one.

**Following a call.** The dialer has an ARI application of its own (``DIALER_EVENTS_APP``, events only, no
channel ever enters it) and subscribes it to each channel it places
(``POST /applications/<app>/subscription?eventSource=channel:<id>``). From the events:

* ``ChannelStateChange`` to ``Up``: answered;
* ``ChannelVarset`` of ``AMDSTATUS`` (set by ``AMD()`` in the dialplan): ``MACHINE`` means an answering machine;
* ``Dial`` with a ``dialstatus`` (BUSY, NOANSWER, CONGESTION, CHANUNAVAIL, ...), when Asterisk sends one;
* ``ChannelDestroyed`` with its Q.850 ``cause``: the end, mapped by ``outcome_for_end``.

As a safety net every followed channel is also looked up (``GET /channels/<id>``) every ``poll_interval``
seconds; one that has been gone for ``gone_grace`` seconds without a ``ChannelDestroyed`` ends as answered (if
it was) or ``unknown``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from centralita.config.dialer import DialerSettings
from centralita.dialer.originator import (
    CallEvent,
    ChannelExists,
    DialRefused,
    DialRequest,
    DialUncertain,
    EventKind,
    Presence,
)
from centralita.dialer.outcomes import Outcome
from centralita.logs import call_logger
from centralita.telephony.ari import AriEndpoint, AriError, AriRest

__all__ = ["AriOriginator", "outcome_for_end"]

log = logging.getLogger(__name__)

# Q.850 hangup causes, as Asterisk reports them in ChannelDestroyed.
CAUSE_UNALLOCATED: Final = 1
CAUSE_NO_ROUTE_DESTINATION: Final = 3
CAUSE_NORMAL_CLEARING: Final = 16
CAUSE_USER_BUSY: Final = 17
CAUSE_NO_USER_RESPONSE: Final = 18
CAUSE_NO_ANSWER: Final = 19
CAUSE_SUBSCRIBER_ABSENT: Final = 20
CAUSE_CALL_REJECTED: Final = 21
CAUSE_NUMBER_CHANGED: Final = 22
CAUSE_INVALID_NUMBER_FORMAT: Final = 28

_WRONG_NUMBER_CAUSES: Final = frozenset(
    {CAUSE_UNALLOCATED, CAUSE_NO_ROUTE_DESTINATION, CAUSE_NUMBER_CHANGED, CAUSE_INVALID_NUMBER_FORMAT}
)
_BUSY_CAUSES: Final = frozenset({CAUSE_USER_BUSY, CAUSE_CALL_REJECTED})
_NO_ANSWER_CAUSES: Final = frozenset(
    {CAUSE_NORMAL_CLEARING, CAUSE_NO_USER_RESPONSE, CAUSE_NO_ANSWER, CAUSE_SUBSCRIBER_ABSENT}
)
_DIALSTATUS: Final[Mapping[str, Outcome]] = {
    "BUSY": Outcome.BUSY,
    "NOANSWER": Outcome.NO_ANSWER,
    "CANCEL": Outcome.NO_ANSWER,
    "CONGESTION": Outcome.FAILED,
    "CHANUNAVAIL": Outcome.FAILED,
}


def outcome_for_end(
    cause: int | None,
    *,
    answered: bool,
    amd_status: str | None = None,
    dialstatus: str | None = None,
) -> Outcome:
    """The outcome of a call that ended with Q.850 ``cause``.

    Answered calls are ``answered-machine`` when AMD said MACHINE, else ``answered-human`` (the assistant's own
    outcome, if it recorded one, takes precedence in the store). Unanswered: causes 1, 3, 22, 28 (the number
    does not exist) are ``wrong-number``; then a final ``dialstatus`` decides when there is one; then 17 and 21
    are ``busy``, 16, 18, 19 and 20 ``no-answer`` (16 before an answer is the ring timeout running out); any
    other cause is ``failed``.
    """
    if answered:
        return Outcome.ANSWERED_MACHINE if (amd_status or "").upper() == "MACHINE" else Outcome.ANSWERED_HUMAN
    if cause in _WRONG_NUMBER_CAUSES:
        return Outcome.WRONG_NUMBER
    if dialstatus and dialstatus.upper() in _DIALSTATUS:
        return _DIALSTATUS[dialstatus.upper()]
    if cause in _BUSY_CAUSES:
        return Outcome.BUSY
    if cause in _NO_ANSWER_CAUSES:
        return Outcome.NO_ANSWER
    return Outcome.FAILED


@dataclass(slots=True)
class _Call:
    """What the events said so far about one followed channel."""

    answered: bool = False
    amd_status: str | None = None
    amd_cause: str = ""
    dialstatus: str | None = None
    missing_since: float | None = None
    ended: bool = False


class AriOriginator:
    """The ``Originator`` for Asterisk. ``handle_event`` and ``handle_state`` are fed by an ``AriEvents``
    connection for ``events_app``; everything else runs on the runner's thread."""

    def __init__(
        self,
        rest: AriRest,
        *,
        dial_string: Callable[[str], str],
        stasis_app: str,
        events_app: str,
        context: str = "",
        extension: str = "s",
        caller_id: str = "",
        ring_timeout: int = 30,
        poll_interval: float = 10.0,
        gone_grace: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
        trunk_source: str = "",
    ) -> None:
        self._rest = rest
        # "endpoint:PJSIP/provider": the events of every channel on the trunk, so even a call refused at once
        # (busy in a few ms, before its own subscription could exist) is heard with its hang-up cause.
        self._trunk_source = trunk_source
        self._dial_string = dial_string
        self._stasis_app = stasis_app
        self._events_app = events_app
        self._context = context
        self._extension = extension
        self._caller_id = caller_id
        self._ring_timeout = ring_timeout
        self._poll_interval = poll_interval
        self._gone_grace = gone_grace
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._calls: dict[str, _Call] = {}
        self._events: queue.SimpleQueue[CallEvent] = queue.SimpleQueue()
        self._next_poll = 0.0

    @classmethod
    def from_settings(cls, settings: DialerSettings, *, timeout: float = 5.0) -> AriOriginator:
        return cls(
            AriRest(cls.endpoint(settings), timeout=timeout),
            dial_string=settings.dial_string,
            stasis_app=settings.ari_app,
            events_app=settings.events_app,
            context=settings.context,
            extension=settings.extension,
            caller_id=settings.caller_id,
            ring_timeout=settings.ring_timeout,
            trunk_source=trunk_event_source(settings),
        )

    @staticmethod
    def endpoint(settings: DialerSettings) -> AriEndpoint:
        """Where ARI is, as the dialer's events application."""
        return AriEndpoint(settings.ari_url, settings.ari_user, settings.ari_password.reveal(), settings.events_app)

    # ---- placing ---------------------------------------------------------------------------------------

    def originate(self, request: DialRequest) -> None:
        params: dict[str, str | int] = {
            "endpoint": self._dial_string(request.number),
            "channelId": request.channel_id,
            "timeout": self._ring_timeout,
        }
        if self._context:
            params.update(context=self._context, extension=self._extension, priority=1)
        else:
            params.update(app=self._stasis_app, appArgs=f"outbound,{request.attempt_id}")
        if self._caller_id:
            params["callerId"] = self._caller_id
        with self._lock:  # before the request: events may arrive before its answer does
            self._calls[request.channel_id] = _Call()
        try:
            self._rest.request("POST", "/channels", params, {"variables": dict(request.variables)})
        except AriError as error:
            if error.status == 409:
                self._subscribe(request.channel_id)
                raise ChannelExists(str(error)) from None
            if error.status is None and "refused" not in str(error).lower():
                self._subscribe(request.channel_id)
                raise DialUncertain(str(error)) from None
            self.forget(request.channel_id)
            unreachable = error.status is None or error.status in (401, 403, 503)
            raise DialRefused(str(error), unreachable=unreachable) from None
        self._subscribe(request.channel_id)

    def _subscribe(self, channel_id: str) -> None:
        try:
            self._rest.request(
                "POST", f"/applications/{self._events_app}/subscription", {"eventSource": f"channel:{channel_id}"}
            )
        except AriError as error:
            if error.status == 422:  # the channel is already gone: the trunk's events, or the next poll, tell how
                self._next_poll = 0.0
                call_logger(channel_id, log).info("the call ended before it could be followed on its own")
                return
            call_logger(channel_id, log).warning("cannot follow the call by events (%s): looking it up instead", error)

    def watch(self, channel_id: str) -> None:
        answered = False
        try:
            channel = self._rest.request("GET", f"/channels/{channel_id}")
            answered = str((channel or {}).get("state", "")) == "Up"
        except AriError:
            pass  # gone or unreachable: the next poll finds out
        with self._lock:
            call = self._calls.setdefault(channel_id, _Call())
            call.answered = call.answered or answered
        self._subscribe(channel_id)
        self._next_poll = 0.0

    def forget(self, channel_id: str) -> None:
        with self._lock:
            self._calls.pop(channel_id, None)

    @property
    def following(self) -> list[str]:
        with self._lock:
            return list(self._calls)

    # ---- asking ----------------------------------------------------------------------------------------

    def presence(self, channel_id: str) -> Presence:
        try:
            self._rest.request("GET", f"/channels/{channel_id}")
        except AriError as error:
            return Presence.GONE if error.status == 404 else Presence.UNKNOWN
        return Presence.EXISTS

    def poll(self) -> list[CallEvent]:
        now = self._monotonic()
        if now >= self._next_poll:
            self._next_poll = now + self._poll_interval
            self._look_up_all(now)
        events: list[CallEvent] = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events

    def _look_up_all(self, now: float) -> None:
        with self._lock:
            channels = [channel_id for channel_id, call in self._calls.items() if not call.ended]
        for channel_id in channels:
            try:
                channel = self._rest.request("GET", f"/channels/{channel_id}")
            except AriError as error:
                if error.status == 404:
                    self._missing(channel_id, now)
                continue
            state = str((channel or {}).get("state", ""))
            with self._lock:
                call = self._calls.get(channel_id)
                if call is None or call.ended:
                    continue
                call.missing_since = None
                if state == "Up" and not call.answered:
                    call.answered = True
                    self._events.put(CallEvent(EventKind.ANSWERED, channel_id))

    def _missing(self, channel_id: str, now: float) -> None:
        with self._lock:
            call = self._calls.get(channel_id)
            if call is None or call.ended:
                return
            if call.missing_since is None:
                call.missing_since = now
                self._next_poll = min(self._next_poll, now + self._gone_grace)
                return
            if now - call.missing_since < self._gone_grace:
                return
            call.ended = True
            outcome = Outcome.UNKNOWN
            if call.answered:
                outcome = outcome_for_end(None, answered=True, amd_status=call.amd_status)
            self._events.put(
                CallEvent(
                    EventKind.ENDED, channel_id, outcome, None, "the channel is gone; no ChannelDestroyed was seen"
                )
            )

    # ---- events (on the AriEvents thread) --------------------------------------------------------------

    def handle_state(self, state: str) -> None:
        """After a (re)connection, subscribe again: an Asterisk restart forgets the subscriptions."""
        if state != "connected":
            log.warning("dialer events disconnected; calls are looked up every %.0f s meanwhile", self._poll_interval)
            return
        if self._trunk_source:
            try:
                self._rest.request(
                    "POST", f"/applications/{self._events_app}/subscription", {"eventSource": self._trunk_source}
                )
            except AriError as error:
                log.warning("cannot follow the trunk's channels (%s): following each call instead", error)
        with self._lock:
            channels = [channel_id for channel_id, call in self._calls.items() if not call.ended]
        for channel_id in channels:
            self._subscribe(channel_id)
        self._next_poll = 0.0

    def handle_event(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        source = event.get("peer") if kind == "Dial" else event.get("channel")
        channel_id = str((source or {}).get("id", ""))
        with self._lock:
            call = self._calls.get(channel_id)
            if call is None or call.ended:
                return
            if kind == "ChannelStateChange":
                if (source or {}).get("state") == "Up" and not call.answered:
                    call.answered = True
                    self._events.put(CallEvent(EventKind.ANSWERED, channel_id))
            elif kind == "ChannelVarset":
                variable, value = str(event.get("variable", "")), str(event.get("value", ""))
                if variable == "AMDSTATUS":
                    call.amd_status = value
                    if value.upper() == "MACHINE":
                        self._events.put(CallEvent(EventKind.MACHINE, channel_id, detail=call.amd_cause))
                elif variable == "AMDCAUSE":
                    call.amd_cause = value
            elif kind == "Dial":
                status = str(event.get("dialstatus", ""))
                if status:
                    call.dialstatus = status
                    if status == "ANSWER" and not call.answered:
                        call.answered = True
                        self._events.put(CallEvent(EventKind.ANSWERED, channel_id))
            elif kind == "ChannelDestroyed":
                raw_cause = event.get("cause")
                cause = raw_cause if isinstance(raw_cause, int) else None
                call.ended = True
                outcome = outcome_for_end(
                    cause, answered=call.answered, amd_status=call.amd_status, dialstatus=call.dialstatus
                )
                detail = str(event.get("cause_txt", ""))
                if call.dialstatus:
                    detail = f"{detail}; dialstatus {call.dialstatus}".lstrip("; ")
                self._events.put(CallEvent(EventKind.ENDED, channel_id, outcome, cause, detail))


def trunk_event_source(settings: DialerSettings) -> str:
    """The ARI event source of the trunk's endpoint (``endpoint:PJSIP/provider``), or "" if the dial string
    does not name one (a custom DIALER_ENDPOINT)."""
    technology, slash, _rest = settings.endpoint.partition("/")
    if not slash or "{trunk}" not in settings.endpoint or not technology.isalpha():
        return ""
    return f"endpoint:{technology}/{settings.trunk}"
