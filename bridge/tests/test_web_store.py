"""The console's own database (users, sessions, failed logins, audit, keys), its users' command
(``centralita web``) and the read-only view of the call records."""

from __future__ import annotations

import io
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from web_support import PASSWORD, Clock, write_records

from centralita import cli
from centralita.storage.records import SCHEMA_VERSION, CallRecords, CallRecordsError
from centralita.web import passwords
from centralita.web.passwords_rules import PasswordError
from centralita.web.records import ReadOnlyRecords, Search
from centralita.web.store import Role, UserError, WebStore

HOUR = timedelta(hours=1)


@pytest.fixture
def store(tmp_path: Path) -> WebStore:
    return WebStore(tmp_path / "web.db", clock=Clock(datetime(2026, 12, 3, 12, tzinfo=UTC)))


def test_password_hashes_are_argon2id_and_verify(store: WebStore) -> None:
    hashed = passwords.hash_password(PASSWORD)
    assert hashed.startswith("$argon2id$")
    assert passwords.verify(hashed, PASSWORD)
    assert not passwords.verify(hashed, PASSWORD + "x")
    assert not passwords.verify("not a hash", PASSWORD)
    with pytest.raises(PasswordError, match="at least 12"):
        passwords.hash_password("corta")


def test_sessions_are_stored_hashed_and_expire(store: WebStore, tmp_path: Path) -> None:
    store.set_user("sara", "supervisor", passwords.hash_password(PASSWORD))
    user = store.user("sara")
    assert user is not None
    assert user.role is Role.SUPERVISOR
    token = store.open_session(user, "127.0.0.1")
    assert token.encode() not in (tmp_path / "web.db").read_bytes() + (tmp_path / "web.db-wal").read_bytes()
    assert store.session(token, idle=HOUR, absolute=3 * HOUR) is not None
    clock = store._clock
    assert isinstance(clock, Clock)
    for _ in range(3):
        clock.advance(minutes=59)
        assert store.session(token, idle=HOUR, absolute=3 * HOUR) is not None
    clock.advance(minutes=59)  # active all along, but past the absolute limit
    assert store.session(token, idle=HOUR, absolute=3 * HOUR) is None


def test_a_new_password_ends_the_users_sessions(store: WebStore) -> None:
    store.set_user("sara", "supervisor", passwords.hash_password(PASSWORD))
    user = store.user("sara")
    assert user is not None
    token = store.open_session(user, "127.0.0.1")
    assert store.set_user("sara", "viewer", passwords.hash_password("otra frase bastante larga")) is False
    assert store.session(token, idle=HOUR, absolute=HOUR) is None


def test_user_names_and_roles_are_checked(store: WebStore) -> None:
    with pytest.raises(UserError, match="not a user name"):
        store.set_user("Sara Pérez", "viewer", "x")
    with pytest.raises(UserError, match="not a role: use one of viewer, supervisor, admin"):
        store.set_user("sara", "root", "x")


def test_the_csrf_key_survives_a_restart(tmp_path: Path) -> None:
    with WebStore(tmp_path / "web.db") as first:
        key = first.key("csrf")
    with WebStore(tmp_path / "web.db") as second:
        assert second.key("csrf") == key
        assert len(key) == 32
        assert second.key("other") != key


def test_login_failures_are_counted_per_name_and_client_in_the_window(store: WebStore) -> None:
    store.add_login_failure("sara", "10.0.0.1")
    store.add_login_failure("sara", "10.0.0.2")
    store.add_login_failure("vera", "10.0.0.1")
    assert len(store.login_failures(HOUR, name="sara")) == 2
    assert len(store.login_failures(HOUR, client="10.0.0.1")) == 2
    store.clear_login_failures("sara")
    assert store.login_failures(HOUR, name="sara") == []
    assert len(store.login_failures(HOUR, client="10.0.0.1")) == 2  # the address keeps its count
    clock = store._clock
    assert isinstance(clock, Clock)
    clock.advance(hours=2)
    assert store.login_failures(HOUR, client="10.0.0.1") == []


# ---- centralita web -----------------------------------------------------------------------------------------


def sync(
    monkeypatch: pytest.MonkeyPatch, db: Path, users: object, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(users)))
    code = cli.main(["web", "sync-users", "--db", str(db)])
    out, err = capsys.readouterr()
    return code, out, err


def test_sync_users_changes_only_what_differs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "web.db"
    users = [
        {"name": "ada", "role": "admin", "password": PASSWORD},
        {"name": "vera", "role": "viewer", "password": PASSWORD},
    ]
    assert sync(monkeypatch, db, users, capsys)[:2] == (0, "changed: 2\n")
    assert sync(monkeypatch, db, users, capsys)[:2] == (0, "changed: 0\n")
    users[1]["role"] = "supervisor"
    assert sync(monkeypatch, db, users, capsys)[:2] == (0, "changed: 1\n")
    users[0]["password"] = "una frase distinta y larga"
    assert sync(monkeypatch, db, users, capsys)[:2] == (0, "changed: 1\n")
    with WebStore(db) as store:
        ada = store.user("ada")
        vera = store.user("vera")
        assert ada is not None
        assert passwords.verify(ada.password_hash, "una frase distinta y larga")
        assert vera is not None
        assert vera.role is Role.SUPERVISOR
        assert [row["action"] for row in store.audit_entries()].count("user_add") == 2


def test_sync_users_refuses_bad_input_without_showing_a_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "web.db"
    code, _, err = sync(monkeypatch, db, [{"name": "ada", "role": "root", "password": PASSWORD}], capsys)
    assert code == 2
    assert "'root' is not a role" in err
    assert PASSWORD not in err
    code, _, err = sync(monkeypatch, db, [{"name": "ada", "role": "admin", "password": "corto-pero"}], capsys)
    assert code == 2
    assert "at least 12" in err
    assert "corto-pero" not in err
    code, _, err = sync(monkeypatch, db, {"name": "ada"}, capsys)
    assert (code, "must be a JSON list" in err) == (2, True)
    with WebStore(db) as store:
        assert store.users() == []


def test_adduser_reads_the_password_only_from_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert cli.main(["web", "adduser", "ada", "--role", "admin", "--db", str(tmp_path / "web.db")]) == 2
    assert "standard input is not one" in capsys.readouterr().err


def test_adduser_asks_twice_and_stores_the_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = iter([PASSWORD, PASSWORD])
    monkeypatch.setattr("sys.stdin.isatty", lambda: True, raising=False)
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    db = tmp_path / "web.db"
    assert cli.main(["web", "adduser", "ada", "--role", "admin", "--db", str(db)]) == 0
    assert "User ada added with role admin." in capsys.readouterr().out
    assert cli.main(["web", "users", "--db", str(db)]) == 0
    assert capsys.readouterr().out == "ada\tadmin\n"


# ---- the call records, read-only ------------------------------------------------------------------------------


def test_records_are_opened_read_only(tmp_path: Path) -> None:
    with CallRecords(tmp_path / "centralita.db") as records:
        write_records(records)
    with ReadOnlyRecords(tmp_path / "centralita.db") as view:
        assert len(view.search(Search(), UTC)) == 2
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            view._db.execute("DELETE FROM calls")


def test_records_of_another_schema_or_missing_are_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(CallRecordsError, match="does not exist: the bridge creates it"):
        ReadOnlyRecords(tmp_path / "missing.db")
    with CallRecords(tmp_path / "centralita.db"):
        pass
    with sqlite3.connect(tmp_path / "centralita.db") as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(CallRecordsError, match=r"newer than the \d+ this console knows: update the console"):
        ReadOnlyRecords(tmp_path / "centralita.db")
