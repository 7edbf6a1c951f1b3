"""The console's settings, from its own environment (the unit's ``Environment=`` lines).

The console never reads the box's ``.env``: that file holds the OpenAI key and the router passwords, which the
console has no use for and its user must not be able to read. Every setting here is harmless to show (the TLS
key's path, not the key).

The console listens on a loopback address over plain HTTP, or anywhere over HTTPS: WEB_LISTEN off loopback
without WEB_TLS_CERT and WEB_TLS_KEY is refused (passwords and session cookies would cross the network in clear).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta, tzinfo
from pathlib import Path
from typing import Final, Self

from centralita.config.dialer import read_campaign_prefixes, read_country_code
from centralita.config.env import EnvReader, is_loopback_host, validated

__all__ = ["WebSettings"]

SOURCE: Final = "the console's environment (centralita-web.service)"


@dataclass(frozen=True, slots=True)
class WebSettings:
    web_db_path: Path = Path("/var/lib/centralita-web/web.db")
    records_path: Path = Path("/var/lib/centralita/centralita.db")
    dialer_db_path: Path = Path("/var/lib/centralita/dialer.db")
    status_path: Path = Path("/run/centralita/openai-inbound-calls.json")
    recordings_dir: Path = Path("/var/spool/centralita/recordings")
    requests_dir: Path = Path("/var/spool/centralita/campaign-requests")
    doctor_report_path: Path = Path("/var/lib/centralita-doctor/doctor.json")
    listen: str = "127.0.0.1"
    port: int = 8090
    # PEM files of the HTTPS listener (the certificate, with its chain, and its private key); None: plain HTTP,
    # loopback only.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    threads: int = 4
    session_idle: timedelta = timedelta(minutes=30)
    session_absolute: timedelta = timedelta(hours=12)
    login_window: timedelta = timedelta(minutes=15)
    login_max_per_user: int = 5
    login_max_per_client: int = 20
    poll_seconds: int = 2
    zone: tzinfo | None = None  # the days of the history's search; None: the box's own time zone
    # What a CSV import is checked with, the dialer's own settings (the dialer checks it again with its .env):
    # national numbers' country code, the zone whose today no due date may pass, this box's campaign prefixes.
    country_code: str = ""
    dialer_zone: tzinfo | None = None  # None: ``zone``
    campaigns: tuple[str, ...] = ()

    @property
    def tls(self) -> bool:
        """Whether the console serves HTTPS (``from_values`` accepts no listener off loopback without it)."""
        return self.tls_cert is not None and self.tls_key is not None

    @property
    def secure_cookies(self) -> bool:
        """Cookies are ``Secure`` whenever the console serves HTTPS or is reached other than over loopback."""
        return self.tls or not is_loopback_host(self.listen)

    @classmethod
    def from_values(cls, values: Mapping[str, str | None]) -> Self:
        return validated(values, cls._read, SOURCE)

    @classmethod
    def _read(cls, env: EnvReader) -> Self:
        listen = env.ip_address("WEB_LISTEN", "127.0.0.1")
        tls_cert = env.optional_path("WEB_TLS_CERT", "/etc/centralita-web/tls/console.crt")
        tls_key = env.optional_path("WEB_TLS_KEY", "/etc/centralita-web/tls/console.key")
        if (tls_cert is None) != (tls_key is None) and env.valid("WEB_TLS_CERT", "WEB_TLS_KEY"):
            env.fail(
                "WEB_TLS_CERT",
                "WEB_TLS_CERT and WEB_TLS_KEY go together (the certificate and its private key): set both, or "
                "neither for plain HTTP on a loopback address (bridge_web_tls_certificate, bridge_web_tls_key).",
            )
        elif tls_cert is None and not is_loopback_host(listen) and env.valid("WEB_LISTEN", "WEB_TLS_CERT"):
            env.fail(
                "WEB_LISTEN",
                f"WEB_LISTEN is {listen}, beyond the loopback address, but no certificate is set: passwords and "
                "session cookies would cross the network in clear. Set WEB_TLS_CERT and WEB_TLS_KEY (the role's "
                "bridge_web_tls_certificate and bridge_web_tls_key), or listen on 127.0.0.1 and reach the console "
                "through an SSH tunnel.",
            )
        return cls(
            web_db_path=env.path("WEB_DB_PATH", "/var/lib/centralita-web/web.db"),
            records_path=env.path("DB_PATH", "/var/lib/centralita/centralita.db"),
            dialer_db_path=env.path("DIALER_DB_PATH", "/var/lib/centralita/dialer.db"),
            status_path=env.path("STATUS_PATH", "/run/centralita/openai-inbound-calls.json"),
            recordings_dir=env.path("RECORDINGS_DIR", "/var/spool/centralita/recordings"),
            requests_dir=env.path("CAMPAIGN_REQUESTS_DIR", "/var/spool/centralita/campaign-requests"),
            doctor_report_path=env.path("DOCTOR_REPORT_PATH", "/var/lib/centralita-doctor/doctor.json"),
            listen=listen,
            tls_cert=tls_cert,
            tls_key=tls_key,
            port=env.integer("WEB_PORT", 8090, 1, 65535),
            threads=env.integer("WEB_THREADS", 4, 1, 32),
            session_idle=timedelta(minutes=env.integer("WEB_SESSION_IDLE_MINUTES", 30, 1, 24 * 60)),
            session_absolute=timedelta(hours=env.integer("WEB_SESSION_HOURS", 12, 1, 24 * 7)),
            login_window=timedelta(minutes=env.integer("WEB_LOGIN_WINDOW_MINUTES", 15, 1, 24 * 60)),
            login_max_per_user=env.integer("WEB_LOGIN_MAX_FAILURES", 5, 1, 100),
            login_max_per_client=env.integer("WEB_LOGIN_MAX_FAILURES_PER_CLIENT", 20, 1, 1000),
            zone=env.timezone(
                "WEB_TIMEZONE", required=False, what="the time zone of the history's days", example="America/Lima"
            ),
            country_code=read_country_code(env, "DIALER_COUNTRY_CODE"),
            dialer_zone=env.timezone(
                "DIALER_TIMEZONE",
                required=False,
                what="the customers' time zone (a CSV import refuses due dates after today there)",
                example="America/Mexico_City",
            ),
            campaigns=read_campaign_prefixes(env),
        )
