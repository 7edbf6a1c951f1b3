"""The dialer's settings: the ``DIALER_*`` variables of the box's ``.env`` (and the ARI ones it shares).

Variables, with their defaults (docs/DIALER.md explains each rule)::

    DIALER_TIMEZONE=America/Mexico_City     the customers' time zone (IANA name); unset: no dialer here
    DIALER_WINDOWS=mon-fri 08:00-19:00; sat 08:00-15:00
    DIALER_WINDOW_END_MARGIN=10m            no call starts this close to the end of a window
    DIALER_HOLIDAYS=                        YYYY-MM-DD (that day) or MM-DD (every year), comma separated
    DIALER_MAX_PER_DAY=1                    dials per customer (and per number) per local day
    DIALER_MAX_PER_WEEK=7                   dials per customer in any 7 consecutive days
    DIALER_MAX_ATTEMPTS=10                  dials per customer per campaign, then the customer is exhausted
    DIALER_RETRY_INTERVAL=4h                after busy, no answer, machine or failure
    DIALER_COOLDOWN=7d                      after a conversation or a promise to pay
    DIALER_MAX_CONCURRENT=2                 calls at once, all campaigns together (at most MAX_CALLS)
    DIALER_CALLS_PER_MINUTE=4               new calls per minute, all campaigns together
    DIALER_CALLER_ID=                       e.g. "ISP Demo" <+525550000000>; empty: the trunk's own number
    DIALER_COUNTRY_CODE=                    e.g. 52: national numbers (imports, opt-outs, caller IDs) are +52...
    DIALER_DB_PATH=/var/lib/centralita/dialer.db
    DIALER_LOG_FILE=/var/log/asterisk/outbound_openai.log
    DIALER_ON_MACHINE=nothing               nothing | message (a short message without any debt detail)
    DIALER_TRUNK=provider                   the PJSIP endpoint of the SIP trunk
    DIALER_ENDPOINT=PJSIP/{number}@{trunk}  what ARI dials ({number}: E.164 with +, {digits}: without it;
                                            {trunk}: DIALER_TRUNK)
    DIALER_CONTEXT=                         empty: answered calls go straight to the Stasis app ARI_APP;
                                            set: they run this dialplan context first (AMD, see DIALER.md)
    DIALER_EXTENSION=s                      the extension in DIALER_CONTEXT
    DIALER_RING_TIMEOUT=30                  seconds the phone rings before the attempt is "no-answer"
    DIALER_EVENTS_APP=centralita-dialer     the ARI application the dialer follows its calls with
    DIALER_METRICS_PORT=0                   the dialer's Prometheus metrics on 127.0.0.1 at this port; 0: none
                                            (not METRICS_PORT: that one is openai-inbound-calls')
    DIALER_CAMPAIGNS=                       the campaigns this box may import and start, by name prefix, comma
                                            separated (boxes of a cluster split the campaigns); empty: any
    CAMPAIGN_REQUESTS_DIR=/var/spool/centralita/campaign-requests
                                            the web console's pause/resume requests (dialer/requests.py)
    ARI_URL, ARI_USER, ARI_PASSWORD, ARI_APP  as for openai-inbound-calls (ARI_PASSWORD only for the service)

Read with the shared ``EnvReader`` (``config/env.py``). The dialer's settings matter only where the dialer
runs: with DIALER_TIMEZONE unset ``read`` gives None unless they are ``required`` (openai-outbound-calls and
``centralita campaign`` require them); every other DIALER_* variable has a default, and one that is set but
wrong is always a problem.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

from centralita.config.bridge import read_ari
from centralita.config.env import ConfigError, EnvReader, Secret, validated
from centralita.config.limits import MAX_CALLS_RANGE, CallLimits
from centralita.dialer.policy import CallingPolicy, Window, parse_duration, parse_holidays, parse_windows
from centralita.isp.phones import region_for_country_code

__all__ = [
    "DEFAULT_WINDOWS",
    "DialerSettings",
    "MachinePolicy",
    "owns_campaign",
    "read_campaign_prefixes",
    "read_country_code",
]

DEFAULT_WINDOWS: Final = "mon-fri 08:00-19:00; sat 08:00-15:00"
_HIDDEN_CALLER_IDS: Final = frozenset({"anonymous", "private", "privado", "restricted", "unknown", "unavailable"})
_CALLER_ID = re.compile(r'^(?:"?(?P<name>[^"<>]{1,40})"?\s*)?<?(?P<number>\+?[0-9]{3,15})>?$')
_TIMEZONE_EXAMPLE: Final = "America/Mexico_City"


def _is_country_code(code: str) -> bool:
    try:
        return region_for_country_code(code) is not None
    except ValueError:
        return False


class MachinePolicy(StrEnum):
    """What to do when an answering machine picks up."""

    NOTHING = "nothing"  # hang up, leave no message
    MESSAGE = "message"  # leave a short message that names the company and says nothing about a debt


@dataclass(frozen=True, slots=True)
class DialerSettings:
    """Validated dialer settings. Build with ``read`` or ``from_values``; the constructor checks nothing."""

    timezone: ZoneInfo
    policy: CallingPolicy
    max_concurrent: int
    calls_per_minute: int
    caller_id: str
    country_code: str
    db_path: Path
    log_file: Path
    on_machine: MachinePolicy
    trunk: str
    endpoint: str
    context: str
    extension: str
    ring_timeout: int
    events_app: str
    ari_url: str
    ari_user: str
    ari_password: Secret
    ari_app: str
    # Campaign name prefixes this box owns (DIALER_CAMPAIGNS); empty: every campaign.
    campaigns: tuple[str, ...] = ()
    # The web console's pause and resume requests (centralita.dialer.requests).
    requests_dir: Path = Path("/var/spool/centralita/campaign-requests")
    metrics_port: int = 0  # Prometheus metrics on 127.0.0.1 at this port (dialer/metrics.py); 0: none

    def owns(self, campaign: str) -> bool:
        """Whether this box may import and start ``campaign``: two boxes of a cluster never dial one campaign."""
        return owns_campaign(self.campaigns, campaign)

    def dial_string(self, number: str) -> str:
        """The ARI ``endpoint`` for an E.164 number, e.g. ``PJSIP/+5215550001111@provider``."""
        return self.endpoint.format(number=number, digits=number.lstrip("+"), trunk=self.trunk)

    @classmethod
    def read(cls, reader: EnvReader, *, require_ari: bool = False, required: bool = True) -> DialerSettings | None:
        """Read every DIALER_* variable (and ARI's) with ``reader``, which records the problems.

        ``require_ari``: the service needs ARI_PASSWORD, the CLI does not. Without DIALER_TIMEZONE the result
        is None, a problem too when ``required``; the other variables are checked all the same.
        """
        timezone = reader.timezone(
            "DIALER_TIMEZONE",
            required=required,
            what="the customers' IANA time zone, e.g. America/Mexico_City; calling windows are local times and "
            "the dialer does not guess them from the server's clock",
            example=_TIMEZONE_EXAMPLE,
        )
        policy = _read_policy(reader)
        endpoint = _read_endpoint(reader)
        max_concurrent = reader.integer("DIALER_MAX_CONCURRENT", 2, 1, 50)
        calls_per_minute = reader.integer("DIALER_CALLS_PER_MINUTE", 4, 1, 120)
        caller_id = _read_caller_id(reader, "DIALER_CALLER_ID")
        country_code = read_country_code(reader, "DIALER_COUNTRY_CODE")
        db_path = reader.path("DIALER_DB_PATH", "/var/lib/centralita/dialer.db")
        log_file = reader.path("DIALER_LOG_FILE", "/var/log/asterisk/outbound_openai.log")
        on_machine = reader.choice("DIALER_ON_MACHINE", MachinePolicy.NOTHING)
        trunk = reader.identifier("DIALER_TRUNK", "provider")
        context = reader.identifier("DIALER_CONTEXT", "", example="centralita-outbound-amd")
        extension = reader.identifier("DIALER_EXTENSION", "s")
        ring_timeout = reader.integer("DIALER_RING_TIMEOUT", 30, 5, 120)
        events_app = reader.identifier("DIALER_EVENTS_APP", "centralita-dialer")
        campaigns = read_campaign_prefixes(reader)
        requests_dir = reader.path("CAMPAIGN_REQUESTS_DIR", "/var/spool/centralita/campaign-requests")
        metrics_port = _read_metrics_port(reader)
        ari = read_ari(reader, require_password=require_ari)
        settings = cls(
            timezone=timezone or ZoneInfo("UTC"),
            policy=policy,
            max_concurrent=max_concurrent,
            calls_per_minute=calls_per_minute,
            caller_id=caller_id,
            country_code=country_code,
            db_path=db_path,
            log_file=log_file,
            on_machine=on_machine,
            trunk=trunk,
            endpoint=endpoint,
            context=context,
            extension=extension,
            ring_timeout=ring_timeout,
            events_app=events_app,
            ari_url=ari.url,
            ari_user=ari.user,
            ari_password=ari.password,
            ari_app=ari.app,
            campaigns=campaigns,
            requests_dir=requests_dir,
            metrics_port=metrics_port,
        )
        if required and timezone is not None:  # where the dialer runs: elsewhere its limit limits nothing
            _check_concurrency(reader, max_concurrent)
        if settings.events_app == settings.ari_app and reader.valid("DIALER_EVENTS_APP", "ARI_APP"):
            reader.fail(
                "DIALER_EVENTS_APP",
                f"DIALER_EVENTS_APP is {settings.events_app!r}, the same as ARI_APP, but the dialer needs an ARI "
                "application of its own (a second connection would take the calls from openai-inbound-calls): "
                "set e.g. DIALER_EVENTS_APP=centralita-dialer.",
            )
        return settings if timezone is not None else None

    @classmethod
    def from_values(
        cls, values: Mapping[str, str | None], *, source: str | None = None, require_ari: bool = False
    ) -> DialerSettings:
        """Validate raw values (name -> text), DIALER_TIMEZONE required; every problem in one ``ConfigError``."""
        settings = validated(values, lambda reader: cls.read(reader, require_ari=require_ari, required=True), source)
        if settings is None:  # pragma: no cover - a required time zone that is missing is a problem above
            raise ConfigError(["DIALER_TIMEZONE is missing."], source, ["DIALER_TIMEZONE"])
        return settings


def _read_metrics_port(reader: EnvReader) -> int:
    """DIALER_METRICS_PORT, which must not be openai-inbound-calls' METRICS_PORT: both listen on 127.0.0.1, and the
    second service to start would go without metrics (its log says the port is taken)."""
    port = reader.integer("DIALER_METRICS_PORT", 0, 0, 65535)
    if port == 0 or not reader.valid("DIALER_METRICS_PORT"):
        return port
    box = EnvReader({"METRICS_PORT": reader.raw("METRICS_PORT")})
    if box.integer("METRICS_PORT", 0, 0, 65535) == port and box.valid("METRICS_PORT"):
        reader.fail(
            "DIALER_METRICS_PORT",
            f"DIALER_METRICS_PORT is {port}, the same as METRICS_PORT (openai-inbound-calls' metrics): both services "
            "listen on 127.0.0.1, so give the dialer another port (e.g. METRICS_PORT + 1) or 0 for none.",
        )
    return port


def _check_concurrency(reader: EnvReader, max_concurrent: int) -> None:
    """DIALER_MAX_CONCURRENT may not exceed MAX_CALLS, the box's limit on calls with the assistant.

    Every answered dialer call takes one of the box's MAX_CALLS places (and one in the dialplan's copy of the limit,
    asterisk_max_calls): a dialer allowed more calls than that would ring customers and, once they answer, hand
    them to the failover context as box_full instead of the assistant. MAX_CALLS is read on a reader of its own:
    a wrong MAX_CALLS is the bridge's problem to report, and then there is nothing to compare with.
    """
    box = EnvReader({"MAX_CALLS": reader.raw("MAX_CALLS")})
    max_calls = box.integer("MAX_CALLS", CallLimits().max_calls, *MAX_CALLS_RANGE)
    if max_concurrent > max_calls and box.valid("MAX_CALLS") and reader.valid("DIALER_MAX_CONCURRENT"):
        reader.fail(
            "DIALER_MAX_CONCURRENT",
            f"DIALER_MAX_CONCURRENT is {max_concurrent}, above MAX_CALLS ({max_calls}), the calls the box carries "
            "at once, inbound and the dialer's together: the customers answering the calls over the limit would be "
            f"sent to the failover context instead of the assistant. Set DIALER_MAX_CONCURRENT={max_calls} or "
            "less, or raise MAX_CALLS (with the dialplan's limit, asterisk_max_calls, as high).",
        )


def _read_duration(reader: EnvReader, name: str, default: str, minimum: timedelta) -> timedelta:
    value = reader.parsed(name, default, parse_duration, default)
    if value < minimum and reader.valid(name):
        reader.invalid(name, reader.raw(name) or default, f"shorter than {minimum}", default)
        return parse_duration(default)
    return value


def _read_policy(reader: EnvReader) -> CallingPolicy:
    windows = reader.parsed("DIALER_WINDOWS", DEFAULT_WINDOWS, parse_windows, DEFAULT_WINDOWS)
    holidays = reader.parsed("DIALER_HOLIDAYS", "", parse_holidays, "2026-12-25,01-01")
    max_per_day = reader.integer("DIALER_MAX_PER_DAY", 1, 1, 10)
    max_per_week = reader.integer("DIALER_MAX_PER_WEEK", 7, 1, 70)
    max_attempts = reader.integer("DIALER_MAX_ATTEMPTS", 10, 1, 1000)
    retry = _read_duration(reader, "DIALER_RETRY_INTERVAL", "4h", timedelta(minutes=5))
    cooldown = _read_duration(reader, "DIALER_COOLDOWN", "7d", timedelta(0))
    margin = _read_duration(reader, "DIALER_WINDOW_END_MARGIN", "10m", timedelta(0))
    if max_per_week < max_per_day and reader.valid("DIALER_MAX_PER_DAY", "DIALER_MAX_PER_WEEK"):
        reader.fail(
            "DIALER_MAX_PER_WEEK",
            f"DIALER_MAX_PER_WEEK is {max_per_week}, below DIALER_MAX_PER_DAY ({max_per_day}): "
            f"set e.g. DIALER_MAX_PER_WEEK={max(7, max_per_day)}, or lower DIALER_MAX_PER_DAY.",
        )
    stand_in = CallingPolicy((Window(frozenset({0}), 0, 60),))
    if not reader.valid("DIALER_WINDOWS", "DIALER_WINDOW_END_MARGIN"):
        return stand_in
    try:
        return CallingPolicy(
            windows=windows,
            holidays=holidays,
            max_per_day=max_per_day,
            max_per_week=max_per_week,
            max_attempts=max_attempts,
            retry_interval=retry,
            cooldown=cooldown,
            end_margin=margin,
        )
    except ValueError as error:
        reader.fail(
            "DIALER_WINDOW_END_MARGIN",
            f"DIALER_WINDOW_END_MARGIN is {reader.raw('DIALER_WINDOW_END_MARGIN') or '10m'!r}, which does not fit "
            f"DIALER_WINDOWS ({error}): set e.g. DIALER_WINDOW_END_MARGIN=10m, or widen the windows.",
        )
        return stand_in


def owns_campaign(prefixes: tuple[str, ...], campaign: str) -> bool:
    """Whether a box given the campaign name ``prefixes`` (DIALER_CAMPAIGNS; none: any) dials ``campaign``."""
    return not prefixes or any(campaign.strip().startswith(prefix) for prefix in prefixes)


def read_campaign_prefixes(reader: EnvReader) -> tuple[str, ...]:
    """DIALER_CAMPAIGNS: the campaign name prefixes this box dials (the dialer's, and the console's for imports)."""
    raw = reader.raw("DIALER_CAMPAIGNS") or ""
    prefixes = tuple(part.strip() for part in raw.split(",") if part.strip())
    bad = [p for p in prefixes if len(p) > 64 or any(not (ch.isalnum() or ch in " ._-") for ch in p)]
    if bad:
        reader.invalid(
            "DIALER_CAMPAIGNS",
            raw,
            f"with {', '.join(repr(p) for p in bad)}, not the start of a campaign name (letters, digits, spaces, "
            "'.', '_' or '-')",
            "norte-,cortados-",
        )
        return ()
    return prefixes


def _read_endpoint(reader: EnvReader) -> str:
    name, example = "DIALER_ENDPOINT", "PJSIP/{number}@{trunk}"
    endpoint = reader.text(name, example)
    if "{number}" not in endpoint and "{digits}" not in endpoint:
        reader.invalid(name, endpoint, "without {number} or {digits}", example)
        return example
    try:
        endpoint.format(number="+10000000", digits="10000000", trunk="provider")
    except (KeyError, IndexError, ValueError):
        reader.invalid(name, endpoint, "but only {number}, {digits} and {trunk} may appear in braces", example)
        return example
    return endpoint


def _read_caller_id(reader: EnvReader, name: str) -> str:
    raw = reader.raw(name)
    if raw is None:
        return ""
    match = _CALLER_ID.match(raw)
    if raw.strip('"<> ').lower() in _HIDDEN_CALLER_IDS or match is None:
        reader.fail(
            name,
            f"{name} is {raw!r}, not a number the customer can call back (a hidden or private caller ID is not "
            f'allowed for collection calls): set e.g. {name}="ISP Demo" <+525550000000>, or leave it empty to '
            "use the trunk's number.",
        )
        return ""
    number = match.group("number")
    caller_name = (match.group("name") or "").strip()
    return f'"{caller_name}" <{number}>' if caller_name else number


def read_country_code(reader: EnvReader, name: str) -> str:
    """A country calling code (``52``; "" when unset), the region national numbers of imports are read in."""
    raw = reader.raw(name)
    if raw is None:
        return ""
    code = raw.lstrip("+")
    if not re.fullmatch(r"[1-9][0-9]{0,2}", code) or not _is_country_code(code):
        reader.invalid(name, raw, "not the country calling code of any country (1 to 3 digits)", "52")
        return ""
    return code
