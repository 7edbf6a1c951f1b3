"""Campaign requests from the web console: small JSON files in a spool directory that the dialer applies.

The console's user may read the dialer's database but never write it (a group-writable database would let a
bug or a break-in in the web console rewrite every customer's calls). So a pause or resume asked in the console
travels as a request file:

* the console writes ``<time>-<id>.json`` (action ``pause``/``resume``, campaign, user, request id, time) into
  the spool directory (``CAMPAIGN_REQUESTS_DIR``; the role makes it owned by the console's user, group the
  service group, mode 2770), first under a dot name and then renamed, so the dialer never reads half a file;
* ``openai-outbound-calls`` looks at the directory about once a second (``RequestSpool.process``, between two
  scheduling passes), opens each entry without following links (regular files of at most
  ``MAX_REQUEST_BYTES``, at most ``MAX_PER_ROUND`` a round, oldest first), checks it (a known action, a campaign
  that exists and that this box owns, a state that allows the action), applies it through the campaign store
  exactly as ``centralita campaign pause|resume`` do, records the result in the dialer's audit of campaign
  actions (``campaign_actions`` in dialer.db, with the console user's name) and deletes the file. A file it
  cannot read (not JSON, too big, a link, not a regular file) is deleted with a log line that says why: it can
  never become valid, and leaving it would fill the spool.

**Imports.** A CSV import asked in the console travels the same way: the request (action ``import``) carries
the uploaded file itself (base64, at most ``MAX_IMPORT_BYTES``), its name and its encoding. The console has
already read it with the importer (``read_csv_data``, the code ``centralita campaign import`` runs) and sends it
only when every row is good; the dialer reads it again, with its own settings (DIALER_COUNTRY_CODE, the date in
DIALER_TIMEZONE), and imports it only when every row is still good: ``ensure_campaign`` and ``upsert_targets``
(one transaction), as the command does. Otherwise nothing is imported and the refusal, with the rows' problems,
is recorded. The detail of an import's record is JSON (counts, warnings, problems), which the console words in
Spanish.

Nothing here trusts the file more than its content: the dialer acts only on the campaign and action named,
within what ``centralita campaign`` allows, and the console user's name is only recorded.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import re
import secrets
import sqlite3
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, Final

from centralita.dialer.importer import ImportFileError, read_csv_data
from centralita.dialer.store import CampaignError, CampaignStore, DialerStoreError

__all__ = [
    "ACTIONS",
    "DEFAULT_REQUESTS_DIR",
    "IMPORT_ENCODINGS",
    "MAX_IMPORT_BYTES",
    "MAX_LISTED",
    "MAX_PER_ROUND",
    "MAX_REQUEST_BYTES",
    "CampaignRequest",
    "RequestError",
    "RequestSpool",
    "pending_requests",
    "read_request",
    "write_request",
]

log = logging.getLogger(__name__)

DEFAULT_REQUESTS_DIR: Final = Path("/var/spool/centralita/campaign-requests")
ACTIONS: Final = ("pause", "resume", "import")
MAX_REQUEST_BYTES: Final = 4096
# An import's CSV (the file as uploaded); its request file holds it in base64, with the rest of the request.
MAX_IMPORT_BYTES: Final = 1024 * 1024
_MAX_IMPORT_REQUEST_BYTES: Final = (MAX_IMPORT_BYTES + 2) // 3 * 4 + MAX_REQUEST_BYTES
# The encodings an upload may be read in besides the default (UTF-8, or UTF-16 with a BOM): "" is the default.
IMPORT_ENCODINGS: Final = ("", "latin-1", "cp1252")
# Problems, warnings and duplicates kept in an import's record (each at most _ITEM_MAX characters).
MAX_LISTED: Final = 50
_ITEM_MAX: Final = 400
_FILE_NAME_MAX: Final = 200
_LOGGED_MAX: Final = 600  # of an action's detail in the log line (an import's problems are in campaign_actions)
MAX_PER_ROUND: Final = 20
SOURCE: Final = "console"
_NAME: Final = re.compile(r"[0-9]{20}-[0-9a-f]{16}\.json")
_REQUEST_ID: Final = re.compile(r"[0-9a-f]{16}")
_CAMPAIGN_MAX: Final = 200
_USER_MAX: Final = 64


class RequestError(ValueError):
    """A request file that cannot be read or is not a request; the message says which and why."""


@dataclass(frozen=True, slots=True)
class CampaignRequest:
    action: str
    campaign: str
    user: str
    request_id: str
    requested_at: datetime
    # An import's file: its name as uploaded, the encoding to read it in ("": UTF-8) and its content.
    file_name: str = ""
    encoding: str = ""
    data: bytes = field(default=b"", repr=False)

    def to_json(self) -> bytes:
        content: dict[str, Any] = {
            "action": self.action,
            "campaign": self.campaign,
            "user": self.user,
            "request_id": self.request_id,
            "requested_at": self.requested_at.astimezone(UTC).isoformat(timespec="milliseconds"),
        }
        if self.action == "import":
            content.update(
                file_name=self.file_name, encoding=self.encoding, csv=base64.b64encode(self.data).decode("ascii")
            )
        return json.dumps(content, ensure_ascii=False).encode()


def _text(data: dict[str, object], key: str, limit: int) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > limit or not value.isprintable():
        raise RequestError(f"its {key!r} is missing or not a printable text of at most {limit} characters")
    return value.strip()


def parse_request(data: bytes) -> CampaignRequest:
    """The request in ``data`` (a file's content), or RequestError naming what is wrong."""
    try:
        content = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise RequestError("it is not JSON in UTF-8") from None
    if not isinstance(content, dict):
        raise RequestError("it is not a JSON object")
    action = _text(content, "action", 16)
    if action not in ACTIONS:
        raise RequestError(f"its action {action!r} is not one of {', '.join(ACTIONS)}")
    request_id = _text(content, "request_id", 16)
    if not _REQUEST_ID.fullmatch(request_id):
        raise RequestError("its request_id is not 16 hexadecimal digits")
    try:
        requested_at = datetime.fromisoformat(_text(content, "requested_at", 40))
    except ValueError:
        raise RequestError("its requested_at is not an ISO-8601 time") from None
    if requested_at.tzinfo is None:
        raise RequestError("its requested_at has no time zone")
    request = CampaignRequest(
        action=action,
        campaign=_text(content, "campaign", _CAMPAIGN_MAX),
        user=_text(content, "user", _USER_MAX),
        request_id=request_id,
        requested_at=requested_at,
    )
    if action != "import":
        if len(data) > MAX_REQUEST_BYTES:
            raise RequestError(f"it is larger than {MAX_REQUEST_BYTES} bytes")
        return request
    return _import_request(request, content)


def _import_request(request: CampaignRequest, content: dict[str, Any]) -> CampaignRequest:
    """``request`` with the file an import request carries, or RequestError naming what is wrong with it."""
    encoding = content.get("encoding", "")
    if encoding not in IMPORT_ENCODINGS:
        raise RequestError(f"its encoding {encoding!r} is not one of {', '.join(map(repr, IMPORT_ENCODINGS))}")
    encoded = content.get("csv")
    if not isinstance(encoded, str):
        raise RequestError("its csv (the file, in base64) is missing")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError("its csv is not base64") from None
    if not data:
        raise RequestError("its csv is empty")
    if len(data) > MAX_IMPORT_BYTES:
        raise RequestError(f"its csv is larger than {MAX_IMPORT_BYTES} bytes")
    return CampaignRequest(
        action=request.action,
        campaign=request.campaign,
        user=request.user,
        request_id=request.request_id,
        requested_at=request.requested_at,
        file_name=_text(content, "file_name", _FILE_NAME_MAX),
        encoding=encoding,
        data=data,
    )


def write_request(
    directory: Path,
    action: str,
    campaign: str,
    user: str,
    now: datetime,
    *,
    data: bytes = b"",
    file_name: str = "",
    encoding: str = "",
) -> CampaignRequest:
    """Write a request into the spool ``directory`` atomically; the request. OSError when the directory cannot
    be written (its message names the path), ValueError for an action or name the dialer would refuse. An
    ``import`` carries the file: its content ``data``, its ``file_name`` and ``encoding`` ("": UTF-8)."""
    if action not in ACTIONS:
        raise ValueError(f"{action!r} is not a campaign action: use one of {', '.join(ACTIONS)}")
    request = CampaignRequest(
        action=action,
        campaign=campaign,
        user=user,
        request_id=secrets.token_hex(8),
        requested_at=now,
        file_name=file_name,
        encoding=encoding,
        data=data,
    )
    data = request.to_json()
    parse_request(data)  # what the dialer would refuse is refused here (RequestError), where the user sees why
    stamp = f"{int(now.timestamp() * 1_000_000):020d}"
    final = directory / f"{stamp}-{request.request_id}.json"
    temporary = directory / f".{final.name}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(temporary, final)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    return request


def _entries(directory: Path) -> list[str]:
    """The names of the finished request files (never the dot names being written), oldest first."""
    return sorted(name for name in os.listdir(directory) if not name.startswith("."))


def read_request(directory_fd: int, name: str) -> CampaignRequest:
    """Open ``name`` in the directory ``directory_fd`` safely and parse it; RequestError says why not."""
    if not _NAME.fullmatch(name):
        raise RequestError("its name is not <time>-<id>.json as the console writes it")
    try:
        descriptor = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=directory_fd)
    except OSError as error:
        raise RequestError(f"it cannot be opened ({error.strerror}; a symbolic link is never followed)") from None
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise RequestError("it is not a regular file")
        data = handle.read(_MAX_IMPORT_REQUEST_BYTES + 1)
    if len(data) > _MAX_IMPORT_REQUEST_BYTES:
        raise RequestError(f"it is larger than {_MAX_IMPORT_REQUEST_BYTES} bytes")
    return parse_request(data)  # a pause or resume larger than MAX_REQUEST_BYTES is refused there


def pending_requests(directory: Path) -> list[CampaignRequest]:
    """The requests waiting in ``directory``, oldest first (for the console; unreadable entries are left out)."""
    try:
        names = _entries(directory)
        directory_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return []
    found = []
    try:
        for name in names[: MAX_PER_ROUND * 5]:
            with contextlib.suppress(RequestError):
                found.append(read_request(directory_fd, name))
    finally:
        os.close(directory_fd)
    return found


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the dialer did with one request: ``result`` applied, unchanged or refused, and why."""

    request: CampaignRequest
    result: str
    detail: str


class RequestSpool:
    """The dialer's side of the spool: ``process()`` applies what is waiting (call it about once a second).

    ``owns`` says whether this box dials a campaign (``DialerSettings.owns``). Imports read national phone
    numbers in ``region`` (from DIALER_COUNTRY_CODE) and refuse due dates after today in ``timezone``
    (DIALER_TIMEZONE), as ``centralita campaign import`` does.
    """

    def __init__(
        self,
        directory: Path,
        store: CampaignStore,
        owns: Callable[[str], bool],
        *,
        region: str | None = None,
        timezone: tzinfo = UTC,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._directory = directory
        self._store = store
        self._owns = owns
        self._region = region
        self._timezone = timezone
        self._clock = clock
        self._missing_logged = False
        # Requests applied (or refused) whose file could not be deleted: never applied twice, until they go.
        self._undeletable: set[str] = set()

    def process(self, limit: int = MAX_PER_ROUND) -> list[Outcome]:
        """Apply up to ``limit`` waiting requests, oldest first; what became of each readable one."""
        try:
            names = _entries(self._directory)
            directory_fd = os.open(self._directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as error:
            if not self._missing_logged:
                log.warning(
                    "campaign requests: spool %s cannot be read (%s): pause and resume from the web console wait "
                    "until it can; the role creates it (bridge_campaign_requests_dir)",
                    self._directory,
                    error.strerror,
                )
                self._missing_logged = True
            return []
        self._missing_logged = False
        self._undeletable &= set(names)
        outcomes = []
        try:
            for name in [name for name in names if name not in self._undeletable][:limit]:
                try:
                    request = read_request(directory_fd, name)
                except RequestError as problem:
                    log.warning("campaign request %s/%s deleted unread: %s", self._directory, ascii(name[:80]), problem)
                    self._remove(directory_fd, name)
                    continue
                try:
                    outcome = self._apply(request)
                except (DialerStoreError, sqlite3.Error) as error:
                    # A locked or failing database: the request stays and the next round tries again.
                    log.error("campaign request %s not applied yet, the dialer database failed: %s", name, error)
                    break
                # The result is in the audit before the file goes: a crash between the two applies it again,
                # which changes nothing (pause and resume are idempotent) and is recorded as unchanged.
                self._remove(directory_fd, name)
                outcomes.append(outcome)
        finally:
            os.close(directory_fd)
        return outcomes

    def _remove(self, directory_fd: int, name: str) -> None:
        try:
            os.unlink(name, dir_fd=directory_fd)
        except FileNotFoundError:
            pass
        except OSError as error:
            self._undeletable.add(name)
            log.error(
                "campaign request %s/%s cannot be deleted (%s): the dialer's user needs write access to the spool "
                "(the service group, mode 2770; run site.yml to restore it, then restart openai-outbound-calls); "
                "it is not applied again",
                self._directory,
                name,
                error.strerror,
            )

    def _apply(self, request: CampaignRequest) -> Outcome:
        who = f"console user {request.user}"
        if not self._owns(request.campaign):
            result, detail = "refused", "the campaign is not one of this box's (DIALER_CAMPAIGNS)"
            if request.action == "import":  # an import's detail is always JSON
                detail = _json({"error": detail})
        else:
            try:
                if request.action == "import":
                    result, detail = self._import(request)
                else:
                    if request.action == "pause":
                        _, changed = self._store.pause_campaign(request.campaign)
                    else:
                        _, changed = self._store.start_campaign(request.campaign)
                    result, detail = ("applied", "") if changed else ("unchanged", "it already was")
            except CampaignError as problem:
                result, detail = (
                    "refused",
                    _json({"error": str(problem)}) if request.action == "import" else str(problem),
                )
        self._store.record_action(
            campaign=request.campaign,
            action=request.action,
            user=request.user,
            source=SOURCE,
            result=result,
            detail=detail,
            request_id=request.request_id,
        )
        line = "campaign request %s from %s: %s campaign %s: %s%s"
        if request.action == "import":
            who = f"{who}, file {request.file_name!r} ({len(request.data)} bytes)"
        shown = detail if len(detail) <= _LOGGED_MAX else f"{detail[:_LOGGED_MAX]}... (in campaign_actions)"
        args = (request.request_id, who, request.action, request.campaign, result, f" ({shown})" if shown else "")
        if result == "refused":
            log.warning(line, *args)
        else:
            log.info(line, *args)
        return Outcome(request=request, result=result, detail=detail)

    def _import(self, request: CampaignRequest) -> tuple[str, str]:
        """Read the request's CSV again, with this box's settings, and import it only if every row is good: the
        result and the record's detail (JSON). CampaignError (a finished campaign, a bad name) propagates."""
        today = self._clock().astimezone(self._timezone).date()
        try:
            rows = read_csv_data(
                request.data,
                Path(request.file_name),
                region=self._region,
                today=today,
                encoding=request.encoding or None,
            )
        except ImportFileError as problem:
            return "refused", _json({"error": str(problem)})
        if rows.problems:
            return "refused", _json(
                {
                    "rows": len(rows.rows),
                    "problem_count": len(rows.problems),
                    "problems": _listed(rows.problems),
                    "warnings": _listed(rows.warnings),
                }
            )
        self._store.ensure_campaign(request.campaign)
        summary = self._store.upsert_targets(request.campaign, rows.rows)
        return "applied", _json(
            {
                "rows": len(rows.rows),
                "added": summary.added,
                "updated": summary.updated,
                "unchanged": summary.unchanged,
                "reopened": summary.reopened,
                "opted_out": summary.opted_out,
                "warning_count": len(rows.warnings) + len(summary.duplicates),
                "warnings": _listed([*rows.warnings, *summary.duplicates]),
            }
        )


def _listed(items: Sequence[object]) -> list[str]:
    return [str(item)[:_ITEM_MAX] for item in items[:MAX_LISTED]]


def _json(detail: dict[str, Any]) -> str:
    return json.dumps(detail, ensure_ascii=False)
