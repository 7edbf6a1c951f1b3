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
    playbook: str, extra_vars: dict[str, Any], tmp_path: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run ``playbook`` (a file next to this one) on localhost with ``extra_vars`` given as a JSON file."""
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(json.dumps(extra_vars), encoding="utf-8")
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"),
        ANSIBLE_ROLES_PATH=str(PROJECT / "roles"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
    )
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
    return subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=300)


def render_env(tmp_path: Path, variables: dict[str, Any]) -> Path:
    """The role's env.j2 rendered by real Ansible with ``variables`` over the role's defaults."""
    result = run_playbook("render_env.yml", {"render_dir": str(tmp_path), **variables}, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    return tmp_path / ".env"
