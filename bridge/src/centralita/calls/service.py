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
import gc
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from types import FrameType
from typing import Any

from centralita.calls.call import Call
from centralita.calls.outbound import OutboundCalls
from centralita.config.box import load_all
from centralita.config.bridge import Settings
from centralita.config.env import DEFAULT_ENV_FILE, ConfigError, redact_url
from centralita.config.network import NetworkSettings
from centralita.isp.customers import CustomerDirectory, DirectoryError
from centralita.isp.routeros.pool import RouterPool
from centralita.logs import Event, setup_logging
from centralita.media.pacer import PacerThread
from centralita.storage.records import CallRecords, Direction
from centralita.telephony.ari import AriEndpoint, AriError, AriEvents, AriRest
from centralita.tools.call_control import builtin_tools
from centralita.tools.network import network_tools
from centralita.tools.registry import ToolRegistry

log = logging.getLogger(__name__)

STOP_TIMEOUT = 10.0  # seconds stop() waits for the calls to end (each ends within a few ARI timeouts)


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
    """Routes ARI events to calls. Thread-safe; every call runs on its own threads."""

    def __init__(
        self,
        settings: Settings,
        records: CallRecords,
        tools: ToolRegistry,
        instructions: str,
        outbound: OutboundCalls | None = None,
    ) -> None:
        self._outbound = outbound
        self._settings = settings
        self._records = records
        self._tools = tools
        self._instructions = instructions
        endpoint = AriEndpoint(settings.ari_url, settings.ari_user, settings.ari_password.reveal(), settings.ari_app)
        self._rest = AriRest(endpoint)
        self._events = AriEvents(
            endpoint,
            self._on_event,
            self._on_state,
            ping_interval=settings.ws_ping_interval,
            ping_timeout=settings.ws_ping_timeout,
        )
        self._calls: dict[str, Call] = {}
        self._lock = threading.Lock()
        self._ended = threading.Condition(self._lock)  # a call left _calls
        self._stopping = threading.Event()
        # One thread paces the outgoing audio of every call (docs/PERFORMANCE.md): not a thread per call.
        self._pacer = PacerThread()

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
        """Calls' outgoing audio streams on the service's pacer thread (one per call with media)."""
        return self._pacer.streams

    def start(self) -> None:
        log.info("starting: ARI %s app %s", redact_url(self._settings.ari_url), self._settings.ari_app)
        self._events.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._events.wait_connected(timeout)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Take no more calls, hand every caller still on the line to the operator, and return once every call
        has ended (up to ``timeout`` seconds), so that whoever closes the records next loses none of them: a call
        that was already ending on its own thread (the caller hung up) is waited for too."""
        self._stopping.set()
        self._events.stop()
        with self._lock:
            calls = list(self._calls.values())
        for call in calls:
            call.hand_over("service stopping")
        with self._ended:
            if not self._ended.wait_for(lambda: not self._calls, timeout):
                log.warning("stopping: calls %s still ending after %g s", ", ".join(self._calls), timeout)
        self._pacer.close()
        log.info("stopped")

    def _on_state(self, state: str) -> None:
        if state == "connected":
            log.info("%s: app %s is ready for calls", Event.ARI_CONNECTED, self._settings.ari_app)
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
            if self._stopping.is_set():
                return
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
            call = Call(
                channel_id=channel_id,
                direction=Direction.INBOUND,
                caller=caller,
                callee=did,
                settings=self._settings,
                rest=self._rest,
                records=self._records,
                tools=self._tools,
                instructions=self._instructions,
                on_end=self._forget,
                pacer=self._pacer,
            )
            with self._lock:
                self._calls[channel_id] = call
            threading.Thread(target=call.start, name=f"call-{channel_id}", daemon=True).start()
        elif kind in ("StasisEnd", "ChannelDestroyed", "ChannelHangupRequest"):
            with self._lock:
                ended = self._calls.get(channel_id)
            if ended is not None:
                threading.Thread(target=ended.caller_hung_up, name=f"hangup-{channel_id}", daemon=True).start()

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
        call = Call(
            channel_id=channel_id,
            direction=Direction.OUTBOUND,
            caller=caller_id,
            callee=setup.info.phone,
            campaign=setup.info.campaign,
            attempt_id=setup.info.attempt_id,
            settings=self._settings,
            rest=self._rest,
            records=self._records,
            tools=setup.tools,
            instructions=setup.instructions,
            on_end=self._forget,
            pacer=self._pacer,
        )
        with self._lock:
            if self._stopping.is_set():
                return
            self._calls[channel_id] = call
        call.start()

    def _forget(self, call: Call) -> None:
        with self._lock:
            self._calls.pop(call.call_id, None)
            self._ended.notify_all()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="openai-inbound-calls", description=__doc__.splitlines()[0])
    parser.add_argument("--env-file", default=DEFAULT_ENV_FILE, help=f"settings file (default {DEFAULT_ENV_FILE})")
    parser.add_argument("--prompt", type=Path, help="Spanish instructions for the assistant (default: built in)")
    parser.add_argument(
        "--outbound-prompt", type=Path, help="Spanish instructions for the dialer's calls (default: built in)"
    )
    args = parser.parse_args(argv)
    try:
        box = load_all(args.env_file)
    except ConfigError as error:
        print(f"openai-inbound-calls: {error}", file=sys.stderr)
        return 2
    settings, network = box.bridge, box.network
    try:
        setup_logging(settings.log_file, secrets=log_secrets(settings, network))
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
    service = InboundService(settings, records, tools, instructions, outbound)
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s received: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    # Everything loaded so far lives as long as the process: keep it out of the collector's way, so a full
    # collection does not pause every call's audio for tens of milliseconds (docs/PERFORMANCE.md).
    gc.collect()
    gc.freeze()
    service.start()
    stop.wait()
    service.stop()
    pool.close()
    outbound.close()
    records.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
