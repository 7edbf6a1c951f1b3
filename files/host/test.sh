#!/usr/bin/env bash
# Run Centralita's checks and print one summary at the end.
#   test.sh lint | unit | molecule | chan_sip | cluster | all   (molecule: default and chan_sip; chan_sip,
#   cluster: that scenario only; all: lint, unit, default and chan_sip)
# Every step runs even when an earlier one failed, so one run shows everything that is wrong.
# The last line is "N passed, N failed, N not run" over the steps. A step is NOT RUN when what it needs is
# missing (the chan_sip scenario without the Asterisk 20 tarball): it is not a pass, so the exit code is
# non-zero if any step failed or did not run.
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
}

python_paths=()
for dir in roles molecule bridge; do [[ -d $dir ]] && python_paths+=("$dir"); done
syntax_check() {
    ansible-playbook --syntax-check -i inventory/production/hosts.yml site.yml &&
        ansible-playbook --syntax-check -i inventory/lab/hosts.yml site.yml playbooks/lab.yml
}

if [[ $what == lint || $what == all ]]; then
    step ruff ruff check "${python_paths[@]}"
    step ruff-format ruff format --check "${python_paths[@]}"
    step mypy mypy "${python_paths[@]}"
    step yamllint yamllint --strict .
    step ansible-lint ansible-lint --profile production
    step syntax-check syntax_check
fi
if [[ $what == unit || $what == all ]]; then
    # One worker per core (pytest-xdist): the tests share no ports or files, so they run side by side.
    step unit-tests pytest -q -p no:cacheprovider -n auto roles $([[ -d bridge ]] && echo bridge --ignore=bridge/integration)
fi
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

if [[ $what == molecule || $what == all ]]; then
    step molecule molecule test
fi
if [[ $what == molecule || $what == chan_sip || $what == all ]]; then
    step molecule-chan_sip chan_sip_scenario
fi
# Two light boxes behind the SIP front (docs/SCALE_OUT.md): its own containers and podman network.
if [[ $what == cluster ]]; then
    step cluster molecule test -s cluster
fi

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
echo "$passed passed, $failed failed, $not_run not run"
[[ $failed -eq 0 && $not_run -eq 0 ]]
