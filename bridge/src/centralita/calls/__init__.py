"""Calls: one call's life from StasisStart to hang-up, and the service that runs them.

Modules:
    call      One call, inbound or outbound: channel, mixing bridge, ExternalMedia RTP, a Realtime session.
    service   openai-inbound-calls: routes ARI events to calls.
    outbound  What a dialer call gets when the customer answers: the collections prompt, the account, tools.
"""
