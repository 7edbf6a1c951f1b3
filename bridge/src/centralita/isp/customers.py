"""The one customer model: who a customer is, read from router comments or a CSV directory, and the rules
every part of Centralita applies to them (the assistant's tools, the dialer's imports, and whatever checks
a caller's identity).

**Router comments.** PPP secret comments are ``tel=<phone>;dni=<id>;cliente=<number>;nombre=<name>;plan=<plan>``:
``;``-separated ``key=value`` pairs, split on the first ``=``, keys case-insensitive, parts without ``=``
ignored (``parse_comment``). ``tel`` may hold several numbers separated by ``|`` or ``/``. Address-list entries
carry the same format for customers without PPPoE (an entry's address is then their service id); other
address-list entries and simple queues carry ``dni=<id>`` so they can be matched when an address changes.
``cliente`` is the customer number printed on the bill (``account``): the assistant may ask for it to verify
a caller, so it is never told to anyone. The entries Centralita adds name the account they were granted to
(``usuario=<PPPoE user>``): such an entry is that account's only, whatever address it holds.

**Phones** are read with libphonenumber (``centralita.isp.phones``) in the default region and kept as E.164;
a number that cannot be read is kept out of ``phones`` and its problem is in ``phone_problems``. Two numbers
match only when both are valid and equal as E.164; text that is not a number matches nothing.

**The DNI** (national ID) is compared letters and digits only, upper case: ``12.345.678-z`` is ``12345678Z``.

**Disabled**: a router row whose ``disabled`` is true (``true``/``yes`` as text) is disabled (``is_disabled``);
a disabled address-list entry or queue is not in force and belongs to nobody.

**Debtor**: a customer is a debtor when an enabled entry of the debtors address-list is theirs (by the address
in question or by ``dni=`` in its comment); a promise to pay is in force when an enabled entry of the exception
list is theirs and holds their current address (the router lets an address through, not a person), and an
entry naming another account (``usuario=``) is never theirs; the service is cut (``DebtStanding.suspended``)
when the first holds and the second does not.

**Lookups** (``Lookup``) find a customer by ``telefono`` (E.164 equality), ``dni`` or ``usuario`` (the PPPoE
user, the service id, exactly).

**The directory** (``CUSTOMER_DIRECTORY``) is a UTF-8 CSV file (a BOM is fine) with a header row; the delimiter
is ``,`` or ``;`` (whichever the header uses). Columns, in any order, names case-insensitive:

    usuario   required  PPPoE user name (service id) as on the router
    nombre    required  the holder's full name
    dni       required  national ID
    telefono  required  phone number(s); several separated by ``|`` or ``/``
    cliente   optional  the customer number printed on the bill (a second factor to verify a caller)
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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from centralita.isp.phones import PhoneError, same_number, split_numbers, to_e164

__all__ = [
    "DIRECTORY_COLUMNS",
    "SECRET_FIELDS",
    "Customer",
    "CustomerDirectory",
    "DebtStanding",
    "DirectoryError",
    "Lookup",
    "LookupKind",
    "comment_dni",
    "comment_service",
    "debt_standing",
    "is_disabled",
    "normalize_account",
    "normalize_dni",
    "parse_comment",
    "phones_match",
    "read_phones",
    "refers_to",
    "router_address",
]

DIRECTORY_COLUMNS: Final = ("usuario", "nombre", "dni", "telefono", "cliente", "plan", "router", "ip")
# What a customer is read from in /ppp/secret (a .proplist): never "password".
SECRET_FIELDS: Final = ("name", "profile", "remote-address", "disabled", "comment")
_REQUIRED_COLUMNS: Final = ("usuario", "nombre", "dni", "telefono")
_TRUE_TEXT: Final = frozenset({"true", "yes"})
_DNI_LENGTHS: Final = range(4, 21)

LookupKind = Literal["telefono", "dni", "usuario"]

# What the assistant's tools say when a phone cannot be read (Spanish: the model reads it).
_PHONE_MESSAGES: Final = {
    "empty": "Falta el número de teléfono.",
    "characters": "El teléfono solo puede tener dígitos, espacios, guiones y el signo más.",
    "no-country": "Pida el teléfono completo, con el código de país (por ejemplo +52 55 5000 1111).",
    "invalid": "Ese número de teléfono no es válido. Pida el número completo, con lada.",
}


# ---- values --------------------------------------------------------------------------------------------


def parse_comment(comment: object) -> dict[str, str]:
    """``tel=...;dni=...;nombre=...`` as a dict (keys lower case); parts without ``=`` are ignored."""
    fields: dict[str, str] = {}
    for part in str(comment or "").split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            fields[key.strip().lower()] = value.strip()
    return fields


def normalize_dni(text: str) -> str:
    """A national ID without separators, in upper case: ``12.345.678-z`` -> ``12345678Z``."""
    return "".join(character for character in text if character.isalnum()).upper()


def normalize_account(text: str) -> str:
    """A customer number as printed or said, compared letters and digits only: ``C-10 004`` -> ``C10004``."""
    return normalize_dni(text)


def read_phones(text: str, region: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The numbers of a ``tel``/``telefono`` value: (E.164 numbers in the order written, problems of the others)."""
    numbers: list[str] = []
    problems: list[str] = []
    for part in split_numbers(text):
        try:
            number = to_e164(part, region)
        except PhoneError as error:
            problems.append(str(error))
            continue
        if number not in numbers:
            numbers.append(number)
    return tuple(numbers), tuple(problems)


def phones_match(first: str, second: str, *, region: str | None) -> bool:
    """Whether two numbers, in any format, are the same line: both valid and equal as E.164 (never a guess)."""
    return same_number(first, second, region)


# ---- router rows ---------------------------------------------------------------------------------------


def is_disabled(row: Mapping[str, object]) -> bool:
    """Whether a router row (PPP secret, address-list entry, queue) is disabled: ``disabled`` true or yes."""
    value = row.get("disabled")
    return value is True or (isinstance(value, str) and value.strip().lower() in _TRUE_TEXT)


def router_address(value: object) -> str:
    """An address as the router writes it, without a host mask: ``10.20.0.14/32`` -> ``10.20.0.14``."""
    return "" if value is None or value is False else str(value).strip().removesuffix("/32")


def comment_dni(row: Mapping[str, object]) -> str:
    """The normalised ``dni=`` of a router row's comment ("" when it has none)."""
    return normalize_dni(parse_comment(row.get("comment")).get("dni", ""))


def comment_service(row: Mapping[str, object]) -> str:
    """The account (``usuario=``) a router row's comment names ("" when it names none)."""
    return parse_comment(row.get("comment")).get("usuario", "")


def refers_to(
    row: Mapping[str, object], *, address: str | None, dni: str, field: str = "address", service: str = ""
) -> bool:
    """Whether an enabled router row is the customer's: ``field`` (``address``, or a queue's ``target``, a list)
    holds ``address``, or the ``dni=`` of its comment is ``dni``. A disabled row is nobody's, and so is a row
    whose comment names another account (``usuario=``) than ``service``, when ``service`` is given."""
    if is_disabled(row):
        return False
    named = comment_service(row)
    if service and named and named != service:
        return False
    if address:
        values = [router_address(part) for part in str(row.get(field) or "").split(",")]
        if router_address(address) in values:
            return True
    return bool(dni) and comment_dni(row) == dni


@dataclass(frozen=True, slots=True)
class DebtStanding:
    """What the debtors and exception address-lists say about one customer."""

    debtor: bool  # an enabled debtors-list entry is theirs
    exception: Mapping[str, object] | None  # their enabled exception-list entry on their address (in force)
    elsewhere: Mapping[str, object] | None = None  # an exception entry of theirs on another address (not in force)

    @property
    def suspended(self) -> bool:
        """Cut for debt right now: on the debtors list, with no promise to pay in force."""
        return self.debtor and self.exception is None


def debt_standing(
    entries: Iterable[Mapping[str, object]],
    *,
    address: str | None,
    dni: str,
    debtors_list: str,
    exception_list: str,
    service: str = "",
) -> DebtStanding:
    """The customer's standing from address-list ``entries`` (any lists), matched by ``address`` or ``dni``.

    With ``service`` (the account) an entry naming another account is not theirs, and an exception entry is in
    force only on ``address``: the router lets an address through, so an exception left on an address the
    account no longer holds helps whoever holds it now, not them (``elsewhere``).
    """
    debtor = False
    exception: Mapping[str, object] | None = None
    elsewhere: Mapping[str, object] | None = None
    for entry in entries:
        if not refers_to(entry, address=address, dni=dni, service=service):
            continue
        if entry.get("list") == debtors_list:
            debtor = True
        elif exception_list and entry.get("list") == exception_list:
            on_address = not service or not address or router_address(entry.get("address")) == router_address(address)
            if on_address and exception is None:
                exception = entry
            elif not on_address and elsewhere is None:
                elsewhere = entry
    return DebtStanding(debtor=debtor, exception=exception, elsewhere=elsewhere)


# ---- customers -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Customer:
    """One service of one customer. ``service`` is the PPPoE user (or the address, without PPPoE).

    ``phones`` are E.164, in the order written (the first is the one the dialer calls); numbers on file that
    could not be read are not in it, and ``phone_problems`` says what is wrong with each.
    """

    service: str
    name: str
    dni: str
    phones: tuple[str, ...]
    plan: str
    router: str | None  # None: not known yet (a directory row without a router)
    address: str | None = None
    pppoe: bool = True
    disabled: bool = False  # the PPP secret (or the address-list entry) is disabled on the router
    phone_problems: tuple[str, ...] = ()
    account: str = ""  # the customer number printed on the bill (normalised), "" when not on file

    @property
    def customer_id(self) -> str:
        """Who the customer is across services and routers: the DNI, else the service id."""
        return self.dni or self.service

    def has_phone(self, number: str) -> bool:
        """Whether the E.164 ``number`` is one of the customer's phones."""
        return number in self.phones

    @classmethod
    def from_secret(cls, row: Mapping[str, object], router: str, *, region: str | None) -> Customer:
        """A customer from a ``/ppp/secret`` row (its ``name``, ``comment``, ``profile``, ``remote-address``)."""
        fields = parse_comment(row.get("comment"))
        phones, problems = read_phones(fields.get("tel", ""), region)
        return cls(
            service=str(row.get("name", "")),
            name=fields.get("nombre", ""),
            dni=normalize_dni(fields.get("dni", "")),
            phones=phones,
            plan=fields.get("plan", "") or str(row.get("profile", "") or ""),
            router=router,
            address=router_address(row.get("remote-address")) or None,
            disabled=is_disabled(row),
            phone_problems=problems,
            account=normalize_account(fields.get("cliente", "")),
        )

    @classmethod
    def from_address_entry(cls, row: Mapping[str, object], router: str, *, region: str | None) -> Customer | None:
        """A customer without PPPoE, from an address-list entry whose comment holds their data (``nombre=``);
        None for an entry that names nobody (a debtors entry with only ``dni=``, say)."""
        fields = parse_comment(row.get("comment"))
        name = fields.get("nombre", "")
        if not name:
            return None
        phones, problems = read_phones(fields.get("tel", ""), region)
        address = router_address(row.get("address"))
        return cls(
            service=address,
            name=name,
            dni=normalize_dni(fields.get("dni", "")),
            phones=phones,
            plan=fields.get("plan", ""),
            router=router,
            address=address,
            pppoe=False,
            disabled=is_disabled(row),
            phone_problems=problems,
            account=normalize_account(fields.get("cliente", "")),
        )


@dataclass(frozen=True, slots=True)
class Lookup:
    """What to look a customer up by; ``value`` is already checked and normalised (``Lookup.build``)."""

    kind: LookupKind
    value: str

    @classmethod
    def build(cls, kind: LookupKind, raw: str, *, region: str | None) -> Lookup | str:
        """A lookup, or a short Spanish message saying what is wrong with ``raw``.

        A phone is read in ``region`` and kept as E.164; one that cannot be read is refused, never guessed.
        """
        text = raw.strip()
        if kind == "telefono":
            try:
                return cls(kind, to_e164(text, region))
            except PhoneError as error:
                return _PHONE_MESSAGES[error.kind]
        if kind == "dni":
            value = normalize_dni(text)
            if len(value) not in _DNI_LENGTHS:
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
        return customer.has_phone(self.value)

    def describe(self) -> str:
        """For logs: the kind, and the value only when it is a phone or a user name (never an ID)."""
        return "dni" if self.kind == "dni" else f"{self.kind}={self.value}"


# ---- the directory -------------------------------------------------------------------------------------


class DirectoryError(Exception):
    """The directory cannot be used; the message names the file and the fix (for the log, not the caller)."""


class CustomerDirectory:
    """The CSV customer directory at ``path``; thread-safe, reread when the file changes.

    ``region`` reads numbers written without a country code (``region_for_country_code(DIALER_COUNTRY_CODE)``).
    """

    def __init__(self, path: Path, region: str | None = None) -> None:
        self.path = path
        self.region = region
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
                f"name at least {', '.join(_REQUIRED_COLUMNS)} (optional: cliente, plan, router, ip)"
            )
        customers = []
        for row in reader:
            cells = {column: _cell(row, columns.get(column)) for column in DIRECTORY_COLUMNS}
            if not cells["usuario"]:
                continue
            phones, problems = read_phones(cells["telefono"], self.region)
            customers.append(
                Customer(
                    service=cells["usuario"],
                    name=cells["nombre"],
                    dni=normalize_dni(cells["dni"]),
                    phones=phones,
                    plan=cells["plan"],
                    router=cells["router"] or None,
                    address=cells["ip"] or None,
                    phone_problems=problems,
                    account=normalize_account(cells["cliente"]),
                )
            )
        return tuple(customers)


def _cell(row: Mapping[str, object], name: str | None) -> str:
    """One cell of a DictReader row, stripped; "" for a column the file lacks or a short row."""
    raw = row.get(name) if name is not None else None
    return raw.strip() if isinstance(raw, str) else ""
