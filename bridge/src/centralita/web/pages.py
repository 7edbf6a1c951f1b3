"""The console's pages: calls in progress (and their JSON for polling), the call history and one call, campaigns.

Every page needs a logged-in user (``auth.requires``); a viewer sees DNI and phone numbers masked
(``masking``); campaign actions need a supervisor, are POSTs with a CSRF token (Flask-WTF checks it before the
view runs) and each goes into the web audit log, whatever its result.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from datetime import UTC, date, datetime
from typing import Any, Final

from flask import Blueprint, abort, flash, g, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from wtforms import DateField, SelectField, StringField
from wtforms.fields import SelectChoice
from wtforms.validators import Length, Optional

from centralita.calls.status import read_status
from centralita.dialer.requests import pending_requests, write_request
from centralita.dialer.store import CampaignError, CampaignStore, DialerStoreError
from centralita.storage.records import CallRecordsError, Outcome
from centralita.web.auth import client_address, requires
from centralita.web.context import current
from centralita.web.import_text import action_summary
from centralita.web.masking import mask_call, masks_for, phone
from centralita.web.records import ReadOnlyRecords, Search
from centralita.web.store import Role, User

__all__ = ["pages"]

log = logging.getLogger(__name__)

# A snapshot older than this means the service is not writing it: stopped, or stuck.
STALE_SECONDS: Final = 30
OUTCOME_LABELS: Final = {
    "completed": "Completada",
    "transferred": "Transferida a un operador",
    "hung_up_by_caller": "Colgó quien llamaba",
    "realtime_failed": "Falló la sesión con OpenAI",
    "service_stopped": "Servicio detenido",
    "error": "Error",
    "refused": "Rechazada",
    "no_caller_audio": "Sin audio de quien llamaba",
    "no_reply": "El asistente no respondió",
    "time_limit": "Tiempo máximo alcanzado",
    "channel_gone": "El canal desapareció",
    "interrupted": "Interrumpida por un reinicio",
}
ACTIVITY_LABELS: Final = {
    "starting": "conectando",
    "speaking": "hablando",
    "listening": "escuchando",
    "tool": "consultando",
    "transferring": "pasando la llamada a una persona",
    "ending": "terminando",
}
DIRECTION_LABELS: Final = {"inbound": "entrante", "outbound": "saliente"}

pages = Blueprint("pages", __name__)


class SearchForm(FlaskForm):
    class Meta:
        csrf = False  # a GET that changes nothing

    numero = StringField("Número", validators=[Optional(), Length(max=32)])
    dni = StringField("DNI", validators=[Optional(), Length(max=32)])
    desde = DateField("Desde", validators=[Optional()])
    hasta = DateField("Hasta", validators=[Optional()])
    resultado = SelectField(
        "Resultado",
        default="",
        choices=[
            SelectChoice("", "Todos"),
            *(SelectChoice(str(outcome), OUTCOME_LABELS.get(str(outcome), str(outcome))) for outcome in Outcome),
        ],
    )


class ActionForm(FlaskForm):
    """A form with nothing but its CSRF token: the campaign buttons."""


def _user() -> User:
    user: User = g.user
    return user


def _masked() -> bool:
    return masks_for(_user().role)


@pages.app_template_filter("outcome")
def outcome_label(value: str | None) -> str:
    return OUTCOME_LABELS.get(value or "", value or "En curso")


@pages.app_template_filter("local")
def local_time(value: str | None) -> str:
    if not value:
        return ""
    return datetime.fromisoformat(value).astimezone(current().zone).strftime("%Y-%m-%d %H:%M:%S")


@pages.route("/")
@requires(Role.VIEWER)
def index() -> ResponseReturnValue:
    return redirect(url_for("pages.live"))


# ---- calls in progress ---------------------------------------------------------------------------------------


def live_state() -> dict[str, Any]:
    """The calls in progress as the live page shows them, from the service's status snapshot."""
    console = current()
    snapshot = read_status(console.settings.status_path)
    if snapshot is None:
        return {"running": False, "message": "El servicio de llamadas entrantes no está en marcha.", "calls": []}
    now = console.clock()
    try:
        updated = datetime.fromisoformat(str(snapshot.get("updated_at")))
        age = (now - updated).total_seconds()
    except (TypeError, ValueError):
        age = float("inf")
    masked = _masked()
    calls = []
    for call in snapshot.get("calls") or []:
        if not isinstance(call, dict):
            continue
        started = call.get("started_at")
        seconds = None
        if isinstance(started, str):
            try:
                seconds = max(int((now - datetime.fromisoformat(started)).total_seconds()), 0)
            except ValueError:
                seconds = None
        activity = str(call.get("activity") or "")
        label = ACTIVITY_LABELS.get(activity, activity)
        if activity == "tool" and call.get("tool"):
            label = f"{label} ({call.get('tool')})"
        direction = str(call.get("direction") or "inbound")
        calls.append(
            {
                "call_id": str(call.get("call_id") or ""),
                "direction": DIRECTION_LABELS.get(direction, direction),
                "caller": phone(call.get("caller"), masked) or "anónimo",
                # An outbound call has no DID: the customer's number and the campaign instead.
                "did": phone(call.get("did"), masked)
                if direction == "inbound"
                else " ".join(
                    part for part in (phone(call.get("callee"), masked), f"({call.get('campaign')})") if part != "()"
                ),
                "started": local_time(started) if seconds is not None and isinstance(started, str) else "",
                "seconds": seconds,
                "activity": label,
                "worker": str(call.get("worker") or ""),
            }
        )
    stale = age > STALE_SECONDS
    return {
        "running": not stale,
        "message": f"El estado del servicio no se actualiza desde hace más de {STALE_SECONDS} s: ¿está detenido?"
        if stale
        else "",
        "updated_at": snapshot.get("updated_at"),
        "active_calls": snapshot.get("active_calls", 0),
        "max_calls": (snapshot.get("limits") or {}).get("max_calls"),
        "ari_connected": bool(snapshot.get("ari_connected")),
        "calls_listed": "calls" in snapshot,
        "calls": calls,
    }


@pages.route("/llamadas")
@requires(Role.VIEWER)
def live() -> ResponseReturnValue:
    return render_template("live.html", state=live_state(), poll_seconds=current().settings.poll_seconds)


@pages.route("/llamadas.json")
@requires(Role.VIEWER)
def live_json() -> ResponseReturnValue:
    response = jsonify(live_state())
    response.headers["Cache-Control"] = "no-store"
    return response


# ---- history -------------------------------------------------------------------------------------------------


def _records() -> ReadOnlyRecords:
    return ReadOnlyRecords(current().settings.records_path)


@pages.route("/historial")
@requires(Role.VIEWER)
def history() -> ResponseReturnValue:
    form = SearchForm(request.args)
    calls: list[dict[str, Any]] = []
    error = None
    if request.args and not form.validate():
        error = "Revise los campos marcados."
    else:
        search = Search(
            number=(form.numero.data or "").strip(),
            dni=(form.dni.data or "").strip(),
            first=form.desde.data if isinstance(form.desde.data, date) else None,
            last=form.hasta.data if isinstance(form.hasta.data, date) else None,
            outcome=form.resultado.data or "",
        )
        try:
            with _records() as records:
                calls = records.search(search, current().zone)
        except CallRecordsError as problem:
            log.error("console cannot read the call records: %s", problem)
            error = "No se puede leer el registro de llamadas. Detalle para el administrador: " + str(problem)
    if _masked():
        calls = [mask_call(call) for call in calls]
    return render_template("history.html", form=form, calls=calls, error=error)


@pages.route("/historial/<call_id>")
@requires(Role.VIEWER)
def call(call_id: str) -> ResponseReturnValue:
    try:
        with _records() as records:
            found = records.call(call_id)
    except CallRecordsError as problem:
        log.error("console cannot read the call records: %s", problem)
        return render_template(
            "error.html", message="No se puede leer el registro de llamadas.", detail=str(problem)
        ), 503
    if found is None:
        abort(404)
    if _masked():
        found = mask_call(found)
    return render_template("call.html", call=found)


# ---- campaigns -----------------------------------------------------------------------------------------------


def _campaign_store() -> CampaignStore | None:
    """The dialer's store, or None when the dialer never made one (opening it must not create it)."""
    path = current().settings.dialer_db_path
    if not path.is_file():
        return None
    return CampaignStore.read_only(path)


ACTION_LABELS: Final = {"pause": "pausar", "resume": "reanudar", "import": "importar"}
RESULT_LABELS: Final = {"applied": "aplicada", "unchanged": "sin cambios", "refused": "rechazada"}
STATE_LABELS: Final = {"draft": "borrador", "running": "en marcha", "paused": "en pausa", "finished": "terminada"}


def campaigns_state() -> dict[str, Any]:
    """The campaigns (from the dialer's database), the requests still waiting for the dialer and the dialer's
    last actions; ``fingerprint`` changes whenever any of them does (the page's polling reloads on it)."""
    statuses = []
    actions: list[dict[str, Any]] = []
    error = None
    try:
        store = _campaign_store()
        if store is not None:
            with store:
                statuses = [store.status(campaign.name) for campaign in store.campaigns()]
                actions = store.actions(20)
    except (DialerStoreError, sqlite3.Error) as problem:
        log.error("console cannot read the campaign store: %s", problem)
        error = "No se puede leer la base de campañas. Detalle para el administrador: " + str(problem)
    pending = pending_requests(current().settings.requests_dir)
    fingerprint = hashlib.sha256(
        repr(
            (
                [(status.campaign.name, str(status.campaign.state)) for status in statuses],
                [request.request_id for request in pending],
                actions[0]["id"] if actions else 0,
            )
        ).encode()
    ).hexdigest()[:16]
    return {
        "statuses": statuses,
        "campaigns": [{"name": status.campaign.name, "state": str(status.campaign.state)} for status in statuses],
        "pending": [
            {
                "request_id": request.request_id,
                "campaign": request.campaign,
                "action": request.action,
                "user": request.user,
                "requested_at": request.requested_at.isoformat(),
                "file_name": request.file_name,
            }
            for request in pending
        ],
        "actions": [
            {
                **{
                    key: row[key]
                    for key in ("at", "campaign", "action", "user", "source", "request_id", "result", "detail")
                },
                # An import's detail is JSON (counts, problems): said in Spanish.
                "summary": action_summary(row) if row["action"] == "import" else row["detail"],
            }
            for row in actions
        ],
        "error": error,
        "fingerprint": fingerprint,
    }


@pages.app_template_filter("campaign_state")
def campaign_state_label(value: str) -> str:
    return STATE_LABELS.get(value, value)


@pages.route("/campanas")
@requires(Role.VIEWER)
def campaigns() -> ResponseReturnValue:
    can_act = _user().role.at_least(Role.SUPERVISOR)
    return render_template(
        "campaigns.html",
        state=campaigns_state(),
        can_act=can_act,
        form=ActionForm(),
        action_labels=ACTION_LABELS,
        result_labels=RESULT_LABELS,
        poll_seconds=current().settings.poll_seconds,
    )


@pages.route("/campanas.json")
@requires(Role.VIEWER)
def campaigns_json() -> ResponseReturnValue:
    state = campaigns_state()
    del state["statuses"]
    return jsonify(state)


def _campaign_action(name: str, action: str) -> ResponseReturnValue:
    """Ask the dialer to pause or resume ``name``: the console cannot write the dialer's database, so it writes a
    request into the spool (``centralita.dialer.requests``) that openai-outbound-calls applies within seconds."""
    user = _user()
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400)
    verb = ACTION_LABELS[action]
    try:
        store = _campaign_store()
        if store is None:
            raise CampaignError("There are no campaigns yet.")
        with store:
            store.campaign(name)  # an unknown name is refused here, where the user sees it at once
        request = write_request(current().settings.requests_dir, action, name, user.name, current().clock())
    except (CampaignError, DialerStoreError, ValueError) as problem:
        detail = f"refused: {problem}"
        flash(f"No se pudo {verb} la campaña: {problem}", "error")
    except OSError as problem:
        detail = f"failed: {problem}"
        log.error(
            "console cannot write the campaign request for %s into %s: %s",
            name,
            current().settings.requests_dir,
            problem,
        )
        flash(
            f"No se pudo enviar la solicitud al marcador: el directorio de solicitudes no acepta archivos de la "
            f"consola ({problem}). El administrador puede ejecutar site.yml para repararlo, o usar "
            f"centralita campaign {'pause' if action == 'pause' else 'start'} {name}.",
            "error",
        )
    else:
        detail = f"requested {request.request_id}"
        flash(
            f"Solicitud enviada: el marcador va a {verb} la campaña {name} en unos segundos "
            f"(solicitud {request.request_id}).",
            "ok",
        )
    current().store.audit(user.name, f"campaign_{action}", target=name, detail=detail, client=client_address())
    log.info("console user %s: campaign %s %s (%s)", user.name, name, action, detail)
    return redirect(url_for("pages.campaigns"))


@pages.route("/campanas/<name>/pausar", methods=["POST"])
@requires(Role.SUPERVISOR)
def pause(name: str) -> ResponseReturnValue:
    return _campaign_action(name, "pause")


@pages.route("/campanas/<name>/reanudar", methods=["POST"])
@requires(Role.SUPERVISOR)
def resume(name: str) -> ResponseReturnValue:
    return _campaign_action(name, "resume")


# ---- the web audit log ---------------------------------------------------------------------------------------


@pages.route("/registro")
@requires(Role.ADMIN)
def audit() -> ResponseReturnValue:
    return render_template("audit.html", entries=current().store.audit_entries(200), now=datetime.now(UTC))
