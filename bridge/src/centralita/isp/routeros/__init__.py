"""RouterOS (MikroTik) API access for the support tools.

Modules:
    client  ``RouterClient``: librouteros behind a lock, with reconnect-on-failure and plain errors.
    pool    ``RouterPool``: one client and one worker per configured router, with a deadline per tool.
"""
