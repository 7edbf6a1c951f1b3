#!/usr/bin/env bash
# Build the wheelhouse that installs the bridge on a box without reaching PyPI from the box:
# the centralita wheel plus pure-Python wheels of its dependencies, at the versions pinned in
# requirements.txt. Everything the bridge needs is pure Python, so one wheelhouse fits any box.
#   build-wheelhouse.sh OUTPUT_DIR [EXTRA_REQUIREMENT...]   (extras: e.g. pytest for test boxes)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)
out=${1:?usage: build-wheelhouse.sh OUTPUT_DIR [EXTRA_REQUIREMENT...]}
shift
python=${PYTHON:-$top/.venv/bin/python}

rm -rf "$out"
mkdir -p "$out"
# A fixed timestamp makes the wheel byte-for-byte reproducible, so re-running a playbook that ships it
# changes nothing when the code did not change.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-315532800} "$python" -m pip wheel -q --no-deps "$top/bridge" -w "$out" 2>/dev/null
# The bridge's dependencies, pinned to the versions the tests ran with.
pins=()
for name in websocket-client python-dotenv websockets librouteros pyroute2 "$@"; do
    pin=$(grep -i "^${name%%=*}==" "$top/requirements.txt" || true)
    pins+=("${pin:-$name}")
done
"$python" -m pip download -q --only-binary=:all: --implementation py --abi none --platform any \
    --python-version 3.11 -d "$out" "${pins[@]}" 2>/dev/null
ls "$out"
# setuptools builds in the source tree; leave it clean.
rm -rf "$top/bridge/build" "$top"/bridge/src/*.egg-info
