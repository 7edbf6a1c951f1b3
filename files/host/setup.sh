#!/usr/bin/env bash
# Prepare a Debian machine (as root) to run the lab box, Molecule and the demo call.
#
# Idempotent and quick when everything is already in place:
#   - apt packages: podman and runc, debootstrap, SIPp, espeak-ng and sox for spoken test callers, Chromium and
#     its WebDriver for the console's browser tests
#   - /etc/containers/containers.conf adjustments for hosts that need them
#   - the Debian forky and bookworm systemd images (files/host/build-image.sh; bookworm: the chan_sip scenario)
# It never touches an existing containers.conf setting it does not own: its settings live in a
# drop-in, /etc/containers/containers.conf.d/50-centralita.conf.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh must run as root: it installs packages and configures podman." >&2
    exit 1
fi

packages=(podman runc debootstrap sip-tester espeak-ng sox iproute2 python3-venv chromium chromium-driver)
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# podman settings this kind of host needs. crun refuses hybrid cgroups, so hybrid hosts use runc;
# rlimits cannot be raised here, so the container limits stay below the host's hard limits.
conf_dir=/etc/containers/containers.conf.d
conf="$conf_dir/50-centralita.conf"
nofile=$(ulimit -Hn)
[ "$nofile" = unlimited ] && nofile=1048576
[ "$nofile" -gt 20000 ] && nofile=20000
want=$(
    printf '# Written by Centralita files/host/setup.sh\n[containers]\n'
    printf 'default_ulimits = ["nofile=%s:%s", "nproc=4096:4096"]\n' "$nofile" "$nofile"
    if [ -d /sys/fs/cgroup/unified ]; then
        printf '\n[engine]\nruntime = "runc"\n'
    fi
)
mkdir -p "$conf_dir"
if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$want" ]; then
    printf '%s\n' "$want" >"$conf"
    echo "wrote $conf" >&2
fi

"$here/build-image.sh"
"$here/build-image.sh" bookworm
