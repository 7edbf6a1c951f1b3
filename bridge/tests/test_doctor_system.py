"""bridge.* checks: the services (recorded systemd output), the log (a real file), the code root runs and the
operator's prompts (real owners, changed for real) and root's git safe.directory."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest
from doctor_support import NOBODY, FakeBox, env_text, make_app_dir, options

from centralita.doctor import system
from centralita.doctor.context import Context
from centralita.doctor.model import RepairError, Result, Status

NOW = datetime(2026, 11, 25, 15, 0, 0)


def _ctx(tmp_path: Path, box: FakeBox | None = None, **env: str) -> Context:
    app = tmp_path / "app"
    if not app.exists():
        make_app_dir(tmp_path, env_text(**env))
    return Context(options(tmp_path, box or FakeBox.healthy(), app / ".env", now=lambda: NOW))


def _one(results: list[Result]) -> Result:
    assert len(results) == 1
    return results[0]


# ---- services ----------------------------------------------------------------------------------------


def test_inbound_active_and_registered(tmp_path: Path) -> None:
    result = _one(system.check_inbound_service(_ctx(tmp_path)))
    assert (result.status, result.seen) == (
        Status.OK,
        "openai-inbound-calls is active (running), Stasis app centralita registered",
    )


def test_inbound_stopped_fails_and_the_repair_starts_it_and_waits_for_the_app(tmp_path: Path) -> None:
    box = FakeBox.healthy()
    box.stop("openai-inbound-calls")
    result = _one(system.check_inbound_service(_ctx(tmp_path, box)))
    assert result.status is Status.FAIL
    assert result.seen.startswith("openai-inbound-calls is inactive (dead): calls go to the operator context")
    assert result.fix.startswith("systemctl start openai-inbound-calls; ")
    assert "journalctl -u openai-inbound-calls -n 50 --no-pager" in result.fix
    assert result.repair is not None
    assert result.repair() == ["systemctl start openai-inbound-calls"]
    assert box.calls[-1] == ("asterisk", "-rx", "ari show apps")
    assert _one(system.check_inbound_service(_ctx(tmp_path, box))).status is Status.OK


def test_a_start_that_fails_says_where_to_read_why(tmp_path: Path) -> None:
    box = FakeBox.healthy()
    box.stop("openai-inbound-calls")
    box.start_fails = True
    result = _one(system.check_inbound_service(_ctx(tmp_path, box)))
    assert result.repair is not None
    with pytest.raises(RepairError, match=r"journalctl -u openai-inbound-calls") as caught:
        result.repair()
    assert "start openai-inbound-calls failed (Job for openai-inbound-calls.service failed" in str(caught.value)


def test_inbound_active_but_not_registered_fails(tmp_path: Path) -> None:
    box = FakeBox.healthy()
    box.app_registered = False
    result = _one(system.check_inbound_service(_ctx(tmp_path, box)))
    assert result.status is Status.FAIL
    assert "Stasis app centralita is not registered" in result.seen
    assert result.repair is None


def test_inbound_not_installed_fails(tmp_path: Path) -> None:
    box = FakeBox.healthy()
    box.uninstall("openai-inbound-calls")
    result = _one(system.check_inbound_service(_ctx(tmp_path, box)))
    assert result.status is Status.FAIL
    assert result.seen == "openai-inbound-calls.service is not-found"


def test_outbound_not_installed_is_a_warning(tmp_path: Path) -> None:
    box = FakeBox.healthy()
    box.uninstall("openai-outbound-calls")
    result = _one(system.check_outbound_service(_ctx(tmp_path, box)))
    assert result.status is Status.WARN
    assert "not installed" in result.seen


def test_outbound_installed_but_stopped_fails_and_can_be_started(tmp_path: Path) -> None:
    box = FakeBox.healthy()
    box.stop("openai-outbound-calls")
    result = _one(system.check_outbound_service(_ctx(tmp_path, box)))
    assert result.status is Status.FAIL
    assert result.repair is not None
    assert result.repair() == ["systemctl start openai-outbound-calls"]


# ---- bridge.log --------------------------------------------------------------------------------------


def test_log_errors_in_the_window_are_counted_and_the_last_one_shown(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    (tmp_path / "inbound_openai.log").write_text(
        "2026-11-24 09:00:00,001 ERROR call=- too old to count\n"
        "2026-11-25 14:03:07,123 INFO call=1764079387.12 Iniciando conexión WebSocket con OpenAI\n"
        "2026-11-25 14:03:08,200 ERROR call=1764079387.12 Realtime error: server_error\n"
        "Traceback (most recent call last):\n"
        "2026-11-25 14:10:00,000 WARNING call=- ARI events connection lost; reconnecting in 1 s\n"
        "2026-11-25 14:20:00,500 CRITICAL call=- Error en inicio: Ensure ping_interval > ping_timeout\n",
        encoding="utf-8",
    )
    result = _one(system.check_log(ctx))
    assert result.status is Status.WARN
    assert result.seen.startswith(f"2 ERROR line(s) in the last 24 h in {tmp_path / 'inbound_openai.log'}; last: ")
    assert result.seen.endswith("CRITICAL call=- Error en inicio: Ensure ping_interval > ping_timeout")
    assert "journalctl -u openai-inbound-calls --since '24h ago'" in result.fix


def test_a_quiet_log_is_ok_and_a_missing_one_is_a_warning(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    assert "does not exist yet" in _one(system.check_log(ctx)).seen
    (tmp_path / "inbound_openai.log").write_text("2026-11-25 14:03:07,123 INFO call=- started\n")
    assert _one(system.check_log(ctx)).status is Status.OK


# ---- bridge.code ------------------------------------------------------------------------------------


def test_the_code_root_runs_is_roots(tmp_path: Path) -> None:
    result = _one(system.check_code(_ctx(tmp_path)))
    assert result.status is Status.OK
    assert result.seen == f"{tmp_path / 'app'}, its venv and wheelhouse are root's and writable by root alone"


def test_a_venv_the_operator_could_change_fails_and_is_not_given_to_root_blindly(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    app = tmp_path / "app"
    os.chown(app / "venv" / "bin", NOBODY, NOBODY)
    (app / "wheels").chmod(0o775)
    result = _one(system.check_code(ctx))
    assert result.status is Status.FAIL
    assert f"root runs {app}/venv/bin/centralita, but 2 path(s) there" in result.seen
    assert "venv/bin (nobody:nogroup 0755)" in result.seen
    assert "wheels (root:root 0775)" in result.seen
    assert "whoever can change them can run code as root" in result.seen
    assert "ansible-playbook site.yml --tags bridge" in result.fix
    # Handing root code someone else may have changed would make root run it: the playbook rebuilds it instead.
    assert result.repair is None


def test_an_app_directory_others_may_write_fails(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    app = tmp_path / "app"
    os.chown(app, NOBODY, NOBODY)
    result = _one(system.check_code(ctx))
    assert result.status is Status.FAIL
    assert f"{app} (nobody:nogroup 0755)" in result.seen


# ---- bridge.app_dir ----------------------------------------------------------------------------------


def test_prompts_owned_by_app_owner(tmp_path: Path) -> None:
    result = _one(system.check_app_dir(_ctx(tmp_path)))
    assert result.status is Status.OK
    assert result.seen == f"{tmp_path / 'app' / 'prompts'} and everything under it belong to nobody"


def test_root_owned_prompts_fail_and_the_repair_chowns_them_leaving_groups(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    prompts = tmp_path / "app" / "prompts"
    prompt = prompts / "asistente_entrante.es.txt"
    os.chown(prompt, 0, 0)
    new = prompts / "notes.txt"
    new.write_text("root wrote this\n")
    result = _one(system.check_app_dir(ctx))
    assert result.status is Status.FAIL
    assert result.seen.startswith(
        f"2 path(s) in {prompts} not owned by nobody (owned by root): asistente_entrante.es.txt, notes.txt"
    )
    assert result.fix == (
        f"centralita doctor --fix gives them back without following links; by hand: chown -R -h nobody {prompts}"
    )
    assert result.repair is not None
    assert result.repair() == [f"chown -h nobody on 2 path(s) under {prompts}: asistente_entrante.es.txt, notes.txt"]
    assert (prompt.stat().st_uid, prompt.stat().st_gid) == (NOBODY, 0)
    assert _one(system.check_app_dir(_ctx(tmp_path))).status is Status.OK


def test_app_owner_unset_or_unknown(tmp_path: Path) -> None:
    result = _one(system.check_app_dir(_ctx(tmp_path / "a", APP_OWNER="")))
    assert result.status is Status.WARN
    assert "APP_OWNER is not set" in result.seen
    result = _one(system.check_app_dir(_ctx(tmp_path / "b", APP_OWNER="no-such-user-here")))
    assert result.status is Status.FAIL
    assert "adduser no-such-user-here" in result.fix


# ---- bridge.git --------------------------------------------------------------------------------------


def test_roots_git_must_not_trust_the_operators_checkout(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    prompts = tmp_path / "app" / "prompts"
    assert _one(system.check_git(ctx)).seen == f"no git checkout in {tmp_path / 'app'} or its prompts/"
    (prompts / ".git").mkdir()
    os.chown(prompts / ".git", NOBODY, NOBODY)
    result = _one(system.check_git(ctx))
    assert result.status is Status.OK
    assert f"{prompts} is nobody's git checkout; root's git does not trust it, as it should not" in result.seen
    assert f"sudo -u nobody git -C {prompts} status" in result.seen
    for entry in (str(prompts), "*"):
        trusting = FakeBox.healthy()
        trusting.safe_directories = (entry,)
        result = _one(system.check_git(_ctx(tmp_path, trusting)))
        assert result.status is Status.FAIL, entry
        assert f"root's git trusts {prompts} (safe.directory={entry})" in result.seen
        assert "runs nobody's hooks and configuration as root" in result.seen
        assert f"git config --global --unset-all safe.directory '^{entry}$'" in result.fix


def test_roots_own_checkout_is_fine(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    (tmp_path / "app" / ".git").mkdir()
    assert _one(system.check_git(ctx)).status is Status.OK


def test_with_workers_every_workers_app_is_checked(tmp_path: Path) -> None:
    """WORKERS=3: worker 1's app is ARI_APP, the others ARI_APP-2 and ARI_APP-3 (calls/workers.py)."""
    box = FakeBox.healthy()
    header = "Application Name         \n=========================\n"
    listed = "".join(f"{app:<25}\n" for app in ("centralita", "centralita-3", "centralita-2"))
    box.rx["ari show apps"] = header + listed
    ctx = _ctx(tmp_path, box, WORKERS="3", WORKER_METRICS_PORT="9470")
    result = _one(system.check_inbound_service(ctx))
    assert (result.status, result.seen) == (
        Status.OK,
        "openai-inbound-calls is active (running), 3 workers, Stasis apps centralita, centralita-2, centralita-3 "
        "registered",
    )
    # One worker dead (the supervisor restarts it): a warning, the others take its share of the calls.
    box.rx["ari show apps"] = header + "".join(f"{app:<25}\n" for app in ("centralita", "centralita-3"))
    result = _one(system.check_inbound_service(_ctx(tmp_path, box, WORKERS="3")))
    assert result.status is Status.WARN
    assert "the Stasis app of 1 of its 3 workers is not registered in Asterisk (centralita-2)" in result.seen
    assert "grep 'worker=centralita-2 '" in result.fix
