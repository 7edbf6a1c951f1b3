"""A service's Prometheus ``/metrics`` endpoint on 127.0.0.1, and the process figures its sandbox allows.

Both services (openai-inbound-calls, ``calls/metrics.py``; openai-outbound-calls, ``dialer/metrics.py``) serve
their own registry through ``MetricsEndpoint``, each at its own port variable. A port that cannot be had is
logged and the service goes on without metrics: the calls matter more than their figures.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Final
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server

__all__ = ["METRICS_HOST", "MetricsEndpoint", "SandboxedProcessCollector"]

log = logging.getLogger(__name__)

METRICS_HOST: Final = "127.0.0.1"  # loopback only: a scraper on the box, or a tunnel to it


class SandboxedProcessCollector(ProcessCollector):
    """The library's process figures, with the boot time taken from the clocks instead of /proc/stat.

    The services' sandbox (``ProcSubset=pid``) hides /proc/stat; the library's collector then reports no process
    figure at all. /proc/self/stat's start time counts from boot, as CLOCK_BOOTTIME does.
    """

    def _boot_time(self) -> float:
        return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


class MetricsEndpoint:
    """Serves ``registry`` at ``http://127.0.0.1:<port>/metrics``; ``variable`` names the port's setting in
    the messages (the operator's fix)."""

    def __init__(self, registry: CollectorRegistry, variable: str) -> None:
        self.registry = registry
        self._variable = variable
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def serve(self, port: int) -> bool:
        """Serve ``/metrics`` on 127.0.0.1:``port`` (0: not at all); False, and an error logged, when the port
        cannot be had: the service goes on without metrics."""
        if port == 0 or self._server is not None:
            return False
        try:
            server, thread = start_http_server(port, addr=METRICS_HOST, registry=self.registry)
        except OSError as error:
            log.error(
                "metrics: cannot listen on %s:%d (%s): no metrics until %s is fixed and the service restarted",
                METRICS_HOST,
                port,
                error.strerror or error,
                self._variable,
            )
            return False
        self._server, self._thread = server, thread
        log.info("metrics: Prometheus metrics on http://%s:%d/metrics", METRICS_HOST, self.port)
        return True

    @property
    def port(self) -> int | None:
        """The port the endpoint listens on, None when it does not."""
        server = self._server
        return int(server.server_address[1]) if server is not None else None

    def close(self) -> None:
        """Stop the endpoint and release its port and thread."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(5)
