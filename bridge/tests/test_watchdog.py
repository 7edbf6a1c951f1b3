"""``calls.watchdog.CallWatchdog``: the arithmetic of a call's deadlines, on a clock the test drives."""

from __future__ import annotations

from centralita.calls.watchdog import Alarm, CallWatchdog
from centralita.config.limits import Watchdogs

SETTINGS = Watchdogs(rtp_timeout=10.0, reply_timeout=8.0, max_call_seconds=300.0)


def test_no_caller_audio_fires_once_after_the_timeout_and_audio_resets_it() -> None:
    dog = CallWatchdog(SETTINGS, started=0.0)
    dog.audio_received(5.0)
    assert dog.check(14.9) == []
    assert dog.check(15.0) == [Alarm.NO_CALLER_AUDIO]
    assert dog.check(30.0) == []  # once


def test_a_silent_model_gets_a_filler_then_the_operator() -> None:
    dog = CallWatchdog(SETTINGS, started=0.0)
    dog.audio_received(100.0)
    dog.expect_reply(1.0)
    assert dog.waiting
    assert dog.check(8.9) == []
    assert dog.check(9.0) == [Alarm.FILLER]
    assert dog.check(16.9) == []  # as long again after the filler
    assert dog.check(17.0) == [Alarm.NO_REPLY]
    assert not dog.waiting


def test_a_reply_or_the_caller_speaking_ends_the_wait() -> None:
    dog = CallWatchdog(SETTINGS, started=0.0)
    dog.audio_received(100.0)
    dog.expect_reply(1.0)
    dog.reply_heard()
    assert dog.check(50.0) == []
    dog.expect_reply(50.0)
    dog.expect_reply(55.0)  # a wait keeps its start
    assert dog.check(58.0) == [Alarm.FILLER]
    dog.caller_speaking()
    dog.expect_reply(60.0)  # a new wait: the filler may play again
    assert dog.check(68.0) == [Alarm.FILLER]


def test_the_longest_call_is_warned_a_minute_before_then_ended() -> None:
    dog = CallWatchdog(SETTINGS, started=10.0)
    dog.audio_received(1000.0)
    assert dog.check(249.9) == []
    assert dog.check(250.0) == [Alarm.TIME_WARNING]
    assert dog.check(309.9) == []
    assert dog.check(310.0) == [Alarm.TIME_LIMIT]
    assert dog.check(400.0) == []


def test_a_short_limit_is_warned_half_way() -> None:
    assert Watchdogs(max_call_seconds=90.0).warning_lead == 45.0
    assert Watchdogs(max_call_seconds=1800.0).warning_lead == 60.0
