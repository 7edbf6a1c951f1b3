"""Centralita's bridge: phone calls from Asterisk (ARI + RTP, PCMU) to the OpenAI Realtime API.

Modules:
    inbound        openai-inbound-calls: the service that routes ARI events to calls.
    call           One inbound call: channel, mixing bridge, ExternalMedia RTP and a Realtime session.
    ari            ARI REST calls with timeouts and the reconnecting events WebSocket.
    realtime       The Realtime GA client: events, the per-call connection, tool-call ordering.
    rtp            RTP packets (RFC 3550): parsing, building, per-call receive and send state.
    pacer          The 20 ms frame clock and the queue of audio frames waiting to be played.
    tools          The functions the assistant may call, with argument checks.
    records        Call records, transcripts and tool calls in SQLite.
    logs           Log lines with the call id, for the log file and the journal; secrets redacted.
    config         Settings read from the bridge's .env file, validated all at once.
    fake_realtime  A fake Realtime GA server with fault injection, for tests and the lab.
    routeros       The RouterOS API: wire codec, client (librouteros) and a fake server.
"""
