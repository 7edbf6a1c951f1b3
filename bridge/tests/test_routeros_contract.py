"""Contract tests: the real librouteros (as RouterClient uses it) against the fake router, over TCP.

These pin the behaviour the tools rely on (replies, errors, queries, `!empty`, UTF-8) and show the
librouteros traps that RouterClient works around.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import librouteros
import pytest
from librouteros.api import Api
from librouteros.exceptions import ConnectionClosed, FatalError, MultiTrapError, ProtocolError, TrapError
from librouteros.query import And, Key, Or

from centralita_testing.fake_routeros.server import FakeRouterOS

USER = "api-soporte"
PASSWORD = "s3creto-2025"
TIMEOUT = 2.0


@pytest.fixture
def router() -> Iterator[FakeRouterOS]:
    with FakeRouterOS(None, USER, PASSWORD) as fake:
        yield fake


def _connect(router: FakeRouterOS, **options: object) -> Api:
    settings: dict[str, object] = {"port": router.port, "timeout": TIMEOUT, "encoding": "utf-8", **options}
    return librouteros.connect(router.host, USER, PASSWORD, **settings)


@pytest.fixture
def api(router: FakeRouterOS) -> Iterator[Api]:
    connection = _connect(router)
    yield connection
    connection.close()


def test_login_and_print_all_secrets(api: Api, router: FakeRouterOS) -> None:
    rows = list(api.path("ppp", "secret"))
    assert [row["name"] for row in rows] == [row["name"] for row in router.table("/ppp/secret")]
    assert len(rows) == 6
    assert rows[0][".id"] == "*1"
    assert rows[0]["disabled"] is False  # printed `false`, cast by librouteros
    assert rows[4]["disabled"] is True


def test_wrong_password_is_a_trap_with_the_router_text(router: FakeRouterOS) -> None:
    with pytest.raises(TrapError) as caught:
        librouteros.connect(router.host, USER, "wrong", port=router.port, timeout=TIMEOUT, encoding="utf-8")
    assert str(caught.value) == "invalid user name or password (6)"


def test_unknown_user_is_the_same_trap(router: FakeRouterOS) -> None:
    with pytest.raises(TrapError, match=r"invalid user name or password \(6\)"):
        librouteros.connect(router.host, "nadie", PASSWORD, port=router.port, timeout=TIMEOUT, encoding="utf-8")


def test_librouteros_leaves_the_socket_open_after_a_failed_login(router: FakeRouterOS) -> None:
    """The trap RouterClient works around: TrapError at login does not close the socket."""
    sockets: list[socket.socket] = []

    def keep(sock: socket.socket) -> socket.socket:
        sockets.append(sock)
        return sock

    with pytest.raises(TrapError):
        librouteros.connect(router.host, USER, "wrong", port=router.port, timeout=TIMEOUT, ssl_wrapper=keep)
    assert sockets[0].fileno() != -1  # still open
    sockets[0].close()


def test_utf8_round_trip(api: Api, router: FakeRouterOS) -> None:
    secrets = api.path("ppp", "secret")
    comment = "tel=+5215559998888;dni=99887766;nombre=Íñigo Muñoz Peña;plan=20M"
    new_id = secrets.add(name="inigo.munoz", password="x", profile="plan-20M", comment=comment)
    stored = next(row for row in router.table("/ppp/secret") if row[".id"] == new_id)
    assert stored["comment"] == comment
    [row] = secrets.select(Key("comment")).where(Key("name") == "maria.pena")
    assert "nombre=María Peña" in str(row["comment"])
    [row] = secrets.select(Key("name")).where(Key("comment") == comment)
    assert row["name"] == "inigo.munoz"


def test_ascii_default_encoding_loses_non_ascii_letters(router: FakeRouterOS) -> None:
    """Why RouterClient passes encoding="utf-8": librouteros' ASCII default drops `ñ` and refuses to send it."""
    ascii_api = _connect(router, encoding="ASCII")
    try:
        [row] = ascii_api.path("ppp", "secret").select(Key("comment")).where(Key("name") == "maria.pena")
        assert "nombre=Mara Pea" in str(row["comment"])
        with pytest.raises(UnicodeEncodeError):
            ascii_api.path("ppp", "secret").add(name="x", password="y", comment="Peña")
    finally:
        ascii_api.close()


def test_unknown_path_is_two_traps(api: Api) -> None:
    with pytest.raises(MultiTrapError) as caught:
        list(api.path("ip", "adress"))
    messages = [trap.message for trap in caught.value.traps]
    assert messages == ["no such command or directory (adress)", "no such command prefix"]
    assert caught.value.traps[0].category == 0
    # the connection is still in step after a trap
    assert len(list(api.path("queue", "simple"))) == 6


def test_unknown_command_on_a_known_path(api: Api) -> None:
    with pytest.raises(MultiTrapError, match="no such command prefix"):
        tuple(api.path("ppp", "active")("add", name="x"))


def test_empty_print_returns_nothing(api: Api, router: FakeRouterOS) -> None:
    assert list(api.path("ppp", "secret").select(Key("name")).where(Key("name") == "nadie")) == []
    assert ["/ppp/secret/print", "=.proplist=name", "?=name=nadie"] in router.received()
    # ... and the next command is answered normally (the `!empty` was consumed)
    assert len(list(api.path("ppp", "active"))) == 4


def test_query_equal_and_boolean(api: Api) -> None:
    rows = api.path("ppp", "secret").select(Key("name")).where(Key("disabled") == False)  # noqa: E712
    assert "carmen.nunez" not in [row["name"] for row in rows]
    rows = api.path("ppp", "secret").select(Key("name")).where(Key("disabled") == True)  # noqa: E712
    assert [row["name"] for row in rows] == ["carmen.nunez"]


def test_query_not_equal(api: Api) -> None:
    rows = api.path("ip", "firewall", "address-list").select(Key("address")).where(Key("list") != "morosos")
    assert [row["address"] for row in rows] == ["192.168.88.0/24"]


def test_query_less_and_greater(api: Api) -> None:
    names = [row["name"] for row in api.path("ppp", "secret").select(Key("name")).where(Key("name") < "c")]
    assert names == ["ana.garcia"]
    ids = [row[".id"] for row in api.path("ppp", "secret").select(Key(".id")).where(Key(".id") > "*4")]
    assert ids == ["*5", "*6"]
    between = api.path("ppp", "secret").select(Key("name")).where(Key(".id") > "*1", Key(".id") < "*3")
    assert [row["name"] for row in between] == ["jose.munoz"]


def test_query_or_with_in_and_combinators(api: Api) -> None:
    queues = api.path("queue", "simple")
    rows = queues.select(Key("name")).where(Key("target").In("10.20.0.11/32", "10.20.0.16/32"))
    assert [row["name"] for row in rows] == ["cli-12345678", "cli-67890123"]
    rows = queues.select(Key("name")).where(
        Or(
            And(Key("disabled") == False, Key("max-limit") == "512k/512k"),  # noqa: E712
            Key("name") == "cli-56789012",
        )
    )
    assert [row["name"] for row in rows] == ["cli-45678901", "cli-56789012"]


def test_query_presence_and_absence(api: Api, router: FakeRouterOS) -> None:
    api.path("ip", "firewall", "address-list").add(list="morosos", address="10.20.0.16")
    with_comment = list(api.rawCmd("/ip/firewall/address-list/print", "=.proplist=address", "?comment"))
    assert "10.20.0.16" not in [row["address"] for row in with_comment]
    without = list(api.rawCmd("/ip/firewall/address-list/print", "=.proplist=address", "?-comment"))
    assert [row["address"] for row in without] == ["10.20.0.16"]


def test_proplist_limits_the_properties(api: Api) -> None:
    rows = list(api.path("ppp", "secret").select(Key(".id"), Key("name")))
    assert all(set(row) == {".id", "name"} for row in rows)
    rows = list(api.path("ppp", "secret").select(Key("name"), Key("no-such-property")))
    assert all(set(row) == {"name"} for row in rows)


def test_add_returns_a_hex_id(api: Api, router: FakeRouterOS) -> None:
    queues = api.path("queue", "simple")
    first = queues.add(name="cli-99887766", target="10.20.0.17", **{"max-limit": "5M/10M"})
    second = queues.add(target="10.20.0.18")
    assert (first, second) == ("*7", "*8")
    [row] = [row for row in router.table("/queue/simple") if row[".id"] == second]
    assert row["name"] == "queue1"  # RouterOS names an unnamed queue
    [row] = [row for row in router.table("/queue/simple") if row[".id"] == first]
    assert row["target"] == "10.20.0.17/32"
    assert row["max-limit"] == "5M/10M"


def test_ids_go_on_in_hex(api: Api) -> None:
    address_list = api.path("ip", "firewall", "address-list")
    ids = [address_list.add(list="prueba", address=f"10.99.0.{n}") for n in range(1, 10)]
    assert ids[-3:] == ["*A", "*B", "*C"]


def test_set_and_remove(api: Api, router: FakeRouterOS) -> None:
    secrets = api.path("ppp", "secret")
    secrets.update(**{".id": "*4", "disabled": True})
    assert router.table("/ppp/secret")[3]["disabled"] == "true"
    # disabling the secret does not end the session; removing the active row does
    active = [row for row in router.table("/ppp/active") if row["name"] == "luis.hernandez"]
    assert len(active) == 1
    api.path("ppp", "active").remove(active[0][".id"])
    assert "luis.hernandez" not in [row["name"] for row in router.table("/ppp/active")]
    # address-list: payment promise -> the entry goes
    morosos = api.path("ip", "firewall", "address-list").select(Key(".id")).where(Key("address") == "10.20.0.14")
    [entry] = list(morosos)
    api.path("ip", "firewall", "address-list").remove(str(entry[".id"]))
    assert "10.20.0.14" not in [row["address"] for row in router.table("/ip/firewall/address-list")]


def test_set_by_name_where_routeros_allows_it(api: Api, router: FakeRouterOS) -> None:
    tuple(api("/ppp/secret/set", numbers="pedro.sanchez", profile="plan-50M"))
    assert router.table("/ppp/secret")[5]["profile"] == "plan-50M"


@pytest.mark.parametrize("command", ["set", "remove"])
def test_unknown_id_is_no_such_item(api: Api, command: str) -> None:
    with pytest.raises(TrapError, match=r"^no such item \(4\)$"):
        tuple(api(f"/ppp/secret/{command}", **{".id": "*99", "comment": "x"} if command == "set" else {".id": "*99"}))
    with pytest.raises(TrapError, match="no such item"):
        tuple(api(f"/ppp/secret/{command}"))


def test_remove_of_several_ids_is_all_or_nothing(api: Api, router: FakeRouterOS) -> None:
    with pytest.raises(TrapError, match="no such item"):
        api.path("queue", "simple").remove("*1", "*99")
    assert len(router.table("/queue/simple")) == 6
    api.path("queue", "simple").remove("*1", "*2")
    assert [row[".id"] for row in router.table("/queue/simple")] == ["*3", "*4", "*5", "*6"]


def test_duplicate_address_list_entry_is_refused(api: Api, router: FakeRouterOS) -> None:
    address_list = api.path("ip", "firewall", "address-list")
    with pytest.raises(TrapError) as caught:
        address_list.add(list="morosos", address="10.20.0.14")
    assert str(caught.value) == "failure: already have such entry"
    with pytest.raises(TrapError, match="already have such entry"):
        address_list.add(list="morosos", address="10.20.0.15/32")  # the same address, written with its /32
    assert address_list.add(list="avisados", address="10.20.0.14")  # another list is fine
    assert len(router.table("/ip/firewall/address-list")) == 4


def test_timed_address_list_entry_is_dynamic(api: Api) -> None:
    address_list = api.path("ip", "firewall", "address-list")
    new_id = address_list.add(list="promesa-pago", address="10.20.0.14", timeout="3d")
    [row] = address_list.select(Key(".id"), Key("dynamic"), Key("timeout")).where(Key(".id") == new_id)
    assert row["dynamic"] is True
    assert str(row["timeout"]).startswith("2d23h59m") or row["timeout"] == "3d"
    [static] = address_list.select(Key("dynamic")).where(Key(".id") == "*2")
    assert static["dynamic"] is False


def test_unknown_parameter(api: Api) -> None:
    with pytest.raises(TrapError, match=r"^unknown parameter$"):
        api.path("ip", "firewall", "address-list").add(list="morosos", address="10.1.1.1", color="rojo")


def test_fatal_on_the_next_command(api: Api, router: FakeRouterOS) -> None:
    router.faults.fatal_next("simulated failure")
    with pytest.raises(FatalError, match="simulated failure"):
        list(api.path("ppp", "active"))
    assert router.wait_until(lambda: router.open_connections == 0)


def test_drop_in_the_middle_of_a_reply(api: Api, router: FakeRouterOS) -> None:
    router.faults.drop_after(2)
    with pytest.raises(ConnectionClosed):
        list(api.path("ppp", "secret"))


def test_garbage_length_byte_is_a_protocol_error(api: Api, router: FakeRouterOS) -> None:
    router.faults.garbage_next()
    with pytest.raises(ProtocolError, match="controll byte"):
        list(api.path("ppp", "secret"))


def test_timeout_leaves_stale_rows_on_the_connection(api: Api, router: FakeRouterOS) -> None:
    """The librouteros hazard: after a timeout, the next command on the same Api gets the old reply."""
    api.protocol.transport.sock.settimeout(0.3)
    router.faults.set_delay(500)
    with pytest.raises(TimeoutError):
        list(api.path("ppp", "secret"))
    router.faults.set_delay(0)
    api.protocol.transport.sock.settimeout(TIMEOUT)
    stale = list(api.path("queue", "simple"))
    assert "password" in stale[0]  # secrets, not queues: the answer to the command that timed out
    assert [row["name"] for row in stale][:2] == ["maria.pena", "jose.munoz"]
