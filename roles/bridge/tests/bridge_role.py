"""Helpers to run the bridge role's test playbooks with real Ansible on this machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")


def run_playbook(
    playbook: str, extra_vars: dict[str, Any], tmp_path: Path, *args: str, path_first: Path | None = None
) -> tuple[int, str]:
    """Run a playbook of this directory on localhost; its exit code and its output on one line."""
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(json.dumps(extra_vars))
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"),
        ANSIBLE_ROLES_PATH=str(PROJECT / "roles"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
    )
    if path_first is not None:
        env["PATH"] = f"{path_first}{os.pathsep}{env['PATH']}"
    cmd = [
        str(ANSIBLE_PLAYBOOK),
        "-i",
        "localhost,",
        str(HERE / playbook),
        "-e",
        f"@{vars_file}",
        "-e",
        f"ansible_python_interpreter={sys.executable}",
        *args,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=300)
    return result.returncode, " ".join((result.stdout + result.stderr).split())
