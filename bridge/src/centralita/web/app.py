"""The console's Flask application: ``create_app`` wires the settings, the database, CSRF and the pages.

Flask-WTF's ``CSRFProtect`` checks the token of every POST before its view runs: a POST without a valid token
gets a 400 page and changes nothing. The token is signed with a key kept in the console's database, so a
restart does not break the forms open in browsers. Every answer carries headers that keep pages out of
frames and caches and scripts to the console's own files.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from flask import Flask, Response, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from centralita.web.auth import auth
from centralita.web.context import EXTENSION, Console
from centralita.web.costs import costs
from centralita.web.health import health
from centralita.web.imports import REQUEST_LIMIT, imports, upload_too_large
from centralita.web.pages import pages
from centralita.web.recordings import recordings
from centralita.web.settings import WebSettings
from centralita.web.store import WebStore
from centralita.web.users import users

__all__ = ["create_app"]

_ERRORS = {
    400: "La petición no es válida.",
    403: "Su usuario no tiene permiso para esta página.",
    404: "No existe esa página o esa llamada.",
    405: "Esa acción no se hace así.",
}


def _utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(
    settings: WebSettings, store: WebStore, *, clock: Callable[[], datetime] = _utc_now, csrf: bool = True
) -> Flask:
    """The console on ``store`` (owned by the caller, who closes it). ``csrf=False`` only for tests that are
    not about CSRF."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=store.key("csrf"),
        WTF_CSRF_ENABLED=csrf,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session that shows the form
        SESSION_COOKIE_NAME="centralita_csrf",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    app.extensions[EXTENSION] = Console(settings=settings, store=store, clock=clock)

    # Before CSRFProtect's check, which reads the form: only the CSV upload may be larger than MAX_CONTENT_LENGTH.
    @app.before_request
    def upload_limit() -> None:
        if request.endpoint == "imports.upload":
            request.max_content_length = REQUEST_LIMIT

    CSRFProtect(app)
    app.register_blueprint(auth)
    app.register_blueprint(pages)
    app.register_blueprint(recordings)
    app.register_blueprint(costs)
    app.register_blueprint(health)
    app.register_blueprint(users)
    app.register_blueprint(imports)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(error: RequestEntityTooLarge) -> ResponseReturnValue:
        return upload_too_large(error)

    @app.errorhandler(CSRFError)
    def csrf_refused(error: CSRFError) -> tuple[str, int]:
        return render_template(
            "error.html",
            message="El formulario caducó o no vino de esta consola: nada se ha cambiado. Vuelva a la página e "
            "inténtelo de nuevo.",
            detail=error.description,
        ), 400

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[str, int]:
        code = error.code or 500
        return render_template("error.html", message=_ERRORS.get(code, error.name), detail=""), code

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; form-action 'self'"
        )
        response.headers.setdefault("Cache-Control", "no-store")
        if settings.tls:
            response.headers["Strict-Transport-Security"] = "max-age=31536000"
        return response

    return app
