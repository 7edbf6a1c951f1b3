"""Customer matching (phones, IDs, names), router comments and the CSV directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from centralita.isp.customers import (
    Customer,
    CustomerDirectory,
    DirectoryError,
    Lookup,
    names_match,
    normalize_dni,
    parse_comment,
    phones_match,
)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("+5215550001111", "5550001111"),
        ("+52 1 555 000 1111", "555-000-1111"),
        ("(555) 000-1111", "+52 1 555 000 1111"),
        ("044 555 000 1111", "5215550001111"),
        ("50001111", "+5215550001111"),  # 8 digits: the least that counts
    ],
)
def test_the_same_line_in_any_format(first: str, second: str) -> None:
    assert phones_match(first, second)
    assert phones_match(second, first)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("+5215550001111", "+5215550002222"),
        ("0001111", "+5215550001111"),  # 7 digits say nothing
        ("", "+5215550001111"),
        ("anonymous", "anonymous"),
        ("+5215550001111", "+5215560001111"),  # a different area code within the last 10 digits
    ],
)
def test_different_or_too_short_numbers_never_match(first: str, second: str) -> None:
    assert not phones_match(first, second)


def test_ids_lose_separators_and_case() -> None:
    assert normalize_dni("12.345.678-z") == "12345678Z"
    assert normalize_dni(" 56789012 ") == "56789012"


@pytest.mark.parametrize(
    ("said", "held", "expected"),
    [
        ("María Peña", "María Peña", True),
        ("maria pena", "María Peña", True),
        ("MARÍA PEÑA", "María Peña", True),
        ("Carmen Núñez", "Carmen Núñez Ortiz", True),
        ("Carmen Nunez Ortiz", "Carmen Núñez Ortiz", True),
        ("Carmen", "Carmen Núñez Ortiz", False),  # one word is not enough
        ("Carmen López", "Carmen Núñez Ortiz", False),
        ("", "Carmen Núñez Ortiz", False),
        ("María Peña", "", False),
    ],
)
def test_names(said: str, held: str, expected: bool) -> None:
    assert names_match(said, held) is expected


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
        "comment": "tel=+5215550001111;dni=12345678;nombre=María Peña",
    }
    customer = Customer.from_secret(row, "nucleo")
    assert customer.plan == "plan-20M"  # no plan= in the comment: the PPP profile
    assert customer.address == "10.20.0.11"
    assert "Mp-7731" not in repr(customer)
    assert customer.public() == {
        "nombre": "María Peña",
        "plan": "plan-20M",
        "servicio": "maria.pena",
        "router": "nucleo",
    }


@pytest.mark.parametrize(
    ("kind", "raw", "problem"),
    [
        ("telefono", "12", "al menos 8 dígitos"),
        ("telefono", "555 000 1111 ext", "solo puede tener dígitos"),
        ("dni", "1-2", "entre 4 y 20"),
        ("usuario", "maria pena", "espacios"),
        ("usuario", "  ", "espacios"),
    ],
)
def test_bad_lookups_say_what_is_wrong(kind: str, raw: str, problem: str) -> None:
    built = Lookup.build(kind, raw)  # type: ignore[arg-type]
    assert isinstance(built, str)
    assert problem in built


def test_lookups_log_no_id() -> None:
    lookup = Lookup.build("dni", "12.345.678")
    assert lookup == Lookup("dni", "12345678")
    assert isinstance(lookup, Lookup)
    assert "12345678" not in lookup.describe()


def _write(path: Path, text: str, *, bom: bool = False) -> None:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))


def test_directory_semicolons_bom_and_several_phones(tmp_path: Path) -> None:
    path = tmp_path / "clientes.csv"
    _write(
        path,
        "Usuario;Nombre;DNI;Telefono;Plan;Router;IP\n"
        "maria.pena;María Peña;12.345.678;+52 1 555 000 1111 | 55 4000 9999;20M;nucleo;\n"
        ";Sin Usuario;1111;5550009999;;;\n"
        "carmen.nunez;Carmen Núñez Ortiz;56789012;5550005555;20M;;10.20.0.15\n",
        bom=True,
    )
    directory = CustomerDirectory(path)
    [maria] = directory.find(Lookup("telefono", "5540009999"))
    assert (maria.service, maria.name, maria.dni, maria.router) == ("maria.pena", "María Peña", "12345678", "nucleo")
    [carmen] = directory.find(Lookup("dni", "56789012"))
    assert (carmen.router, carmen.address, carmen.name) == (None, "10.20.0.15", "Carmen Núñez Ortiz")
    assert len(directory.customers()) == 2  # the row without usuario is skipped


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
