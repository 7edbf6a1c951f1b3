"""The call-control tools every assistant has: hand the caller to a person, or end the call.

Both act only once the assistant has finished speaking (``ToolResult.action``), so the caller hears the
goodbye before it happens.
"""

from __future__ import annotations

import logging
from typing import Any

from centralita.tools.registry import Tool, ToolAction, ToolContext, ToolRegistry, ToolResult

log = logging.getLogger(__name__)


def _transfer(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
    reason = str(arguments.get("motivo", ""))
    log.info("transfer requested by the assistant: %s", reason or "-", extra={"call_id": context.call_id})
    return ToolResult(
        {"ok": True, "mensaje": "Transfiriendo a un operador al terminar de hablar."}, action=ToolAction.TRANSFER
    )


def _hang_up(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
    return ToolResult({"ok": True, "mensaje": "La llamada terminará al terminar de hablar."}, action=ToolAction.HANG_UP)


def builtin_tools() -> ToolRegistry:
    """The call-control tools every assistant has."""
    registry = ToolRegistry()
    registry.register(
        Tool(
            name="transferir_a_operador",
            description=(
                "Transfiere la llamada a una persona del equipo de atención. Úsela cuando el cliente lo pida o "
                "cuando usted no pueda resolver su problema. Despídase antes de llamarla."
            ),
            parameters={
                "type": "object",
                "properties": {"motivo": {"type": "string", "description": "Motivo breve", "maxLength": 200}},
                "required": [],
                "additionalProperties": False,
            },
            handler=_transfer,
        )
    )
    registry.register(
        Tool(
            name="finalizar_llamada",
            description="Cuelga la llamada cuando la conversación terminó. Despídase antes de llamarla.",
            parameters={"type": "object", "properties": {}, "required": [], "additionalProperties": False},
            handler=_hang_up,
        )
    )
    return registry
