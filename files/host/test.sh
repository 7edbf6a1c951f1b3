#!/usr/bin/env bash
# Run Centralita's checks and print one summary at the end.
#   test.sh lint | unit | molecule | cluster | all
# Every step runs even when an earlier one failed, so one run shows everything that is wrong.
# The last line is "N passed, N failed" over the steps; the exit code is non-zero if any failed.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
what=${1:-all}
export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_CONFIG="$PWD/ansible.cfg"
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0

names=() results=() seconds=()
step() {
    local name=$1
    shift
    echo
    echo "=== $name: $*"
    local start=$SECONDS
    if "$@"; then results+=(ok); else results+=(FAILED); fi
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
    step unit-tests pytest -q -p no:cacheprovider roles $([[ -d bridge ]] && echo bridge --ignore=bridge/integration)
fi
if [[ $what == molecule || $what == all ]]; then
    step molecule molecule test
fi
# Two light boxes behind the SIP front (docs/SCALE_OUT.md): its own containers and podman network.
if [[ $what == cluster ]]; then
    step cluster molecule test -s cluster
fi

passed=0 failed=0
echo
echo "=== summary"
for i in "${!names[@]}"; do
    printf '  %-14s %-7s %5ss\n' "${names[$i]}" "${results[$i]}" "${seconds[$i]}"
    if [[ ${results[$i]} == ok ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
