"""The bridge's side of the OpenAI Realtime API (GA).

Modules:
    events      Client events in the GA shape (``session_update``, ``audio_append``...), built in one place.
    wire        WebSocket data frames written and read by hand, for the 50-a-second audio frames.
    connection  ``RealtimeConnection``: one call's WebSocket, the GA handshake, then a receive thread.
    tool_calls  ``ToolCallAssembler``: function-call arguments from deltas, outputs released in order.
"""
