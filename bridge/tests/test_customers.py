"""Customer matching (phones, IDs, customer numbers), router comments and the CSV directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from centralita.isp.customers import (
    Customer,
    CustomerDirectory,
    DirectoryError,
    Lookup,
    comment_dni,
    debt_standing,
    is_disabled,
    normalize_account,
    normalize_dni,
    parse_comment,
    phones_match,
    read_phones,
    refers_to,
)

MX = "MX"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("+5215550001111", "5550001111"),
        ("+52 1 555 000 1111", "555-000-1111"),
        ("(555) 000-1111", "+52 1 555 000 1111"),
        ("044 555 000 1111", "5215550001111"),
        ("525550001111", "+52 55 5000 1111"),
    ],
)
def test_the_same_line_in_any_format(first: str, second: str) -> None:
    assert phones_match(first, second, region=MX)
    assert phones_match(second, first, region=MX)


@pytest.mark.parametrize(
    ("first", "second", "region"),
    [
        ("+5215550001111", "+5215550002222", MX),
        ("50001111", "+5215550001111", MX),  # the last 8 digits once matched: a stranger's number could too
        ("0001111", "+5215550001111", MX),
        ("", "+5215550001111", MX),
        ("anonymous", "anonymous", MX),
        ("+5215550001111", "+5215560001111", MX),  # a different area code within the last 10 digits
        ("5550001111", "+525550001111", None),  # national, and no DIALER_COUNTRY_CODE to read it with
    ],
)
def test_different_unreadable_or_partial_numbers_never_match(first: str, second: str, region: str | None) -> None:
    assert not phones_match(first, second, region=region)


def test_ids_lose_separators_and_case() -> None:
    assert normalize_dni("12.345.678-z") == "12345678Z"
    assert normalize_dni(" 56789012 ") == "56789012"
    assert normalize_account("c-10 004") == "C10004"


def test_comments_parse_leniently() -> None:
    assert parse_comment("tel=+5215550001111;dni=12345678;nombre=María Peña;plan=20M") == {
        "tel": "+5215550001111",
        "dni": "12345678",
        "nombre": "María Peña",
        "plan": "20M",
    }
    assert parse_comment("red de administración") == {}
    assert parse_comment(" DNI = 1 ; nota=a=b ;;") == {"dni": "1", "nota": "a=b"}


def test_a_customer_from_a_secret_row_never_keeps_the_password() -> None:
    row = {
        "name": "maria.pena",
        "password": "Mp-7731",
        "profile": "plan-20M",
        "remote-address": "10.20.0.11",
        "disabled": "false",
        "comment": "tel=+5215550001111;dni=12.345.678;cliente=C-10001;nombre=María Peña",
    }
    customer = Customer.from_secret(row, "nucleo", region=MX)
    assert customer.plan == "plan-20M"  # no plan= in the comment: the PPP profile
    assert customer.address == "10.20.0.11"
    assert customer.phones == ("+525550001111",)  # E.164 as libphonenumber writes it: no mobile 1 after +52
    assert (customer.dni, customer.customer_id, customer.disabled) == ("12345678", "12345678", False)
    assert customer.account == "C10001"  # the customer number on the bill, compared letters and digits only
    assert "Mp-7731" not in repr(customer)
    assert Customer.from_secret({"name": "x", "comment": "dni=1234"}, "nucleo", region=MX).account == ""


def test_several_phones_and_the_ones_that_are_not_numbers() -> None:
    row = {"name": "ana", "disabled": True, "comment": "TEL=55 5000 3333 / n.a. | +52 1 55 4000 9999 | 5550003333"}
    customer = Customer.from_secret(row, "nucleo", region=MX)
    assert customer.phones == ("+525550003333", "+525540009999")  # in order, each once
    [problem] = customer.phone_problems
    assert "'n.a.'" in problem
    assert customer.disabled
    assert customer.customer_id == "ana"  # no DNI: the service id
    numbers, problems = read_phones("5550003333", None)  # national, and no region to read it in
    assert numbers == ()
    assert "set DIALER_COUNTRY_CODE" in problems[0]


def test_address_list_entries_hold_customers_without_pppoe() -> None:
    entry = {"address": "10.30.0.7/32", "disabled": "yes", "comment": "tel=5550007777;dni=77001122;nombre=Ramón"}
    customer = Customer.from_address_entry(entry, "norte", region=MX)
    assert customer is not None
    assert (customer.service, customer.address, customer.pppoe, customer.disabled) == (
        "10.30.0.7",
        "10.30.0.7",
        False,
        True,
    )
    assert customer.phones == ("+525550007777",)
    assert Customer.from_address_entry({"address": "10.20.0.14", "comment": "dni=45678901"}, "n", region=MX) is None


@pytest.mark.parametrize(
    ("value", "disabled"),
    [(True, True), ("true", True), ("yes", True), (" Yes ", True), (False, False), ("false", False), (None, False)],
)
def test_one_rule_for_disabled(value: object, disabled: bool) -> None:
    assert is_disabled({"disabled": value}) is disabled


def test_which_router_rows_are_the_customers() -> None:
    assert comment_dni({"comment": "dni=12.345.678-z;centralita=1"}) == "12345678Z"
    entry = {"list": "morosos", "address": "10.20.0.14/32", "comment": "dni=45.678.901"}
    assert refers_to(entry, address="10.20.0.14", dni="")
    assert refers_to(entry, address="10.99.0.1", dni="45678901")  # the address changed: the DNI says it
    assert not refers_to(entry, address="10.20.0.15", dni="99999999")
    assert not refers_to({**entry, "disabled": "true"}, address="10.20.0.14", dni="45678901")
    assert not refers_to(entry, address="", dni="")
    queue = {"target": "10.20.0.13/32,10.20.0.14/32", "comment": ""}
    assert refers_to(queue, address="10.20.0.14", dni="", field="target")
    # An entry naming the account it was granted to is that account's only, whatever address it holds.
    granted = {"list": "promesa-pago", "address": "10.20.0.14", "comment": "usuario=luis.hernandez;dni=45678901"}
    assert refers_to(granted, address="10.20.0.14", dni="", service="luis.hernandez")
    assert not refers_to(granted, address="10.20.0.14", dni="12345678", service="maria.pena")
    assert refers_to(granted, address="10.20.0.14", dni="")  # without an account to compare, as before


def test_debt_standing() -> None:
    entries: list[dict[str, object]] = [
        {"list": "morosos", "address": "10.20.0.14", "comment": "dni=45678901"},
        {"list": "morosos", "address": "10.20.0.15", "comment": "dni=56789012"},
        {"list": "promesa-pago", "address": "10.20.0.99", "comment": "dni=45.678.901;centralita=x", "timeout": "2d"},
        {"list": "promesa-pago", "address": "10.20.0.15", "comment": "", "disabled": True},
    ]

    def standing(address: str, dni: str) -> tuple[bool, bool, bool]:
        found = debt_standing(entries, address=address, dni=dni, debtors_list="morosos", exception_list="promesa-pago")
        return found.debtor, found.exception is not None, found.suspended

    assert standing("10.20.0.14", "45678901") == (True, True, False)  # a promise to pay in force, by DNI
    assert standing("10.20.0.15", "56789012") == (True, False, True)  # the exception is disabled: cut
    assert standing("10.20.0.16", "67890123") == (False, False, False)


def test_an_exception_helps_the_address_it_is_on_and_only_its_account() -> None:
    entries: list[dict[str, object]] = [
        {"list": "morosos", "address": "10.20.0.14", "comment": "dni=45678901"},
        {"list": "promesa-pago", "address": "10.20.0.99", "comment": "usuario=luis.hernandez;dni=45678901"},
    ]

    def standing(address: str, service: str, dni: str) -> tuple[bool, bool, bool]:
        found = debt_standing(
            entries, address=address, dni=dni, debtors_list="morosos", exception_list="promesa-pago", service=service
        )
        return found.debtor, found.exception is not None, found.elsewhere is not None

    # Luis's exception was granted on .99, but his session now has .14: it lets .99 through, not him.
    assert standing("10.20.0.14", "luis.hernandez", "45678901") == (True, False, True)
    assert standing("10.20.0.99", "luis.hernandez", "45678901") == (True, True, False)
    # Whoever holds .99 now is not given Luis's promise to pay.
    assert standing("10.20.0.99", "jose.munoz", "23456789") == (False, False, False)


@pytest.mark.parametrize(
    ("kind", "raw", "region", "problem"),
    [
        ("telefono", "12", MX, "no es válido"),
        ("telefono", "555 000 1111 ext", MX, "solo puede tener dígitos"),
        ("telefono", "5550001111", None, "código de país"),
        ("telefono", "  ", MX, "Falta el número"),
        ("dni", "1-2", MX, "entre 4 y 20"),
        ("usuario", "maria pena", MX, "espacios"),
        ("usuario", "  ", MX, "espacios"),
    ],
)
def test_bad_lookups_say_what_is_wrong(kind: str, raw: str, region: str | None, problem: str) -> None:
    built = Lookup.build(kind, raw, region=region)  # type: ignore[arg-type]
    assert isinstance(built, str)
    assert problem in built


def test_lookups_are_normalised_and_log_no_id() -> None:
    lookup = Lookup.build("dni", "12.345.678", region=MX)
    assert lookup == Lookup("dni", "12345678")
    assert isinstance(lookup, Lookup)
    assert "12345678" not in lookup.describe()
    assert Lookup.build("telefono", "+52 1 55 5000 1111", region=MX) == Lookup("telefono", "+525550001111")
    assert Lookup.build("telefono", "+52 55 5000 1111", region=None) == Lookup("telefono", "+525550001111")


def _write(path: Path, text: str, *, bom: bool = False) -> None:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))


def test_directory_semicolons_bom_and_several_phones(tmp_path: Path) -> None:
    path = tmp_path / "clientes.csv"
    _write(
        path,
        "Usuario;Nombre;DNI;Telefono;Plan;Router;IP;Cliente\n"
        "maria.pena;María Peña;12.345.678;+52 1 555 000 1111 | 55 4000 9999;20M;nucleo;;C-10001\n"
        ";Sin Usuario;1111;5550009999;;;;\n"
        "carmen.nunez;Carmen Núñez Ortiz;56789012;5550005555;20M;;10.20.0.15;\n",
        bom=True,
    )
    directory = CustomerDirectory(path, MX)
    [maria] = directory.find(Lookup("telefono", "+525540009999"))
    assert (maria.service, maria.name, maria.dni, maria.router) == ("maria.pena", "María Peña", "12345678", "nucleo")
    [carmen] = directory.find(Lookup("dni", "56789012"))
    assert (carmen.router, carmen.address, carmen.name) == (None, "10.20.0.15", "Carmen Núñez Ortiz")
    assert maria.phones == ("+525550001111", "+525540009999")
    assert (maria.account, carmen.account) == ("C10001", "")
    assert len(directory.customers()) == 2  # the row without usuario is skipped
    assert directory.find(Lookup("telefono", "+525550009999")) == []  # that number was on the skipped row


def test_directory_is_reread_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "clientes.csv"
    _write(path, "usuario,nombre,dni,telefono\nana.garcia,Ana García,34567890,5550003333\n")
    directory = CustomerDirectory(path)
    assert [c.service for c in directory.customers()] == ["ana.garcia"]
    _write(
        path, "usuario,nombre,dni,telefono\nana.garcia,Ana García,34567890,5550003333\nx.y,X Y,99999999,5559999999\n"
    )
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert [c.service for c in directory.customers()] == ["ana.garcia", "x.y"]


def test_directory_problems_name_the_file(tmp_path: Path) -> None:
    missing = CustomerDirectory(tmp_path / "nada.csv")
    with pytest.raises(DirectoryError, match=r"nada\.csv"):
        missing.customers()
    bad = tmp_path / "malo.csv"
    _write(bad, "usuario,nombre\nx,y\n")
    with pytest.raises(DirectoryError, match="lacks the column"):
        CustomerDirectory(bad).customers()
    latin = tmp_path / "latin1.csv"
    latin.write_bytes("usuario,nombre,dni,telefono\nx,Peña,1234,55500011111\n".encode("latin-1"))
    with pytest.raises(DirectoryError, match="not UTF-8"):
        CustomerDirectory(latin).customers()
