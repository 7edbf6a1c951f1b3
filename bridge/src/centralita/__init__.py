"""Centralita's bridge: phone calls from Asterisk (ARI + RTP, PCMU) to the OpenAI Realtime API.

Modules:
    config  Settings read from the bridge's .env file, validated all at once.
    rtp     RTP packets (RFC 3550): parsing, building, per-call receive and send state.
    pacer   The 20 ms frame clock and the queue of audio frames waiting to be played.
"""
