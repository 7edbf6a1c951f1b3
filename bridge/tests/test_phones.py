"""Phone numbers read with libphonenumber: E.164, the default region, Mexico's retired prefixes, zones."""

from __future__ import annotations

import threading

import pytest
from phonenumbers import PhoneMetadata

from centralita.isp.phones import (
    PhoneError,
    e164_or_none,
    region_for_country_code,
    same_number,
    split_numbers,
    time_zones,
    to_e164,
)


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("55 5000 1111", "MX", "+525550001111"),
        ("(55) 5000-1111", "MX", "+525550001111"),
        ("55.5000.1111", "MX", "+525550001111"),
        ("+52 55 5000 1111", "MX", "+525550001111"),
        ("0052 55 5000 1111", "MX", "+525550001111"),
        # The country code already in a national number is not added twice.
        ("525550001111", "MX", "+525550001111"),
        ("52 55 5000 1111", "MX", "+525550001111"),
        # Mexico's retired prefixes: the mobile 1 after +52, and the national 01, 044 and 045.
        ("+52 1 55 5000 1111", "MX", "+525550001111"),
        ("+5215550001111", None, "+525550001111"),
        ("5215550001111", "MX", "+525550001111"),
        ("044 55 5000 1111", "MX", "+525550001111"),
        ("045 55 5000 1111", "MX", "+525550001111"),
        ("01 55 5000 1111", "MX", "+525550001111"),
        # Other countries, and international numbers whatever the region.
        ("+57 300 111 2233", "MX", "+573001112233"),
        ("300 111 2233", "CO", "+573001112233"),
        ("0057 300 111 2233", "CO", "+573001112233"),
        ("(212) 555-0123", "US", "+12125550123"),
        ("1 212 555 0123", "US", "+12125550123"),
        ("011 52 55 5000 1111", "US", "+525550001111"),
        ("416 555 0123", "US", "+14165550123"),  # Canada shares +1
    ],
)
def test_numbers_in_any_format_become_e164(raw: str, region: str | None, expected: str) -> None:
    assert to_e164(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "region", "kind", "message"),
    [
        ("", "MX", "empty", "empty"),
        ("   ", "MX", "empty", "empty"),
        ("n/a", "MX", "characters", "characters other than digits"),
        ("555 000 1111 ext 2", "MX", "characters", "characters other than digits"),
        ("55 5000 1111", None, "no-country", "set DIALER_COUNTRY_CODE"),
        ("55-123", "MX", "invalid", "too few digits (5 after +52) for a number of MX (+52)"),
        ("+52 55 5000 111", None, "invalid", "too few digits (9 after +52)"),
        ("+52155500011112222", "MX", "invalid", "too many digits"),
        ("+52 1234 5678", "MX", "invalid", "local number of MX (+52) without its area code"),
        ("+999 1234 5678", None, "invalid", "does not start with a country calling code"),
        ("+0 555 000 1111", "MX", "invalid", "does not start with a country calling code"),
        ("416 555 0123", "MX", "invalid", "not in a range of numbers in use in MX (+52)"),
        ("12", "MX", "invalid", "too few digits (2 after +52)"),
        ("+52 5", "MX", "invalid", "too short to be a phone number"),
        ("+52 12345678901234567890", "MX", "invalid", "too long to be a phone number"),
    ],
)
def test_what_is_not_a_number_says_why(raw: str, region: str | None, kind: str, message: str) -> None:
    with pytest.raises(PhoneError) as caught:
        to_e164(raw, region)
    assert caught.value.kind == kind
    assert message in str(caught.value)
    assert e164_or_none(raw, region) is None


def test_region_from_the_country_code() -> None:
    assert region_for_country_code("52") == "MX"
    assert region_for_country_code("+57") == "CO"
    assert region_for_country_code("1") == "US"
    assert region_for_country_code("") is None
    for bad in ("999", "0", "abc"):
        with pytest.raises(ValueError, match="not a country calling code"):
            region_for_country_code(bad)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("+52 1 55 5000 1111", "55 5000 1111"),
        ("5215550001111", "+525550001111"),
        ("044 55 5000 1111", "(55) 5000-1111"),
        ("525550001111", "5550001111"),
    ],
)
def test_the_same_line_in_any_format(first: str, second: str) -> None:
    assert same_number(first, second, "MX")
    assert same_number(second, first, "MX")


@pytest.mark.parametrize(
    ("first", "second", "region"),
    [
        ("+525550001111", "+525550002222", "MX"),
        ("5550001111", "+575550001111", "MX"),  # the same digits in another country
        ("50001111", "+525550001111", "MX"),  # the last eight digits are not the number
        ("anonymous", "anonymous", "MX"),  # not a number: matches nothing, not even itself
        ("123", "123", "MX"),
        ("", "", "MX"),
        ("5550001111", "5550001111", None),  # national, and no region to read it in
    ],
)
def test_different_or_unreadable_numbers_never_match(first: str, second: str, region: str | None) -> None:
    assert not same_number(first, second, region)


def test_lists_of_numbers() -> None:
    assert split_numbers("+52 1 555 000 1111 | 55 4000 9999/ 5550002222 |") == [
        "+52 1 555 000 1111",
        "55 4000 9999",
        "5550002222",
    ]
    assert split_numbers("  ") == []


@pytest.mark.parametrize(
    ("number", "zones"),
    [
        ("+525550001111", ("America/Mexico_City",)),
        ("+526641234567", ("America/Tijuana",)),
        ("+526491234567", ("America/Mazatlan", "America/Mexico_City")),  # one area code, two zones
        ("+34612345678", ("Atlantic/Canary", "Europe/Madrid")),  # a Spanish mobile may be on the islands
        ("+12085550100", ("America/Boise", "America/Los_Angeles")),
        ("+5215550001111", ()),  # not E.164 as libphonenumber writes it: no zone known
        ("anonymous", ()),
    ],
)
def test_the_zones_a_number_may_be_in(number: str, zones: tuple[str, ...]) -> None:
    assert time_zones(number) == zones


def test_reading_numbers_of_any_region_never_takes_libphonenumbers_loading_lock() -> None:
    # libphonenumber loads a region's metadata the first time under one lock, which a failed load leaves taken (no
    # try/finally): with the metadata read at import, reading numbers of regions read nowhere else in these tests
    # does not wait for that lock even while something holds it.
    numbers = ["+81 3-1234-5678", "+49 30 901820", "+61 2 9374 4000", "+27 21 403 2911", "+354 510 7000"]
    read: list[str] = []
    assert PhoneMetadata._metadata_lock.acquire(timeout=10)
    try:
        reader = threading.Thread(target=lambda: read.extend(to_e164(number) for number in numbers), daemon=True)
        reader.start()
        reader.join(10)
        read_while_held = not reader.is_alive()
    finally:
        PhoneMetadata._metadata_lock.release()
    reader.join(10)
    assert read_while_held, "reading the numbers waited for libphonenumber's loading lock"
    assert read == ["+81312345678", "+4930901820", "+61293744000", "+27214032911", "+3545107000"]
