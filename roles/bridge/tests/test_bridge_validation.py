"""Bad inventory input stops the bridge role in its validation step, with a message naming the fix, and no
secret in the output even at -vvv.

Runs the real role against localhost with --tags bridge_validate: only the argument specs and tasks/validate.yml
run, so nothing on this machine is touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from bridge_role import run_playbook

PASSWORDS = ("S3cret-of-nucleo", "An0ther-of-borde", "Th1rd-of-the-badly-named", "F0urth-of-tls")
ROUTERS: list[dict[str, Any]] = [
    {"name": "nucleo", "host": "10.0.0.1", "user": "centralita", "password": PASSWORDS[0]},
    {"name": "borde", "host": "", "user": "centralita", "password": PASSWORDS[1]},
    {"name": "Sucursal Norte", "host": "10.0.0.3", "user": "centralita", "password": PASSWORDS[2], "port": 99999},
    {"name": "tls", "host": "10.0.0.4", "password": PASSWORDS[3], "tls": "maybe", "passwd": "typo"},
    {"name": "sin_clave", "host": "10.0.0.5", "user": "centralita"},
]
GOOD = {"bridge_fake_realtime": True, "bridge_wheelhouse_dir": "/tmp/wheels"}


def validate(tmp_path: Path, *args: str, **extra: Any) -> tuple[int, str]:
    result = run_playbook("validate.yml", {**GOOD, **extra}, tmp_path, "--tags", "bridge_validate", *args)
    return result.returncode, result.stdout + result.stderr


def test_good_settings_pass(tmp_path: Path) -> None:
    rc, out = validate(tmp_path, bridge_routers=ROUTERS[:1])
    assert rc == 0, out
    assert "bridge settings valid" in out


def test_bad_routers_are_named_with_their_fields_and_no_password_shows_even_at_vvv(tmp_path: Path) -> None:
    rc, out = validate(tmp_path, "-vvv", bridge_routers=ROUTERS)
    assert rc != 0
    flat = " ".join(out.split())
    assert "router borde: host is missing or empty" in flat
    assert "router #3 of bridge_routers: name must be lower-case letters" in flat
    assert "router #3 of bridge_routers: port must be a number from 1 to 65535" in flat
    assert "router tls: user is missing or empty" in flat
    assert "router tls: tls must be true or false" in flat
    assert "router tls: unknown field(s) passwd" in flat
    assert "router sin_clave: password is missing or empty" in flat
    assert "Sucursal Norte" not in out  # an invalid name could be anything: it goes by position
    for password in PASSWORDS:
        assert password not in out


def test_valid_routers_show_no_password_at_vvv_either(tmp_path: Path) -> None:
    rc, out = validate(tmp_path, "-vvv", bridge_routers=ROUTERS[:1])
    assert rc == 0, out
    assert PASSWORDS[0] not in out


def test_duplicate_router_names_are_named(tmp_path: Path) -> None:
    rc, out = validate(tmp_path, bridge_routers=[ROUTERS[0], {**ROUTERS[0], "host": "10.0.0.9"}])
    assert rc != 0
    assert "Two routers in bridge_routers are both named nucleo" in " ".join(out.split())
    assert PASSWORDS[0] not in out


def test_the_wheelhouse_is_required(tmp_path: Path) -> None:
    rc, out = validate(tmp_path, bridge_wheelhouse_dir="")
    assert rc != 0
    assert "bridge_wheelhouse_dir is empty" in " ".join(out.split())


@pytest.mark.parametrize("days", [0, -5])
def test_retention_must_be_a_day_or_more(tmp_path: Path, days: int) -> None:
    rc, out = validate(tmp_path, bridge_records_retention_days=days)
    assert rc != 0
    assert f"bridge_records_retention_days ({days}) must be a whole number of days, 1 or more" in " ".join(out.split())


def test_ip_allow_takes_addresses_not_names(tmp_path: Path) -> None:
    rc, out = validate(tmp_path, bridge_inbound_ip_allow=["203.0.113.0/24", "api.openai.com"])
    assert rc != 0
    flat = " ".join(out.split())
    assert "Not an IP address or prefix in bridge_inbound_ip_allow: api.openai.com." in flat
    assert "203.0.113.0/24," not in flat


def test_the_api_key_is_not_shown_at_vvv(tmp_path: Path) -> None:
    key = "sk-proj-Sh0uld-never-be-printed"
    rc, out = validate(tmp_path, "-vvv", bridge_fake_realtime=False, bridge_openai_api_key=key, bridge_ari_password="x")
    assert rc == 0, out
    assert key not in out
