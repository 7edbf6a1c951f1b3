"""``calls.reconcile.plan``: what Asterisk still has that the service does not hold, case by case."""

from __future__ import annotations

from typing import Any

from centralita.calls.reconcile import ChannelKind, channel_kind, plan

APP = "centralita"


def customer(channel_id: str, *args: str, app: str = APP) -> dict[str, Any]:
    return {
        "id": channel_id,
        "name": f"PJSIP/provider-{channel_id}",
        "dialplan": {"context": "from-voip", "app_name": "Stasis", "app_data": ",".join((app, *args))},
    }


def media(call_id: str, app: str = APP) -> dict[str, Any]:
    return {
        "id": f"{call_id}-media",
        "name": "UnicastRTP/127.0.0.1:40000-00000001",
        "dialplan": {"app_name": "Stasis", "app_data": app},
    }


def bridge(call_id: str) -> dict[str, Any]:
    return {"id": f"b-{call_id}", "name": f"centralita-{call_id}"}


def test_what_a_channel_is_to_the_app() -> None:
    assert channel_kind(customer("1", "inbound", "5550100"), APP) is ChannelKind.CUSTOMER
    assert channel_kind(customer("1", "outbound", "17", "cobranza"), APP) is ChannelKind.CUSTOMER
    assert channel_kind(media("1"), APP) is ChannelKind.MEDIA
    assert channel_kind(customer("1", "inbound", "5550100", app="other"), APP) is None
    echo = {"id": "2", "name": "PJSIP/provider-2", "dialplan": {"app_name": "Echo", "app_data": ""}}
    assert channel_kind(echo, APP) is None
    # A snapshot without the dialplan application (older Asterisk): only our media channels are recognised.
    bare = {"id": "3-media", "name": "UnicastRTP/127.0.0.1:1-1", "dialplan": {}}
    assert channel_kind(bare, APP) is ChannelKind.MEDIA
    # What Asterisk 22 shows for an ExternalMedia channel: no dialplan application.
    external = {"id": "4-media", "name": "UnicastRTP/127.0.0.1:1-2", "dialplan": {"app_name": "", "app_data": ""}}
    assert channel_kind(external, APP) is ChannelKind.MEDIA
    stranger = {"id": "5", "name": "UnicastRTP/127.0.0.1:1-3", "dialplan": {"app_name": "", "app_data": ""}}
    assert channel_kind(stranger, APP) is None
    assert channel_kind({"id": "3", "name": "PJSIP/provider-3", "dialplan": {}}, APP) is None


def test_after_a_crash_everything_of_the_app_is_an_orphan_and_other_apps_are_left_alone() -> None:
    found = plan(
        APP,
        [customer("7", "inbound", "5550100"), media("7"), customer("8", "inbound", "1", app="other")],
        [bridge("7"), {"id": "x", "name": "someone-elses"}],
        held_before=(),
        held_after=(),
    )
    assert found.orphan_callers == ("7",)
    assert found.notes == {"7": f"{APP},inbound,5550100"}
    assert found.orphan_media == ("7-media",)
    assert found.orphan_bridges == ("b-7",)
    assert found.gone_calls == ()
    assert (found.channels_seen, found.bridges_seen) == (3, 2)
    assert not found.empty


def test_the_calls_held_keep_their_channels_and_bridges() -> None:
    found = plan(
        APP,
        [customer("7", "inbound", "5550100"), media("7")],
        [bridge("7")],
        held_before={"7"},
        held_after={"7"},
    )
    assert found.empty


def test_a_call_held_whose_channel_is_gone_is_reported_gone() -> None:
    found = plan(
        APP, [customer("7", "inbound", "1"), media("7")], [bridge("7")], held_before={"7", "9"}, held_after={"7", "9"}
    )
    assert found.gone_calls == ("9",)
    assert found.orphan_callers == ()


def test_a_call_arriving_during_the_listing_is_not_an_orphan() -> None:
    # Its StasisStart was on its way when the channels were listed: seen meanwhile (arrived), or held by the
    # end of the grace (held_after).
    channels = [customer("10", "inbound", "1"), customer("11", "inbound", "1"), media("11")]
    found = plan(APP, channels, [bridge("11")], held_before=(), held_after={"11"}, arrived={"10"})
    assert found.empty


def test_a_call_that_ended_during_the_listing_leaves_nothing_behind() -> None:
    # Held before the listing, ended meanwhile (its own hang-up): what the listing still showed of it is
    # removed. It is also reported gone; the service looks it up again and finds nothing left to end.
    found = plan(APP, [media("7")], [bridge("7")], held_before={"7"}, held_after=())
    assert found.orphan_media == ("7-media",)
    assert found.orphan_bridges == ("b-7",)
    assert found.gone_calls == ("7",)  # its customer channel was not in the listing


def external_media(call_id: str) -> dict[str, Any]:
    """An ExternalMedia channel as Asterisk 22 lists it: no dialplan application, so no app to tell whose it is."""
    return {"id": f"{call_id}-media", "name": f"UnicastRTP/127.0.0.1:1-{call_id}", "dialplan": {"app_name": ""}}


def test_another_workers_calls_their_media_and_bridges_are_left_alone() -> None:
    """With several workers (``WORKERS``) each reconciles its own app: a call of worker 2 (its customer channel in
    Stasis(centralita-2,...)) is neither an orphan of worker 1 nor are its media channel and bridge, whose names
    carry no app; a media channel and bridge whose customer is gone, or left its app, still are."""
    found = plan(
        APP,
        [
            customer("20", "inbound", "5550100", app="centralita-2"),
            external_media("20"),
            customer("21", "outbound", "17", "HUMAN", app="centralita-2"),
            media("21", app="centralita-2"),
            external_media("22"),  # its customer hung up: nobody's call
            {"id": "23", "name": "PJSIP/provider-23", "dialplan": {"app_name": "Playback", "app_data": "x"}},
            external_media("23"),  # its customer left the app for the failover context
        ],
        [bridge("20"), bridge("21"), bridge("22"), bridge("23")],
        held_before=(),
        held_after=(),
    )
    assert found.orphan_callers == ()
    assert found.foreign_callers == ("20", "21")
    assert found.orphan_media == ("22-media", "23-media")
    assert found.orphan_bridges == ("b-22", "b-23")
