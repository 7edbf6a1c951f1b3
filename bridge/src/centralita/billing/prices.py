"""Prices per million tokens for the model the box uses, and what a ``Usage`` costs.

Prices change; the table carries the date it was taken from (``as_of``) and the currency, and every cost
shown anywhere is shown with that date, so an operator can tell a stale table from a real change in spending.
The defaults are OpenAI's published prices for ``gpt-realtime`` (USD per million tokens, August 2025); set
the ``PRICE_*`` variables when they change or for another model.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Final

from centralita.billing.usage import Usage

__all__ = ["DEFAULT_PRICES", "PriceTable"]

_MILLION: Final = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class PriceTable:
    """Prices per million tokens of each kind; the field names match ``Usage``'s."""

    as_of: str
    currency: str
    input_text: Decimal
    input_audio: Decimal
    cached_text: Decimal
    cached_audio: Decimal
    output_text: Decimal
    output_audio: Decimal

    def cost(self, usage: Usage) -> Decimal:
        """What ``usage`` costs in ``currency`` (not rounded: sums stay exact)."""
        total = Decimal(0)
        for field in fields(Usage):
            total += Decimal(getattr(usage, field.name)) * getattr(self, field.name)
        return total / _MILLION

    def describe(self) -> str:
        return f"{self.currency}, prices as of {self.as_of}"


DEFAULT_PRICES: Final = PriceTable(
    as_of="2025-08-28",
    currency="USD",
    input_text=Decimal("4.00"),
    input_audio=Decimal("32.00"),
    cached_text=Decimal("0.40"),
    cached_audio=Decimal("0.40"),
    output_text=Decimal("16.00"),
    output_audio=Decimal("64.00"),
)
