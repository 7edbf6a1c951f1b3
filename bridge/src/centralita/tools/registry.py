"""The functions the assistant may call, with their Spanish names, descriptions and JSON-schema arguments.

A tool never raises into the call: bad arguments and failures come back to the model as a short error it
can say out loud. A tool may also ask the call to do something once the assistant has finished speaking
(transfer the caller to a person, or hang up), so the caller hears the goodbye before it happens.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from centralita.realtime.events import function_tool
from centralita.tools.identity import CallIdentity

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToolContext:
    """What a tool knows about the call it runs in.

    ``caller`` is the customer's number on the line: the caller of an inbound call, the number the dialer
    called on an outbound one. ``did`` is the number an inbound caller dialled ("" on an outbound call).

    ``identity`` is the call's own ``CallIdentity``: created once per call and passed in every context of that
    call, so what one tool verified holds for the next. A context built without one gets a fresh, unverified
    identity that no later tool run shares: nothing is ever verified by accident.
    """

    call_id: str
    caller: str
    did: str
    identity: CallIdentity = field(default_factory=CallIdentity, compare=False)


class ToolAction(StrEnum):
    """What the call does once the assistant has finished speaking, at a tool's request."""

    TRANSFER = "transfer"  # hand the caller to the operator context
    HANG_UP = "hangup"  # end the call


@dataclass(frozen=True)
class ToolResult:
    """The output for the model, whether the tool succeeded, and what the call must do afterwards (if anything)."""

    output: dict[str, Any]
    ok: bool = True
    action: ToolAction | None = None


Handler = Callable[[dict[str, Any], ToolContext], ToolResult]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    handler: Handler


@dataclass
class ToolRegistry:
    """The tools of one service; each call runs them with its own ToolContext."""

    tools: dict[str, Tool] = field(default_factory=dict)

    def register(self, tool: Tool) -> None:
        if tool.name in self.tools:
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        self.tools[tool.name] = tool

    def schemas(self) -> list[dict[str, Any]]:
        return [function_tool(t.name, t.description, t.parameters) for t in self.tools.values()]

    def run(self, name: str, arguments: str, context: ToolContext) -> ToolResult:
        tool = self.tools.get(name)
        if tool is None:
            return _error(f"No existe la herramienta {name}.")
        try:
            parsed = json.loads(arguments or "{}")
        except ValueError:
            return _error("Los argumentos no son JSON válido.")
        if not isinstance(parsed, dict):
            return _error("Los argumentos deben ser un objeto.")
        problem = check_arguments(tool.parameters, parsed)
        if problem:
            return _error(problem)
        try:
            return tool.handler(parsed, context)
        except Exception:
            log.exception("tool %s failed", name)
            return _error("La herramienta falló; ofrezca transferir la llamada a una persona.")


def check_arguments(schema: Mapping[str, Any], arguments: Mapping[str, Any]) -> str:
    """A short Spanish message for the first problem with ``arguments``, or "" when they fit ``schema``.

    Covers what the tools' schemas use: required keys, no unknown keys, and string/integer/boolean types with
    enum and maxLength.
    """
    properties: Mapping[str, Any] = schema.get("properties", {})
    for key in schema.get("required", []):
        if key not in arguments:
            return f"Falta el dato {key}."
    for key, value in arguments.items():
        spec = properties.get(key)
        if spec is None:
            return f"El dato {key} no se reconoce."
        kind = spec.get("type")
        if kind == "string" and not isinstance(value, str):
            return f"El dato {key} debe ser texto."
        if kind == "integer" and (not isinstance(value, int) or isinstance(value, bool)):
            return f"El dato {key} debe ser un número entero."
        if kind == "boolean" and not isinstance(value, bool):
            return f"El dato {key} debe ser verdadero o falso."
        if "enum" in spec and value not in spec["enum"]:
            return f"El dato {key} debe ser uno de: {', '.join(map(str, spec['enum']))}."
        if isinstance(value, str) and len(value) > int(spec.get("maxLength", 500)):
            return f"El dato {key} es demasiado largo."
    return ""


def _error(message: str) -> ToolResult:
    return ToolResult({"ok": False, "error": message}, ok=False)
