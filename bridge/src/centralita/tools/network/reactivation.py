"""``reactivar_servicio``: a temporary exception for the call's verified customer after a promise to pay.

It takes no identity argument: it acts on the customer the call is verified as (``CallIdentity``), and only
when that verification meets ``IDENTITY_WRITE_REQUIRES``. The rules, in order, each refusal audited in
``audit_log`` with the call, the caller, the customer and the reason:

1. ``ROUTEROS_WRITES=true``;
2. the call is verified well enough for a write;
3. ``confirmado`` is true (the caller agreed to the terms);
4. the service is one of the verified customer's (``servicio``, when they have several);
5. fewer than ``ROUTEROS_REACTIVATION_LIMIT`` reactivations of this customer (any service) are ``done`` or
   ``attempted`` in the audit log within ``ROUTEROS_REACTIVATION_PERIOD``;
6. the account exists and is enabled, is on the debtors list, has no exception in force, and has an address;
7. at write time, on the router's worker, just before the ``add``: the address still belongs to the account.
   No other account's session (``/ppp/active ?address=``) holds it, and the account's own session, if up, holds
   exactly it; with no session up, it must be the account's static ``remote-address``. A pool address the
   account had a moment ago may be someone else's now, and the exception would then help them, not the
   subscriber.

The entry names the account it was granted to (``usuario=<user>`` in its comment), so a later reading never
takes it for another account's. The count of rule 5 and the ``attempted`` audit row are one transaction
(``CallRecords.reserve_audit``): two calls at once cannot both take the last reactivation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from centralita.config.network import NetworkSettings
from centralita.isp.customers import Customer, router_address
from centralita.isp.routeros.client import RouterAuthError, RouterClient, RouterCommandError, RouterError
from centralita.isp.routeros.pool import Deadline, RouterLate, RouterPool
from centralita.logs import call_logger
from centralita.storage.records import AuditResult, CallRecords
from centralita.tools.identity import VerifiedCustomer
from centralita.tools.network import messages
from centralita.tools.network.finder import CustomerFinder
from centralita.tools.network.guard import CallerGuard, audit
from centralita.tools.network.status import ConnectionStatus, read_status
from centralita.tools.network.verification import Verifier
from centralita.tools.registry import ToolContext, ToolResult

__all__ = ["REACTIVAR_SERVICIO", "Reactivator", "chosen_service", "router_error"]

log = logging.getLogger(__name__)

REACTIVAR_SERVICIO = "reactivar_servicio"


@dataclass(frozen=True, slots=True)
class _Refused:
    """The last check before the write said no."""

    reason: str


def chosen_service(verified: VerifiedCustomer, arguments: dict[str, Any]) -> Customer | str:
    """The verified customer's service the model names (``servicio``), or what to tell the model."""
    label = str(arguments.get("servicio", "")).strip()
    options = "; ".join(f"servicio {item['servicio']}: plan {item['plan']}" for item in verified.labels())
    if label:
        service = verified.service(label)
        if service is None:
            return f"El titular verificado no tiene un servicio {label}. Sus servicios son: {options}."
        return service
    if len(verified.services) == 1:
        return verified.services[0]
    return f"El titular tiene varios servicios ({options}). Pregunte de cuál se trata y páselo como servicio."


def router_error(clog: logging.LoggerAdapter[logging.Logger], tool: str, error: RouterError) -> ToolResult:
    """Log a router failure for operators and give the model its speakable sentence."""
    if isinstance(error, RouterAuthError):
        clog.error("%s: %s (check the router's API user, password and group)", tool, error)
        return messages.error(messages.ROUTER_DOWN)
    if isinstance(error, RouterCommandError):
        clog.error("%s: the router refused a command: %s", tool, error)
        return messages.error(messages.ROUTER_REFUSED)
    clog.warning("%s: %s", tool, error)
    return messages.error(messages.ROUTER_DOWN)


class Reactivator:
    """Runs ``reactivar_servicio`` (see the module docstring)."""

    def __init__(
        self,
        settings: NetworkSettings,
        records: CallRecords,
        pool: RouterPool,
        finder: CustomerFinder,
        guard: CallerGuard,
        verifier: Verifier,
    ) -> None:
        self._settings = settings
        self._records = records
        self._pool = pool
        self._finder = finder
        self._guard = guard
        self._verifier = verifier

    def _action(self, address: str = "") -> str:
        settings = self._settings
        target = f" address={address}" if address else ""
        return f"address-list add list={settings.exception_list}{target} timeout={settings.exception_days}d"

    def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        clog = call_logger(context.call_id, log)
        settings = self._settings
        days = settings.exception_days
        policy = settings.identity
        verified: VerifiedCustomer | None = None

        def refuse(reason: str, message: str, customer: Customer | None = None, *, ok: bool = False) -> ToolResult:
            audit(
                self._records,
                context,
                REACTIVAR_SERVICIO,
                self._action(),
                AuditResult.REFUSED,
                reason,
                customer,
                customer_id=verified.customer_id if verified else None,
            )
            clog.warning("%s refused: %s", REACTIVAR_SERVICIO, reason)
            if ok:
                return ToolResult({"ok": True, "reactivado": False, "mensaje": message})
            return messages.error(message)

        if not settings.writes_enabled:
            return refuse(
                "writes are disabled (ROUTEROS_WRITES=false)",
                "Desde este sistema no puedo reactivar servicios. Ofrezca transferir la llamada a un operador.",
            )
        deadline = self._pool.deadline()
        unchecked = self._verifier.check_caller(context, deadline)
        verified = context.identity.verified
        if unchecked and verified is None:
            audit(
                self._records,
                context,
                REACTIVAR_SERVICIO,
                self._action(),
                AuditResult.FAILED,
                "the caller ID could not be checked: routers or directory unavailable",
            )
            return messages.error(unchecked)
        if verified is None or not verified.satisfies(policy.write_requires):
            how = "not verified" if verified is None else f"verified by {'+'.join(sorted(verified.methods))} only"
            ask = messages.ask_for(policy)
            hint = f"pida {ask} y llame a verificar_identidad" if ask else "ofrezca transferir la llamada a un operador"
            return refuse(
                f"identity {how}: IDENTITY_WRITE_REQUIRES={policy.write_requires.value}",
                f"Para reactivar un servicio primero hay que verificar la identidad del titular: {hint}.",
            )
        if arguments.get("confirmado") is not True:
            return refuse(
                "the caller has not confirmed (confirmado is not true)",
                f"Antes explique al cliente que el servicio se reactiva por {days} días y que el corte vuelve si no "
                "paga, y pregunte si está de acuerdo. Llame de nuevo con confirmado=true solo si dijo que sí.",
            )
        chosen = chosen_service(verified, arguments)
        if isinstance(chosen, str):
            return refuse(f"service not chosen or not the verified customer's ({arguments.get('servicio')!r})", chosen)
        customer = chosen
        if settings.reactivation_limit == 0:
            return refuse(
                "reactivations are off (ROUTEROS_REACTIVATION_LIMIT=0)",
                "Desde este sistema no puedo reactivar servicios. Ofrezca transferir la llamada a un operador.",
                customer,
            )
        used = self._records.count_audit(
            REACTIVAR_SERVICIO,
            verified.customer_id,
            settings.reactivation_period,
            results=(AuditResult.DONE, AuditResult.ATTEMPTED),
        )
        if used >= settings.reactivation_limit:
            return self._over_limit(refuse, customer)
        refusal = self._guard.take_lookup(context, REACTIVAR_SERVICIO)
        if refusal is not None:
            return messages.error(refusal)
        try:
            customer = self._finder.placed(customer, deadline, context.call_id)
            if customer.router is None:
                return refuse("the service was not found on any router", messages.UNKNOWN_ROUTER, customer)
            status = read_status(self._pool, settings, customer, deadline, context.call_id)
        except RouterError as error:
            audit(
                self._records,
                context,
                REACTIVAR_SERVICIO,
                self._action(),
                AuditResult.FAILED,
                f"router error before the write: {error}",
                customer,
                customer_id=verified.customer_id,
            )
            return router_error(clog, REACTIVAR_SERVICIO, error)
        if customer.pppoe and not status.secret_found:
            return refuse("the PPP secret was not found on its router", messages.UNKNOWN_ROUTER, customer)
        if status.secret_disabled:
            return refuse(
                "the PPP secret is disabled: a person must decide",
                "La cuenta está deshabilitada; solo un operador puede reactivarla. Ofrezca transferir la llamada.",
                customer,
            )
        if not status.debtor:
            return refuse(
                "not in the debtors list: nothing to do",
                "El servicio no está suspendido por adeudo; no hace falta reactivarlo.",
                customer,
                ok=True,
            )
        if status.exception:
            left = f" Le quedan {status.exception_left}." if status.exception_left else ""
            return refuse(
                "an exception is already in force",
                f"El cliente ya tiene una prórroga por promesa de pago vigente.{left} No se puede dar otra.",
                customer,
                ok=True,
            )
        if not status.address:
            return refuse(
                "no address known for the service",
                "No encontré la dirección del servicio. Ofrezca transferir la llamada a un operador.",
                customer,
            )
        return self._write(context, verified, customer, status, refuse)

    def _over_limit(self, refuse: Callable[..., ToolResult], customer: Customer) -> ToolResult:
        settings = self._settings
        period = settings.reactivation_period.days or 1
        return refuse(
            f"reactivation limit reached: {settings.reactivation_limit} per {period}d (ROUTEROS_REACTIVATION_LIMIT)",
            f"Este cliente ya tuvo la reactivación por promesa de pago permitida en los últimos {period} días. "
            "No puedo dar otra; ofrezca transferir la llamada a un operador.",
            customer,
        )

    def _write(
        self,
        context: ToolContext,
        verified: VerifiedCustomer,
        customer: Customer,
        status: ConnectionStatus,
        refuse: Callable[..., ToolResult],
    ) -> ToolResult:
        clog = call_logger(context.call_id, log)
        settings = self._settings
        days = settings.exception_days
        address = router_address(status.address)
        comment = f"usuario={customer.service};dni={customer.dni};centralita={context.call_id};motivo=promesa de pago"
        audit_id = self._records.reserve_audit(
            context.call_id,
            REACTIVAR_SERVICIO,
            self._action(address),
            customer_id=verified.customer_id,
            limit=settings.reactivation_limit,
            window=settings.reactivation_period,
            caller=context.caller or None,
            router=customer.router,
            customer=customer.service,
        )
        if audit_id is None:  # another call took the last one meanwhile
            return self._over_limit(refuse, customer)
        records = self._records
        static = status.secret_address

        def write(router: str, client: RouterClient, deadline: Deadline) -> str | _Refused:
            # The audit row is finished here, on the router's worker, so it is right even if the tool stopped
            # waiting: a late answer still records what the router did.
            try:
                holders = client.print("/ppp/active", where={"address": address}, proplist=["name", "address"])
                if any(str(row.get("name", "")) != customer.service for row in holders):
                    refused = _Refused("the address is now held by another account's session")
                elif customer.pppoe:
                    own = client.print("/ppp/active", where={"name": customer.service}, proplist=["name", "address"])
                    if own and router_address(own[0].get("address")) != address:
                        refused = _Refused("the account's session now has another address")
                    elif not own and static != address:
                        refused = _Refused("no session of the account holds the address and it is not its static one")
                    else:
                        refused = None
                else:
                    refused = None
                if refused is not None:
                    records.finish_audit(audit_id, AuditResult.REFUSED, refused.reason)
                    return refused
                deadline.check(router)
                entry = client.add(
                    "/ip/firewall/address-list",
                    list=settings.exception_list,
                    address=address,
                    timeout=f"{days}d",
                    comment=comment,
                )
            except RouterError as error:
                records.finish_audit(audit_id, AuditResult.FAILED, str(error))
                raise
            records.finish_audit(audit_id, AuditResult.DONE, f"entry {entry}")
            return entry

        assert customer.router is not None
        try:
            result = self._pool.run(customer.router, write, self._pool.deadline(), owner=context.call_id)
        except RouterLate as error:
            if not error.started:
                records.finish_audit(audit_id, AuditResult.FAILED, f"not sent: {error}")
                return router_error(clog, REACTIVAR_SERVICIO, error)
            clog.error("%s: %s; the write may still happen (audit %d)", REACTIVAR_SERVICIO, error, audit_id)
            return messages.error(
                "El equipo de red no respondió a tiempo y no sé si la reactivación se aplicó. No la prometa; "
                "ofrezca transferir la llamada a un operador."
            )
        except RouterError as error:
            records.finish_audit(audit_id, AuditResult.FAILED, f"not sent: {error}")  # no-op if the job did
            return router_error(clog, REACTIVAR_SERVICIO, error)
        if isinstance(result, _Refused):
            clog.warning("%s refused at write time: %s (audit %d)", REACTIVAR_SERVICIO, result.reason, audit_id)
            return messages.error(
                "La dirección del servicio cambió mientras lo revisaba y no pude aplicar la reactivación. "
                "Ofrezca transferir la llamada a un operador."
            )
        clog.info(
            "%s: service=%s router=%s address=%s added to %s for %dd (entry %s, audit %d)",
            REACTIVAR_SERVICIO,
            customer.service,
            customer.router,
            address,
            settings.exception_list,
            days,
            result,
            audit_id,
        )
        return ToolResult(
            {
                "ok": True,
                "reactivado": True,
                "dias": days,
                "mensaje": (
                    f"Servicio reactivado por {days} días por promesa de pago. Si en unos minutos no navega, "
                    "que reinicie su módem. Si no paga en ese plazo, el servicio se suspende de nuevo."
                ),
            }
        )
