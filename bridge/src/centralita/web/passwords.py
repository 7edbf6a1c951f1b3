"""Password hashing for the console's users: argon2id (``argon2-cffi``, on the box Debian's ``python3-argon2``).

A hash carries its own parameters, so a hash made with older parameters still verifies; ``needs_rehash`` says
when a login should store a fresh one. A damaged hash is caught as ``InvalidHash``, not by its newer name
``InvalidHashError``: Debian 12's ``python3-argon2`` (21.1.0) has only the old one, and the newer releases keep it.
"""

from __future__ import annotations

from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHash, VerificationError, VerifyMismatchError

from centralita.web.passwords_rules import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, PasswordError, check_password_rules

__all__ = ["MIN_PASSWORD_LENGTH", "PasswordError", "check_password_rules", "hash_password", "needs_rehash", "verify"]

_HASHER: Final = PasswordHasher()


def hash_password(password: str) -> str:
    check_password_rules(password)
    return _HASHER.hash(password)


def verify(stored_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash``; a damaged hash or an over-long password never matches."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHash):
        return False


def needs_rehash(stored_hash: str) -> bool:
    try:
        return _HASHER.check_needs_rehash(stored_hash)
    except InvalidHash:
        return True
