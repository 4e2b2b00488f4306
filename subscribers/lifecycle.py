"""State changes every part of the system shares: suppression after an unsubscribe,
a bounce or a complaint. The send loop, the web routes and the provider webhooks all
call :func:`suppress`, so a suppressed address is suppressed the same way everywhere:
the state changes, the address joins the suppression list, any outstanding
confirmation link is retired and the consent log records why."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import update
from sqlalchemy.engine import Connection

from digest.core.clock import utcnow
from digest.store.subscriber_models import (
    SUPPRESSED_STATES,
    ConsentAction,
    Subscriber,
    SubscriberStatus,
)
from subscribers.consent import add_suppressions, log_events

logger = logging.getLogger(__name__)

S = Subscriber.__table__  # type: ignore[attr-defined]

_ACTION = {
    SubscriberStatus.UNSUBSCRIBED: ConsentAction.UNSUBSCRIBE,
    SubscriberStatus.BOUNCED: ConsentAction.BOUNCE,
    SubscriberStatus.COMPLAINED: ConsentAction.COMPLAINT,
}
_MOVABLE = [SubscriberStatus.ACTIVE.value, SubscriberStatus.PENDING.value]


def suppress(
    conn: Connection,
    subscriber_ids: Sequence[int],
    status: SubscriberStatus,
    *,
    source: str,
    detail: str = "",
    ip: str | None = None,
    user_agent: str | None = None,
) -> int:
    """Move subscribers to a suppressed ``status``; returns how many changed.

    Only ``pending`` and ``active`` subscribers move: an address already suppressed
    keeps its first reason (a complaint is not downgraded to a bounce). Runs inside the
    caller's transaction.
    """
    moved = move(conn, subscriber_ids, status)
    record_moved(conn, moved, status, source=source, detail=detail, ip=ip, user_agent=user_agent)
    return len(moved)


def move(
    conn: Connection, subscriber_ids: Sequence[int], status: SubscriberStatus
) -> list[tuple[int, str]]:
    """The first half of :func:`suppress`: the rows it moved, as (id, email).

    One conditional ``UPDATE … RETURNING``: the rows it moved are the rows this call
    changed, even when another transaction (another web process, a SQLite writer that
    read before it held the lock) tries the same at the same moment — so the consent
    log gets each change exactly once."""
    if status not in SUPPRESSED_STATES:
        raise ValueError(f"{status} is not a suppressed state")
    ids = list(dict.fromkeys(subscriber_ids))
    now = utcnow()
    values: dict[str, object] = {"status": status.value, "updated_at": now, "confirm_nonce": None}
    if status == SubscriberStatus.UNSUBSCRIBED:
        values["unsubscribed_at"] = now
    moved: list[tuple[int, str]] = []
    for start in range(0, len(ids), 500):
        rows = conn.execute(
            update(S)
            .where(S.c.id.in_(ids[start : start + 500]), S.c.status.in_(_MOVABLE))
            .values(**values)
            .returning(S.c.id, S.c.email)
        )
        moved.extend((int(r.id), str(r.email)) for r in rows)
    return moved


def record_moved(
    conn: Connection,
    moved: Sequence[tuple[int, str]],
    status: SubscriberStatus,
    *,
    source: str,
    detail: str = "",
    ip: str | None = None,
    user_agent: str | None = None,
) -> None:
    """The second half of :func:`suppress`: the suppression list and the consent log
    for the rows :func:`move` moved."""
    if not moved:
        return
    add_suppressions(conn, [email for _, email in moved], status.value, source=source)
    log_events(
        conn,
        [sid for sid, _ in moved],
        _ACTION[status],
        source=source,
        ip=ip,
        user_agent=user_agent,
        detail=detail,
    )
    logger.info("suppressed %d subscribers as %s (%s: %s)", len(moved), status, source, detail)
