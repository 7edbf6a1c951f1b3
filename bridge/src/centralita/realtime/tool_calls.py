"""Function calls from the model: arguments put back together from their deltas, outputs released in order.

``ToolCallAssembler`` holds the outputs until the call's ``response.done``. An output sent earlier gets
``invalid_tool_call_id``, and the model then repeats the call, so a side-effecting tool would run twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from centralita.realtime.events import JsonObject, function_call_output, response_create

log = logging.getLogger(__name__)


# --- Tool calls ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete function call from the model."""

    call_id: str
    item_id: str
    response_id: str
    name: str
    arguments: str

    def parsed_arguments(self) -> Any:
        """The arguments as JSON (ValueError when the model produced invalid JSON)."""
        return json.loads(self.arguments or "{}")


@dataclass(frozen=True, slots=True)
class ToolCallUpdate:
    """What one server event changed: calls now complete (run them), events now safe to send (send them)."""

    completed: tuple[ToolCall, ...] = ()
    ready: tuple[JsonObject, ...] = ()


@dataclass(slots=True)
class _PendingCall:
    item_id: str
    response_id: str
    call_id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)
    call: ToolCall | None = None
    output: str | None = None
    sent: bool = False


class ToolCallAssembler:
    """Reassembles function calls and releases their outputs in the order the API requires.

    Feed it every server event. A call is complete at ``response.function_call_arguments.done``; its output
    (``submit``) is held until that response's ``response.done``, and only once every call of the response
    has its output are they released, followed by a single ``response.create``. A call_id seen before is
    never reported again, so a repeated ``.done`` cannot run a side-effecting tool twice. Calls of a response
    that ends cancelled, failed or incomplete are dropped: their items are not a valid place for an output.
    """

    def __init__(self) -> None:
        self._calls: dict[str, _PendingCall] = {}  # by item_id
        self._seen_call_ids: set[str] = set()
        self._finished_call_ids: set[str] = set()  # outputs sent, or dropped with their response
        self._done_responses: set[str] = set()

    def feed(self, event: Mapping[str, Any]) -> ToolCallUpdate:
        kind = event.get("type")
        if kind == "response.output_item.added":
            item = event.get("item") or {}
            if item.get("type") == "function_call":
                pending = self._pending(str(item.get("id", "")), str(event.get("response_id", "")))
                pending.call_id = pending.call_id or str(item.get("call_id", ""))
                pending.name = pending.name or str(item.get("name", ""))
        elif kind == "response.function_call_arguments.delta":
            pending = self._pending(str(event.get("item_id", "")), str(event.get("response_id", "")))
            pending.call_id = pending.call_id or str(event.get("call_id", ""))
            pending.parts.append(str(event.get("delta", "")))
        elif kind == "response.function_call_arguments.done":
            return ToolCallUpdate(completed=self._complete(event))
        elif kind == "response.done":
            return ToolCallUpdate(ready=self._response_done(event.get("response") or {}))
        return ToolCallUpdate()

    def submit(self, call_id: str, output: str) -> tuple[JsonObject, ...]:
        """Record a tool's output; returns the events that may be sent now (often none yet).

        An output for a call already answered, or for a call whose response was cancelled (a barge-in while
        the tool ran), is dropped with a warning; an output for a call never seen is a bug (KeyError).
        """
        if call_id in self._finished_call_ids:
            log.warning("dropping an output for tool call %s: it was already answered or cancelled", call_id)
            return ()
        pending = next((p for p in self._calls.values() if p.call_id == call_id and p.call is not None), None)
        if pending is None:
            raise KeyError(f"no complete tool call {call_id!r} is waiting for an output")
        if pending.output is not None:
            log.warning("ignoring a second output for tool call %s", call_id)
            return ()
        pending.output = output
        return self._release(pending.response_id)

    def _pending(self, item_id: str, response_id: str) -> _PendingCall:
        pending = self._calls.get(item_id)
        if pending is None:
            pending = self._calls[item_id] = _PendingCall(item_id=item_id, response_id=response_id)
        return pending

    def _complete(self, event: Mapping[str, Any]) -> tuple[ToolCall, ...]:
        pending = self._pending(str(event.get("item_id", "")), str(event.get("response_id", "")))
        call_id = str(event.get("call_id") or pending.call_id)
        if not call_id or call_id in self._seen_call_ids:
            if call_id:
                log.warning("ignoring a repeated completion of tool call %s", call_id)
            return ()
        assembled = "".join(pending.parts)
        arguments = event.get("arguments")
        if not isinstance(arguments, str):
            arguments = assembled
        elif arguments != assembled:
            log.warning("tool call %s: the deltas and .done disagree; using .done", call_id)
        self._seen_call_ids.add(call_id)
        pending.call_id = call_id
        pending.name = str(event.get("name") or pending.name)
        pending.call = ToolCall(call_id, pending.item_id, pending.response_id, pending.name, arguments)
        return (pending.call,)

    def _response_done(self, response: Mapping[str, Any]) -> tuple[JsonObject, ...]:
        response_id = str(response.get("id", ""))
        if response.get("status") != "completed":
            dropped = [item for item, p in self._calls.items() if p.response_id == response_id]
            for item in dropped:
                self._finished_call_ids.add(self._calls[item].call_id)
                log.warning(
                    "dropping tool call %s: its response ended %s", self._calls[item].call_id, response.get("status")
                )
                del self._calls[item]
            return ()
        self._done_responses.add(response_id)
        return self._release(response_id)

    def _release(self, response_id: str) -> tuple[JsonObject, ...]:
        if response_id not in self._done_responses:
            return ()
        calls = [p for p in self._calls.values() if p.response_id == response_id and not p.sent]
        if not calls or any(p.call is None or p.output is None for p in calls):
            return ()
        events: list[JsonObject] = []
        for pending in calls:
            assert pending.output is not None
            events.append(function_call_output(pending.call_id, pending.output))
            pending.sent = True
        for pending in calls:
            self._finished_call_ids.add(pending.call_id)
            del self._calls[pending.item_id]
        self._done_responses.discard(response_id)
        events.append(response_create())
        return tuple(events)
