"""Centralita's bridge: phone calls from Asterisk (ARI + RTP, PCMU) to the OpenAI Realtime API.

Packages, by moving part (each ``__init__`` lists its modules):
    calls      One call's life (``Call``, inbound or outbound), openai-inbound-calls (``InboundService``),
               admission of new calls and the service's status file.
    media      RTP packets, the 20 ms clock, the playout queue with barge-in, the 24 kHz fallback resampler.
    realtime   The Realtime GA client: events, WebSocket framing, the per-call connection, tool-call ordering.
    telephony  ARI REST calls and the reconnecting events WebSocket.
    tools      The functions the assistant may call: registry and argument checks, call control,
               collections, the MikroTik tools (``tools.network``).
    isp        The ISP's side: the one customer model, phone numbers (E.164), the RouterOS client and pool.
    dialer     openai-outbound-calls and ``centralita campaign``: campaigns, calling rules, the runner.
    billing    Token usage, the dated price table, daily and monthly budgets.
    storage    SQLite: call records, transcripts, tool calls, the audit log, retention, the record writer.
    config     The one .env reader and every program's settings; ``centralita config check``.
    doctor     ``centralita doctor``: end-to-end checks of the box, each with its fix.
Modules:
    cli         The ``centralita`` command and its subcommands.
    logs        Log lines with the call id, for the log file and the journal; the lifecycle events; secrets redacted.
    privileges  Dropping from root to the service user before touching its state.
    stopping    A service's stop request: SIGTERM or SIGINT sets an event, logged.

The fake Realtime, RouterOS and Asterisk servers used by the tests and the lab are not part of this
package: they are the ``centralita_testing`` package of the ``centralita-testing`` distribution
(``bridge/testing``).
"""
