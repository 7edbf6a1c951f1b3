"""The default scenario's box: its container and inventory; everything else is shared by every scenario
(molecule/shared/boxtests.py, whose names the tests import from here)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from boxtests import *  # noqa: F403  (the shared folder is on the path from the line above)
from boxtests import box_name, playbook_runner

BOX = box_name("CENTRALITA_CONTAINER", "centralita-molecule")
run_playbook = playbook_runner(Path(__file__).resolve().parents[1])
