#!/usr/bin/env bash
# Run Centralita's checks and print one summary at the end.
#   test.sh lint | unit | molecule | chan_sip | cluster | all   (molecule: the three Molecule scenarios, default,
#   chan_sip and cluster; chan_sip, cluster: that scenario only; all: lint, unit and the three scenarios)
# Every step runs even when an earlier one failed, so one run shows everything that is wrong.
# The last line is "N passed, N failed, N not run" over the steps. A step is NOT RUN when what it needs is
# missing (the chan_sip scenario without the Asterisk 20 tarball): it is not a pass, so the exit code is
# non-zero if any step failed or did not run.
# Lint runs first, on its own; then two lanes side by side: the default scenario in one; the unit tests (all only),
# chan_sip then cluster in the other. Each lane's output is printed whole when the lane ends, and the summary lists
# the steps in that order. CENTRALITA_TEST_SERIAL=1 runs everything one after the other instead (lint, unit, then the
# scenarios), its output as it comes.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
what=${1:-all}
export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_CONFIG="$PWD/ansible.cfg"
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0

names=() results=() seconds=()
NOT_RUN=3 # exit code of a step that could not run
step() {
    local name=$1
    shift
    echo
    echo "=== $name: $*"
    local start=$SECONDS rc=0
    "$@" || rc=$?
    case $rc in
    0) results+=(ok) ;;
    "$NOT_RUN") results+=("NOT RUN") ;;
    *) results+=(FAILED) ;;
    esac
    names+=("$name")
    seconds+=($((SECONDS - start)))
    # In a lane (a subshell, whose arrays the main shell never sees) the result also goes to the lane's file.
    if [[ -n ${lane_results:-} ]]; then
        printf '%s\t%s\t%s\n' "$name" "${results[-1]}" "${seconds[-1]}" >>"$lane_results"
    fi
}

python_paths=()
for dir in roles molecule bridge; do [[ -d $dir ]] && python_paths+=("$dir"); done
syntax_check() {
    ansible-playbook --syntax-check -i inventory/production/hosts.yml site.yml &&
        ansible-playbook --syntax-check -i inventory/lab/hosts.yml site.yml playbooks/lab.yml
}

# Each scenario's box tests are collected (imported) here, in seconds: a name missing from the shared helpers
# would otherwise show only after the box was built. One scenario at a time: each has a conftest of its own.
collect_box_tests() {
    local scenario
    for scenario in molecule/*/tests; do
        [[ -d $scenario ]] || continue
        pytest --collect-only -q -p no:cacheprovider "$scenario" >/dev/null || {
            pytest --collect-only -q -p no:cacheprovider "$scenario" | tail -20
            return 1
        }
    done
}

lint_steps() {
    step ruff ruff check "${python_paths[@]}"
    step ruff-format ruff format --check "${python_paths[@]}"
    step mypy mypy "${python_paths[@]}"
    step yamllint yamllint --strict .
    step ansible-lint ansible-lint --profile production
    step syntax-check syntax_check
    step box-tests-import collect_box_tests
}
unit_steps() {
    # One worker per core (pytest-xdist): the tests share no ports or files, so they run side by side.
    step unit-tests pytest -q -p no:cacheprovider -n auto roles $([[ -d bridge ]] && echo bridge --ignore=bridge/integration)
}
# The chan_sip scenario builds Asterisk 20 from its release tarball, which this machine cannot download:
# CENTRALITA_ASTERISK_SOURCE (and CENTRALITA_ASTERISK_SHA256) name it, or CI's ../shared/asterisk copy is used.
chan_sip_scenario() {
    local tarball=${CENTRALITA_ASTERISK_SOURCE:-} sha=${CENTRALITA_ASTERISK_SHA256:-}
    local shared=../shared/asterisk/asterisk-20.20.1.tar.xz
    if [[ -z $tarball && -f $shared ]]; then
        tarball=$(cd "$(dirname "$shared")" && pwd)/$(basename "$shared")
    fi
    if [[ -z $tarball ]]; then
        echo "chan_sip scenario NOT RUN: no Asterisk 20 source (set CENTRALITA_ASTERISK_SOURCE)"
        return "$NOT_RUN"
    fi
    if [[ ! -f $tarball ]]; then
        echo "chan_sip scenario NOT RUN: CENTRALITA_ASTERISK_SOURCE=$tarball is not a file"
        return "$NOT_RUN"
    fi
    if [[ -z $sha && -f $(dirname "$tarball")/SHA256SUMS ]]; then
        sha=$(awk -v name="$(basename "$tarball")" '$2 == name || $2 == "*" name {print $1}' \
            "$(dirname "$tarball")/SHA256SUMS")
    fi
    if [[ -z $sha ]]; then
        echo "chan_sip scenario NOT RUN: no sha256 for $tarball (set CENTRALITA_ASTERISK_SHA256, or put it in a" \
            "SHA256SUMS file beside the tarball)"
        return "$NOT_RUN"
    fi
    echo "Asterisk 20 source: $tarball (sha256 $sha)"
    CENTRALITA_ASTERISK_SOURCE=$tarball CENTRALITA_ASTERISK_SHA256=$sha molecule test -s chan_sip
}

# Two lanes of about the same length: the default scenario (the longest, about 34 minutes beside the other lane) in
# one; the unit tests (with all), then chan_sip, then cluster (two light boxes behind the SIP front,
# docs/SCALE_OUT.md) in the other. The unit tests run beside the default scenario's create and converge: they wait
# for what they check with deadlines, never on the machine being idle (bridge/tests).
default_lane() {
    step molecule molecule test
}
second_lane_scenarios() {
    step molecule-chan_sip chan_sip_scenario
    step cluster molecule test -s cluster
}
second_lane() {
    if [[ $what == all ]]; then
        unit_steps
    fi
    second_lane_scenarios
}

# The lanes run side by side. The scenarios share nothing on the host: each has containers of its own (and so its
# own cgroup and records directories), its own network namespace or podman network, and its own wheelhouse
# directory (playbooks/group_vars/all.yml), built from a copy of the sources (build-wheelhouse.sh never writes to
# the checkout). Much of a scenario's time is waiting on real time (live calls, restarts, probing), not CPU, and
# side by side that waiting overlaps.
lanes_side_by_side() {
    local lanes=(default_lane second_lane) pids=() logs=() files=() starts=() running=() left=() ids=() i done_pid
    lane_dir=$(mktemp -d "${TMPDIR:-/tmp}/centralita-test.XXXXXX")
    trap 'rm -rf "$lane_dir"' EXIT
    for i in "${!lanes[@]}"; do
        logs[i]=$lane_dir/lane-$((i + 1)).log
        files[i]=$lane_dir/lane-$((i + 1)).results
        starts[i]=$SECONDS
        : >"${files[i]}"
        (lane_results=${files[i]} "${lanes[i]}") >"${logs[i]}" 2>&1 &
        pids[i]=$!
        echo
        echo "=== lane $((i + 1)) (${lanes[i]}) started: its output goes to ${logs[i]}, printed here when it ends"
    done
    # bash reaps a lane as soon as it ends and keeps its status for wait: the lanes still to print are tracked here.
    running=("${!pids[@]}")
    while ((${#running[@]})); do
        ids=()
        for i in "${running[@]}"; do ids+=("${pids[i]}"); done
        done_pid=
        wait -n -p done_pid "${ids[@]}"
        left=()
        for i in "${running[@]}"; do
            if [[ ${pids[i]} == "$done_pid" || -z $done_pid ]]; then
                [[ -z $done_pid ]] && wait "${pids[i]}" 2>/dev/null
                echo
                echo "=== lane $((i + 1)) (${lanes[i]}) ended after $((SECONDS - starts[i])) s; its output:"
                cat "${logs[i]}"
            else
                left+=("$i")
            fi
        done
        running=("${left[@]}")
    done
    # The summary lists the steps in lane order, whichever lane ended first.
    local name result secs
    for i in "${!lanes[@]}"; do
        while IFS=$'\t' read -r name result secs; do
            names+=("$name")
            results+=("$result")
            seconds+=("$secs")
        done <"${files[i]}"
    done
}

case $what in
lint) lint_steps ;;
unit) unit_steps ;;
chan_sip) step molecule-chan_sip chan_sip_scenario ;;
cluster) step cluster molecule test -s cluster ;;
molecule | all)
    if [[ $what == all ]]; then
        lint_steps
    fi
    if [[ ${CENTRALITA_TEST_SERIAL:-} == 1 ]]; then
        if [[ $what == all ]]; then
            unit_steps
        fi
        default_lane
        second_lane_scenarios
    else
        lanes_side_by_side
    fi
    ;;
*)
    echo "usage: test.sh lint | unit | molecule | chan_sip | cluster | all" >&2
    exit 2
    ;;
esac

passed=0 failed=0 not_run=0
echo
echo "=== summary"
for i in "${!names[@]}"; do
    printf '  %-18s %-8s %5ss\n' "${names[$i]}" "${results[$i]}" "${seconds[$i]}"
    case ${results[$i]} in
    ok) passed=$((passed + 1)) ;;
    "NOT RUN") not_run=$((not_run + 1)) ;;
    *) failed=$((failed + 1)) ;;
    esac
done
echo "  (wall time $SECONDS s)"
echo "$passed passed, $failed failed, $not_run not run"
[[ $failed -eq 0 && $not_run -eq 0 ]]
