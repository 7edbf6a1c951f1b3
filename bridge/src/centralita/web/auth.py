"""Logging in and out, the session of each request, and who may see what (``requires``).

A login that fails is counted per user name and per client address; over either limit within the window the
console answers 429 with the wait, before checking the password (so a guess that happens to be right does not
get in either), and writes an audit line. A successful login forgets the name's failures and opens a
server-side session (``store``): the cookie holds only the session's random token, ``HttpOnly`` and
``SameSite=Strict`` (and ``Secure`` when the console listens beyond the loopback address).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from datetime import datetime
from typing import Final, ParamSpec, TypeVar

from flask import Blueprint, Response, abort, current_app, g, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from centralita.web import passwords
from centralita.web.context import current
from centralita.web.store import Role, User

__all__ = ["SESSION_COOKIE", "auth", "client_address", "load_session", "requires"]

log = logging.getLogger(__name__)

SESSION_COOKIE: Final = "centralita_session"
# Verified when the name is unknown, so a wrong name takes as long as a wrong password.
_DUMMY_HASH: Final = passwords.hash_password("centralita-no-such-user")

auth = Blueprint("auth", __name__)
P = ParamSpec("P")
R = TypeVar("R")


class LoginForm(FlaskForm):
    name = StringField("Usuario", validators=[DataRequired(message="Escriba su usuario."), Length(max=64)])
    password = PasswordField("Contraseña", validators=[DataRequired(message="Escriba su contraseña.")])


def client_address() -> str:
    """The address the request came from (waitress behind no proxy: the peer's address)."""
    return request.remote_addr or "unknown"


@auth.before_app_request
def load_session() -> None:
    g.user = None
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        settings = current().settings
        session = current().store.session(token, idle=settings.session_idle, absolute=settings.session_absolute)
        if session is not None:
            g.user = session.user


def requires(role: Role) -> Callable[[Callable[P, ResponseReturnValue]], Callable[P, ResponseReturnValue]]:
    """A view only users with ``role`` or a higher one reach: others get the login page (or 401 for JSON), and a
    logged-in user with a lower role 403."""

    def decorate(view: Callable[P, ResponseReturnValue]) -> Callable[P, ResponseReturnValue]:
        @functools.wraps(view)
        def wrapped(*args: P.args, **kwargs: P.kwargs) -> ResponseReturnValue:
            user: User | None = g.user
            if user is None:
                if request.path.endswith(".json"):
                    return jsonify(error="Sesión no iniciada o vencida: inicie sesión de nuevo."), 401
                return redirect(url_for("auth.login", next=request.full_path if request.method == "GET" else None))
            if not user.role.at_least(role):
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorate


def _wait_minutes(failures: list[datetime], limit: int) -> int | None:
    """Minutes until the failures within the window drop below ``limit``, or None when under it."""
    if len(failures) < limit:
        return None
    window = current().settings.login_window
    # The failure that must leave the window for the count to drop below the limit.
    leaves_at = failures[len(failures) - limit] + window
    return max(1, math.ceil((leaves_at - current().clock()).total_seconds() / 60))


@auth.route("/entrar", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    form = LoginForm()
    if not form.validate_on_submit():
        status = 400 if request.method == "POST" else 200
        return render_template("login.html", form=form, error=None), status
    console = current()
    settings = console.settings
    name = (form.name.data or "").strip().lower()
    client = client_address()
    wait = max(
        _wait_minutes(console.store.login_failures(settings.login_window, name=name), settings.login_max_per_user) or 0,
        _wait_minutes(console.store.login_failures(settings.login_window, client=client), settings.login_max_per_client)
        or 0,
    )
    if wait:
        console.store.audit(
            name or "-", "login_blocked", detail=f"too many failed logins; wait {wait} min", client=client
        )
        log.warning("console login refused: too many failed logins for user %s or client %s", name, client)
        message = f"Demasiados intentos fallidos. Espere {wait} minuto{'s' if wait != 1 else ''} y vuelva a intentarlo."
        response = Response(render_template("login.html", form=form, error=message), status=429)
        response.headers["Retry-After"] = str(wait * 60)
        return response
    user = console.store.user(name)
    password = form.password.data or ""
    good = passwords.verify(user.password_hash if user else _DUMMY_HASH, password)
    if user is None or user.disabled or not good:
        # Failures older than the window never count again: keep the table to the window.
        console.store.prune_login_failures(settings.login_window)
        console.store.add_login_failure(name, client)
        console.store.audit(name or "-", "login_failed", client=client)
        log.info("console login failed for user %s from %s", name, client)
        return render_template("login.html", form=form, error="Usuario o contraseña incorrectos."), 401
    if passwords.needs_rehash(user.password_hash):
        console.store.update_password_hash(user.id, passwords.hash_password(password))
    console.store.clear_login_failures(name)
    console.store.prune_sessions(settings.session_absolute)
    token = console.store.open_session(user, client)
    console.store.audit(user.name, "login", client=client)
    log.info("console login of user %s (%s) from %s", user.name, user.role, client)
    target = request.args.get("next", "")
    # Only a path on this console: never an absolute or scheme-relative URL (an open redirect).
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        target = url_for("pages.live")
    response = current_app.make_response(redirect(target))
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(settings.session_absolute.total_seconds()),
        httponly=True,
        samesite="Strict",
        secure=settings.secure_cookies,
    )
    return response


@auth.route("/salir", methods=["POST"])
def logout() -> ResponseReturnValue:
    token = request.cookies.get(SESSION_COOKIE)
    user: User | None = g.user
    if token:
        current().store.close_session(token)
    if user is not None:
        current().store.audit(user.name, "logout", client=client_address())
    response = redirect(url_for("auth.login"))
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="Strict", secure=current().settings.secure_cookies)
    return response
