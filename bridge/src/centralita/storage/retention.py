"""How much personal data the call records keep, and for how long.

Two rules, both applied inside ``CallRecords``:

* **Masked when recorded.** A tool call's arguments and result are stored with every DNI and phone number
  masked but for its last ``KEEP_DIGITS`` digits (``12.345.678`` -> ``**.***.678``): enough for an audit to
  tell which customer a call was about next to the router's own records, not enough to be a customer's number.
  The values are found by key (``dni``, ``telefono`` and the like, at any depth); a ``raw`` argument text the
  model sent unparsed has every run of six or more digits masked instead.
* **Purged when old.** ``purge`` deletes the transcript and the tool calls of every call that started before a
  cutoff and masks that call's caller and callee numbers. The call row itself stays (when, how long, how it
  ended: the service's history), as do the audit log of router writes and the tickets, which are records the
  provider must keep. ``centralita records purge`` runs it every day from a systemd timer.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["KEEP_DIGITS", "PERSONAL_KEYS", "PurgeCounts", "mask_number", "mask_personal", "purge"]

KEEP_DIGITS: Final = 3
# Keys whose values are a DNI or phone number, in the tools' Spanish and in English, and the second factors a
# caller gives with the DNI to be verified (verificar_identidad): what proves an identity is not kept whole.
PERSONAL_KEYS: Final = frozenset(
    {
        "dni",
        "documento",
        "telefono",
        "telefonos",
        "tel",
        "celular",
        "movil",
        "phone",
        "phones",
        "caller",
        "callee",
        "numero_cliente",
        "ultimos_digitos",
    }
)
_RAW_KEY: Final = "raw"
_LONG_NUMBER: Final = re.compile(r"\d(?:[ .\-/]?\d){5,}")
_MASK: Final = "*"


def mask_number(text: str, keep: int = KEEP_DIGITS) -> str:
    """``text`` with every digit but the last ``keep`` replaced by ``*``; separators and letters stay."""
    digits = sum(character.isdigit() for character in text)
    to_mask = max(digits - keep, 0)
    out: list[str] = []
    for character in text:
        if character.isdigit() and to_mask > 0:
            out.append(_MASK)
            to_mask -= 1
        else:
            out.append(character)
    return "".join(out)


def _mask_value(value: Any) -> Any:
    """A personal value masked: text and numbers become masked text, lists are masked item by item."""
    if isinstance(value, str):
        return mask_number(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return mask_number(str(value))
    if isinstance(value, list | tuple):
        return [_mask_value(item) for item in value]
    return mask_personal(value)


def mask_personal(value: Any) -> Any:
    """A copy of a JSON-like ``value`` with the DNI and phone numbers in it masked (see the module docstring)."""
    if isinstance(value, Mapping):
        masked: dict[str, Any] = {}
        for key, item in value.items():
            name = str(key).strip().lower()
            if name in PERSONAL_KEYS:
                masked[key] = _mask_value(item)
            elif name == _RAW_KEY and isinstance(item, str):
                masked[key] = _LONG_NUMBER.sub(lambda match: mask_number(match.group()), item)
            else:
                masked[key] = mask_personal(item)
        return masked
    if isinstance(value, list | tuple):
        return [mask_personal(item) for item in value]
    return value


@dataclass(frozen=True, slots=True)
class PurgeCounts:
    """What one purge removed: transcript lines, tool calls, and the calls they belonged to."""

    calls: int
    transcript_lines: int
    tool_calls: int


def purge(connection: sqlite3.Connection, before: str) -> PurgeCounts:
    """Delete the transcripts and tool calls of the calls that started before ``before`` (an ISO-8601 UTC
    timestamp, as stored) and mask those calls' numbers, in one transaction.

    Masking is idempotent, so a call purged once is not counted again by the next purge.
    """
    old = "SELECT call_id FROM calls WHERE started_at < ?"
    connection.execute("BEGIN IMMEDIATE")
    try:
        affected = {
            _first(row)
            for row in connection.execute(
                f"SELECT call_id FROM transcript WHERE call_id IN ({old})"
                f" UNION SELECT call_id FROM tool_calls WHERE call_id IN ({old})",
                (before, before),
            ).fetchall()
        }
        transcript = connection.execute(f"DELETE FROM transcript WHERE call_id IN ({old})", (before,)).rowcount
        tools = connection.execute(f"DELETE FROM tool_calls WHERE call_id IN ({old})", (before,)).rowcount
        for row in connection.execute(
            "SELECT call_id, caller, callee FROM calls WHERE started_at < ?", (before,)
        ).fetchall():
            call_id, caller, callee = _row(row)
            masked = (mask_number(caller) if caller else caller, mask_number(callee) if callee else callee)
            if masked != (caller, callee):
                connection.execute("UPDATE calls SET caller = ?, callee = ? WHERE call_id = ?", (*masked, call_id))
                affected.add(call_id)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return PurgeCounts(calls=len(affected), transcript_lines=transcript, tool_calls=tools)


def _first(row: Any) -> str:
    """The first column of a row as a dict (the records' row factory) or a tuple."""
    return str(next(iter(row.values())) if isinstance(row, Mapping) else row[0])


def _row(row: Any) -> tuple[str, str | None, str | None]:
    """(call_id, caller, callee) from a row as a dict (the records' row factory) or a tuple."""
    if isinstance(row, Mapping):
        return row["call_id"], row["caller"], row["callee"]
    call_id, caller, callee = row
    return call_id, caller, callee
