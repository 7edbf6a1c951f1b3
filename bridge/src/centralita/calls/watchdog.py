"""The watchdogs of one call: what it waits for, and how long before it stops waiting.

A caller must never be left in dead air, and no call may hold the box's resources forever. Each watchdog has
its own setting (``config.limits.Watchdogs``) and its own recorded outcome:

* **No caller audio** (``RTP_TIMEOUT``): the call's mixing bridge relays to its ExternalMedia channel what the
  caller's side sends, every 20 ms on an ordinary line. Nothing at all for that long means Asterisk or the
  media channel is gone (or the phone went quiet for that long: on hold, silence suppression; hence the
  generous default): the call is given up (``Outcome.NO_CALLER_AUDIO``).
* **No reply** (``REPLY_TIMEOUT``): once a reply is due (the greeting asked for, the caller stopped speaking, a
  tool's output sent) and no audio of it has come for that long, the caller hears a short recorded "un
  momento" (``FILLER``); if still nothing comes for as long again, the caller goes to a person
  (``NO_REPLY``). The filler plays once per wait; a reply (or the caller speaking again) ends the wait.
* **Call length** (``MAX_CALL_SECONDS``, counted from the answer): a recorded warning a minute before
  (``TIME_WARNING``), then the operator or a goodbye (``TIME_LIMIT``). The Realtime API ends a session at 60
  minutes; the setting's maximum keeps every call inside that, so the session's own limit is never what
  ends a call.

``CallWatchdog`` is only the arithmetic: the call tells it what happened (``audio_received``, ``expect_reply``,
``reply_heard``, ``caller_speaking``) and asks ``check(now)`` a few times a second, then acts on the alarms it
gets. Each alarm fires once. The clock is the caller's (monotonic seconds), so tests drive it exactly.
"""

from __future__ import annotations

import threading
from enum import StrEnum

from centralita.config.limits import Watchdogs

__all__ = ["Alarm", "CallWatchdog"]


class Alarm(StrEnum):
    """What a watchdog says; the values are logged and counted in the service's health snapshot."""

    NO_CALLER_AUDIO = "no_caller_audio"
    FILLER = "filler"
    NO_REPLY = "no_reply"
    TIME_WARNING = "time_warning"
    TIME_LIMIT = "time_limit"


class CallWatchdog:
    """The deadlines of one call, from ``started`` (the answer). Thread-safe."""

    def __init__(self, settings: Watchdogs, started: float) -> None:
        self._settings = settings
        self._started = started
        self._lock = threading.Lock()
        self._last_audio = started
        self._waiting_since: float | None = None
        self._filler_played = False
        self._fired: set[Alarm] = set()

    @property
    def waiting(self) -> bool:
        """Whether a reply is due and has not come."""
        with self._lock:
            return self._waiting_since is not None

    def audio_received(self, now: float) -> None:
        """A packet came from Asterisk. (Called 50 times a second: a single assignment, no lock.)"""
        self._last_audio = now

    def expect_reply(self, now: float) -> None:
        """A reply is due from now on (unless one was due already: the wait keeps its start)."""
        with self._lock:
            if self._waiting_since is None:
                self._waiting_since = now
                self._filler_played = False

    def reply_heard(self) -> None:
        """Audio of a reply arrived: the wait is over."""
        with self._lock:
            self._waiting_since = None
            self._filler_played = False

    def caller_speaking(self) -> None:
        """The caller started speaking: nobody is waiting in silence (a reply is due again when they stop)."""
        self.reply_heard()

    def check(self, now: float) -> list[Alarm]:
        """The alarms due at ``now``, each once (``FILLER`` and ``NO_REPLY`` once per wait)."""
        settings = self._settings
        alarms: list[Alarm] = []
        with self._lock:
            if now - self._last_audio >= settings.rtp_timeout:
                self._once(Alarm.NO_CALLER_AUDIO, alarms)
            since = self._waiting_since
            if since is not None and now - since >= settings.reply_timeout:
                if not self._filler_played:
                    self._filler_played = True
                    self._waiting_since = now  # as long again, with the filler played, before the operator
                    alarms.append(Alarm.FILLER)
                else:
                    self._waiting_since = None
                    alarms.append(Alarm.NO_REPLY)
            elapsed = now - self._started
            if elapsed >= settings.max_call_seconds - settings.warning_lead:
                self._once(Alarm.TIME_WARNING, alarms)
            if elapsed >= settings.max_call_seconds:
                self._once(Alarm.TIME_LIMIT, alarms)
        return alarms

    def _once(self, alarm: Alarm, alarms: list[Alarm]) -> None:
        if alarm not in self._fired:
            self._fired.add(alarm)
            alarms.append(alarm)
