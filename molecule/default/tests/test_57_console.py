"""centralita-web as deployed: its own user and sandbox, loopback only, and a finished call seen through it.

Everything is asked over HTTP from inside the box (curl with a cookie jar), as a browser on the box would: the
login form's CSRF token, the login, the call's page with both sides of its transcript, a viewer's page without
the caller's number, and a POST without a token refused. The users are the scenario's bridge_web_users.
"""

from __future__ import annotations

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
