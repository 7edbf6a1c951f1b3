"""centralita-web as deployed: its own user and sandbox, loopback only, and a finished call seen through it.

Everything is asked over HTTP from inside the box (curl with a cookie jar), as a browser on the box would: the
login form's CSRF token, the login, the call's page with both sides of its transcript, a viewer's page without
the caller's number, and a POST without a token refused. The users are the scenario's bridge_web_users.
"""

from __future__ import annotations

import json
import re
import shlex

import pytest
from conftest import BOX, call_record, place_speaking_call, wait_until

testinfra_hosts = [f"podman://{BOX}"]

URL = "http://127.0.0.1:8090"  # bridge_web_listen and bridge_web_port's defaults
SUPERVISOR = ("supervisora", "frase de prueba supervisora")
VIEWER = ("lectora", "frase de prueba lectora")
CALLER = "5215550002222"  # place_speaking_call's caller id
CALLER_FIRST_LINE = "Hola, buenas tardes. No tengo internet desde ayer."  # the fake Realtime server's script


class Browser:
    """curl with its own cookie jar in the box."""

    def __init__(self, host, name: str) -> None:
        self.host = host
        self.jar = f"/tmp/console-test-{name}.cookies"
        host.run(f"rm -f {self.jar}")

    def get(self, path: str) -> tuple[int, str]:
        out = self.host.run(f"curl -s -m 20 -b {self.jar} -c {self.jar} -w '\\n%{{http_code}}' {URL}{path}")
        body, _, code = out.stdout.rpartition("\n")
        return int(code or 0), body

    def post(self, path: str, fields: dict[str, str]) -> int:
        data = " ".join(f"--data-urlencode {shlex.quote(f'{key}={value}')}" for key, value in fields.items())
        out = self.host.run(
            f"curl -s -m 20 -o /dev/null -b {self.jar} -c {self.jar} -w '%{{http_code}}' {data} {URL}{path}"
        )
        return int(out.stdout or 0)

    def log_in(self, name: str, password: str) -> int:
        _, page = self.get("/entrar")
        return self.post("/entrar", {"name": name, "password": password, "csrf_token": csrf_token(page)})


def csrf_token(page: str) -> str:
    match = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', page)
    assert match is not None, page
    return match.group(1)


@pytest.fixture(scope="module")
def finished_call(host) -> str:
    call_id, _log = place_speaking_call(host)
    assert wait_until(lambda: call_record(host, call_id).get("ended_at") is not None, 30, 0.5)
    return call_id


def test_console_runs_as_its_own_user_on_loopback_only(host):
    service = host.service("centralita-web")
    assert service.is_enabled
    assert service.is_running
    assert host.check_output("systemctl show -p User --value centralita-web") == "centralita-web"
    listening = host.check_output("ss -Hltn 'sport = :8090'")
    addresses = {line.split()[3] for line in listening.splitlines()}
    assert addresses == {"127.0.0.1:8090"}, listening


def test_console_cannot_read_the_env_file(host):
    assert host.run("runuser -u centralita-web -- true").rc == 0
    out = host.run("runuser -u centralita-web -- cat /usr/local/asterisk/.env")
    assert out.rc != 0
    assert "Permission denied" in out.stderr


def test_supervisor_logs_in_and_sees_the_finished_call_with_both_sides(host, finished_call):
    browser = Browser(host, "supervisor")
    assert wait_until(lambda: browser.get("/entrar")[0] == 200, 30, 0.5)
    assert browser.log_in(*SUPERVISOR) == 302
    code, page = browser.get(f"/historial/{finished_call}")
    assert code == 200, page
    assert CALLER_FIRST_LINE in page
    assert 'class="assistant"' in page
    assert 'class="caller"' in page
    assert CALLER in page
    code, history = browser.get(f"/historial?numero={CALLER}")
    assert f"/historial/{finished_call}" in history


def test_viewer_does_not_see_the_callers_number(host, finished_call):
    browser = Browser(host, "viewer")
    assert browser.log_in(*VIEWER) == 302
    code, page = browser.get(f"/historial/{finished_call}")
    assert code == 200, page
    assert CALLER not in page
    assert "**********222" in page


def test_wrong_password_is_refused_and_a_post_without_csrf_token_changes_nothing(host):
    browser = Browser(host, "intruder")
    assert browser.log_in(SUPERVISOR[0], "no es la contraseña de prueba") == 401
    assert browser.get("/historial")[0] == 302
    supervisor = Browser(host, "csrf")
    assert supervisor.log_in(*SUPERVISOR) == 302
    assert supervisor.post("/campanas/cualquiera/pausar", {"x": "1"}) == 400


# ---- pause and resume through the dialer's request spool ------------------------------------------------------

CAMPAIGN = "consola-prueba"
SPOOL = "/var/spool/centralita/campaign-requests"  # bridge_campaign_requests_dir's default
DIALER_LOG = "/var/log/asterisk/outbound_openai.log"


def dialer_query(host, sql: str) -> list[list]:
    script = (
        "import json,sqlite3,sys; "
        "print(json.dumps(sqlite3.connect('file:'+sys.argv[1]+'?mode=ro', uri=True).execute(sys.argv[2]).fetchall()))"
    )
    return json.loads(
        host.check_output(f'/usr/local/asterisk/venv/bin/python -c "{script}" /var/lib/centralita/dialer.db "{sql}"')
    )


def campaign_in_console(browser: Browser) -> dict:
    code, body = browser.get("/campanas.json")
    assert code == 200, body
    return json.loads(body)


def state_of(console: dict) -> str | None:
    return next((c["state"] for c in console["campaigns"] if c["name"] == CAMPAIGN), None)


def applied(console: dict, request_ids: list[str]) -> list[tuple[str, str, str]]:
    """(action, user, result) of the dialer's actions for ``request_ids``, in the order asked."""
    by_id = {action["request_id"]: action for action in console["actions"]}
    return [(by_id[rid]["action"], by_id[rid]["user"], by_id[rid]["result"]) for rid in request_ids if rid in by_id]


def ask(browser: Browser, action: str) -> str:
    """POST the campaign button ``action`` (pausar, reanudar) with the page's token; the request id it sent."""
    _, page = browser.get("/campanas")
    before = {p["request_id"] for p in campaign_in_console(browser)["pending"]}
    assert browser.post(f"/campanas/{CAMPAIGN}/{action}", {"csrf_token": csrf_token(page)}) == 302
    new = [p["request_id"] for p in campaign_in_console(browser)["pending"] if p["request_id"] not in before]
    assert len(new) == 1, new
    return new[0]


@pytest.fixture
def stopped_dialer(host):
    """The dialer stopped for the test (so the requests wait in the spool), started again whatever happens."""
    assert host.service("openai-outbound-calls").is_running
    host.check_output("systemctl stop openai-outbound-calls")
    yield
    host.run("systemctl start openai-outbound-calls")
    assert wait_until(lambda: host.service("openai-outbound-calls").is_running, 30, 0.5)


def test_spool_is_the_consoles_and_the_service_groups_only(host):
    spool = host.file(SPOOL)
    assert spool.is_directory
    assert (spool.user, spool.group, spool.mode) == ("centralita-web", "centralita", 0o2770)
    # The console cannot write the campaign store itself.
    out = host.run(
        "runuser -u centralita-web -- /usr/local/asterisk/venv/bin/python -c "
        "\"import sqlite3; sqlite3.connect('/var/lib/centralita/dialer.db').execute('CREATE TABLE x (y)')\""
    )
    assert out.rc != 0
    assert "readonly" in out.stderr or "unable to open" in out.stderr, out.stderr


def test_supervisor_pauses_and_resumes_a_real_campaign_through_the_dialer(host, stopped_dialer):
    # The dialer is stopped while the campaign runs, and applies the console's requests before its first
    # scheduling pass: the test's customer is never called (the phones of test_70 are not up yet).
    log_start = int(host.check_output(f"stat -c %s {DIALER_LOG}"))
    host.check_output(
        "printf 'id_cliente,nombre,telefono,monto,vencimiento\\nCP1,Cliente Consola,+525550076003,99.00,2026-10-31\\n'"
        " > /tmp/consola.csv"
    )
    imported = host.run(f"centralita campaign import /tmp/consola.csv --campaign {CAMPAIGN}")
    assert imported.rc == 0, imported.stderr
    assert host.run(f"centralita campaign start {CAMPAIGN}").rc == 0

    browser = Browser(host, "campaigns")
    assert browser.log_in(*SUPERVISOR) == 302
    assert state_of(campaign_in_console(browser)) == "running"
    pause = ask(browser, "pausar")
    # Pending while the dialer is stopped: the page lists it, the spool holds it, the campaign still runs.
    _, page = browser.get("/campanas")
    assert f'data-request="{pause}"' in page
    assert host.run(f"ls {SPOOL} | grep -c -- '-{pause}.json$'").stdout.strip() == "1"
    assert state_of(campaign_in_console(browser)) == "running"

    host.check_output("systemctl start openai-outbound-calls")
    assert wait_until(lambda: applied(campaign_in_console(browser), [pause]) != [], 90, 1)
    console = campaign_in_console(browser)
    assert applied(console, [pause]) == [("pause", SUPERVISOR[0], "applied")]
    assert state_of(console) == "paused"
    assert console["pending"] == []
    assert host.run(f"ls -A {SPOOL}").stdout.strip() == ""
    log = host.check_output(f"tail -c +{log_start + 1} {DIALER_LOG}")
    assert f"campaign request {pause} from console user {SUPERVISOR[0]}: pause campaign {CAMPAIGN}: applied" in log

    # Resume then pause, both asked while the dialer is stopped: applied in the order asked, before any call.
    host.check_output("systemctl stop openai-outbound-calls")
    resume = ask(browser, "reanudar")
    pause_again = ask(browser, "pausar")
    host.check_output("systemctl start openai-outbound-calls")
    assert wait_until(lambda: len(applied(campaign_in_console(browser), [resume, pause_again])) == 2, 90, 1)
    console = campaign_in_console(browser)
    assert applied(console, [resume, pause_again]) == [
        ("resume", SUPERVISOR[0], "applied"),
        ("pause", SUPERVISOR[0], "applied"),
    ]
    assert state_of(console) == "paused"
    attempts = dialer_query(
        host,
        f"SELECT count(*) FROM attempts a JOIN targets t ON t.id = a.target_id JOIN campaigns c "
        f"ON c.id = t.campaign_id WHERE c.name = '{CAMPAIGN}'",
    )
    assert attempts == [[0]]
    # The dialer's audit carries the console user's name; the console's own audit the requests.
    rows = dialer_query(
        host, f"SELECT action, user, source, result FROM campaign_actions WHERE campaign = '{CAMPAIGN}' ORDER BY id"
    )
    assert rows == [
        ["pause", SUPERVISOR[0], "console", "applied"],
        ["resume", SUPERVISOR[0], "console", "applied"],
        ["pause", SUPERVISOR[0], "console", "applied"],
    ]


def test_viewer_cannot_ask_for_a_pause(host):
    browser = Browser(host, "viewer-campaigns")
    assert browser.log_in(*VIEWER) == 302
    _, page = browser.get("/campanas")
    assert "Pausar" not in page
    assert browser.post(f"/campanas/{CAMPAIGN}/pausar", {"csrf_token": csrf_token(page)}) == 403
