"""The Costos page: calls per day, outcomes, minutes, tokens and their cost, as ``centralita calls report`` gives
them (the same ``storage.report`` code over the records opened read-only), and the same CSV to download.

Every cost is shown with the date of the price table it was reckoned with: a price change must never make an old
day look as if it cost what it would cost today.
"""

from __future__ import annotations

import io
import logging
from datetime import date, timedelta
from typing import Final

from flask import Blueprint, Response, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from wtforms import DateField
from wtforms.validators import Optional

from centralita.storage.records import CallRecordsError
from centralita.storage.report import Report, build_report, outcome_names
from centralita.storage.report_cli import write_csv
from centralita.web.auth import requires
from centralita.web.context import current
from centralita.web.records import ReadOnlyRecords
from centralita.web.store import Role

__all__ = ["costs"]

log = logging.getLogger(__name__)

DEFAULT_DAYS: Final = 30
MAX_DAYS: Final = 366  # a year at most per page or file: the report reads every call of the period

costs = Blueprint("costs", __name__)


class PeriodForm(FlaskForm):
    class Meta:
        csrf = False  # a GET that changes nothing

    desde = DateField("Desde", validators=[Optional()])
    hasta = DateField("Hasta", validators=[Optional()])


def _period(form: PeriodForm) -> tuple[date, date] | str:
    """The period asked (the last 30 days by default), or what is wrong with it, in Spanish."""
    if request.args and not form.validate():
        return "Revise las fechas: use AAAA-MM-DD."
    zone = current().zone
    today = current().clock().astimezone(zone).date()
    last = form.hasta.data if isinstance(form.hasta.data, date) else today
    first = form.desde.data if isinstance(form.desde.data, date) else last - timedelta(days=DEFAULT_DAYS - 1)
    if last < first:
        return "La fecha «hasta» es anterior a «desde»: inviértalas."
    if (last - first).days >= MAX_DAYS:
        return f"El periodo tiene más de {MAX_DAYS} días: elija uno más corto."
    return first, last


def _report(first: date, last: date) -> Report | str:
    try:
        with ReadOnlyRecords(current().settings.records_path) as records:
            return build_report(records, first, last, current().zone)
    except CallRecordsError as problem:
        log.error("console cannot read the call records: %s", problem)
        return "No se puede leer el registro de llamadas. Detalle para el administrador: " + str(problem)


@costs.route("/costos")
@requires(Role.VIEWER)
def page() -> ResponseReturnValue:
    form = PeriodForm(request.args)
    period = _period(form)
    report: Report | None = None
    error = period if isinstance(period, str) else None
    if not isinstance(period, str):
        found = _report(*period)
        report, error = (None, found) if isinstance(found, str) else (found, None)
    return render_template(
        "costs.html",
        form=form,
        report=report,
        error=error,
        outcomes=outcome_names([report.total]) if report is not None else [],
        query=request.query_string.decode(),
    )


@costs.route("/costos.csv")
@requires(Role.VIEWER)
def csv_file() -> ResponseReturnValue:
    form = PeriodForm(request.args)
    period = _period(form)
    if isinstance(period, str):
        return Response(period + "\n", status=400, mimetype="text/plain")
    found = _report(*period)
    if isinstance(found, str):
        return Response(found + "\n", status=503, mimetype="text/plain")
    out = io.StringIO()
    write_csv(found, out)
    first, last = period
    response = Response(out.getvalue(), mimetype="text/csv; charset=utf-8")
    response.headers["Content-Disposition"] = f'attachment; filename="centralita-costos-{first}-{last}.csv"'
    return response
