"""The drop-in that sandboxes the distribution's asterisk.service, rendered by real Ansible.

Molecule (test_80) proves it on the box: the score, Asterisk running as asterisk, reload and restart, calls.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_playbook


def render(tmp_path: Path, **extra: object) -> list[tuple[str, str]]:
    result = run_playbook("render_sandbox.yml", {"render_dir": str(tmp_path), **extra}, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (tmp_path / "centralita-sandbox.conf").read_text()
    assert text.startswith("#\n# Ansible managed")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines[0] == "[Service]"
    return [tuple(line.split("=", 1)) for line in lines[1:]]  # type: ignore[misc]


@pytest.fixture(scope="module")
def dropin(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str]]:
    return render(tmp_path_factory.mktemp("dropin"), asterisk_realtime_effective=False)


def test_asterisk_starts_as_its_own_user_without_capabilities(dropin: list[tuple[str, str]]) -> None:
    settings = dict(dropin)
    assert (settings["User"], settings["Group"]) == ("asterisk", "asterisk")
    assert settings["CapabilityBoundingSet"] == ""
    assert settings["NoNewPrivileges"] == "yes"
    # Not root any more, Asterisk cannot make /run/asterisk (its control socket) itself.
    assert (settings["RuntimeDirectory"], settings["RuntimeDirectoryPreserve"]) == ("asterisk", "yes")


def test_asterisk_writes_only_its_own_directories(dropin: list[tuple[str, str]]) -> None:
    assert dict(dropin)["ProtectSystem"] == "strict"
    writable = [value for key, value in dropin if key == "ReadWritePaths"]
    assert writable == [
        "-/var/lib/asterisk",
        "-/var/log/asterisk",
        "-/var/spool/asterisk",
        "-/var/spool/centralita/recordings",  # call recordings (asterisk_recording_dir)
    ]


def test_asterisk_keeps_the_sockets_it_needs(dropin: list[tuple[str, str]]) -> None:
    # AF_UNIX: asterisk -rx; AF_INET/6: SIP, RTP, ARI; AF_NETLINK: PJSIP reads the interfaces.
    assert dict(dropin)["RestrictAddressFamilies"] == "AF_UNIX AF_INET AF_INET6 AF_NETLINK"


def test_realtime_priority_only_where_systemd_may_give_it(tmp_path: Path, dropin: list[tuple[str, str]]) -> None:
    assert "CPUSchedulingPolicy" not in dict(dropin)
    settings = dict(render(tmp_path, asterisk_realtime_effective=True))
    assert (settings["CPUSchedulingPolicy"], settings["CPUSchedulingPriority"]) == ("rr", "10")
    assert settings["RestrictRealtime"] == "yes"  # Asterisk itself cannot raise any other thread


def test_user_and_directories_follow_the_variables(tmp_path: Path) -> None:
    settings = render(
        tmp_path,
        asterisk_realtime_effective=False,
        asterisk_user="pbx",
        asterisk_group="voip",
        asterisk_writable_dirs=["/srv/asterisk"],
        asterisk_recording_dir="/srv/grabaciones",
    )
    assert ("User", "pbx") in settings
    assert ("Group", "voip") in settings
    assert [value for key, value in settings if key == "ReadWritePaths"] == ["-/srv/asterisk", "-/srv/grabaciones"]
