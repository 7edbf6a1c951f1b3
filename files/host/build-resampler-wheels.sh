#!/usr/bin/env bash
# Download the soxr and numpy wheels (versions pinned in requirements.txt) for one Python version and
# architecture, for a box whose distribution has no python3-soxr (Debian 12 and 13): the bridge's 24 kHz PCM
# fallback resamples with them. They are binary manylinux wheels (glibc 2.28 or newer), so unlike the main
# wheelhouse (build-wheelhouse.sh, pure Python) they are made per box type. An existing download is reused.
#   build-resampler-wheels.sh OUTPUT_DIR PYTHON_VERSION ARCH     e.g. /tmp/w 3.11 x86_64
# OUTPUT_DIR also gets resampler.txt, the pinned requirements to install from it.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)
usage="usage: build-resampler-wheels.sh OUTPUT_DIR PYTHON_VERSION ARCH"
out=${1:?$usage}
version=${2:?$usage}
arch=${3:?$usage}
python=${PYTHON:-$top/.venv/bin/python}

pins=()
for name in soxr numpy; do
    pin=$(grep -i "^${name}==" "$top/requirements.txt") || {
        echo "build-resampler-wheels.sh: $name is not pinned in requirements.txt" >&2
        exit 1
    }
    pins+=("$pin")
done
mkdir -p "$out"
printf '%s\n' "${pins[@]}" >"$out/resampler.txt.new"
platforms=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014; do platforms+=(--platform "${tag}_${arch}"); done
"$python" -m pip download -q --only-binary=:all: "${platforms[@]}" --python-version "$version" \
    --implementation cp -d "$out" "${pins[@]}" >&2 || {
    echo "build-resampler-wheels.sh: no soxr/numpy wheels for Python $version on $arch could be downloaded" \
        "(${pins[*]}); is PyPI reachable from this machine? Set bridge_resampler: none to deploy without them." >&2
    exit 1
}
# Only the pinned versions stay (an earlier pin's wheels would be copied to the box for nothing).
for wheel in "$out"/*.whl; do
    name=$(basename "$wheel")
    keep=false
    for pin in "${pins[@]}"; do
        [[ $name == "${pin%%==*}-${pin##*==}-"* ]] && keep=true
    done
    $keep || rm -f "$wheel"
done
mv "$out/resampler.txt.new" "$out/resampler.txt"
ls "$out"
