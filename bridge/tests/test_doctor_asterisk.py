"""The Asterisk checks against recorded Asterisk 22 output, real files and a real local HTTP server for ARI."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from doctor_support import (
    ARI_PASSWORD,
    MODULE_PJSIP_MISSING,
    MODULE_SIP_RUNNING,
    NO_CONTEXT,
    NOBODY,
    REGISTRATIONS_REJECTED,
    SIP_REGISTRY_OK,
    FakeBox,
    ari_server,
    env_text,
    make_app_dir,
    make_asterisk_dir,
    options,
    unit_show,
)

from centralita.doctor import asterisk
from centralita.doctor.context import Context
from centralita.doctor.model import Result, Status
from centralita.doctor.sipconf import Driver


@pytest.fixture
def ari_url() -> Iterator[str]:
    with ari_server() as url:
        yield url


def _ctx(tmp_path: Path, box: FakeBox, registration: bool = False, **env: str) -> Context:
    if not (tmp_path / "asterisk").exists():
        make_asterisk_dir(tmp_path, registration=registration)
    app = make_app_dir(tmp_path, env_text(**env)) if not (tmp_path / "app").exists() else tmp_path / "app"
    return Context(options(tmp_path, box, app / ".env"))


def _one(results: list[Result]) -> Result:
    assert len(results) == 1
    return results[0]


# ---- asterisk.service --------------------------------------------------------------------------------


def test_service_ok_when_the_cli_answers(tmp_path: Path) -> None:
    result = _one(asterisk.check_service(_ctx(tmp_path, FakeBox.healthy())))
    assert result.status is Status.OK
    assert result.seen.startswith("running: Asterisk 22.5.2")


def test_a_stopped_asterisk_fails_with_start_and_the_repair_starts_it(tmp_path: Path) -> None:
    box = FakeBox.healthy()
    box.stop("asterisk")
    ctx = _ctx(tmp_path, box)
    result = _one(asterisk.check_service(ctx))
    assert result.status is Status.FAIL
    assert "asterisk.service is inactive (dead)" in result.seen
    assert result.fix.startswith("systemctl start asterisk")
    for check in (asterisk.check_sip_module, asterisk.check_dialplan, asterisk.check_channels):
        skipped = _one(check(ctx))
        assert skipped.status is Status.WARN
        assert skipped.seen == "not checked: Asterisk does not answer asterisk -rx"
    assert result.repair is not None
    assert result.repair() == ["systemctl start asterisk"]
    assert ("systemctl", "start", "asterisk.service") in box.calls
    assert ("asterisk", "-rx", "core waitfullybooted") in box.calls
    assert _one(asterisk.check_service(_ctx(tmp_path, box))).status is Status.OK


def test_an_active_unit_whose_cli_does_not_answer_is_not_repaired(tmp_path: Path) -> None:
    box = FakeBox.healthy()
    box.asterisk_up = False
    result = _one(asterisk.check_service(_ctx(tmp_path, box)))
    assert result.status is Status.FAIL
    assert "is active but asterisk -rx does not answer (Unable to connect to remote asterisk" in result.seen
    assert result.repair is None
    assert "systemctl restart asterisk" in result.fix


# ---- asterisk.files ----------------------------------------------------------------------------------


def test_files_ok_as_rendered(tmp_path: Path) -> None:
    result = _one(asterisk.check_files(_ctx(tmp_path, FakeBox.healthy())))
    assert result.status is Status.OK
    assert "8 rendered files" in result.seen


def test_a_root_owned_trunk_file_fails_with_the_exact_fix_and_is_repaired(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, FakeBox.healthy())
    trunk = tmp_path / "asterisk" / "pjsip_trunk.conf"
    os.chown(trunk, 0, 0)
    result = _one(asterisk.check_files(ctx))
    assert result.status is Status.FAIL
    assert f"{trunk} is root:root 0640" in result.seen
    assert result.fix.startswith(f"chown nobody:nogroup {trunk} && chmod 0640 {trunk}; then")
    assert "systemctl restart asterisk" in result.fix
    assert result.repair is not None
    assert result.repair() == [f"chown -h nobody:nogroup {trunk} (was root:root)"]
    assert (trunk.stat().st_uid, trunk.stat().st_gid) == (NOBODY, NOBODY)
    assert _one(asterisk.check_files(_ctx(tmp_path, FakeBox.healthy()))).status is Status.OK


def test_a_world_readable_rendered_file_and_a_stray_root_file(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, FakeBox.healthy())
    directory = tmp_path / "asterisk"
    (directory / "extensions.conf").chmod(0o644)
    stray = directory / "custom.conf"
    stray.write_text("; made by root with an editor\n")
    stray.chmod(0o644)
    result = _one(asterisk.check_files(ctx))
    assert result.status is Status.FAIL
    assert f"{directory / 'extensions.conf'} is nobody:nogroup 0644" in result.seen
    assert f"{stray} is root:root" in result.seen
    assert f"chown nobody:nogroup {stray}" in result.fix
    assert result.repair is not None
    assert sorted(result.repair()) == sorted(
        [
            f"chmod 0640 {directory / 'extensions.conf'} (was 0644)",
            f"chown -h nobody:nogroup {stray} (was root:root)",
        ]
    )
    assert stray.stat().st_mode & 0o777 == 0o644  # not a rendered file: its mode is the operator's business
    assert _one(asterisk.check_files(_ctx(tmp_path, FakeBox.healthy()))).status is Status.OK


def test_a_missing_rendered_file_needs_the_playbook(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, FakeBox.healthy())
    (tmp_path / "asterisk" / "pjsip.conf").unlink()
    result = _one(asterisk.check_files(ctx))
    assert result.status is Status.FAIL
    assert result.seen.startswith("want nobody:nogroup: missing: ")
    assert "ansible-playbook site.yml --tags asterisk" in result.fix
    assert result.repair is None


def test_an_unknown_asterisk_user_fails(tmp_path: Path) -> None:
    make_asterisk_dir(tmp_path)
    app = make_app_dir(tmp_path, env_text())
    ctx = Context(options(tmp_path, FakeBox.healthy(), app / ".env", asterisk_user="no-such-user-here"))
    assert "does not exist" in _one(asterisk.check_files(ctx)).seen


# ---- asterisk.sip_module -----------------------------------------------------------------------------


def test_sip_module_running(tmp_path: Path) -> None:
    result = _one(asterisk.check_sip_module(_ctx(tmp_path, FakeBox.healthy())))
    assert result.status is Status.OK
    assert result.seen == "chan_pjsip.so is Running (driver pjsip, from modules.conf)"


def test_sip_module_not_loaded_fails_with_where_to_look(tmp_path: Path) -> None:
    box = FakeBox.healthy()
    box.rx["module show like chan_pjsip"] = MODULE_PJSIP_MISSING
    result = _one(asterisk.check_sip_module(_ctx(tmp_path, box)))
    assert result.status is Status.FAIL
    assert "chan_pjsip.so is not running (0 modules loaded)" in result.seen
    assert "asterisk.files" in result.fix
    assert "asterisk -rx 'module show like chan_pjsip'" in result.fix


def test_chan_sip_box_asks_for_chan_sip(tmp_path: Path) -> None:
    make_asterisk_dir(tmp_path)
    modules = tmp_path / "asterisk" / "modules.conf"
    modules.write_text("[modules]\nautoload=yes\nrequire => chan_sip.so\nnoload => chan_pjsip.so\n")
    box = FakeBox.healthy()
    box.rx["module show like chan_sip"] = MODULE_SIP_RUNNING
    result = _one(asterisk.check_sip_module(_ctx(tmp_path, box)))
    assert result.seen == "chan_sip.so is Running (driver chan_sip, from modules.conf)"
    assert asterisk.module_running(MODULE_SIP_RUNNING, "chan_sip")
    assert not asterisk.module_running(MODULE_SIP_RUNNING, "chan_pjsip")


# ---- asterisk.registration ---------------------------------------------------------------------------


def test_no_registration_configured_is_ok_without_asking_asterisk(tmp_path: Path) -> None:
    box = FakeBox.healthy()
    result = _one(asterisk.check_registration(_ctx(tmp_path, box)))
    assert result.status is Status.OK
    assert "no registration configured" in result.seen
    assert ("asterisk", "-rx", "pjsip show registrations") not in box.calls


def test_registered_trunk(tmp_path: Path) -> None:
    result = _one(asterisk.check_registration(_ctx(tmp_path, FakeBox.healthy(), registration=True)))
    assert result.status is Status.OK
    assert result.seen == "provider-registration/sip:sip.example.net:5060 Registered"


def test_rejected_registration_fails(tmp_path: Path) -> None:
    box = FakeBox.healthy()
    box.rx["pjsip show registrations"] = REGISTRATIONS_REJECTED
    result = _one(asterisk.check_registration(_ctx(tmp_path, box, registration=True)))
    assert result.status is Status.FAIL
    assert result.seen == "not registered: provider-registration/sip:sip.example.net:5060 Rejected"
    assert "asterisk -rx 'pjsip send register *all'" in result.fix


def test_chan_sip_registry_is_parsed() -> None:
    assert asterisk.registrations(SIP_REGISTRY_OK, Driver.CHAN_SIP) == [("sip.example.net:5060", "Registered")]
    assert asterisk.registrations("No objects found.\n", Driver.PJSIP) == []


# ---- asterisk.dialplan and asterisk.channels ---------------------------------------------------------


def test_dialplan_with_stasis(tmp_path: Path) -> None:
    result = _one(asterisk.check_dialplan(_ctx(tmp_path, FakeBox.healthy())))
    assert result.status is Status.OK
    assert result.seen == "context from-voip: 3 extensions, 20 priorities, calls go to Stasis(centralita)"


def test_missing_context_fails(tmp_path: Path) -> None:
    box = FakeBox.healthy()
    box.rx["dialplan show from-voip"] = NO_CONTEXT
    result = _one(asterisk.check_dialplan(_ctx(tmp_path, box)))
    assert result.status is Status.FAIL
    assert "There is no existence of 'from-voip' context" in result.seen
    assert "asterisk -rx 'dialplan reload'" in result.fix


def test_context_without_the_app_fails(tmp_path: Path) -> None:
    result = _one(asterisk.check_dialplan(_ctx(tmp_path, FakeBox.healthy(), ARI_APP="frontdesk")))
    assert result.status is Status.FAIL
    assert "never runs Stasis(frontdesk)" in result.seen


def test_channels_are_information(tmp_path: Path) -> None:
    result = _one(asterisk.check_channels(_ctx(tmp_path, FakeBox.healthy())))
    assert (result.status, result.seen) == (Status.OK, "2 active channels, 1 active call, 57 calls processed")


# ---- asterisk.ari ------------------------------------------------------------------------------------


def test_ari_answers_with_the_configured_credentials(tmp_path: Path, ari_url: str) -> None:
    result = _one(asterisk.check_ari(_ctx(tmp_path, FakeBox.healthy(), ARI_URL=ari_url)))
    assert result.status is Status.OK
    assert result.seen == f"{ari_url} answers 200 for user centralita (Asterisk 22.5.2)"


def test_ari_wrong_password_fails_with_the_secret_file_fix(tmp_path: Path, ari_url: str) -> None:
    result = _one(asterisk.check_ari(_ctx(tmp_path, FakeBox.healthy(), ARI_URL=ari_url, ARI_PASSWORD="old")))
    assert result.status is Status.FAIL
    assert "refused user centralita" in result.seen
    assert "(401)" in result.seen
    assert "ARI_PASSWORD=<the content of /etc/centralita/ari-password>" in result.fix
    test = f"""sed 's/^/user = "centralita:/; s/$/"/' /etc/centralita/ari-password | curl -s -K - {ari_url}/ari/"""
    assert test in result.fix
    assert "old" not in result.seen + result.fix


def test_the_ari_test_command_works_and_keeps_the_password_off_the_command_line(tmp_path: Path, ari_url: str) -> None:
    secret_file = tmp_path / "ari-password"
    secret_file.write_text(ARI_PASSWORD + "\n")  # as the asterisk role writes it
    command = asterisk.ari_curl("centralita", secret_file, f"{ari_url}/ari/asterisk/info")
    assert ARI_PASSWORD not in command
    answer = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30, check=False)
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["system"]["version"] == "22.5.2"
    secret_file.write_text("wrong\n")
    answer = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30, check=False)
    assert "version" not in answer.stdout


def test_an_odd_ari_user_is_quoted_for_sed_and_curl(tmp_path: Path) -> None:
    command = asterisk.ari_curl('a/b&c"d', tmp_path / "secret", "http://127.0.0.1:9/ari/asterisk/info")
    (tmp_path / "secret").write_text("pw\n")
    script = command.split(" | ", 1)[0]
    produced = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30, check=True).stdout
    assert produced == 'user = "a/b&c\\"d:pw"\n'


def test_credentials_in_the_ari_url_are_not_repeated(tmp_path: Path) -> None:
    command = asterisk.ari_curl("centralita", tmp_path / "secret", "http://admin:hunter2@127.0.0.1:9/ari/asterisk/info")
    assert "hunter2" not in command
    assert "http://admin:**********@127.0.0.1:9/ari/asterisk/info" in command


def test_ari_refused_points_at_http_conf(tmp_path: Path) -> None:
    result = _one(asterisk.check_ari(_ctx(tmp_path, FakeBox.healthy(), ARI_URL="http://127.0.0.1:9")))
    assert result.status is Status.FAIL
    assert "Connection refused" in result.seen
    assert "http.conf needs enabled=yes, bindaddr=127.0.0.1, bindport=9" in result.fix


def test_ari_refused_with_asterisk_down_says_start_asterisk(tmp_path: Path) -> None:
    box = FakeBox.healthy()
    box.stop("asterisk")
    result = _one(asterisk.check_ari(_ctx(tmp_path, box, ARI_URL="http://127.0.0.1:9")))
    assert result.fix == "start Asterisk (see asterisk.service): systemctl start asterisk"


def test_ari_not_enabled_answers_404(tmp_path: Path, ari_url: str) -> None:
    result = _one(asterisk.check_ari(_ctx(tmp_path, FakeBox.healthy(), ARI_URL=ari_url + "/prefix")))
    assert result.status is Status.FAIL
    assert "404" in result.seen
    assert "module show like res_ari" in result.fix


def test_ari_without_a_password_is_not_checked(tmp_path: Path) -> None:
    result = _one(asterisk.check_ari(_ctx(tmp_path, FakeBox.healthy(), ARI_PASSWORD="")))
    assert (result.status, result.seen) == (Status.WARN, f"not checked: ARI_PASSWORD is not set in {tmp_path}/app/.env")


def test_unit_states_are_read_once_per_run(tmp_path: Path) -> None:
    box = FakeBox.healthy()
    box.units["asterisk"] = unit_show()
    ctx = _ctx(tmp_path, box)
    asterisk.check_service(ctx)
    ctx.unit("asterisk")
    assert sum(1 for call in box.calls if call[:2] == ("systemctl", "show")) <= 1
