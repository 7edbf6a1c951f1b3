"""`ansible-playbook site.yml --tags asterisk` must run the whole role, dynamic includes too.

Tags on an `include_tasks` select the include itself, not the tasks it brings in: without `apply`, a run limited
to the role's tags would skip them silently (the templates would never be rendered) and still end green.
"""

from __future__ import annotations

from pathlib import Path

import yaml

TASKS = Path(__file__).resolve().parents[1] / "tasks"
INCLUDE_KEYS = ("ansible.builtin.include_tasks", "include_tasks")


def dynamic_includes() -> list[tuple[str, dict]]:
    found = []
    for path in sorted(TASKS.glob("*.yml")):
        for task in yaml.safe_load(path.read_text()) or []:
            for key in INCLUDE_KEYS:
                if key in task:
                    found.append((f"{path.name}: {task.get('name', key)}", task))
    return found


def test_the_role_has_dynamic_includes_to_check():
    assert dynamic_includes(), "no include_tasks left: this test has nothing to guard, remove it"


def test_every_dynamic_include_applies_the_role_tag_to_the_tasks_it_includes():
    for where, task in dynamic_includes():
        spec = next(task[key] for key in INCLUDE_KEYS if key in task)
        assert isinstance(spec, dict), f"{where}: use `file:` with `apply: {{tags: [asterisk, ...]}}`"
        applied = spec.get("apply", {}).get("tags", [])
        assert "asterisk" in applied, f"{where}: its tasks would be skipped by --tags asterisk"
