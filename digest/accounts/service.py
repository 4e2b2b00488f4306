"""Console accounts: add, list, remove, set a password, log in.

A new account gets either a password (``digest users add … --password-stdin``) or a
one-time link to set it (valid ``SETUP_LINK_HOURS``; only its SHA-256 is stored).
Wrong passwords lock the (account, client) pair with back-off, never the account for
everyone (digest/accounts/lockout.py); the web layer also limits per client IP.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from digest.accounts.lockout import LoginLockout
from digest.accounts.passwords import hash_password, needs_rehash, verify
from digest.core.clock import utcnow
from digest.core.settings import Settings
from digest.exceptions import AccountError, SubscriberError
from digest.store.account_models import ConsoleSession, ConsoleUser, Role
from subscribers.service import normalize_email

logger = logging.getLogger(__name__)

SETUP_LINK_HOURS = 72


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _address(email: str) -> str:
    try:
        return normalize_email(email)
    except SubscriberError as exc:
        raise AccountError(str(exc)) from exc


def find_user(session: Session, email: str) -> ConsoleUser | None:
    return session.exec(select(ConsoleUser).where(ConsoleUser.email == _address(email))).first()


def list_users(session: Session) -> list[ConsoleUser]:
    return list(session.exec(select(ConsoleUser).order_by(col(ConsoleUser.email))).all())


def reviewers(session: Session) -> list[ConsoleUser]:
    """Everyone who reviews drafts: editors and operators (operators can do all an
    editor can)."""
    return list_users(session)


def _new_setup_token(user: ConsoleUser, now: datetime) -> str:
    token = secrets.token_urlsafe(32)
    user.setup_token_hash = token_hash(token)
    user.setup_expires_at = now + timedelta(hours=SETUP_LINK_HOURS)
    return token


@dataclass(frozen=True)
class NewUser:
    user: ConsoleUser
    #: set when the account has no password yet: the one-time set-password token
    setup_token: str | None


def add_user(session: Session, email: str, role: str, password: str | None = None) -> NewUser:
    """Add an account; without ``password`` it gets a one-time set-password token."""
    address = _address(email)
    try:
        role = Role(role).value
    except ValueError:
        raise AccountError(f"role must be editor or operator, not {role!r}") from None
    if find_user(session, address) is not None:
        raise AccountError(f"{address} already has an account; `digest users remove` it first")
    now = utcnow()
    user = ConsoleUser(email=address, role=role, created_at=now, updated_at=now)
    token = None
    if password is not None:
        user.password_hash = hash_password(password)
    else:
        token = _new_setup_token(user, now)
    session.add(user)
    session.flush()
    logger.info("console account %s (%s) added", address, role)
    return NewUser(user, token)


def reset_link(session: Session, email: str) -> str:
    """A fresh one-time set-password token for an existing account (the old password
    keeps working until the new one is set)."""
    user = find_user(session, email)
    if user is None:
        raise AccountError(f"no account {email.strip()!r}")
    token = _new_setup_token(user, utcnow())
    session.add(user)
    return token


def setup_url(settings: Settings, token: str) -> str:
    return f"{settings.base_url}/console/setup/{token}"


def remove_user(session: Session, email: str) -> ConsoleUser:
    user = find_user(session, email)
    if user is None:
        raise AccountError(f"no account {email.strip()!r}")
    for row in session.exec(select(ConsoleSession).where(ConsoleSession.user_id == user.id)):
        session.delete(row)
    session.delete(user)
    session.flush()
    logger.info("console account %s removed", user.email)
    return user


def user_for_setup_token(session: Session, token: str) -> ConsoleUser | None:
    if not token or len(token) > 100:
        return None
    user = session.exec(
        select(ConsoleUser).where(ConsoleUser.setup_token_hash == token_hash(token))
    ).first()
    if user is None or user.setup_expires_at is None or user.setup_expires_at < utcnow():
        return None
    return user


def set_password(session: Session, user: ConsoleUser, password: str) -> None:
    """Set the password and retire the set-password link and every session."""
    user.password_hash = hash_password(password)
    user.setup_token_hash = None
    user.setup_expires_at = None
    user.failed_logins = 0
    user.locked_until = None
    user.updated_at = utcnow()
    session.add(user)
    for row in session.exec(select(ConsoleSession).where(ConsoleSession.user_id == user.id)):
        session.delete(row)
    session.flush()


@dataclass(frozen=True)
class Login:
    """A login attempt's outcome: ``user`` when it succeeded, else ``refused`` says why
    (one message for unknown addresses and wrong passwords alike)."""

    user: ConsoleUser | None
    refused: str | None = None


WRONG = "wrong address or password"


def login_key(email: str) -> str:
    """The account half of a lock-out pair: the address as stored, or as typed when
    it is not an address at all (counted the same, existing or not)."""
    try:
        return _address(email)
    except AccountError:
        return email.strip().lower()[:320]


def authenticate(
    session: Session, email: str, password: str, *, lockout: LoginLockout, client: str
) -> Login:
    """Check a login from ``client`` (its rate-limit key). Unknown addresses, wrong
    passwords and locked pairs are answered alike, whether the account exists or not."""
    account = login_key(email)
    wait = lockout.wait(account, client)
    if wait is not None:
        verify(None, password)
        return Login(None, f"too many wrong attempts from here; try again in {int(wait)} seconds")
    try:
        user = find_user(session, email)
    except AccountError:
        user = None
    if user is None:
        verify(None, password)
        lockout.failed(account, client)
        return Login(None, WRONG)
    if not verify(user.password_hash, password):
        lockout.failed(account, client)
        return Login(None, WRONG)
    assert user.password_hash is not None
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    lockout.succeeded(account, client)
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = utcnow()
    session.add(user)
    return Login(user)
