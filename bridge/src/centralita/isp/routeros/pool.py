"""``RouterPool``: the service's routers, one ``RouterClient`` each, reused by every call, with a time limit.

The pool is built once from ``NetworkSettings`` and owned by whoever runs the service, which closes it on
the way out; nothing here is global. Each router has one ``RouterClient`` (one connection, one command at a
time) and one worker thread, and work for it runs on that thread while the calling tool waits at most until
its ``Deadline``. So a tool answers in time even when a router is dead, slow or still busy with an earlier
command: the late work finishes (or times out on its socket) in the background, and the connection it used
is thrown away and reopened by ``RouterClient``. Routers never wait for each other.

**Fairness.** Work carries an owner (the call it is for). A router's worker does not serve its queue in
arrival order but takes one job from each owner in turn (round robin), so a call that asks for a lot waits
for its own work while another call's job goes next; and an owner may have at most
``MAX_QUEUED_PER_OWNER`` jobs waiting per router, beyond which the new job is refused at once
(``RouterBusy``) instead of lengthening everyone's wait.

**Errors seen.** Every ``RouterError`` a job ends with (or the pool gives instead: busy, late) is reported to the
observers (``observe``) as the router's name and a ``RouterErrorKind``: the service's metrics count them.

TLS (API-SSL): a router with ``TLS=true`` is reached through ``tls_wrapper`` with a verifying context that
trusts the system CAs, or only ``CA_FILE`` when one is set; the certificate must name ``HOST``.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any, Final, Self, TypeVar

from centralita.config.env import ConfigError
from centralita.config.network import NetworkSettings, RouterConfig
from centralita.isp.routeros.client import (
    RouterAuthError,
    RouterClient,
    RouterCommandError,
    RouterError,
    RouterUnavailable,
    SocketWrapper,
    tls_wrapper,
)

__all__ = [
    "MAX_QUEUED_PER_OWNER",
    "Deadline",
    "RouterBusy",
    "RouterErrorKind",
    "RouterLate",
    "RouterPool",
    "client_for",
    "error_kind",
]

T = TypeVar("T")
# A job gets the router's name, its client and the deadline (to check between commands).
Job = Callable[[str, RouterClient, "Deadline"], T]

MAX_QUEUED_PER_OWNER: Final = 3  # jobs one owner (a call) may have waiting for one router


class RouterBusy(RouterUnavailable):
    """The owner already has ``MAX_QUEUED_PER_OWNER`` jobs waiting for this router: the new one is refused."""


class RouterLate(RouterUnavailable):
    """The deadline passed before the router's answer. ``started``: the job was already running and may still
    complete (what matters for a write); otherwise it was dropped unsent."""

    def __init__(self, message: str, *, started: bool) -> None:
        super().__init__(message)
        self.started = started


class RouterErrorKind(StrEnum):
    """What went wrong with a router, as counted in the metrics (a bounded set of label values)."""

    AUTH = "auth"  # the router refused the login
    COMMAND = "command"  # the router answered a command with !trap
    BUSY = "busy"  # this call already had too much work waiting for the router
    TIMEOUT = "timeout"  # no answer before the tool's deadline
    UNAVAILABLE = "unavailable"  # unreachable, the connection broke, or a protocol error


def error_kind(error: RouterError) -> RouterErrorKind:
    if isinstance(error, RouterAuthError):
        return RouterErrorKind.AUTH
    if isinstance(error, RouterCommandError):
        return RouterErrorKind.COMMAND
    if isinstance(error, RouterBusy):
        return RouterErrorKind.BUSY
    if isinstance(error, RouterLate):
        return RouterErrorKind.TIMEOUT
    return RouterErrorKind.UNAVAILABLE


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


class _FairWorker:
    """One router's worker thread, serving its owners' queues round robin (see the module docstring)."""

    def __init__(self, name: str, max_queued: int) -> None:
        self.name = name
        self._max_queued = max_queued
        self._condition = threading.Condition()
        self._queues: OrderedDict[str, deque[tuple[Future[Any], Callable[[], Any]]]] = OrderedDict()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name=f"router-{name}", daemon=True)
        self._thread.start()

    def submit(self, owner: str, work: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        with self._condition:
            if self._closed:
                raise RouterUnavailable("the router pool is closed (the service is stopping)")
            waiting = sum(1 for queued, _ in self._queues.get(owner, ()) if not queued.cancelled())
            if waiting >= self._max_queued:
                raise RouterBusy(f"router {self.name}: {waiting} requests of this call are already waiting")
            self._queues.setdefault(owner, deque()).append((future, work))
            self._condition.notify()
        return future

    def waiting(self, owner: str) -> int:
        """How many of ``owner``'s jobs wait (queued, not cancelled, not started)."""
        with self._condition:
            return sum(1 for queued, _ in self._queues.get(owner, ()) if not queued.cancelled())

    def _next(self) -> tuple[Future[Any], Callable[[], Any]] | None:
        with self._condition:
            while not self._queues and not self._closed:
                self._condition.wait()
            if self._closed:
                return None
            owner, queue = next(iter(self._queues.items()))
            item = queue.popleft()
            if queue:
                self._queues.move_to_end(owner)  # this owner's next job waits for every other owner's turn
            else:
                del self._queues[owner]
            return item

    def _serve(self) -> None:
        while (item := self._next()) is not None:
            future, work = item
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while it waited (its tool stopped waiting): never started
            try:
                result = work()
            except BaseException as error:  # handed to whoever waits on the future, as ThreadPoolExecutor does
                future.set_exception(error)
            else:
                future.set_result(result)

    def close(self) -> None:
        """Drop the queued work (its futures are cancelled); a job in progress ends on its own."""
        with self._condition:
            self._closed = True
            queued = [future for queue in self._queues.values() for future, _ in queue]
            self._queues.clear()
            self._condition.notify_all()
        for future in queued:
            future.cancel()


class RouterPool:
    """One client and one worker per configured router. Thread-safe; close it when the service stops.

    A CA file that cannot be loaded raises ``ConfigError`` here, at start-up, rather than at the first call.
    """

    def __init__(self, settings: NetworkSettings) -> None:
        self.timeout = settings.timeout
        self._clients: dict[str, RouterClient] = {
            router.name: client_for(router, settings.timeout) for router in settings.routers
        }
        self._workers: dict[str, _FairWorker] = {
            name: _FairWorker(name, MAX_QUEUED_PER_OWNER) for name in self._clients
        }
        self._lock = threading.Lock()
        self._closed = False
        self._observers: list[Callable[[str, RouterErrorKind], None]] = []

    def __repr__(self) -> str:
        return f"RouterPool({', '.join(self._clients) or 'no routers'})"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._clients)

    def __contains__(self, name: object) -> bool:
        return name in self._clients

    def waiting(self, name: str, owner: str = "") -> int:
        """How many jobs of ``owner`` wait for router ``name`` (for diagnostics and tests)."""
        return self._workers[name].waiting(owner)

    def observe(self, observer: Callable[[str, RouterErrorKind], None]) -> None:
        """Call ``observer(router, kind)`` for every router error from now on (set it up before the calls)."""
        self._observers.append(observer)

    def _failed(self, name: str, error: RouterError) -> None:
        if name not in self._clients:
            return  # only configured routers are counted: the label's values stay bounded
        kind = error_kind(error)
        for observer in self._observers:
            observer(name, kind)

    def deadline(self) -> Deadline:
        """The time one tool has for all its router work: ``ROUTEROS_TIMEOUT`` from now."""
        return Deadline.after(self.timeout)

    def run(self, name: str, job: Job[T], deadline: Deadline, *, owner: str = "") -> T:
        """``job(name, client, deadline)`` on router ``name``'s worker; its result, or its ``RouterError``.

        ``owner`` is who the work is for (a call id): owners take turns on a router. Past the deadline
        ``RouterLate`` is raised even if the job is still running.
        """
        try:
            future = self._submit(name, job, deadline, owner)
            try:
                return future.result(timeout=deadline.remaining())
            except FutureTimeout:
                raise self._late(name, future) from None
        except RouterError as error:
            self._failed(name, error)
            raise

    def run_each(
        self, names: Iterable[str], job: Job[T], deadline: Deadline, *, owner: str = ""
    ) -> dict[str, T | RouterError]:
        """``job`` on several routers at once; each router's result or error (``RouterUnavailable`` if late)."""
        futures: dict[str, Future[T]] = {}
        results: dict[str, T | RouterError] = {}
        for name in names:
            try:
                futures[name] = self._submit(name, job, deadline, owner)
            except RouterBusy as busy:
                results[name] = busy
        wait_futures(futures.values(), timeout=deadline.remaining())
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
        for name, result in results.items():
            if isinstance(result, RouterError):
                self._failed(name, result)
        return results

    def _late(self, name: str, future: Future[T]) -> RouterLate:
        started = not future.cancel()  # cancel() fails once the job is running (or has just finished)
        return RouterLate(f"router {name} did not answer within {self.timeout:g} s", started=started)

    def _submit(self, name: str, job: Job[T], deadline: Deadline, owner: str) -> Future[T]:
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

        return worker.submit(owner, guarded)

    def close(self) -> None:
        """Drop queued work, then close every connection (waiting for a command in progress to end)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for worker in self._workers.values():
            worker.close()
        for client in self._clients.values():
            client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
