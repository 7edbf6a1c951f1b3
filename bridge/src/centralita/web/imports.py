"""Importar clientes: a campaign's customers from a CSV uploaded in the console (supervisors and admins).

The upload is read with the importer of ``centralita campaign import`` (``read_csv_data``: the same columns,
encodings and checks, with the dialer's DIALER_COUNTRY_CODE and DIALER_TIMEZONE from the console's environment).
When any row is bad, or the file itself is, nothing is sent: the page lists every problem in Spanish with its line
number. When every row is good, the file goes to the dialer as a request in the campaign requests' spool
(``centralita.dialer.requests``): the console never writes the dialer's database. The dialer reads the file again
with its own settings, imports it whole or not at all, and records what it did, which the Campañas page shows.
Every attempt goes into the console's audit log, refused or not. The upload is limited to ``MAX_IMPORT_BYTES``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Final

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from werkzeug.exceptions import RequestEntityTooLarge
from wtforms import SelectField, StringField
from wtforms.fields import SelectChoice
from wtforms.validators import DataRequired, Length

from centralita.config.dialer import owns_campaign
from centralita.dialer.importer import ImportFileError, ImportResult, read_csv_data
from centralita.dialer.requests import IMPORT_ENCODINGS, MAX_IMPORT_BYTES, write_request
from centralita.dialer.store import CampaignError, CampaignState, CampaignStore, DialerStoreError, check_campaign_name
from centralita.isp.phones import region_for_country_code
from centralita.web.auth import client_address, load_session, requires
from centralita.web.context import current
from centralita.web.import_text import spanish_file_error, spanish_located
from centralita.web.store import Role, User

__all__ = ["REQUEST_LIMIT", "imports", "upload_too_large"]

log = logging.getLogger(__name__)

# The whole POST (the file and the form's few fields): the file's own limit is checked exactly in the view.
REQUEST_LIMIT: Final = MAX_IMPORT_BYTES + 64 * 1024
MAX_SHOWN: Final = 200  # problems listed on the page (the count says how many there are)
ENCODING_LABELS: Final = {"": "UTF-8 (o UTF-16 con BOM)", "latin-1": "Latin-1 (ISO-8859-1)", "cp1252": "Windows-1252"}
SIZE_MESSAGE: Final = (
    f"El archivo pasa del máximo de {MAX_IMPORT_BYTES // 1024} KiB que acepta la consola: no se importó nada. "
    "Divídalo en varios archivos (cada uno con su fila de encabezado) o impórtelo en el servidor con "
    "sudo centralita campaign import ARCHIVO --campaign NOMBRE."
)

imports = Blueprint("imports", __name__)


class ImportForm(FlaskForm):
    campana = StringField(
        "Campaña",
        validators=[DataRequired(message="Escriba el nombre de la campaña."), Length(max=64)],
    )
    archivo = FileField("Archivo CSV")
    codificacion = SelectField(
        "Codificación",
        default="",
        choices=[SelectChoice(name, ENCODING_LABELS[name]) for name in IMPORT_ENCODINGS],
    )


def _user() -> User:
    user: User = g.user
    return user


def _audit(campaign: str, detail: str) -> None:
    user = _user()
    current().store.audit(user.name, "campaign_import", target=campaign, detail=detail, client=client_address())
    log.info("console user %s: campaign %s import (%s)", user.name, campaign, detail)


def _existing_campaigns() -> list[str]:
    path = current().settings.dialer_db_path
    if not path.is_file():
        return []
    try:
        with CampaignStore.read_only(path) as store:
            return [campaign.name for campaign in store.campaigns() if campaign.state != CampaignState.FINISHED]
    except DialerStoreError:
        return []


def _check_campaign(name: str) -> str:
    """The campaign's name, or CampaignError in Spanish: a bad name, another box's campaign, a finished one."""
    settings = current().settings
    try:
        name = check_campaign_name(name)
    except CampaignError:
        raise CampaignError(
            f"«{name}» no sirve como nombre de campaña: use de 1 a 64 letras, dígitos, espacios, '.', '_' o '-', por "
            "ejemplo morosos-2026-03."
        ) from None
    if not owns_campaign(settings.campaigns, name):
        raise CampaignError(
            f"La campaña {name} no es de este servidor: aquí se marcan solo las campañas cuyo nombre empieza con "
            f"{', '.join(settings.campaigns)} (bridge_dialer_campaigns). Use uno de esos prefijos."
        )
    path = settings.dialer_db_path
    if path.is_file():
        try:
            with CampaignStore.read_only(path) as store:
                existing = {campaign.name: campaign for campaign in store.campaigns()}
        except DialerStoreError as problem:
            raise CampaignError(f"No se puede leer la base de campañas: {problem}") from None
        found = existing.get(name)
        if found is not None and found.state == CampaignState.FINISHED:
            raise CampaignError(
                f"La campaña {name} ya terminó: importe los clientes en una campaña nueva (otro nombre)."
            )
    return name


def _read(data: bytes, file_name: str, encoding: str) -> ImportResult:
    """The upload read as ``centralita campaign import`` reads a file, with the dialer's settings."""
    settings = current().settings
    zone = settings.dialer_zone or current().zone
    today = current().clock().astimezone(zone).date()
    region = region_for_country_code(settings.country_code)
    return read_csv_data(data, Path(file_name), region=region, today=today, encoding=encoding or None)


def _page(
    form: ImportForm, *, problems: list[str] | None = None, error: str = "", status: int = 200
) -> ResponseReturnValue:
    return render_template(
        "import.html",
        form=form,
        problems=problems or [],
        error=error,
        campaigns=_existing_campaigns(),
        max_kib=MAX_IMPORT_BYTES // 1024,
    ), status


@imports.route("/campanas/importar", methods=["GET"])
@requires(Role.SUPERVISOR)
def page() -> ResponseReturnValue:
    return _page(ImportForm())


@imports.route("/campanas/importar", methods=["POST"])
@requires(Role.SUPERVISOR)
def upload() -> ResponseReturnValue:
    form = ImportForm()
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            abort(400)
        errors = [str(error) for field in (form.campana, form.codificacion) for error in field.errors]
        _audit((form.campana.data or "")[:64], f"refused: the form: {'; '.join(errors)}")
        return _page(form, error=" ".join(errors) or "Revise los campos del formulario.", status=400)
    upload_file = form.archivo.data
    if upload_file is None or not getattr(upload_file, "filename", ""):
        _audit((form.campana.data or "")[:64], "refused: no file chosen")
        return _page(form, error="Elija el archivo CSV que quiere importar.", status=400)
    printable = "".join(character for character in str(upload_file.filename) if character.isprintable())
    file_name = Path(printable).name.strip()[:200] or "clientes.csv"
    encoding = form.codificacion.data or ""
    try:
        campaign = _check_campaign(form.campana.data or "")
    except CampaignError as problem:
        _audit((form.campana.data or "")[:64], f"refused: {problem}")
        return _page(form, error=str(problem), status=400)
    data = upload_file.stream.read(MAX_IMPORT_BYTES + 1)
    if len(data) > MAX_IMPORT_BYTES:
        _audit(campaign, f"refused: {file_name} is larger than {MAX_IMPORT_BYTES} bytes")
        return _page(form, error=SIZE_MESSAGE, status=413)
    try:
        result = _read(data, file_name, encoding)
    except ImportFileError as problem:
        _audit(campaign, f"refused: {file_name}: {problem}")
        return _page(form, error=f"No se importó nada: {spanish_file_error(str(problem))}.", status=400)
    if result.problems:
        count = len(result.problems)
        _audit(campaign, f"refused: {file_name}: {count} row(s) with problems, the first: {result.problems[0]}")
        return _page(
            form,
            problems=[spanish_located(str(problem)) for problem in result.problems[:MAX_SHOWN]]
            + ([f"Y {count - MAX_SHOWN} filas más con errores."] if count > MAX_SHOWN else []),
            error=f"No se importó nada: {count} fila{'s' if count != 1 else ''} del archivo "
            f"{'tienen' if count != 1 else 'tiene'} errores. Corríjalas y vuelva a subir el archivo completo.",
            status=400,
        )
    return _send(campaign, data, file_name, encoding, result)


def _send(campaign: str, data: bytes, file_name: str, encoding: str, result: ImportResult) -> ResponseReturnValue:
    """Every row is good: the file goes to the dialer as a request."""
    settings = current().settings
    now: datetime = current().clock()
    try:
        sent = write_request(
            settings.requests_dir,
            "import",
            campaign,
            _user().name,
            now,
            data=data,
            file_name=file_name,
            encoding=encoding,
        )
    except (OSError, ValueError) as problem:
        log.error(
            "console cannot write the import request for %s into %s: %s", campaign, settings.requests_dir, problem
        )
        _audit(campaign, f"failed: {file_name}: {problem}")
        return _page(
            ImportForm(),
            error=f"No se pudo enviar el archivo al marcador: el directorio de solicitudes no acepta archivos de la "
            f"consola ({problem}). El administrador puede ejecutar site.yml para repararlo, o importar en el servidor "
            f"con sudo centralita campaign import ARCHIVO --campaign {campaign}.",
            status=503,
        )
    rows = len(result.rows)
    _audit(campaign, f"requested {sent.request_id}: {file_name}, {rows} row(s), {len(result.warnings)} warning(s)")
    flash(
        f"Archivo {file_name} enviado al marcador: {rows} cliente{'s' if rows != 1 else ''} para la campaña {campaign} "
        f"(solicitud {sent.request_id}). El marcador lo importa en unos segundos; el resultado aparece abajo, en "
        "«Últimas acciones del marcador».",
        "ok",
    )
    for warning in result.warnings[:20]:
        flash(f"Aviso: {spanish_located(str(warning))}", "warning")
    if len(result.warnings) > 20:
        flash(f"Y {len(result.warnings) - 20} avisos más.", "warning")
    return redirect(url_for("pages.campaigns"))


def upload_too_large(error: RequestEntityTooLarge) -> ResponseReturnValue:
    """The 413 of an upload over the limit (before any view runs): the Spanish message, nothing imported."""
    if request.endpoint == "imports.upload":
        if getattr(g, "user", None) is None:
            load_session()  # the limit stopped the request before the session was read
        user: User | None = g.user
        if user is not None and user.role.at_least(Role.SUPERVISOR):
            _audit("", f"refused: an upload of {request.content_length} bytes, over the limit of {REQUEST_LIMIT}")
        return render_template("error.html", message=SIZE_MESSAGE, detail=""), 413
    return render_template("error.html", message="La petición es demasiado grande.", detail=""), 413
