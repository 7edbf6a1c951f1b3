"""The console's own database (``WEB_DB_PATH``, by default ``/var/lib/centralita-web/web.db``).

It holds what only the console needs: its users (argon2 hashes, never passwords), their sessions, the failed
logins that the rate limit counts, the web audit log (who did what, to what, when, from where), and the key
that signs the CSRF tokens. The call records and the campaign store stay the service's: the console never
writes the former and changes the latter only through ``CampaignStore``.

**Sessions** are server-side: the browser holds a random 256-bit token, the database only its SHA-256, so a
copy of the file does not give anyone a live session. A session ends on logout, after ``idle`` without a
request, or ``absolute`` after it began, whichever comes first.

Timestamps are ISO-8601 UTC with milliseconds, which sort as text, as in the other stores.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from centralita.storage.sqlite import SharedDatabase, open_database

__all__ = [
    "DEFAULT_WEB_DB",
    "Role",
    "Session",
    "User",
    "UserError",
    "WebStore",
    "WebStoreError",
    "check_user_name",
]

DEFAULT_WEB_DB: Final = Path("/var/lib/centralita-web/web.db")
BUSY_TIMEOUT_MS: Final = 5000
_USER_NAME: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


class Role(StrEnum):
    """What a user may do; each role has the rights of those before it."""

    VIEWER = "viewer"  # reads everything, DNI and phone numbers masked
    SUPERVISOR = "supervisor"  # sees personal data, acts on campaigns
    ADMIN = "admin"  # supervisor rights plus users

    def at_least(self, other: Role) -> bool:
        order = list(Role)
        return order.index(self) >= order.index(other)


class WebStoreError(OSError):
    """The console's database cannot be opened or used; the message names the path and the fix."""


class UserError(ValueError):
    """A user name, role or change the console does not accept; the message says why and the fix."""


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    role: Role
    password_hash: str
    disabled: bool


@dataclass(frozen=True, slots=True)
class Session:
    user: User
    created_at: datetime


def check_user_name(name: str) -> str:
    """``name`` if it is a valid user name (lower case letters, digits, '.', '_', '-'; up to 64), else UserError."""
    if not _USER_NAME.fullmatch(name):
        raise UserError(
            f"{name!r} is not a user name: use 1 to 64 lower-case letters, digits, '.', '_' or '-', starting with a "
            "letter or digit (e.g. maria.lopez)."
        )
    return name


def check_role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise UserError(f"{role!r} is not a role: use one of {', '.join(Role)}.") from None


def _migrate_to_1(db: sqlite3.Connection) -> None:
    roles = ", ".join(f"'{role}'" for role in Role)
    db.execute(
        f"""
        CREATE TABLE users (
            id            INTEGER PRIMARY KEY,
            name          TEXT NOT NULL UNIQUE,
            role          TEXT NOT NULL CHECK (role IN ({roles})),
            password_hash TEXT NOT NULL,
            disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
            created_at    TEXT NOT NULL,
            updated_at    TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE sessions (
            token_hash   TEXT PRIMARY KEY,
            user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            created_at   TEXT NOT NULL,
            last_seen_at TEXT NOT NULL,
            client       TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX sessions_user_id ON sessions (user_id)")
    db.execute(
        """
        CREATE TABLE login_failures (
            id     INTEGER PRIMARY KEY,
            at     TEXT NOT NULL,
            name   TEXT NOT NULL,
            client TEXT NOT NULL,
            -- 0 once the name logged in: the failure no longer counts for the name, still for the address
            counts_for_name INTEGER NOT NULL DEFAULT 1 CHECK (counts_for_name IN (0, 1))
        )
        """
    )
    db.execute("CREATE INDEX login_failures_name ON login_failures (name, at)")
    db.execute("CREATE INDEX login_failures_client ON login_failures (client, at)")
    db.execute(
        """
        CREATE TABLE audit (
            id     INTEGER PRIMARY KEY,
            at     TEXT NOT NULL,
            user   TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL DEFAULT '',
            detail TEXT NOT NULL DEFAULT '',
            client TEXT NOT NULL DEFAULT ''
        )
        """
    )
    db.execute("CREATE INDEX audit_at ON audit (at)")
    db.execute("CREATE TABLE keys (name TEXT PRIMARY KEY, value BLOB NOT NULL)")


# _MIGRATIONS[n] upgrades a database at user_version n to n + 1. Append only; never edit a released step.
_MIGRATIONS: Final[tuple[Callable[[sqlite3.Connection], None], ...]] = (_migrate_to_1,)
SCHEMA_VERSION: Final = len(_MIGRATIONS)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _user(row: dict[str, Any]) -> User:
    return User(
        id=int(row["id"]),
        name=str(row["name"]),
        role=Role(row["role"]),
        password_hash=str(row["password_hash"]),
        disabled=bool(row["disabled"]),
    )


class WebStore(SharedDatabase):
    """The console's database at ``path``; safe to share between waitress's threads.

    ``clock`` returns the current time as an aware datetime; tests inject their own.
    """

    def __init__(self, path: str | Path, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self._clock = clock
        connection = open_database(
            Path(path),
            what="console database",
            setting="WEB_DB_PATH",
            user="centralita-web",
            when_damaged="the console then creates a new one; its users must be added again",
            when_newer="this console knows: run the newer console",
            migrations=_MIGRATIONS,
            error=WebStoreError,
            busy_timeout_ms=BUSY_TIMEOUT_MS,
        )
        super().__init__(Path(path), connection)

    def _closed_error(self) -> WebStoreError:
        return WebStoreError(f"The console database {self.path} was closed.")

    def now(self) -> datetime:
        return self._clock()

    # ---- users -------------------------------------------------------------------------------------------

    def set_user(self, name: str, role: str, password_hash: str) -> bool:
        """Create user ``name`` or replace its role and password (and enable it); whether it is new."""
        check_user_name(name)
        checked = check_role(role)
        stamp = _ts(self._clock())
        with self._lock:
            db = self._connection()
            cursor = db.execute(
                "UPDATE users SET role = ?, password_hash = ?, disabled = 0, updated_at = ? WHERE name = ?",
                (str(checked), password_hash, stamp, name),
            )
            if cursor.rowcount:
                # A new password ends the sessions opened with the old one.
                db.execute("DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE name = ?)", (name,))
                return False
            db.execute(
                "INSERT INTO users (name, role, password_hash, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                (name, str(checked), password_hash, stamp, stamp),
            )
            return True

    def create_user(self, name: str, role: str, password_hash: str) -> None:
        """Create user ``name``; UserError if the name is taken (the console never replaces a user silently)."""
        check_user_name(name)
        checked = check_role(role)
        stamp = _ts(self._clock())
        with self._lock:
            try:
                self._connection().execute(
                    "INSERT INTO users (name, role, password_hash, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                    (name, str(checked), password_hash, stamp, stamp),
                )
            except sqlite3.IntegrityError:
                raise UserError(f"There is already a user {name!r}: choose another name.") from None

    def set_role(self, name: str, role: str) -> bool:
        """Give user ``name`` the role ``role`` (effective at their next request); False if there is no such user."""
        checked = check_role(role)
        with self._lock:
            cursor = self._connection().execute(
                "UPDATE users SET role = ?, updated_at = ? WHERE name = ?", (str(checked), _ts(self._clock()), name)
            )
            return cursor.rowcount == 1

    def update_password_hash(self, user_id: int, password_hash: str) -> None:
        """Store a fresh hash of the same password (argon2 parameters changed); sessions stay."""
        with self._lock:
            self._connection().execute(
                "UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?",
                (password_hash, _ts(self._clock()), user_id),
            )

    def disable_user(self, name: str) -> bool:
        """Disable user ``name`` and end its sessions; False if there is no such user."""
        with self._lock:
            db = self._connection()
            cursor = db.execute(
                "UPDATE users SET disabled = 1, updated_at = ? WHERE name = ?", (_ts(self._clock()), name)
            )
            db.execute("DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE name = ?)", (name,))
            return cursor.rowcount == 1

    def user(self, name: str) -> User | None:
        with self._lock:
            row = self._connection().execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
        return _user(row) if row is not None else None

    def users(self) -> list[User]:
        with self._lock:
            rows = self._connection().execute("SELECT * FROM users ORDER BY name").fetchall()
        return [_user(row) for row in rows]

    # ---- sessions ----------------------------------------------------------------------------------------

    def open_session(self, user: User, client: str) -> str:
        """A new session for ``user``; its token, for the browser's cookie (only its hash is stored)."""
        token = secrets.token_urlsafe(32)
        stamp = _ts(self._clock())
        with self._lock:
            self._connection().execute(
                "INSERT INTO sessions (token_hash, user_id, created_at, last_seen_at, client) VALUES (?, ?, ?, ?, ?)",
                (_token_hash(token), user.id, stamp, stamp, client),
            )
        return token

    def session(self, token: str, *, idle: timedelta, absolute: timedelta) -> Session | None:
        """The live session of ``token`` (its last use now updated), or None: unknown, expired (then deleted) or
        of a disabled user."""
        now = self._clock()
        key = _token_hash(token)
        with self._lock:
            db = self._connection()
            row = db.execute(
                "SELECT sessions.created_at AS session_created_at, sessions.last_seen_at, users.* FROM sessions"
                " JOIN users ON users.id = sessions.user_id WHERE sessions.token_hash = ?",
                (key,),
            ).fetchone()
            if row is None:
                return None
            created = datetime.fromisoformat(row["session_created_at"])
            last_seen = datetime.fromisoformat(row["last_seen_at"])
            if row["disabled"] or now - last_seen > idle or now - created > absolute:
                db.execute("DELETE FROM sessions WHERE token_hash = ?", (key,))
                return None
            db.execute("UPDATE sessions SET last_seen_at = ? WHERE token_hash = ?", (_ts(now), key))
        return Session(user=_user(row), created_at=created)

    def close_session(self, token: str) -> None:
        with self._lock:
            self._connection().execute("DELETE FROM sessions WHERE token_hash = ?", (_token_hash(token),))

    def prune_sessions(self, absolute: timedelta) -> int:
        """Delete sessions older than ``absolute``; how many went."""
        with self._lock:
            cursor = self._connection().execute(
                "DELETE FROM sessions WHERE created_at < ?", (_ts(self._clock() - absolute),)
            )
            return cursor.rowcount

    # ---- failed logins -----------------------------------------------------------------------------------

    def add_login_failure(self, name: str, client: str) -> None:
        with self._lock:
            self._connection().execute(
                "INSERT INTO login_failures (at, name, client) VALUES (?, ?, ?)", (_ts(self._clock()), name, client)
            )

    def login_failures(
        self, window: timedelta, *, name: str | None = None, client: str | None = None
    ) -> list[datetime]:
        """When the failures within ``window`` of now happened, oldest first: of ``name`` or of ``client``."""
        if (name is None) == (client is None):
            raise ValueError("count the failures of a name or of a client, not both and not neither")
        column, value = ("name", name) if name is not None else ("client", client)
        extra = " AND counts_for_name = 1" if name is not None else ""
        with self._lock:
            rows = (
                self._connection()
                .execute(
                    f"SELECT at FROM login_failures WHERE {column} = ? AND at >= ?{extra} ORDER BY at",
                    (value, _ts(self._clock() - window)),
                )
                .fetchall()
            )
        return [datetime.fromisoformat(row["at"]) for row in rows]

    def clear_login_failures(self, name: str) -> None:
        """Forget the failures of ``name`` (a successful login); those counted per client address stay."""
        with self._lock:
            self._connection().execute("UPDATE login_failures SET counts_for_name = 0 WHERE name = ?", (name,))

    def prune_login_failures(self, older_than: timedelta) -> int:
        with self._lock:
            cursor = self._connection().execute(
                "DELETE FROM login_failures WHERE at < ?", (_ts(self._clock() - older_than),)
            )
            return cursor.rowcount

    # ---- the web audit log -------------------------------------------------------------------------------

    def audit(self, user: str, action: str, target: str = "", detail: str = "", client: str = "") -> int:
        """Record that ``user`` did ``action`` to ``target``; its id. Never put a password in any field."""
        if not user or not action:
            raise ValueError("user and action must not be empty")
        with self._lock:
            cursor = self._connection().execute(
                "INSERT INTO audit (at, user, action, target, detail, client) VALUES (?, ?, ?, ?, ?, ?)",
                (_ts(self._clock()), user, action, target, detail, client),
            )
            return int(cursor.lastrowid or 0)

    def audit_entries(self, limit: int = 100) -> list[dict[str, Any]]:
        """The last ``limit`` audit rows, newest first."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        with self._lock:
            rows: list[dict[str, Any]] = (
                self._connection().execute("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
            )
        return rows

    # ---- keys --------------------------------------------------------------------------------------------

    def key(self, name: str) -> bytes:
        """The random 32-byte key ``name`` (e.g. the one that signs CSRF tokens), made on first use and kept, so a
        restart does not invalidate the forms open in browsers."""
        with self._lock:
            db = self._connection()
            db.execute(
                "INSERT INTO keys (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                (name, secrets.token_bytes(32)),
            )
            row = db.execute("SELECT value FROM keys WHERE name = ?", (name,)).fetchone()
        return bytes(row["value"])
