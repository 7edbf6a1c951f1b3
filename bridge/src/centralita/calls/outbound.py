"""The assistant's side of the dialer's calls: what an answered outbound channel gets when it enters Stasis.

The dialer (``openai-outbound-calls``) originates the call with a preset channel id and records the attempt;
once the customer answers (and AMD heard a person) the channel enters the Stasis app with the arguments
``outbound,<attempt id>[,<AMDSTATUS>,<AMDCAUSE>]``. ``OutboundCalls`` looks the channel up in the dialer's
campaign store and gives the call its own instructions (the collections prompt plus the account, as data)
and tools (the built-in ones and the dialer's ``registrar_resultado`` / ``no_volver_a_llamar``).

The dialer's settings come from the service's one read of the .env (None when DIALER_TIMEZONE is unset: no
dialer on this box, and any outbound channel is refused); the store is opened on the first outbound call, so
a box without the dialer never opens it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from importlib import resources

from centralita.config.dialer import DialerSettings
from centralita.dialer.store import CallInfo, CampaignStore
from centralita.logs import Event
from centralita.tools.call_control import builtin_tools
from centralita.tools.collections import dialer_tools
from centralita.tools.registry import ToolRegistry

log = logging.getLogger(__name__)

DATA_MARKER = "DATOS DE LA CUENTA"


def default_outbound_instructions() -> str:
    """The Spanish collections prompt shipped with the package."""
    return resources.files("centralita").joinpath("data/prompt_outbound.es.txt").read_text(encoding="utf-8")


def account_data(info: CallInfo) -> str:
    """The account as plain data lines for the model (values stripped of line breaks)."""

    def clean(value: object) -> str:
        return " ".join(str(value).split()) if value not in (None, "") else "no registrado"

    amount = f"{info.amount_due:.2f}" if info.amount_due is not None else None
    due = info.due_date.isoformat() if info.due_date is not None else None
    return "\n".join(
        [
            DATA_MARKER,
            f"titular: {clean(info.name)}",
            f"telefono_llamado: {clean(info.phone)}",
            f"monto_pendiente: {clean(amount)}",
            f"fecha_vencimiento: {clean(due)}",
            f"usuario_servicio: {clean(info.router_user)}",
        ]
    )


@dataclass(frozen=True, slots=True)
class OutboundSetup:
    """Everything one outbound call needs beyond what an inbound call has."""

    info: CallInfo
    instructions: str
    tools: ToolRegistry


class OutboundCalls:
    """Opens the dialer's store when first needed and prepares each answered outbound call. Thread-safe."""

    def __init__(self, settings: DialerSettings | None, instructions: str | None = None) -> None:
        self._settings = settings
        self._instructions = instructions or default_outbound_instructions()
        self._lock = threading.Lock()
        self._store: CampaignStore | None = None

    def _open(self, settings: DialerSettings) -> CampaignStore:
        with self._lock:
            if self._store is None:
                self._store = CampaignStore(settings.db_path)
                log.info("dialer store %s opened for outbound calls", settings.db_path)
            return self._store

    def prepare(self, channel_id: str) -> OutboundSetup | None:
        """The call's setup, or None (logged) when the channel is not a dialer call this box knows."""
        settings = self._settings
        if settings is None:
            log.error(
                "%s %s refused: the dialer is not configured here (DIALER_TIMEZONE is unset)",
                Event.OUTBOUND_CALL,
                channel_id,
            )
            return None
        try:
            store = self._open(settings)
        except OSError as error:  # DialerStoreError too
            log.error("%s %s refused: the dialer's store cannot be opened (%s)", Event.OUTBOUND_CALL, channel_id, error)
            return None
        info = store.call_info(channel_id)
        if info is None:
            log.error("%s %s refused: no dialer attempt has this channel id", Event.OUTBOUND_CALL, channel_id)
            return None
        registry = builtin_tools()
        for tool in dialer_tools(store, settings.timezone):
            registry.register(tool)
        return OutboundSetup(info, f"{self._instructions.rstrip()}\n\n{account_data(info)}\n", registry)

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
