"""The fake router as an API-SSL server: real TLS with a certificate made in the test, real librouteros."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import librouteros
import pytest
from certs import self_signed
from paths import PYTHONPATH

from centralita.isp.routeros.client import RouterClient, RouterUnavailable, tls_wrapper
from centralita_testing.fake_routeros.server import FakeRouterOS, main

USER = "api-soporte"
PASSWORD = "s3creto-2025"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed(tmp_path)


def _trusting(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


def test_librouteros_over_tls_reads_utf8_rows(cert: tuple[Path, Path]) -> None:
    cert_file, key_file = cert
    with FakeRouterOS(None, USER, PASSWORD, tls_cert=cert_file, tls_key=key_file) as router:
        assert router.tls
        api = librouteros.connect(
            router.host,
            USER,
            PASSWORD,
            port=router.port,
            timeout=5,
            encoding="utf-8",
            ssl_wrapper=tls_wrapper(_trusting(cert_file), server_hostname="127.0.0.1"),
        )
        try:
            assert isinstance(api.protocol.transport.sock, ssl.SSLSocket)
            names = {row["name"]: row["comment"] for row in api("/ppp/secret/print")}
        finally:
            api.close()
        assert "nombre=María Peña" in names["maria.pena"]
        assert "nombre=Carmen Núñez Ortiz" in names["carmen.nunez"]
        assert router.logins == 1


def test_the_certificate_is_checked(cert: tuple[Path, Path], tmp_path: Path) -> None:
    cert_file, key_file = cert
    other_ca, _ = self_signed(tmp_path, name="otra-ca")
    with FakeRouterOS(None, USER, PASSWORD, tls_cert=cert_file, tls_key=key_file) as router:
        wrong = RouterClient(
            router.host,
            USER,
            PASSWORD,
            port=router.port,
            timeout=2,
            ssl_wrapper=tls_wrapper(_trusting(other_ca), server_hostname="127.0.0.1"),
        )
        with pytest.raises(RouterUnavailable, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            wrong.print("/ppp/active")
        assert router.logins == 0
        # The same router through the right CA works, and a plain-API client gets nowhere.
        with RouterClient(
            router.host,
            USER,
            PASSWORD,
            port=router.port,
            timeout=2,
            ssl_wrapper=tls_wrapper(_trusting(cert_file), server_hostname="127.0.0.1"),
        ) as right:
            assert len(right.print("/ppp/active")) == 4
        plain = RouterClient(router.host, USER, PASSWORD, port=router.port, timeout=0.5)
        with pytest.raises(RouterUnavailable):
            plain.print("/ppp/active")
        assert router.logins == 1


def test_stop_ends_a_connection_stuck_in_the_handshake(cert: tuple[Path, Path]) -> None:
    cert_file, key_file = cert
    router = FakeRouterOS(None, USER, PASSWORD, tls_cert=cert_file, tls_key=key_file).start()
    silent = socket.create_connection((router.host, router.port), timeout=5)  # never says ClientHello
    try:
        assert router.wait_until(lambda: router.open_connections == 1)
        started = time.monotonic()
        router.stop()
        assert time.monotonic() - started < 2
        assert router.open_connections == 0
    finally:
        silent.close()


def test_a_key_without_a_certificate_is_refused(cert: tuple[Path, Path]) -> None:
    with pytest.raises(ValueError, match="tls_key needs tls_cert"):
        FakeRouterOS(None, USER, PASSWORD, tls_key=cert[1])


def test_a_bad_certificate_fails_at_construction(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate\n")
    with pytest.raises(ssl.SSLError):
        FakeRouterOS(None, USER, PASSWORD, tls_cert=bogus)


def test_cli_tls_key_needs_cert(cert: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--port", "0", "--tls-key", str(cert[1])])
    assert "--tls-key needs --tls-cert" in capsys.readouterr().err


def test_cli_serves_api_ssl(cert: tuple[Path, Path]) -> None:
    cert_file, key_file = cert
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    command = [sys.executable, "-m", "centralita_testing.fake_routeros.server", "--port", "0", "--user", USER]
    command += ["--password", PASSWORD, "--tls-cert", str(cert_file), "--tls-key", str(key_file)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("fake RouterOS API-SSL listening on 127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])
        wrapper = tls_wrapper(_trusting(cert_file), server_hostname="127.0.0.1")
        with RouterClient("127.0.0.1", USER, PASSWORD, port=port, timeout=5, ssl_wrapper=wrapper) as client:
            assert [row["name"] for row in client.print("/ppp/secret", where={"disabled": True})] == ["carmen.nunez"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
