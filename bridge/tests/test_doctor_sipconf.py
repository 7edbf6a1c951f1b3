"""Reading Asterisk's files: sections, comments, templates, the trunk's host and the SIP driver."""

from __future__ import annotations

from pathlib import Path

import pytest
from doctor_support import MODULES_CONF, PJSIP_TRUNK_CONF, REGISTRATION_BLOCK

from centralita.doctor.sipconf import (
    Driver,
    asterisk_major,
    chan_sip_trunk,
    detect_driver,
    parse_conf,
    pjsip_trunk,
    uri_host,
)

SIP_CONF = """\
; Ansible managed
[general]
context=centralita-refuse
allowguest=no
register => centralita:not\\;secret@sip.example.net:5060/centralita

[provider-template](!)
type=peer
port=5060
context=from-voip

[provider](provider-template)
host=sip.example.net

[provider-2](provider-template)
host=198.51.100.7
"""


def test_sections_repeat_and_comments_and_escaped_semicolons() -> None:
    sections = parse_conf(PJSIP_TRUNK_CONF)
    assert [s.name for s in sections][:2] == ["provider", "provider"]
    assert [s.get("type") for s in sections[:2]] == ["endpoint", "aor"]
    auth = next(s for s in sections if s.name == "provider-auth")
    assert auth.get("password") == "not;a-real-secret"


def test_arrow_options_templates_and_parents() -> None:
    sections = {s.name: s for s in parse_conf(SIP_CONF)}
    assert sections["general"].get_all("register") == ["centralita:not;secret@sip.example.net:5060/centralita"]
    assert sections["provider-template"].template
    assert sections["provider"].parents == ("provider-template",)
    modules = parse_conf(MODULES_CONF)[0]
    assert modules.get_all("noload") == ["chan_sip.so", "chan_iax2.so"]


@pytest.mark.parametrize(
    ("uri", "host"),
    [
        ("sip:127.0.0.1:5070", "127.0.0.1"),
        ("sip:centralita@sip.example.net;transport=udp", "sip.example.net"),
        ("<sips:trunk.example.net>", "trunk.example.net"),
        ("sip:[2001:db8::5]:5060", "2001:db8::5"),
        ("sip:", None),
    ],
)
def test_uri_host(uri: str, host: str | None) -> None:
    assert uri_host(uri) == host


def test_pjsip_trunk_without_and_with_registration(tmp_path: Path) -> None:
    path = tmp_path / "pjsip_trunk.conf"
    path.write_text(PJSIP_TRUNK_CONF)
    trunk = pjsip_trunk(path)
    assert (trunk.name, trunk.host, trunk.registration, trunk.context) == ("provider", "127.0.0.1", False, "from-voip")
    path.write_text(PJSIP_TRUNK_CONF + REGISTRATION_BLOCK)
    trunk = pjsip_trunk(path)
    assert (trunk.host, trunk.registration) == ("sip.example.net", True)


def test_chan_sip_trunk_inherits_from_its_template(tmp_path: Path) -> None:
    path = tmp_path / "sip.conf"
    path.write_text(SIP_CONF)
    trunk = chan_sip_trunk(path)
    assert (trunk.name, trunk.host, trunk.registration, trunk.context) == (
        "provider",
        "sip.example.net",
        True,
        "from-voip",
    )


def test_driver_from_modules_conf_wins_and_the_version_is_not_asked(tmp_path: Path) -> None:
    (tmp_path / "modules.conf").write_text(MODULES_CONF)
    asked: list[bool] = []

    def version() -> str:
        asked.append(True)
        return "Asterisk 20.1.0"

    setup = detect_driver(tmp_path, version)
    assert (setup.driver, setup.detected_from, asked) == (Driver.PJSIP, "modules.conf", [])
    (tmp_path / "modules.conf").write_text("[modules]\nautoload=yes\nrequire => chan_sip.so\nnoload => res_pjsip.so\n")
    assert detect_driver(tmp_path, lambda: None).driver is Driver.CHAN_SIP


def test_driver_from_the_version_then_from_the_files(tmp_path: Path) -> None:
    (tmp_path / "modules.conf").write_text("[modules]\nautoload=yes\n")
    assert detect_driver(tmp_path, lambda: "Asterisk 22.5.2").driver is Driver.PJSIP
    (tmp_path / "sip.conf").write_text(SIP_CONF)
    setup = detect_driver(tmp_path, lambda: "Asterisk 20.9.3")
    assert (setup.driver, setup.detected_from) == (Driver.CHAN_SIP, "sip.conf is present")
    assert Driver.CHAN_SIP.registrations_command == "sip show registry"


def test_asterisk_major() -> None:
    assert asterisk_major("Asterisk 22.5.2") == 22
    assert asterisk_major("Asterisk certified/18.9-cert5") == 18
    assert asterisk_major("asterisk: command not found") is None
