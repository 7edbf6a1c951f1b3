"""The bridge's limits: what it takes on (calls at once, per caller, the spending budget), how long it waits for
each thing a call needs (the watchdogs), and what the OpenAI sessions cost.

Variables, with their defaults::

    MAX_CALLS=20                          calls the assistant carries at once on this box, inbound and the
                                          dialer's answered calls together (docs/PERFORMANCE.md: the media path
                                          of one process carries 40 to 50 on a 2-core machine)
    MAX_CALLS_PER_CALLER=2                calls from one number at once (0: no limit)
    MAX_CALLS_PER_CALLER_PER_MINUTE=6     calls from one number started in any 60 s, refused ones included
                                          (0: no limit)
    CONNECT_TIMEOUT=5                     seconds the Realtime session may take to open while the phone rings;
                                          then the caller goes to the failover context
    RTP_TIMEOUT=30                        seconds without a single RTP packet from Asterisk before the call
                                          is given up (Asterisk gone, the media channel lost). Asterisk relays
                                          what the caller's side sends: a phone that stops sending (on hold,
                                          silence suppression) is silent too, so keep this well above a pause
    REPLY_TIMEOUT=8                       seconds of silence from the model, once the caller has stopped
                                          speaking, before the caller hears "un momento"; as long again and
                                          the caller goes to the operator
    MAX_CALL_SECONDS=1800                 the longest call with the assistant; a warning is played a minute
                                          before (half the time for limits under two minutes). At most 3300:
                                          the Realtime API ends a session at 60 minutes, and the call must end
                                          on this side first
    ON_CALL_LIMIT=transfer                at MAX_CALL_SECONDS: transfer (to OPERATOR_CONTEXT) or hangup (after
                                          a goodbye)
    PLAYOUT_MAX_SECONDS=120               assistant audio queued for a call at most; more is dropped and counted
    BUDGET_DAILY=100                      spending per day of BUDGET_TIMEZONE (0: no limit)
    BUDGET_MONTHLY=2000                   spending per calendar month (0: no limit)
    BUDGET_TIMEZONE=                      where days and months start (IANA name); empty: the box's own zone
    PRICE_CURRENCY=USD                    the currency of the prices and budgets
    PRICE_AS_OF=2025-08-28                the date the prices were taken from (shown with every cost)
    PRICE_INPUT_TEXT=4.00                 per million tokens, and likewise PRICE_INPUT_AUDIO (32.00),
                                          PRICE_CACHED_TEXT (0.40), PRICE_CACHED_AUDIO (0.40),
                                          PRICE_OUTPUT_TEXT (16.00), PRICE_OUTPUT_AUDIO (64.00)
    STATUS_FILE=/run/centralita/openai-inbound-calls.json
                                          the health snapshot the service writes for centralita doctor
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

from centralita.billing.prices import DEFAULT_PRICES, PriceTable
from centralita.config.env import EnvReader

__all__ = [
    "DEFAULT_STATUS_FILE",
    "MAX_CALLS_RANGE",
    "REALTIME_SESSION_SECONDS",
    "CallLimitAction",
    "CallLimits",
    "Spending",
    "Watchdogs",
    "read_limits",
    "read_spending",
    "read_status_file",
    "read_watchdogs",
]

# The Realtime API ends a session at this age (error session_expired, close 1001).
REALTIME_SESSION_SECONDS: Final = 3600
_CALL_SECONDS_MAX: Final = 3300  # five minutes short of the session's end: the call ends on our side first
DEFAULT_STATUS_FILE: Final = "/run/centralita/openai-inbound-calls.json"
# MAX_CALLS: the fewest and the most calls at once a box may be set to carry (the dialer's settings read it too).
MAX_CALLS_RANGE: Final = (1, 1000)
_PRICE_FIELDS: Final = (
    ("PRICE_INPUT_TEXT", "input_text"),
    ("PRICE_INPUT_AUDIO", "input_audio"),
    ("PRICE_CACHED_TEXT", "cached_text"),
    ("PRICE_CACHED_AUDIO", "cached_audio"),
    ("PRICE_OUTPUT_TEXT", "output_text"),
    ("PRICE_OUTPUT_AUDIO", "output_audio"),
)


class CallLimitAction(StrEnum):
    """What happens to a call that reaches MAX_CALL_SECONDS."""

    TRANSFER = "transfer"  # to a person (OPERATOR_CONTEXT)
    HANGUP = "hangup"  # after a short goodbye


@dataclass(frozen=True, slots=True)
class CallLimits:
    """Admission: calls at once on the box, and per caller number (0: that per-caller limit is off)."""

    max_calls: int = 20
    max_per_caller: int = 2
    max_per_caller_per_minute: int = 6


@dataclass(frozen=True, slots=True)
class Watchdogs:
    """How long a call waits for each thing it needs, in seconds."""

    connect_timeout: float = 5.0
    rtp_timeout: float = 30.0
    reply_timeout: float = 8.0
    max_call_seconds: float = 1800.0
    on_call_limit: CallLimitAction = CallLimitAction.TRANSFER
    playout_max_seconds: float = 120.0

    @property
    def warning_lead(self) -> float:
        """How long before MAX_CALL_SECONDS the caller is warned: a minute, or half the call if shorter."""
        return min(60.0, self.max_call_seconds / 2)


@dataclass(frozen=True, slots=True)
class Spending:
    """The price table and the budgets (0: no limit) in its currency; ``zone`` None is the box's own zone."""

    prices: PriceTable = DEFAULT_PRICES
    daily: Decimal = Decimal(100)
    monthly: Decimal = Decimal(2000)
    zone: ZoneInfo | None = None

    @property
    def limited(self) -> bool:
        return bool(self.daily or self.monthly)


def read_limits(reader: EnvReader) -> CallLimits:
    return CallLimits(
        max_calls=reader.integer("MAX_CALLS", CallLimits().max_calls, *MAX_CALLS_RANGE),
        max_per_caller=reader.integer("MAX_CALLS_PER_CALLER", 2, 0, 1000),
        max_per_caller_per_minute=reader.integer("MAX_CALLS_PER_CALLER_PER_MINUTE", 6, 0, 10000),
    )


def read_watchdogs(reader: EnvReader) -> Watchdogs:
    max_call = reader.seconds("MAX_CALL_SECONDS", 1800.0)
    if max_call > _CALL_SECONDS_MAX:
        reader.invalid(
            "MAX_CALL_SECONDS",
            f"{max_call:g}",
            f"but the Realtime API ends a session after {REALTIME_SESSION_SECONDS // 60} minutes, so a call must end "
            f"(its warning included) on this side first: at most {_CALL_SECONDS_MAX}",
            "1800",
        )
        max_call = 1800.0
    return Watchdogs(
        connect_timeout=reader.seconds("CONNECT_TIMEOUT", 5.0, maximum=60.0),
        rtp_timeout=reader.seconds("RTP_TIMEOUT", 30.0, maximum=600.0),
        reply_timeout=reader.seconds("REPLY_TIMEOUT", 8.0, maximum=300.0),
        max_call_seconds=max_call,
        on_call_limit=reader.choice("ON_CALL_LIMIT", CallLimitAction.TRANSFER),
        playout_max_seconds=reader.seconds("PLAYOUT_MAX_SECONDS", 120.0, maximum=3600.0),
    )


def _amount(text: str) -> Decimal:
    """A sum of money or a price: a plain decimal number, 0 or more ("12.50", not "12,50" or "1e3")."""
    cleaned = text.strip()
    if not cleaned or any(character not in "0123456789." for character in cleaned) or cleaned.count(".") > 1:
        raise ValueError("not a plain decimal number such as 12.50")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError("not a plain decimal number such as 12.50") from None
    return value


def _as_of(text: str) -> str:
    return date.fromisoformat(text.strip()).isoformat()


def _currency(text: str) -> str:
    code = text.strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise ValueError("not a three-letter currency code such as USD")
    return code


def read_spending(reader: EnvReader) -> Spending:
    prices = dataclasses.replace(
        DEFAULT_PRICES,
        currency=reader.parsed("PRICE_CURRENCY", DEFAULT_PRICES.currency, _currency, "USD"),
        as_of=reader.parsed("PRICE_AS_OF", DEFAULT_PRICES.as_of, _as_of, DEFAULT_PRICES.as_of),
        **{
            field: reader.parsed(
                name, str(getattr(DEFAULT_PRICES, field)), _amount, str(getattr(DEFAULT_PRICES, field))
            )
            for name, field in _PRICE_FIELDS
        },
    )
    return Spending(
        prices=prices,
        daily=reader.parsed("BUDGET_DAILY", "100", _amount, "100"),
        monthly=reader.parsed("BUDGET_MONTHLY", "2000", _amount, "2000"),
        zone=reader.timezone("BUDGET_TIMEZONE", required=False, what="time zone", example="America/Mexico_City"),
    )


def read_status_file(reader: EnvReader) -> Path:
    return reader.path("STATUS_FILE", DEFAULT_STATUS_FILE)
