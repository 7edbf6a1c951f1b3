"""Asterisk, as the bridge sees it.

Modules:
    ari  ARI REST calls with timeouts and the reconnecting events WebSocket.
"""
