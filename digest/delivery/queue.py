"""The delivery store: enqueue set-wise, claim batches under a lease, record per recipient.

The loop that drives these is :func:`digest.delivery.send_loop.deliver`. Guarantees (the
"Delivery guarantees" paragraph of docs/delivery.md is the operator's version):

- one ``Delivery`` row per (issue, subscriber), unique in the database: nobody is
  enqueued twice, however often a send is started;
- a row is marked ``sent`` only after the server accepted that recipient;
- a claimed batch carries a lease; if the process dies, the lease expires and the rows
  go back to the queue — at-least-once, with the duplicate window of one in-flight
  batch, and the same Message-ID on both copies;
- a subscriber who stopped being ``active`` before their batch is claimed is skipped;
- a live worker renews its lease, so only a dead worker's rows are taken over.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, insert, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from digest.core.clock import utcnow
from digest.core.recipient import Recipient
from digest.core.settings import Settings
from digest.store.models import Delivery, DeliveryState, Issue, IssueState
from digest.store.subscriber_models import Subscriber, SubscriberStatus

logger = logging.getLogger(__name__)

Progress = Callable[[int], None]

D = Delivery.__table__  # type: ignore[attr-defined]
S = Subscriber.__table__  # type: ignore[attr-defined]
I = Issue.__table__  # type: ignore[attr-defined]  # noqa: E741

OPEN_STATES = (
    DeliveryState.QUEUED,
    DeliveryState.RETRY,
    DeliveryState.WAITING,
    DeliveryState.SENDING,
)
#: Open rows that wait for their ``next_attempt_at``.
DUE_STATES = (DeliveryState.RETRY, DeliveryState.WAITING)


@dataclass
class SendReport:
    """What one run of the send loop did."""

    week: str
    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0
    #: held back by a shared send limit (they wait, they do not fail)
    waiting: int = 0
    batches: int = 0
    throttled: int = 0
    elapsed: float = 0.0
    stopped: str | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> str:
        line = (
            f"issue {self.week}: {self.sent} sent, {self.failed} failed, "
            f"{self.skipped} skipped, {self.retried} retries in {self.elapsed:.1f}s"
        )
        if self.sent and self.elapsed:
            line += f" ({self.rate:.0f}/s)"
        if self.waiting:
            line += f"; {self.waiting} held back by send limits (they wait, they do not fail)"
        if self.stopped:
            line += f"; stopped: {self.stopped}"
        return line


def worker_id(settings: Settings | None = None) -> str:
    """``host:pid:random``: whose lease a batch is (``DIGEST_WORKER_NAME`` names the
    machine when its host name says nothing, e.g. in containers)."""
    host = (settings.worker_name if settings is not None else None) or socket.gethostname()
    return f"{host[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------- enqueue


@dataclass(frozen=True)
class Audience:
    """A slice of the active subscribers and how their rows start: which compiled
    variant they get, and whether they wait for a time (a local-time wave) or are
    skipped with a reason (nothing in their topics this time)."""

    where: tuple[Any, ...] = ()
    variant_id: int | None = None
    state: DeliveryState = DeliveryState.QUEUED
    next_attempt_at: datetime | None = None
    note: str | None = None
    #: the local-time wave (digest/readers/waves.py)
    wave_at: datetime | None = None


EVERYONE = (Audience(),)


def enqueue(conn: Connection, issue_id: int, audience: Sequence[Audience] = EVERYONE) -> int:
    """One row per active subscriber not yet queued, in one INSERT … SELECT per slice
    of ``audience`` (by default everyone, queued now).

    ``ON CONFLICT DO NOTHING`` on (issue, subscriber): two senders enqueueing the same
    issue at once (the NOT EXISTS of each cannot see the other's uncommitted rows)
    both succeed, and the second simply joins the send."""
    return sum(_enqueue(conn, issue_id, part) for part in audience)


def _enqueue(conn: Connection, issue_id: int, part: Audience) -> int:
    now = utcnow()
    already = select(D.c.id).where(D.c.issue_id == issue_id, D.c.subscriber_id == S.c.id).exists()
    source = select(
        literal(issue_id),
        S.c.id,
        literal(part.state.value),
        literal(0),
        literal(now, type_=D.c.updated_at.type),
        literal(part.variant_id, type_=D.c.variant_id.type),
        literal(part.next_attempt_at, type_=D.c.next_attempt_at.type),
        literal(part.note, type_=D.c.last_error.type),
        literal(part.wave_at, type_=D.c.wave_at.type),
    ).where(S.c.status == SubscriberStatus.ACTIVE.value, ~already, *part.where)
    columns = [
        "issue_id",
        "subscriber_id",
        "state",
        "attempts",
        "updated_at",
        "variant_id",
        "next_attempt_at",
        "last_error",
        "wave_at",
    ]
    dialect = conn.dialect.name
    stmt: Any
    if dialect in ("sqlite", "postgresql"):
        ins = sqlite_insert(D) if dialect == "sqlite" else postgresql_insert(D)
        stmt = ins.from_select(columns, source).on_conflict_do_nothing(
            index_elements=["issue_id", "subscriber_id"]
        )
    else:
        stmt = insert(D).from_select(columns, source)

    def queued() -> int:
        return int(conn.execute(select(func.count()).where(D.c.issue_id == issue_id)).scalar_one())

    if dialect == "postgresql":
        # RETURNING counts exactly the rows this statement added. A count before/after
        # includes a concurrent sender's rows, and rowcount was seen to report every
        # candidate row for a statement that waited on the other sender's lock and then
        # inserted nothing (psycopg 3; tests/test_delivery_outage.py). Counted in the
        # server: fetching a million new ids would cost the sender ~30 MB it keeps.
        returning = stmt.returning(D.c.id).cte("added")
        added = int(conn.execute(select(func.count()).select_from(returning)).scalar_one())
    elif dialect == "sqlite":
        added = sum(1 for _ in conn.execute(stmt.returning(D.c.id)))
    else:
        # Some drivers report -1 for INSERT … SELECT: count instead of trusting rowcount.
        before = queued()
        conn.execute(stmt)
        added = queued() - before
    logger.info("issue %s: enqueued %d deliveries (%s)", issue_id, added, part.state.value)
    return added


def counts(conn: Connection, issue_id: int) -> dict[str, int]:
    rows = conn.execute(
        select(D.c.state, func.count()).where(D.c.issue_id == issue_id).group_by(D.c.state)
    ).all()
    result = {state.value: 0 for state in DeliveryState}
    result.update({state: n for state, n in rows})
    return result


# ---------------------------------------------------------------- claim and record


def _claimable(issue_id: int, now: datetime) -> Any:
    return and_(
        D.c.issue_id == issue_id,
        or_(
            and_(
                D.c.state.in_([DeliveryState.QUEUED.value, *(state.value for state in DUE_STATES)]),
                or_(D.c.next_attempt_at.is_(None), D.c.next_attempt_at <= now),
            ),
            and_(D.c.state == DeliveryState.SENDING.value, D.c.lease_expires_at < now),
        ),
    )


def _pick(conn: Connection, issue_id: int, now: datetime, size: int) -> list[int]:
    """Up to ``size`` claimable ids: expired leases first (a dead worker's batch), then
    retries that are due, then waiting rows that are due, then fresh rows in id order.

    Narrow queries instead of one ``OR``: each walks an index
    (``ix_delivery_claim`` or ``ix_delivery_queue``) and stops after ``size`` rows,
    so claiming costs the same at the last batch of 100,000 as at the first.
    """
    mine = D.c.issue_id == issue_id
    queries = [
        select(D.c.id).where(
            mine, D.c.state == DeliveryState.SENDING.value, D.c.lease_expires_at < now
        ),
        *(
            # One query per state: (issue, state, next_attempt_at) is ix_delivery_claim,
            # so the index hands the due rows over in order and the scan stops early.
            select(D.c.id)
            .where(
                mine,
                D.c.state == state.value,
                or_(D.c.next_attempt_at.is_(None), D.c.next_attempt_at <= now),
            )
            .order_by(D.c.next_attempt_at)
            for state in DUE_STATES
        ),
        select(D.c.id).where(mine, D.c.state == DeliveryState.QUEUED.value).order_by(D.c.id),
    ]
    ids: list[int] = []
    for query in queries:
        room = size - len(ids)
        if room <= 0:
            break
        query = query.limit(room)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        ids.extend(conn.execute(query).scalars())
    return ids


@dataclass
class Claim:
    """One leased batch: who to send to, how many were skipped, and the lease's name."""

    recipients: list[Recipient]
    skipped: int
    lease: str
    #: when the claim started (monotonic): the lease is held at least until then plus
    #: DIGEST_LEASE_SECONDS (digest/handover.py)
    claimed_at: float = field(default_factory=time.monotonic)


def claim_leased(
    engine: Engine,
    issue_id: int,
    owner: str,
    size: int,
    lease_seconds: int,
    now: datetime | None = None,
    lease: str | None = None,
) -> Claim:
    """Lease up to ``size`` deliveries to ``owner``.

    The claim holds the recipients to send to, how many claimed rows were skipped
    because the subscriber is no longer active (unsubscribed mid-send), and the
    lease's name (for :func:`renew_lease`; :func:`new_lease` makes one beforehand).
    """
    started = time.monotonic()
    now = now or utcnow()
    lease = lease or new_lease(owner)
    with engine.begin() as conn:
        # Pick the ids first (a batch, not the list): PostgreSQL may run a LIMIT … SKIP
        # LOCKED subquery inside UPDATE … IN more than once and take too many rows.
        # The UPDATE re-checks claimability, so a row picked by two workers goes to one;
        # the other picks again (on SQLite its first pick ran before it held the write
        # lock, so two workers starting together pick the same rows). Without that it
        # would come back empty-handed and wait, as if the queue were drained.
        ids: list[int] = []
        held = 0
        for _ in range(3):
            picked = _pick(conn, issue_id, now, size - held)
            if not picked:
                break
            won = conn.execute(
                update(D)
                .where(D.c.id.in_(picked), _claimable(issue_id, now))
                .values(
                    state=DeliveryState.SENDING.value,
                    lease_owner=lease,
                    lease_expires_at=now + timedelta(seconds=lease_seconds),
                    attempts=D.c.attempts + 1,
                    updated_at=now,
                )
            ).rowcount
            ids += picked
            held += won
            if won == len(picked):
                break
        if not ids:
            return Claim([], 0, lease, started)
        rows = conn.execute(
            select(D.c.id, D.c.subscriber_id, D.c.variant_id, S.c.email, S.c.name, S.c.status)
            .join(S, S.c.id == D.c.subscriber_id)
            .where(
                D.c.id.in_(ids),
                D.c.lease_owner == lease,
                D.c.state == DeliveryState.SENDING.value,
            )
            .order_by(D.c.id)
        ).all()
        inactive = [r.id for r in rows if r.status != SubscriberStatus.ACTIVE.value]
        skip_inactive(conn, inactive, now)
    recipients = [
        Recipient(
            subscriber_id=r.subscriber_id,
            email=r.email,
            name=r.name,
            delivery_id=r.id,
            variant_id=r.variant_id,
        )
        for r in rows
        if r.status == SubscriberStatus.ACTIVE.value
    ]
    return Claim(recipients, len(inactive), lease, started)


def new_lease(owner: str) -> str:
    """A fresh lease name for ``owner`` (a worker holds one per claimed batch)."""
    return f"{owner}/{uuid.uuid4().hex[:8]}"


def skip_inactive(
    conn: Connection, ids: Sequence[int], now: datetime, lease: str | None = None
) -> None:
    """Claimed rows whose subscriber is no longer active: skipped, the lease gone
    (with ``lease``, only rows still under it)."""
    if ids:
        mine = D.c.state == DeliveryState.SENDING.value
        if lease is not None:
            mine = and_(mine, D.c.lease_owner == lease)
        conn.execute(
            update(D)
            .where(D.c.id.in_(ids), mine)
            .values(
                state=DeliveryState.SKIPPED.value,
                lease_owner=None,
                lease_expires_at=None,
                last_error="subscriber no longer active",
                updated_at=now,
            )
        )


def renew_lease(engine: Engine, lease: str | Sequence[str], lease_seconds: int) -> int:
    """Push the expiry of a lease (or several) out again (the worker is alive);
    returns rows renewed."""
    leases = [lease] if isinstance(lease, str) else list(lease)
    if not leases:
        return 0
    now = utcnow()
    with engine.begin() as conn:
        return int(
            conn.execute(
                update(D)
                .where(D.c.lease_owner.in_(leases), D.c.state == DeliveryState.SENDING.value)
                .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
            ).rowcount
            or 0
        )


# ---------------------------------------------------------------- the loop


def issue_state(engine: Engine, issue_id: int) -> str:
    with engine.connect() as conn:
        return str(conn.execute(select(I.c.state).where(I.c.id == issue_id)).scalar_one())


def set_issue_state(
    engine: Engine, issue_id: int, state: IssueState, reason: str | None = None
) -> None:
    values: dict[str, Any] = {"state": state.value, "state_reason": reason, "updated_at": utcnow()}
    if state is IssueState.SENT:
        values["finished_at"] = utcnow()
    with engine.begin() as conn:
        conn.execute(update(I).where(I.c.id == issue_id).values(**values))


def next_wakeup(engine: Engine, issue_id: int, now: datetime | None = None) -> float | None:
    """Seconds until some open delivery becomes claimable; None when none is open."""
    with engine.connect() as conn:
        row = conn.execute(
            select(
                func.min(D.c.next_attempt_at),
                func.min(D.c.lease_expires_at),
                func.count(),
            ).where(D.c.issue_id == issue_id, D.c.state.in_([s.value for s in OPEN_STATES]))
        ).one()
    if not row[2]:
        return None
    now = now or utcnow()
    moments = [m for m in (row[0], row[1]) if m is not None]
    if not moments:
        return 0.0
    soonest = min(m if m.tzinfo else m.replace(tzinfo=now.tzinfo) for m in moments)
    return max(0.0, (soonest - now).total_seconds())
