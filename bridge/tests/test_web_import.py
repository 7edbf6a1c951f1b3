"""Importing a campaign's customers from a CSV in the console: checked with the importer, sent whole to the dialer
through the request spool, refused whole (in Spanish, with line numbers) when any row is bad; over the size
limit, without a CSRF token or by a viewer, nothing is sent. The dialer's side is ``test_dialer_requests.py``."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from web_support import Console, build_console, csrf_token, log_in

from centralita.dialer.importer import ImportFileError, read_csv_data
from centralita.dialer.requests import MAX_IMPORT_BYTES, RequestSpool, pending_requests
from centralita.dialer.store import CampaignStore
from centralita.web.import_text import action_summary, spanish_file_error, spanish_located

GOOD_CSV = (
    "id_cliente;nombre;telefono;monto;vencimiento\n"
    "C100;Ana Quispe;5550001111;350,50;2026-11-30\n"
    "C101;Luis Peña;+52 55 4000 9999;1200;01/11/2026\n"
).encode()


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    yield from build_console(tmp_path, country_code="52", dialer_zone=UTC)


def upload(
    client: FlaskClient, data: bytes, *, campaign: str = "morosos-enero", encoding: str = "", token: bool = True
) -> tuple[int, str]:
    form: dict[str, object] = {
        "campana": campaign,
        "codificacion": encoding,
        "archivo": (io.BytesIO(data), "clientes.csv"),
    }
    if token:
        form["csrf_token"] = csrf_token(client.get("/campanas/importar").get_data(as_text=True))
    response = client.post("/campanas/importar", data=form, content_type="multipart/form-data")
    return response.status_code, response.get_data(as_text=True)


def supervisor(console: Console) -> FlaskClient:
    client = console.client()
    assert log_in(client, "sara") == 302
    return client


def import_audit(console: Console) -> list[tuple[str, str, str]]:
    return [
        (row["user"], row["target"], row["detail"])
        for row in reversed(console.store.audit_entries())
        if row["action"] == "campaign_import"
    ]


def campaign_names(console: Console) -> list[str]:
    with CampaignStore(console.settings.dialer_db_path) as store:
        return [campaign.name for campaign in store.campaigns()]


def test_a_good_file_goes_to_the_dialer_which_imports_it_and_the_page_says_so(console: Console) -> None:
    client = supervisor(console)
    page = client.get("/campanas").get_data(as_text=True)
    assert "Importar clientes desde un CSV" in page
    status, _ = upload(client, GOOD_CSV)
    assert status == 302
    # The console only asked: the file waits in the spool, the dialer's database is untouched.
    [request] = pending_requests(console.settings.requests_dir)
    assert (request.action, request.campaign, request.user, request.file_name, request.data) == (
        "import",
        "morosos-enero",
        "sara",
        "clientes.csv",
        GOOD_CSV,
    )
    assert "morosos-enero" not in campaign_names(console)
    page = client.get("/campanas").get_data(as_text=True)
    assert "enviado al marcador: 2 clientes para la campaña morosos-enero" in page
    assert "importar (clientes.csv)" in page
    [(user, target, detail)] = import_audit(console)
    assert (user, target) == ("sara", "morosos-enero")
    assert detail.startswith(f"requested {request.request_id}: clientes.csv, 2 row(s)")
    with CampaignStore(console.settings.dialer_db_path) as store:
        [outcome] = RequestSpool(console.settings.requests_dir, store, lambda _name: True, region="MX").process()
        assert outcome.result == "applied"
        assert store.status("morosos-enero").targets == {"pending": 2}
    page = client.get("/campanas").get_data(as_text=True)
    assert "aplicada: 2 clientes: 2 nuevos, 0 actualizados, 0 sin cambios" in page
    assert 'id="no-pending"' in page


def test_one_bad_row_sends_nothing_and_every_problem_is_listed_in_spanish_with_its_line(console: Console) -> None:
    client = supervisor(console)
    bad = (
        GOOD_CSV
        + b"C102;Eva;55-12;100;2026-11-30\n"  # line 4
        + b"C103;Rosa;5550003333;12x;2026-11-30\n"  # line 5
        + b"C104;Juana;5550004444;100;2027-01-31\n"  # line 6
        + b"C100;Ana otra vez;5550005555;100;2026-11-30\n"  # line 7
    )
    status, page = upload(client, bad)
    assert status == 400
    assert "No se importó nada: 4 filas del archivo tienen errores" in page
    problems = re.findall(r'<li class="problem">(.*?)</li>', page)
    assert problems == [
        "Línea 4: el teléfono &#39;55-12&#39; tiene pocos dígitos (4 después de +52) para un número de MX (+52): "
        "revise el número y su código de país",
        "Línea 5: el monto &#39;12x&#39; no es un número (escríbalo como 1234.50)",
        "Línea 6: el vencimiento 2027-01-31 es una fecha futura: la factura todavía no está vencida",
        "Línea 7: el cliente &#39;C100&#39; ya aparece en la línea 2",
    ]
    assert pending_requests(console.settings.requests_dir) == []
    assert list(console.settings.requests_dir.iterdir()) == []
    [(_, target, detail)] = import_audit(console)
    assert target == "morosos-enero"
    assert detail.startswith("refused: clientes.csv: 4 row(s) with problems, the first: line 4: phone '55-12'")


def test_a_file_in_another_encoding_is_refused_with_the_fix_and_accepted_when_named(console: Console) -> None:
    client = supervisor(console)
    latin = GOOD_CSV.decode().encode("latin-1")
    status, page = upload(client, latin)
    assert status == 400
    assert "No se importó nada: el archivo no está en UTF-8: la línea 3, byte 13 (0xF1) no se puede leer" in page
    assert "elija esa codificación al importarlo" in page
    assert list(console.settings.requests_dir.iterdir()) == []
    status, _ = upload(client, latin, encoding="latin-1")
    assert status == 302
    [request] = pending_requests(console.settings.requests_dir)
    assert (request.encoding, request.data) == ("latin-1", latin)


def test_a_file_over_the_limit_is_refused_in_spanish_and_nothing_is_sent(console: Console) -> None:
    client = supervisor(console)
    # Over the file's limit but within the request's: the view reads it and refuses it.
    status, page = upload(client, GOOD_CSV + b"#" * MAX_IMPORT_BYTES)
    assert status == 413
    assert f"El archivo pasa del máximo de {MAX_IMPORT_BYTES // 1024} KiB" in page
    # Far over: refused before any view runs, with the same message.
    status, page = upload(client, b"x" * (MAX_IMPORT_BYTES * 2))
    assert status == 413
    assert f"El archivo pasa del máximo de {MAX_IMPORT_BYTES // 1024} KiB" in page
    assert list(console.settings.requests_dir.iterdir()) == []
    details = [detail for _, _, detail in import_audit(console)]
    assert len(details) == 2
    assert details[0] == f"refused: clientes.csv is larger than {MAX_IMPORT_BYTES} bytes"
    assert details[1].startswith("refused: an upload of ")
    # The rest of the console keeps its own, smaller limit.
    response = client.post("/campanas/morosos-2026-12/pausar", data={"x": "y" * 100_000})
    assert response.status_code == 413
    assert "El archivo pasa" not in response.get_data(as_text=True)


def test_an_upload_without_a_csrf_token_is_refused_and_sends_nothing(console: Console) -> None:
    client = supervisor(console)
    status, page = upload(client, GOOD_CSV, token=False)
    assert status == 400
    assert "nada se ha cambiado" in page
    assert list(console.settings.requests_dir.iterdir()) == []
    assert import_audit(console) == []


def test_a_viewer_cannot_import(console: Console) -> None:
    client = console.client()
    assert log_in(client, "vera") == 302
    assert client.get("/campanas/importar").status_code == 403
    assert "Importar clientes" not in client.get("/campanas").get_data(as_text=True)
    response = client.post(
        "/campanas/importar",
        data={"campana": "x", "archivo": (io.BytesIO(GOOD_CSV), "c.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code in (400, 403)
    assert list(console.settings.requests_dir.iterdir()) == []


def test_a_bad_name_another_boxs_campaign_or_a_finished_one_is_refused(tmp_path: Path) -> None:
    for console in build_console(tmp_path, country_code="52", campaigns=("norte-", "morosos-2026-12")):
        client = supervisor(console)
        status, page = upload(client, GOOD_CSV, campaign="sur/enero")
        assert (status, "no sirve como nombre de campaña" in page) == (400, True)
        status, page = upload(client, GOOD_CSV, campaign="sur-enero")
        assert status == 400
        assert "La campaña sur-enero no es de este servidor" in page
        assert "norte-, morosos-2026-12 (bridge_dialer_campaigns)" in page
        import sqlite3

        with sqlite3.connect(console.settings.dialer_db_path) as db:
            db.execute("UPDATE campaigns SET state = 'finished' WHERE name = 'morosos-2026-12'")
        status, page = upload(client, GOOD_CSV, campaign="morosos-2026-12")
        assert (status, "ya terminó" in page) == (400, True)
        assert list(console.settings.requests_dir.iterdir()) == []
        assert len(import_audit(console)) == 3
        status, _ = upload(client, GOOD_CSV, campaign="norte-enero")
        assert status == 302


def test_a_spool_the_console_cannot_write_gives_a_message_and_an_audit_line(console: Console) -> None:
    client = supervisor(console)
    console.settings.requests_dir.rmdir()
    status, page = upload(client, GOOD_CSV)
    assert status == 503
    assert "No se pudo enviar el archivo al marcador" in page
    [(_, _, detail)] = import_audit(console)
    assert detail.startswith("failed: clientes.csv:")


# ---- every problem of the importer, in Spanish -------------------------------------------------------------------

HEADER = "customer_id,name,phone,amount_due,due_date,router_user,timezone\n"
EVERY_ROW_PROBLEM = (
    HEADER
    + ",Sin Id,5550001111,1,2026-01-01,,\n"
    + f"{'X' * 65},Largo,5550001111,1,2026-01-01,,\n"
    + "C1,,5550001111,1,2026-01-01,,\n"
    + f"C2,{'N' * 121},5550001111,1,2026-01-01,,\n"
    + "C3,Ana,,1,2026-01-01,,\n"
    + "C4,Ana,55 50#01,1,2026-01-01,,\n"
    + "C5,Ana,+999 5550001111,1,2026-01-01,,\n"
    + "C6,Ana,+52 1234567890123456789,1,2026-01-01,,\n"
    + "C7,Ana,+52 1,1,2026-01-01,,\n"
    + "C8,Ana,+52 55 5000 1111 ext. 12,1,2026-01-01,,\n"
    + "C9,Ana,+52 55 5000 11111,1,2026-01-01,,\n"
    + "C10,Ana,+1 212 555 0100,1,2026-01-01,,\n"
    + "C11,Ana,5550001111,,2026-01-01,,\n"
    + "C12,Ana,5550001111,1x,2026-01-01,,\n"
    + "C13,Ana,5550001111,1.500,2026-01-01,,\n"
    + "C14,Ana,5550001111,1.5.00,2026-01-01,,\n"
    + "C15,Ana,5550001111,0,2026-01-01,,\n"
    + "C16,Ana,5550001111,9999999999,2026-01-01,,\n"
    + "C17,Ana,5550001111,1.505,2026-01-01,,\n"
    + "C18,Ana,5550001111,1,2026-02-30,,\n"
    + "C19,Ana,5550001111,1,mañana,,\n"
    + "C20,Ana,5550001111,1,2027-01-01,,\n"
    + "C21,Ana,5550001111,1,2026-01-01,,Marte/Olympus\n"
    + "C22,Ana,5550001111,1\n"
    + "C23,Ana,5550002222,1,2026-01-01,,\n"
    + "C23,Ana,5550003333,1,2026-01-01,,\n"
    + "C24,Eva,5550002222,1,2026-01-01,,\n"
    + "C25,Eva,5550004444 | 12,1,2026-01-01,,\n"
)


def test_every_row_problem_and_warning_of_the_importer_is_said_in_spanish() -> None:
    from datetime import date

    result = read_csv_data(EVERY_ROW_PROBLEM.encode(), Path("c.csv"), region="MX", today=date(2026, 12, 5))
    reasons = [problem.reason for problem in result.problems]
    assert len(reasons) >= 23, reasons  # every bad line above but C10 (maybe valid) and the good ones
    texts = [spanish_located(str(item)) for item in (*result.problems, *result.warnings)]
    assert len(result.warnings) == 2
    untranslated = [text for text in texts if "(en inglés)" in text]
    assert untranslated == []
    assert all(text.startswith("Línea ") for text in texts), texts
    assert spanish_located("line 2: something new") == "Línea 2: (en inglés) something new"


@pytest.mark.parametrize(
    ("data", "encoding", "spanish"),
    [
        (b"  \n", None, "el archivo está vacío"),
        (b"id,nombre,celular\nC1,Ana,5550001111\n", None, "al archivo le falta la columna amount_due, due_date"),
        (b"id,nombre,tel,telefono,monto,vencimiento\n", None, "las columnas 'tel' y 'telefono' significan lo mismo"),
        ("id,nombre\nPeña,x\n".encode("latin-1"), None, "el archivo no está en UTF-8: la línea 2"),
        (b"\xff\xfeA\x00\x00\xd8", None, "el archivo empieza como UTF-16 pero no lo es"),
        (b",\n , \n", None, "el archivo no tiene fila de encabezado"),
    ],
)
def test_every_file_problem_of_the_importer_is_said_in_spanish(data: bytes, encoding: str | None, spanish: str) -> None:
    with pytest.raises(ImportFileError) as caught:
        read_csv_data(data, Path("c.csv"), region="MX", encoding=encoding)
    text = spanish_file_error(str(caught.value))
    assert text.startswith(spanish), (str(caught.value), text)


def test_a_form_without_a_campaign_or_a_file_is_refused_with_what_is_missing(console: Console) -> None:
    client = supervisor(console)
    status, page = upload(client, GOOD_CSV, campaign="")
    assert status == 400
    assert "Escriba el nombre de la campaña." in page
    token = csrf_token(client.get("/campanas/importar").get_data(as_text=True))
    response = client.post(
        "/campanas/importar",
        data={"campana": "morosos-enero", "codificacion": "", "csrf_token": token},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert "Elija el archivo CSV que quiere importar." in response.get_data(as_text=True)
    assert [detail for _, _, detail in import_audit(console)] == [
        "refused: the form: Escriba el nombre de la campaña.",
        "refused: no file chosen",
    ]
    assert list(console.settings.requests_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("detail", "spanish"),
    [
        ('{"error": "the campaign is not one of this box\'s (DIALER_CAMPAIGNS)"}', "la campaña no es de este servidor"),
        ('{"error": "Campaign \'sur\' is finished: import into a new campaign"}', "la campaña 'sur' ya terminó"),
        ('{"error": "c.csv is empty: it needs a header row and one row per customer."}', "el archivo está vacío"),
        (
            '{"rows": 1, "problem_count": 1, "problems": ["line 3: the name is empty"], "warnings": []}',
            "no se importó nada: 1 fila con errores (Línea 3: el nombre está vacío)",
        ),
        (
            '{"rows": 3, "added": 2, "updated": 1, "unchanged": 0, "reopened": 0, "opted_out": 0, "warning_count": 1}',
            "3 clientes: 2 nuevos, 1 actualizados, 0 sin cambios, 0 pendientes otra vez, 0 en la lista de no llamar; "
            "1 aviso",
        ),
    ],
)
def test_what_the_dialer_recorded_of_an_import_is_said_in_spanish(detail: str, spanish: str) -> None:
    assert action_summary({"detail": detail}).startswith(spanish)


def test_a_file_with_many_bad_rows_lists_the_first_ones_and_counts_the_rest(console: Console) -> None:
    client = supervisor(console)
    bad = GOOD_CSV + b"".join(f"X{n};Eva;5550002222;12x;2026-11-30\n".encode() for n in range(250))
    status, page = upload(client, bad)
    assert status == 400
    assert "No se importó nada: 250 filas del archivo tienen errores" in page
    problems = re.findall(r'<li class="problem">(.*?)</li>', page)
    assert len(problems) == 201
    assert problems[0].startswith("Línea 4: el monto")
    assert problems[-1] == "Y 50 filas más con errores."
