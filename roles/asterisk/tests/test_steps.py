"""Single steps of the asterisk role run by real Ansible on this machine: where the prompts go, and the wait for
a fully booted Asterisk after a start or restart (with a stand-in asterisk binary and systemctl).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import run_playbook


def step(tmp_path: Path, tasks_from: str, env_path: Path | None = None, **extra: object) -> tuple[int, str]:
    if env_path is not None:
        os.environ["PATH"] = f"{env_path}{os.pathsep}{os.environ['PATH']}"
    try:
        result = run_playbook("steps.yml", {"tasks_from": tasks_from, **extra}, tmp_path)
    finally:
        if env_path is not None:
            os.environ["PATH"] = os.environ["PATH"].split(os.pathsep, 1)[1]
    return result.returncode, " ".join((result.stdout + result.stderr).split())


# ---- prompts directory -------------------------------------------------------------------------------------

# As in the source tree's sample (configs/samples/asterisk.conf.sample): more directories follow astdatadir.
SOURCE_BUILD_CONF = (
    "[directories](!)\nastetcdir => /etc/asterisk\nastdatadir => /var/lib/asterisk\n"
    "astagidir => /var/lib/asterisk/agi-bin\nastspooldir => /var/spool/asterisk\n"
)
DEBIAN_CONF = "[directories]\nastetcdir => /etc/asterisk\n;astdatadir => /opt/old\nastdatadir => /usr/share/asterisk\n"


@pytest.mark.parametrize(
    ("conf", "expected"),
    [
        (SOURCE_BUILD_CONF, "/var/lib/asterisk/sounds"),  # a source build: the failover notice must go here
        (DEBIAN_CONF, "/usr/share/asterisk/sounds"),  # Debian's package; the commented line is ignored
        ("[options]\nverbose = 3\n", "/var/lib/asterisk/sounds"),  # not set: Asterisk's compiled-in default
        (None, "/var/lib/asterisk/sounds"),  # no asterisk.conf at all
    ],
)
def test_prompts_go_where_the_installed_asterisk_reads_them(tmp_path, conf, expected):
    if conf is not None:
        (tmp_path / "asterisk.conf").write_text(conf)
    rc, out = step(tmp_path, "sounds", asterisk_config_dir=str(tmp_path))
    assert rc == 0, out
    assert f"sounds dir: {expected}" in out


def test_an_explicit_prompts_directory_wins(tmp_path):
    (tmp_path / "asterisk.conf").write_text(SOURCE_BUILD_CONF)
    rc, out = step(tmp_path, "sounds", asterisk_config_dir=str(tmp_path), asterisk_sounds_dir="/srv/sounds")
    assert rc == 0, out
    assert "sounds dir: /srv/sounds" in out


# ---- fully booted ------------------------------------------------------------------------------------------


def stand_ins(tmp_path: Path, asterisk: str, systemctl: str = "echo ActiveState=active; echo SubState=running") -> Path:
    """A bin directory with a fake asterisk (logging its calls to calls.log) and a fake systemctl."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("asterisk", asterisk), ("systemctl", systemctl)):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path}/calls.log\n{body}\n')
        script.chmod(0o755)
    return bin_dir


def test_the_wait_goes_on_until_asterisk_says_it_is_fully_booted(tmp_path):
    # Refuses the console twice (still starting), then answers as Asterisk does.
    bin_dir = stand_ins(
        tmp_path,
        f'n=$(grep -c waitfullybooted {tmp_path}/calls.log); [ "$n" -ge 3 ] || '
        '{ echo "Unable to connect to remote asterisk" >&2; exit 1; }; echo "Asterisk has fully booted."',
    )
    rc, out = step(tmp_path, "booted", bin_dir, asterisk_binary=str(bin_dir / "asterisk"), asterisk_boot_timeout=30)
    assert rc == 0, out
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert calls.count("-rx core waitfullybooted") == 3
    assert "Asterisk did not report" not in out


def test_an_asterisk_that_does_not_come_back_fails_the_run_with_the_reason(tmp_path):
    bin_dir = stand_ins(
        tmp_path, 'echo "Unable to connect to remote asterisk (does /var/run/asterisk/asterisk.ctl exist?)" >&2; exit 1'
    )
    rc, out = step(tmp_path, "booted", bin_dir, asterisk_binary=str(bin_dir / "asterisk"), asterisk_boot_timeout=3)
    assert rc != 0
    assert 'Asterisk did not report "fully booted" within about 3 s (asterisk_boot_timeout)' in out
    assert "does /var/run/asterisk/asterisk.ctl exist?" in out
    assert "systemd says ActiveState=active, SubState=running" in out
    assert "journalctl -u asterisk" in out
    assert "generated from the SysV init script" not in out


def test_a_sysv_generated_unit_is_named_as_the_cause(tmp_path):
    # The old box: `make config`'s init script, which systemd reports as "active (exited)" with Asterisk down.
    bin_dir = stand_ins(
        tmp_path,
        'echo "Unable to connect to remote asterisk" >&2; exit 1',
        "echo ActiveState=active; echo SubState=exited; echo SourcePath=/etc/init.d/asterisk",
    )
    rc, out = step(tmp_path, "booted", bin_dir, asterisk_binary=str(bin_dir / "asterisk"), asterisk_boot_timeout=3)
    assert rc != 0
    assert "SubState=exited" in out
    assert "generated from the SysV init script" in out
    assert "contrib/systemd/asterisk.service" in out
