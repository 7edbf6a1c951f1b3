"""The fake router's command semantics without sockets: the query stack, durations, timed entries."""

from __future__ import annotations

import pytest

from centralita_testing.fake_routeros.state import (
    QueryError,
    RouterState,
    format_duration,
    parse_duration,
    query_matches,
)

ROW = {".id": "*A", "name": "maria.pena", "disabled": "false", "comment": "", "limit-bytes-in": "100"}


@pytest.mark.parametrize(
    ("queries", "expected"),
    [
        ([], True),
        (["?name"], True),
        (["?caller-id"], False),
        (["?-caller-id"], True),
        (["?-name"], False),
        (["?=name=maria.pena"], True),
        (["?name=maria.pena"], True),
        (["?name=jose"], False),
        (["?disabled=no"], True),
        (["?disabled=false"], True),
        (["?disabled=yes"], False),
        (["?=comment="], True),
        (["?>comment="], False),
        (["?<limit-bytes-in=99"], False),
        (["?<limit-bytes-in=101"], True),
        (["?>limit-bytes-in=20"], True),  # numbers compare as numbers, not text
        (["?>.id=*9"], True),  # ids by their hex value
        (["?<.id=*B"], True),
        (["?<missing=1"], False),
        (["?name=jose", "?#!"], True),
        (["?name=jose", "?name=maria.pena", "?#|"], True),
        (["?name=jose", "?name=maria.pena", "?#&"], False),
        (["?name=jose", "?name=ana", "?#|"], False),
        (["?name=jose", "?name=ana", "?name=maria.pena", "?#||"], True),
        (["?name=jose", "?name"], False),  # what is left is ANDed
        (["?name=jose", "?name", "?#0"], True),  # an index alone keeps only that entry
        (["?name=jose", "?name", "?#1"], False),
        (["?name=jose", "?name", "?#1.!|"], False),  # copy of index 1 (false), no-op, negate -> true | true
        (["?name=jose", "?#.|"], False),  # `.` copies the top: false | false
        (["?#!"], False),  # negating the endless true
        (["?#|"], True),
    ],
)
def test_query_stack(queries: list[str], expected: bool) -> None:
    assert query_matches(queries, ROW, booleans={"disabled"}) is expected


@pytest.mark.parametrize("word", ["name=x", "?#x", "?<=1", "?=", "?"])
def test_bad_query_words(word: str) -> None:
    with pytest.raises(QueryError):
        query_matches([word], ROW)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1d", 86400), ("2h30m", 9000), ("1w2d", 777600), ("500ms", 0.5), ("00:05:00", 300), ("1d00:00:10", 86410)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1x", "abc", "d1", "1d 2h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="time interval"):
        parse_duration(text)


def test_parse_duration_tolerates_surrounding_blanks() -> None:
    assert parse_duration(" 1d ") == 86400


def test_format_duration() -> None:
    assert format_duration(0) == "0s"
    assert format_duration(0.2) == "1s"
    assert format_duration(86400 * 9 + 3661) == "1w2d1h1m1s"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_timed_entry_counts_down_and_expires() -> None:
    clock = Clock()
    state = RouterState(clock=clock)
    [[done, ret]] = state.execute(
        "/ip/firewall/address-list/add", {"list": "x", "address": "1.2.3.4", "timeout": "1h"}, []
    )
    assert done == "!done"
    new_id = ret.removeprefix("=ret=")
    clock.now += 600
    [row] = [row for row in state.table("/ip/firewall/address-list") if row[".id"] == new_id]
    assert (row["dynamic"], row["timeout"]) == ("true", "50m")
    # set a longer timeout, then let it run out
    assert state.execute("/ip/firewall/address-list/set", {".id": new_id, "timeout": "2h"}, []) == [["!done"]]
    clock.now += 7200
    assert new_id not in [row[".id"] for row in state.table("/ip/firewall/address-list")]
    # once gone, the same entry may be added again
    assert state.execute("/ip/firewall/address-list/add", {"list": "x", "address": "1.2.3.4"}, [])[0][0] == "!done"


def test_fixture_timeouts_expire_too() -> None:
    clock = Clock()
    fixture = {"tables": {"/ip/firewall/address-list": [{"list": "x", "address": "1.1.1.1", "timeout": "10s"}]}}
    state = RouterState(fixture, clock=clock)
    assert state.table("/ip/firewall/address-list")[0]["dynamic"] == "true"
    clock.now += 11
    assert state.table("/ip/firewall/address-list") == []


@pytest.mark.parametrize(
    ("command", "attributes", "message"),
    [
        ("/ip/firewall/address-list/add", {"list": "x"}, "=message=failure: address not specified"),
        ("/ip/firewall/address-list/add", {"list": "x", "address": "1.1.1.1", "disabled": "quizá"}, "must be one of"),
        ("/ip/firewall/address-list/add", {"list": "x", "address": "1.1.1.1", "timeout": "pronto"}, "time interval"),
        ("/ip/firewall/address-list/add", {"list": "x", "address": "1.1.1.1", "creation-time": "x"}, "unknown param"),
        ("/ppp/secret/add", {"name": "maria.pena"}, "=message=failure: secret with the same name already exists"),
        ("/ppp/secret/set", {".id": "*2", "name": "maria.pena"}, "already exists"),
        ("/queue/simple/add", {"name": "cli-12345678", "target": "10.0.0.1"}, "queue with such name already exists"),
        ("/ip/firewall/address-list/set", {".id": "*3", "address": "10.20.0.14"}, "already have such entry"),
    ],
)
def test_refusals(command: str, attributes: dict[str, str], message: str) -> None:
    state = RouterState()
    before = state.snapshot()
    replies = state.execute(command, attributes, [])
    assert replies[0][0] == "!trap"
    assert any(message in word for word in replies[0])
    assert replies[-1] == ["!done"]
    assert state.snapshot() == before


def test_enable_disable_and_booleans_print_true_false() -> None:
    state = RouterState()
    assert state.execute("/ppp/secret/disable", {".id": "*1"}, []) == [["!done"]]
    assert state.table("/ppp/secret")[0]["disabled"] == "true"
    state.execute("/ppp/secret/enable", {"numbers": "maria.pena"}, [])
    assert state.table("/ppp/secret")[0]["disabled"] == "false"
    state.execute("/ppp/secret/set", {".id": "*1", "disabled": "yes"}, [])
    assert state.table("/ppp/secret")[0]["disabled"] == "true"


def test_removing_a_secret_keeps_its_session() -> None:
    state = RouterState()
    state.execute("/ppp/secret/remove", {".id": "*1"}, [])
    assert "maria.pena" in [row["name"] for row in state.table("/ppp/active")]
