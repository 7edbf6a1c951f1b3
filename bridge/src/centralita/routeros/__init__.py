"""RouterOS (MikroTik) API access for the support tools, and a fake router to test them against.

Modules:
    wire         The API wire protocol: length-prefixed words, sentences.
    client       ``RouterClient``: librouteros behind a lock, with reconnect-on-failure and plain errors.
    pool         ``RouterPool``: one client and one worker per configured router, with a deadline per tool.
    settings     ``NetworkSettings``: the routers and the write rules from the bridge's .env.
    fake_state   The fake router's tables and command semantics (print/add/set/remove, queries).
    fake_server  ``FakeRouterOS``: the fake on a TCP port (optionally API-SSL), with fault injection; also a
                 command-line server.

The demo fixture (``data/isp-demo.json``) is a small Spanish-speaking PPPoE ISP; PPP secret comments hold
``tel=<E.164>;dni=<national ID>;nombre=<full name>;plan=<plan>``.
"""

from centralita.routeros.client import (
    RouterAuthError,
    RouterClient,
    RouterCommandError,
    RouterError,
    RouterUnavailable,
    connect,
)

__all__ = ["RouterAuthError", "RouterClient", "RouterCommandError", "RouterError", "RouterUnavailable", "connect"]
