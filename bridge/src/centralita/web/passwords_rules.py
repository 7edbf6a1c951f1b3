"""What the console accepts as a password, apart from hashing it (so the CLI can check without argon2)."""

from __future__ import annotations

from typing import Final

__all__ = ["MAX_PASSWORD_LENGTH", "MIN_PASSWORD_LENGTH", "PasswordError", "check_password_rules"]

MIN_PASSWORD_LENGTH: Final = 12
MAX_PASSWORD_LENGTH: Final = 1024  # hashing is deliberately slow: a megabyte "password" is a cheap attack


class PasswordError(ValueError):
    """A password the console does not accept; the message says why and what to use instead."""


def check_password_rules(password: str) -> None:
    """Raise ``PasswordError`` for a password too short or too long to be stored."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordError(
            f"The password has {len(password)} characters: use at least {MIN_PASSWORD_LENGTH} "
            "(a phrase of several words is easy to remember)."
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordError(f"The password is longer than {MAX_PASSWORD_LENGTH} characters: use a shorter one.")
