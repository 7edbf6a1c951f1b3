"""``RouterClient``: one RouterOS API connection (librouteros) made safe to share and to fail.

librouteros is lazy, not thread-safe and keeps going on a broken connection; this wrapper fixes that:

* one command at a time per connection (a lock), and every reply read to its ``!done`` before the call
  returns (librouteros returns generators that send nothing until iterated);
* after a timeout, a closed connection, a ``!fatal`` or any protocol error the connection is thrown
  away, and the next call opens a new one. Kept, a timed-out connection would hand the *next* command
  the late rows of the one that timed out;
* a failed login closes its socket (librouteros leaves it open after a ``!trap``);
* ``encoding="utf-8"`` by default (librouteros' default, ASCII, fails on ``Peña`` going out and silently
  drops the ``ñ`` coming in);
* errors are ``RouterUnavailable``, ``RouterAuthError`` or ``RouterCommandError`` (with the router's
  message); no librouteros or socket exception gets out.

A ``!trap`` is a complete answer, so the connection stays open after a ``RouterCommandError``.

Values come back as librouteros casts them: ``true``/``yes`` -> ``True``, ``false``/``no`` -> ``False``,
``"42"`` -> ``42`` (but ``"007"`` and ``"+5215550001111"`` stay strings), everything else a string.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from functools import partial
from types import TracebackType
from typing import Self

import librouteros
from librouteros.api import Api
from librouteros.exceptions import ConnectionClosed, FatalError, MultiTrapError, TrapError
from librouteros.login import plain

Value = str | int | bool
Row = dict[str, Value]
LoginMethod = Callable[[Api, str, str], None]
SocketWrapper = Callable[[socket.socket], socket.socket]

API_PORT = 8728
API_SSL_PORT = 8729
_AUTH_MARKERS = ("invalid user name or password", "cannot log in", "not logged in")


class RouterError(Exception):
    """Base of every error ``RouterClient`` raises."""


class RouterUnavailable(RouterError):
    """The router could not be reached or the connection broke (refused, timeout, closed, ``!fatal``)."""


class RouterAuthError(RouterError):
    """The router refused the login (wrong user or password, or a user without the ``api`` policy)."""


class RouterCommandError(RouterError):
    """The router answered a command with ``!trap``; ``message`` is the router's text, ``messages`` all of them."""

    def __init__(self, message: str, *, messages: Sequence[str] = (), category: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.messages: tuple[str, ...] = tuple(messages) or (message,)
        self.category = category


def tls_wrapper(context: ssl.SSLContext | None = None, server_hostname: str | None = None) -> SocketWrapper:
    """An ``ssl_wrapper`` for API-SSL (port 8729): ``context`` defaults to the system's verified one."""
    ctx = context if context is not None else ssl.create_default_context()
    return partial(ctx.wrap_socket, server_hostname=server_hostname)


def _path(path: str) -> str:
    parts = [part for part in path.replace(" ", "/").split("/") if part]
    if not parts:
        raise ValueError(f"not a menu path: {path!r}")
    return "/" + "/".join(parts)


def _api_value(value: object) -> str:
    if value is True:
        return "yes"
    if value is False:
        return "no"
    if value is None:
        return ""
    return str(value)


def _words(fields: Mapping[str, object]) -> list[str]:
    return [f"={key}={_api_value(value)}" for key, value in fields.items()]


class RouterClient:
    """One router, one connection (opened on first use, reopened after a failure), one command at a time.

    ``ssl_wrapper`` wraps the TCP socket for API-SSL (see ``tls_wrapper``); use ``port=API_SSL_PORT``.
    """

    def __init__(
        self,
        host: str,
        username: str,
        password: str,
        *,
        port: int = API_PORT,
        timeout: float = 5.0,
        encoding: str = "utf-8",
        login_method: LoginMethod = plain,
        ssl_wrapper: SocketWrapper | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.host = host
        self.port = port
        self.username = username
        self._password = password
        self.timeout = timeout
        self.encoding = encoding
        self._login_method = login_method
        self._ssl_wrapper = ssl_wrapper
        self._api: Api | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RouterClient({self.username}@{self.host}:{self.port}, connected={self.connected})"

    # ---- connection ------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._api is not None

    def connect(self) -> None:
        """Open and log in now (otherwise the first command does); a no-op when already connected."""
        with self._lock:
            self._ensure_connected()

    def close(self) -> None:
        with self._lock:
            self._discard()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _login(self, api: Api, username: str, password: str) -> None:
        try:
            self._login_method(api, username, password)
        except BaseException:
            api.close()  # librouteros.connect only closes on ConnectionClosed/FatalError
            raise

    def _ensure_connected(self) -> Api:
        if self._api is not None:
            return self._api
        where = f"{self.host}:{self.port}"
        try:
            self._api = librouteros.connect(
                self.host,
                self.username,
                self._password,
                port=self.port,
                timeout=self.timeout,
                encoding=self.encoding,
                ssl_wrapper=self._ssl_wrapper,
                login_method=self._login,
            )
        except (TrapError, MultiTrapError) as error:
            raise RouterAuthError(f"router {where} refused the login: {error}") from None
        except FatalError as error:
            if any(marker in str(error) for marker in _AUTH_MARKERS):
                raise RouterAuthError(f"router {where} refused the login: {error}") from None
            raise RouterUnavailable(f"router {where} ended the session while logging in: {error}") from None
        except Exception as error:  # OSError (refused, timeout, TLS), ConnectionClosed, a garbled reply
            raise RouterUnavailable(f"cannot connect to router {where}: {_describe(error)}") from None
        return self._api

    def _discard(self) -> None:
        api, self._api = self._api, None
        if api is not None:
            with suppress(OSError):
                api.close()

    @contextmanager
    def _session(self) -> Iterator[Api]:
        """The connection for one command, under the lock; any failure but a ``!trap`` discards it."""
        with self._lock:
            api = self._ensure_connected()
            try:
                yield api
            except MultiTrapError as error:
                messages = [trap.message for trap in error.traps]
                category = next((trap.category for trap in error.traps if trap.category is not None), None)
                raise RouterCommandError(str(error), messages=messages, category=category) from None
            except TrapError as error:
                raise RouterCommandError(str(error), category=error.category) from None
            except UnicodeEncodeError as error:  # raised before anything is sent: the connection is fine
                raise RouterCommandError(f"cannot encode the command as {self.encoding}: {error}") from None
            except FatalError as error:
                self._discard()
                raise RouterUnavailable(f"router {self.host}:{self.port} ended the session: {error}") from None
            except (ConnectionClosed, OSError) as error:
                self._discard()
                raise RouterUnavailable(f"lost the connection to {self.host}:{self.port}: {_describe(error)}") from None
            except Exception as error:  # LibRouterosError, or a reply librouteros could not parse
                self._discard()
                raise RouterUnavailable(f"protocol error from {self.host}:{self.port}: {_describe(error)}") from None
            except BaseException:  # interrupted mid-reply: the rest of it would confuse the next command
                self._discard()
                raise

    # ---- commands --------------------------------------------------------------------------------------

    def command(self, path: str, command: str, *words: str) -> list[Row]:
        """Run ``<path>/<command>`` with pre-formatted API words (``=k=v``, ``?k=v``); every reply row."""
        full = f"{_path(path)}/{command.strip('/')}"
        with self._session() as api:
            return [dict(row) for row in api.rawCmd(full, *words)]

    def print(
        self,
        path: str,
        where: Mapping[str, object] | None = None,
        proplist: Sequence[str] | None = None,
    ) -> list[Row]:
        """The rows of ``path`` equal to every ``where`` value (``?=k=v``, ANDed); only ``proplist`` keys."""
        words: list[str] = []
        if proplist is not None:
            words.append("=.proplist=" + ",".join(proplist))
        words.extend(f"?={key}={_api_value(value)}" for key, value in (where or {}).items())
        return self.command(path, "print", *words)

    def add(self, path: str, /, **fields: object) -> str:
        """Add an item; its new ``.id`` (e.g. ``*1A``). Field names with ``-`` go in as ``**{"max-limit": ...}``."""
        replies = self.command(path, "add", *_words(fields))
        for reply in replies:
            if "ret" in reply:
                return str(reply["ret"])
        raise RouterCommandError(f"router gave no id for the item added to {_path(path)}")

    def set(self, path: str, id: str, /, **fields: object) -> None:
        """Change fields of the item ``id`` (an ``.id``; on some menus a name)."""
        self.command(path, "set", f"=.id={id}", *_words(fields))

    def remove(self, path: str, id: str | Sequence[str], /) -> None:
        """Remove one item, or several at once (all or none: an unknown id removes nothing)."""
        ids = [id] if isinstance(id, str) else list(id)
        self.command(path, "remove", "=.id=" + ",".join(ids))


def connect(
    host: str,
    username: str,
    password: str,
    port: int = API_PORT,
    timeout: float = 5.0,
    encoding: str = "utf-8",
    login_method: LoginMethod = plain,
    ssl_wrapper: SocketWrapper | None = None,
) -> RouterClient:
    """A ``RouterClient`` already logged in: bad credentials or an unreachable router fail here."""
    client = RouterClient(
        host,
        username,
        password,
        port=port,
        timeout=timeout,
        encoding=encoding,
        login_method=login_method,
        ssl_wrapper=ssl_wrapper,
    )
    client.connect()
    return client


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


__all__ = [
    "API_PORT",
    "API_SSL_PORT",
    "RouterAuthError",
    "RouterClient",
    "RouterCommandError",
    "RouterError",
    "RouterUnavailable",
    "connect",
    "tls_wrapper",
]
