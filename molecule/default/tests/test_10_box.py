"""The provisioned box: packages, service, file ownership, SIP trunk, dialplan and ARI."""

from __future__ import annotations

import json

import pytest
from conftest import BOX

testinfra_hosts = [f"podman://{BOX}"]

RENDERED = [
    "extensions.conf",
    "http.conf",
    "ari.conf",
    "modules.conf",
    "logger.conf",
    "rtp.conf",
    "pjsip.conf",
    "pjsip_trunk.conf",
]


def test_asterisk_22_is_installed(host):
    pkg = host.package("asterisk")
    assert pkg.is_installed
    assert pkg.version.split(":")[-1].startswith("22.")


def test_asterisk_is_running_and_enabled(host):
    svc = host.service("asterisk")
    assert svc.is_running
    assert svc.is_enabled


@pytest.mark.parametrize("name", RENDERED)
def test_rendered_file_is_asterisk_owned_0640(host, name):
    f = host.file(f"/etc/asterisk/{name}")
    assert f.is_file
    assert (f.user, f.group, f.mode) == ("asterisk", "asterisk", 0o640)
    assert f.contains("Ansible managed")


def test_nothing_under_etc_asterisk_belongs_to_another_user(host):
    stray = host.check_output("find /etc/asterisk ! -user asterisk -o ! -group asterisk")
    assert stray == ""


def test_no_sip_conf_on_asterisk_22(host):
    # chan_sip does not exist in Asterisk 22: the role renders pjsip only.
    assert not host.file("/etc/asterisk/sip.conf").exists
    modules = host.file("/etc/asterisk/modules.conf").content_string
    assert "noload => chan_sip.so" in modules
    assert "require => chan_pjsip.so" in modules


def test_chan_pjsip_is_loaded(host):
    out = host.check_output("asterisk -rx 'module show like chan_pjsip'")
    assert "chan_pjsip.so" in out
    assert "Running" in out


def test_trunk_endpoint_is_listed_with_its_identify(host):
    out = host.check_output("asterisk -rx 'pjsip show endpoints'")
    assert "Endpoint:  provider" in out
    assert "Match: 127.0.0.1/32" in out
    assert "transport-udp" in out


def test_no_anonymous_endpoint(host):
    out = host.check_output("asterisk -rx 'pjsip show endpoints'")
    assert "anonymous" not in out


def test_from_voip_routes_to_the_stasis_app(host):
    out = host.check_output("asterisk -rx 'dialplan show from-voip'")
    assert "Stasis(centralita,inbound,${CENTRALITA_DID})" in out
    # Caller input never reaches the dialplan unfiltered.
    assert "Set(CENTRALITA_DID=${FILTER(0-9+,${EXTEN})})" in out


def test_outbound_and_operator_contexts_exist(host):
    outbound = host.check_output("asterisk -rx 'dialplan show centralita-outbound'")
    assert "Dial(PJSIP/${CENTRALITA_NUMBER}@${CENTRALITA_TRUNK},45)" in outbound
    operator = host.check_output("asterisk -rx 'dialplan show centralita-operator'")
    assert "Playback(tt-allbusy)" in operator


def test_inbound_context_cannot_reach_the_outbound_route(host):
    out = host.check_output("asterisk -rx 'dialplan show from-voip'")
    assert "Include" not in out
    assert "Dial(" not in out


def test_ari_secret_is_root_only_and_stored_as_crypt(host, ari_secret):
    secret_file = host.file("/etc/centralita/ari-password")
    assert (secret_file.user, secret_file.group, secret_file.mode) == ("root", "root", 0o600)
    assert len(ari_secret) >= 32
    ari_conf = host.file("/etc/asterisk/ari.conf").content_string
    assert "password_format=crypt" in ari_conf
    assert "password=$6$" in ari_conf
    # Asterisk checks the hash on every ARI request: the glibc default cost (no rounds= field), not more.
    assert "rounds=" not in ari_conf
    assert ari_secret not in ari_conf


def test_ari_answers_on_loopback_with_the_generated_credentials(host, ari_secret):
    out = host.check_output(
        f"curl -s -u centralita:{ari_secret} -w '\\n%{{http_code}}' http://127.0.0.1:8088/ari/asterisk/info"
    )
    body, code = out.rsplit("\n", 1)
    assert code == "200"
    assert "system" in json.loads(body)


def test_ari_refuses_a_wrong_password(host):
    code = host.check_output(
        "curl -s -o /dev/null -w '%{http_code}' -u centralita:wrong http://127.0.0.1:8088/ari/asterisk/info"
    )
    assert code == "401"


def test_ari_listens_on_no_other_address(host):
    listeners = host.check_output("ss -Hltn 'sport = :8088'").splitlines()
    assert len(listeners) == 1
    assert "127.0.0.1:8088" in listeners[0]
    box_address = host.check_output("ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | head -1")
    assert box_address
    refused = host.run(f"curl -s -m 3 -o /dev/null http://{box_address}:8088/ari/asterisk/info")
    assert refused.rc == 7  # connection refused: nothing listens there


def test_security_log_is_written(host):
    logger = host.file("/etc/asterisk/logger.conf").content_string
    assert "security => security" in logger
    assert host.file("/var/log/asterisk/security").exists
