"""AriOriginator against a local stand-in for ARI (real HTTP and a real events WebSocket): requests, errors, events."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from centralita.dialer.ari_originator import AriOriginator, outcome_for_end
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
from centralita.telephony.ari import AriEndpoint, AriEvents, AriRest
from centralita_testing.fake_asterisk import FakeAsterisk

USER, PASSWORD = "centralita", "secreto"
EVENTS_APP = "centralita-dialer"


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ari() -> Iterator[FakeAsterisk]:
    with FakeAsterisk(USER, PASSWORD) as fake:
        yield fake


def make_originator(ari: FakeAsterisk, ticks: Ticks | None = None, **options: object) -> AriOriginator:
    rest = AriRest(AriEndpoint(ari.url, USER, PASSWORD, EVENTS_APP), timeout=float(options.pop("timeout", 2.0)))  # type: ignore[arg-type]
    settings: dict[str, object] = {
        "dial_string": lambda number: f"PJSIP/{number}@provider",
        "stasis_app": "centralita",
        "events_app": EVENTS_APP,
        "caller_id": '"ISP Demo" <+525550000000>',
        "ring_timeout": 25,
        "poll_interval": 10.0,
        "gone_grace": 5.0,
        "monotonic": ticks or Ticks(),
    }
    settings.update(options)
    return AriOriginator(rest, **settings)  # type: ignore[arg-type]


@pytest.fixture
def connected(ari: FakeAsterisk) -> Iterator[tuple[AriOriginator, Ticks]]:
    """An originator with its events WebSocket connected to the fake."""
    ticks = Ticks()
    originator = make_originator(ari, ticks)
    # A short ping timeout: websocket-client may wait that long to notice a close it started from another thread.
    events = AriEvents(
        AriEndpoint(ari.url, USER, PASSWORD, EVENTS_APP),
        originator.handle_event,
        originator.handle_state,
        ping_interval=1.0,
        ping_timeout=0.3,
    )
    events.start()
    assert events.wait_connected(5), "the events WebSocket did not connect to the fake ARI"
    assert ari.wait_until(lambda: EVENTS_APP in ari.connected_apps())
    yield originator, ticks
    events.stop()


def request(attempt: int = 7, channel: str = "centralita-out-7-abcd") -> DialRequest:
    return DialRequest(
        attempt_id=attempt,
        channel_id=channel,
        number="+5215550001111",
        campaign="marzo",
        customer_id="C001",
        variables={"CENTRALITA_ATTEMPT": str(attempt), "CENTRALITA_ON_MACHINE": "nothing"},
    )


def wait_events(originator: AriOriginator, ari: FakeAsterisk, count: int) -> list[CallEvent]:
    collected: list[CallEvent] = []

    def enough() -> bool:
        collected.extend(originator.poll())
        return len(collected) >= count

    assert ari.wait_until(enough), f"expected {count} events, got {collected}"
    return collected


# ---- the originate request ---------------------------------------------------------------------------


def test_originate_into_the_stasis_app_with_a_preset_channel_id(ari: FakeAsterisk) -> None:
    originator = make_originator(ari)
    originator.originate(request())
    [sent] = ari.requests_to("POST", "/ari/channels")
    assert sent.query == {
        "endpoint": "PJSIP/+5215550001111@provider",
        "channelId": "centralita-out-7-abcd",
        "timeout": "25",
        "app": "centralita",
        "appArgs": "outbound,7",
        "callerId": '"ISP Demo" <+525550000000>',
    }
    assert sent.body == {"variables": {"CENTRALITA_ATTEMPT": "7", "CENTRALITA_ON_MACHINE": "nothing"}}
    assert "centralita-out-7-abcd" in ari.channels
    # Then it asks to follow the channel with its own events application (not connected here: 404, logged).
    [subscription] = ari.requests_to("POST", f"/ari/applications/{EVENTS_APP}/subscription")
    assert subscription.query == {"eventSource": "channel:centralita-out-7-abcd"}


def test_originate_into_a_dialplan_context_for_amd(ari: FakeAsterisk) -> None:
    originator = make_originator(ari, context="centralita-outbound-amd", extension="s", caller_id="")
    originator.originate(request())
    [sent] = ari.requests_to("POST", "/ari/channels")
    assert sent.query["context"] == "centralita-outbound-amd"
    assert (sent.query["extension"], sent.query["priority"]) == ("s", "1")
    assert "app" not in sent.query
    assert "appArgs" not in sent.query
    assert "callerId" not in sent.query


def test_a_channel_id_already_in_use_is_never_dialled_again(ari: FakeAsterisk) -> None:
    originator = make_originator(ari)
    originator.originate(request())
    with pytest.raises(ChannelExists, match="409"):
        originator.originate(request())
    assert len(ari.channels) == 1
    assert "centralita-out-7-abcd" in originator.following  # still followed: that call is real


def test_asterisk_refusing_the_parameters_means_nothing_was_dialled(ari: FakeAsterisk) -> None:
    originator = make_originator(ari)
    ari.fail("POST", "/ari/channels", 400, "Invalid parameters for originating a channel")
    with pytest.raises(DialRefused, match="Invalid parameters") as refused:
        originator.originate(request())
    assert not refused.value.unreachable
    assert ari.channels == {}
    assert originator.following == []


def test_wrong_credentials_hold_the_dialer_back(ari: FakeAsterisk) -> None:
    rest = AriRest(AriEndpoint(ari.url, USER, "wrong", EVENTS_APP))
    originator = AriOriginator(rest, dial_string=str, stasis_app="centralita", events_app=EVENTS_APP)
    with pytest.raises(DialRefused) as refused:
        originator.originate(request())
    assert refused.value.unreachable
    assert ari.channels == {}


def test_asterisk_not_listening_means_nothing_was_dialled() -> None:
    fake = FakeAsterisk(USER, PASSWORD).start()
    url = fake.url
    fake.stop()
    originator = AriOriginator(
        AriRest(AriEndpoint(url, USER, PASSWORD, EVENTS_APP), timeout=1.0),
        dial_string=str,
        stasis_app="centralita",
        events_app=EVENTS_APP,
    )
    with pytest.raises(DialRefused, match="refused") as refused:
        originator.originate(request())
    assert refused.value.unreachable
    assert originator.presence("centralita-out-7-abcd") is Presence.UNKNOWN


def test_a_late_answer_is_uncertain_and_the_call_is_followed(ari: FakeAsterisk) -> None:
    originator = make_originator(ari, timeout=0.3)
    ari.slow("POST", "/ari/channels", 1.0)  # Asterisk created the channel but answered too late
    with pytest.raises(DialUncertain, match="timed out"):
        originator.originate(request())
    assert originator.following == ["centralita-out-7-abcd"]
    assert originator.presence("centralita-out-7-abcd") is Presence.EXISTS


def test_presence_asks_for_the_channel(ari: FakeAsterisk) -> None:
    originator = make_originator(ari)
    originator.originate(request())
    assert originator.presence("centralita-out-7-abcd") is Presence.EXISTS
    assert originator.presence("centralita-out-99-ffff") is Presence.GONE


# ---- following calls by events ----------------------------------------------------------------------


def test_busy_is_reported_from_channel_destroyed(connected: tuple[AriOriginator, Ticks], ari: FakeAsterisk) -> None:
    originator, _ = connected
    originator.originate(request())
    assert ari.subscriptions[EVENTS_APP] == {"centralita-out-7-abcd"}
    ari.hang_up("centralita-out-7-abcd", 17, "User busy")
    [event] = wait_events(originator, ari, 1)
    assert event == CallEvent(EventKind.ENDED, "centralita-out-7-abcd", Outcome.BUSY, 17, "User busy")


def test_answered_then_normal_clearing_is_a_conversation(
    connected: tuple[AriOriginator, Ticks], ari: FakeAsterisk
) -> None:
    originator, _ = connected
    originator.originate(request())
    ari.answer("centralita-out-7-abcd")
    ari.hang_up("centralita-out-7-abcd", 16, "Normal Clearing")
    answered, ended = wait_events(originator, ari, 2)
    assert answered.kind is EventKind.ANSWERED
    assert (ended.kind, ended.outcome, ended.cause) == (EventKind.ENDED, Outcome.ANSWERED_HUMAN, 16)


def test_amd_machine_from_the_dialplan(connected: tuple[AriOriginator, Ticks], ari: FakeAsterisk) -> None:
    originator, _ = connected
    originator.originate(request())
    ari.answer("centralita-out-7-abcd")
    ari.set_var("centralita-out-7-abcd", "AMDCAUSE", "LONGGREETING-2000-1500")
    ari.set_var("centralita-out-7-abcd", "AMDSTATUS", "MACHINE")
    ari.hang_up("centralita-out-7-abcd", 16, "Normal Clearing")
    events = wait_events(originator, ari, 3)
    assert [event.kind for event in events] == [EventKind.ANSWERED, EventKind.MACHINE, EventKind.ENDED]
    assert events[1].detail == "LONGGREETING-2000-1500"
    assert events[2].outcome is Outcome.ANSWERED_MACHINE


def test_dialstatus_decides_an_unanswered_end(connected: tuple[AriOriginator, Ticks], ari: FakeAsterisk) -> None:
    originator, _ = connected
    originator.originate(request())
    ari.dial_status("centralita-out-7-abcd", "NOANSWER")
    ari.hang_up("centralita-out-7-abcd", 16, "Normal Clearing")
    [event] = wait_events(originator, ari, 1)
    assert event.outcome is Outcome.NO_ANSWER
    assert "dialstatus NOANSWER" in event.detail


def test_events_of_other_channels_are_ignored(connected: tuple[AriOriginator, Ticks], ari: FakeAsterisk) -> None:
    originator, _ = connected
    originator.handle_event({"type": "ChannelDestroyed", "cause": 17, "channel": {"id": "someone-else"}})
    originator.handle_event(json.loads('{"type": "StasisStart", "channel": {"id": "x"}}'))
    assert originator.poll() == []


def test_a_channel_gone_without_an_event_ends_after_the_grace(ari: FakeAsterisk) -> None:
    ticks = Ticks()
    originator = make_originator(ari, ticks)  # no events connection at all
    originator.originate(request())
    assert originator.poll() == []  # first look-up: the channel is there
    ari.vanish("centralita-out-7-abcd")
    ticks.now += 10
    assert originator.poll() == []  # gone once: could be an event on its way
    ticks.now += 5
    [event] = originator.poll()
    assert (event.kind, event.outcome) == (EventKind.ENDED, Outcome.UNKNOWN)
    assert "no ChannelDestroyed" in event.detail


def test_an_answered_channel_found_by_polling(ari: FakeAsterisk) -> None:
    ticks = Ticks()
    originator = make_originator(ari, ticks)
    originator.originate(request())
    ari.channels["centralita-out-7-abcd"].state = "Up"
    [event] = originator.poll()
    assert event.kind is EventKind.ANSWERED
    ari.vanish("centralita-out-7-abcd")
    ticks.now += 10
    originator.poll()
    ticks.now += 5
    [ended] = originator.poll()
    assert ended.outcome is Outcome.ANSWERED_HUMAN


def test_watch_follows_an_adopted_call(connected: tuple[AriOriginator, Ticks], ari: FakeAsterisk) -> None:
    originator, _ = connected
    placed_by_another = make_originator(ari)
    placed_by_another.originate(request())
    originator.watch("centralita-out-7-abcd")
    assert "centralita-out-7-abcd" in ari.subscriptions[EVENTS_APP]
    ari.hang_up("centralita-out-7-abcd", 19, "No answer")
    events = wait_events(originator, ari, 1)
    assert events[-1].outcome is Outcome.NO_ANSWER


def test_subscriptions_are_renewed_after_a_reconnection(ari: FakeAsterisk) -> None:
    originator = make_originator(ari)
    originator.originate(request())
    before = len(ari.requests_to("POST", f"/ari/applications/{EVENTS_APP}/subscription"))
    originator.handle_state("connected")
    assert len(ari.requests_to("POST", f"/ari/applications/{EVENTS_APP}/subscription")) == before + 1


# ---- the mapping ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cause", "answered", "amd", "dialstatus", "expected"),
    [
        (17, False, None, None, Outcome.BUSY),
        (21, False, None, None, Outcome.BUSY),
        (19, False, None, None, Outcome.NO_ANSWER),
        (18, False, None, None, Outcome.NO_ANSWER),
        (16, False, None, None, Outcome.NO_ANSWER),
        (16, True, None, None, Outcome.ANSWERED_HUMAN),
        (16, True, "HUMAN", None, Outcome.ANSWERED_HUMAN),
        (16, True, "MACHINE", None, Outcome.ANSWERED_MACHINE),
        (16, True, "NOTSURE", None, Outcome.ANSWERED_HUMAN),
        (1, False, None, "CHANUNAVAIL", Outcome.WRONG_NUMBER),
        (28, False, None, None, Outcome.WRONG_NUMBER),
        (34, False, None, None, Outcome.FAILED),
        (38, False, None, "CONGESTION", Outcome.FAILED),
        (16, False, None, "BUSY", Outcome.BUSY),
        (None, False, None, None, Outcome.FAILED),
        (0, False, None, None, Outcome.FAILED),
    ],
)
def test_outcome_for_end(
    cause: int | None, answered: bool, amd: str | None, dialstatus: str | None, expected: Outcome
) -> None:
    assert outcome_for_end(cause, answered=answered, amd_status=amd, dialstatus=dialstatus) is expected
