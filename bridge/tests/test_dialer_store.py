"""The campaign store: schema, campaign states, leases across connections, crash recovery, outcomes, opt-outs."""

from __future__ import annotations

import sqlite3
import threading
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from dialer_helpers import MEXICO, TUESDAY_10, Clock, RecordingOriginator, config, target

import centralita.dialer.store as store_module
from centralita.dialer.importer import read_csv
from centralita.dialer.outcomes import Outcome
from centralita.dialer.policy import Reason, Verdict
from centralita.dialer.runner import Runner
from centralita.dialer.store import (
    SCHEMA_VERSION,
    CampaignError,
    CampaignStore,
    Candidate,
    DialerStoreError,
    UnknownAttemptError,
)
from centralita.tools.collections import dialer_tools
from centralita.tools.registry import ToolContext, ToolRegistry

LEASE = timedelta(minutes=2)


def allow(_candidate: Candidate) -> Verdict:
    return Verdict(True)


def query(path: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(sql, args).fetchall()
    finally:
        connection.close()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "dialer.db"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(path: Path, clock: Clock) -> CampaignStore:
    opened = CampaignStore(path, clock=clock)
    opened.ensure_campaign("marzo")
    opened.upsert_targets("marzo", [target(1), target(2)])
    opened.start_campaign("marzo")
    return opened


# ---- the file ---------------------------------------------------------------------------------------


def test_schema_and_wal(store: CampaignStore, path: Path) -> None:
    tables = {name for (name,) in query(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"campaigns", "targets", "attempts", "outcomes", "optouts"} <= tables
    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert query(path, "PRAGMA journal_mode") == [("wal",)]


def test_a_newer_schema_is_refused(path: Path) -> None:
    CampaignStore(path).close()
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(DialerStoreError, match=f"newer than the {SCHEMA_VERSION} this Centralita knows"):
        CampaignStore(path)


def test_not_a_database_and_a_missing_directory(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DialerStoreError, match="not a SQLite database"):
        CampaignStore(junk)
    with pytest.raises(DialerStoreError, match=r"directory .* does not exist"):
        CampaignStore(tmp_path / "nope" / "dialer.db")


# ---- campaigns --------------------------------------------------------------------------------------


def test_campaign_states(path: Path, clock: Clock) -> None:
    with CampaignStore(path, clock=clock) as store:
        campaign = store.ensure_campaign("abril")
        assert campaign.state == "draft"
        assert store.ensure_campaign("abril").id == campaign.id
        with pytest.raises(CampaignError, match="draft: it cannot be paused"):
            store.pause_campaign("abril")
        with pytest.raises(CampaignError, match="nobody left to call: import customers first"):
            store.start_campaign("abril")
        store.upsert_targets("abril", [target(1)])
        assert store.start_campaign("abril")[1] is True
        assert store.start_campaign("abril")[1] is False
        assert store.pause_campaign("abril")[0].state == "paused"
        assert store.start_campaign("abril")[0].state == "running"
        assert store.finish_completed() == []
        assert store.add_optout(target(1).phone, source="operator") == 1
        assert store.finish_completed() == ["abril"]  # nobody left to call
        with pytest.raises(CampaignError, match="finished: it cannot be started"):
            store.start_campaign("abril")
        with pytest.raises(CampaignError, match="is finished: import into a new campaign"):
            store.upsert_targets("abril", [target(1)])
        with pytest.raises(CampaignError, match="no campaign 'mayo'"):
            store.campaign("mayo")
        with pytest.raises(CampaignError, match="not a campaign name"):
            store.ensure_campaign("a;b")


# ---- leases -----------------------------------------------------------------------------------------


def test_a_lease_writes_the_attempt_before_the_call(store: CampaignStore, path: Path, clock: Clock) -> None:
    lease = store.lease_next(clock.now, "dialer-a", LEASE, allow)
    assert lease is not None
    assert lease.channel_id.startswith(f"centralita-out-{lease.attempt_id}-")
    rows = query(path, "SELECT state, lease_owner, lease_until, channel_id FROM attempts")
    assert rows == [("leased", "dialer-a", "2026-03-10T16:02:00.000+00:00", lease.channel_id)]


def test_nobody_with_an_open_attempt_is_leased_again(store: CampaignStore, clock: Clock) -> None:
    first = store.lease_next(clock.now, "a", LEASE, allow)
    second = store.lease_next(clock.now, "a", LEASE, allow)
    assert first is not None
    assert second is not None
    assert first.customer_id != second.customer_id
    assert store.lease_next(clock.now, "a", LEASE, allow) is None


def test_the_same_number_in_another_campaign_waits(store: CampaignStore, clock: Clock) -> None:
    store.ensure_campaign("abril")
    store.upsert_targets("abril", [target(9, phone=target(1).phone)])
    store.start_campaign("abril")
    leased = [store.lease_next(clock.now, "a", LEASE, allow) for _ in range(3)]
    phones = [lease.phone for lease in leased if lease is not None]
    assert sorted(phones) == sorted([target(1).phone, target(2).phone])


def test_two_dialers_racing_never_lease_the_same_customer(path: Path, clock: Clock) -> None:
    with CampaignStore(path, clock=clock) as setup:
        setup.ensure_campaign("marzo")
        setup.upsert_targets("marzo", [target(number) for number in range(1, 41)])
        setup.start_campaign("marzo")
    leased: list[str] = []
    lock = threading.Lock()

    def dial(owner: str) -> None:
        with CampaignStore(path, clock=clock) as mine:  # its own connection, as another process would have
            while (lease := mine.lease_next(clock.now, owner, LEASE, allow)) is not None:
                with lock:
                    leased.append(lease.customer_id)

    threads = [threading.Thread(target=dial, args=(f"dialer-{index}",)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(leased) == 40
    assert len(set(leased)) == 40


def test_held_targets_get_their_next_time_and_final_ones_their_status(store: CampaignStore, clock: Clock) -> None:
    later = clock.now + timedelta(hours=3)

    def decide(candidate: Candidate) -> Verdict:
        if candidate.customer_id == "C001":
            return Verdict(False, Reason.OUTSIDE_WINDOW, later)
        return Verdict(False, Reason.EXHAUSTED, None)

    assert store.lease_next(clock.now, "a", LEASE, decide) is None
    status = store.status("marzo")
    assert status.targets == {"pending": 1, "exhausted": 1}
    assert status.waiting == {"outside-window": 1}
    assert status.next_at == later
    assert store.lease_next(clock.now, "a", LEASE, allow) is None, "not looked at again before its time"
    assert store.lease_next(later, "a", LEASE, allow) is not None


def test_the_candidate_carries_the_history_of_customer_and_number(store: CampaignStore, clock: Clock) -> None:
    lease = store.lease_next(clock.now, "a", LEASE, allow)
    assert lease is not None
    store.finish_attempt(lease.attempt_id, Outcome.BUSY, now=clock.advance(minutes=1), cause=17)
    seen: list[Candidate] = []

    def record(candidate: Candidate) -> Verdict:
        seen.append(candidate)
        return Verdict(False, Reason.DAILY_CAP, clock.now + timedelta(days=1))

    store.lease_next(clock.now, "a", LEASE, record)
    mine = next(candidate for candidate in seen if candidate.customer_id == lease.customer_id)
    assert mine.attempts_in_campaign == 1
    [past] = mine.history
    assert (past.outcome, past.counts, past.at) == (Outcome.BUSY, True, TUESDAY_10)


# ---- crash recovery ---------------------------------------------------------------------------------


def test_a_store_abandoned_mid_attempt_is_recovered_by_the_next_one(path: Path, clock: Clock) -> None:
    crashed = CampaignStore(path, clock=clock)
    crashed.ensure_campaign("marzo")
    crashed.upsert_targets("marzo", [target(1)])
    crashed.start_campaign("marzo")
    lease = crashed.lease_next(clock.now, "crashed-dialer", LEASE, allow)
    assert lease is not None
    # The process "dies" here: no originate confirmation, no result, the connection simply abandoned.
    clock.advance(minutes=1)
    survivor = CampaignStore(path, clock=clock)
    assert survivor.expired_attempts(clock.now) == [], "the lease still runs: the owner may be alive"
    heir = RecordingOriginator()
    dialer = Runner(survivor, heir, config(), clock=clock, owner="heir")
    dialer.tick()
    assert heir.placed == [], "never dialled while another dialer's lease runs"
    clock.advance(minutes=2)
    report = dialer.tick()
    assert report.resolved == [lease.attempt_id]
    assert heir.placed == []
    [row] = survivor.report("marzo")
    assert (row["state"], row["outcome"], row["counted"]) == ("ended", "unknown", 1)
    for hours in range(1, 9):
        clock.now = TUESDAY_10 + timedelta(hours=hours)
        dialer.tick()
    assert heir.placed == [], "not the same day"
    clock.now = TUESDAY_10 + timedelta(days=1)
    dialer.tick()
    assert len(heir.placed) == 1
    crashed.close()


def test_adopting_is_won_by_one_dialer_only(store: CampaignStore, clock: Clock, path: Path) -> None:
    lease = store.lease_next(clock.now, "dead", LEASE, allow)
    assert lease is not None
    clock.advance(minutes=5)
    other = CampaignStore(path, clock=clock)
    until = clock.now + LEASE
    assert store.adopt(lease.attempt_id, "one", until, clock.now) is True
    assert other.adopt(lease.attempt_id, "two", until, clock.now) is False
    assert [attempt.lease_owner for attempt in other.open_attempts()] == ["one"]


def test_renew_and_release(store: CampaignStore, clock: Clock) -> None:
    lease = store.lease_next(clock.now, "me", LEASE, allow)
    assert lease is not None
    clock.advance(minutes=1, seconds=50)
    assert store.renew_leases("me", clock.now + LEASE) == 1
    clock.advance(minutes=1)
    assert store.expired_attempts(clock.now) == []
    assert store.release_leases("me", clock.now) == 1
    assert [attempt.attempt_id for attempt in store.expired_attempts(clock.now)] == [lease.attempt_id]


# ---- outcomes ---------------------------------------------------------------------------------------


def test_the_assistants_outcome_wins_over_the_hangup(store: CampaignStore, clock: Clock, path: Path) -> None:
    lease = store.lease_next(clock.now, "a", LEASE, allow)
    assert lease is not None
    info = store.record_outcome(
        lease.channel_id, Outcome.PROMISE_TO_PAY, promise_date=date(2026, 3, 20), note="viernes"
    )
    assert (info.outcome, info.ended, info.amount_due) == (Outcome.PROMISE_TO_PAY, False, Decimal("350.00"))
    assert store.finish_attempt(lease.attempt_id, Outcome.ANSWERED_HUMAN, cause=16) is True
    assert store.finish_attempt(lease.attempt_id, Outcome.FAILED) is False
    [row] = store.report("marzo")
    assert (row["outcome"], row["promise_date"], row["hangup_cause"]) == ("promise-to-pay", "2026-03-20", 16)
    sources = query(path, "SELECT outcome, source FROM outcomes ORDER BY id")
    assert sources == [("promise-to-pay", "assistant"), ("answered-human", "asterisk")]
    assert query(path, "SELECT result, promise_date, status FROM targets WHERE customer_id = 'C001'") == [
        ("promise-to-pay", "2026-03-20", "pending")
    ]


def test_an_opt_out_sticks_and_stops_the_number_everywhere(store: CampaignStore, clock: Clock) -> None:
    store.ensure_campaign("abril")
    store.upsert_targets("abril", [target(7, phone=target(1).phone)])
    lease = store.lease_next(clock.now, "a", LEASE, allow)
    assert lease is not None
    assert lease.customer_id == "C001"
    store.record_outcome(lease.channel_id, Outcome.OPT_OUT, note="pidió no llamar")
    store.record_outcome(lease.channel_id, Outcome.ANSWERED_HUMAN)
    store.finish_attempt(lease.attempt_id, Outcome.ANSWERED_HUMAN, cause=16)
    [row] = store.report("marzo")
    assert row["outcome"] == "opt-out"
    assert store.is_opted_out(target(1).phone)
    assert store.status("abril").targets == {"opted_out": 1}
    summary = store.upsert_targets("abril", [target(8, phone=target(1).phone)])
    assert summary.opted_out == 1, "a new import of the number is not called either"


def test_record_outcome_for_a_channel_that_is_not_ours(store: CampaignStore) -> None:
    with pytest.raises(UnknownAttemptError):
        store.record_outcome("1732543387.12", Outcome.DISPUTE)
    with pytest.raises(ValueError, match="needs its date"):
        store.record_outcome("x", Outcome.PROMISE_TO_PAY)


def test_reimport_reopens_a_wrong_number_with_a_new_phone(store: CampaignStore, clock: Clock) -> None:
    lease = store.lease_next(clock.now, "a", LEASE, allow)
    assert lease is not None
    store.finish_attempt(lease.attempt_id, Outcome.WRONG_NUMBER, cause=1)
    assert store.status("marzo").targets == {"closed": 1, "pending": 1}
    same = store.upsert_targets("marzo", [target(1)])
    assert same.unchanged == 1
    fixed = store.upsert_targets("marzo", [target(1, phone="+5215559999999")])
    assert fixed.reopened == 1
    assert store.status("marzo").targets == {"pending": 2}


def test_unknown_amounts_from_the_routers_keep_the_csv_ones(store: CampaignStore, path: Path) -> None:
    store.upsert_targets(
        "marzo", [target(1, amount_due=None, due_date=None, router_user="maria.pena", source="router")]
    )
    assert query(path, "SELECT amount_due, due_date, router_user FROM targets WHERE customer_id = 'C001'") == [
        ("350.00", "2026-02-28", "maria.pena")
    ]


# ---- phone numbers ----------------------------------------------------------------------------------


def test_an_opt_out_stops_the_number_whatever_its_format(path: Path, clock: Clock, tmp_path: Path) -> None:
    """An opt-out written +52 1 55... stops a customer imported as 55 5000 1111, and the other way round."""
    csv_file = tmp_path / "morosos.csv"
    csv_file.write_text(
        "id,nombre,telefono,monto,vencimiento\nC001,Ana,55 5000 1111,1,2026-01-01\nC002,Luis,5550002222,1,2026-01-01\n"
    )
    with CampaignStore(path, clock=clock) as store:
        assert store.add_optout("+52 1 55 5000 1111", source="operator") == 0
        assert store.is_opted_out("+52 55 5000 1111")
        assert store.is_opted_out("+525550001111")
        store.ensure_campaign("marzo")
        summary = store.upsert_targets("marzo", read_csv(csv_file, region="MX").rows)
        assert (summary.added, summary.opted_out) == (2, 1)
        store.start_campaign("marzo")
        assert store.add_optout("0052 (55) 5000-2222", source="operator") == 1
        assert store.lease_next(clock.now, "a", LEASE, allow) is None
        assert store.status("marzo").targets == {"opted_out": 2}
        with pytest.raises(ValueError, match="international numbers only"):
            store.add_optout("55 5000 3333", source="operator")  # the store has no region: the CLI reads these
    assert query(path, "SELECT phone FROM optouts ORDER BY phone") == [("+525550001111",), ("+525550002222",)]


def test_one_number_is_one_target_in_a_campaign(store: CampaignStore, path: Path) -> None:
    summary = store.upsert_targets("marzo", [target(3, phone="+52 1 55 5000 0001")])  # C001's number
    [duplicate] = summary.duplicates
    assert duplicate.startswith("test: phone +525550000001 of customer 'C003' is already pending for customer 'C001'")
    assert summary.added == 0
    assert store.status("marzo").targets == {"pending": 2}
    moved = store.upsert_targets("marzo", [target(2, phone=target(1).phone)])  # C002 may not take it either
    assert len(moved.duplicates) == 1
    assert query(path, "SELECT customer_id, phone FROM targets ORDER BY id") == [
        ("C001", "+525550000001"),
        ("C002", "+525550000002"),
    ]
    # C001 is gone from this import (paid): the number is free for C003, whose row is applied.
    handed = store.upsert_targets("marzo", [target(2), target(3, phone=target(1).phone)], remove_missing=True)
    assert (handed.removed, handed.added, handed.duplicates) == (1, 1, ())
    assert store.status("marzo").targets == {"pending": 2, "removed": 1}


def test_a_campaign_can_hold_a_number_whose_customer_is_done(store: CampaignStore, clock: Clock) -> None:
    lease = store.lease_next(clock.now, "a", LEASE, allow)
    assert lease is not None
    store.finish_attempt(lease.attempt_id, Outcome.WRONG_NUMBER, cause=1)  # C001 closed: not C001's line
    summary = store.upsert_targets("marzo", [target(3, phone=target(1).phone)])
    assert (summary.added, summary.duplicates) == (1, ())


def test_version_1_numbers_become_e164(path: Path) -> None:
    at = "2026-01-01T00:00:00.000+00:00"
    db = sqlite3.connect(path)
    store_module._migrate_to_1(db)
    db.execute("PRAGMA user_version = 1")
    db.execute("INSERT INTO campaigns VALUES (1, 'marzo', 'running', ?, ?)", (at, at))
    db.execute(
        "INSERT INTO targets (id, campaign_id, customer_id, name, phone, source, status, created_at, updated_at)"
        " VALUES (1, 1, 'C001', 'Ana', '+5215550001111', 'csv', 'pending', ?, ?)",
        (at, at),
    )
    db.execute(
        "INSERT INTO attempts (id, target_id, phone, channel_id, state, created_at)"
        " VALUES (1, 1, '+5215550001111', 'centralita-out-1-aa', 'ended', ?)",
        (at,),
    )
    db.executemany(
        "INSERT INTO optouts (phone, at, source, note) VALUES (?, ?, ?, ?)",
        [
            ("+525550001111", "2026-02-01T00:00:00.000+00:00", "operator", "later"),
            ("+5215550001111", "2026-01-01T00:00:00.000+00:00", "assistant", "first"),
            ("+5215550002222", "2026-01-05T00:00:00.000+00:00", "assistant", None),
            ("not a number", "2026-01-06T00:00:00.000+00:00", "operator", None),
        ],
    )
    db.commit()
    db.close()
    with CampaignStore(path) as store:
        assert store.is_opted_out("+525550001111")
        assert store.status("marzo").targets == {"pending": 1}
    assert query(path, "SELECT phone FROM targets") == [("+525550001111",)]
    assert query(path, "SELECT phone FROM attempts") == [("+525550001111",)]
    assert query(path, "SELECT phone, source, note FROM optouts ORDER BY phone") == [
        ("+525550001111", "assistant", "first"),  # two opt-outs of one number: the first is kept
        ("+525550002222", "assistant", None),
        ("not a number", "operator", None),
    ]
    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


# ---- the assistant's tools --------------------------------------------------------------------------


@pytest.fixture
def call(store: CampaignStore, clock: Clock) -> tuple[ToolRegistry, ToolContext]:
    lease = store.lease_next(clock.now, "a", LEASE, allow)
    assert lease is not None
    registry = ToolRegistry()
    for tool in dialer_tools(store, MEXICO, clock=clock):
        registry.register(tool)
    return registry, ToolContext(call_id=lease.channel_id, caller="", did="")


def test_registrar_resultado_promise(call: tuple[ToolRegistry, ToolContext], store: CampaignStore) -> None:
    registry, context = call
    result = registry.run(
        "registrar_resultado", '{"resultado": "promesa_de_pago", "fecha_promesa": "2026-03-13"}', context
    )
    assert result.ok
    assert "2026-03-13" in result.output["mensaje"]
    info = store.call_info(context.call_id)
    assert info is not None
    assert info.outcome is Outcome.PROMISE_TO_PAY


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ('{"resultado": "promesa_de_pago"}', "Falta fecha_promesa"),
        ('{"resultado": "promesa_de_pago", "fecha_promesa": "13/03/2026"}', "AAAA-MM-DD"),
        ('{"resultado": "promesa_de_pago", "fecha_promesa": "2026-03-09"}', "ya pasó"),
        ('{"resultado": "promesa_de_pago", "fecha_promesa": "2026-06-30"}', "más de 31 días"),
        ('{"resultado": "disputa", "fecha_promesa": "2026-03-13"}', "solo se usa con"),
        ('{"resultado": "pagara_algun_dia"}', "debe ser uno de"),
    ],
)
def test_registrar_resultado_refuses_bad_arguments(
    call: tuple[ToolRegistry, ToolContext], store: CampaignStore, arguments: str, message: str
) -> None:
    registry, context = call
    result = registry.run("registrar_resultado", arguments, context)
    assert not result.ok
    assert message in result.output["error"]
    info = store.call_info(context.call_id)
    assert info is not None
    assert info.outcome is None


def test_no_volver_a_llamar(call: tuple[ToolRegistry, ToolContext], store: CampaignStore) -> None:
    registry, context = call
    result = registry.run("no_volver_a_llamar", '{"motivo": "ya no quiere llamadas"}', context)
    assert result.ok
    assert "no recibirá más llamadas" in result.output["mensaje"]
    assert store.is_opted_out(target(1).phone)


def test_tools_on_a_call_that_is_not_a_campaign_call(call: tuple[ToolRegistry, ToolContext]) -> None:
    registry, _ = call
    stranger = ToolContext(call_id="1732543387.12", caller="+525550000000", did="100")
    result = registry.run("no_volver_a_llamar", "{}", stranger)
    assert not result.ok
    assert "no pertenece a una campaña" in result.output["error"]


def test_a_call_answered_earlier_ends_as_answered(store: CampaignStore, clock: Clock) -> None:
    lease = store.lease_next(clock.now, "a", LEASE, allow)
    assert lease is not None
    assert store.mark_answered(lease.attempt_id, now=clock.advance(seconds=8)) is True
    assert store.mark_answered(lease.attempt_id) is False
    store.finish_attempt(
        lease.attempt_id, Outcome.NO_ANSWER, cause=16, detail="seen by a dialer that missed the answer"
    )
    [row] = store.report("marzo")
    assert (row["outcome"], row["answered_at"]) == ("answered-human", "2026-03-10T16:00:08.000+00:00")
