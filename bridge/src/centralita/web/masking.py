"""What a viewer sees of personal data: DNI and phone numbers masked but for their last digits.

The records already keep tool arguments and results masked (``storage.retention``); the numbers of a call (who
called, which DID), the holders named in the router writes and tickets, and digits a caller said aloud in the
transcript are kept whole for supervisors, and masked here, on the way to a viewer's page, with the same rules.
"""

from __future__ import annotations

from typing import Any, Final

from centralita.storage.retention import mask_number, mask_personal
from centralita.web.store import Role

__all__ = ["mask_call", "mask_text", "masks_for", "phone"]

_CALL_NUMBERS: Final = ("caller", "callee")
_ROW_PERSONAL: Final = ("caller", "customer_id", "customer", "customer_name")


def masks_for(role: Role) -> bool:
    """Whether ``role`` sees personal data masked."""
    return not role.at_least(Role.SUPERVISOR)


def phone(value: str | None, masked: bool) -> str:
    if not value:
        return ""
    return mask_number(value) if masked else value


def mask_text(text: str) -> str:
    """``text`` with every run of six or more digits (a DNI, a phone number said aloud) masked."""
    return str(mask_personal({"raw": text})["raw"])


def mask_call(call: dict[str, Any]) -> dict[str, Any]:
    """A copy of a call (``ReadOnlyRecords.call`` or a search row) as a viewer may see it."""
    masked = dict(call)
    for key in _CALL_NUMBERS:
        masked[key] = phone(call.get(key), True)
    if "transcript" in call:
        masked["transcript"] = [{**line, "text": mask_text(line["text"])} for line in call["transcript"]]
    if "tool_calls" in call:
        masked["tool_calls"] = [
            {**tool, "arguments": mask_personal(tool["arguments"]), "result": mask_personal(tool["result"])}
            for tool in call["tool_calls"]
        ]
    for table in ("audit", "tickets"):
        if table in call:
            masked[table] = [_mask_row(row) for row in call[table]]
    return masked


def _mask_row(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in _ROW_PERSONAL:
        if out.get(key):
            out[key] = mask_number(str(out[key])) if key != "customer_name" else "***"
    for key in ("action", "reason", "symptom"):
        if isinstance(out.get(key), str):
            out[key] = mask_text(out[key])
    return out
