"""The audio of a call: RTP packets, the 20 ms clock, what waits to be played, and the 24 kHz fallback.

Modules:
    rtp       RTP packets (RFC 3550): parsing, building, per-call receive and send state.
    pacer     The 20 ms frame clock and the thread that runs the clocks of many calls.
    playout   A call's outgoing audio: the frame queue, the RTP it leaves as, what the caller heard.
    resample  24 kHz PCM to 8 kHz μ-law, for a model that ignores ``audio/pcmu`` (soxr, numpy).
"""
