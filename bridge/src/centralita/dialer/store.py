"""Campaign state in SQLite: campaigns, targets (customers to call), attempts with leases, outcomes, opt-outs.

The file (``DIALER_DB_PATH``, by default ``/var/lib/centralita/dialer.db``) is its own database, apart from the
call records, so each has its own schema version. Like the call records it is opened in WAL mode with a busy
timeout (the dialer, the bridge's tools and the ``centralita campaign`` command all use it at once), its
schema lives in ``PRAGMA user_version`` with one migration per version, and its directory must already exist.

**Attempts and leases: the rule that nobody is dialled twice.** An attempt row is written, in the same
``BEGIN IMMEDIATE`` transaction that checks the calling rules, *before* the call is placed. It carries the ARI
channel id the call will have (``centralita-out-<attempt>-<random>``), the dialer that owns it and a lease
that the owner renews while it follows the call. So whatever moment the dialer is killed at, the attempt is
already on disk, and:

* a target with an open attempt (of the same customer or the same number, in any campaign) is never leased;
* an open attempt whose lease has expired is resolved by asking Asterisk whether its channel exists: if it
  does, the call is still up and a dialer adopts it (takes the lease) and follows it to its end; if it does
  not, the attempt is closed as ``unknown`` and counts as a dial. The calling rules then allow no other
  call to that customer the same local day, so an attempt that may or may not have rung is never repeated
  blindly. While Asterisk cannot be asked, the attempt stays open and the customer is not called;
* the channel id is unique: if the originate request itself is ever sent twice, Asterisk refuses the second
  with 409 and no second call rings.

An outcome given by the assistant (promise to pay, dispute, wrong number, opt-out) is kept when the call
ends: the network's view (answered, busy, ...) only fills an attempt that has none.

**Phone numbers are E.164**, as ``centralita.isp.phones`` writes them (``+525550001111``), in every table: the
store normalises what it is given (a number without ``+`` is refused) and compares numbers as text, so an
opt-out stops the number whatever format it was written in. Schema version 2 rewrote the numbers stored by
version 1 the same way (``+52 1`` mobile numbers became ``+52``). **One number is one target per campaign**:
a customer is not added (or moved) to a number another pending customer of the campaign already has; the
customer already in the campaign keeps it, and ``UpsertSummary.duplicates`` says so.

Timestamps are ISO-8601 UTC with milliseconds (``2026-03-02T15:04:05.123+00:00``), which sort as text.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from centralita.dialer.outcomes import Outcome
from centralita.dialer.policy import PastAttempt, Reason, Verdict
from centralita.isp.phones import PhoneError, e164_or_none, to_e164
from centralita.storage.sqlite import SharedDatabase, open_database, row_dict

__all__ = [
    "SCHEMA_VERSION",
    "AttemptState",
    "CallInfo",
    "Campaign",
    "CampaignError",
    "CampaignState",
    "CampaignStatus",
    "CampaignStore",
    "Candidate",
    "DialerCounts",
    "DialerStoreError",
    "Lease",
    "OpenAttempt",
    "TargetData",
    "TargetStatus",
    "UnknownAttemptError",
    "UpsertSummary",
    "check_campaign_name",
]

BUSY_TIMEOUT_MS: Final = 5000
_BATCH: Final = 50
_ROUNDS: Final = 20
_RECHECK_OPEN: Final = timedelta(minutes=1)
_RECHECK_NO_WINDOW: Final = timedelta(days=1)
_ANSWERED: Final = frozenset({Outcome.ANSWERED_HUMAN, Outcome.ANSWERED_MACHINE})


class CampaignState(StrEnum):
    DRAFT = "draft"  # importing; nobody is called
    RUNNING = "running"
    PAUSED = "paused"  # no new calls; calls in progress finish
    FINISHED = "finished"  # nobody left to call; final


class TargetStatus(StrEnum):
    PENDING = "pending"  # to be called when the rules allow
    CLOSED = "closed"  # a final outcome: dispute or wrong number
    OPTED_OUT = "opted_out"
    EXHAUSTED = "exhausted"  # DIALER_MAX_ATTEMPTS reached
    REMOVED = "removed"  # left out of a later import with --remove-missing (e.g. paid)


class AttemptState(StrEnum):
    LEASED = "leased"  # written, originate not confirmed yet
    DIALING = "dialing"  # Asterisk accepted the originate
    ANSWERED = "answered"
    ENDED = "ended"


class DialerStoreError(OSError):
    """The campaign database cannot be opened or used; the message names the path and the fix."""


class CampaignError(ValueError):
    """A campaign that does not exist, or a state change it does not allow."""


class UnknownAttemptError(LookupError):
    """No attempt has that id or channel id."""


def _migrate_to_1(db: sqlite3.Connection) -> None:
    states = ", ".join(f"'{state}'" for state in CampaignState)
    statuses = ", ".join(f"'{status}'" for status in TargetStatus)
    attempt_states = ", ".join(f"'{state}'" for state in AttemptState)
    outcomes = ", ".join(f"'{outcome}'" for outcome in Outcome)
    db.execute(
        f"""
        CREATE TABLE campaigns (
            id         INTEGER PRIMARY KEY,
            name       TEXT NOT NULL UNIQUE,
            state      TEXT NOT NULL CHECK (state IN ({states})),
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )
        """
    )
    db.execute(
        f"""
        CREATE TABLE targets (
            id           INTEGER PRIMARY KEY,
            campaign_id  INTEGER NOT NULL REFERENCES campaigns (id),
            customer_id  TEXT NOT NULL,
            name         TEXT NOT NULL,
            phone        TEXT NOT NULL,
            amount_due   TEXT,
            due_date     TEXT,
            router_user  TEXT,
            timezone     TEXT,
            source       TEXT NOT NULL,
            status       TEXT NOT NULL CHECK (status IN ({statuses})),
            result       TEXT CHECK (result IS NULL OR result IN ({outcomes})),
            promise_date TEXT,
            next_at      TEXT,
            wait_reason  TEXT,
            created_at   TEXT NOT NULL,
            updated_at   TEXT NOT NULL,
            UNIQUE (campaign_id, customer_id)
        )
        """
    )
    db.execute("CREATE INDEX targets_due ON targets (status, next_at)")
    db.execute("CREATE INDEX targets_phone ON targets (phone)")
    db.execute("CREATE INDEX targets_customer ON targets (customer_id)")
    db.execute(
        f"""
        CREATE TABLE attempts (
            id           INTEGER PRIMARY KEY,
            target_id    INTEGER NOT NULL REFERENCES targets (id),
            phone        TEXT NOT NULL,
            channel_id   TEXT NOT NULL UNIQUE,
            state        TEXT NOT NULL CHECK (state IN ({attempt_states})),
            lease_owner  TEXT,
            lease_until  TEXT,
            created_at   TEXT NOT NULL,
            dialed_at    TEXT,
            answered_at  TEXT,
            ended_at     TEXT,
            outcome      TEXT CHECK (outcome IS NULL OR outcome IN ({outcomes})),
            counted      INTEGER NOT NULL DEFAULT 1 CHECK (counted IN (0, 1)),
            hangup_cause INTEGER,
            amd_status   TEXT,
            promise_date TEXT,
            detail       TEXT
        )
        """
    )
    db.execute("CREATE INDEX attempts_target ON attempts (target_id)")
    db.execute("CREATE INDEX attempts_phone ON attempts (phone)")
    db.execute("CREATE INDEX attempts_created ON attempts (created_at)")
    db.execute("CREATE INDEX attempts_open ON attempts (state) WHERE state != 'ended'")
    db.execute(
        f"""
        CREATE TABLE outcomes (
            id           INTEGER PRIMARY KEY,
            attempt_id   INTEGER NOT NULL REFERENCES attempts (id),
            at           TEXT NOT NULL,
            outcome      TEXT NOT NULL CHECK (outcome IN ({outcomes})),
            source       TEXT NOT NULL CHECK (source IN ('asterisk', 'assistant', 'recovery', 'dialer')),
            promise_date TEXT,
            detail       TEXT
        )
        """
    )
    db.execute("CREATE INDEX outcomes_attempt ON outcomes (attempt_id)")
    db.execute(
        """
        CREATE TABLE optouts (
            phone  TEXT PRIMARY KEY,
            at     TEXT NOT NULL,
            source TEXT NOT NULL,
            note   TEXT
        )
        """
    )


def _migrate_to_2(db: sqlite3.Connection) -> None:
    """Phone numbers in libphonenumber's E.164 (``+5215550001111`` -> ``+525550001111``), so that equal numbers
    are equal text. A number that cannot be read is left as it was; two opt-outs that become one keep the first."""
    for table in ("targets", "attempts"):
        for row_id, phone in db.execute(f"SELECT id, phone FROM {table}").fetchall():
            canonical = e164_or_none(phone)
            if canonical is not None and canonical != phone:
                db.execute(f"UPDATE {table} SET phone = ? WHERE id = ?", (canonical, row_id))
    for phone, at, source, note in db.execute("SELECT phone, at, source, note FROM optouts ORDER BY at").fetchall():
        canonical = e164_or_none(phone)
        if canonical is None or canonical == phone:
            continue
        db.execute("DELETE FROM optouts WHERE phone = ?", (phone,))
        kept = db.execute("SELECT at FROM optouts WHERE phone = ?", (canonical,)).fetchone()
        if kept is None:
            db.execute(
                "INSERT INTO optouts (phone, at, source, note) VALUES (?, ?, ?, ?)", (canonical, at, source, note)
            )
        elif at < kept[0]:
            db.execute("UPDATE optouts SET at = ?, source = ?, note = ? WHERE phone = ?", (at, source, note, canonical))


def _migrate_to_3(db: sqlite3.Connection) -> None:
    """The dialer's audit log of campaign actions: who paused or resumed what, from where, and the result."""
    db.execute(
        """
        CREATE TABLE campaign_actions (
            id         INTEGER PRIMARY KEY,
            at         TEXT NOT NULL,
            campaign   TEXT NOT NULL,
            action     TEXT NOT NULL,
            user       TEXT NOT NULL,
            source     TEXT NOT NULL,
            request_id TEXT NOT NULL DEFAULT '',
            result     TEXT NOT NULL,
            detail     TEXT NOT NULL DEFAULT ''
        )
        """
    )
    db.execute("CREATE INDEX campaign_actions_request_id ON campaign_actions (request_id)")


# _MIGRATIONS[n] upgrades user_version n to n + 1. Append only; never edit a released step.
_MIGRATIONS: Final[tuple[Callable[[sqlite3.Connection], None], ...]] = (_migrate_to_1, _migrate_to_2, _migrate_to_3)
SCHEMA_VERSION: Final = len(_MIGRATIONS)


# ---- values ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Campaign:
    id: int
    name: str
    state: CampaignState
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class TargetData:
    """One customer to call, as an import gives it (``phone`` in E.164, as ``centralita.isp.phones`` writes it)."""

    customer_id: str
    name: str
    phone: str
    amount_due: Decimal | None
    due_date: date | None
    router_user: str | None
    timezone: str | None
    source: str


@dataclass(frozen=True, slots=True)
class UpsertSummary:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    reopened: int = 0
    removed: int = 0
    opted_out: int = 0  # added or updated, but their number is on the opt-out list
    # Rows not applied because another pending customer of the campaign has their number: "<source>: why".
    duplicates: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Candidate:
    """A target the dialer could call now, with what the calling rules need to decide."""

    target_id: int
    campaign: str
    customer_id: str
    name: str
    phone: str
    timezone: str | None
    promise_date: date | None
    history: tuple[PastAttempt, ...]
    attempts_in_campaign: int
    opted_out: bool


@dataclass(frozen=True, slots=True)
class Lease:
    """An attempt written and leased: the call to place now."""

    attempt_id: int
    channel_id: str
    target_id: int
    campaign: str
    customer_id: str
    phone: str
    lease_until: datetime


@dataclass(frozen=True, slots=True)
class OpenAttempt:
    attempt_id: int
    channel_id: str
    state: AttemptState
    lease_owner: str | None
    lease_until: datetime | None
    phone: str
    campaign: str
    customer_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class CallInfo:
    """What the media side of an outbound call may tell the assistant (as data, never as instructions)."""

    attempt_id: int
    channel_id: str
    campaign: str
    customer_id: str
    name: str
    phone: str
    amount_due: Decimal | None
    due_date: date | None
    router_user: str | None
    outcome: Outcome | None
    ended: bool


@dataclass(frozen=True, slots=True)
class CampaignStatus:
    campaign: Campaign
    targets: dict[str, int]  # by TargetStatus
    results: dict[str, int]  # last outcome per target
    waiting: dict[str, int]  # pending targets by the rule that holds them back
    attempts: int
    open_attempts: int
    next_at: datetime | None  # the earliest moment a pending target may be called


@dataclass(frozen=True, slots=True)
class DialerCounts:
    """The whole database's figures: campaigns by state, ended attempts by outcome (every value present)."""

    campaigns: dict[CampaignState, int]
    attempts: dict[Outcome, int]
    open_attempts: int  # placed or being placed, not ended yet (every dialer's)
    optouts: int  # numbers on the do-not-call list


# ---- helpers ---------------------------------------------------------------------------------------------


def _ts(moment: datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"timestamps must be timezone-aware, got {moment.isoformat()}")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _day(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


def _amount(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(Decimal("0.01")))


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _e164(phone: str) -> str:
    """``phone`` as the store keeps it; ValueError for a number without its country code, or not one at all."""
    try:
        return to_e164(phone)
    except PhoneError as error:
        raise ValueError(f"the dialer stores international numbers only: {error}") from None


def _canonical(row: TargetData) -> TargetData:
    try:
        number = _e164(row.phone)
    except ValueError as error:
        raise ValueError(f"{row.source}: {error}") from None
    return row if number == row.phone else replace(row, phone=number)


@dataclass(frozen=True, slots=True)
class _Duplicate:
    """An import row whose number another pending customer of the campaign already has."""

    holder: str
    source: str


def _connect(path: Path) -> sqlite3.Connection:
    return open_database(
        path,
        what="dialer database",
        setting="DIALER_DB_PATH",
        user="the dialer",
        when_damaged="a new one is created, without the campaigns",
        when_newer="this Centralita knows: upgrade Centralita",
        migrations=_MIGRATIONS,
        error=DialerStoreError,
        busy_timeout_ms=BUSY_TIMEOUT_MS,
    )


_CANDIDATES: Final = """
    SELECT t.id, t.customer_id, t.name, t.phone, t.timezone, t.promise_date, c.name AS campaign,
           EXISTS (SELECT 1 FROM optouts o WHERE o.phone = t.phone) AS opted_out
    FROM targets t JOIN campaigns c ON c.id = t.campaign_id
    WHERE c.state = 'running' AND t.status = 'pending' AND (t.next_at IS NULL OR t.next_at <= :now)
      AND NOT EXISTS (
          SELECT 1 FROM attempts a JOIN targets o ON o.id = a.target_id
          WHERE a.state != 'ended' AND (a.phone = t.phone OR o.customer_id = t.customer_id))
    ORDER BY (SELECT COUNT(*) FROM attempts a WHERE a.target_id = t.id), COALESCE(t.next_at, ''), t.id
    LIMIT :batch
"""

_OPEN: Final = """
    SELECT a.id, a.channel_id, a.state, a.lease_owner, a.lease_until, a.phone, a.created_at,
           t.customer_id, c.name AS campaign
    FROM attempts a JOIN targets t ON t.id = a.target_id JOIN campaigns c ON c.id = t.campaign_id
    WHERE a.state != 'ended'
"""


def _open_attempt(row: dict[str, Any]) -> OpenAttempt:
    return OpenAttempt(
        attempt_id=row["id"],
        channel_id=row["channel_id"],
        state=AttemptState(row["state"]),
        lease_owner=row["lease_owner"],
        lease_until=_dt(row["lease_until"]),
        phone=row["phone"],
        campaign=row["campaign"],
        customer_id=row["customer_id"],
        created_at=_dt(row["created_at"]) or datetime.min.replace(tzinfo=UTC),
    )


def _campaign(row: dict[str, Any]) -> Campaign:
    return Campaign(
        id=row["id"],
        name=row["name"],
        state=CampaignState(row["state"]),
        created_at=_dt(row["created_at"]) or datetime.min.replace(tzinfo=UTC),
        updated_at=_dt(row["updated_at"]) or datetime.min.replace(tzinfo=UTC),
    )


def check_campaign_name(name: str) -> str:
    """``name`` without its surrounding spaces, or CampaignError when it cannot name a campaign."""
    name = name.strip()
    if not name or len(name) > 64 or any(not (ch.isalnum() or ch in " ._-") for ch in name):
        raise CampaignError(
            f"{name!r} is not a campaign name: use 1 to 64 letters, digits, spaces, '.', '_' or '-', "
            "e.g. morosos-2026-03."
        )
    return name


class CampaignStore(SharedDatabase):
    """The dialer database at ``path``; one connection behind a lock, safe to share between threads.

    Methods that decide something take ``now``; the others stamp rows with ``clock()``.
    """

    def __init__(self, path: str | Path, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self._clock = clock
        super().__init__(Path(path), _connect(Path(path)))

    @classmethod
    def read_only(cls, path: str | Path) -> CampaignStore:
        """The store at ``path`` opened read-only (SQLite ``mode=ro``), for a reader that must not and cannot write
        it (the web console, in the service group): no WAL switch, no migration; a schema other than this
        code's is refused with the fix."""
        location = Path(path)
        # With no connection open (the dialer stopped) SQLite removes the -shm file, and a read-only reader that
        # cannot create it in the directory is refused: then nobody is writing, and the file is read as immutable.
        shm = location.with_name(location.name + "-shm")
        query = "mode=ro" if shm.exists() else "mode=ro&immutable=1"
        try:
            connection = sqlite3.connect(
                f"{location.resolve().as_uri()}?{query}", uri=True, isolation_level=None, check_same_thread=False
            )
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")
            version = int(connection.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error as error:
            raise DialerStoreError(
                f"Cannot read the dialer database {location} ({error}): the reader must be in the service's group "
                f"and {location}, its -wal and -shm files group-readable."
            ) from error
        if version != SCHEMA_VERSION:
            connection.close()
            raise DialerStoreError(
                f"The dialer database {location} has schema version {version}, not the {SCHEMA_VERSION} this code "
                "knows: restart openai-outbound-calls (it upgrades the file) or update Centralita."
            )
        connection.row_factory = row_dict
        store = cls.__new__(cls)
        store._clock = _utc_now
        SharedDatabase.__init__(store, location, connection)
        return store

    # ---- plumbing --------------------------------------------------------------------------------------

    def _closed_error(self) -> DialerStoreError:
        return DialerStoreError(f"The dialer database {self.path} was closed.")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding SQLite's write lock from its start (BEGIN IMMEDIATE)."""
        with self._lock:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction, so several queries see the same state."""
        with self._lock:
            db = self._connection()
            db.execute("BEGIN")
            try:
                yield db
            finally:
                db.execute("COMMIT")

    def _now(self, now: datetime | None) -> datetime:
        return now if now is not None else self._clock()

    # ---- campaigns -------------------------------------------------------------------------------------

    def ensure_campaign(self, name: str, *, now: datetime | None = None) -> Campaign:
        """The campaign called ``name``, created as a draft if it does not exist."""
        name = check_campaign_name(name)
        stamp = _ts(self._now(now))
        with self._write() as db:
            db.execute(
                "INSERT INTO campaigns (name, state, created_at, updated_at) VALUES (?, 'draft', ?, ?)"
                " ON CONFLICT (name) DO NOTHING",
                (name, stamp, stamp),
            )
            return _campaign(db.execute("SELECT * FROM campaigns WHERE name = ?", (name,)).fetchone())

    def campaign(self, name: str) -> Campaign:
        with self._lock:
            row = self._connection().execute("SELECT * FROM campaigns WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise CampaignError(self._unknown_campaign(name))
        return _campaign(row)

    def _unknown_campaign(self, name: str) -> str:
        names = [campaign.name for campaign in self.campaigns()]
        known = f"the campaigns are: {', '.join(names)}" if names else "there are no campaigns yet"
        return (
            f"There is no campaign {name!r} ({known}); an import creates one: "
            "centralita campaign import FILE --campaign NAME."
        )

    def campaigns(self) -> list[Campaign]:
        with self._lock:
            rows = self._connection().execute("SELECT * FROM campaigns ORDER BY created_at, id").fetchall()
        return [_campaign(row) for row in rows]

    def _set_state(
        self, name: str, allowed: dict[CampaignState, CampaignState], verb: str, now: datetime | None
    ) -> tuple[Campaign, bool]:
        stamp = _ts(self._now(now))
        with self._write() as db:
            row = db.execute("SELECT * FROM campaigns WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise CampaignError(f"There is no campaign {name!r}: see centralita campaign status.")
            current = CampaignState(row["state"])
            target = allowed.get(current)
            if target is None:
                raise CampaignError(f"Campaign {name!r} is {current}: it cannot be {verb}.")
            changed = target != current
            if changed and target is CampaignState.RUNNING:
                pending = db.execute(
                    "SELECT COUNT(*) AS n FROM targets WHERE campaign_id = ? AND status = 'pending'", (row["id"],)
                ).fetchone()["n"]
                if not pending:
                    raise CampaignError(
                        f"Campaign {name!r} has nobody left to call: import customers first "
                        "(centralita campaign import FILE --campaign NAME)."
                    )
            if changed:
                db.execute(
                    "UPDATE campaigns SET state = ?, updated_at = ? WHERE id = ?", (str(target), stamp, row["id"])
                )
                if target is CampaignState.RUNNING:
                    # Settings may have changed while it was stopped: re-check every pending target.
                    db.execute(
                        "UPDATE targets SET next_at = NULL, wait_reason = NULL"
                        " WHERE campaign_id = ? AND status = 'pending'",
                        (row["id"],),
                    )
            return _campaign(db.execute("SELECT * FROM campaigns WHERE id = ?", (row["id"],)).fetchone()), changed

    def start_campaign(self, name: str, *, now: datetime | None = None) -> tuple[Campaign, bool]:
        """Draft or paused -> running. Returns the campaign and whether it changed."""
        allowed = {
            CampaignState.DRAFT: CampaignState.RUNNING,
            CampaignState.PAUSED: CampaignState.RUNNING,
            CampaignState.RUNNING: CampaignState.RUNNING,
        }
        return self._set_state(
            name, allowed, "started (a finished campaign stays finished: import into a new one)", now
        )

    def pause_campaign(self, name: str, *, now: datetime | None = None) -> tuple[Campaign, bool]:
        """Running -> paused (calls in progress finish; no new ones)."""
        allowed = {CampaignState.RUNNING: CampaignState.PAUSED, CampaignState.PAUSED: CampaignState.PAUSED}
        return self._set_state(name, allowed, "paused (only a running campaign can be)", now)

    # ---- the audit log of campaign actions ---------------------------------------------------------------

    def record_action(
        self,
        *,
        campaign: str,
        action: str,
        user: str,
        source: str,
        result: str,
        detail: str = "",
        request_id: str = "",
        now: datetime | None = None,
    ) -> int:
        """Record that ``user`` (through ``source``: cli, console) asked ``action`` of ``campaign``; its id."""
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO campaign_actions (at, campaign, action, user, source, request_id, result, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (_ts(self._now(now)), campaign, action, user, source, request_id, result, detail),
            )
            return int(cursor.lastrowid or 0)

    def actions(self, limit: int = 50) -> list[dict[str, Any]]:
        """The last ``limit`` campaign actions, newest first."""
        with self._lock:
            rows: list[dict[str, Any]] = (
                self._connection()
                .execute("SELECT * FROM campaign_actions ORDER BY id DESC LIMIT ?", (limit,))
                .fetchall()
            )
        return rows

    def finish_completed(self, *, now: datetime | None = None) -> list[str]:
        """Mark finished every running campaign with no pending target and no open attempt; their names."""
        stamp = _ts(self._now(now))
        with self._write() as db:
            rows = db.execute(
                """
                SELECT c.id, c.name FROM campaigns c WHERE c.state = 'running'
                  AND NOT EXISTS (SELECT 1 FROM targets t WHERE t.campaign_id = c.id AND t.status = 'pending')
                  AND NOT EXISTS (SELECT 1 FROM attempts a JOIN targets t ON t.id = a.target_id
                                  WHERE t.campaign_id = c.id AND a.state != 'ended')
                """
            ).fetchall()
            for row in rows:
                db.execute("UPDATE campaigns SET state = 'finished', updated_at = ? WHERE id = ?", (stamp, row["id"]))
        return [row["name"] for row in rows]

    # ---- targets ---------------------------------------------------------------------------------------

    def upsert_targets(
        self,
        campaign: str,
        rows: Sequence[TargetData],
        *,
        remove_missing: bool = False,
        now: datetime | None = None,
    ) -> UpsertSummary:
        """Add or update targets by customer id, all in one transaction; nobody is ever added twice.

        A value the import does not know (None: no amount from the routers) keeps the stored one. A target
        removed earlier, or closed as a wrong number or exhausted, becomes pending again when it comes back with
        another phone number (removed: with any). ``remove_missing``: pending targets of the campaign that are
        not in ``rows`` become ``removed`` (they paid, for example).
        """
        stamp = _ts(self._now(now))
        counts: Counter[str] = Counter()
        duplicates: list[str] = []
        rows = [_canonical(row) for row in rows]
        with self._write() as db:
            found = db.execute("SELECT * FROM campaigns WHERE name = ?", (campaign,)).fetchone()
            if found is None:
                raise CampaignError(f"There is no campaign {campaign!r}.")
            if found["state"] == CampaignState.FINISHED:
                raise CampaignError(
                    f"Campaign {campaign!r} is finished: import into a new campaign (--campaign another-name)."
                )
            campaign_id = found["id"]
            if remove_missing:  # first, so that a number they held is free for the customers of this import
                seen = {row.customer_id for row in rows}
                pending = db.execute(
                    "SELECT id, customer_id FROM targets WHERE campaign_id = ? AND status = 'pending'", (campaign_id,)
                ).fetchall()
                for target in pending:
                    if target["customer_id"] not in seen:
                        db.execute(
                            "UPDATE targets SET status = 'removed', updated_at = ? WHERE id = ?", (stamp, target["id"])
                        )
                        counts["removed"] += 1
            for row in rows:
                change = self._upsert_one(db, campaign_id, row, stamp)
                if isinstance(change, _Duplicate):
                    duplicates.append(
                        f"{row.source}: phone {row.phone} of customer {row.customer_id!r} is already pending for "
                        f"customer {change.holder!r} in campaign {campaign!r} ({change.source}): one number is "
                        "one target, and the customer already in the campaign keeps it; this row was not applied"
                    )
                    continue
                counts[change] += 1
                if db.execute("SELECT 1 FROM optouts WHERE phone = ?", (row.phone,)).fetchone():
                    counts["opted_out"] += 1
                    db.execute(
                        "UPDATE targets SET status = 'opted_out', updated_at = ?"
                        " WHERE campaign_id = ? AND customer_id = ? AND status = 'pending'",
                        (stamp, campaign_id, row.customer_id),
                    )
        return UpsertSummary(
            added=counts["added"],
            updated=counts["updated"],
            unchanged=counts["unchanged"],
            reopened=counts["reopened"],
            removed=counts["removed"],
            opted_out=counts["opted_out"],
            duplicates=tuple(duplicates),
        )

    @staticmethod
    def _upsert_one(db: sqlite3.Connection, campaign_id: int, row: TargetData, stamp: str) -> str | _Duplicate:
        values = {
            "name": row.name,
            "phone": row.phone,
            "amount_due": _amount(row.amount_due),
            "due_date": row.due_date.isoformat() if row.due_date else None,
            "router_user": row.router_user,
            "timezone": row.timezone,
        }
        old = db.execute(
            "SELECT * FROM targets WHERE campaign_id = ? AND customer_id = ?", (campaign_id, row.customer_id)
        ).fetchone()
        merged = dict(values)
        if old is not None:  # a value the import does not know keeps the stored one
            merged = {key: value if value is not None else old[key] for key, value in values.items()}
        status = TargetStatus.PENDING if old is None else TargetStatus(old["status"])
        phone_changed = old is not None and merged["phone"] != old["phone"]
        reopen = old is not None and (
            status == TargetStatus.REMOVED
            or (
                phone_changed
                and (
                    status == TargetStatus.EXHAUSTED
                    or (status == TargetStatus.CLOSED and old["result"] == Outcome.WRONG_NUMBER)
                )
            )
        )
        if (old is None or reopen or phone_changed) and (reopen or status == TargetStatus.PENDING):
            # The customer takes a number to be called on: unless another pending customer already has it.
            holder = db.execute(
                "SELECT customer_id, source FROM targets WHERE campaign_id = ? AND phone = ? AND status = 'pending'"
                " AND customer_id != ? ORDER BY id LIMIT 1",
                (campaign_id, merged["phone"], row.customer_id),
            ).fetchone()
            if holder is not None:
                return _Duplicate(holder["customer_id"], holder["source"])
        if old is None:
            db.execute(
                "INSERT INTO targets (campaign_id, customer_id, name, phone, amount_due, due_date, router_user,"
                " timezone, source, status, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
                (campaign_id, row.customer_id, *values.values(), row.source, stamp, stamp),
            )
            return "added"
        if not reopen and all(merged[key] == old[key] for key in merged):
            return "unchanged"
        db.execute(
            "UPDATE targets SET name = ?, phone = ?, amount_due = ?, due_date = ?, router_user = ?, timezone = ?,"
            " source = ?, status = ?, next_at = NULL, wait_reason = NULL, updated_at = ? WHERE id = ?",
            (*merged.values(), row.source, "pending" if reopen else str(status), stamp, old["id"]),
        )
        return "reopened" if reopen else "updated"

    # ---- opt-outs --------------------------------------------------------------------------------------

    def add_optout(self, phone: str, *, source: str, note: str = "", now: datetime | None = None) -> int:
        """Never call ``phone`` (E.164, in any spacing) again, in any campaign; how many pending targets it stopped."""
        number = _e164(phone)
        stamp = _ts(self._now(now))
        with self._write() as db:
            return self._optout(db, number, source, note, stamp)

    @staticmethod
    def _optout(db: sqlite3.Connection, phone: str, source: str, note: str, stamp: str) -> int:
        db.execute(
            "INSERT INTO optouts (phone, at, source, note) VALUES (?, ?, ?, ?) ON CONFLICT (phone) DO NOTHING",
            (phone, stamp, source, note or None),
        )
        cursor = db.execute(
            "UPDATE targets SET status = 'opted_out', updated_at = ? WHERE phone = ? AND status = 'pending'",
            (stamp, phone),
        )
        return cursor.rowcount

    def is_opted_out(self, phone: str) -> bool:
        number = _e164(phone)
        with self._lock:
            return self._connection().execute("SELECT 1 FROM optouts WHERE phone = ?", (number,)).fetchone() is not None

    # ---- leasing ---------------------------------------------------------------------------------------

    def lease_next(
        self,
        now: datetime,
        owner: str,
        lease_for: timedelta,
        decide: Callable[[Candidate], Verdict],
    ) -> Lease | None:
        """Write and lease an attempt for the first target the rules allow now; None if nobody may be called.

        Targets the rules hold back get ``next_at`` (when to look at them again) and ``wait_reason``; those the
        rules exclude for good become opted_out or exhausted. All in one BEGIN IMMEDIATE transaction, so two
        dialers can never lease the same customer.
        """
        stamp = _ts(now)
        with self._write() as db:
            for _ in range(_ROUNDS):
                rows = db.execute(_CANDIDATES, {"now": stamp, "batch": _BATCH}).fetchall()
                if not rows:
                    return None
                for row in rows:
                    candidate = self._candidate(db, row)
                    verdict = decide(candidate)
                    if verdict.allowed:
                        return self._insert_attempt(db, candidate, owner, now, lease_for)
                    self._hold(db, candidate.target_id, verdict, now)
            return None

    @staticmethod
    def _candidate(db: sqlite3.Connection, row: dict[str, Any]) -> Candidate:
        history = db.execute(
            """
            SELECT a.created_at, a.outcome, a.ended_at, a.counted, a.target_id, a.phone
            FROM attempts a JOIN targets t ON t.id = a.target_id
            WHERE t.customer_id = ? OR a.phone = ?
            ORDER BY a.created_at
            """,
            (row["customer_id"], row["phone"]),
        ).fetchall()
        past = tuple(
            PastAttempt(
                at=_dt(item["created_at"]) or datetime.min.replace(tzinfo=UTC),
                outcome=Outcome(item["outcome"]) if item["outcome"] else None,
                ended_at=_dt(item["ended_at"]),
                counts=bool(item["counted"]),
            )
            for item in history
        )
        in_campaign = sum(
            1
            for item in history
            if item["target_id"] == row["id"] and item["phone"] == row["phone"] and item["counted"]
        )
        return Candidate(
            target_id=row["id"],
            campaign=row["campaign"],
            customer_id=row["customer_id"],
            name=row["name"],
            phone=row["phone"],
            timezone=row["timezone"],
            promise_date=_day(row["promise_date"]),
            history=past,
            attempts_in_campaign=in_campaign,
            opted_out=bool(row["opted_out"]),
        )

    @staticmethod
    def _hold(db: sqlite3.Connection, target_id: int, verdict: Verdict, now: datetime) -> None:
        reason = verdict.reason
        if verdict.never and reason in (Reason.OPTED_OUT, Reason.EXHAUSTED):
            status = TargetStatus.OPTED_OUT if reason is Reason.OPTED_OUT else TargetStatus.EXHAUSTED
            db.execute(
                "UPDATE targets SET status = ?, next_at = NULL, wait_reason = ?, updated_at = ? WHERE id = ?",
                (str(status), str(reason), _ts(now), target_id),
            )
            return
        if verdict.next_at is not None:
            next_at = verdict.next_at
        else:  # an open call elsewhere, or no window at all: look again later
            next_at = now + (_RECHECK_OPEN if reason is Reason.CALL_OPEN else _RECHECK_NO_WINDOW)
        db.execute(
            "UPDATE targets SET next_at = ?, wait_reason = ? WHERE id = ?",
            (_ts(next_at), str(reason) if reason else None, target_id),
        )

    @staticmethod
    def _insert_attempt(
        db: sqlite3.Connection, candidate: Candidate, owner: str, now: datetime, lease_for: timedelta
    ) -> Lease:
        until = now + lease_for
        placeholder = f"pending-{secrets.token_hex(8)}"
        cursor = db.execute(
            "INSERT INTO attempts (target_id, phone, channel_id, state, lease_owner, lease_until, created_at)"
            " VALUES (?, ?, ?, 'leased', ?, ?, ?)",
            (candidate.target_id, candidate.phone, placeholder, owner, _ts(until), _ts(now)),
        )
        attempt_id = int(cursor.lastrowid or 0)
        channel_id = f"centralita-out-{attempt_id}-{secrets.token_hex(4)}"
        db.execute("UPDATE attempts SET channel_id = ? WHERE id = ?", (channel_id, attempt_id))
        db.execute(
            "UPDATE targets SET next_at = NULL, wait_reason = NULL, updated_at = ? WHERE id = ?",
            (_ts(now), candidate.target_id),
        )
        return Lease(
            attempt_id=attempt_id,
            channel_id=channel_id,
            target_id=candidate.target_id,
            campaign=candidate.campaign,
            customer_id=candidate.customer_id,
            phone=candidate.phone,
            lease_until=until,
        )

    def renew_leases(self, owner: str, until: datetime) -> int:
        """Extend the leases of every open attempt ``owner`` holds; how many."""
        with self._write() as db:
            return db.execute(
                "UPDATE attempts SET lease_until = ? WHERE lease_owner = ? AND state != 'ended'", (_ts(until), owner)
            ).rowcount

    def release_leases(self, owner: str, now: datetime) -> int:
        """Let ``owner``'s open attempts expire now (a stopping dialer): the next dialer adopts or resolves them."""
        expired = now - timedelta(milliseconds=1)
        with self._write() as db:
            return db.execute(
                "UPDATE attempts SET lease_until = ? WHERE lease_owner = ? AND state != 'ended'", (_ts(expired), owner)
            ).rowcount

    def expired_attempts(self, now: datetime) -> list[OpenAttempt]:
        """Open attempts whose lease ran out: their dialer stopped or died without recording a result."""
        with self._lock:
            rows = (
                self._connection()
                .execute(_OPEN + " AND (a.lease_until IS NULL OR a.lease_until < ?) ORDER BY a.id", (_ts(now),))
                .fetchall()
            )
        return [_open_attempt(row) for row in rows]

    def adopt(self, attempt_id: int, owner: str, until: datetime, now: datetime) -> bool:
        """Take over an expired lease (only if it is still expired and open: one dialer wins)."""
        with self._write() as db:
            return (
                db.execute(
                    "UPDATE attempts SET lease_owner = ?, lease_until = ? WHERE id = ? AND state != 'ended'"
                    " AND (lease_until IS NULL OR lease_until < ?)",
                    (owner, _ts(until), attempt_id, _ts(now)),
                ).rowcount
                == 1
            )

    def open_attempts(self, owner: str | None = None) -> list[OpenAttempt]:
        with self._lock:
            db = self._connection()
            if owner is None:
                rows = db.execute(_OPEN + " ORDER BY a.id").fetchall()
            else:
                rows = db.execute(_OPEN + " AND a.lease_owner = ? ORDER BY a.id", (owner,)).fetchall()
        return [_open_attempt(row) for row in rows]

    def open_count(self) -> int:
        with self._lock:
            return int(
                self._connection().execute("SELECT COUNT(*) AS n FROM attempts WHERE state != 'ended'").fetchone()["n"]
            )

    def started_since(self, since: datetime) -> int:
        """Attempts created at or after ``since`` (for the calls-per-minute limit)."""
        with self._lock:
            row = (
                self._connection()
                .execute("SELECT COUNT(*) AS n FROM attempts WHERE created_at >= ?", (_ts(since),))
                .fetchone()
            )
        return int(row["n"])

    def last_started_at(self) -> datetime | None:
        with self._lock:
            row = self._connection().execute("SELECT MAX(created_at) AS at FROM attempts").fetchone()
        return _dt(row["at"])

    # ---- the life of an attempt ------------------------------------------------------------------------

    def mark_dialing(self, attempt_id: int, *, now: datetime | None = None, detail: str | None = None) -> None:
        """Asterisk accepted the originate (or may have: ``detail`` says why it is not sure)."""
        with self._write() as db:
            db.execute(
                "UPDATE attempts SET state = 'dialing', dialed_at = COALESCE(dialed_at, ?),"
                " detail = COALESCE(?, detail) WHERE id = ? AND state = 'leased'",
                (_ts(self._now(now)), detail, attempt_id),
            )

    def mark_answered(self, attempt_id: int, *, now: datetime | None = None) -> bool:
        with self._write() as db:
            return (
                db.execute(
                    "UPDATE attempts SET state = 'answered', answered_at = ?, dialed_at = COALESCE(dialed_at, ?)"
                    " WHERE id = ? AND state IN ('leased', 'dialing')",
                    (_ts(self._now(now)), _ts(self._now(now)), attempt_id),
                ).rowcount
                == 1
            )

    def set_amd(self, attempt_id: int, status: str, cause: str = "") -> None:
        """Record what answering-machine detection said (AMDSTATUS, AMDCAUSE)."""
        text = f"{status}:{cause}" if cause else status
        with self._write() as db:
            db.execute("UPDATE attempts SET amd_status = ? WHERE id = ?", (text[:100], attempt_id))

    def finish_attempt(
        self,
        attempt_id: int,
        outcome: Outcome,
        *,
        now: datetime | None = None,
        counted: bool = True,
        cause: int | None = None,
        detail: str = "",
        source: str = "asterisk",
    ) -> bool:
        """End an attempt; only the first end counts (returns whether this one did).

        An outcome the assistant already gave is kept; ``outcome`` is logged in ``outcomes`` either way.
        ``counted=False`` for a call that never left the box (it does not count for the caps).
        """
        moment = self._now(now)
        with self._write() as db:
            row = db.execute("SELECT * FROM attempts WHERE id = ?", (attempt_id,)).fetchone()
            if row is None:
                raise UnknownAttemptError(f"No attempt {attempt_id} in {self.path}.")
            if row["state"] == AttemptState.ENDED:
                return False
            if row["answered_at"] is not None and outcome not in _ANSWERED:
                # Answered before (e.g. under a dialer that stopped): the end of the call cannot undo that.
                machine = str(row["amd_status"] or "").startswith("MACHINE")
                outcome = Outcome.ANSWERED_MACHINE if machine else Outcome.ANSWERED_HUMAN
            final = Outcome(row["outcome"]) if row["outcome"] else outcome
            counted = counted or row["outcome"] is not None or row["answered_at"] is not None
            db.execute(
                "UPDATE attempts SET state = 'ended', ended_at = ?, outcome = ?, counted = ?,"
                " hangup_cause = COALESCE(?, hangup_cause), detail = COALESCE(?, detail), lease_until = NULL"
                " WHERE id = ?",
                (_ts(moment), str(final), int(counted), cause, detail or None, attempt_id),
            )
            db.execute(
                "INSERT INTO outcomes (attempt_id, at, outcome, source, detail) VALUES (?, ?, ?, ?, ?)",
                (attempt_id, _ts(moment), str(outcome), source, detail or None),
            )
            self._settle(db, row["target_id"], final, _day(row["promise_date"]), _ts(moment))
            return True

    def record_outcome(
        self,
        channel_id: str,
        outcome: Outcome,
        *,
        promise_date: date | None = None,
        note: str = "",
        source: str = "assistant",
        now: datetime | None = None,
    ) -> CallInfo:
        """What the customer said, recorded during the call by the assistant's tools (found by channel id).

        An opt-out puts the number on the opt-out list at once and is never replaced by a later outcome.
        """
        if outcome is Outcome.PROMISE_TO_PAY and promise_date is None:
            raise ValueError("a promise to pay needs its date")
        stamp = _ts(self._now(now))
        with self._write() as db:
            row = db.execute("SELECT * FROM attempts WHERE channel_id = ?", (channel_id,)).fetchone()
            if row is None:
                raise UnknownAttemptError(f"No outbound attempt has the channel {channel_id!r}.")
            db.execute(
                "INSERT INTO outcomes (attempt_id, at, outcome, source, promise_date, detail)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    row["id"],
                    stamp,
                    str(outcome),
                    source,
                    promise_date.isoformat() if promise_date else None,
                    note or None,
                ),
            )
            if row["outcome"] != Outcome.OPT_OUT:
                db.execute(
                    "UPDATE attempts SET outcome = ?, promise_date = ?, detail = COALESCE(?, detail) WHERE id = ?",
                    (str(outcome), promise_date.isoformat() if promise_date else None, note or None, row["id"]),
                )
                if outcome is Outcome.OPT_OUT:
                    self._optout(db, row["phone"], source, note, stamp)
                self._settle(db, row["target_id"], outcome, promise_date, stamp)
        info = self.call_info(channel_id)
        assert info is not None
        return info

    @staticmethod
    def _settle(db: sqlite3.Connection, target_id: int, outcome: Outcome, promise: date | None, stamp: str) -> None:
        """Bring the target up to date with an attempt's outcome."""
        if outcome is Outcome.OPT_OUT:
            status = "'opted_out'"
        elif outcome in (Outcome.DISPUTE, Outcome.WRONG_NUMBER):
            status = "CASE WHEN status = 'pending' THEN 'closed' ELSE status END"
        else:
            status = "status"
        db.execute(
            f"UPDATE targets SET status = {status}, result = ?, promise_date = COALESCE(?, promise_date),"
            " next_at = NULL, wait_reason = NULL, updated_at = ? WHERE id = ?",
            (
                str(outcome),
                promise.isoformat() if promise and outcome is Outcome.PROMISE_TO_PAY else None,
                stamp,
                target_id,
            ),
        )

    # ---- reading ---------------------------------------------------------------------------------------

    def call_info(self, channel_id: str) -> CallInfo | None:
        """The customer behind an outbound channel, for the media side and the tools; None if not ours."""
        with self._lock:
            row = (
                self._connection()
                .execute(
                    """
                    SELECT a.id, a.channel_id, a.phone, a.outcome, a.state, t.customer_id, t.name, t.amount_due,
                           t.due_date, t.router_user, c.name AS campaign
                    FROM attempts a JOIN targets t ON t.id = a.target_id JOIN campaigns c ON c.id = t.campaign_id
                    WHERE a.channel_id = ?
                    """,
                    (channel_id,),
                )
                .fetchone()
            )
        if row is None:
            return None
        return CallInfo(
            attempt_id=row["id"],
            channel_id=row["channel_id"],
            campaign=row["campaign"],
            customer_id=row["customer_id"],
            name=row["name"],
            phone=row["phone"],
            amount_due=Decimal(row["amount_due"]) if row["amount_due"] is not None else None,
            due_date=_day(row["due_date"]),
            router_user=row["router_user"],
            outcome=Outcome(row["outcome"]) if row["outcome"] else None,
            ended=row["state"] == AttemptState.ENDED,
        )

    def status(self, name: str) -> CampaignStatus:
        with self._read() as db:
            row = db.execute("SELECT * FROM campaigns WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise CampaignError(f"There is no campaign {name!r}: see centralita campaign status.")
            campaign = _campaign(row)
            targets = {
                item["status"]: item["n"]
                for item in db.execute(
                    "SELECT status, COUNT(*) AS n FROM targets WHERE campaign_id = ? GROUP BY status", (campaign.id,)
                )
            }
            results = {
                item["result"]: item["n"]
                for item in db.execute(
                    "SELECT result, COUNT(*) AS n FROM targets WHERE campaign_id = ? AND result IS NOT NULL"
                    " GROUP BY result",
                    (campaign.id,),
                )
            }
            waiting = {
                item["reason"]: item["n"]
                for item in db.execute(
                    "SELECT COALESCE(wait_reason, 'due now') AS reason, COUNT(*) AS n FROM targets"
                    " WHERE campaign_id = ? AND status = 'pending' GROUP BY reason",
                    (campaign.id,),
                )
            }
            attempts = db.execute(
                "SELECT COUNT(*) AS n, COALESCE(SUM(a.state != 'ended'), 0) AS open"
                " FROM attempts a JOIN targets t ON t.id = a.target_id WHERE t.campaign_id = ?",
                (campaign.id,),
            ).fetchone()
            next_row = db.execute(
                "SELECT MIN(next_at) AS at FROM targets WHERE campaign_id = ? AND status = 'pending'", (campaign.id,)
            ).fetchone()
        return CampaignStatus(
            campaign=campaign,
            targets=targets,
            results=results,
            waiting=waiting,
            attempts=int(attempts["n"]),
            open_attempts=int(attempts["open"]),
            next_at=_dt(next_row["at"]),
        )

    def counts(self) -> DialerCounts:
        """Every campaign's figures together, read in one transaction (for the dialer's metrics)."""
        with self._read() as db:
            campaigns = {
                row["state"]: int(row["n"])
                for row in db.execute("SELECT state, COUNT(*) AS n FROM campaigns GROUP BY state")
            }
            results = {
                row["outcome"]: int(row["n"])
                for row in db.execute(
                    "SELECT outcome, COUNT(*) AS n FROM attempts WHERE state = 'ended' AND outcome IS NOT NULL"
                    " GROUP BY outcome"
                )
            }
            open_attempts = int(db.execute("SELECT COUNT(*) AS n FROM attempts WHERE state != 'ended'").fetchone()["n"])
            optouts = int(db.execute("SELECT COUNT(*) AS n FROM optouts").fetchone()["n"])
        return DialerCounts(
            campaigns={state: campaigns.get(str(state), 0) for state in CampaignState},
            attempts={outcome: results.get(str(outcome), 0) for outcome in Outcome},
            open_attempts=open_attempts,
            optouts=optouts,
        )

    def report(self, name: str) -> list[dict[str, Any]]:
        """One row per attempt of the campaign, oldest first, with the customer and the target's status."""
        campaign = self.campaign(name)
        with self._lock:
            rows: list[dict[str, Any]] = (
                self._connection()
                .execute(
                    """
                    SELECT t.customer_id, t.name, a.phone, t.amount_due, t.due_date, a.id AS attempt_id,
                           a.channel_id, a.created_at, a.dialed_at, a.answered_at, a.ended_at, a.state,
                           a.outcome, a.promise_date, a.hangup_cause, a.amd_status, a.counted, a.detail,
                           t.status AS customer_status
                    FROM attempts a JOIN targets t ON t.id = a.target_id
                    WHERE t.campaign_id = ? ORDER BY a.created_at, a.id
                    """,
                    (campaign.id,),
                )
                .fetchall()
            )
        return rows
