"""The Usuarios page (administrators only): the console's users, and creating, disabling and re-roling them.

Every change is a POST with a CSRF token and goes into the console's audit log, refused or not. An administrator
cannot disable or demote themselves (a console with nobody able to manage it can only be repaired from the box's
shell: ``centralita web adduser``). Passwords follow the same rules as the command line and are stored hashed.
"""

from __future__ import annotations

import logging
from typing import Final

from flask import Blueprint, abort, flash, g, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from wtforms import PasswordField, SelectField, StringField
from wtforms.fields import SelectChoice
from wtforms.validators import DataRequired, Length

from centralita.web.auth import client_address, requires
from centralita.web.context import current
from centralita.web.passwords import PasswordError, hash_password
from centralita.web.store import Role, User, UserError, check_user_name

__all__ = ["users"]

log = logging.getLogger(__name__)

ROLE_LABELS: Final = {"viewer": "lectura", "supervisor": "supervisor", "admin": "administrador"}
_ROLE_CHOICES: Final = [SelectChoice(str(role), ROLE_LABELS[str(role)]) for role in Role]

users = Blueprint("users", __name__)


class NewUserForm(FlaskForm):
    nombre = StringField("Usuario", validators=[DataRequired(), Length(max=64)])
    rol = SelectField("Rol", choices=_ROLE_CHOICES, default="viewer")
    contrasena = PasswordField("Contraseña", validators=[DataRequired(), Length(max=1024)])


class RoleForm(FlaskForm):
    rol = SelectField("Rol", choices=_ROLE_CHOICES)


class ActionForm(FlaskForm):
    """Nothing but the CSRF token: the disable buttons."""


def _me() -> User:
    user: User = g.user
    return user


def _audit(action: str, target: str, detail: str) -> None:
    current().store.audit(_me().name, action, target=target, detail=detail, client=client_address())
    log.info("console user %s: %s %s (%s)", _me().name, action, target, detail)


@users.route("/usuarios")
@requires(Role.ADMIN)
def page() -> ResponseReturnValue:
    return render_template(
        "users.html",
        users=current().store.users(),
        new=NewUserForm(),
        role_form=RoleForm(),
        action=ActionForm(),
        role_labels=ROLE_LABELS,
        me=_me().name,
    )


@users.route("/usuarios", methods=["POST"])
@requires(Role.ADMIN)
def create() -> ResponseReturnValue:
    form = NewUserForm()
    if not form.validate_on_submit():
        abort(400)
    name = (form.nombre.data or "").strip()
    role = form.rol.data or ""
    try:
        check_user_name(name)
        current().store.create_user(name, role, hash_password(form.contrasena.data or ""))
    except (UserError, PasswordError) as problem:
        _audit("user_create", name, f"refused: {problem}")
        flash(f"No se creó el usuario: {problem}", "error")
    else:
        _audit("user_create", name, f"role {role}")
        flash(f"Usuario {name} creado con el rol {ROLE_LABELS[role]}.", "ok")
    return redirect(url_for("users.page"))


@users.route("/usuarios/<name>/rol", methods=["POST"])
@requires(Role.ADMIN)
def change_role(name: str) -> ResponseReturnValue:
    form = RoleForm()
    if not form.validate_on_submit():
        abort(400)
    role = form.rol.data or ""
    if name == _me().name:
        _audit("user_role", name, "refused: an administrator cannot change their own role")
        flash("No puede cambiar su propio rol: pídaselo a otro administrador.", "error")
    elif current().store.set_role(name, role):
        _audit("user_role", name, f"role {role}")
        flash(f"El usuario {name} tiene ahora el rol {ROLE_LABELS[role]}.", "ok")
    else:
        abort(404)
    return redirect(url_for("users.page"))


@users.route("/usuarios/<name>/desactivar", methods=["POST"])
@requires(Role.ADMIN)
def disable(name: str) -> ResponseReturnValue:
    if not ActionForm().validate_on_submit():
        abort(400)
    if name == _me().name:
        _audit("user_disable", name, "refused: a user cannot disable themselves")
        flash("No puede desactivar su propio usuario.", "error")
    elif current().store.disable_user(name):
        _audit("user_disable", name, "disabled; sessions ended")
        flash(f"Usuario {name} desactivado: sus sesiones se cerraron.", "ok")
    else:
        abort(404)
    return redirect(url_for("users.page"))
