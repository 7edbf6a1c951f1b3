"""The assistant's tools on the provider's network: find a customer, read their connection, reactivate a
service after a promise to pay, and open an outage ticket.

=====================  ======================================================================================
``consultar_cliente``  The customer by phone (the caller's number by default), DNI or PPPoE user: name, plan,
                       service id and router. Never the DNI, the phone on file or any password.
``estado_conexion``    PPPoE session (uptime, address, the CPE's MAC), secret disabled or not, membership of
                       the debtors and exception address-lists, the simple queue's max-limit.
``reactivar_servicio`` Adds the customer's address to the exception address-list (``ROUTEROS_EXCEPTION_LIST``)
                       with ``timeout=<ROUTEROS_EXCEPTION_DAYS>d`` and a comment naming the call, so the
                       router's firewall lets the customer through while the debtors entry stays, and the cut
                       comes back by itself when the timeout runs out. Only with ``ROUTEROS_WRITES=true``,
                       the identity checked by this tool (the DNI plus the full name or the phone on file),
                       and ``confirmado: true``. Every request, refused or not, is in ``audit_log``.
``reportar_falla``     A ticket in ``tickets`` with the symptom, the customer (when found) and the connection
                       state seen at that moment; returns the ticket number.
=====================  ======================================================================================

Which tools a service gets (``network_tools``): ``reportar_falla`` always (a ticket is useful with no router
at all); ``consultar_cliente`` when there is a router or a customer directory; ``estado_conexion`` and
``reactivar_servicio`` only with at least one router.

Customers come from the PPP secret comments of every router (and address-list comments for customers
without PPPoE), or from ``CUSTOMER_DIRECTORY`` when it is set (see ``centralita.isp.customers``). All the router
work of one tool shares one deadline, ``ROUTEROS_TIMEOUT`` (``RouterPool``): a dead or slow router costs the
caller at most that long. Failures come back to the model as a short Spanish sentence it can say
(``ok: false``); nothing raises into the call.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from centralita.config.network import NetworkSettings
from centralita.isp.customers import (
    SECRET_FIELDS,
    Customer,
    CustomerDirectory,
    DirectoryError,
    Lookup,
    LookupKind,
    debt_standing,
    is_disabled,
    names_match,
    refers_to,
)
from centralita.isp.routeros.client import (
    RouterAuthError,
    RouterClient,
    RouterCommandError,
    RouterError,
    Row,
)
from centralita.isp.routeros.pool import Deadline, Job, RouterLate, RouterPool
from centralita.logs import call_logger
from centralita.storage.records import AuditResult, CallRecords
from centralita.tools.registry import Tool, ToolContext, ToolResult

__all__ = [
    "CONSULTAR_CLIENTE",
    "ESTADO_CONEXION",
    "REACTIVAR_SERVICIO",
    "REPORTAR_FALLA",
    "NetworkToolbox",
    "network_tools",
]

log = logging.getLogger(__name__)

CONSULTAR_CLIENTE: Final = "consultar_cliente"
ESTADO_CONEXION: Final = "estado_conexion"
REACTIVAR_SERVICIO: Final = "reactivar_servicio"
REPORTAR_FALLA: Final = "reportar_falla"

MAX_IDENTITY_FAILURES: Final = 3  # failed identity checks per call before reactivar_servicio stops trying
_REMEMBERED_CALLS: Final = 1000  # calls whose failed identity checks are remembered

_ACTIVE_FIELDS: Final = ("name", "address", "uptime", "caller-id")
_LIST_FIELDS: Final = (".id", "list", "address", "comment", "timeout", "disabled")
_QUEUE_FIELDS: Final = ("name", "target", "max-limit", "comment", "disabled")

# What the model hears when something fails: short, speakable, and saying what to offer next.
ROUTER_DOWN: Final = (
    "No pude consultar el equipo de red en este momento. Ofrezca registrar un reporte de falla o transferir "
    "la llamada a un operador."
)
ROUTER_REFUSED: Final = "El equipo de red rechazó la consulta. Ofrezca transferir la llamada a un operador."
DIRECTORY_DOWN: Final = "No puedo consultar el directorio de clientes ahora. Ofrezca transferir a un operador."
NO_CALLER: Final = "No tengo el número de quien llama. Pida el DNI o el usuario del servicio."
NOT_FOUND: Final = "No encontré un cliente con esos datos. Pida otro dato: el DNI o el usuario del servicio."
SEVERAL: Final = "Hay varios servicios con esos datos. Pregunte el usuario del servicio y consulte con él."
NOT_VERIFIED: Final = "No pude verificar la identidad del titular con esos datos."
UNKNOWN_ROUTER: Final = "El servicio del cliente está en un equipo que no puedo consultar. Ofrezca transferir."

_LOOKUP_PROPERTIES: Final[dict[str, Any]] = {
    "telefono": {
        "type": "string",
        "maxLength": 32,
        "description": (
            "Teléfono del titular, con o sin lada. Si no se da ningún dato, se usa el número de quien llama."
        ),
    },
    "dni": {"type": "string", "maxLength": 20, "description": "DNI o documento de identidad del titular."},
    "usuario": {"type": "string", "maxLength": 64, "description": "Usuario del servicio (usuario PPPoE)."},
}


def _error(message: str) -> ToolResult:
    return ToolResult({"ok": False, "error": message}, ok=False)


def _text(value: object) -> str:
    return "" if value is None or value is False else str(value)


@dataclass
class _Found:
    """The customers a lookup found, and the routers that could not be asked."""

    customers: list[Customer]
    failed: dict[str, RouterError] = field(default_factory=dict)


@dataclass(frozen=True)
class ConnectionStatus:
    """What one router says about one customer's service."""

    connected: bool
    uptime: str | None
    address: str | None
    mac: str | None
    secret_found: bool
    secret_disabled: bool
    debtor: bool
    exception: bool
    exception_left: str | None
    max_limit: str | None

    def output(self, customer: Customer) -> dict[str, Any]:
        upload, _, download = (self.max_limit or "").partition("/")
        return {
            "servicio": customer.service,
            "router": customer.router,
            "conectado": self.connected,
            "tiempo_conectado": self.uptime,
            "direccion_ip": self.address,
            "mac_equipo": self.mac,
            "cuenta_encontrada": self.secret_found or not customer.pppoe,
            "cuenta_deshabilitada": self.secret_disabled,
            "suspendido_por_adeudo": self.debtor and not self.exception,
            "en_lista_morosos": self.debtor,
            "prorroga_vigente": self.exception,
            "prorroga_restante": self.exception_left,
            "velocidad_maxima": {"subida": upload, "bajada": download or upload} if self.max_limit else None,
            "resumen": self.summary(customer),
        }

    def summary(self, customer: Customer) -> str:
        parts: list[str] = []
        if customer.pppoe and not self.secret_found:
            parts.append("El usuario del servicio no existe en el router.")
        elif self.connected:
            parts.append(f"La conexión está activa desde hace {self.uptime}." if self.uptime else "Conectado.")
        elif customer.pppoe:
            parts.append("No hay una sesión de internet activa en este momento.")
        if self.secret_disabled:
            parts.append("La cuenta está deshabilitada en el router.")
        if self.exception:
            left = f", le quedan {self.exception_left}" if self.exception_left else ""
            parts.append(f"Tiene una prórroga por promesa de pago vigente{left}.")
        elif self.debtor:
            parts.append("El servicio está suspendido por adeudo.")
        if self.max_limit:
            upload, _, download = self.max_limit.partition("/")
            parts.append(f"Velocidad máxima: bajada {download or upload}, subida {upload}.")
        return " ".join(parts)


class NetworkToolbox:
    """The four network tools of one service, sharing its settings, call records and router pool."""

    def __init__(self, settings: NetworkSettings, records: CallRecords, pool: RouterPool) -> None:
        self._settings = settings
        self._records = records
        self._pool = pool
        self._region = settings.phone_region
        path = settings.customer_directory
        self._directory = CustomerDirectory(path, self._region) if path is not None else None
        if self._region is None and (path is not None or pool.names):
            log.warning(
                "DIALER_COUNTRY_CODE is not set: caller IDs and phones without a country code (+) match no "
                "customer; set it (e.g. DIALER_COUNTRY_CODE=52) if the trunk shows national numbers"
            )
        self._identity_failures: OrderedDict[str, int] = OrderedDict()
        self._failures_lock = threading.Lock()

    @property
    def directory(self) -> CustomerDirectory | None:
        return self._directory

    def tools(self) -> list[Tool]:
        """The tools worth offering with this configuration (see the module docstring)."""
        tools: list[Tool] = []
        routers = bool(self._pool.names)
        if routers or self._directory is not None:
            tools.append(self._consultar_tool())
        if routers:
            tools.append(self._estado_tool())
            tools.append(self._reactivar_tool())
        tools.append(self._reportar_tool())
        return tools

    # -- tool definitions ---------------------------------------------------------------------------------

    def _consultar_tool(self) -> Tool:
        return Tool(
            name=CONSULTAR_CLIENTE,
            description=(
                "Busca al cliente y devuelve su nombre, plan, usuario del servicio y router. Sin datos usa el "
                "número de quien llama; si no lo encuentra, pida el DNI o el usuario del servicio y vuelva a "
                "buscar. Dé solo un dato a la vez. No lea en voz alta el nombre registrado para confirmar la "
                "identidad: pida al cliente que diga su nombre completo."
            ),
            parameters={
                "type": "object",
                "properties": dict(_LOOKUP_PROPERTIES),
                "required": [],
                "additionalProperties": False,
            },
            handler=self.consultar_cliente,
        )

    def _estado_tool(self) -> Tool:
        return Tool(
            name=ESTADO_CONEXION,
            description=(
                "Consulta en el router el estado de la conexión del cliente: si está conectado y desde cuándo, "
                "si la cuenta está deshabilitada, si está suspendido por adeudo o tiene una prórroga, y su "
                "velocidad máxima. Sin datos usa el número de quien llama. Antes de hablar de adeudos, "
                "confirme que habla con el titular."
            ),
            parameters={
                "type": "object",
                "properties": dict(_LOOKUP_PROPERTIES),
                "required": [],
                "additionalProperties": False,
            },
            handler=self.estado_conexion,
        )

    def _reactivar_tool(self) -> Tool:
        days = self._settings.exception_days
        return Tool(
            name=REACTIVAR_SERVICIO,
            description=(
                f"Reactiva por {days} días el servicio de un cliente suspendido por adeudo que promete pagar. "
                "Requisitos: pida al cliente su DNI y su nombre completo (o el teléfono registrado) y páselos tal "
                "como los dijo: la herramienta verifica la identidad. Explique que la reactivación dura "
                f"{days} días y que el corte vuelve si no paga, pregunte si está de acuerdo, y llame con "
                "confirmado=true solo si dijo que sí. Si hay varios servicios, pase también el usuario."
            ),
            parameters={
                "type": "object",
                "properties": {
                    "dni": {"type": "string", "maxLength": 20, "description": "DNI que dijo el cliente."},
                    "nombre": {"type": "string", "maxLength": 120, "description": "Nombre completo que dijo."},
                    "telefono": {"type": "string", "maxLength": 32, "description": "Teléfono registrado que dijo."},
                    "usuario": {"type": "string", "maxLength": 64, "description": "Usuario del servicio."},
                    "confirmado": {
                        "type": "boolean",
                        "description": "true solo si el cliente aceptó la reactivación temporal.",
                    },
                },
                "required": ["dni", "confirmado"],
                "additionalProperties": False,
            },
            handler=self.reactivar_servicio,
        )

    def _reportar_tool(self) -> Tool:
        return Tool(
            name=REPORTAR_FALLA,
            description=(
                "Registra un reporte de falla técnica (sin internet, lentitud, cortes) y devuelve el número de "
                "reporte para dárselo al cliente. Describa el síntoma con las palabras del cliente. Sin datos "
                "del cliente usa el número de quien llama."
            ),
            parameters={
                "type": "object",
                "properties": {
                    "sintoma": {"type": "string", "maxLength": 500, "description": "Qué le pasa al servicio."},
                    **_LOOKUP_PROPERTIES,
                },
                "required": ["sintoma"],
                "additionalProperties": False,
            },
            handler=self.reportar_falla,
        )

    # -- consultar_cliente ----------------------------------------------------------------------------------

    def consultar_cliente(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        clog = call_logger(context.call_id, log)
        lookup = self._lookup(arguments, context)
        if isinstance(lookup, str):
            return _error(lookup)
        try:
            found = self._find(lookup, self._pool.deadline())
        except DirectoryError as error:
            clog.error("%s: customer directory unusable: %s", CONSULTAR_CLIENTE, error)
            return _error(DIRECTORY_DOWN)
        self._log_failures(clog, CONSULTAR_CLIENTE, found.failed)
        clog.info(
            "%s: by %s: %d found%s",
            CONSULTAR_CLIENTE,
            lookup.describe(),
            len(found.customers),
            f", routers failed: {','.join(found.failed)}" if found.failed else "",
        )
        if not found.customers:
            if found.failed:
                return _error(ROUTER_DOWN)
            return ToolResult({"ok": True, "encontrado": False, "mensaje": NOT_FOUND})
        if len(found.customers) > 1:
            return ToolResult(
                {
                    "ok": True,
                    "encontrado": True,
                    "varios": True,
                    "clientes": [customer.public() for customer in found.customers],
                    "mensaje": SEVERAL,
                }
            )
        return ToolResult({"ok": True, "encontrado": True, **found.customers[0].public()})

    # -- estado_conexion ------------------------------------------------------------------------------------

    def estado_conexion(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        clog = call_logger(context.call_id, log)
        lookup = self._lookup(arguments, context)
        if isinstance(lookup, str):
            return _error(lookup)
        deadline = self._pool.deadline()
        try:
            customer = self._one_customer(lookup, deadline, clog, ESTADO_CONEXION)
            if isinstance(customer, ToolResult):
                return customer
            status = self._status(customer, deadline)
        except RouterError as error:
            return self._router_error(clog, ESTADO_CONEXION, error)
        clog.info(
            "%s: service=%s router=%s connected=%s disabled=%s debtor=%s exception=%s",
            ESTADO_CONEXION,
            customer.service,
            customer.router,
            status.connected,
            status.secret_disabled,
            status.debtor,
            status.exception,
        )
        return ToolResult({"ok": True, "nombre": customer.name, **status.output(customer)})

    # -- reactivar_servicio ---------------------------------------------------------------------------------

    def reactivar_servicio(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        clog = call_logger(context.call_id, log)
        settings = self._settings
        days = settings.exception_days

        def audit(result: AuditResult, reason: str, customer: Customer | None = None) -> int:
            return self._audit(context, result, reason, customer)

        def refuse(reason: str, message: str, customer: Customer | None = None, *, ok: bool = False) -> ToolResult:
            audit(AuditResult.REFUSED, reason, customer)
            clog.warning("%s refused: %s", REACTIVAR_SERVICIO, reason)
            if ok:
                return ToolResult({"ok": True, "reactivado": False, "mensaje": message})
            return _error(message)

        if not settings.writes_enabled:
            return refuse(
                "writes are disabled (ROUTEROS_WRITES=false)",
                "Desde este sistema no puedo reactivar servicios. Ofrezca transferir la llamada a un operador.",
            )
        if arguments.get("confirmado") is not True:
            return refuse(
                "the caller has not confirmed (confirmado is not true)",
                f"Antes explique al cliente que el servicio se reactiva por {days} días y que el corte vuelve si no "
                "paga, y pregunte si está de acuerdo. Llame de nuevo con confirmado=true solo si dijo que sí.",
            )
        if self._identity_failures_of(context.call_id) >= MAX_IDENTITY_FAILURES:
            return refuse(
                f"{MAX_IDENTITY_FAILURES} failed identity checks in this call",
                "No fue posible verificar la identidad del titular. Ofrezca transferir la llamada a un operador.",
            )
        lookup = Lookup.build("dni", str(arguments.get("dni", "")), region=self._region)
        if isinstance(lookup, str):
            return refuse("bad dni argument", lookup)
        telefono = ""
        if said_phone := str(arguments.get("telefono", "")).strip():
            phone_lookup = Lookup.build("telefono", said_phone, region=self._region)
            if isinstance(phone_lookup, str):
                return refuse("bad telefono argument", phone_lookup)
            telefono = phone_lookup.value
        nombre = str(arguments.get("nombre", "")).strip()
        if not nombre and not telefono:
            return refuse(
                "identity not verified: only the DNI was given",
                "Para verificar la identidad, además del DNI pida el nombre completo del titular o el teléfono "
                "registrado, y vuelva a llamar con ellos.",
            )
        usuario = str(arguments.get("usuario", "")).strip()

        deadline = self._pool.deadline()
        try:
            found = self._find(lookup, deadline)
        except DirectoryError as error:
            clog.error("%s: customer directory unusable: %s", REACTIVAR_SERVICIO, error)
            audit(AuditResult.FAILED, f"customer directory unusable: {error}")
            return _error(DIRECTORY_DOWN)
        self._log_failures(clog, REACTIVAR_SERVICIO, found.failed)
        candidates = [c for c in found.customers if not usuario or c.service == usuario]
        if not candidates:
            if found.failed:
                audit(AuditResult.FAILED, "router unavailable during the customer lookup")
                return _error(ROUTER_DOWN)
            self._count_identity_failure(context.call_id)
            return refuse("identity not verified: no customer with that DNI (and user)", NOT_VERIFIED)
        if len(candidates) > 1:
            return refuse("several services for that DNI: usuario needed", SEVERAL)
        customer = candidates[0]
        problem = _identity_problem(customer, nombre, telefono)
        if problem:
            self._count_identity_failure(context.call_id)
            return refuse(f"identity not verified: {problem}", NOT_VERIFIED, customer)

        try:
            customer = self._placed(customer, deadline)
            if customer.router is None:
                return refuse("the service was not found on any router", UNKNOWN_ROUTER, customer)
            status = self._status(customer, deadline)
        except RouterError as error:
            audit(AuditResult.FAILED, f"router error before the write: {error}", customer)
            return self._router_error(clog, REACTIVAR_SERVICIO, error)
        if customer.pppoe and not status.secret_found:
            return refuse("the PPP secret was not found on its router", UNKNOWN_ROUTER, customer)
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
        return self._write_exception(context, customer, status.address, clog)

    def _audit(
        self, context: ToolContext, result: AuditResult, reason: str, customer: Customer | None, address: str = ""
    ) -> int:
        """One ``audit_log`` row for a ``reactivar_servicio`` request."""
        settings = self._settings
        target = f" address={address}" if address else ""
        return self._records.add_audit(
            context.call_id,
            REACTIVAR_SERVICIO,
            f"address-list add list={settings.exception_list}{target} timeout={settings.exception_days}d",
            result,
            reason,
            caller=context.caller or None,
            router=customer.router if customer else None,
            customer=customer.service if customer else None,
        )

    def _write_exception(
        self, context: ToolContext, customer: Customer, address: str, clog: logging.LoggerAdapter[logging.Logger]
    ) -> ToolResult:
        settings = self._settings
        days = settings.exception_days
        comment = f"dni={customer.dni};centralita={context.call_id};motivo=promesa de pago"
        audit_id = self._audit(context, AuditResult.ATTEMPTED, "", customer, address)
        records = self._records

        def write(router: str, client: RouterClient, deadline: Deadline) -> str:
            # The audit row is finished here, on the router's worker, so it is right even if the tool stopped
            # waiting: a late answer still records what the router did.
            try:
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
            entry = self._pool.run(customer.router, write, self._pool.deadline())
        except RouterLate as error:
            if not error.started:
                records.finish_audit(audit_id, AuditResult.FAILED, f"not sent: {error}")
                return self._router_error(clog, REACTIVAR_SERVICIO, error)
            clog.error("%s: %s; the write may still happen (audit %d)", REACTIVAR_SERVICIO, error, audit_id)
            return _error(
                "El equipo de red no respondió a tiempo y no sé si la reactivación se aplicó. No la prometa; "
                "ofrezca transferir la llamada a un operador."
            )
        except RouterError as error:
            records.finish_audit(audit_id, AuditResult.FAILED, f"not sent: {error}")  # no-op if the job did
            return self._router_error(clog, REACTIVAR_SERVICIO, error)
        clog.info(
            "%s: service=%s router=%s address=%s added to %s for %dd (entry %s, audit %d)",
            REACTIVAR_SERVICIO,
            customer.service,
            customer.router,
            address,
            settings.exception_list,
            days,
            entry,
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

    # -- reportar_falla -------------------------------------------------------------------------------------

    def reportar_falla(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        clog = call_logger(context.call_id, log)
        symptom = str(arguments.get("sintoma", "")).strip()
        if not symptom:
            return _error("Describa la falla con las palabras del cliente.")
        given = any(str(arguments.get(kind, "")).strip() for kind in _LOOKUP_PROPERTIES)
        lookup = self._lookup(arguments, context)
        if isinstance(lookup, str) and given:
            return _error(lookup)  # a bad argument: say so rather than file a ticket for nobody
        customer: Customer | None = None
        snapshot: dict[str, Any] = {}
        summary = ""
        if isinstance(lookup, Lookup) and (self._pool.names or self._directory is not None):
            deadline = self._pool.deadline()
            try:
                found = self._find(lookup, deadline)
                self._log_failures(clog, REPORTAR_FALLA, found.failed)
                if len(found.customers) == 1:
                    customer = self._placed(found.customers[0], deadline)
                elif found.customers:
                    snapshot["nota"] = f"{len(found.customers)} servicios coinciden con {lookup.kind}"
                elif found.failed:
                    snapshot["error"] = "no se pudo consultar el router"
                if customer is not None and customer.router is not None:
                    status = self._status(customer, deadline)
                    snapshot = status.output(customer)
                    summary = status.summary(customer)
            except DirectoryError as error:
                clog.error("%s: customer directory unusable: %s", REPORTAR_FALLA, error)
                snapshot["error"] = "directorio de clientes no disponible"
            except RouterError as error:
                clog.warning("%s: no connection snapshot: %s", REPORTAR_FALLA, error)
                snapshot["error"] = "no se pudo consultar el router"
        number = self._records.add_ticket(
            context.call_id,
            symptom,
            caller=context.caller or None,
            customer=customer.service if customer else None,
            customer_name=customer.name if customer else None,
            router=customer.router if customer else None,
            connection=snapshot,
        )
        clog.info(
            "%s: ticket %d service=%s router=%s",
            REPORTAR_FALLA,
            number,
            customer.service if customer else "-",
            customer.router if customer else "-",
        )
        output: dict[str, Any] = {
            "ok": True,
            "numero_ticket": number,
            "mensaje": f"Reporte de falla registrado con el número {number}.",
            "cliente": customer.public() if customer else None,
        }
        if summary:
            output["estado_conexion"] = summary
        return ToolResult(output)

    # -- finding customers ----------------------------------------------------------------------------------

    def _lookup(self, arguments: Mapping[str, Any], context: ToolContext) -> Lookup | str:
        """The lookup the arguments ask for (user, then DNI, then phone), else the caller's number."""
        kinds: tuple[LookupKind, ...] = ("usuario", "dni", "telefono")
        for kind in kinds:
            raw = arguments.get(kind)
            if isinstance(raw, str) and raw.strip():
                return Lookup.build(kind, raw, region=self._region)
        # A caller ID that is not a valid number (anonymous, a short internal extension, a national number
        # without DIALER_COUNTRY_CODE) finds nobody: the caller is asked for another key, never matched loosely.
        caller = Lookup.build("telefono", context.caller or "", region=self._region)
        return NO_CALLER if isinstance(caller, str) else caller

    def _find(self, lookup: Lookup, deadline: Deadline) -> _Found:
        """Customers matching ``lookup``: from the directory when there is one, else from every router."""
        if self._directory is not None:
            customers = self._directory.find(lookup)
            only = self._pool.names[0] if len(self._pool.names) == 1 else None
            return _Found([replace(c, router=c.router or only) for c in customers])
        if not self._pool.names:
            return _Found([])
        found = _Found([])
        secrets: list[Customer] = []
        entries: list[Customer] = []
        for router, result in self._pool.run_each(self._pool.names, _search(lookup, self._region), deadline).items():
            if isinstance(result, RouterError):
                found.failed[router] = result
            else:
                secrets.extend(result[0])
                entries.extend(result[1])
        # Customers without PPPoE only when no PPP secret matched: an address-list entry of a PPPoE customer
        # is a cross-reference to them, not another customer.
        found.customers = secrets or entries
        return found

    def _one_customer(
        self, lookup: Lookup, deadline: Deadline, clog: logging.LoggerAdapter[logging.Logger], tool: str
    ) -> Customer | ToolResult:
        """The single customer ``lookup`` finds, placed on its router, or the result to give the model."""
        try:
            found = self._find(lookup, deadline)
        except DirectoryError as error:
            clog.error("%s: customer directory unusable: %s", tool, error)
            return _error(DIRECTORY_DOWN)
        self._log_failures(clog, tool, found.failed)
        if not found.customers:
            if found.failed:
                return _error(ROUTER_DOWN)
            clog.info("%s: by %s: not found", tool, lookup.describe())
            return ToolResult({"ok": True, "encontrado": False, "mensaje": NOT_FOUND})
        if len(found.customers) > 1:
            return ToolResult({"ok": True, "encontrado": True, "varios": True, "mensaje": SEVERAL})
        customer = self._placed(found.customers[0], deadline)
        if customer.router is None:
            clog.warning("%s: service %s is on no configured router", tool, customer.service)
            return _error(UNKNOWN_ROUTER)
        return customer

    def _placed(self, customer: Customer, deadline: Deadline) -> Customer:
        """``customer`` with its router: as recorded if configured, else the router holding its PPP secret."""
        if customer.router is not None:
            return customer if customer.router in self._pool else replace(customer, router=None)
        if not customer.pppoe or not self._pool.names:
            return customer

        def holds(router: str, client: RouterClient, deadline: Deadline) -> bool:
            return bool(client.print("/ppp/secret", where={"name": customer.service}, proplist=["name"]))

        results = self._pool.run_each(self._pool.names, holds, deadline)
        for router, result in results.items():
            if result is True:
                return replace(customer, router=router)
        errors = [result for result in results.values() if isinstance(result, RouterError)]
        if errors:
            raise errors[0]
        return customer

    # -- reading a connection -------------------------------------------------------------------------------

    def _status(self, customer: Customer, deadline: Deadline) -> ConnectionStatus:
        assert customer.router is not None
        settings = self._settings

        def read(router: str, client: RouterClient, deadline: Deadline) -> ConnectionStatus:
            active: list[Row] = []
            secret: list[Row] = []
            if customer.pppoe:
                active = client.print("/ppp/active", where={"name": customer.service}, proplist=_ACTIVE_FIELDS)
                deadline.check(router)
                secret = client.print("/ppp/secret", where={"name": customer.service}, proplist=SECRET_FIELDS)
                deadline.check(router)
            session = active[0] if active else {}
            address = (
                _text(session.get("address"))
                or (_text(secret[0].get("remote-address")) if secret else "")
                or (customer.address or "")
            )
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
            )
            exception = standing.exception
            queues = client.print("/queue/simple", proplist=_QUEUE_FIELDS)
            queue = next(
                (row for row in queues if refers_to(row, address=address, dni=customer.dni, field="target")), None
            )
            return ConnectionStatus(
                connected=bool(active),
                uptime=_text(session.get("uptime")) or None,
                address=address or None,
                mac=_text(session.get("caller-id")) or None,
                secret_found=bool(secret),
                secret_disabled=bool(secret) and is_disabled(secret[0]),
                debtor=standing.debtor,
                exception=exception is not None,
                exception_left=(_text(exception.get("timeout")) or None) if exception else None,
                max_limit=(_text(queue.get("max-limit")) or None) if queue else None,
            )

        return self._pool.run(customer.router, read, deadline)

    # -- helpers --------------------------------------------------------------------------------------------

    def _router_error(self, clog: logging.LoggerAdapter[logging.Logger], tool: str, error: RouterError) -> ToolResult:
        if isinstance(error, RouterAuthError):
            clog.error("%s: %s (check the router's API user, password and group)", tool, error)
            return _error(ROUTER_DOWN)
        if isinstance(error, RouterCommandError):
            clog.error("%s: the router refused a command: %s", tool, error)
            return _error(ROUTER_REFUSED)
        clog.warning("%s: %s", tool, error)
        return _error(ROUTER_DOWN)

    def _log_failures(
        self, clog: logging.LoggerAdapter[logging.Logger], tool: str, failed: Mapping[str, RouterError]
    ) -> None:
        for router, error in failed.items():
            level = logging.ERROR if isinstance(error, RouterAuthError | RouterCommandError) else logging.WARNING
            clog.log(level, "%s: router %s: %s", tool, router, error)

    def _identity_failures_of(self, call_id: str) -> int:
        with self._failures_lock:
            return self._identity_failures.get(call_id, 0)

    def _count_identity_failure(self, call_id: str) -> None:
        with self._failures_lock:
            self._identity_failures[call_id] = self._identity_failures.get(call_id, 0) + 1
            self._identity_failures.move_to_end(call_id)
            while len(self._identity_failures) > _REMEMBERED_CALLS:
                self._identity_failures.popitem(last=False)


def _identity_problem(customer: Customer, nombre: str, telefono: str) -> str:
    """Why the caller is not shown to be ``customer`` ("" when they are). The DNI already matched; every other
    data point given must match too, and at least one must be given. ``telefono`` is E.164."""
    if nombre and not names_match(nombre, customer.name):
        return "the name does not match"
    if telefono and not customer.has_phone(telefono):
        return "the phone does not match"
    if not nombre and not telefono:
        return "no second data point"
    return ""


def _search(lookup: Lookup, region: str | None) -> Job[tuple[list[Customer], list[Customer]]]:
    """The job that finds ``lookup`` on one router: (PPP secret customers, address-list customers)."""

    def job(router: str, client: RouterClient, deadline: Deadline) -> tuple[list[Customer], list[Customer]]:
        where = {"name": lookup.value} if lookup.kind == "usuario" else None
        rows = client.print("/ppp/secret", where=where, proplist=SECRET_FIELDS)
        secrets = [c for c in (Customer.from_secret(row, router, region=region) for row in rows) if lookup.matches(c)]
        if secrets or lookup.kind == "usuario":
            return secrets, []
        deadline.check(router)
        entries: dict[str, Customer] = {}
        for row in client.print("/ip/firewall/address-list", proplist=["address", "comment", "disabled"]):
            customer = Customer.from_address_entry(row, router, region=region)
            if customer is not None and lookup.matches(customer):
                entries.setdefault(customer.service, customer)
        return secrets, list(entries.values())

    return job


def network_tools(settings: NetworkSettings, records: CallRecords, pool: RouterPool) -> list[Tool]:
    """The network tools for this configuration, ready for ``ToolRegistry.register``.

    ``pool`` is the service's ``RouterPool`` (built from the same ``settings``); the caller owns and closes it.
    """
    return NetworkToolbox(settings, records, pool).tools()
