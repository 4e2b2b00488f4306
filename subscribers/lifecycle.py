"""State changes every part of the system shares: suppression after an unsubscribe,
a bounce or a complaint. The send loop, the web routes and the provider webhooks all
call :func:`suppress`, so a suppressed address is suppressed the same way everywhere."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import update
from sqlalchemy.engine import Connection

from digest.timeutil import utcnow
from subscribers.models import SUPPRESSED_STATES, Subscriber, SubscriberStatus

logger = logging.getLogger(__name__)

S = Subscriber.__table__  # type: ignore[attr-defined]


def suppress(
    conn: Connection,
    subscriber_ids: Sequence[int],
    status: SubscriberStatus,
    *,
    source: str,
    detail: str = "",
) -> int:
    """Move subscribers to a suppressed ``status``; returns how many changed.

    Only ``pending`` and ``active`` subscribers move: an address already suppressed
    keeps its first reason (a complaint is not downgraded to a bounce).
    """
    if status not in SUPPRESSED_STATES:
        raise ValueError(f"{status} is not a suppressed state")
    if not subscriber_ids:
        return 0
    now = utcnow()
    values: dict[str, object] = {"status": status.value, "updated_at": now}
    if status == SubscriberStatus.UNSUBSCRIBED:
        values["unsubscribed_at"] = now
    changed = conn.execute(
        update(S)
        .where(
            S.c.id.in_(list(subscriber_ids)),
            S.c.status.in_([SubscriberStatus.ACTIVE.value, SubscriberStatus.PENDING.value]),
        )
        .values(**values)
    ).rowcount
    logger.info("suppressed %d subscribers as %s (%s: %s)", changed, status, source, detail)
    return int(changed or 0)
