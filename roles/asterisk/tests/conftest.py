"""Helpers to run the asterisk role's test playbooks with real Ansible on this machine."""

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


def parse_asterisk_conf(text: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """Parse an Asterisk .conf file into [(section, [(key, value), ...]), ...], keeping order and
    repeated keys. Section template markers like "(!)" or "(base)" stay part of the header."""
    sections: list[tuple[str, list[tuple[str, str]]]] = [("", [])]
    for raw in text.splitlines():
        line = raw.replace("\\;", "\x00").split(";", 1)[0].replace("\x00", "\\;").strip()
        if not line or line.startswith("#include"):
            continue
        if line.startswith("["):
            sections.append((line, []))
            continue
        sep = "=>" if line.find("=>") == line.find("=") else "="
        key, _, value = line.partition(sep)
        sections[-1][1].append((key.strip(), value.strip()))
    return sections


def section(conf: list[tuple[str, list[tuple[str, str]]]], header: str) -> list[tuple[str, str]]:
    """All key/value pairs of the section(s) whose header is exactly `header`."""
    found = [pairs for name, pairs in conf if name == header]
    assert found, f"no section {header} in {[name for name, _ in conf]}"
    return [pair for pairs in found for pair in pairs]


def values(pairs: list[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in pairs if k == key]
