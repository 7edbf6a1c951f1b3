"""Where the code under test lives, for tests that start it in a child process."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "bridge" / "src"
TESTING_SRC = REPO / "bridge" / "testing" / "src"
# PYTHONPATH for a child process that imports both distributions from the repository.
PYTHONPATH = os.pathsep.join(str(path) for path in (SRC, TESTING_SRC))
