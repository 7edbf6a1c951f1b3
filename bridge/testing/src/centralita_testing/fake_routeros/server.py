"""A fake RouterOS API server for tests and demos: real sockets, real protocol, in-memory tables.

Run it on its own::

    python -m centralita_testing.fake_routeros.server --port 8728 --fixture files/routeros/isp-demo.json \\
        --user admin --password secret [--fault delay=200] [--fault drop-after=5] [--fault fatal] [--ros6] \\
        [--tls-cert cert.pem --tls-key key.pem]

or inside a test, on an ephemeral port, with a background thread::

    with FakeRouterOS(user="admin", password="secret") as router:
        api = librouteros.connect(router.host, "admin", "secret", port=router.port, encoding="utf-8")
        router.faults.set_delay(500)       # every reply sentence now waits 0.5 s
        router.table("/ppp/secret")        # what the router holds now

What it does, as RouterOS (>= 6.43, 7.x) does it:

* plain login ``/login =name= =password=``: ``!done`` on success; a wrong user or password gets
  ``!trap =message=invalid user name or password (6)`` + ``!done`` and may try again;
* any other command before login gets ``!fatal`` ``not logged in`` and the connection is closed, as
  does ``/quit`` (``session terminated on request``); words before login are limited to 4 KiB;
* ``.tag=x`` is echoed on every reply to a command only when the command carried one;
* API-SSL when given a certificate and key (``tls_cert``/``tls_key``, ``--tls-cert``/``--tls-key``):
  every connection starts with a TLS handshake (ordinary server-certificate TLS, as RouterOS does with
  a certificate set on the ``api-ssl`` service), then speaks the same protocol inside it;
* ``print`` with ``.proplist`` and queries, ``add`` (``!done =ret=*N``), ``set``, ``remove``, ``enable``,
  ``disable``, and the router's traps for unknown paths, unknown ids and duplicates (``fake_state``).

Faults (``Faults``), chosen at start or changed at any time from another thread:

* ``delay_ms``: every reply sentence waits that long first;
* ``drop_after(n)``: after ``n`` more reply sentences the connection about to send the next one is
  closed (once);
* ``fatal_next(reason)``: the next command gets ``!fatal <reason>`` and its connection is closed (once);
* ``garbage_next()``: the next reply sentence is replaced by a reserved control byte (``0xF8``), a
  protocol error for the client, and the connection is closed (once).
"""

from __future__ import annotations

import argparse
import contextlib
import select
import signal
import socket
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self

from centralita_testing.fake_routeros.state import RouterState, Row
from centralita_testing.fake_routeros.wire import DEFAULT_MAX_WORD_LENGTH, WireError, WireReader, encode_sentence

LOGIN_FAILED = "invalid user name or password (6)"
NOT_LOGGED_IN = "not logged in"
QUIT_REASON = "session terminated on request"
PRE_LOGIN_MAX_WORD = 4096
TLS_HANDSHAKE_TIMEOUT = 5.0  # seconds a client gets to finish the TLS handshake
_GARBAGE = b"\xf8"


@dataclass
class Faults:
    """Misbehaviour to inject; every method is safe to call from any thread while the server runs."""

    delay_ms: int = 0
    drop_after_sentences: int | None = None
    fatal_reason: str | None = None
    garbage: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def set_delay(self, delay_ms: int) -> None:
        """Delay every reply sentence by ``delay_ms`` (0: no delay)."""
        if delay_ms < 0:
            raise ValueError("delay_ms must not be negative")
        with self._lock:
            self.delay_ms = delay_ms

    def drop_after(self, sentences: int) -> None:
        """Close the connection instead of sending the reply sentence after the next ``sentences`` ones."""
        if sentences < 0:
            raise ValueError("sentences must not be negative")
        with self._lock:
            self.drop_after_sentences = sentences

    def fatal_next(self, reason: str = "simulated failure") -> None:
        """Answer the next command (any connection) with ``!fatal <reason>`` and close its connection."""
        with self._lock:
            self.fatal_reason = reason

    def garbage_next(self) -> None:
        """Send a reserved control byte instead of the next reply sentence, then close."""
        with self._lock:
            self.garbage = True

    def clear(self) -> None:
        with self._lock:
            self.delay_ms = 0
            self.drop_after_sentences = None
            self.fatal_reason = None
            self.garbage = False

    # ---- used by the server ---------------------------------------------------------------------------

    def delay_seconds(self) -> float:
        with self._lock:
            return self.delay_ms / 1000

    def take_fatal(self) -> str | None:
        with self._lock:
            reason, self.fatal_reason = self.fatal_reason, None
            return reason

    def next_sentence(self) -> str:
        """What to do with the reply sentence about to go out: ``send``, ``drop`` or ``garbage``."""
        with self._lock:
            if self.garbage:
                self.garbage = False
                return "garbage"
            if self.drop_after_sentences is not None:
                if self.drop_after_sentences == 0:
                    self.drop_after_sentences = None
                    return "drop"
                self.drop_after_sentences -= 1
            return "send"

    @classmethod
    def parse(cls, specs: Sequence[str]) -> Faults:
        """Faults from command-line words: ``delay=MS``, ``drop-after=N``, ``fatal[=REASON]``, ``garbage``."""
        faults = cls()
        for spec in specs:
            name, _, value = spec.partition("=")
            if name == "delay" and value.isdigit():
                faults.set_delay(int(value))
            elif name == "drop-after" and value.isdigit():
                faults.drop_after(int(value))
            elif name == "fatal":
                faults.fatal_next(value or "simulated failure")
            elif name == "garbage" and not value:
                faults.garbage_next()
            else:
                raise ValueError(f"unknown fault {spec!r}: use delay=MS, drop-after=N, fatal[=REASON] or garbage")
        return faults


@dataclass(frozen=True)
class Command:
    """One parsed request sentence."""

    name: str
    attributes: dict[str, str]
    queries: list[str]
    tag: str | None

    @classmethod
    def parse(cls, words: Sequence[str]) -> Command:
        attributes: dict[str, str] = {}
        queries: list[str] = []
        tag: str | None = None
        for word in words[1:]:
            if word.startswith("="):
                key, _, value = word[1:].partition("=")
                attributes[key] = value
            elif word.startswith("?"):
                queries.append(word)
            elif word.startswith(".tag="):
                tag = word[len(".tag=") :]
        return cls(words[0], attributes, queries, tag)


class _Drop(Exception):
    """The connection must end now (a fault, a `!fatal`, a send that failed, the server stopping)."""


class FakeRouterOS:
    """The fake router on a TCP port, served by background threads; a context manager.

    ``port=0`` (the default) picks a free port; ``host`` and ``port`` tell where it listens once started.
    ``stop()`` (or leaving the ``with`` block) closes every connection and joins every thread it started.
    ``tls_cert`` (PEM, may hold the key too) and ``tls_key`` turn it into an API-SSL server; a certificate
    or key that cannot be loaded raises here, not at the first connection.
    """

    def __init__(
        self,
        fixture: str | Path | Mapping[str, Any] | None = None,
        user: str = "admin",
        password: str = "",
        faults: Faults | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        empty_replies: bool = True,
        clock: Callable[[], float] = time.monotonic,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
    ) -> None:
        if tls_key is not None and tls_cert is None:
            raise ValueError("tls_key needs tls_cert: give the certificate too")
        self._tls: ssl.SSLContext | None = None
        if tls_cert is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls_cert, tls_key)
            self._tls = context
        self.state = RouterState(fixture, empty_replies=empty_replies, clock=clock)
        self.user = user
        self._password = password
        self.faults = faults if faults is not None else Faults()
        self._bind = (host, port)
        self._listener: socket.socket | None = None
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._accept_thread: threading.Thread | None = None
        self._received: deque[list[str]] = deque(maxlen=1000)
        self._logins = 0
        self._accepted = 0

    # ---- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._listener is not None:
            raise RuntimeError("already started")
        listener = socket.create_server(self._bind, reuse_port=False)
        listener.setblocking(False)
        self._listener = listener
        self._accept_thread = threading.Thread(target=self._accept_loop, name="fake-routeros-accept", daemon=True)
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        """Stop listening, close every connection, and wait for every thread to end."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"x")
        if self._accept_thread is not None:
            self._accept_thread.join()
        with self._lock:
            connections = list(self._connections)
            threads = list(self._threads)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join()
        if self._listener is not None:
            self._listener.close()
        self._wake_reader.close()
        self._wake_writer.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- what tests look at ---------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return str(self._address()[0])

    @property
    def port(self) -> int:
        return int(self._address()[1])

    def _address(self) -> tuple[Any, ...]:
        if self._listener is None:
            raise RuntimeError("not started")
        address: tuple[Any, ...] = self._listener.getsockname()
        return address

    def tables(self) -> dict[str, list[Row]]:
        """A copy of every table as it is now."""
        return self.state.snapshot()

    def table(self, path: str) -> list[Row]:
        """A copy of one table, e.g. ``table("/ip/firewall/address-list")``."""
        return self.state.table(path)

    @property
    def tls(self) -> bool:
        """Whether connections speak API-SSL (TLS) rather than the plain API."""
        return self._tls is not None

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._connections)

    @property
    def accepted_connections(self) -> int:
        with self._lock:
            return self._accepted

    @property
    def logins(self) -> int:
        """Successful logins so far (a reconnecting client adds one each time)."""
        with self._lock:
            return self._logins

    def received(self) -> list[list[str]]:
        """The last 1000 request sentences, passwords masked."""
        with self._lock:
            return [list(words) for words in self._received]

    def wait_until(self, condition: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Poll ``condition`` until it holds or ``timeout`` runs out; whether it held."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    # ---- serving --------------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            ready, _, _ = select.select([listener, self._wake_reader], [], [])
            if self._wake_reader in ready or self._stopping.is_set():
                return
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return
            conn.setblocking(True)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(target=self._serve, args=(conn,), name="fake-routeros-conn", daemon=True)
            with self._lock:
                self._connections.add(conn)
                self._threads.add(thread)
                self._accepted += 1
            thread.start()

    def _start_tls(self, raw: socket.socket, context: ssl.SSLContext) -> ssl.SSLSocket:
        """The connection wrapped in TLS, handshake done; ``stop()`` can interrupt the handshake."""
        raw.settimeout(TLS_HANDSHAKE_TIMEOUT)
        wrapped = context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)  # detaches ``raw``
        try:
            with self._lock:
                self._connections.discard(raw)
                self._connections.add(wrapped)
                if self._stopping.is_set():  # stop() may have listed the connections before this one was added
                    raise _Drop
            wrapped.do_handshake()
            wrapped.settimeout(None)
        except BaseException:
            with self._lock:
                self._connections.discard(wrapped)
            with contextlib.suppress(OSError):
                wrapped.close()
            raise
        return wrapped

    def _serve(self, raw: socket.socket) -> None:
        conn = raw
        try:
            if self._tls is not None:
                conn = self._start_tls(raw, self._tls)
            self._converse(conn)
        except (_Drop, WireError, OSError):  # ssl.SSLError is an OSError
            pass
        finally:
            for sock in {raw, conn}:
                with contextlib.suppress(OSError):
                    sock.close()
            with self._lock:
                self._connections.discard(raw)
                self._connections.discard(conn)
                self._threads.discard(threading.current_thread())

    def _converse(self, conn: socket.socket) -> None:
        reader = WireReader.from_socket(conn, errors="replace", max_word_length=PRE_LOGIN_MAX_WORD)
        logged_in = False
        while not self._stopping.is_set():
            words = reader.read_sentence()
            if not words:
                continue  # empty sentences are ignored
            self._record(words)
            command = Command.parse(words)
            fatal = self.faults.take_fatal()
            if fatal is not None:
                self._send(conn, ["!fatal", fatal], final=True)
            if command.name == "/login":
                logged_in = self._login(conn, command) or logged_in
                if logged_in:
                    reader.max_word_length = DEFAULT_MAX_WORD_LENGTH
                continue
            if not logged_in:
                self._send(conn, ["!fatal", NOT_LOGGED_IN], final=True)
            if command.name == "/quit":
                self._send(conn, ["!fatal", QUIT_REASON], final=True)
            if command.name == "/cancel":
                replies = [["!done"]]  # every command completes before the next is read
            else:
                replies = self.state.execute(command.name, command.attributes, command.queries)
            for reply in replies:
                self._send(conn, reply, tag=command.tag)

    def _login(self, conn: socket.socket, command: Command) -> bool:
        name = command.attributes.get("name")
        password = command.attributes.get("password")
        if name == self.user and password == self._password:
            with self._lock:
                self._logins += 1  # counted before the reply, so a client that got `!done` sees it
            self._send(conn, ["!done"], tag=command.tag)
            return True
        self._send(conn, ["!trap", f"=message={LOGIN_FAILED}"], tag=command.tag)
        self._send(conn, ["!done"], tag=command.tag)
        return False

    def _send(self, conn: socket.socket, words: list[str], tag: str | None = None, final: bool = False) -> None:
        delay = self.faults.delay_seconds()
        if delay and self._stopping.wait(delay):
            raise _Drop
        action = self.faults.next_sentence()
        if action == "drop":
            raise _Drop
        if action == "garbage":
            conn.sendall(_GARBAGE)
            raise _Drop
        sentence = [*words, f".tag={tag}"] if tag is not None else words
        conn.sendall(encode_sentence(sentence))
        if final:
            raise _Drop

    def _record(self, words: list[str]) -> None:
        masked = ["=password=***" if word.startswith("=password=") and words[0] == "/login" else word for word in words]
        with self._lock:
            self._received.append(masked)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m centralita_testing.fake_routeros.server",
        description="A fake RouterOS API server with in-memory tables loaded from a JSON fixture.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8728, help="TCP port (default 8728; 0 picks a free one)")
    parser.add_argument("--fixture", type=Path, help="JSON fixture (default: the demo ISP shipped in the package)")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default="")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="delay=MS, drop-after=N, fatal[=REASON] or garbage; may be repeated",
    )
    parser.add_argument("--ros6", action="store_true", help="answer an empty print with !done only (no !empty)")
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate: serve API-SSL (TLS) instead of the plain API")
    parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert (if not in the same file)")
    args = parser.parse_args(argv)
    try:
        faults = Faults.parse(args.fault)
    except ValueError as error:
        parser.error(str(error))
    if args.tls_key is not None and args.tls_cert is None:
        parser.error("--tls-key needs --tls-cert")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        router = FakeRouterOS(
            args.fixture,
            args.user,
            args.password,
            faults,
            host=args.host,
            port=args.port,
            empty_replies=not args.ros6,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
        )
    except (OSError, ValueError) as error:  # a fixture, certificate or key that cannot be read (SSLError: OSError)
        parser.error(f"cannot start: {error}")
    with router:
        kind = "API-SSL" if router.tls else "API"
        print(f"fake RouterOS {kind} listening on {router.host}:{router.port}", flush=True)
        stop.wait()
    print("stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
