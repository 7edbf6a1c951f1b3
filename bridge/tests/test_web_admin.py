"""The console's Costos and Usuarios pages through Flask's test client, CSRF on (``web_support``)."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from web_support import PASSWORD, Console, build_console, csrf_token, log_in

from centralita.doctor.published import PublishError, publish
from centralita.web.store import Role


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    yield from build_console(tmp_path)


# ---- Costos --------------------------------------------------------------------------------------------------


def test_costs_show_each_day_its_cost_and_the_price_tables_date(console: Console) -> None:
    client = console.client()
    assert log_in(client, "vera") == 302  # no personal data: a viewer sees it too
    page = client.get("/costos?desde=2026-12-01&hasta=2026-12-05").get_data(as_text=True)
    assert "Del 2026-12-01 al 2026-12-05" in page
    # The call of the 3rd reached the assistant and cost 0.03125 USD at the prices of 2026-11-15; the refused
    # call of the 4th cost nothing.
    assert "<td>2026-12-03</td><td>1</td><td>1</td><td>0</td><td>1</td>" in page
    assert "<td>0.0312</td>" in page
    assert '<td class="prices">2026-11-15</td>' in page
    assert "<td>2026-12-04</td><td>1</td>" in page
    assert "<td>Total</td><td>2</td>" in page
    assert "Rechazada: 1" in page
    assert "Falló la sesión con OpenAI: 1" in page
    assert "2440" in page  # the tokens: 1200 + 300 + 40 + 900


def test_costs_csv_is_the_reports_csv(console: Console) -> None:
    client = console.client()
    assert log_in(client, "vera") == 302
    response = client.get("/costos.csv?desde=2026-12-01&hasta=2026-12-05")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert 'filename="centralita-costos-2026-12-01-2026-12-05.csv"' in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [row["date"] for row in rows] == ["2026-12-03", "2026-12-04", "total"]
    assert rows[0]["cost_USD"] == "0.031250"
    assert rows[0]["prices_as_of"] == "2026-11-15"
    assert rows[-1]["calls"] == "2"


def test_costs_refuse_a_reversed_or_too_long_period(console: Console) -> None:
    client = console.client()
    assert log_in(client, "vera") == 302
    assert "anterior a «desde»" in client.get("/costos?desde=2026-12-05&hasta=2026-12-01").get_data(as_text=True)
    assert "más de 366 días" in client.get("/costos?desde=2020-01-01&hasta=2026-12-01").get_data(as_text=True)
    assert client.get("/costos.csv?desde=ayer").status_code == 400


def test_costs_need_a_login(console: Console) -> None:
    assert console.client().get("/costos.csv").status_code == 302


# ---- Usuarios ------------------------------------------------------------------------------------------------


def page_token(client, path: str = "/usuarios") -> str:
    return csrf_token(client.get(path).get_data(as_text=True))


def test_only_an_admin_reaches_the_users_page(console: Console) -> None:
    for name in ("vera", "sara"):
        client = console.client()
        assert log_in(client, name) == 302
        assert client.get("/usuarios").status_code == 403
        token = csrf_token(client.get("/historial").get_data(as_text=True))
        response = client.post(
            "/usuarios", data={"nombre": "intruso", "rol": "admin", "contrasena": PASSWORD, "csrf_token": token}
        )
        assert response.status_code == 403
        assert client.post("/usuarios/vera/desactivar", data={"csrf_token": token}).status_code == 403
        assert client.post("/usuarios/vera/rol", data={"rol": "admin", "csrf_token": token}).status_code == 403
    assert console.store.user("intruso") is None
    assert console.store.user("vera").role is Role.VIEWER
    assert "Usuarios" not in _nav(console, "sara")
    assert "Usuarios" in _nav(console, "ada")


def _nav(console: Console, name: str) -> str:
    client = console.client()
    assert log_in(client, name) == 302
    page = client.get("/historial").get_data(as_text=True)
    return page.split("</nav>")[0]


def test_admin_creates_a_user_who_can_log_in_and_it_is_audited(console: Console) -> None:
    admin = console.client()
    assert log_in(admin, "ada") == 302
    fields = {"nombre": "nuevo.operador", "rol": "supervisor", "contrasena": "una frase larga de prueba"}
    response = admin.post("/usuarios", data={**fields, "csrf_token": page_token(admin)}, follow_redirects=True)
    assert "Usuario nuevo.operador creado con el rol supervisor." in response.get_data(as_text=True)
    user = console.store.user("nuevo.operador")
    assert user is not None
    assert user.role is Role.SUPERVISOR
    assert "una frase larga" not in user.password_hash
    assert log_in(console.client(), "nuevo.operador", "una frase larga de prueba") == 302
    entry = next(row for row in console.store.audit_entries() if row["action"] == "user_create")
    assert (entry["user"], entry["target"], entry["detail"]) == ("ada", "nuevo.operador", "role supervisor")
    assert "una frase" not in repr(console.store.audit_entries())
    # The same name again, a short password, a bad name: refused with the reason, audited, nothing replaced.
    for data, reason in (
        ({**fields, "contrasena": "otra frase larga cualquiera"}, "There is already a user"),
        ({**fields, "nombre": "corto", "contrasena": "corta"}, "use at least 12"),
        ({**fields, "nombre": "Con Espacios"}, "is not a user name"),
    ):
        response = admin.post("/usuarios", data={**data, "csrf_token": page_token(admin)}, follow_redirects=True)
        assert reason in response.get_data(as_text=True)
    assert log_in(console.client(), "nuevo.operador", "una frase larga de prueba") == 302
    refused = [row for row in console.store.audit_entries() if row["detail"].startswith("refused")]
    assert len(refused) == 3


def test_admin_changes_a_role_and_disables_a_user_but_not_themselves(console: Console) -> None:
    vera = console.client()
    assert log_in(vera, "vera") == 302
    admin = console.client()
    assert log_in(admin, "ada") == 302
    response = admin.post("/usuarios/vera/rol", data={"rol": "supervisor", "csrf_token": page_token(admin)})
    assert response.status_code == 302
    assert console.store.user("vera").role is Role.SUPERVISOR
    assert vera.get("/campanas").status_code == 200  # her open session has the new role at once
    assert admin.post("/usuarios/vera/desactivar", data={"csrf_token": page_token(admin)}).status_code == 302
    assert console.store.user("vera").disabled
    assert vera.get("/historial").status_code == 302  # her session ended
    # Not themselves.
    response = admin.post("/usuarios/ada/desactivar", data={"csrf_token": page_token(admin)}, follow_redirects=True)
    assert "No puede desactivar su propio usuario." in response.get_data(as_text=True)
    response = admin.post(
        "/usuarios/ada/rol", data={"rol": "viewer", "csrf_token": page_token(admin)}, follow_redirects=True
    )
    assert "No puede cambiar su propio rol" in response.get_data(as_text=True)
    me = console.store.user("ada")
    assert me is not None
    assert me.role is Role.ADMIN
    assert not me.disabled
    actions = [(row["action"], row["target"], row["detail"]) for row in reversed(console.store.audit_entries())]
    assert ("user_role", "vera", "role supervisor") in actions
    assert ("user_disable", "vera", "disabled; sessions ended") in actions
    assert ("user_disable", "ada", "refused: a user cannot disable themselves") in actions
    assert admin.post("/usuarios/nadie/desactivar", data={"csrf_token": page_token(admin)}).status_code == 404


def test_user_changes_need_a_csrf_token(console: Console) -> None:
    admin = console.client()
    assert log_in(admin, "ada") == 302
    assert admin.post("/usuarios/vera/desactivar").status_code == 400
    assert admin.post("/usuarios/vera/rol", data={"rol": "admin", "csrf_token": "forjado"}).status_code == 400
    assert admin.post("/usuarios", data={"nombre": "x1", "rol": "admin", "contrasena": PASSWORD}).status_code == 400
    vera = console.store.user("vera")
    assert vera is not None
    assert vera.role is Role.VIEWER
    assert not vera.disabled
    assert console.store.user("x1") is None


# ---- Salud ---------------------------------------------------------------------------------------------------


def doctor_report(console: Console, when: datetime) -> dict[str, object]:
    """A report as ``centralita doctor --output`` publishes it (written here without the root check)."""
    return {
        "host": "centralita-1",
        "ok": False,
        "summary": {"OK": 1, "WARN": 0, "FAIL": 1},
        "checks": [
            {"name": "asterisk.ari", "status": "OK", "seen": "ARI answers", "fix": "", "fixable": False},
            {
                "name": "bridge.service",
                "status": "FAIL",
                "seen": "openai-inbound-calls is not running",
                "fix": "systemctl start openai-inbound-calls",
                "fixable": True,
            },
        ],
        "fixes": [],
        "generated_at": when.isoformat(timespec="seconds"),
    }


def test_health_shows_the_doctors_checks_with_their_fixes_and_its_age(console: Console) -> None:
    path = console.settings.doctor_report_path
    path.write_text(json.dumps(doctor_report(console, console.clock() - timedelta(minutes=7))))
    client = console.client()
    assert log_in(client, "vera") == 302
    page = client.get("/salud").get_data(as_text=True)
    assert "(hace 7 min)" in page
    assert "1 bien, 0 avisos, 1 fallas" in page
    assert "openai-inbound-calls is not running" in page
    assert "<td>systemctl start openai-inbound-calls</td>" in page
    assert "el temporizador no lo está renovando" not in page
    console.clock.advance(minutes=30)
    assert "el temporizador no lo está renovando" in client.get("/salud").get_data(as_text=True)


def test_health_says_what_to_run_when_the_report_is_missing_damaged_or_a_link(console: Console, tmp_path: Path) -> None:
    client = console.client()
    assert log_in(client, "vera") == 302
    assert "sudo systemctl start centralita-doctor.service" in client.get("/salud").get_data(as_text=True)
    path = console.settings.doctor_report_path
    path.write_text("{no es json")
    assert "está dañado" in client.get("/salud").get_data(as_text=True)
    path.unlink()
    elsewhere = tmp_path / "otro.json"
    elsewhere.write_text(json.dumps(doctor_report(console, console.clock())))
    path.symlink_to(elsewhere)
    page = client.get("/salud").get_data(as_text=True)
    assert "No se puede leer el informe" in page
    assert "asterisk.ari" not in page


def test_doctor_output_publishes_only_into_a_directory_root_alone_writes(tmp_path: Path) -> None:
    directory = tmp_path / "doctor"
    directory.mkdir(mode=0o750)
    report: dict[str, object] = {"checks": [], "summary": {}}
    if os.geteuid() != 0:
        with pytest.raises(PublishError, match="not a directory of root's"):
            publish(report, directory / "doctor.json")
        return
    publish(report, directory / "doctor.json", now=datetime(2026, 12, 5, 12, 0, tzinfo=UTC))
    written = directory / "doctor.json"
    assert json.loads(written.read_text())["generated_at"] == "2026-12-05T12:00:00+00:00"
    assert written.stat().st_mode & 0o777 == 0o640
    assert [path.name for path in directory.iterdir()] == ["doctor.json"]  # no temporary file left
    directory.chmod(0o770)  # group-writable: someone else could put a link where root writes
    with pytest.raises(PublishError, match="chmod go-w"):
        publish(report, directory / "doctor.json")
    directory.chmod(0o750)
    link = tmp_path / "link"
    link.symlink_to(directory)
    with pytest.raises(PublishError, match="not a directory of root's"):
        publish(report, link / "doctor.json")
