"""A call's transcript, both sides, written in the order the words were said.

The caller's words come from the session's input transcription, which runs apart from the replies: the
``conversation.item.input_audio_transcription.completed`` of what the caller said may arrive after the
assistant has already answered it (``response.output_audio_transcript.done``). Writing lines as their events
arrive would then put the answer before the question.

Order here is the conversation's: the order of its items, which the server announces as it creates them (the
caller's item at ``input_audio_buffer.committed``, before the response that answers it; the assistant's at
``response.output_item.added``; each ``conversation.item.added`` names the item it follows). Each message item
gets a place when it is created; its text fills the place when it arrives; a line is written once every place
before it is filled. The caller's line is stamped with the moment the caller started speaking, the
assistant's with the moment its reply started, so ``at`` agrees with the order of the rows.

Nothing waits for long: a caller's transcription still missing after ``max_hold`` seconds stops holding the lines
behind it (it is written when it comes, out of place but not lost); one that failed
(``.failed``) is written as ``UNTRANSCRIBED`` with whatever text its deltas brought; at the end of the call
(``flush``) everything still waiting is written in order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from centralita.storage.records import Speaker

__all__ = ["UNTRANSCRIBED", "TranscriptOrder"]

log = logging.getLogger(__name__)

UNTRANSCRIBED: Final = "[sin transcripción]"  # the caller spoke, but no text of it came (stored data: never change)
DEFAULT_MAX_HOLD: Final = 15.0  # seconds a missing caller transcription may hold the lines after it

Write = Callable[[Speaker, str, datetime], None]

_EVENTS: Final = frozenset(
    {
        "input_audio_buffer.speech_started",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.deleted",
        "response.output_item.added",
        "response.output_item.done",
        "response.output_audio_transcript.delta",
        "response.output_audio_transcript.done",
        "response.done",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.input_audio_transcription.failed",
    }
)


@dataclass(slots=True)
class _Turn:
    item_id: str
    speaker: Speaker
    at: datetime
    placed: float  # monotonic time it got its place
    response_id: str = ""
    parts: list[str] = field(default_factory=list)
    text: str | None = None  # None while its text has not come

    def partial(self) -> str:
        return "".join(self.parts).strip()


class TranscriptOrder:
    """Puts one call's transcript lines in conversation order and hands them to ``write``; thread-safe.

    ``transcribe_caller`` says whether the session transcribes the caller (if not, the caller's items get no
    place and hold nothing). ``now`` stamps the lines (the records' clock); ``monotonic`` measures ``max_hold``.
    ``write`` is called under this object's lock, in order, so it must not block (a queued write does not).
    """

    def __init__(
        self,
        write: Write,
        *,
        transcribe_caller: bool,
        now: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
        max_hold: float = DEFAULT_MAX_HOLD,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] = log,
    ) -> None:
        self._write = write
        self._transcribe_caller = transcribe_caller
        self._now = now
        self._monotonic = monotonic
        self._max_hold = max_hold
        self._log = logger
        self._lock = threading.Lock()
        self._waiting: list[_Turn] = []  # in conversation order; the first ones are written as soon as filled
        self._late: dict[str, _Turn] = {}  # caller turns that stopped holding the others: written when they come
        self._seen: set[str] = set()  # items that got a place (or were written): never placed twice
        self._speech_at: dict[str, datetime] = {}  # item -> when the caller started saying it
        self.failed = 0  # caller transcriptions that failed

    # -- events --------------------------------------------------------------------------------------

    def on_event(self, event: Mapping[str, Any]) -> None:
        """Take one Realtime server event (any: those that do not concern the transcript are ignored)."""
        kind = event.get("type")
        if kind not in _EVENTS:
            return
        with self._lock:
            self._on_event(str(kind), event)
            self._release()

    def _on_event(self, kind: str, event: Mapping[str, Any]) -> None:
        item_id = str(event.get("item_id") or "")
        if kind == "input_audio_buffer.speech_started":
            if self._transcribe_caller and item_id:
                self._speech_at[item_id] = self._now()
        elif kind == "input_audio_buffer.committed":
            if self._transcribe_caller and item_id:
                self._place(item_id, Speaker.CALLER, event.get("previous_item_id"))
        elif kind in ("conversation.item.added", "response.output_item.added"):
            item = event.get("item")
            if isinstance(item, Mapping) and item.get("type") == "message":
                speaker = _speaker_of(item)
                if speaker is Speaker.ASSISTANT or (speaker is Speaker.CALLER and self._transcribe_caller):
                    response_id = str(event.get("response_id") or "")
                    self._place(str(item.get("id") or ""), speaker, event.get("previous_item_id"), response_id)
        elif kind == "conversation.item.deleted":
            self._waiting = [turn for turn in self._waiting if turn.item_id != item_id]
            self._late.pop(item_id, None)
        elif kind in ("response.output_audio_transcript.delta", "conversation.item.input_audio_transcription.delta"):
            turn = self._find(item_id)
            if turn is not None and isinstance(event.get("delta"), str):
                turn.parts.append(event["delta"])
        elif kind == "response.output_audio_transcript.done":
            self._fill(item_id, Speaker.ASSISTANT, str(event.get("transcript") or ""))
        elif kind == "conversation.item.input_audio_transcription.completed":
            self._fill(item_id, Speaker.CALLER, str(event.get("transcript") or ""))
        elif kind == "conversation.item.input_audio_transcription.failed":
            self.failed += 1
            raw = event.get("error")
            error: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
            self._log.warning(
                "caller transcription failed for item %s: %s %s",
                item_id or "-",
                error.get("code") or error.get("type") or "no code",
                error.get("message") or "",
            )
            turn = self._find(item_id)
            partial = turn.partial() if turn is not None else ""
            self._fill(item_id, Speaker.CALLER, f"{partial} {UNTRANSCRIBED}".strip())
        elif kind == "response.output_item.done":
            # A reply that ended without its transcript (cancelled at once, text only...) holds nothing back.
            item = event.get("item")
            if isinstance(item, Mapping):
                self._finish_assistant(str(item.get("id") or ""), _transcript_of(item))
        elif kind == "response.done":
            response = event.get("response")
            response_id = str(response.get("id") or "") if isinstance(response, Mapping) else ""
            for turn in self._waiting:
                if turn.speaker is Speaker.ASSISTANT and turn.text is None and turn.response_id == response_id:
                    turn.text = turn.partial()

    # -- keeping the order ---------------------------------------------------------------------------

    def _place(self, item_id: str, speaker: Speaker, previous: object, response_id: str = "") -> None:
        if not item_id or item_id in self._seen:
            return
        self._seen.add(item_id)
        at = self._speech_at.pop(item_id, None) if speaker is Speaker.CALLER else None
        turn = _Turn(item_id, speaker, at or self._now(), self._monotonic(), response_id)
        # The server appends items in the order it creates them; an item inserted after another (previous_item_id)
        # goes right after it if that one still waits.
        for index, waiting in enumerate(self._waiting):
            if waiting.item_id == previous:
                self._waiting.insert(index + 1, turn)
                return
        self._waiting.append(turn)

    def _find(self, item_id: str) -> _Turn | None:
        for turn in self._waiting:
            if turn.item_id == item_id:
                return turn
        return self._late.get(item_id)

    def _fill(self, item_id: str, speaker: Speaker, text: str) -> None:
        late = self._late.pop(item_id, None)
        if late is not None:  # it stopped holding the others long ago: written now, out of place
            self._emit(late.speaker, text, late.at)
            return
        turn = self._find(item_id)
        if turn is None:
            if item_id in self._seen:
                return  # written already (a second done for the same item)
            # An item whose creation was not seen: its place is where it is now.
            self._seen.add(item_id)
            at = self._speech_at.pop(item_id, None) or self._now()
            turn = _Turn(item_id, speaker, at, self._monotonic())
            self._waiting.append(turn)
        turn.text = text

    def _finish_assistant(self, item_id: str, transcript: str | None) -> None:
        turn = self._find(item_id)
        if turn is not None and turn.speaker is Speaker.ASSISTANT and turn.text is None:
            turn.text = transcript if transcript is not None else turn.partial()

    def _release(self) -> None:
        """Write the lines at the head whose text has come; a caller turn waiting too long stops holding."""
        now = self._monotonic()
        while self._waiting:
            head = self._waiting[0]
            if head.text is None:
                if head.speaker is not Speaker.CALLER or now - head.placed < self._max_hold:
                    return
                self._log.info(
                    "the caller's transcription of item %s is %g s late: the lines after it are written first",
                    head.item_id,
                    self._max_hold,
                )
                self._late[head.item_id] = head
            else:
                self._emit(head.speaker, head.text, head.at)
            self._waiting.pop(0)

    def _emit(self, speaker: Speaker, text: str, at: datetime) -> None:
        text = text.strip()
        if text:  # a reply cut before its first word, or noise transcribed as nothing: no line
            self._write(speaker, text, at)

    # -- the clock and the end -----------------------------------------------------------------------

    def release_due(self) -> None:
        """Let the lines held too long by a missing caller transcription go (call it now and then)."""
        with self._lock:
            self._release()

    def flush(self) -> None:
        """The call is over (no more events): write everything still waiting, in order; the caller's words whose
        text never came as what their deltas brought, or ``UNTRANSCRIBED``."""
        with self._lock:
            for turn in [*self._waiting, *self._late.values()]:
                text = turn.text
                if text is None:
                    partial = turn.partial()
                    text = partial if turn.speaker is Speaker.ASSISTANT else f"{partial} {UNTRANSCRIBED}".strip()
                self._emit(turn.speaker, text, turn.at)
            self._waiting.clear()
            self._late.clear()

    @property
    def waiting(self) -> int:
        """Lines not written yet (held, or waiting for their text)."""
        with self._lock:
            return len(self._waiting) + len(self._late)


def _speaker_of(item: Mapping[str, Any]) -> Speaker | None:
    role = item.get("role")
    if role == "assistant":
        return Speaker.ASSISTANT
    if role == "user":
        content = item.get("content")
        # Only spoken words are transcribed; the bridge sends no text items of the caller's.
        if isinstance(content, list) and any(
            isinstance(part, Mapping) and part.get("type") == "input_audio" for part in content
        ):
            return Speaker.CALLER
    return None


def _transcript_of(item: Mapping[str, Any]) -> str | None:
    content = item.get("content")
    if not isinstance(content, list):
        return None
    texts = [
        str(part.get("transcript"))
        for part in content
        if isinstance(part, Mapping) and part.get("type") == "output_audio" and part.get("transcript") is not None
    ]
    return "".join(texts) if texts else None
