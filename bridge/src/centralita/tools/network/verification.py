"""The identity checks: the caller ID against the phones on file, and the DNI with a second factor.

Both run on records the model never saw, and their outcome is kept in the call's ``CallIdentity``, never handed
back for the model to pass on. What the model gets is only whether the call is verified and what to ask next.

**Caller ID** (``IDENTITY_CALLER_ID``, inbound calls only): checked once per call, at its first network tool.
The caller ID, read as E.164, must be a phone on file for exactly one customer (a customer may have several
services); a number shared by two customers verifies nobody.

**DNI and a second factor** (``verificar_identidad``): the DNI must find a customer, and every factor given must
match one of that customer's services: ``numero_cliente`` the customer number on the bill (``cliente=``),
``usuario`` the PPPoE user, ``ultimos_digitos`` exactly the last ``IDENTITY_PHONE_DIGITS`` digits of a phone on
file. Data that does not match is a failure counted across calls (``CallerGuard``); a factor the customer has
no record of is not the caller's failure, and a person has to help.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from centralita.config.network import Factor, IdentityPolicy
from centralita.isp.customers import Customer, DirectoryError, Lookup, normalize_account
from centralita.isp.phones import e164_or_none
from centralita.isp.routeros.pool import Deadline
from centralita.logs import call_logger
from centralita.storage.records import AuditResult, CallRecords
from centralita.tools.identity import Method, VerifiedCustomer
from centralita.tools.network import messages
from centralita.tools.network.finder import CustomerFinder
from centralita.tools.network.guard import CallerGuard, audit
from centralita.tools.registry import ToolContext, ToolResult

__all__ = ["VERIFICAR_IDENTIDAD", "Claim", "Verifier", "by_customer", "factor_matches"]

log = logging.getLogger(__name__)

VERIFICAR_IDENTIDAD = "verificar_identidad"


def factor_matches(customer: Customer, factor: Factor, said: str, digits: int) -> bool | None:
    """Whether what the caller said for ``factor`` is this service's; None when the service has no record of it."""
    if factor is Factor.CLIENTE:
        if not customer.account:
            return None
        return normalize_account(said) == customer.account
    if factor is Factor.USUARIO:
        return said.strip() == customer.service
    numbers = ["".join(character for character in phone if character.isdigit()) for phone in customer.phones]
    if not numbers:
        return None
    given = "".join(character for character in said if character.isdigit())
    return len(given) == digits and any(number.endswith(given) for number in numbers)


@dataclass(frozen=True, slots=True)
class Claim:
    """Who the caller says they are: a DNI, and the second factors they gave (at least one)."""

    dni: Lookup
    factors: Mapping[Factor, str]


def by_customer(customers: list[Customer]) -> dict[str, list[Customer]]:
    """Services grouped by the customer they belong to (``Customer.customer_id``)."""
    groups: dict[str, list[Customer]] = {}
    for customer in customers:
        groups.setdefault(customer.customer_id, []).append(customer)
    return groups


class Verifier:
    """Runs the checks and records their outcome in the call's identity; audits every decision."""

    def __init__(
        self,
        finder: CustomerFinder,
        guard: CallerGuard,
        records: CallRecords,
        policy: IdentityPolicy,
        region: str | None,
    ) -> None:
        self._finder = finder
        self._guard = guard
        self._records = records
        self._policy = policy
        self._region = region

    def caller_number(self, context: ToolContext) -> str | None:
        """The caller ID in E.164 when it may serve as a factor in this call, else None."""
        if not self._policy.caller_id or not context.identity.caller_id_usable:
            return None
        return e164_or_none(context.caller, self._region)

    def check_caller(self, context: ToolContext, deadline: Deadline) -> str:
        """Verify the call by its caller ID, once per call; what to tell the model if it could not be checked
        (no router answered, the directory is unusable), else "".

        It takes at most half of what is left of the tool's ``deadline``, so the tool's own lookup still has
        time when a router is slow. When no router answered it is tried again at the next tool; when only some
        did, it is over for the call without verifying anyone: the number might be on file on a router that
        did not answer too, so "exactly one customer" is not proven.
        """
        identity = context.identity
        if identity.caller_checked:
            return ""
        number = self.caller_number(context)
        if number is None or not self._finder.usable:
            identity.caller_check_done(0)
            return ""
        clog = call_logger(context.call_id, log)
        half = Deadline(min(deadline.at, time.monotonic() + deadline.remaining() / 2))
        try:
            found = self._finder.find(Lookup("telefono", number), half, context.call_id)
        except DirectoryError as error:
            clog.error("caller ID check: customer directory unusable: %s", error)
            return messages.DIRECTORY_DOWN
        if found.failed and not found.customers:
            clog.warning(
                "caller ID check: routers unavailable (%s); tried again at the next tool", ",".join(found.failed)
            )
            return messages.ROUTER_DOWN
        if found.failed:
            identity.caller_check_done(0)
            clog.warning(
                "caller ID check: routers unavailable (%s): not verified by caller ID in this call",
                ",".join(found.failed),
            )
            return ""
        groups = by_customer(found.customers)
        identity.caller_check_done(len(groups))
        if len(groups) != 1:
            clog.info("caller ID check: the number is on file for %d customers: not verified", len(groups))
            return ""
        [(customer_id, services)] = groups.items()
        verified = identity.verify(customer_id, services, Method.CALLER_ID)
        if verified is not None:
            clog.info("identity verified by caller_id: %d service(s)", len(verified.services))
            audit(
                self._records,
                context,
                VERIFICAR_IDENTIDAD,
                "verify identity by caller ID",
                AuditResult.DONE,
                "the caller ID is on file for exactly one customer",
                services[0] if len(services) == 1 else None,
                customer_id=customer_id,
            )
        return ""

    def claim(self, arguments: Mapping[str, Any]) -> Claim | ToolResult | None:
        """What the caller claims (the DNI and the factors given), None for "no data: tell the state", or the
        error to give the model; no I/O, so bad arguments cost nothing."""
        policy = self._policy
        dni_text = str(arguments.get("dni", "")).strip()
        given = {
            factor: str(arguments.get(messages.FACTOR_ARGUMENTS[factor], "")).strip()
            for factor in policy.factors
            if str(arguments.get(messages.FACTOR_ARGUMENTS[factor], "")).strip()
        }
        if not dni_text and not given:
            return None
        if not dni_text:
            return messages.error("Falta el DNI del titular: pídalo y llame de nuevo con el DNI y el otro dato.")
        if not given:
            return messages.error(
                f"El DNI solo no basta. {messages.verify_hint(policy)} Dé el DNI y el otro dato en la misma llamada."
            )
        lookup = Lookup.build("dni", dni_text, region=self._region)
        if isinstance(lookup, str):
            return messages.error(lookup)
        return Claim(lookup, given)

    def verify(self, claim: Claim, context: ToolContext, deadline: Deadline) -> ToolResult:
        """``verificar_identidad`` with data: the DNI with a second factor (see the module docstring)."""
        clog = call_logger(context.call_id, log)
        policy = self._policy
        lookup, given = claim.dni, claim.factors
        action = "verify identity by dni+" + "+".join(sorted(given))

        def refuse(
            reason: str, message: str, customer_id: str | None = None, customer: Customer | None = None
        ) -> ToolResult:
            clog.warning("%s refused: %s", VERIFICAR_IDENTIDAD, reason)
            audit(
                self._records,
                context,
                VERIFICAR_IDENTIDAD,
                action,
                AuditResult.REFUSED,
                reason,
                customer,
                customer_id=customer_id,
            )
            return messages.error(message)

        locked = self._guard.identity_locked(context, None)
        if locked:
            self._guard.refused_lock(context, VERIFICAR_IDENTIDAD, None, locked)
            return messages.error(messages.LOCKED)
        try:
            found = self._finder.find(lookup, deadline, context.call_id)
        except DirectoryError as error:
            clog.error("%s: customer directory unusable: %s", VERIFICAR_IDENTIDAD, error)
            return messages.error(messages.DIRECTORY_DOWN)
        if found.failed and not found.customers:
            clog.warning("%s: routers unavailable: %s", VERIFICAR_IDENTIDAD, ",".join(found.failed))
            return messages.error(messages.ROUTER_DOWN)
        if not found.customers:
            self._guard.identity_failed(context, None, "no customer with that DNI")
            return refuse("identity not verified: no customer with that DNI", messages.NOT_VERIFIED)
        customer_id = lookup.value  # every service found carries this DNI
        locked = self._guard.identity_locked(context, customer_id)
        if locked:
            self._guard.refused_lock(context, VERIFICAR_IDENTIDAD, customer_id, locked)
            return messages.error(messages.LOCKED)
        services = found.customers
        for factor, said in given.items():
            results = [factor_matches(service, factor, said, policy.phone_digits) for service in services]
            if all(result is None for result in results):
                return refuse(f"identity not verified: no {factor.value} on file", messages.NOT_ON_FILE, customer_id)
            if not any(results):
                self._guard.identity_failed(context, customer_id, f"{factor.value} does not match")
                return refuse(
                    f"identity not verified: the {factor.value} does not match", messages.NOT_VERIFIED, customer_id
                )
        methods = [Method.DNI]
        number = self.caller_number(context)
        if number is not None and any(service.has_phone(number) for service in services):
            methods.append(Method.CALLER_ID)
        verified = context.identity.verify(customer_id, services, *methods)
        if verified is None:
            return refuse("the call is already verified as another customer", messages.OTHER_CUSTOMER, customer_id)
        clog.info("identity verified by %s: %d service(s)", "+".join(sorted(verified.methods)), len(verified.services))
        audit(
            self._records,
            context,
            VERIFICAR_IDENTIDAD,
            action,
            AuditResult.DONE,
            "the DNI and the second factor match",
            services[0] if len(services) == 1 else None,
            customer_id=customer_id,
        )
        return self.state(context)

    def state(self, context: ToolContext) -> ToolResult:
        """What the model may know about the call's identity: verified or not, and what to do next."""
        policy = self._policy
        verified = context.identity.verified
        if verified is None:
            if context.identity.caller_found:
                lead = "El número de quien llama está registrado, pero no basta para verificar la identidad."
            else:
                lead = "La identidad de quien llama no está verificada."
            return ToolResult({"ok": True, "verificado": False, "mensaje": f"{lead} {messages.verify_hint(policy)}"})
        return ToolResult(
            {
                "ok": True,
                "verificado": True,
                "servicios": verified.labels(),
                "puede_consultar_estado": verified.satisfies(policy.read_requires),
                "puede_reactivar": verified.satisfies(policy.write_requires),
                "mensaje": self.verified_message(verified),
            }
        )

    def verified_message(self, verified: VerifiedCustomer) -> str:
        policy = self._policy
        parts = ["Identidad del titular verificada."]
        if len(verified.services) > 1:
            plans = "; ".join(f"servicio {item['servicio']}: plan {item['plan']}" for item in verified.labels())
            parts.append(f"Tiene varios servicios ({plans}): pregunte de cuál se trata y páselo como servicio.")
        if not verified.satisfies(policy.read_requires):
            parts.append(
                f"Para consultar el estado del servicio pida {messages.ask_for(policy)} (verificar_identidad)."
            )
        elif not verified.satisfies(policy.write_requires):
            ask = messages.ask_for(policy)
            more = f" pida {ask} y llame a verificar_identidad" if ask and Method.DNI not in verified.methods else ""
            parts.append(
                "Puede consultar el estado del servicio. Para reactivarlo por promesa de pago"
                + (f"{more}." if more else " ofrezca transferir la llamada a un operador.")
            )
        return " ".join(parts)
