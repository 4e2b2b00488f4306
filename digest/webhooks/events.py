"""Provider events (bounces, complaints, deliveries …) in one shape, stored once, applied.

Every webhook parser, and the reader of DSNs and ARF reports that come back by mail
(:mod:`digest.webhooks.mail_events`), turns what it got into :class:`MailEvent` values;
:func:`apply_events` records each in the ``mail_event`` table — unique per (provider,
event id), so a replayed event is recognised and changes nothing — and applies it:

- ``bounced_hard`` and ``complained`` suppress the subscriber at once;
- ``unsubscribed`` (the provider's own unsubscribe link or list) suppresses too;
- ``bounced_soft`` suppresses after ``soft_bounce_limit`` soft bounces within
  ``soft_bounce_window_days``;
- ``delivered`` and ``deferred`` are only recorded (``digest status`` counts them).

Events are tied to a delivery through the provider's message id (stored by the send
loop in ``Delivery.provider_id``) or the ``digest_delivery`` metadata we attach, and to
a subscriber through the address. Each event names its ``source``: ``webhook``,
``inbound`` (``digest inbound``) or ``mailbox`` (the bounce mailbox poller).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from digest.core.clock import utcnow
from digest.core.settings import Settings
from digest.store.models import Delivery, MailEventRecord
from digest.store.subscriber_models import Subscriber, SubscriberStatus
from subscribers.lifecycle import suppress

logger = logging.getLogger(__name__)


class EventKind(StrEnum):
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCED_HARD = "bounced_hard"
    BOUNCED_SOFT = "bounced_soft"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"


#: How an event came in (``digest status --json`` counts bounces and complaints by it).
SOURCES = ("webhook", "inbound", "mailbox")

SUPPRESS_AT_ONCE = {
    EventKind.BOUNCED_HARD: SubscriberStatus.BOUNCED,
    EventKind.COMPLAINED: SubscriberStatus.COMPLAINED,
    EventKind.UNSUBSCRIBED: SubscriberStatus.UNSUBSCRIBED,
}


@dataclass(frozen=True)
class MailEvent:
    """One provider event about one recipient, normalised."""

    provider: str
    event_id: str
    kind: EventKind
    email: str
    occurred_at: datetime
    provider_message_id: str | None = None
    detail: str = ""
    #: our metadata echoed back by the provider (untrusted until matched to a delivery)
    hints: dict[str, str] = field(default_factory=dict)
    source: str = "webhook"


E = MailEventRecord.__table__  # type: ignore[attr-defined]
D = Delivery.__table__  # type: ignore[attr-defined]
S = Subscriber.__table__  # type: ignore[attr-defined]


@dataclass
class ApplyReport:
    recorded: int = 0
    duplicates: int = 0
    suppressed: int = 0
    unknown: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "recorded": self.recorded,
            "duplicates": self.duplicates,
            "suppressed": self.suppressed,
            "unknown": self.unknown,
        }


def _int(value: object) -> int | None:
    """A row id from provider metadata, or None: anything but 1 to 18 ASCII digits (a
    list, "²", a number past a 64-bit column) is ignored, never a 500 that the
    provider would retry forever."""
    text = str(value).strip() if isinstance(value, str | int) else ""
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        return None
    return int(text)


def _resolve(conn: Connection, event: MailEvent) -> tuple[int | None, int | None, int | None]:
    """(subscriber_id, delivery_id, issue_id) for an event, as far as they are known."""
    sid = conn.execute(select(S.c.id).where(S.c.email == event.email.strip().lower())).scalar()
    row = None
    hinted = _int(event.hints.get("digest_delivery"))
    if hinted is not None:
        row = conn.execute(
            select(D.c.id, D.c.subscriber_id, D.c.issue_id).where(D.c.id == hinted)
        ).first()
        if row is not None and sid is not None and row.subscriber_id != sid:
            row = None  # metadata naming someone else's delivery is not trusted
    if row is None and event.provider_message_id:
        query = select(D.c.id, D.c.subscriber_id, D.c.issue_id).where(
            D.c.provider_id == event.provider_message_id
        )
        if sid is not None:
            query = query.where(D.c.subscriber_id == sid)
        rows = conn.execute(query.limit(2)).all()
        row = rows[0] if len(rows) == 1 else None
    if row is not None:
        return sid or row.subscriber_id, row.id, row.issue_id
    return sid, None, None


def _insert(conn: Connection, values: dict[str, Any]) -> bool:
    """Insert unless (provider, event_id) exists; True when this call stored it."""
    if conn.dialect.name == "sqlite":
        stmt: Any = sqlite_insert(E)
    elif conn.dialect.name == "postgresql":
        stmt = postgresql_insert(E)
    else:
        stmt = None
    if stmt is not None:
        # Race-free: two workers delivering the same replayed event store it once.
        stmt = (
            stmt.values(**values)
            .on_conflict_do_nothing(index_elements=["provider", "event_id"])
            .returning(E.c.id)
        )
        # RETURNING, not rowcount: some drivers count a skipped conflicting row.
        return conn.execute(stmt).first() is not None
    exists = conn.execute(
        select(E.c.id).where(E.c.provider == values["provider"], E.c.event_id == values["event_id"])
    ).first()
    if exists:
        return False
    conn.execute(insert(E).values(**values))
    return True


def apply_events(engine: Engine, events: list[MailEvent], settings: Settings) -> ApplyReport:
    """Record and apply ``events`` in one transaction; replays are counted, not applied."""
    report = ApplyReport()
    now = utcnow()
    with engine.begin() as conn:
        for event in events:
            sid, delivery_id, issue_id = _resolve(conn, event)
            if issue_id is None:
                issue_id = _int(event.hints.get("digest_issue"))
            occurred = min(event.occurred_at, now)
            stored = _insert(
                conn,
                {
                    "provider": event.provider,
                    "event_id": event.event_id[:300],
                    "source": event.source,
                    "kind": event.kind.value,
                    "email": event.email[:320],
                    "subscriber_id": sid,
                    "issue_id": issue_id,
                    "delivery_id": delivery_id,
                    "provider_message_id": (event.provider_message_id or "")[:300] or None,
                    "detail": event.detail[:1000],
                    "occurred_at": occurred,
                    "received_at": now,
                },
            )
            if not stored:
                report.duplicates += 1
                continue
            report.recorded += 1
            if sid is None:
                report.unknown += 1
                continue
            report.suppressed += _apply(conn, event, sid, settings, now)
    logger.info("mail events %s", report.as_dict())
    return report


def _apply(conn: Connection, event: MailEvent, sid: int, settings: Settings, now: datetime) -> int:
    source = f"{event.source}:{event.provider}"  # the consent log's "webhook:ses", "inbound:dsn"
    status = SUPPRESS_AT_ONCE.get(event.kind)
    if status is not None:
        return suppress(conn, [sid], status, source=source, detail=event.detail[:200])
    if event.kind is EventKind.BOUNCED_SOFT:
        since = now - timedelta(days=settings.soft_bounce_window_days)
        soft = conn.execute(
            select(func.count()).where(
                E.c.subscriber_id == sid,
                E.c.kind == EventKind.BOUNCED_SOFT.value,
                E.c.occurred_at >= since,
            )
        ).scalar_one()
        if soft >= settings.soft_bounce_limit:
            detail = f"{soft} soft bounces in {settings.soft_bounce_window_days} days"
            return suppress(conn, [sid], SubscriberStatus.BOUNCED, source=source, detail=detail)
    return 0


def issue_event_counts(conn: Connection, issue_id: int) -> dict[str, int]:
    """Provider events recorded for one issue, by kind (every kind present, 0 if none)."""
    rows = conn.execute(
        select(E.c.kind, func.count()).where(E.c.issue_id == issue_id).group_by(E.c.kind)
    ).all()
    result = {kind.value: 0 for kind in EventKind}
    result.update({kind: int(n) for kind, n in rows})
    return result


def issue_source_counts(conn: Connection, issue_id: int) -> dict[str, dict[str, int]]:
    """Bounces and complaints recorded for one issue by source (every source present)."""
    rows = conn.execute(
        select(E.c.source, E.c.kind, func.count())
        .where(
            E.c.issue_id == issue_id,
            E.c.kind.in_(
                [k.value for k in (EventKind.BOUNCED_HARD, EventKind.BOUNCED_SOFT)]
                + [EventKind.COMPLAINED.value]
            ),
        )
        .group_by(E.c.source, E.c.kind)
    ).all()
    result = {source: {"bounces": 0, "complaints": 0} for source in SOURCES}
    for source, kind, n in rows:
        counts = result.setdefault(str(source), {"bounces": 0, "complaints": 0})
        counts["complaints" if kind == EventKind.COMPLAINED else "bounces"] += int(n)
    return result


def provider_events(conn: Connection, issue_id: int) -> dict[str, Any]:
    """The part of ``digest status --json`` about provider events for one issue:
    ``bounces`` (hard, soft, total), ``complaints``, every kind's count, and
    ``by_source``: bounces and complaints from webhooks, ``digest inbound`` and the
    bounce mailbox."""
    by_kind = issue_event_counts(conn, issue_id)
    hard, soft = by_kind[EventKind.BOUNCED_HARD], by_kind[EventKind.BOUNCED_SOFT]
    return {
        "bounces": {"hard": hard, "soft": soft, "total": hard + soft},
        "complaints": by_kind[EventKind.COMPLAINED],
        "events": by_kind,
        "by_source": issue_source_counts(conn, issue_id),
    }
