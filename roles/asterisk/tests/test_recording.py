"""Call recording (asterisk_recording_*): the dialplan's switch and subroutine, the module it needs, the purge.

The templates are rendered by real Ansible with the role's defaults; the purge's own command line is taken from
the rendered unit and run for real against a directory of files. Molecule (test_59_recording.py) records a live
call, plays it back through the console and purges it on the box.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest
from conftest import parse_asterisk_conf, run_playbook, section, values
from test_templates import render
from test_validation import validate


def globals_of(conf: dict[str, str]) -> dict[str, str]:
    return dict(section(parse_asterisk_conf(conf["extensions.conf"]), "[globals]"))


@pytest.fixture(scope="module")
def off(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return render(tmp_path_factory.mktemp("rec-off"), "pjsip")


@pytest.fixture(scope="module")
def on(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return render(
        tmp_path_factory.mktemp("rec-on"),
        "pjsip",
        asterisk_recording_enabled=True,
        asterisk_recording_dir="/srv/grabaciones",
    )


def test_recording_is_off_by_default_and_the_switch_is_one_global(off, on):
    assert globals_of(off)["CENTRALITA_RECORDING"] == "no"
    assert globals_of(off)["CENTRALITA_RECORDING_DIR"] == "/var/spool/centralita/recordings"
    assert globals_of(on)["CENTRALITA_RECORDING"] == "yes"
    assert globals_of(on)["CENTRALITA_RECORDING_DIR"] == "/srv/grabaciones"
    # Nothing else of the dialplan changes with the switch.
    assert off["extensions.conf"].replace("=no\n", "=yes\n").replace(
        "/var/spool/centralita/recordings", "/srv/grabaciones"
    ) == on["extensions.conf"].replace("=no\n", "=yes\n")


def test_every_path_to_the_assistant_records_first_when_the_switch_is_on(on):
    conf = parse_asterisk_conf(on["extensions.conf"])
    for context, count in (("[from-voip]", 2), ("[centralita-outbound-amd]", 1)):
        steps = values(section(conf, context), "same")
        stasis = [i for i, step in enumerate(steps) if "Stasis(" in step]
        assert len(stasis) == count, context
        for at in stasis:
            # The recording steps come straight before the assistant: nothing else runs between them.
            recording = steps[at - 8 : at]
            assert recording[0].endswith(',GotoIf($["${CENTRALITA_RECORDING}" != "yes"]?not_recorded)'), recording
            assert recording[2] == "n,MixMonitor(${CENTRALITA_RECORDING_FILE})"
            assert recording[-1].startswith("n(not_recorded),NoOp(")
    # The echo test and the failover contexts record nothing of their own.
    assert on["extensions.conf"].count("MixMonitor(") == 3


def test_the_recording_steps_record_both_directions_then_give_the_notice_without_answering(on):
    conf = parse_asterisk_conf(on["extensions.conf"])
    steps = values(section(conf, "[from-voip]"), "same")
    first = next(i for i, step in enumerate(steps) if "CENTRALITA_RECORDING}" in step)
    recording = steps[first : first + 8]
    # The label the admission jumps to is the first recording step: no call skips it.
    assert recording[0].startswith("n(assistant),")
    # The file name is the channel id, filtered: nothing a caller sends reaches the path.
    assert recording[1] == (
        "n,Set(CENTRALITA_RECORDING_FILE=${CENTRALITA_RECORDING_DIR}/${FILTER(0-9A-Za-z._\\x2d,${UNIQUEID})}.wav)"
    )
    # Recording starts before the notice, so the notice is in the file; an inbound call is not answered for it:
    # the notice is early media after Progress(), and Progress() is skipped for the dialer's answered call.
    assert recording[4] == 'n,GotoIf($["${CHANNEL(state)}" = "Up"]?recording_notice)'
    assert recording[5] == "n,Progress()"
    assert recording[6] == "n(recording_notice),Playback(centralita/aviso-grabacion,noanswer)"
    assert "Answer()" not in " ".join(recording)


def test_mixmonitor_is_required_only_with_recording_on(off, on):
    assert "require => app_mixmonitor.so" in on["modules.conf"]
    assert "app_mixmonitor" not in off["modules.conf"]


def purge_units(tmp_path: Path, **extra: object) -> dict[str, dict[str, str]]:
    result = run_playbook("render_recording.yml", {"render_dir": str(tmp_path), **extra}, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    units = {}
    for name in ("centralita-recordings-purge.service", "centralita-recordings-purge.timer"):
        text = (tmp_path / name).read_text()
        assert text.startswith("#\n# Ansible managed")
        units[name] = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    return units


def test_the_purge_runs_as_asterisk_in_a_sandbox_that_writes_only_the_recordings(tmp_path):
    service = purge_units(tmp_path)["centralita-recordings-purge.service"]
    assert service["User"] == "asterisk"
    assert service["Group"] == "centralita-recordings"
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == "/var/spool/centralita/recordings"
    assert service["CapabilityBoundingSet"] == ""
    assert service["PrivateNetwork"] == "yes"
    assert service["ConditionPathIsDirectory"] == "/var/spool/centralita/recordings"
    timer = purge_units(tmp_path)["centralita-recordings-purge.timer"]
    assert timer["OnCalendar"] == "daily"
    assert timer["Persistent"] == "true"


def test_the_purge_deletes_only_recordings_older_than_the_retention(tmp_path):
    """The unit's own ExecStart, run for real (as this user) over a directory like the box's."""
    recordings = tmp_path / "rec"
    recordings.mkdir()
    units = tmp_path / "units"
    units.mkdir()
    service = purge_units(units, asterisk_recording_dir=str(recordings), asterisk_recording_retention_days=7)[
        "centralita-recordings-purge.service"
    ]
    now = time.time()
    day = 86400
    files = {
        "old.wav": now - 8 * day,
        "just-kept.wav": now - 7 * day + 600,
        "new.wav": now - 60,
        "old-notes.txt": now - 30 * day,  # not a recording
    }
    for name, mtime in files.items():
        (recordings / name).write_bytes(b"RIFF")
        os.utime(recordings / name, (mtime, mtime))
    nested = recordings / "sub"
    nested.mkdir()
    (nested / "deep.wav").write_bytes(b"RIFF")
    os.utime(nested / "deep.wav", (now - 30 * day, now - 30 * day))
    outside = tmp_path / "elsewhere.wav"
    outside.write_bytes(b"RIFF")
    os.utime(outside, (now - 30 * day, now - 30 * day))
    (recordings / "link.wav").symlink_to(outside)

    argv = shlex.split(service["ExecStart"].replace("%%", "%"))
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    left = sorted(p.name for p in recordings.iterdir())
    assert left == ["just-kept.wav", "link.wav", "new.wav", "old-notes.txt", "sub"]
    assert (nested / "deep.wav").exists()
    assert outside.exists()
    assert done.stdout == "deleted recording old.wav (older than 7 days)\n"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"asterisk_recording_retention_days": 0}, "asterisk_recording_retention_days must be a whole number"),
        ({"asterisk_recording_retention_days": "30d"}, "asterisk_recording_retention_days"),
        ({"asterisk_recording_dir": "recordings"}, "must be an absolute path"),
        ({"asterisk_recording_dir": "/srv/../etc/rec"}, "with no '..'"),
        ({"asterisk_recording_dir": "/rec"}, "not directly under /"),
        ({"asterisk_recording_group": "Bad Group"}, "must be a group name"),
        (
            {"asterisk_recording_dir": "/var/spool/asterisk/monitor"},
            "is inside /var/spool/asterisk, a directory Asterisk writes",
        ),
    ],
)
def test_bad_recording_settings_are_refused_with_the_fix(tmp_path, extra, expected):
    rc, out = validate(tmp_path, **extra)
    assert rc != 0
    assert expected in out
    assert "effective driver" not in out


def test_good_recording_settings_pass(tmp_path):
    rc, out = validate(
        tmp_path,
        asterisk_recording_enabled=True,
        asterisk_recording_dir="/srv/centralita/grabaciones",
        asterisk_recording_retention_days=90,
    )
    assert rc == 0, out
    assert "effective driver: pjsip" in out
