"""The whole doctor: every check against one box (recorded commands, real files, a real ARI, the fake
Realtime and RouterOS servers), the text and JSON reports, the exit code, and --fix."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from doctor_support import (
    NOBODY,
    FakeBox,
    ari_server,
    env_text,
    healthy_status,
    make_app_dir,
    make_asterisk_dir,
    options,
    write_status,
)

from centralita.cli import main as centralita_main
from centralita.doctor import cli
from centralita.doctor.context import Context, Options
from centralita.doctor.model import Result, Status
from centralita.doctor.runner import CHECKS, CheckSpec, diagnose
from centralita_testing.fake_realtime import FakeRealtimeServer
from centralita_testing.fake_routeros.server import FakeRouterOS

EVERY_CHECK = (
    "env.settings",
    "env.ws_ping",
    "env.permissions",
    "asterisk.files",
    "asterisk.service",
    "asterisk.sip_module",
    "asterisk.registration",
    "asterisk.dialplan",
    "asterisk.channels",
    "asterisk.ari",
    "bridge.inbound_service",
    "bridge.outbound_service",
    "bridge.log",
    "bridge.budget",
    "bridge.records",
    "bridge.admission",
    "system.disk",
    "bridge.code",
    "bridge.app_dir",
    "bridge.git",
    "openai.api_key",
    "routeros.nucleo",
    "network.sip_provider",
    "network.openai",
    "network.router.nucleo",
)


@pytest.fixture(scope="module")
def realtime() -> Iterator[FakeRealtimeServer]:
    with FakeRealtimeServer() as server:
        yield server


@pytest.fixture(scope="module")
def router() -> Iterator[FakeRouterOS]:
    with FakeRouterOS(None, "api-soporte", "s3creto-2025") as fake:
        yield fake


@pytest.fixture(scope="module")
def ari_url() -> Iterator[str]:
    with ari_server() as url:
        yield url


@pytest.fixture
def box() -> FakeBox:
    return FakeBox.healthy()


@pytest.fixture
def healthy(tmp_path: Path, box: FakeBox, realtime: FakeRealtimeServer, router: FakeRouterOS, ari_url: str) -> Options:
    """A box where every check is OK: the .env points at the local ARI, fake Realtime and fake router."""
    make_asterisk_dir(tmp_path)
    text = env_text(
        OPENAI_BASE_URL=realtime.base_url,
        OPENAI_API_KEY=realtime.api_key,
        ARI_URL=ari_url,
        ROUTEROS_ROUTERS="nucleo",
        ROUTEROS_NUCLEO_HOST=router.host,
        ROUTEROS_NUCLEO_PORT=str(router.port),
        ROUTEROS_NUCLEO_USER="api-soporte",
        ROUTEROS_NUCLEO_PASSWORD="s3creto-2025",
        STATUS_FILE=str(write_status(tmp_path / "status.json", healthy_status())),
    )
    app = make_app_dir(tmp_path, text)
    (tmp_path / "inbound_openai.log").write_text("2026-11-25 14:03:07,123 INFO call=- started\n")
    return options(tmp_path, box, app / ".env")


def _statuses(report_json: dict[str, object]) -> dict[str, str]:
    checks = report_json["checks"]
    assert isinstance(checks, list)
    return {check["name"]: check["status"] for check in checks}


def _execute(opts: Options, **kwargs: bool) -> tuple[int, str]:
    out = io.StringIO()
    code = cli.execute(opts, out=out, **kwargs)
    return code, out.getvalue()


def test_a_healthy_box_is_all_ok_and_exits_0(healthy: Options) -> None:
    code, text = _execute(healthy)
    lines = text.splitlines()
    assert code == 0, text
    assert tuple(line.split()[1] for line in lines[:-1]) == EVERY_CHECK
    assert all(line.startswith("OK   ") for line in lines[:-1]), text
    assert lines[-1] == f"{len(EVERY_CHECK)} OK, 0 WARN, 0 FAIL: no failures"
    assert "| fix:" not in text


def test_json_output(healthy: Options) -> None:
    code, text = _execute(healthy, as_json=True)
    report = json.loads(text)
    assert code == 0
    assert report["ok"] is True
    assert report["summary"] == {"OK": len(EVERY_CHECK), "WARN": 0, "FAIL": 0}
    assert report["env_file"] == str(healthy.env_file)
    assert report["fixes"] == []
    assert tuple(_statuses(report)) == EVERY_CHECK
    assert set(report["checks"][0]) == {"name", "status", "seen", "fix", "fixable", "line"}
    assert report["checks"][0]["line"].startswith("OK   env.settings  ")
    assert report["verdict"] == f"{len(EVERY_CHECK)} OK, 0 WARN, 0 FAIL: no failures"
    assert "sk-centralita-fake" not in text
    assert "ari-secret" not in text
    assert "s3creto" not in text


def test_a_failure_exits_1_and_the_others_stay_ok(healthy: Options, box: FakeBox) -> None:
    box.stop("openai-inbound-calls")
    code, text = _execute(healthy, as_json=True)
    statuses = _statuses(json.loads(text))
    assert code == 1
    assert statuses.pop("bridge.inbound_service") == "FAIL"
    assert set(statuses.values()) == {"OK"}


def test_a_ping_fault_in_a_copy_of_the_env_fails_only_the_keepalive(healthy: Options, tmp_path: Path) -> None:
    copy = tmp_path / "ping.env"
    copy.write_text(healthy.env_file.read_text().replace("WS_PING_TIMEOUT=10", "WS_PING_TIMEOUT=30"), encoding="utf-8")
    copy.chmod(0o600)
    code, text = _execute(replace(healthy, env_file=copy), as_json=True)
    report = json.loads(text)
    statuses = _statuses(report)
    assert code == 1
    assert statuses.pop("env.ws_ping") == "FAIL"
    assert set(statuses.values()) == {"OK"}
    ping = next(check for check in report["checks"] if check["name"] == "env.ws_ping")
    assert "set WS_PING_INTERVAL=20 and WS_PING_TIMEOUT=10" in ping["fix"]


def test_fix_repairs_ownership_and_starts_the_bridge_then_checks_again(
    healthy: Options, box: FakeBox, tmp_path: Path
) -> None:
    trunk = tmp_path / "asterisk" / "pjsip_trunk.conf"
    os.chown(trunk, 0, 0)
    prompt = tmp_path / "app" / "prompts" / "asistente_entrante.es.txt"
    os.chown(prompt, 0, 0)
    box.stop("openai-inbound-calls")

    code, text = _execute(healthy)
    assert code == 1
    assert "FIXED" not in text
    failing = [line for line in text.splitlines() if line.startswith("FAIL")]
    assert [line.split()[1] for line in failing] == ["asterisk.files", "bridge.inbound_service", "bridge.app_dir"]
    assert f"| fix: chown nobody:nogroup {trunk} && chmod 0640 {trunk}" in failing[0]

    code, text = _execute(healthy, fix=True)
    lines = text.splitlines()
    assert code == 0, text
    assert lines[:3] == [
        f"FIXED asterisk.files: chown -h nobody:nogroup {trunk} (was root:root)",
        "FIXED bridge.inbound_service: systemctl start openai-inbound-calls",
        f"FIXED bridge.app_dir: chown -h nobody on 1 path(s) under {tmp_path / 'app' / 'prompts'}: "
        "asistente_entrante.es.txt",
    ]
    assert all(line.startswith("OK") for line in lines[3:-1]), text
    assert (trunk.stat().st_uid, prompt.stat().st_uid) == (NOBODY, NOBODY)


def test_fix_gives_files_back_before_starting_asterisk(healthy: Options, box: FakeBox, tmp_path: Path) -> None:
    """Asterisk refuses to start without a file it requires, so the chown must come before the start."""
    trunk = tmp_path / "asterisk" / "pjsip_trunk.conf"
    os.chown(trunk, 0, 0)
    box.stop("asterisk")
    code, text = _execute(healthy, fix=True, as_json=True)
    report = json.loads(text)
    assert code == 0, text
    assert [fix["check"] for fix in report["fixes"]] == ["asterisk.files", "asterisk.service"]
    assert report["fixes"][1]["changes"] == ["systemctl start asterisk"]
    starts = [call for call in box.calls if call[:2] == ("systemctl", "start")]
    assert starts == [("systemctl", "start", "asterisk.service")]


def test_fix_reports_a_repair_that_failed_and_keeps_the_failure(healthy: Options, box: FakeBox) -> None:
    box.stop("openai-inbound-calls")
    box.start_fails = True
    code, text = _execute(healthy, fix=True, as_json=True)
    report = json.loads(text)
    assert code == 1
    (fix,) = report["fixes"]
    assert fix["check"] == "bridge.inbound_service"
    assert fix["changes"] == []
    assert "systemctl start openai-inbound-calls failed" in fix["error"]
    assert _statuses(report)["bridge.inbound_service"] == "FAIL"
    _, text = _execute(healthy, fix=True)
    assert text.startswith("NOT FIXED bridge.inbound_service: systemctl start openai-inbound-calls failed")


def test_a_check_that_crashes_is_a_failure_and_the_rest_still_run(healthy: Options) -> None:
    def broken(ctx: Context) -> list[Result]:
        raise KeyError("surprise")

    checks = (CheckSpec("broken", broken), *CHECKS[:2])
    report = diagnose(healthy, checks=checks)
    assert [result.name for result in report.results] == ["broken", "env.settings", "env.ws_ping"]
    assert report.results[0].status is Status.FAIL
    assert report.results[0].seen == "the check itself failed: KeyError: 'surprise'"
    assert report.failed


def test_the_subcommand_options() -> None:
    parser = argparse.ArgumentParser(prog="centralita")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["doctor"])
    assert args.handler is cli.run
    defaults = cli.options_from_args(args)
    assert (defaults.env_file, defaults.asterisk_dir, defaults.app_dir) == (
        Path("/usr/local/asterisk/.env"),
        Path("/etc/asterisk"),
        Path("/usr/local/asterisk"),
    )
    assert (args.json, args.fix, defaults.log_file, defaults.log_hours, defaults.timeout) == (False, False, None, 24, 5)
    args = parser.parse_args(
        ["doctor", "--json", "--fix", "--env-file", "/tmp/x.env", "--asterisk-dir", "/tmp/ast", "--hours", "2"]
    )
    chosen = cli.options_from_args(args)
    assert (args.json, args.fix, chosen.env_file, chosen.asterisk_dir, chosen.log_hours) == (
        True,
        True,
        Path("/tmp/x.env"),
        Path("/tmp/ast"),
        2.0,
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["doctor", "--timeout", "0"])


def test_centralita_doctor_runs_the_real_probes_against_temp_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`centralita doctor --json` through the real entry point, runner and probes; every remote is local."""
    env = tmp_path / "doctor.env"
    env.write_text(env_text())
    env.chmod(0o600)
    argv = ["doctor", "--json", "--env-file", str(env), "--asterisk-dir", str(tmp_path / "asterisk")]
    argv += ["--app-dir", str(tmp_path), "--log-file", str(tmp_path / "bridge.log"), "--timeout", "1"]
    code = centralita_main(argv)
    report = json.loads(capsys.readouterr().out)
    statuses = _statuses(report)
    assert code == 1
    assert statuses["env.settings"] == "OK"
    assert statuses["asterisk.ari"] == "FAIL"  # nothing listens on 127.0.0.1:9
    assert statuses["network.openai"] == "OK"  # the real kernel route to 127.0.0.1


def test_url_credentials_and_secrets_never_reach_the_report(healthy: Options, ari_url: str) -> None:
    """A URL with user:password@ is repeated in many lines (seen, fixes, test commands): the password never
    is, in text or JSON; nor is a secret a server or a check might echo."""
    text = healthy.env_file.read_text(encoding="utf-8")
    port = ari_url.rsplit(":", 1)[1]
    text = text.replace(f"ARI_URL={ari_url}", f"ARI_URL=http://admin:ari-url-pass@127.0.0.1:{port}")
    text = text.replace("OPENAI_BASE_URL=ws://", "OPENAI_BASE_URL=ws://proxy:openai-url-pass@")
    healthy.env_file.write_text(text, encoding="utf-8")

    def echoing(ctx: Context) -> list[Result]:
        key, password = ctx.env.get("OPENAI_API_KEY"), ctx.env.get("ARI_PASSWORD")
        return [Result.fail("echo", f"the server said: bad key {key}", f"try https://u:{password}@example.net/")]

    for as_json in (False, True):
        _code, report = _execute(healthy, as_json=as_json)
        assert "ari-url-pass" not in report
        assert "openai-url-pass" not in report
        assert "admin:**********@127.0.0.1" in report
        assert "proxy:**********@127.0.0.1" in report
    echoed = diagnose(healthy, checks=(CheckSpec("echo", echoing),))
    (result,) = echoed.results
    assert result.seen == "the server said: bad key **********"
    assert result.fix == "try https://u:**********@example.net/"


def test_no_fix_puts_a_secret_on_a_command_line(tmp_path: Path, box: FakeBox, realtime: FakeRealtimeServer) -> None:
    """The test commands in the fixes of a wrong key and a wrong ARI password, run by a real shell with a curl
    that records its arguments: the secrets reach it on stdin, never in its argv (which ps shows anyone)."""
    make_asterisk_dir(tmp_path)
    secret_file = tmp_path / "ari-password"
    secret_file.write_text("the-ari-secret-0123\n")
    with ari_server() as url:
        text = env_text(OPENAI_BASE_URL=realtime.base_url, OPENAI_API_KEY="sk-wrong-key-0123456789", ARI_URL=url)
        app = make_app_dir(tmp_path, text.replace("ARI_PASSWORD=", "ARI_PASSWORD=wrong-"))
        report = diagnose(options(tmp_path, box, app / ".env", ari_secret_file=secret_file)).by_name()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    recorder = bin_dir / "curl"
    recorder.write_text('#!/bin/sh\nprintf "%s\\n" "$@" >> "$RECORD.argv"\ncat >> "$RECORD.stdin"\n')
    recorder.chmod(0o755)
    for name, secret in (("openai.api_key", "sk-wrong-key-0123456789"), ("asterisk.ari", "the-ari-secret-0123")):
        fix = report[name].fix
        command = fix.split("test: ", 1)[1]
        record = tmp_path / name
        environment = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RECORD": str(record)}
        subprocess.run(["bash", "-c", command], env=environment, timeout=30, check=True)
        assert secret not in Path(f"{record}.argv").read_text(), fix
        assert secret in Path(f"{record}.stdin").read_text(), fix


def test_output_publishes_the_json_report_for_the_console(
    healthy: Options, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "doctor"
    directory.mkdir(mode=0o750)
    if os.geteuid() != 0:
        pytest.skip("publishing needs a directory of root's: this part runs as root (the project's CI does)")
    assert cli.execute_into(healthy, directory / "doctor.json") == 0
    published = json.loads((directory / "doctor.json").read_text())
    assert published["ok"] is True
    assert published["generated_at"]
    assert {check["status"] for check in published["checks"]} == {"OK"}
    directory.chmod(0o775)
    assert cli.execute_into(healthy, directory / "doctor.json") == 2
    assert "chmod go-w" in capsys.readouterr().err
