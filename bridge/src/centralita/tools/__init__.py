"""The functions the assistant may call.

Modules:
    registry      ``Tool``, ``ToolRegistry``, ``ToolResult``: schemas, argument checks, no exception escapes.
    identity      ``CallIdentity``: who the caller is, as state of the call the service sets, never an argument.
    call_control  ``transferir_a_operador`` and ``finalizar_llamada``.
    network       The tools on the MikroTik routers (lookup, connection status, reactivation, tickets).
    collections   The dialer's tools: ``registrar_resultado`` and ``no_volver_a_llamar``.
"""
