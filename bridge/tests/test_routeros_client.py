"""RouterClient against the fake router: results, errors, and reconnecting after every kind of failure."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from polling import free_port

from centralita.isp.routeros.client import (
    API_SSL_PORT,
    RouterAuthError,
    RouterClient,
    RouterCommandError,
    RouterError,
    RouterUnavailable,
    connect,
    tls_wrapper,
)
from centralita_testing.fake_routeros.server import FakeRouterOS

USER = "api-soporte"
PASSWORD = "s3creto-2025"
SHORT = 0.3  # the timeout for tests that provoke one
SLOW_MS = 600  # a reply delay well past SHORT


@pytest.fixture
def router() -> Iterator[FakeRouterOS]:
    with FakeRouterOS(None, USER, PASSWORD) as fake:
        yield fake


@pytest.fixture
def client(router: FakeRouterOS) -> Iterator[RouterClient]:
    with RouterClient(router.host, USER, PASSWORD, port=router.port, timeout=SHORT) as router_client:
        yield router_client


def test_print_where_and_proplist(client: RouterClient) -> None:
    rows = client.print("/ppp/secret", where={"disabled": False, "profile": "plan-10M"}, proplist=["name", "comment"])
    assert rows == [
        {"name": "jose.munoz", "comment": "tel=+5215550002222;dni=23456789;cliente=10002;nombre=José Muñoz;plan=10M"},
        {
            "name": "luis.hernandez",
            "comment": "tel=+5215550004444;dni=45678901;cliente=10004;nombre=Luis Hernández;plan=10M",
        },
    ]


def test_print_accepts_menu_paths_in_several_spellings(client: RouterClient) -> None:
    assert client.print("ip/firewall/address-list") == client.print("/ip firewall address-list")
    with pytest.raises(ValueError, match="menu path"):
        client.print("/")


def test_print_nothing(client: RouterClient) -> None:
    assert client.print("/ppp/active", where={"name": "carmen.nunez"}) == []


def test_phone_numbers_and_ids_stay_strings(client: RouterClient, router: FakeRouterOS) -> None:
    client.add("/ppp/secret", name="cero", password="x", comment="0044")
    [row] = client.print("/ppp/secret", where={"name": "cero"}, proplist=["comment", "limit-bytes-in"])
    assert row == {"comment": "0044", "limit-bytes-in": 0}


def test_add_set_remove_round_trip(client: RouterClient, router: FakeRouterOS) -> None:
    new_id = client.add(
        "/ip/firewall/address-list", list="morosos", address="10.20.0.16", comment="dni=67890123 Sánchez"
    )
    assert new_id.startswith("*")
    assert int(new_id[1:], 16) > 0
    client.set("/ip/firewall/address-list", new_id, comment="promesa de pago", disabled=True)
    [row] = [row for row in router.table("/ip/firewall/address-list") if row[".id"] == new_id]
    assert (row["comment"], row["disabled"]) == ("promesa de pago", "true")
    client.remove("/ip/firewall/address-list", new_id)
    assert new_id not in [row[".id"] for row in router.table("/ip/firewall/address-list")]


def test_fields_with_hyphens_and_remove_several(client: RouterClient, router: FakeRouterOS) -> None:
    first = client.add("/queue/simple", name="cli-1", target="10.30.0.1", **{"max-limit": "1M/2M"})
    second = client.add("/queue/simple", name="cli-2", target="10.30.0.2")
    client.set("/queue/simple", first, **{"max-limit": "512k/512k"})
    assert router.table("/queue/simple")[-2]["max-limit"] == "512k/512k"
    client.remove("/queue/simple", [first, second])
    assert len(router.table("/queue/simple")) == 6


def test_utf8_round_trip(client: RouterClient, router: FakeRouterOS) -> None:
    comment = "tel=+5215550007777;dni=78901234;nombre=Begoña Peña Muñoz;plan=20M"
    client.add("/ppp/secret", name="begona", password="x", comment=comment)
    assert router.table("/ppp/secret")[-1]["comment"] == comment
    assert client.print("/ppp/secret", where={"comment": comment}, proplist=["name"]) == [{"name": "begona"}]


def test_router_errors_keep_the_connection(client: RouterClient, router: FakeRouterOS) -> None:
    client.print("/ppp/active")
    with pytest.raises(RouterCommandError) as duplicate:
        client.add("/ip/firewall/address-list", list="morosos", address="10.20.0.14")
    assert duplicate.value.message == "failure: already have such entry"
    with pytest.raises(RouterCommandError, match=r"no such item \(4\)"):
        client.set("/ppp/secret", "*63", disabled=True)
    with pytest.raises(RouterCommandError, match="no such item"):
        client.remove("/queue/simple", "*63")
    with pytest.raises(RouterCommandError) as unknown:
        client.print("/ip/adress")
    assert unknown.value.messages == ("no such command or directory (adress)", "no such command prefix")
    assert unknown.value.category == 0
    assert "no such command prefix" in str(unknown.value)
    assert client.print("/ppp/active", proplist=["name"])[0] == {"name": "maria.pena"}
    assert router.logins == 1  # a trap is a complete answer: no reconnect


def test_wrong_password_is_an_auth_error_and_the_socket_is_closed(router: FakeRouterOS) -> None:
    sockets: list[socket.socket] = []

    def keep(sock: socket.socket) -> socket.socket:
        sockets.append(sock)
        return sock

    bad = RouterClient(router.host, USER, "wrong", port=router.port, timeout=SHORT, ssl_wrapper=keep)
    with pytest.raises(RouterAuthError, match=r"invalid user name or password \(6\)"):
        bad.print("/ppp/secret")
    assert sockets[0].fileno() == -1  # closed by RouterClient (librouteros would leave it open)
    assert router.wait_until(lambda: router.open_connections == 0)
    assert not bad.connected
    with pytest.raises(RouterAuthError):
        connect(router.host, "nadie", PASSWORD, port=router.port, timeout=SHORT)


def test_connect_helper_logs_in_at_once(router: FakeRouterOS) -> None:
    with connect(router.host, USER, PASSWORD, port=router.port, timeout=SHORT) as client:
        assert client.connected
        assert router.logins == 1
        assert "connected=True" in repr(client)
        assert PASSWORD not in repr(client)


def test_unreachable_router() -> None:
    client = RouterClient("127.0.0.1", USER, PASSWORD, port=free_port(), timeout=SHORT)
    with pytest.raises(RouterUnavailable, match="cannot connect"):
        client.print("/ppp/secret")


def test_timeout_then_a_fresh_correct_answer(client: RouterClient, router: FakeRouterOS) -> None:
    """After a timeout the connection is discarded: the next call gets its own answer, not the late one."""
    client.connect()
    router.faults.set_delay(SLOW_MS)
    with pytest.raises(RouterUnavailable, match="TimeoutError"):
        client.print("/ppp/secret")
    assert not client.connected
    router.faults.set_delay(0)
    rows = client.print("/queue/simple")
    assert [row["name"] for row in rows][:2] == ["cli-12345678", "cli-23456789"]
    assert "password" not in rows[0]
    assert router.logins == 2


def test_timeout_on_login(router: FakeRouterOS) -> None:
    router.faults.set_delay(SLOW_MS)
    client = RouterClient(router.host, USER, PASSWORD, port=router.port, timeout=SHORT)
    with pytest.raises(RouterUnavailable, match="cannot connect"):
        client.connect()
    router.faults.set_delay(0)
    assert len(client.print("/ppp/active")) == 4


def test_dropped_connection_then_reconnect(client: RouterClient, router: FakeRouterOS) -> None:
    client.connect()
    router.faults.drop_after(3)  # three `!re` rows, then the connection goes
    with pytest.raises(RouterUnavailable, match="lost the connection"):
        client.print("/ppp/secret")
    assert len(client.print("/ppp/secret")) == 6
    assert router.logins == 2


def test_connection_closed_while_idle(client: RouterClient, router: FakeRouterOS) -> None:
    client.connect()
    router.faults.drop_after(0)
    with pytest.raises(RouterUnavailable):
        client.print("/ppp/active")
    assert len(client.print("/ppp/active")) == 4


def test_fatal_then_reconnect(client: RouterClient, router: FakeRouterOS) -> None:
    client.connect()
    router.faults.fatal_next("simulated failure")
    with pytest.raises(RouterUnavailable, match="ended the session: simulated failure"):
        client.print("/ppp/active")
    assert len(client.print("/ppp/active")) == 4


def test_fatal_at_login_is_unavailable(router: FakeRouterOS) -> None:
    router.faults.fatal_next("too many sessions")
    with pytest.raises(RouterUnavailable, match="too many sessions"):
        connect(router.host, USER, PASSWORD, port=router.port, timeout=SHORT)


def test_protocol_error_then_reconnect(client: RouterClient, router: FakeRouterOS) -> None:
    client.connect()
    router.faults.garbage_next()
    with pytest.raises(RouterUnavailable, match="protocol error"):
        client.print("/ppp/secret")
    assert len(client.print("/ppp/secret")) == 6


def test_no_library_exception_escapes(client: RouterClient, router: FakeRouterOS) -> None:
    for arm in (
        lambda: router.faults.set_delay(SLOW_MS),
        lambda: router.faults.drop_after(1),
        lambda: router.faults.fatal_next(),
        router.faults.garbage_next,
    ):
        arm()
        with pytest.raises(RouterError):
            client.print("/ppp/secret")
        router.faults.clear()
    assert len(client.print("/ppp/secret")) == 6


def test_one_command_at_a_time_from_many_threads(client: RouterClient) -> None:
    paths = ["/ppp/secret", "/ppp/active", "/queue/simple", "/ip/firewall/address-list"] * 5
    expected = {"/ppp/secret": 6, "/ppp/active": 4, "/queue/simple": 6, "/ip/firewall/address-list": 3}
    results: list[tuple[str, int]] = []
    errors: list[BaseException] = []

    def work(path: str) -> None:
        try:
            results.append((path, len(client.print(path))))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(path,)) for path in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert all(count == expected[path] for path, count in results)
    assert len(results) == len(paths)


def test_ssl_wrapper_is_applied(router: FakeRouterOS) -> None:
    wrapped: list[socket.socket] = []

    def wrapper(sock: socket.socket) -> socket.socket:
        wrapped.append(sock)
        return sock

    with RouterClient(router.host, USER, PASSWORD, port=router.port, timeout=SHORT, ssl_wrapper=wrapper) as client:
        assert len(client.print("/ppp/active")) == 4
    assert len(wrapped) == 1
    assert API_SSL_PORT == 8729


def test_tls_against_a_plain_server_is_unavailable(router: FakeRouterOS) -> None:
    client = RouterClient(router.host, USER, PASSWORD, port=router.port, timeout=SHORT, ssl_wrapper=tls_wrapper())
    with pytest.raises(RouterUnavailable, match="cannot connect"):
        client.connect()


def test_invalid_timeout() -> None:
    with pytest.raises(ValueError, match="timeout"):
        RouterClient("127.0.0.1", USER, PASSWORD, timeout=0)
