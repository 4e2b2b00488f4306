"""Password hashing with argon2id (argon2-cffi's defaults, RFC 9106's recommendation).

argon2-cffi is a well-kept binding of the reference implementation; hashing by hand is
how password stores leak. A hash carries its own parameters, so raising them later
rehashes each password at its owner's next login (:func:`needs_rehash`).
"""

from __future__ import annotations

import functools
import logging

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from digest.exceptions import AccountError

logger = logging.getLogger(__name__)

MIN_LENGTH = 12
MAX_LENGTH = 1024
_HASHER = PasswordHasher()


@functools.cache
def dummy_hash() -> str:
    """Verified against when the account does not exist, so a login for an unknown
    address costs the same time as one for a known address. Made at first use: a hash
    at import cost every process that imports this (each CLI command) ~0.13 s."""
    return _HASHER.hash("not a password of anyone's, only for timing")


def check_strength(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise AccountError(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise AccountError(f"a password may have at most {MAX_LENGTH} characters")
    if password.strip() != password or not password.strip():
        raise AccountError("a password may not start or end with spaces")


def hash_password(password: str) -> str:
    check_strength(password)
    return _HASHER.hash(password)


def verify(stored: str | None, password: str) -> bool:
    """True when ``password`` matches ``stored`` (None: no password set yet)."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _HASHER.verify(stored or dummy_hash(), password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return _HASHER.check_needs_rehash(stored)
