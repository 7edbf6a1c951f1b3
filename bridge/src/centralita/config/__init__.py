"""Settings of every Centralita program, read from the box's one .env file.

Modules:
    bridge   ``Settings``: the voice bridge (OpenAI, ARI, RTP, logs, records, failover).
    network  ``NetworkSettings``: the MikroTik routers, the customer directory and the write rules.
    dialer   ``DialerSettings``: the outbound dialer (trunk, calling windows, caps, campaigns).
"""
