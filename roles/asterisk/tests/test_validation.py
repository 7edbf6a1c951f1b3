"""Bad inventory input stops the role in its validation step, with a message naming the fix.

Runs the real role against localhost with --tags asterisk_validate: only the argument specs and
tasks/validate.yml run, so nothing on this machine is touched.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from conftest import run_playbook

GOOD_TRUNK = {"host": "198.51.100.7", "codecs": ["ulaw"]}


def validate(tmp_path: Path, **extra: Any) -> tuple[int, str]:
    variables = {"asterisk_version": "22.10.1", "asterisk_sip_trunk": GOOD_TRUNK, **extra}
    result = run_playbook("validate.yml", variables, tmp_path, "--tags", "asterisk_validate")
    return result.returncode, " ".join((result.stdout + result.stderr).split())


@pytest.mark.parametrize(
    ("version", "driver", "expected"),
    [
        ("22.10.1", "auto", "pjsip"),
        ("21.0.0", "auto", "pjsip"),
        ("20.11.0", "auto", "chan_sip"),
        ("18.20.2", "auto", "chan_sip"),
        ("20.11.0", "pjsip", "pjsip"),
        ("20.11.0", "chan_sip", "chan_sip"),
    ],
)
def test_driver_choice(tmp_path, version, driver, expected):
    rc, out = validate(tmp_path, asterisk_version=version, asterisk_sip_driver=driver)
    assert rc == 0, out
    assert f"effective driver: {expected}" in out


def test_chan_sip_on_asterisk_21_or_newer_is_refused_with_the_reason_and_the_fix(tmp_path):
    rc, out = validate(tmp_path, asterisk_sip_driver="chan_sip")
    assert rc != 0
    assert "chan_sip was removed from Asterisk in version 21" in out
    assert "Asterisk 22.10.1" in out
    assert "Set asterisk_sip_driver: pjsip" in out
    assert "effective driver" not in out


def test_missing_trunk_host(tmp_path):
    rc, out = validate(tmp_path, asterisk_sip_trunk={"port": 5060})
    assert rc != 0
    assert "missing required arguments: host" in out
    assert "asterisk_sip_trunk" in out


def test_empty_trunk_host(tmp_path):
    rc, out = validate(tmp_path, asterisk_sip_trunk={"host": ""})
    assert rc != 0
    assert "asterisk_sip_trunk.host is empty" in out


@pytest.mark.parametrize("port", [0, 70000])
def test_trunk_port_out_of_range(tmp_path, port):
    rc, out = validate(tmp_path, asterisk_sip_trunk={"host": "198.51.100.7", "port": port})
    assert rc != 0
    assert f"asterisk_sip_trunk.port (got '{port}')" in out
    assert "from 1 to 65535" in out


def test_trunk_port_not_a_number(tmp_path):
    rc, out = validate(tmp_path, asterisk_sip_trunk={"host": "198.51.100.7", "port": "fifty"})
    assert rc != 0
    assert "port" in out
    assert "int" in out


def test_unknown_codec(tmp_path):
    rc, out = validate(tmp_path, asterisk_sip_trunk={"host": "198.51.100.7", "codecs": ["ulaw", "mp3"]})
    assert rc != 0
    assert "codecs Asterisk does not know: mp3" in out
    assert "ulaw, alaw" in out


def test_empty_codec_list(tmp_path):
    rc, out = validate(tmp_path, asterisk_sip_trunk={"host": "198.51.100.7", "codecs": []})
    assert rc != 0
    assert "(the list is empty)" in out


def test_bad_provider_network(tmp_path):
    trunk = {"host": "198.51.100.7", "provider_networks": ["198.51.100.0/24", "10.0.0.0/33"]}
    rc, out = validate(tmp_path, asterisk_sip_trunk=trunk)
    assert rc != 0
    assert "Not an IP address or CIDR range: 10.0.0.0/33" in out


def test_registration_without_secret(tmp_path):
    trunk = {"host": "198.51.100.7", "register": True, "username": "5215550001234"}
    rc, out = validate(tmp_path, asterisk_sip_trunk=trunk)
    assert rc != 0
    assert "register is true but username or secret is empty" in out


def test_bad_trunk_name(tmp_path):
    rc, out = validate(tmp_path, asterisk_sip_trunk={"host": "198.51.100.7", "name": "my trunk;evil"})
    assert rc != 0
    assert "asterisk_sip_trunk.name must be letters, digits, - or _" in out


def test_unknown_driver_name(tmp_path):
    rc, out = validate(tmp_path, asterisk_sip_driver="chan-sip")
    assert rc != 0
    assert "asterisk_sip_driver" in out
    assert "pjsip" in out


def test_bad_operator_dial_string(tmp_path):
    rc, out = validate(tmp_path, asterisk_operator_dial="5215550009999")
    assert rc != 0
    assert "is not a dial string" in out


def test_existing_install_without_asterisk(tmp_path):
    rc, out = validate(
        tmp_path, asterisk_version="", asterisk_install_method="existing", asterisk_binary="/nonexistent/asterisk"
    )
    assert rc != 0
    assert "asterisk_install_method is 'existing' but /nonexistent/asterisk does not run" in out


# ---- the operator's dial string and the SIP driver -----------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "dial", "other", "example"),
    [
        ("20.20.1", "PJSIP/5215550009999@provider", "PJSIP", "SIP/provider/5551234567"),
        ("22.10.1", "SIP/provider/5215550009999", "SIP", "PJSIP/5551234567@provider"),
    ],
)
def test_an_operator_dial_string_of_the_other_sip_driver_is_refused(tmp_path, version, dial, other, example):
    # The production example's PJSIP/... on a chan_sip box: every transfer failed with "No channel type registered".
    rc, out = validate(tmp_path, asterisk_version=version, asterisk_operator_dial=dial)
    assert rc != 0
    assert f"asterisk_operator_dial '{dial}' dials through {other}" in out
    assert "No channel type registered" in out
    assert example in out
    assert "effective driver" not in out


@pytest.mark.parametrize(
    ("version", "dial"),
    [
        ("20.20.1", "SIP/provider/5215550009999"),
        ("20.20.1", "SIP/operador"),
        ("22.10.1", "PJSIP/5215550009999@provider"),
        ("20.20.1", "Local/100@operadores"),
    ],
)
def test_an_operator_dial_string_of_the_box_driver_passes(tmp_path, version, dial):
    rc, out = validate(tmp_path, asterisk_version=version, asterisk_operator_dial=dial)
    assert rc == 0, out


# ---- provider ranges on chan_sip -----------------------------------------------------------------------------


def test_a_range_too_large_for_chan_sip_is_refused_with_the_limit(tmp_path):
    trunk = {"host": "198.51.100.7", "provider_networks": ["198.51.100.0/27", "203.0.113.0/24"]}
    rc, out = validate(tmp_path, asterisk_version="20.20.1", asterisk_sip_trunk=trunk)
    assert rc != 0
    assert "provider_networks has 203.0.113.0/24:" in out
    assert "198.51.100.0/27" not in out.split("provider_networks has", 1)[1].split(":", 1)[0]
    assert "up to 32 addresses per range (a /27)" in out


def test_ranges_up_to_a_27_pass_on_chan_sip_and_any_range_on_pjsip(tmp_path):
    small = {"host": "198.51.100.7", "provider_networks": ["198.51.100.0/27", "203.0.113.0/28", "192.0.2.1"]}
    rc, out = validate(tmp_path, asterisk_version="20.20.1", asterisk_sip_trunk=small)
    assert rc == 0, out
    large = {"host": "198.51.100.7", "provider_networks": ["203.0.113.0/24"]}
    rc, out = validate(tmp_path, asterisk_version="22.10.1", asterisk_sip_trunk=large)
    assert rc == 0, out


# ---- asterisk_install_method: source -------------------------------------------------------------------------


@pytest.fixture
def tarball(tmp_path: Path) -> tuple[str, str]:
    """A file standing in for the tarball (validation only reads its checksum) and its sha256."""
    text = b"not really Asterisk, but a file with a known sha256\n"
    path = tmp_path / "asterisk-20.20.1.tar.xz"
    path.write_bytes(text)
    return str(path), hashlib.sha256(text).hexdigest()


def source(tmp_path: Path, **extra: Any) -> tuple[int, str]:
    return validate(tmp_path, asterisk_version="", asterisk_install_method="source", **extra)


def test_source_builds_asterisk_20_with_chan_sip(tmp_path, tarball):
    path, sha = tarball
    rc, out = source(tmp_path, asterisk_source_tarball=path, asterisk_source_sha256=sha)
    assert rc == 0, out
    assert "effective driver: chan_sip" in out


def test_source_from_the_official_download_needs_no_checksum_setting(tmp_path):
    rc, out = source(tmp_path)
    assert rc == 0, out
    assert "effective driver: chan_sip" in out


def test_source_tarball_with_the_wrong_sha256_is_refused_before_anything_is_copied(tmp_path, tarball):
    path, sha = tarball
    wrong = "0" * 64
    rc, out = source(tmp_path, asterisk_source_tarball=path, asterisk_source_sha256=wrong)
    assert rc != 0
    assert f"has sha256 {sha}, not asterisk_source_sha256 {wrong}" in out
    assert "Nothing was copied or built" in out


def test_source_tarball_that_does_not_exist(tmp_path):
    missing = str(tmp_path / "asterisk-20.20.1.tar.gz")
    rc, out = source(tmp_path, asterisk_source_tarball=missing, asterisk_source_sha256="a" * 64)
    assert rc != 0
    assert f"asterisk_source_tarball {missing} does not exist on the controller" in out


def test_source_tarball_without_sha256(tmp_path, tarball):
    path, _sha = tarball
    rc, out = source(tmp_path, asterisk_source_tarball=path)
    assert rc != 0
    assert "is required with asterisk_source_tarball" in out


@pytest.mark.parametrize("version", ["21.5.0", "18.20.2", "20.x"])
def test_source_builds_only_the_20_series(tmp_path, version):
    rc, out = source(tmp_path, asterisk_source_version=version)
    assert rc != 0
    assert f"asterisk_source_version must be a 20.x.y release (got '{version}')" in out


def test_source_has_no_pjsip(tmp_path):
    rc, out = source(tmp_path, asterisk_sip_driver="pjsip")
    assert rc != 0
    assert "builds Asterisk 20 without PJSIP" in out


def test_source_refuses_a_codec_it_does_not_build(tmp_path):
    rc, out = source(tmp_path, asterisk_sip_trunk={"host": "198.51.100.7", "codecs": ["ulaw", "g729"]})
    assert rc != 0
    assert "asterisk_sip_trunk.codecs has g729, which a source build does not carry" in out
    assert "asterisk_source_extra_modules" in out


@pytest.mark.parametrize("uri", ["ari", "metrics?x=1", "/metrics", "métricas"])
def test_a_metrics_path_asterisk_cannot_serve_is_refused(tmp_path, uri):
    rc, out = validate(tmp_path, asterisk_prometheus_uri=uri)
    assert rc != 0
    assert "asterisk_prometheus_uri must be a path of letters, digits, - and _" in out
    assert "effective driver" not in out


def test_a_metrics_password_prometheus_conf_cannot_hold_is_refused_without_showing_it(tmp_path):
    rc, out = validate(tmp_path, asterisk_prometheus_password="Clave;Secreta-123")
    assert rc != 0
    assert "asterisk_prometheus_password holds a ';'" in out
    assert "Clave;Secreta-123" not in out
    assert "effective driver" not in out


def test_good_metrics_settings_pass(tmp_path):
    rc, out = validate(
        tmp_path, asterisk_prometheus_uri="stats/asterisk", asterisk_prometheus_password="Q7mfx2LpTz9vW4"
    )
    assert rc == 0, out
    assert "effective driver: pjsip" in out


@pytest.mark.parametrize("workers", [0, 65])
def test_a_bad_number_of_bridge_workers_is_refused(tmp_path, workers):
    rc, out = validate(tmp_path, bridge_workers=workers)
    assert rc != 0
    assert f"asterisk_stasis_workers (bridge_workers) must be a whole number from 1 to 64 (got '{workers}')" in out


def test_a_number_of_workers_that_is_no_number_is_refused_by_the_argument_spec(tmp_path):
    rc, out = validate(tmp_path, bridge_workers="two")
    assert rc != 0
    assert "asterisk_stasis_workers" in out
    assert "int" in out


def test_the_dialplan_follows_bridge_workers(tmp_path):
    rc, out = validate(tmp_path, bridge_workers=3)
    assert rc == 0, out
