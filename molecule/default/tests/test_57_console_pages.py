"""The console's other pages on the box, asked over HTTP from inside it (curl, as test_57_console does): a live call
listed with its worker while it is up and gone once it ends, Salud with the doctor's fresh report, Costos and its
CSV against ``centralita calls report``, Usuarios run by an administrator, and a campaign's CSV import through
the dialer's request spool. Every wait polls its condition with a generous deadline.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
import time
from datetime import datetime

import pytest
from conftest import BOX, BRIDGE_LOG, SIPP_DIR, log_since, log_size, wait_until
from markupsafe import escape
from test_57_console import SUPERVISOR, URL, VIEWER, Browser, csrf_token, dialer_query

testinfra_hosts = [f"podman://{BOX}"]

ADMIN = ("jefa", "frase de prueba jefa")  # the scenario's administrator (bridge_web_users)
CALLER = "5215550004444"  # provider_call_speaking.xml's From
DID = "5215550002222"  # the number it dials (SIPp's -s)
DOCTOR_REPORT = "/var/lib/centralita-doctor/doctor.json"  # bridge_doctor_report_path's default
RUN = int(time.time())  # names of this run's own user and campaign: a rerun on the same box finds none of them


class Console(Browser):
    """The test's curl browser, with the JSON, the query strings and the file uploads these pages need."""

    def get(self, path: str) -> tuple[int, str]:
        url = shlex.quote(f"{URL}{path}")  # a query string's '&' is not for the shell
        out = self.host.run(f"curl -s -m 20 -b {self.jar} -c {self.jar} -w '\\n%{{http_code}}' {url}")
        body, _, code = out.stdout.rpartition("\n")
        return int(code or 0), body

    def json(self, path: str) -> dict:
        code, body = self.get(path)
        assert code == 200, body
        data: dict = json.loads(body)
        return data

    def upload(self, path: str, fields: dict[str, str], file_field: str, file_path: str) -> tuple[int, str]:
        form = " ".join(f"-F {shlex.quote(f'{key}={value}')}" for key, value in fields.items())
        out = self.host.run(
            f"curl -s -m 30 -b {self.jar} -c {self.jar} -w '\\n%{{http_code}}' {form} "
            f"-F {shlex.quote(f'{file_field}=@{file_path};type=text/csv')} {URL}{path}"
        )
        body, _, code = out.stdout.rpartition("\n")
        return int(code or 0), body


def logged_in(host, name: str, user: tuple[str, str]) -> Console:
    console = Console(host, name)
    assert wait_until(lambda: console.get("/entrar")[0] == 200, 30, 0.5)
    assert console.log_in(*user) == 302
    return console


# ---- Llamadas en curso ----------------------------------------------------------------------------------------


def start_call(host, seconds: int) -> None:
    """A provider call that talks to the assistant for ``seconds``, detached; its exit code in /tmp/live-call.rc."""
    host.check_output("rm -f /tmp/live-call.out /tmp/live-call.rc")
    command = (
        f"cd {SIPP_DIR} && sipp -sf provider_call_speaking.xml -s {DID} 127.0.0.1:5060 -i 127.0.0.1 -p 5075 -m 1 "
        f"-timeout {seconds + 60}s -nostdin -d {seconds * 1000} > /tmp/live-call.out 2>&1; echo $? > /tmp/live-call.rc"
    )
    host.check_output(f"setsid -f bash -c '{command}' < /dev/null > /dev/null 2>&1")


def test_a_live_call_is_listed_with_its_worker_while_up_and_gone_once_it_ends(host):
    viewer = logged_in(host, "live-viewer", VIEWER)
    supervisor = logged_in(host, "live-supervisor", SUPERVISOR)
    before = log_size(host, BRIDGE_LOG)
    start_call(host, 20)
    found: dict = {}

    def media_ready() -> re.Match[str] | None:
        # With several workers (bridge_workers) each line names the worker before the call: worker=centralita-2 call=
        return re.search(r"(?:worker=(\S+) )?call=([0-9.]+) media ready", log_since(host, before, BRIDGE_LOG))

    def call_id() -> str:
        match = media_ready()
        return match.group(2) if match else ""

    def listed() -> bool:
        if not call_id():
            return False
        state = viewer.json("/llamadas.json")
        found.update(next((call for call in state["calls"] if call["call_id"] == call_id()), {}))
        return bool(found)

    try:
        assert wait_until(listed, 60, 1), viewer.get("/llamadas.json")
        # The worker that took the call: its name (the app it registered) with several workers, else host/pid.
        ready = media_ready()
        assert ready is not None
        if ready.group(1):
            assert found["worker"] == ready.group(1)
        else:
            pid = host.check_output("systemctl show -p MainPID --value openai-inbound-calls").strip()
            hostname = host.check_output("hostname").strip()
            assert found["worker"] == f"{hostname}/{pid}"
        assert found["direction"] == "entrante"
        assert found["activity"] in {"conectando", "hablando", "escuchando", "terminando"} or found[
            "activity"
        ].startswith("consultando")
        assert isinstance(found["seconds"], int)
        # The viewer gets the caller's number and the DID masked; the supervisor whole.
        assert CALLER not in json.dumps(found)
        assert DID not in json.dumps(found)
        assert found["caller"].endswith("444")
        assert "*" in found["caller"]
        assert found["did"].endswith("222")
        assert wait_until(lambda: f"/historial/{call_id()}" in supervisor.get("/llamadas")[1], 30, 1)
        _, page = supervisor.get("/llamadas")
        assert CALLER in page
        assert DID in page
    finally:
        assert wait_until(lambda: host.run("cat /tmp/live-call.rc").stdout.strip() != "", 120, 1)
    assert host.check_output("cat /tmp/live-call.rc").strip() == "0", host.run("cat /tmp/live-call.out").stdout
    gone = call_id()
    assert wait_until(lambda: all(call["call_id"] != gone for call in viewer.json("/llamadas.json")["calls"]), 60, 1)
    assert viewer.get(f"/historial/{gone}")[0] == 200


# ---- Salud -----------------------------------------------------------------------------------------------------


def test_salud_shows_the_doctors_fresh_report_with_its_checks_and_fixes(host):
    started = datetime.now().astimezone()
    # The timer's own service, as the timer runs it (root, its sandbox): the report is written anew.
    host.check_output("systemctl start centralita-doctor.service")

    def fresh() -> dict | None:
        out = host.run(f"cat {DOCTOR_REPORT}")
        if out.rc != 0:
            return None
        report: dict = json.loads(out.stdout)
        return report if datetime.fromisoformat(report["generated_at"]) >= started.replace(microsecond=0) else None

    assert wait_until(lambda: fresh() is not None, 120, 1)
    report = fresh()
    assert report is not None
    assert len(report["checks"]) > 5
    # The sandbox makes every mount read-only to the doctor (ProtectSystem=strict); the filesystems are not.
    disk = next(check for check in report["checks"] if check["name"] == "system.disk")
    assert disk["status"] == "OK", disk
    viewer = logged_in(host, "health", VIEWER)
    code, page = viewer.get("/salud")
    assert code == 200, page
    summary = report["summary"]
    assert f"{summary.get('OK', 0)} bien, {summary.get('WARN', 0)} avisos, {summary.get('FAIL', 0)} fallas." in page
    age = re.search(r"\(hace (\d+) min\)", page)
    assert age is not None, page
    assert int(age.group(1)) <= 5
    assert "más de 30 minutos" not in page
    rows = re.findall(r'<tr class="check (\w+)">', page)
    assert len(rows) == len(report["checks"])
    for check in report["checks"]:
        assert str(escape(check["name"])) in page
        if check["status"] != "OK" and check.get("fix"):
            assert str(escape(check["fix"])) in page


# ---- Costos ----------------------------------------------------------------------------------------------------


def csv_rows(text: str) -> dict[str, dict[str, str]]:
    return {row["date"]: row for row in csv.DictReader(io.StringIO(text))}


def test_costos_shows_todays_calls_and_its_csv_is_the_reports(host):
    today = host.check_output("date +%F").strip()
    viewer = logged_in(host, "costs", VIEWER)
    period = f"desde={today}&hasta={today}"
    report_command = f"centralita calls report --since {today} --until {today} --csv"
    same: dict[str, str] = {}

    def console_matches_the_report() -> bool:
        code, console = viewer.get(f"/costos.csv?{period}")
        same.update(console=console, cli=host.check_output(report_command))
        return code == 200 and same["console"].strip() == same["cli"].strip()

    # The earlier tests' calls are all finished; a call ending between the two reads is read again.
    assert wait_until(console_matches_the_report, 60, 2), same
    rows = csv_rows(same["console"])
    day = rows[today]
    assert int(day["calls"]) >= 1
    assert int(day["inbound"]) >= 1
    assert int(day["tokens"]) > 0  # the fake Realtime server reports usage, which is priced
    costs = [float(value) for key, value in day.items() if key.startswith("cost_")]
    assert costs
    assert sum(costs) > 0
    assert day["prices_as_of"]
    code, page = viewer.get(f"/costos?{period}")
    assert code == 200, page
    assert re.search(rf"<tr><td>{today}</td><td>{day['calls']}</td><td>{day['inbound']}</td>", page), page
    assert day["prices_as_of"].split()[0] in page  # the price table's date, space-separated in the CSV
    assert f"/costos.csv?{period.replace('&', '&amp;')}" in page


# ---- Usuarios --------------------------------------------------------------------------------------------------


def test_usuarios_an_administrator_creates_re_roles_and_disables_a_user_and_each_is_audited(host):
    supervisor = logged_in(host, "users-supervisor", SUPERVISOR)
    assert supervisor.get("/usuarios")[0] == 403
    admin = logged_in(host, "users-admin", ADMIN)
    code, page = admin.get("/usuarios")
    assert code == 200, page
    for name in (ADMIN[0], SUPERVISOR[0], VIEWER[0]):
        assert f'data-name="{name}"' in page
    name, password = f"turno{RUN}", "frase de prueba del turno"
    assert (
        admin.post(
            "/usuarios", {"nombre": name, "rol": "viewer", "contrasena": password, "csrf_token": csrf_token(page)}
        )
        == 302
    )
    _, page = admin.get("/usuarios")
    row = re.search(rf'<tr class="user" data-name="{name}">.*?</tr>', page, re.DOTALL)
    assert row is not None, page
    assert "activo" in row.group(0)
    newcomer = logged_in(host, "users-newcomer", (name, password))
    assert newcomer.get("/usuarios")[0] == 403
    assert "Importar clientes" not in newcomer.get("/campanas")[1]  # a viewer
    assert admin.post(f"/usuarios/{name}/rol", {"rol": "supervisor", "csrf_token": csrf_token(page)}) == 302
    # The role holds at once, in the session already open.
    assert "Importar clientes" in newcomer.get("/campanas")[1]
    _, page = admin.get("/usuarios")
    assert admin.post(f"/usuarios/{name}/desactivar", {"csrf_token": csrf_token(page)}) == 302
    # Its session ended, and it cannot log in again.
    assert newcomer.get("/historial")[0] == 302
    assert Console(host, "users-again").log_in(name, password) == 401
    users = host.check_output("centralita web users")
    assert re.search(rf"^{name}\s+supervisor\s+.*disabled", users, re.MULTILINE), users
    _, audit = admin.get("/registro")
    for action in ("user_create", "user_role", "user_disable"):
        assert re.search(rf"<td>{ADMIN[0]}</td><td>{action}</td><td>{name}</td>", audit), (action, audit)


# ---- Importar clientes -------------------------------------------------------------------------------------------

CAMPAIGN = f"importada-{RUN}"
SPOOL = "/var/spool/centralita/campaign-requests"


def write_file(host, path: str, text: str) -> None:
    host.check_output(f"printf %s {shlex.quote(text)} > {path}")


@pytest.fixture
def paused_dialer(host):
    """The dialer stopped while the test looks at the spool, started again whatever happens."""
    host.check_output("systemctl stop openai-outbound-calls")
    yield
    host.run("systemctl start openai-outbound-calls")
    assert wait_until(lambda: host.service("openai-outbound-calls").is_running, 30, 0.5)


def test_importar_a_bad_file_sends_nothing_and_a_good_one_reaches_the_dialer(host, paused_dialer):
    supervisor = logged_in(host, "import", SUPERVISOR)
    header = "id_cliente;nombre;telefono;monto;vencimiento\n"
    write_file(
        host, "/tmp/import-bad.csv", header + "IM1;Ana;5550071111;100;2026-01-31\nIM2;Eva;55-12;12x;2026-01-31\n"
    )
    _, page = supervisor.get("/campanas/importar")
    fields = {"campana": CAMPAIGN, "codificacion": "", "csrf_token": csrf_token(page)}
    code, page = supervisor.upload("/campanas/importar", fields, "archivo", "/tmp/import-bad.csv")
    assert code == 400, page
    assert "No se importó nada: 1 fila del archivo tiene errores" in page
    assert "Línea 3: el teléfono &#39;55-12&#39;" in page
    assert host.run(f"ls -A {SPOOL}").stdout.strip() == ""

    write_file(
        host,
        "/tmp/import-good.csv",
        header + "IM1;Ana;5550071111;100;2026-01-31\nIM2;Eva;5550072222;250,50;31/01/2026\n",
    )
    _, page = supervisor.get("/campanas/importar")
    fields["csrf_token"] = csrf_token(page)
    code, page = supervisor.upload("/campanas/importar", fields, "archivo", "/tmp/import-good.csv")
    assert code == 302, page
    [pending] = supervisor.json("/campanas.json")["pending"]
    assert (pending["action"], pending["campaign"], pending["file_name"]) == ("import", CAMPAIGN, "import-good.csv")
    # Waiting in the spool, the dialer's database untouched, until the dialer runs.
    assert dialer_query(host, f"SELECT count(*) FROM campaigns WHERE name = '{CAMPAIGN}'") == [[0]]
    host.check_output("systemctl start openai-outbound-calls")

    def applied() -> dict | None:
        state = supervisor.json("/campanas.json")
        return next((a for a in state["actions"] if a["request_id"] == pending["request_id"]), None)

    assert wait_until(lambda: applied() is not None, 90, 1)
    action = applied()
    assert action is not None
    assert (action["action"], action["user"], action["source"], action["result"]) == (
        "import",
        SUPERVISOR[0],
        "console",
        "applied",
    )
    assert (
        action["summary"]
        == "2 clientes: 2 nuevos, 0 actualizados, 0 sin cambios, 0 pendientes otra vez, 0 en la lista de no llamar"
    )
    targets = dialer_query(
        host,
        "SELECT t.customer_id, t.phone, t.amount_due, t.status, c.state FROM targets t JOIN campaigns c "
        f"ON c.id = t.campaign_id WHERE c.name = '{CAMPAIGN}' ORDER BY t.customer_id",
    )
    assert targets == [
        ["IM1", "+525550071111", "100.00", "pending", "draft"],
        ["IM2", "+525550072222", "250.50", "pending", "draft"],
    ]
    _, audit_page = logged_in(host, "import-audit", ADMIN).get("/registro")
    assert re.search(rf"<td>{SUPERVISOR[0]}</td><td>campaign_import</td><td>{CAMPAIGN}</td>", audit_page)
