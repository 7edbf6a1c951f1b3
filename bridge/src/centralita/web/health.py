"""The Salud page: the last ``centralita doctor`` report, its checks with their fixes, and how old it is.

The doctor needs root (it reads the .env's secrets and asks systemd and Asterisk), which the console must never
have. So a systemd timer runs ``centralita doctor --output`` as root every few minutes into a directory only
root writes and the service group reads (``doctor.published``); this page only reads that file, without
following links and up to a size limit. A missing or old report says so, with what to run.
"""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime
from typing import Any, Final

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue

from centralita.web.auth import requires
from centralita.web.context import current
from centralita.web.store import Role

__all__ = ["health", "read_report"]

MAX_REPORT_BYTES: Final = 512 * 1024
# The timer runs every 10 minutes: a report older than this means it stopped.
STALE_MINUTES: Final = 30
STATUS_LABELS: Final = {"OK": "bien", "WARN": "aviso", "FAIL": "falla"}

health = Blueprint("health", __name__)


def read_report(path: os.PathLike[str] | str) -> dict[str, Any] | str:
    """The doctor's report at ``path``, or why it cannot be shown (Spanish, for the page)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return (
            "Todavía no hay un informe del diagnóstico. Lo escribe centralita-doctor.timer cada 10 minutos; "
            "en el servidor: systemctl status centralita-doctor.timer, o ahora mismo: "
            "sudo systemctl start centralita-doctor.service"
        )
    except OSError as error:
        return f"No se puede leer el informe del diagnóstico {path} ({error.strerror}): ejecute site.yml."
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return f"El informe del diagnóstico {path} no es un archivo normal: ejecute site.yml."
        data = handle.read(MAX_REPORT_BYTES + 1)
    if len(data) > MAX_REPORT_BYTES:
        return f"El informe del diagnóstico {path} es demasiado grande para mostrarlo: ejecute sudo centralita doctor."
    try:
        report = json.loads(data)
        generated = datetime.fromisoformat(report["generated_at"])
        checks = report["checks"]
    except (ValueError, KeyError, TypeError):
        return f"El informe del diagnóstico {path} está dañado: sudo systemctl start centralita-doctor.service"
    if not isinstance(checks, list) or generated.tzinfo is None:
        return f"El informe del diagnóstico {path} está dañado: sudo systemctl start centralita-doctor.service"
    report["generated"] = generated
    return dict(report)


@health.route("/salud")
@requires(Role.VIEWER)
def page() -> ResponseReturnValue:
    found = read_report(current().settings.doctor_report_path)
    report = found if isinstance(found, dict) else None
    minutes = None
    if report is not None:
        minutes = max(int((current().clock() - report["generated"]).total_seconds() // 60), 0)
    return render_template(
        "health.html",
        report=report,
        error=found if isinstance(found, str) else None,
        minutes=minutes,
        stale=minutes is not None and minutes > STALE_MINUTES,
        stale_minutes=STALE_MINUTES,
        labels=STATUS_LABELS,
    )
