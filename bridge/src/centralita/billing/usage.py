"""The tokens of one Realtime response, by kind, from the ``usage`` object of ``response.done``.

The GA API reports ``input_token_details`` (``text_tokens``, ``audio_tokens``, ``cached_tokens`` and
``cached_tokens_details`` with its own text and audio split) and ``output_token_details`` (``text_tokens``,
``audio_tokens``). Cached tokens are part of the input counts; they are priced lower, so they are kept apart:
``input_text`` and ``input_audio`` here are the uncached ones. Missing or malformed fields count as 0 (a
usage report must never break a call), negative numbers too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["Usage"]


def _count(container: Any, key: str) -> int:
    if not isinstance(container, Mapping):
        return 0
    value = container.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return max(value, 0)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one response (or a sum of several)."""

    input_text: int = 0
    input_audio: int = 0
    cached_text: int = 0
    cached_audio: int = 0
    output_text: int = 0
    output_audio: int = 0

    @classmethod
    def from_response_done(cls, event: Mapping[str, Any]) -> Usage | None:
        """The usage of a ``response.done`` event; None when it carries none (e.g. a failed response)."""
        response = event.get("response")
        usage = response.get("usage") if isinstance(response, Mapping) else None
        if not isinstance(usage, Mapping):
            return None
        given = usage.get("input_token_details")
        cached = given.get("cached_tokens_details") if isinstance(given, Mapping) else None
        produced = usage.get("output_token_details")
        cached_text, cached_audio = _count(cached, "text_tokens"), _count(cached, "audio_tokens")
        if not cached_text and not cached_audio and _count(given, "cached_tokens"):
            cached_text = _count(given, "cached_tokens")  # no split given: priced as cached text
        return cls(
            input_text=max(_count(given, "text_tokens") - cached_text, 0),
            input_audio=max(_count(given, "audio_tokens") - cached_audio, 0),
            cached_text=cached_text,
            cached_audio=cached_audio,
            output_text=_count(produced, "text_tokens"),
            output_audio=_count(produced, "audio_tokens"),
        )

    @property
    def total(self) -> int:
        return sum(getattr(self, field.name) for field in fields(self))

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(getattr(self, field.name) + getattr(other, field.name) for field in fields(self)))

    def as_dict(self) -> dict[str, int]:
        return {field.name: getattr(self, field.name) for field in fields(self)}
