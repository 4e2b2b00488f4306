"""What happened to each claimed row: sent, retried with backoff, failed (and, for a
refused address, suppressed), held back by a send limit, or given back untouched.

The claims are in :mod:`digest.delivery.queue`; the loop that calls both is
:func:`digest.delivery.send_loop.deliver`. A row becomes ``sent`` here and nowhere else, and only
for a result the server or provider accepted.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, select, update
from sqlalchemy.engine import Connection, Engine

from digest.core.clock import utcnow
from digest.core.recipient import Recipient
from digest.core.settings import Settings
from digest.delivery.queue import D, I
from digest.store.models import DeliveryState, IssueState
from digest.store.subscriber_models import SubscriberStatus
from digest.transports.base import SendResult, SendStatus
from subscribers.lifecycle import suppress

logger = logging.getLogger(__name__)


def backoff_seconds(attempt: int, base: float = 10.0, cap: float = 600.0) -> float:
    """Exponential backoff with jitter: attempt 1 → base/2…base, 2 → …2·base, …, ≤ cap."""
    high = min(cap, base * 2 ** max(attempt - 1, 0))
    return random.uniform(min(base / 2, high), high)


def _settled(state: DeliveryState, now: datetime) -> dict[str, Any]:
    """The columns of a row whose attempt is over: its new state, and the lease gone."""
    return {
        "state": state.value,
        "lease_owner": None,
        "lease_expires_at": None,
        "updated_at": now,
    }


def _owned(conn: Connection, ids: Sequence[int | None], lease: str | None) -> set[int] | None:
    """Which of ``ids`` are still leased to ``lease`` (all of them when there is no
    lease to check). The UPDATE takes the rows' write locks, so nobody takes them over
    between this check and the writes after it in the same transaction."""
    if lease is None:
        return None
    return set(
        conn.execute(
            update(D)
            .where(
                D.c.id.in_([i for i in ids if i is not None]),
                D.c.lease_owner == lease,
                D.c.state == DeliveryState.SENDING.value,
            )
            .values(updated_at=utcnow())
            .returning(D.c.id)
        ).scalars()
    )


def record_results(
    engine: Engine,
    results: Sequence[SendResult],
    settings: Settings,
    now: datetime | None = None,
    *,
    lease: str | None = None,
) -> tuple[int, int, int]:
    """Write each recipient's outcome; returns (sent, retried, failed) as written.

    With ``lease``, only rows still leased to it are written: a worker that lost its
    lease (it could not renew it, and another worker took the batch over) records
    nothing stale over the other worker's rows.
    """
    now = now or utcnow()
    with engine.begin() as conn:
        owned = _owned(conn, [r.recipient.delivery_id for r in results], lease)
        if owned is not None and len(owned) < len(results):
            logger.warning(
                "lease %s: %d of %d results not recorded: their rows were taken over "
                "(the lease had run out)",
                lease,
                len(results) - len(owned),
                len(results),
            )
            results = [r for r in results if r.recipient.delivery_id in owned]
        return _record(conn, results, settings, now)


def _record(
    conn: Connection, results: Sequence[SendResult], settings: Settings, now: datetime
) -> tuple[int, int, int]:
    sent_rows: list[dict[str, Any]] = []
    retry_rows: list[dict[str, Any]] = []
    failed_rows: list[dict[str, Any]] = []
    for result in results:
        rid = result.recipient.delivery_id
        if result.status is SendStatus.SENT:
            # A note on a sent result (e.g. "outcome unknown" from a provider timeout) is
            # kept on the row: the operator can see which deliveries were not confirmed.
            sent_rows.append(
                {"b_id": rid, "b_provider": result.provider_id, "b_note": result.error}
            )
        elif result.status is SendStatus.RETRY:
            retry_rows.append(
                {
                    "b_id": rid,
                    "b_error": (result.error or "")[:2000],
                    "b_retry_after": result.retry_after,
                }
            )
        else:
            # Only a refusal of the address itself suppresses the subscriber; a refused
            # message (content, size) or an address we could not write fails this
            # delivery alone (docs/hardening.md).
            failed_rows.append(
                {
                    "b_id": rid,
                    "b_error": (result.error or "")[:2000],
                    "b_sub": result.recipient.subscriber_id if result.bounce else None,
                }
            )
    retried = 0
    sent_values = {**_settled(DeliveryState.SENT, now), "sent_at": now}
    # Most sent rows carry nothing of their own (SMTP): one UPDATE … IN for them, and
    # an executemany only for rows with a provider id or a note.
    plain = [r["b_id"] for r in sent_rows if r["b_provider"] is None and r["b_note"] is None]
    own = [r for r in sent_rows if r["b_provider"] is not None or r["b_note"] is not None]
    if plain:
        conn.execute(
            update(D)
            .where(D.c.id.in_(plain))
            .values(**sent_values, provider_id=None, last_error=None)
        )
    if own:
        conn.execute(
            update(D)
            .where(D.c.id == bindparam("b_id"))
            .values(
                **sent_values,
                provider_id=bindparam("b_provider"),
                last_error=bindparam("b_note"),
            ),
            own,
        )
    if retry_rows:
        attempts: dict[int, int] = dict(
            conn.execute(
                select(D.c.id, D.c.attempts).where(D.c.id.in_([r["b_id"] for r in retry_rows]))
            ).all()
        )
        for row in retry_rows:
            n = attempts.get(row["b_id"], 1)
            if n >= settings.max_attempts:
                failed_rows.append(
                    {
                        "b_id": row["b_id"],
                        "b_sub": None,
                        "b_error": f"gave up after {n} attempts: {row['b_error']}",
                    }
                )
                continue
            delay = row.pop("b_retry_after") or backoff_seconds(
                n, settings.retry_base_seconds, settings.retry_max_seconds
            )
            row["b_next"] = now + timedelta(seconds=delay)
            retried += 1
        retry_rows = [r for r in retry_rows if "b_next" in r]
        if retry_rows:
            conn.execute(
                update(D)
                .where(D.c.id == bindparam("b_id"))
                .values(
                    **_settled(DeliveryState.RETRY, now),
                    next_attempt_at=bindparam("b_next"),
                    last_error=bindparam("b_error"),
                ),
                [{k: r[k] for k in ("b_id", "b_next", "b_error")} for r in retry_rows],
            )
    if failed_rows:
        conn.execute(
            update(D)
            .where(D.c.id == bindparam("b_id"))
            .values(**_settled(DeliveryState.FAILED, now), last_error=bindparam("b_error")),
            [{"b_id": r["b_id"], "b_error": r["b_error"]} for r in failed_rows],
        )
        # A permanent refusal of the address means it does not work: stop mailing it.
        bounced = [r["b_sub"] for r in failed_rows if r["b_sub"]]
        suppress(
            conn,
            bounced,
            SubscriberStatus.BOUNCED,
            source="smtp",
            detail="permanent refusal during send",
        )
    return len(sent_rows), retried, len(failed_rows)


def _mine(lease: str | None) -> Any:
    """Rows in a send's hands: still ``sending``, and still under ``lease`` if given."""
    held = D.c.state == DeliveryState.SENDING.value
    return held if lease is None else and_(held, D.c.lease_owner == lease)


def hold_back(
    engine: Engine,
    waits: Sequence[tuple[Recipient, float]],
    reason: str,
    now: datetime | None = None,
    *,
    lease: str | None = None,
) -> int:
    """Claimed rows that a send limit keeps back: ``waiting`` until ``now + wait``
    seconds, the attempt given back (waiting never counts towards DIGEST_MAX_ATTEMPTS)."""
    rows = [
        {"b_id": r.delivery_id, "b_next": (now or utcnow()) + timedelta(seconds=wait)}
        for r, wait in waits
        if r.delivery_id is not None
    ]
    if not rows:
        return 0
    with engine.begin() as conn:
        conn.execute(
            update(D)
            .where(D.c.id == bindparam("b_id"), _mine(lease))
            .values(
                state=DeliveryState.WAITING.value,
                next_attempt_at=bindparam("b_next"),
                attempts=D.c.attempts - 1,
                lease_owner=None,
                lease_expires_at=None,
                last_error=reason[:2000],
                updated_at=utcnow(),
            ),
            rows,
        )
    return len(rows)


def release(engine: Engine, recipients: Sequence[Recipient], *, lease: str | None = None) -> None:
    """Give claimed rows back untouched (the send stopped before trying them). With
    ``lease``, only rows still under it: never a row another worker has taken over."""
    ids = [r.delivery_id for r in recipients if r.delivery_id is not None]
    if not ids:
        return
    with engine.begin() as conn:
        # Given back after a cancel (a batch claimed ahead): skipped, as cancel does.
        cancelled = select(I.c.id).where(I.c.state == IssueState.CANCELLED.value)
        conn.execute(
            update(D)
            .where(D.c.id.in_(ids), _mine(lease), D.c.issue_id.in_(cancelled))
            .values(
                state=DeliveryState.SKIPPED.value,
                last_error="issue cancelled",
                lease_owner=None,
                lease_expires_at=None,
                updated_at=utcnow(),
            )
        )
        conn.execute(
            update(D)
            .where(D.c.id.in_(ids), _mine(lease))
            .values(
                state=DeliveryState.QUEUED.value,
                attempts=D.c.attempts - 1,
                lease_owner=None,
                lease_expires_at=None,
            )
        )
