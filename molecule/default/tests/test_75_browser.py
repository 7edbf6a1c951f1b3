"""The web console in a real browser: Debian's Chromium, driven by Selenium through its chromedriver, after the
live calls of the earlier box tests (file order: after the inbound calls and the dialer's campaign).

The console listens on the box's own loopback address only, and the test does not change that: chromedriver and
Chromium run on the host inside the box container's network namespace, so the browser opens
http://127.0.0.1:8090 of the box itself, as a browser on the box would. The test process enters that namespace
for the module (``setns``, the in-process form of ``nsenter -t <container pid> -n``; root, as ``make test``
runs) and leaves it afterwards: chromedriver and Chromium are its children and inherit it, and Selenium's
connections to chromedriver are made from it. One browser session serves every test; each user logs out
through the console's own button before the next logs in.

Every step waits for what it checks (the page's URL or an element's text) with a generous deadline. A failed
test leaves a screenshot and the page's HTML in /tmp/centralita-browser-<box>/.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from conftest import BOX, RECORDS_DB, VENV_PYTHON, call_record, place_speaking_call, wait_until
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

testinfra_hosts = [f"podman://{BOX}"]

URL = "http://127.0.0.1:8090"  # bridge_web_listen and bridge_web_port's defaults, inside the box
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# What this closed network needs: nothing of Chromium's own traffic (updates, sync, field trials) goes out.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1024",
)
WAIT_S = 30  # every wait's deadline: a busy 2-core CI machine
SHOTS = Path(f"/tmp/centralita-browser-{BOX}")

SUPERVISOR = ("supervisora", "frase de prueba supervisora")
VIEWER = ("lectora", "frase de prueba lectora")
GUARD = ("guardia", "frase de prueba guardia")  # the scenario's user for the login limit alone
LOGIN_LIMIT = 5  # the console's default WEB_LOGIN_MAX_FAILURES, which the scenario keeps
# place_speaking_call's caller: the caller ID of Luis Hernández of the demo ISP, verified by it, whose DNI the
# call's router-write rows name; the number it dials is the DID.
CALLER = "5215550004444"
CALLER_MASKED = "**********444"
DNI = "45678901"
DNI_MASKED = "*****901"
CALLER_FIRST_LINE = "Hola, buenas tardes. No tengo internet desde ayer."  # the fake Realtime server's script
GREETING = "Hola, soy el asistente de su proveedor de internet."
CAMPAIGN = "navegador"
CSRF_REFUSED = "El formulario caducó o no vino de esta consola: nada se ha cambiado."

CLONE_NEWNET = 0x40000000
T = TypeVar("T")


# ---- the box's network namespace -----------------------------------------------------------------------------


def _setns(fd: int) -> None:
    """Move the calling thread into the network namespace ``fd`` refers to (Python 3.11 has no os.setns)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(
            errno,
            f"cannot enter the box's network namespace ({os.strerror(errno)}): the browser tests run as root, "
            "as make test does",
        )


@contextlib.contextmanager
def box_network(container: str) -> Iterator[None]:
    """This thread, and the processes it starts, in ``container``'s network namespace for the block."""
    inspected = subprocess.run(
        ["podman", "inspect", "--format", "{{.State.Pid}}", container],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    pid = inspected.stdout.strip()
    assert inspected.returncode == 0, f"box {container} cannot be inspected: {inspected.stderr}"
    assert pid not in ("", "0"), f"box {container} is not running"
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        box = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        try:
            _setns(box)
        finally:
            os.close(box)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)


# ---- the browser ---------------------------------------------------------------------------------------------


# One step in the page each: [text] of the first match (null while there is none), [[texts]] of every match.
TEXT_OF = "const e = document.querySelector(arguments[0]); return e === null ? null : [e.innerText.trim()];"
TEXTS_OF = "return [Array.from(document.querySelectorAll(arguments[0]), (e) => e.innerText.trim())];"
# What Chromium says when the page a command reads is replaced under it: a stale reference, or an inspector
# error about a node or a JavaScript context that no longer exists.
REPLACED = (
    "does not belong to the document",
    "No node with given id",
    "Could not find node with given id",
    "not attached to the page document",
    "Execution context was destroyed",
    "Cannot find context with specified id",
    "Inspected target navigated or closed",
)


def replaced_while_read(error: WebDriverException) -> bool:
    return isinstance(error, StaleElementReferenceException) or any(words in (error.msg or "") for words in REPLACED)


def gone_from_the_page(element: WebElement) -> Callable[[WebDriver], bool]:
    """A wait condition: ``element`` is no longer in the page (a new page replaced it). Selenium's ``staleness_of``,
    but for the error Chromium sometimes gives instead of a stale reference while the old page is being torn down
    ("Node with given id does not belong to the document"), which means the same: the node is gone."""

    def gone(_driver: WebDriver) -> bool:
        try:
            element.is_enabled()
        except WebDriverException as error:
            if replaced_while_read(error):
                return True
            raise
        return False

    return gone


class Console:
    """One Chromium session on the console, with the few gestures the tests make."""

    def __init__(self, driver: WebDriver) -> None:
        self.driver = driver

    def wait(self, condition: Callable[[WebDriver], T], message: str, timeout_s: float = WAIT_S) -> T:
        """Poll ``condition`` until it holds. A reload that replaced the page while the condition read it is one
        more poll, not a failure: the campaigns page reloads itself whenever the dialer changes a state."""

        def across_reloads(driver: WebDriver) -> T | bool:
            try:
                return condition(driver)
            except WebDriverException as error:
                if replaced_while_read(error):
                    return False
                raise

        try:
            return WebDriverWait(self.driver, timeout_s, poll_frequency=0.2).until(across_reloads)  # type: ignore[return-value]
        except TimeoutException:
            raise AssertionError(f"{message} (waited {timeout_s} s at {self.driver.current_url})") from None

    def open(self, path: str) -> None:
        self.driver.get(URL + path)

    def element(self, css: str) -> WebElement:
        return self.wait(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css)), f"no {css!r}")

    def _read(self, script: str, css: str) -> object:
        return self.driver.execute_script(script, css)

    def text_of(self, css: str) -> str:
        """The visible text of the first element ``css`` selects, once there is one, read in a single step in the
        page (finding an element and then asking its text are two steps a reload can fall between)."""
        return self.text_shows(css, "")

    def texts_of(self, css: str) -> list[str]:
        """The visible texts of every element ``css`` selects now (none is an empty list), read in a single step."""
        found = self.wait(lambda _driver: self._read(TEXTS_OF, css), f"the page could not be read for {css!r}")
        assert isinstance(found, list)
        return [str(text) for text in found[0]]

    def text_shows(self, css: str, text: str) -> str:
        """Wait until the first element ``css`` selects contains ``text``; the whole text it then had."""

        def shows(_driver: WebDriver) -> list[str] | None:
            found = self._read(TEXT_OF, css)
            return found if isinstance(found, list) and text in str(found[0]) else None

        found = self.wait(shows, f"{css!r} never showed {text!r}")
        assert found is not None
        return str(found[0])

    def heading(self) -> str:
        return self.element("main h1").text

    def submit_login(self, name: str, password: str) -> None:
        self.open("/entrar")
        self.text_shows("main h1", "Entrar")
        user = self.element("input[name=name]")
        user.clear()
        user.send_keys(name)
        self.element("input[name=password]").send_keys(password)
        old = self.element("main form button[type=submit]")
        old.click()
        self.wait(gone_from_the_page(old), "the login form was never sent")

    def log_in(self, name: str, password: str) -> None:
        self.submit_login(name, password)
        self.text_shows("header form.logout span", f"{name} (")

    def log_out(self) -> None:
        button = self.element("header form.logout button[type=submit]")
        button.click()
        self.wait(expected_conditions.url_contains("/entrar"), "logging out did not lead to the login page")
        self.wait(
            expected_conditions.invisibility_of_element_located((By.CSS_SELECTOR, "header form.logout")),
            "the login page still showed a logged-in user",
        )

    def campaign_row(self, name: str) -> WebElement:
        return self.element(f'tr.campaign[data-name="{name}"]')

    def campaign_state(self, name: str) -> str:
        return self.text_of(f'tr.campaign[data-name="{name}"] td.state')


@pytest.fixture(scope="module")
def console() -> Iterator[Console]:
    for program in (CHROMIUM, CHROMEDRIVER):
        assert shutil.which(program), (
            f"{program} is missing: the browser tests need Debian's chromium and chromium-driver "
            "(make host installs them: files/host/setup.sh)"
        )
    profile = tempfile.mkdtemp(prefix="centralita-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    try:
        with box_network(BOX):
            started = time.monotonic()
            driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
            print(f"chromium and chromedriver started in the box's network in {time.monotonic() - started:.1f} s")
            try:
                driver.set_page_load_timeout(WAIT_S)
                yield Console(driver)
            finally:
                driver.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(autouse=True)
def screenshot_on_failure(request, console: Console) -> Iterator[None]:
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before:
        SHOTS.mkdir(parents=True, exist_ok=True)
        stem = SHOTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)  # the node's name holds podman://
        console.driver.save_screenshot(str(stem.with_suffix(".png")))
        stem.with_suffix(".html").write_text(console.driver.page_source, encoding="utf-8")
        print(f"browser at {console.driver.current_url}: screenshot {stem}.png, page {stem}.html")


# ---- what the pages show -------------------------------------------------------------------------------------


def latest_call_with_both_sides_and_tools(host) -> str | None:
    """The newest finished inbound call from CALLER whose record has the caller's and the assistant's lines, at least
    one tool call and a router-write row naming the holder's DNI (the speaking calls of the earlier tests), read-only
    from the records."""
    sql = (
        "SELECT c.call_id FROM calls c WHERE c.direction = 'inbound' AND c.caller = ? AND c.ended_at IS NOT NULL"
        " AND EXISTS (SELECT 1 FROM transcript t WHERE t.call_id = c.call_id AND t.speaker = 'caller')"
        " AND EXISTS (SELECT 1 FROM transcript t WHERE t.call_id = c.call_id AND t.speaker = 'assistant')"
        " AND EXISTS (SELECT 1 FROM tool_calls u WHERE u.call_id = c.call_id)"
        f" AND EXISTS (SELECT 1 FROM audit_log a WHERE a.call_id = c.call_id AND a.customer_id = '{DNI}')"
        " ORDER BY c.started_at DESC LIMIT 1"
    )
    script = (
        "import json,sqlite3,sys; db=sqlite3.connect('file:'+sys.argv[1]+'?mode=ro', uri=True); "
        "print(json.dumps(db.execute(sys.argv[2], (sys.argv[3],)).fetchall()))"
    )
    rows = json.loads(host.check_output(f'{VENV_PYTHON} -c "{script}" {RECORDS_DB} "{sql}" {CALLER}'))
    return str(rows[0][0]) if rows else None


@pytest.fixture(scope="module")
def finished_call(host) -> dict:
    """A finished call with both sides of its transcript and its tool calls: the earlier tests' newest, or a new
    one when this file runs alone."""
    call_id = latest_call_with_both_sides_and_tools(host)
    if call_id is None:
        call_id, _log = place_speaking_call(host)
        assert wait_until(lambda: call_record(host, call_id).get("ended_at") is not None, 30, 0.5)
        call_id = latest_call_with_both_sides_and_tools(host)
        assert call_id is not None, (
            "a speaking call left no record with both sides, tool calls and the holder's router-write rows"
        )
    record = call_record(host, call_id)
    record["call_id"] = call_id
    return record


def tool_names(record: dict) -> list[str]:
    return [tool["name"] for tool in record.get("tool_calls") or []]


def test_supervisor_logs_in_through_the_form_and_finds_the_call_by_number(console, finished_call):
    console.log_in(*SUPERVISOR)
    assert console.driver.current_url == f"{URL}/llamadas"
    assert console.element("header form.logout span").text == "supervisora (supervisor)"
    console.element("header nav").find_element(By.LINK_TEXT, "Historial").click()
    console.text_shows("main h1", "Historial de llamadas")
    console.element("input[name=numero]").send_keys(CALLER)
    console.element("form.search button[type=submit]").click()
    link = console.wait(
        expected_conditions.element_to_be_clickable(
            (By.CSS_SELECTOR, f'main table a[href="/historial/{finished_call["call_id"]}"]')
        ),
        "the search by number did not list the call",
    )
    assert f"numero={CALLER}" in console.driver.current_url
    link.click()
    console.text_shows("main h1", f"Llamada {finished_call['call_id']}")


def test_the_call_shows_both_sides_of_its_transcript_and_its_tool_calls(console, finished_call):
    console.open(f"/historial/{finished_call['call_id']}")
    console.text_shows("main h1", finished_call["call_id"])
    caller_lines = [line.text for line in console.driver.find_elements(By.CSS_SELECTOR, "ol.transcript li.caller")]
    assistant_lines = [
        line.text for line in console.driver.find_elements(By.CSS_SELECTOR, "ol.transcript li.assistant")
    ]
    assert caller_lines, console.driver.page_source
    assert caller_lines[0] == f"Cliente {CALLER_FIRST_LINE}", caller_lines
    assert assistant_lines, console.driver.page_source
    assert assistant_lines[0].startswith(f"Asistente {GREETING}"), assistant_lines
    # Both sides as the record keeps them, in its order.
    recorded = [line["speaker"] for line in finished_call["transcript"]]
    shown = [line.get_attribute("class") for line in console.driver.find_elements(By.CSS_SELECTOR, "ol.transcript li")]
    assert shown == recorded
    tools = console.driver.find_elements(By.CSS_SELECTOR, "tr.tool")
    shown_tools = [row.find_elements(By.TAG_NAME, "td")[1].text for row in tools]
    assert shown_tools == tool_names(finished_call)
    assert "consultar_cliente" in shown_tools
    assert console.element("dd.caller").text == CALLER
    assert DNI in console.element("main").text  # the router-write rows name the holder


def test_a_viewer_sees_the_callers_number_and_the_dni_masked(console, finished_call):
    console.log_out()
    console.log_in(*VIEWER)
    assert console.element("header form.logout span").text == "lectora (lectura)"
    console.open(f"/historial/{finished_call['call_id']}")
    console.text_shows("main h1", finished_call["call_id"])
    assert console.element("dd.caller").text == CALLER_MASKED
    assert CALLER not in console.driver.page_source
    assert DNI not in console.driver.page_source
    assert DNI_MASKED in console.element("main").text
    # The same call, still with both sides and its tools: only the personal data is hidden.
    assert console.driver.find_elements(By.CSS_SELECTOR, "ol.transcript li.caller")
    assert len(console.driver.find_elements(By.CSS_SELECTOR, "tr.tool")) == len(tool_names(finished_call))
    # A viewer has no campaign buttons.
    console.open("/campanas")
    console.text_shows("main h1", "Campañas")
    assert not console.driver.find_elements(By.CSS_SELECTOR, "tr.campaign form")
    console.log_out()


@pytest.fixture(scope="module")
def draft_campaign(host) -> str:
    """A campaign imported but never started (draft): nobody is dialled unless the console starts it."""
    host.check_output(
        "printf 'id_cliente,nombre,telefono,monto,vencimiento\\nN1,Cliente N1,+525550079001,100.00,2026-10-31\\n'"
        " > /tmp/navegador.csv"
    )
    imported = host.run(f"centralita campaign import /tmp/navegador.csv --campaign {CAMPAIGN}")
    assert imported.rc == 0, imported.stderr
    status = host.check_output(f"centralita campaign status {CAMPAIGN}")
    assert "draft" in status, status
    return CAMPAIGN


def test_a_campaign_change_without_its_csrf_token_is_refused(console, host, draft_campaign):
    console.log_in(*SUPERVISOR)
    console.open("/campanas")
    assert console.campaign_state(draft_campaign) == "borrador"
    # What a forged page would send: the same form without the hidden token (one step in the page: it reloads
    # itself when a campaign changes).
    action = console.wait(
        lambda driver: driver.execute_script(
            "const form = document.querySelector(arguments[0]); if (form === null) { return null; }"
            " form.querySelector('input[name=csrf_token]').remove(); form.submit(); return form.action;",
            f'tr.campaign[data-name="{draft_campaign}"] form',
        ),
        f"no form for {draft_campaign}",
    )
    assert str(action).endswith(f"/campanas/{draft_campaign}/reanudar")
    console.text_shows("main h1", "No se pudo")
    assert CSRF_REFUSED in console.element("main p.flash.error").text
    console.open("/campanas")
    assert console.campaign_state(draft_campaign) == "borrador"
    pending = console.texts_of("tr.pending td:nth-child(2)")
    assert draft_campaign not in pending
    assert "draft" in host.check_output(f"centralita campaign status {draft_campaign}")
    console.log_out()


def test_wrong_passwords_are_limited_and_then_even_the_right_one_is_refused(console):
    # The right password first: it works, and forgets any failure of the user's name.
    console.log_in(*GUARD)
    console.log_out()
    for attempt in range(1, LOGIN_LIMIT + 1):
        console.submit_login(GUARD[0], f"contraseña equivocada {attempt}")
        error = console.element("main p.flash.error").text
        assert error == "Usuario o contraseña incorrectos.", f"attempt {attempt}: {error}"
    console.submit_login(*GUARD)
    error = console.element("main p.flash.error").text
    assert re.fullmatch(r"Demasiados intentos fallidos\. Espere \d+ minutos? y vuelva a intentarlo\.", error), error
    assert not console.driver.find_elements(By.CSS_SELECTOR, "header form.logout")
    console.open("/historial")
    console.wait(expected_conditions.url_contains("/entrar"), "the history opened without a login")


# ---- pause and resume: the console asks, the dialer applies (its request spool) -----------------------------


@pytest.fixture
def stopped_dialer(host) -> Iterator[None]:
    """The dialer stopped at the start (a request waits in the spool until the test starts it again), and running
    again at the end whatever happened."""
    assert host.service("openai-outbound-calls").is_running
    host.check_output("systemctl stop openai-outbound-calls")
    yield
    host.run("systemctl start openai-outbound-calls")
    assert wait_until(lambda: host.service("openai-outbound-calls").is_running, 30, 0.5)


def click_campaign_button(console: Console, campaign: str, label: str) -> str:
    """Press the campaign's button ``label``; the id of the request the console then says it sent. The page may
    reload itself between finding the button and pressing it: then the press is tried on the new page."""

    def pressed(_driver: WebDriver) -> WebElement:
        button = console.campaign_row(campaign).find_element(By.CSS_SELECTOR, "form button[type=submit]")
        assert button.text == label
        button.click()
        return button

    button = console.wait(pressed, f"the {label} button could not be pressed")
    console.wait(gone_from_the_page(button), f"the {label} button did nothing")
    flash = console.text_shows("main p.flash.ok", f"la campaña {campaign} en unos segundos")
    sent = re.search(r"\(solicitud ([^)]+)\)", flash)
    assert sent is not None, flash
    return sent.group(1)


def state_shows(console: Console, campaign: str, label: str) -> None:
    """Wait, without reloading, until the page (which follows the dialer by itself) shows ``campaign`` as ``label``."""
    console.text_shows(f'tr.campaign[data-name="{campaign}"] td.state', label)


def applied(console: Console, request_id: str) -> None:
    console.element(f'tr.action[data-request="{request_id}"][data-result="applied"]')


def test_a_supervisor_pauses_and_resumes_a_running_campaign(console, host, stopped_dialer):
    campaign = "navegador-marcha"
    host.check_output(
        "printf 'id_cliente,nombre,telefono,monto,vencimiento\\nB1,Cliente B1,+525550079001,100.00,2026-10-31\\n'"
        " > /tmp/navegador-marcha.csv"
    )
    imported = host.run(f"centralita campaign import /tmp/navegador-marcha.csv --campaign {campaign}")
    assert imported.rc == 0, imported.stderr
    assert host.run(f"centralita campaign start {campaign}").rc == 0
    console.log_in(*SUPERVISOR)
    console.open("/campanas")
    state_shows(console, campaign, "en marcha")

    # Asked while the dialer is stopped: pending, and the campaign still runs.
    pause = click_campaign_button(console, campaign, "Pausar")
    console.element(f'tr.pending[data-request="{pause}"]')
    assert console.campaign_state(campaign) == "en marcha"
    host.check_output("systemctl start openai-outbound-calls")
    state_shows(console, campaign, "en pausa")
    applied(console, pause)
    assert not console.driver.find_elements(By.CSS_SELECTOR, f'tr.pending[data-request="{pause}"]')

    # The dialer running: the page follows each request to its end.
    resume = click_campaign_button(console, campaign, "Reanudar")
    state_shows(console, campaign, "en marcha")
    applied(console, resume)
    pause_again = click_campaign_button(console, campaign, "Pausar")
    state_shows(console, campaign, "en pausa")
    applied(console, pause_again)
    status = host.check_output(f"centralita campaign status {campaign}")
    assert "paused" in status, status
