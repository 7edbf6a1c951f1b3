"""openai-inbound-calls: the service that answers every inbound call with the voice assistant.

It keeps the ARI events connection to the Stasis app open (reconnecting through Asterisk restarts), starts a
``Call`` for each customer channel the dialplan sends to the app (an inbound caller, or a customer the dialer
called who answered), and ends the call when the customer hangs up. Calls are independent: one failing call
never touches another, and stopping the service hands every caller still on the line to the operator context
instead of dropping them.

Tools: the call-control ones (``builtin_tools``) and the network ones (``network_tools``), configured by the
``ROUTEROS_*`` and ``CUSTOMER_DIRECTORY`` variables of the same .env file (``config/network.py``). With no
router and no directory only ``reportar_falla`` is added; the service owns the routers' ``RouterPool`` and
closes it when it stops. The .env is read once, at start, all of it (``config.box.load_all``): a bad dialer
setting stops this service too, since the dialer's answered calls come here.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import socket
import sqlite3
import sys
import threading
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Final

from centralita.billing.budget import Budget, BudgetState
from centralita.calls.admission import Admission, AdmissionGate, AdmissionLimits, Refusal
from centralita.calls.call import FAILOVER_REASON_VARIABLE, Call, FailoverReason
from centralita.calls.metrics import ServiceMetrics
from centralita.calls.outbound import OutboundCalls
from centralita.calls.reconcile import plan
from centralita.calls.shared_admission import SharedAdmission
from centralita.calls.stats import ServiceStats
from centralita.calls.status import StatusReporter
from centralita.calls.supervisor import die_with_parent, supervise
from centralita.calls.workers import Worker, admission_file, plan_workers, worker_settings
from centralita.config.box import load_all
from centralita.config.bridge import FailureAction, MediaEngine, Settings
from centralita.config.env import DEFAULT_ENV_FILE, ConfigError, redact_url
from centralita.config.network import NetworkSettings
from centralita.isp.customers import CustomerDirectory, DirectoryError
from centralita.isp.routeros.pool import RouterErrorKind, RouterPool
from centralita.logs import Event, call_logger, setup_logging
from centralita.media import collector
from centralita.media.clips import Clips
from centralita.media.loop import MediaLoop
from centralita.media.pacer import PacerThread
from centralita.stopping import stop_on_signals
from centralita.storage.queued import QueuedRecords
from centralita.storage.records import CallRecords, Direction, Outcome
from centralita.storage.writer import RecordWriter
from centralita.telephony.ari import AriEndpoint, AriError, AriEvents, AriRest
from centralita.tools.call_control import builtin_tools
from centralita.tools.network import network_tools
from centralita.tools.registry import ToolRegistry

log = logging.getLogger(__name__)

STOP_TIMEOUT = 10.0  # seconds stop() waits for the calls to end (each ends within a few ARI timeouts)
STATUS_INTERVAL = 5.0  # seconds between two health snapshots
RECONCILE_GRACE = 1.0  # seconds the StasisStarts already on their way get before a reconciliation decides
SUPERVISOR_PID: Final = "CENTRALITA_SUPERVISOR_PID"  # how a worker knows its supervisor (calls/supervisor.py)


def default_instructions() -> str:
    """The Spanish system prompt shipped with the package."""
    return resources.files("centralita").joinpath("data/prompt_inbound.es.txt").read_text(encoding="utf-8")


def log_secrets(settings: Settings, network: NetworkSettings) -> list[str]:
    """Every secret the log must hide: the OpenAI key, the ARI password and each router's API password
    (librouteros, at DEBUG, logs every word it sends, ``=password=`` of the login included)."""
    return [
        settings.openai_api_key.reveal(),
        settings.ari_password.reveal(),
        *(router.password.reveal() for router in network.routers),
    ]


def service_tools(network: NetworkSettings, records: CallRecords, pool: RouterPool) -> ToolRegistry:
    """Every tool the assistant gets: call control, then what the network configuration makes useful."""
    registry = builtin_tools()
    for tool in network_tools(network, records, pool):
        registry.register(tool)
    if network.customer_directory is not None:
        try:  # a warning now rather than a surprise at the first call; the file may still appear later
            count = len(CustomerDirectory(network.customer_directory).customers())
            log.info("customer directory %s: %d services", network.customer_directory, count)
        except DirectoryError as error:
            log.warning("CUSTOMER_DIRECTORY: %s; customer lookups will fail until it is fixed", error)
    return registry


class InboundService:
    """Routes ARI events to calls. Thread-safe; every call runs on its own threads.

    Besides the calls it keeps: the admission of new calls (``calls/admission.py``: the box's limit, the
    per-caller ones and the spending budget), the records writer (``storage/writer.py``: the calls' writes
    queued off their threads), the reconciliation after every ARI (re)connection (``calls/reconcile.py``), and
    the health snapshot ``centralita doctor`` reads (``calls/status.py``).
    """

    def __init__(
        self,
        settings: Settings,
        records: CallRecords,
        tools: ToolRegistry,
        instructions: str,
        outbound: OutboundCalls | None = None,
        *,
        clips: Clips | None = None,
        status_interval: float = STATUS_INTERVAL,
        reconcile_grace: float = RECONCILE_GRACE,
        worker: str | None = None,
        shared_admission: Path | None = None,
    ) -> None:
        self._outbound = outbound
        self._worker = worker
        self._settings = settings
        self._records = records
        self._tools = tools
        self._instructions = instructions
        self._clips = clips or Clips.load()
        self._reconcile_grace = reconcile_grace
        self._started_at = records.now()
        endpoint = AriEndpoint(settings.ari_url, settings.ari_user, settings.ari_password.reveal(), settings.ari_app)
        self._rest = AriRest(endpoint)
        self._events = AriEvents(
            endpoint,
            self._on_event,
            self._on_state,
            ping_interval=settings.ws_ping_interval,
            ping_timeout=settings.ws_ping_timeout,
        )
        self._writer = RecordWriter("call records")
        self._queued = QueuedRecords(records, self._writer)
        spending = settings.spending
        self.budget = Budget(
            daily=spending.daily,
            monthly=spending.monthly,
            currency=spending.prices.currency,
            spent_since=records.spent_since,
            zone=spending.zone,
        )
        limits = settings.limits
        admission_limits = AdmissionLimits(limits.max_calls, limits.max_per_caller, limits.max_per_caller_per_minute)
        # The events thread never waits on the database for the budget (known_spent). With several workers the
        # limits are counted across them (calls/shared_admission.py).
        self.admission: AdmissionGate = (
            SharedAdmission(shared_admission, self.worker, admission_limits, budget_spent=self.budget.known_spent)
            if shared_admission is not None
            else Admission(admission_limits, budget_spent=self.budget.known_spent)
        )
        self.stats = ServiceStats()
        self.metrics = ServiceMetrics()  # the service's own registry, served at METRICS_PORT on loopback
        self._status = StatusReporter(settings.status_file, self._snapshot, interval=status_interval)
        self._calls: dict[str, Call] = {}
        self._lock = threading.Lock()
        self._ended = threading.Condition(self._lock)  # a call left _calls
        self._stopping = threading.Event()
        self._reconciling = 0  # reconciliations running: the StasisStarts meanwhile go to _arrivals
        self._arrivals: set[str] = set()
        self._reconciled_once = False
        self._reconcile_lock = threading.Lock()  # one reconciliation at a time
        # One thread paces the outgoing audio of every call (docs/PERFORMANCE.md): not a thread per call. With
        # MEDIA_ENGINE=loop one loop does that and reads every call's RTP too.
        self._pacer: PacerThread | None = None
        self._media_loop: MediaLoop | None = None
        if settings.media_engine is MediaEngine.LOOP:
            self._media_loop = MediaLoop()
        else:
            self._pacer = PacerThread()
        self.metrics.track_active_calls(lambda: self.active_calls)

    @property
    def worker(self) -> str:
        """Which process of the box carries this service's calls (the live page's "worker" column): the worker's
        name with several workers (``calls/workers.py``), else host/pid."""
        return self._worker or f"{socket.gethostname()}/{os.getpid()}"

    @property
    def active_calls(self) -> int:
        with self._lock:
            return len(self._calls)

    def call(self, channel_id: str) -> Call | None:
        """The call of the customer's channel ``channel_id``, while the service runs it."""
        with self._lock:
            return self._calls.get(channel_id)

    @property
    def paced_streams(self) -> int:
        """Calls' outgoing audio streams on the service's pacer thread or media loop (one per call with media)."""
        if self._media_loop is not None:
            return self._media_loop.streams
        assert self._pacer is not None
        return self._pacer.streams

    @property
    def records_writer(self) -> RecordWriter:
        return self._writer

    def start(self) -> None:
        log.info(
            "starting: ARI %s app %s, media engine %s",
            redact_url(self._settings.ari_url),
            self._settings.ari_app,
            self._settings.media_engine,
        )
        self._refresh_budget()
        self._status.start()
        self.metrics.serve(self._settings.metrics_port)
        self._events.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._events.wait_connected(timeout)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Take no more calls, hand every caller still on the line to the operator, and return once every call
        has ended (up to ``timeout`` seconds) and its records are written, so that whoever closes the records
        next loses none of them: a call that was already ending on its own thread (the caller hung up) is
        waited for too."""
        self._stopping.set()
        self._events.stop()
        with self._lock:
            calls = list(self._calls.values())
        for call in calls:
            call.hand_over("service stopping")
        with self._ended:
            if not self._ended.wait_for(lambda: not self._calls, timeout):
                log.warning("stopping: calls %s still ending after %g s", ", ".join(self._calls), timeout)
        if self._pacer is not None:
            self._pacer.close()
        if self._media_loop is not None:
            self._media_loop.close()
        self._writer.close(timeout)
        self._status.close()
        self.metrics.close()
        self.admission.close()
        log.info("stopped")

    # -- ARI ---------------------------------------------------------------------------------------

    def _on_state(self, state: str) -> None:
        if state == "connected":
            log.info("%s: app %s is ready for calls", Event.ARI_CONNECTED, self._settings.ari_app)
            with self._lock:
                self._reconciling += 1
            threading.Thread(target=self._reconcile, name="reconcile", daemon=True).start()
        else:
            log.warning("%s: Asterisk restarting or unreachable; reconnecting", Event.ARI_DISCONNECTED)

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        channel = event.get("channel") or {}
        channel_id = str(channel.get("id", ""))
        if kind == "StasisStart":
            args = event.get("args") or []
            if not args or args[0] not in tuple(Direction):
                return  # our own ExternalMedia channels, and anything else that is not a caller
            with self._lock:
                if self._reconciling:
                    self._arrivals.add(channel_id)
            caller = str((channel.get("caller") or {}).get("number", ""))
            if args[0] == Direction.OUTBOUND:
                threading.Thread(
                    target=self._start_outbound,
                    args=(channel_id, caller, args),
                    name=f"call-{channel_id}",
                    daemon=True,
                ).start()
                return
            did = str(args[1]) if len(args) > 1 else ""
            refusal = self._admit(channel_id, caller)
            if refusal is not None:
                self._refuse_soon(channel_id, Direction.INBOUND, caller, did, refusal)
                return
            call = self._hold_call(
                channel_id, Direction.INBOUND, caller, did, tools=self._tools, instructions=self._instructions
            )
            threading.Thread(target=call.start, name=f"call-{channel_id}", daemon=True).start()
        elif kind in ("StasisEnd", "ChannelDestroyed", "ChannelHangupRequest"):
            with self._lock:
                ended = self._calls.get(channel_id)
            if ended is not None:
                threading.Thread(target=ended.caller_hung_up, name=f"hangup-{channel_id}", daemon=True).start()

    # -- admission ---------------------------------------------------------------------------------

    def _admit(self, channel_id: str, caller: str, *, outbound: bool = False) -> Refusal | None:
        if self._stopping.is_set():
            self.admission.refuse(Refusal.STOPPING)
            return Refusal.STOPPING
        # Digits only: the trunk may write one number as +52... on one call and 52... on the next.
        return self.admission.admit(channel_id, "".join(filter(str.isdigit, caller)), outbound=outbound)

    def _refuse_soon(self, channel_id: str, direction: Direction, caller: str, callee: str, refusal: Refusal) -> None:
        threading.Thread(
            target=self._refuse,
            args=(channel_id, direction, caller, callee, refusal),
            name=f"refuse-{channel_id}",
            daemon=True,
        ).start()

    def _refuse(
        self,
        channel_id: str,
        direction: Direction,
        caller: str,
        callee: str,
        refusal: Refusal,
        campaign: str | None = None,
    ) -> None:
        """A call over a limit: straight to the failover context with the reason (never a degraded assistant),
        recorded as refused. The dialplan tells a caller over their own limits to call later."""
        calls = call_logger(channel_id, log)
        calls.warning(
            "%s (%s): caller=%s; %s", Event.CALL_REFUSED, refusal, caller or "-", _REFUSAL_WHY.get(refusal, "")
        )
        self._queued.start_call(channel_id, direction, caller, callee, campaign=campaign)
        detail = f"{refusal}: sent to {self._settings.failover_context}"
        try:
            self._rest.set_channel_var(channel_id, FAILOVER_REASON_VARIABLE, refusal)
            self._rest.continue_in_dialplan(channel_id, self._settings.failover_context)
        except AriError as error:
            calls.error("%s: %s; hanging up", Event.TRANSFER_FAILED, error)
            with contextlib.suppress(AriError):
                self._rest.hangup(channel_id)
            detail = f"{refusal}: {Event.TRANSFER_FAILED}: {error}"
        self._queued.end_call(channel_id, Outcome.REFUSED, detail)
        self.stats.call_ended(Outcome.REFUSED)
        self.metrics.refused(refusal)
        self.metrics.call_ended(direction, Outcome.REFUSED)

    def _start_outbound(self, channel_id: str, caller_id: str, args: list[Any]) -> None:
        """A customer the dialer called answered (and AMD, if used, heard a person): the assistant takes it.

        ``caller_id`` is the caller number the dialer presented (the channel's caller); the customer's number
        and the campaign come from the dialer's store.
        """
        setup = self._outbound.prepare(channel_id) if self._outbound is not None else None
        if setup is None:
            log.error("%s %s: not a known dialer call; hanging up", Event.OUTBOUND_CALL, channel_id)
            with contextlib.suppress(AriError):
                self._rest.hangup(channel_id)
            return
        amd = f" amd={args[2]}" if len(args) > 2 else ""
        log.info(
            "%s %s: attempt %s campaign %s%s",
            Event.OUTBOUND_CALL,
            channel_id,
            setup.info.attempt_id,
            setup.info.campaign,
            amd,
        )
        refusal = self._admit(channel_id, caller_id, outbound=True)
        if refusal is not None:
            self._refuse(channel_id, Direction.OUTBOUND, caller_id, setup.info.phone, refusal, setup.info.campaign)
            return
        call = self._hold_call(
            channel_id,
            Direction.OUTBOUND,
            caller_id,
            setup.info.phone,
            tools=setup.tools,
            instructions=setup.instructions,
            campaign=setup.info.campaign,
            attempt_id=setup.info.attempt_id,
        )
        call.start()

    def _hold_call(
        self,
        channel_id: str,
        direction: Direction,
        caller: str,
        callee: str,
        *,
        tools: ToolRegistry,
        instructions: str,
        campaign: str = "",
        attempt_id: int | None = None,
    ) -> Call:
        """A call admitted: built with this service's shared parts (one place for both directions) and held
        until it ends (``_forget``)."""
        call = Call(
            channel_id=channel_id,
            direction=direction,
            caller=caller,
            callee=callee,
            campaign=campaign,
            attempt_id=attempt_id,
            settings=self._settings,
            rest=self._rest,
            records=self._queued,
            tools=tools,
            instructions=instructions,
            on_end=self._forget,
            pacer=self._pacer,
            media_loop=self._media_loop,
            clips=self._clips,
            stats=self.stats,
            metrics=self.metrics,
        )
        with self._lock:
            self._calls[channel_id] = call
        return call

    def _forget(self, call: Call) -> None:
        self.admission.release(call.call_id)
        with self._lock:
            self._calls.pop(call.call_id, None)
            self._ended.notify_all()

    # -- reconciliation ----------------------------------------------------------------------------

    def _reconcile(self) -> None:
        """After a (re)connection: make Asterisk and the calls this process holds agree (``calls/reconcile.py``)."""
        with self._reconcile_lock:
            try:
                self._reconcile_once()
            except Exception:  # a bug here must not take the service down; the next connection tries again
                log.exception("reconciliation failed")
            finally:
                with self._lock:
                    self._reconciling -= 1
                    if not self._reconciling:
                        self._arrivals.clear()

    def _reconcile_once(self) -> None:
        app = self._settings.ari_app
        with self._lock:
            held_before = set(self._calls)
        try:
            channels = self._rest.list_channels()
            bridges = self._rest.list_bridges()
        except AriError as error:
            log.warning(
                "%s: cannot list Asterisk's channels (%s); the next connection tries again", Event.RECONCILED, error
            )
            return
        # StasisStarts already on their way are handled meanwhile: their channels are not orphans.
        self._stopping.wait(self._reconcile_grace)
        with self._lock:
            held_after = set(self._calls)
            arrived = set(self._arrivals)
        found = plan(app, channels, bridges, held_before=held_before, held_after=held_after, arrived=arrived)
        first = not self._reconciled_once
        self._reconciled_once = True
        # Another worker's calls are open in the records too: theirs, not a previous run's.
        stale = self._stale_records() - set(found.foreign_callers) if first else set()
        for channel_id in found.orphan_callers:
            self._recover(channel_id, found.notes.get(channel_id, ""), recorded=channel_id in stale)
            stale.discard(channel_id)
        for channel_id in found.orphan_media:
            self._quietly(self._rest.hangup, channel_id)
        for bridge_id in found.orphan_bridges:
            self._quietly(self._rest.destroy_bridge, bridge_id)
        gone = 0
        for call_id in found.gone_calls:
            call = self.call(call_id)
            if call is not None:
                gone += 1
                call.channel_gone("the caller's channel is gone from Asterisk (restarted, or the hang-up was missed)")
        if self._worker is not None:
            # Several workers: an open record whose channel Asterisk still has is another worker's call, or one that
            # worker is handing on right now (its own record of it is on its way): not one whose caller is gone.
            stale -= {str(channel.get("id", "")) for channel in channels}
        for call_id in sorted(stale):
            self._queued.end_call(
                call_id, Outcome.INTERRUPTED, "the service stopped with the call up; the caller was gone by its restart"
            )
        counts = {
            "orphan_callers": len(found.orphan_callers),
            "orphan_media": len(found.orphan_media),
            "orphan_bridges": len(found.orphan_bridges),
            "gone_calls": gone,
            "stale_records": len(stale),
        }
        self.stats.reconciled(**counts)
        summary = ", ".join(f"{name.replace('_', ' ')} {count}" for name, count in counts.items())
        level = logging.INFO if not any(counts.values()) else logging.WARNING
        log.log(
            level,
            "%s: %d channels and %d bridges in Asterisk; %s",
            Event.RECONCILED,
            found.channels_seen,
            found.bridges_seen,
            summary,
        )

    def _stale_records(self) -> set[str]:
        """Calls a previous run of the service recorded as started and never ended (it died with them up)."""
        self._writer.flush(5.0)
        try:
            return set(self._records.open_calls(before=self._started_at))
        except (sqlite3.Error, OSError) as error:
            log.warning("%s: cannot read the open call records (%s)", Event.RECONCILED, error)
            return set()

    def _recover(self, channel_id: str, arguments: str, *, recorded: bool) -> None:
        """A customer left in the app by a previous run (or a call that lost its channel's events): the caller
        hears the failover notice and reaches a person (or is hung up, ON_REALTIME_FAILURE=hangup)."""
        calls = call_logger(channel_id, log)
        settings = self._settings
        try:
            if settings.on_realtime_failure is FailureAction.TRANSFER:
                with contextlib.suppress(AriError):
                    self._rest.set_channel_var(channel_id, FAILOVER_REASON_VARIABLE, FailoverReason.SERVICE_RESTARTED)
                self._rest.continue_in_dialplan(channel_id, settings.failover_context)
                what = f"sent to {settings.failover_context}"
            else:
                self._rest.hangup(channel_id)
                what = "hung up"
        except AriError as error:
            if error.status == 404:
                calls.info("%s: the caller hung up meanwhile", Event.RECOVERED)
                what = "gone before it could be handed on"
            else:
                calls.error("%s: cannot hand the caller on (%s)", Event.RECOVERED, error)
                return
        else:
            calls.warning(
                "%s: found in Stasis(%s) with no call of this process (it restarted): %s",
                Event.RECOVERED,
                arguments,
                what,
            )
        if recorded:
            self._queued.end_call(channel_id, Outcome.INTERRUPTED, f"the service restarted mid-call; {what}")

    @staticmethod
    def _quietly(action: Callable[[str], None], target: str) -> None:
        try:
            action(target)
        except AriError as error:
            if error.status != 404:
                log.warning("%s: cannot remove %s: %s", Event.RECONCILED, target, error)

    # -- health ------------------------------------------------------------------------------------

    def _refresh_budget(self) -> BudgetState | None:
        """Ask the records what was spent (on the status thread: it may wait on the database)."""
        if not self.budget.limited:
            return None
        try:
            return self.budget.state()
        except Exception as error:  # a locked or broken database: the last known state stands
            log.warning("budget unknown (%s): the last known state stands", error)
            return self.budget.last_known()

    def _snapshot(self) -> dict[str, Any]:
        """The health snapshot (``calls/status.py``): what ``centralita doctor`` reads."""
        budget = self._refresh_budget()
        writer = self._writer.stats()
        limits = self._settings.limits
        prices = self._settings.spending.prices
        with self._lock:
            calls = list(self._calls.values())
        active = len(calls)
        worker = self.worker
        return {
            "service": "openai-inbound-calls",
            "worker": worker,
            # The calls in progress, oldest first, for the web console's live page (at most MAX_LISTED_CALLS, so
            # the snapshot stays far below its size limit).
            "calls": sorted(
                ({**call.live_view(), "worker": worker} for call in calls), key=lambda view: view["started_at"]
            )[:MAX_LISTED_CALLS],
            "ari_connected": self._events.connected,
            "ari_connections": self._events.connections,
            "active_calls": active,
            "limits": {
                "max_calls": limits.max_calls,
                "max_per_caller": limits.max_per_caller,
                "max_per_caller_per_minute": limits.max_per_caller_per_minute,
            },
            "refused": {str(reason): count for reason, count in self.admission.refused.items()},
            "records": {
                "written": writer.written,
                "queued": writer.queued,
                "lost": writer.lost,
                "failing": writer.failing,
                "last_error": writer.last_error,
            },
            "budget": {
                "limited": self.budget.limited,
                "known": budget is not None,
                "spent": bool(budget is not None and budget.spent),
                "day_spent": str(budget.day_spent) if budget else "",
                "month_spent": str(budget.month_spent) if budget else "",
                "daily_limit": str(self._settings.spending.daily),
                "monthly_limit": str(self._settings.spending.monthly),
                "currency": prices.currency,
                "prices_as_of": prices.as_of,
            },
            **self.stats.snapshot(),
        }


# The calls in progress the status snapshot lists (each about 300 bytes; the snapshot's limit is 64 KiB).
MAX_LISTED_CALLS: Final = 100

# What the log says about each refusal, for the operator who reads it.
_REFUSAL_WHY: Final[dict[Refusal, str]] = {
    Refusal.BOX_FULL: "the box carries MAX_CALLS calls already: sent to the failover context",
    Refusal.CALLER_BUSY: "this number has MAX_CALLS_PER_CALLER calls up already: told to call later",
    Refusal.CALLER_RATE: "this number called more than MAX_CALLS_PER_CALLER_PER_MINUTE times in a minute: "
    "told to call later",
    Refusal.BUDGET_SPENT: "the spending budget is used up (centralita doctor): sent to the failover context",
    Refusal.STOPPING: "the service is stopping: sent to the failover context",
}


def _worker_command(argv: Sequence[str]) -> Callable[[Worker], list[str]]:
    """How the supervisor starts worker k: this same program with ``--worker k`` (shown so by ``systemctl status``)."""
    program = sys.argv[0]
    if os.path.basename(program) == "openai-inbound-calls" and os.access(program, os.X_OK):
        head = [program]
    else:
        head = [sys.executable, "-m", "centralita.calls.service"]
    return lambda worker: [*head, "--worker", str(worker.number), *argv]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="openai-inbound-calls", description=__doc__.splitlines()[0])
    parser.add_argument("--env-file", default=DEFAULT_ENV_FILE, help=f"settings file (default {DEFAULT_ENV_FILE})")
    parser.add_argument("--prompt", type=Path, help="Spanish instructions for the assistant (default: built in)")
    parser.add_argument(
        "--outbound-prompt", type=Path, help="Spanish instructions for the dialer's calls (default: built in)"
    )
    parser.add_argument(
        "--worker", type=int, help="run as worker K of WORKERS (started so by the supervisor; calls/workers.py)"
    )
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(arguments)
    try:
        box = load_all(args.env_file)
    except ConfigError as error:
        print(f"openai-inbound-calls: {error}", file=sys.stderr)
        return 2
    settings, network = box.bridge, box.network
    worker: Worker | None = None
    if settings.workers > 1 or args.worker is not None:
        try:
            if args.worker is None:  # the supervisor: it starts one process per worker and watches them
                setup_logging(settings.log_file, secrets=log_secrets(settings, network), worker="supervisor")
                os.environ[SUPERVISOR_PID] = str(os.getpid())
                return supervise(settings, plan_workers(settings), _worker_command(arguments))
            settings, worker = worker_settings(settings, args.worker)
        except (OSError, ValueError) as error:
            print(f"openai-inbound-calls: {error}", file=sys.stderr)
            return 2
        supervisor = os.environ.get(SUPERVISOR_PID, "")
        if supervisor.isdigit():
            die_with_parent(int(supervisor))
    try:
        setup_logging(settings.log_file, secrets=log_secrets(settings, network), worker=worker.name if worker else None)
        instructions = args.prompt.read_text(encoding="utf-8") if args.prompt else default_instructions()
        collections = args.outbound_prompt.read_text(encoding="utf-8") if args.outbound_prompt else None
        records = CallRecords(settings.db_path)
        pool = RouterPool(network)
    except (OSError, ValueError) as error:  # ConfigError (a CA file) is a ValueError
        print(f"openai-inbound-calls: {error}", file=sys.stderr)
        return 2
    tools = service_tools(network, records, pool)
    log.info(
        "tools: %s (routers: %s; writes %s)",
        ", ".join(tools.tools),
        ", ".join(pool.names) or "none",
        "on" if network.writes_enabled else "off",
    )
    outbound = OutboundCalls(box.dialer, collections)
    service = InboundService(
        settings,
        records,
        tools,
        instructions,
        outbound,
        worker=worker.name if worker else None,
        shared_admission=admission_file(box.bridge) if worker else None,
    )
    service.metrics.routers_known(pool.names, RouterErrorKind)
    pool.observe(service.metrics.router_failed)
    stop = stop_on_signals(log, "stopping")
    # Everything loaded so far lives as long as the process: keep it out of the collector's way, and space out the
    # full collections, each of which pauses every call's audio (media/collector.py, docs/PERFORMANCE.md).
    collector.settle()
    service.start()
    stop.wait()
    service.stop()
    pool.close()
    outbound.close()
    records.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
