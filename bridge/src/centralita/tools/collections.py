"""The assistant's tools for outbound collection calls: it records what the customer said, in Spanish.

* ``registrar_resultado``: the result of the conversation (promise to pay with its date, dispute, wrong
  number, a conversation without agreement, an answering machine);
* ``no_volver_a_llamar``: the person asked not to be called again; the number goes on the opt-out list at
  once, for every campaign.

The call is found by its channel id: the ``ToolContext.call_id`` of an outbound call must be the channel id
the dialer gave it (``centralita-out-<attempt>-<random>``). The tools return ``Tool`` objects to register in
the call's ``ToolRegistry`` next to the built-in ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from centralita.dialer.outcomes import Outcome
from centralita.dialer.store import CampaignStore, UnknownAttemptError
from centralita.tools.registry import Tool, ToolContext, ToolResult

__all__ = ["RESULTS", "dialer_tools"]

log = logging.getLogger(__name__)

# What the assistant may say happened -> the stored outcome.
RESULTS: Final = {
    "promesa_de_pago": Outcome.PROMISE_TO_PAY,
    "disputa": Outcome.DISPUTE,
    "numero_equivocado": Outcome.WRONG_NUMBER,
    "sin_acuerdo": Outcome.ANSWERED_HUMAN,
    "buzon_de_voz": Outcome.ANSWERED_MACHINE,
}
_NOT_OURS: Final = "Esta llamada no pertenece a una campaña de cobranza; no hay resultado que registrar."


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _error(message: str) -> ToolResult:
    return ToolResult({"ok": False, "error": message}, ok=False)


def dialer_tools(
    store: CampaignStore,
    zone: ZoneInfo,
    *,
    clock: Callable[[], datetime] = _utc_now,
    max_promise_days: int = 31,
) -> list[Tool]:
    """``registrar_resultado`` and ``no_volver_a_llamar`` bound to ``store``; dates are local to ``zone``."""

    def register_result(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        outcome = RESULTS[str(arguments["resultado"])]
        note = str(arguments.get("nota", "")).strip()
        promise: date | None = None
        raw_date = str(arguments.get("fecha_promesa", "")).strip()
        if outcome is Outcome.PROMISE_TO_PAY:
            if not raw_date:
                return _error("Falta fecha_promesa: pregunte al cliente qué día pagará (AAAA-MM-DD).")
            try:
                promise = date.fromisoformat(raw_date)
            except ValueError:
                return _error("fecha_promesa debe tener la forma AAAA-MM-DD, por ejemplo 2026-03-15.")
            today = clock().astimezone(zone).date()
            if promise < today:
                return _error("La fecha prometida ya pasó; pregunte de nuevo qué día pagará.")
            if promise > today + timedelta(days=max_promise_days):
                return _error(
                    f"La fecha prometida está a más de {max_promise_days} días; ofrezca transferir a una persona."
                )
        elif raw_date:
            return _error("fecha_promesa solo se usa con el resultado promesa_de_pago.")
        try:
            info = store.record_outcome(context.call_id, outcome, promise_date=promise, note=note)
        except UnknownAttemptError:
            return _error(_NOT_OURS)
        log.info(
            "attempt=%d outcome %s%s",
            info.attempt_id,
            outcome,
            f" {promise}" if promise else "",
            extra={"call_id": context.call_id},
        )
        message = "Resultado registrado."
        if promise is not None:
            message = f"Promesa de pago registrada para el {promise.isoformat()}. Agradezca y despídase."
        elif outcome is Outcome.DISPUTE:
            message = "Registrado: una persona del equipo revisará el caso. Dígaselo al cliente y despídase."
        elif outcome is Outcome.WRONG_NUMBER:
            message = "Registrado: no volveremos a buscar a esta persona en este número. Discúlpese y despídase."
        return ToolResult({"ok": True, "mensaje": message})

    def opt_out(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        note = str(arguments.get("motivo", "")).strip()
        try:
            info = store.record_outcome(context.call_id, Outcome.OPT_OUT, note=note)
        except UnknownAttemptError:
            return _error(_NOT_OURS)
        log.info(
            "attempt=%d opt-out: number added to the opt-out list", info.attempt_id, extra={"call_id": context.call_id}
        )
        return ToolResult(
            {
                "ok": True,
                "mensaje": (
                    "Listo: este número no recibirá más llamadas de cobranza. Confírmelo al cliente y despídase."
                ),
            }
        )

    return [
        Tool(
            name="registrar_resultado",
            description=(
                "Registra el resultado de la llamada de cobranza cuando quede claro: promesa_de_pago (con "
                "fecha_promesa), disputa (el cliente no reconoce la deuda o dice que ya pagó), numero_equivocado "
                "(no es la persona o no la conoce), sin_acuerdo (habló con el cliente sin acuerdo) o buzon_de_voz. "
                "Llámela una vez, antes de despedirse."
            ),
            parameters={
                "type": "object",
                "properties": {
                    "resultado": {"type": "string", "enum": list(RESULTS), "description": "Qué pasó en la llamada"},
                    "fecha_promesa": {
                        "type": "string",
                        "description": "Solo con promesa_de_pago: el día en que pagará, AAAA-MM-DD",
                        "maxLength": 10,
                    },
                    "nota": {"type": "string", "description": "Detalle breve, sin datos sensibles", "maxLength": 300},
                },
                "required": ["resultado"],
                "additionalProperties": False,
            },
            handler=register_result,
        ),
        Tool(
            name="no_volver_a_llamar",
            description=(
                "La persona pidió que no la vuelvan a llamar. Regístrelo de inmediato, confírmele que no recibirá "
                "más llamadas de cobranza y despídase. No insista ni pregunte por qué."
            ),
            parameters={
                "type": "object",
                "properties": {"motivo": {"type": "string", "description": "Lo que dijo, breve", "maxLength": 200}},
                "required": [],
                "additionalProperties": False,
            },
            handler=opt_out,
        ),
    ]
