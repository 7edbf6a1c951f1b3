#!/usr/bin/env bash
# Build a Debian systemd image that the lab box and Molecule boot: forky (Asterisk 22 from Debian, the
# default) or bookworm (Debian 12, where Asterisk 20 is built from source: the chan_sip scenario).
#
# No container registry is needed: the root filesystem comes from debootstrap against the Debian
# mirror and is imported into podman. The image tag carries a hash of this script, so editing the
# recipe builds a new image and an unchanged recipe reuses the existing one in about a second.
#
# Usage: build-image.sh [forky|bookworm]   prints the image reference it ensured exists
#        CENTRALITA_MIRROR=http://... build-image.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mirror=${CENTRALITA_MIRROR:-http://deb.debian.org/debian}
suite=${1:-forky}
case $suite in
# bookworm's debootstrap has no forky script; sid's script builds any testing suite.
forky) script=/usr/share/debootstrap/scripts/sid ;;
bookworm) script=/usr/share/debootstrap/scripts/bookworm ;;
*)
    echo "build-image.sh: unknown suite '$suite': use forky or bookworm" >&2
    exit 2
    ;;
esac
packages=systemd,systemd-sysv,python3,python3-apt,dbus,iproute2,procps,ca-certificates,sudo,locales-all
recipe_hash=$(cat "$here/build-image.sh" | sha256sum | cut -c1-12)
image="localhost/centralita-${suite}:${recipe_hash}"

if podman image exists "$image"; then
    echo "$image"
    exit 0
fi

workdir=$(mktemp -d /var/tmp/centralita-rootfs.XXXXXX)
trap 'rm -rf "$workdir"' EXIT

echo "building $image from $mirror ($suite), this takes about a minute" >&2
debootstrap --variant=minbase --include="$packages" "$suite" "$workdir/root" "$mirror" \
    "$script" >"$workdir/debootstrap.log" 2>&1 || {
    tail -n 30 "$workdir/debootstrap.log" >&2
    echo "debootstrap failed: is the Debian mirror $mirror reachable? Set CENTRALITA_MIRROR to use another." >&2
    exit 1
}

root="$workdir/root"
# The mirror is a frozen snapshot whose forky Release file has expired: apt must not reject it.
# (Harmless for bookworm, whose Release file is still valid.)
cat >"$root/etc/apt/apt.conf.d/99centralita-snapshot" <<'EOF'
Acquire::Check-Valid-Until "false";
APT::Install-Recommends "false";
EOF
echo "deb $mirror $suite main" >"$root/etc/apt/sources.list"
# A container has no consoles or hardware to wait for.
for unit in getty.target console-getty.service systemd-udevd.service systemd-udev-trigger.service \
    systemd-firstboot.service systemd-remount-fs.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
: >"$root/etc/machine-id"
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*

tar -C "$root" -c . | podman import --change 'CMD ["/sbin/init"]' \
    --change 'ENV container=podman' --change 'STOPSIGNAL SIGRTMIN+3' - "$image" >"$workdir/import.log" 2>&1 || {
    cat "$workdir/import.log" >&2
    exit 1
}
# Keep only the newest recipe's image. Never forced: an older image still used by a container (another
# checkout's box, the lab box) stays until that container is gone.
podman images --format '{{.Repository}}:{{.Tag}}' | grep "^localhost/centralita-${suite}:" |
    grep -v ":${recipe_hash}\$" | xargs -r -n1 podman rmi >/dev/null 2>&1 || true
echo "$image"
