"""Finding customers: in the CSV directory when there is one, else in the routers' comments.

**Reading the routers.** A lookup by PPPoE user is a query (``/ppp/secret/print ?name=<user>``). A lookup by
phone or DNI cannot be one: those live inside the comment, and RouterOS queries compare whole values only
(``?comment=`` is neither indexed nor a substring match). So those lookups read the router's PPP secrets (with
a ``.proplist`` that leaves out the password) and its commented address-list entries (``?>comment=``, the
customers without PPPoE), and keep what was read, as ``Customer`` records, for ``ROUTEROS_DIRECTORY_TTL``
seconds per router (default 30; 0: read every time). Every call within that time looks up in the copy, so a
busy line costs one full read per router per TTL instead of one per lookup. The copy is at most that old:
a phone or DNI changed on the router is seen after at most ``ROUTEROS_DIRECTORY_TTL`` seconds.

The reading runs on the router's worker (``RouterPool``), one job at a time, so two calls never read the
same router's table at once, and the second one finds the copy the first one made.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from centralita.isp.customers import SECRET_FIELDS, Customer, CustomerDirectory, Lookup
from centralita.isp.routeros.client import RouterClient, RouterError
from centralita.isp.routeros.pool import Deadline, Job, RouterPool

__all__ = ["CustomerFinder", "Found"]

_ENTRY_FIELDS = ("address", "comment", "disabled")


@dataclass
class Found:
    """The customers a lookup found, and the routers that could not be asked."""

    customers: list[Customer]
    failed: dict[str, RouterError] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Copy:
    """What one router's comments said at ``taken`` (``time.monotonic``)."""

    taken: float
    secrets: tuple[Customer, ...]
    entries: tuple[Customer, ...]


class CustomerFinder:
    """Customer lookups for the network tools; thread-safe, shared by every call of the service."""

    def __init__(
        self,
        pool: RouterPool,
        directory: CustomerDirectory | None,
        region: str | None,
        ttl: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._directory = directory
        self._region = region
        self._ttl = ttl
        self._clock = clock
        self._copies: dict[str, _Copy] = {}
        self._lock = threading.Lock()

    @property
    def usable(self) -> bool:
        """Whether there is anything to look customers up in (a directory or a router)."""
        return self._directory is not None or bool(self._pool.names)

    def find(self, lookup: Lookup, deadline: Deadline, owner: str) -> Found:
        """Customers matching ``lookup``; ``DirectoryError`` if the directory cannot be read."""
        if self._directory is not None:
            customers = self._directory.find(lookup)
            only = self._pool.names[0] if len(self._pool.names) == 1 else None
            return Found([replace(c, router=c.router or only) for c in customers])
        found = Found([])
        if not self._pool.names:
            return found
        secrets: list[Customer] = []
        entries: list[Customer] = []
        for router, result in self._pool.run_each(
            self._pool.names, self._search(lookup), deadline, owner=owner
        ).items():
            if isinstance(result, RouterError):
                found.failed[router] = result
            else:
                secrets.extend(result[0])
                entries.extend(result[1])
        # Customers without PPPoE only when no PPP secret matched: an address-list entry of a PPPoE customer
        # is a cross-reference to them, not another customer.
        found.customers = secrets or entries
        return found

    def placed(self, customer: Customer, deadline: Deadline, owner: str) -> Customer:
        """``customer`` with its router: as recorded if configured, else the router holding its PPP secret."""
        if customer.router is not None:
            return customer if customer.router in self._pool else replace(customer, router=None)
        if not customer.pppoe or not self._pool.names:
            return customer

        def holds(router: str, client: RouterClient, deadline: Deadline) -> bool:
            return bool(client.print("/ppp/secret", where={"name": customer.service}, proplist=["name"]))

        results = self._pool.run_each(self._pool.names, holds, deadline, owner=owner)
        for router, result in results.items():
            if result is True:
                return replace(customer, router=router)
        errors = [result for result in results.values() if isinstance(result, RouterError)]
        if errors:
            raise errors[0]
        return customer

    def _search(self, lookup: Lookup) -> Job[tuple[list[Customer], list[Customer]]]:
        """The job that finds ``lookup`` on one router: (PPP secret customers, address-list customers)."""
        region = self._region

        def job(router: str, client: RouterClient, deadline: Deadline) -> tuple[list[Customer], list[Customer]]:
            if lookup.kind == "usuario":
                rows = client.print("/ppp/secret", where={"name": lookup.value}, proplist=SECRET_FIELDS)
                return [Customer.from_secret(row, router, region=region) for row in rows], []
            copy = self._copy(router, client, deadline)
            secrets = [customer for customer in copy.secrets if lookup.matches(customer)]
            entries = [customer for customer in copy.entries if lookup.matches(customer)] if not secrets else []
            return secrets, entries

        return job

    def _copy(self, router: str, client: RouterClient, deadline: Deadline) -> _Copy:
        """The router's customers as last read, read again when older than the TTL (on the router's worker)."""
        now = self._clock()
        with self._lock:
            copy = self._copies.get(router)
        if copy is not None and self._ttl > 0 and now - copy.taken < self._ttl:
            return copy
        region = self._region
        secrets = tuple(
            Customer.from_secret(row, router, region=region)
            for row in client.print("/ppp/secret", proplist=SECRET_FIELDS)
        )
        deadline.check(router)
        entries: dict[str, Customer] = {}
        for row in client.command(
            "/ip/firewall/address-list", "print", "=.proplist=" + ",".join(_ENTRY_FIELDS), "?>comment="
        ):
            customer = Customer.from_address_entry(row, router, region=region)
            if customer is not None:
                entries.setdefault(customer.service, customer)
        copy = _Copy(now, secrets, tuple(entries.values()))
        if self._ttl > 0:
            with self._lock:
                self._copies[router] = copy
        return copy
