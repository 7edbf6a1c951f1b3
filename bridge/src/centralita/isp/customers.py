"""Who a caller is: customer records from router comments or a CSV directory, and how callers are matched.

A customer is found by one of three keys (``Lookup``):

* ``telefono``: compared on digits only, so ``+52 1 555-000-1111``, ``5215550001111`` and ``555 000 1111``
  are the same number. Two numbers match when their last ``min(len(a), len(b), 10)`` digits are equal and
  that is at least ``MIN_PHONE_DIGITS`` (8) digits: country and trunk prefixes (``+52 1``, ``0``) are
  ignored, a number too short to say anything matches nothing.
* ``dni``: the national ID, letters and digits only, upper case (``12.345.678-z`` is ``12345678Z``).
* ``usuario``: the PPPoE user name (the service id), exactly.

Router records are PPP secret comments, ``tel=<phone>;dni=<id>;nombre=<name>;plan=<plan>`` (``;``-separated
``key=value`` pairs, split on the first ``=``; keys are case-insensitive). Address-list entries may carry the
same format, for customers without PPPoE; an entry's address is then their service id.

The directory (``CUSTOMER_DIRECTORY``) is a UTF-8 CSV file (a BOM is fine) with a header row; the
delimiter is ``,`` or ``;`` (whichever the header uses). Columns, in any order, names case-insensitive:

    usuario   required  PPPoE user name (service id) as on the router
    nombre    required  the holder's full name
    dni       required  national ID
    telefono  required  phone number(s); several separated by ``|`` or ``/``
    plan      optional  plan name to tell the caller
    router    optional  the router's name in ROUTEROS_ROUTERS (empty: looked up on every router)
    ip        optional  the customer's address, when the PPP secret has no remote-address

Rows without ``usuario`` are skipped. The file is read again whenever its modification time changes, so
the billing system may replace it at any time (write a temporary file and rename it over the old one).
"""

from __future__ import annotations

import csv
import io
import threading
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

__all__ = [
    "DIRECTORY_COLUMNS",
    "MIN_PHONE_DIGITS",
    "Customer",
    "CustomerDirectory",
    "DirectoryError",
    "Lookup",
    "digits",
    "names_match",
    "normalize_dni",
    "parse_comment",
    "phones_match",
]

MIN_PHONE_DIGITS: Final = 8
_PHONE_COMPARED_DIGITS: Final = 10
DIRECTORY_COLUMNS: Final = ("usuario", "nombre", "dni", "telefono", "plan", "router", "ip")
_REQUIRED_COLUMNS: Final = ("usuario", "nombre", "dni", "telefono")
_MIN_NAME_WORDS: Final = 2

LookupKind = Literal["telefono", "dni", "usuario"]


def digits(text: str) -> str:
    """Only the ASCII digits of ``text``."""
    return "".join(character for character in text if "0" <= character <= "9")


def phones_match(first: str, second: str) -> bool:
    """Whether two phone numbers, in any format, are the same line (see the module docstring)."""
    a, b = digits(first), digits(second)
    compared = min(len(a), len(b), _PHONE_COMPARED_DIGITS)
    return compared >= MIN_PHONE_DIGITS and a[-compared:] == b[-compared:]


def normalize_dni(text: str) -> str:
    """A national ID without separators, in upper case: ``12.345.678-z`` -> ``12345678Z``."""
    return "".join(character for character in text if character.isalnum()).upper()


def _name_words(text: str) -> list[str]:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(character for character in decomposed if not unicodedata.combining(character))
    cleaned = "".join(character if character.isalnum() else " " for character in plain)
    return cleaned.split()


def names_match(given: str, recorded: str) -> bool:
    """Whether a name the caller said is the holder's: at least two words, every one of them in the record.

    Case, accents and punctuation are ignored (``maria pena`` is ``María Peña``); a missing second surname
    is fine (``Carmen Núñez`` is ``Carmen Núñez Ortiz``), a first name alone is not enough.
    """
    said = _name_words(given)
    held = _name_words(recorded)
    return len(said) >= _MIN_NAME_WORDS and all(word in held for word in said)


def parse_comment(comment: str) -> dict[str, str]:
    """``tel=...;dni=...;nombre=...`` as a dict (keys lower case); parts without ``=`` are ignored."""
    fields: dict[str, str] = {}
    for part in comment.split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            fields[key.strip().lower()] = value.strip()
    return fields


@dataclass(frozen=True, slots=True)
class Customer:
    """One service of one customer. ``service`` is the PPPoE user (or the address, without PPPoE)."""

    service: str
    name: str
    dni: str
    phones: tuple[str, ...]
    plan: str
    router: str | None  # None: not known yet (a directory row without a router)
    address: str | None = None
    pppoe: bool = True

    def public(self) -> dict[str, Any]:
        """What the assistant may be told: never the ID, the phone on file or anything secret."""
        return {"nombre": self.name, "plan": self.plan, "servicio": self.service, "router": self.router}

    @classmethod
    def from_secret(cls, row: Mapping[str, object], router: str) -> Customer:
        """A customer from a ``/ppp/secret`` row (its ``name``, ``comment``, ``profile``, ``remote-address``)."""
        fields = parse_comment(str(row.get("comment", "")))
        return cls(
            service=str(row.get("name", "")),
            name=fields.get("nombre", ""),
            dni=normalize_dni(fields.get("dni", "")),
            phones=_phones(fields.get("tel", "")),
            plan=fields.get("plan", "") or str(row.get("profile", "")),
            router=router,
            address=str(row.get("remote-address", "")) or None,
        )

    @classmethod
    def from_address_entry(cls, row: Mapping[str, object], router: str) -> Customer:
        """A customer without PPPoE, from an address-list entry whose comment holds their data."""
        fields = parse_comment(str(row.get("comment", "")))
        address = str(row.get("address", ""))
        return cls(
            service=address,
            name=fields.get("nombre", ""),
            dni=normalize_dni(fields.get("dni", "")),
            phones=_phones(fields.get("tel", "")),
            plan=fields.get("plan", ""),
            router=router,
            address=address,
            pppoe=False,
        )


def _phones(text: str) -> tuple[str, ...]:
    parts = text.replace("/", "|").split("|")
    return tuple(part.strip() for part in parts if part.strip())


@dataclass(frozen=True, slots=True)
class Lookup:
    """What to look a customer up by; ``value`` is already checked (``Lookup.build``)."""

    kind: LookupKind
    value: str

    @classmethod
    def build(cls, kind: LookupKind, raw: str) -> Lookup | str:
        """A lookup, or a short Spanish message saying what is wrong with ``raw``."""
        text = raw.strip()
        if kind == "telefono":
            if len(digits(text)) < MIN_PHONE_DIGITS:
                return f"El teléfono debe tener al menos {MIN_PHONE_DIGITS} dígitos."
            if any(not (character.isdigit() or character in "+-() .") for character in text):
                return "El teléfono solo puede tener dígitos, espacios, guiones y el signo más."
            return cls(kind, text)
        if kind == "dni":
            value = normalize_dni(text)
            if not 4 <= len(value) <= 20:
                return "El DNI debe tener entre 4 y 20 letras o dígitos."
            return cls(kind, value)
        if not text or any(character.isspace() or not character.isprintable() for character in text):
            return "El usuario del servicio no puede tener espacios."
        return cls(kind, text)

    def matches(self, customer: Customer) -> bool:
        if self.kind == "usuario":
            return customer.service == self.value
        if self.kind == "dni":
            return bool(customer.dni) and customer.dni == self.value
        return any(phones_match(self.value, phone) for phone in customer.phones)

    def describe(self) -> str:
        """For logs: the kind, and the value only when it is a phone or a user name (never an ID)."""
        return "dni" if self.kind == "dni" else f"{self.kind}={self.value}"


class DirectoryError(Exception):
    """The directory cannot be used; the message names the file and the fix (for the log, not the caller)."""


class CustomerDirectory:
    """The CSV customer directory at ``path``; thread-safe, reread when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._customers: tuple[Customer, ...] = ()

    def __repr__(self) -> str:
        return f"CustomerDirectory({str(self.path)!r})"

    def customers(self) -> tuple[Customer, ...]:
        """Every customer in the file as it is now; ``DirectoryError`` if it cannot be read."""
        try:
            status = self.path.stat()
        except OSError as error:
            raise DirectoryError(f"cannot read the customer directory {self.path} ({error.strerror})") from None
        stamp = (status.st_mtime_ns, status.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._customers = self._read()
                self._stamp = stamp
            return self._customers

    def find(self, lookup: Lookup) -> list[Customer]:
        return [customer for customer in self.customers() if lookup.matches(customer)]

    def _read(self) -> tuple[Customer, ...]:
        try:
            text = self.path.read_text(encoding="utf-8-sig")
        except OSError as error:
            raise DirectoryError(f"cannot read the customer directory {self.path} ({error.strerror})") from None
        except UnicodeDecodeError:
            raise DirectoryError(f"the customer directory {self.path} is not UTF-8 text: save it as UTF-8") from None
        header = text.split("\n", 1)[0]
        delimiter = ";" if header.count(";") > header.count(",") else ","
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
        columns = {name.strip().lower(): name for name in reader.fieldnames or () if name}
        missing = [column for column in _REQUIRED_COLUMNS if column not in columns]
        if missing:
            raise DirectoryError(
                f"the customer directory {self.path} lacks the column(s) {', '.join(missing)}: its header must "
                f"name at least {', '.join(_REQUIRED_COLUMNS)} (optional: plan, router, ip)"
            )
        customers = []
        for row in reader:
            cells = {column: _cell(row, columns.get(column)) for column in DIRECTORY_COLUMNS}
            if not cells["usuario"]:
                continue
            customers.append(
                Customer(
                    service=cells["usuario"],
                    name=cells["nombre"],
                    dni=normalize_dni(cells["dni"]),
                    phones=_phones(cells["telefono"]),
                    plan=cells["plan"],
                    router=cells["router"] or None,
                    address=cells["ip"] or None,
                )
            )
        return tuple(customers)


def _cell(row: Mapping[str, object], name: str | None) -> str:
    """One cell of a DictReader row, stripped; "" for a column the file lacks or a short row."""
    raw = row.get(name) if name is not None else None
    return raw.strip() if isinstance(raw, str) else ""
