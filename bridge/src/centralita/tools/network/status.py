"""Reading one customer's connection on their router, and what of it a verified caller hears.

The read is one job on the router's worker, every command a query on one account (``/ppp/active`` and
``/ppp/secret`` by ``?name=``, the simple queue by ``?target=<address>/32`` or ``?comment=dni=<dni>``), except
the debtors and exception address-lists, which are read whole (``?list=<debtors> ?list=<exceptions> ?#|``)
because an entry is also the customer's when only the ``dni=`` inside its comment says so.

``ConnectionStatus.for_caller`` is what the model gets: the state of the service, never its address, the
modem's MAC or the account's identifiers. ``snapshot`` is the fuller picture kept with a ticket, for staff.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from centralita.config.network import NetworkSettings
from centralita.isp.customers import (
    SECRET_FIELDS,
    Customer,
    debt_standing,
    is_disabled,
    refers_to,
    router_address,
)
from centralita.isp.routeros.client import RouterClient, Row
from centralita.isp.routeros.pool import Deadline, RouterPool

__all__ = ["ConnectionStatus", "read_status"]

_ACTIVE_FIELDS: Final = ("name", "address", "uptime", "caller-id")
_LIST_FIELDS: Final = (".id", "list", "address", "comment", "timeout", "disabled")
_QUEUE_FIELDS: Final = ("name", "target", "max-limit", "comment", "disabled")


def _text(value: object) -> str:
    return "" if value is None or value is False else str(value)


@dataclass(frozen=True)
class ConnectionStatus:
    """What one router says about one customer's service."""

    connected: bool
    uptime: str | None
    address: str | None  # the session's, else the secret's remote-address, else the directory's
    mac: str | None
    secret_found: bool
    secret_disabled: bool
    secret_address: str | None  # the secret's remote-address (a static address of the account)
    debtor: bool
    exception: bool  # a promise to pay in force on the current address
    exception_left: str | None
    exception_elsewhere: bool  # an exception of this account left on an address it no longer holds
    max_limit: str | None

    def for_caller(self, customer: Customer) -> dict[str, Any]:
        """What a verified caller may hear: the state of their service, nothing that identifies it."""
        upload, _, download = (self.max_limit or "").partition("/")
        return {
            "conectado": self.connected,
            "tiempo_conectado": self.uptime,
            "cuenta_encontrada": self.secret_found or not customer.pppoe,
            "cuenta_deshabilitada": self.secret_disabled,
            "suspendido_por_adeudo": self.debtor and not self.exception,
            "prorroga_vigente": self.exception,
            "prorroga_restante": self.exception_left,
            "velocidad_maxima": {"subida": upload, "bajada": download or upload} if self.max_limit else None,
            "resumen": self.summary(customer),
        }

    def snapshot(self, customer: Customer) -> dict[str, Any]:
        """The state kept with a ticket for staff (never sent to the model)."""
        return {
            "servicio": customer.service,
            "router": customer.router,
            "direccion_ip": self.address,
            "mac_equipo": self.mac,
            "en_lista_morosos": self.debtor,
            **self.for_caller(customer),
        }

    def summary(self, customer: Customer) -> str:
        parts: list[str] = []
        if customer.pppoe and not self.secret_found:
            parts.append("La cuenta del servicio no existe en el equipo de red.")
        elif self.connected:
            parts.append(f"La conexión está activa desde hace {self.uptime}." if self.uptime else "Conectado.")
        elif customer.pppoe:
            parts.append("No hay una sesión de internet activa en este momento.")
        if self.secret_disabled:
            parts.append("La cuenta está deshabilitada en el equipo de red.")
        if self.exception:
            left = f", le quedan {self.exception_left}" if self.exception_left else ""
            parts.append(f"Tiene una prórroga por promesa de pago vigente{left}.")
        elif self.debtor:
            parts.append("El servicio está suspendido por adeudo.")
        if self.max_limit:
            upload, _, download = self.max_limit.partition("/")
            parts.append(f"Velocidad máxima: bajada {download or upload}, subida {upload}.")
        return " ".join(parts)


def read_status(
    pool: RouterPool, settings: NetworkSettings, customer: Customer, deadline: Deadline, owner: str
) -> ConnectionStatus:
    """The connection of ``customer`` (placed on a router) as its router sees it now; ``RouterError`` if not."""
    assert customer.router is not None

    def read(router: str, client: RouterClient, deadline: Deadline) -> ConnectionStatus:
        active: list[Row] = []
        secret: list[Row] = []
        if customer.pppoe:
            active = client.print("/ppp/active", where={"name": customer.service}, proplist=_ACTIVE_FIELDS)
            deadline.check(router)
            secret = client.print("/ppp/secret", where={"name": customer.service}, proplist=SECRET_FIELDS)
            deadline.check(router)
        session = active[0] if active else {}
        secret_address = router_address(secret[0].get("remote-address")) if secret else ""
        address = router_address(session.get("address")) or secret_address or (customer.address or "")
        entries = client.command(
            "/ip/firewall/address-list",
            "print",
            "=.proplist=" + ",".join(_LIST_FIELDS),
            f"?list={settings.debtors_list}",
            f"?list={settings.exception_list}",
            "?#|",
        )
        deadline.check(router)
        standing = debt_standing(
            entries,
            address=address,
            dni=customer.dni,
            debtors_list=settings.debtors_list,
            exception_list=settings.exception_list,
            service=customer.service,
        )
        queues: list[Row] = []
        if address:
            queues = client.print("/queue/simple", where={"target": f"{address}/32"}, proplist=_QUEUE_FIELDS)
        if not queues and customer.dni:
            deadline.check(router)
            queues = client.print("/queue/simple", where={"comment": f"dni={customer.dni}"}, proplist=_QUEUE_FIELDS)
        queue = next((row for row in queues if refers_to(row, address=address, dni=customer.dni, field="target")), None)
        exception = standing.exception
        return ConnectionStatus(
            connected=bool(active),
            uptime=_text(session.get("uptime")) or None,
            address=address or None,
            mac=_text(session.get("caller-id")) or None,
            secret_found=bool(secret),
            secret_disabled=bool(secret) and is_disabled(secret[0]),
            secret_address=secret_address or None,
            debtor=standing.debtor,
            exception=exception is not None,
            exception_left=(_text(exception.get("timeout")) or None) if exception else None,
            exception_elsewhere=standing.elsewhere is not None,
            max_limit=(_text(queue.get("max-limit")) or None) if queue else None,
        )

    return pool.run(customer.router, read, deadline, owner=owner)
