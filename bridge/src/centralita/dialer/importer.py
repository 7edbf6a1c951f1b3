"""Customers to call: read from a CSV file, or from the routers' debtors address-list.

**CSV** (docs/DIALER.md has the full description). A header row names the columns, in any order; names are
case- and accent-insensitive and may be English or Spanish:

    customer_id   id_cliente, numero_cliente, dni, id        required  unique per campaign
    name          nombre                                     required
    phone         telefono, tel, celular                     required  national (needs DIALER_COUNTRY_CODE) or +E.164
    amount_due    monto, adeudo, saldo, importe, deuda       required  1234.50, 1234,50, 1.234,50 or 1,234.50
    due_date      vencimiento, fecha_vencimiento             required  YYYY-MM-DD or DD/MM/YYYY; not in the future
    router_user   usuario, usuario_pppoe, pppoe              optional  the PPPoE user on the router
    timezone      zona_horaria                               optional  the customer's IANA time zone

The delimiter is ``,`` or ``;`` (whichever the header uses; Spanish spreadsheets export ``;``). The file must
be UTF-8 (a BOM is fine; UTF-16 with a BOM too); another encoding is refused with the line and byte of the first
character that is not UTF-8, unless it is named explicitly (``encoding="latin-1"``). A missing required column
refuses the whole file. A bad row is reported with its line number and skipped; every good row is imported.

**Routers.** Entries of the debtors address-list (``ROUTEROS_DEBTORS_LIST``, comment ``dni=<id>``) are joined
with the PPP secrets (comment ``tel=...;dni=...;nombre=...;plan=...``) by ``dni``, or else by the entry's
address and the secret's ``remote-address``. Customers also on the exception list (``ROUTEROS_EXCEPTION_LIST``,
a promise to pay in force) are left out. The routers know no amount or due date: those stay empty.
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
from centralita.isp.routeros.client import RouterClient

__all__ = [
    "COLUMNS",
    "REQUIRED_COLUMNS",
    "ImportFileError",
    "ImportResult",
    "Problem",
    "from_router",
    "merge",
    "normalize_phone",
    "parse_amount",
    "parse_comment",
    "parse_date",
    "read_csv",
]

MIN_E164_DIGITS: Final = 8
MAX_E164_DIGITS: Final = 15
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
    """A row that was skipped: where (``line 7``, ``router nucleo, address-list *3``) and why."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass(slots=True)
class ImportResult:
    rows: list[TargetData] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


# ---- values ----------------------------------------------------------------------------------------------


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.strip().lower())
    plain = "".join(character for character in decomposed if not unicodedata.combining(character))
    return re.sub(r"[^a-z0-9]+", "_", plain).strip("_")


def _clean(text: str) -> str:
    """Collapse whitespace and drop control characters (the name goes to the assistant as data)."""
    printable = "".join(character if character.isprintable() else " " for character in text)
    return " ".join(printable.split())


def normalize_phone(raw: str, country_code: str = "") -> str:
    """``raw`` as E.164 (``+5215550001111``); ValueError with the reason when it cannot be one.

    ``+`` or ``00`` starts an international number; anything else is national and gets ``+<country_code>``.
    Spaces, dashes, dots and parentheses are ignored.
    """
    text = raw.strip()
    if not text:
        raise ValueError("the phone number is empty")
    compact = re.sub(r"[\s\-.()/]", "", text)
    if compact.startswith("+"):
        digits = compact[1:]
    elif compact.startswith("00"):
        digits = compact[2:]
    else:
        digits = ""
    if not re.fullmatch(r"\+?[0-9]+", compact):
        raise ValueError(f"phone {raw!r} has characters other than digits, spaces, dashes and a leading +")
    if not digits:
        if not country_code:
            raise ValueError(
                f"phone {raw!r} has no country code: write it as +<country><number> or set DIALER_COUNTRY_CODE "
                "(e.g. 52) so national numbers can be completed"
            )
        digits = country_code + compact
    if digits.startswith("0"):
        raise ValueError(f"phone {raw!r}: a country code cannot start with 0")
    if not MIN_E164_DIGITS <= len(digits) <= MAX_E164_DIGITS:
        raise ValueError(
            f"phone {raw!r} has {len(digits)} digits with the country code: a phone number has "
            f"{MIN_E164_DIGITS} to {MAX_E164_DIGITS}"
        )
    return "+" + digits


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


def parse_comment(comment: object) -> dict[str, str]:
    """``tel=...;dni=...;nombre=...`` as a dict (keys lower case; split on ';', then on the first '=')."""
    pairs: dict[str, str] = {}
    for part in str(comment or "").split(";"):
        key, equals, value = part.partition("=")
        if equals and key.strip():
            pairs[key.strip().lower()] = value.strip()
    return pairs


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
    country_code: str = "",
    today: date | None = None,
    encoding: str | None = None,
) -> ImportResult:
    """Read a customers CSV. File-level problems raise ``ImportFileError``; bad rows go to ``problems``.

    ``today`` (the campaign's local date) refuses due dates after it: those bills are not overdue.
    A customer id that appears again is reported and the later row skipped.
    """
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as error:
        raise ImportFileError(f"Cannot read {file}: {error.strerror}.") from None
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
    first_seen: dict[str, int] = {}
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
            row = _row(values, country_code, today, f"csv:{file.name}:{line}")
        except ValueError as error:
            result.problems.append(Problem(f"line {line}", str(error)))
            continue
        if row.customer_id in first_seen:
            result.problems.append(
                Problem(
                    f"line {line}",
                    f"customer {row.customer_id!r} already appears on line {first_seen[row.customer_id]}",
                )
            )
            continue
        first_seen[row.customer_id] = line
        result.rows.append(row)
    return result


def _row(values: Mapping[str, str], country_code: str, today: date | None, source: str) -> TargetData:
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
    phone = normalize_phone(values["phone"], country_code)
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
    return TargetData(
        customer_id=customer_id,
        name=name,
        phone=phone,
        amount_due=amount,
        due_date=due,
        router_user=_clean(values.get("router_user", "")) or None,
        timezone=timezone,
        source=source,
    )


# ---- routers ---------------------------------------------------------------------------------------------


def _entry_dni(comment: object) -> str:
    value = parse_comment(comment).get("dni", "")
    return value.split()[0] if value.split() else ""


def _address(value: object) -> str:
    return str(value or "").split("/")[0].strip()


def from_router(
    client: RouterClient,
    router: str,
    *,
    debtors_list: str,
    exception_list: str = "",
    country_code: str = "",
) -> ImportResult:
    """The customers on ``router``'s debtors address-list, joined with its PPP secrets.

    Router errors (``RouterError``) propagate: a router that cannot be read imports nothing.
    """
    listed_debtors = client.print("/ip/firewall/address-list", where={"list": debtors_list})
    entries = [entry for entry in listed_debtors if not _off(entry)]
    excepted: set[str] = set()
    if exception_list:
        for listed in client.print("/ip/firewall/address-list", where={"list": exception_list}):
            if not _off(listed):
                excepted.update(filter(None, (_address(listed.get("address")), _entry_dni(listed.get("comment")))))
    ppp_secrets = client.print("/ppp/secret", proplist=[".id", "name", "comment", "remote-address", "disabled"])
    by_dni: dict[str, Mapping[str, object]] = {}
    by_address: dict[str, Mapping[str, object]] = {}
    for item in ppp_secrets:
        dni = parse_comment(item.get("comment")).get("dni", "")
        if dni:
            by_dni.setdefault(dni, item)
        address = _address(item.get("remote-address"))
        if address:
            by_address.setdefault(address, item)
    result = ImportResult()
    seen: set[str] = set()
    for entry in entries:
        where = f"router {router}, {debtors_list} entry {entry.get('.id', '?')} ({_address(entry.get('address'))})"
        dni = _entry_dni(entry.get("comment"))
        address = _address(entry.get("address"))
        if (dni and dni in excepted) or address in excepted:
            result.problems.append(Problem(where, f"also on {exception_list} (a promise to pay in force): not called"))
            continue
        secret = by_dni.get(dni) if dni else None
        secret = secret or by_address.get(address)
        if secret is None:
            result.problems.append(
                Problem(where, f"no PPP secret has dni={dni or '?'} in its comment or remote-address {address}")
            )
            continue
        fields = parse_comment(secret.get("comment"))
        customer_id = fields.get("dni") or dni or str(secret.get("name", ""))
        try:
            row = TargetData(
                customer_id=customer_id,
                name=_clean(fields.get("nombre", "")) or str(secret.get("name", "")),
                phone=normalize_phone(fields.get("tel", ""), country_code),
                amount_due=None,
                due_date=None,
                router_user=str(secret.get("name", "")) or None,
                timezone=None,
                source=f"router:{router}:{entry.get('.id', '')}",
            )
        except ValueError as error:
            result.problems.append(Problem(where, f"PPP secret {secret.get('name', '?')}: {error}"))
            continue
        if row.customer_id in seen:
            result.problems.append(Problem(where, f"customer {row.customer_id!r} is already listed"))
            continue
        seen.add(row.customer_id)
        result.rows.append(row)
    return result


def _off(row: Mapping[str, object]) -> bool:
    return row.get("disabled") in (True, "true", "yes")


def merge(results: Iterable[ImportResult]) -> ImportResult:
    """Several routers' results as one; a customer listed by two routers is kept once."""
    merged = ImportResult()
    seen: set[str] = set()
    for result in results:
        merged.problems.extend(result.problems)
        for row in result.rows:
            if row.customer_id in seen:
                merged.problems.append(Problem(row.source, f"customer {row.customer_id!r} is listed by another router"))
                continue
            seen.add(row.customer_id)
            merged.rows.append(row)
    return merged
