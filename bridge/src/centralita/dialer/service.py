"""openai-outbound-calls: the dialer service; places the running campaigns' calls until it is stopped.

It reads the box's .env (``--env-file``) once and all of it, as openai-inbound-calls does (the calls it places
are answered by that service: a file it refuses would leave every answered customer without the assistant),
opens the campaign database, connects to ARI as its own events application and ticks the ``Runner`` once a
second; its metrics (``dialer/metrics.py``) are served on 127.0.0.1 at ``DIALER_METRICS_PORT``. SIGTERM
(``systemctl stop``) or SIGINT stops it gracefully: no new calls, the open ones followed for up to
``--drain-timeout`` seconds, the leases of any still open released so the next start takes them over at once.
Exit codes: 0 stopped, 2 configuration or start-up error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from centralita.config.box import load_all
from centralita.config.dialer import DialerSettings
from centralita.config.env import DEFAULT_ENV_FILE, ConfigError, redact_url
from centralita.dialer.ari_originator import AriOriginator
from centralita.dialer.metrics import DialerMetrics
from centralita.dialer.requests import RequestSpool
from centralita.dialer.runner import Runner, RunnerConfig
from centralita.dialer.store import CampaignStore
from centralita.isp.phones import region_for_country_code
from centralita.logs import setup_logging
from centralita.stopping import stop_on_signals
from centralita.telephony.ari import AriEvents

__all__ = ["main", "runner_config"]

log = logging.getLogger(__name__)


def runner_config(settings: DialerSettings) -> RunnerConfig:
    return RunnerConfig(
        policy=settings.policy,
        timezone=settings.timezone,
        max_concurrent=settings.max_concurrent,
        calls_per_minute=settings.calls_per_minute,
        on_machine=str(settings.on_machine),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="openai-outbound-calls", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--env-file", default=DEFAULT_ENV_FILE, help=f"settings file (default {DEFAULT_ENV_FILE})")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between scheduling passes (default 1)")
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=20.0,
        help="on stop, seconds to keep following open calls before handing them to the next start (default 20)",
    )
    args = parser.parse_args(argv)
    try:
        settings = load_all(args.env_file, dialer_required=True).dialer
    except ConfigError as error:
        print(f"openai-outbound-calls: {error}", file=sys.stderr)
        return 2
    assert settings is not None  # required: its absence is a ConfigError
    try:
        setup_logging(settings.log_file, secrets=[settings.ari_password.reveal()])
        store = CampaignStore(settings.db_path)
    except (OSError, ValueError) as error:
        print(f"openai-outbound-calls: {error}", file=sys.stderr)
        return 2
    stop = stop_on_signals(log, "stopping (no new calls)")
    originator = AriOriginator.from_settings(settings)
    events = AriEvents(AriOriginator.endpoint(settings), originator.handle_event, originator.handle_state)
    runner = Runner(store, originator, runner_config(settings))
    spool = RequestSpool(
        settings.requests_dir,
        store,
        settings.owns,
        region=region_for_country_code(settings.country_code),
        timezone=settings.timezone,
    )
    metrics = DialerMetrics(store)
    log.info(
        "starting: ARI %s, events app %s, calls go to %s; database %s; console requests from %s",
        redact_url(settings.ari_url),
        settings.events_app,
        f"context {settings.context}" if settings.context else f"Stasis app {settings.ari_app}",
        settings.db_path,
        settings.requests_dir,
    )
    metrics.serve(settings.metrics_port)
    events.start()
    if not events.wait_connected(10):
        log.warning("ARI events not connected yet: calls are placed anyway and looked up by polling meanwhile")
    try:
        runner.run(stop, interval=args.interval, drain_timeout=args.drain_timeout, chores=[spool.process])
    finally:
        events.stop()
        metrics.close()
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
