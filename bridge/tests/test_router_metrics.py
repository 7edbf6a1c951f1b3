"""Router errors in the service's metrics: real RouterOS API sessions (the fake router) through the pool the
tools use, counted by router and kind in ``ServiceMetrics``."""

from __future__ import annotations

from network_support import PASSWORD, USER, settings_for
from polling import free_port

from centralita.calls.metrics import ServiceMetrics
from centralita.isp.routeros.client import RouterClient, RouterCommandError, RouterError, Row
from centralita.isp.routeros.pool import Deadline, RouterErrorKind, RouterPool
from centralita_testing.fake_routeros.server import FakeRouterOS


def errors(metrics: ServiceMetrics, router: str, kind: str) -> float | None:
    return metrics.registry.get_sample_value("centralita_router_errors_total", {"router": router, "kind": kind})


def identity(_name: str, client: RouterClient, _deadline: Deadline) -> list[Row]:
    return client.print("/ip/firewall/address-list")


def not_a_menu(_name: str, client: RouterClient, _deadline: Deadline) -> list[Row]:
    return client.command("/ip/no-such-menu", "print")


def test_router_errors_are_counted_by_router_and_kind() -> None:
    with (
        FakeRouterOS(user=USER, password=PASSWORD) as good,
        FakeRouterOS(user=USER, password="otra-clave") as refusing,
    ):
        settings = settings_for(("nucleo", good), ("torre", refusing), ("sector", free_port()))
        metrics = ServiceMetrics()
        with RouterPool(settings) as pool:
            metrics.routers_known(pool.names, RouterErrorKind)
            pool.observe(metrics.router_failed)
            # Every pair is there at 0 before anything fails.
            for router in ("nucleo", "torre", "sector"):
                for kind in RouterErrorKind:
                    assert errors(metrics, router, kind) == 0
            assert isinstance(pool.run("nucleo", identity, pool.deadline()), list)  # works: nothing counted
            try:
                pool.run("nucleo", not_a_menu, pool.deadline())
            except RouterCommandError:
                pass
            else:
                raise AssertionError("the fake router answered a menu that does not exist")
            results = pool.run_each(["torre", "sector", "nucleo"], identity, pool.deadline())
            assert isinstance(results["torre"], RouterError)
            assert isinstance(results["sector"], RouterError)
            assert not isinstance(results["nucleo"], RouterError)
    assert errors(metrics, "nucleo", "command") == 1
    assert errors(metrics, "torre", "auth") == 1
    assert errors(metrics, "sector", "unavailable") == 1
    total = sum(
        errors(metrics, router, kind) or 0 for router in ("nucleo", "torre", "sector") for kind in RouterErrorKind
    )
    assert total == 3, "each failure counted once, under its own router and kind"
