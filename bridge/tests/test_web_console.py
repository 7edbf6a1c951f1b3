"""The web console through Flask's test client, with CSRF on, over real call records, a real campaign store and
a status file, all written by the project's own code (``web_support``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from web_support import (
    CALL_ID,
    CALLER,
    DID,
    DNI,
    FAILOVER_DETAIL,
    LIVE_CALL_ID,
    OTHER_CALL_ID,
    OUTBOUND_CUSTOMER,
    PASSWORD,
    Console,
    build_console,
    csrf_token,
    log_in,
    write_status,
)

from centralita.dialer.requests import RequestSpool
from centralita.dialer.store import CampaignState, CampaignStore
from centralita.web.auth import SESSION_COOKIE


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    yield from build_console(tmp_path)


def campaign_state(console: Console) -> CampaignState:
    with CampaignStore(console.settings.dialer_db_path) as store:
        return store.campaign("morosos-2026-12").state


# ---- logging in ------------------------------------------------------------------------------------------------


def test_pages_need_a_login(console: Console) -> None:
    client = console.client()
    response = client.get("/historial")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/entrar")
    assert client.get("/llamadas.json").status_code == 401


def test_login_opens_a_server_side_session_and_logout_ends_it(console: Console) -> None:
    client = console.client()
    page = client.get("/entrar")
    response = client.post(
        "/entrar", data={"name": "sara", "password": PASSWORD, "csrf_token": csrf_token(page.get_data(as_text=True))}
    )
    assert response.status_code == 302
    cookie = response.headers.getlist("Set-Cookie")
    session_cookie = next(value for value in cookie if value.startswith(f"{SESSION_COOKIE}="))
    assert "HttpOnly" in session_cookie
    assert "SameSite=Strict" in session_cookie
    assert "Secure" not in session_cookie  # the console listens on loopback
    token = session_cookie.split(";")[0].split("=", 1)[1]
    assert console.store.session(token, idle=timedelta(hours=1), absolute=timedelta(hours=1)) is not None
    assert client.get("/historial").status_code == 200

    history = client.get("/historial").get_data(as_text=True)
    assert client.post("/salir", data={"csrf_token": csrf_token(history)}).status_code == 302
    assert console.store.session(token, idle=timedelta(hours=1), absolute=timedelta(hours=1)) is None
    assert client.get("/historial").status_code == 302
    actions = [(row["user"], row["action"]) for row in console.store.audit_entries()]
    assert ("sara", "login") in actions
    assert ("sara", "logout") in actions


def test_a_session_expires_when_idle(console: Console) -> None:
    client = console.client()
    assert log_in(client, "vera") == 302
    assert client.get("/historial").status_code == 200
    console.clock.advance(minutes=31)
    assert client.get("/historial").status_code == 302


def test_wrong_password_is_refused_and_audited(console: Console) -> None:
    client = console.client()
    assert log_in(client, "sara", "no es la contraseña") == 401
    assert log_in(client, "nadie", PASSWORD) == 401
    assert client.get("/historial").status_code == 302
    failed = [row["user"] for row in console.store.audit_entries() if row["action"] == "login_failed"]
    assert sorted(failed) == ["nadie", "sara"]


def test_wrong_passwords_are_rate_limited_per_user(console: Console) -> None:
    client = console.client()
    for _ in range(console.settings.login_max_per_user):
        assert log_in(client, "sara", "no es la contraseña") == 401
    # Over the limit even the right password is refused, with the wait.
    page = client.get("/entrar")
    response = client.post(
        "/entrar", data={"name": "sara", "password": PASSWORD, "csrf_token": csrf_token(page.get_data(as_text=True))}
    )
    assert response.status_code == 429
    assert "Espere 15 minutos" in response.get_data(as_text=True)
    assert response.headers["Retry-After"] == str(15 * 60)
    assert any(row["action"] == "login_blocked" and row["user"] == "sara" for row in console.store.audit_entries())
    # Another user from the same address is not blocked by sara's failures (the per-address limit is higher).
    assert log_in(console.client(), "vera") == 302
    # Once the failures leave the window, the right password works again.
    console.clock.advance(minutes=15, seconds=1)
    assert log_in(client, "sara") == 302


def test_wrong_passwords_are_rate_limited_per_client_address(console: Console) -> None:
    client = console.client()
    for number in range(console.settings.login_max_per_client):
        assert log_in(client, f"intruso{number}", "adivinanza-larga-123") == 401
    assert log_in(client, "vera") == 429


def test_disabled_user_cannot_log_in(console: Console) -> None:
    console.store.disable_user("vera")
    assert log_in(console.client(), "vera") == 401


# ---- CSRF ---------------------------------------------------------------------------------------------------


def test_login_without_csrf_token_is_refused(console: Console) -> None:
    response = console.client().post("/entrar", data={"name": "sara", "password": PASSWORD})
    assert response.status_code == 400
    assert not any(row["action"] == "login" for row in console.store.audit_entries())


def test_campaign_post_without_csrf_token_is_refused_and_changes_nothing(console: Console) -> None:
    client = console.client()
    assert log_in(client, "sara") == 302
    response = client.post("/campanas/morosos-2026-12/pausar")
    assert response.status_code == 400
    assert "nada se ha cambiado" in response.get_data(as_text=True)
    response = client.post("/campanas/morosos-2026-12/pausar", data={"csrf_token": "forged"})
    assert response.status_code == 400
    assert campaign_state(console) is CampaignState.RUNNING
    assert not any(row["action"].startswith("campaign_") for row in console.store.audit_entries())


# ---- campaigns ------------------------------------------------------------------------------------------------


def apply_requests(console: Console) -> list[str]:
    """What openai-outbound-calls does about once a second: apply the console's requests; their results."""
    with CampaignStore(console.settings.dialer_db_path) as store:
        outcomes = RequestSpool(console.settings.requests_dir, store, lambda name: True).process()
    return [outcome.result for outcome in outcomes]


def test_supervisor_pauses_and_resumes_a_campaign_through_the_dialer_and_each_is_audited(console: Console) -> None:
    client = console.client()
    assert log_in(client, "sara") == 302
    page = client.get("/campanas").get_data(as_text=True)
    assert "morosos-2026-12" in page
    assert "en marcha" in page
    assert "Ninguna." in page  # no pending request
    response = client.post("/campanas/morosos-2026-12/pausar", data={"csrf_token": csrf_token(page)})
    assert response.status_code == 302
    # The console only asked: the campaign is still running and the request is shown as pending.
    assert campaign_state(console) is CampaignState.RUNNING
    page = client.get("/campanas").get_data(as_text=True)
    assert "Solicitud enviada: el marcador va a pausar la campaña morosos-2026-12" in page
    assert 'class="pending"' in page
    before = client.get("/campanas.json").get_json()
    assert [(p["campaign"], p["action"], p["user"]) for p in before["pending"]] == [
        ("morosos-2026-12", "pause", "sara")
    ]
    request_id = before["pending"][0]["request_id"]

    assert apply_requests(console) == ["applied"]
    assert campaign_state(console) is CampaignState.PAUSED
    after = client.get("/campanas.json").get_json()
    assert after["pending"] == []
    assert after["fingerprint"] != before["fingerprint"]  # what makes the page's polling reload it
    assert after["campaigns"] == [{"name": "morosos-2026-12", "state": "paused"}]
    assert after["actions"][0]["request_id"] == request_id
    assert (after["actions"][0]["user"], after["actions"][0]["result"]) == ("sara", "applied")
    page = client.get("/campanas").get_data(as_text=True)
    assert f'data-request="{request_id}" data-result="applied"' in page

    response = client.post("/campanas/morosos-2026-12/reanudar", data={"csrf_token": csrf_token(page)})
    assert response.status_code == 302
    assert apply_requests(console) == ["applied"]
    assert campaign_state(console) is CampaignState.RUNNING
    entries = [
        (row["user"], row["action"], row["target"], row["detail"].split()[0], row["client"])
        for row in reversed(console.store.audit_entries())
        if row["action"].startswith("campaign_")
    ]
    assert entries == [
        ("sara", "campaign_pause", "morosos-2026-12", "requested", "127.0.0.1"),
        ("sara", "campaign_resume", "morosos-2026-12", "requested", "127.0.0.1"),
    ]


def test_a_refused_campaign_action_is_audited_with_its_reason(console: Console) -> None:
    client = console.client()
    assert log_in(client, "sara") == 302
    page = client.get("/campanas").get_data(as_text=True)
    response = client.post("/campanas/no-existe/pausar", data={"csrf_token": csrf_token(page)}, follow_redirects=True)
    assert "No se pudo pausar la campaña" in response.get_data(as_text=True)
    entry = next(row for row in console.store.audit_entries() if row["action"] == "campaign_pause")
    assert entry["target"] == "no-existe"
    assert entry["detail"].startswith("refused: There is no campaign 'no-existe'")
    assert list(console.settings.requests_dir.iterdir()) == []  # nothing sent to the dialer


def test_a_spool_the_console_cannot_write_gives_a_message_and_an_audit_line(console: Console) -> None:
    console.settings.requests_dir.rmdir()
    client = console.client()
    assert log_in(client, "sara") == 302
    page = client.get("/campanas").get_data(as_text=True)
    response = client.post(
        "/campanas/morosos-2026-12/pausar", data={"csrf_token": csrf_token(page)}, follow_redirects=True
    )
    assert response.status_code == 200
    assert "el directorio de solicitudes no acepta archivos de la consola" in response.get_data(as_text=True)
    entry = next(row for row in console.store.audit_entries() if row["action"] == "campaign_pause")
    assert entry["detail"].startswith("failed: ")
    assert str(console.settings.requests_dir) in entry["detail"]
    assert campaign_state(console) is CampaignState.RUNNING


def test_the_console_never_writes_the_campaign_store(console: Console, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: CampaignStore, *args: object, **kwargs: object) -> None:
        raise AssertionError("the console wrote the campaign store")

    for method in ("pause_campaign", "start_campaign", "record_action"):
        monkeypatch.setattr(CampaignStore, method, refuse)
    client = console.client()
    assert log_in(client, "sara") == 302
    page = client.get("/campanas").get_data(as_text=True)
    assert client.post("/campanas/morosos-2026-12/pausar", data={"csrf_token": csrf_token(page)}).status_code == 302
    assert len(list(console.settings.requests_dir.iterdir())) == 1


def test_viewer_cannot_act_on_campaigns(console: Console) -> None:
    client = console.client()
    assert log_in(client, "vera") == 302
    page = client.get("/campanas").get_data(as_text=True)
    assert "Pausar" not in page
    history = client.get("/historial").get_data(as_text=True)
    response = client.post("/campanas/morosos-2026-12/pausar", data={"csrf_token": csrf_token(history)})
    assert response.status_code == 403
    assert campaign_state(console) is CampaignState.RUNNING


# ---- history -------------------------------------------------------------------------------------------------


def test_call_page_shows_both_sides_tools_router_writes_usage_and_failover(console: Console) -> None:
    client = console.client()
    assert log_in(client, "sara") == 302
    response = client.get(f"/historial/{CALL_ID}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Hola, soy el asistente de Red Andina." in page
    assert f"No tengo internet, mi DNI es {DNI}." in page
    assert page.index("Hola, soy el asistente") < page.index("No tengo internet") < page.index("Gracias, ya la")
    assert "verificar_identidad" in page
    assert "address-list add list=promesa-pago" in page
    assert "0.03125 USD" in page
    assert "2026-11-15" in page  # the price table's date beside the cost
    assert FAILOVER_DETAIL in page
    assert "Falló la sesión con OpenAI" in page
    assert CALLER in page  # a supervisor sees the caller's number


def test_viewer_sees_dni_and_phone_numbers_masked(console: Console) -> None:
    client = console.client()
    assert log_in(client, "vera") == 302
    page = client.get(f"/historial/{CALL_ID}").get_data(as_text=True)
    assert DNI not in page
    assert CALLER not in page
    assert DID not in page
    assert "*****912" in page  # the DNI said aloud, and in the router write's holder
    assert "+********321" in page
    history = client.get("/historial").get_data(as_text=True)
    assert CALLER not in history
    assert "+********321" in history


def test_history_searches_by_number_dni_date_and_outcome(console: Console) -> None:
    client = console.client()
    assert log_in(client, "sara") == 302

    def found(query: str) -> set[str]:
        page = client.get(f"/historial?{query}").get_data(as_text=True)
        return {call for call in (CALL_ID, OTHER_CALL_ID) if f"/historial/{call}" in page}

    assert found("") == {CALL_ID, OTHER_CALL_ID}
    assert found("numero=987+654+321") == {CALL_ID}
    assert found("numero=911222333") == {OTHER_CALL_ID}
    assert found(f"dni={DNI[:2]}.{DNI[2:5]}.{DNI[5:]}") == {CALL_ID}
    assert found("dni=11111111") == set()
    assert found("desde=2026-12-04") == {OTHER_CALL_ID}
    assert found("hasta=2026-12-03") == {CALL_ID}
    assert found("resultado=refused") == {OTHER_CALL_ID}
    assert found("resultado=realtime_failed&desde=2026-12-03&hasta=2026-12-03") == {CALL_ID}


def test_history_rejects_a_bad_date_with_a_message(console: Console) -> None:
    client = console.client()
    assert log_in(client, "sara") == 302
    page = client.get("/historial?desde=ayer").get_data(as_text=True)
    assert "Revise los campos marcados." in page
    assert f"/historial/{CALL_ID}" not in page


def test_unknown_call_is_404(console: Console) -> None:
    client = console.client()
    assert log_in(client, "vera") == 302
    assert client.get("/historial/no-such-call").status_code == 404


def test_console_never_writes_the_call_records(console: Console) -> None:
    before = console.records.path.stat().st_mtime_ns, console.records.recent_calls(10)
    client = console.client()
    assert log_in(client, "sara") == 302
    client.get(f"/historial/{CALL_ID}")
    client.get("/historial?numero=987")
    assert (console.records.path.stat().st_mtime_ns, console.records.recent_calls(10)) == before


# ---- calls in progress ------------------------------------------------------------------------------------------


def test_live_calls_come_from_the_status_snapshot_masked_for_viewers(console: Console) -> None:
    write_status(console.settings.status_path, datetime.now(UTC))
    console.clock.now = datetime.now(UTC)
    viewer = console.client()
    assert log_in(viewer, "vera") == 302
    state = viewer.get("/llamadas.json").get_json()
    assert state["running"] is True
    assert state["active_calls"] == 2
    call, outbound = state["calls"]
    assert call["call_id"] == LIVE_CALL_ID
    assert call["direction"] == "entrante"
    assert call["caller"] == "+********321"
    assert call["activity"] == "consultando (consultar_servicio)"
    assert call["worker"] == "centralita-1"
    assert 75 <= call["seconds"] < 120
    assert call["started"]  # the local start time
    assert outbound["direction"] == "saliente"
    assert outbound["activity"] == "pasando la llamada a una persona"
    assert outbound["did"] == "+*********003 (morosos-2026-12)"  # the customer's number, masked, and the campaign
    supervisor = console.client()
    assert log_in(supervisor, "sara") == 302
    calls = supervisor.get("/llamadas.json").get_json()["calls"]
    assert calls[0]["caller"] == CALLER
    assert calls[1]["did"] == f"{OUTBOUND_CUSTOMER} (morosos-2026-12)"
    page = supervisor.get("/llamadas").get_data(as_text=True)
    assert CALLER in page
    assert f'href="/historial/{LIVE_CALL_ID}"' in page
    assert "live.js" in page


def test_live_page_says_when_the_service_is_stopped_or_stale(console: Console) -> None:
    client = console.client()
    assert log_in(client, "vera") == 302
    assert client.get("/llamadas.json").get_json()["running"] is False
    write_status(console.settings.status_path, datetime.now(UTC))
    console.clock.now = datetime.now(UTC) + timedelta(minutes=5)
    state = client.get("/llamadas.json").get_json()
    assert state["running"] is False
    assert "más de 30 s" in state["message"]


# ---- the audit page and headers -------------------------------------------------------------------------------


def test_only_an_admin_reads_the_console_audit_log(console: Console) -> None:
    supervisor = console.client()
    assert log_in(supervisor, "sara") == 302
    assert supervisor.get("/registro").status_code == 403
    admin = console.client()
    assert log_in(admin, "ada") == 302
    page = admin.get("/registro").get_data(as_text=True)
    assert "login" in page
    assert "sara" in page


def test_pages_are_not_framed_cached_or_scripted_from_elsewhere(console: Console) -> None:
    client = console.client()
    response = client.get("/entrar")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


def test_login_redirects_only_to_a_path_of_the_console(console: Console) -> None:
    client = console.client()
    page = client.get("/entrar").get_data(as_text=True)
    response = client.post(
        "/entrar?next=//evil.example/x",
        data={"name": "vera", "password": PASSWORD, "csrf_token": csrf_token(page)},
    )
    assert response.headers["Location"] == "/llamadas"
