"""The chan_sip scenario's box: its container and inventory, bound to the helpers every scenario shares
(molecule/shared/boxtests.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from boxtests import (
    BRIDGE_LOG,
    FULL_LOG,
    LIFECYCLE,
    PROJECT,
    SIPP_DIR,
    SippResult,
    app_registered,
    assistant_stopped,
    call_record,
    fully_booted,
    lifecycle_positions,
    log_since,
    log_size,
    place_speaking_call,
    sipp,
    sipp_in_background,
    wait_until,
)
from boxtests import run_playbook as run_scenario_playbook

BOX = os.environ.get("CENTRALITA_CHANSIP_CONTAINER", "centralita-chansip")
SCENARIO = Path(__file__).resolve().parents[1]

__all__ = [
    "BOX",
    "BRIDGE_LOG",
    "FULL_LOG",
    "LIFECYCLE",
    "PROJECT",
    "SCENARIO",
    "SIPP_DIR",
    "SippResult",
    "app_registered",
    "assistant_stopped",
    "call_record",
    "fully_booted",
    "lifecycle_positions",
    "log_since",
    "log_size",
    "place_speaking_call",
    "run_playbook",
    "sipp",
    "sipp_in_background",
    "wait_until",
]


def run_playbook(*extra_args: str, playbook: str = "site.yml") -> subprocess.CompletedProcess[str]:
    """Run a playbook of the project (the real site.yml by default) on the box with this scenario's inventory."""
    return run_scenario_playbook(SCENARIO, *extra_args, playbook=playbook)


@pytest.fixture(scope="module")
def ari_secret(host) -> str:
    return host.check_output("cat /etc/centralita/ari-password").strip()
