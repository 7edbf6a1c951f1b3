"""openai-inbound-calls: the service that answers every inbound call with the voice assistant.

It keeps the ARI events connection to the Stasis app open (reconnecting through Asterisk restarts), starts an
``InboundCall`` for each caller channel the dialplan sends to the app, and ends the call when the caller hangs
up. Calls are independent: one failing call never touches another, and stopping the service hands every caller
still on the line to the operator context instead of dropping them.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from types import FrameType
from typing import Any

from centralita.ari import AriEndpoint, AriEvents, AriRest
from centralita.call import InboundCall
from centralita.config import ConfigError, Settings
from centralita.logs import setup_logging
from centralita.records import CallRecords
from centralita.tools import ToolRegistry, builtin_tools

log = logging.getLogger(__name__)

DEFAULT_ENV_FILE = "/usr/local/asterisk/.env"


def default_instructions() -> str:
    """The Spanish system prompt shipped with the package."""
    return resources.files("centralita").joinpath("data/prompt_inbound.es.txt").read_text(encoding="utf-8")


class InboundService:
    """Routes ARI events to calls. Thread-safe; every call runs on its own threads."""

    def __init__(self, settings: Settings, records: CallRecords, tools: ToolRegistry, instructions: str) -> None:
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
        self._calls: dict[str, InboundCall] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    @property
    def active_calls(self) -> int:
        with self._lock:
            return len(self._calls)

    def start(self) -> None:
        log.info("starting: ARI %s app %s", self._settings.ari_url, self._settings.ari_app)
        self._events.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._events.wait_connected(timeout)

    def stop(self) -> None:
        self._stopping.set()
        self._events.stop()
        with self._lock:
            calls = list(self._calls.values())
        for call in calls:
            call.hand_over("service stopping")
        log.info("stopped")

    def _on_state(self, state: str) -> None:
        if state == "connected":
            log.info("ARI connected: app %s is ready for calls", self._settings.ari_app)
        else:
            log.warning("ARI disconnected: Asterisk restarting or unreachable; reconnecting")

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        channel = event.get("channel") or {}
        channel_id = str(channel.get("id", ""))
        if kind == "StasisStart":
            args = event.get("args") or []
            if not args or args[0] != "inbound":
                return  # our own ExternalMedia channels, and anything else that is not a caller
            if self._stopping.is_set():
                return
            caller = str((channel.get("caller") or {}).get("number", ""))
            did = str(args[1]) if len(args) > 1 else ""
            call = InboundCall(
                channel_id=channel_id,
                caller=caller,
                did=did,
                settings=self._settings,
                rest=self._rest,
                records=self._records,
                tools=self._tools,
                instructions=self._instructions,
                on_end=self._forget,
            )
            with self._lock:
                self._calls[channel_id] = call
            threading.Thread(target=call.start, name=f"call-{channel_id}", daemon=True).start()
        elif kind in ("StasisEnd", "ChannelDestroyed", "ChannelHangupRequest"):
            with self._lock:
                ended = self._calls.get(channel_id)
            if ended is not None:
                threading.Thread(target=ended.caller_hung_up, name=f"hangup-{channel_id}", daemon=True).start()

    def _forget(self, call: InboundCall) -> None:
        with self._lock:
            self._calls.pop(call.call_id, None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="openai-inbound-calls", description=__doc__.splitlines()[0])
    parser.add_argument("--env-file", default=DEFAULT_ENV_FILE, help=f"settings file (default {DEFAULT_ENV_FILE})")
    parser.add_argument("--prompt", type=Path, help="Spanish instructions for the assistant (default: built in)")
    args = parser.parse_args(argv)
    try:
        settings = Settings.load(args.env_file)
    except ConfigError as error:
        print(f"openai-inbound-calls: {error}", file=sys.stderr)
        return 2
    try:
        setup_logging(settings.log_file, secrets=[settings.openai_api_key.reveal(), settings.ari_password.reveal()])
        instructions = args.prompt.read_text(encoding="utf-8") if args.prompt else default_instructions()
        records = CallRecords(settings.db_path)
    except (OSError, ValueError) as error:
        print(f"openai-inbound-calls: {error}", file=sys.stderr)
        return 2
    service = InboundService(settings, records, builtin_tools(), instructions)
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s received: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    service.start()
    stop.wait()
    service.stop()
    records.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
