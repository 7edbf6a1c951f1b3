"""The call records as a call writes them: every write queued to the records' one writer thread.

A call's threads carry its audio (the RTP receiver, the Realtime receive thread) or its tools; none of them may
wait on SQLite or fail on it. ``QueuedRecords`` has the writes a call makes (``start_call``, ``mark_answered``,
``add_transcript``, ``add_tool_call``, ``add_usage``, ``end_call``), each of which only queues the write on a
``RecordWriter`` and returns at once, without raising: a database that is locked, read-only or on a full disk
delays the records (retried in order), or loses them (counted, logged, shown by ``centralita doctor``), but never
touches a call. The writes of one call keep their order (its row first, its end last).

Reads (``get_call``...) and the audit log of router writes are not here: they go to ``CallRecords`` directly,
on the threads that need their answer (an unaudited router write is refused, so that write must be synchronous).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from centralita.billing.usage import Usage
from centralita.storage.records import CallRecords, Direction, Outcome, Speaker
from centralita.storage.writer import RecordWriter, WriterStats

__all__ = ["QueuedRecords"]


class QueuedRecords:
    """A call's writes to ``records``, queued on ``writer`` (which the owner starts and closes)."""

    def __init__(self, records: CallRecords, writer: RecordWriter) -> None:
        self.records = records
        self.writer = writer

    def start_call(
        self, call_id: str, direction: Direction, caller: str, callee: str, *, campaign: str | None = None
    ) -> None:
        started_at = self.records.now()  # when the call started, not when its row could be written
        self.writer.submit(
            f"call {call_id} started",
            lambda: self.records.start_call(call_id, direction, caller, callee, started_at, campaign=campaign),
        )

    def mark_answered(self, call_id: str) -> None:
        answered_at = self.records.now()
        self.writer.submit(f"call {call_id} answered", lambda: self.records.mark_answered(call_id, at=answered_at))

    def now(self) -> datetime:
        """The records' clock (what a write queued now would be stamped with)."""
        return self.records.now()

    def add_transcript(self, call_id: str, speaker: Speaker, text: str, at: datetime | None = None) -> None:
        """Queue a transcript line said at ``at`` (default now: a line may be written after it was said)."""
        at = at if at is not None else self.records.now()
        self.writer.submit(
            f"a transcript line of call {call_id}", lambda: self.records.add_transcript(call_id, speaker, text, at=at)
        )

    def add_tool_call(
        self,
        call_id: str,
        tool_call_id: str,
        name: str,
        arguments: Mapping[str, Any],
        result: Mapping[str, Any],
        ok: bool,
    ) -> None:
        at = self.records.now()
        self.writer.submit(
            f"tool {name} of call {call_id}",
            lambda: self.records.add_tool_call(call_id, tool_call_id, name, arguments, result, ok, at=at),
        )

    def add_usage(
        self,
        call_id: str,
        response_id: str,
        usage: Usage,
        cost: Decimal,
        currency: str,
        *,
        prices_as_of: str | None = None,
    ) -> None:
        at = self.records.now()
        self.writer.submit(
            f"the usage of a response of call {call_id}",
            lambda: self.records.add_usage(
                call_id, response_id, usage, cost, currency, at=at, prices_as_of=prices_as_of
            ),
        )

    def end_call(self, call_id: str, outcome: Outcome, detail: str = "") -> None:
        ended_at = self.records.now()
        self.writer.submit(
            f"the end of call {call_id}", lambda: self.records.end_call(call_id, outcome, detail, at=ended_at)
        )

    def stats(self) -> WriterStats:
        return self.writer.stats()

    def flush(self, timeout: float) -> bool:
        """Wait until every write queued so far was done (or given up); False on timeout."""
        return self.writer.flush(timeout)
