#!/usr/bin/env bash
# Build the wheelhouse that installs the bridge on a box without reaching PyPI from the box:
# the centralita wheel, the centralita-testing wheel (the fake peers, installed only where a fake
# runs) and pure-Python wheels of their dependencies, at the versions pinned in requirements.txt.
# Everything they need is pure Python, so one wheelhouse fits any box (the console's two compiled
# dependencies come from Debian on the box).
#   build-wheelhouse.sh OUTPUT_DIR [EXTRA_REQUIREMENT...]   (extras: e.g. pytest for test boxes)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)
out=${1:?usage: build-wheelhouse.sh OUTPUT_DIR [EXTRA_REQUIREMENT...]}
shift
python=${PYTHON:-$top/.venv/bin/python}

# setuptools builds in the source tree (build/, the egg-info): the wheels are built from a copy of the sources, so
# the checkout is never written to and several builds (Molecule scenarios side by side, lint or unit tests reading
# bridge/ meanwhile) never see each other's files.
work=$(mktemp -d "${TMPDIR:-/tmp}/centralita-wheel-src.XXXXXX")
trap 'rm -rf "$work"' EXIT
tar -C "$top" --exclude=build --exclude='*.egg-info' --exclude=__pycache__ \
    -c bridge/pyproject.toml bridge/src bridge/testing/pyproject.toml bridge/testing/src | tar -C "$work" -x

rm -rf "$out"
mkdir -p "$out"
# A fixed timestamp makes the wheel byte-for-byte reproducible, so re-running a playbook that ships it
# changes nothing when the code did not change.
for project in "$work/bridge" "$work/bridge/testing"; do
    SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-315532800} "$python" -m pip wheel -q --no-deps "$project" -w "$out" 2>/dev/null
done
# The dependencies of both, pinned to the versions the tests ran with.
pins=()
for name in websocket-client python-dotenv websockets librouteros pyroute2 phonenumbers prometheus-client "$@"; do
    pin=$(grep -i "^${name%%=*}==" "$top/requirements.txt" || true)
    pins+=("${pin:-$name}")
done
"$python" -m pip download -q --only-binary=:all: --implementation py --abi none --platform any \
    --python-version 3.11 -d "$out" "${pins[@]}" 2>/dev/null
# The web console's pure-Python dependencies, without theirs: MarkupSafe and argon2's bindings are compiled, and
# the box takes them from Debian (python3-markupsafe, python3-argon2) through the venv's system site-packages.
web_pins=()
for name in Flask Flask-WTF WTForms Werkzeug Jinja2 itsdangerous click blinker waitress cheroot jaraco.functools \
    more-itertools; do
    pin=$(grep -i "^${name}==" "$top/requirements.txt" || true)
    web_pins+=("${pin:-$name}")
done
"$python" -m pip download -q --no-deps --only-binary=:all: --implementation py --abi none --platform any \
    --python-version 3.11 -d "$out" "${web_pins[@]}" 2>/dev/null
ls "$out"
