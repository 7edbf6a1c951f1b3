"""Token usage from response.done, its cost from the price table, and the daily and monthly budgets."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from centralita.billing.budget import Budget
from centralita.billing.prices import DEFAULT_PRICES, PriceTable
from centralita.billing.usage import Usage


def response_done(usage: object) -> dict[str, object]:
    return {"type": "response.done", "response": {"id": "resp_1", "status": "completed", "usage": usage}}


GA_USAGE = {
    "total_tokens": 1290,
    "input_tokens": 1000,
    "output_tokens": 290,
    "input_token_details": {
        "text_tokens": 300,
        "audio_tokens": 700,
        "image_tokens": 0,
        "cached_tokens": 400,
        "cached_tokens_details": {"text_tokens": 100, "audio_tokens": 300, "image_tokens": 0},
    },
    "output_token_details": {"text_tokens": 40, "audio_tokens": 250},
}


def test_usage_keeps_cached_tokens_apart_from_the_rest_of_the_input() -> None:
    usage = Usage.from_response_done(response_done(GA_USAGE))
    assert usage == Usage(
        input_text=200, input_audio=400, cached_text=100, cached_audio=300, output_text=40, output_audio=250
    )
    assert usage is not None
    assert usage.total == 1290


def test_a_response_without_usage_or_with_garbage_in_it_never_raises() -> None:
    assert Usage.from_response_done(response_done(None)) is None
    assert Usage.from_response_done({"type": "response.done"}) is None
    odd = {"input_token_details": {"text_tokens": "many", "audio_tokens": -5}, "output_token_details": [1]}
    assert Usage.from_response_done(response_done(odd)) == Usage()


def test_cached_tokens_without_a_split_are_priced_as_cached_text() -> None:
    usage = Usage.from_response_done(response_done({"input_token_details": {"text_tokens": 50, "cached_tokens": 20}}))
    assert usage == Usage(input_text=30, cached_text=20)


def test_usages_add_up_field_by_field() -> None:
    assert Usage(input_text=1, output_audio=2) + Usage(input_text=3, cached_audio=4) == Usage(
        input_text=4, cached_audio=4, output_audio=2
    )


def test_cost_is_each_kind_times_its_price_per_million() -> None:
    usage = Usage(input_text=200, input_audio=400, cached_text=100, cached_audio=300, output_text=40, output_audio=250)
    # 200*4 + 400*32 + 100*0.4 + 300*0.4 + 40*16 + 250*64 = 30400 per million
    assert DEFAULT_PRICES.cost(usage) == Decimal("0.0304")
    assert DEFAULT_PRICES.describe() == "USD, prices as of 2025-08-28"


def test_an_hour_of_audio_costs_what_the_published_prices_say() -> None:
    prices = PriceTable("2025-08-28", "USD", *(Decimal(n) for n in ("4", "32", "0.4", "0.4", "16", "64")))
    assert prices.cost(Usage(input_audio=1_000_000, output_audio=1_000_000)) == Decimal(96)


class Ledger:
    """Spending per moment, summed like the call records do."""

    def __init__(self) -> None:
        self.entries: list[tuple[datetime, Decimal]] = []
        self.queries = 0

    def spend(self, at: datetime, amount: str) -> None:
        self.entries.append((at, Decimal(amount)))

    def since(self, moment: datetime) -> Decimal:
        self.queries += 1
        return sum((amount for at, amount in self.entries if at >= moment), Decimal(0))


class Clocks:
    def __init__(self, now: datetime) -> None:
        self.now = now
        self.mono = 0.0


def budget(ledger: Ledger, clocks: Clocks, **limits: str) -> Budget:
    return Budget(
        daily=Decimal(limits.get("daily", "0")),
        monthly=Decimal(limits.get("monthly", "0")),
        currency="USD",
        spent_since=ledger.since,
        zone=ZoneInfo("America/Mexico_City"),
        now=lambda: clocks.now,
        monotonic=lambda: clocks.mono,
    )


def test_the_daily_budget_counts_the_local_day_and_resets_at_local_midnight(caplog) -> None:
    ledger = Ledger()
    clocks = Clocks(datetime(2026, 3, 10, 5, 30, tzinfo=UTC))  # 23:30 on the 9th in Mexico City
    ledger.spend(datetime(2026, 3, 9, 7, 0, tzinfo=UTC), "6")  # 01:00 local on the 9th
    ledger.spend(datetime(2026, 3, 10, 5, 0, tzinfo=UTC), "4")  # 23:00 local on the 9th
    checker = budget(ledger, clocks, daily="10")
    caplog.set_level(logging.WARNING, logger="centralita.billing.budget")
    assert checker.spent()
    assert any("budget spent" in record.getMessage() for record in caplog.records)
    clocks.now += timedelta(hours=1)  # 00:30 local on the 10th: a new day
    clocks.mono += 10
    assert not checker.spent()
    assert any("budget available again" in record.getMessage() for record in caplog.records)


def test_the_monthly_budget_counts_from_the_first_of_the_local_month() -> None:
    ledger = Ledger()
    clocks = Clocks(datetime(2026, 4, 15, 18, 0, tzinfo=UTC))
    ledger.spend(datetime(2026, 3, 31, 18, 0, tzinfo=UTC), "500")  # March: not counted
    ledger.spend(datetime(2026, 4, 1, 6, 30, tzinfo=UTC), "99")  # 00:30 local on April 1st
    checker = budget(ledger, clocks, monthly="100")
    assert not checker.spent()
    ledger.spend(datetime(2026, 4, 15, 17, 0, tzinfo=UTC), "1")
    clocks.mono += 10
    assert checker.spent()
    assert "this month 100.00 of 100.00 USD" in checker.state().describe()


def test_the_answer_is_cached_for_a_few_seconds_so_calls_do_not_each_query_the_database() -> None:
    ledger = Ledger()
    clocks = Clocks(datetime(2026, 4, 15, 18, 0, tzinfo=UTC))
    checker = budget(ledger, clocks, daily="1")
    for _ in range(20):
        checker.spent()
    assert ledger.queries == 2  # the day and the month, once
    clocks.mono += 6
    checker.spent()
    assert ledger.queries == 4


def test_no_limit_means_never_spent_and_no_query() -> None:
    ledger = Ledger()
    checker = budget(ledger, Clocks(datetime(2026, 4, 15, tzinfo=UTC)))
    assert not checker.spent()
    assert ledger.queries == 0


def test_a_ledger_that_cannot_be_read_does_not_refuse_calls(caplog) -> None:
    def broken(_moment: datetime) -> Decimal:
        raise OSError("disk I/O error")

    checker = Budget(daily=Decimal(1), monthly=Decimal(0), currency="USD", spent_since=broken)
    assert not checker.spent()
    assert any("budget unknown" in record.getMessage() for record in caplog.records)


def test_negative_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="0 \\(no limit\\) or more"):
        Budget(daily=Decimal(-1), monthly=Decimal(0), currency="USD", spent_since=lambda _m: Decimal(0))
