"""files/host/test.sh, what `make test` and CI run: lint first, on its own, then two lanes side by side (the default
scenario in one; the unit tests, chan_sip and cluster in the other), each lane's output printed whole when it ends, and
the summary's steps, results and exit code as when they ran one by one.

The script runs from a copy of itself in a scratch checkout whose .venv/bin holds fakes of every tool it runs
(`molecule`, `pytest`, the linters; test.sh puts the checkout's .venv/bin first on PATH). A fake records when it
starts and ends, and can be told to wait until another one has started: one that waits for a step in the other lane
can only finish when the lanes really run side by side (run one after the other, it gives up and fails).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from paths import REPO

FAKE_TOOL = r"""#!/usr/bin/env bash
# A fake of the tool it is named after. Its name in the events: the scenario for `molecule test [-s NAME]` (default
# without -s), ruff-check or ruff-format for ruff, pytest-collect for `pytest --collect-only` (lint's import of the
# box tests), its own name for the others. It records its start and end, prints
# two lines, optionally waits for another to start (FAKE_WAIT_<name>, dashes as underscores), and exits with
# FAKE_RC_<name> (0 by default).
name=$(basename "$0")
case $name in
molecule) name=default; [[ ${2:-} == -s ]] && name=$3 ;;
ruff) name=ruff-$1 ;;
pytest) [[ " $* " == *" --collect-only "* ]] && name=pytest-collect ;;
esac
var=${name//-/_}
# The first line is out before the start is recorded: a step waiting for this one's start comes after it.
echo "$name: first line"
echo "start $name" >>"$FAKE_EVENTS"
wait_var=FAKE_WAIT_$var
if [[ -n ${!wait_var:-} ]]; then
    for _ in $(seq 600); do
        grep -qx "start ${!wait_var}" "$FAKE_EVENTS" && break
        sleep 0.1
    done
    grep -qx "start ${!wait_var}" "$FAKE_EVENTS" || { echo "$name: ${!wait_var} never started"; exit 1; }
fi
echo "$name: last line"
echo "end $name" >>"$FAKE_EVENTS"
rc_var=FAKE_RC_$var
exit "${!rc_var:-0}"
"""
TOOLS = ("molecule", "pytest", "ruff", "mypy", "yamllint", "ansible-lint", "ansible-playbook")
# The scratch checkout has two scenarios' test folders: lint collects each (pytest --collect-only).
SCENARIOS = ("chan_sip", "default")
LINT = [
    "ruff-check",
    "ruff-format",
    "mypy",
    "yamllint",
    "ansible-lint",
    "ansible-playbook",
    "ansible-playbook",
    *(["pytest-collect"] * len(SCENARIOS)),
]
LINT_STEPS = [
    ("ruff", "ok"),
    ("ruff-format", "ok"),
    ("mypy", "ok"),
    ("yamllint", "ok"),
    ("ansible-lint", "ok"),
    ("syntax-check", "ok"),
    ("box-tests-import", "ok"),
]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    (root / "files" / "host").mkdir(parents=True)
    for scenario in SCENARIOS:
        (root / "molecule" / scenario / "tests").mkdir(parents=True)
    shutil.copy(REPO / "files" / "host" / "test.sh", root / "files" / "host" / "test.sh")
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for tool in TOOLS:
        (bin_dir / tool).write_text(FAKE_TOOL)
        (bin_dir / tool).chmod(0o755)
    (tmp_path / "asterisk-20.20.1.tar.xz").write_bytes(b"not a real tarball: the fake molecule never opens it")
    return root


def run_test_sh(checkout: Path, what: str, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    events = checkout.parent / "events"
    events.touch()
    full_env = {
        "PATH": os.environ["PATH"],
        "HOME": str(checkout.parent),
        "TMPDIR": str(checkout.parent),
        "FAKE_EVENTS": str(events),
        "CENTRALITA_ASTERISK_SOURCE": str(checkout.parent / "asterisk-20.20.1.tar.xz"),
        "CENTRALITA_ASTERISK_SHA256": "0" * 64,
        **env,
    }
    result = subprocess.run(
        ["bash", str(checkout / "files" / "host" / "test.sh"), what],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        check=False,
    )
    return result, events.read_text().splitlines()


def summary(output: str) -> list[tuple[str, str]]:
    """The summary's (step, result) rows, in order."""
    rows = output.split("=== summary\n", 1)[1].splitlines()
    return [
        (line.split()[0], " ".join(line.split()[1:-1])) for line in rows if line.startswith("  ") and "wall" not in line
    ]


def test_the_scenarios_run_in_two_lanes_side_by_side_and_the_summary_lists_them_in_order(checkout: Path) -> None:
    # The default scenario finishes only once the cluster scenario, second in the other lane, has started, and
    # the other way round: both are up at the same time.
    result, events = run_test_sh(checkout, "molecule", FAKE_WAIT_default="cluster", FAKE_WAIT_cluster="default")
    assert result.returncode == 0, result.stdout + result.stderr
    assert summary(result.stdout) == [("molecule", "ok"), ("molecule-chan_sip", "ok"), ("cluster", "ok")]
    assert result.stdout.rstrip().endswith("3 passed, 0 failed, 0 not run")
    # In the second lane chan_sip ends before cluster starts; the default scenario runs beside it.
    assert events.index("end chan_sip") < events.index("start cluster")
    assert events.index("start default") < events.index("end cluster")
    assert events.index("start cluster") < events.index("end default")


def test_each_lane_s_output_is_printed_whole_when_it_ends(checkout: Path) -> None:
    result, _ = run_test_sh(checkout, "molecule", FAKE_WAIT_default="cluster")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    # Live, the cluster's first line would come between the default scenario's two (which waits for the cluster to
    # start, and the cluster prints before it records its start); printed whole, each lane's lines follow each other.
    assert lines.index("default: last line") == lines.index("default: first line") + 1
    assert lines.index("cluster: last line") == lines.index("cluster: first line") + 1
    assert any(line.startswith("=== lane 1 (default_lane) ended after") for line in lines)
    assert any(line.startswith("=== lane 2 (second_lane) ended after") for line in lines)


def test_a_failed_step_and_a_step_that_could_not_run_make_the_exit_code_non_zero(checkout: Path) -> None:
    result, events = run_test_sh(checkout, "molecule", FAKE_RC_cluster="2", CENTRALITA_ASTERISK_SOURCE="")
    assert result.returncode != 0
    assert summary(result.stdout) == [("molecule", "ok"), ("molecule-chan_sip", "NOT RUN"), ("cluster", "FAILED")]
    assert result.stdout.rstrip().endswith("1 passed, 1 failed, 1 not run")
    assert "chan_sip scenario NOT RUN: no Asterisk 20 source" in result.stdout
    # The step after one that did not run still runs.
    assert "start cluster" in events


def test_every_step_passed_is_the_only_zero_exit(checkout: Path) -> None:
    result, _ = run_test_sh(checkout, "molecule", FAKE_RC_default="1")
    assert result.returncode != 0
    assert summary(result.stdout) == [("molecule", "FAILED"), ("molecule-chan_sip", "ok"), ("cluster", "ok")]
    assert result.stdout.rstrip().endswith("2 passed, 1 failed, 0 not run")


def test_serial_runs_the_scenarios_one_after_the_other(checkout: Path) -> None:
    result, events = run_test_sh(checkout, "molecule", CENTRALITA_TEST_SERIAL="1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert events == [
        "start default",
        "end default",
        "start chan_sip",
        "end chan_sip",
        "start cluster",
        "end cluster",
    ]
    assert summary(result.stdout) == [("molecule", "ok"), ("molecule-chan_sip", "ok"), ("cluster", "ok")]


@pytest.mark.parametrize(
    ("what", "scenario", "step"), [("cluster", "cluster", "cluster"), ("chan_sip", "chan_sip", "molecule-chan_sip")]
)
def test_a_single_scenario_runs_alone(checkout: Path, what: str, scenario: str, step: str) -> None:
    result, events = run_test_sh(checkout, what)
    assert result.returncode == 0, result.stdout + result.stderr
    assert events == [f"start {scenario}", f"end {scenario}"]
    assert summary(result.stdout) == [(step, "ok")]


def events_of(events: list[str], names: set[str]) -> list[str]:
    return [event for event in events if event.split()[1] in names]


def test_all_runs_lint_alone_then_the_unit_tests_in_the_second_lane_beside_the_default_scenario(
    checkout: Path,
) -> None:
    # The unit tests finish only once the default scenario has started, and the other way round: side by side.
    result, events = run_test_sh(checkout, "all", FAKE_WAIT_pytest="default", FAKE_WAIT_default="pytest")
    assert result.returncode == 0, result.stdout + result.stderr
    assert summary(result.stdout) == [
        *LINT_STEPS,
        ("molecule", "ok"),
        ("unit-tests", "ok"),
        ("molecule-chan_sip", "ok"),
        ("cluster", "ok"),
    ]
    assert result.stdout.rstrip().endswith("11 passed, 0 failed, 0 not run")
    # Lint first, one tool after the other, all of it before either lane starts.
    lint = [event for name in LINT for event in (f"start {name}", f"end {name}")]
    assert events[: len(lint)] == lint
    # In the second lane the unit tests come first, then chan_sip, then cluster, one after the other.
    assert events_of(events, {"pytest", "chan_sip", "cluster"}) == [
        "start pytest",
        "end pytest",
        "start chan_sip",
        "end chan_sip",
        "start cluster",
        "end cluster",
    ]
    assert events.index("start default") < events.index("end pytest")
    assert events.index("start pytest") < events.index("end default")


def test_failed_unit_tests_are_a_failed_step_and_the_scenarios_after_them_still_run(checkout: Path) -> None:
    result, events = run_test_sh(checkout, "all", FAKE_RC_pytest="1", FAKE_RC_mypy="1")
    assert result.returncode != 0
    rows = summary(result.stdout)
    assert ("mypy", "FAILED") in rows
    assert rows[len(LINT_STEPS) :] == [
        ("molecule", "ok"),
        ("unit-tests", "FAILED"),
        ("molecule-chan_sip", "ok"),
        ("cluster", "ok"),
    ]
    assert result.stdout.rstrip().endswith("9 passed, 2 failed, 0 not run")
    assert {"end default", "end chan_sip", "end cluster"} <= set(events)


def test_box_tests_that_cannot_be_imported_fail_lint_and_the_lanes_still_run(checkout: Path) -> None:
    result, events = run_test_sh(checkout, "all", FAKE_RC_pytest_collect="1")
    assert result.returncode != 0
    rows = summary(result.stdout)
    assert rows[: len(LINT_STEPS)] == [*LINT_STEPS[:-1], ("box-tests-import", "FAILED")]
    assert "pytest-collect: last line" in result.stdout  # what the collection said is shown
    assert rows[len(LINT_STEPS) :] == [
        ("molecule", "ok"),
        ("unit-tests", "ok"),
        ("molecule-chan_sip", "ok"),
        ("cluster", "ok"),
    ]
    assert {"end default", "end pytest", "end chan_sip", "end cluster"} <= set(events)


def test_serial_all_runs_lint_then_the_unit_tests_then_the_scenarios_one_after_the_other(checkout: Path) -> None:
    result, events = run_test_sh(checkout, "all", CENTRALITA_TEST_SERIAL="1")
    assert result.returncode == 0, result.stdout + result.stderr
    names = [*LINT, "pytest", "default", "chan_sip", "cluster"]
    assert events == [event for name in names for event in (f"start {name}", f"end {name}")]
    assert summary(result.stdout) == [
        *LINT_STEPS,
        ("unit-tests", "ok"),
        ("molecule", "ok"),
        ("molecule-chan_sip", "ok"),
        ("cluster", "ok"),
    ]


def test_the_molecule_target_runs_the_scenarios_without_lint_or_unit_tests(checkout: Path) -> None:
    result, events = run_test_sh(checkout, "molecule")
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted({event.split()[1] for event in events}) == ["chan_sip", "cluster", "default"]
