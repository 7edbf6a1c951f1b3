"""Name resolution, the kernel's route towards an address and a filesystem's free space, behind interfaces the
tests can replace.

``kernel_route`` asks the kernel exactly what ``ip route get <address>`` asks it (RTM_GETROUTE, through
pyroute2): the interface, the gateway and the source address a packet to that address would use now.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError


class ProbeError(Exception):
    """A name did not resolve, or there is no route; the message is the system's reason."""


@dataclass(frozen=True, slots=True)
class Route:
    """Where a packet to ``destination`` goes: out of ``interface``, through ``gateway`` (None: on-link)."""

    destination: str
    interface: str
    gateway: str | None
    source: str | None

    def describe(self) -> str:
        """``via 192.0.2.1 dev eth0 src 192.0.2.2``, as ``ip route get`` words it."""
        via = f"via {self.gateway} " if self.gateway else ""
        src = f" src {self.source}" if self.source else ""
        return f"{via}dev {self.interface}{src}"


# host name or address -> its addresses, in the order the system would try them; raises ProbeError.
Resolver = Callable[[str], list[str]]
# an address -> the route towards it; raises ProbeError.
RouteLookup = Callable[[str], Route]


def system_resolve(host: str) -> list[str]:
    """The addresses ``host`` resolves to through the system resolver (``/etc/hosts``, DNS), deduplicated."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise ProbeError(error.strerror or str(error)) from None
    except UnicodeError as error:
        raise ProbeError(f"not a valid host name ({error})") from None
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0]).split("%", 1)[0]
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise ProbeError("no address")
    return addresses


def kernel_route(address: str) -> Route:
    """The kernel's route to ``address`` (an IPv4 or IPv6 address, not a name)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        raise ProbeError(f"{address!r} is not an IP address") from None
    family = socket.AF_INET6 if parsed.version == 6 else socket.AF_INET
    with IPRoute() as ipr:
        try:
            routes = ipr.route("get", dst=str(parsed), family=family)
        except NetlinkError as error:
            raise ProbeError(os.strerror(error.code) if error.code else str(error)) from None
        if not routes:
            raise ProbeError("the kernel returned no route")
        route = routes[0]
        index = route.get_attr("RTA_OIF")
        name = str(index)
        if index is not None:
            try:
                links = ipr.link("get", index=index)
            except NetlinkError:
                links = []
            if links:
                name = str(links[0].get_attr("IFLA_IFNAME") or index)
        gateway = route.get_attr("RTA_GATEWAY")
        source = route.get_attr("RTA_PREFSRC")
    return Route(str(parsed), name, str(gateway) if gateway else None, str(source) if source else None)


@dataclass(frozen=True, slots=True)
class Filesystem:
    """The filesystem a path is on, as ``df`` and ``df -i`` see it. ``available`` is what a user other than root
    may still write (the services run as theirs; the blocks reserved for root do not help them)."""

    device: int
    size: int  # bytes
    available: int  # bytes
    inodes: int  # 0: the filesystem has no fixed number of them (e.g. btrfs)
    inodes_available: int
    read_only: bool


# a path -> the filesystem it is on; raises OSError (e.g. FileNotFoundError).
FilesystemProbe = Callable[[Path], Filesystem]


MOUNTINFO = Path("/proc/self/mountinfo")


def filesystem_of(path: Path, mountinfo: Path = MOUNTINFO) -> Filesystem:
    """The filesystem ``path`` is on. A final symbolic link is not followed: a directory the services' users
    write may hold one, and root measures the filesystem holding the link, not one they point it at.

    ``read_only`` is the filesystem's own state (its superblock's options in ``mountinfo``), not this mount's: a
    sandboxed doctor (``ProtectSystem=strict``, as its timer runs it) sees every mount read-only while the
    services write there; a filesystem the kernel remounted read-only after disk errors is read-only for all.
    """
    descriptor = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        info, space = os.fstat(descriptor), os.fstatvfs(descriptor)
    finally:
        os.close(descriptor)
    read_only = superblock_read_only(info.st_dev, mountinfo)
    return Filesystem(
        device=info.st_dev,
        size=space.f_blocks * space.f_frsize,
        available=space.f_bavail * space.f_frsize,
        inodes=space.f_files,
        inodes_available=space.f_favail,
        read_only=bool(space.f_flag & os.ST_RDONLY) if read_only is None else read_only,
    )


def superblock_read_only(device: int, mountinfo: Path = MOUNTINFO) -> bool | None:
    """Whether the filesystem of ``device`` is read-only by its superblock's options (proc(5), mountinfo: the
    field after the source, after the ``-`` separator), or None when no line of ``mountinfo`` names the device
    (e.g. a btrfs subvolume, whose files report a device of their own)."""
    wanted = f"{os.major(device)}:{os.minor(device)}"
    try:
        lines = mountinfo.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) < 10 or fields[2] != wanted or "-" not in fields[6:]:
            continue
        after = fields[fields.index("-", 6) + 1 :]
        if len(after) >= 3:
            return "ro" in after[2].split(",")
    return None
