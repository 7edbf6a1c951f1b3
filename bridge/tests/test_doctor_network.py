"""network.*: the real kernel route to 127.0.0.1 (pyroute2), the real resolver for localhost, and injected
failures for a name that does not resolve and an address without a route."""

from __future__ import annotations

from pathlib import Path

import pytest
from doctor_support import FakeBox, env_text, make_app_dir, make_asterisk_dir, options

from centralita.doctor import network
from centralita.doctor.context import Context
from centralita.doctor.model import Status
from centralita.doctor.probes import ProbeError, Route, kernel_route, system_resolve


def test_the_kernel_route_to_loopback() -> None:
    route = kernel_route("127.0.0.1")
    assert route == Route("127.0.0.1", "lo", None, "127.0.0.1")
    assert route.describe() == "dev lo src 127.0.0.1"


def test_kernel_route_wants_an_address() -> None:
    with pytest.raises(ProbeError, match="not an IP address"):
        kernel_route("localhost")


def test_the_system_resolver() -> None:
    assert "127.0.0.1" in system_resolve("localhost")
    assert system_resolve("192.0.2.7") == ["192.0.2.7"]


def _ctx(tmp_path: Path, real: bool = True, **env: str) -> Context:
    """Real probes (the system resolver, the kernel's routes) or the recorded ones of doctor_support."""
    make_asterisk_dir(tmp_path)
    app = make_app_dir(tmp_path, env_text(**env))
    if real:
        return Context(options(tmp_path, FakeBox.healthy(), app / ".env", resolve=system_resolve, route=kernel_route))
    return Context(options(tmp_path, FakeBox.healthy(), app / ".env"))


def test_real_routes_to_the_provider_the_openai_host_and_a_router(tmp_path: Path) -> None:
    ctx = _ctx(
        tmp_path,
        OPENAI_BASE_URL="ws://localhost:8765/v1/realtime",
        ROUTEROS_ROUTERS="nucleo",
        ROUTEROS_NUCLEO_HOST="127.0.0.1",
        ROUTEROS_NUCLEO_USER="api",
        ROUTEROS_NUCLEO_PASSWORD="x",
    )
    results = network.check_sip_provider(ctx) + network.check_openai(ctx) + network.check_routers(ctx)
    assert [(r.name, r.status) for r in results] == [
        ("network.sip_provider", Status.OK),
        ("network.openai", Status.OK),
        ("network.router.nucleo", Status.OK),
    ]
    assert results[0].seen == "route to 127.0.0.1: dev lo src 127.0.0.1"
    assert results[1].seen.startswith("route to localhost (127.0.0.1): dev lo src 127.0.0.1")


def test_a_name_that_does_not_resolve_fails_with_the_resolver_fix(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, real=False, OPENAI_BASE_URL="wss://realtime.nowhere.example/v1/realtime")
    (result,) = network.check_openai(ctx)
    assert result.status is Status.FAIL
    assert result.seen == "realtime.nowhere.example does not resolve: Name or service not known"
    assert result.fix.startswith("getent hosts realtime.nowhere.example must print an address")
    assert "/etc/resolv.conf" in result.fix


def test_an_address_without_a_route_fails_with_the_route_fix(tmp_path: Path) -> None:
    make_asterisk_dir(tmp_path)
    app = make_app_dir(tmp_path, env_text(OPENAI_BASE_URL="wss://api.openai.com/v1/realtime"))

    def unreachable(address: str) -> Route:
        raise ProbeError("Network is unreachable")

    ctx = Context(options(tmp_path, FakeBox.healthy(), app / ".env", route=unreachable))
    (result,) = network.check_openai(ctx)
    assert result.status is Status.FAIL
    assert result.seen == "no route to api.openai.com (162.159.140.245): Network is unreachable"
    assert "ip route get 162.159.140.245 must succeed" in result.fix
    assert "ip route add default via <gateway>" in result.fix


def test_a_trunk_file_it_cannot_read_skips_the_provider(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, real=False)
    (tmp_path / "asterisk" / "pjsip_trunk.conf").unlink()
    (result,) = network.check_sip_provider(ctx)
    assert result.status is Status.WARN
    assert result.seen == f"not checked: {tmp_path}/asterisk/pjsip_trunk.conf does not exist"
