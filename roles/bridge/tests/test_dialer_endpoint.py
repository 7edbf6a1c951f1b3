"""The bridge role's choice of the dialer's dial string, checked against the SIP driver of the running Asterisk.

Runs the role's step (tasks/dialer_endpoint.yml) with real Ansible against localhost and a stand-in `asterisk`
that answers `core show channeltypes` as Asterisk 20 with chan_sip or Asterisk 22 with PJSIP does.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from env_support import run_playbook

HEADER = (
    "Type             Description                              Devicestate   Presencestate Indications   Transfer\n"
    "-------------    -------------                            -----------   -----------   -----------   --------\n"
)
CHAN_SIP = HEADER + (
    "SIP              Session Initiation Protocol (SIP)        yes           no            yes           yes\n"
    "UnicastRTP       Unicast RTP Media Channel Driver         no            no            no            no\n"
    "----------\n3 channel drivers registered.\n"
)
PJSIP = HEADER + (
    "PJSIP            PJSIP Channel Driver                     yes           yes           yes           yes\n"
    "UnicastRTP       Unicast RTP Media Channel Driver         no            no            no            no\n"
    "----------\n3 channel drivers registered.\n"
)


def fake_asterisk(tmp_path: Path, channeltypes: str | None) -> Path:
    """A bin directory whose `asterisk -rx 'core show channeltypes'` prints `channeltypes` (None: not running)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "channeltypes.txt").write_text(channeltypes or "")
    body = (
        f"cat {tmp_path}/channeltypes.txt"
        if channeltypes is not None
        else 'echo "Unable to connect to remote asterisk (does /var/run/asterisk/asterisk.ctl exist?)"; exit 1'
    )
    script = bin_dir / "asterisk"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return bin_dir


def validate(tmp_path: Path, channeltypes: str | None, **extra: object) -> tuple[int, str]:
    bin_dir = fake_asterisk(tmp_path, channeltypes)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        result = run_playbook("dialer_endpoint.yml", dict(extra), tmp_path)
    return result.returncode, " ".join((result.stdout + result.stderr).split())


@pytest.mark.parametrize(
    ("channeltypes", "expected"),
    [(CHAN_SIP, "SIP/{trunk}/{number}"), (PJSIP, "PJSIP/{number}@{trunk}")],
)
def test_the_dialer_dials_through_the_driver_asterisk_has(tmp_path, channeltypes, expected):
    # The old box: chan_sip only. A PJSIP/... dial string failed every call ("No channel type registered").
    rc, out = validate(tmp_path, channeltypes)
    assert rc == 0, out
    assert f"dialer endpoint: {expected}" in out


def test_a_dial_string_of_a_driver_asterisk_lacks_is_refused(tmp_path):
    rc, out = validate(tmp_path, CHAN_SIP, bridge_dialer_endpoint="PJSIP/{number}@{trunk}")
    assert rc != 0
    assert (
        "bridge_dialer_endpoint 'PJSIP/{number}@{trunk}' dials through PJSIP, which this Asterisk does not have" in out
    )
    assert "No channel type registered" in out
    assert "Leave bridge_dialer_endpoint empty" in out
    assert "SIP/{trunk}/{number} here" in out


def test_an_explicit_dial_string_of_the_right_driver_is_kept(tmp_path):
    rc, out = validate(tmp_path, CHAN_SIP, bridge_dialer_endpoint="SIP/{trunk}/00{digits}")
    assert rc == 0, out
    assert "dialer endpoint: SIP/{trunk}/00{digits}" in out


def test_asterisk_not_running_is_a_clear_error(tmp_path):
    rc, out = validate(tmp_path, None)
    assert rc != 0
    assert "Asterisk does not answer" in out
    assert "systemctl start asterisk" in out
