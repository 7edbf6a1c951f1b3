"""Helpers to run the kamailio role's test playbooks with real Ansible on this machine."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"),
        ANSIBLE_ROLES_PATH=str(PROJECT / "roles"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
    )
    return env


def run_playbook(
    playbook: str, extra_vars: dict[str, Any], tmp_path: Path, *args: str, inventory: str = "localhost,"
) -> subprocess.CompletedProcess[str]:
    """Run ``playbook`` (a file next to this one) with ``extra_vars`` given as a JSON file."""
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(json.dumps(extra_vars), encoding="utf-8")
    cmd = [
        str(ANSIBLE_PLAYBOOK),
        "-i",
        inventory,
        str(HERE / playbook),
        "-e",
        f"@{vars_file}",
        "-e",
        f"ansible_python_interpreter={sys.executable}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=ansible_env(), check=False, timeout=300)


def route_block(cfg: str, name: str) -> str:
    """The body of one route block of kamailio.cfg (``request_route``, ``route[TO_BOX]``, ...)."""
    match = re.search(r"^" + re.escape(name) + r" \{\n(.*?)^\}", cfg, re.M | re.S)
    assert match, f"no {name} block in kamailio.cfg"
    return match.group(1)


def modparams(cfg: str, module: str) -> dict[str, list[str]]:
    """Every modparam of one module: {name: [value, ...]} (values as written, quotes removed)."""
    found: dict[str, list[str]] = {}
    for name, value in re.findall(r'^modparam\("' + re.escape(module) + r'", "([^"]+)", (.+)\)$', cfg, re.M):
        found.setdefault(name, []).append(value.strip().strip('"'))
    return found
