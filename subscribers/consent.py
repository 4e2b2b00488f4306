"""The consent log and the suppression list.

Every subscribe, confirm, unsubscribe, bounce, complaint, import and manual add
writes one :class:`ConsentEvent` (time, source, IP, user agent). Every address that
was unsubscribed, bounced or complained is in the suppression list as a SHA-256 hash,
so the list survives ``digest subscribers forget`` and CSV imports and the CLI can
refuse an address they no longer know in clear text.

The hash is deliberately *unkeyed*: a keyed hash would silently forget every
suppression when ``DIGEST_SECRET_KEY`` is rotated.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import idna
from sqlalchemy import delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from digest.core.clock import utcnow
from digest.core.mailsafe import one_line
from digest.store.subscriber_models import ConsentAction, ConsentEvent, Suppression

logger = logging.getLogger(__name__)

C = ConsentEvent.__table__  # type: ignore[attr-defined]
X = Suppression.__table__  # type: ignore[attr-defined]

_HASH_PREFIX = b"weekly-verdict-digest:"


def email_hash(email: str) -> str:
    """The suppression list's key for an (already normalised) address."""
    return hashlib.sha256(_HASH_PREFIX + email.strip().lower().encode("utf-8")).hexdigest()


def _legacy_form(email: str) -> str | None:
    """The Unicode-domain spelling an address was stored (and hashed) in before domains
    were kept in ASCII: a forgotten person known only by that hash stays suppressed."""
    local, _, domain = email.rpartition("@")
    if "xn--" not in domain:
        return None
    try:
        return f"{local}@{idna.decode(domain)}"
    except idna.IDNAError:
        return None


def _hashes(email: str) -> list[str]:
    legacy = _legacy_form(email)
    return [email_hash(email)] + ([email_hash(legacy)] if legacy else [])


def _clip(value: str | None, limit: int) -> str | None:
    return None if value is None else one_line(value, limit)


def log_event(
    conn: Connection,
    subscriber_id: int,
    action: ConsentAction,
    *,
    source: str,
    ip: str | None = None,
    user_agent: str | None = None,
    detail: str = "",
    when: datetime | None = None,
) -> None:
    log_events(
        conn,
        [subscriber_id],
        action,
        source=source,
        ip=ip,
        user_agent=user_agent,
        detail=detail,
        when=when,
    )


def log_events(
    conn: Connection,
    subscriber_ids: Iterable[int],
    action: ConsentAction,
    *,
    source: str,
    ip: str | None = None,
    user_agent: str | None = None,
    detail: str = "",
    when: datetime | None = None,
) -> int:
    """One event per subscriber id, inserted in one executemany."""
    now = when or utcnow()
    rows = [
        {
            "subscriber_id": sid,
            "action": action.value,
            "source": _clip(source, 200) or "",
            "ip": _clip(ip, 64),
            "user_agent": _clip(user_agent, 500),
            "detail": _clip(detail, 500) or "",
            "created_at": now,
        }
        for sid in subscriber_ids
    ]
    if rows:
        conn.execute(insert(C), rows)
    return len(rows)


def log_event_rows(
    conn: Connection,
    items: Sequence[tuple[int, str]],
    action: ConsentAction,
    *,
    source: str,
    when: datetime | None = None,
) -> None:
    """One event per (subscriber id, detail) pair, in one executemany (CSV imports)."""
    now = when or utcnow()
    src = _clip(source, 200) or ""
    if items:
        conn.execute(
            insert(C),
            [
                {
                    "subscriber_id": sid,
                    "action": action.value,
                    "source": src,
                    "ip": None,
                    "user_agent": None,
                    "detail": _clip(detail, 500) or "",
                    "created_at": now,
                }
                for sid, detail in items
            ],
        )


def events_for(conn: Connection, subscriber_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(C).where(C.c.subscriber_id == subscriber_id).order_by(C.c.created_at, C.c.id)
    ).all()
    return [
        {
            "at": r.created_at.isoformat(),
            "action": r.action,
            "source": r.source,
            "ip": r.ip,
            "user_agent": r.user_agent,
            "detail": r.detail,
        }
        for r in rows
    ]


def add_suppressions(conn: Connection, emails: Sequence[str], reason: str, *, source: str) -> None:
    """Put addresses on the list; an address already there keeps its first reason."""
    if not emails:
        return
    now = utcnow()
    rows = {
        email_hash(e): {
            "email_hash": email_hash(e),
            "reason": reason,
            "source": one_line(source, 200),
            "created_at": now,
        }
        for e in emails
    }
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        # ON CONFLICT DO NOTHING: two processes suppressing the same address at once
        # (a webhook and the send loop) must not fail the caller's transaction.
        ins = sqlite.insert(X) if dialect == "sqlite" else postgresql.insert(X)
        conn.execute(ins.on_conflict_do_nothing(index_elements=["email_hash"]), list(rows.values()))
        return
    query = select(X.c.email_hash).where(X.c.email_hash.in_(list(rows)))
    known = set(conn.execute(query).scalars())
    fresh = [row for key, row in rows.items() if key not in known]
    if fresh:
        conn.execute(insert(X), fresh)


def suppression_of(conn: Connection, email: str) -> str | None:
    """The reason ``email`` is suppressed, or None."""
    reason = conn.execute(select(X.c.reason).where(X.c.email_hash.in_(_hashes(email)))).scalar()
    return None if reason is None else str(reason)


def suppressed_among(conn: Connection, emails: Sequence[str]) -> set[str]:
    """The addresses of ``emails`` that are on the suppression list."""
    by_hash = {h: e for e in emails for h in _hashes(e)}
    found: set[str] = set()
    keys = list(by_hash)
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        found.update(
            by_hash[h]
            for h in conn.execute(select(X.c.email_hash).where(X.c.email_hash.in_(chunk))).scalars()
        )
    return found


def lift_suppression(conn: Connection, email: str) -> None:
    """Only a completed double opt-in (or an unsubscribe undone with its own link) calls this."""
    conn.execute(delete(X).where(X.c.email_hash.in_(_hashes(email))))
