"""``RouterPool``: the service's routers, one ``RouterClient`` each, reused by every call, with a time limit.

The pool is built once from ``NetworkSettings`` and owned by whoever runs the service, which closes it on
the way out; nothing here is global. Each router has one ``RouterClient`` (one connection, one command at a
time) and one worker thread, and work for it runs on that thread while the calling tool waits at most until
its ``Deadline``. So a tool answers in time even when a router is dead, slow or still busy with an earlier
command: the late work finishes (or times out on its socket) in the background, and the connection it used
is thrown away and reopened by ``RouterClient``. Routers never wait for each other.

TLS (API-SSL): a router with ``TLS=true`` is reached through ``tls_wrapper`` with a verifying context that
trusts the system CAs, or only ``CA_FILE`` when one is set; the certificate must name ``HOST``.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from types import TracebackType
from typing import Self, TypeVar

from centralita.config.env import ConfigError
from centralita.config.network import NetworkSettings, RouterConfig
from centralita.isp.routeros.client import RouterClient, RouterError, RouterUnavailable, SocketWrapper, tls_wrapper

__all__ = ["Deadline", "RouterLate", "RouterPool", "client_for"]

T = TypeVar("T")
# A job gets the router's name, its client and the deadline (to check between commands).
Job = Callable[[str, RouterClient, "Deadline"], T]


class RouterLate(RouterUnavailable):
    """The deadline passed before the router's answer. ``started``: the job was already running and may still
    complete (what matters for a write); otherwise it was dropped unsent."""

    def __init__(self, message: str, *, started: bool) -> None:
        super().__init__(message)
        self.started = started


@dataclass(frozen=True, slots=True)
class Deadline:
    """A moment (``time.monotonic``) by which an answer is due."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def check(self, router: str) -> None:
        """Raise ``RouterUnavailable`` once the time is up: called between the commands of a job."""
        if self.expired():
            raise RouterUnavailable(f"router {router}: out of time")


def _ssl_wrapper(config: RouterConfig) -> SocketWrapper | None:
    if not config.tls:
        return None
    prefix = f"ROUTEROS_{config.name.upper()}_"
    try:
        context = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
    except (OSError, ssl.SSLError) as error:  # missing, unreadable or not a PEM CA bundle
        raise ConfigError(
            [f"{prefix}CA_FILE {config.ca_file} cannot be used ({error}): give a readable PEM CA certificate."]
        ) from None
    return tls_wrapper(context, server_hostname=config.host)


def client_for(config: RouterConfig, timeout: float) -> RouterClient:
    """A ``RouterClient`` for one configured router (not connected yet); TLS as configured."""
    return RouterClient(
        config.host,
        config.user,
        config.password.reveal(),
        port=config.port,
        timeout=timeout,
        ssl_wrapper=_ssl_wrapper(config),
    )


class RouterPool:
    """One client and one worker per configured router. Thread-safe; close it when the service stops.

    A CA file that cannot be loaded raises ``ConfigError`` here, at start-up, rather than at the first call.
    """

    def __init__(self, settings: NetworkSettings) -> None:
        self.timeout = settings.timeout
        self._clients: dict[str, RouterClient] = {
            router.name: client_for(router, settings.timeout) for router in settings.routers
        }
        self._workers: dict[str, ThreadPoolExecutor] = {
            name: ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"router-{name}") for name in self._clients
        }
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"RouterPool({', '.join(self._clients) or 'no routers'})"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._clients)

    def __contains__(self, name: object) -> bool:
        return name in self._clients

    def deadline(self) -> Deadline:
        """The time one tool has for all its router work: ``ROUTEROS_TIMEOUT`` from now."""
        return Deadline.after(self.timeout)

    def run(self, name: str, job: Job[T], deadline: Deadline) -> T:
        """``job(name, client, deadline)`` on router ``name``'s worker; its result, or its ``RouterError``.

        Past the deadline ``RouterLate`` is raised even if the job is still running.
        """
        future = self._submit(name, job, deadline)
        try:
            return future.result(timeout=deadline.remaining())
        except FutureTimeout:
            raise self._late(name, future) from None

    def run_each(self, names: Iterable[str], job: Job[T], deadline: Deadline) -> dict[str, T | RouterError]:
        """``job`` on several routers at once; each router's result or error (``RouterUnavailable`` if late)."""
        futures = {name: self._submit(name, job, deadline) for name in names}
        wait_futures(futures.values(), timeout=deadline.remaining())
        results: dict[str, T | RouterError] = {}
        for name, future in futures.items():
            if not future.done():
                results[name] = self._late(name, future)
                continue
            error = future.exception()
            if error is None:
                results[name] = future.result()
            elif isinstance(error, RouterError):
                results[name] = error
            else:
                raise error
        return results

    def _late(self, name: str, future: Future[T]) -> RouterLate:
        started = not future.cancel()  # cancel() fails once the job is running (or has just finished)
        return RouterLate(f"router {name} did not answer within {self.timeout:g} s", started=started)

    def _submit(self, name: str, job: Job[T], deadline: Deadline) -> Future[T]:
        with self._lock:
            if self._closed:
                raise RouterUnavailable("the router pool is closed (the service is stopping)")
            worker = self._workers.get(name)
            client = self._clients.get(name)
        if worker is None or client is None:
            raise KeyError(f"no router named {name!r} is configured")

        def guarded() -> T:
            deadline.check(name)  # waited in the queue past its time: do not start
            return job(name, client, deadline)

        return worker.submit(guarded)

    def close(self) -> None:
        """Drop queued work, then close every connection (waiting for a command in progress to end)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for worker in self._workers.values():
            worker.shutdown(wait=False, cancel_futures=True)
        for client in self._clients.values():
            client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
