"""Name resolution and the kernel's route towards an address, behind interfaces the tests can replace.

``kernel_route`` asks the kernel exactly what ``ip route get <address>`` asks it (RTM_GETROUTE, through
pyroute2): the interface, the gateway and the source address a packet to that address would use now.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

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
