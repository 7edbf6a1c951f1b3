"""The runner: concurrency cap, calls-per-minute, the calling rules, outcomes, recovery, stopping, SIGKILL."""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from dialer_helpers import MEXICO, TUESDAY_10, Clock, RecordingOriginator, config, policy, target

from centralita.dialer.originator import DialUncertain, Presence
from centralita.dialer.outcomes import Outcome
from centralita.dialer.policy import Reason
from centralita.dialer.runner import Runner, RunnerConfig
from centralita.dialer.store import CampaignStore, Candidate, TargetData

SRC = Path(__file__).resolve().parents[1] / "src"


def campaign(store: CampaignStore, count: int, name: str = "marzo", start: bool = True) -> None:
    store.ensure_campaign(name)
    store.upsert_targets(name, [target(number) for number in range(1, count + 1)])
    if start:
        store.start_campaign(name)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> CampaignStore:
    return CampaignStore(tmp_path / "dialer.db", clock=clock)


def runner(
    store: CampaignStore, originator: RecordingOriginator, clock: Clock, owner: str = "test-runner", **options: object
) -> Runner:
    return Runner(store, originator, config(**options), clock=clock, owner=owner)


def tick_for(dialer: Runner, clock: Clock, seconds: int) -> None:
    """One tick a second, as the service does."""
    for _ in range(seconds):
        dialer.tick()
        clock.advance(seconds=1)


# ---- capacity ---------------------------------------------------------------------------------------


def test_never_more_calls_at_once_than_the_cap(store: CampaignStore, clock: Clock) -> None:
    campaign(store, 10)
    originator = RecordingOriginator()
    dialer = runner(store, originator, clock, max_concurrent=3)
    for _ in range(20):
        dialer.tick()
        clock.advance(seconds=5)
        assert len(originator.live) <= 3
    assert len(originator.placed) == 3
    assert store.open_count() == 3
    first = originator.placed[0].channel_id
    originator.end(first, Outcome.BUSY, 17)
    dialer.tick()
    assert len(originator.placed) == 4, "a finished call frees its place at the next tick"
    assert len(originator.live) == 3


def test_the_cap_counts_calls_of_every_dialer(store: CampaignStore, clock: Clock, tmp_path: Path) -> None:
    campaign(store, 10)
    first, second = RecordingOriginator(), RecordingOriginator()
    tick_for(runner(store, first, clock, max_concurrent=2, owner="one"), clock, 3)
    other_store = CampaignStore(tmp_path / "dialer.db", clock=clock)
    clock.advance(seconds=5)
    runner(other_store, second, clock, max_concurrent=2, owner="two").tick()
    assert (len(first.placed), len(second.placed)) == (2, 0)


def test_calls_per_minute_spreads_the_calls(store: CampaignStore, clock: Clock) -> None:
    campaign(store, 20)
    originator = RecordingOriginator()
    dialer = runner(store, originator, clock, max_concurrent=10, calls_per_minute=4)
    started: list[datetime] = []
    for _ in range(120):  # two minutes, one tick a second
        before = len(originator.placed)
        dialer.tick()
        started += [clock.now] * (len(originator.placed) - before)
        clock.advance(seconds=1)
    assert len(started) == 8
    gaps = [later - earlier for earlier, later in itertools.pairwise(started)]
    assert all(gap >= timedelta(seconds=15) for gap in gaps), gaps
    for moment in started:  # never more than 4 in any 60 seconds
        assert sum(1 for other in started if moment - timedelta(seconds=60) < other <= moment) <= 4


# ---- the rules --------------------------------------------------------------------------------------


def test_nobody_is_called_outside_the_window(store: CampaignStore, clock: Clock) -> None:
    campaign(store, 3)
    originator = RecordingOriginator()
    clock.now = datetime(2026, 3, 15, 17, 0, tzinfo=UTC)  # Sunday 11:00 in Mexico City
    dialer = runner(store, originator, clock)
    dialer.tick()
    assert originator.placed == []
    status = store.status("marzo")
    assert status.waiting == {str(Reason.OUTSIDE_WINDOW): 3}
    assert status.next_at == datetime(2026, 3, 16, 14, 0, tzinfo=UTC)  # Monday 08:00 local
    clock.now = datetime(2026, 3, 16, 14, 0, tzinfo=UTC)
    tick_for(dialer, clock, 5)
    assert len(originator.placed) == 2, "two at once (max_concurrent), one a second at most"


def one_target(store: CampaignStore, phone: str, timezone: str | None = None) -> None:
    store.ensure_campaign("marzo")
    store.upsert_targets("marzo", [target(1, phone=phone, timezone=timezone)])
    store.start_campaign("marzo")


def test_a_customer_in_another_zone_is_not_called_at_six_in_the_morning(store: CampaignStore, clock: Clock) -> None:
    """A router import has no zone per customer: the number's own zone (Tijuana) is checked, not only the
    campaign's (Mexico City), so 08:00 in the campaign's zone is not 06:00 for the customer."""
    one_target(store, "+52 664 123 4567")
    originator = RecordingOriginator()
    clock.now = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)  # Tuesday 08:00 Mexico City, 07:00 Tijuana (US DST)
    dialer = runner(store, originator, clock)
    zones = dialer.zones(candidate_of(target(1, phone="+526641234567")))
    assert [zone.key for zone in zones] == ["America/Mexico_City", "America/Tijuana"]
    dialer.tick()
    assert originator.placed == []
    status = store.status("marzo")
    assert status.waiting == {str(Reason.OUTSIDE_WINDOW): 1}
    assert status.next_at == datetime(2026, 3, 10, 15, 0, tzinfo=UTC)  # 08:00 in Tijuana
    clock.now = datetime(2026, 3, 10, 14, 59, tzinfo=UTC)
    dialer.tick()
    assert originator.placed == []
    clock.now = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
    dialer.tick()
    assert originator.numbers == ["+526641234567"]


def test_six_in_the_morning_in_winter_too(store: CampaignStore, clock: Clock) -> None:
    one_target(store, "+526641234567")
    originator = RecordingOriginator()
    clock.now = datetime(2026, 2, 3, 14, 0, tzinfo=UTC)  # Tuesday 08:00 Mexico City, 06:00 Tijuana
    dialer = runner(store, originator, clock)
    dialer.tick()
    assert originator.placed == []
    assert store.status("marzo").next_at == datetime(2026, 2, 3, 16, 0, tzinfo=UTC)


def test_a_number_with_several_zones_is_called_only_inside_all_of_them(store: CampaignStore, clock: Clock) -> None:
    """+52 649 may be in Mazatlán or in Mexico City (libphonenumber's data): both windows must be open."""
    one_target(store, "+52 649 123 4567")
    originator = RecordingOriginator()
    dialer = runner(store, originator, clock)
    assert [zone.key for zone in dialer.zones(candidate_of(target(1, phone="+526491234567")))] == [
        "America/Mexico_City",
        "America/Mazatlan",
    ]
    clock.now = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)  # 08:30 Mexico City, 07:30 Mazatlán
    dialer.tick()
    assert originator.placed == []
    assert store.status("marzo").next_at == datetime(2026, 3, 10, 15, 0, tzinfo=UTC)  # 08:00 in Mazatlán
    clock.now = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
    dialer.tick()
    assert originator.numbers == ["+526491234567"]


def test_the_latest_zone_of_a_number_closes_the_window(store: CampaignStore, clock: Clock) -> None:
    """A Spanish mobile may be in Madrid or in the Canaries; the campaign runs on Canary time, so the evening
    end is Madrid's, an hour earlier."""
    one_target(store, "+34 612 345 678")
    originator = RecordingOriginator()
    clock.now = datetime(2026, 2, 3, 18, 0, tzinfo=UTC)  # Tuesday 19:00 Madrid, 18:00 Canaries
    dialer = runner(store, originator, clock, timezone=ZoneInfo("Atlantic/Canary"))
    dialer.tick()
    assert originator.placed == []
    assert store.status("marzo").next_at == datetime(2026, 2, 4, 8, 0, tzinfo=UTC)  # 09:00 Madrid, 08:00 islands
    clock.now = datetime(2026, 2, 4, 8, 0, tzinfo=UTC)
    dialer.tick()
    assert originator.numbers == ["+34612345678"]


def test_a_customers_own_zone_wins_over_the_numbers(store: CampaignStore, clock: Clock) -> None:
    """A CSV that gives the customer's zone is believed: a Tijuana mobile whose owner lives in Mexico City."""
    one_target(store, "+526641234567", timezone="America/Mexico_City")
    originator = RecordingOriginator()
    clock.now = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)  # 08:00 Mexico City
    dialer = runner(store, originator, clock)
    own = candidate_of(target(1, phone="+526641234567", timezone="America/Mexico_City"))
    assert [zone.key for zone in dialer.zones(own)] == ["America/Mexico_City"]
    dialer.tick()
    assert originator.numbers == ["+526641234567"]


def test_a_number_without_a_known_zone_uses_the_campaigns(store: CampaignStore, clock: Clock) -> None:
    dialer = runner(store, RecordingOriginator(), clock)
    candidate = candidate_of(target(1, phone="+80012345678"))  # a universal freephone number: no zone
    assert [zone.key for zone in dialer.zones(candidate)] == ["America/Mexico_City"]
    unknown = replace(candidate, timezone="Mars/Olympus_Mons")
    assert [zone.key for zone in dialer.zones(unknown)] == ["America/Mexico_City"]


def candidate_of(data: TargetData) -> Candidate:
    """The target as the rules see it, for the zones alone."""
    return Candidate(
        target_id=1,
        campaign="marzo",
        customer_id=data.customer_id,
        name=data.name,
        phone=data.phone,
        timezone=data.timezone,
        promise_date=None,
        history=(),
        attempts_in_campaign=0,
        opted_out=False,
    )


def test_a_busy_customer_is_not_called_again_the_same_day(store: CampaignStore, clock: Clock) -> None:
    campaign(store, 1)
    originator = RecordingOriginator()
    dialer = runner(store, originator, clock)
    dialer.tick()
    [call] = originator.placed
    originator.end(call.channel_id, Outcome.BUSY, 17)
    report = dialer.tick()
    assert report.ended == [call.attempt_id]
    for _ in range(12):  # the rest of the day
        clock.advance(hours=1)
        dialer.tick()
    assert len(originator.placed) == 1
    clock.now = TUESDAY_10 + timedelta(days=1)
    dialer.tick()
    assert len(originator.placed) == 2, "the next day the retry is allowed"
    [row, _] = store.report("marzo")
    assert (row["outcome"], row["hangup_cause"], row["counted"]) == ("busy", 17, 1)


def test_a_promise_to_pay_holds_calls_until_after_the_date(store: CampaignStore, clock: Clock) -> None:
    campaign(store, 1)
    originator = RecordingOriginator()
    dialer = runner(store, originator, clock, policy=policy(cooldown=timedelta(days=2)))
    dialer.tick()
    [call] = originator.placed
    store.record_outcome(call.channel_id, Outcome.PROMISE_TO_PAY, promise_date=datetime(2026, 3, 20).date())
    originator.end(call.channel_id, Outcome.ANSWERED_HUMAN, 16)
    dialer.tick()
    [row] = store.report("marzo")
    assert row["outcome"] == "promise-to-pay", "the assistant's outcome survives the hangup"
    clock.now = datetime(2026, 3, 20, 16, 0, tzinfo=UTC)
    dialer.tick()
    assert len(originator.placed) == 1
    clock.now = datetime(2026, 3, 21, 15, 0, tzinfo=UTC)  # Saturday 09:00, the day after the promise
    dialer.tick()
    assert len(originator.placed) == 2


def test_an_opt_out_during_the_call_stops_every_campaign(store: CampaignStore, clock: Clock) -> None:
    campaign(store, 1, "marzo")
    campaign(store, 1, "abril")
    originator = RecordingOriginator()
    dialer = runner(store, originator, clock)
    dialer.tick()
    [call] = originator.placed  # one call only: the same customer and number are in both campaigns
    store.record_outcome(call.channel_id, Outcome.OPT_OUT, note="no me llamen")
    originator.end(call.channel_id, Outcome.ANSWERED_HUMAN, 16)
    clock.advance(days=8)
    dialer.tick()
    assert len(originator.placed) == 1
    assert store.status("marzo").targets == {"opted_out": 1}
    assert store.status("abril").targets == {"opted_out": 1}
    assert store.campaign("abril").state == "finished"


def test_paused_campaigns_place_no_calls(store: CampaignStore, clock: Clock) -> None:
    campaign(store, 2)
    store.pause_campaign("marzo")
    originator = RecordingOriginator()
    runner(store, originator, clock).tick()
    assert originator.placed == []


def test_a_campaign_finishes_when_nobody_is_left(store: CampaignStore, clock: Clock) -> None:
    campaign(store, 1)
    originator = RecordingOriginator()
    dialer = runner(store, originator, clock)
    dialer.tick()
    store.record_outcome(originator.placed[0].channel_id, Outcome.DISPUTE)
    assert store.campaign("marzo").state == "running", "not while the call is open"
    originator.end(originator.placed[0].channel_id, Outcome.ANSWERED_HUMAN, 16)
    report = dialer.tick()
    assert report.finished_campaigns == ["marzo"]
    assert store.campaign("marzo").state == "finished"


def test_exhausted_after_the_maximum_attempts(store: CampaignStore, clock: Clock) -> None:
    campaign(store, 1)
    originator = RecordingOriginator()
    dialer = runner(store, originator, clock, policy=policy(max_attempts=2))
    for day in range(4):
        clock.now = TUESDAY_10 + timedelta(days=day)
        dialer.tick()
        for call in originator.placed:
            if call.channel_id in originator.live:
                originator.end(call.channel_id, Outcome.NO_ANSWER, 19)
        dialer.tick()
    assert len(originator.placed) == 2
    assert store.status("marzo").targets == {"exhausted": 1}


# ---- failures ---------------------------------------------------------------------------------------


def test_a_refused_call_is_not_counted_and_the_dialer_backs_off(store: CampaignStore, clock: Clock) -> None:
    campaign(store, 3)
    originator = RecordingOriginator()
    dialer = runner(store, originator, clock)
    originator.refuse_next("Allocation failed")
    dialer.tick()
    [row] = store.report("marzo")
    assert (row["outcome"], row["counted"], row["state"]) == ("failed", 0, "ended")
    assert originator.placed == []
    clock.advance(seconds=10)
    dialer.tick()
    assert originator.placed == [], "no new call during the back-off"
    clock.advance(seconds=25)
    tick_for(dialer, clock, 3)
    assert len(originator.placed) == 2


def test_an_uncertain_originate_is_followed_not_repeated(store: CampaignStore, clock: Clock) -> None:
    campaign(store, 1)
    originator = RecordingOriginator()
    dialer = runner(store, originator, clock)
    originator.fail_with = DialUncertain("timed out")
    dialer.tick()
    [call] = originator.placed
    assert originator.watched == [call.channel_id]
    assert store.open_count() == 1
    originator.end(call.channel_id, Outcome.NO_ANSWER, 19)
    clock.advance(minutes=30)
    dialer.tick()
    assert len(originator.placed) == 1
    [row] = store.report("marzo")
    assert row["outcome"] == "no-answer"


# ---- recovery ---------------------------------------------------------------------------------------


def test_a_dead_dialers_call_that_is_still_up_is_adopted(store: CampaignStore, clock: Clock, tmp_path: Path) -> None:
    campaign(store, 1)
    asterisk = RecordingOriginator()
    runner(store, asterisk, clock, owner="dead").tick()  # ... and that dialer is never ticked again
    [call] = asterisk.placed
    clock.advance(minutes=3)  # its lease (2 minutes) runs out
    survivor = RecordingOriginator()
    survivor.presences[call.channel_id] = Presence.EXISTS
    heir = runner(CampaignStore(tmp_path / "dialer.db", clock=clock), survivor, clock, owner="heir")
    report = heir.tick()
    assert report.adopted == [call.attempt_id]
    assert survivor.watched == [call.channel_id]
    assert heir.following == {call.channel_id: call.attempt_id}
    survivor.end(call.channel_id, Outcome.ANSWERED_HUMAN, 16)
    heir.tick()
    [row] = store.report("marzo")
    assert row["outcome"] == "answered-human"


def test_a_dead_dialers_call_that_is_gone_is_unknown_and_not_redialled_today(
    store: CampaignStore, clock: Clock, tmp_path: Path
) -> None:
    campaign(store, 1)
    asterisk = RecordingOriginator()
    runner(store, asterisk, clock, owner="dead").tick()
    clock.advance(minutes=3)
    heir_originator = RecordingOriginator()  # the channel is not there: GONE
    heir = runner(CampaignStore(tmp_path / "dialer.db", clock=clock), heir_originator, clock, owner="heir")
    report = heir.tick()
    assert len(report.resolved) == 1
    assert heir_originator.placed == [], "never re-dialled blindly"
    for _ in range(8):
        clock.advance(hours=1)
        heir.tick()
    assert heir_originator.placed == []
    [row] = store.report("marzo")
    assert (row["outcome"], row["counted"]) == ("unknown", 1)
    assert "stopped before its result was known" in row["detail"]


def test_while_asterisk_cannot_be_asked_the_attempt_stays_open(
    store: CampaignStore, clock: Clock, tmp_path: Path
) -> None:
    campaign(store, 1)
    runner(store, RecordingOriginator(), clock, owner="dead").tick()
    clock.advance(minutes=3)
    blind = RecordingOriginator()
    [attempt] = store.open_attempts()
    blind.presences[attempt.channel_id] = Presence.UNKNOWN
    heir = runner(CampaignStore(tmp_path / "dialer.db", clock=clock), blind, clock, owner="heir")
    heir.tick()
    clock.advance(days=1)
    heir.tick()
    assert blind.placed == []
    assert store.open_count() == 1


def test_stopping_drains_then_hands_the_open_calls_over(store: CampaignStore, clock: Clock) -> None:
    campaign(store, 3)
    originator = RecordingOriginator()
    dialer = runner(store, originator, clock)
    tick_for(dialer, clock, 3)
    assert len(originator.placed) == 2
    originator.end(originator.placed[0].channel_id, Outcome.BUSY, 17)
    stop = threading.Event()
    stop.set()
    dialer.run(stop, interval=0.01, drain_timeout=0.2, sleep=lambda _seconds: None)
    assert len(originator.placed) == 2, "no new call once stopping"
    [still_open] = store.open_attempts()
    assert still_open.lease_until is not None
    assert still_open.lease_until < clock.now
    assert [attempt.attempt_id for attempt in store.expired_attempts(clock.now)] == [still_open.attempt_id]


# ---- a real crash -----------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import os, sys, time
    from datetime import datetime, timedelta
    sys.path.insert(0, sys.argv[3])
    sys.path.insert(0, sys.argv[4])
    from dialer_helpers import Clock, config
    from centralita.dialer.originator import CallEvent, EventKind, Presence
    from centralita.dialer.outcomes import Outcome
    from centralita.dialer.runner import Runner
    from centralita.dialer.store import CampaignStore

    log_path = sys.argv[2]

    class Originator:
        def __init__(self):
            self.age = {}
        def originate(self, request):
            with open(log_path, "a") as log:  # what Asterisk dialled, on disk before anything else
                log.write(f"{request.channel_id} {request.number}\\n")
                log.flush()
                os.fsync(log.fileno())
            self.age[request.channel_id] = 0
        def watch(self, channel_id):
            pass
        def forget(self, channel_id):
            self.age.pop(channel_id, None)
        def poll(self):
            events = []
            for channel_id in list(self.age):
                self.age[channel_id] += 1
                if self.age[channel_id] == 3:
                    events.append(CallEvent(EventKind.ENDED, channel_id, Outcome.NO_ANSWER, 19))
            return events
        def presence(self, channel_id):
            return Presence.GONE

    clock = Clock(datetime.fromisoformat(sys.argv[5]))
    store = CampaignStore(sys.argv[1], clock=clock)
    runner = Runner(store, Originator(), config(max_concurrent=3, calls_per_minute=60), clock=clock, owner="child")
    while True:
        runner.tick()
        clock.advance(seconds=2)
        time.sleep(0.02)
    """
)


def test_sigkill_mid_campaign_loses_no_attempt_and_dials_nobody_twice(tmp_path: Path) -> None:
    database, dial_log, script = tmp_path / "dialer.db", tmp_path / "dialled.txt", tmp_path / "child.py"
    script.write_text(CHILD)
    with CampaignStore(database) as setup:
        campaign(setup, 12)
    tests = Path(__file__).resolve().parent
    child = subprocess.Popen(
        [sys.executable, str(script), str(database), str(dial_log), str(SRC), str(tests), TUESDAY_10.isoformat()],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if dial_log.exists() and len(dial_log.read_text().splitlines()) >= 5:
                break
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else "the child died"
            time.sleep(0.01)
        else:
            pytest.fail("the child dialer placed fewer than 5 calls in 30 s")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stderr:
            child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    dialled_by_child = [line.split() for line in dial_log.read_text().splitlines()]

    clock = Clock(TUESDAY_10 + timedelta(minutes=30))  # later the same day: every lease has expired
    store = CampaignStore(database, clock=clock)
    attempts = {row["channel_id"]: row for row in store.report("marzo")}
    assert {channel for channel, _ in dialled_by_child} <= set(attempts), "every dialled call has its attempt row"
    assert store.open_attempts(), "the kill left at least one call open (each stays open for three ticks)"

    heir = RecordingOriginator()
    dialer = Runner(store, heir, config(max_concurrent=3, calls_per_minute=60), clock=clock, owner="heir")
    for _ in range(60):
        dialer.tick()
        for request in list(heir.placed):
            if request.channel_id in heir.live:
                heir.end(request.channel_id, Outcome.NO_ANSWER, 19)
        clock.advance(seconds=2)
    assert store.open_count() == 0
    numbers = [number for _, number in dialled_by_child] + heir.numbers
    assert sorted(numbers) == sorted(set(numbers)), "somebody was dialled twice the same day"
    assert len(numbers) == 12, "every customer was called once"
    unknown = [row for row in store.report("marzo") if row["outcome"] == "unknown"]
    assert unknown, "the calls open at the kill are resolved as unknown"
    assert all(row["counted"] == 1 for row in unknown)


def test_runner_config_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="max_concurrent"):
        RunnerConfig(policy=policy(), timezone=MEXICO, max_concurrent=0)


def test_an_end_is_not_lost_when_the_database_fails_to_record_it(
    store: CampaignStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign(store, 1)
    originator = RecordingOriginator()
    dialer = runner(store, originator, clock)
    dialer.tick()
    [call] = originator.placed
    originator.end(call.channel_id, Outcome.BUSY, 17)
    real_finish = store.finish_attempt

    def locked(*args: object, **kwargs: object) -> bool:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(store, "finish_attempt", locked)
    with pytest.raises(sqlite3.OperationalError):
        dialer.tick()
    monkeypatch.setattr(store, "finish_attempt", real_finish)
    report = dialer.tick()
    assert report.ended == [call.attempt_id]
    [row] = store.report("marzo")
    assert row["outcome"] == "busy"
