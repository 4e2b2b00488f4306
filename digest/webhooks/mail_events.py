"""What came back by mail → events in the one event store, or a message for people.

Both ways in (``digest inbound`` and the bounce mailbox poller) hand each message to
:func:`take_in`, which reads it (:mod:`digest.webhooks.mail_reading`), ties it to a
delivery and applies it through :func:`digest.webhooks.events.apply_events` — the same store,
suppression list and consent log as the provider webhooks:

- a bounce → ``bounced_hard`` / ``bounced_soft`` (the soft-bounce threshold applies) /
  ``deferred`` (a "still trying" warning: recorded only);
- a notice from a mail system nobody could read, sent to one of our VERP addresses →
  ``bounced_soft`` for that delivery (it counts, it does not suppress at once);
- an ARF ``abuse`` report → ``complained``;
- an auto-reply or another feedback type → nothing (logged);
- a person's reply, and any notice that names no delivery of ours → an
  ``inbound_mail`` row listed in the console, the reply forwarded to
  ``DIGEST_REPLY_FORWARD`` when set.

**Attribution** needs something only we can make, because anyone can send mail to the
bounce domain: our VERP address (the recipient the notice came to, or the returned
message's ``Return-Path``), its tag checked against the store
(:mod:`digest.mail.verp`); for complaints also the signed unsubscribe token in the
returned message's ``List-Unsubscribe`` (with its Message-ID, deterministic per issue
and reader, naming the issue). A notice that only *names* an address — which a forger
could write about anyone — suppresses nobody: it is kept for people to judge.

Events are keyed by the notice's Message-ID (or a hash of its bytes), so the same
notice delivered twice — or once to the listener and once to the mailbox — is
recorded once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parseaddr
from typing import Literal

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection, Engine

from digest.core.clock import utcnow
from digest.core.settings import Settings
from digest.core.tokens import address_matches, read_claims, stable_digester
from digest.exceptions import TokenError
from digest.mail.verp import VerpConfig, is_bounce_address, matches, parse, verp_config
from digest.store.models import Delivery, InboundMail, Issue
from digest.store.subscriber_models import Subscriber
from digest.webhooks.events import ApplyReport, EventKind, MailEvent, apply_events
from digest.webhooks.mail_reading import Kind, Reading, Severity, read, worst_failure

logger = logging.getLogger(__name__)

Source = Literal["inbound", "mailbox"]

D = Delivery.__table__  # type: ignore[attr-defined]
S = Subscriber.__table__  # type: ignore[attr-defined]
I = Issue.__table__  # type: ignore[attr-defined]  # noqa: E741
M = InboundMail.__table__  # type: ignore[attr-defined]

_KIND_OF = {
    Severity.HARD: EventKind.BOUNCED_HARD,
    Severity.SOFT: EventKind.BOUNCED_SOFT,
    Severity.DELAYED: EventKind.DEFERRED,
}
#: What may become events, when tied to a delivery; kept for people when it is not.
ATTRIBUTED = (Kind.BOUNCE, Kind.UNPARSED, Kind.COMPLAINT)


@dataclass(frozen=True)
class Target:
    """Whom an event is about: a subscriber, and the delivery when known."""

    email: str
    subscriber_id: int | None = None
    delivery_id: int | None = None
    issue_id: int | None = None


@dataclass
class Intake:
    """What :func:`take_in` did with one message."""

    reading: Reading
    events: list[MailEvent] = field(default_factory=list)
    applied: ApplyReport | None = None
    kept: bool = False  # stored for people (reply / unreadable notice)
    forwarded_to: str | None = None
    note: str = ""

    def summary(self) -> str:
        kinds = ", ".join(f"{e.kind.value} {e.email}" for e in self.events)
        kept = "kept for the console" if self.kept else "nothing to record"
        return f"{self.reading.kind.value}: {kinds or self.note or kept}"


def verified_delivery(conn: Connection, settings: Settings, address: str) -> Target | None:
    """The delivery one of our VERP addresses names, if its tag checks out."""
    config = verp_config(settings)
    token = parse(address, config) if config is not None else None
    if token is None:
        return None
    row = conn.execute(
        select(D.c.id, D.c.issue_id, D.c.subscriber_id, S.c.email)
        .join(S, S.c.id == D.c.subscriber_id)
        .where(D.c.id == token.delivery_id)
    ).first()
    if row is None or not matches(settings, token, row.email):
        logger.warning("VERP address %s does not name a delivery of ours", address[:120])
        return None
    return Target(row.email, row.subscriber_id, row.id, row.issue_id)


def _first_verified(
    conn: Connection, settings: Settings, addresses: Iterable[str]
) -> Target | None:
    for address in dict.fromkeys(addresses):
        found = verified_delivery(conn, settings, address)
        if found is not None:
            return found
    return None


def _issue_of(
    conn: Connection, settings: Settings, message_id: str, subscriber_id: int
) -> int | None:
    """The issue whose Message-ID for this reader is ``message_id`` (ours are
    ``<week.digest@domain>``, the digest keyed per issue and reader)."""
    week, dot, rest = message_id.strip().strip("<>").partition(".")
    digest = rest.partition("@")[0]
    if not dot or not digest:
        return None
    for issue_id in conn.execute(select(I.c.id).where(I.c.week == week[:10])).scalars():
        if stable_digester(settings, "message-id", issue_id)(subscriber_id)[:20] == digest:
            return int(issue_id)
    return None


def _from_unsubscribe(conn: Connection, settings: Settings, reading: Reading) -> Target | None:
    """The reader a returned message's signed unsubscribe link names."""
    for url in reading.unsubscribe_urls:
        token = url.rstrip("/").rpartition("/unsubscribe/")[2]
        if not token:
            continue
        try:
            claims = read_claims(settings, "unsubscribe", token)
        except TokenError:
            continue
        row = conn.execute(select(S.c.email).where(S.c.id == claims.subscriber_id)).first()
        if row is None or not address_matches(claims, row.email):
            continue
        issue_id = _issue_of(conn, settings, reading.original_message_id, claims.subscriber_id)
        delivery_id = None
        if issue_id is not None:
            delivery_id = conn.execute(
                select(D.c.id).where(
                    D.c.issue_id == issue_id, D.c.subscriber_id == claims.subscriber_id
                )
            ).scalar()
        return Target(row.email, claims.subscriber_id, delivery_id, issue_id)
    return None


def _event(
    reading: Reading, kind: EventKind, target: Target, source: Source, detail: str
) -> MailEvent:
    hints = {}
    if target.delivery_id is not None:
        hints["digest_delivery"] = str(target.delivery_id)
    if target.issue_id is not None:
        hints["digest_issue"] = str(target.issue_id)
    key = target.delivery_id if target.delivery_id is not None else target.email.lower()
    return MailEvent(
        provider="arf" if reading.kind is Kind.COMPLAINT else "dsn",
        event_id=f"{reading.report_id}:{kind.value}:{key}",
        kind=kind,
        email=target.email,
        occurred_at=reading.occurred_at or utcnow(),
        provider_message_id=reading.original_message_id or None,
        detail=detail,
        hints=hints,
        source=source,
    )


def events_for(
    conn: Connection,
    settings: Settings,
    reading: Reading,
    envelope: tuple[str, ...],
    source: Source,
) -> list[MailEvent]:
    """The events one reading makes: none unless it is tied to one of our deliveries
    (or, for a complaint, readers) by something only we can make."""
    if reading.kind not in ATTRIBUTED:
        return []
    target = _first_verified(conn, settings, envelope + reading.returned_senders)
    if reading.kind is Kind.COMPLAINT:
        target = target or _from_unsubscribe(conn, settings, reading)
        if target is None:
            return []
        return [_event(reading, EventKind.COMPLAINED, target, source, reading.detail)]
    if target is None:
        return []
    # VERP names the delivery: the worst failure counts, whatever address it names (a
    # forwarding address, a rewritten one); an unreadable notice counts as soft.
    worst = worst_failure(reading.failures)
    if worst is None:
        kind, detail = EventKind.BOUNCED_SOFT, "unreadable notice to the VERP address"
    else:
        kind, detail = _KIND_OF[worst.severity], reading.detail
    return [_event(reading, kind, target, source, detail)]


def _keep(conn: Connection, reading: Reading, raw: bytes, source: Source, now: datetime) -> bool:
    """Store a message for people once per report id; True when this call stored it."""
    if conn.execute(select(M.c.id).where(M.c.report_id == reading.report_id[:300])).first():
        return False
    conn.execute(
        insert(M).values(
            report_id=reading.report_id[:300],
            kind=reading.kind.value,
            source=source,
            sender=reading.sender[:320],
            subject=reading.subject[:300],
            size=len(raw),
            raw=raw,
            received_at=now,
        )
    )
    return True


#: Sends a kept reply on: (raw message, reading) → the address it went to.
Forwarder = Callable[[bytes, Reading], str]


def take_in(
    engine: Engine,
    settings: Settings,
    raw: bytes,
    *,
    envelope: Iterable[str] = (),
    source: Source,
    forward: Forwarder | None = None,
) -> Intake:
    """Read, attribute and record one message that came back. ``envelope``: the
    addresses it was delivered to (the listener's RCPT TO; the mailbox's delivery
    headers). Idempotent: the same message again records nothing new."""
    reading = read(raw)
    rcpts = tuple(envelope) + reading.addressed_to
    intake = Intake(reading)
    with engine.begin() as conn:
        intake.events = events_for(conn, settings, reading, rcpts, source)
        if reading.kind is Kind.REPLY or (reading.kind in ATTRIBUTED and not intake.events):
            intake.kept = _keep(conn, reading, raw, source, utcnow())
    if intake.events:
        intake.applied = apply_events(engine, intake.events, settings)
    elif reading.kind is Kind.AUTO_REPLY:
        intake.note = f"auto-reply ignored ({reading.why})"
    elif reading.kind is Kind.FEEDBACK:
        intake.note = f"feedback-type {reading.feedback_type or '?'} ignored"
    if intake.kept and reading.kind is Kind.REPLY and forward is not None:
        intake.forwarded_to = _forward(engine, forward, raw, reading)
    logger.info("%s mail %s: %s", source, reading.report_id[:80], intake.summary())
    return intake


def _forward(engine: Engine, forward: Forwarder, raw: bytes, reading: Reading) -> str | None:
    try:
        to = forward(raw, reading)
        values: dict[str, str | None] = {"forwarded_to": to[:320], "forward_error": None}
    except Exception as exc:
        logger.warning("could not forward reply %s: %s", reading.report_id[:80], exc)
        to, values = None, {"forward_error": str(exc)[:500]}
    with engine.begin() as conn:
        conn.execute(update(M).where(M.c.report_id == reading.report_id[:300]).values(**values))
    return to


def allowed_recipient(settings: Settings, config: VerpConfig | None, address: str) -> bool:
    """The inbound listener's allow-list: our VERP addresses, the bounce address, and the
    Reply-To address (people's replies)."""
    clean = address.strip().strip("<>").lower()
    if config is not None and is_bounce_address(clean, config):
        return True
    own = [settings.bounce_address, settings.reply_to]
    return any(value and parseaddr(value)[1].lower() == clean for value in own)
