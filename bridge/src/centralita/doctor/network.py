"""Checks of the way out: each remote host (the SIP provider, the OpenAI endpoint, every router) resolves,
and the kernel has a route to it (pyroute2, as ``ip route get``), with the interface and source address."""

from __future__ import annotations

from urllib.parse import urlsplit

from centralita.doctor.apis import DEFAULT_BASE_URL, routers
from centralita.doctor.context import Context
from centralita.doctor.model import Result
from centralita.doctor.probes import ProbeError
from centralita.doctor.sipconf import Trunk


def route_to(ctx: Context, name: str, host: str, configured_in: str) -> Result:
    """Resolve ``host`` and look up the route to its first address."""
    try:
        addresses = ctx.options.resolve(host)
    except ProbeError as error:
        return Result.fail(
            name,
            f"{host} does not resolve: {error}",
            f"getent hosts {host} must print an address: check the nameservers in /etc/resolv.conf "
            "(resolvectl status when systemd-resolved runs) and that this box reaches them "
            f"(ip route get <nameserver>); or correct the name in {configured_in}",
        )
    address = addresses[0]
    try:
        route = ctx.options.route(address)
    except ProbeError as error:
        return Result.fail(
            name,
            f"no route to {host} ({address}): {error}",
            f"ip route get {address} must succeed: check the routes (ip route; ip -6 route) and add the missing one "
            "or the default gateway (ip route add default via <gateway> dev <interface>), then make it permanent "
            "in /etc/network/interfaces or the systemd-networkd files",
        )
    named = host if host == address else f"{host} ({address})"
    more = f"; {len(addresses) - 1} more address(es)" if len(addresses) > 1 else ""
    return Result.ok(name, f"route to {named}: {route.describe()}{more}")


def check_sip_provider(ctx: Context) -> list[Result]:
    """The SIP provider's host, from the trunk file."""
    name = "network.sip_provider"
    trunk = ctx.trunk
    if not isinstance(trunk, Trunk):
        return [Result.skipped(name, trunk, "asterisk.files")]
    if not trunk.host:
        return [
            Result.warn(
                name,
                f"no provider host found in {trunk.source}",
                "set the trunk's host in the inventory (asterisk_sip_trunk.host) and run the playbook",
            )
        ]
    return [route_to(ctx, name, trunk.host, f"{trunk.source} (inventory asterisk_sip_trunk.host)")]


def check_openai(ctx: Context) -> list[Result]:
    """The host of OPENAI_BASE_URL."""
    name = "network.openai"
    base = ctx.env.get("OPENAI_BASE_URL", DEFAULT_BASE_URL)
    try:
        host = urlsplit(base).hostname
    except ValueError:
        host = None
    if not host:
        return [Result.skipped(name, f"OPENAI_BASE_URL={base!r} has no host", "env.settings")]
    return [route_to(ctx, name, host, f"OPENAI_BASE_URL in {ctx.env.path}")]


def check_routers(ctx: Context) -> list[Result]:
    """Each router's API host."""
    return [
        route_to(
            ctx, f"network.router.{router.name}", router.host, f"ROUTEROS_{router.name.upper()}_HOST in {ctx.env.path}"
        )
        for router in routers(ctx)
    ]
