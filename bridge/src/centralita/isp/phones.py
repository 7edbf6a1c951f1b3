"""Phone numbers: read with libphonenumber (the ``phonenumbers`` package), kept and compared as E.164.

Every number Centralita stores or compares goes through ``to_e164``: customers' phones on the routers and in
the directory, the caller ID of an inbound call, the numbers the dialer imports, calls and keeps on its opt-out
list. Two numbers are the same line when their E.164 forms are equal, and only then: ``+52 55 5000 1111``,
``55-5000-1111`` and ``0052 55 5000 1111`` are ``+525550001111``, whatever the spacing.

**The default region.** A number written without its country code (``55 5000 1111``) is read as a number of
the region whose calling code is ``DIALER_COUNTRY_CODE`` (``52`` -> ``MX``, ``1`` -> ``US``, which also covers
the other countries of the North American plan). Without that setting only international numbers (``+`` or
``00``) can be read, and a national one is an error (``PhoneError``) that says so.

**What is read, and how:**

* ``+`` or ``00`` starts an international number; anything else is national (the region's own international
  prefix, such as ``011`` in the US, works too).
* Spaces, dashes, dots and parentheses are ignored; any other character (letters, ``ext``, ``/``) makes the
  text not a number.
* A national number that already carries the country code is not prefixed twice: with region ``MX``,
  ``525550001111`` is ``+525550001111``, not ``+52525550001111``.
* Mexico's retired dialling prefixes are still understood, because old records carry them: the mobile ``1``
  after ``+52`` (``+52 1 55 5000 1111``) and the national ``01``, ``044`` and ``045``. Since 2019 they are
  gone, libphonenumber no longer accepts them, and a number written with one is read without it, but only
  when the number as written is not valid and the number without the prefix is.
* The number must be **valid** by libphonenumber's metadata for its country (a possible length and a range
  in use), not only look like one. A number that is not is an error naming the reason; upgrading the
  ``phonenumbers`` package brings newly allocated ranges.

``time_zones`` says which IANA time zones a number may be in (a country or an area code can span several);
the dialer calls only when the moment is inside the calling window in all of them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Final, Literal

import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumber, PhoneNumberFormat, ValidationResult
from phonenumbers import timezone as number_zones

__all__ = [
    "PhoneError",
    "PhoneProblem",
    "e164_or_none",
    "region_for_country_code",
    "same_number",
    "split_numbers",
    "time_zones",
    "to_e164",
]

PhoneProblem = Literal["empty", "characters", "no-country", "invalid"]

_ALLOWED = re.compile(r"^\+?[0-9\s\-.()\u00a0]+$")
_IGNORED = re.compile(r"[\s\-.()\u00a0]")
_LIST_SEPARATORS = re.compile(r"[|/]")
_UNKNOWN_REGION: Final = "ZZ"
_CACHE_SIZE: Final = 16384  # numbers remembered by to_e164 (about 5 MB when full)
_MEXICO: Final = "52"
# Mexico's retired national prefixes (before 2019: 01 long distance, 044 local mobile, 045 long-distance mobile),
# and the mobile "1" that followed the country code. Each is followed by the ten digits of the number.
_MEXICAN_NATIONAL_PREFIXES: Final = ("044", "045", "01", "1")
_MEXICAN_DIGITS: Final = 10

# libphonenumber reads its metadata lazily, a region the first time one of its numbers is read, under one lock that it
# takes and releases without try/finally (phonenumbers 9.0): a read that fails leaves the lock taken, and every later
# first read of a region waits for ever. Calls, the dialer and the console read numbers on many threads, and a unit
# test run once hung for good that way. All of it is read here, once, at import (about 30 ms and 1.5 MB), so reading a
# number never loads metadata nor takes that lock.
PhoneMetadata.load_all()


class PhoneError(ValueError):
    """A text that is not a valid phone number; the message names the number, the reason and the fix.

    ``kind`` says which rule it broke, for callers that word the problem their own way (the assistant's tools
    answer in Spanish): ``empty``, ``characters`` (not digits), ``no-country`` (national, and no default
    region) or ``invalid`` (read, but not a valid number).
    """

    def __init__(self, message: str, kind: PhoneProblem) -> None:
        super().__init__(message)
        self.kind: PhoneProblem = kind


def region_for_country_code(code: str) -> str | None:
    """The region national numbers are read in for a country calling code: ``52`` -> ``MX``, ``+1`` -> ``US``.

    ``""`` (not set) is ``None``; a code that is no country's raises ``ValueError`` with the fix.
    """
    text = code.strip().lstrip("+")
    if not text:
        return None
    region = phonenumbers.region_code_for_country_code(int(text)) if text.isdigit() else _UNKNOWN_REGION
    if region == _UNKNOWN_REGION:
        raise ValueError(f"{code!r} is not a country calling code: give the digits after the +, e.g. 52 for Mexico")
    return str(region)


def split_numbers(text: str) -> list[str]:
    """The numbers of a list written ``55 5000 1111 | 55 4000 9999`` (``|`` or ``/`` between them)."""
    return [part.strip() for part in _LIST_SEPARATORS.split(text) if part.strip()]


def to_e164(raw: str, region: str | None = None) -> str:
    """``raw`` as E.164 (``+525550001111``), reading a national number in ``region``; ``PhoneError`` if it is not one.

    ``region`` is an ISO region code (``MX``), usually ``region_for_country_code(DIALER_COUNTRY_CODE)``.
    """
    result = _read(raw, region)
    if isinstance(result, tuple):
        raise PhoneError(*result)
    return result


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _read(raw: str, region: str | None) -> str | tuple[str, PhoneProblem]:
    """``to_e164``'s answer, remembered: a lookup reads every number on the routers again (tens of microseconds
    each with libphonenumber), and the same few thousand numbers come back call after call."""
    try:
        return phonenumbers.format_number(_parse(raw, region), PhoneNumberFormat.E164)
    except PhoneError as error:
        return str(error), error.kind


def e164_or_none(raw: str, region: str | None = None) -> str | None:
    """``to_e164``, or None when ``raw`` is not a valid number (for input that may be anything, like a caller ID)."""
    try:
        return to_e164(raw, region)
    except PhoneError:
        return None


def same_number(first: str, second: str, region: str | None = None) -> bool:
    """Whether two numbers, in any format, are the same line: both valid and equal as E.164.

    A text that is not a valid number matches nothing, not even itself: a caller ID of ``anonymous`` or ``123``
    is no customer's, and no guess (such as comparing the last digits) is made.
    """
    a = e164_or_none(first, region)
    return a is not None and a == e164_or_none(second, region)


def time_zones(number: str) -> tuple[str, ...]:
    """The IANA zones an E.164 ``number`` may be in (``+34 6...``: Madrid and the Canaries); () when unknown."""
    try:
        parsed = phonenumbers.parse(number, None)
    except NumberParseException:
        return ()
    zones = number_zones.time_zones_for_number(parsed)
    return tuple(zone for zone in zones if zone != number_zones.UNKNOWN_TIMEZONE)


# ---- parsing ---------------------------------------------------------------------------------------------


def _parse(raw: str, region: str | None) -> PhoneNumber:
    text = raw.strip()
    if not text:
        raise PhoneError("the phone number is empty", "empty")
    if not _ALLOWED.match(text):
        raise PhoneError(
            f"phone {raw!r} has characters other than digits, spaces, dashes, dots, parentheses and a leading +: "
            "write only the number",
            "characters",
        )
    compact = _IGNORED.sub("", text)
    international = _international_digits(compact)
    if international is None and region is None:
        raise PhoneError(
            f"phone {raw!r} has no country code: write it as +<country code> <number> (e.g. +52 55 5000 1111), "
            "or set DIALER_COUNTRY_CODE (e.g. 52) so that national numbers can be read",
            "no-country",
        )
    first: PhoneNumber | None = None
    failure: NumberParseException | None = None
    for candidate, candidate_region in _candidates(compact, international, region):
        try:
            number = phonenumbers.parse(candidate, candidate_region)
        except NumberParseException as error:
            failure = failure or error
            continue
        if phonenumbers.is_valid_number(number) and not number.extension:
            return number
        first = first or number
    if first is None:
        assert failure is not None
        raise PhoneError(_unparsable(raw, failure), "invalid")
    raise PhoneError(_invalid(raw, first), "invalid")


def _international_digits(compact: str) -> str | None:
    if compact.startswith("+"):
        return compact[1:]
    if compact.startswith("00"):
        return compact[2:]
    return None


def _candidates(compact: str, international: str | None, region: str | None) -> Iterator[tuple[str, str | None]]:
    """The readings of a number to try, in order: as written first, then without a retired prefix."""
    if international is not None:
        yield "+" + international, None
        yield from _without_mexican_mobile_one(international)
        return
    yield compact, region
    if region is None:
        return
    code = str(phonenumbers.country_code_for_region(region))
    if code == _MEXICO:
        for prefix in _MEXICAN_NATIONAL_PREFIXES:
            if compact.startswith(prefix) and len(compact) == len(prefix) + _MEXICAN_DIGITS:
                yield compact[len(prefix) :], region
    if compact.startswith(code):
        # The country code already written in a national number (libphonenumber handles the plain case itself).
        yield "+" + compact, None
        yield from _without_mexican_mobile_one(compact)


def _without_mexican_mobile_one(digits: str) -> Iterator[tuple[str, str | None]]:
    if digits.startswith(_MEXICO + "1") and len(digits) == len(_MEXICO) + 1 + _MEXICAN_DIGITS:
        yield "+" + _MEXICO + digits[len(_MEXICO) + 1 :], None


def _unparsable(raw: str, error: NumberParseException) -> str:
    if error.error_type == NumberParseException.INVALID_COUNTRY_CODE:
        return f"phone {raw!r} does not start with a country calling code: check the digits after the + (or 00)"
    if error.error_type == NumberParseException.TOO_LONG:
        return f"phone {raw!r} is too long to be a phone number"
    return f"phone {raw!r} is too short to be a phone number"


def _invalid(raw: str, number: PhoneNumber) -> str:
    if number.extension:
        return f"phone {raw!r} has an extension: the dialer cannot dial one, write only the number"
    country = f"+{number.country_code}"
    region = phonenumbers.region_code_for_country_code(number.country_code or 0)
    where = f"{region} ({country})" if region != _UNKNOWN_REGION else country
    national = phonenumbers.national_significant_number(number)
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason == ValidationResult.TOO_SHORT:
        problem = f"has too few digits ({len(national)} after {country}) for a number of {where}"
    elif reason == ValidationResult.TOO_LONG:
        problem = f"has too many digits ({len(national)} after {country}) for a number of {where}"
    elif reason == ValidationResult.IS_POSSIBLE_LOCAL_ONLY:
        problem = f"is a local number of {where} without its area code"
    elif reason == ValidationResult.INVALID_LENGTH:
        problem = f"has the wrong number of digits ({len(national)} after {country}) for a number of {where}"
    else:
        problem = f"is not in a range of numbers in use in {where}"
    return f"phone {raw!r} {problem}: check the number and its country code"
