"""The bridge role's own settings stop it in its validation step with a message naming the fix, and no
secret shows in the output even at -vvv, whatever is wrong with the routers.

Runs the real role against localhost with --tags bridge_validate: only the argument specs and tasks/validate.yml
run, so nothing on this machine is touched. (The .env's settings are the product's to check:
test_env_validation.py and test_env_template.py.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from env_support import run_playbook

PASSWORDS = ("S3cret-of-nucleo", "An0ther-of-borde", "Th1rd-of-the-badly-named", "F0urth-of-tls")
ROUTERS: list[dict[str, Any]] = [
    {"name": "nucleo", "host": "10.0.0.1", "user": "centralita", "password": PASSWORDS[0]},
    {"name": "borde", "host": "", "user": "centralita", "password": PASSWORDS[1]},
    {"name": "Sucursal Norte", "host": "10.0.0.3", "user": "centralita", "password": PASSWORDS[2], "port": 99999},
    {"name": "tls", "host": "10.0.0.4", "password": PASSWORDS[3], "tls": "maybe", "passwd": "typo"},
]
GOOD = {"bridge_fake_realtime": True}


def validate(tmp_path: Path, *args: str, **extra: Any) -> tuple[int, str]:
    result = run_playbook("validate.yml", {**GOOD, **extra}, tmp_path, "--tags", "bridge_validate", *args)
    return result.returncode, result.stdout + result.stderr


def test_no_router_password_shows_at_vvv_whatever_is_wrong_with_the_routers(tmp_path: Path) -> None:
    rc, out = validate(tmp_path, "-vvv", bridge_routers=ROUTERS)
    assert rc == 0, out  # their fields are the product's to check, on the rendered .env
    for password in PASSWORDS:
        assert password not in out
    unnamed = [*ROUTERS, {"host": "10.0.0.9", "user": "centralita", "password": PASSWORDS[0]}]
    rc, out = validate(tmp_path, "-vvv", bridge_routers=unnamed)
    assert rc != 0
    assert "bridge_routers entry 4 (counting from 0) has no name" in " ".join(out.split())
    for password in PASSWORDS:
        assert password not in out
    broken = [*ROUTERS, {"name": "sur", "host": "10.0.0.9", "user": "centralita", "password": PASSWORDS[0] + "\nX=1"}]
    rc, out = validate(tmp_path, "-vvv", bridge_routers=broken)
    assert rc != 0
    assert "bridge_routers[4].password holds a line break" in " ".join(out.split())
    for password in PASSWORDS:
        assert password not in out


def test_the_wheelhouse_is_required(tmp_path: Path) -> None:
    rc, out = validate(tmp_path, bridge_wheelhouse_dir="")
    assert rc != 0
    assert "bridge_wheelhouse_dir is empty" in " ".join(out.split())


@pytest.mark.parametrize("days", [0, -5])
def test_retention_must_be_a_day_or_more(tmp_path: Path, days: int) -> None:
    rc, out = validate(tmp_path, bridge_records_retention_days=days)
    assert rc != 0
    flat = " ".join(out.split())
    assert f"bridge_records_retention_days ({days}) must be a whole number of days, 1 or more" in flat


def test_ip_allow_takes_addresses_not_names(tmp_path: Path) -> None:
    rc, out = validate(tmp_path, bridge_inbound_ip_allow=["203.0.113.0/24", "api.openai.com"])
    assert rc != 0
    flat = " ".join(out.split())
    assert "Not an IP address or prefix in bridge_inbound_ip_allow: api.openai.com." in flat
    assert "203.0.113.0/24," not in flat


def test_good_settings_pass_and_the_api_key_is_not_shown_at_vvv(tmp_path: Path) -> None:
    key = "sk-proj-Sh0uld-never-be-printed"
    rc, out = validate(tmp_path, "-vvv", bridge_fake_realtime=False, bridge_openai_api_key=key, bridge_ari_password="x")
    assert rc == 0, out
    assert "failed=0" in out
    assert key not in out


def cluster_validate(tmp_path: Path, localhost: dict[str, Any], pbx2: dict[str, Any]) -> tuple[int, str]:
    """Validate localhost as one box of a centralita group whose other box, pbx2, has the given variables."""
    inventory = tmp_path / "cluster.yml"
    inventory.write_text(
        json.dumps(
            {
                "centralita": {
                    "hosts": {
                        "localhost": {"ansible_connection": "local", **localhost},
                        "pbx2": {"ansible_connection": "local", **pbx2},
                    }
                }
            }
        )
    )
    rc, out = validate(tmp_path, "-i", str(inventory))
    return rc, " ".join(out.split())


def test_two_dialer_boxes_with_their_own_campaigns_are_accepted(tmp_path: Path) -> None:
    rc, out = cluster_validate(
        tmp_path,
        {"bridge_dialer_enabled": True, "bridge_dialer_campaigns": ["norte-"]},
        {"bridge_dialer_enabled": True, "bridge_dialer_campaigns": ["sur-", "cortados-"]},
    )
    assert rc == 0, out
    # A box without the dialer needs no list.
    rc, out = cluster_validate(tmp_path, {"bridge_dialer_enabled": True}, {"bridge_dialer_campaigns": []})
    assert rc == 0, out


@pytest.mark.parametrize(
    ("mine", "theirs", "named"),
    [
        (["norte-"], ["norte-2026"], "pbx2 ('norte-2026' overlaps 'norte-')"),
        (["sur-"], ["cortados-", "s"], "pbx2 ('s' overlaps 'sur-')"),
        (["norte-"], [], "pbx2 (no bridge_dialer_campaigns: any campaign)"),
        ([], ["sur-"], "this box has no bridge_dialer_campaigns (any campaign)"),
    ],
)
def test_two_dialer_boxes_that_could_dial_one_campaign_are_refused(
    tmp_path: Path, mine: list[str], theirs: list[str], named: str
) -> None:
    rc, out = cluster_validate(
        tmp_path,
        {"bridge_dialer_enabled": True, "bridge_dialer_campaigns": mine},
        {"bridge_dialer_enabled": True, "bridge_dialer_campaigns": theirs},
    )
    assert rc != 0
    assert "localhost and pbx2 all run the dialer (bridge_dialer_enabled), and two boxes could dial the same" in out
    assert named in out
    assert "Give each dialer box its own campaign name prefixes in bridge_dialer_campaigns" in out


def test_the_dialer_may_not_place_more_calls_at_once_than_the_box_carries(tmp_path: Path) -> None:
    rc, out = validate(tmp_path, bridge_dialer_enabled=True, bridge_dialer_max_concurrent=6, bridge_max_calls=5)
    assert rc != 0
    flat = " ".join(out.split())
    assert "bridge_dialer_max_concurrent (6) is above bridge_max_calls (5)" in flat
    assert "Set bridge_dialer_max_concurrent to 5 or less, or raise bridge_max_calls" in flat
    rc, out = validate(tmp_path, bridge_dialer_enabled=True, bridge_dialer_max_concurrent=5, bridge_max_calls=5)
    assert rc == 0, out
    # Without the dialer on this box its concurrency limits nothing.
    rc, out = validate(tmp_path, bridge_dialer_enabled=False, bridge_dialer_max_concurrent=6, bridge_max_calls=5)
    assert rc == 0, out


CERTIFICATE = "-----BEGIN CERTIFICATE-----\nMIIBxTCCAWugAwIBAgIU\n-----END CERTIFICATE-----"
KEY = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49-never-shown\n-----END PRIVATE KEY-----"


def test_the_console_listens_beyond_loopback_only_with_a_certificate_and_key(tmp_path: Path) -> None:
    rc, out = validate(tmp_path, bridge_web_listen="192.0.2.10")
    assert rc != 0
    flat = " ".join(out.split())
    assert "The console listens on 192.0.2.10: beyond the loopback address, where it needs HTTPS" in flat
    assert "set bridge_web_tls_certificate" in flat
    assert "bridge_web_tls_key" in flat
    rc, out = validate(tmp_path, bridge_web_tls_certificate=CERTIFICATE)
    assert rc != 0
    assert "bridge_web_tls_certificate and bridge_web_tls_key go together" in " ".join(out.split())
    rc, out = validate(
        tmp_path, "-vvv", bridge_web_listen="0.0.0.0", bridge_web_tls_certificate=CERTIFICATE, bridge_web_tls_key=KEY
    )
    assert rc == 0, out
    assert "never-shown" not in out
    rc, out = validate(tmp_path, bridge_web_listen="not-an-address")
    assert rc != 0
    assert "bridge_web_listen (not-an-address) must be an IP address" in " ".join(out.split())


def test_the_console_refuses_an_encrypted_key_a_key_for_a_certificate_and_names_as_clients(tmp_path: Path) -> None:
    tls = {"bridge_web_listen": "0.0.0.0", "bridge_web_tls_certificate": CERTIFICATE}
    for key in (KEY.replace("PRIVATE KEY", "ENCRYPTED PRIVATE KEY"), CERTIFICATE):
        rc, out = validate(tmp_path, "-vvv", bridge_web_tls_key=key, **tls)
        assert rc != 0
        assert "its unencrypted PEM private key" in " ".join(out.split())
        assert "never-shown" not in out
    rc, out = validate(tmp_path, bridge_web_tls_key=KEY, bridge_web_allow_from=["oficina.example"], **tls)
    assert rc != 0
    assert "bridge_web_allow_from takes IP addresses or prefixes only" in " ".join(out.split())


@pytest.mark.parametrize(
    ("extra", "shown"),
    [
        ({"bridge_workers": 0}, "bridge_workers (0) must be a whole number from 1 to 64"),
        ({"bridge_workers": 65}, "bridge_workers (65) must be a whole number from 1 to 64"),
        ({"bridge_workers": 2, "asterisk_stasis_workers": 3}, "the same as asterisk_stasis_workers (3)"),
        ({"bridge_workers": 3, "bridge_worker_metrics_port": 9463}, "(9463 to 9465, from bridge_worker_metrics_port)"),
    ],
)
def test_a_bad_number_of_workers_or_their_ports_is_refused(tmp_path: Path, extra: dict[str, Any], shown: str) -> None:
    rc, out = validate(tmp_path, **extra)
    assert rc != 0
    assert shown in " ".join(out.split())


def test_two_workers_with_their_default_ports_pass(tmp_path: Path) -> None:
    rc, out = validate(tmp_path, bridge_workers=2, asterisk_stasis_workers=2)
    assert rc == 0, out
