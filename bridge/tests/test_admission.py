"""Admission of calls: the box limit, the per-caller limits, the budget, on a fake clock."""

from __future__ import annotations

import threading

import pytest

from centralita.calls.admission import Admission, AdmissionLimits, Refusal


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_box_limit_refuses_the_call_over_it_and_frees_a_place_when_a_call_ends() -> None:
    admission = Admission(AdmissionLimits(max_calls=2))
    assert admission.admit("a", "+525550000001") is None
    assert admission.admit("b", "+525550000002") is None
    assert admission.admit("c", "+525550000003") is Refusal.BOX_FULL
    assert admission.active == 2
    admission.release("a")
    assert admission.admit("c", "+525550000003") is None
    assert admission.refused[Refusal.BOX_FULL] == 1


def test_outbound_calls_count_against_the_box_limit_but_not_against_a_caller() -> None:
    admission = Admission(AdmissionLimits(max_calls=2, max_per_caller=1, max_per_caller_per_minute=1))
    assert admission.admit("out-1", "+525550000001", outbound=True) is None
    assert admission.admit("out-2", "+525550000001", outbound=True) is None
    assert admission.admit("in-1", "+525550000009") is Refusal.BOX_FULL


def test_one_number_gets_at_most_its_simultaneous_calls_whatever_its_format() -> None:
    admission = Admission(AdmissionLimits(max_per_caller=1))
    assert admission.admit("a", "+52 555 000 0001") is None
    assert admission.admit("b", "+525550000001") is Refusal.CALLER_BUSY
    assert admission.admit("c", "+525550000002") is None
    admission.release("a")
    assert admission.admit("b", "+525550000001") is None


def test_withheld_numbers_share_one_count() -> None:
    admission = Admission(AdmissionLimits(max_per_caller=2))
    assert admission.admit("a", "") is None
    assert admission.admit("b", "anonymous") is None
    assert admission.admit("c", "  ") is Refusal.CALLER_BUSY


def test_a_caller_redialling_in_a_loop_stays_refused_until_they_pause_a_minute() -> None:
    clock = Clock()
    admission = Admission(AdmissionLimits(max_per_caller_per_minute=3), clock=clock)
    for n in range(3):
        assert admission.admit(f"call-{n}", "+525550000001") is None
        admission.release(f"call-{n}")
        clock.now += 5
    for n in range(3, 8):  # refused attempts count as attempts
        assert admission.admit(f"call-{n}", "+525550000001") is Refusal.CALLER_RATE
        clock.now += 10
    assert admission.admit("other", "+525550000002") is None
    clock.now += 60
    assert admission.admit("later", "+525550000001") is None
    assert admission.refused[Refusal.CALLER_RATE] == 5


def test_a_spent_budget_refuses_inbound_calls_only_after_the_other_limits() -> None:
    spent = threading.Event()
    admission = Admission(AdmissionLimits(max_calls=1), budget_spent=spent.is_set)
    assert admission.admit("a", "+525550000001") is None
    spent.set()
    assert admission.admit("b", "+525550000002") is Refusal.BOX_FULL
    admission.release("a")
    assert admission.admit("b", "+525550000002") is Refusal.BUDGET_SPENT
    assert admission.admit("out", "+525550000003", outbound=True) is None  # the dialer's own calls finish


def test_admitting_the_same_call_twice_holds_one_place() -> None:
    admission = Admission(AdmissionLimits(max_calls=1))
    assert admission.admit("a", "1") is None
    assert admission.admit("a", "1") is None
    assert admission.active == 1


def test_the_table_of_callers_forgets_numbers_that_went_quiet() -> None:
    clock = Clock()
    admission = Admission(AdmissionLimits(max_per_caller_per_minute=5), clock=clock)
    for n in range(100):
        admission.admit(f"call-{n}", f"+52555{n:07d}")
        admission.release(f"call-{n}")
    clock.now += 61
    admission.admit("new", "+525559999999")
    assert len(admission._starts) == 1


def test_negative_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="max_calls must be 0"):
        AdmissionLimits(max_calls=-1)


def test_concurrent_admissions_never_exceed_the_box_limit() -> None:
    admission = Admission(AdmissionLimits(max_calls=10))
    admitted: list[str] = []
    lock = threading.Lock()

    def take(n: int) -> None:
        if admission.admit(f"call-{n}", f"+5255500{n:05d}") is None:
            with lock:
                admitted.append(f"call-{n}")

    threads = [threading.Thread(target=take, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 10
    assert admission.refused[Refusal.BOX_FULL] == 40
