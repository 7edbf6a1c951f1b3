"""What the model hears from the network tools: short Spanish sentences it can say, each saying what to offer next.

Nothing here names a customer, an address or a record: these sentences go to the model whoever the caller is.
"""

from __future__ import annotations

from typing import Final

from centralita.config.network import Factor, IdentityPolicy
from centralita.tools.registry import ToolResult

ROUTER_DOWN: Final = (
    "No pude consultar el equipo de red en este momento. Ofrezca registrar un reporte de falla o transferir "
    "la llamada a un operador."
)
ROUTER_REFUSED: Final = "El equipo de red rechazó la consulta. Ofrezca transferir la llamada a un operador."
DIRECTORY_DOWN: Final = "No puedo consultar el directorio de clientes ahora. Ofrezca transferir a un operador."
UNKNOWN_ROUTER: Final = "El servicio del cliente está en un equipo que no puedo consultar. Ofrezca transferir."
NOT_VERIFIED: Final = (
    "Los datos no coinciden con los registrados: no pude verificar la identidad. No diga qué dato no coincidió; "
    "puede pedir que los repita una vez más o transferir la llamada a un operador."
)
LOCKED: Final = (
    "Hubo demasiados intentos fallidos de verificar esta identidad. No la puedo verificar por teléfono ahora; "
    "ofrezca transferir la llamada a un operador."
)
OTHER_CUSTOMER: Final = (
    "Esta llamada ya está verificada con otro titular. Para atender otra cuenta, ofrezca transferir la llamada "
    "a un operador."
)
LOOKUPS_CALL: Final = "Ya hice demasiadas consultas en esta llamada. Ofrezca transferir la llamada a un operador."
LOOKUPS_CALLER: Final = (
    "Se alcanzó el límite de consultas para este número de teléfono. Ofrezca transferir la llamada a un operador."
)
NOT_ON_FILE: Final = (
    "El titular no tiene registrado el dato que se pidió para verificarlo. Ofrezca transferir la llamada a un operador."
)

# The argument each factor is given in, and how the model should ask for it.
FACTOR_ARGUMENTS: Final = {
    Factor.CLIENTE: "numero_cliente",
    Factor.USUARIO: "usuario",
    Factor.TELEFONO: "ultimos_digitos",
}


def factor_words(factor: Factor, policy: IdentityPolicy) -> str:
    """How to ask the caller for ``factor``, in Spanish."""
    if factor is Factor.CLIENTE:
        return "el número de cliente que aparece en su recibo"
    if factor is Factor.USUARIO:
        return "el usuario del servicio (usuario PPPoE)"
    return f"los últimos {policy.phone_digits} dígitos del teléfono registrado"


def ask_for(policy: IdentityPolicy) -> str:
    """What to ask for the DNI verification: ``el DNI del titular y además ...`` (one factor is enough)."""
    factors = [factor_words(factor, policy) for factor in policy.factors]
    if not factors:
        return ""
    second = factors[0] if len(factors) == 1 else ", o ".join(factors[:-1]) + " o " + factors[-1]
    return f"el DNI del titular y además {second}"


def verify_hint(policy: IdentityPolicy) -> str:
    """The next step for an unverified caller: what to ask and which tool to call, or the operator."""
    ask = ask_for(policy)
    if not ask:
        return "Para datos del servicio ofrezca transferir la llamada a un operador."
    return f"Para continuar pida {ask}, y llame a verificar_identidad con lo que diga el cliente."


def error(message: str) -> ToolResult:
    return ToolResult({"ok": False, "error": message}, ok=False)
