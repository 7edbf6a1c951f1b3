"""Logging for the people who read it at 3 a.m.: one line per event, every line tagged with its call.

``setup_logging`` sends every record to two places:

* the log file (``LOG_FILE``, by default ``/var/log/asterisk/inbound_openai.log``), with a timestamp::

      2026-11-25 14:03:07,123 INFO call=1732543387.12 Iniciando conexión WebSocket con OpenAI ...

  It is written through a ``WatchedFileHandler``, which reopens the file when logrotate has moved it away,
  so no ``copytruncate`` and no signal to the bridge are needed. A file that cannot be written (a full disk, a
  read-only filesystem) costs one WARNING in the journal, not a traceback per line, and never an error in the
  code that logged; the file says how many lines it missed once it can be written again;
* the stream (stderr by default), which systemd hands to the journal (``journalctl -u openai-inbound-calls``).
  Journald stamps each line itself, so these lines carry no timestamp::

      INFO call=1732543387.12 Iniciando conexión WebSocket con OpenAI ...

With several worker processes (``WORKERS``) each line carries its worker before the call
(``INFO worker=centralita-2 call=...``); they append to the same file, one write per line.

``call=<id>`` is always there, ``call=-`` outside a call, so ``grep 'call=1732543387.12'`` gives the whole
story of one call. A line gets its id from, in order: the ``call_id`` of a ``call_logger`` adapter (or
any ``extra={"call_id": ...}``), then the ``call_context`` active in the current thread or task, then ``-``.
Calls on different threads never see each other's id: the context lives in a ``ContextVar``.

Secrets never reach either place: a ``RedactingFilter`` on both handlers replaces, in the final message and
in tracebacks, the secrets given to ``setup_logging`` (the OpenAI key, the ARI password) and anything
shaped like one: ``sk-...`` API keys, ``Bearer <token>``, ``Authorization: Basic <credentials>``, the
``api_key=`` of ARI's WebSocket URL and the password in ``scheme://user:password@host``. The library
loggers matter here: websockets, at DEBUG, logs the request headers, Authorization included.

Lifecycle events, logged at INFO unless noted, in the order of a call (``Event`` holds the exact texts, and
the code logs through it; grep for them)::

    ARI connected                             the service's Stasis app is registered: calls can come in
    ARI disconnected                          WARNING: Asterisk restarting or unreachable; reconnecting
    reconciled                                after a (re)connection: what Asterisk still had that no call of
                                              this process held, and what was done with it (counts follow)
    recovered call                            WARNING: a caller left on the line by a previous run (a crash)
                                              or a call whose channel vanished unseen, and what became of it
    outbound call                             a customer the dialer called answered (attempt, campaign follow)
    call refused                              WARNING: over a limit (box full, caller busy or calling too
                                              often, budget spent): sent to the failover context (reason follows)
    call started                              a call reached the bridge (caller and DID, or the number called
                                              and the campaign, follow)
    ringing                                   the caller hears ringback while the Realtime session opens
    Iniciando conexión WebSocket con OpenAI   connecting to the Realtime API (URL follows)
    session.update sent                       the session settings went to OpenAI
    session.updated received                  OpenAI accepted them: the assistant is live
    ARI answered                              Asterisk answered the channel (only once the session is live)
    call setup failed                         ERROR: the channel, bridge or media could not be set up
    media ready                               the call's RTP socket and Asterisk's ExternalMedia are bridged
    barge-in                                  the caller spoke over the assistant (audio dropped follows)
    watchdog                                  WARNING: a call waited too long for something (which, and what
                                              was done: filler, warning, operator, hang-up)
    transferring to operator                  the call is going to a human (context follows)
    transfer failed                           ERROR: Asterisk refused the transfer; the call is hung up
    Realtime error                            WARNING/ERROR: the Realtime API failed or sent an error
    call ended                                the call is over (outcome follows)

The records writer logs ``records failing``, ``records lost`` and ``records resumed`` (the database, not a call),
the budget ``budget spent`` and ``budget available again``.

For example ``grep -E 'Realtime error|transferring to operator|watchdog' /var/log/asterisk/inbound_openai.log``.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from contextvars import ContextVar
from enum import StrEnum
from logging.handlers import WatchedFileHandler
from pathlib import Path
from typing import Any, Final, TextIO

__all__ = [
    "FILE_FORMAT",
    "STREAM_FORMAT",
    "Event",
    "LoggingSetupError",
    "RedactingFilter",
    "call_context",
    "call_logger",
    "setup_logging",
    "teardown_logging",
]

FILE_FORMAT: Final = "%(asctime)s %(levelname)s call=%(call_id)s %(message)s"
STREAM_FORMAT: Final = "%(levelname)s call=%(call_id)s %(message)s"
NO_CALL: Final = "-"
MASK: Final = "***"

# The names of the handlers setup_logging installs: how a second call finds (and replaces) them.
_FILE_HANDLER: Final = "centralita.file"
_STREAM_HANDLER: Final = "centralita.stream"

# The call of the current thread or asyncio task. A ContextVar holds one value per context, so it is not
# state shared between calls: each thread starts with the default.
_current_call: ContextVar[str] = ContextVar("centralita_call_id", default=NO_CALL)


class Event(StrEnum):
    """The lifecycle events the bridge logs, exactly as they appear at the start of the message.

    Operators and tests grep for these words: log them as ``log.info("%s: ...", Event.CALL_STARTED, ...)``,
    never retyped, and never change a value.
    """

    ARI_CONNECTED = "ARI connected"
    ARI_DISCONNECTED = "ARI disconnected"
    RECONCILED = "reconciled"
    RECOVERED = "recovered call"
    OUTBOUND_CALL = "outbound call"
    CALL_REFUSED = "call refused"
    CALL_STARTED = "call started"
    RINGING = "ringing"
    ARI_ANSWERED = "ARI answered"
    SETUP_FAILED = "call setup failed"
    MEDIA_READY = "media ready"
    CONNECTING = "Iniciando conexión WebSocket con OpenAI"
    SESSION_UPDATE_SENT = "session.update sent"
    SESSION_UPDATED = "session.updated received"
    BARGE_IN = "barge-in"
    WATCHDOG = "watchdog"
    TRANSFERRING = "transferring to operator"
    TRANSFER_FAILED = "transfer failed"
    REALTIME_ERROR = "Realtime error"
    CALL_ENDED = "call ended"


class LoggingSetupError(OSError):
    """The log file cannot be written; the message names the path and the fix. (A bad level is a ValueError.)"""


# Secret-shaped text: (pattern, replacement). Each keeps what tells the reader *what* was hidden.
_SHAPES: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    # Authorization: Basic <base64>, also as a dict repr ('Authorization': 'Basic ...').
    (re.compile(r"(authorization['\"]?\s*[:=]\s*['\"]?\s*basic\s+)[A-Za-z0-9+/=._~-]+", re.IGNORECASE), r"\1***"),
    # Bearer tokens (RFC 6750 token characters).
    (re.compile(r"(\bbearer\s+)[A-Za-z0-9+/=._~-]+", re.IGNORECASE), r"\1***"),
    # OpenAI keys: sk-..., sk-proj-..., sk-svcacct-...
    (re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_-]{8,}"), MASK),
    # ARI's WebSocket URL carries user:password in api_key.
    (re.compile(r"(\bapi_key=)[^&\s'\"]+", re.IGNORECASE), r"\1***"),
    # scheme://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@/\s]+(@)", re.IGNORECASE), r"\1***\2"),
)


class RedactingFilter(logging.Filter):
    """Replaces secrets in a record's final message (and traceback) with ``***``; it never drops a record.

    It rewrites the record in place (``msg`` becomes the formatted, redacted message and ``args`` empty),
    so every handler after it sees the redacted text.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Empty or blank "secrets" would match everywhere; the longest first, so one containing another
        # is hidden whole.
        wanted = sorted({secret for secret in secrets if secret.strip()}, key=len, reverse=True)
        self._secrets: re.Pattern[str] | None = (
            re.compile("|".join(re.escape(secret) for secret in wanted)) if wanted else None
        )

    def redact(self, text: str) -> str:
        """``text`` with every configured secret and secret-shaped string replaced."""
        if self._secrets is not None:
            text = self._secrets.sub(MASK, text)
        for pattern, replacement in _SHAPES:
            text = pattern.sub(replacement, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            # handleError would print msg and args raw: show neither.
            message = f"{record.msg!s} (the arguments of this message could not be formatted)"
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


class _CallIdFilter(logging.Filter):
    """Gives every record a ``call_id``: its own (from ``extra``), else the context's, else ``-``."""

    def filter(self, record: logging.LogRecord) -> bool:
        call_id = getattr(record, "call_id", None)
        record.call_id = str(call_id) if call_id else _current_call.get()
        return True


class _CallAdapter(logging.LoggerAdapter[logging.Logger]):
    """Adds the call's id to every record, keeping any other ``extra`` the caller passes."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


def _check_call_id(call_id: str) -> str:
    call_id = str(call_id)
    if not call_id or any(character.isspace() for character in call_id):
        raise ValueError(f"a call id must be non-empty and without spaces (it is grepped as call=<id>): {call_id!r}")
    return call_id


def call_logger(call_id: str, logger: logging.Logger | str | None = None) -> logging.LoggerAdapter[logging.Logger]:
    """A logger whose every line carries ``call=<call_id>``; ``logger`` defaults to ``centralita.calls.call``."""
    if not isinstance(logger, logging.Logger):
        logger = logging.getLogger(logger or "centralita.calls.call")
    extra: Mapping[str, object] = {"call_id": _check_call_id(call_id)}
    return _CallAdapter(logger, extra)


@contextlib.contextmanager
def call_context(call_id: str) -> Iterator[None]:
    """Tag every line logged in this thread (or task) with ``call_id`` while the block runs, any logger."""
    token = _current_call.set(_check_call_id(call_id))
    try:
        yield
    finally:
        _current_call.reset(token)


def _level(level: str) -> int:
    names = logging.getLevelNamesMapping()
    number = names.get(str(level).strip().upper())
    if number is None:
        choices = ", ".join(("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
        raise ValueError(f"Unknown log level {level!r}: use one of {choices}.")
    return number


class _LogFileHandler(WatchedFileHandler):
    """The log file's handler: a ``WatchedFileHandler`` (reopened after logrotate) that a file it cannot write does
    not turn into a journal flood or an exception in the code that logged.

    A full disk, a read-only remount or a directory replaced under it make a write, a flush or the reopening fail
    with an ``OSError``. The standard handler prints a traceback for every line (a dozen journal lines each) and
    lets an error while reopening reach the caller. Here the stream is dropped (and with it any half-written
    buffer), ``notice`` (the journal's handler) gets one WARNING naming the file and the reason, the lines the
    file misses are counted, and each following line tries the file again. The first that reaches it is preceded,
    in the file and in the journal, by a line saying how many lines since when are in the journal only.
    """

    def __init__(self, log_file: Path, notice: Callable[[logging.LogRecord], object] | None = None) -> None:
        super().__init__(log_file, encoding="utf-8")
        self.notice = notice
        self.missed = 0
        self.failing_since: float | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        again = self._written_again() if self.failing_since is not None else None
        try:
            self.reopenIfNeeded()
            if self.stream is None:
                self.stream = self._open()
                self._statstream()
            if again is not None:
                self.stream.write(self.format(again) + self.terminator)
            self.stream.write(line)
            self.stream.flush()
        except OSError as error:
            self._drop_stream()
            self._failed(error)
            return
        if again is not None:
            self.missed, self.failing_since = 0, None
            if self.notice is not None:
                self.notice(again)

    def _drop_stream(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            # Closing flushes what the failed write left in the buffer, fails again, and closes the file anyway.
            with contextlib.suppress(OSError, ValueError):
                stream.close()

    def _failed(self, error: OSError) -> None:
        self.missed += 1
        if self.failing_since is not None:
            return
        self.failing_since = time.time()
        reason = error.strerror or str(error)
        warning = self._record(
            f"log file {self.baseFilename} cannot be written ({reason}): its lines go to the journal only until "
            "it can be written again; free space on its filesystem or fix its owner and mode"
        )
        if self.notice is not None:
            self.notice(warning)

    def _written_again(self) -> logging.LogRecord:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.failing_since))
        return self._record(
            f"log file {self.baseFilename} written again: the {self.missed} lines logged since {since} are in the "
            "journal only"
        )

    @staticmethod
    def _record(text: str) -> logging.LogRecord:
        record = logging.LogRecord(__name__, logging.WARNING, __file__, 0, text, None, None)
        record.call_id = NO_CALL
        return record


def _file_handler(log_file: Path) -> _LogFileHandler:
    fix = (
        f"make {log_file.parent} writable by the user running the bridge (e.g. install -d -o asterisk -g asterisk "
        f"{log_file.parent}; chown asterisk: {log_file} if it exists) or set LOG_FILE to a writable path."
    )
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise LoggingSetupError(
            f"Cannot create the directory {log_file.parent} for the log file {log_file} ({error.strerror}): {fix}"
        ) from error
    try:
        return _LogFileHandler(log_file)
    except OSError as error:
        raise LoggingSetupError(f"Cannot write the log file {log_file} ({error.strerror}): {fix}") from error


def _with_worker(line_format: str, worker: str | None) -> str:
    if worker is None:
        return line_format
    if not worker or any(character.isspace() or character == "%" for character in worker):
        raise ValueError(f"a worker's name must be non-empty, without spaces or %: {worker!r}")
    return line_format.replace(" call=", f" worker={worker} call=", 1)


def _ours(handler: logging.Handler) -> bool:
    return handler.get_name() in (_FILE_HANDLER, _STREAM_HANDLER)


def setup_logging(
    log_file: Path | None,
    level: str = "INFO",
    stream: TextIO | None = None,
    secrets: Iterable[str] = (),
    worker: str | None = None,
) -> None:
    """Configure the root logger: ``log_file`` (if any) with timestamps, ``stream`` (default: the current
    ``sys.stderr``, i.e. the journal under systemd) without.

    Calling it again replaces the handlers of the previous call, so handlers never pile up; handlers that
    something else added to the root logger are left alone. Nothing changes if the new ones cannot be built:
    an unwritable log file raises LoggingSetupError (an OSError), a bad level ValueError.

    ``worker``: the name of the worker process (``WORKERS`` above 1; ``calls/workers.py``), written in every line
    before the call (``worker=centralita-2 call=...``); the workers share one log file.
    """
    number = _level(level)
    handlers: list[logging.Handler] = []
    if log_file is not None:
        file_handler = _file_handler(Path(log_file))
        file_handler.set_name(_FILE_HANDLER)
        file_handler.setFormatter(logging.Formatter(_with_worker(FILE_FORMAT, worker)))
        handlers.append(file_handler)
    stream_handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    stream_handler.set_name(_STREAM_HANDLER)
    stream_handler.setFormatter(logging.Formatter(_with_worker(STREAM_FORMAT, worker)))
    handlers.append(stream_handler)
    if log_file is not None:
        file_handler.notice = stream_handler.handle  # the journal hears when the file cannot be written

    redacting = RedactingFilter(secrets)
    call_ids = _CallIdFilter()
    for handler in handlers:
        handler.addFilter(call_ids)
        handler.addFilter(redacting)

    root = logging.getLogger()
    teardown_logging()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(number)


def teardown_logging() -> None:
    """Remove and close the handlers ``setup_logging`` installed (the root logger's level is kept)."""
    root = logging.getLogger()
    for handler in [handler for handler in root.handlers if _ours(handler)]:
        root.removeHandler(handler)
        handler.close()
