"""The service's Prometheus metrics (``prometheus_client``), served on 127.0.0.1 at ``METRICS_PORT``.

Every metric lives in a registry this object owns, never in the library's process-wide default one: two
services in one process (the tests run many) count apart, and nothing here is global state shared between calls.
Label values are bounded: directions, outcomes and refusal reasons are the records' enums, a tool is one of
the service's own tools (a name the model made up counts as ``unknown``), token kinds are ``Usage``'s fields,
routers are the configured ones.

Metrics (the ``_total`` suffix is added by the client library to counters)::

    centralita_calls_total{direction, outcome}          calls ended (refused ones included, outcome "refused")
    centralita_active_calls                             calls the service carries now
    centralita_realtime_connect_seconds                 how long opening a Realtime session took (histogram)
    centralita_realtime_connect_failures_total          Realtime sessions that could not be opened
    centralita_reply_latency_seconds                    from the caller's end of speech (server VAD) to the first
                                                        audio of the assistant's answer, tools included (histogram)
    centralita_late_frames_total                        20 ms slots of assistant audio the pacer skipped because it
                                                        fell behind (a loaded or suspended machine)
    centralita_tool_calls_total{tool, result}           tools the assistant ran: ok, error (the tool said no,
                                                        or refused its arguments) or failed (it raised)
    centralita_refusals_total{reason}                   calls not given to the assistant, by reason
    centralita_barge_ins_total                          times a caller spoke over the assistant
    centralita_caller_transcription_failures_total      caller turns whose transcription failed
    centralita_tokens_total{kind}                       Realtime tokens by kind (input_text, input_audio,
                                                        cached_text, cached_audio, output_text, output_audio)
    centralita_cost_total{currency, prices_as_of}       what those tokens cost, at the price table of that date
    centralita_router_errors_total{router, kind}        router work that failed, by configured router and kind
                                                        (``isp.routeros.pool.RouterErrorKind``: auth, command,
                                                        busy, timeout, unavailable); every pair starts at 0
    process_*                                           the service's CPU, memory, open files, start time
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from centralita.billing.usage import Usage
from centralita.metrics_endpoint import METRICS_HOST, MetricsEndpoint, SandboxedProcessCollector

__all__ = ["METRICS_HOST", "SandboxedProcessCollector", "ServiceMetrics"]
UNKNOWN_TOOL: Final = "unknown"
_CONNECT_BUCKETS: Final = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
_REPLY_BUCKETS: Final = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 15.0)


class ServiceMetrics(MetricsEndpoint):
    """The metrics of one service; thread-safe (the client library locks each value)."""

    def __init__(self) -> None:
        registry = CollectorRegistry(auto_describe=True)
        super().__init__(registry, "METRICS_PORT")
        SandboxedProcessCollector(registry=registry)
        self.calls = Counter(
            "centralita_calls", "Calls ended, by direction and outcome.", ["direction", "outcome"], registry=registry
        )
        self.active_calls = Gauge("centralita_active_calls", "Calls the service carries now.", registry=registry)
        self.realtime_connect_seconds = Histogram(
            "centralita_realtime_connect_seconds",
            "Seconds from opening the Realtime WebSocket to session.updated.",
            buckets=_CONNECT_BUCKETS,
            registry=registry,
        )
        self.realtime_connect_failures = Counter(
            "centralita_realtime_connect_failures", "Realtime sessions that could not be opened.", registry=registry
        )
        self.reply_latency_seconds = Histogram(
            "centralita_reply_latency_seconds",
            "Seconds from the caller's end of speech to the first audio of the answer.",
            buckets=_REPLY_BUCKETS,
            registry=registry,
        )
        self.late_frames = Counter(
            "centralita_late_frames", "Assistant audio slots skipped because the pacer fell behind.", registry=registry
        )
        self.tool_calls = Counter(
            "centralita_tool_calls",
            "Tools the assistant ran, by tool and result.",
            ["tool", "result"],
            registry=registry,
        )
        self.refusals = Counter(
            "centralita_refusals", "Calls not given to the assistant, by reason.", ["reason"], registry=registry
        )
        self.barge_ins = Counter("centralita_barge_ins", "Times a caller spoke over the assistant.", registry=registry)
        self.transcription_failures = Counter(
            "centralita_caller_transcription_failures",
            "Caller turns whose transcription failed.",
            registry=registry,
        )
        self.tokens = Counter("centralita_tokens", "Realtime tokens used, by kind.", ["kind"], registry=registry)
        self.router_errors = Counter(
            "centralita_router_errors",
            "Router work that failed, by router and kind (auth, command, busy, timeout, unavailable).",
            ["router", "kind"],
            registry=registry,
        )
        self.cost = Counter(
            "centralita_cost",
            "What the Realtime tokens cost, in the currency, at the price table of prices_as_of.",
            ["currency", "prices_as_of"],
            registry=registry,
        )

    # -- what calls and the service report --

    def track_active_calls(self, count: Callable[[], int]) -> None:
        """Read the number of active calls from ``count`` at every scrape (nothing to keep in step)."""
        self.active_calls.set_function(count)

    def call_ended(self, direction: str, outcome: str) -> None:
        self.calls.labels(direction=str(direction), outcome=str(outcome)).inc()

    def realtime_connected(self, seconds: float) -> None:
        self.realtime_connect_seconds.observe(seconds)

    def realtime_failed(self) -> None:
        self.realtime_connect_failures.inc()

    def replied(self, seconds: float) -> None:
        self.reply_latency_seconds.observe(seconds)

    def frames_late(self, count: int) -> None:
        self.late_frames.inc(count)

    def tool_ran(self, tool: str, result: str, *, known: bool) -> None:
        self.tool_calls.labels(tool=tool if known else UNKNOWN_TOOL, result=result).inc()

    def refused(self, reason: str) -> None:
        self.refusals.labels(reason=str(reason)).inc()

    def barge_in(self) -> None:
        self.barge_ins.inc()

    def transcriptions_failed(self, count: int) -> None:
        if count:
            self.transcription_failures.inc(count)

    def spent(self, usage: Usage, cost: Decimal, currency: str, prices_as_of: str) -> None:
        for kind, count in usage.as_dict().items():
            if count:
                self.tokens.labels(kind=kind).inc(count)
        if cost:
            self.cost.labels(currency=currency, prices_as_of=prices_as_of).inc(float(cost))

    def routers_known(self, routers: Iterable[str], kinds: Iterable[str]) -> None:
        """Start every (router, kind) pair at 0, so a scraper sees the series (and its rate) before a failure."""
        kinds = tuple(kinds)
        for router in routers:
            for kind in kinds:
                self.router_errors.labels(router=router, kind=kind)

    def router_failed(self, router: str, kind: str) -> None:
        self.router_errors.labels(router=router, kind=kind).inc()
