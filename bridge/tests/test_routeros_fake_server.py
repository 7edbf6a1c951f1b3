"""The fake router on the wire, word for word (no librouteros), its faults, its CLI and its clean stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from paths import PYTHONPATH

from centralita_testing.fake_routeros.server import FakeRouterOS, Faults, main
from centralita_testing.fake_routeros.wire import WireClosed, WireReader, write_sentence

USER = "admin"
PASSWORD = "clave"
REPO = Path(__file__).resolve().parents[2]


class RawClient:
    """A bare API client: send sentences, read sentences."""

    def __init__(self, router: FakeRouterOS) -> None:
        self.sock = socket.create_connection((router.host, router.port), timeout=5)
        self.reader = WireReader.from_socket(self.sock)

    def send(self, *words: str) -> None:
        write_sentence(self.sock, list(words))

    def read(self) -> list[str]:
        return self.reader.read_sentence()

    def call(self, *words: str) -> list[list[str]]:
        """Send one command; every reply sentence up to and including `!done`."""
        self.send(*words)
        replies = []
        while True:
            reply = self.read()
            replies.append(reply)
            if reply[0] in ("!done", "!fatal"):
                return replies

    def login(self, password: str = PASSWORD) -> list[list[str]]:
        return self.call("/login", f"=name={USER}", f"=password={password}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def router() -> Iterator[FakeRouterOS]:
    with FakeRouterOS(None, USER, PASSWORD) as fake:
        yield fake


@pytest.fixture
def raw(router: FakeRouterOS) -> Iterator[RawClient]:
    client = RawClient(router)
    yield client
    client.close()


def test_login_replies(raw: RawClient) -> None:
    assert raw.login("mala") == [["!trap", "=message=invalid user name or password (6)"], ["!done"]]
    assert raw.login() == [["!done"]]


def test_command_before_login_is_fatal(raw: RawClient, router: FakeRouterOS) -> None:
    assert raw.call("/ppp/secret/print") == [["!fatal", "not logged in"]]
    with pytest.raises(WireClosed):
        raw.read()


def test_oversized_word_before_login_closes(raw: RawClient) -> None:
    raw.send("/login", "=name=" + "a" * 5000)
    with pytest.raises((WireClosed, ConnectionResetError)):
        raw.read()


def test_tag_is_echoed_only_when_sent(raw: RawClient) -> None:
    raw.login()
    untagged = raw.call("/ppp/active/print", "?name=maria.pena", "=.proplist=name")
    assert untagged == [["!re", "=name=maria.pena"], ["!done"]]
    tagged = raw.call("/ppp/active/print", "?name=maria.pena", "=.proplist=name", ".tag=42")
    assert tagged == [["!re", "=name=maria.pena", ".tag=42"], ["!done", ".tag=42"]]
    trapped = raw.call("/ppp/secret/set", "=.id=*99", ".tag=t1")
    assert trapped == [["!trap", "=message=no such item (4)", ".tag=t1"], ["!done", ".tag=t1"]]


def test_empty_print_sends_empty_then_done(raw: RawClient) -> None:
    raw.login()
    assert raw.call("/ppp/active/print", "?name=nadie") == [["!empty"], ["!done"]]
    assert raw.call("/ppp/active/print", "?name=nadie", ".tag=9") == [["!empty", ".tag=9"], ["!done", ".tag=9"]]


def test_ros6_mode_has_no_empty() -> None:
    with FakeRouterOS(None, USER, PASSWORD, empty_replies=False) as router:
        raw = RawClient(router)
        raw.login()
        assert raw.call("/ppp/active/print", "?name=nadie") == [["!done"]]
        raw.close()


def test_add_returns_ret(raw: RawClient) -> None:
    raw.login()
    assert raw.call("/ip/firewall/address-list/add", "=list=morosos", "=address=10.20.0.16") == [["!done", "=ret=*4"]]


def test_print_row_words(raw: RawClient) -> None:
    raw.login()
    [row, done] = raw.call("/queue/simple/print", "?=.id=*4")
    assert done == ["!done"]
    assert row[:4] == ["!re", "=.id=*4", "=name=cli-45678901", "=target=10.20.0.14/32"]
    assert "=max-limit=512k/512k" in row
    assert "=disabled=false" in row


def test_count_only(raw: RawClient) -> None:
    raw.login()
    assert raw.call("/ip/firewall/address-list/print", "=count-only=", "?list=morosos") == [["!done", "=ret=2"]]


def test_query_only_on_print(raw: RawClient) -> None:
    raw.login()
    [trap, done] = raw.call("/ppp/secret/set", "=.id=*1", "=comment=x", "?name=maria.pena")
    assert trap[0] == "!trap"
    assert done == ["!done"]


def test_empty_sentences_are_ignored(raw: RawClient) -> None:
    raw.sock.sendall(b"\x00\x00")
    assert raw.login() == [["!done"]]


def test_quit_is_fatal(raw: RawClient) -> None:
    raw.login()
    assert raw.call("/quit") == [["!fatal", "session terminated on request"]]


def test_password_is_masked_in_the_log(raw: RawClient, router: FakeRouterOS) -> None:
    raw.login()
    assert router.received()[0] == ["/login", f"=name={USER}", "=password=***"]


def test_drop_after_counts_reply_sentences(raw: RawClient, router: FakeRouterOS) -> None:
    raw.login()
    router.faults.drop_after(2)
    raw.send("/ppp/secret/print", "=.proplist=name")
    assert raw.read() == ["!re", "=name=maria.pena"]
    assert raw.read() == ["!re", "=name=jose.munoz"]
    with pytest.raises(WireClosed):
        raw.read()
    assert router.faults.drop_after_sentences is None  # once only


def test_faults_from_the_command_line_words() -> None:
    faults = Faults.parse(["delay=250", "drop-after=3", "fatal=adiós", "garbage"])
    assert (faults.delay_ms, faults.drop_after_sentences, faults.fatal_reason, faults.garbage) == (
        250,
        3,
        "adiós",
        True,
    )
    assert Faults.parse(["fatal"]).fatal_reason == "simulated failure"
    with pytest.raises(ValueError, match="unknown fault"):
        Faults.parse(["lento"])
    with pytest.raises(ValueError, match="negative"):
        Faults().set_delay(-1)


def test_faults_given_at_start_apply_to_the_first_connection() -> None:
    with FakeRouterOS(None, USER, PASSWORD, Faults(fatal_reason="arranque")) as router:
        raw = RawClient(router)
        assert raw.login() == [["!fatal", "arranque"]]
        raw.close()


def test_stop_leaves_no_thread_even_with_busy_connections() -> None:
    before = set(threading.enumerate())
    router = FakeRouterOS(None, USER, PASSWORD).start()
    idle = RawClient(router)
    idle.login()
    busy = RawClient(router)
    busy.login()
    router.faults.set_delay(60_000)
    busy.send("/ppp/secret/print")  # its thread now sleeps before the first reply
    assert router.wait_until(lambda: router.open_connections == 2)
    router.stop()
    assert set(threading.enumerate()) == before
    assert router.open_connections == 0
    idle.close()
    busy.close()


def test_tables_snapshot_is_a_copy(router: FakeRouterOS) -> None:
    tables = router.tables()
    assert set(tables) >= {"/ppp/secret", "/ppp/active", "/ppp/profile", "/ip/firewall/address-list", "/queue/simple"}
    tables["/ppp/secret"][0]["name"] = "cambiado"
    assert router.table("/ppp/secret")[0]["name"] == "maria.pena"
    with pytest.raises(KeyError):
        router.table("/interface")


def test_custom_fixture_file(tmp_path: Path) -> None:
    fixture = tmp_path / "mini.json"
    fixture.write_text(
        json.dumps(
            {
                "tables": {
                    "/ip/firewall/address-list": [{"list": "morosos", "address": "10.0.0.1"}],
                    "/interface": [{"name": "ether1", "running": "true"}],
                }
            }
        ),
        encoding="utf-8",
    )
    with FakeRouterOS(fixture, USER, PASSWORD) as router:
        assert router.table("/ip/firewall/address-list")[0][".id"] == "*1"
        assert router.table("/ppp/secret") == []
        raw = RawClient(router)
        raw.login()
        assert raw.call("/interface/print", "=.proplist=name") == [["!re", "=name=ether1"], ["!done"]]
        raw.close()


def test_shipped_fixtures_are_identical_and_documented() -> None:
    packaged = REPO / "bridge/testing/src/centralita_testing/fake_routeros/data/isp-demo.json"
    example = REPO / "files/routeros/isp-demo.json"
    assert packaged.read_bytes() == example.read_bytes()
    data = json.loads(packaged.read_text(encoding="utf-8"))
    secrets = data["tables"]["/ppp/secret"]
    assert len(secrets) == 6
    for secret in secrets:
        fields = dict(part.split("=", 1) for part in secret["comment"].split(";"))
        assert set(fields) == {"tel", "dni", "cliente", "nombre", "plan"}
        assert fields["tel"].startswith("+")
    names = " ".join(secret["comment"] for secret in secrets)
    assert "Peña" in names
    assert "Muñoz" in names
    morosos = [row for row in data["tables"]["/ip/firewall/address-list"] if row["list"] == "morosos"]
    assert len(morosos) == 2


def test_main_rejects_a_bad_fault(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--port", "0", "--fault", "nope"])
    assert "unknown fault" in capsys.readouterr().err


def test_runs_as_a_module() -> None:
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    process = subprocess.Popen(
        [sys.executable, "-m", "centralita_testing.fake_routeros.server", "--port", "0", "--password", PASSWORD],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("fake RouterOS API listening on 127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            write_sentence(sock, ["/login", f"=name={USER}", f"=password={PASSWORD}"])
            assert WireReader.from_socket(sock).read_sentence() == ["!done"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
