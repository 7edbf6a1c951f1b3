"""A fake Asterisk for tests and the media benchmark: ARI REST, the events WebSocket, and real RTP legs.

Asterisk cannot run in unit tests, so this plays its part over real sockets, as ARI documents it: channels
(answer, hang-up, variables, continue in the dialplan, originate), mixing bridges, ExternalMedia channels
with a real UDP RTP leg each (it sends the customer's audio as 20 ms PCMU RTP and records what it receives,
with kernel timestamps), Stasis apps and their events (StasisStart, StasisEnd, ChannelDestroyed...). The
unit tests of the call, the service and the dialer run against it, and so does ``make bench``, which swaps
in its own ``LegHooks`` to stamp and time every frame.

Modules:
    ari        ``FakeAsterisk``: the channels, bridges and apps behind ARI's REST interface and events.
    rtp        ``RtpLeg`` (one ExternalMedia channel's port) and ``Media``, the two threads that run every leg
               (``LoopMedia``: one loop for all).
    schedule   ``SendSchedule``: which legs are due on the common 20 ms clock.
    websocket  The server side of the events WebSocket.
"""

from centralita_testing.fake_asterisk.ari import Bridge, Channel, FakeAsterisk, Recorded
from centralita_testing.fake_asterisk.rtp import FRAME_BYTES, SILENCE, Heard, LegHooks, RtpLeg, parse_rtp

__all__ = [
    "FRAME_BYTES",
    "SILENCE",
    "Bridge",
    "Channel",
    "FakeAsterisk",
    "Heard",
    "LegHooks",
    "Recorded",
    "RtpLeg",
    "parse_rtp",
]
