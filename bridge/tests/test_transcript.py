"""Both sides of a call's transcript in the order they were said (``calls/transcript.py``), from the server's
events as the GA API sends them, whatever order the texts arrive in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from centralita.calls.transcript import UNTRANSCRIBED, TranscriptOrder
from centralita.storage.records import Speaker

START = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.seconds = 0.0

    def now(self) -> datetime:
        return START + timedelta(seconds=self.seconds)

    def monotonic(self) -> float:
        return self.seconds


def make(transcribe_caller: bool = True, max_hold: float = 15.0) -> tuple[TranscriptOrder, list[Any], Clock]:
    written: list[tuple[Speaker, str, datetime]] = []
    clock = Clock()
    order = TranscriptOrder(
        lambda speaker, text, at: written.append((speaker, text, at)),
        transcribe_caller=transcribe_caller,
        now=clock.now,
        monotonic=clock.monotonic,
        max_hold=max_hold,
    )
    return order, written, clock


def caller_speaks(order: TranscriptOrder, item: str, previous: str | None) -> None:
    order.on_event({"type": "input_audio_buffer.speech_started", "item_id": item, "audio_start_ms": 0})
    order.on_event({"type": "input_audio_buffer.committed", "item_id": item, "previous_item_id": previous})
    order.on_event(
        {
            "type": "conversation.item.added",
            "previous_item_id": previous,
            "item": {"id": item, "type": "message", "role": "user", "content": [{"type": "input_audio"}]},
        }
    )


def reply_starts(order: TranscriptOrder, item: str, previous: str | None, response: str) -> None:
    message = {"id": item, "type": "message", "role": "assistant", "content": []}
    order.on_event({"type": "response.output_item.added", "response_id": response, "item": message})
    order.on_event({"type": "conversation.item.added", "previous_item_id": previous, "item": message})


def reply_ends(order: TranscriptOrder, item: str, response: str, text: str) -> None:
    order.on_event({"type": "response.output_audio_transcript.done", "item_id": item, "transcript": text})
    order.on_event({"type": "response.done", "response": {"id": response, "status": "completed"}})


def heard(order: TranscriptOrder, item: str, text: str) -> None:
    order.on_event(
        {"type": "conversation.item.input_audio_transcription.completed", "item_id": item, "transcript": text}
    )


def lines(written: list[Any]) -> list[tuple[str, str]]:
    return [(str(speaker), text) for speaker, text, _at in written]


def test_a_late_caller_transcription_still_comes_before_the_reply_to_it() -> None:
    order, written, clock = make()
    reply_starts(order, "greet", None, "r1")
    reply_ends(order, "greet", "r1", "Hola, ¿en qué le ayudo?")
    clock.seconds = 3
    caller_speaks(order, "u1", "greet")
    clock.seconds = 5
    reply_starts(order, "a1", "u1", "r2")
    reply_ends(order, "a1", "r2", "Reviso su servicio.")
    # The answer is known, its question not yet: the answer waits.
    assert lines(written) == [("assistant", "Hola, ¿en qué le ayudo?")]
    clock.seconds = 7
    heard(order, "u1", "No tengo internet.")
    assert lines(written) == [
        ("assistant", "Hola, ¿en qué le ayudo?"),
        ("caller", "No tengo internet."),
        ("assistant", "Reviso su servicio."),
    ]
    # Stamped with when each turn started: the caller's when they began to speak, not when the text came.
    assert [at for _s, _t, at in written] == [START, START + timedelta(seconds=3), START + timedelta(seconds=5)]


def test_a_caller_who_interrupts_comes_after_the_reply_they_cut() -> None:
    order, written, clock = make()
    reply_starts(order, "greet", None, "r1")
    clock.seconds = 1
    caller_speaks(order, "u1", "greet")  # barge-in: the greeting's item came first
    heard(order, "u1", "Perdón, una pregunta.")
    assert written == []  # the greeting's text is not in yet
    order.on_event({"type": "response.output_audio_transcript.delta", "item_id": "greet", "delta": "Hola, "})
    order.on_event({"type": "response.done", "response": {"id": "r1", "status": "cancelled"}})
    assert lines(written) == [("assistant", "Hola,"), ("caller", "Perdón, una pregunta.")]


def test_a_failed_transcription_is_marked_and_keeps_its_partial_text() -> None:
    order, written, _clock = make()
    caller_speaks(order, "u1", None)
    reply_starts(order, "a1", "u1", "r1")
    reply_ends(order, "a1", "r1", "¿Me lo repite?")
    order.on_event({"type": "conversation.item.input_audio_transcription.delta", "item_id": "u1", "delta": "quiero "})
    order.on_event(
        {
            "type": "conversation.item.input_audio_transcription.failed",
            "item_id": "u1",
            "content_index": 0,
            "error": {"type": "transcription_error", "code": "audio_unintelligible", "message": "x", "param": None},
        }
    )
    assert lines(written) == [("caller", f"quiero {UNTRANSCRIBED}"), ("assistant", "¿Me lo repite?")]
    assert order.failed == 1


def test_a_transcription_that_never_comes_stops_holding_after_max_hold_and_is_written_when_it_comes() -> None:
    order, written, clock = make(max_hold=10)
    caller_speaks(order, "u1", None)
    reply_starts(order, "a1", "u1", "r1")
    reply_ends(order, "a1", "r1", "Dígame.")
    clock.seconds = 9.9
    order.release_due()
    assert written == []
    clock.seconds = 10
    order.release_due()
    assert lines(written) == [("assistant", "Dígame.")]
    heard(order, "u1", "Hola.")  # out of place, but not lost, and stamped when it was said
    assert lines(written) == [("assistant", "Dígame."), ("caller", "Hola.")]
    assert written[1][2] == START
    assert order.waiting == 0


def test_the_end_of_the_call_writes_what_still_waits_in_order() -> None:
    order, written, _clock = make()
    reply_starts(order, "a0", None, "r0")
    reply_ends(order, "a0", "r0", "Buenos días.")
    caller_speaks(order, "u1", "a0")
    reply_starts(order, "a1", "u1", "r1")
    order.on_event({"type": "response.output_audio_transcript.delta", "item_id": "a1", "delta": "Un mo"})
    order.flush()  # the caller hung up: no transcription, no end of the reply
    assert lines(written) == [("assistant", "Buenos días."), ("caller", UNTRANSCRIBED), ("assistant", "Un mo")]
    assert order.waiting == 0


def test_without_caller_transcription_nothing_is_held() -> None:
    order, written, _clock = make(transcribe_caller=False)
    caller_speaks(order, "u1", None)
    reply_starts(order, "a1", "u1", "r1")
    reply_ends(order, "a1", "r1", "Dígame.")
    assert lines(written) == [("assistant", "Dígame.")]


def test_empty_texts_and_repeated_events_write_nothing_more() -> None:
    order, written, _clock = make()
    caller_speaks(order, "u1", None)
    heard(order, "u1", "   ")  # noise, transcribed as nothing
    reply_starts(order, "a1", "u1", "r1")
    reply_ends(order, "a1", "r1", "Dígame.")
    heard(order, "u1", "otra vez")  # a second completed for the same item
    order.on_event({"type": "response.output_audio_transcript.done", "item_id": "a1", "transcript": "Dígame."})
    order.flush()
    assert lines(written) == [("assistant", "Dígame.")]


def test_a_reply_with_no_transcript_does_not_hold_the_caller() -> None:
    order, written, _clock = make()
    reply_starts(order, "a0", None, "r0")
    caller_speaks(order, "u1", "a0")
    heard(order, "u1", "Hola.")
    done = {"id": "a0", "type": "message", "role": "assistant", "content": [{"type": "output_audio"}]}
    order.on_event({"type": "response.output_item.done", "response_id": "r0", "item": done})
    assert lines(written) == [("caller", "Hola.")]
