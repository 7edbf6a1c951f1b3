"""Imports: malformed CSVs, encodings, duplicates (ids and phones), re-import into the store, and the routers'
debtors list read with the one customer model (several phones, dotted DNIs, customers without PPPoE)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from centralita.dialer.importer import (
    ImportFileError,
    ImportResult,
    from_router,
    merge,
    parse_amount,
    parse_date,
    read_csv,
)
from centralita.dialer.store import CampaignStore
from centralita.isp.customers import Customer
from centralita.isp.routeros.client import RouterClient, RouterUnavailable
from centralita_testing.fake_routeros.server import FakeRouterOS

TODAY = date(2026, 3, 10)
HEADER = "customer_id,name,phone,amount_due,due_date,router_user\n"


def write(tmp_path: Path, text: str, name: str = "clientes.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def read(path: Path, **options: object) -> ImportResult:
    return read_csv(path, region="MX", today=TODAY, **options)  # type: ignore[arg-type]


# ---- values -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1234.50", "1234.50"),
        ("1234,50", "1234.50"),
        ("1.234,50", "1234.50"),
        ("1,234.50", "1234.50"),
        ("1.234.567,8", "1234567.80"),
        ("$ 350", "350.00"),
        ("350 MXN", "350.00"),
        ("COP 45.000,00", "45000.00"),
        ("99", "99.00"),
    ],
)
def test_parse_amount(raw: str, expected: str) -> None:
    assert parse_amount(raw) == Decimal(expected)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("1.500", "ambiguous"),
        ("1,500", "ambiguous"),
        ("0", "not above zero"),
        ("-5", "not a number"),
        ("doscientos", "not a number"),
        ("12.345,678", "more than two decimals"),
        ("1,23,4.00", "mixes separators"),
        ("", "empty"),
    ],
)
def test_parse_amount_errors(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_amount(raw)


def test_parse_date() -> None:
    assert parse_date("2026-02-28") == date(2026, 2, 28)
    assert parse_date("28/02/2026") == date(2026, 2, 28)
    assert parse_date("5-3-2026") == date(2026, 3, 5)
    assert parse_date("2026-02-28 00:00:00") == date(2026, 2, 28)
    with pytest.raises(ValueError, match="does not exist"):
        parse_date("31/02/2026")
    with pytest.raises(ValueError, match="not YYYY-MM-DD"):
        parse_date("02/28/26")


# ---- CSV files --------------------------------------------------------------------------------------


def test_a_good_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + "C001,María Peña,55 5000 1111,350.00,2026-02-28,maria.pena\n"
        + "C002,José Muñoz,+52 1 555 000 2222,1200,28/02/2026,\n",
    )
    result = read(path)
    assert result.problems == []
    first, second = result.rows
    assert (first.customer_id, first.name, first.phone) == ("C001", "María Peña", "+525550001111")
    assert (first.amount_due, first.due_date, first.router_user) == (Decimal("350.00"), date(2026, 2, 28), "maria.pena")
    assert first.source == "csv:clientes.csv:2"
    assert (second.phone, second.amount_due, second.router_user) == ("+525550002222", Decimal("1200.00"), None)


def test_spanish_headers_semicolons_decimal_commas_and_a_bom(tmp_path: Path) -> None:
    text = (
        "Número Cliente;Nombre;Teléfono;Monto adeudado;Fecha de vencimiento;Usuario PPPoE;Zona horaria;Notas\n"
        '7;"Peña, María";5550001111;1.350,50;01/03/2026;maria.pena;America/Tijuana;llamar tarde\n'
    )
    path = write(tmp_path, "\ufeff" + text)
    result = read(path)
    assert result.problems == []
    [row] = result.rows
    assert (row.customer_id, row.name, row.amount_due, row.timezone) == (
        "7",
        "Peña, María",
        Decimal("1350.50"),
        "America/Tijuana",
    )


def test_missing_columns_refuse_the_whole_file(tmp_path: Path) -> None:
    path = write(tmp_path, "id,nombre,celular\nC1,Ana,5550001111\n")
    with pytest.raises(ImportFileError) as caught:
        read(path)
    message = str(caught.value)
    assert "lacks the columns amount_due, due_date" in message
    assert "monto" in message
    assert "vencimiento" in message
    assert "'id', 'nombre', 'celular'" in message


def test_two_columns_for_one_field(tmp_path: Path) -> None:
    path = write(tmp_path, "id,nombre,tel,telefono,monto,vencimiento\n")
    with pytest.raises(ImportFileError, match="'tel' and 'telefono' both mean phone"):
        read(path)


def test_bad_rows_are_reported_by_line_and_good_rows_kept(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + "C001,Ana García,5550003333,350,2026-02-28,\n"  # line 2: good
        + "C002,Luis,55-12,350,2026-02-28,\n"  # 3: short phone
        + "C003,Pedro,5550006666,1.500,2026-02-28,\n"  # 4: ambiguous amount
        + "C004,Carmen,5550005555,200,2026-02-30,\n"  # 5: no such date
        + ",Sin Id,5550007777,200,2026-02-01,\n"  # 6: no id
        + "C005,Juana,5550008888,200,2026-04-01,\n"  # 7: not overdue
        + "C006,Rosa,5550009999,200\n"  # 8: too few fields
        + "\n"  # 9: blank, ignored
        + 'C007,"Nombre en\ndos líneas",5550001212,80,2026-01-31,\n'  # 10-11: good, a quoted newline
        + "C001,Ana otra vez,5550003333,350,2026-02-28,\n"  # 12: duplicate id
        + "C008,Eva,5550001313,75.5,2026-02-27,eva\n",  # 13: good
    )
    result = read(path)
    assert [row.customer_id for row in result.rows] == ["C001", "C007", "C008"]
    problems = {problem.where: problem.reason for problem in result.problems}
    assert list(problems) == ["line 3", "line 4", "line 5", "line 6", "line 7", "line 8", "line 12"]
    assert "phone '55-12' has too few digits" in problems["line 3"]
    assert "ambiguous" in problems["line 4"]
    assert "does not exist" in problems["line 5"]
    assert "customer id is empty" in problems["line 6"]
    assert "not overdue" in problems["line 7"]
    assert "4 fields where the header has 6" in problems["line 8"]
    assert "already appears on line 2" in problems["line 12"]
    assert result.rows[1].name == "Nombre en dos líneas"


def test_latin1_is_refused_with_the_place_and_the_fix(tmp_path: Path) -> None:
    path = write(
        tmp_path, HEADER + "C001,Ana,5550001111,1,2026-01-01,\nC002,Peña,5550002222,1,2026-01-01,\n", encoding="latin-1"
    )
    with pytest.raises(ImportFileError) as caught:
        read(path)
    message = str(caught.value)
    assert "is not UTF-8: line 3, byte 8 of the line (0xF1)" in message
    assert "CSV UTF-8" in message
    assert "--encoding latin-1" in message
    result = read(path, encoding="latin-1")
    assert [row.name for row in result.rows] == ["Ana", "Peña"]


def test_utf16_from_excel_and_unknown_encodings(tmp_path: Path) -> None:
    path = write(tmp_path, "\ufeff" + HEADER + "C001,Núñez,5550001111,1,2026-01-01,\n", encoding="utf-16-le")
    [row] = read(path).rows
    assert row.name == "Núñez"
    with pytest.raises(ImportFileError, match="not an encoding Python knows"):
        read(path, encoding="klingon")


def test_empty_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match="is empty"):
        read(write(tmp_path, "  \n"))
    with pytest.raises(ImportFileError, match="Cannot read"):
        read(tmp_path / "nope.csv")


def test_importing_twice_adds_nobody_twice(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "C001,Ana,5550001111,350,2026-02-28,\nC002,Luis,5550002222,100,2026-02-28,\n")
    with CampaignStore(tmp_path / "dialer.db") as store:
        store.ensure_campaign("marzo")
        first = store.upsert_targets("marzo", read(path).rows)
        second = store.upsert_targets("marzo", read(path).rows)
        assert (first.added, first.unchanged) == (2, 0)
        assert (second.added, second.updated, second.unchanged) == (0, 0, 2)
        path.write_text(HEADER + "C001,Ana,5550001111,400,2026-02-28,\nC003,Eva,5550003333,9,2026-02-01,\n")
        third = store.upsert_targets("marzo", read(path).rows, remove_missing=True)
        assert (third.added, third.updated, third.removed) == (1, 1, 1)
        assert store.status("marzo").targets == {"pending": 2, "removed": 1}
    connection = sqlite3.connect(tmp_path / "dialer.db")
    rows = connection.execute("SELECT customer_id, amount_due, status FROM targets ORDER BY customer_id").fetchall()
    connection.close()
    assert rows == [("C001", "400.00", "pending"), ("C002", "100.00", "removed"), ("C003", "9.00", "pending")]


def test_phones_in_any_format_are_one_e164_number(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + "C001,Ana,525550001111,1,2026-01-01,\n"  # national with the country code: not +5252...
        + "C002,Luis,+52 1 55 5000 2222,1,2026-01-01,\n"  # Mexico's retired mobile 1
        + "C003,Eva,045 55 5000 3333,1,2026-01-01,\n"
        + "C004,Rosa,n/a | 55 5000 4444,1,2026-01-01,\n"  # two numbers, the first not one
        + "C005,Juan,+57 300 111 2233,1,2026-01-01,\n",
    )
    result = read(path)
    assert result.problems == []
    assert [row.phone for row in result.rows] == [
        "+525550001111",
        "+525550002222",
        "+525550003333",
        "+525550004444",
        "+573001112233",
    ]
    [warning] = result.warnings
    assert warning.where == "line 5"
    assert "phone 'n' has characters other than digits" in warning.reason
    assert "calling +525550004444" in warning.reason


def test_a_phone_that_is_not_a_valid_number_is_a_line_numbered_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + "C001,Ana,5550001111,1,2026-01-01,\n"
        + "C002,Luis,416 555 0123,1,2026-01-01,\n"  # a Canadian number read as Mexican: no such range
        + "C003,Eva,+999 555 0001,1,2026-01-01,\n"
        + "C004,Rosa,,1,2026-01-01,\n",
    )
    result = read(path)
    assert [row.customer_id for row in result.rows] == ["C001"]
    problems = {problem.where: problem.reason for problem in result.problems}
    assert "not in a range of numbers in use in MX (+52)" in problems["line 3"]
    assert "does not start with a country calling code" in problems["line 4"]
    assert problems["line 5"] == "no phone number is given"
    national = read_csv(path, region=None, today=TODAY)  # no DIALER_COUNTRY_CODE
    assert "set DIALER_COUNTRY_CODE" in {p.where: p.reason for p in national.problems}["line 2"]


def test_the_same_phone_under_two_customer_ids_is_one_target(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + "C001,Ana García,55 5000 1111,350,2026-02-28,\n"
        + "C002,Luis Pérez,55 5000 2222,100,2026-02-28,\n"
        + "C003,Eva García,+52 1 55 5000 1111,90,2026-02-28,\n",  # Ana's number, written another way
    )
    result = read(path)
    assert [(row.customer_id, row.phone) for row in result.rows] == [
        ("C001", "+525550001111"),
        ("C002", "+525550002222"),
    ]
    assert result.problems == []
    [warning] = result.warnings
    assert warning.where == "line 4"
    assert "phone +525550001111 of customer 'C003' already belongs to customer 'C001' (line 2)" in warning.reason
    assert "not imported" in warning.reason


# ---- the routers ------------------------------------------------------------------------------------


@pytest.fixture
def router() -> Iterator[FakeRouterOS]:
    with FakeRouterOS(None, "api-dialer", "s3creto") as fake:
        yield fake


@pytest.fixture
def client(router: FakeRouterOS) -> Iterator[RouterClient]:
    with RouterClient(router.host, "api-dialer", "s3creto", port=router.port, timeout=2) as connected:
        yield connected


def test_debtors_from_the_address_list_joined_with_ppp_secrets(client: RouterClient) -> None:
    result = from_router(client, "nucleo", debtors_list="morosos", exception_list="promesa-pago", region="MX")
    assert result.problems == []
    assert [(row.customer_id, row.name, row.phone, row.router_user) for row in result.rows] == [
        ("45678901", "Luis Hernández", "+525550004444", "luis.hernandez"),
        ("56789012", "Carmen Núñez Ortiz", "+525550005555", "carmen.nunez"),  # cut off, still a debtor
    ]
    assert all(row.amount_due is None and row.due_date is None for row in result.rows)
    assert result.rows[0].source == "router:nucleo:*2"


def test_exceptions_unmatched_entries_and_matching_by_address(client: RouterClient, router: FakeRouterOS) -> None:
    client.add("/ip/firewall/address-list", list="promesa-pago", address="10.20.0.14", comment="dni=45678901")
    client.add("/ip/firewall/address-list", list="morosos", address="10.20.0.99", comment="dni=99999999")
    client.add("/ip/firewall/address-list", list="morosos", address="10.20.0.16", comment="sin dni")
    client.add("/ip/firewall/address-list", list="morosos", address="10.20.0.11", comment="dni=1", disabled=True)
    result = from_router(client, "nucleo", debtors_list="morosos", exception_list="promesa-pago", region="MX")
    assert [row.customer_id for row in result.rows] == ["56789012", "67890123"]  # Pedro matched by address
    reasons = [problem.reason for problem in result.problems]
    assert any("also on promesa-pago" in reason for reason in reasons)
    assert any("has dni=99999999 in its comment or the address 10.20.0.99" in reason for reason in reasons)
    assert len(result.problems) == 2  # the disabled entry is not a debtor at all


def test_a_secret_with_a_bad_phone_is_reported(client: RouterClient) -> None:
    [secret] = client.print("/ppp/secret", where={"name": "carmen.nunez"})
    client.set("/ppp/secret", str(secret[".id"]), comment="tel=n/a;dni=56789012;nombre=Carmen")
    result = from_router(client, "nucleo", debtors_list="morosos", region="MX")
    assert [row.customer_id for row in result.rows] == ["45678901"]
    [problem] = result.problems
    assert "carmen.nunez" in problem.reason
    assert "characters other than digits" in problem.reason


def test_a_router_that_fails_mid_read_imports_nothing(client: RouterClient, router: FakeRouterOS) -> None:
    router.faults.fatal_next("simulated failure")
    with pytest.raises(RouterUnavailable):
        from_router(client, "nucleo", debtors_list="morosos")


def test_merge_keeps_a_customer_once(client: RouterClient) -> None:
    one = from_router(client, "nucleo", debtors_list="morosos", region="MX")
    two = from_router(client, "norte", debtors_list="morosos", region="MX")
    merged = merge([one, two])
    assert len(merged.rows) == 2
    assert len(merged.problems) == 2
    assert "listed by another router" in merged.problems[0].reason


def secret_id(client: RouterClient, name: str) -> str:
    [secret] = client.print("/ppp/secret", where={"name": name})
    return str(secret[".id"])


def test_two_phones_and_a_dotted_dni_are_one_customer(client: RouterClient) -> None:
    """The format docs/MIKROTIK_INTEGRATION.md documents: the tools read it, and so does the dialer."""
    comment = "tel=+52 1 555 000 4444 / 55 4000 4444;dni=45.678.901;nombre=Luis Hernández;plan=10M"
    client.set("/ppp/secret", secret_id(client, "luis.hernandez"), comment=comment)
    [carmen_entry] = client.print("/ip/firewall/address-list", where={"address": "10.20.0.15"})
    client.set("/ip/firewall/address-list", str(carmen_entry[".id"]), comment="dni=56.789.012")
    # Luis again, by his DNI written without dots, from another address: still one customer.
    client.add("/ip/firewall/address-list", list="morosos", address="10.20.0.44", comment="dni=45678901")
    result = from_router(client, "nucleo", debtors_list="morosos", exception_list="promesa-pago", region="MX")
    assert [(row.customer_id, row.phone, row.router_user) for row in result.rows] == [
        ("45678901", "+525550004444", "luis.hernandez"),  # the first number is the one called
        ("56789012", "+525550005555", "carmen.nunez"),
    ]
    [again] = result.problems
    assert "customer '45678901' already appears on router nucleo, morosos entry *2" in again.reason
    # The assistant's tools see the same customer.
    [row] = client.print("/ppp/secret", where={"name": "luis.hernandez"})
    customer = Customer.from_secret(row, "nucleo", region="MX")
    assert (customer.customer_id, customer.phones) == ("45678901", ("+525550004444", "+525540004444"))


def test_a_promise_to_pay_matched_by_a_dotted_dni_leaves_the_customer_out(client: RouterClient) -> None:
    client.add(
        "/ip/firewall/address-list", list="promesa-pago", address="10.99.9.9", comment="dni=45.678.901;centralita=x"
    )
    result = from_router(client, "nucleo", debtors_list="morosos", exception_list="promesa-pago", region="MX")
    assert [row.customer_id for row in result.rows] == ["56789012"]
    [problem] = result.problems
    assert "also on promesa-pago (a promise to pay in force)" in problem.reason


def test_a_debtor_without_pppoe_is_found_as_the_tools_find_them(client: RouterClient) -> None:
    client.add(
        "/ip/firewall/address-list",
        list="morosos",
        address="10.30.0.7",
        comment="tel=55 5000 7777;dni=77.001.122;nombre=Ramón Íñiguez",
    )
    result = from_router(client, "nucleo", debtors_list="morosos", region="MX")
    assert result.problems == []
    ramon = result.rows[-1]
    assert (ramon.customer_id, ramon.name, ramon.phone, ramon.router_user) == (
        "77001122",
        "Ramón Íñiguez",
        "+525550007777",
        None,
    )


def test_a_phone_shared_by_two_debtors_is_called_once(client: RouterClient) -> None:
    comment = "tel=55 5000 4444;dni=56789012;nombre=Carmen Núñez Ortiz"  # Luis's number
    client.set("/ppp/secret", secret_id(client, "carmen.nunez"), comment=comment)
    result = from_router(client, "nucleo", debtors_list="morosos", region="MX")
    assert [(row.customer_id, row.phone) for row in result.rows] == [("45678901", "+525550004444")]
    assert result.problems == []
    [warning] = result.warnings
    assert warning.where == "router nucleo, morosos entry *3 (10.20.0.15)"
    assert "already belongs to customer '45678901' (router nucleo, morosos entry *2 (10.20.0.14))" in warning.reason


def test_a_bad_first_phone_is_a_warning_when_another_is_good(client: RouterClient) -> None:
    comment = "tel=5550 | +52 55 5000 5555;dni=56789012;nombre=Carmen Núñez Ortiz"
    client.set("/ppp/secret", secret_id(client, "carmen.nunez"), comment=comment)
    result = from_router(client, "nucleo", debtors_list="morosos", region="MX")
    assert [row.phone for row in result.rows] == ["+525550004444", "+525550005555"]
    [warning] = result.warnings
    assert "PPP secret carmen.nunez: phone '5550' has too few digits" in warning.reason
    assert warning.reason.endswith("calling +525550005555")


def test_merge_keeps_a_phone_once_across_routers(client: RouterClient) -> None:
    one = from_router(client, "nucleo", debtors_list="morosos", region="MX")
    comment = "tel=+5215550004444;dni=99.888.777;nombre=Otra Persona"
    client.set("/ppp/secret", secret_id(client, "luis.hernandez"), comment=comment)
    [entry] = client.print("/ip/firewall/address-list", where={"address": "10.20.0.14"})
    client.set("/ip/firewall/address-list", str(entry[".id"]), comment="dni=99888777")
    two = from_router(client, "norte", debtors_list="morosos", region="MX")
    merged = merge([one, two])
    assert [(row.customer_id, row.source) for row in merged.rows] == [
        ("45678901", "router:nucleo:*2"),
        ("56789012", "router:nucleo:*3"),
    ]
    assert len(merged.problems) == 1  # Carmen again: the same customer
    [warning] = merged.warnings
    assert "customer '99888777' already belongs to customer '45678901' (router:nucleo:*2)" in warning.reason
