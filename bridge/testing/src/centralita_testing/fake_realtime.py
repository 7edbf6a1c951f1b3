"""A fake OpenAI Realtime API server (GA protocol) for tests, the demo and offline development.

The bridge's hardest failures happen on the wire: a session.update the server silently ignores, a tool
output sent before its call is committed, audio arriving in a format nobody asked for, a socket that dies
mid-sentence. A mock of the client's own calls would hide all of those, so this is a real WebSocket server
that speaks the GA protocol closely enough for the bridge's client to be tested against it unchanged:

* the handshake (``/v1/realtime?model=...``, ``Authorization: Bearer``, HTTP 401 with an
  ``invalid_api_key`` body, ``session.created`` before anything else); a plain ``GET /v1/models`` gets the
  same key check and a short model list, so a key can be tested without opening a session;
* the GA session shape, validated strictly: the beta shape or the beta header is answered with
  ``beta_api_shape_disabled`` and a closed socket, and every other invalid or unknown field gets an
  ``error`` event rather than being ignored, because a silently ignored setting is exactly the bug to catch;
* server VAD on the energy of the appended audio, then a scripted reply: audio from a raw μ-law file with
  its transcript, or a tool call whose arguments arrive in pieces;
* the caller's words as text when the session asks for input transcription: each committed caller item gets
  the script's next ``caller`` line, as ``conversation.item.input_audio_transcription.delta`` events and a
  ``.completed`` (or a ``.failed``), after a configurable delay that can put them after the reply;
* barge-in, ``response.cancel`` and ``conversation.item.truncate`` with their error cases;
* faults to rehearse the failure paths: refuse, slow start, a dropped TCP connection mid-response, an
  ``error`` event mid-call, the 1001 session-length close, and a server that ignores the requested output
  format;
* an echo mode for load tests (``echo=True``, ``--echo``): ``response.create`` opens a response whose audio
  is the caller's own, each appended chunk going straight back as a ``response.output_audio.delta`` of it
  until ``response.cancel``; turn detection does not run, so the echo never interrupts itself.

Everything the server receives and sends is recorded per session (``SessionRecord``) so tests can assert
on it. ``FakeRealtimeServer`` runs the server on its own thread and event loop; the command line
(``python -m centralita_testing.fake_realtime``) just runs it in the foreground.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import binascii
import contextlib
import copy
import dataclasses
import hmac
import http
import json
import logging
import math
import re
import secrets
import ssl
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

__all__ = [
    "DEFAULT_API_KEY",
    "AudioTurn",
    "FakeRealtimeServer",
    "Faults",
    "ScriptError",
    "SessionRecord",
    "ToolCallTurn",
    "Turn",
    "default_audio_dir",
    "default_caller_lines",
    "default_script",
    "load_caller_lines",
    "load_script",
    "main",
]

JsonObject = dict[str, Any]

log = logging.getLogger(__name__)

DEFAULT_API_KEY: Final = "sk-centralita-fake"
DEFAULT_MODEL: Final = "gpt-realtime"
DEFAULT_SCRIPT_NAME: Final = "default_script.json"

VOICES: Final = frozenset({"alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"})
# Fields of the beta session that GA moved or removed. The real API answers them with
# beta_api_shape_disabled and closes the socket, so the fake does the same rather than ignoring them.
BETA_FLAT_FIELDS: Final = frozenset(
    {
        "modalities",
        "voice",
        "input_audio_format",
        "output_audio_format",
        "input_audio_transcription",
        "input_audio_noise_reduction",
        "turn_detection",
        "max_response_output_tokens",
    }
)
_SESSION_FIELDS: Final = frozenset(
    {
        "type",
        "model",
        "instructions",
        "output_modalities",
        "tools",
        "tool_choice",
        "max_output_tokens",
        "audio",
        "include",
        "prompt",
        "tracing",
        "truncation",
        "reasoning",
        "parallel_tool_calls",
    }
)
_TRANSCRIPTION_FIELDS: Final = frozenset({"model", "language", "prompt", "delay"})
_TURN_DETECTION_FIELDS: Final = frozenset(
    {
        "type",
        "threshold",
        "prefix_padding_ms",
        "silence_duration_ms",
        "create_response",
        "interrupt_response",
        "idle_timeout_ms",
    }
)
_RESPONSE_FIELDS: Final = frozenset(
    {
        "instructions",
        "tools",
        "tool_choice",
        "output_modalities",
        "conversation",
        "input",
        "audio",
        "max_output_tokens",
        "metadata",
        "prompt",
    }
)
_FRAME_MS: Final = 20  # VAD frame
_MIN_COMMIT_MS: Final = 100  # the real API refuses to commit less than 100 ms of audio
_ULAW_RATE: Final = 8000
_PCM_RATE: Final = 24000
_MAX_MESSAGE_BYTES: Final = 24 * 1024 * 1024  # 15 MiB of audio per append, base64-encoded, plus the JSON
_CLOSE_REASON_BYTES: Final = 123  # RFC 6455: a close frame's reason fits in 123 bytes
# GET /v1/models lists these (id, created); the real list has many more models.
_MODELS: Final = ((DEFAULT_MODEL, 1756271701), ("gpt-realtime-mini", 1759517133))


# --- G.711 ------------------------------------------------------------------------------------------
# Table-driven, because audioop left the standard library in Python 3.13 (PEP 594).


def _ulaw_to_linear(byte: int) -> int:
    """One G.711 μ-law byte to a 16-bit linear sample (ITU-T G.711, the usual 0x84 bias form)."""
    byte = ~byte & 0xFF
    magnitude = (((byte & 0x0F) << 3) + 0x84) << ((byte >> 4) & 0x07)
    return 0x84 - magnitude if byte & 0x80 else magnitude - 0x84


def _alaw_to_linear(byte: int) -> int:
    """One G.711 A-law byte to a 16-bit linear sample."""
    byte ^= 0x55
    exponent = (byte >> 4) & 0x07
    mantissa = byte & 0x0F
    magnitude = (mantissa << 4) + 8 if exponent == 0 else ((mantissa << 4) + 0x108) << (exponent - 1)
    return magnitude if byte & 0x80 else -magnitude


def _linear_to_alaw(sample: int) -> int:
    """A 16-bit linear sample to one G.711 A-law byte."""
    sign = 0x80 if sample >= 0 else 0x00
    magnitude = min(sample if sample >= 0 else -sample - 1, 0x7FFF) >> 3
    if magnitude < 0x20:
        byte = sign | (magnitude >> 1)
    else:
        exponent = magnitude.bit_length() - 5
        byte = sign | (exponent << 4) | ((magnitude >> exponent) & 0x0F)
    return byte ^ 0x55


_ULAW_TABLE: Final = tuple(_ulaw_to_linear(byte) for byte in range(256))
_ALAW_TABLE: Final = tuple(_alaw_to_linear(byte) for byte in range(256))
_ULAW_TO_ALAW: Final = bytes(_linear_to_alaw(sample) for sample in _ULAW_TABLE)


def _pcm16_samples(data: bytes) -> array.array[int]:
    """Little-endian 16-bit samples (the Realtime API's audio/pcm), whatever this machine's byte order."""
    samples = array.array("h", data[: len(data) - len(data) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def _ulaw_to_pcm24k(data: bytes) -> bytes:
    """μ-law 8 kHz to little-endian PCM16 24 kHz, by linear interpolation (good enough for a fake)."""
    linear = [_ULAW_TABLE[byte] for byte in data]
    out = array.array("h")
    for index, sample in enumerate(linear):
        following = linear[index + 1] if index + 1 < len(linear) else sample
        out.extend((sample, (2 * sample + following) // 3, (sample + 2 * following) // 3))
    if sys.byteorder == "big":
        out.byteswap()
    return out.tobytes()


def _format_bytes_per_ms(audio_format: Mapping[str, Any]) -> int:
    return 48 if audio_format.get("type") == "audio/pcm" else 8


def _frame_rms(frame: bytes, audio_format: Mapping[str, Any]) -> float:
    kind = audio_format.get("type")
    if kind == "audio/pcm":
        samples: Sequence[int] = _pcm16_samples(frame)
    else:
        table = _ALAW_TABLE if kind == "audio/pcma" else _ULAW_TABLE
        samples = [table[byte] for byte in frame]
    if not samples:
        return 0.0
    return math.sqrt(sum(sample * sample for sample in samples) / len(samples))


def vad_rms_threshold(threshold: float) -> float:
    """The linear RMS level above which a 20 ms frame counts as speech, for a server_vad ``threshold``.

    The real VAD is a model whose threshold (0..1) is a probability; the fake maps it onto energy instead:
    0.5 (the default) is -35 dBFS, each 0.1 is 5 dB, so 0.9 needs -15 dBFS (loud) and 0.1 only -55 dBFS.
    """
    return 32768.0 * 10 ** ((-60.0 + 50.0 * threshold) / 20.0)


# --- Scripts -------------------------------------------------------------------------------------------


class ScriptError(ValueError):
    """The reply script is unusable; the message says which turn and why."""


@dataclass(frozen=True, slots=True)
class AudioTurn:
    """A spoken reply: raw μ-law 8 kHz audio and the transcript the server streams alongside it."""

    audio: bytes
    transcript: str
    source: str = ""


@dataclass(frozen=True, slots=True)
class ToolCallTurn:
    """A function call: the server streams ``arguments`` (JSON text) in ``pieces`` deltas."""

    name: str
    arguments: str
    pieces: int = 4


Turn = AudioTurn | ToolCallTurn


def default_audio_dir() -> Path:
    """The package's own data directory, so an installed package finds its audio without the repository."""
    return Path(str(resources.files("centralita_testing") / "data"))


def load_script(path: str | Path, audio_dir: str | Path | None = None) -> tuple[Turn, ...]:
    """Read a reply script (JSON) and the audio files it names.

    The file is ``{"turns": [...]}``; each turn is ``{"type": "audio", "audio": FILE, "transcript": TEXT}``
    or ``{"type": "tool_call", "name": NAME, "arguments": OBJECT-OR-JSON-TEXT, "pieces": N}``. A relative
    ``audio`` path is resolved against ``audio_dir`` (default: the package's data directory), so the same
    script works from the repository and from an installed package.
    """
    script_path = Path(path)
    try:
        document = json.loads(script_path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ScriptError(f"cannot read the script {script_path}: {error.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ScriptError(f"the script {script_path} is not valid JSON: {error}") from None
    return parse_script(document, audio_dir, source=str(script_path))


def parse_script(document: object, audio_dir: str | Path | None = None, *, source: str = "script") -> tuple[Turn, ...]:
    """Validate a script already parsed from JSON; see ``load_script`` for the format."""
    base = Path(audio_dir) if audio_dir is not None else default_audio_dir()
    if not isinstance(document, dict) or not isinstance(document.get("turns"), list) or not document["turns"]:
        raise ScriptError(f'{source}: expected {{"turns": [...]}} with at least one turn')
    turns: list[Turn] = []
    for number, raw in enumerate(document["turns"], start=1):
        where = f"{source}: turn {number}"
        if not isinstance(raw, dict):
            raise ScriptError(f"{where} is not an object")
        kind = raw.get("type")
        if kind == "audio":
            audio_name, transcript = raw.get("audio"), raw.get("transcript", "")
            if not isinstance(audio_name, str) or not audio_name:
                raise ScriptError(f'{where}: "audio" must name a raw μ-law 8 kHz file')
            if not isinstance(transcript, str):
                raise ScriptError(f'{where}: "transcript" must be text')
            audio_path = base / audio_name
            try:
                audio = audio_path.read_bytes()
            except OSError as error:
                raise ScriptError(f"{where}: cannot read {audio_path}: {error.strerror}") from None
            if not audio:
                raise ScriptError(f"{where}: {audio_path} is empty")
            turns.append(AudioTurn(audio=audio, transcript=transcript, source=str(audio_path)))
        elif kind == "tool_call":
            name, arguments, pieces = raw.get("name"), raw.get("arguments", {}), raw.get("pieces", 4)
            if not isinstance(name, str) or not name:
                raise ScriptError(f'{where}: "name" must be the function name')
            if isinstance(arguments, str):
                try:
                    json.loads(arguments)
                except json.JSONDecodeError:
                    raise ScriptError(f'{where}: "arguments" text is not valid JSON') from None
                text = arguments
            else:
                text = json.dumps(arguments, ensure_ascii=False)
            if not isinstance(pieces, int) or isinstance(pieces, bool) or pieces < 1:
                raise ScriptError(f'{where}: "pieces" must be a whole number of deltas, 1 or more')
            turns.append(ToolCallTurn(name=name, arguments=text, pieces=pieces))
        else:
            raise ScriptError(f'{where}: "type" must be "audio" or "tool_call", not {kind!r}')
    return tuple(turns)


def parse_caller_lines(document: object, *, source: str = "script") -> tuple[str, ...]:
    """The script's ``"caller": [TEXT, ...]``: what the caller says, one line per committed caller item, in order
    (wrapping around), for the input transcription; empty for a script without it."""
    lines = document.get("caller", []) if isinstance(document, dict) else []
    if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
        raise ScriptError(f'{source}: "caller" must be a list of texts (what the caller says, in order)')
    return tuple(lines)


def load_caller_lines(path: str | Path) -> tuple[str, ...]:
    """The caller lines of the script file ``path`` (see ``parse_caller_lines``)."""
    script_path = Path(path)
    try:
        document = json.loads(script_path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ScriptError(f"cannot read the script {script_path}: {error.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ScriptError(f"the script {script_path} is not valid JSON: {error}") from None
    return parse_caller_lines(document, source=str(script_path))


def default_caller_lines() -> tuple[str, ...]:
    """The caller lines of the script shipped with the package."""
    text = (resources.files("centralita_testing") / "data" / DEFAULT_SCRIPT_NAME).read_text(encoding="utf-8")
    return parse_caller_lines(json.loads(text), source=DEFAULT_SCRIPT_NAME)


def default_script(audio_dir: str | Path | None = None) -> tuple[Turn, ...]:
    """The script shipped with the package: a greeting, a tool call, then the greeting again."""
    text = (resources.files("centralita_testing") / "data" / DEFAULT_SCRIPT_NAME).read_text(encoding="utf-8")
    return parse_script(json.loads(text), audio_dir, source=DEFAULT_SCRIPT_NAME)


# --- Faults --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Faults:
    """Failures to inject; each field off by default. A connection takes the server's faults when it opens.

    refuse: answer the handshake with HTTP 503.
    delay_ms: wait this long before sending session.created.
    drop_after_deltas: abort the TCP connection (no close frame) after this many audio deltas (counted over
        the connection, so with K small it happens in the first response).
    error_after_ms: send an ``error`` event (``error_code``) this long after session.created; the
        session goes on, as it does after most errors of the real API.
    close_after_s: after this many seconds send ``session_expired`` and close with code 1001.
    ignore_output_format: report and send audio/pcm 24 kHz whatever output format the client asked for.
    silent_after_responses: a model that stops answering: the responses after this many start
        (``response.created``) and then send nothing until cancelled (0: not even the greeting).
    transcription_delay_ms: the caller's transcription (when the session asks for it) starts this long after
        the caller's item is committed: long enough, and it comes after the reply, as it may on the real API.
    transcription_fails: the caller's transcription ends with ``.failed`` (after the deltas of its first half).
    stop_reading_after_ms: this long after the first session.updated the server stops reading the connection (a stalled
        peer or path): the client's writes fill the kernel's buffers, and its pings go unanswered.
    """

    refuse: bool = False
    delay_ms: int = 0
    drop_after_deltas: int | None = None
    error_after_ms: int | None = None
    error_code: str = "server_error"
    close_after_s: float | None = None
    ignore_output_format: bool = False
    silent_after_responses: int | None = None
    transcription_delay_ms: int = 0
    transcription_fails: bool = False
    stop_reading_after_ms: int | None = None

    @classmethod
    def parse(cls, specs: Sequence[str]) -> Faults:
        """Build from command-line specs: ``refuse``, ``ignore_output_format`` or ``NAME=VALUE``."""
        values: dict[str, Any] = {}
        kinds = {item.name: item.type for item in dataclasses.fields(cls)}
        for spec in specs:
            name, has_value, raw = spec.partition("=")
            name = name.strip().replace("-", "_")
            if name not in kinds:
                raise ValueError(f"unknown fault {name!r}: use one of {', '.join(sorted(kinds))}")
            kind = str(kinds[name])
            if "bool" in kind:
                values[name] = not has_value or raw.strip().lower() in {"1", "true", "yes", "on"}
            elif not has_value:
                raise ValueError(f"the fault {name} needs a value: {name}=VALUE")
            elif "float" in kind:
                values[name] = float(raw)
            elif "int" in kind:
                values[name] = int(raw)
            else:
                values[name] = raw
        return cls(**values)


# --- Recording -----------------------------------------------------------------------------------------


class SessionRecord:
    """What one connection received and sent, readable from any thread while the session runs.

    The server's event loop writes, tests read: every access goes through one condition variable, and
    readers get copies so they never see a list change under them.
    """

    def __init__(self, index: int, path: str, headers: Mapping[str, str]) -> None:
        self.index = index
        self.path = path
        self.headers: dict[str, str] = dict(headers)  # without Authorization
        self._condition = threading.Condition()
        self._audio = bytearray()
        self._client_events: list[JsonObject] = []
        self._server_events: list[JsonObject] = []
        self._closed = False
        self._close_code: int | None = None

    def _add_client_event(self, event: JsonObject, audio: bytes = b"") -> None:
        with self._condition:
            self._client_events.append(event)
            self._audio.extend(audio)
            self._condition.notify_all()

    def _add_server_event(self, event: JsonObject) -> None:
        with self._condition:
            self._server_events.append(event)
            self._condition.notify_all()

    def _set_closed(self, code: int | None) -> None:
        with self._condition:
            self._closed, self._close_code = True, code
            self._condition.notify_all()

    @property
    def audio(self) -> bytes:
        """Every byte of ``input_audio_buffer.append`` in the order received, decoded from base64."""
        with self._condition:
            return bytes(self._audio)

    @property
    def closed(self) -> bool:
        with self._condition:
            return self._closed

    @property
    def close_code(self) -> int | None:
        """The close code the server sent or received; None while open or when the TCP link was dropped."""
        with self._condition:
            return self._close_code

    def client_events(self, event_type: str | None = None) -> list[JsonObject]:
        """Client events in order, optionally only those of one type."""
        with self._condition:
            return [copy.deepcopy(e) for e in self._client_events if event_type in (None, e.get("type"))]

    def server_events(self, event_type: str | None = None) -> list[JsonObject]:
        """Server events in order as sent, optionally only those of one type."""
        with self._condition:
            return [copy.deepcopy(e) for e in self._server_events if event_type in (None, e.get("type"))]

    def wait_for_server_event(self, event_type: str, count: int = 1, timeout: float = 5.0) -> list[JsonObject]:
        """Block until ``count`` server events of ``event_type`` were sent; TimeoutError otherwise."""
        return self._wait(lambda: self.server_events(event_type), count, timeout, f"{count} x {event_type}")

    def wait_for_client_event(self, event_type: str, count: int = 1, timeout: float = 5.0) -> list[JsonObject]:
        """Block until ``count`` client events of ``event_type`` were received; TimeoutError otherwise."""
        return self._wait(lambda: self.client_events(event_type), count, timeout, f"{count} x {event_type}")

    def wait_closed(self, timeout: float = 5.0) -> None:
        """Block until the session has ended; TimeoutError otherwise."""
        with self._condition:
            if not self._condition.wait_for(lambda: self._closed, timeout):
                raise TimeoutError(f"session {self.index} still open after {timeout} s")

    def _wait(self, read: Callable[[], list[JsonObject]], count: int, timeout: float, what: str) -> list[JsonObject]:
        with self._condition:
            if not self._condition.wait_for(lambda: len(read()) >= count, timeout):
                raise TimeoutError(f"session {self.index}: no {what} within {timeout} s")
            return read()


# --- The protocol ---------------------------------------------------------------------------------------


class _ClientError(Exception):
    """A client event the real API would answer with an ``error`` event; the session goes on."""

    def __init__(self, code: str, message: str, param: str | None = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.code, self.message, self.param, self.kind = code, message, param, kind


class _BetaShape(_ClientError):
    """The beta protocol: answered with beta_api_shape_disabled, then the socket is closed."""

    def __init__(self, message: str) -> None:
        super().__init__("beta_api_shape_disabled", message)


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def _error_event(
    code: str | None, message: str, *, kind: str, param: str | None = None, event_id: Any = None
) -> JsonObject:
    return {
        "type": "error",
        "error": {"type": kind, "code": code, "message": message, "param": param, "event_id": event_id},
    }


def _http_error(connection: ServerConnection, status: http.HTTPStatus, error: JsonObject) -> Response:
    """An HTTP error response with the real API's JSON body instead of websockets' plain text."""
    return _http_json(connection, status, {"error": error})


def _http_json(connection: ServerConnection, status: http.HTTPStatus, payload: JsonObject) -> Response:
    """A plain HTTP response (no WebSocket) with a JSON body."""
    response = connection.respond(status, "")
    body = json.dumps(payload).encode()
    del response.headers["Content-Type"]
    del response.headers["Content-Length"]
    response.headers["Content-Type"] = "application/json"
    response.headers["Content-Length"] = str(len(body))
    return dataclasses.replace(response, body=body)


def _default_turn_detection() -> JsonObject:
    return {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "idle_timeout_ms": None,
        "create_response": True,
        "interrupt_response": True,
    }


def _initial_session(model: str) -> JsonObject:
    """The session as the real API creates it: PCM 24 kHz both ways, server VAD, audio out."""
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": _new_id("sess"),
        "model": model,
        "output_modalities": ["audio"],
        "instructions": "",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "include": None,
        "expires_at": int(time.time()) + 3600,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": _PCM_RATE},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": _default_turn_detection(),
            },
            "output": {"format": {"type": "audio/pcm", "rate": _PCM_RATE}, "voice": "marin", "speed": 1.0},
        },
    }


def _check_keys(obj: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    for key in obj:
        if key not in allowed:
            raise _ClientError("unknown_parameter", f"Unknown parameter: '{where}.{key}'.", f"{where}.{key}")


def _check_format(value: object, where: str) -> JsonObject:
    if not isinstance(value, dict):
        raise _ClientError("invalid_type", f"Invalid type for '{where}': expected an object.", where)
    _check_keys(value, frozenset({"type", "rate"}), where)
    kind = value.get("type")
    if kind in ("audio/pcmu", "audio/pcma"):
        if "rate" in value:
            raise _ClientError("unknown_parameter", f"Unknown parameter: '{where}.rate' for {kind}.", f"{where}.rate")
        return {"type": kind}
    if kind == "audio/pcm":
        rate = value.get("rate", _PCM_RATE)
        if rate != _PCM_RATE:
            raise _ClientError(
                "invalid_value", f"Invalid value: {rate!r}. audio/pcm supports only rate 24000.", f"{where}.rate"
            )
        return {"type": kind, "rate": _PCM_RATE}
    raise _ClientError(
        "invalid_value",
        f"Invalid value: {kind!r}. Supported values are: 'audio/pcm', 'audio/pcmu' and 'audio/pcma'.",
        f"{where}.type",
    )


def _check_number(value: object, where: str, low: float, high: float | None = None) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or value < low
        or (high is not None and value > high)
    ):
        bounds = f"between {low:g} and {high:g}" if high is not None else f"{low:g} or more"
        raise _ClientError("invalid_value", f"Invalid value for '{where}': expected a number {bounds}.", where)
    return float(value)


def _check_bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise _ClientError("invalid_type", f"Invalid type for '{where}': expected a boolean.", where)
    return value


def _check_turn_detection(value: object, where: str) -> JsonObject | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _ClientError("invalid_type", f"Invalid type for '{where}': expected an object or null.", where)
    kind = value.get("type")
    if kind == "semantic_vad":
        raise _ClientError(
            "unsupported_by_fake", "The fake Realtime server implements only server_vad.", f"{where}.type"
        )
    if kind != "server_vad":
        raise _ClientError("invalid_value", f"Invalid value: {kind!r}. Supported: 'server_vad'.", f"{where}.type")
    _check_keys(value, _TURN_DETECTION_FIELDS, where)
    result = _default_turn_detection()
    for key, raw in value.items():
        if key == "type":
            continue
        if key == "threshold":
            result[key] = _check_number(raw, f"{where}.{key}", 0.0, 1.0)
        elif key in ("create_response", "interrupt_response"):
            result[key] = _check_bool(raw, f"{where}.{key}")
        elif key == "idle_timeout_ms":
            if raw is not None:
                raise _ClientError("unsupported_by_fake", "The fake does not implement idle_timeout_ms.", where)
        else:
            result[key] = int(_check_number(raw, f"{where}.{key}", 0, 10000))
    return result


def _check_tools(value: object, where: str) -> list[JsonObject]:
    if not isinstance(value, list):
        raise _ClientError("invalid_type", f"Invalid type for '{where}': expected an array.", where)
    tools = []
    for index, tool in enumerate(value):
        here = f"{where}[{index}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise _ClientError("invalid_value", f"'{here}.type' must be 'function'.", f"{here}.type")
        if "function" in tool:
            raise _ClientError(
                "unknown_parameter",
                f"Unknown parameter: '{here}.function'. "
                "Realtime tools are flat: {type, name, description, parameters}.",
                f"{here}.function",
            )
        _check_keys(tool, frozenset({"type", "name", "description", "parameters"}), here)
        name = tool.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
            raise _ClientError("invalid_value", f"'{here}.name' must match ^[a-zA-Z0-9_-]{{1,64}}$.", f"{here}.name")
        if "parameters" in tool and not isinstance(tool["parameters"], dict):
            raise _ClientError("invalid_type", f"'{here}.parameters' must be a JSON schema object.", here)
        tools.append(dict(tool))
    return tools


def merge_session(
    current: JsonObject, update: object, *, voice_locked: bool, ignore_output_format: bool = False
) -> JsonObject:
    """Validate a ``session.update``'s session and return the new effective session (``current`` untouched).

    All or nothing: on any problem raises and the session stays as it was, as the real API does.
    """
    if not isinstance(update, dict):
        raise _ClientError("invalid_type", "Invalid type for 'session': expected an object.", "session")
    flat = sorted(BETA_FLAT_FIELDS & update.keys())
    if flat:
        raise _BetaShape(
            f"The Realtime beta session shape is no longer supported (session.{flat[0]}); use the GA shape "
            "with session.type 'realtime' and session.audio.input/output."
        )
    if update.get("type") != "realtime":
        if "type" not in update:
            raise _BetaShape("Missing required parameter: 'session.type'. The beta session shape is disabled.")
        raise _ClientError(
            "invalid_value", f"Invalid value: {update['type']!r}. This server supports 'realtime'.", "session.type"
        )
    _check_keys(update, _SESSION_FIELDS, "session")
    new = copy.deepcopy(current)
    for key, value in update.items():
        where = f"session.{key}"
        if key == "type":
            continue
        if key == "model":
            if value != current["model"]:
                raise _ClientError("invalid_value", "The session's model cannot be changed.", where)
        elif key == "instructions":
            if not isinstance(value, str):
                raise _ClientError("invalid_type", f"Invalid type for '{where}': expected a string.", where)
            new[key] = value
        elif key == "output_modalities":
            if value not in (["audio"], ["text"]):
                raise _ClientError("invalid_value", f"'{where}' must be ['audio'] or ['text'].", where)
            new[key] = list(value)
        elif key == "tools":
            new[key] = _check_tools(value, where)
        elif key == "tool_choice":
            if value not in ("auto", "none", "required") and not (
                isinstance(value, dict) and value.get("type") == "function" and isinstance(value.get("name"), str)
            ):
                raise _ClientError("invalid_value", f"Invalid value for '{where}'.", where)
            new[key] = value
        elif key == "max_output_tokens":
            if value != "inf":
                _check_number(value, where, 1, 4096)
            new[key] = value
        elif key == "audio":
            _merge_audio(new["audio"], value, voice_locked=voice_locked)
        else:
            new[key] = copy.deepcopy(value)
    if ignore_output_format:
        new["audio"]["output"]["format"] = {"type": "audio/pcm", "rate": _PCM_RATE}
    return new


def _merge_audio(audio: JsonObject, update: object, *, voice_locked: bool) -> None:
    if not isinstance(update, dict):
        raise _ClientError("invalid_type", "Invalid type for 'session.audio': expected an object.", "session.audio")
    _check_keys(update, frozenset({"input", "output"}), "session.audio")
    inp = update.get("input", {})
    out = update.get("output", {})
    if not isinstance(inp, dict) or not isinstance(out, dict):
        raise _ClientError("invalid_type", "session.audio.input and .output must be objects.", "session.audio")
    _check_keys(inp, frozenset({"format", "transcription", "noise_reduction", "turn_detection"}), "session.audio.input")
    _check_keys(out, frozenset({"format", "voice", "speed"}), "session.audio.output")
    for key, value in inp.items():
        where = f"session.audio.input.{key}"
        if key == "format":
            audio["input"]["format"] = _check_format(value, where)
        elif key == "turn_detection":
            audio["input"]["turn_detection"] = _check_turn_detection(value, where)
        elif key == "noise_reduction":
            if value is not None and (
                not isinstance(value, dict) or value.get("type") not in ("near_field", "far_field")
            ):
                raise _ClientError("invalid_value", f"'{where}.type' must be 'near_field' or 'far_field'.", where)
            audio["input"]["noise_reduction"] = value
        else:  # transcription
            if value is not None:
                if not isinstance(value, dict) or not isinstance(value.get("model"), str):
                    raise _ClientError("invalid_value", f"'{where}' must be null or an object with a model.", where)
                _check_keys(value, _TRANSCRIPTION_FIELDS, where)
                language = value.get("language")
                if language is not None and (not isinstance(language, str) or not re.fullmatch(r"[a-z]{2}", language)):
                    raise _ClientError(
                        "invalid_value", f"'{where}.language' must be an ISO-639-1 code such as 'es'.", where
                    )
            audio["input"]["transcription"] = value
    for key, value in out.items():
        where = f"session.audio.output.{key}"
        if key == "format":
            audio["output"]["format"] = _check_format(value, where)
        elif key == "speed":
            audio["output"]["speed"] = _check_number(value, where, 0.25, 1.5)
        else:  # voice
            valid = (isinstance(value, str) and value in VOICES) or (
                isinstance(value, dict) and isinstance(value.get("id"), str)
            )
            if not valid:
                raise _ClientError(
                    "invalid_value",
                    f"Invalid value: {value!r}. Supported voices are: {', '.join(sorted(VOICES))}.",
                    where,
                )
            if voice_locked and value != audio["output"]["voice"]:
                raise _ClientError(
                    "cannot_update_voice", "Cannot update a conversation's voice if assistant audio is present.", where
                )
            audio["output"]["voice"] = value


class _EnergyVad:
    """Energy-based server VAD over 20 ms frames of appended audio, in audio time (not wall-clock time).

    Speech starts once ``min_speech_ms`` of consecutive frames are above the threshold; ``audio_start_ms``
    goes back ``prefix_padding_ms`` from the first loud frame, as the real API's does. Speech stops after
    ``silence_duration_ms`` of consecutive quiet frames; ``audio_end_ms`` includes that silence.
    """

    def __init__(self, min_speech_ms: int) -> None:
        self._min_speech_ms = min_speech_ms
        self._position_ms = 0
        self._pending = bytearray()
        self._format: JsonObject = {"type": "audio/pcm", "rate": _PCM_RATE}
        self._config: JsonObject | None = None
        self.speaking = False
        self._loud_ms = 0
        self._quiet_ms = 0
        self._onset_ms = 0

    def configure(self, audio_format: JsonObject, config: JsonObject | None) -> None:
        if audio_format != self._format:
            self._pending.clear()
        self._format, self._config = dict(audio_format), config

    def reset(self) -> None:
        self._pending.clear()
        self.speaking, self._loud_ms, self._quiet_ms = False, 0, 0

    def feed(self, data: bytes) -> list[tuple[str, int]]:
        """Advance over ``data``; return the transitions it caused: ("started" | "stopped", ms)."""
        frame_bytes = _FRAME_MS * _format_bytes_per_ms(self._format)
        self._pending.extend(data)
        transitions: list[tuple[str, int]] = []
        while len(self._pending) >= frame_bytes:
            frame = bytes(self._pending[:frame_bytes])
            del self._pending[:frame_bytes]
            start_ms = self._position_ms
            self._position_ms += _FRAME_MS
            if self._config is None:
                continue
            loud = _frame_rms(frame, self._format) > vad_rms_threshold(self._config["threshold"])
            if not self.speaking:
                if not loud:
                    self._loud_ms = 0
                    continue
                if self._loud_ms == 0:
                    self._onset_ms = start_ms
                self._loud_ms += _FRAME_MS
                if self._loud_ms >= self._min_speech_ms:
                    self.speaking, self._quiet_ms = True, 0
                    transitions.append(("started", max(0, self._onset_ms - self._config["prefix_padding_ms"])))
            elif loud:
                self._quiet_ms = 0
            else:
                self._quiet_ms += _FRAME_MS
                if self._quiet_ms >= max(self._config["silence_duration_ms"], _FRAME_MS):
                    self.speaking, self._loud_ms = False, 0
                    transitions.append(("stopped", self._position_ms))
        return transitions


@dataclass(slots=True)
class _Options:
    """Server-wide settings that every session reads (immutable once the server runs)."""

    api_key: str
    script: tuple[Turn, ...]
    pace: float
    chunk_ms: int
    min_speech_ms: int
    tool_done_delay_ms: int
    echo: bool = False
    caller_lines: tuple[str, ...] = ()


@dataclass(slots=True)
class _Response:
    """The response being generated: its task, and why it is being cancelled (if it is)."""

    response_id: str
    task: asyncio.Task[None] | None = None
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_reason: str = ""
    echo_ids: JsonObject | None = None  # echo mode: the ids of the audio part appended audio goes back in


class _Session:
    """One WebSocket connection: the session state and the protocol, on the server's event loop."""

    def __init__(
        self, ws: ServerConnection, record: SessionRecord, options: _Options, faults: Faults, model: str, beta: bool
    ) -> None:
        self._ws = ws
        self._record = record
        self._options = options
        self._faults = faults
        self._beta_header = beta
        self._session = _initial_session(model)
        self._conversation_id = _new_id("conv")
        self._vad = _EnergyVad(options.min_speech_ms)
        self._reconfigure_vad()
        self._buffer = bytearray()  # input audio since the last commit
        self._speech_item_id: str | None = None
        self._items: dict[str, JsonObject] = {}
        self._audio_ms: dict[str, int] = {}  # assistant item -> ms of audio sent
        self._committed_calls: set[str] = set()
        self._next_turn = 0
        self._response: _Response | None = None
        self._voice_locked = False
        self._deltas_sent = 0
        self._responses_started = 0
        self._timers: list[asyncio.Task[None]] = []
        self._stops_reading = False  # the stop_reading_after_ms fault is armed
        self._caller_turns = 0  # caller items transcribed so far: the next caller line to say

    # -- plumbing --

    async def _send(self, event: JsonObject) -> None:
        event = {"event_id": _new_id("event"), **event}
        self._record._add_server_event(event)
        await self._ws.send(json.dumps(event))

    async def _error(self, error: _ClientError, client_event: Mapping[str, Any] | None = None) -> None:
        event_id = client_event.get("event_id") if client_event else None
        await self._send(_error_event(error.code, error.message, kind=error.kind, param=error.param, event_id=event_id))

    async def _close(self, code: int, reason: str) -> None:
        self._record._set_closed(code)
        await self._ws.close(code, reason.encode()[:_CLOSE_REASON_BYTES].decode(errors="ignore"))

    # -- lifecycle --

    async def run(self) -> None:
        try:
            if self._beta_header:
                await self._error(
                    _BetaShape("The OpenAI-Beta: realtime=v1 header selects the Realtime beta, which is disabled.")
                )
                await self._close(1008, "beta_api_shape_disabled")
                return
            if self._faults.delay_ms:
                await asyncio.sleep(self._faults.delay_ms / 1000)
            await self._send({"type": "session.created", "session": copy.deepcopy(self._session)})
            self._start_timers()
            async for message in self._ws:
                if not await self._on_message(message):
                    return
        except ConnectionClosed:
            pass
        finally:
            for timer in self._timers:
                timer.cancel()
            if self._response is not None and self._response.task is not None:
                self._response.task.cancel()
            if not self._record.closed:
                self._record._set_closed(self._ws.close_code)

    def _start_timers(self) -> None:
        if self._faults.error_after_ms is not None:
            self._timers.append(asyncio.create_task(self._error_later(self._faults.error_after_ms / 1000)))
        if self._faults.close_after_s is not None:
            self._timers.append(asyncio.create_task(self._expire_later(self._faults.close_after_s)))

    async def _stop_reading_later(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self._ws.transport.pause_reading()

    def abort(self) -> None:
        """Cut the TCP connection at once, without a close frame (on the server's loop)."""
        self._record._set_closed(None)
        self._ws.transport.abort()

    async def _error_later(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self.inject_error(self._faults.error_code)

    async def inject_error(self, code: str, message: str | None = None) -> None:
        """Send an ``error`` event now, as the real API does when something fails on its side mid-call."""
        text = message or "The server had an error while processing your request. Sorry about that!"
        with contextlib.suppress(ConnectionClosed):
            await self._send(_error_event(code, text, kind="server_error"))

    async def _expire_later(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self.expire(seconds)

    async def expire(self, seconds: float) -> None:
        """End the session as the real API does at its maximum duration: session_expired, then close 1001."""
        duration = f"{seconds / 60:g} minutes" if seconds >= 60 else f"{seconds:g} seconds"
        message = f"Your session hit the maximum duration of {duration}."
        with contextlib.suppress(ConnectionClosed):
            await self._send(_error_event("session_expired", message, kind="invalid_request_error"))
            await self._close(1001, message)

    # -- client events --

    async def _on_message(self, message: str | bytes) -> bool:
        """Handle one client message; False when the session must end."""
        try:
            event = json.loads(message)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._record._add_client_event({"type": None, "invalid": repr(message)[:200]})
            await self._error(_ClientError("invalid_json", f"We could not parse the JSON body of your event: {exc}"))
            return True
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            self._record._add_client_event({"type": None, "invalid": event})
            await self._error(_ClientError("invalid_value", "An event must be an object with a 'type'.", "type"))
            return True
        audio = b""
        if event["type"] == "input_audio_buffer.append":
            try:
                audio = base64.b64decode(event.get("audio", ""), validate=True)
            except (binascii.Error, TypeError, ValueError):
                self._record._add_client_event(event)
                await self._error(
                    _ClientError("invalid_value", "'audio' must be base64-encoded audio.", "audio"), event
                )
                return True
        self._record._add_client_event(event, audio)
        try:
            if event["type"] == "input_audio_buffer.append":
                await self._on_append(audio)
            else:
                handler = self._handlers().get(event["type"])
                if handler is None:
                    raise _ClientError(
                        "invalid_value",
                        f"Invalid value: '{event['type']}'. It is not a supported client event.",
                        "type",
                    )
                await handler(event)
        except _BetaShape as error:
            await self._error(error, event)
            await self._close(1008, "beta_api_shape_disabled")
            return False
        except _ClientError as error:
            await self._error(error, event)
        return True

    def _handlers(self) -> dict[str, Callable[[JsonObject], Awaitable[None]]]:
        return {
            "session.update": self._on_session_update,
            "input_audio_buffer.commit": self._on_commit,
            "input_audio_buffer.clear": self._on_clear,
            "conversation.item.create": self._on_item_create,
            "conversation.item.retrieve": self._on_item_retrieve,
            "conversation.item.delete": self._on_item_delete,
            "conversation.item.truncate": self._on_truncate,
            "response.create": self._on_response_create,
            "response.cancel": self._on_response_cancel,
            "output_audio_buffer.clear": self._on_output_audio_buffer_clear,
            "transcription_session.update": self._on_transcription_session_update,
        }

    async def _on_session_update(self, event: JsonObject) -> None:
        self._session = merge_session(
            self._session,
            event.get("session"),
            voice_locked=self._voice_locked,
            ignore_output_format=self._faults.ignore_output_format,
        )
        self._reconfigure_vad()
        await self._send({"type": "session.updated", "session": copy.deepcopy(self._session)})
        if self._faults.stop_reading_after_ms is not None and not self._stops_reading:
            self._stops_reading = True
            self._timers.append(
                asyncio.create_task(self._stop_reading_later(self._faults.stop_reading_after_ms / 1000))
            )

    async def _on_transcription_session_update(self, event: JsonObject) -> None:
        raise _BetaShape("transcription_session.update belongs to the Realtime beta, which is disabled.")

    async def _on_output_audio_buffer_clear(self, event: JsonObject) -> None:
        raise _ClientError("invalid_value", "output_audio_buffer.clear is only supported for WebRTC and SIP.", "type")

    def _reconfigure_vad(self) -> None:
        audio_in = self._session["audio"]["input"]
        self._vad.configure(audio_in["format"], audio_in["turn_detection"])

    async def _on_append(self, audio: bytes) -> None:
        self._buffer.extend(audio)
        if self._options.echo:
            await self._echo(audio)
            return
        for kind, ms in self._vad.feed(audio):
            turn_detection = self._session["audio"]["input"]["turn_detection"]
            if kind == "started":
                self._speech_item_id = _new_id("item")
                await self._send(
                    {"type": "input_audio_buffer.speech_started", "audio_start_ms": ms, "item_id": self._speech_item_id}
                )
                if turn_detection["interrupt_response"] and self._response is not None:
                    await self._cancel_response("turn_detected")
            else:
                item_id = self._speech_item_id or _new_id("item")
                await self._send({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": ms, "item_id": item_id})
                await self._commit(item_id)
                if turn_detection["create_response"] and self._response is None:
                    self._start_response()

    async def _commit(self, item_id: str) -> None:
        previous = next(reversed(self._items), None)
        audio_ms = len(self._buffer) // _format_bytes_per_ms(self._session["audio"]["input"]["format"])
        self._buffer.clear()
        self._speech_item_id = None
        await self._send({"type": "input_audio_buffer.committed", "previous_item_id": previous, "item_id": item_id})
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        await self._add_item(item, previous)
        transcription = self._session["audio"]["input"]["transcription"]
        if transcription is not None and not self._options.echo:
            line = ""
            if self._options.caller_lines:
                line = self._options.caller_lines[self._caller_turns % len(self._options.caller_lines)]
            self._caller_turns += 1
            self._timers.append(asyncio.create_task(self._transcribe(item, line, audio_ms, transcription["model"])))

    async def _transcribe(self, item: JsonObject, line: str, audio_ms: int, model: str) -> None:
        """The caller's item as text (the script's line for it), after ``transcription_delay_ms``: word deltas,
        then ``.completed`` with its usage (whisper-1 bills seconds, the other models tokens), or ``.failed``."""
        with contextlib.suppress(ConnectionClosed):
            if self._faults.transcription_delay_ms:
                await asyncio.sleep(self._faults.transcription_delay_ms / 1000)
            ids = {"item_id": item["id"], "content_index": 0}
            words = re.findall(r"\S+\s*", line)
            if self._faults.transcription_fails:
                words = words[: len(words) // 2]
            for word in words:
                await self._send({"type": "conversation.item.input_audio_transcription.delta", **ids, "delta": word})
            if self._faults.transcription_fails:
                error = {
                    "type": "transcription_error",
                    "code": "audio_unintelligible",
                    "message": "The audio could not be transcribed.",
                    "param": None,
                }
                await self._send({"type": "conversation.item.input_audio_transcription.failed", **ids, "error": error})
                return
            usage: JsonObject
            if model == "whisper-1":
                usage = {"type": "duration", "seconds": round(audio_ms / 1000, 3)}
            else:
                audio_tokens = max(1, audio_ms // 100)
                text_tokens = max(1, len(line) // 4)
                usage = {
                    "type": "tokens",
                    "input_tokens": audio_tokens,
                    "output_tokens": text_tokens,
                    "total_tokens": audio_tokens + text_tokens,
                    "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
                }
            item["content"] = [{"type": "input_audio", "transcript": line}]
            await self._send(
                {
                    "type": "conversation.item.input_audio_transcription.completed",
                    **ids,
                    "transcript": line,
                    "usage": usage,
                }
            )

    async def _add_item(self, item: JsonObject, previous: str | None) -> None:
        self._items[item["id"]] = item
        await self._send({"type": "conversation.item.added", "previous_item_id": previous, "item": copy.deepcopy(item)})
        await self._send({"type": "conversation.item.done", "previous_item_id": previous, "item": copy.deepcopy(item)})

    async def _on_commit(self, event: JsonObject) -> None:
        bytes_per_ms = _format_bytes_per_ms(self._session["audio"]["input"]["format"])
        if len(self._buffer) < _MIN_COMMIT_MS * bytes_per_ms:
            raise _ClientError(
                "input_audio_buffer_commit_empty",
                f"Error committing input audio buffer: buffer too small. Expected at least {_MIN_COMMIT_MS}ms "
                f"of audio, but buffer only has {len(self._buffer) / bytes_per_ms:.2f}ms of audio.",
            )
        self._vad.reset()
        await self._commit(self._speech_item_id or _new_id("item"))

    async def _on_clear(self, event: JsonObject) -> None:
        self._buffer.clear()
        self._vad.reset()
        self._speech_item_id = None
        await self._send({"type": "input_audio_buffer.cleared"})

    async def _on_item_create(self, event: JsonObject) -> None:
        item = event.get("item")
        if not isinstance(item, dict):
            raise _ClientError("missing_required_parameter", "Missing required parameter: 'item'.", "item")
        kind = item.get("type")
        item = copy.deepcopy(item)
        item.setdefault("id", _new_id("item"))
        item["object"] = "realtime.item"
        if item["id"] in self._items:
            raise _ClientError("invalid_value", f"Item with id '{item['id']}' already exists.", "item.id")
        if kind == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not isinstance(item.get("output"), str):
                raise _ClientError(
                    "invalid_value", "A function_call_output needs 'call_id' and 'output' strings.", "item.call_id"
                )
            if call_id not in self._committed_calls:
                raise _ClientError(
                    "invalid_tool_call_id", f"Tool call ID '{call_id}' not found in conversation.", "item.call_id"
                )
            item["status"] = "completed"
        elif kind == "message":
            if item.get("role") not in ("user", "assistant", "system") or not isinstance(item.get("content"), list):
                raise _ClientError("invalid_value", "A message item needs a role and a content array.", "item")
            item["status"] = "completed"
        elif kind == "function_call":
            item.setdefault("status", "completed")
        else:
            raise _ClientError(
                "invalid_value",
                f"Invalid value: {kind!r}. "
                "Supported values are: 'message', 'function_call' and 'function_call_output'.",
                "item.type",
            )
        previous = event.get("previous_item_id", next(reversed(self._items), None))
        if previous is not None and previous != "root" and previous not in self._items:
            raise _ClientError("item_not_found", f"Item with item_id '{previous}' not found.", "previous_item_id")
        await self._add_item(item, previous)

    def _find_item(self, event: JsonObject) -> JsonObject:
        item_id = event.get("item_id")
        if not isinstance(item_id, str) or item_id not in self._items:
            raise _ClientError("item_not_found", f"Item with item_id '{item_id}' not found.", "item_id")
        return self._items[item_id]

    async def _on_item_retrieve(self, event: JsonObject) -> None:
        item = self._find_item(event)
        await self._send({"type": "conversation.item.retrieved", "item": copy.deepcopy(item)})

    async def _on_item_delete(self, event: JsonObject) -> None:
        item = self._find_item(event)
        del self._items[item["id"]]
        await self._send({"type": "conversation.item.deleted", "item_id": item["id"]})

    async def _on_truncate(self, event: JsonObject) -> None:
        item = self._find_item(event)
        if item.get("role") != "assistant" or item["id"] not in self._audio_ms:
            raise _ClientError("invalid_value", "Only assistant messages with audio can be truncated.", "item_id")
        if event.get("content_index", 0) != 0:
            raise _ClientError("invalid_value", "Invalid content_index: the item has one audio part.", "content_index")
        end_ms = event.get("audio_end_ms")
        if isinstance(end_ms, bool) or not isinstance(end_ms, int) or end_ms < 0:
            raise _ClientError(
                "invalid_value", "'audio_end_ms' must be a whole number of ms, 0 or more.", "audio_end_ms"
            )
        sent_ms = self._audio_ms[item["id"]]
        if end_ms > sent_ms:
            raise _ClientError(
                "invalid_value",
                f"Audio content of {sent_ms}ms is already shorter than {end_ms}ms.",
                "audio_end_ms",
            )
        self._audio_ms[item["id"]] = end_ms
        await self._send(
            {"type": "conversation.item.truncated", "item_id": item["id"], "content_index": 0, "audio_end_ms": end_ms}
        )

    async def _on_response_create(self, event: JsonObject) -> None:
        params = event.get("response", {})
        if not isinstance(params, dict):
            raise _ClientError("invalid_type", "Invalid type for 'response': expected an object.", "response")
        _check_keys(params, _RESPONSE_FIELDS, "response")
        if self._response is not None:
            raise _ClientError(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {self._response.response_id}. "
                "Wait until the response is finished before creating a new one.",
            )
        self._start_response()

    async def _on_response_cancel(self, event: JsonObject) -> None:
        wanted = event.get("response_id")
        if self._response is None or (wanted is not None and wanted != self._response.response_id):
            raise _ClientError("response_cancel_not_active", "Cancellation failed: no active response found.")
        await self._cancel_response("client_cancelled")

    # -- responses --

    def _start_response(self) -> None:
        turn: Turn | None = None  # echo mode: the reply is the caller's own audio
        if not self._options.echo:
            turn = self._next_script_turn()
        response = _Response(response_id=_new_id("resp"))
        self._response = response
        response.task = asyncio.create_task(self._run_response(response, turn))

    def _next_script_turn(self) -> Turn:
        """The next turn, skipping tool calls of tools this session does not offer (a model calls only those).

        One script thus serves every kind of call: each session plays the turns that fit its tools. In tool
        arguments, ``{fecha+N}`` becomes the date N days from today (UTC), for tools that want a future date.
        """
        script = self._options.script
        offered = {str(tool.get("name")) for tool in self._session.get("tools", []) if isinstance(tool, dict)}
        turn = script[self._next_turn % len(script)]
        for _ in range(len(script)):
            turn = script[self._next_turn % len(script)]
            self._next_turn += 1
            if not isinstance(turn, ToolCallTurn) or turn.name in offered:
                break
        if isinstance(turn, ToolCallTurn) and "{fecha+" in turn.arguments:
            today = datetime.now(UTC).date()
            arguments = re.sub(
                r"\{fecha\+(\d+)\}", lambda m: (today + timedelta(days=int(m.group(1)))).isoformat(), turn.arguments
            )
            turn = dataclasses.replace(turn, arguments=arguments)
        return turn

    async def _cancel_response(self, reason: str) -> None:
        """Stop the response in progress and wait until it has sent its cancelled ``response.done``."""
        response = self._response
        if response is None or response.task is None:
            return
        response.cancel_reason = reason
        response.cancel.set()
        with contextlib.suppress(ConnectionClosed):
            await asyncio.shield(response.task)

    async def _pause(self, response: _Response, seconds: float) -> bool:
        """Wait between chunks; True when the response got cancelled meanwhile (wakes at once if so)."""
        if seconds <= 0:
            await asyncio.sleep(0)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(response.cancel.wait(), seconds)
        return response.cancel.is_set()

    def _response_object(self, response: _Response, status: str, output: list[JsonObject]) -> JsonObject:
        audio_out = self._session["audio"]["output"]
        return {
            "object": "realtime.response",
            "id": response.response_id,
            "status": status,
            "status_details": None,
            "output": copy.deepcopy(output),
            "conversation_id": self._conversation_id,
            "output_modalities": list(self._session["output_modalities"]),
            "max_output_tokens": self._session["max_output_tokens"],
            "audio": {"output": {"format": dict(audio_out["format"]), "voice": audio_out["voice"]}},
            "usage": None,
            "metadata": None,
        }

    async def _run_response(self, response: _Response, turn: Turn | None) -> None:
        try:
            await self._send(
                {"type": "response.created", "response": self._response_object(response, "in_progress", [])}
            )
            self._responses_started += 1
            silent_after = self._faults.silent_after_responses
            if silent_after is not None and self._responses_started > silent_after:
                await response.cancel.wait()  # stuck: nothing until the client (or a barge-in) cancels it
                final = self._response_object(response, "cancelled", [])
                final["status_details"] = {"type": "cancelled", "reason": response.cancel_reason}
                self._response = None
                await self._send({"type": "response.done", "response": final})
                return
            await self._send(
                {
                    "type": "rate_limits.updated",
                    "rate_limits": [
                        {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
                        {"name": "tokens", "limit": 40000, "remaining": 38000, "reset_seconds": 3.0},
                    ],
                }
            )
            if turn is None:
                item, output_tokens = await self._stream_echo(response)
            elif isinstance(turn, AudioTurn):
                item, output_tokens = await self._stream_audio(response, turn)
            else:
                item, output_tokens = await self._stream_tool_call(response, turn)
            cancelled = response.cancel.is_set()
            final = self._response_object(response, "cancelled" if cancelled else "completed", [item])
            if cancelled:
                final["status_details"] = {"type": "cancelled", "reason": response.cancel_reason}
            elif item["type"] == "function_call":
                self._committed_calls.add(item["call_id"])
            final["usage"] = self._usage(output_tokens)
            self._response = None
            await self._send({"type": "response.done", "response": final})
        except _Dropped:
            self._response = None
        except ConnectionClosed:
            self._response = None
        finally:
            if self._response is response:
                self._response = None

    def _usage(self, output_tokens: tuple[int, int]) -> JsonObject:
        text_out, audio_out = output_tokens
        audio_in = 100 + len(self._record.audio) // 800  # about one token per 100 ms of μ-law
        return {
            "total_tokens": audio_in + 50 + text_out + audio_out,
            "input_tokens": audio_in + 50,
            "output_tokens": text_out + audio_out,
            "input_token_details": {
                "text_tokens": 50,
                "audio_tokens": audio_in,
                "image_tokens": 0,
                "cached_tokens": 0,
                "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
            },
            "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
        }

    def _encode_output(self, ulaw: bytes) -> tuple[bytes, int]:
        """The reply audio in the session's output format, and its bytes per ms."""
        audio_format = self._session["audio"]["output"]["format"]
        if audio_format["type"] == "audio/pcm":
            return _ulaw_to_pcm24k(ulaw), 48
        if audio_format["type"] == "audio/pcma":
            return ulaw.translate(_ULAW_TO_ALAW), 8
        return ulaw, 8

    async def _open_message(self, response: _Response, *, text_only: bool) -> tuple[JsonObject, JsonObject, str | None]:
        """Start the assistant's message item and its content part: (item, ids for its deltas, previous item)."""
        item_id = _new_id("item")
        item: JsonObject = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        }
        previous = next(reversed(self._items), None)
        self._items[item_id] = item
        ids = {"response_id": response.response_id, "item_id": item_id, "output_index": 0}
        await self._send(
            {
                "type": "response.output_item.added",
                "response_id": response.response_id,
                "output_index": 0,
                "item": copy.deepcopy(item),
            }
        )
        await self._send({"type": "conversation.item.added", "previous_item_id": previous, "item": copy.deepcopy(item)})
        empty_part = {"type": "text", "text": ""} if text_only else {"type": "audio", "transcript": ""}
        await self._send({"type": "response.content_part.added", **ids, "content_index": 0, "part": empty_part})
        return item, ids, previous

    async def _close_message(
        self, item: JsonObject, ids: JsonObject, previous: str | None, spoken: str, *, text_only: bool, cancelled: bool
    ) -> None:
        """End the assistant's message item: the done events of its part, the item and the conversation item."""
        if text_only:
            await self._send({"type": "response.output_text.done", **ids, "content_index": 0, "text": spoken})
            part = {"type": "text", "text": spoken}
        else:
            await self._send({"type": "response.output_audio.done", **ids, "content_index": 0})
            await self._send(
                {"type": "response.output_audio_transcript.done", **ids, "content_index": 0, "transcript": spoken}
            )
            part = {"type": "audio", "transcript": spoken}
        await self._send({"type": "response.content_part.done", **ids, "content_index": 0, "part": part})
        item["status"] = "incomplete" if cancelled else "completed"
        item["content"] = [
            {"type": "output_text", "text": spoken} if text_only else {"type": "output_audio", "transcript": spoken}
        ]
        await self._send(
            {
                "type": "response.output_item.done",
                "response_id": ids["response_id"],
                "output_index": 0,
                "item": copy.deepcopy(item),
            }
        )
        await self._send({"type": "conversation.item.done", "previous_item_id": previous, "item": copy.deepcopy(item)})

    async def _stream_audio(self, response: _Response, turn: AudioTurn) -> tuple[JsonObject, tuple[int, int]]:
        text_only = self._session["output_modalities"] == ["text"]
        item, ids, previous = await self._open_message(response, text_only=text_only)
        item_id = item["id"]

        words = re.findall(r"\S+\s*", turn.transcript)
        if text_only:
            audio, bytes_per_ms, chunk_bytes, chunks = b"", 8, 1, 0
        else:
            audio, bytes_per_ms = self._encode_output(turn.audio)
            chunk_bytes = self._options.chunk_ms * bytes_per_ms
            chunks = math.ceil(len(audio) / chunk_bytes)
            self._voice_locked = True
            self._audio_ms[item_id] = 0
        transcript_sent = 0
        text_event = "response.output_text.delta" if text_only else "response.output_audio_transcript.delta"
        sent_ms = 0
        for index in range(chunks):
            if response.cancel.is_set():
                break
            chunk = audio[index * chunk_bytes : (index + 1) * chunk_bytes]
            await self._send(
                {
                    "type": "response.output_audio.delta",
                    **ids,
                    "content_index": 0,
                    "delta": base64.b64encode(chunk).decode(),
                }
            )
            sent_ms += len(chunk) // bytes_per_ms
            self._audio_ms[item_id] = sent_ms
            self._deltas_sent += 1
            drop_after = self._faults.drop_after_deltas
            if drop_after is not None and self._deltas_sent >= drop_after:
                self._record._set_closed(None)
                self._ws.transport.abort()
                raise _Dropped
            due = math.ceil((index + 1) * len(words) / chunks)
            while transcript_sent < min(due, len(words)):
                await self._send({"type": text_event, **ids, "content_index": 0, "delta": words[transcript_sent]})
                transcript_sent += 1
            pace = self._options.pace
            if await self._pause(response, self._options.chunk_ms / 1000 / pace if pace > 0 else 0):
                break
        cancelled = response.cancel.is_set()
        if not cancelled:
            while transcript_sent < len(words):
                await self._send({"type": text_event, **ids, "content_index": 0, "delta": words[transcript_sent]})
                transcript_sent += 1
        spoken = "".join(words[:transcript_sent])
        await self._close_message(item, ids, previous, spoken, text_only=text_only, cancelled=cancelled)
        return item, (max(1, len(spoken) // 4), sent_ms // 50)

    async def _stream_echo(self, response: _Response) -> tuple[JsonObject, tuple[int, int]]:
        """Echo mode: open an audio part, let ``_echo`` fill it with the caller's audio, close it on cancel."""
        item, ids, previous = await self._open_message(response, text_only=False)
        self._voice_locked = True
        self._audio_ms[item["id"]] = 0
        response.echo_ids = ids
        await response.cancel.wait()
        response.echo_ids = None
        await self._close_message(item, ids, previous, "", text_only=False, cancelled=True)
        return item, (1, self._audio_ms[item["id"]] // 50)

    async def _echo(self, audio: bytes) -> None:
        """Send appended audio straight back as a delta of the echo response; kept only when none is open.

        μ-law input is converted to the session's output format; other input formats go back byte for byte.
        """
        response = self._response
        ids = response.echo_ids if response is not None else None
        if ids is None or not audio:
            return
        input_format = self._session["audio"]["input"]["format"]
        if input_format["type"] == "audio/pcmu":
            chunk, bytes_per_ms = self._encode_output(audio)
        else:
            chunk, bytes_per_ms = audio, _format_bytes_per_ms(input_format)
        delta = base64.b64encode(chunk).decode()
        await self._send({"type": "response.output_audio.delta", **ids, "content_index": 0, "delta": delta})
        self._audio_ms[ids["item_id"]] += len(chunk) // bytes_per_ms
        self._deltas_sent += 1

    async def _stream_tool_call(self, response: _Response, turn: ToolCallTurn) -> tuple[JsonObject, tuple[int, int]]:
        item_id, call_id = _new_id("item"), _new_id("call")
        item: JsonObject = {
            "id": item_id,
            "object": "realtime.item",
            "type": "function_call",
            "status": "in_progress",
            "name": turn.name,
            "call_id": call_id,
            "arguments": "",
        }
        previous = next(reversed(self._items), None)
        self._items[item_id] = item
        await self._send(
            {
                "type": "response.output_item.added",
                "response_id": response.response_id,
                "output_index": 0,
                "item": copy.deepcopy(item),
            }
        )
        await self._send({"type": "conversation.item.added", "previous_item_id": previous, "item": copy.deepcopy(item)})
        ids = {"response_id": response.response_id, "item_id": item_id, "output_index": 0, "call_id": call_id}
        size = max(1, math.ceil(len(turn.arguments) / turn.pieces))
        sent = ""
        for start in range(0, len(turn.arguments), size):
            if response.cancel.is_set():
                break
            piece = turn.arguments[start : start + size]
            await self._send({"type": "response.function_call_arguments.delta", **ids, "delta": piece})
            sent += piece
            await self._pause(response, 0)
        await self._send({"type": "response.function_call_arguments.done", **ids, "name": turn.name, "arguments": sent})
        item["arguments"] = sent
        item["status"] = "incomplete" if response.cancel.is_set() else "completed"
        await self._send(
            {
                "type": "response.output_item.done",
                "response_id": response.response_id,
                "output_index": 0,
                "item": copy.deepcopy(item),
            }
        )
        await self._send({"type": "conversation.item.done", "previous_item_id": previous, "item": copy.deepcopy(item)})
        # Until response.done the call is not in the conversation: a function_call_output sent now gets
        # invalid_tool_call_id, as on the real API. The pause makes a client that does not wait fail reliably.
        await self._pause(response, self._options.tool_done_delay_ms / 1000)
        return item, (max(1, len(sent) // 4), 0)


class _Dropped(Exception):
    """The drop fault fired: the TCP connection is gone, the response just stops."""


# --- The server ----------------------------------------------------------------------------------------


class _QuietLogger(logging.LoggerAdapter[logging.Logger]):
    """websockets' logger without its DEBUG output, which prints request headers, Authorization included.

    A fake that leaked the key into a debug log would make the "the key is never logged" tests meaningless.
    """

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and super().isEnabledFor(level)

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        return None


class FakeRealtimeServer:
    """The fake server on a background thread with its own event loop; a context manager.

    ``with FakeRealtimeServer() as server:`` listens on 127.0.0.1 on an ephemeral port (``server.port``,
    ``server.url``), records each connection in ``server.sessions()`` and stops (closing connections with
    1001) on exit. ``faults`` may be replaced at any time; a connection keeps the faults it opened with.
    With ``echo=True`` a response plays back the caller's own audio instead of the script (load tests).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = DEFAULT_API_KEY,
        script: Sequence[Turn] | None = None,
        faults: Faults | None = None,
        pace: float = 4.0,
        chunk_ms: int = 40,
        min_speech_ms: int = 60,
        tool_done_delay_ms: int = 50,
        echo: bool = False,
        caller_lines: Sequence[str] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """``tls``: serve wss:// with this server context (the client must trust its certificate)."""
        if chunk_ms <= 0 or chunk_ms % 10:
            raise ValueError(f"chunk_ms must be a positive multiple of 10, not {chunk_ms}")
        if pace < 0:
            raise ValueError(f"pace must be 0 (as fast as possible) or more, not {pace}")
        turns = tuple(script) if script is not None else default_script()
        if not turns:
            raise ValueError("the script needs at least one turn")
        self._options = _Options(
            api_key=api_key,
            script=turns,
            pace=pace,
            chunk_ms=chunk_ms,
            min_speech_ms=min_speech_ms,
            tool_done_delay_ms=tool_done_delay_ms,
            echo=echo,
            caller_lines=tuple(caller_lines) if caller_lines is not None else default_caller_lines(),
        )
        self._host = host
        self._tls = tls
        self._requested_port = port
        self._port: int | None = None
        self._lock = threading.Lock()
        self._faults = faults or Faults()
        self._records: list[SessionRecord] = []
        self._live: dict[int, _Session] = {}
        self._rejections: list[tuple[int, str]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._sessions_changed = threading.Condition(self._lock)

    # -- public API --

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the server is not running")
        return self._port

    @property
    def api_key(self) -> str:
        return self._options.api_key

    @property
    def base_url(self) -> str:
        """The URL to give the client as OPENAI_BASE_URL (without the model)."""
        return f"{'wss' if self._tls is not None else 'ws'}://{self._host}:{self.port}/v1/realtime"

    def url(self, model: str = DEFAULT_MODEL) -> str:
        return f"{self.base_url}?model={model}"

    @property
    def faults(self) -> Faults:
        with self._lock:
            return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        with self._lock:
            self._faults = faults

    def sessions(self) -> list[SessionRecord]:
        """Every connection that got past the HTTP handshake, oldest first."""
        with self._lock:
            return list(self._records)

    def rejections(self) -> list[tuple[int, str]]:
        """Handshakes refused over HTTP: (status, reason), oldest first."""
        with self._lock:
            return list(self._rejections)

    def wait_for_session(self, index: int = 0, timeout: float = 5.0) -> SessionRecord:
        """The record of connection ``index`` (0: the first), waiting for it to open."""
        with self._sessions_changed:
            if not self._sessions_changed.wait_for(lambda: len(self._records) > index, timeout):
                raise TimeoutError(f"no session {index} within {timeout} s")
            return self._records[index]

    def inject_error(self, code: str = "server_error", message: str | None = None) -> None:
        """Send an ``error`` event on every open session, now."""
        self._on_loop(lambda session: session.inject_error(code, message))

    def expire_sessions(self, seconds: float = 3600.0) -> None:
        """Close every open session with session_expired and code 1001, as at the maximum duration."""
        self._on_loop(lambda session: session.expire(seconds))

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("the server is already running")
        self._thread = threading.Thread(target=self._thread_main, name="fake-realtime", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            raise self._startup_error
        return self

    def stop(self) -> None:
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        thread.join()
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def serve(self, ready: Callable[[int], None] | None = None) -> None:
        """Run on the current event loop until cancelled (the command line uses this)."""
        self._stop = asyncio.Event()
        await self._serve(ready)

    # -- internals --

    def _on_loop(self, action: Callable[[_Session], Any]) -> None:
        loop = self._loop
        if loop is None:
            raise RuntimeError("the server is not running")
        with self._lock:
            sessions = list(self._live.values())

        async def run_all() -> None:
            for session in sessions:
                await action(session)

        asyncio.run_coroutine_threadsafe(run_all(), loop).result(timeout=10)

    def drop_sessions(self) -> int:
        """Abort every open session's TCP connection (no close frame), as a network fault does; how many."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("the server is not running")
        return int(asyncio.run_coroutine_threadsafe(self._drop_async(), loop).result(timeout=10))

    async def _drop_async(self) -> int:
        return self._drop_all()

    def _drop_all(self) -> int:
        """On the server's loop: abort every live connection."""
        with self._lock:
            sessions = list(self._live.values())
        for session in sessions:
            session.abort()
        return len(sessions)

    def _thread_main(self) -> None:
        async def main() -> None:
            self._stop = asyncio.Event()
            await self._serve(lambda port: self._ready.set())

        try:
            asyncio.run(main())
        except BaseException as error:  # reported to start(); the thread must not die silently
            self._startup_error = error
        finally:
            self._ready.set()

    async def _serve(self, ready: Callable[[int], None] | None) -> None:
        assert self._stop is not None
        self._loop = asyncio.get_running_loop()
        server: Server = await serve(
            self._handle,
            self._host,
            self._requested_port,
            process_request=self._process_request,
            max_size=_MAX_MESSAGE_BYTES,
            compression=None,
            close_timeout=2,  # a client that never closes its TCP side must not hold up stop() for long
            ssl=self._tls,
            logger=_QuietLogger(logging.getLogger("centralita_testing.fake_realtime.websockets"), {}),
        )
        try:
            sockets = list(server.sockets)
            self._port = sockets[0].getsockname()[1]
            if ready is not None:
                ready(self._port)
            await self._stop.wait()
        finally:
            server.close()
            await server.wait_closed()
            self._loop = None

    def _reject(self, connection: ServerConnection, status: http.HTTPStatus, error: JsonObject) -> Response:
        with self._lock:
            self._rejections.append((status.value, str(error.get("code") or error.get("type"))))
        return _http_error(connection, status, error)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """The HTTP side of the handshake: availability, path, key and model, like the real endpoint."""
        faults = self.faults
        parts = urlsplit(request.path)
        if faults.refuse and not parts.path.startswith("/fake/"):  # the control paths answer whatever the faults
            return self._reject(
                connection,
                http.HTTPStatus.SERVICE_UNAVAILABLE,
                {
                    "message": "The server is overloaded or not ready yet.",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                },
            )
        path = parts.path.rstrip("/")
        if path not in ("/v1/realtime", "/v1/models", "/fake/drop", "/fake/faults"):
            return self._reject(
                connection,
                http.HTTPStatus.NOT_FOUND,
                {
                    "message": f"Invalid URL (GET {parts.path})",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                },
            )
        authorization = request.headers.get("Authorization", "")
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return self._reject(
                connection,
                http.HTTPStatus.UNAUTHORIZED,
                {
                    "message": "You didn't provide an API key. You need to provide your API key in an Authorization "
                    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "missing_api_key",
                },
            )
        if not hmac.compare_digest(key.strip().encode(), self._options.api_key.encode()):
            return self._reject(
                connection,
                http.HTTPStatus.UNAUTHORIZED,
                {
                    "message": "Incorrect API key provided. You can find your API key at "
                    "https://platform.openai.com/account/api-keys.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                },
            )
        if path == "/fake/drop":  # fault injection from outside the process (make soak): cut every session now
            return _http_json(connection, http.HTTPStatus.OK, {"dropped": self._drop_all()})
        if path == "/fake/faults":  # ...or change the faults of the connections to come (?set=refuse,delay_ms=900)
            specs = [spec for spec in parse_qs(parts.query).get("set", [""])[0].split(",") if spec.strip()]
            try:
                self.faults = Faults.parse(specs)
            except ValueError as error:
                return _http_json(connection, http.HTTPStatus.BAD_REQUEST, {"error": str(error)})
            return _http_json(connection, http.HTTPStatus.OK, {"faults": dataclasses.asdict(self.faults)})
        if path == "/v1/models":  # plain HTTP GET, as `centralita doctor` uses it to test the key
            models_list = [
                {"id": name, "object": "model", "created": when, "owned_by": "system"} for name, when in _MODELS
            ]
            return _http_json(connection, http.HTTPStatus.OK, {"object": "list", "data": models_list})
        models = parse_qs(parts.query).get("model", [])
        if not models or not models[0]:
            return self._reject(
                connection,
                http.HTTPStatus.BAD_REQUEST,
                {
                    "message": "Missing required parameter: 'model'.",
                    "type": "invalid_request_error",
                    "param": "model",
                    "code": "missing_model",
                },
            )
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        parts = urlsplit(request.path)
        model = parse_qs(parts.query)["model"][0]
        headers = {name: value for name, value in request.headers.raw_items() if name.lower() != "authorization"}
        beta = any(value.replace(" ", "").lower() == "realtime=v1" for value in request.headers.get_all("OpenAI-Beta"))
        with self._lock:
            record = SessionRecord(len(self._records), request.path, headers)
            self._records.append(record)
            faults = self._faults
            self._sessions_changed.notify_all()
        session = _Session(ws, record, self._options, faults, model, beta)
        with self._lock:
            self._live[record.index] = session
        try:
            await session.run()
        finally:
            with self._lock:
                self._live.pop(record.index, None)


# --- Command line ----------------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m centralita_testing.fake_realtime",
        description="A fake OpenAI Realtime API (GA) server, for tests and the demo.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on; 0 picks a free one (default 8765)")
    parser.add_argument(
        "--api-key", default=DEFAULT_API_KEY, help="the API key clients must send (default %(default)s)"
    )
    parser.add_argument("--script", type=Path, help="reply script (JSON); default: the one shipped with the package")
    parser.add_argument(
        "--audio-dir", type=Path, help="where relative audio paths in the script are (default: package data)"
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="FAULT",
        help="refuse | delay_ms=N | drop_after_deltas=K | error_after_ms=N | error_code=CODE | close_after_s=T | "
        "ignore_output_format | silent_after_responses=N | transcription_delay_ms=N | transcription_fails "
        "(repeatable); at run time, GET /fake/faults?set=... with "
        "the API key changes them for new connections and GET /fake/drop cuts every open session",
    )
    parser.add_argument("--pace", type=float, default=4.0, help="audio sent at this many times real time; 0: no pause")
    parser.add_argument("--chunk-ms", type=int, default=40, help="ms of audio per output_audio.delta (default 40)")
    parser.add_argument(
        "--echo", action="store_true", help="a response echoes the caller's audio instead of the script (load tests)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every connection")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fake server in the foreground until interrupted."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(message)s")
    try:
        faults = Faults.parse(args.fault)
        script = load_script(args.script, args.audio_dir) if args.script else default_script(args.audio_dir)
        caller_lines = load_caller_lines(args.script) if args.script else default_caller_lines()
        server = FakeRealtimeServer(
            host=args.host,
            port=args.port,
            api_key=args.api_key,
            script=script,
            faults=faults,
            pace=args.pace,
            chunk_ms=args.chunk_ms,
            echo=args.echo,
            caller_lines=caller_lines,
        )
    except (ValueError, OSError) as error:
        print(f"fake_realtime: {error}", file=sys.stderr)
        return 2

    def ready(port: int) -> None:
        print(f"fake Realtime server listening on ws://{args.host}:{port}/v1/realtime", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(server.serve(ready))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
