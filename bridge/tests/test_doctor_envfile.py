"""env.settings, env.ws_ping and env.permissions on real files."""

from __future__ import annotations

import os
from pathlib import Path

from doctor_support import NOBODY, STAND_IN_USER, FakeBox, env_text, make_app_dir, options, unit_show

from centralita.doctor.context import Context
from centralita.doctor.envfile import check_permissions, check_settings, check_ws_ping
from centralita.doctor.model import Result, Status


def _run(tmp_path: Path, text: str, box: FakeBox | None = None) -> dict[str, Result]:
    app = make_app_dir(tmp_path, text)
    ctx = Context(options(tmp_path, box or FakeBox.healthy(), app / ".env"))
    checks = (check_settings, check_ws_ping, check_permissions)
    return {result.name: result for check in checks for result in check(ctx)}


def test_a_good_env_is_ok_on_all_three(tmp_path: Path) -> None:
    results = _run(tmp_path, env_text())
    assert {name: result.status for name, result in results.items()} == {
        "env.settings": Status.OK,
        "env.ws_ping": Status.OK,
        "env.permissions": Status.OK,
    }
    assert "ping every 20 s, timeout 10 s" in results["env.ws_ping"].seen


def test_ping_timeout_not_below_the_interval_fails_only_the_keepalive_check(tmp_path: Path) -> None:
    results = _run(tmp_path, env_text(WS_PING_INTERVAL="20", WS_PING_TIMEOUT="20"))
    ping = results["env.ws_ping"]
    assert ping.status is Status.FAIL
    assert "WS_PING_INTERVAL=20, WS_PING_TIMEOUT=20" in ping.seen
    assert "Ensure ping_interval > ping_timeout" in ping.seen
    assert "set WS_PING_INTERVAL=20 and WS_PING_TIMEOUT=10" in ping.fix
    assert "systemctl restart openai-inbound-calls" in ping.fix
    assert results["env.settings"].status is Status.OK
    assert "apart from the keepalive" in results["env.settings"].seen


def test_a_keepalive_that_is_not_a_number_fails_the_keepalive_check(tmp_path: Path) -> None:
    results = _run(tmp_path, env_text(WS_PING_TIMEOUT="ten"))
    assert results["env.ws_ping"].status is Status.FAIL
    assert "not a number" in results["env.ws_ping"].seen
    assert results["env.settings"].status is Status.OK


def test_other_problems_fail_the_settings_check_and_name_each_variable(tmp_path: Path) -> None:
    results = _run(tmp_path, env_text(OPENAI_API_KEY="", ARI_URL="localhost:8088"))
    settings = results["env.settings"]
    assert settings.status is Status.FAIL
    assert "OPENAI_API_KEY is missing" in settings.seen
    assert "ARI_URL is 'localhost:8088'" in settings.seen
    assert "systemctl restart openai-inbound-calls" in settings.fix
    assert results["env.ws_ping"].status is Status.OK


def test_a_missing_env_fails_settings_and_skips_the_rest(tmp_path: Path) -> None:
    app = make_app_dir(tmp_path, env_text())
    ctx = Context(options(tmp_path, FakeBox.healthy(), app / "missing.env"))
    (settings,) = check_settings(ctx)
    assert settings.status is Status.FAIL
    assert "does not exist" in settings.seen
    assert "--env-file" in settings.fix
    (ping,) = check_ws_ping(ctx)
    assert (ping.status, ping.seen.startswith("not checked:")) == (Status.WARN, True)
    assert check_permissions(ctx)[0].status is Status.WARN


def test_a_readable_env_fails_and_the_repair_makes_it_0600(tmp_path: Path) -> None:
    results = _run(tmp_path, env_text())
    env = tmp_path / "app" / ".env"
    env.chmod(0o644)
    ctx = Context(options(tmp_path, FakeBox.healthy(), env))
    (result,) = check_permissions(ctx)
    assert result.status is Status.FAIL
    assert "mode 0644 lets other users read the API key" in result.seen
    assert result.fix == f"chmod 0600 {env}"
    assert result.repair is not None
    assert result.repair() == [f"chmod 0600 {env} (was 0644)"]
    assert env.stat().st_mode & 0o777 == 0o600
    assert results["env.permissions"].status is Status.OK


def test_an_env_the_service_user_does_not_own_fails_and_the_repair_gives_it_back(tmp_path: Path) -> None:
    box = FakeBox.healthy()
    box.units["openai-inbound-calls"] = unit_show(user=STAND_IN_USER)
    app = make_app_dir(tmp_path, env_text())
    env = app / ".env"
    ctx = Context(options(tmp_path, box, env))
    (result,) = check_permissions(ctx)
    assert result.status is Status.FAIL
    assert f"owned by root:root, but openai-inbound-calls runs as {STAND_IN_USER}" in result.seen
    assert result.fix.startswith(f"chown {STAND_IN_USER}: {env}")
    assert result.repair is not None
    assert result.repair() == [f"chown -h nobody:nogroup {env} (was root:root)"]
    assert (os.stat(env).st_uid, os.stat(env).st_mode & 0o777) == (NOBODY, 0o600)
    assert check_permissions(Context(options(tmp_path, box, env)))[0].status is Status.OK


def test_a_copy_given_with_env_file_need_not_belong_to_the_service_user(tmp_path: Path) -> None:
    box = FakeBox.healthy()
    app = make_app_dir(tmp_path, env_text())
    box.units["openai-inbound-calls"] = unit_show(user=STAND_IN_USER, env_file=str(app / ".env"))
    copy = tmp_path / "try.env"
    copy.write_text(env_text())
    copy.chmod(0o600)
    (result,) = check_permissions(Context(options(tmp_path, box, copy)))
    assert (result.status, result.seen) == (Status.OK, f"{copy} is root:root 0600")
    (result,) = check_permissions(Context(options(tmp_path, box, app / ".env")))
    assert result.status is Status.FAIL
    assert f"openai-inbound-calls runs as {STAND_IN_USER}" in result.seen
