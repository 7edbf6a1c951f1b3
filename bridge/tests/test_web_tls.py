"""The console off loopback only behind TLS: the settings refuse a listener beyond loopback without a certificate,
and the HTTPS server (cheroot, with the context ``tls_context`` loads) serves the console with Secure cookies."""

from __future__ import annotations

import http.client
import re
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from certs import self_signed
from polling import free_port
from web_support import PASSWORD, Console, build_console

from centralita.cli import main as cli_main
from centralita.config.env import ConfigError
from centralita.web.serve import https_server
from centralita.web.settings import WebSettings
from centralita.web.tls import TlsError, tls_context


def test_a_listener_beyond_loopback_without_a_certificate_is_refused_naming_the_variables() -> None:
    with pytest.raises(ConfigError) as caught:
        WebSettings.from_values({"WEB_LISTEN": "192.0.2.10"})
    message = str(caught.value)
    assert "WEB_LISTEN is 192.0.2.10, beyond the loopback address, but no certificate is set" in message
    assert "bridge_web_tls_certificate and bridge_web_tls_key" in message
    with pytest.raises(ConfigError, match="WEB_TLS_CERT and WEB_TLS_KEY go together"):
        WebSettings.from_values({"WEB_LISTEN": "127.0.0.1", "WEB_TLS_CERT": "/etc/c.crt"})
    with pytest.raises(ConfigError, match=r"WEB_TLS_KEY is 'key\.pem', a relative path"):
        WebSettings.from_values({"WEB_TLS_CERT": "/etc/c.crt", "WEB_TLS_KEY": "key.pem"})


def test_loopback_is_plain_http_and_a_certificate_makes_it_https_with_secure_cookies() -> None:
    plain = WebSettings.from_values({})
    assert (plain.listen, plain.tls, plain.secure_cookies) == ("127.0.0.1", False, False)
    tls = WebSettings.from_values({"WEB_LISTEN": "0.0.0.0", "WEB_TLS_CERT": "/etc/c.crt", "WEB_TLS_KEY": "/etc/c.key"})
    assert (tls.listen, tls.tls, tls.secure_cookies) == ("0.0.0.0", True, True)
    on_loopback = WebSettings.from_values({"WEB_TLS_CERT": "/etc/c.crt", "WEB_TLS_KEY": "/etc/c.key"})
    assert (on_loopback.tls, on_loopback.secure_cookies) == (True, True)


def test_the_dialers_settings_for_imports_come_from_the_consoles_environment() -> None:
    settings = WebSettings.from_values(
        {"DIALER_COUNTRY_CODE": "52", "DIALER_TIMEZONE": "America/Lima", "DIALER_CAMPAIGNS": "norte-, sur-"}
    )
    assert (settings.country_code, str(settings.dialer_zone), settings.campaigns) == (
        "52",
        "America/Lima",
        ("norte-", "sur-"),
    )
    empty = WebSettings.from_values({"DIALER_COUNTRY_CODE": "", "DIALER_CAMPAIGNS": ""})
    assert (empty.country_code, empty.dialer_zone, empty.campaigns) == ("", None, ())
    with pytest.raises(ConfigError, match="DIALER_COUNTRY_CODE"):
        WebSettings.from_values({"DIALER_COUNTRY_CODE": "999"})


def test_a_certificate_that_cannot_be_read_or_does_not_match_its_key_stops_the_start(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "console")
    _, other_key = self_signed(tmp_path, "other")
    with pytest.raises(TlsError, match="cannot be read"):
        tls_context(WebSettings(tls_cert=tmp_path / "missing.crt", tls_key=key))
    with pytest.raises(TlsError, match="cannot serve HTTPS"):
        tls_context(WebSettings(tls_cert=cert, tls_key=other_key))
    assert tls_context(WebSettings(tls_cert=cert, tls_key=key)).minimum_version is ssl.TLSVersion.TLSv1_2


@pytest.fixture
def https_console(tmp_path: Path) -> Iterator[tuple[Console, int, ssl.SSLContext]]:
    cert, key = self_signed(tmp_path, "console")
    port = free_port()
    for console in build_console(tmp_path, listen="127.0.0.1", port=port, tls_cert=cert, tls_key=key):
        server = https_server(console.app, console.settings, tls_context(console.settings))
        server.prepare()
        thread = threading.Thread(target=server.serve, daemon=True)
        thread.start()
        client_context = ssl.create_default_context(cafile=str(cert))
        try:
            yield console, port, client_context
        finally:
            server.stop()
            thread.join(timeout=10)


def test_the_console_serves_https_with_secure_cookies_and_hsts(
    https_console: tuple[Console, int, ssl.SSLContext],
) -> None:
    console, port, context = https_console
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    try:
        connection.request("GET", "/entrar")
        response = connection.getresponse()
        page = response.read().decode()
        assert response.status == 200
        assert response.getheader("Strict-Transport-Security") == "max-age=31536000"
        csrf_cookie = response.getheader("Set-Cookie") or ""
        assert "Secure" in csrf_cookie
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
        assert token is not None
        body = f"name=sara&password={PASSWORD.replace(' ', '+')}&csrf_token={token.group(1)}"
        connection.request(
            "POST",
            "/entrar",
            body=body,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": csrf_cookie.split(";")[0],
                "Referer": f"https://127.0.0.1:{port}/entrar",
            },
        )
        response = connection.getresponse()
        response.read()
        assert response.status == 302
        cookies = response.headers.get_all("Set-Cookie") or []
        session = next(cookie for cookie in cookies if cookie.startswith("centralita_session="))
        assert "Secure" in session
        assert "HttpOnly" in session
        assert [row["client"] for row in console.store.audit_entries() if row["action"] == "login"] == ["127.0.0.1"]
    finally:
        connection.close()


def test_plain_http_gets_no_page_from_the_https_listener(https_console: tuple[Console, int, ssl.SSLContext]) -> None:
    _, port, _ = https_console
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/entrar")
        response = connection.getresponse()
    except (http.client.HTTPException, ConnectionError):
        return  # refused outright
    finally:
        connection.close()
    # Or answered with cheroot's own 400 that asks for HTTPS: never the console's page.
    assert response.status == 400
    assert "csrf_token" not in response.read().decode(errors="replace")


def test_check_tls_says_whether_a_pair_serves_https(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cert, key = self_signed(tmp_path, "console")
    _, other_key = self_signed(tmp_path, "other")
    assert cli_main(["web", "check-tls", str(cert), str(key)]) == 0
    assert "serve HTTPS" in capsys.readouterr().out
    assert cli_main(["web", "check-tls", str(cert), str(other_key)]) == 2
    assert "cannot serve HTTPS" in capsys.readouterr().err
