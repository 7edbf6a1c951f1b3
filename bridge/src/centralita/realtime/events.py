"""Client events of the Realtime GA API, built in one place, and a few helpers for server events.

The beta shape is now answered with ``beta_api_shape_disabled`` and a closed socket, so every client event
the bridge sends is built by a function here and nowhere else.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

JsonObject = dict[str, Any]


# --- Client events -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """A GA audio format: ``audio/pcmu``, ``audio/pcma`` or ``audio/pcm`` (which is 24 kHz only)."""

    type: str
    rate: int | None = None

    def to_json(self) -> JsonObject:
        return {"type": self.type} if self.rate is None else {"type": self.type, "rate": self.rate}

    @classmethod
    def from_json(cls, value: object) -> AudioFormat:
        """Parse a session's format object; ValueError when it is not one."""
        if not isinstance(value, Mapping) or not isinstance(value.get("type"), str):
            raise ValueError(f"not an audio format: {value!r}")
        rate = value.get("rate")
        if value["type"] == "audio/pcm":
            return cls("audio/pcm", rate if isinstance(rate, int) else 24000)
        return cls(value["type"])

    def __str__(self) -> str:
        return self.type if self.rate is None else f"{self.type}@{self.rate}"


PCMU: Final = AudioFormat("audio/pcmu")
PCMA: Final = AudioFormat("audio/pcma")
PCM24K: Final = AudioFormat("audio/pcm", 24000)


@dataclass(frozen=True, slots=True)
class TurnDetection:
    """Server VAD settings (GA ``audio.input.turn_detection`` of type ``server_vad``)."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True

    def to_json(self) -> JsonObject:
        return {
            "type": "server_vad",
            "threshold": self.threshold,
            "prefix_padding_ms": self.prefix_padding_ms,
            "silence_duration_ms": self.silence_duration_ms,
            "create_response": self.create_response,
            "interrupt_response": self.interrupt_response,
        }


def _event_id() -> str:
    return f"evt_{os.urandom(10).hex()}"


def _event(event_type: str, **fields: Any) -> JsonObject:
    """A client event with its own id, so an ``error`` naming it can be traced back in the logs."""
    return {"type": event_type, "event_id": _event_id(), **fields}


def function_tool(name: str, description: str, parameters: Mapping[str, Any]) -> JsonObject:
    """A tool in the GA (flat) shape; the Chat Completions shape ``{"function": {...}}`` is refused."""
    return {"type": "function", "name": name, "description": description, "parameters": dict(parameters)}


def _check_tool(tool: Mapping[str, Any]) -> JsonObject:
    if tool.get("type") != "function" or not isinstance(tool.get("name"), str) or "function" in tool:
        raise ValueError(
            f"a Realtime tool must be flat, {{'type': 'function', 'name': ..., 'parameters': ...}}, not {tool!r}"
        )
    return dict(tool)


def session_update(
    *,
    instructions: str,
    voice: str,
    tools: Sequence[Mapping[str, Any]] = (),
    model: str | None = None,
    turn_detection: TurnDetection | None = None,
    input_format: AudioFormat = PCMU,
    output_format: AudioFormat = PCMU,
    transcription_model: str | None = None,
    transcription_language: str | None = None,
) -> JsonObject:
    """The ``session.update`` the bridge sends: GA shape, G.711 μ-law both ways, server VAD, audio out.

    μ-law end to end means no resampling anywhere in the bridge; the connection checks afterwards whether the
    server honoured the output format. ``turn_detection=None`` means the defaults, not manual turns.
    ``transcription_model`` asks for the caller's words as text (``conversation.item.input_audio_transcription.*``
    events), in ``transcription_language`` (ISO-639-1) when given; None leaves the caller untranscribed.
    """
    session: JsonObject = {
        "type": "realtime",
        "output_modalities": ["audio"],
        "instructions": instructions,
        "audio": {
            "input": {
                "format": input_format.to_json(),
                "turn_detection": (turn_detection or TurnDetection()).to_json(),
            },
            "output": {"format": output_format.to_json(), "voice": voice},
        },
        "tools": [_check_tool(tool) for tool in tools],
        "tool_choice": "auto",
    }
    if transcription_model is not None:
        transcription: JsonObject = {"model": transcription_model}
        if transcription_language is not None:
            transcription["language"] = transcription_language
        session["audio"]["input"]["transcription"] = transcription
    if model is not None:
        session["model"] = model
    return _event("session.update", session=session)


def audio_append(audio: bytes) -> JsonObject:
    """Caller audio for the input buffer (base64 of the raw bytes in the session's input format)."""
    return _event("input_audio_buffer.append", audio=base64.b64encode(audio).decode("ascii"))


def audio_append_text(audio: bytes, event_id: str) -> bytes:
    """``json.dumps(audio_append(audio))``, encoded, without building the dict: the event sent 50 times a second."""
    return b'{"type": "input_audio_buffer.append", "event_id": "%s", "audio": "%s"}' % (
        event_id.encode("ascii"),
        base64.b64encode(audio),
    )


def function_call_output(call_id: str, output: str) -> JsonObject:
    """A tool's result, for the call ``call_id``; send only after that call's ``response.done``."""
    return _event(
        "conversation.item.create", item={"type": "function_call_output", "call_id": call_id, "output": output}
    )


def response_create() -> JsonObject:
    """Ask for a response now (after tool outputs, or to greet the caller first)."""
    return _event("response.create")


def response_cancel(response_id: str | None = None) -> JsonObject:
    """Cancel the response in progress (barge-in when the client detects it)."""
    return _event("response.cancel") if response_id is None else _event("response.cancel", response_id=response_id)


def truncate(item_id: str, audio_end_ms: int, content_index: int = 0) -> JsonObject:
    """Tell the server how much of an assistant item the caller actually heard (after a barge-in).

    The server refuses an ``audio_end_ms`` past the audio it sent, so clamp it to what was received.
    """
    if audio_end_ms < 0:
        raise ValueError(f"audio_end_ms must be 0 or more, not {audio_end_ms}")
    return _event("conversation.item.truncate", item_id=item_id, content_index=content_index, audio_end_ms=audio_end_ms)


def realtime_url(base_url: str, model: str) -> str:
    """``base_url`` (e.g. OPENAI_BASE_URL, wss://api.openai.com/v1/realtime) with ``?model=`` set."""
    parts = urlsplit(base_url)
    query = [(key, value) for key, value in parse_qsl(parts.query) if key != "model"]
    query.append(("model", model))
    return urlunsplit(parts._replace(query=urlencode(query)))


def audio_from_deltas(events: Iterable[Mapping[str, Any]]) -> bytes:
    """The audio of a sequence of ``response.output_audio.delta`` events, in order (for tests and tools)."""
    return b"".join(
        base64.b64decode(event["delta"]) for event in events if event.get("type") == "response.output_audio.delta"
    )
