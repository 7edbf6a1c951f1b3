"""Settings of every Centralita program, read from the box's one .env file.

Modules:
    env      The file read once (``read_env_file``), ``Secret``, ``ConfigError`` and ``EnvReader``, the one
             typed reader every part uses; ``DEFAULT_ENV_FILE``.
    bridge   ``Settings``: the voice bridge (OpenAI, ARI, RTP, logs, records, failover); the ARI variables and
             the keepalive rule.
    network  ``NetworkSettings``: the MikroTik routers, the customer directory and the write rules.
    dialer   ``DialerSettings``: the outbound dialer (trunk, calling windows, caps, campaigns).
    box      ``load_all``: the three parts from one read, every problem in one ``ConfigError``.
    cli      ``centralita config check``: the same verdict on a file before it is installed.
"""
