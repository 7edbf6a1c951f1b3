"""Calls: one call's life from StasisStart to hang-up, and the service that runs them.

Modules:
    call      One call, inbound or outbound: channel, mixing bridge, ExternalMedia RTP, a Realtime session.
    service   openai-inbound-calls: routes ARI events to calls.
    outbound  What a dialer call gets when the customer answers: the collections prompt, the account, tools.
    admission Which calls the assistant takes: the box's limit, the per-caller ones, the spending budget.
    reconcile After a crash, a restart or a lost ARI connection: what Asterisk has that no call holds.
    watchdog  A call's deadlines: no caller audio, a silent model, the longest call.
    stats     What the service counts for its health snapshot.
    status    The health snapshot file that ``centralita doctor`` reads.
"""
