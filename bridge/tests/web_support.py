"""A console over real files: call records, a campaign store and a status file written by the project's own code."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from dialer_helpers import target
from flask import Flask
from flask.testing import FlaskClient

from centralita.billing.usage import Usage
from centralita.calls.status import StatusReporter
from centralita.dialer.store import CampaignStore
from centralita.storage.records import AuditResult, CallRecords, Outcome
from centralita.web import passwords
from centralita.web.app import create_app
from centralita.web.settings import WebSettings
from centralita.web.store import WebStore

PASSWORD = "una frase bastante larga"
CALL_ID = "1733250000.42"
OTHER_CALL_ID = "1733253600.43"
CALLER = "+51987654321"
OTHER_CALLER = "+51911222333"
DID = "+5116409000"
DNI = "45678912"
STARTED = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
FAILOVER_DETAIL = "the Realtime session failed (websocket closed 1011): caller sent to the failover context"
_CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Console:
    app: Flask
    store: WebStore
    settings: WebSettings
    clock: Clock
    records: CallRecords

    def client(self) -> FlaskClient:
        return self.app.test_client()


def write_records(records: CallRecords) -> None:
    """One inbound call that reached the assistant, used a tool, changed a router, cost money and failed over;
    another that was refused."""
    records.start_call(CALL_ID, "inbound", CALLER, DID, STARTED)
    records.mark_answered(CALL_ID, STARTED + timedelta(seconds=1))
    records.add_transcript(
        CALL_ID, "assistant", "Hola, soy el asistente de Red Andina.", STARTED + timedelta(seconds=2)
    )
    records.add_transcript(CALL_ID, "caller", f"No tengo internet, mi DNI es {DNI}.", STARTED + timedelta(seconds=6))
    records.add_tool_call(
        CALL_ID,
        "call_1",
        "verificar_identidad",
        {"dni": DNI, "ultimos_digitos": "4321"},
        {"verificado": True, "cliente": "Ana Quispe"},
        True,
        STARTED + timedelta(seconds=8),
    )
    records.add_transcript(CALL_ID, "assistant", "Gracias, ya la encontré.", STARTED + timedelta(seconds=9))
    records.add_audit(
        CALL_ID,
        "registrar_promesa_pago",
        "address-list add list=promesa-pago address=10.20.0.14 timeout=3d",
        AuditResult.DONE,
        caller=CALLER,
        router="core-1",
        customer="ana.quispe",
        customer_id=DNI,
    )
    records.add_usage(
        CALL_ID,
        "resp_1",
        Usage(input_text=1200, input_audio=300, output_text=40, output_audio=900),
        Decimal("0.031250"),
        "USD",
        STARTED + timedelta(seconds=10),
        prices_as_of="2026-11-15",
    )
    records.end_call(CALL_ID, Outcome.REALTIME_FAILED, FAILOVER_DETAIL, STARTED + timedelta(seconds=40))
    later = STARTED + timedelta(days=1)
    records.start_call(OTHER_CALL_ID, "inbound", OTHER_CALLER, DID, later)
    records.end_call(OTHER_CALL_ID, Outcome.REFUSED, "the box is full (max_calls 4)", later)


def write_campaign(path: Path) -> None:
    with CampaignStore(path) as store:
        store.ensure_campaign("morosos-2026-12")
        store.upsert_targets("morosos-2026-12", [target(1), target(2)])
        store.start_campaign("morosos-2026-12")


LIVE_CALL_ID = "1733400000.42"
OUTBOUND_CUSTOMER = "+525550071003"


def write_status(path: Path, updated: datetime) -> None:
    snapshot = {
        "service": "openai-inbound-calls",
        "active_calls": 2,
        "ari_connected": True,
        "limits": {"max_calls": 4},
        # As InboundService._snapshot writes them (Call.live_view plus the worker).
        "calls": [
            {
                "call_id": LIVE_CALL_ID,
                "direction": "inbound",
                "caller": CALLER,
                "callee": DID,
                "did": DID,
                "campaign": "",
                "started_at": (updated - timedelta(seconds=75)).isoformat(),
                "activity": "tool",
                "tool": "consultar_servicio",
                "worker": "centralita-1",
            },
            {
                "call_id": "centralita-out-7-abc",
                "direction": "outbound",
                "caller": "",
                "callee": OUTBOUND_CUSTOMER,
                "did": "",
                "campaign": "morosos-2026-12",
                "started_at": (updated - timedelta(seconds=5)).isoformat(),
                "activity": "transferring",
                "tool": "",
                "worker": "centralita-1",
            },
        ],
    }
    StatusReporter(path, lambda: snapshot).write()


def build_console(tmp_path: Path, *, csrf: bool = True, **overrides: Any) -> Iterator[Console]:
    """The console over the files above; ``overrides``: other ``WebSettings`` values."""
    records = CallRecords(tmp_path / "centralita.db")
    write_records(records)
    write_campaign(tmp_path / "dialer.db")
    settings = WebSettings(
        web_db_path=tmp_path / "web" / "web.db",
        records_path=tmp_path / "centralita.db",
        dialer_db_path=tmp_path / "dialer.db",
        status_path=tmp_path / "status.json",
        recordings_dir=tmp_path / "recordings",
        requests_dir=tmp_path / "requests",
        doctor_report_path=tmp_path / "doctor.json",
        zone=UTC,
    )
    settings = replace(settings, **overrides)
    settings.web_db_path.parent.mkdir()
    settings.requests_dir.mkdir()
    clock = Clock(datetime(2026, 12, 5, 12, 0, tzinfo=UTC))
    store = WebStore(settings.web_db_path, clock=clock)
    hashed = passwords.hash_password(PASSWORD)
    for name, role in (("vera", "viewer"), ("sara", "supervisor"), ("ada", "admin")):
        store.set_user(name, role, hashed)
    app = create_app(settings, store, clock=clock, csrf=csrf)
    app.testing = True
    try:
        yield Console(app=app, store=store, settings=settings, clock=clock, records=records)
    finally:
        store.close()
        records.close()


def csrf_token(html: str) -> str:
    match = _CSRF.search(html)
    assert match is not None, "the page has no CSRF token"
    return match.group(1) or match.group(2)


def log_in(client: FlaskClient, name: str, password: str = PASSWORD) -> int:
    page = client.get("/entrar")
    response = client.post(
        "/entrar", data={"name": name, "password": password, "csrf_token": csrf_token(page.get_data(as_text=True))}
    )
    return response.status_code
