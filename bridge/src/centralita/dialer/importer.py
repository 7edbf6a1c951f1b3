"""Customers to call: read from a CSV file, or from the routers' debtors address-list.

**CSV** (docs/DIALER.md has the full description). A header row names the columns, in any order; names are
case- and accent-insensitive and may be English or Spanish:

    customer_id   id_cliente, numero_cliente, dni, id        required  unique per campaign
    name          nombre                                     required
    phone         telefono, tel, celular                     required  national (needs DIALER_COUNTRY_CODE) or +E.164;
                                                                       several: ``|`` or ``/`` between them, the
                                                                       first valid one is called
    amount_due    monto, adeudo, saldo, importe, deuda       required  1234.50, 1234,50, 1.234,50 or 1,234.50
    due_date      vencimiento, fecha_vencimiento             required  YYYY-MM-DD or DD/MM/YYYY; not in the future
    router_user   usuario, usuario_pppoe, pppoe              optional  the PPPoE user on the router
    timezone      zona_horaria                               optional  the customer's IANA time zone

The delimiter is ``,`` or ``;`` (whichever the header uses; Spanish spreadsheets export ``;``). The file must
be UTF-8 (a BOM is fine; UTF-16 with a BOM too); another encoding is refused with the line and byte of the first
character that is not UTF-8, unless it is named explicitly (``encoding="latin-1"``). A missing required column
refuses the whole file. A bad row is reported with its line number and skipped; every good row is imported.

**Routers.** The customers are those of ``centralita.isp.customers``, read the way the assistant's tools read
them: PPP secrets, and address-list entries naming a customer without PPPoE. Each enabled entry of the debtors
address-list (``ROUTEROS_DEBTORS_LIST``, comment ``dni=<id>``) is joined with its customer by the normalised
``dni``, or else by the entry's address and the customer's. A customer whose promise to pay is in force (an
enabled exception-list entry of theirs, ``ROUTEROS_EXCEPTION_LIST``) is left out. The customer id is the DNI
(else the PPPoE user). The routers know no amount or due date: those stay empty.

**Phones** are read with ``centralita.isp.phones`` in the default region and stored as E.164. A number that
cannot be read skips its row (naming the line, or the router and entry); when a customer has several numbers,
the first valid one is called and a bad one is a warning. **One number is one target**: a phone that already
belongs to another customer earlier in the same import (an earlier line, an earlier entry, an earlier router)
is not imported again, with a warning naming both; the first customer listed keeps it.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from centralita.dialer.store import TargetData
from centralita.isp.customers import (
    SECRET_FIELDS,
    Customer,
    comment_dni,
    debt_standing,
    is_disabled,
    read_phones,
    router_address,
)
from centralita.isp.routeros.client import RouterClient

__all__ = [
    "COLUMNS",
    "REQUIRED_COLUMNS",
    "ImportFileError",
    "ImportResult",
    "Problem",
    "from_router",
    "merge",
    "parse_amount",
    "parse_date",
    "read_csv",
    "read_csv_data",
]

MAX_AMOUNT: Final = Decimal("1000000000")

# Field -> accepted header names (already folded: lower case, no accents, '_' for spaces and dashes).
COLUMNS: Final[Mapping[str, tuple[str, ...]]] = {
    "customer_id": ("customer_id", "customer", "id", "id_cliente", "numero_cliente", "num_cliente", "dni", "cuenta"),
    "name": ("name", "nombre", "nombre_completo", "customer_name"),
    "phone": ("phone", "phone_number", "telefono", "tel", "celular", "movil", "numero_telefono"),
    "amount_due": ("amount_due", "amount", "monto", "monto_adeudado", "adeudo", "saldo", "importe", "deuda"),
    "due_date": ("due_date", "vencimiento", "fecha_vencimiento", "fecha_de_vencimiento", "fecha_limite"),
    "router_user": ("router_user", "usuario", "usuario_pppoe", "pppoe", "usuario_router", "ppp_user"),
    "timezone": ("timezone", "time_zone", "zona_horaria", "tz"),
}
REQUIRED_COLUMNS: Final = ("customer_id", "name", "phone", "amount_due", "due_date")


class ImportFileError(ValueError):
    """The whole file (or router) cannot be imported; the message says why and how to fix it."""


@dataclass(frozen=True, slots=True)
class Problem:
    """A row skipped, or imported with a warning: where (``line 7``, ``router nucleo, morosos entry *3``), why."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass(slots=True)
class ImportResult:
    """The rows to import; ``problems``: rows skipped (errors); ``warnings``: rows merged or imported with a note."""

    rows: list[TargetData] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


class _Targets:
    """What one import has taken so far, so that a customer, and a phone number, is one target: the first one."""

    def __init__(self, result: ImportResult) -> None:
        self._result = result
        self._ids: dict[str, str] = {}
        self._phones: dict[str, tuple[str, str]] = {}

    def add(self, row: TargetData, where: str, *, again: str = "already appears on") -> None:
        """Take ``row`` (found at ``where``), unless its customer or its phone was taken before."""
        first = self._ids.get(row.customer_id)
        if first is not None:
            self._result.problems.append(Problem(where, f"customer {row.customer_id!r} {again} {first}"))
            return
        owner = self._phones.get(row.phone)
        if owner is not None:
            self._result.warnings.append(
                Problem(
                    where,
                    f"phone {row.phone} of customer {row.customer_id!r} already belongs to customer {owner[0]!r} "
                    f"({owner[1]}): one number is called once, for the customer listed first; "
                    "this one is not imported",
                )
            )
            return
        self._ids[row.customer_id] = where
        self._phones[row.phone] = (row.customer_id, where)
        self._result.rows.append(row)


# ---- values ----------------------------------------------------------------------------------------------


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.strip().lower())
    plain = "".join(character for character in decomposed if not unicodedata.combining(character))
    return re.sub(r"[^a-z0-9]+", "_", plain).strip("_")


def _clean(text: str) -> str:
    """Collapse whitespace and drop control characters (the name goes to the assistant as data)."""
    printable = "".join(character if character.isprintable() else " " for character in text)
    return " ".join(printable.split())


def _number_to_call(numbers: Sequence[str], problems: Sequence[str]) -> tuple[str, str]:
    """Of a customer's phones (``read_phones``), the one to call (the first valid one) and a warning about the
    numbers that are not valid ("" when all are). ValueError with the reason when none is valid."""
    if not numbers:
        raise ValueError("; ".join(problems) or "no phone number is given")
    warning = f"{'; '.join(problems)}; calling {numbers[0]}" if problems else ""
    return numbers[0], warning


def _grouped(integer: str, separator: str) -> str | None:
    """``1.234.567`` -> ``1234567`` when the groups of three are right, else None."""
    groups = integer.split(separator)
    if not groups[0] or len(groups[0]) > 3 or any(len(group) != 3 for group in groups[1:]):
        return None
    return "".join(groups)


def parse_amount(raw: str) -> Decimal:
    """An amount owed, > 0, at most two decimals; decimal comma or point, with or without thousands separators.

    ``1.500`` and ``1,500`` are refused as ambiguous (a thousand and a half, or one and a half?).
    """
    text = re.sub(r"[\s\u00a0]", "", raw)
    text = re.sub(r"^(?:[A-Za-z]{3}|US\$|\$|€)", "", text)
    text = re.sub(r"(?:[A-Za-z]{3}|\$|€)$", "", text)
    if not text:
        raise ValueError("the amount is empty")
    if not re.fullmatch(r"[0-9.,]+", text) or not text[0].isdigit() or not text[-1].isdigit():
        raise ValueError(f"amount {raw!r} is not a number (write it like 1234.50)")
    dots, commas = text.count("."), text.count(",")
    number: str | None
    if dots and commas:
        decimal_separator = "." if text.rfind(".") > text.rfind(",") else ","
        thousands = "," if decimal_separator == "." else "."
        integer, _, fraction = text.rpartition(decimal_separator)
        grouped = _grouped(integer, thousands)
        number = f"{grouped}.{fraction}" if grouped is not None and decimal_separator not in integer else None
    elif dots or commas:
        separator = "." if dots else ","
        integer, _, fraction = text.rpartition(separator)
        if dots + commas == 1 and len(fraction) == 3:
            raise ValueError(
                f"amount {raw!r} is ambiguous (thousands or decimals?): write it without thousands separators, "
                "e.g. 1500 or 1.50"
            )
        number = f"{integer}.{fraction}" if dots + commas == 1 else _grouped(text, separator)
    else:
        number = text
    if number is None:
        raise ValueError(f"amount {raw!r} mixes separators in a way that is not a number (write it like 1234.50)")
    try:
        value = Decimal(number)
    except InvalidOperation:
        raise ValueError(f"amount {raw!r} is not a number (write it like 1234.50)") from None
    if value <= 0:
        raise ValueError(f"amount {raw!r} is not above zero: nothing is owed")
    if value >= MAX_AMOUNT:
        raise ValueError(f"amount {raw!r} is too large to be a bill")
    if value != value.quantize(Decimal("0.01")):
        raise ValueError(f"amount {raw!r} has more than two decimals")
    return value.quantize(Decimal("0.01"))


def parse_date(raw: str) -> date:
    """``YYYY-MM-DD`` or ``DD/MM/YYYY`` (also ``DD-MM-YYYY``, ``DD.MM.YYYY``); a midnight time is tolerated."""
    text = re.sub(r"[ T]00:00(?::00)?$", "", raw.strip())
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return date.fromisoformat(text)
        match = re.fullmatch(r"(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4})", text)
        if match:
            return date(int(match.group(3)), int(match.group(2)), int(match.group(1)))
    except ValueError:
        raise ValueError(f"date {raw!r} does not exist") from None
    raise ValueError(f"date {raw!r} is not YYYY-MM-DD or DD/MM/YYYY")


# ---- CSV -------------------------------------------------------------------------------------------------


def _decode(data: bytes, path: Path, encoding: str | None) -> str:
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ImportFileError(
                f"{encoding!r} is not an encoding Python knows: use utf-8, latin-1 or cp1252."
            ) from None
        try:
            return data.decode(encoding)
        except UnicodeDecodeError as error:
            raise ImportFileError(f"{path} is not valid {encoding}: {_position(data, error)}.") from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as error:
            raise ImportFileError(f"{path} starts like UTF-16 but is not: {_position(data, error)}.") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ImportFileError(
            f"{path} is not UTF-8: {_position(data, error)}. Export it again as 'CSV UTF-8' (in Excel: Save As, "
            "CSV UTF-8; in LibreOffice: character set Unicode (UTF-8)), or, if you know it is Latin-1/Windows-1252, "
            "import it with --encoding latin-1."
        ) from None


def _position(data: bytes, error: UnicodeDecodeError) -> str:
    line = data.count(b"\n", 0, error.start) + 1
    column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
    return f"line {line}, byte {column} of the line (0x{data[error.start]:02X}) cannot be decoded"


def _columns(header: Sequence[str], path: Path) -> dict[str, int]:
    aliases = {alias: name for name, names in COLUMNS.items() for alias in names}
    positions: dict[str, int] = {}
    for index, title in enumerate(header):
        name = aliases.get(_fold(title))
        if name is None:
            continue
        if name in positions:
            raise ImportFileError(
                f"{path}: the columns {header[positions[name]]!r} and {title!r} both mean {name}: keep only one."
            )
        positions[name] = index
    missing = [name for name in REQUIRED_COLUMNS if name not in positions]
    if missing:
        accepted = "; ".join(f"{name}: {', '.join(COLUMNS[name])}" for name in missing)
        found = ", ".join(repr(title) for title in header) or "nothing"
        raise ImportFileError(
            f"{path} lacks the column{'s' if len(missing) > 1 else ''} {', '.join(missing)} (accepted names: "
            f"{accepted}). Its header row has {found}."
        )
    return positions


def read_csv(
    path: str | Path,
    *,
    region: str | None = None,
    today: date | None = None,
    encoding: str | None = None,
) -> ImportResult:
    """Read a customers CSV. File-level problems raise ``ImportFileError``; bad rows go to ``problems``.

    ``region`` reads national phone numbers (``region_for_country_code(DIALER_COUNTRY_CODE)``). ``today`` (the
    campaign's local date) refuses due dates after it: those bills are not overdue. A customer id that appears
    again is reported and the later row skipped; a phone that appears again under another customer id is a
    warning, and the later row is not imported (the first row's customer keeps the number).
    """
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as error:
        raise ImportFileError(f"Cannot read {file}: {error.strerror}.") from None
    return read_csv_data(data, file, region=region, today=today, encoding=encoding)


def read_csv_data(
    data: bytes,
    file: Path,
    *,
    region: str | None = None,
    today: date | None = None,
    encoding: str | None = None,
) -> ImportResult:
    """``read_csv`` of a file's content ``data``; ``file`` names it in the messages (and in each row's source).

    The web console checks an upload with this, and the dialer checks it again before it imports it."""
    text = _decode(data, file, encoding)
    if not text.strip():
        raise ImportFileError(f"{file} is empty: it needs a header row and one row per customer.")
    first_line = text.lstrip().splitlines()[0]
    delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
        while not any(cell.strip() for cell in header):
            header = next(reader)
    except StopIteration:
        raise ImportFileError(f"{file} has no header row.") from None
    except csv.Error as error:
        raise ImportFileError(f"{file}: the header row is not valid CSV ({error}).") from None
    positions = _columns(header, file)
    result = ImportResult()
    taken = _Targets(result)
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            result.problems.append(
                Problem(f"line {line}", f"not valid CSV ({error}); the rest of the file was not read")
            )
            break
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            result.problems.append(
                Problem(
                    f"line {line}", f"{len(cells)} fields where the header has {len(header)} (a stray {delimiter!r}?)"
                )
            )
            continue
        values = {name: cells[index].strip() for name, index in positions.items()}
        try:
            row, warning = _row(values, region, today, f"csv:{file.name}:{line}")
        except ValueError as error:
            result.problems.append(Problem(f"line {line}", str(error)))
            continue
        if warning:
            result.warnings.append(Problem(f"line {line}", warning))
        taken.add(row, f"line {line}")
    return result


def _row(values: Mapping[str, str], region: str | None, today: date | None, source: str) -> tuple[TargetData, str]:
    customer_id = _clean(values["customer_id"])
    if not customer_id:
        raise ValueError("the customer id is empty")
    if len(customer_id) > 64:
        raise ValueError("the customer id is longer than 64 characters")
    name = _clean(values["name"])
    if not name:
        raise ValueError("the name is empty")
    if len(name) > 120:
        raise ValueError("the name is longer than 120 characters")
    phone, warning = _number_to_call(*read_phones(values["phone"], region))
    amount = parse_amount(values["amount_due"])
    due = parse_date(values["due_date"])
    if today is not None and due > today:
        raise ValueError(f"due date {due.isoformat()} is in the future: the bill is not overdue yet")
    timezone = values.get("timezone") or None
    if timezone:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"time zone {timezone!r} is not an IANA name such as America/Mexico_City") from None
    target = TargetData(
        customer_id=customer_id,
        name=name,
        phone=phone,
        amount_due=amount,
        due_date=due,
        router_user=_clean(values.get("router_user", "")) or None,
        timezone=timezone,
        source=source,
    )
    return target, warning


# ---- routers ---------------------------------------------------------------------------------------------

_ENTRY_FIELDS: Final = (".id", "list", "address", "comment", "disabled", "timeout")


class _Holders:
    """The customers of one router, found by the DNI or the address an address-list entry carries."""

    def __init__(self, customers: Iterable[Customer]) -> None:
        self._by_dni: dict[str, list[Customer]] = {}
        self._by_address: dict[str, Customer] = {}
        for customer in customers:
            if customer.dni:
                self._by_dni.setdefault(customer.dni, []).append(customer)
            if customer.address:
                self._by_address.setdefault(customer.address, customer)

    def of(self, dni: str, address: str) -> Customer | None:
        """The customer with ``dni`` (the service at ``address`` if they have several), else the one at ``address``."""
        same_dni = self._by_dni.get(dni, []) if dni else []
        if same_dni:
            return next((customer for customer in same_dni if customer.address == address), same_dni[0])
        return self._by_address.get(address) if address else None


def from_router(
    client: RouterClient,
    router: str,
    *,
    debtors_list: str,
    exception_list: str = "",
    region: str | None = None,
) -> ImportResult:
    """The customers on ``router``'s debtors address-list whose service is cut (no promise to pay in force).

    ``region`` reads phones written without a country code. Router errors (``RouterError``) propagate: a router
    that cannot be read imports nothing.
    """
    entries = client.print("/ip/firewall/address-list", proplist=list(_ENTRY_FIELDS))
    rows = client.print("/ppp/secret", proplist=list(SECRET_FIELDS))
    with_pppoe = _Holders(Customer.from_secret(row, router, region=region) for row in rows)
    listed = (Customer.from_address_entry(entry, router, region=region) for entry in entries)
    without_pppoe = _Holders(customer for customer in listed if customer is not None)
    result = ImportResult()
    taken = _Targets(result)
    for entry in entries:
        if entry.get("list") != debtors_list or is_disabled(entry):
            continue
        address = router_address(entry.get("address"))
        dni = comment_dni(entry)
        where = f"router {router}, {debtors_list} entry {entry.get('.id', '?')} ({address})"
        customer = with_pppoe.of(dni, address) or without_pppoe.of(dni, address)
        standing = debt_standing(
            entries,
            address=address,
            dni=customer.dni if customer and customer.dni else dni,
            debtors_list=debtors_list,
            exception_list=exception_list,
        )
        if standing.exception is not None:
            result.problems.append(Problem(where, f"also on {exception_list} (a promise to pay in force): not called"))
            continue
        if customer is None:
            result.problems.append(
                Problem(
                    where,
                    f"no PPP secret (nor address-list entry with nombre=) has dni={dni or '?'} in its comment "
                    f"or the address {address}",
                )
            )
            continue
        record = f"PPP secret {customer.service}" if customer.pppoe else f"address-list entry {customer.service}"
        try:
            phone, warning = _number_to_call(customer.phones, customer.phone_problems)
        except ValueError as error:
            result.problems.append(Problem(where, f"{record}: {error}"))
            continue
        if warning:
            result.warnings.append(Problem(where, f"{record}: {warning}"))
        row = TargetData(
            customer_id=customer.customer_id,
            name=_clean(customer.name) or customer.service,
            phone=phone,
            amount_due=None,
            due_date=None,
            router_user=customer.service if customer.pppoe else None,
            timezone=None,
            source=f"router:{router}:{entry.get('.id', '')}",
        )
        taken.add(row, where)
    return result


def merge(results: Iterable[ImportResult]) -> ImportResult:
    """Several routers' results as one: a customer, or a phone, listed by two routers is kept once (the first)."""
    merged = ImportResult()
    taken = _Targets(merged)
    for result in results:
        merged.problems.extend(result.problems)
        merged.warnings.extend(result.warnings)
        for row in result.rows:
            taken.add(row, row.source, again="is listed by another router too:")
    return merged
