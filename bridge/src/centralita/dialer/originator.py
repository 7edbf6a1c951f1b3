"""The runner's boundary to the phone system: the ``Originator`` protocol and what crosses it.

``AriOriginator`` implements it with Asterisk's ARI; tests use a recording fake. An originator places a call
with the channel id the store chose, reports what happens to its calls as ``CallEvent``s (collected by the
runner with ``poll``), and says whether a channel still exists (``presence``), which is how attempts left
open by a dead dialer are resolved.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from centralita.dialer.outcomes import Outcome

__all__ = [
    "CallEvent",
    "ChannelExists",
    "DialRefused",
    "DialRequest",
    "DialUncertain",
    "EventKind",
    "Originator",
    "Presence",
]


@dataclass(frozen=True, slots=True)
class DialRequest:
    """One call to place. ``channel_id`` is preset: the same request sent twice cannot ring twice."""

    attempt_id: int
    channel_id: str
    number: str  # E.164, with the +
    campaign: str
    customer_id: str
    variables: Mapping[str, str] = field(default_factory=dict)


class EventKind(StrEnum):
    ANSWERED = "answered"
    MACHINE = "machine"  # answering-machine detection said MACHINE
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class CallEvent:
    """Something that happened to a call; ``outcome`` (and ``cause``, the Q.850 hangup cause) for ENDED."""

    kind: EventKind
    channel_id: str
    outcome: Outcome | None = None
    cause: int | None = None
    detail: str = ""


class Presence(StrEnum):
    EXISTS = "exists"
    GONE = "gone"
    UNKNOWN = "unknown"  # the phone system could not be asked


class DialRefused(Exception):
    """Nothing was dialled: the phone system refused the request or could not be reached.

    ``unreachable``: the phone system did not answer at all (the runner backs off before the next call).
    """

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


class DialUncertain(Exception):
    """The request may or may not have reached the phone system (a timeout): the call may be ringing."""


class ChannelExists(Exception):
    """The channel id is already in use: this attempt was already placed. Never place it again."""


class Originator(Protocol):
    """Places calls and reports on them. ``poll`` and ``presence`` are called from the runner's thread."""

    def originate(self, request: DialRequest) -> None:
        """Place the call; raises ``DialRefused``, ``DialUncertain`` or ``ChannelExists``."""
        ...

    def watch(self, channel_id: str) -> None:
        """Follow a call placed by an earlier dialer (an adopted attempt) until it ends."""
        ...

    def forget(self, channel_id: str) -> None:
        """Stop following a call (its attempt was closed)."""
        ...

    def poll(self) -> list[CallEvent]:
        """The events since the last poll, oldest first."""
        ...

    def presence(self, channel_id: str) -> Presence:
        """Whether the channel exists now."""
        ...
