"""Bad inventory input stops the role in its validation step, with a message naming the fix.

Runs the real role against localhost with --tags asterisk_validate: only the argument specs and
tasks/validate.yml run, so nothing on this machine is touched.
"""

from __future__ import annotations

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
