"""A fake RouterOS (MikroTik) API server for tests and the lab box.

Modules:
    wire    The API wire protocol: length-prefixed words, sentences.
    state   The fake router's tables and command semantics (print/add/set/remove, queries).
    server  ``FakeRouterOS``: the fake on a TCP port (optionally API-SSL), with fault injection; also a
            command-line server.

The demo fixture (``data/isp-demo.json``) is a small Spanish-speaking PPPoE ISP; PPP secret comments hold
``tel=<E.164>;dni=<national ID>;nombre=<full name>;plan=<plan>``.
"""
