"""Fake peers for testing Centralita, each speaking the real wire protocol, with fault injection.

Modules:
    fake_realtime  A fake OpenAI Realtime GA server (WebSocket): scripted turns, tool calls, faults.
    fake_routeros  A fake RouterOS API server (TCP 8728, optional API-SSL): wire codec, tables, faults.
    fake_asterisk  A fake Asterisk: ARI REST and events, real RTP legs; for the call, the dialer and the bench.
"""
