"""The role's own checks (tasks/validate.yml): only what the product cannot see, and never a secret shown.

Runs the real role against localhost with --tags bridge_validate: only the argument specs and
tasks/validate.yml run, so nothing on this machine changes. The runs are at -vvv, where Ansible prints
every task's result: a secret must not appear even there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from env_support import run_playbook

SECRET = "vault-S3CRET-value"
ROUTER_PASSWORD = "router-S3CRET-pw"
GOOD: dict[str, Any] = {
    "bridge_openai_api_key": f"sk-{SECRET}",
    "bridge_routers": [{"name": "nucleo", "host": "10.0.0.1", "user": "centralita", "password": ROUTER_PASSWORD}],
}


def validate(tmp_path: Path, **extra: Any) -> tuple[int, str]:
    result = run_playbook("validate.yml", {**GOOD, **extra}, tmp_path, "--tags", "bridge_validate", "-vvv")
    output = result.stdout + result.stderr
    for secret in (SECRET, ROUTER_PASSWORD, "ROUTEROS_WRITES=true", "INJECTED"):
        assert secret not in output, f"{secret!r} shown by the validation"
    return result.returncode, " ".join(output.split())


def test_a_good_inventory_passes(tmp_path: Path) -> None:
    rc, out = validate(tmp_path)
    assert rc == 0, out
    assert "failed=0" in out


def test_a_line_break_in_a_secret_is_refused_by_name(tmp_path: Path) -> None:
    rc, out = validate(tmp_path, bridge_openai_api_key=f"sk-{SECRET}\nROUTEROS_WRITES=true")
    assert rc != 0
    assert "bridge_openai_api_key holds a line break" in out
    assert "the rest of the value would become a setting of its own" in out


def test_line_breaks_anywhere_are_all_named(tmp_path: Path) -> None:
    routers = [
        {"name": "nucleo", "host": "10.0.0.1", "user": "centralita", "password": f"{ROUTER_PASSWORD}\rINJECTED=1"},
        {"name": "norte", "host": "10.0.0.2\n", "user": "centralita", "password": ROUTER_PASSWORD},
    ]
    rc, out = validate(
        tmp_path,
        bridge_routers=routers,
        bridge_dialer_windows="mon-fri 08:00-19:00\nsat 08:00-15:00",
        bridge_dialer_holidays=["2026-12-25", "01-01\n"],
    )
    assert rc != 0
    assert (
        "bridge_dialer_windows, bridge_dialer_holidays, bridge_routers[0].password, bridge_routers[1].host "
        "hold a line break"
    ) in out


def test_a_router_without_a_name_is_refused_without_its_password(tmp_path: Path) -> None:
    routers = [*GOOD["bridge_routers"], {"host": "10.0.0.2", "user": "centralita", "password": ROUTER_PASSWORD}]
    rc, out = validate(tmp_path, bridge_routers=routers)
    assert rc != 0
    assert "bridge_routers entry 1 (counting from 0) has no name" in out


def test_an_empty_api_key_names_the_vault_variable(tmp_path: Path) -> None:
    rc, out = validate(tmp_path, bridge_openai_api_key="")
    assert rc != 0
    assert "bridge_openai_api_key is empty: put the key in Ansible Vault (vault_bridge_openai_api_key)" in out
