"""``CallIdentity``: the state of one call's verification, on its own (the tools' use of it is tested elsewhere)."""

from __future__ import annotations

import threading

import pytest

from centralita.config.network import Requirement
from centralita.isp.customers import Customer
from centralita.tools.identity import CallIdentity, Method


def service(name: str, dni: str, plan: str = "20M") -> Customer:
    return Customer(service=name, name="Titular", dni=dni, phones=(), plan=plan, router="nucleo")


def test_a_call_starts_unverified_and_satisfies_nothing() -> None:
    identity = CallIdentity()
    assert (identity.state, identity.verified) == ("unverified", None)
    for requirement in Requirement:
        assert not identity.satisfies(requirement)
    assert repr(identity) == "CallIdentity(unverified)"


@pytest.mark.parametrize(
    ("methods", "satisfied"),
    [
        ({Method.CALLER_ID}, {Requirement.ANY}),
        ({Method.DNI}, {Requirement.ANY, Requirement.DNI}),
        ({Method.CALLER_ID, Method.DNI}, {Requirement.ANY, Requirement.DNI, Requirement.BOTH}),
    ],
)
def test_what_each_method_allows(methods: set[Method], satisfied: set[Requirement]) -> None:
    identity = CallIdentity()
    for method in methods:
        assert identity.verify("45678901", [service("luis.hernandez", "45678901")], method) is not None
    assert {requirement for requirement in Requirement if identity.satisfies(requirement)} == satisfied


def test_methods_add_up_for_one_customer_and_never_switch_to_another() -> None:
    identity = CallIdentity()
    identity.verify("45678901", [service("luis.hernandez", "45678901")], Method.CALLER_ID)
    both = identity.verify(
        "45678901", [service("luis.local", "45678901", "10M"), service("luis.hernandez", "45678901")], Method.DNI
    )
    assert both is not None
    assert both.methods == {Method.CALLER_ID, Method.DNI}
    assert [customer.service for customer in both.services] == ["luis.hernandez", "luis.local"]  # sorted
    assert both.labels() == [{"servicio": "1", "plan": "20M"}, {"servicio": "2", "plan": "10M"}]
    assert identity.verify("12345678", [service("maria.pena", "12345678")], Method.DNI) is None
    assert identity.verified is both  # unchanged
    assert repr(identity) == "CallIdentity(verified by caller_id,dni)"
    assert "45678901" not in repr(identity)


@pytest.mark.parametrize(
    ("label", "found"),
    [
        ("1", "luis.hernandez"),
        (" 2 ", "luis.local"),
        ("3", None),
        ("0", None),
        ("-1", None),
        ("luis.hernandez", None),
        ("", None),
    ],
)
def test_services_are_named_by_label_only(label: str, found: str | None) -> None:
    identity = CallIdentity()
    verified = identity.verify(
        "45678901", [service("luis.hernandez", "45678901"), service("luis.local", "45678901")], Method.DNI
    )
    assert verified is not None
    chosen = verified.service(label)
    assert (chosen.service if chosen else None) == found


def test_verification_needs_a_customer_and_a_method() -> None:
    identity = CallIdentity()
    with pytest.raises(ValueError, match="a method"):
        identity.verify("45678901", [service("luis.hernandez", "45678901")])
    with pytest.raises(ValueError, match="at least one service"):
        identity.verify("45678901", [], Method.DNI)


def test_lookups_are_counted_up_to_the_limit_from_many_threads() -> None:
    identity = CallIdentity()
    taken: list[bool] = []
    lock = threading.Lock()

    def take() -> None:
        result = identity.take_lookup(5)
        with lock:
            taken.append(result)

    threads = [threading.Thread(target=take) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert taken.count(True) == 5
    assert identity.lookups == 5


def test_the_caller_check_is_remembered() -> None:
    identity = CallIdentity(caller_id_usable=False)
    assert not identity.caller_id_usable
    assert not identity.caller_checked
    identity.caller_check_done(2)
    assert (identity.caller_checked, identity.caller_found) == (True, 2)
