"""After a crash, a restart or a lost ARI connection: what Asterisk still has that the service does not know.

The service holds its calls in memory, and Asterisk holds their channels and bridges. The two drift apart
when the service dies (systemd restarts it, but the callers it had are still in the Stasis app, in silence,
in a mixing bridge with an ExternalMedia channel that sends to a closed port), when the ARI events connection
drops (a hang-up missed in the gap leaves a call holding its threads, socket and Realtime session), or when
Asterisk restarts (every channel is gone, and no event says so).

So after every (re)connection the service lists Asterisk's channels and bridges and ``plan`` sorts them:

* ``orphan_callers``: customer channels in this Stasis app (``Stasis(<app>,inbound|outbound,...)``) that no
  call holds: sent on to the failover context with the Spanish notice (or hung up, ``ON_REALTIME_FAILURE``);
* ``orphan_media``: this app's ExternalMedia channels (``Stasis(<app>)``, no arguments, ``UnicastRTP/...``)
  of no held call: hung up;
* ``orphan_bridges``: ``centralita-<call id>`` bridges of no held call: destroyed;
* ``gone_calls``: calls held when the listing was asked for whose channel is no longer there at all: ended
  (``Outcome.CHANNEL_GONE``) and recorded;
* ``foreign_callers``: customer channels in another Stasis app: another worker's calls (``WORKERS``,
  ``calls/workers.py``). Their ExternalMedia channels and bridges are left alone (the names carry no app:
  ``<call>-media``, ``centralita-<call>``), and so are their records.

The listing races with calls coming in: a channel may enter the app just after the connection opened, its
``StasisStart`` still on its way. Those are told apart by what the service saw meanwhile (``arrived``, the
StasisStarts handled during a short grace after the listing, and ``held_after``, the calls held once it is
over); a call held before the listing (``held_before``) is never an orphan, and only those can be "gone".
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

__all__ = ["BRIDGE_PREFIX", "MEDIA_SUFFIX", "ChannelKind", "Plan", "channel_kind", "plan"]

BRIDGE_PREFIX: Final = "centralita-"  # the mixing bridge of call X is named centralita-X
MEDIA_SUFFIX: Final = "-media"  # the ExternalMedia channel of call X has the id X-media
_CUSTOMER_ARGS: Final = frozenset({"inbound", "outbound"})


class ChannelKind(StrEnum):
    CUSTOMER = "customer"  # a caller, or a customer the dialer called, in the app
    MEDIA = "media"  # one of the app's ExternalMedia channels


@dataclass(frozen=True, slots=True)
class Plan:
    orphan_callers: tuple[str, ...] = ()
    orphan_media: tuple[str, ...] = ()
    orphan_bridges: tuple[str, ...] = ()
    gone_calls: tuple[str, ...] = ()
    foreign_callers: tuple[str, ...] = ()
    channels_seen: int = 0
    bridges_seen: int = 0
    notes: dict[str, str] = field(default_factory=dict)  # orphan caller id -> its Stasis arguments

    @property
    def empty(self) -> bool:
        return not (self.orphan_callers or self.orphan_media or self.orphan_bridges or self.gone_calls)


def channel_kind(channel: Mapping[str, Any], app: str) -> ChannelKind | None:
    """What ``channel`` (an ARI channel snapshot) is to the app ``app``, or None when it is none of its own.

    ARI's snapshot says which dialplan application the channel runs (``dialplan.app_name``/``app_data``):
    ``Stasis`` with ``<app>,inbound,<DID>`` or ``<app>,outbound,<attempt>,...`` for a customer, ``<app>`` alone
    for a channel ARI created into the app. An ExternalMedia channel runs no dialplan application at all (its
    snapshot's ``app_name`` is empty, or missing on an older Asterisk): it is recognised by what the service
    names it, a ``UnicastRTP/`` channel with the id ``<call>-media``.
    """
    dialplan = channel.get("dialplan") or {}
    name = str(channel.get("name", ""))
    if str(dialplan.get("app_name", "")).lower() != "stasis":
        ours = str(channel.get("id", "")).endswith(MEDIA_SUFFIX) and name.startswith("UnicastRTP/")
        return ChannelKind.MEDIA if ours else None
    arguments = str(dialplan.get("app_data", "")).split(",")
    if arguments[0].strip() != app:
        return None
    if len(arguments) > 1 and arguments[1].strip() in _CUSTOMER_ARGS:
        return ChannelKind.CUSTOMER
    if len(arguments) == 1 or name.startswith("UnicastRTP/"):
        return ChannelKind.MEDIA
    return None


def _in_another_app(channel: Mapping[str, Any], app: str) -> bool:
    """Whether ``channel`` is a customer channel of another Stasis app than ``app`` (another worker's call)."""
    dialplan = channel.get("dialplan") or {}
    if str(dialplan.get("app_name", "")).lower() != "stasis":
        return False
    arguments = [part.strip() for part in str(dialplan.get("app_data", "")).split(",")]
    return arguments[0] != app and len(arguments) > 1 and arguments[1] in _CUSTOMER_ARGS


def _media_owner(channel_id: str) -> str:
    return channel_id[: -len(MEDIA_SUFFIX)] if channel_id.endswith(MEDIA_SUFFIX) else ""


def plan(
    app: str,
    channels: Iterable[Mapping[str, Any]],
    bridges: Iterable[Mapping[str, Any]],
    *,
    held_before: Collection[str],
    held_after: Collection[str],
    arrived: Collection[str] = (),
) -> Plan:
    """Sort what Asterisk has (see the module's description); pure, so every case is tested exactly."""
    listed = list(channels)
    present = {str(channel.get("id", "")) for channel in listed}
    held = set(held_before) | set(held_after)
    foreign = {str(channel.get("id", "")) for channel in listed if _in_another_app(channel, app)}
    callers: list[str] = []
    media: list[str] = []
    notes: dict[str, str] = {}
    for channel in listed:
        channel_id = str(channel.get("id", ""))
        kind = channel_kind(channel, app)
        if kind is ChannelKind.CUSTOMER:
            if channel_id not in held and channel_id not in arrived:
                callers.append(channel_id)
                notes[channel_id] = str((channel.get("dialplan") or {}).get("app_data", ""))
        elif kind is ChannelKind.MEDIA:
            owner = _media_owner(channel_id)
            if owner not in held_after and owner not in foreign:
                media.append(channel_id)
    orphan_bridges: list[str] = []
    bridge_count = 0
    for bridge in bridges:
        bridge_count += 1
        name = str(bridge.get("name", ""))
        owner = name[len(BRIDGE_PREFIX) :]
        if name.startswith(BRIDGE_PREFIX) and owner not in held_after and owner not in foreign:
            orphan_bridges.append(str(bridge.get("id", "")))
    gone = [call_id for call_id in held_before if call_id not in present]
    return Plan(
        orphan_callers=tuple(callers),
        orphan_media=tuple(media),
        orphan_bridges=tuple(orphan_bridges),
        gone_calls=tuple(sorted(gone)),
        foreign_callers=tuple(sorted(foreign)),
        channels_seen=len(listed),
        bridges_seen=bridge_count,
        notes=notes,
    )
