"""Who the caller of one call has been shown to be: state the service keeps for the call, never a tool argument.

A language model's tool arguments are what the caller talked it into, so no tool takes "who the caller is" as
an argument. Each call has one ``CallIdentity``, created with the call and carried in every ``ToolContext`` of
it. It starts **unverified** and becomes **verified** (a customer, and the methods that proved it) only when a
check the service runs, on records the model never saw, succeeds:

* ``caller_id``: the caller ID of an inbound call, in E.164, is a phone on file for exactly one customer
  (``IDENTITY_CALLER_ID``). Caller ID on a SIP trunk can be set by whoever places the call, so this is one
  weak factor: by default it lets a caller read their own service, not change it.
* ``dni``: the DNI said by the caller and a second factor the ISP issued that an impostor lacks
  (``IDENTITY_FACTORS``: the customer number on the bill, the PPPoE user, the last digits of the phone on file)
  both match one customer. A name is never a factor: it is public.

What each action needs is a ``Requirement`` (``IDENTITY_READ_REQUIRES``, ``IDENTITY_WRITE_REQUIRES``). A call
verified as one customer is never switched to another: a caller who wants to act on a second account talks to a
person. An outbound call (the dialer's) never counts its dialled number as a caller ID: that someone answered a
number proves nothing about who they are.

The object is shared by the tools of one call only and lives as long as the call; it holds no thread, socket or
file. It is thread-safe, although a call runs its tools one at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from centralita.config.network import Requirement
from centralita.isp.customers import Customer

__all__ = ["CallIdentity", "Method", "Requirement", "VerifiedCustomer"]


class Method(StrEnum):
    """How the call was verified."""

    CALLER_ID = "caller_id"
    DNI = "dni"  # the DNI with a second factor


@dataclass(frozen=True, slots=True)
class VerifiedCustomer:
    """The customer a call is verified as: their services (sorted by service id) and how they were proven."""

    customer_id: str
    services: tuple[Customer, ...]
    methods: frozenset[Method]

    def satisfies(self, requirement: Requirement) -> bool:
        if requirement is Requirement.BOTH:
            return {Method.CALLER_ID, Method.DNI} <= self.methods
        if requirement is Requirement.DNI:
            return Method.DNI in self.methods
        return bool(self.methods)

    def service(self, label: str) -> Customer | None:
        """The service the model names by its label (``"1"``, ``"2"``...), or None when there is no such label."""
        text = label.strip()
        if not text.isdigit():
            return None
        index = int(text) - 1
        return self.services[index] if 0 <= index < len(self.services) else None

    def labels(self) -> list[dict[str, Any]]:
        """The services as the model may see them: a label and the plan, never the account's identifiers."""
        return [{"servicio": str(number), "plan": customer.plan} for number, customer in enumerate(self.services, 1)]


class CallIdentity:
    """One call's identity: unverified until ``verify`` succeeds; also counts the call's lookups.

    ``caller_id_usable``: whether the call's caller ID may verify it (False for the dialer's calls).
    """

    def __init__(self, *, caller_id_usable: bool = True) -> None:
        self.caller_id_usable = caller_id_usable
        self._lock = threading.Lock()
        self._verified: VerifiedCustomer | None = None
        self._caller_checked = False
        self._caller_found = 0  # customers the caller ID is on file for (when checked)
        self._lookups = 0

    def __repr__(self) -> str:
        verified = self._verified
        if verified is None:
            return "CallIdentity(unverified)"
        return f"CallIdentity(verified by {','.join(sorted(verified.methods))})"

    @property
    def verified(self) -> VerifiedCustomer | None:
        with self._lock:
            return self._verified

    @property
    def state(self) -> str:
        """``verified`` or ``unverified``, for logs."""
        return "unverified" if self.verified is None else "verified"

    def satisfies(self, requirement: Requirement) -> bool:
        verified = self.verified
        return verified is not None and verified.satisfies(requirement)

    def verify(self, customer_id: str, services: Iterable[Customer], *methods: Method) -> VerifiedCustomer | None:
        """Record a check that succeeded: the call is now verified as ``customer_id`` by ``methods`` (added to any
        earlier method for the same customer). None, with nothing changed, when the call is already verified as
        another customer."""
        found = tuple(sorted(services, key=lambda customer: (customer.service, customer.router or "")))
        if not customer_id or not found or not methods:
            raise ValueError("a verified customer needs an id, at least one service and a method")
        with self._lock:
            current = self._verified
            if current is not None and current.customer_id != customer_id:
                return None
            known = current.methods if current is not None else frozenset()
            self._verified = VerifiedCustomer(customer_id, found, known | frozenset(methods))
            return self._verified

    @property
    def caller_checked(self) -> bool:
        """Whether the caller ID has been looked up in this call (it is, once, at the first network tool)."""
        with self._lock:
            return self._caller_checked

    @property
    def caller_found(self) -> int:
        """How many customers the caller ID is on file for (0 when not checked or not found)."""
        with self._lock:
            return self._caller_found

    def caller_check_done(self, customers_found: int) -> None:
        with self._lock:
            self._caller_checked = True
            self._caller_found = customers_found

    def take_lookup(self, limit: int) -> bool:
        """Count one lookup of this call; False (and not counted) once ``limit`` lookups were made."""
        with self._lock:
            if self._lookups >= limit:
                return False
            self._lookups += 1
            return True

    @property
    def lookups(self) -> int:
        with self._lock:
            return self._lookups
