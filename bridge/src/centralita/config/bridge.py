"""The bridge's settings (openai-inbound-calls): OpenAI, ARI, RTP and its media engine, the keepalive, logs,
records, failover, the caller's transcription, the metrics port, the worker processes (``WORKERS``,
``WORKER_METRICS_PORT``: ``calls/workers.py``), and the limits (``config/limits.py``: admission, watchdogs, prices
and budgets, the status file).

They are read with the shared ``EnvReader`` (``config/env.py``) from the box's one .env file, together with
the routers' and the dialer's (``config/box.py``). The ARI variables and the keepalive rule are defined here
once: the dialer reads ARI with ``read_ari``, and ``telephony/ari.py`` refuses a bad keepalive with
``keepalive_problem``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Final

from centralita.config.env import ConfigError, EnvReader, Secret, validated
from centralita.config.limits import (
    CallLimits,
    Spending,
    Watchdogs,
    read_limits,
    read_spending,
    read_status_file,
    read_watchdogs,
)

__all__ = [
    "ARI_URL_DEFAULT",
    "AriAccess",
    "CallLimits",
    "ConfigError",
    "FailureAction",
    "MediaEngine",
    "Secret",
    "Settings",
    "Spending",
    "Transcription",
    "Watchdogs",
    "keepalive_problem",
    "read_ari",
    "read_keepalive",
]

ARI_URL_DEFAULT: Final = "http://127.0.0.1:8088"
OPENAI_BASE_URL_DEFAULT: Final = "wss://api.openai.com/v1/realtime"
_ARI_PASSWORD: Final = "the password of ARI_USER in Asterisk's ari.conf"
TRANSCRIPTION_MODEL_DEFAULT: Final = "whisper-1"
TRANSCRIPTION_LANGUAGE_DEFAULT: Final = "es"
_OFF: Final = frozenset({"off", "none", "no", "false", "0"})
_LANGUAGE: Final = re.compile(r"^[a-z]{2}$")


class FailureAction(StrEnum):
    """What to do with a call when the Realtime API cannot be reached or drops mid-call."""

    TRANSFER = "transfer"  # send the caller to a human (OPERATOR_CONTEXT)
    HANGUP = "hangup"


class MediaEngine(StrEnum):
    """What carries the calls' RTP (MEDIA_ENGINE; docs/PERFORMANCE.md).

    ``threads``: a thread per call reads its RTP socket, one thread paces every call's outgoing audio.
    ``loop``: one event loop (``media/loop.py``) reads every call's socket and paces and sends every call's
    audio, and serves every call's Realtime WebSocket and watchdogs (``realtime/on_loop.py``): no thread per call.
    """

    THREADS = "threads"
    LOOP = "loop"


APPEND_MS_DEFAULT: Final = 40


def read_append_ms(reader: EnvReader) -> int:
    """APPEND_MS: how much caller audio (ms, whole 20 ms frames, 20 to 100) each ``input_audio_buffer.append``
    carries with MEDIA_ENGINE=loop. Longer batches cost less CPU and delay the server's view of the caller (end
    of speech, barge-in) by up to APPEND_MS - 20 ms (docs/PERFORMANCE.md)."""
    value = reader.integer("APPEND_MS", APPEND_MS_DEFAULT, 20, 100)
    if value % 20:
        reader.invalid(
            "APPEND_MS",
            str(value),
            "not a whole number of 20 ms frames (20, 40, 60, 80 or 100)",
            str(APPEND_MS_DEFAULT),
        )
        return APPEND_MS_DEFAULT
    return value


@dataclass(frozen=True, slots=True)
class AriAccess:
    """How to reach Asterisk's REST interface: the same four variables for both services."""

    url: str
    user: str
    password: Secret
    app: str


def read_ari(reader: EnvReader, *, require_password: bool) -> AriAccess:
    """ARI_URL (http:// only to this machine: the password goes with every request), ARI_USER, ARI_PASSWORD
    and ARI_APP (the Stasis application of openai-inbound-calls)."""
    return AriAccess(
        url=reader.url("ARI_URL", ARI_URL_DEFAULT, secure="https", plain="http", carries="the ARI password"),
        user=reader.text("ARI_USER", "centralita"),
        password=reader.secret("ARI_PASSWORD", _ARI_PASSWORD, required=require_password),
        app=reader.identifier("ARI_APP", "centralita"),
    )


WORKERS_MAX: Final = 64


def read_workers(reader: EnvReader, metrics: int) -> tuple[int, int]:
    """WORKERS (1 to 64: worker processes of openai-inbound-calls) and WORKER_METRICS_PORT (their metrics, one
    port each from it; needed with more than one worker when METRICS_PORT is on, and none of the workers' ports
    may be METRICS_PORT, which the supervisor serves the workers' sum on)."""
    workers = reader.integer("WORKERS", 1, 1, WORKERS_MAX)
    port = reader.integer("WORKER_METRICS_PORT", 0, 0, 65535)
    if workers > 1 and metrics and reader.valid("WORKERS", "WORKER_METRICS_PORT", "METRICS_PORT"):
        last = port + workers - 1
        if port == 0:
            reader.fail(
                "WORKER_METRICS_PORT",
                f"WORKER_METRICS_PORT is not set, but WORKERS is {workers} and METRICS_PORT {metrics}: each worker "
                f"serves its metrics on a port of its own from WORKER_METRICS_PORT; set it (e.g. "
                f"WORKER_METRICS_PORT={metrics + 6}) or METRICS_PORT=0.",
            )
        elif last > 65535 or port <= metrics <= last:
            reader.fail(
                "WORKER_METRICS_PORT",
                f"WORKER_METRICS_PORT {port} gives the {workers} workers the ports {port}-{last}, which must be "
                f"65535 or below and leave out METRICS_PORT ({metrics}): set another first port.",
            )
    return workers, port


def keepalive_problem(interval: float, timeout: float) -> str | None:
    """What is wrong with a WebSocket keepalive, or None: websocket-client refuses to start (``Ensure
    ping_interval > ping_timeout``) unless pings are sent more often than a pong is waited for."""
    if interval > timeout:
        return None
    return (
        f"the ping interval ({interval:g} s) must be greater than the ping timeout ({timeout:g} s): "
        'websocket-client refuses to start otherwise ("Ensure ping_interval > ping_timeout")'
    )


def read_keepalive(reader: EnvReader) -> tuple[float, float]:
    """WS_PING_INTERVAL and WS_PING_TIMEOUT, each above 0, the interval greater than the timeout."""
    interval = reader.seconds("WS_PING_INTERVAL", 20.0)
    timeout = reader.seconds("WS_PING_TIMEOUT", 10.0)
    # An invalid value stands in as its default: comparing it would judge a value nobody set.
    problem = keepalive_problem(interval, timeout) if reader.valid("WS_PING_INTERVAL", "WS_PING_TIMEOUT") else None
    if problem:
        reader.fail(
            "WS_PING_INTERVAL",
            f"WS_PING_INTERVAL is {interval:g} and WS_PING_TIMEOUT {timeout:g}, but {problem}: "
            "set e.g. WS_PING_INTERVAL=20 and WS_PING_TIMEOUT=10.",
        )
        return 20.0, 10.0
    return interval, timeout


@dataclass(frozen=True, slots=True)
class Transcription:
    """What the Realtime session is asked to transcribe of the caller (``audio.input.transcription``).

    ``model`` None: the caller's words are not transcribed (the transcript then holds the assistant's lines
    only). ``language`` None: the model guesses the language on every turn, which is slower and less accurate
    than naming it.
    """

    model: str | None = TRANSCRIPTION_MODEL_DEFAULT
    language: str | None = TRANSCRIPTION_LANGUAGE_DEFAULT

    @property
    def enabled(self) -> bool:
        return self.model is not None


def read_transcription(reader: EnvReader) -> Transcription:
    """TRANSCRIPTION_MODEL (default whisper-1; ``off`` for none) and TRANSCRIPTION_LANGUAGE (ISO-639-1, default
    es; ``auto`` to let the model guess)."""
    model: str | None = reader.identifier("TRANSCRIPTION_MODEL", TRANSCRIPTION_MODEL_DEFAULT, example="whisper-1")
    if model is not None and model.lower() in _OFF:
        model = None
    language: str | None = TRANSCRIPTION_LANGUAGE_DEFAULT
    raw = reader.raw("TRANSCRIPTION_LANGUAGE")
    if raw is not None:
        if raw.lower() == "auto":
            language = None
        elif _LANGUAGE.match(raw.lower()):
            language = raw.lower()
        else:
            reader.invalid(
                "TRANSCRIPTION_LANGUAGE",
                raw,
                "not a two-letter ISO-639-1 language code (or auto)",
                TRANSCRIPTION_LANGUAGE_DEFAULT,
            )
    return Transcription(model, language)


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated settings; each field is read from the environment variable of the same name in capitals.

    Build it with ``config.box.load_all`` (the whole .env, once), ``Settings.read`` (with a shared reader) or
    ``Settings.from_values``: those apply the defaults and the validation, the constructor does neither.
    """

    openai_api_key: Secret
    openai_base_url: str
    openai_model: str
    openai_voice: str
    ari_url: str
    ari_user: str
    ari_password: Secret
    ari_app: str
    rtp_bind_address: str
    ws_ping_interval: float
    ws_ping_timeout: float
    log_file: Path
    db_path: Path
    operator_context: str
    failover_context: str
    on_realtime_failure: FailureAction
    # Admission, watchdogs and spending (config/limits.py); the defaults are those of an unset variable.
    limits: CallLimits = field(default_factory=CallLimits)
    watchdogs: Watchdogs = field(default_factory=Watchdogs)
    spending: Spending = field(default_factory=Spending)
    status_file: Path = Path("/run/centralita/openai-inbound-calls.json")
    transcription: Transcription = field(default_factory=Transcription)
    metrics_port: int = 0  # Prometheus metrics on 127.0.0.1 at this port; 0: none
    media_engine: MediaEngine = MediaEngine.LOOP
    append_ms: int = APPEND_MS_DEFAULT  # MEDIA_ENGINE=loop: the caller's audio goes to the session in batches this long
    # Worker processes (calls/workers.py): 1 is one process as always; more: a supervisor and N workers, each with a
    # Stasis app of its own and its metrics at worker_metrics_port + its number - 1 (0: none).
    workers: int = 1
    worker_metrics_port: int = 0

    @classmethod
    def read(cls, reader: EnvReader) -> Settings:
        """Read every variable with ``reader``, which records the problems; use the result only if none."""
        api_key = reader.secret("OPENAI_API_KEY", "the API key from https://platform.openai.com/api-keys")
        base_url = reader.url(
            "OPENAI_BASE_URL", OPENAI_BASE_URL_DEFAULT, secure="wss", plain="ws", carries="the OpenAI API key"
        )
        model = reader.text("OPENAI_MODEL", "gpt-realtime")
        voice = reader.text("OPENAI_VOICE", "marin")
        ari = read_ari(reader, require_password=True)
        rtp_bind_address = reader.ip_address("RTP_BIND_ADDRESS", "127.0.0.1")
        interval, timeout = read_keepalive(reader)
        metrics_port = reader.integer("METRICS_PORT", 0, 0, 65535)
        workers, worker_metrics_port = read_workers(reader, metrics_port)
        return cls(
            openai_api_key=api_key,
            openai_base_url=base_url,
            openai_model=model,
            openai_voice=voice,
            ari_url=ari.url,
            ari_user=ari.user,
            ari_password=ari.password,
            ari_app=ari.app,
            rtp_bind_address=rtp_bind_address,
            ws_ping_interval=interval,
            ws_ping_timeout=timeout,
            log_file=reader.path("LOG_FILE", "/var/log/asterisk/inbound_openai.log"),
            db_path=reader.path("DB_PATH", "/var/lib/centralita/centralita.db"),
            operator_context=reader.text("OPERATOR_CONTEXT", "centralita-operator"),
            failover_context=reader.text("FAILOVER_CONTEXT", "centralita-unavailable"),
            on_realtime_failure=reader.choice("ON_REALTIME_FAILURE", FailureAction.TRANSFER),
            limits=read_limits(reader),
            watchdogs=read_watchdogs(reader),
            spending=read_spending(reader),
            status_file=read_status_file(reader),
            transcription=read_transcription(reader),
            metrics_port=metrics_port,
            media_engine=reader.choice("MEDIA_ENGINE", MediaEngine.LOOP),
            append_ms=read_append_ms(reader),
            workers=workers,
            worker_metrics_port=worker_metrics_port,
        )

    @classmethod
    def from_values(cls, values: Mapping[str, str | None], *, source: str | None = None) -> Settings:
        """Validate raw values (variable name -> text); unknown names are ignored (the .env holds other
        programs' settings too). Every problem is reported at once in a ``ConfigError``."""
        return validated(values, cls.read, source)
