"""The assistant's tools on the provider's network, acting only for a caller the service has verified.

Who the caller is lives in the call's ``CallIdentity`` (``centralita.tools.identity``), set by checks the service
runs on records the model never sees (``verification``); no tool takes the caller's identity as an argument for
acting. What each tool tells the model depends on that state:

=======================  ===========================================  =============================================
tool                     unverified call                              verified call
=======================  ===========================================  =============================================
``consultar_cliente``    whether a customer was found, what to ask    the same; for the caller's own customer, the
                         next (never a name, plan or service)         services (a label and the plan) and what the
                                                                      call may do
``verificar_identidad``  checks the DNI with a second factor;         the services, and what the call may do
                         verified or not, what to ask next
``estado_conexion``      refused (nothing read)                       the state of the caller's own service: session
                                                                      up and since when, disabled, cut for debt,
                                                                      promise to pay and time left, speed; never the
                                                                      address, the modem's MAC or any identifier
``reactivar_servicio``   refused and audited                          with ``IDENTITY_WRITE_REQUIRES`` met: a timed
                                                                      exception for the caller's own service
                                                                      (``reactivation``)
``reportar_falla``       a ticket with the caller's number and the    a ticket for the caller's service with a
                         symptom; its number, nothing else            snapshot of its state; the number and a summary
=======================  ===========================================  =============================================

Services are named to the model by a label (``servicio``: ``"1"``, ``"2"``...), never by the PPPoE user: a
label names only a service of the verified customer, so a forged one acts on nobody else. The caller ID is
checked once per call, at its first network tool. Every tool run that looks customers up or reads a router
counts against the lookup limits (``guard``); reaching one, or a verification refused after failed attempts,
is logged, counted and audited, and the model is told to offer the operator.

Which tools a service gets (``network_tools``): ``reportar_falla`` always (a ticket is useful with no router);
``consultar_cliente`` and ``verificar_identidad`` when there is a router or a customer directory;
``estado_conexion`` and ``reactivar_servicio`` only with at least one router. All the router work of one tool
shares one deadline, ``ROUTEROS_TIMEOUT``; failures come back as a short Spanish sentence (``ok: false``) and
nothing raises into the call.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

from centralita.config.network import NetworkSettings
from centralita.isp.customers import Customer, CustomerDirectory, DirectoryError, Lookup, LookupKind
from centralita.isp.routeros.client import RouterAuthError, RouterCommandError, RouterError
from centralita.isp.routeros.pool import Deadline, RouterPool
from centralita.logs import call_logger
from centralita.storage.records import AuditResult, CallRecords
from centralita.tools.network import messages
from centralita.tools.network.finder import CustomerFinder
from centralita.tools.network.guard import CallerGuard, audit
from centralita.tools.network.messages import (
    DIRECTORY_DOWN,
    LOCKED,
    LOOKUPS_CALL,
    LOOKUPS_CALLER,
    NOT_VERIFIED,
    ROUTER_DOWN,
    ROUTER_REFUSED,
)
from centralita.tools.network.reactivation import REACTIVAR_SERVICIO, Reactivator, chosen_service, router_error
from centralita.tools.network.status import read_status
from centralita.tools.network.verification import VERIFICAR_IDENTIDAD, Verifier, by_customer
from centralita.tools.registry import Tool, ToolContext, ToolResult

__all__ = [
    "CONSULTAR_CLIENTE",
    "DIRECTORY_DOWN",
    "ESTADO_CONEXION",
    "LOCKED",
    "LOOKUPS_CALL",
    "LOOKUPS_CALLER",
    "NOT_VERIFIED",
    "REACTIVAR_SERVICIO",
    "REPORTAR_FALLA",
    "ROUTER_DOWN",
    "ROUTER_REFUSED",
    "VERIFICAR_IDENTIDAD",
    "NetworkToolbox",
    "network_tools",
]

log = logging.getLogger(__name__)

CONSULTAR_CLIENTE: Final = "consultar_cliente"
ESTADO_CONEXION: Final = "estado_conexion"
REPORTAR_FALLA: Final = "reportar_falla"

_SERVICE_PROPERTY: Final[dict[str, Any]] = {
    "type": "string",
    "maxLength": 4,
    "description": "Cuál de los servicios del titular verificado (1, 2...), solo si tiene varios.",
}


class NetworkToolbox:
    """The network tools of one service, sharing its settings, call records and router pool."""

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
        self._finder = CustomerFinder(pool, self._directory, self._region, settings.lookups.directory_ttl)
        self._guard = CallerGuard(records, settings.identity, settings.lookups, self._region)
        self._verifier = Verifier(self._finder, self._guard, records, settings.identity, self._region)
        self._reactivator = Reactivator(settings, records, pool, self._finder, self._guard, self._verifier)

    @property
    def directory(self) -> CustomerDirectory | None:
        return self._directory

    def tools(self) -> list[Tool]:
        """The tools worth offering with this configuration (see the module docstring)."""
        tools: list[Tool] = []
        routers = bool(self._pool.names)
        if self._finder.usable:
            tools.append(self._consultar_tool())
            tools.append(self._verificar_tool())
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
                "Dice si quien llama es un cliente y qué pedirle para verificar su identidad. Sin datos usa el "
                "número de quien llama. No devuelve datos personales: solo si se encontró un cliente, si la llamada "
                "ya está verificada y, en ese caso, los servicios del titular (número de servicio y plan)."
            ),
            parameters={
                "type": "object",
                "properties": {
                    "telefono": {"type": "string", "maxLength": 32, "description": "Teléfono que dijo el cliente."},
                    "dni": {"type": "string", "maxLength": 20, "description": "DNI que dijo el cliente."},
                },
                "required": [],
                "additionalProperties": False,
            },
            handler=self.consultar_cliente,
        )

    def _verificar_tool(self) -> Tool:
        policy = self._settings.identity
        properties: dict[str, Any] = {
            "dni": {"type": "string", "maxLength": 20, "description": "DNI del titular, tal como lo dijo el cliente."}
        }
        for factor in policy.factors:
            properties[messages.FACTOR_ARGUMENTS[factor]] = {
                "type": "string",
                "maxLength": 64,
                "description": f"{messages.factor_words(factor, policy).capitalize()}, tal como lo dijo el cliente.",
            }
        ask = messages.ask_for(policy)
        how = f"Pida {ask} y páselos tal como los dijo: el sistema los compara con sus registros. " if ask else ""
        return Tool(
            name=VERIFICAR_IDENTIDAD,
            description=(
                "Verifica la identidad del titular antes de dar datos del servicio o de actuar sobre él. "
                f"{how}El nombre no sirve para verificar. Sin datos, dice si la llamada ya está verificada (por el "
                "número de quien llama). Si la verificación falla varias veces, ofrezca transferir a un operador."
            ),
            parameters={"type": "object", "properties": properties, "required": [], "additionalProperties": False},
            handler=self.verificar_identidad,
        )

    def _estado_tool(self) -> Tool:
        return Tool(
            name=ESTADO_CONEXION,
            description=(
                "Consulta en el equipo de red el estado del servicio del titular verificado en esta llamada: si "
                "está conectado y desde cuándo, si la cuenta está deshabilitada, si está suspendido por adeudo o "
                "tiene una prórroga, y su velocidad máxima. Requiere haber verificado la identidad."
            ),
            parameters={
                "type": "object",
                "properties": {"servicio": dict(_SERVICE_PROPERTY)},
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
                f"Reactiva por {days} días el servicio del titular verificado en esta llamada, suspendido por "
                "adeudo, si promete pagar. Requiere haber verificado la identidad con verificar_identidad. "
                f"Explique que la reactivación dura {days} días y que el corte vuelve si no paga, pregunte si está "
                "de acuerdo, y llame con confirmado=true solo si dijo que sí."
            ),
            parameters={
                "type": "object",
                "properties": {
                    "confirmado": {
                        "type": "boolean",
                        "description": "true solo si el cliente aceptó la reactivación temporal.",
                    },
                    "servicio": dict(_SERVICE_PROPERTY),
                },
                "required": ["confirmado"],
                "additionalProperties": False,
            },
            handler=self.reactivar_servicio,
        )

    def _reportar_tool(self) -> Tool:
        return Tool(
            name=REPORTAR_FALLA,
            description=(
                "Registra un reporte de falla técnica (sin internet, lentitud, cortes) y devuelve el número de "
                "reporte para dárselo al cliente. Describa el síntoma con las palabras del cliente. Si la identidad "
                "está verificada, el reporte queda a nombre de su servicio."
            ),
            parameters={
                "type": "object",
                "properties": {
                    "sintoma": {"type": "string", "maxLength": 500, "description": "Qué le pasa al servicio."},
                    "servicio": dict(_SERVICE_PROPERTY),
                },
                "required": ["sintoma"],
                "additionalProperties": False,
            },
            handler=self.reportar_falla,
        )

    # -- consultar_cliente ----------------------------------------------------------------------------------

    def consultar_cliente(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        clog = call_logger(context.call_id, log)
        lookup = self._lookup(arguments)
        if isinstance(lookup, str):
            return messages.error(lookup)
        refusal = self._guard.take_lookup(context, CONSULTAR_CLIENTE)
        if refusal is not None:
            return messages.error(refusal)
        deadline = self._pool.deadline()
        unchecked = self._verifier.check_caller(context, deadline)
        if lookup is None:  # who is calling: the caller ID, as checked
            if unchecked and context.identity.verified is None:
                return messages.error(unchecked)
            clog.info("%s: by caller ID: identity %s", CONSULTAR_CLIENTE, context.identity.state)
            state = self._verifier.state(context).output
            return ToolResult({**state, "encontrado": context.identity.caller_found > 0 or state["verificado"]})
        try:
            found = self._finder.find(lookup, deadline, context.call_id)
        except DirectoryError as error:
            clog.error("%s: customer directory unusable: %s", CONSULTAR_CLIENTE, error)
            return messages.error(DIRECTORY_DOWN)
        self._log_failures(clog, CONSULTAR_CLIENTE, found.failed)
        clog.info(
            "%s: by %s: %d found%s; identity %s",
            CONSULTAR_CLIENTE,
            lookup.describe(),
            len(found.customers),
            f", routers failed: {','.join(found.failed)}" if found.failed else "",
            context.identity.state,
        )
        if not found.customers and found.failed:
            return messages.error(ROUTER_DOWN)
        verified = context.identity.verified
        groups = by_customer(found.customers)
        if verified is not None and set(groups) == {verified.customer_id}:
            return self._verifier.state(context)
        policy = self._settings.identity
        if not found.customers:
            return ToolResult(
                {"ok": True, "encontrado": False, "mensaje": "No encontré un cliente con ese dato. Pida otro dato."}
            )
        if verified is not None:
            message = (
                "Encontré un registro con ese dato, pero no es del titular verificado en esta llamada: no puedo "
                "dar información de otras cuentas. Para otra cuenta, ofrezca transferir a un operador."
            )
        else:
            message = f"Encontré un cliente con ese dato. {messages.verify_hint(policy)}"
        return ToolResult({"ok": True, "encontrado": True, "verificado": verified is not None, "mensaje": message})

    # -- verificar_identidad --------------------------------------------------------------------------------

    def verificar_identidad(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        claim = self._verifier.claim(arguments)
        if isinstance(claim, ToolResult):
            return claim
        refusal = self._guard.take_lookup(context, VERIFICAR_IDENTIDAD)
        if refusal is not None:
            return messages.error(refusal)
        deadline = self._pool.deadline()
        unchecked = self._verifier.check_caller(context, deadline)
        if claim is None:
            if unchecked and context.identity.verified is None:
                return messages.error(unchecked)
            return self._verifier.state(context)
        return self._verifier.verify(claim, context, deadline)

    # -- estado_conexion ------------------------------------------------------------------------------------

    def estado_conexion(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        clog = call_logger(context.call_id, log)
        refusal = self._guard.take_lookup(context, ESTADO_CONEXION)
        if refusal is not None:
            return messages.error(refusal)
        deadline = self._pool.deadline()
        unchecked = self._verifier.check_caller(context, deadline)
        policy = self._settings.identity
        verified = context.identity.verified
        if unchecked and verified is None:
            return messages.error(unchecked)
        if verified is None or not verified.satisfies(policy.read_requires):
            how = "not verified" if verified is None else f"verified by {'+'.join(sorted(verified.methods))} only"
            reason = f"identity {how}: IDENTITY_READ_REQUIRES={policy.read_requires.value}"
            clog.warning("%s refused: %s", ESTADO_CONEXION, reason)
            audit(
                self._records,
                context,
                ESTADO_CONEXION,
                "read connection state",
                AuditResult.REFUSED,
                reason,
                customer_id=verified.customer_id if verified else None,
            )
            return messages.error(
                f"Antes de dar el estado del servicio hay que verificar la identidad del titular. "
                f"{messages.verify_hint(policy)}"
            )
        chosen = chosen_service(verified, arguments)
        if isinstance(chosen, str):
            return messages.error(chosen)
        try:
            customer = self._finder.placed(chosen, deadline, context.call_id)
            if customer.router is None:
                clog.warning("%s: service %s is on no configured router", ESTADO_CONEXION, customer.service)
                return messages.error(messages.UNKNOWN_ROUTER)
            status = read_status(self._pool, self._settings, customer, deadline, context.call_id)
        except RouterError as error:
            return router_error(clog, ESTADO_CONEXION, error)
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
        return ToolResult({"ok": True, **status.for_caller(customer)})

    # -- reactivar_servicio ---------------------------------------------------------------------------------

    def reactivar_servicio(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        return self._reactivator.run(arguments, context)

    # -- reportar_falla -------------------------------------------------------------------------------------

    def reportar_falla(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        """A ticket in every state; for a verified caller it is their service's, with a snapshot of its state."""
        clog = call_logger(context.call_id, log)
        symptom = str(arguments.get("sintoma", "")).strip()
        if not symptom:
            return messages.error("Describa la falla con las palabras del cliente.")
        refusal = self._guard.take_lookup(context, REPORTAR_FALLA)
        if refusal is not None:
            return messages.error(refusal)
        customer: Customer | None = None
        snapshot: dict[str, Any] = {}
        summary = ""
        policy = self._settings.identity
        verified = None
        if self._finder.usable:
            deadline = self._pool.deadline()
            self._verifier.check_caller(context, deadline)
            verified = context.identity.verified
            if verified is not None and verified.satisfies(policy.read_requires):
                chosen = chosen_service(verified, arguments)
                if isinstance(chosen, str) and str(arguments.get("servicio", "")).strip():
                    return messages.error(chosen)  # a label that is not theirs: ask again, nothing filed
                if isinstance(chosen, str):
                    snapshot["nota"] = f"el titular tiene {len(verified.services)} servicios; no se indicó cuál"
                else:
                    customer, snapshot, summary = self._ticket_state(chosen, deadline, context)
            else:
                snapshot["identidad"] = "sin verificar"
        number = self._records.add_ticket(
            context.call_id,
            symptom,
            caller=context.caller or None,
            customer=customer.service if customer else None,
            customer_name=(customer.name if customer else None) or (verified.services[0].name if verified else None),
            router=customer.router if customer else None,
            connection=snapshot,
        )
        clog.info(
            "%s: ticket %d service=%s router=%s identity=%s",
            REPORTAR_FALLA,
            number,
            customer.service if customer else "-",
            customer.router if customer else "-",
            context.identity.state,
        )
        output: dict[str, Any] = {
            "ok": True,
            "numero_ticket": number,
            "mensaje": f"Reporte de falla registrado con el número {number}.",
        }
        if summary:
            output["estado_conexion"] = summary
        return ToolResult(output)

    def _ticket_state(
        self, chosen: Customer, deadline: Deadline, context: ToolContext
    ) -> tuple[Customer, dict[str, Any], str]:
        clog = call_logger(context.call_id, log)
        customer = chosen
        try:
            customer = self._finder.placed(chosen, deadline, context.call_id)
            if customer.router is None:
                return customer, {"error": "el servicio no está en ningún equipo configurado"}, ""
            status = read_status(self._pool, self._settings, customer, deadline, context.call_id)
        except RouterError as error:
            clog.warning("%s: no connection snapshot: %s", REPORTAR_FALLA, error)
            return customer, {"error": "no se pudo consultar el router"}, ""
        return customer, status.snapshot(customer), status.summary(customer)

    # -- helpers --------------------------------------------------------------------------------------------

    def _lookup(self, arguments: Mapping[str, Any]) -> Lookup | str | None:
        """The lookup the arguments ask for (DNI, then phone), None for "the caller", or what is wrong."""
        kinds: tuple[LookupKind, ...] = ("dni", "telefono")
        for kind in kinds:
            raw = arguments.get(kind)
            if isinstance(raw, str) and raw.strip():
                return Lookup.build(kind, raw, region=self._region)
        return None

    def _log_failures(
        self, clog: logging.LoggerAdapter[logging.Logger], tool: str, failed: Mapping[str, RouterError]
    ) -> None:
        for router, error in failed.items():
            level = logging.ERROR if isinstance(error, RouterAuthError | RouterCommandError) else logging.WARNING
            clog.log(level, "%s: router %s: %s", tool, router, error)


def network_tools(settings: NetworkSettings, records: CallRecords, pool: RouterPool) -> list[Tool]:
    """The network tools for this configuration, ready for ``ToolRegistry.register``.

    ``pool`` is the service's ``RouterPool`` (built from the same ``settings``); the caller owns and closes it.
    """
    return NetworkToolbox(settings, records, pool).tools()
